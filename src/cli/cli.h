/*
 * The command-line tool's private header. Every command is one row of an
 * area's table { verb, function, summary, usage }; main.c lists the areas.
 *
 * Adding a verb:
 *  1. write `static int cmd_<area>_<verb>(int argc, char **argv)` in
 *     src/cli/cmd_<area>.c; parse options with getopt_long and call library
 *     code only (no protocol logic in the CLI);
 *  2. add its row to that file's pg_cli_<area>[] table with a usage text
 *     that lists every option (it is what `--help` prints);
 *  3. document it in docs/cli.md.
 * argv[0] is "payguard <area> <verb>"; `--help` never reaches the function.
 */
#ifndef PAYGUARD_CLI_H
#define PAYGUARD_CLI_H

#include <jansson.h>
#include <stddef.h>

struct pg_cmd {
	const char *verb;
	int (*fn)(int argc, char **argv);
	const char *summary;
	const char *usage;
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
extern const struct pg_cmd pg_cli_serve[];
extern const struct pg_cmd pg_cli_demo[];

#endif
