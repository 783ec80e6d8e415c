/*
 * Unit tests of the k-means engine (payguard/kmeans.h): Lloyd and Hamerly
 * agree, float32 follows float64, bad input is refused, empty clusters are
 * relocated, results do not depend on the thread count, the k-means++
 * seeding picks the rows the plain algorithm picks. The comparison with
 * scikit-learn is tests/integration/load/sklearn_compare.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/error.h"
#include "payguard/kmeans.h"
#include "payguard/log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Four Gaussian-ish blobs in d dimensions from a fixed LCG. */
static double *
blobs(size_t n, size_t d, uint64_t seed)
{
	double *x = malloc(n * d * sizeof(double));
	uint64_t s = seed;

	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < d; j++) {
			double u = 0;
			for (int r = 0; r < 4; r++) {
				s = s * 6364136223846793005ULL + 1442695040888963407ULL;
				u += (double)(s >> 11) * 0x1.0p-53;
			}
			x[i * d + j] = (double)((i % 4) * 3 * (j % 2 ? 1 : -1)) + (u - 2);
		}
	return x;
}

static void
test_lloyd_hamerly_agree(void **state)
{
	size_t n = 20000, d = 5, k = 6;
	double *x = blobs(n, d, 1), c1[6 * 5], c2[6 * 5];
	int32_t *l1 = malloc(n * sizeof(int32_t)), *l2 = malloc(n * sizeof(int32_t));
	struct pg_kmeans_params p;
	struct pg_kmeans_info i1, i2;

	(void)state;
	pg_kmeans_params_init(&p, k);
	p.seed = 3;
	p.n_init = 2;
	assert_int_equal(pg_kmeans_fit(x, PG_KMEANS_F64, n, d, &p, l1, c1, &i1), 0);
	p.algo = PG_KMEANS_HAMERLY;
	p.n_threads = 2;
	assert_int_equal(pg_kmeans_fit(x, PG_KMEANS_F64, n, d, &p, l2, c2, &i2), 0);
	assert_memory_equal(l1, l2, n * sizeof(int32_t));
	assert_true(fabs(i1.inertia - i2.inertia) <= 1e-9 * i1.inertia);
	assert_int_equal(i1.n_iter, i2.n_iter);
	for (size_t i = 0; i < k * d; i++)
		assert_true(fabs(c1[i] - c2[i]) <= 1e-9 * (fabs(c1[i]) + 1));
	free(x);
	free(l1);
	free(l2);
}

static void
test_float32(void **state)
{
	size_t n = 10000, d = 3, k = 4;
	double *x = blobs(n, d, 2), c1[12], c2[12];
	float *xf = malloc(n * d * sizeof(float));
	int32_t *l1 = malloc(n * sizeof(int32_t)), *l2 = malloc(n * sizeof(int32_t));
	struct pg_kmeans_params p;
	struct pg_kmeans_info i1, i2;
	size_t same = 0;

	(void)state;
	for (size_t i = 0; i < n * d; i++)
		xf[i] = (float)x[i];
	pg_kmeans_params_init(&p, k);
	p.seed = 9;
	assert_int_equal(pg_kmeans_fit(x, PG_KMEANS_F64, n, d, &p, l1, c1, &i1), 0);
	assert_int_equal(pg_kmeans_fit(xf, PG_KMEANS_F32, n, d, &p, l2, c2, &i2), 0);
	for (size_t i = 0; i < n; i++)
		same += l1[i] == l2[i];
	assert_true(same >= n * 99 / 100);
	assert_true(fabs(i1.inertia - i2.inertia) <= 1e-3 * i1.inertia);
	free(x);
	free(xf);
	free(l1);
	free(l2);
}

static void
test_bad_input(void **state)
{
	double x[8] = {1, 2, 3, 4, 5, NAN, 7, 8}, c[4];
	int32_t l[4];
	struct pg_kmeans_params p;

	(void)state;
	pg_kmeans_params_init(&p, 2);
	assert_int_equal(pg_kmeans_fit(x, PG_KMEANS_F64, 4, 2, &p, l, c, NULL), PG_EINVAL);
	assert_non_null(strstr(pg_last_error(), "not finite"));
	x[5] = 6;
	p.k = 5;
	assert_int_equal(pg_kmeans_fit(x, PG_KMEANS_F64, 4, 2, &p, l, c, NULL), PG_EINVAL);
	p.k = 0;
	assert_int_equal(pg_kmeans_fit(x, PG_KMEANS_F64, 4, 2, &p, l, c, NULL), PG_EINVAL);
	p.k = 2;
	assert_int_equal(pg_kmeans_fit(x, PG_KMEANS_F64, 4, 2, &p, l, c, NULL), 0);
}

