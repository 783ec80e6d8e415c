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
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
	static int ok = -1;

	if (ok < 0) {
		volatile long double a = 1.0L, b = 0x1p-60L;
		long double c = a + b;
		ok = c != 1.0L;
	}
	return ok;
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

size_t
load_num_scan(const char *s, const char *end, double *v)
{
	const char *p = s;
	uint64_t m = 0;
	int nd = 0, dropped = 0, neg = 0, mdigits = 0;
	long e10 = 0, ex = 0;

	if (p < end && (*p == '+' || *p == '-'))
		neg = *p++ == '-';
	for (; p < end && is_digit(*p); p++, mdigits++) {
		unsigned dg = (unsigned)(*p - '0');

		if (nd < 19) {
			m = m * 10 + dg;
			nd += m != 0; /* leading zeros are not significant */
		} else {
			e10++;
			dropped |= dg != 0;
		}
	}
	if (p < end && *p == '.') {
		p++;
		for (; p < end && is_digit(*p); p++, mdigits++) {
			unsigned dg = (unsigned)(*p - '0');

			if (nd < 19) {
				m = m * 10 + dg;
				nd += m != 0;
				e10--;
			} else {
				dropped |= dg != 0;
			}
		}
	}
	if (!mdigits)
		return 0;
	if (p < end && (*p == 'e' || *p == 'E')) {
		const char *q = p + 1;
		int eneg = 0;

		if (q < end && (*q == '+' || *q == '-'))
			eneg = *q++ == '-';
		if (q < end && is_digit(*q)) {
			for (; q < end && is_digit(*q); q++)
				if (ex < 100000000)
					ex = ex * 10 + (*q - '0');
			e10 += eneg ? -ex : ex;
			p = q;
		} /* else "1e" is the number 1 followed by 'e': the caller sees it */
	}
	if (m == 0) {
		*v = neg ? -0.0 : 0.0;
		return (size_t)(p - s);
	}
	if (!dropped) {
		if (m <= (1ull << 53) && e10 >= -22 && e10 <= 22) {
			double d = (double)m;
			d = e10 >= 0 ? d * pow10_exact[e10] : d / pow10_exact[-e10];
			*v = neg ? -d : d;
			return (size_t)(p - s);
		}
#ifdef NUM_X87
		if (e10 >= -27 && e10 <= 27 && x87_path(m, (int)e10, v)) {
			if (neg)
				*v = -*v;
			return (size_t)(p - s);
		}
#endif
	}
	*v = slow_path(s, (size_t)(p - s));
	return (size_t)(p - s);
}

int
load_parse_double(const char *s, double *v)
{
	const char *end;
	size_t n;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		end--;
	n = load_num_scan(s, end, v);
	if (!n || s + n != end || !isfinite(*v))
		return PG_EFORMAT;
	return 0;
}
