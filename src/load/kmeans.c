/*
 * k-means engine (seed 3's clustering step): scikit-learn's KMeans semantics
 * (greedy k-means++, tol scaled by the mean variance, strict convergence on
 * unchanged labels, a final E-step, empty-cluster relocation) with Lloyd or
 * Hamerly iterations over fixed chunks spread on a few threads.
 */
#include "payguard/kmeans.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <math.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Chunk of rows whose partial sums are kept apart: fixes the reduction order. */
#define KM_CHUNK	 4096
#define KM_B		 16
#define KM_AVX512_VBYTES 64
#define KM_SMALL_D	 16  /* d up to which a block's values are held in registers */
#define KM_XT_D		 64  /* d up to which a transposed copy of the data is made */
#define KM_ACC_MAX	 256 /* k * d up to which sums use vector lanes (16 KB of stack) */
#define KM_DEFER	 8   /* blocks by which moving a relabelled point's row lags its prefetch */

enum { KM_FULL, KM_HAMERLY, KM_ESTEP };

/*
 * x86-64 GCC builds compile the whole engine three times: AVX-512 (64-byte
 * vectors), AVX2 + FMA (32-byte) and baseline (16-byte), and pick one by CPU features at run time.
 * (target_clones would not do: it cannot ask for AVX2 and FMA together, and its arch= clones test
 * CPU models, which this machine's virtual CPU does not report.)
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&                             \
    !defined(__SANITIZE_ADDRESS__)
#define KM_MULTI 1
#endif
#define KM_CLONES

/* xoshiro256** seeded by splitmix64: small, fast, reproducible everywhere. */
struct km_rng {
	uint64_t s[4];
};

static uint64_t
km_splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void
km_rng_seed(struct km_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = km_splitmix(&seed);
}

static inline uint64_t
km_rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t
km_rng_next(struct km_rng *r)
{
	uint64_t *s = r->s, res = km_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = km_rotl(s[3], 45);
	return res;
}

/* Uniform in [0, 1). */
static double
km_rng_double(struct km_rng *r)
{
	return (double)(km_rng_next(r) >> 11) * 0x1.0p-53;
}

static size_t
km_rng_below(struct km_rng *r, size_t n)
{
	return (size_t)(km_rng_double(r) * (double)n) % n;
}

/*
 * Runs fn(arg, chunk) for every chunk; each thread takes the next chunk not yet
 * taken, so a thread the (shared) machine holds back does not hold up the
 * others. Each chunk writes only its own partial results, which are combined
 * in chunk order: which thread ran a chunk never changes a result.
 */
struct km_worker {
	void (*fn)(void *, size_t);
	void *arg;
	size_t nchunks;
	_Atomic size_t *next;
};

static void *
km_worker_main(void *a)
{
	struct km_worker *w = a;

	for (size_t c;
	     (c = atomic_fetch_add_explicit(w->next, 1, memory_order_relaxed)) < w->nchunks;)
		w->fn(w->arg, c);
	return NULL;
}

static void
km_parallel(void (*fn)(void *, size_t), void *arg, size_t nchunks, size_t nthreads)
{
	pthread_t th[16];
	struct km_worker w[16];
	_Atomic size_t next = 0;
	size_t started = 0;

	if (nthreads > 16)
		nthreads = 16;
	if (nthreads > nchunks)
		nthreads = nchunks;
	if (nthreads <= 1) {
		for (size_t c = 0; c < nchunks; c++)
			fn(arg, c);
		return;
	}
	for (size_t t = 0; t < nthreads; t++)
		w[t] = (struct km_worker){fn, arg, nchunks, &next};
	for (size_t t = 1; t < nthreads; t++) {
		if (pthread_create(&th[t], NULL, km_worker_main, &w[t]) != 0)
			break;
		started = t;
	}
	/* Threads that failed to start leave their chunks to the others. */
	km_worker_main(&w[0]);
	for (size_t t = 1; t <= started; t++)
		pthread_join(th[t], NULL);
}

/*
 * Work space of several MB (the transposed copies): on 2 MB pages where the
 * kernel allows it (transparent huge pages on madvise), so that touching it
 * first costs a few faults instead of one per 4 KB page. free() releases it.
 */
static void *
km_alloc_big(size_t size)
{
	const size_t huge = (size_t)2 << 20;
	void *p;

	if (size < huge)
		return malloc(size);
	p = aligned_alloc(huge, (size + huge - 1) / huge * huge);
#ifdef MADV_HUGEPAGE
	if (p)
		(void)madvise(p, (size + huge - 1) / huge * huge, MADV_HUGEPAGE);
#endif
	return p;
}

/* Baseline: 16-byte vectors, what SSE2 (and any target) holds natively. */
#define KM_VBYTES 16
#define T	  double
#define ITYPE	  int64_t
#define SFX	  f64
#define KM_F64
#include "kmeans_impl.h"
#undef T
#undef ITYPE
#undef SFX
#undef KM_F64

#define T     float
#define ITYPE int32_t
#define SFX   f32
#include "kmeans_impl.h"
#undef T
#undef ITYPE
#undef SFX
#undef KM_VBYTES

#ifdef KM_MULTI
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define KM_VBYTES 32
#define T	  double
#define ITYPE	  int64_t
#define SFX	  f64_avx2
#define KM_F64
#include "kmeans_impl.h"
#undef T
#undef ITYPE
#undef SFX
#undef KM_F64
#define T     float
#define ITYPE int32_t
#define SFX   f32_avx2
#include "kmeans_impl.h"
#undef T
#undef ITYPE
#undef SFX
#undef KM_VBYTES
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx2,fma")
#define KM_VBYTES KM_AVX512_VBYTES
#define T	  double
#define ITYPE	  int64_t
#define SFX	  f64_avx512
#define KM_F64
#include "kmeans_impl.h"
#undef T
#undef ITYPE
#undef SFX
#undef KM_F64
#define T     float
#define ITYPE int32_t
#define SFX   f32_avx512
#include "kmeans_impl.h"
#undef T
#undef ITYPE
#undef SFX
#undef KM_VBYTES
#pragma GCC pop_options
#endif