static void
test_relocation(void **state)
{
	/* The third initial center is far from every point: its cluster starts empty. */
	double x[12] = {0, 0, 0.1, 0, 0, 0.1, 5, 5, 5.1, 5, 5, 5.1};
	double init[6] = {0, 0, 5, 5, 100, 100}, c[6];
	int32_t l[6];
	struct pg_kmeans_params p;
	struct pg_kmeans_info info;
	int used[3] = {0};

	(void)state;
	for (int algo = 0; algo < 2; algo++) {
		pg_kmeans_params_init(&p, 3);
		p.init = init;
		p.algo = algo;
		assert_int_equal(pg_kmeans_fit(x, PG_KMEANS_F64, 6, 2, &p, l, c, &info), 0);
		assert_true(info.relocated >= 1);
		memset(used, 0, sizeof(used));
		for (int i = 0; i < 6; i++)
			used[l[i]] = 1;
		assert_true(used[0] && used[1] && used[2]);
		assert_true(c[4] < 10 && c[5] < 10);
	}
}

static void
test_threads_deterministic(void **state)
{
	size_t n = 50000, d = 4, k = 8;
	double *x = blobs(n, d, 4), c1[32], c2[32];
	int32_t *l1 = malloc(n * sizeof(int32_t)), *l2 = malloc(n * sizeof(int32_t));
	struct pg_kmeans_params p;
	struct pg_kmeans_info i1, i2;

	(void)state;
	pg_kmeans_params_init(&p, k);
	p.seed = 11;
	p.algo = PG_KMEANS_HAMERLY;
	assert_int_equal(pg_kmeans_fit(x, PG_KMEANS_F64, n, d, &p, l1, c1, &i1), 0);
	p.n_threads = 2;
	assert_int_equal(pg_kmeans_fit(x, PG_KMEANS_F64, n, d, &p, l2, c2, &i2), 0);
	assert_memory_equal(l1, l2, n * sizeof(int32_t));
	assert_memory_equal(c1, c2, sizeof(c1));
	assert_true(i1.inertia == i2.inertia);
	free(x);
	free(l1);
	free(l2);
}

/*
 * The plain greedy k-means++ the engine's pruned, blocked, threaded one must
 * equal: every candidate's distance to every point, potentials summed in
 * order, with the engine's generator (xoshiro256** seeded by splitmix64).
 */
static uint64_t
ref_splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double
ref_rand(uint64_t *s)
{
	uint64_t res = ((s[1] * 5) << 7 | (s[1] * 5) >> 57) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = (s[3] << 45) | (s[3] >> 19);
	return (double)(res >> 11) * 0x1.0p-53;
}

static void
ref_plusplus(const double *x, size_t n, size_t d, size_t k, uint64_t seed, double *centers)
{
	uint64_t s[4];
	size_t trials = 2 + (size_t)log((double)k), ids[16], row;
	double *closest = malloc(n * sizeof(double)), *cand = malloc(trials * n * sizeof(double));
	double pot = 0;

	for (int i = 0; i < 4; i++)
		s[i] = ref_splitmix(&seed);
	row = (size_t)(ref_rand(s) * (double)n) % n;
	memcpy(centers, x + row * d, d * sizeof(double));
	for (size_t i = 0; i < n; i++) {
		closest[i] = 0;
		for (size_t j = 0; j < d; j++)
			closest[i] +=
			    (x[i * d + j] - x[row * d + j]) * (x[i * d + j] - x[row * d + j]);
		pot += closest[i];
	}
	for (size_t c = 1; c < k; c++) {
		double best_pot = INFINITY;
		size_t best = 0;
		for (size_t t = 0; t < trials; t++) {
			double r = ref_rand(s) * pot, acc = 0;
			size_t i = 0;
			while (i < n - 1 && acc + closest[i] < r)
				acc += closest[i++];
			ids[t] = i;
		}
		for (size_t t = 0; t < trials; t++) {
			double tp = 0;
			for (size_t i = 0; i < n; i++) {
				double v = 0;
				for (size_t j = 0; j < d; j++)
					v += (x[i * d + j] - x[ids[t] * d + j]) *
					     (x[i * d + j] - x[ids[t] * d + j]);
				cand[t * n + i] = v < closest[i] ? v : closest[i];
				tp += cand[t * n + i];
			}
			if (tp < best_pot) {
				best_pot = tp;
				best = t;
			}
		}
		pot = best_pot;
		memcpy(closest, cand + best * n, n * sizeof(double));
		memcpy(centers + c * d, x + ids[best] * d, d * sizeof(double));
	}
	free(closest);
	free(cand);
}

/*
 * The seeding skips distances the triangle inequality rules out, keeps the
 * sampling sums in blocks and spreads chunks on threads: none of it may change
 * which rows it picks. Shapes cover the transposed kernels (d <= 64, with and
 * without the skip test), the row kernel (d > 64), several chunks and ragged
 * ends.
 */
