/*
 * The command-line tool's private header. Every command is one row of an
 * area's table { verb, function, summary, usage }; main.c lists the areas.
 *
 * Adding a verb:
 *  1. write `static int cmd_<area>_<verb>(int argc, char **argv)` in
 *     src/cli/cmd_<area>.c that calls library code only (no protocol logic
 *     in the CLI);
 *  2. declare its options as a struct pg_opt table (PG_FLAG, PG_STR,
 *     PG_INT, PG_DBL, PG_STRS rows) and parse them with pg_cli_parse;
 *  3. add its row { verb, fn, summary, notes, options, operands } to that
 *     file's pg_cli_<area>[] table: `--help` is generated from the options;
 *  4. document it in docs/cli.md.
 * argv[0] is "payguard <area> <verb>"; `--help` never reaches the function.
 */
#ifndef PAYGUARD_CLI_H
#define PAYGUARD_CLI_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A verb's option: where pg_cli_parse puts its value (off: offsetof in the
 * verb's options struct) and how --help describes it. */
enum pg_opt_type {
	PG_OPT_FLAG,	/* int, set to 1 */
	PG_OPT_STRING,	/* const char *, the last one given */
	PG_OPT_INT,	/* int in lo..hi */
	PG_OPT_DOUBLE,	/* double in lo..hi */
	PG_OPT_SIZE,	/* size_t in lo..hi (decimal digits only) */
	PG_OPT_STRINGS, /* struct pg_opt_strings: every one given, in order */
};
#define PG_OPT_STRINGS_MAX 256
struct pg_opt_strings {
	const char *v[PG_OPT_STRINGS_MAX];
	int n;
};
struct pg_opt {
	const char *name; /* without "--" */
	enum pg_opt_type type;
	const char *arg; /* the value's name in help ("FILE"); NULL for a flag */
	const char *help;
	size_t off;
	double lo, hi; /* PG_OPT_INT, PG_OPT_DOUBLE, PG_OPT_SIZE: the range */
};
/* Table rows: PG_FLAG(struct o, field, "name", "help") and so on. */
#define PG_FLAG(T, f, name, help)                                                                  \
	{                                                                                          \
		name, PG_OPT_FLAG, NULL, help, offsetof(T, f), 0, 0                                \
	}
#define PG_STR(T, f, name, arg, help)                                                              \
	{                                                                                          \
		name, PG_OPT_STRING, arg, help, offsetof(T, f), 0, 0                               \
	}
#define PG_INT(T, f, name, arg, lo, hi, help)                                                      \
	{                                                                                          \
		name, PG_OPT_INT, arg, help, offsetof(T, f), lo, hi                                \
	}
#define PG_DBL(T, f, name, arg, lo, hi, help)                                                      \
	{                                                                                          \
		name, PG_OPT_DOUBLE, arg, help, offsetof(T, f), lo, hi                             \
	}
#define PG_SIZE(T, f, name, arg, lo, hi, help)                                                     \
	{                                                                                          \
		name, PG_OPT_SIZE, arg, help, offsetof(T, f), lo, hi                               \
	}
#define PG_STRS(T, f, name, arg, help)                                                             \
	{                                                                                          \
		name, PG_OPT_STRINGS, arg, help, offsetof(T, f), 0, 0                              \
	}

struct pg_cmd {
	const char *verb;
	int (*fn)(int argc, char **argv);
	const char *summary;
	/* with opts: notes printed after the generated option list; without:
	 * the whole usage text after "usage: payguard AREA VERB " */
	const char *usage;
	const struct pg_opt *opts; /* ends with a NULL name; NULL: usage is hand-written */
	const char *args;	   /* the operands, for the generated usage line ("FILE") */
};

struct pg_area {
	const char *name;
	const char *summary;
	const struct pg_cmd *cmds; /* ends with a row whose verb is NULL */
	/* the verb run when options (or nothing) follow the area: `payguard serve --demo` */
	const char *default_verb;
};

/* Exit codes, documented in docs/cli.md. */
enum {
	PG_EXIT_OK = 0,
	PG_EXIT_FAIL = 1,     /* the operation failed */
	PG_EXIT_USAGE = 2,    /* bad command line */
	PG_EXIT_INPUT = 3,    /* input rejected: malformed, truncated, too big */
	PG_EXIT_NOTFOUND = 4, /* a named thing does not exist */
	PG_EXIT_DENIED = 5,   /* authentication or access control refused */
};

/* Parses argv[1..] with a verb's option table into `values` (the verb's
 * options struct); *first is the first operand. 0, or PG_EXIT_USAGE after
 * a message. */
int pg_cli_parse(int argc, char **argv, const struct pg_opt *opts, void *values, int *first);
/* An option's text as a whole number 0..0xFFFFFFFF in `base` (0: decimal or
 * 0x hex) into *out; text NULL (not given) leaves *out. 0, or PG_EXIT_USAGE
 * after "bad --opt 'text'". */
int pg_cli_u32(const char *argv0, const char *opt, const char *text, int base, uint32_t *out);
/* `--help` of a verb with an option table: usage line, options, notes. */
void pg_cli_print_help(FILE *f, const char *argv0, const struct pg_cmd *cmd);

/* Maps a PG_E... code to an exit code. */
int pg_cli_exit_code(int rc);
/* Prints "payguard: <what>: <detail or strerror>" and returns the exit code. */
int pg_cli_fail(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints a usage error and returns PG_EXIT_USAGE. */
int pg_cli_usage(const char *argv0, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints a JSON value (steals the reference) with a newline to stdout. */
int pg_cli_print_json(json_t *v);

/* Plain-text table: columns sized to their widest cell. */
struct pg_table;
struct pg_table *pg_table_new(size_t ncols, const char *const *headers);
/* Adds a row of ncols cells (copied); NULL cells print as "-". */
int pg_table_add(struct pg_table *t, const char *const *cells);
void pg_table_print(struct pg_table *t);
void pg_table_free(struct pg_table *t);

/* Finds a verb in an area's table (NULL if absent); used by `demo run`. */
const struct pg_cmd *pg_cli_find(const char *area, const char *verb);

/* Areas, one table each (src/cli/cmd_<area>.c). */
extern const struct pg_cmd pg_cli_se[];
extern const struct pg_cmd pg_cli_vse[];
extern const struct pg_cmd pg_cli_seos[];
extern const struct pg_cmd pg_cli_nfcswitch[];
extern const struct pg_cmd pg_cli_image[];
extern const struct pg_cmd pg_cli_load[];
extern const struct pg_cmd pg_cli_pos[];
extern const struct pg_cmd pg_cli_events[];
extern const struct pg_cmd pg_cli_serve[];
extern const struct pg_cmd pg_cli_demo[];

#endif
