/*
 * The number parser of the load area's readers (issue 18, build item 3):
 * decimal text to double, correctly rounded like strtod, without strtod's
 * locale look-ups and NUL-terminated input on the common path.
 *
 * Grammar: [+-] digits [. digits] [(e|E) [+-] digits], at least one mantissa
 * digit (".5" and "5." are numbers). No white space, no hex, no inf/nan: the
 * readers refuse those. Paths, fastest first:
 *  1. Clinger's fast path: at most 19 significant digits, mantissa <= 2^53,
 *     |exponent| <= 22: one IEEE multiply or divide by an exact power of ten,
 *     which rounds once, so the result is correctly rounded.
 *  2. On x86 (80-bit long double, 64-bit mantissa): at most 19 digits (exact in
 *     64 bits), |exponent| <= 27 (10^27 is exact in 64 bits): one multiply or
 *     divide in long double, then the rounding to double. The double rounding
 *     can differ from a single one only when the long double result lies on a
 *     double halfway point (its low 11 mantissa bits are 0x400); then path 3.
 *     A start-up check turns this path off where long double is not extended
 *     (valgrind emulates x87 in double precision).
 *  3. strtod on a bounded, NUL-terminated copy of the token: more than 19
 *     significant digits, exponents at the range ends, subnormals, ties.
 */
#include "load_int.h"
#include "payguard/error.h"

#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