static void
test_plusplus_reference(void **state)
{
	static const size_t shapes[][3] = {{9001, 2, 5},   {9001, 5, 12}, {5003, 16, 8},
					   {5003, 32, 20}, {3001, 64, 9}, {3001, 70, 6}};

	(void)state;
	for (size_t sh = 0; sh < sizeof(shapes) / sizeof(shapes[0]); sh++) {
		size_t n = shapes[sh][0], d = shapes[sh][1], k = shapes[sh][2];
		double *x = malloc(n * d * sizeof(double)), *want = malloc(k * d * sizeof(double)),
		       *got = malloc(k * d * sizeof(double));

		uint64_t r = 7 + sh;

		/* Six blobs of varied spread (blobs() above wraps its negative offsets). */
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; j < d; j++) {
				r = r * 6364136223846793005ULL + 1442695040888963407ULL;
				x[i * d + j] =
				    (double)((int)((i * 7 + j) % 6) * 4 - 10) +
				    (double)(i % 6 + 1) * ((double)(r >> 11) * 0x1.0p-53 - 0.5);
			}
		ref_plusplus(x, n, d, k, 42 + sh, want);
		for (int th = 1; th <= 2; th++) {
			memset(got, 0, k * d * sizeof(double));
			assert_int_equal(
			    pg_kmeans_plusplus_mt(x, PG_KMEANS_F64, n, d, k, 42 + sh, th, got), 0);
			if (memcmp(got, want, k * d * sizeof(double)) != 0)
				fail_msg(
				    "k-means++ %zu x %zu, k = %zu, %d thread(s): centers differ "
				    "from the plain algorithm's",
				    n, d, k, th);
		}
		assert_int_equal(pg_kmeans_plusplus(x, PG_KMEANS_F64, n, d, k, 42 + sh, got), 0);
		assert_memory_equal(got, want, k * d * sizeof(double));
		free(x);
		free(want);
		free(got);
	}
}

/*
 * Plain Lloyd with the engine's rules (strict stop on unchanged labels, else a
 * final assignment), tol = 0 and a fixed iteration budget: what the fused
 * small-d kernel (ragged last block) and the blocked large-d kernel (k not a
 * multiple of the centers per step) must reproduce, in the first pass (fresh
 * sums) and in the later ones (only changed points moved in each chunk's
 * sums), with Lloyd and with Hamerly. test_load_kmeans runs whichever variant
 * its build has (the baseline one under the sanitizers);
 * test_load_kmeans_simd and test_load_kmeans_simd_base run the same tests on the
 * vector engine built without sanitizers, AVX2 and baseline chosen by
 * PAYGUARD_KMEANS_ISA.
 */
static double
ref_lloyd(const double *x, size_t n, size_t d, size_t k, int iters, const double *init,
	  int32_t *lab, double *c)
{
	double *sum = malloc(k * (d + 1) * sizeof(double)), inertia = 0;
	int strict = 0;

	memcpy(c, init, k * d * sizeof(double));
	for (size_t i = 0; i < n; i++)
		lab[i] = -1;
	for (int it = 0; it <= iters && !strict; it++) {
		size_t changed = 0;
		for (size_t i = 0; i < n; i++) {
			double best = INFINITY;
			int32_t b = 0;
			for (size_t q = 0; q < k; q++) {
				double v = 0;
				for (size_t j = 0; j < d; j++)
					v += (x[i * d + j] - c[q * d + j]) *
					     (x[i * d + j] - c[q * d + j]);
				if (v < best) {
					best = v;
					b = (int32_t)q;
				}
			}
			changed += lab[i] != b;
			lab[i] = b;
		}
		if (it == iters)
			break; /* the final assignment */
		memset(sum, 0, k * (d + 1) * sizeof(double));
		for (size_t i = 0; i < n; i++) {
			for (size_t j = 0; j < d; j++)
				sum[(size_t)lab[i] * d + j] += x[i * d + j];
			sum[k * d + (size_t)lab[i]] += 1;
		}
		for (size_t q = 0; q < k; q++)
			for (size_t j = 0; j < d; j++)
				c[q * d + j] = sum[q * d + j] / sum[k * d + q];
		strict = changed == 0;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < d; j++)
			inertia += (x[i * d + j] - c[(size_t)lab[i] * d + j]) *
				   (x[i * d + j] - c[(size_t)lab[i] * d + j]);
	free(sum);
	return inertia;
}

