/*
 * The load readers' number parser (src/load/num.c, issue 18 item 3) against
 * glibc's strtod, bit for bit: random decimals of every length and exponent,
 * 17-19 digit mantissas (the long double path), exact halfway points between
 * doubles, subnormals, the ends of the exponent range, signs and leading
 * zeros; and the readers' rules: the whole field, no hex, inf or nan,
 * overflow refused, malformed text refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "load/load_int.h"
#include "payguard/error.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t
next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Scans s and compares value and length with strtod on the same text. */
static void
same_as_strtod(const char *s)
{
	char *e;
	double want = strtod(s, &e), got = -1;
	size_t n = pgi_load_num_scan(s, s + strlen(s), &got);
	uint64_t a, b;

	if (n != (size_t)(e - s) || (memcpy(&a, &got, 8), memcpy(&b, &want, 8), a != b)) {
		print_error("'%s': ours %zu bytes %.17g, strtod %zu bytes %.17g\n", s, n, got,
			    (size_t)(e - s), want);
		fail();
	}
}

static void
test_edge_cases(void **state)
{
	static const char *const cases[] = {
	    "0",
	    "-0",
	    "+0",
	    "0.0",
	    "000123",
	    "-000.000120",
	    "+.5",
	    "5.",
	    "-.0e0",
	    "1e0",
	    "0.1",
	    "1e23",
	    "8.589973e9",
	    "9007199254740992",
	    "9007199254740993",
	    "9007199254740993.0",
	    "9007199254740995",
	    "18014398509481983",
	    "9223372036854775807",
	    "9223372036854776832",
	    "9223372036854776833",
	    "922337203685477683.2e1",
	    "9999999999999999999",
	    "99999999999999999999",
	    "12345678901234567890123",
	    "0.000000000000000000000000000001234567890123456789",
	    "11.703333333333333",
	    "2926.0000000000",
	    "1.7976931348623157e308",
	    "1.7976931348623158e308",
	    "1.7976931348623159e308",
	    "1e308",
	    "1e309",
	    "-1e309",
	    "2.2250738585072011e-308",
	    "2.2250738585072014e-308",
	    "2.2250738585072012e-308",
	    "4.9406564584124654e-324",
	    "2.4703282292062327e-324",
	    "2.4703282292062328e-324",
	    "1e-320",
	    "1e-324",
	    "1e-400",
	    "-1e-400",
	    "1e-99999999999",
	    "1e99999999999",
	    "0e99999999999",
	    "123456789012345678e-27",
	    "123456789012345678e27",
	    "1234567890123456789e-28",
	    "1234567890123456789e28",
	    "1.5e-22",
	    "1.5e22",
	    "7.2057594037927933e16",
	    "3.0000000000000004",
	    "0.30000000000000004",
	    "1.00000000000000011102230246251565404236316680908203125",
	    "1.00000000000000011102230246251565404236316680908203124",
	    "1.00000000000000011102230246251565404236316680908203126"};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++)
		same_as_strtod(cases[i]);
}

static void
test_random(void **state)
{
	char s[128];

	(void)state;
	for (int it = 0; it < 300000; it++) {
		uint64_t r = next();
		int nd = 1 + (int)(r % 24), dot = (int)((r >> 8) % (nd + 2)) - 1, o = 0;

		if ((r >> 16) & 1)
			s[o++] = (r >> 17) & 1 ? '-' : '+';
		for (int i = 0; i < nd; i++) {
			if (i == dot)
				s[o++] = '.';
			s[o++] = (char)('0' + next() % 10);
		}
		if ((r >> 20) % 3) {
			int ex = (int)((r >> 24) % 700) - 350;
			if ((r >> 40) % 4 == 0)
				ex = (int)((r >> 24) % 60) - 30; /* the fast paths' range */
			o += sprintf(s + o, "%c%d", (r >> 36) & 1 ? 'e' : 'E', ex);
		}
		s[o] = 0;
		same_as_strtod(s);
	}
}

/* The exact midpoint between a double and the next one up, and both sides of it. */
static void
test_halfway(void **state)
{
	char s[1200];

	(void)state;
	for (int it = 0; it < 20000; it++) {
		double x;
		long double mid;
		int o;

		if (it % 2) {
			/* integers of 17-20 digits: the x87 path's inputs */
			x = (double)(next() >> (it % 11)) + 9007199254740992.0;
		} else {
			uint64_t bits = next() & 0x7fefffffffffffffull;
			memcpy(&x, &bits, 8);
		}
		if (!isfinite(x) || x >= DBL_MAX)
			continue;
		mid = ((long double)x + (long double)nextafter(x, INFINITY)) / 2;
		o = snprintf(s, sizeof(s), "%.1100Lg", mid);
		if (o <= 0 || (size_t)o >= sizeof(s))
			continue;
		same_as_strtod(s);
		/* Just below and above it: a 1 appended, and the last digit lowered. */
		if (o + 2 < (int)sizeof(s) && strchr(s, '.') && !strchr(s, 'e')) {
			strcat(s, "1");
			same_as_strtod(s);
		}
	}
	/* Halfway between 2^63 and its neighbour, as 19 digits times powers of ten. */
	same_as_strtod("9223372036854776832");
	same_as_strtod("922337203685477683.2e1");
	same_as_strtod("92233720368547768.32e2");
	same_as_strtod("9223372036854776832e-10");
}

