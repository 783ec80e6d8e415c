/*
 * k-means on one chunk's worth of rows (n <= KM_CHUNK, d <= KM_SMALL_D,
 * Lloyd), the two-level estimator's per-VM fit (seed 3): one allocation, no
 * thread hand-off, the tol variance taken from the transposed copy on vector
 * lanes, and the final assignment giving the inertia as it goes instead of a
 * separate pass. Included by kmeans_impl.h before FN(fit), whose semantics
 * (scikit-learn's) it keeps: the same kernels in the same order as FN(single)
 * on one chunk, so labels, centers and inertia are those of the general path
 * (test_small_path). The float32 expansion pre-screen is left out: it decides
 * the same labels, and at the per-VM fits' k = 3 it cost 12 % more CPU than
 * it saved.
 */

/* Whether FN(fit) hands the problem here. */
static inline int
FN(small_ok)(size_t n, size_t d, const struct pg_kmeans_params *p)
{
#ifdef KM_F64
	/* Float64 at 6 <= d <= 16 keeps the general path's float pre-screen. */
	if (d >= 6 && d <= 16)
		return 0;
#endif
	if (!(n <= KM_CHUNK && d <= KM_SMALL_D && p->k * d <= KM_ACC_MAX &&
	      p->k <= KM_ACC_MAX / 4 && p->algo != PG_KMEANS_HAMERLY))
		return 0;
	/* PAYGUARD_KMEANS_SMALL=0: the general path, to compare (test_small_path). */
	return !(getenv("PAYGUARD_KMEANS_SMALL") && atoi(getenv("PAYGUARD_KMEANS_SMALL")) == 0);
}

/* v's lanes less mean, squared, added to acc's double lanes. */
static inline __attribute__((always_inline)) void
FN(dlanes_sqdev)(FN(dreg) * acc, FN(vec) v, double mean)
{
	_Pragma("GCC unroll 4") for (size_t q = 0; q < KM_L / KM_DH; q++)
	{
		FN(tpart) part;
		FN(dreg) t;
		memcpy(&part, (const char *)&v + q * sizeof(part), sizeof(part));
		t = __builtin_convertvector(part, FN(dreg)) - mean;
		acc[q] += t * t;
	}
}

/*
 * Mean over features of the population variance, two passes over the
 * transposed blocks (rows past n are padding and left out). Non-finite data
 * is handed to FN(mean_variance) for its error message.
 */
static int
FN(small_variance)(const T *x, const T *xt, size_t n, size_t d, double *out)
{
	size_t full = n / KM_B;
	double mean[KM_SMALL_D], tot = 0;

	for (int pass = 0; pass < 2; pass++) {
		for (size_t j = 0; j < d; j++) {
			FN(dreg) acc[KM_L / KM_DH] = {{0}};
			double lanes[KM_L], s = 0;

			for (size_t b = 0; b < full; b++)
				for (size_t h = 0; h < KM_B / KM_L; h++) {
					FN(vec) v;
					memcpy(&v, xt + b * d * KM_B + j * KM_B + h * KM_L,
					       sizeof(v));
					if (pass == 0)
						FN(dlanes_add)(acc, v);
					else
						FN(dlanes_sqdev)(acc, v, mean[j]);
				}
			memcpy(lanes, acc, sizeof(lanes));
			for (size_t l = 0; l < KM_L; l++)
				s += lanes[l];
			for (size_t i = full * KM_B; i < n; i++) {
				double v = (double)xt[full * d * KM_B + j * KM_B + i % KM_B];
				s += pass == 0 ? v : (v - mean[j]) * (v - mean[j]);
			}
			if (pass == 0 && !isfinite(s))
				return FN(mean_variance)(x, n, d, 1, out);
			if (pass == 0)
				mean[j] = s / (double)n;
			else
				tot += s / (double)n;
		}
	}
	*out = tot / (double)d;
	return 0;
}

