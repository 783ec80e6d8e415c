/*
 * The CLI's one option parser (issue 16, item 4): a verb declares its
 * options in a table of struct pg_opt (cli.h) — name, type, value name,
 * help and where the value goes — and pg_cli_parse fills the verb's own
 * options struct from argv through getopt_long. `--help` is printed from
 * the same table (pg_cli_print_help), so the two cannot drift.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OPTS 48

static int
set_int(const char *argv0, const struct pg_opt *o, const char *arg, void *dst)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (!*arg || *end || errno || (double)v < o->lo || (double)v > o->hi)
		return pg_cli_usage(argv0, "--%s '%s' must be %.0f..%.0f", o->name, arg, o->lo,
				    o->hi);
	*(int *)dst = (int)v;
	return 0;
}

static int
set_size(const char *argv0, const struct pg_opt *o, const char *arg, void *dst)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(arg, &end, 10);
	if (arg[0] < '0' || arg[0] > '9' || *end || errno || (double)v < o->lo ||
	    (double)v > o->hi || v > SIZE_MAX)
		return pg_cli_usage(argv0, "--%s '%s' must be %.0f..%.0f", o->name, arg, o->lo,
				    o->hi);
	*(size_t *)dst = (size_t)v;
	return 0;
}

static int
set_double(const char *argv0, const struct pg_opt *o, const char *arg, void *dst)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(arg, &end);
	if (!*arg || *end || errno || !isfinite(v) || !(v >= o->lo && v <= o->hi))
		return pg_cli_usage(argv0, "--%s '%s' must be a number %g..%g", o->name, arg, o->lo,
				    o->hi);
	*(double *)dst = v;
	return 0;
}

int
pg_cli_u32(const char *argv0, const char *opt, const char *text, int base, uint32_t *out)
{
	char *end;
	unsigned long long v;

	if (!text)
		return 0;
	errno = 0;
	v = strtoull(text, &end, base);
	if (!*text || *text == '-' || *end || errno || v > 0xFFFFFFFFull)
		return pg_cli_usage(argv0, "bad --%s '%s'", opt, text);
	*out = (uint32_t)v;
	return 0;
}

/* Stores one option's value into the verb's struct at base. */
static int
set_value(const char *argv0, const struct pg_opt *o, const char *arg, char *base)
{
	void *dst = base + o->off;

	switch (o->type) {
	case PG_OPT_FLAG:
		*(int *)dst = 1;
		return 0;
	case PG_OPT_STRING:
		*(const char **)dst = arg;
		return 0;
	case PG_OPT_INT:
		return set_int(argv0, o, arg, dst);
	case PG_OPT_DOUBLE:
		return set_double(argv0, o, arg, dst);
	case PG_OPT_SIZE:
		return set_size(argv0, o, arg, dst);
	case PG_OPT_STRINGS: {
		struct pg_opt_strings *l = dst;

		if (l->n >= PG_OPT_STRINGS_MAX)
			return pg_cli_usage(argv0, "--%s given more than %d times", o->name,
					    PG_OPT_STRINGS_MAX);
		l->v[l->n++] = arg;
		return 0;
	}
	}
	return pg_cli_usage(argv0, "--%s: unknown option type", o->name);
}

int
pg_cli_parse(int argc, char **argv, const struct pg_opt *opts, void *values, int *first)
{
	struct option lo[MAX_OPTS + 1];
	size_t n = 0;

	for (const struct pg_opt *o = opts; o && o->name; o++) {
		if (n >= MAX_OPTS)
			return pg_cli_usage(argv[0], "too many options in the verb's table");
		lo[n] = (struct option){o->name,
					o->type == PG_OPT_FLAG ? no_argument : required_argument,
					NULL, (int)(1000 + n)};
		n++;
	}
	lo[n] = (struct option){NULL, 0, NULL, 0};
	optind = 1;
	for (int c; (c = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
		int rc;

		if (c < 1000 || (size_t)(c - 1000) >= n)
			return pg_cli_usage(argv[0], "unknown option");
		rc = set_value(argv[0], &opts[c - 1000], optarg, values);
		if (rc)
			return rc;
	}
	*first = optind;
	return 0;
}

/* Prints text after "  --NAME ARG" at column indent, wrapped at 96. */
static void
print_wrapped(FILE *f, const char *text, int indent, const char *tail)
{
	int col = indent;
	const char *p = text;

	while (*p) {
		int w = (int)strcspn(p, " ");

		if (col > indent && col + 1 + w > 96) {
			fprintf(f, "\n%*s", indent - 2, "");
			col = indent;
		}
		fprintf(f, "%s%.*s", col > indent ? " " : "  ", w, p);
		col += w + (col > indent ? 1 : 2);
		p += w;
		while (*p == ' ')
			p++;
	}
	fprintf(f, "%s\n", tail);
}

void
pg_cli_print_help(FILE *f, const char *argv0, const struct pg_cmd *cmd)
{
	int width = 0;

	fprintf(f, "usage: %s%s%s%s\n", argv0, cmd->opts && cmd->opts->name ? " [options]" : "",
		cmd->args ? " " : "", cmd->args ? cmd->args : "");
	for (const struct pg_opt *o = cmd->opts; o && o->name; o++) {
		int w = (int)strlen(o->name) + (o->arg ? (int)strlen(o->arg) + 1 : 0);

		if (w > width)
			width = w;
	}
	if (cmd->opts && cmd->opts->name)
		fprintf(f, "\nOptions:\n");
	for (const struct pg_opt *o = cmd->opts; o && o->name; o++) {
		char left[96];

		snprintf(left, sizeof(left), "%s%s%s", o->name, o->arg ? " " : "",
			 o->arg ? o->arg : "");
		fprintf(f, "  --%-*s", width, left);
		print_wrapped(f, o->help, width + 6,
			      o->type == PG_OPT_STRINGS ? " (repeatable)" : "");
	}
	if (cmd->usage && cmd->usage[0])
		fprintf(f, "\n%s\n", cmd->usage);
}