static const double pow10_exact[23] = {1e0,  1e1,  1e2,	 1e3,  1e4,  1e5,  1e6,	 1e7,
				       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
				       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

#if LDBL_MANT_DIG == 64 && (defined(__x86_64__) || defined(__i386__))
#define NUM_X87 1
static const long double pow10_ld[28] = {1e0L,	1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,
					 1e7L,	1e8L,  1e9L,  1e10L, 1e11L, 1e12L, 1e13L,
					 1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L, 1e20L,
					 1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L};

/* 1 when long double arithmetic really carries 64 mantissa bits here. */
static int
x87_ok(void)
{
	static _Atomic int ok = -1; /* threads may race here: each computes the same */
	int v = atomic_load_explicit(&ok, memory_order_relaxed);

	if (v < 0) {
		volatile long double a = 1.0L, b = 0x1p-60L;
		long double c = a + b;
		v = c != 1.0L;
		atomic_store_explicit(&ok, v, memory_order_relaxed);
	}
	return v;
}

/* The long double path; 0 when the result may need path 3. */
static int
x87_path(uint64_t m, int e, double *v)
{
	long double r = (long double)m;
	uint64_t mant;

	if (!x87_ok())
		return 0;
	r = e >= 0 ? r * pow10_ld[e] : r / pow10_ld[-e];
	memcpy(&mant, &r, sizeof(mant)); /* the explicit 64-bit significand */
	if ((mant & 0x7ff) == 0x400)
		return 0; /* on a halfway point of double: rounding twice may differ */
	*v = (double)r;
	return 1;
}
#endif

/* strtod on a NUL-terminated copy of [s, s + len). */
static double
slow_path(const char *s, size_t len)
{
	char buf[256];
	char *p = len < sizeof(buf) ? buf : malloc(len + 1);
	double v;

	if (!p)
		return NAN; /* no memory for a >255-byte number: the caller rejects NaN */
	memcpy(p, s, len);
	p[len] = 0;
	v = strtod(p, NULL);
	if (p != buf)
		free(p);
	return v;
}

static inline int
is_digit(char c)
{
	return (unsigned char)(c - '0') < 10;
}

/*
 * More than 19 mantissa digits (leading zeros included): the first 19
 * significant ones into *m, the exponent adjusted, *dropped when a nonzero
 * digit did not fit.
 */
static void
long_mantissa(const char *ip, size_t ni, const char *fp, size_t nf, uint64_t *m, long *e10,
	      int *dropped)
{
	int nd = 0;

	*m = 0;
	*e10 = 0;
	*dropped = 0;
	for (size_t i = 0; i < ni + nf; i++) {
		unsigned dg = (unsigned)((i < ni ? ip[i] : fp[i - ni]) - '0');

		if (nd < 19) {
			*m = *m * 10 + dg;
			nd += *m != 0; /* leading zeros are not significant */
			*e10 -= i >= ni;
		} else {
			*e10 += i < ni;
			*dropped |= dg != 0;
		}
	}
}

/*
 * The scanner; bounded = 0 for NUL-terminated text (no byte the grammar takes
 * is NUL, so the end tests compile away); finite = 1: an overflow to inf is
 * no number (0 bytes).
 */
#define IN(p) (!bounded || (p) < end)

static const uint64_t pow10_u64[9] = {1,      10,      100,	 1000,	   10000,
				      100000, 1000000, 10000000, 100000000};

/*
 * Digits at p into *m (wrapping past 19; the caller redoes those). Where 8
 * bytes can be read (p + 8 <= lim), up to 8 digits at once without a branch
 * per digit (SWAR); else two at a time, reading p[1] only after p[0] is a
 * digit, so never past a NUL or end.
 */
static inline __attribute__((always_inline)) const char *
digits(const char *p, const char *end, const char *lim, uint64_t *mp, int bounded)
{
	uint64_t m = *mp;

	while (lim && p + 8 <= lim) {
		uint64_t w, t, x, nd;
		unsigned k;

		memcpy(&w, p, 8);
		/* 0x33 in each byte that is a digit: high nibble 3, and +6 does not carry */
		x = (w & 0xf0f0f0f0f0f0f0f0ull) |
		    (((w + 0x0606060606060606ull) & 0xf0f0f0f0f0f0f0f0ull) >> 4);
		nd = x ^ 0x3333333333333333ull;
		k = nd ? (unsigned)__builtin_ctzll(nd) / 8 : 8;
		if (k == 0) {
			*mp = m;
			return p;
		}
		t = (w - 0x3030303030303030ull) << (8 * (8 - k)); /* the k digits, zeros before */
		t = (t * 10 + (t >> 8)) & 0x00ff00ff00ff00ffull;
		t = (t * 100 + (t >> 16)) & 0x0000ffff0000ffffull;
		t = (t * 10000 + (t >> 32)) & 0xffffffffull;
		m = m * pow10_u64[k] + t;
		p += k;
		if (k < 8) {
			*mp = m;
			return p;
		}
	}
	while (IN(p) && is_digit(p[0])) {
		if (IN(p + 1) && is_digit(p[1])) {
			m = m * 100 + (unsigned)(p[0] - '0') * 10 + (unsigned)(p[1] - '0');
			p += 2;
		} else {
			m = m * 10 + (unsigned)(p[0] - '0');
			p++;
			break;
		}
	}
	*mp = m;
	return p;
}

/* The exponent at p ('e' or 'E'): added to *e10, p past it; "1e" leaves p at the 'e'. */
static inline __attribute__((always_inline)) const char *
exponent(const char *p, const char *end, long *e10, int bounded)
{
	const char *q = p + 1;
	long ex = 0;
	int eneg = 0;

	if (IN(q) && (*q == '+' || *q == '-'))
		eneg = *q++ == '-';
	if (!(IN(q) && is_digit(*q)))
		return p; /* the number 1 followed by 'e': the caller sees it */
	for (; IN(q) && is_digit(*q); q++)
		if (ex < 100000000)
			ex = ex * 10 + (*q - '0');
	*e10 += eneg ? -ex : ex;
	return q;
}

/* m * 10^e10 by the exact paths (m != 0, at most 19 digits): 1, or 0 for strtod. */
static inline __attribute__((always_inline)) int
fast_value(uint64_t m, long e10, double *v)
{
	if (m <= (1ull << 53) && e10 >= -22 && e10 <= 22) {
		double d = (double)m;
		*v = e10 >= 0 ? d * pow10_exact[e10] : d / pow10_exact[-e10];
		return 1;
	}
#ifdef NUM_X87
	if (e10 >= -27 && e10 <= 27 && x87_path(m, (int)e10, v))
		return 1;
#endif
	return 0;
}

static inline __attribute__((always_inline)) size_t
scan(const char *s, const char *end, const char *lim, double *v, int bounded, int finite)
{
	const char *p = s, *ip, *fp = s;
	uint64_t m = 0;
	size_t ni, nf = 0;
	int dropped = 0, neg = 0;
	long e10;

	if (IN(p)) { /* the sign without a branch: random signs mispredict */
		neg = *p == '-';
		p += neg | (*p == '+');
	}
	/* The common case in one tight loop; 20+ digits are redone below. */
	ip = p;
	p = digits(p, end, lim, &m, bounded);
	ni = (size_t)(p - ip);
	if (IN(p) && *p == '.') {
		fp = ++p;
		p = digits(p, end, lim, &m, bounded);
		nf = (size_t)(p - fp);
	}
	if (ni + nf == 0)
		return 0;
	e10 = -(long)nf;
	if (ni + nf > 19)
		long_mantissa(ip, ni, fp, nf, &m, &e10, &dropped);
	if (IN(p) && (*p == 'e' || *p == 'E'))
		p = exponent(p, end, &e10, bounded);
	if (m == 0) {
		*v = neg ? -0.0 : 0.0;
		return (size_t)(p - s);
	}
	if (!dropped && fast_value(m, e10, v)) {
		if (neg)
			*v = -*v;
		return (size_t)(p - s);
	}
	*v = slow_path(s, (size_t)(p - s));
	if (finite && !isfinite(*v))
		return 0; /* only this path can overflow: the fast ones stay below 1e46 */
	return (size_t)(p - s);
}
#undef IN

/*
 * The row parsers' fast path: a plain decimal, [+-] digits [. digits], of at
 * most 15 bytes followed by a byte that is none of those nor 'e'/'E' — every
 * field of the bench files and of what `payguard load export` or numpy's
 * savetxt write. Its 16 bytes are classified at once (digit, dot, sign) with
 * exact per-byte tests, so the field's end comes from one count of trailing
 * bytes instead of a branch per run of digits; the sign then counts as a
 * leading 0, the integer digits move up one place over the dot (by masks
 * from tables, no branch), and the at most 16 digit places (15 digits) are
 * converted eight at a time. 15 digits stay below 2^53 and 10^14 is exact,
 * so one IEEE division is Clinger's path 1 above: the same double as scan()
 * gives. 0 (for scan) when the field is anything else: 16 bytes or longer,
 * two dots, no digit, an exponent.
 * p: 16 bytes readable.
 */
__extension__ typedef unsigned __int128 u128;

#define LANES(c) (0x0101010101010101ull * (uint8_t)(c))
/* Eight digit values, the first in the lowest byte, as a number. */
static inline uint64_t
eight_digits(uint64_t t)
{
	t = (t * 10 + (t >> 8)) & 0x00ff00ff00ff00ffull;
	t = (t * 100 + (t >> 16)) & 0x0000ffff0000ffffull;
	return (t * 10000 + (t >> 32)) & 0xffffffffull;
}

/*
 * The dot at byte j of 16 (16: none): under[j] are the bytes below it (the
 * integer digits, moved up one place over it), over[j] those above it (the
 * fraction, which stays). As two 64-bit halves.
 */
#define UNDER(j)    ((j) >= 8 ? ~0ull : (1ull << (8 * (j))) - 1)
#define UNDER_HI(j) ((j) >= 16 ? ~0ull : (j) <= 8 ? 0 : (1ull << (8 * ((j)-8))) - 1)
#define OVER(j)	    ((j) >= 7 ? 0 : ~((1ull << (8 * ((j) + 1))) - 1))
#define OVER_HI(j)  ((j) >= 15 ? 0 : (j) < 7 ? ~0ull : ~((1ull << (8 * ((j)-7))) - 1))
#define ROW4(f, j)  f(j), f(j + 1), f(j + 2), f(j + 3)
static const uint64_t under_lo[17] = {ROW4(UNDER, 0), ROW4(UNDER, 4), ROW4(UNDER, 8),
				      ROW4(UNDER, 12), UNDER(16)};
static const uint64_t under_hi[17] = {ROW4(UNDER_HI, 0), ROW4(UNDER_HI, 4), ROW4(UNDER_HI, 8),
				      ROW4(UNDER_HI, 12), UNDER_HI(16)};
static const uint64_t over_lo[17] = {ROW4(OVER, 0), ROW4(OVER, 4), ROW4(OVER, 8), ROW4(OVER, 12),
				     OVER(16)};
static const uint64_t over_hi[17] = {ROW4(OVER_HI, 0), ROW4(OVER_HI, 4), ROW4(OVER_HI, 8),
				     ROW4(OVER_HI, 12), OVER_HI(16)};

/* 10^0..10^15, then their negatives */
static const double pow10_signed[32] = {1e0,  1e1,  1e2,   1e3,	  1e4,	 1e5,	1e6,   1e7,
					1e8,  1e9,  1e10,  1e11,  1e12,	 1e13,	1e14,  1e15,
					-1e0, -1e1, -1e2,  -1e3,  -1e4,	 -1e5,	-1e6,  -1e7,
					-1e8, -1e9, -1e10, -1e11, -1e12, -1e13, -1e14, -1e15};

static inline __attribute__((always_inline)) size_t
short_num(const char *p, double *v)
{
#ifdef __SSE2__
	__m128i w = _mm_loadu_si128((const __m128i *)(const void *)p);
	__m128i t = _mm_sub_epi8(w, _mm_set1_epi8('0'));
	unsigned dig =
	    (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(t, _mm_set1_epi8(9)), t));
	unsigned dot = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(w, _mm_set1_epi8('.')));
	uint64_t lo, hi, ul, neg, sgn, bits;
	unsigned k, j, n, nf;
	u128 x;

	neg = p[0] == '-';
	sgn = neg | (p[0] == '+');
	k = (unsigned)__builtin_ctz(~(dig | dot | (unsigned)sgn) | 0x10000u);
	dot &= (1u << k) - 1;
	n = k - (dot != 0); /* digit places, a sign counted as a leading 0 */
	if (k == 16 || (dot & (dot - 1)) || n == sgn || (p[k] | 0x20) == 'e')
		return 0;
	j = dot ? (unsigned)__builtin_ctz(dot) : 16; /* the dot's place, 16: none */
	nf = dot ? k - j - 1 : 0;
	memcpy(&lo, p, 8);
	memcpy(&hi, p + 8, 8);
	lo ^= -sgn & ((lo & 0xff) ^ '0'); /* the sign becomes a leading 0 */
	/* The integer digits up one place, over the dot: k + !dot places, a 0 first. */
	ul = lo & under_lo[j];
	hi = ((hi & under_hi[j]) << 8 | ul >> 56 | (hi & over_hi[j])) - LANES('0');
	lo = (ul << 8 | (lo & over_lo[j]) | '0') - LANES('0');
	x = (lo | (u128)hi << 64) << (8 * (16 - k - !dot)); /* the places to the top */
	bits = eight_digits((uint64_t)x) * 100000000 + eight_digits((uint64_t)(x >> 64));
	/* the sign on the divisor: -0 for "-0", and rounding to nearest is symmetric */
	*v = (double)(int64_t)bits / pow10_signed[nf | neg << 4]; /* bits < 10^15 */
	return k;