static void
test_kernels_reference(void **state)
{
	/* Odd d (not a multiple of 4 or 8), k not a multiple of 4, n not a
	 * multiple of the 16-point block nor of the 4096-row chunk; several chunks;
	 * k * d past the vector lane sums (256) with d <= 16 and d > 16. */
	static const size_t shapes[][3] = {
	    {1443, 4, 3},   {1000, 2, 5},   {2001, 16, 8}, {3001, 32, 20}, {2000, 40, 7},
	    {1500, 64, 13}, {9001, 5, 9},   {8203, 3, 6},  {5003, 8, 40},  {4099, 11, 6},
	    {6007, 24, 10}, {4501, 16, 23}, {3003, 7, 64}};

	(void)state;
	for (size_t sh = 0; sh < sizeof(shapes) / sizeof(shapes[0]); sh++) {
		size_t n = shapes[sh][0], d = shapes[sh][1], k = shapes[sh][2], same = 0;
		double *x = blobs(n, d, 20 + sh), *init = malloc(k * d * sizeof(double));
		double *want = malloc(k * d * sizeof(double)),
		       *got = malloc(k * d * sizeof(double));
		int32_t *lw = malloc(n * sizeof(int32_t)), *lg = malloc(n * sizeof(int32_t));
		float *xf = malloc(n * d * sizeof(float));
		struct pg_kmeans_params p;
		struct pg_kmeans_info info;
		double ref;

		for (size_t q = 0; q < k; q++) /* rows spread over the data, all distinct */
			memcpy(init + q * d, x + (q * 97 % n) * d, d * sizeof(double));
		ref = ref_lloyd(x, n, d, k, 4, init, lw, want);
		pg_kmeans_params_init(&p, k);
		p.init = init;
		p.max_iter = 4;
		p.tol = 0;
		assert_int_equal(pg_kmeans_fit(x, PG_KMEANS_F64, n, d, &p, lg, got, &info), 0);
		if (memcmp(lw, lg, n * sizeof(int32_t)) != 0)
			fail_msg("Lloyd %zu x %zu, k = %zu: labels differ from the plain loop's", n,
				 d, k);
		for (size_t i = 0; i < k * d; i++)
			assert_true(fabs(got[i] - want[i]) <= 1e-9 * (fabs(want[i]) + 1));
		assert_true(fabs(info.inertia - ref) <= 1e-9 * ref);
		/* Hamerly's bounds skip work, never change a label. */
		p.algo = PG_KMEANS_HAMERLY;
		p.n_threads = 2;
		assert_int_equal(pg_kmeans_fit(x, PG_KMEANS_F64, n, d, &p, lg, got, &info), 0);
		if (memcmp(lw, lg, n * sizeof(int32_t)) != 0)
			fail_msg("Hamerly %zu x %zu, k = %zu: labels differ from the plain loop's",
				 n, d, k);
		for (size_t i = 0; i < k * d; i++)
			assert_true(fabs(got[i] - want[i]) <= 1e-9 * (fabs(want[i]) + 1));
		assert_true(fabs(info.inertia - ref) <= 1e-9 * ref);
		p.algo = PG_KMEANS_LLOYD;
		p.n_threads = 1;
		/* float32 data: the same up to float rounding. */
		for (size_t i = 0; i < n * d; i++) {
			xf[i] = (float)x[i];
			x[i] = xf[i];
		}
		ref = ref_lloyd(x, n, d, k, 4, init, lw, want);
		assert_int_equal(pg_kmeans_fit(xf, PG_KMEANS_F32, n, d, &p, lg, got, &info), 0);
		for (size_t i = 0; i < n; i++)
			same += lw[i] == lg[i];
		if (same < n - n / 500)
			fail_msg("float32 Lloyd %zu x %zu, k = %zu: %zu of %zu labels agree", n, d,
				 k, same, n);
		assert_true(fabs(info.inertia - ref) <= 1e-4 * ref);
		for (size_t i = 0; same == n && i < k * d; i++)
			assert_true(fabs(got[i] - want[i]) <= 1e-4 * (fabs(want[i]) + 1));
		free(x);
		free(xf);
		free(init);
		free(want);
		free(got);
		free(lw);
		free(lg);
	}
}

static void
test_silhouette(void **state)
{
	double x[8] = {0, 0, 0, 1, 10, 10, 10, 11}, s;
	int32_t good[4] = {0, 0, 1, 1}, bad[4] = {0, 1, 0, 1};

	(void)state;
	assert_int_equal(pg_kmeans_silhouette(x, 4, 2, good, 2, &s), 0);
	assert_true(s > 0.9);
	assert_int_equal(pg_kmeans_silhouette(x, 4, 2, bad, 2, &s), 0);
	assert_true(s < 0);
}

/* The silhouette by its definition, one pair at a time (the reference). */
static double
silhouette_ref(const double *x, size_t n, size_t d, const int32_t *lab, size_t k)
{
	double tot = 0, sum[8];
	size_t cnt[8] = {0};

	for (size_t i = 0; i < n; i++)
		cnt[lab[i]]++;
	for (size_t i = 0; i < n; i++) {
		double a, b = INFINITY;
		size_t own = (size_t)lab[i];

		memset(sum, 0, sizeof(sum));
		for (size_t j = 0; j < n; j++) {
			double dd = 0;
			for (size_t t = 0; t < d; t++)
				dd += (x[i * d + t] - x[j * d + t]) * (x[i * d + t] - x[j * d + t]);
			sum[lab[j]] += sqrt(dd);
		}
		if (cnt[own] <= 1)
			continue;
		a = sum[own] / (double)(cnt[own] - 1);
		for (size_t c = 0; c < k; c++)
			if (c != own && cnt[c] > 0 && sum[c] / (double)cnt[c] < b)
				b = sum[c] / (double)cnt[c];
		if (isfinite(b) && (a > 0 || b > 0))
			tot += (b - a) / (a > b ? a : b);
	}
	return tot / (double)n;
}