#ifdef KM_MULTI
/* 2: AVX-512 + FMA, 1: AVX2 + FMA, 0: baseline. Decided once. */
static int km_isa_level;
static pthread_once_t km_isa_once = PTHREAD_ONCE_INIT;

static void
km_isa_init(void)
{
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
	    __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma"))
		km_isa_level = 2;
	else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		km_isa_level = 1;
	/* A lower level may be forced, to compare variants (tests, benchmarks). */
	if (getenv("PAYGUARD_KMEANS_ISA")) {
		int v = atoi(getenv("PAYGUARD_KMEANS_ISA"));
		if (v >= 0 && v < km_isa_level)
			km_isa_level = v;
	}
}

static int
km_isa(void)
{
	pthread_once(&km_isa_once, km_isa_init);
	return km_isa_level;
}
#endif

/* Calls the variant for this CPU. */
#ifdef KM_MULTI
#define KM_DISPATCH(fn, ...)                                                                       \
	do {                                                                                       \
		int isa_ = km_isa();                                                               \
		if (isa_ == 2)                                                                     \
			return fn##_avx512(__VA_ARGS__);                                           \
		if (isa_ == 1)                                                                     \
			return fn##_avx2(__VA_ARGS__);                                             \
		return fn(__VA_ARGS__);                                                            \
	} while (0)
#else
#define KM_DISPATCH(fn, ...) return fn(__VA_ARGS__)
#endif

void
pg_kmeans_params_init(struct pg_kmeans_params *p, size_t k)
{
	memset(p, 0, sizeof(*p));
	p->k = k;
	p->max_iter = 300;
	p->tol = 1e-4;
	p->n_init = 1;
	p->algo = PG_KMEANS_LLOYD;
	p->n_threads = 1;
}

static int
check_args(const void *x, int dtype, size_t n, size_t d, size_t k)
{
	if (!x || d == 0 || n == 0)
		return pg_error(PG_EINVAL, "kmeans", "empty data (%zu rows x %zu columns)", n, d);
	if (k == 0 || k > n)
		return pg_error(PG_EINVAL, "kmeans", "k = %zu but there are %zu rows", k, n);
	if (dtype != PG_KMEANS_F64 && dtype != PG_KMEANS_F32)
		return pg_error(PG_EINVAL, "kmeans", "unknown element type %d", dtype);
	if (n > (size_t)INT32_MAX || d > (1u << 20) || k > (1u << 20))
		return pg_error(PG_ERANGE, "kmeans", "%zu x %zu with k = %zu is too large", n, d,
				k);
	return 0;
}

int
pg_kmeans_fit(const void *x, int dtype, size_t n, size_t d, const struct pg_kmeans_params *p,
	      int32_t *labels, double *centers, struct pg_kmeans_info *info)
{
	struct pg_kmeans_info tmp;
	int rc = check_args(x, dtype, n, d, p ? p->k : 0);

	if (rc < 0)
		return rc;
	if (p->max_iter < 1)
		return pg_error(PG_EINVAL, "kmeans", "max_iter must be at least 1");
	if (!info)
		info = &tmp;
	if (dtype == PG_KMEANS_F64)
		KM_DISPATCH(fit_f64, x, n, d, p, labels, centers, info);
	KM_DISPATCH(fit_f32, x, n, d, p, labels, centers, info);
}

int
pg_kmeans_plusplus(const void *x, int dtype, size_t n, size_t d, size_t k, uint64_t seed,
		   double *centers)
{
	return pg_kmeans_plusplus_mt(x, dtype, n, d, k, seed, 1, centers);
}

int
pg_kmeans_plusplus_mt(const void *x, int dtype, size_t n, size_t d, size_t k, uint64_t seed,
		      int n_threads, double *centers)
{
	struct km_rng rng;
	int rc = check_args(x, dtype, n, d, k);

	if (rc < 0)
		return rc;
	km_rng_seed(&rng, seed);
	if (dtype == PG_KMEANS_F64)
		KM_DISPATCH(plusplus_alone_f64, x, n, d, k, &rng, n_threads, centers);
	KM_DISPATCH(plusplus_alone_f32, x, n, d, k, &rng, n_threads, centers);
}

int
pg_kmeans_silhouette(const double *x, size_t n, size_t d, const int32_t *labels, size_t k,
		     double *score)
{
	return pg_kmeans_silhouette_mt(x, n, d, labels, k, 1, score);
}

int
pg_kmeans_silhouette_mt(const double *x, size_t n, size_t d, const int32_t *labels, size_t k,
			int n_threads, double *score)
{
	size_t cnt[64] = {0};

	if (n == 0 || d == 0 || k == 0 || k > 64)
		return pg_error(PG_EINVAL, "kmeans", "silhouette of %zu rows, %zu columns, k %zu",
				n, d, k);
	for (size_t i = 0; i < n; i++) {
		if (labels[i] < 0 || (size_t)labels[i] >= k)
			return pg_error(PG_EINVAL, "kmeans", "label %d of row %zu out of range",
					labels[i], i);
		cnt[labels[i]]++;
	}
	KM_DISPATCH(silhouette_f64, x, n, d, labels, k, cnt, n_threads > 0 ? (size_t)n_threads : 1,
		    score);
}