#else
	(void)p;
	(void)v;
	return 0;
#endif
}

/* The number at p, by the fast path where 16 bytes can be read, else by scan. */
static inline __attribute__((always_inline)) size_t
field_num(const char *p, const char *lim, double *v)
{
	size_t k;

	if (lim && p + 16 <= lim && (k = short_num(p, v)) != 0)
		return k;
	return scan(p, NULL, lim, v, 0, 1);
}

size_t
pgi_load_num_scan(const char *s, const char *end, double *v)
{
	return scan(s, end, end, v, 1, 0);
}

size_t
pgi_load_num_scan_z(const char *s, double *v)
{
	return scan(s, NULL, NULL, v, 0, 1);
}

int
pgi_load_parse_double(const char *s, double *v)
{
	size_t n;

	while (*s == ' ' || *s == '\t')
		s++;
	n = scan(s, NULL, NULL, v, 0, 1);
	if (!n)
		return PG_EFORMAT;
	for (s += n; *s == ' ' || *s == '\t' || *s == '\r'; s++)
		;
	return *s ? PG_EFORMAT : 0;
}

int
pgi_load_parse_row(const char *p, const char *lim, char sep, double *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t k;

		while (*p == ' ' || *p == '\t')
			p++;
		k = field_num(p, lim, &v[i]);
		if (!k)
			return -1;
		for (p += k; *p == ' ' || *p == '\t' || *p == '\r'; p++)
			;
		if (i + 1 < n ? *p != sep : *p != 0)
			return -1;
		p++;
	}
	return 0;
}

