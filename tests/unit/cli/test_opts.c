/*
 * The CLI's shared option parser (src/cli/opts.c, issue 16 item 4): each
 * type lands in the verb's struct, ranges and unknown options are usage
 * errors (exit 2), repeatable strings keep their order, and --help is made
 * from the same table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cli/cli.h"

static char last_usage[256];

/* main.c's, which this test does not link: records the message. */
int
pg_cli_usage(const char *argv0, const char *fmt, ...)
{
	va_list ap;

	(void)argv0;
	va_start(ap, fmt);
	vsnprintf(last_usage, sizeof(last_usage), fmt, ap);
	va_end(ap);
	return PG_EXIT_USAGE;
}

struct o {
	int flag, n;
	double x;
	const char *s;
	struct pg_opt_strings many;
};

static const struct pg_opt tab[] = {
    PG_FLAG(struct o, flag, "flag", "a flag"),
    PG_INT(struct o, n, "n", "N", 1, 10, "a number 1..10"),
    PG_DBL(struct o, x, "x", "X", 0, 100, "a number 0..100"),
    PG_STR(struct o, s, "s", "TEXT", "a string"),
    PG_STRS(struct o, many, "many", "NAME", "names"),
    {0},
};

static int
parse(struct o *v, int *first, ...)
{
	char *argv[16] = {"payguard t t"};
	int argc = 1;
	va_list ap;

	va_start(ap, first);
	for (char *a; (a = va_arg(ap, char *));)
		argv[argc++] = a;
	va_end(ap);
	memset(v, 0, sizeof(*v));
	last_usage[0] = 0;
	return pg_cli_parse(argc, argv, tab, v, first);
}

static void
test_types(void **state)
{
	struct o v;
	int first = 0;

	(void)state;
	assert_int_equal(parse(&v, &first, "--flag", "--n", "7", "--x", "2.5", "--s", "hi",
			       "--many", "a", "FILE", "--many", "b", NULL),
			 0);
	assert_int_equal(v.flag, 1);
	assert_int_equal(v.n, 7);
	assert_true(v.x == 2.5);
	assert_string_equal(v.s, "hi");
	assert_int_equal(v.many.n, 2);
	assert_string_equal(v.many.v[0], "a");
	assert_string_equal(v.many.v[1], "b");
	assert_int_equal(first, 12); /* getopt moved the operand last */
}

static void
test_errors(void **state)
{
	struct o v;
	int first = 0;

	(void)state;
	assert_int_equal(parse(&v, &first, "--n", "11", NULL), PG_EXIT_USAGE);
	assert_string_equal(last_usage, "--n '11' must be 1..10");
	assert_int_equal(parse(&v, &first, "--n", "3x", NULL), PG_EXIT_USAGE);
	assert_int_equal(parse(&v, &first, "--n", "", NULL), PG_EXIT_USAGE);
	assert_int_equal(parse(&v, &first, "--x", "nan", NULL), PG_EXIT_USAGE);
	assert_int_equal(parse(&v, &first, "--x", "-1", NULL), PG_EXIT_USAGE);
	assert_int_equal(parse(&v, &first, "--bogus", NULL), PG_EXIT_USAGE);
	assert_int_equal(parse(&v, &first, "--s", NULL), PG_EXIT_USAGE); /* no value */
	assert_int_equal(parse(&v, &first, "--flag=1", NULL), PG_EXIT_USAGE);
}

static void
test_help_from_table(void **state)
{
	const struct pg_cmd cmd = {"t", NULL, "a verb", "A note.", tab, "FILE"};
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	(void)state;
	assert_non_null(f);
	pg_cli_print_help(f, "payguard t t", &cmd);
	fclose(f);
	assert_non_null(strstr(buf, "usage: payguard t t [options] FILE\n"));
	for (const struct pg_opt *o = tab; o->name; o++) {
		char want[64];

		snprintf(want, sizeof(want), "--%s%s%s ", o->name, o->arg ? " " : "",
			 o->arg ? o->arg : "");
		assert_non_null(strstr(buf, want));
		assert_non_null(strstr(buf, o->help));
	}
	assert_non_null(strstr(buf, "names (repeatable)"));
	assert_non_null(strstr(buf, "\nA note.\n"));
	free(buf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_types),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_help_from_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