static void
test_reader_rules(void **state)
{
	static const char *const bad[] = {"",	      " ",
					  "+",	      "-",
					  ".",	      "e5",
					  "1e",	      "1e+",
					  "1.2.3",    "--1",
					  "+-1",      "1 2",
					  "1,5",      "0x10",
					  "0X1p3",    "inf",
					  "-inf",     "Infinity",
					  "nan",      "NAN",
					  "1e309",    "-1e309",
					  "1d5",      "1e5x",
					  "\xd9\xa1", "1.7976931348623159e308"};
	static const struct {
		const char *s;
		double v;
	} good[] = {{" 1.5", 1.5}, {"2.5 \t", 2.5},
		    {"3\r", 3},	   {"-0.25", -0.25},
		    {"+7", 7},	   {"007", 7},
		    {".5", 0.5},   {"5.", 5},
		    {"1e-400", 0}, {"4.9406564584124654e-324", 4.9406564584124654e-324},
		    {"1E2", 100}};
	double v;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		if (pgi_load_parse_double(bad[i], &v) != PG_EFORMAT) {
			print_error("'%s' accepted as %g\n", bad[i], v);
			fail();
		}
	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
		assert_int_equal(pgi_load_parse_double(good[i].s, &v), 0);
		assert_true(v == good[i].v);
	}
	/* The scanner stops at its end pointer: no NUL needed, no byte read past it. */
	{
		const char buf[] = {'1', '2', '3', '4', '5'};
		assert_int_equal(pgi_load_num_scan(buf, buf + 3, &v), 3);
		assert_true(v == 123);
		assert_int_equal(pgi_load_num_scan(buf, buf, &v), 0);
	}
	/* "1e" is the number 1 followed by an 'e': the scan takes one byte. */
	assert_int_equal(pgi_load_num_scan("1e", "1e" + 2, &v), 1);
	assert_int_equal(pgi_load_num_scan("0x10", "0x10" + 4, &v), 1);
	assert_int_equal(pgi_load_num_scan("1e400", "1e400" + 5, &v), 5);
	assert_true(isinf(v) && v > 0);
}

/*
 * The row parsers' fast path (short_num in num.c: fields of at most 15 bytes
 * read 16 bytes at a time) against strtod: every field of random rows of
 * short decimals (signs, dots at every place, leading zeros, 1-16 bytes,
 * some with exponents, which go the long way) parsed by pgi_load_parse_line and
 * pgi_load_parse_lines with 16 bytes or more readable past the text, as the
 * readers give them.
 */
static int
random_field(char *s)
{
	uint64_t r = next();
	int len = 1 + (int)(r % 16), o = 0, dot = (int)((r >> 8) % 20) - 2;

	if ((r >> 16) % 3 == 0)
		s[o++] = (r >> 18) & 1 ? '-' : '+';
	while (o < len) {
		if (o == dot)
			s[o++] = '.';
		else
			s[o++] = (char)('0' + (next() % ((r >> 20) % 4 ? 10 : 2)));
	}
	if ((r >> 24) % 16 == 0)
		o += sprintf(s + o, "e%d", (int)((r >> 28) % 40) - 20);
	s[o] = 0;
	return o;
}