static inline __attribute__((always_inline)) const char *
parse_line(const char *p, const char *lim, char sep, double *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t k;

		while (*p == ' ' || *p == '\t')
			p++;
		k = field_num(p, lim, &v[i]);
		if (!k)
			return NULL;
		for (p += k; *p == ' ' || *p == '\t' || *p == '\r'; p++)
			;
		if (i + 1 < n && *p++ != sep)
			return NULL;
	}
	return *p == '\n' ? p + 1 : *p == 0 ? p : NULL;
}

const char *
pgi_load_parse_line(const char *p, const char *lim, char sep, double *v, size_t n)
{
	return parse_line(p, lim, sep, v, n);
}

const char *
pgi_load_parse_lines(const char *p, const char *lim, char sep, double *v, size_t n, size_t max,
		     size_t *rows)
{
	size_t r = 0;

	while (r < max) {
		const char *q = parse_line(p, lim, sep, v + r * n, n);

		if (!q)
			break;
		r++;
		p = q;
		if (q[-1] != '\n')
			break; /* at the NUL */
	}
	*rows = r;
	return p;
}

/*
 * The bulk row parser: the field ends of a run of rows come from a mask of
 * 64 bytes at a time (sep and newline found at once), not from the end of
 * each number, so nothing waits for a count of a field's bytes; each field's
 * digits become an integer in a first pass over a chunk of rows, and a
 * second pass turns the chunk's integers into doubles two at a time. Every
 * field must be short_num's form; any other row ends the run for the
 * caller's checking path.
 */
