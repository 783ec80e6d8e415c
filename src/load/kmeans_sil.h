/*
 * The silhouette's pairwise sums (seed 3's choice of the number of fleet
 * types), for double rows only: included at the end of each float64
 * instantiation by kmeans_impl.h, whose FN() names and vector type it uses.
 * The rows are grouped by label and stored transposed, so one row's summed
 * distances to every member of a cluster run over vector lanes, square roots
 * included; rows are spread over the threads by km_parallel.
 */
#ifdef KM_F64

/* Lane-wise square root: the libm call would keep the loop scalar (errno). */
static inline __attribute__((always_inline)) FN(vec) FN(vsqrt)(FN(vec) v)
{
#if defined(__x86_64__) && KM_VBYTES == 64
	__m512d r;
	memcpy(&r, &v, sizeof(r));
	r = _mm512_sqrt_pd(r);
	memcpy(&v, &r, sizeof(v));
#elif defined(__x86_64__) && KM_VBYTES == 32
	__m256d r;
	memcpy(&r, &v, sizeof(r));
	r = _mm256_sqrt_pd(r);
	memcpy(&v, &r, sizeof(v));
#elif defined(__x86_64__) && KM_VBYTES == 16
	__m128d r;
	memcpy(&r, &v, sizeof(r));
	r = _mm_sqrt_pd(r);
	memcpy(&v, &r, sizeof(v));
#else
	for (size_t l = 0; l < KM_L; l++)
		v[l] = sqrt(v[l]);
#endif
	return v;
}

struct FN(sil) {
	const double *xs;  /* d x m: the rows grouped by label, transposed */
	const double *x;   /* the rows as given */
	const size_t *off; /* k + 1: where each label's group starts in xs */
	const size_t *cnt;
	const int32_t *labels;
	size_t n, m, d, k;
	double *s; /* n: each row's silhouette */
};

#define KM_SIL_ROWS 32 /* rows per chunk */

/* Sums of the distances from row xi to each group (D constant at the common call). */
static inline __attribute__((always_inline)) void
FN(sil_sums)(const struct FN(sil) * a, const double *restrict xi, size_t D, double *restrict sum)
{
	for (size_t c = 0; c < a->k; c++) {
		size_t p = a->off[c], hi = a->off[c + 1];
		FN(vec) acc = {0};
		double lanes[KM_L], s = 0;

		for (; p + KM_L <= hi; p += KM_L) {
			FN(vec) dd = {0};
			_Pragma("GCC unroll 16") for (size_t j = 0; j < D; j++)
			{
				FN(vec) v;
				memcpy(&v, a->xs + j * a->m + p, sizeof(v));
				v -= xi[j];
				dd += v * v;
			}
			acc += FN(vsqrt)(dd);
		}
		for (; p < hi; p++) {
			double dd = 0;
			for (size_t j = 0; j < D; j++) {
				double t = a->xs[j * a->m + p] - xi[j];
				dd += t * t;
			}
			s += sqrt(dd);
		}
		memcpy(lanes, &acc, sizeof(lanes));
		for (size_t l = 0; l < KM_L; l++)
			s += lanes[l];
		sum[c] = s;
	}
}

static void
FN(sil_chunk)(void *arg, size_t ci)
{
	const struct FN(sil) *a = arg;
	size_t lo = ci * KM_SIL_ROWS, hi = lo + KM_SIL_ROWS < a->n ? lo + KM_SIL_ROWS : a->n;
	double sum[64];

	for (size_t i = lo; i < hi; i++) {
		size_t own = (size_t)a->labels[i];
		double ai, b = INFINITY;

		if (a->d == 4)
			FN(sil_sums)(a, a->x + i * 4, 4, sum);
		else
			FN(sil_sums)(a, a->x + i * a->d, a->d, sum);
		a->s[i] = 0;
		if (a->cnt[own] <= 1)
			continue; /* scikit-learn: 0 for singletons */
		/* The row's own distance, 0, is in its group's sum. */
		ai = sum[own] / (double)(a->cnt[own] - 1);
		for (size_t c = 0; c < a->k; c++)
			if (c != own && a->cnt[c] > 0 && sum[c] / (double)a->cnt[c] < b)
				b = sum[c] / (double)a->cnt[c];
		if (isfinite(b) && (ai > 0 || b > 0))
			a->s[i] = (b - ai) / (ai > b ? ai : b);
	}
}

/* Labels are checked (0 <= label < k <= 64) by the caller, cnt counted. */
static int
FN(silhouette)(const double *x, size_t n, size_t d, const int32_t *labels, size_t k,
	       const size_t *cnt, size_t nthreads, double *score)
{
	struct FN(sil) a = {.x = x, .labels = labels, .cnt = cnt, .n = n, .d = d, .k = k, .m = n};
	size_t off[65], pos[64];
	double *xs = malloc(n * d * sizeof(double)), *s = malloc(n * sizeof(double)), tot = 0;

	if (!xs || !s) {
		free(xs);
		free(s);
		return pg_error(PG_ENOMEM, "kmeans", "silhouette work space");
	}
	off[0] = 0;
	for (size_t c = 0; c < k; c++)
		off[c + 1] = off[c] + cnt[c];
	memcpy(pos, off, k * sizeof(size_t));
	for (size_t i = 0; i < n; i++) {
		size_t p = pos[labels[i]]++;
		for (size_t j = 0; j < d; j++)
			xs[j * n + p] = x[i * d + j];
	}
	a.xs = xs;
	a.off = off;
	a.s = s;
	km_parallel(FN(sil_chunk), &a, (n + KM_SIL_ROWS - 1) / KM_SIL_ROWS, nthreads);
	/* Added in row order: the score does not depend on the threads. */
	for (size_t i = 0; i < n; i++)
		tot += s[i];
	*score = tot / (double)n;
	free(xs);
	free(s);
	return 0;
}

#undef KM_SIL_ROWS
#endif
