/*
 * The k-means kernels for one element type, included twice by kmeans.c with
 * T = double / float and SFX = f64 / f32 (a C template). Distances are taken
 * directly as sum((x - c)^2), not by the ||x||^2 - 2x.c + ||c||^2 expansion,
 * so near-ties are decided as exactly as the type allows.
 */
#define KM_CAT2(a, b) a##_##b
#define KM_CAT(a, b)  KM_CAT2(a, b)
#define FN(name)      KM_CAT(name, SFX)

/* Squared distance of one point to one center, d values, in T. */
static inline T
FN(sqdist)(const T *restrict x, const T *restrict c, size_t d)
{
	T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
	size_t j = 0;

	/* Eight lanes so the compiler may vectorise without reassociating. */
	for (; j + 8 <= d; j += 8)
		for (size_t l = 0; l < 8; l++) {
			T t = x[j + l] - c[j + l];
			acc[l] += t * t;
		}
	for (size_t l = 0; j < d; j++, l++) {
		T t = x[j] - c[j];
		acc[l] += t * t;
	}
	return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/*
 * Nearest and second-nearest center of one block of KM_B points stored
 * transposed (xt[j * KM_B + i] is value j of point i), so the inner loop runs
 * over points and vectorises. D is a compile-time constant at the call sites
 * below, which lets the compiler unroll the common small dimensions.
 * Ties go to the lower center index, as numpy's argmin.
 */
/* One AVX2 register of T: native on AVX2 and AVX-512, two halves on SSE2. */
typedef T FN(vec) __attribute__((vector_size(KM_VBYTES)));
typedef ITYPE FN(ivec) __attribute__((vector_size(KM_VBYTES)));
#define KM_L (KM_VBYTES / sizeof(T))

/* a where mask is set, else b (GCC vector extensions; C has no vector ?:). */
static inline __attribute__((always_inline)) FN(vec) FN(blend)(FN(ivec) mask, FN(vec) a, FN(vec) b)
{
	return (FN(vec))(((FN(ivec))a & mask) | ((FN(ivec))b & ~mask));
}

static inline __attribute__((always_inline)) void
FN(soa_body)(const T *restrict xt, size_t D, const FN(vec) *restrict cv, size_t k,
	     int32_t *restrict bl, T *restrict bd, T *restrict sd, int want_second)
{
	/* Explicit vectors: the compiler's own vectoriser shuffled too much here. */
	for (size_t h = 0; h < KM_B / KM_L; h++) {
		FN(vec) best = (FN(vec)){0} + (T)INFINITY, second = best, lab = {0};
		FN(vec) xv[KM_SMALL_D];
		T labs[KM_L];

		/* Loaded once per block; registers when D is a constant. */
		_Pragma("GCC unroll 16") for (size_t j = 0; j < D; j++)
		    memcpy(&xv[j], xt + j * KM_B + h * KM_L, sizeof(xv[j]));
		for (size_t ci = 0; ci < k; ci++) {
			FN(vec) acc = {0};
			FN(ivec) lt, lt2;
			const FN(vec) *cc = cv + ci * D;

			_Pragma("GCC unroll 16") for (size_t j = 0; j < D; j++)
			{
				FN(vec) t = xv[j] - cc[j];
				acc += t * t;
			}
			lt = acc < best;
			/* Lloyd needs no second-nearest: only Hamerly's bounds do. */
			if (want_second) {
				lt2 = acc < second;
				second = FN(blend)(lt, best, FN(blend)(lt2, acc, second));
			}
			best = FN(blend)(lt, acc, best);
			lab = FN(blend)(lt, (FN(vec)){0} + (T)ci, lab);
		}
		memcpy(bd + h * KM_L, &best, sizeof(best));
		if (want_second)
			memcpy(sd + h * KM_L, &second, sizeof(second));
		memcpy(labs, &lab, sizeof(lab));
		for (size_t i = 0; i < KM_L; i++)
			bl[h * KM_L + i] = (int32_t)labs[i];
	}
}

KM_CLONES static void
FN(nearest_soa)(const T *restrict xt, size_t d, const FN(vec) *restrict c, size_t k,
		int32_t *restrict bl, T *restrict bd, T *restrict sd, int want_second)
{
	/* Constant D and want_second at each call: the compiler specialises. */
#define KM_SOA(D)                                                                                  \
	(want_second ? FN(soa_body)(xt, D, c, k, bl, bd, sd, 1)                                    \
		     : FN(soa_body)(xt, D, c, k, bl, bd, sd, 0))
	switch (d) {
	case 2:
		KM_SOA(2);
		break;
	case 3:
		KM_SOA(3);
		break;
	case 4:
		KM_SOA(4);
		break;
	case 8:
		KM_SOA(8);
		break;
	case 16:
		KM_SOA(16);
		break;
	default:
		KM_SOA(d);
	}
#undef KM_SOA
}

/*
 * Adds a block's points to per-cluster lane sums (acc[c * D + j], vectors of
 * T) under a label mask; the lanes are reduced into double once per chunk.
 * Labels past nb (padding) are -1 and match no cluster.
 */
typedef int32_t FN(lvec) __attribute__((vector_size(KM_L * sizeof(int32_t))));

static inline __attribute__((always_inline)) void
FN(accum_body)(const T *restrict xt, const int32_t *restrict lab, size_t D, size_t k,
	       FN(vec) *restrict acc, FN(ivec) *restrict cnt)
{
	for (size_t h = 0; h < KM_B / KM_L; h++) {
		FN(lvec) li;
		FN(vec) lv, xv[KM_SMALL_D];

		memcpy(&li, lab + h * KM_L, sizeof(li));
		lv = __builtin_convertvector(li, FN(vec));
		_Pragma("GCC unroll 16") for (size_t j = 0; j < D; j++)
		    memcpy(&xv[j], xt + j * KM_B + h * KM_L, sizeof(xv[j]));
		for (size_t c = 0; c < k; c++) {
			FN(ivec) mask = lv == (T)c;
			cnt[c] -= mask; /* a set mask lane is -1 */
			_Pragma("GCC unroll 16") for (size_t j = 0; j < D; j++) acc[c * D + j] +=
			    (FN(vec))((FN(ivec))xv[j] & mask);
		}
	}
}

KM_CLONES static void
FN(accum_soa)(const T *restrict xt, const int32_t *restrict lab, size_t n, size_t d, size_t k,
	      FN(vec) *restrict acc, FN(ivec) *restrict cnt)
{
	for (size_t i = 0; i < n; i += KM_B) {
		const T *blk = xt + (i / KM_B) * d * KM_B;
		const int32_t *l = lab + i;
		int32_t pad[KM_B];

		if (n - i < KM_B) {
			/* The last, partial block: padding points match no cluster. */
			for (size_t b = 0; b < KM_B; b++)
				pad[b] = i + b < n ? lab[i + b] : -1;
			l = pad;
		}
		if (d == 4)
			FN(accum_body)(blk, l, 4, k, acc, cnt);
		else
			FN(accum_body)(blk, l, d, k, acc, cnt);
	}
}

/* The same for nb row-major points (large d, or one point for Hamerly). */
KM_CLONES static void
FN(nearest_rows)(const T *restrict x, size_t nb, size_t d, const T *restrict c, size_t k,
		 int32_t *restrict best, T *restrict bestd, T *restrict secd)
{
	for (size_t i = 0; i < nb; i++) {
		T b = (T)INFINITY, s = (T)INFINITY;
		int32_t bi = 0;

		for (size_t ci = 0; ci < k; ci++) {
			T a = FN(sqdist)(x + i * d, c + ci * d, d);
			if (a < b) {
				s = b;
				b = a;
				bi = (int32_t)ci;
			} else if (a < s) {
				s = a;
			}
		}
		best[i] = bi;
		bestd[i] = b;
		secd[i] = s;
	}
}

/* Copies the rows into blocks of KM_B transposed points (zero padded). */
static void
FN(transpose)(const T *x, size_t n, size_t d, T *xt)
{
	size_t nblocks = (n + KM_B - 1) / KM_B;

	for (size_t b = 0; b < nblocks; b++) {
		T *blk = xt + b * d * KM_B;
		for (size_t i = 0; i < KM_B; i++) {
			size_t r = b * KM_B + i;
			for (size_t j = 0; j < d; j++)
				blk[j * KM_B + i] = r < n ? x[r * d + j] : 0;
		}
	}
}

struct FN(km) {
	const T *x;
	const T *xt; /* blocks of KM_B transposed points, when d <= KM_SMALL_D */
	size_t n, d, k;
	T *c;		 /* current centers, k x d */
	FN(vec) * cv;	 /* the same, each value splatted over a vector (with xt) */
	int32_t *labels; /* n */
	double *ub, *lb; /* Hamerly bounds (distances, not squared) */
	double *half;	 /* Hamerly: half the distance to the nearest other center */
	double *shift;	 /* how far each center moved in the last update */
	double max1, max2;
	size_t imax1;
	double *part;	 /* per chunk: k*d sums then k counts */
	size_t *changed; /* per chunk */
	int mode;	 /* KM_FULL, KM_HAMERLY, KM_ESTEP (assign only) */
};

/* Adds rows lo..hi to their cluster's sums (D constant at the common call). */
static inline __attribute__((always_inline)) void
FN(accumulate)(const T *restrict x, const int32_t *restrict labels, size_t lo, size_t hi, size_t D,
	       size_t k, double *restrict ps)
{
	for (size_t i = lo; i < hi; i++) {
		const T *xi = x + i * D;
		double *s = ps + (size_t)labels[i] * D;

		_Pragma("GCC unroll 16") for (size_t j = 0; j < D; j++) s[j] += (double)xi[j];
		ps[k * D + (size_t)labels[i]] += 1.0;
	}
}

/* One chunk of one iteration: assign, then add to this chunk's partial sums. */
static void
FN(chunk)(void *arg, size_t ci)
{
	struct FN(km) *m = arg;
	size_t d = m->d, k = m->k;
	size_t lo = ci * KM_CHUNK, hi = lo + KM_CHUNK < m->n ? lo + KM_CHUNK : m->n;
	double *ps = m->part ? m->part + ci * k * (d + 1) : NULL;
	size_t changed = 0;
	int32_t bl[KM_B];
	T bd[KM_B], sd[KM_B];

	if (m->mode != KM_HAMERLY) {
		for (size_t i = lo; i < hi; i += KM_B) {
			size_t nb = hi - i < KM_B ? hi - i : KM_B;

			if (m->xt) {
				FN(nearest_soa)
				(m->xt + (i / KM_B) * d * KM_B, d, m->cv, k, bl, bd, sd,
				 m->ub != NULL);
			} else {
				FN(nearest_rows)(m->x + i * d, nb, d, m->c, k, bl, bd, sd);
			}
			for (size_t b = 0; b < nb; b++) {
				changed += m->labels[i + b] != bl[b];
				m->labels[i + b] = bl[b];
				if (m->ub) {
					m->ub[i + b] = sqrt((double)bd[b]);
					m->lb[i + b] = sqrt((double)sd[b]);
				}
			}
		}
	} else {
		for (size_t i = lo; i < hi; i++) {
			int32_t a = m->labels[i];
			double u = m->ub[i] + m->shift[a];
			double l = m->lb[i] - ((size_t)a == m->imax1 ? m->max2 : m->max1);
			double bound = m->half[a] > l ? m->half[a] : l;

			if (u > bound) {
				u = sqrt((double)FN(sqdist)(m->x + i * d, m->c + (size_t)a * d, d));
				if (u > bound) {
					FN(nearest_rows)(m->x + i * d, 1, d, m->c, k, bl, bd, sd);
					if (bl[0] != a) {
						changed++;
						m->labels[i] = bl[0];
					}
					u = sqrt((double)bd[0]);
					l = sqrt((double)sd[0]);
				}
			}
			m->ub[i] = u;
			m->lb[i] = l;
		}
	}
	m->changed[ci] = changed;
	if (!ps)
		return;
	memset(ps, 0, k * (d + 1) * sizeof(*ps));
	if (m->xt && k * d <= KM_ACC_MAX && k <= KM_ACC_MAX / 4) {
		/* Vector lane sums over the chunk, then one reduction into double. */
		FN(vec) acc[KM_ACC_MAX];
		FN(ivec) cnt[KM_ACC_MAX / 4];

		memset(acc, 0, k * d * sizeof(acc[0]));
		memset(cnt, 0, k * sizeof(cnt[0]));
		FN(accum_soa)
		(m->xt + (lo / KM_B) * d * KM_B, m->labels + lo, hi - lo, d, k, acc, cnt);
		for (size_t c = 0; c < k * d; c++) {
			T lanes[KM_L];
			double sum = 0;
			memcpy(lanes, &acc[c], sizeof(lanes));
			for (size_t l = 0; l < KM_L; l++)
				sum += (double)lanes[l];
			ps[c] = sum;
		}
		for (size_t c = 0; c < k; c++) {
			ITYPE lanes[KM_L];
			double sum = 0;
			memcpy(lanes, &cnt[c], sizeof(lanes));
			for (size_t l = 0; l < KM_L; l++)
				sum += (double)lanes[l];
			ps[k * d + c] = sum;
		}
	} else if (d == 4) {
		FN(accumulate)(m->x, m->labels, lo, hi, 4, k, ps);
	} else {
		FN(accumulate)(m->x, m->labels, lo, hi, d, k, ps);
	}
}

/* Squared distances of all points (transposed blocks) to one point p. */
static inline __attribute__((always_inline)) void
FN(dist_body)(const T *restrict xt, size_t nblocks, size_t D, const T *restrict p, T *restrict out)
{
	for (size_t b = 0; b < nblocks * (KM_B / KM_L); b++) {
		const T *xh = xt + (b / (KM_B / KM_L)) * D * KM_B + (b % (KM_B / KM_L)) * KM_L;
		FN(vec) acc = {0};

		_Pragma("GCC unroll 16") for (size_t j = 0; j < D; j++)
		{
			FN(vec) xv, t;
			memcpy(&xv, xh + j * KM_B, sizeof(xv));
			t = xv - p[j];
			acc += t * t;
		}
		memcpy(out + b * KM_L, &acc, sizeof(acc));
	}
}

KM_CLONES static void
FN(dist_soa)(const T *restrict xt, size_t nblocks, size_t d, const T *restrict p, T *restrict out)
{
	switch (d) {
	case 2:
		FN(dist_body)(xt, nblocks, 2, p, out);
		break;
	case 3:
		FN(dist_body)(xt, nblocks, 3, p, out);
		break;
	case 4:
		FN(dist_body)(xt, nblocks, 4, p, out);
		break;
	default:
		FN(dist_body)(xt, nblocks, d, p, out);
	}
}

/* Distances of every point to point `row`, in double; vectorised when xt exists. */
static void
FN(dist_all)(const T *x, const T *xt, T *tmp, size_t n, size_t d, size_t row, double *out)
{
	if (xt) {
		FN(dist_soa)(xt, (n + KM_B - 1) / KM_B, d, x + row * d, tmp);
		for (size_t i = 0; i < n; i++)
			out[i] = (double)tmp[i];
	} else {
		for (size_t i = 0; i < n; i++)
			out[i] = (double)FN(sqdist)(x + i * d, x + row * d, d);
	}
}

/* The transposed copy used by the small-d kernels, or NULL for large d. */
static int
FN(make_xt)(const T *x, size_t n, size_t d, T **xt)
{
	*xt = NULL;
	if (d > KM_SMALL_D)
		return 0;
	*xt = malloc(((n + KM_B - 1) / KM_B) * KM_B * d * sizeof(T));
	if (!*xt)
		return pg_error(PG_ENOMEM, "kmeans", "work space for %zu rows", n);
	FN(transpose)(x, n, d, *xt);
	return 0;
}

/*
 * Mean over features of the (population) variance, as numpy's var: two
 * passes over the rows, also refusing NaN and infinity on the way.
 */
static int
FN(mean_variance)(const T *x, size_t n, size_t d, double *out)
{
	double *mean = calloc(d, sizeof(double)), *var = calloc(d, sizeof(double)), tot = 0;
	int rc = 0;

	if (!mean || !var) {
		rc = pg_error(PG_ENOMEM, "kmeans", "variance of %zu columns", d);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < d; j++)
			mean[j] += (double)x[i * d + j];
	for (size_t j = 0; j < d; j++) {
		if (!isfinite(mean[j])) {
			for (size_t i = 0; i < n; i++)
				if (!isfinite((double)x[i * d + j])) {
					rc = pg_error(PG_EINVAL, "kmeans",
						      "value in row %zu, column %zu is not finite",
						      i, j);
					goto out;
				}
			rc = pg_error(PG_ERANGE, "kmeans", "column %zu overflows", j);
			goto out;
		}
		mean[j] /= (double)n;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < d; j++) {
			double t = (double)x[i * d + j] - mean[j];
			var[j] += t * t;
		}
	for (size_t j = 0; j < d; j++)
		tot += var[j] / (double)n;
	*out = tot / (double)d;
out:
	free(mean);
	free(var);
	return rc;
}

/* Greedy k-means++: each new center is the best of 2 + log(k) sampled candidates. */
static int
FN(plusplus)(const T *x, const T *xt, size_t n, size_t d, size_t k, struct km_rng *rng,
	     double *centers)
{
	size_t trials = 2 + (size_t)log((double)k);
	double *closest = malloc(n * sizeof(double));
	double *cum = malloc(n * sizeof(double));
	double *cand = malloc(trials * n * sizeof(double));
	size_t *ids = malloc(trials * sizeof(size_t));
	T *tmp = malloc(((n + KM_B - 1) / KM_B) * KM_B * sizeof(T));
	double pot = 0;
	size_t first;
	int rc = 0;

	if (!closest || !cum || !cand || !ids || !tmp) {
		rc = pg_error(PG_ENOMEM, "kmeans", "k-means++ work space for %zu rows", n);
		goto out;
	}
	first = km_rng_below(rng, n);
	for (size_t j = 0; j < d; j++)
		centers[j] = (double)x[first * d + j];
	FN(dist_all)(x, xt, tmp, n, d, first, closest);
	for (size_t i = 0; i < n; i++)
		pot += closest[i];
	for (size_t c = 1; c < k; c++) {
		double acc = 0, best_pot = INFINITY;
		size_t best = 0;

		for (size_t i = 0; i < n; i++) {
			acc += closest[i];
			cum[i] = acc;
		}
		for (size_t t = 0; t < trials; t++) {
			double r = km_rng_double(rng) * pot;
			size_t lo = 0,
			       hi = n; /* first index with cum[i] >= r (searchsorted left) */

			while (lo < hi) {
				size_t mid = lo + (hi - lo) / 2;
				if (cum[mid] < r)
					lo = mid + 1;
				else
					hi = mid;
			}
			ids[t] = lo < n ? lo : n - 1;
		}
		for (size_t t = 0; t < trials; t++) {
			double *dt = cand + t * n, tp = 0;

			FN(dist_all)(x, xt, tmp, n, d, ids[t], dt);
			for (size_t i = 0; i < n; i++) {
				dt[i] = dt[i] < closest[i] ? dt[i] : closest[i];
				tp += dt[i];
			}
			if (tp < best_pot) {
				best_pot = tp;
				best = t;
			}
		}
		pot = best_pot;
		memcpy(closest, cand + best * n, n * sizeof(double));
		for (size_t j = 0; j < d; j++)
			centers[c * d + j] = (double)x[ids[best] * d + j];
	}
out:
	free(closest);
	free(cum);
	free(cand);
	free(ids);
	free(tmp);
	return rc;
}

/* Moves each empty cluster onto the point farthest from its (old) center. */
static int
FN(relocate)(struct FN(km) * m, double *sums, double *cnt, size_t nempty)
{
	size_t n = m->n, d = m->d, k = m->k;
	size_t *far = calloc(nempty, sizeof(size_t));
	double *fard = malloc(nempty * sizeof(double));
	size_t nf = 0, e = 0;

	if (!far || !fard) {
		free(far);
		free(fard);
		return pg_error(PG_ENOMEM, "kmeans", "relocation work space");
	}
	/* Keep the nempty largest distances, descending, ties to the lower index. */
	for (size_t i = 0; i < n; i++) {
		double v = (double)FN(sqdist)(m->x + i * d, m->c + (size_t)m->labels[i] * d, d);
		size_t pos = nf;

		while (pos > 0 && fard[pos - 1] < v)
			pos--;
		if (pos >= nempty)
			continue;
		if (nf < nempty)
			nf++;
		memmove(far + pos + 1, far + pos, (nf - 1 - pos) * sizeof(size_t));
		memmove(fard + pos + 1, fard + pos, (nf - 1 - pos) * sizeof(double));
		far[pos] = i;
		fard[pos] = v;
	}
	for (size_t c = 0; c < k && e < nf; c++) {
		if (cnt[c] != 0)
			continue;
		size_t p = far[e++], old = (size_t)m->labels[p];

		for (size_t j = 0; j < d; j++) {
			sums[old * d + j] -= (double)m->x[p * d + j];
			sums[c * d + j] = (double)m->x[p * d + j];
		}
		cnt[old] -= 1;
		cnt[c] = 1;
	}
	free(far);
	free(fard);
	return (int)e;
}

/* Refreshes the splatted centers the vector kernels read. */
static void
FN(splat)(struct FN(km) * m)
{
	if (!m->cv)
		return;
	for (size_t i = 0; i < m->k * m->d; i++)
		m->cv[i] = (FN(vec)){0} + m->c[i];
}

/* One run from given initial centers; sklearn's convergence rules. */
static int
FN(single)(const T *x, const T *xt, size_t n, size_t d, const struct pg_kmeans_params *p,
	   const double *init, double tol_abs, int32_t *labels, double *centers,
	   struct pg_kmeans_info *info)
{
	struct FN(km) m = {.x = x, .n = n, .d = d, .k = p->k, .labels = labels};
	size_t k = p->k, nchunks = (n + KM_CHUNK - 1) / KM_CHUNK;
	size_t nthreads = p->n_threads > 0 ? (size_t)p->n_threads : 1;
	double *sums = NULL, *cnt;
	int strict = 0, rc = 0, relocated = 0, it;
	int hamerly = p->algo == PG_KMEANS_HAMERLY;

	m.xt = xt;
	if (xt) {
		m.cv = aligned_alloc(KM_VBYTES, k * d * sizeof(FN(vec)));
		if (!m.cv) {
			rc = pg_error(PG_ENOMEM, "kmeans", "work space for %zu centers", k);
			goto out;
		}
	}
	m.c = malloc(k * d * sizeof(T));
	sums = malloc(k * (d + 1) * sizeof(double));
	m.part = malloc(nchunks * k * (d + 1) * sizeof(double));
	m.changed = malloc(nchunks * sizeof(size_t));
	m.shift = calloc(k, sizeof(double));
	m.half = calloc(k, sizeof(double));
	if (hamerly) {
		m.ub = malloc(n * sizeof(double));
		m.lb = malloc(n * sizeof(double));
	}
	if (!m.c || !sums || !m.part || !m.changed || !m.shift || !m.half ||
	    (hamerly && (!m.ub || !m.lb))) {
		rc = pg_error(PG_ENOMEM, "kmeans", "work space for %zu rows", n);
		goto out;
	}
	cnt = sums + k * d;
	for (size_t i = 0; i < k * d; i++)
		m.c[i] = (T)init[i];
	FN(splat)(&m);
	for (size_t i = 0; i < n; i++)
		labels[i] = -1;
	for (it = 0; it < p->max_iter; it++) {
		size_t changed = 0;
		double shift_tot = 0;
		size_t nempty = 0;

		m.mode = hamerly && it > 0 ? KM_HAMERLY : KM_FULL;
		km_parallel(FN(chunk), &m, nchunks, nthreads);
		memset(sums, 0, k * (d + 1) * sizeof(double));
		for (size_t ci = 0; ci < nchunks; ci++) {
			const double *ps = m.part + ci * k * (d + 1);
			for (size_t j = 0; j < k * (d + 1); j++)
				sums[j] += ps[j];
			changed += m.changed[ci];
		}
		for (size_t c = 0; c < k; c++)
			nempty += cnt[c] == 0;
		if (nempty) {
			rc = FN(relocate)(&m, sums, cnt, nempty);
			if (rc < 0)
				goto out;
			relocated += rc;
			rc = 0;
		}
		for (size_t c = 0; c < k; c++) {
			double sh = 0;
			for (size_t j = 0; j < d; j++) {
				double v =
				    cnt[c] > 0 ? sums[c * d + j] / cnt[c] : (double)m.c[c * d + j];
				double t = v - (double)m.c[c * d + j];
				sh += t * t;
				m.c[c * d + j] = (T)v;
			}
			m.shift[c] = sqrt(sh);
			shift_tot += sh;
		}
		FN(splat)(&m);
		if (changed == 0) {
			strict = 1;
			it++;
			break;
		}
		if (shift_tot <= tol_abs) {
			it++;
			break;
		}
		if (hamerly) {
			m.max1 = m.max2 = 0;
			m.imax1 = 0;
			for (size_t c = 0; c < k; c++) {
				double dmin = INFINITY;
				if (m.shift[c] > m.max1) {
					m.max2 = m.max1;
					m.max1 = m.shift[c];
					m.imax1 = c;
				} else if (m.shift[c] > m.max2) {
					m.max2 = m.shift[c];
				}
				for (size_t o = 0; o < k; o++) {
					if (o == c)
						continue;
					double dd =
					    sqrt((double)FN(sqdist)(m.c + c * d, m.c + o * d, d));
					dmin = dd < dmin ? dd : dmin;
				}
				m.half[c] = k > 1 ? dmin / 2 : INFINITY;
			}
		}
	}
	if (!strict) {
		/* Labels must match the returned centers: one more assignment. */
		double *keep = m.part;
		m.part = NULL;
		m.mode = KM_ESTEP;
		double *ub = m.ub, *lb = m.lb;
		m.ub = m.lb = NULL;
		km_parallel(FN(chunk), &m, nchunks, nthreads);
		m.part = keep;
		m.ub = ub;
		m.lb = lb;
	}
	info->inertia = 0;
	for (size_t i = 0; i < n; i++)
		info->inertia += (double)FN(sqdist)(x + i * d, m.c + (size_t)labels[i] * d, d);
	info->n_iter = it;
	info->relocated = relocated;
	for (size_t i = 0; i < k * d; i++)
		centers[i] = (double)m.c[i];
out:
	free(m.cv);
	free(m.c);
	free(sums);
	free(m.part);
	free(m.changed);
	free(m.shift);
	free(m.half);
	free(m.ub);
	free(m.lb);
	return rc;
}

static int
FN(fit)(const T *x, size_t n, size_t d, const struct pg_kmeans_params *p, int32_t *labels,
	double *centers, struct pg_kmeans_info *info)
{
	size_t k = p->k;
	int n_init = p->init ? 1 : (p->n_init > 0 ? p->n_init : 1);
	double tol_abs = 0;
	int32_t *lab = NULL;
	double *init = NULL, *cen = NULL;
	T *xt = NULL;
	struct km_rng rng;
	int rc;

	rc = FN(mean_variance)(x, n, d, &tol_abs);
	if (rc < 0)
		return rc;
	tol_abs = p->tol > 0 ? tol_abs * p->tol : 0;
	km_rng_seed(&rng, p->seed);
	lab = malloc(n * sizeof(int32_t));
	init = malloc(k * d * sizeof(double));
	cen = malloc(k * d * sizeof(double));
	if (!lab || !init || !cen) {
		rc = pg_error(PG_ENOMEM, "kmeans", "work space for %zu rows", n);
		goto out;
	}
	rc = FN(make_xt)(x, n, d, &xt);
	if (rc < 0)
		goto out;
	info->inertia = INFINITY;
	for (int r = 0; r < n_init; r++) {
		struct pg_kmeans_info ri;

		if (p->init) {
			memcpy(init, p->init, k * d * sizeof(double));
			for (size_t i = 0; i < k * d; i++)
				if (!isfinite(init[i]))
					rc = pg_error(PG_EINVAL, "kmeans",
						      "initial center value %zu is not finite", i);
			if (rc < 0)
				goto out;
		} else {
			rc = FN(plusplus)(x, xt, n, d, k, &rng, init);
			if (rc < 0)
				goto out;
		}
		rc = FN(single)(x, xt, n, d, p, init, tol_abs, lab, cen, &ri);
		if (rc < 0)
			goto out;
		if (ri.inertia < info->inertia) {
			*info = ri;
			memcpy(labels, lab, n * sizeof(int32_t));
			memcpy(centers, cen, k * d * sizeof(double));
		}
	}
out:
	free(xt);
	free(lab);
	free(init);
	free(cen);
	return rc;
}

/* k-means++ alone (pg_kmeans_plusplus). */
static int
FN(plusplus_alone)(const T *x, size_t n, size_t d, size_t k, struct km_rng *rng, int n_threads,
		   double *centers)
{
	(void)n_threads;
	T *xt;
	int rc = FN(make_xt)(x, n, d, &xt);

	if (rc == 0)
		rc = FN(plusplus)(x, xt, n, d, k, rng, centers);
	free(xt);
	return rc;
}

#undef FN
#undef KM_L
#undef KM_CAT
#undef KM_CAT2