#ifdef __SSE2__
static inline uint64_t
block_mask(const char *p, __m128i vs, __m128i vn)
{
	uint64_t m = 0;

	for (int i = 0; i < 4; i++) {
		__m128i w = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * i));
		unsigned b = (unsigned)_mm_movemask_epi8(
		    _mm_or_si128(_mm_cmpeq_epi8(w, vs), _mm_cmpeq_epi8(w, vn)));

		m |= (uint64_t)b << (16 * i);
	}
	return m;
}

/* 16 bytes from ones_then_zeros + 16 - n: 0xff in the first n (n <= 16). */
static const uint8_t ones_then_zeros[32] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
					    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static inline __m128i
first_bytes(unsigned n)
{
	return _mm_loadu_si128((const __m128i *)(const void *)(ones_then_zeros + 16 - n));
}

/*
 * The field of L bytes at p (16 readable) when it is short_num's form: 1,
 * with *bits and *div such that its value is bits / pow10_signed[div], else
 * 0. The digits go to 16 places from the top, a 0 first (where the sign
 * was, or the integer digits moved up one place over the dot), bytes past
 * the field 0: bits = the digits * 10^(15 - places) < 10^15, exact in a
 * double, and the divisor 10^(15 - the dot's place) (10^(15 - L) without a
 * dot) -- the same exact operands' quotient as Clinger's path 1 in scan(),
 * so one IEEE division gives the same double. The 16 places become a number
 * by SSE2 multiply-adds.
 */
