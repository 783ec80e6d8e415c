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

/*
 * The bulk row parser (pgi_load_fast_rows: field ends from 64-byte masks,
 * digits by SSE2 multiply-adds, a second pass dividing two at a time)
 * against strtod, as the readers drive it: the bulk path where it takes
 * rows, pgi_load_parse_line for the row it stops at, over random rows with
 * blanks before fields, CRLF, exponents and long numbers among them. A
 * wrong digit, place, sign or rounding in the bulk path fails the compare.
 */
static void
test_bulk_rows_random(void **state)
{
	enum { ROWS = 20000, COLS = 4 };
	char *text = malloc(ROWS * COLS * 26 + 128), field[COLS][40];
	double *v = malloc((ROWS + 1) * COLS * sizeof(double)),
	       *want = malloc(ROWS * COLS * sizeof(double));
	size_t o = 0, rows = 0, r = 0, bulk = 0;
	const char *q, *lim;

	(void)state;
	assert_non_null(text);
	assert_non_null(v);
	assert_non_null(want);
	while (rows < ROWS) {
		int good = 1, plain = next() % 4 != 0; /* mostly the bulk path's form */

		for (int c = 0; c < COLS; c++) {
			char *e;

			if (plain) {
				uint64_t x = next();
				int len = 1 + (int)(x % 15), dot = (int)((x >> 8) % 18) - 1, k = 0;

				if ((x >> 16) % 3 == 0)
					field[c][k++] = (x >> 18) & 1 ? '-' : '+';
				while (k < len)
					field[c][k] = k == dot ? '.' : (char)('0' + next() % 10),
					k++;
				field[c][k] = 0;
			} else {
				random_field(field[c]);
			}
			want[rows * COLS + c] = strtod(field[c], &e);
			good &= *e == 0 && e != field[c];
		}
		if (!good)
			continue;
		for (int c = 0; c < COLS; c++) {
			uint64_t x = next();

			if (x % 8 == 0)
				o += (size_t)sprintf(text + o, "%s", (x >> 3) & 1 ? " " : "\t ");
			o += (size_t)sprintf(text + o, "%s", field[c]);
			if (c + 1 < COLS)
				text[o++] = ',';
			else
				o += (size_t)sprintf(text + o, "%s",
						     (x >> 4) % 8 == 0 ? "\r\n" : "\n");
		}
		rows++;
	}
	memset(text + o, 0, 128);
	lim = text + o + 128;
	for (q = text; r < rows;) {
		size_t got;
		const char *nq = pgi_load_fast_rows(q, text + o, lim, ',', NULL, 0, 0, v + r * COLS,
						    COLS, rows - r, &got);

		if (got) {
			assert_true(nq > q && nq[-1] == '\n');
			q = nq;
			r += got;
			bulk += got;
			continue;
		}
		assert_ptr_equal(nq, q);
		q = pgi_load_parse_line(q, lim, ',', v + r * COLS, COLS);
		assert_non_null(q);
		r++;
	}
	assert_ptr_equal(q, text + o);
	for (size_t i = 0; i < rows * COLS; i++)
		if (memcmp(&v[i], &want[i], sizeof(double)) != 0) {
			print_error("row %zu field %zu: %.17g, strtod %.17g\n", i / COLS, i % COLS,
				    v[i], want[i]);
			fail();
		}
	assert_true(bulk > rows / 3); /* the bulk path did the most of it */
	free(text);
	free(v);
	free(want);
}

/* One row through the bulk path: taken with its values bit for bit (ok), or
 * left to the checking path (rows 0, where it started). */
static void
bulk_row(const char *row, size_t n, int nonneg, const char *prefix, int ok, const double *expect)
{
	char buf[256] = {0};
	double v[8];
	size_t got, len = strlen(row);
	const char *q;

	memcpy(buf, row, len);
	q = pgi_load_fast_rows(buf, buf + len, buf + sizeof(buf), ',', prefix,
			       prefix ? strlen(prefix) : 0, nonneg, v, n, 1, &got);
	if (!ok) {
		if (got || q != buf) {
			print_error("'%s' taken (%zu rows)\n", row, got);
			fail();
		}
		return;
	}
	if (got != 1 || q != buf + len || memcmp(v, expect, n * sizeof(double)) != 0) {
		print_error("'%s': %zu rows, first %.17g, want %.17g\n", row, got, v[0], expect[0]);
		fail();
	}
}

static void
bulk_field(const char *f, int ok, double expect)
{
	char row[64];

	snprintf(row, sizeof(row), "%s\n", f);
	bulk_row(row, 1, 0, NULL, ok, &expect);
}