/*
 * The vectorised, label-grouped silhouette against the definition: sizes that
 * leave lane tails, d = 4 (the estimator's) and others, a singleton cluster
 * (scores 0), an empty one (ignored), overlapping clusters; the same score on
 * one thread and three; bad labels refused.
 */
static void
test_silhouette_reference(void **state)
{
	static const size_t ns[] = {2, 7, 37, 500, 1203}, ds[] = {1, 3, 4, 9};
	uint64_t r = 42;

	(void)state;
	for (size_t a = 0; a < sizeof(ns) / sizeof(ns[0]); a++)
		for (size_t b = 0; b < sizeof(ds) / sizeof(ds[0]); b++) {
			size_t n = ns[a], d = ds[b], k = 6;
			double *x = malloc(n * d * sizeof(double)), s1, s3, want;
			int32_t *lab = malloc(n * sizeof(int32_t));

			for (size_t i = 0; i < n; i++) {
				r = r * 6364136223846793005ULL + 1442695040888963407ULL;
				/* Label 4 stays empty; row 0 alone has label 5. */
				lab[i] = i == 0 ? 5 : (int32_t)((r >> 33) % 4);
				for (size_t j = 0; j < d; j++) {
					r = r * 6364136223846793005ULL + 1442695040888963407ULL;
					x[i * d + j] =
					    3.0 * lab[i] + (double)(r >> 11) * 0x1p-53 * 4;
				}
			}
			want = silhouette_ref(x, n, d, lab, k);
			assert_int_equal(pg_kmeans_silhouette(x, n, d, lab, k, &s1), 0);
			assert_int_equal(pg_kmeans_silhouette_mt(x, n, d, lab, k, 3, &s3), 0);
			assert_true(fabs(s1 - want) <= 1e-12 * (fabs(want) + 1e-3));
			assert_true(s1 == s3);
			lab[n - 1] = 6;
			assert_int_equal(pg_kmeans_silhouette(x, n, d, lab, k, &s1), PG_EINVAL);
			lab[n - 1] = -1;
			assert_int_equal(pg_kmeans_silhouette_mt(x, n, d, lab, k, 2, &s1),
					 PG_EINVAL);
			free(x);
			free(lab);
		}
}

/*
 * Fits of at most 4,096 rows (the two-level job's per-VM fits) take their own
 * path (kmeans_small.h): the same labels, centers and iteration count as the
 * general path (PAYGUARD_KMEANS_SMALL=0), and the same inertia (n_init
 * picks its run by it, so even its rounding must agree), for
 * float32 and float64, d from 1 to 16, partial last blocks, k-means++ with
 * restarts and given centers, a tol stop and strict convergence, and an
 * empty cluster that must be relocated.
 */
static void
test_small_path(void **state)
{
	static const size_t ns[] = {3, 17, 1440, 4096}, ds[] = {1, 2, 4, 5, 16}, ks[] = {1, 3, 8};
	uint64_t r = 7;

	(void)state;
	for (size_t a = 0; a < 4; a++)
		for (size_t b = 0; b < 5; b++)
			for (size_t c = 0; c < 3; c++)
				for (int f32 = 0; f32 < 2; f32++) {
					size_t n = ns[a], d = ds[b], k = ks[c];
					double *x = malloc(n * d * sizeof(double)), init[8 * 16];
					float *xf = malloc(n * d * sizeof(float));
					int32_t *l1 = malloc(n * sizeof(int32_t)),
						*l2 = malloc(n * sizeof(int32_t));
					double c1[8 * 16], c2[8 * 16];
					struct pg_kmeans_params p;
					struct pg_kmeans_info i1, i2;

					if (k > n)
						k = n;
					for (size_t i = 0; i < n * d; i++) {
						r = r * 6364136223846793005ULL +
						    1442695040888963407ULL;
						x[i] = (double)(i / d % 5) * 2 +
						       (double)(r >> 11) * 0x1p-53;
						xf[i] = (float)x[i];
					}
					pg_kmeans_params_init(&p, k);
					p.n_init = 3;
					p.seed = a * 100 + b * 10 + c;
					if (c == 2 && n > 100) {
						/* Given centers, one far away: its cluster empties.
						 */
						for (size_t i = 0; i < k * d; i++)
							init[i] = x[i * 7 % (n * d)];
						for (size_t j = 0; j < d; j++)
							init[j] = 1e3;
						p.init = init;
					}
					if (b == 1)
						p.tol = 0; /* strict convergence only */
					assert_int_equal(setenv("PAYGUARD_KMEANS_SMALL", "0", 1),
							 0);
					assert_int_equal(
					    pg_kmeans_fit(f32 ? (void *)xf : (void *)x,
							  f32 ? PG_KMEANS_F32 : PG_KMEANS_F64, n, d,
							  &p, l1, c1, &i1),
					    0);
					assert_int_equal(unsetenv("PAYGUARD_KMEANS_SMALL"), 0);
					assert_int_equal(
					    pg_kmeans_fit(f32 ? (void *)xf : (void *)x,
							  f32 ? PG_KMEANS_F32 : PG_KMEANS_F64, n, d,
							  &p, l2, c2, &i2),
					    0);
					assert_memory_equal(l1, l2, n * sizeof(int32_t));
					assert_memory_equal(c1, c2, k * d * sizeof(double));
					assert_int_equal(i1.n_iter, i2.n_iter);
					assert_int_equal(i1.relocated, i2.relocated);
					assert_true(i1.inertia == i2.inertia);
					if (c == 2 && n > 100)
						assert_true(i2.relocated > 0);
					free(x);
					free(xf);
					free(l1);
					free(l2);
				}
}