/* One run from initial centers init (FN(single)'s rules); m holds the work space. */
static int
FN(small_single)(struct FN(km) * m, const struct pg_kmeans_params *p, const double *init,
		 double tol_abs, double *sums, double *ps, struct pg_kmeans_info *info)
{
	size_t n = m->n, d = m->d, k = m->k;
	double *cnt = sums + k * d;
	int relocated = 0, it;
	int32_t bl[KM_B];
	T bd[KM_B];

	for (size_t i = 0; i < k * d; i++)
		m->c[i] = (T)init[i];
	FN(splat)(m);
	for (size_t i = 0; i < n; i++)
		m->labels[i] = -1;
	for (it = 0; it < p->max_iter; it++) {
		size_t changed, nempty = 0;
		double shift_tot = 0;

		if (it == 0) {
			/* The first pass sums afresh in vector lanes (FN(chunk)'s fused case). */
			FN(vec) acc[KM_ACC_MAX];
			FN(ivec) cn[KM_ACC_MAX / 4];

			memset(acc, 0, k * d * sizeof(acc[0]));
			memset(cn, 0, k * sizeof(cn[0]));
			changed =
			    FN(fused_soa)(m->xt, n, d, m->cv, NULL, 0, k, m->labels, acc, cn, NULL);
			FN(reduce_lanes)(acc, cn, k, d, ps);
		} else {
			changed = FN(fused_soa)(m->xt, n, d, m->cv, NULL, 0, k, m->labels, NULL,
						NULL, ps);
		}
		memcpy(sums, ps, k * (d + 1) * sizeof(double));
		for (size_t c = 0; c < k; c++)
			nempty += cnt[c] == 0;
		if (nempty) {
			int rc = FN(relocate)(m, sums, cnt, nempty);
			if (rc < 0)
				return rc;
			relocated += rc;
		}
		for (size_t c = 0; c < k; c++)
			for (size_t j = 0; j < d; j++) {
				double v =
				    cnt[c] > 0 ? sums[c * d + j] / cnt[c] : (double)m->c[c * d + j];
				double t = v - (double)m->c[c * d + j];
				shift_tot += t * t;
				m->c[c * d + j] = (T)v;
			}
		FN(splat)(m);
		if (changed == 0) { /* strict convergence */
			it++;
			break;
		}
		if (shift_tot <= tol_abs) {
			it++;
			break;
		}
	}
	/*
	 * The final assignment to the returned centers (after strict convergence
	 * it gives the same labels again) and, from its nearest distances, the
	 * inertia, added in FN(inertia_body)'s order (lane sums over whole
	 * vectors, the tail, then the lanes), so that n_init picks the same run.
	 */
	{
		double lanes[KM_L] = {0}, s = 0;
		size_t nfull = n / KM_L * KM_L;

		for (size_t i = 0; i < n; i += KM_B) {
			size_t nb = n - i < KM_B ? n - i : KM_B;

			FN(nearest_soa)
			(m->xt + (i / KM_B) * d * KM_B, d, m->cv, k, bl, bd, NULL, 0);
			for (size_t b = 0; b < nb; b++) {
				m->labels[i + b] = bl[b];
				if (i + b < nfull)
					lanes[b % KM_L] += (double)bd[b];
				else
					s += (double)bd[b];
			}
		}
		for (size_t l = 0; l < KM_L; l++)
			s += lanes[l];
		info->inertia = s;
	}
	info->n_iter = it;
	info->relocated = relocated;
	return 0;
}

static int
FN(fit_small)(const T *x, size_t n, size_t d, const struct pg_kmeans_params *p, int32_t *labels,
	      double *centers, struct pg_kmeans_info *info)
{
	size_t k = p->k, nxt = (n + KM_B - 1) / KM_B * KM_B * d;
	int n_init = p->init ? 1 : (p->n_init > 0 ? p->n_init : 1);
	struct FN(km) m = {.x = x, .n = n, .d = d, .k = k};
	double tol_abs, *init, *sums, *ps;
	struct km_rng rng;
	char *arena;
	int rc;

	/* One block: vectors first (aligned), then the doubles, T values and labels. */
	size_t o_xt = k * d * sizeof(FN(vec)), o_dbl = o_xt + nxt * sizeof(T);
	size_t o_c = o_dbl + (k * d + 2 * k * (d + 1)) * sizeof(double),
	       o_lab = o_c + k * d * sizeof(T);
	size_t size = (o_lab + n * sizeof(int32_t) + KM_VBYTES - 1) / KM_VBYTES * KM_VBYTES;

	arena = aligned_alloc(KM_VBYTES, size);
	if (!arena)
		return pg_error(PG_ENOMEM, "kmeans", "work space for %zu rows", n);
	m.cv = (FN(vec) *)(void *)arena;
	m.xt = (const T *)(void *)(arena + o_xt);
	init = (double *)(void *)(arena + o_dbl); /* nxt * sizeof(T): a multiple of 8 */
	sums = init + k * d;
	ps = sums + k * (d + 1);
	m.c = (T *)(void *)(arena + o_c);
	m.labels = (int32_t *)(void *)(arena + o_lab);
	FN(transpose)(x, n, d, (T *)m.xt);
	rc = FN(small_variance)(x, m.xt, n, d, &tol_abs);
	if (rc < 0)
		goto out;
	tol_abs = p->tol > 0 ? tol_abs * p->tol : 0;
	km_rng_seed(&rng, p->seed);
	info->inertia = INFINITY;
	for (int r = 0; r < n_init; r++) {
		struct pg_kmeans_info ri;

		rc = FN(run_init)(p, x, m.xt, n, d, &rng, 1, init);
		if (rc < 0)
			goto out;
		rc = FN(small_single)(&m, p, init, tol_abs, sums, ps, &ri);
		if (rc < 0)
			goto out;
		if (ri.inertia < info->inertia) {
			*info = ri;
			memcpy(labels, m.labels, n * sizeof(int32_t));
			for (size_t i = 0; i < k * d; i++)
				centers[i] = (double)m.c[i];
		}
	}
out:
	free(arena);
	return rc;
}
