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

/* xv[] is read only where D <= KM_SMALL_D filled it; GCC cannot see that. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
static inline __attribute__((always_inline)) void
FN(soa_body)(const T *restrict xt, size_t D, const FN(vec) *restrict cv, size_t k,
	     int32_t *restrict bl, T *restrict bd, T *restrict sd, int want_second)
{
	/* Explicit vectors: the compiler's own vectoriser shuffled too much here. */
	for (size_t h = 0; h < KM_B / KM_L; h++) {
		FN(vec) best = (FN(vec)){0} + (T)INFINITY, second = best, lab = {0};
		FN(vec) xv[KM_SMALL_D];
		T labs[KM_L];

		/* Loaded once per block; registers when D is a small constant. */
		if (D <= KM_SMALL_D)
			_Pragma("GCC unroll 16") for (size_t j = 0; j < D; j++)
			    memcpy(&xv[j], xt + j * KM_B + h * KM_L, sizeof(xv[j]));
		for (size_t ci = 0; ci < k; ci++) {
			FN(vec) acc = {0};
			FN(ivec) lt, lt2;
			const FN(vec) *cc = cv + ci * D;

			_Pragma("GCC unroll 16") for (size_t j = 0; j < D; j++)
			{
				FN(vec) t;
				if (D <= KM_SMALL_D) {
					t = xv[j] - cc[j];
				} else { /* larger blocks stay in L1 */
					memcpy(&t, xt + j * KM_B + h * KM_L, sizeof(t));
					t -= cc[j];
				}
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

/*
 * The same for larger D, blocked as a matrix product is: a few centers at a
 * time against the block's KM_H vectors, so each loaded value serves several
 * multiply-adds. Each (point, center) sum is formed in the same order as in
 * soa_body and centers are compared in index order, so the result is the same.
 */
#define KM_H  (KM_B / KM_L)
#define KM_QB (KM_H >= 8 ? 1 : 8 / KM_H) /* centers per step */
static inline __attribute__((always_inline)) void
FN(soa_big)(const T *restrict xt, size_t D, const FN(vec) *restrict cv, size_t k,
	    int32_t *restrict bl, T *restrict bd, T *restrict sd, int want_second)
{
	FN(vec) best[KM_H], second[KM_H], lab[KM_H];

	for (size_t h = 0; h < KM_H; h++) {
		best[h] = (FN(vec)){0} + (T)INFINITY;
		second[h] = best[h];
		lab[h] = (FN(vec)){0};
	}
	for (size_t c0 = 0; c0 < k; c0 += KM_QB) {
		FN(vec) acc[KM_QB][KM_H];
		size_t nq = k - c0 < KM_QB ? k - c0 : KM_QB;
		const FN(vec) * cq[KM_QB];

		_Pragma("GCC unroll 16") for (size_t q = 0; q < KM_QB; q++)
		{
			/* Past k, repeat the last center: computed, never compared. */
			cq[q] = cv + (c0 + (q < nq ? q : nq - 1)) * D;
			_Pragma("GCC unroll 16") for (size_t h = 0; h < KM_H; h++) acc[q][h] =
			    (FN(vec)){0};
		}
		for (size_t j = 0; j < D; j++) {
			FN(vec) xv[KM_H];
			/* Fully unrolled, so acc and xv live in registers. */
			_Pragma("GCC unroll 16") for (size_t h = 0; h < KM_H; h++)
			    memcpy(&xv[h], xt + j * KM_B + h * KM_L, sizeof(xv[h]));
			_Pragma("GCC unroll 16") for (size_t q = 0; q < KM_QB; q++)
			{
				FN(vec) c = cq[q][j];
				_Pragma("GCC unroll 16") for (size_t h = 0; h < KM_H; h++)
				{
					FN(vec) t = xv[h] - c;
					acc[q][h] += t * t;
				}
			}
		}
		for (size_t q = 0; q < nq; q++) {
			FN(vec) cf = (FN(vec)){0} + (T)(c0 + q);
			for (size_t h = 0; h < KM_H; h++) {
				FN(ivec) lt = acc[q][h] < best[h];
				if (want_second) {
					FN(ivec) lt2 = acc[q][h] < second[h];
					second[h] = FN(blend)(lt, best[h],
							      FN(blend)(lt2, acc[q][h], second[h]));
				}
				best[h] = FN(blend)(lt, acc[q][h], best[h]);
				lab[h] = FN(blend)(lt, cf, lab[h]);
			}
		}
	}
	for (size_t h = 0; h < KM_H; h++) {
		T labs[KM_L];
		memcpy(bd + h * KM_L, &best[h], sizeof(best[h]));
		if (want_second)
			memcpy(sd + h * KM_L, &second[h], sizeof(second[h]));
		memcpy(labs, &lab[h], sizeof(lab[h]));
		for (size_t i = 0; i < KM_L; i++)
			bl[h * KM_L + i] = (int32_t)labs[i];
	}
}
#undef KM_QB
#undef KM_H

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
	case 32:
		if (want_second)
			FN(soa_big)(xt, 32, c, k, bl, bd, sd, 1);
		else
			FN(soa_big)(xt, 32, c, k, bl, bd, sd, 0);
		break;
	case 64:
		if (want_second)
			FN(soa_big)(xt, 64, c, k, bl, bd, sd, 1);
		else
			FN(soa_big)(xt, 64, c, k, bl, bd, sd, 0);
		break;
	default:
		if (d <= KM_SMALL_D)
			KM_SOA(d);
		else if (want_second)
			FN(soa_big)(xt, d, c, k, bl, bd, sd, 1);
		else
			FN(soa_big)(xt, d, c, k, bl, bd, sd, 0);
	}
#undef KM_SOA
}

/*
 * Adds a block's points to per-cluster lane sums (acc[c * D + j], vectors of
 * T) under a label mask; the lanes are reduced into double once per chunk.
 * Labels past nb (padding) are -1 and match no cluster.
 */
typedef int32_t FN(lvec) __attribute__((vector_size(KM_L * sizeof(int32_t))));
typedef double FN(dvec) __attribute__((vector_size(KM_L * sizeof(double))));

static inline __attribute__((always_inline)) void
FN(accum_body)(const T *restrict xt, const int32_t *restrict lab, size_t D, size_t k,
	       FN(vec) *restrict acc, FN(ivec) *restrict cnt)
{
	for (size_t h = 0; h < KM_B / KM_L; h++) {
		FN(lvec) li;
		FN(vec) lv, xv[KM_SMALL_D];

		memcpy(&li, lab + h * KM_L, sizeof(li));
		lv = __builtin_convertvector(li, FN(vec));
		if (D <= KM_SMALL_D)
			_Pragma("GCC unroll 16") for (size_t j = 0; j < D; j++)
			    memcpy(&xv[j], xt + j * KM_B + h * KM_L, sizeof(xv[j]));
		for (size_t c = 0; c < k; c++) {
			FN(ivec) mask = lv == (T)c;
			cnt[c] -= mask; /* a set mask lane is -1 */
			_Pragma("GCC unroll 16") for (size_t j = 0; j < D; j++)
			{
				FN(vec) xj;
				if (D <= KM_SMALL_D)
					xj = xv[j];
				else
					memcpy(&xj, xt + j * KM_B + h * KM_L, sizeof(xj));
				acc[c * D + j] += (FN(vec))((FN(ivec))xj & mask);
			}
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

/* The lanes of a label-width mask as bits (lane l: bit l). */
static inline __attribute__((always_inline)) unsigned
FN(lbits)(FN(lvec) m)
{
#if defined(__x86_64__) && defined(__AVX512DQ__)
	if (sizeof(m) == 64) {
		__m512i v;
		memcpy(&v, &m, sizeof(v));
		return (unsigned)_mm512_movepi32_mask(v);
	}
#endif
#if defined(__x86_64__) && defined(__AVX2__)
	if (sizeof(m) == 32) {
		__m256 v;
		memcpy(&v, &m, sizeof(v));
		return (unsigned)_mm256_movemask_ps(v);
	}
#endif
#if defined(__x86_64__) && defined(__SSE2__)
	if (sizeof(m) == 16) {
		__m128 v;
		memcpy(&v, &m, sizeof(v));
		return (unsigned)_mm_movemask_ps(v);
	}
#endif
	{
		int32_t l[KM_L];
		unsigned b = 0;
		memcpy(l, &m, sizeof(l));
		for (size_t i = 0; i < KM_L; i++)
			b |= (l[i] != 0) << i;
		return b;
	}
}

/*
 * Moves one point from cluster `from` to cluster `to` in a chunk's double
 * sums (ps: k * D sums, then k counts); its values are xs[j * stride].
 */
static inline __attribute__((always_inline)) void
FN(move_point)(double *restrict ps, size_t D, size_t k, const T *restrict xs, size_t stride,
	       int32_t from, int32_t to)
{
	double *a = ps + (size_t)from * D, *b = ps + (size_t)to * D;

	for (size_t j = 0; j < D; j++) {
		double v = (double)xs[j * stride];
		a[j] -= v;
		b[j] += v;
	}
	ps[k * D + (size_t)from] -= 1;
	ps[k * D + (size_t)to] += 1;
}

#ifndef KM_F64
/*
 * Expansion pre-screen of float32 Lloyd (d <= KM_SMALL_D), one vector of
 * points: ||c||^2 - 2 x.c per center (||x||^2 is common to all centers), a
 * chain of multiply-adds with nothing to subtract, as a matrix product takes
 * it; ce holds per center ||c||^2 (rounded from double) then -2 c_j, splatted.
 * It decides a point only when its nearest center beats the second-nearest by
 * more than twice the sum of both ways' rounding errors, so the label is the
 * direct kernel's (sum of (x_j - c_j)^2 in float, ties to the lower index),
 * which recomputes any vector not decided. Bound: with u = 2^-24, the
 * expansion's error is at most 2.02 (d + 2) u (|x|^2 + |c|^2) (d + 1 roundings
 * of the sum in any order, one per product when not fused), the direct sum's at most as
 * much; KM_XSCREEN_K (d + 6) u (|x|^2 + max |c|^2) covers twice their sum with
 * margin for the bound's own rounding. Scales outside [1e-20, 1e37] are
 * always recomputed. Returns nonzero when every lane was decided.
 */
#ifndef KM_XSCREEN_K
#define KM_XSCREEN_K 10.0f
#endif
static inline __attribute__((always_inline)) FN(vec) FN(vmin)(FN(vec) a, FN(vec) b)
{
#if defined(__x86_64__) && KM_VBYTES == 64
	return (FN(vec))_mm512_min_ps((__m512)a, (__m512)b);
#elif defined(__x86_64__) && KM_VBYTES == 32
	return (FN(vec))_mm256_min_ps((__m256)a, (__m256)b);
#elif defined(__x86_64__) && KM_VBYTES == 16
	return (FN(vec))_mm_min_ps((__m128)a, (__m128)b);
#else
	return FN(blend)(a < b, a, b);
#endif
}

static inline __attribute__((always_inline)) FN(vec) FN(vmax)(FN(vec) a, FN(vec) b)
{
#if defined(__x86_64__) && KM_VBYTES == 64
	return (FN(vec))_mm512_max_ps((__m512)a, (__m512)b);
#elif defined(__x86_64__) && KM_VBYTES == 32
	return (FN(vec))_mm256_max_ps((__m256)a, (__m256)b);
#elif defined(__x86_64__) && KM_VBYTES == 16
	return (FN(vec))_mm_max_ps((__m128)a, (__m128)b);
#else
	return FN(blend)(a > b, a, b);
#endif
}

static inline __attribute__((always_inline)) int
FN(expand_vec)(FN(vec) xv[][KM_B / KM_L], size_t h, size_t D, const FN(vec) *restrict ce, size_t k,
	       T cmax2, FN(vec) * best, FN(vec) * lab)
{
	const T kd = KM_XSCREEN_K * (T)(D + 6) * 0x1p-24f;
	FN(vec) b = (FN(vec)){0} + (T)INFINITY, s = b, l = {0}, x2 = {0};
	FN(ivec) ok;

	FN(vec) cf = {0};

	_Pragma("GCC unroll 16") for (size_t j = 0; j < D; j++) x2 += xv[j][h] * xv[j][h];
	/* Two centers a step, each sum in two halves: four independent chains. */
	for (size_t ci = 0; ci < k; ci += 2) {
		const FN(vec) *e = ce + ci * (D + 1);
		const FN(vec) *f = ci + 1 < k ? e + (D + 1) : e;
		FN(vec) a[2] = {e[0], f[0]}, a2[2] = {0};

		_Pragma("GCC unroll 16") for (size_t j = 0; j < D; j += 2)
		{
			a[0] += xv[j][h] * e[1 + j];
			a[1] += xv[j][h] * f[1 + j];
			if (j + 1 < D) {
				a2[0] += xv[j + 1][h] * e[2 + j];
				a2[1] += xv[j + 1][h] * f[2 + j];
			}
		}
		_Pragma("GCC unroll 2") for (size_t q = 0; q < 2; q++)
		{
			FN(vec) v = a[q] + a2[q];
			FN(ivec) lt = v < b;

			if (ci + q >= k)
				break;
			/* second = min(second, max(v, best)): the old best when v beats it. */
			s = FN(vmin)(s, FN(vmax)(v, b));
			b = FN(blend)(lt, v, b);
			l = FN(blend)(lt, cf, l);
			cf += 1;
		}
	}
	x2 += cmax2;
	ok = (s - b > kd * x2) & (x2 >= 1e-20f) & (x2 <= 1e37f);
	*best = b;
	*lab = l;
	return FN(lbits)((FN(lvec)) ~ok) == 0;
}
#endif

/*
 * Lloyd's assignment and accumulation fused: each vector of points is loaded
 * once, given its nearest center (the same arithmetic as soa_body, ties to the
 * lower index) and added at once to that center's lane sums. Points from row
 * n on (the zero padding of the last block) get no label and add nothing.
 * With incr (every iteration after the first) the chunk's double sums ps
 * still hold the previous labelling, and only points whose label changed
 * are moved: once few labels change, the sums cost next to nothing.
 * With ce (float32 only) the expansion pre-screen assigns first and the direct
 * kernel only recomputes blocks it could not decide.
 * Returns how many labels changed.
 */
static inline __attribute__((always_inline)) size_t
FN(fused_body)(const T *restrict xt, size_t n, size_t D, const FN(vec) *restrict cv,
	       const FN(vec) *restrict ce, T cmax2, size_t k, int32_t *restrict labels,
	       FN(vec) *restrict acc, FN(ivec) *restrict cnt, double *restrict ps, int incr)
{
#define KM_H (KM_B / KM_L)
	FN(lvec) nchg = {0};
	FN(lvec) lane;

	for (size_t l = 0; l < KM_L; l++)
		lane[l] = (int32_t)l;
	for (size_t i = 0; i < n; i += KM_B) {
		/* The block's KM_H vectors side by side: independent compare chains. */
		const T *blk = xt + (i / KM_B) * D * KM_B;
		FN(vec) best[KM_H], lab[KM_H], xv[KM_SMALL_D][KM_H];

		_Pragma("GCC unroll 16") for (size_t j = 0; j < D; j++)
		    _Pragma("GCC unroll 16") for (size_t h = 0; h < KM_H; h++)
			memcpy(&xv[j][h], blk + j * KM_B + h * KM_L, sizeof(xv[j][h]));
		int done = 0;
#ifndef KM_F64
		if (ce) {
			done = 1;
			_Pragma("GCC unroll 16") for (size_t h = 0; h < KM_H; h++) done &=
			    FN(expand_vec)(xv, h, D, ce, k, cmax2, &best[h], &lab[h]);
		}
#else
		(void)ce;
		(void)cmax2;
#endif
		if (!done)
			_Pragma("GCC unroll 16") for (size_t h = 0; h < KM_H; h++)
			{
				best[h] = (FN(vec)){0} + (T)INFINITY;
				lab[h] = (FN(vec)){0};
			}
		for (size_t ci = 0; !done && ci < k; ci++) {
			const FN(vec) *cc = cv + ci * D;
			const FN(vec) cf = (FN(vec)){0} + (T)ci;

			_Pragma("GCC unroll 16") for (size_t h = 0; h < KM_H; h++)
			{
				FN(vec) a = {0};
				FN(ivec) lt;
				_Pragma("GCC unroll 16") for (size_t j = 0; j < D; j++)
				{
					FN(vec) t = xv[j][h] - cc[j];
					a += t * t;
				}
				lt = a < best[h];
				best[h] = FN(blend)(lt, a, best[h]);
				lab[h] = FN(blend)(lt, cf, lab[h]);
			}
		}
		_Pragma("GCC unroll 16") for (size_t h = 0; h < KM_H; h++)
		{
			size_t o = i + h * KM_L;
			FN(lvec) li = __builtin_convertvector(lab[h], FN(lvec)), old;

			if (n - i < KM_B) { /* the last, partial block */
				int32_t tmp[KM_L];
				FN(lvec) valid = lane < (int32_t)(o < n ? n - o : 0);
				li = (li & valid) | ~valid; /* -1 past the end */
				lab[h] = __builtin_convertvector(li, FN(vec));
				memcpy(tmp, &li, sizeof(tmp));
				for (size_t l = 0; o + l < n && l < KM_L; l++) {
					nchg[0] += labels[o + l] != tmp[l];
					if (incr && ps && labels[o + l] != tmp[l])
						FN(move_point)
					(ps, D, k, blk + h * KM_L + l, KM_B, labels[o + l], tmp[l]);
					labels[o + l] = tmp[l];
				}
			} else {
				FN(lvec) ch;
				memcpy(&old, labels + o, sizeof(old));
				ch = old != li;
				nchg -= ch;
				/* Only the changed lanes, one per set bit (no sums: the E-step). */
				for (unsigned bits = incr && ps ? FN(lbits)(ch) : 0; bits;
				     bits &= bits - 1) {
					unsigned l = (unsigned)__builtin_ctz(bits);
					FN(move_point)
					(ps, D, k, blk + h * KM_L + l, KM_B, old[l], li[l]);
				}
				memcpy(labels + o, &li, sizeof(li));
			}
		}
		if (incr)
			continue;
		for (size_t c = 0; c < k; c++) {
			_Pragma("GCC unroll 16") for (size_t h = 0; h < KM_H; h++)
			{
				FN(ivec) mask = lab[h] == (T)c;
				cnt[c] -= mask;
				_Pragma("GCC unroll 16") for (size_t j = 0; j < D; j++)
				    acc[c * D + j] += (FN(vec))((FN(ivec))xv[j][h] & mask);
			}
		}
	}
#undef KM_H
	{
		size_t s = 0;
		for (size_t l = 0; l < KM_L; l++)
			s += (size_t)nchg[l];
		return s;
	}
}

KM_CLONES static size_t
FN(fused_soa)(const T *restrict xt, size_t n, size_t d, const FN(vec) *restrict cv,
	      const FN(vec) *restrict ce, T cmax2, size_t k, int32_t *restrict labels,
	      FN(vec) *restrict acc, FN(ivec) *restrict cnt, double *restrict ps)
{
	/* ps given: incremental sums (the call's acc and cnt are not used). */
	/* Neither ps nor acc: labels only (the final E-step). */
#define KM_FUSED2(D, E)                                                                            \
	(ps    ? FN(fused_body)(xt, n, D, cv, E, cmax2, k, labels, acc, cnt, ps, 1)                \
	 : acc ? FN(fused_body)(xt, n, D, cv, E, cmax2, k, labels, acc, cnt, NULL, 0)              \
	       : FN(fused_body)(xt, n, D, cv, E, cmax2, k, labels, NULL, NULL, NULL, 1))
#define KM_FUSED(D) (ce ? KM_FUSED2(D, ce) : KM_FUSED2(D, NULL))
	switch (d) {
	case 2:
		return KM_FUSED(2);
	case 3:
		return KM_FUSED(3);
	case 4:
		return KM_FUSED(4);
	case 8:
		return KM_FUSED(8);
	case 16:
		return KM_FUSED(16);
	default:
		return KM_FUSED(d);
	}
#undef KM_FUSED
#undef KM_FUSED2
}

/* Sum over points of the squared distance to their labelled center (final inertia). */
static inline __attribute__((always_inline)) double
FN(inertia_body)(const T *restrict xt, size_t n, size_t D, const T *restrict c,
		 const int32_t *restrict labels)
{
	FN(dvec) tot = {0};
	double s = 0;

	for (size_t i = 0; i + KM_L <= n; i += KM_L) {
		const T *blk = xt + (i / KM_B) * D * KM_B + i % KM_B;
		FN(vec) a = {0};
		T cj[KM_L];

		_Pragma("GCC unroll 16") for (size_t j = 0; j < D; j++)
		{
			FN(vec) xv, cvj, t;
			memcpy(&xv, blk + j * KM_B, sizeof(xv));
			for (size_t l = 0; l < KM_L; l++)
				cj[l] = c[(size_t)labels[i + l] * D + j];
			memcpy(&cvj, cj, sizeof(cvj));
			t = xv - cvj;
			a += t * t;
		}
		tot += __builtin_convertvector(a, FN(dvec));
	}
	for (size_t i = n / KM_L * KM_L; i < n; i++) {
		const T *blk = xt + (i / KM_B) * D * KM_B + i % KM_B;
		T a = 0;
		for (size_t j = 0; j < D; j++) {
			T t = blk[j * KM_B] - c[(size_t)labels[i] * D + j];
			a += t * t;
		}
		s += (double)a;
	}
	{
		double lanes[KM_L];
		memcpy(lanes, &tot, sizeof(lanes));
		for (size_t l = 0; l < KM_L; l++)
			s += lanes[l];
	}
	return s;
}

KM_CLONES static double
FN(inertia_soa)(const T *restrict xt, size_t n, size_t d, const T *restrict c,
		const int32_t *restrict labels)
{
	switch (d) {
	case 2:
		return FN(inertia_body)(xt, n, 2, c, labels);
	case 3:
		return FN(inertia_body)(xt, n, 3, c, labels);
	case 4:
		return FN(inertia_body)(xt, n, 4, c, labels);
	case 8:
		return FN(inertia_body)(xt, n, 8, c, labels);
	case 16:
		return FN(inertia_body)(xt, n, 16, c, labels);
	default:
		return FN(inertia_body)(xt, n, d, c, labels);
	}
}

#ifdef KM_F64
/*
 * Float32 pre-screen for float64 data (Lloyd, d <= KM_SMALL_D): each block's
 * distances to all centers are first taken in float on twice the lanes, from
 * float copies of the points and centers, by the expansion ||c||^2 - 2 x.c
 * (||x||^2 is common to all centers; one multiply-add per value, as a matrix
 * product takes it). A point whose float nearest center
 * beats its float second-nearest by more than twice a rigorous bound on the
 * float error (plus the float64 sum's own) has that center as its float64
 * nearest as well, uniquely, so it is taken as is; any other block is
 * recomputed in float64 (nearest_soa): labels equal the float64 path's.
 * Bound: with u = 2^-24, rounding x and c to float moves the squared distance
 * by at most 4 u (|x|^2 + |c|^2), and the expansion's sum of d + 1 terms (any
 * order, products fused or not) errs by at most 1.01 (d + 2) u (|c|^2 + 2 |x||c|)
 * <= 2.02 (d + 2) u (|x|^2 + |c|^2): a distance by (2.02 d + 8.1) u (|x|^2 + |c|^2)
 * at most. KM_SCREEN_K (d + 6) u (|x|^2 + max |c|^2) covers twice that (and the
 * float64 sum's own error) with margin for the float bound's own rounding. Blocks whose scale is
 * outside [1e-20, 1e37] (float underflow or overflow) are always recomputed.
 */
typedef float FN(fvec) __attribute__((vector_size(KM_VBYTES)));
typedef int32_t FN(fivec) __attribute__((vector_size(KM_VBYTES)));
#define KM_LF (KM_VBYTES / sizeof(float))
#ifndef KM_SCREEN_K
#define KM_SCREEN_K 4.5f
#endif

static inline __attribute__((always_inline)) FN(fvec)
    FN(fblend)(FN(fivec) mask, FN(fvec) a, FN(fvec) b)
{
	return (FN(fvec))(((FN(fivec))a & mask) | ((FN(fivec))b & ~mask));
}

/* Lane-wise minimum and maximum (vminps / vmaxps; no NaN reaches them undetected). */
static inline __attribute__((always_inline)) FN(fvec) FN(fmin)(FN(fvec) a, FN(fvec) b)
{
#if defined(__x86_64__) && KM_VBYTES == 32
	return (FN(fvec))_mm256_min_ps((__m256)a, (__m256)b);
#elif defined(__x86_64__) && KM_VBYTES == 16
	return (FN(fvec))_mm_min_ps((__m128)a, (__m128)b);
#else
	return FN(fblend)(a < b, a, b);
#endif
}

static inline __attribute__((always_inline)) FN(fvec) FN(fmax)(FN(fvec) a, FN(fvec) b)
{
#if defined(__x86_64__) && KM_VBYTES == 32
	return (FN(fvec))_mm256_max_ps((__m256)a, (__m256)b);
#elif defined(__x86_64__) && KM_VBYTES == 16
	return (FN(fvec))_mm_max_ps((__m128)a, (__m128)b);
#else
	return FN(fblend)(a > b, a, b);
#endif
}

/* Whether any lane of a float-width mask is set. */
static inline __attribute__((always_inline)) int
FN(fany)(FN(fivec) m)
{
#if defined(__x86_64__) && defined(__AVX2__)
	if (sizeof(m) == 32) {
		__m256i v;
		memcpy(&v, &m, sizeof(v));
		return !_mm256_testz_si256(v, v);
	}
#endif
#if defined(__x86_64__) && defined(__SSE2__)
	if (sizeof(m) == 16) {
		__m128i v;
		memcpy(&v, &m, sizeof(v));
		return _mm_movemask_epi8(v) != 0;
	}
#endif
	{
		int32_t l[KM_LF], o = 0;
		memcpy(l, &m, sizeof(l));
		for (size_t i = 0; i < KM_LF; i++)
			o |= l[i];
		return o != 0;
	}
}

/* Returns nonzero when some lane of the block was not decided (bl then partly unset). */
static inline __attribute__((always_inline)) int
FN(screen_body)(const float *restrict xf, size_t D, const FN(fvec) *restrict cf, size_t k,
		float cmax2, int32_t *restrict bl)
{
	const float kd = KM_SCREEN_K * (float)(D + 6) * 0x1p-24f;
	int need = 0;

	for (size_t h = 0; h < KM_B / KM_LF; h++) {
		FN(fvec) best = (FN(fvec)){0} + INFINITY, second = best, lab = {0}, x2 = {0};
		FN(fvec) xv[KM_SMALL_D], bound, gap;
		FN(fivec) ok, li;

		_Pragma("GCC unroll 16") for (size_t j = 0; j < D; j++)
		{
			memcpy(&xv[j], xf + j * KM_B + h * KM_LF, sizeof(xv[j]));
			x2 += xv[j] * xv[j];
		}
		FN(fvec) cl = {0};
		/* Two centers a step, each sum in two halves: four independent chains. */
		for (size_t ci = 0; ci < k; ci += 2) {
			const FN(fvec) *e = cf + ci * (D + 1);
			const FN(fvec) *f = ci + 1 < k ? e + (D + 1) : e;
			FN(fvec) a[2] = {e[0], f[0]}, a2[2] = {0};

			_Pragma("GCC unroll 16") for (size_t j = 0; j < D; j += 2)
			{
				a[0] += xv[j] * e[1 + j];
				a[1] += xv[j] * f[1 + j];
				if (j + 1 < D) {
					a2[0] += xv[j + 1] * e[2 + j];
					a2[1] += xv[j + 1] * f[2 + j];
				}
			}
			_Pragma("GCC unroll 2") for (size_t q = 0; q < 2; q++)
			{
				FN(fvec) v = a[q] + a2[q];
				FN(fivec) lt = v < best;

				if (ci + q >= k)
					break;
				/* second = min(second, max(v, best)): the old best when v beats it.
				 */
				second = FN(fmin)(second, FN(fmax)(v, best));
				best = FN(fblend)(lt, v, best);
				lab = FN(fblend)(lt, cl, lab);
				cl += 1;
			}
		}
		x2 += cmax2;
		bound = kd * x2;
		gap = second - best;
		/* NaN and out-of-range scales compare false: recomputed. */
		ok = (gap > bound) & (x2 >= 1e-20f) & (x2 <= 1e37f);
		li = __builtin_convertvector(lab, FN(fivec));
		memcpy(bl + h * KM_LF, &li, sizeof(li));
		need |= FN(fany)(~ok);
	}
	return need;
}

/* Nearest centers of one block of KM_B points, equal to nearest_soa's in float64. */
KM_CLONES static void
FN(nearest_screen)(const float *restrict xf, const T *restrict xt, size_t d,
		   const FN(fvec) *restrict cf, const FN(vec) *restrict cv, size_t k, float cmax2,
		   int32_t *restrict bl)
{
	int need;
	T bd[KM_B], sd[KM_B];

	switch (d) {
	case 2:
		need = FN(screen_body)(xf, 2, cf, k, cmax2, bl);
		break;
	case 3:
		need = FN(screen_body)(xf, 3, cf, k, cmax2, bl);
		break;
	case 4:
		need = FN(screen_body)(xf, 4, cf, k, cmax2, bl);
		break;
	case 8:
		need = FN(screen_body)(xf, 8, cf, k, cmax2, bl);
		break;
	case 16:
		need = FN(screen_body)(xf, 16, cf, k, cmax2, bl);
		break;
	default:
		need = FN(screen_body)(xf, d, cf, k, cmax2, bl);
	}
	if (need)
		FN(nearest_soa)(xt, d, cv, k, bl, bd, sd, 0);
}
#endif
#pragma GCC diagnostic pop

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
static inline __attribute__((always_inline)) void
FN(transpose_body)(const T *restrict x, size_t n, size_t d, T *restrict xt)
{
	size_t full = n / KM_B, nblocks = (n + KM_B - 1) / KM_B;

	for (size_t b = 0; b < full; b++) {
		T *blk = xt + b * d * KM_B;
		const T *src = x + b * KM_B * d;
		for (size_t j = 0; j < d; j++)
			for (size_t i = 0; i < KM_B; i++)
				blk[j * KM_B + i] = src[i * d + j];
	}
	for (size_t b = full; b < nblocks; b++) {
		T *blk = xt + b * d * KM_B;
		for (size_t i = 0; i < KM_B; i++) {
			size_t r = b * KM_B + i;
			for (size_t j = 0; j < d; j++)
				blk[j * KM_B + i] = r < n ? x[r * d + j] : 0;
		}
	}
}

KM_CLONES static void
FN(transpose)(const T *x, size_t n, size_t d, T *xt)
{
	/* A constant d lets the compiler turn the gathers into shuffles. */
	switch (d) {
	case 2:
		FN(transpose_body)(x, n, 2, xt);
		break;
	case 4:
		FN(transpose_body)(x, n, 4, xt);
		break;
	case 8:
		FN(transpose_body)(x, n, 8, xt);
		break;
	case 16:
		FN(transpose_body)(x, n, 16, xt);
		break;
	case 32:
		FN(transpose_body)(x, n, 32, xt);
		break;
	default:
		FN(transpose_body)(x, n, d, xt);
	}
}

struct FN(km) {
	const T *x;
	const T *xt; /* blocks of KM_B transposed points, when d <= KM_XT_D */
	size_t n, d, k;
	T *c;		 /* current centers, k x d */
	FN(vec) * cv;	 /* the same, each value splatted over a vector (with xt) */
	FN(vec) * ce;	 /* float32 Lloyd: per center ||c||^2, -2 c_j splatted, or NULL */
	T cemax2;	 /* with ce: largest ||c||^2, rounded up */
	int32_t *labels; /* n */
	double *ub, *lb; /* Hamerly bounds (distances, not squared) */
	double *half;	 /* Hamerly: half the distance to the nearest other center */
	double *shift;	 /* how far each center moved in the last update */
	double max1, max2;
	size_t imax1;
	double *part;	 /* per chunk: k*d sums then k counts */
	size_t *changed; /* per chunk */
	int mode;	 /* KM_FULL, KM_HAMERLY, KM_ESTEP (assign only) */
	int incr;	 /* part holds the sums of the current labels: update them */
#ifdef KM_F64
	const float *xtf; /* float copy of xt for the pre-screen, or NULL */
	void *cvf;	  /* float centers (||c||^2, -2 c_j) splatted (FN(fvec)), with xtf */
	float cmax2;	  /* largest squared norm of a center, rounded up */
	void *cr;	  /* row path: centers as FN(rv) vectors, k rounded up to KM_RL, or NULL */
	double *inert;	  /* row path: per chunk, the inertia of its rows */
	double *vpart;	  /* row path, first pass: per chunk, shifted sums for the variance */
#endif
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

/* Vector lane sums (k * d values, k counts) into a chunk's double partial sums. */
static void
FN(reduce_lanes)(const FN(vec) * acc, const FN(ivec) * cnt, size_t k, size_t d, double *ps)
{
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
}

#ifdef KM_F64
/*
 * Row-major float64 Lloyd at d = 16 (a row is four vectors of 4 doubles):
 * no transposed copy is made. A fit that converges in a few passes otherwise
 * spends most of its time writing that copy (and, first, having the kernel
 * zero the fresh pages under it). A point's squared distances to four
 * centers are summed across lanes at once by two rounds of shuffles, so each
 * distance is ((l0 + l1) + (l2 + l3)) of its lane sums, whichever center.
 * (A float32 instantiation was slower than the float32 transposed path with
 * its expansion screen, whose copy is half as large.)
 */
#define KM_RD	 16
#define KM_RKMAX 64
#define KM_RL	 4 /* lanes of a 32-byte vector of doubles */
#define KM_RV	 4 /* vectors per row */
typedef double FN(rv) __attribute__((vector_size(32)));
typedef int64_t FN(rvi) __attribute__((vector_size(32)));
/* An unaligned view of four doubles: one 32-byte load (memcpy into a vector
 * array went through the stack in halves, and reloading stalled). */
typedef double FN(rvu) __attribute__((vector_size(32), aligned(8), may_alias));

/* Lane sums of s[0 .. 3] into the lanes of *out, pairwise. */
static inline __attribute__((always_inline)) void
FN(rhsum)(FN(rv) * out, const FN(rv) * s)
{
	FN(rv)
	t0 = __builtin_shuffle(s[0], s[1], (FN(rvi)){0, 4, 2, 6}) +
	     __builtin_shuffle(s[0], s[1], (FN(rvi)){1, 5, 3, 7});
	FN(rv)
	t1 = __builtin_shuffle(s[2], s[3], (FN(rvi)){0, 4, 2, 6}) +
	     __builtin_shuffle(s[2], s[3], (FN(rvi)){1, 5, 3, 7});

	*out = __builtin_shuffle(t0, t1, (FN(rvi)){0, 1, 4, 5}) +
	       __builtin_shuffle(t0, t1, (FN(rvi)){2, 3, 6, 7});
}

/* Squared differences of a row and a center, summed per lane. */
static inline __attribute__((always_inline)) void
FN(rsq)(FN(rv) * out, const FN(rv) * xv, const FN(rv) *restrict cc)
{
	FN(rv) t = xv[0] - cc[0], a = t * t;

	for (size_t v = 1; v < KM_RV; v++) {
		t = xv[v] - cc[v];
		a += t * t;
	}
	*out = a;
}

/* Distances of a row to centers c .. c + KM_RL - 1. */
static inline __attribute__((always_inline)) void
FN(rdist)(FN(rv) * out, const FN(rv) * xv, const FN(rv) *restrict cr, size_t c)
{
	FN(rv) s[KM_RL];

	for (size_t q = 0; q < KM_RL; q++)
		FN(rsq)(&s[q], xv, cr + (c + q) * KM_RV);
	FN(rhsum)(out, s);
}

/* Lane-wise a < b ? a : b (b where a is NaN). */
static inline __attribute__((always_inline)) void
FN(rmin)(FN(rv) * b, FN(rv) a)
{
	FN(rvi) lt = a < *b;

	*b = (FN(rv))(((FN(rvi))a & lt) | ((FN(rvi)) * b & ~lt));
}

static inline __attribute__((always_inline)) void
FN(rimin)(FN(rvi) * b, FN(rvi) a)
{
	FN(rvi) lt = a < *b;

	*b = (a & lt) | (*b & ~lt);
}

/*
 * Nearest of k centers (ties to the lower index), its squared distance in *bd.
 * Lane l keeps the best of centers l, l + KM_RL, ... without branches (a
 * branch per center mispredicts on most points); then the lanes are
 * compared. Padding centers repeat center 0, so they never beat it.
 */
static inline __attribute__((always_inline)) int32_t
FN(row_nearest)(const FN(rv) * xv, const FN(rv) *restrict cr, size_t k, T *bd)
{
	FN(rv) best, mn, sw;
	FN(rvi) idx, gi, eq, sel, t;

	for (size_t l = 0; l < KM_RL; l++)
		idx[l] = (ITYPE)l;
	gi = idx;
	FN(rdist)(&best, xv, cr, 0);
	for (size_t c = KM_RL; c < k; c += KM_RL) {
		FN(rv) h;
		FN(rvi) lt;

		FN(rdist)(&h, xv, cr, c);
		lt = h < best;
		gi += (ITYPE)KM_RL;
		best = (FN(rv))(((FN(rvi))h & lt) | ((FN(rvi))best & ~lt));
		idx = (gi & lt) | (idx & ~lt);
	}
	/*
	 * The smallest value in every lane, then the smallest index among the
	 * lanes holding it (none when it is NaN: index KM_RKMAX, taken as 0).
	 */
	mn = best;
	sw = __builtin_shuffle(mn, (FN(rvi)){1, 0, 3, 2});
	FN(rmin)(&mn, sw);
	sw = __builtin_shuffle(mn, (FN(rvi)){2, 3, 0, 1});
	FN(rmin)(&mn, sw);
	eq = best == mn;
	sel = (idx & eq) | (((FN(rvi)){0} + KM_RKMAX) & ~eq);
	t = __builtin_shuffle(sel, (FN(rvi)){1, 0, 3, 2});
	FN(rimin)(&sel, t);
	t = __builtin_shuffle(sel, (FN(rvi)){2, 3, 0, 1});
	FN(rimin)(&sel, t);
	*bd = mn[0];
	return sel[0] < (ITYPE)k ? (int32_t)sel[0] : 0;
}

/*
 * One chunk of a row-path pass. First pass: assign and sum per cluster (and,
 * with vpart, sum the rows shifted by the first row and their squares, for
 * the tolerance); later passes: move the points whose label changed; final
 * E-step (no part): assign and sum the distances, the inertia.
 */
static void
FN(row_chunk)(struct FN(km) * m, size_t ci)
{
	size_t k = m->k, lo = ci * KM_CHUNK, hi = lo + KM_CHUNK < m->n ? lo + KM_CHUNK : m->n;
	double *ps = m->part ? m->part + ci * k * (KM_RD + 1) : NULL;
	int incr = ps && m->incr, var = m->vpart != NULL;
	const FN(rv) *cr = m->cr;
	FN(rv) s1[KM_RV] = {{0}}, s2[KM_RV] = {{0}}, sh[KM_RV];
	size_t changed = 0;
	double inert = 0;

	if (ps && !incr)
		memset(ps, 0, k * (KM_RD + 1) * sizeof(*ps));
	for (size_t v = 0; v < KM_RV; v++)
		sh[v] = *(const FN(rvu) *)(m->x + KM_RL * v);
	for (size_t i = lo; i < hi; i++) {
		const T *xi = m->x + i * KM_RD;
		FN(rv) xv[KM_RV];
		T bd;
		int32_t l, old = m->labels[i];

		for (size_t v = 0; v < KM_RV; v++)
			xv[v] = *(const FN(rvu) *)(xi + KM_RL * v);
		l = FN(row_nearest)(xv, cr, k, &bd);
		if (!ps) {
			inert += (double)bd;
		} else if (incr) {
			if (l != old)
				FN(move_point)(ps, KM_RD, k, xi, 1, old, l);
		} else {
			double *a = ps + (size_t)l * KM_RD;

			for (size_t v = 0; v < KM_RV; v++)
				*(FN(rvu) *)(a + KM_RL * v) += xv[v];
			ps[k * KM_RD + (size_t)l] += 1;
		}
		if (var)
			for (size_t v = 0; v < KM_RV; v++) {
				FN(rv) t = xv[v] - sh[v];
				s1[v] += t;
				s2[v] += t * t;
			}
		changed += l != old;
		m->labels[i] = l;
	}
	m->changed[ci] = changed;
	if (!ps)
		m->inert[ci] = inert;
	if (var) {
		memcpy(m->vpart + ci * 2 * KM_RD, s1, sizeof(s1));
		memcpy(m->vpart + ci * 2 * KM_RD + KM_RD, s2, sizeof(s2));
	}
}

/* Strict convergence: the inertia of the labels kept, against the updated centers. */
static void
FN(row_inertia_chunk)(void *arg, size_t ci)
{
	struct FN(km) *m = arg;
	size_t lo = ci * KM_CHUNK, hi = lo + KM_CHUNK < m->n ? lo + KM_CHUNK : m->n;
	const FN(rv) *cr = m->cr;
	double inert = 0;

	for (size_t i = lo; i < hi; i++) {
		FN(rv) xv[KM_RV], a[KM_RL], h;

		for (size_t v = 0; v < KM_RV; v++)
			xv[v] = *(const FN(rvu) *)(m->x + i * KM_RD + KM_RL * v);
		FN(rsq)(&a[0], xv, cr + (size_t)m->labels[i] * KM_RV);
		for (size_t q = 1; q < KM_RL; q++)
			a[q] = a[0];
		/* Summed across lanes in the E-step's order. */
		FN(rhsum)(&h, a);
		inert += h[0];
	}
	m->inert[ci] = inert;
}
#endif

/*
 * The tolerance's mean variance from the first pass's shifted sums (numpy's
 * two-pass variance up to rounding: shifting by a row keeps the sums small),
 * refusing NaN and infinity as FN(mean_variance) does.
 */
static int
FN(shift_var)(const T *x, size_t n, size_t d, const double *vpart, size_t nchunks, double *out)
{
	double tot = 0;

	for (size_t j = 0; j < d; j++) {
		double a = 0, b = 0, v;

		for (size_t c = 0; c < nchunks; c++) {
			a += vpart[c * 2 * d + j];
			b += vpart[c * 2 * d + d + j];
		}
		if (!isfinite(a)) {
			for (size_t i = 0; i < n; i++)
				if (!isfinite((double)x[i * d + j]))
					return pg_error(
					    PG_EINVAL, "kmeans",
					    "value in row %zu, column %zu is not finite", i, j);
			return pg_error(PG_ERANGE, "kmeans", "column %zu overflows", j);
		}
		v = (b - a * a / (double)n) / (double)n;
		tot += v > 0 ? v : 0;
	}
	*out = tot / (double)d;
	return 0;
}

/* Whether a fit takes the row path: float64, d = 16, Lloyd, more than one chunk. */
static int
FN(rows_ok)(size_t n, size_t d, const struct pg_kmeans_params *p)
{
#ifdef KM_F64
	const char *e = getenv("PAYGUARD_KMEANS_ROWS");

	return d == KM_RD && n > KM_CHUNK && p->k <= KM_RKMAX && p->algo != PG_KMEANS_HAMERLY &&
	       !(e && atoi(e) == 0);
#else
	(void)n;
	(void)d;
	(void)p;
	return 0;
#endif
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
	/* After the first pass ps holds the last labelling: move changed points only. */
	int incr = ps && m->incr;

#ifdef KM_F64
	const int screen = m->xtf && !m->ub;

	if (m->cr) {
		FN(row_chunk)(m, ci);
		return;
	}
#else
	const int screen = 0;
#endif

	if (m->mode == KM_ESTEP && m->ce && d <= KM_SMALL_D) {
		/* float32 Lloyd's final E-step: labels by the expansion pre-screen. */
		m->changed[ci] =
		    FN(fused_soa)(m->xt + (lo / KM_B) * d * KM_B, hi - lo, d, m->cv, m->ce,
				  m->cemax2, k, m->labels + lo, NULL, NULL, NULL);
		return;
	}
	if (m->mode == KM_FULL && m->xt && !m->ub && ps && d <= KM_SMALL_D && m->incr && !screen) {
		/* Lloyd with small d after the first pass: assign, move changed points. */
		m->changed[ci] = FN(fused_soa)(m->xt + (lo / KM_B) * d * KM_B, hi - lo, d, m->cv,
					       m->ce, m->cemax2, k, m->labels + lo, NULL, NULL, ps);
		return;
	}
	if (m->mode == KM_FULL && m->xt && !m->ub && ps && d <= KM_SMALL_D && k * d <= KM_ACC_MAX &&
	    k <= KM_ACC_MAX / 4 && !screen) {
		/* Lloyd with small d: one pass assigns and sums (fused_soa). */
		FN(vec) acc[KM_ACC_MAX];
		FN(ivec) cnt[KM_ACC_MAX / 4];

		memset(acc, 0, k * d * sizeof(acc[0]));
		memset(cnt, 0, k * sizeof(cnt[0]));
		m->changed[ci] = FN(fused_soa)(m->xt + (lo / KM_B) * d * KM_B, hi - lo, d, m->cv,
					       m->ce, m->cemax2, k, m->labels + lo, acc, cnt, NULL);
		FN(reduce_lanes)(acc, cnt, k, d, ps);
		return;
	}
	if (m->mode != KM_HAMERLY) {
		/*
		 * A point whose label changed is moved in the chunk's sums a few
		 * blocks later (in the same order: the same sums), its row
		 * prefetched meanwhile; read at once, the row missed the cache.
		 */
		struct {
			int32_t i, from, to;
		} q[KM_DEFER * KM_B];
		size_t qh = 0, qn = 0;

		for (size_t i = lo; i < hi; i += KM_B) {
			size_t nb = hi - i < KM_B ? hi - i : KM_B;

			for (; incr && qn > (KM_DEFER - 1) * KM_B;
			     qn--, qh = (qh + 1) % (KM_DEFER * KM_B))
				FN(move_point)
			(ps, d, k, m->x + (size_t)q[qh].i * d, 1, q[qh].from, q[qh].to);

#ifdef KM_F64
			if (screen) {
				FN(nearest_screen)
				(m->xtf + (i / KM_B) * d * KM_B, m->xt + (i / KM_B) * d * KM_B, d,
				 m->cvf, m->cv, k, m->cmax2, bl);
			} else
#endif
			    if (m->xt) {
				FN(nearest_soa)
				(m->xt + (i / KM_B) * d * KM_B, d, m->cv, k, bl, bd, sd,
				 m->ub != NULL);
			} else {
				FN(nearest_rows)(m->x + i * d, nb, d, m->c, k, bl, bd, sd);
			}
			for (size_t b = 0; b < nb; b++) {
				changed += m->labels[i + b] != bl[b];
				if (incr && m->labels[i + b] != bl[b]) {
					const T *r = m->x + (i + b) * d;
					__builtin_prefetch(r);
					__builtin_prefetch(r + d - 1);
					q[(qh + qn) % (KM_DEFER * KM_B)].i = (int32_t)(i + b);
					q[(qh + qn) % (KM_DEFER * KM_B)].from = m->labels[i + b];
					q[(qh + qn) % (KM_DEFER * KM_B)].to = bl[b];
					qn++;
				}
				m->labels[i + b] = bl[b];
				if (m->ub) {
					m->ub[i + b] = sqrt((double)bd[b]);
					m->lb[i + b] = sqrt((double)sd[b]);
				}
			}
		}
		for (; qn > 0; qn--, qh = (qh + 1) % (KM_DEFER * KM_B))
			FN(move_point)
		(ps, d, k, m->x + (size_t)q[qh].i * d, 1, q[qh].from, q[qh].to);
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
						if (incr)
							FN(move_point)
						(ps, d, k, m->x + i * d, 1, a, bl[0]);
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
	if (!ps || incr)
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
		FN(reduce_lanes)(acc, cnt, k, d, ps);
	} else if (d == 4) {
		FN(accumulate)(m->x, m->labels, lo, hi, 4, k, ps);
	} else {
		FN(accumulate)(m->x, m->labels, lo, hi, d, k, ps);
	}
}

/* Transposing or summing one chunk of KM_CHUNK rows, on the threads. */
struct FN(rows) {
	const T *x, *xt, *c;
	T *out;
	const int32_t *labels;
	size_t n, d;
	double *part; /* per chunk: its inertia, or (transposing) 2 d shifted sums */
};

/* A chunk's rows shifted by the first row: sums, then sums of squares. */
static inline __attribute__((always_inline)) void
FN(shift_sums)(const T *restrict x, size_t nr, size_t D, const T *restrict sh, double *restrict ps)
{
	for (size_t j = 0; j < 2 * D; j++)
		ps[j] = 0;
	for (size_t i = 0; i < nr; i++)
		for (size_t j = 0; j < D; j++) {
			double t = (double)x[i * D + j] - (double)sh[j];
			ps[j] += t;
			ps[D + j] += t * t;
		}
}

static void
FN(transpose_chunk)(void *arg, size_t ci)
{
	struct FN(rows) *r = arg;
	size_t lo = ci * KM_CHUNK, nr = r->n - lo < KM_CHUNK ? r->n - lo : KM_CHUNK, d = r->d;

	FN(transpose)(r->x + lo * d, nr, d, r->out + (lo / KM_B) * d * KM_B);
	if (!r->part)
		return;
	/* The rows were just read: their sums for the tolerance come from cache. */
	double *ps = r->part + ci * 2 * d;
	const T *x = r->x + lo * d;
	switch (d) {
	case 2:
		FN(shift_sums)(x, nr, 2, r->x, ps);
		break;
	case 4:
		FN(shift_sums)(x, nr, 4, r->x, ps);
		break;
	case 8:
		FN(shift_sums)(x, nr, 8, r->x, ps);
		break;
	case 16:
		FN(shift_sums)(x, nr, 16, r->x, ps);
		break;
	default:
		FN(shift_sums)(x, nr, d, r->x, ps);
	}
}

static int FN(mean_variance)(const T *x, size_t n, size_t d, size_t nthreads, double *out);

/*
 * The transposed copy used by the small-d kernels, or NULL for large d.
 * With var, also the tolerance's mean variance (FN(shift_var)), which
 * refuses NaN and infinity before any kernel reads the data.
 */
static int
FN(make_xt)(const T *x, size_t n, size_t d, size_t nthreads, T **xt, double *var)
{
	struct FN(rows) r = {.x = x, .n = n, .d = d};
	size_t nchunks = (n + KM_CHUNK - 1) / KM_CHUNK;
	int rc = 0;

	*xt = NULL;
	if (d > KM_XT_D)
		return var ? FN(mean_variance)(x, n, d, nthreads, var) : 0;
	*xt = km_alloc_big(((n + KM_B - 1) / KM_B) * KM_B * d * sizeof(T));
	if (var)
		r.part = malloc(nchunks * 2 * d * sizeof(double));
	if (!*xt || (var && !r.part)) {
		free(r.part);
		return pg_error(PG_ENOMEM, "kmeans", "work space for %zu rows", n);
	}
	r.out = *xt;
	km_parallel(FN(transpose_chunk), &r, nchunks, nthreads);
	if (var)
		rc = FN(shift_var)(x, n, d, r.part, nchunks, var);
	free(r.part);
	return rc;
}

#ifdef KM_F64
struct FN(conv) {
	const double *in;
	float *out;
	size_t n; /* values */
};

static void
FN(conv_chunk)(void *arg, size_t ci)
{
	struct FN(conv) *v = arg;
	size_t lo = ci * KM_CHUNK * 8, hi = lo + KM_CHUNK * 8 < v->n ? lo + KM_CHUNK * 8 : v->n;

	for (size_t i = lo; i < hi; i++)
		v->out[i] = (float)v->in[i];
}

/* A float copy of the transposed blocks (same layout), for the pre-screen. */
static int
FN(make_xtf)(const double *xt, size_t n, size_t d, size_t nthreads, float **xtf)
{
	struct FN(conv) v = {.in = xt, .n = ((n + KM_B - 1) / KM_B) * KM_B * d};

	*xtf = km_alloc_big(v.n * sizeof(float));
	if (!*xtf)
		return pg_error(PG_ENOMEM, "kmeans", "work space for %zu rows", n);
	v.out = *xtf;
	km_parallel(FN(conv_chunk), &v, (v.n + KM_CHUNK * 8 - 1) / (KM_CHUNK * 8), nthreads);
	return 0;
}
#endif

static void
FN(inertia_chunk)(void *arg, size_t ci)
{
	struct FN(rows) *r = arg;
	size_t lo = ci * KM_CHUNK, nr = r->n - lo < KM_CHUNK ? r->n - lo : KM_CHUNK;

	r->part[ci] =
	    FN(inertia_soa)(r->xt + (lo / KM_B) * r->d * KM_B, nr, r->d, r->c, r->labels + lo);
}

/* The final inertia over the threads: chunks' sums added in chunk order. */
static int
FN(inertia_par)(const T *xt, size_t n, size_t d, const T *c, const int32_t *labels, size_t nthreads,
		double *out)
{
	size_t nchunks = (n + KM_CHUNK - 1) / KM_CHUNK;
	struct FN(rows) r = {.xt = xt, .c = c, .labels = labels, .n = n, .d = d};

	r.part = malloc(nchunks * sizeof(double));
	if (!r.part)
		return pg_error(PG_ENOMEM, "kmeans", "work space for %zu rows", n);
	km_parallel(FN(inertia_chunk), &r, nchunks, nthreads);
	*out = 0;
	for (size_t i = 0; i < nchunks; i++)
		*out += r.part[i];
	free(r.part);
	return 0;
}

/*
 * Mean over features of the (population) variance, as numpy's var: two
 * passes over the rows, also refusing NaN and infinity on the way.
 */
static inline __attribute__((always_inline)) void
FN(col_sums)(const T *restrict x, size_t n, size_t d, double *restrict mean)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < d; j++)
			mean[j] += (double)x[i * d + j];
}

static inline __attribute__((always_inline)) void
FN(col_sqdev)(const T *restrict x, size_t n, size_t d, const double *restrict mean,
	      double *restrict var)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < d; j++) {
			double t = (double)x[i * d + j] - mean[j];
			var[j] += t * t;
		}
}

/* One chunk of rows of either pass, into the chunk's d partial sums. */
struct FN(mv) {
	const T *x;
	size_t n, d;
	const double *mean; /* NULL: the first pass (sums) */
	double *part;	    /* nchunks x d */
};

static void
FN(mv_chunk)(void *arg, size_t ci)
{
	struct FN(mv) *s = arg;
	size_t lo = ci * KM_CHUNK, nr = s->n - lo < KM_CHUNK ? s->n - lo : KM_CHUNK, d = s->d;
	const T *x = s->x + lo * d;
	double *ps = s->part + ci * d;

	memset(ps, 0, d * sizeof(double));
	/* A constant d lets the compiler keep the sums in vector registers. */
#define KM_MV(D) (s->mean ? FN(col_sqdev)(x, nr, D, s->mean, ps) : FN(col_sums)(x, nr, D, ps))
	switch (d) {
	case 2:
		KM_MV(2);
		break;
	case 4:
		KM_MV(4);
		break;
	case 8:
		KM_MV(8);
		break;
	case 16:
		KM_MV(16);
		break;
	case 32:
		KM_MV(32);
		break;
	default:
		KM_MV(d);
	}
#undef KM_MV
}

static int
FN(mean_variance)(const T *x, size_t n, size_t d, size_t nthreads, double *out)
{
	size_t nchunks = (n + KM_CHUNK - 1) / KM_CHUNK;
	double *mean = calloc(d, sizeof(double)), *var = calloc(d, sizeof(double)), tot = 0;
	struct FN(mv) s = {.x = x, .n = n, .d = d};
	int rc = 0;

	s.part = malloc(nchunks * d * sizeof(double));
	if (!mean || !var || !s.part) {
		rc = pg_error(PG_ENOMEM, "kmeans", "variance of %zu columns", d);
		goto out;
	}
	/* Per chunk of rows on the threads, the chunks' sums added in chunk order. */
	km_parallel(FN(mv_chunk), &s, nchunks, nthreads);
	for (size_t c = 0; c < nchunks; c++)
		for (size_t j = 0; j < d; j++)
			mean[j] += s.part[c * d + j];
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
	s.mean = mean;
	km_parallel(FN(mv_chunk), &s, nchunks, nthreads);
	for (size_t c = 0; c < nchunks; c++)
		for (size_t j = 0; j < d; j++)
			var[j] += s.part[c * d + j];
	for (size_t j = 0; j < d; j++)
		tot += var[j] / (double)n;
	*out = tot / (double)d;
out:
	free(mean);
	free(var);
	free(s.part);
	return rc;
}

/*
 * Greedy k-means++ (scikit-learn's _kmeans_plusplus): each new center is the
 * best of 2 + log(k) candidates sampled in proportion to the squared distance
 * to the nearest chosen center. Each point keeps that distance (cl) and which
 * center it is (asg); a candidate is scored by its gain, the sum of how much
 * it shortens those distances, and a point's distance to it is computed only
 * when the triangle inequality does not already rule it out
 * (|cand - c_a|^2 >= 4 |x - c_a|^2, with a 1 % margin for rounding; skipped
 * points could not have become closer). The sampling sums are kept per block
 * of KM_SB points, so drawing a candidate reads one block. Chunks of points
 * are spread over the threads; per-chunk gains are added in chunk order, so
 * the centers do not depend on the thread count.
 */
#ifndef KM_SB
#define KM_SB 256 /* points per block of the sampling sums; divides KM_CHUNK */
#endif

struct FN(pp) {
	const T *x, *xt;
	size_t n, d, npad, nxt; /* npad: multiple of KM_SB; nxt: rows in xt */
	T *cl;			/* npad: squared distance to the nearest chosen center */
	int32_t *asg;		/* npad: that center */
	const T *thr;		/* per candidate, per center: a quarter of their squared distance */
	size_t k, ntr, ncent;
	const size_t *cand; /* ntr candidate rows */
	double *gain;	    /* nchunks x ntr */
	double *sbsum;	    /* npad / KM_SB block sums of cl */
	T *dist;	    /* with xt: ntr x npad distances of the gain pass (INFINITY: skipped) */
	T *dst;		    /* the current candidate's row of dist, in the gain pass */
	const T *dbest;	    /* the chosen candidate's row, in the apply pass */
	int apply;	    /* 1: make cand[0] center number ncent */
};

static inline __attribute__((always_inline)) int
FN(any)(FN(ivec) m)
{
	/* One movemask where the ISA has it; the lane loop compiles poorly. */
#if defined(__x86_64__) && defined(__AVX2__) && KM_VBYTES == 32
	return sizeof(T) == 4 ? _mm256_movemask_ps((__m256)m) != 0
			      : _mm256_movemask_pd((__m256d)m) != 0;
#elif defined(__x86_64__) && defined(__SSE2__) && KM_VBYTES == 16
	return sizeof(T) == 4 ? _mm_movemask_ps((__m128)m) != 0 : _mm_movemask_pd((__m128d)m) != 0;
#else
	ITYPE l[KM_L];
	ITYPE o = 0;

	memcpy(l, &m, sizeof(l));
	for (size_t i = 0; i < KM_L; i++)
		o |= l[i];
	return o != 0;
#endif
}

/*
 * Double sums of KM_L lanes of T, held as registers of doubles (two for float:
 * a double vector wider than a register went through memory); lane l of the
 * sum is register l / KM_DH, lane l % KM_DH, so each lane adds its values in
 * the same order as a scalar per-lane sum.
 */
#define KM_DH (KM_VBYTES / sizeof(double))
typedef double FN(dreg) __attribute__((vector_size(KM_VBYTES)));
typedef T FN(tpart) __attribute__((vector_size(KM_DH * sizeof(T))));

static inline __attribute__((always_inline)) void
FN(dlanes_add)(FN(dreg) * acc, FN(vec) v)
{
	_Pragma("GCC unroll 4") for (size_t q = 0; q < KM_L / KM_DH; q++)
	{
		FN(tpart) part;
		memcpy(&part, (const char *)&v + q * sizeof(part), sizeof(part));
		acc[q] += __builtin_convertvector(part, FN(dreg));
	}
}

/* One candidate over one chunk of transposed blocks; D constant at the calls. */
static inline __attribute__((always_inline)) void
FN(pp_soa)(struct FN(pp) * s, size_t lo, size_t hi, size_t D, const T *restrict p,
	   const T *restrict thr, int check, FN(dvec) * g)
{
	FN(lvec) nc = (FN(lvec)){0} + (int32_t)s->ncent;
	const FN(vec) inf = (FN(vec)){0} + (T)INFINITY;
	FN(dreg) gl[KM_L / KM_DH];

	memcpy(gl, g, sizeof(gl));

	for (size_t i = lo; i < hi; i += KM_B) {
		const T *blk = s->xt + (i / KM_B) * D * KM_B;

		for (size_t h = 0; h < KM_B / KM_L; h++) {
			size_t o = i + h * KM_L;
			FN(vec) c, acc = {0};
			FN(ivec) upd;

			memcpy(&c, s->cl + o, sizeof(c));
			if (s->apply &&
			    s->dbest) { /* the gain pass kept this candidate's distances */
				memcpy(&acc, s->dbest + o, sizeof(acc));
				goto have;
			}
			if (s->dst)
				memcpy(s->dst + o, &inf, sizeof(inf));
			if (check) {
				FN(vec) tv;
#if defined(__x86_64__) && defined(__AVX2__) && KM_VBYTES == 32
				if (sizeof(T) == 4)
					tv = (FN(vec))_mm256_i32gather_ps(
					    (const float *)thr,
					    _mm256_loadu_si256((const __m256i *)(s->asg + o)), 4);
				else
					tv = (FN(vec))_mm256_i32gather_pd(
					    (const double *)thr,
					    _mm_loadu_si128((const __m128i *)(s->asg + o)), 8);
#else
				T tl[KM_L];
				for (size_t l = 0; l < KM_L; l++)
					tl[l] = thr[s->asg[o + l]];
				memcpy(&tv, tl, sizeof(tv));
#endif
				if (!FN(any)(tv < c))
					continue;
			}
			_Pragma("GCC unroll 16") for (size_t j = 0; j < D; j++)
			{
				FN(vec) xv, t;
				memcpy(&xv, blk + j * KM_B + h * KM_L, sizeof(xv));
				t = xv - p[j];
				acc += t * t;
			}
			if (s->dst)
				memcpy(s->dst + o, &acc, sizeof(acc));
		have:
			upd = acc < c;
			/* With small d a mispredicted skip costs more than the work it skips. */
			if (check && !FN(any)(upd))
				continue;
			if (s->apply) {
				FN(lvec) a;
				c = FN(blend)(upd, acc, c);
				memcpy(s->cl + o, &c, sizeof(c));
				memcpy(&a, s->asg + o, sizeof(a));
				a = (FN(lvec))(
				    ((FN(lvec)) __builtin_convertvector(upd, FN(lvec)) & nc) |
				    (a & ~(FN(lvec)) __builtin_convertvector(upd, FN(lvec))));
				memcpy(s->asg + o, &a, sizeof(a));
			} else {
				FN(dlanes_add)(gl, (FN(vec))((FN(ivec))(c - acc) & upd));
			}
		}
	}
	memcpy(g, gl, sizeof(gl));
}

static void
FN(pp_chunk)(void *arg, size_t ci)
{
	struct FN(pp) *s = arg;
	size_t d = s->d, lo = ci * KM_CHUNK, hi = lo + KM_CHUNK < s->npad ? lo + KM_CHUNK : s->npad;

	for (size_t t = 0; t < s->ntr; t++) {
		const T *p = s->x + s->cand[t] * d, *thr = s->thr + t * s->k;
		FN(dvec) g = {0};
		double gs = 0;

		if (s->xt) {
			size_t h2 = hi < s->nxt ? hi : s->nxt;
			struct FN(pp) sc = *s;
			sc.dst = !s->apply && s->dist ? s->dist + t * s->npad : NULL;
			/* Computing a few values costs less than the test that skips them. */
			int check = d > 16 && s->ncent > 0;
			switch (d) {
			case 2:
				FN(pp_soa)(&sc, lo, h2, 2, p, thr, 0, &g);
				break;
			case 3:
				FN(pp_soa)(&sc, lo, h2, 3, p, thr, 0, &g);
				break;
			case 4:
				FN(pp_soa)(&sc, lo, h2, 4, p, thr, 0, &g);
				break;
			case 8:
				FN(pp_soa)(&sc, lo, h2, 8, p, thr, 0, &g);
				break;
			case 16:
				FN(pp_soa)(&sc, lo, h2, 16, p, thr, 0, &g);
				break;
			case 32:
				FN(pp_soa)(&sc, lo, h2, 32, p, thr, check, &g);
				break;
			default:
				FN(pp_soa)(&sc, lo, h2, d, p, thr, check, &g);
			}
		} else {
			size_t h2 = hi < s->n ? hi : s->n;
			for (size_t i = lo; i < h2; i++) {
				T c = s->cl[i], v;
				if (!(thr[s->asg[i]] < c))
					continue;
				v = FN(sqdist)(s->x + i * d, p, d);
				if (!(v < c))
					continue;
				if (s->apply) {
					s->cl[i] = v;
					s->asg[i] = (int32_t)s->ncent;
				} else {
					gs += (double)(c - v);
				}
			}
		}
		if (!s->apply) {
			double lanes[KM_L];
			memcpy(lanes, &g, sizeof(lanes));
			for (size_t l = 0; l < KM_L; l++)
				gs += lanes[l];
			s->gain[ci * s->ntr + t] = gs;
		}
	}
	if (!s->apply)
		return;
	for (size_t b = lo; b < hi; b += KM_SB) {
		/* KM_L running sums, lane l over points l, l + KM_L, ... */
		FN(dreg) acc[KM_L / KM_DH] = {{0}};
		double lanes[KM_L], sum = 0;
		for (size_t i = b; i < b + KM_SB; i += KM_L) {
			FN(vec) v;
			memcpy(&v, s->cl + i, sizeof(v));
			FN(dlanes_add)(acc, v);
		}
		memcpy(lanes, acc, sizeof(lanes));
		for (size_t l = 0; l < KM_L; l++)
			sum += lanes[l];
		s->sbsum[b / KM_SB] = sum;
	}
}

/* First point whose running sum of cl reaches r (numpy's searchsorted, left). */
static size_t
FN(pp_draw)(const struct FN(pp) * s, const double *pre, size_t nsb, double r)
{
	size_t lo = 0, hi = nsb, end;
	double acc;

	while (lo < hi) { /* first block whose end sum reaches r */
		size_t mid = lo + (hi - lo) / 2;
		if (pre[mid + 1] < r)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == nsb)
		lo = nsb - 1; /* r beyond the total by rounding */
	acc = pre[lo];
	end = (lo + 1) * KM_SB < s->n ? (lo + 1) * KM_SB : s->n;
	for (size_t i = lo * KM_SB; i < end; i++) {
		acc += (double)s->cl[i];
		if (acc >= r)
			return i;
	}
	return end - 1;
}

static int
FN(plusplus)(const T *x, const T *xt, size_t n, size_t d, size_t k, struct km_rng *rng,
	     size_t nthreads, double *centers)
{
	size_t trials = 2 + (size_t)log((double)k);
	size_t npad = (n + KM_SB - 1) / KM_SB * KM_SB, nsb = npad / KM_SB;
	size_t nchunks = (npad + KM_CHUNK - 1) / KM_CHUNK;
	struct FN(pp) s = {.x = x, .xt = xt, .n = n, .d = d, .npad = npad, .k = k};
	size_t *crow = malloc(k * sizeof(size_t)), *ids = malloc(trials * sizeof(size_t));
	T *thr = malloc(trials * k * sizeof(T));
	double *pre = malloc((nsb + 1) * sizeof(double));
	int rc = 0;

	s.nxt = (n + KM_B - 1) / KM_B * KM_B;
	s.cl = aligned_alloc(KM_VBYTES, npad * sizeof(T));
	s.asg = aligned_alloc(KM_VBYTES, npad * sizeof(int32_t));
	s.gain = malloc(nchunks * trials * sizeof(double));
	if (xt) /* optional: without it the chosen candidate's distances are recomputed */
		s.dist = aligned_alloc(KM_VBYTES, trials * npad * sizeof(T));
	s.sbsum = malloc(nsb * sizeof(double));
	s.thr = thr;
	if (!crow || !ids || !thr || !pre || !s.cl || !s.asg || !s.gain || !s.sbsum) {
		rc = pg_error(PG_ENOMEM, "kmeans", "k-means++ work space for %zu rows", n);
		goto out;
	}
	for (size_t i = 0; i < npad; i++) {
		s.cl[i] = i < n ? (T)INFINITY : 0; /* padding: never closer, adds nothing */
		s.asg[i] = 0;
	}
	crow[0] = km_rng_below(rng, n);
	thr[0] = 0;
	for (size_t c = 0; c < k; c++) {
		double bestg = 0;
		size_t best = 0;

		if (c > 0) {
			pre[0] = 0;
			for (size_t b = 0; b < nsb; b++)
				pre[b + 1] = pre[b] + s.sbsum[b];
			for (size_t t = 0; t < trials; t++)
				ids[t] = FN(pp_draw)(&s, pre, nsb, km_rng_double(rng) * pre[nsb]);
			for (size_t t = 0; t < trials; t++)
				for (size_t a = 0; a < c; a++)
					thr[t * k + a] =
					    (T)(0.2475 * (double)FN(sqdist)(x + ids[t] * d,
									    x + crow[a] * d, d));
			s.ntr = trials;
			s.cand = ids;
			s.apply = 0;
			km_parallel(FN(pp_chunk), &s, nchunks, nthreads);
			for (size_t t = 0; t < trials; t++) {
				double g = 0;
				for (size_t ch = 0; ch < nchunks; ch++)
					g += s.gain[ch * trials + t];
				if (t == 0 || g > bestg) {
					bestg = g;
					best = t;
				}
			}
			crow[c] = ids[best];
		}
		/* Make it center c: update the distances and the block sums. */
		s.ntr = 1;
		s.cand = crow + c;
		s.thr = thr + best * k;
		s.ncent = c;
		s.apply = 1;
		s.dbest = c > 0 && s.dist ? s.dist + best * npad : NULL;
		km_parallel(FN(pp_chunk), &s, nchunks, nthreads);
		s.thr = thr;
		for (size_t j = 0; j < d; j++)
			centers[c * d + j] = (double)x[crow[c] * d + j];
	}
out:
	free(crow);
	free(ids);
	free(thr);
	free(pre);
	free(s.cl);
	free(s.asg);
	free(s.gain);
	free(s.sbsum);
	free(s.dist);
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
#ifdef KM_F64
	if (m->cr) {
		/* Rows past k repeat center 0: they tie with it, and lose. */
		T *cr = m->cr;
		for (size_t c = 0; c < (m->k + KM_RL - 1) / KM_RL * KM_RL; c++)
			memcpy(cr + c * KM_RD, m->c + (c < m->k ? c : 0) * KM_RD,
			       KM_RD * sizeof(T));
	}
#endif
	if (!m->cv)
		return;
	for (size_t i = 0; i < m->k * m->d; i++)
		m->cv[i] = (FN(vec)){0} + m->c[i];
	if (m->ce) {
		double mx = 0;
		for (size_t c = 0; c < m->k; c++) {
			double s = 0;
			for (size_t j = 0; j < m->d; j++) {
				s += (double)m->c[c * m->d + j] * (double)m->c[c * m->d + j];
				m->ce[c * (m->d + 1) + 1 + j] =
				    (FN(vec)){0} - 2 * m->c[c * m->d + j];
			}
			m->ce[c * (m->d + 1)] = (FN(vec)){0} + (T)s;
			mx = s > mx ? s : mx;
		}
		/* Rounded up; inf (the screen then never decides) when out of range. */
		m->cemax2 = mx * (1 + 0x1p-20) < 1e37 ? (T)(mx * (1 + 0x1p-20)) : (T)INFINITY;
	}
#ifdef KM_F64
	if (m->cvf) {
		/* Per center ||c'||^2 (c' the float center), then -2 c'_j. */
		FN(fvec) *cf = m->cvf;
		double mx = 0;
		for (size_t c = 0; c < m->k; c++) {
			double s = 0, s2 = 0;
			for (size_t j = 0; j < m->d; j++) {
				float v = (float)m->c[c * m->d + j];
				s += m->c[c * m->d + j] * m->c[c * m->d + j];
				s2 += (double)v * (double)v;
				cf[c * (m->d + 1) + 1 + j] = (FN(fvec)){0} - 2 * v;
			}
			cf[c * (m->d + 1)] = (FN(fvec)){0} + (float)s2;
			mx = s > mx ? s : mx;
		}
		/* Rounded up; inf (the screen then never decides) when out of float range. */
		m->cmax2 = mx * (1 + 0x1p-20) < 1e38 ? (float)(mx * (1 + 0x1p-20)) : INFINITY;
	}
#endif
}

#ifdef KM_F64
/*
 * A row-path fit still running after KM_ROW_PASSES passes goes on with the
 * transposed kernels (faster per pass from k of about 16 on, and with the
 * pre-screens): the copies are made now, from the rows or the caller's copy.
 * The chunks' sums carry over, they hold the same labels' sums.
 */
#ifndef KM_ROW_PASSES
#define KM_ROW_PASSES 3
#endif
static int
FN(leave_rows)(struct FN(km) * m, const T *xt_in, size_t nthreads, T **own_xt, float **own_xtf)
{
	size_t n = m->n, d = m->d, k = m->k;
	int screen =
	    !(getenv("PAYGUARD_KMEANS_SCREEN") && atoi(getenv("PAYGUARD_KMEANS_SCREEN")) == 0);
	int rc;

	if (!xt_in) {
		rc = FN(make_xt)(m->x, n, d, nthreads, own_xt, NULL);
		if (rc < 0)
			return rc;
		xt_in = *own_xt;
	}
	m->cv = aligned_alloc(KM_VBYTES, k * d * sizeof(FN(vec)));
	if (!m->cv)
		return pg_error(PG_ENOMEM, "kmeans", "work space for %zu centers", k);
	if (screen) {
		rc = FN(make_xtf)(xt_in, n, d, nthreads, own_xtf);
		if (rc < 0)
			return rc;
		m->cvf = aligned_alloc(KM_VBYTES, k * (d + 1) * sizeof(FN(fvec)));
		if (!m->cvf)
			return pg_error(PG_ENOMEM, "kmeans", "work space for %zu centers", k);
		m->xtf = *own_xtf;
	}
	m->xt = xt_in;
	free(m->cr);
	m->cr = NULL;
	FN(splat)(m);
	return 0;
}
#endif

/* One run from given initial centers; sklearn's convergence rules. */
static int
FN(single)(const T *x, const T *xt, const float *xtf, size_t n, size_t d,
	   const struct pg_kmeans_params *p, const double *init, double tol_abs, int32_t *labels,
	   double *centers, struct pg_kmeans_info *info)
{
	struct FN(km) m = {.x = x, .n = n, .d = d, .k = p->k, .labels = labels};
	size_t k = p->k, nchunks = (n + KM_CHUNK - 1) / KM_CHUNK;
	size_t nthreads = p->n_threads > 0 ? (size_t)p->n_threads : 1;
	double *sums = NULL, *cnt;
	int strict = 0, rc = 0, relocated = 0, it;
	int hamerly = p->algo == PG_KMEANS_HAMERLY;
	const T *xt_in = xt;
	T *own_xt = NULL;
	float *own_xtf = NULL;

	/* The row path starts without the transposed copies (FN(leave_rows)). */
	(void)xt_in;
	if (FN(rows_ok)(n, d, p))
		xt = NULL;
	m.xt = xt;
	if (xt) {
		m.cv = aligned_alloc(KM_VBYTES, k * d * sizeof(FN(vec)));
		if (!m.cv) {
			rc = pg_error(PG_ENOMEM, "kmeans", "work space for %zu centers", k);
			goto out;
		}
	}
#ifndef KM_F64
	/* float32 Lloyd at small d: the expansion pre-screen (PAYGUARD_KMEANS_SCREEN=0: off). */
	if (xt && !hamerly && d <= KM_SMALL_D &&
	    !(getenv("PAYGUARD_KMEANS_SCREEN") && atoi(getenv("PAYGUARD_KMEANS_SCREEN")) == 0)) {
		m.ce = aligned_alloc(KM_VBYTES, k * (d + 1) * sizeof(FN(vec)));
		if (!m.ce) {
			rc = pg_error(PG_ENOMEM, "kmeans", "work space for %zu centers", k);
			goto out;
		}
	}
#endif
#ifdef KM_F64
	if (xt && xtf) {
		m.cvf = aligned_alloc(KM_VBYTES, k * (d + 1) * sizeof(FN(fvec)));
		if (!m.cvf) {
			rc = pg_error(PG_ENOMEM, "kmeans", "work space for %zu centers", k);
			goto out;
		}
		m.xtf = xtf;
	}
	if (FN(rows_ok)(n, d, p)) {
		m.cr = aligned_alloc(32, (k + KM_RL - 1) / KM_RL * KM_RL * KM_RD * sizeof(T));
		m.inert = malloc(nchunks * sizeof(double));
		/* tol_abs NaN: the caller left the variance to the first pass. */
		if (isnan(tol_abs))
			m.vpart = malloc(nchunks * 2 * KM_RD * sizeof(double));
		if (!m.cr || !m.inert || (isnan(tol_abs) && !m.vpart)) {
			rc = pg_error(PG_ENOMEM, "kmeans", "work space for %zu rows", n);
			goto out;
		}
	}
#else
	(void)xtf;
#endif
	m.c = malloc(k * d * sizeof(T));
	sums = malloc(k * (d + 1) * sizeof(double));
	m.part = malloc(nchunks * k * (d + 1) * sizeof(double));
	m.changed = malloc(nchunks * sizeof(size_t));
	m.shift = calloc(k, sizeof(double));
	m.half = calloc(k, sizeof(double));
	if (hamerly) {
		m.ub = km_alloc_big(n * sizeof(double));
		m.lb = km_alloc_big(n * sizeof(double));
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

#ifdef KM_F64
		if (m.cr && it == KM_ROW_PASSES) {
			rc = FN(leave_rows)(&m, xt_in, nthreads, &own_xt, &own_xtf);
			if (rc < 0)
				goto out;
		}
#endif
		m.mode = hamerly && it > 0 ? KM_HAMERLY : KM_FULL;
		m.incr = it > 0;
		km_parallel(FN(chunk), &m, nchunks, nthreads);
#ifdef KM_F64
		if (m.vpart) {
			rc = FN(shift_var)(m.x, n, KM_RD, m.vpart, nchunks, &tol_abs);
			free(m.vpart);
			m.vpart = NULL;
			if (rc < 0)
				goto out;
			tol_abs = p->tol > 0 ? tol_abs * p->tol : 0;
		}
#endif
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
#ifdef KM_F64
	if (m.cr) {
		if (strict)
			km_parallel(FN(row_inertia_chunk), &m, nchunks, nthreads);
		for (size_t ci = 0; ci < nchunks; ci++)
			info->inertia += m.inert[ci];
	} else
#endif
	    if (m.xt) {
		rc = FN(inertia_par)(m.xt, n, d, m.c, labels, nthreads, &info->inertia);
		if (rc < 0)
			goto out;
	} else {
		for (size_t i = 0; i < n; i++)
			info->inertia +=
			    (double)FN(sqdist)(x + i * d, m.c + (size_t)labels[i] * d, d);
	}
	info->n_iter = it;
	info->relocated = relocated;
	for (size_t i = 0; i < k * d; i++)
		centers[i] = (double)m.c[i];
out:
	free(m.cv);
	free(m.ce);
	free(own_xt);
	free(own_xtf);
#ifdef KM_F64
	free(m.cvf);
	free(m.cr);
	free(m.inert);
	free(m.vpart);
#endif
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

/* A run's initial centers: the given ones (checked finite) or k-means++'s. */
static int
FN(run_init)(const struct pg_kmeans_params *p, const T *x, const T *xt, size_t n, size_t d,
	     struct km_rng *rng, size_t nthreads, double *init)
{
	if (!p->init)
		return FN(plusplus)(x, xt, n, d, p->k, rng, nthreads, init);
	memcpy(init, p->init, p->k * d * sizeof(double));
	for (size_t i = 0; i < p->k * d; i++)
		if (!isfinite(init[i]))
			return pg_error(PG_EINVAL, "kmeans",
					"initial center value %zu is not finite", i);
	return 0;
}

/* Fits of at most one chunk of rows, on the calling thread. */
#include "kmeans_small.h"

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
	float *xtf = NULL;
	struct km_rng rng;
	int rc, rows;

	if (FN(small_ok)(n, d, p))
		return FN(fit_small)(x, n, d, p, labels, centers, info);
	rows = FN(rows_ok)(n, d, p);
	km_rng_seed(&rng, p->seed);
	lab = malloc(n * sizeof(int32_t));
	init = malloc(k * d * sizeof(double));
	cen = malloc(k * d * sizeof(double));
	if (!lab || !init || !cen) {
		rc = pg_error(PG_ENOMEM, "kmeans", "work space for %zu rows", n);
		goto out;
	}
	/*
	 * The tolerance's variance is taken while transposing, or (row path,
	 * given centers: no copy at all) in the first pass.
	 */
	if (rows && p->init) {
		tol_abs = NAN;
	} else {
		rc = FN(make_xt)(x, n, d, p->n_threads > 0 ? (size_t)p->n_threads : 1, &xt,
				 &tol_abs);
		if (rc < 0)
			goto out;
		tol_abs = p->tol > 0 ? tol_abs * p->tol : 0;
	}
#ifdef KM_F64
	/*
	 * Lloyd on float64 at 6 <= d <= 16: the float pre-screen (PAYGUARD_KMEANS_SCREEN=0: off).
	 * Below, the fused float64 kernel is as fast; above, the float copy and the
	 * separate accumulation did not pay in same-run measurements.
	 */
	if (xt && !rows && d >= 6 && d <= 16 && p->algo != PG_KMEANS_HAMERLY &&
	    !(getenv("PAYGUARD_KMEANS_SCREEN") && atoi(getenv("PAYGUARD_KMEANS_SCREEN")) == 0)) {
		rc = FN(make_xtf)(xt, n, d, p->n_threads > 0 ? (size_t)p->n_threads : 1, &xtf);
		if (rc < 0)
			goto out;
	}
#endif
	info->inertia = INFINITY;
	for (int r = 0; r < n_init; r++) {
		struct pg_kmeans_info ri;

		rc = FN(run_init)(p, x, xt, n, d, &rng, p->n_threads > 0 ? (size_t)p->n_threads : 1,
				  init);
		if (rc < 0)
			goto out;
		rc = FN(single)(x, xt, xtf, n, d, p, init, tol_abs, lab, cen, &ri);
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
	free(xtf);
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
	T *xt;
	int rc = FN(make_xt)(x, n, d, n_threads > 0 ? (size_t)n_threads : 1, &xt, NULL);

	if (rc == 0)
		rc = FN(plusplus)(x, xt, n, d, k, rng, n_threads > 0 ? (size_t)n_threads : 1,
				  centers);
	free(xt);
	return rc;
}

/* The silhouette's kernels (float64 only) share this instantiation's names. */
#include "kmeans_sil.h"

#undef FN
#undef KM_L
#undef KM_DH
#ifdef KM_LF
#undef KM_LF
#endif
#undef KM_CAT
#undef KM_CAT2