/*
 * Float64 Lloyd at d = 16 over more than one chunk takes the row path (no
 * transposed copy; PAYGUARD_KMEANS_ROWS=0 turns it off). Against the
 * transposed kernels: the same labels, iteration count and relocations,
 * centers and inertia to rounding (the distances sum in another order), for
 * k from 1 to 64 (centers go four at a time, the last group padded), a tol
 * stop, strict convergence (its inertia from the labels kept), fits long
 * enough to leave the row path half-way, and two equal initial centers (ties
 * to the lower index, then a relocation). Any thread count gives the same
 * bits. NaN or infinity is refused with given centers too, which leave the
 * variance to the row path's first pass.
 */
static void
row_fit(const double *x, size_t n, const struct pg_kmeans_params *p, int rows, int32_t *l,
	double *c, struct pg_kmeans_info *info)
{
	if (!rows)
		assert_int_equal(setenv("PAYGUARD_KMEANS_ROWS", "0", 1), 0);
	assert_int_equal(pg_kmeans_fit(x, PG_KMEANS_F64, n, 16, p, l, c, info), 0);
	assert_int_equal(unsetenv("PAYGUARD_KMEANS_ROWS"), 0);
}

static void
test_row_path(void **state)
{
	static const size_t ks[] = {1, 3, 4, 5, 8, 13, 64};
	size_t n = 3 * 4096 + 123, d = 16;
	double *x = blobs(n, d, 21), *init = malloc(64 * d * sizeof(double));
	double *c1 = malloc(64 * d * sizeof(double)), *c2 = malloc(64 * d * sizeof(double));
	int32_t *l1 = malloc(n * sizeof(int32_t)), *l2 = malloc(n * sizeof(int32_t));
	struct pg_kmeans_params p;
	struct pg_kmeans_info i1, i2;
	int left = 0, strict = 0;

	(void)state;
	for (size_t a = 0; a < sizeof(ks) / sizeof(ks[0]); a++)
		for (int v = 0; v < 4; v++) {
			size_t k = ks[a];

			pg_kmeans_params_init(&p, k);
			p.max_iter = 40; /* past the row path's passes, and quick */
			for (size_t i = 0; i < k * d; i++)
				init[i] = x[(i / d * 97 + 5) % n * d + i % d];
			p.init = init;
			if (v == 1)
				p.tol = 0; /* strict convergence only */
			if (v == 2 && k > 1)
				memcpy(init + d, init,
				       d * sizeof(double)); /* a tie, an empty cluster */
			if (v == 3) {
				p.init = NULL; /* k-means++, the variance taken beforehand */
				p.n_init = 2;
				p.seed = k;
			}
			p.n_threads = 2;
			row_fit(x, n, &p, 0, l1, c1, &i1);
			row_fit(x, n, &p, 1, l2, c2, &i2);
			assert_memory_equal(l1, l2, n * sizeof(int32_t));
			assert_int_equal(i1.n_iter, i2.n_iter);
			assert_int_equal(i1.relocated, i2.relocated);
			assert_true(fabs(i1.inertia - i2.inertia) <= 1e-12 * i1.inertia);
			for (size_t i = 0; i < k * d; i++)
				assert_true(fabs(c1[i] - c2[i]) <= 1e-12 * (fabs(c1[i]) + 1));
			strict += v == 1 && i2.n_iter < p.max_iter;
			if (v == 2 && k > 1)
				assert_true(i2.relocated > 0);
			left += i2.n_iter > 3;
			if (v != 0)
				continue;
			/* The thread count changes nothing. */
			p.n_threads = 1;
			row_fit(x, n, &p, 1, l1, c1, &i1);
			p.n_threads = 5;
			row_fit(x, n, &p, 1, l2, c2, &i2);
			assert_memory_equal(l1, l2, n * sizeof(int32_t));
			assert_memory_equal(c1, c2, k * d * sizeof(double));
			assert_true(i1.inertia == i2.inertia);
		}
	/* Some fits ran past the row path's passes; some stopped on unchanged labels. */
	assert_true(left > 0);
	assert_true(strict > 0);
	/* Refused in the row path's first pass, and (k-means++) while transposing. */
	for (int v = 0; v < 4; v++) {
		double keep = x[5000 * d + 7];

		pg_kmeans_params_init(&p, 8);
		p.init = v < 2 ? init : NULL;
		x[5000 * d + 7] = v % 2 ? INFINITY : NAN;
		assert_int_equal(pg_kmeans_fit(x, PG_KMEANS_F64, n, d, &p, l1, c1, NULL),
				 PG_EINVAL);
		assert_non_null(strstr(pg_last_error(), "row 5000, column 7 is not finite"));
		x[5000 * d + 7] = keep;
	}
	free(x);
	free(init);
	free(c1);
	free(c2);
	free(l1);
	free(l2);
}