static inline __attribute__((always_inline)) int
short_field(const char *p, size_t L, uint64_t *bits, uint8_t *div)
{
	const __m128i w = _mm_loadu_si128((const __m128i *)(const void *)p);
	__m128i t = _mm_sub_epi8(w, _mm_set1_epi8('0'));
	const __m128i isd = _mm_cmpeq_epi8(_mm_min_epu8(t, _mm_set1_epi8(9)), t);
	const unsigned fm = (1u << (L & 15)) - 1;
	unsigned dig = (unsigned)_mm_movemask_epi8(isd) & fm;
	unsigned dot = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(w, _mm_set1_epi8('.'))) & fm;
	unsigned sgn = p[0] == '-' || p[0] == '+', neg = p[0] == '-', j;
	__m128i under, y, pairs, quads, octs;

	if (L - 1 >= 15 || (dig | dot | sgn) != fm || (dot & (dot - 1)) || !dig)
		return 0;
	j = dot ? (unsigned)__builtin_ctz(dot) : 16;
	*div = (uint8_t)((dot ? 15 - j : 15 - (unsigned)L) | neg << 4);
	t = _mm_and_si128(_mm_and_si128(t, isd), first_bytes((unsigned)L)); /* digits only */
	under = first_bytes(dot ? j + 1 : 16);
	y = _mm_or_si128(_mm_and_si128(under, _mm_slli_si128(t, 1)), _mm_andnot_si128(under, t));
	pairs = _mm_add_epi16(
	    _mm_mullo_epi16(_mm_and_si128(y, _mm_set1_epi16(0xff)), _mm_set1_epi16(10)),
	    _mm_srli_epi16(y, 8));
	quads = _mm_madd_epi16(pairs, _mm_setr_epi16(100, 1, 100, 1, 100, 1, 100, 1));
	octs = _mm_madd_epi16(_mm_packs_epi32(quads, quads),
			      _mm_setr_epi16(10000, 1, 10000, 1, 10000, 1, 10000, 1));
	*bits = (uint64_t)(uint32_t)_mm_cvtsi128_si32(octs) * 100000000 +
		(uint32_t)_mm_cvtsi128_si32(_mm_srli_si128(octs, 4));
	return 1;
}

/*
 * o[0..cnt) hold short_field's bits: each becomes bits / pow10_signed[div[i]].
 * bits < 2^52: or-ed into the mantissa of 2^52, less 2^52, it is exact.
 */
static void
to_doubles(double *o, const uint8_t *div, size_t cnt)
{
	const __m128i magic = _mm_set1_epi64x(0x4330000000000000ll);
	const __m128d two52 = _mm_set1_pd(0x1p52);
	size_t i = 0;

	for (; i + 2 <= cnt; i += 2) {
		__m128i b = _mm_loadu_si128((const __m128i *)(const void *)(o + i));
		__m128d x = _mm_sub_pd(_mm_castsi128_pd(_mm_or_si128(b, magic)), two52);

		_mm_storeu_pd(o + i, _mm_div_pd(x, _mm_setr_pd(pow10_signed[div[i]],
							       pow10_signed[div[i + 1]])));
	}
	for (; i < cnt; i++) {
		uint64_t b;

		memcpy(&b, &o[i], sizeof(b));
		o[i] = (double)(int64_t)b / pow10_signed[div[i]];
	}
}

/* The first plen bytes at p are prefix's: pre, its first 16 bytes, and
 * pmask, 1 bits past plen, made once for a run (p + 16 readable). */
static inline int
same_prefix(const char *p, const char *prefix, size_t plen, __m128i pre, unsigned pmask)
{
	if (plen <= 16) {
		unsigned eq = (unsigned)_mm_movemask_epi8(
		    _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(const void *)p), pre));
		return (eq | pmask) == 0xffffu;
	}
	return memcmp(p, prefix, plen) == 0;
}