static void
test_rows_fast_path(void **state)
{
	enum { ROWS = 4000, COLS = 5 };
	char *text = malloc(ROWS * COLS * 24 + 64), field[COLS][40];
	double *v = malloc(ROWS * COLS * sizeof(double)),
	       *want = malloc(ROWS * COLS * sizeof(double));
	size_t o = 0, rows = 0;
	const char *q;

	(void)state;
	assert_non_null(text);
	assert_non_null(v);
	assert_non_null(want);
	for (int r = 0; r < ROWS; r++) {
		int good = 1;

		for (int c = 0; c < COLS; c++) {
			char *e;

			random_field(field[c]);
			want[rows * COLS + c] = strtod(field[c], &e);
			good &= *e == 0 && e != field[c];
		}
		if (!good)
			continue; /* "+", "-.", "1.2.": the rejections are tested below */
		for (int c = 0; c < COLS; c++)
			o += (size_t)sprintf(text + o, "%s%c", field[c], c + 1 < COLS ? ',' : '\n');
		rows++;
	}
	memset(text + o, 0, 64);
	/* Row by row, and all at once. */
	q = text;
	for (size_t r = 0; r < rows; r++) {
		q = pgi_load_parse_line(q, text + o + 64, ',', v + r * COLS, COLS);
		assert_non_null(q);
	}
	assert_ptr_equal(q, text + o);
	assert_memory_equal(v, want, rows * COLS * sizeof(double));
	memset(v, 0, rows * COLS * sizeof(double));
	{
		size_t got;
		q = pgi_load_parse_lines(text, text + o + 64, ',', v, COLS, rows + 10, &got);
		assert_int_equal(got, rows);
		assert_ptr_equal(q, text + o);
		assert_memory_equal(v, want, rows * COLS * sizeof(double));
		/* At most max rows: the next one starts where it stopped. */
		q = pgi_load_parse_lines(text, text + o + 64, ',', v, COLS, 3, &got);
		assert_int_equal(got, 3);
		q = pgi_load_parse_line(q, text + o + 64, ',', v + 3 * COLS, COLS);
		assert_non_null(q);
		assert_memory_equal(v, want, 4 * COLS * sizeof(double));
	}
	free(text);
	free(v);
	free(want);
}

/* One field on the fast path: its value bit for bit, or its refusal. */
static void
fast_field(const char *f, int ok, double expect)
{
	char buf[64] = {0};
	double v = -1;
	const char *q;

	snprintf(buf, sizeof(buf), "%s\n", f);
	q = pgi_load_parse_line(buf, buf + sizeof(buf), ',', &v, 1);
	if (!ok) {
		if (q) {
			print_error("'%s' accepted as %.17g\n", f, v);
			fail();
		}
		return;
	}
	if (!q || memcmp(&v, &expect, sizeof(v)) != 0) {
		print_error("'%s': %s %.17g, want %.17g\n", f, q ? "read" : "refused", v, expect);
		fail();
	}
}

static void
test_fast_path_edges(void **state)
{
	(void)state;
	fast_field("0", 1, 0.0);
	fast_field("-0", 1, -0.0);
	fast_field("-0.000", 1, -0.0);
	fast_field("+0", 1, 0.0);
	fast_field(".5", 1, 0.5);
	fast_field("-.5", 1, -0.5);
	fast_field("5.", 1, 5.0);
	fast_field("+5.", 1, 5.0);
	fast_field("007.250", 1, 7.25);
	fast_field("999999999999999", 1, 999999999999999.0);   /* 15 bytes */
	fast_field("-99999999999999", 1, -99999999999999.0);   /* 15 with the sign */
	fast_field("9999999999999999", 1, 9999999999999999.0); /* 16: the long way */
	fast_field("0.1234567890123", 1, 0.1234567890123);
	fast_field("1234567.8901234", 1, 1234567.8901234);
	fast_field("-1.23456789012345", 1, -1.23456789012345);
	fast_field("0.3", 1, 0.3);
	fast_field("1e5", 1, 1e5);
	fast_field("1.5E-3", 1, 1.5e-3);
	fast_field("2.5 ", 1, 2.5);
	fast_field("2.5\r", 1, 2.5);
	fast_field("", 0, 0);
	fast_field("-", 0, 0);
	fast_field("+", 0, 0);
	fast_field(".", 0, 0);
	fast_field("-.", 0, 0);
	fast_field("+-1", 0, 0);
	fast_field("1.2.3", 0, 0);
	fast_field("1..2", 0, 0);
	fast_field("1-2", 0, 0);
	fast_field("1e", 0, 0);
	fast_field("12x", 0, 0);
	fast_field("0x10", 0, 0);
	fast_field("1,5", 0, 0);
	{
		/* Rows end at a newline or the NUL; a bad row stops the run. */
		char t[96] = "1.5,2\n-3,.25\n7,8,9\n4,5\n";
		double v[8];
		size_t got;
		const char *q = pgi_load_parse_lines(t, t + sizeof(t), ',', v, 2, 10, &got);

		assert_int_equal(got, 2);
		assert_ptr_equal(q, t + 13); /* "7,8,9": three fields */
		assert_true(v[0] == 1.5 && v[1] == 2 && v[2] == -3 && v[3] == 0.25);
		q = pgi_load_parse_lines(t + 19, t + sizeof(t), ',', v, 2, 10, &got);
		assert_int_equal(got, 1);
		assert_ptr_equal(q, t + 23);
		assert_true(v[0] == 4 && v[1] == 5);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_edge_cases),	   cmocka_unit_test(test_random),
	    cmocka_unit_test(test_halfway),	   cmocka_unit_test(test_reader_rules),
	    cmocka_unit_test(test_rows_fast_path), cmocka_unit_test(test_fast_path_edges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