/*
 * The float32 pre-screen of float64 Lloyd fits (6 <= d <= 12) must leave every
 * result bit for bit as the plain float64 path gives it (PAYGUARD_KMEANS_SCREEN=0):
 * points placed at the midpoints of two centers and nudged by amounts from
 * 1e-1 down to 1e-13 of the centers' spacing, on offsets up to 1e6 where
 * float32 loses most to cancellation, odd d, k not a multiple of 8. With
 * max_iter 1 the centers returned are the means of the first assignment, so
 * any label the screen got wrong there changes them.
 */
static uint64_t
sc_next(uint64_t *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return *s >> 11;
}

static double
sc_unif(uint64_t *s)
{
	return (double)sc_next(s) * 0x1.0p-53;
}

/* f32: the same on the data rounded to float32 (the expansion pre-screen of float32 Lloyd). */
static void
sc_fit_both_t(const double *x, size_t n, size_t d, size_t k, const double *init, int max_iter,
	      int f32)
{
	struct pg_kmeans_params p;
	struct pg_kmeans_info i1, i2;
	int32_t *l1 = malloc(n * sizeof(int32_t)), *l2 = malloc(n * sizeof(int32_t));
	double *c1 = malloc(k * d * sizeof(double)), *c2 = malloc(k * d * sizeof(double));
	float *xf = malloc(n * d * sizeof(float));
	const void *data = x;
	int dt = PG_KMEANS_F64;

	if (f32) {
		for (size_t i = 0; i < n * d; i++)
			xf[i] = (float)x[i];
		data = xf;
		dt = PG_KMEANS_F32;
	}
	pg_kmeans_params_init(&p, k);
	p.init = init;
	p.max_iter = max_iter;
	p.n_threads = 2;
	/* The screens live in the general path: fits of one chunk skip them. */
	assert_int_equal(setenv("PAYGUARD_KMEANS_SMALL", "0", 1), 0);
	assert_int_equal(setenv("PAYGUARD_KMEANS_SCREEN", "0", 1), 0);
	assert_int_equal(pg_kmeans_fit(data, dt, n, d, &p, l1, c1, &i1), 0);
	assert_int_equal(unsetenv("PAYGUARD_KMEANS_SCREEN"), 0);
	assert_int_equal(pg_kmeans_fit(data, dt, n, d, &p, l2, c2, &i2), 0);
	assert_int_equal(unsetenv("PAYGUARD_KMEANS_SMALL"), 0);
	assert_memory_equal(l1, l2, n * sizeof(int32_t));
	assert_memory_equal(c1, c2, k * d * sizeof(double));
	assert_true(i1.inertia == i2.inertia);
	assert_int_equal(i1.n_iter, i2.n_iter);
	free(l1);
	free(l2);
	free(c1);
	free(c2);
	free(xf);
}

static void
sc_fit_both(const double *x, size_t n, size_t d, size_t k, const double *init, int max_iter)
{
	sc_fit_both_t(x, n, d, k, init, max_iter, 0);
}

static void
test_screen_near_ties(void **state)
{
	static const size_t shapes[][2] = {{7, 5}, {9, 13}, {8, 3},  {11, 11},
					   {6, 7}, {12, 9}, {14, 5}, {16, 8}};
	static const double offsets[] = {0, 1e3, 1e6, -3e5};
	size_t n = 3001;
	uint64_t s = 42;

	(void)state;
	for (size_t sh = 0; sh < sizeof(shapes) / sizeof(shapes[0]); sh++)
		for (size_t o = 0; o < sizeof(offsets) / sizeof(offsets[0]); o++) {
			size_t d = shapes[sh][0], k = shapes[sh][1];
			double *x = malloc(n * d * sizeof(double));
			double *c = malloc(k * d * sizeof(double));

			for (size_t i = 0; i < k * d; i++)
				c[i] = offsets[o] + (sc_unif(&s) * 2 - 1) * (1 + (double)(i % 3));
			for (size_t i = 0; i < n; i++) {
				size_t a = sc_next(&s) % k, b = (a + 1 + sc_next(&s) % (k - 1)) % k;
				double nudge = pow(10, -1 - 12 * sc_unif(&s));

				for (size_t j = 0; j < d; j++)
					x[i * d + j] = (c[a * d + j] + c[b * d + j]) / 2 +
						       nudge * (sc_unif(&s) * 2 - 1);
			}
			sc_fit_both(x, n, d, k, c, 1);
			sc_fit_both(x, n, d, k, c, 300);
			free(x);
			free(c);
		}
}

