/*
 * How a verb reports to the user: its exit code from a PG_E... code, a
 * failure with the detail of pg_last_error(), a usage error, a JSON answer
 * on stdout. Shared by every cmd_<area>.c and the option parser (opts.c),
 * so they depend on this file, not on main.c (issue 16: no file cycles).
 */
#include "cli.h"
#include "payguard/error.h"
#include "payguard/json.h"
#include "payguard/log.h"

#include <stdarg.h>
#include <stdio.h>

int
pg_cli_exit_code(int rc)
{
	switch (rc) {
	case 0:
		return PG_EXIT_OK;
	case PG_EUSAGE:
		return PG_EXIT_USAGE;
	case PG_EFORMAT:
	case PG_ETRUNC:
	case PG_ETOOBIG:
	case PG_ECORRUPT:
	case PG_EINVAL:
	case PG_ERANGE:
		return PG_EXIT_INPUT;
	case PG_ENOENT:
		return PG_EXIT_NOTFOUND;
	case PG_EAUTH:
	case PG_EPERM:
		return PG_EXIT_DENIED;
	default:
		return rc > 0 ? rc : PG_EXIT_FAIL;
	}
}

int
pg_cli_fail(int rc, const char *fmt, ...)
{
	va_list ap;
	const char *detail = pg_last_error();

	fputs("payguard: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", detail[0] ? detail : pg_strerror(rc));
	return pg_cli_exit_code(rc);
}

int
pg_cli_usage(const char *argv0, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", argv0);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(see '%s --help')\n", argv0);
	return PG_EXIT_USAGE;
}

int
pg_cli_print_json(json_t *v)
{
	int rc;

	if (!v)
		return pg_cli_fail(PG_ENOMEM, "json output");
	rc = pg_json_dumpf(v, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
	json_decref(v);
	fputc('\n', stdout);
	return rc == 0 ? PG_EXIT_OK : PG_EXIT_FAIL;
}