#define CHUNK 1024 /* fields converted at once */

/* Separators and newlines found 64 bytes at a time, taken in order. */
struct seps {
	const char *base, *lim;
	uint64_t mask; /* those of [base, base + 64) not taken yet */
	__m128i vs, vn;
};

/* The next separator or newline into *e; 0 where that needs a read past lim. */
static inline __attribute__((always_inline)) int
next_sep(struct seps *sc, const char **e)
{
	while (!sc->mask) {
		sc->base += 64;
		if (sc->base + 64 > sc->lim)
			return 0;
		sc->mask = block_mask(sc->base, sc->vs, sc->vn);
	}
	*e = sc->base + __builtin_ctzll(sc->mask);
	sc->mask &= sc->mask - 1;
	return 1;
}

/*
 * The n fields of a row from s: their bits into o and divisors into dv, *neg
 * set for a value below 0; past the row's newline, or NULL when a field is
 * not in the bulk form or the row ends otherwise.
 */
static inline __attribute__((always_inline)) const char *
bulk_fields(struct seps *sc, const char *s, const char *end, char sep, size_t n, double *o,
	    uint8_t *dv, unsigned *neg)
{
	for (size_t j = 0; j < n; j++) {
		const char *e, *fe;
		uint64_t bits;

		if (!next_sep(sc, &e) || e >= end || *e != (j + 1 < n ? sep : '\n'))
			return NULL;
		while (*s == ' ' || *s == '\t')
			s++;
		fe = e - (j + 1 == n && e > s && e[-1] == '\r');
		if (s + 16 > sc->lim || !short_field(s, (size_t)(fe - s), &bits, &dv[j]))
			return NULL;
		memcpy(&o[j], &bits, sizeof(bits));
		*neg |= (dv[j] >> 4) & (bits != 0); /* below 0: "-0" is not */
		s = e + 1;
	}
	return s;
}
#endif

const char *
pgi_load_fast_rows(const char *p, const char *end, const char *lim, char sep, const char *prefix,
		   size_t plen, int nonneg, double *v, size_t n, size_t max, size_t *rows)
{
	size_t r = 0;
#ifdef __SSE2__
	struct seps sc = {p, lim, 0, _mm_set1_epi8(sep), _mm_set1_epi8('\n')};
	uint8_t div[CHUNK];
	size_t r0 = 0, per = n ? CHUNK / n : 0; /* rows a chunk */
	char pre[16] = {0};
	const unsigned pmask = plen < 16 ? 0xffffu & ~((1u << plen) - 1) : 0;
	__m128i prev;

	if (per == 0 || sep == ' ' || sep == '\t' || sep == '\r' || p + 64 > lim)
		goto out;
	if (plen)
		memcpy(pre, prefix, plen < 16 ? plen : 16);
	prev = _mm_loadu_si128((const __m128i *)(const void *)pre);
	sc.mask = block_mask(p, sc.vs, sc.vn);
	while (r < max) {
		const char *s = p, *e;
		unsigned neg = 0;

		if (r - r0 == per) {
			to_doubles(v + r0 * n, div, per * n);
			r0 = r;
		}
		if (plen &&
		    (!next_sep(&sc, &e) || (size_t)(e - p) != plen || e >= end || *e != sep ||
		     p + 16 > lim || !same_prefix(p, prefix, plen, prev, pmask)))
			break;
		s = plen ? e + 1 : p;
		s = bulk_fields(&sc, s, end, sep, n, v + r * n, div + (r - r0) * n, &neg);
		if (!s || (nonneg && neg) || (size_t)(s - p) > LOAD_LINE_MAX - 1)
			break; /* the checking path says why, or takes the long line */
		r++;
		p = s;
	}
	to_doubles(v + r0 * n, div, (r - r0) * n);
out:
#else
	(void)end;
	(void)lim;
	(void)sep;
	(void)prefix;
	(void)plen;
	(void)nonneg;
	(void)v;
	(void)n;
	(void)max;
#endif
	*rows = r;
	return p;
}