/*
 * The same for float32 data, whose Lloyd fits (d <= 16) assign by the
 * expansion ||c||^2 - 2 x.c under an error bound: bit for bit the direct
 * kernel's results (PAYGUARD_KMEANS_SCREEN=0), also where the nudges vanish
 * in float32 and points tie exactly.
 */
static void
test_xscreen_near_ties(void **state)
{
	static const size_t shapes[][2] = {{2, 3},  {3, 5},   {4, 9},  {5, 13},
					   {8, 16}, {11, 11}, {16, 7}, {13, 4}};
	static const double offsets[] = {0, 1e2, 1e4, -3e3};
	size_t n = 3001;
	uint64_t s = 43;

	(void)state;
	for (size_t sh = 0; sh < sizeof(shapes) / sizeof(shapes[0]); sh++)
		for (size_t o = 0; o < sizeof(offsets) / sizeof(offsets[0]); o++) {
			size_t d = shapes[sh][0], k = shapes[sh][1];
			double *x = malloc(n * d * sizeof(double));
			double *c = malloc(k * d * sizeof(double));

			for (size_t i = 0; i < k * d; i++)
				c[i] = (double)(float)(offsets[o] + (sc_unif(&s) * 2 - 1) *
									(1 + (double)(i % 3)));
			for (size_t i = 0; i < n; i++) {
				size_t a = sc_next(&s) % k, b = (a + 1 + sc_next(&s) % (k - 1)) % k;
				double nudge = pow(10, -1 - 8 * sc_unif(&s));

				for (size_t j = 0; j < d; j++)
					x[i * d + j] = (c[a * d + j] + c[b * d + j]) / 2 +
						       nudge * (sc_unif(&s) * 2 - 1);
			}
			sc_fit_both_t(x, n, d, k, c, 1, 1);
			sc_fit_both_t(x, n, d, k, c, 300, 1);
			free(x);
			free(c);
		}
}

/*
 * Exact ties (integer centers, points at their exact midpoints) go to the lower
 * center index with the screen on, as numpy's argmin does.
 */
static void
test_screen_exact_ties(void **state)
{
	size_t n = 2003, d = 7, k = 6;
	double *x = malloc(n * d * sizeof(double)), c[6 * 7];
	int32_t *l = malloc(n * sizeof(int32_t));
	double cen[6 * 7];
	struct pg_kmeans_params p;
	struct pg_kmeans_info info;
	uint64_t s = 7;

	(void)state;
	for (size_t i = 0; i < k * d; i++)
		c[i] = 2.0 * (double)(sc_next(&s) % 50);
	for (size_t i = 0; i < n; i++) {
		size_t a = sc_next(&s) % k, b = (a + 1 + sc_next(&s) % (k - 1)) % k;
		for (size_t j = 0; j < d; j++)
			x[i * d + j] = (c[a * d + j] + c[b * d + j]) / 2;
	}
	pg_kmeans_params_init(&p, k);
	p.init = c;
	p.max_iter = 1;
	assert_int_equal(pg_kmeans_fit(x, PG_KMEANS_F64, n, d, &p, l, cen, &info), 0);
	/* The labels are the returned centers' nearest, ties to the lower index. */
	for (size_t i = 0; i < n; i++) {
		double best = INFINITY;
		int32_t bi = -1;
		for (size_t ci = 0; ci < k; ci++) {
			double a = 0;
			for (size_t j = 0; j < d; j++)
				a += (x[i * d + j] - cen[ci * d + j]) *
				     (x[i * d + j] - cen[ci * d + j]);
			if (a < best) {
				best = a;
				bi = (int32_t)ci;
			}
		}
		assert_int_equal(l[i], bi);
	}
	sc_fit_both(x, n, d, k, c, 1);
	sc_fit_both(x, n, d, k, c, 300);
	sc_fit_both_t(x, n, d, k, c, 1, 1);
	sc_fit_both_t(x, n, d, k, c, 300, 1);
	free(x);
	free(l);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lloyd_hamerly_agree),
	    cmocka_unit_test(test_float32),
	    cmocka_unit_test(test_bad_input),
	    cmocka_unit_test(test_relocation),
	    cmocka_unit_test(test_threads_deterministic),
	    cmocka_unit_test(test_plusplus_reference),
	    cmocka_unit_test(test_kernels_reference),
	    cmocka_unit_test(test_silhouette),
	    cmocka_unit_test(test_silhouette_reference),
	    cmocka_unit_test(test_small_path),
	    cmocka_unit_test(test_row_path),
	    cmocka_unit_test(test_screen_near_ties),
	    cmocka_unit_test(test_xscreen_near_ties),
	    cmocka_unit_test(test_screen_exact_ties),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