static void
test_bulk_rows_edges(void **state)
{
	(void)state;
	bulk_field("0", 1, 0.0);
	bulk_field("-0", 1, -0.0);
	bulk_field("-0.000", 1, -0.0);
	bulk_field("+0", 1, 0.0);
	bulk_field(".5", 1, 0.5);
	bulk_field("-.5", 1, -0.5);
	bulk_field("5.", 1, 5.0);
	bulk_field("+5.", 1, 5.0);
	bulk_field("007.250", 1, 7.25);
	bulk_field("999999999999999", 1, 999999999999999.0); /* 15 bytes */
	bulk_field("-99999999999999", 1, -99999999999999.0);
	bulk_field("+.9999999999999", 1, .9999999999999);
	bulk_field("0.1234567890123", 1, 0.1234567890123);
	bulk_field("1234567.8901234", 1, 1234567.8901234);
	bulk_field("99999999999999.", 1, 99999999999999.0);
	bulk_field(".00000000000001", 1, 1e-14);
	bulk_field("0.3", 1, 0.3);
	bulk_field("-2.675", 1, -2.675);
	bulk_field("1372629804000", 1, 1372629804000.0);
	bulk_field(" 2.5", 1, 2.5);
	bulk_field("\t \t2.5", 1, 2.5);
	bulk_field("2.5\r", 1, 2.5);
	/* Left to the checking path: the long way, a fault, or a blank after. */
	bulk_field("9999999999999999", 0, 0); /* 16 bytes */
	bulk_field("0.12345678901234", 0, 0);
	bulk_field("1e5", 0, 0);
	bulk_field("1.5E-3", 0, 0);
	bulk_field("2.5 ", 0, 0);
	bulk_field("2.5\r\r", 0, 0);
	bulk_field("", 0, 0);
	bulk_field(" ", 0, 0);
	bulk_field("-", 0, 0);
	bulk_field("+", 0, 0);
	bulk_field(".", 0, 0);
	bulk_field("-.", 0, 0);
	bulk_field("+-1", 0, 0);
	bulk_field("1+", 0, 0);
	bulk_field("1.2.3", 0, 0);
	bulk_field("1..2", 0, 0);
	bulk_field("1-2", 0, 0);
	bulk_field("12x", 0, 0);
	bulk_field("0x10", 0, 0);
	bulk_field("inf", 0, 0);
	bulk_field("1 2", 0, 0);
	bulk_field("\r2", 0, 0);
	{
		char nul[] = "12\0003\n"; /* a NUL inside a field */
		char buf[128] = {0};
		double v;
		size_t got;

		memcpy(buf, nul, sizeof(nul) - 1);
		pgi_load_fast_rows(buf, buf + 5, buf + sizeof(buf), ',', NULL, 0, 0, &v, 1, 1,
				   &got);
		assert_int_equal(got, 0);
	}
	{
		const double a[3] = {1.5, -2, 0.25}, b[3] = {1.5, -0.0, 0.25}, c[2] = {3, 4};

		bulk_row("1.5,-2,.25\n", 3, 0, NULL, 1, a);
		bulk_row("1.5,-2,.25\n", 3, 1, NULL, 0, a);   /* below 0 with nonneg */
		bulk_row("1.5,-0,.25\n", 3, 1, NULL, 1, b);   /* -0 is not below 0 */
		bulk_row("1.5,-2\n", 3, 0, NULL, 0, a);	      /* too few fields */
		bulk_row("1.5,-2,.25,1\n", 3, 0, NULL, 0, a); /* too many */
		bulk_row("1.5,-2,.25", 3, 0, NULL, 0, a);     /* no newline: the checks say */
		bulk_row("1.5,-2,,\n", 3, 0, NULL, 0, a);
		bulk_row("vm-1,3,4\n", 2, 1, "vm-1", 1, c);
		bulk_row("vm-2,3,4\n", 2, 1, "vm-1", 0, c);
		bulk_row("vm-10,3,4\n", 2, 1, "vm-1", 0, c);
		bulk_row("vm-,3,4\n", 2, 1, "vm-1", 0, c);
		bulk_row("a-VM-name-of-20-bytes,3,4\n", 2, 1, "a-VM-name-of-20-bytes", 1, c);
		bulk_row("a-VM-name-of-20-bytez,3,4\n", 2, 1, "a-VM-name-of-20-bytes", 0, c);
		bulk_row("sixteen-bytes-vm,3,4\n", 2, 1, "sixteen-bytes-vm", 1, c);
		bulk_row("sixteen-bytes-vX,3,4\n", 2, 1, "sixteen-bytes-vm", 0, c);
	}
	{
		/* Rows past end are not taken, nor read past lim; max rows at most. */
		char t[256] = "1,2\n3,4\n5,6\n7,8\n";
		double v[8];
		size_t got;
		const char *q =
		    pgi_load_fast_rows(t, t + 10, t + sizeof(t), ',', NULL, 0, 0, v, 2, 10, &got);

		assert_int_equal(got, 2);
		assert_ptr_equal(q, t + 8);
		q = pgi_load_fast_rows(t, t + 16, t + sizeof(t), ',', NULL, 0, 0, v, 2, 3, &got);
		assert_int_equal(got, 3);
		assert_ptr_equal(q, t + 12);
		assert_true(v[0] == 1 && v[3] == 4 && v[5] == 6);
		q = pgi_load_fast_rows(t, t + 16, t + 63, ',', NULL, 0, 0, v, 2, 3, &got);
		assert_int_equal(got, 0); /* fewer than 64 bytes readable */
	}
	{
		/* A line of LOAD_LINE_MAX bytes or more is the checking path's. */
		char *t = calloc(1, LOAD_LINE_MAX + 256);
		double v;
		size_t got;

		assert_non_null(t);
		memset(t, ' ', LOAD_LINE_MAX);
		memcpy(t + LOAD_LINE_MAX, "1\n", 2);
		pgi_load_fast_rows(t, t + LOAD_LINE_MAX + 2, t + LOAD_LINE_MAX + 256, ',', NULL, 0,
				   0, &v, 1, 1, &got);
		assert_int_equal(got, 0);
		free(t);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_edge_cases),	     cmocka_unit_test(test_random),
	    cmocka_unit_test(test_halfway),	     cmocka_unit_test(test_reader_rules),
	    cmocka_unit_test(test_rows_fast_path),   cmocka_unit_test(test_fast_path_edges),
	    cmocka_unit_test(test_bulk_rows_random), cmocka_unit_test(test_bulk_rows_edges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
