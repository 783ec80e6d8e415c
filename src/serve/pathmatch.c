/*
 * The HTTP API's path patterns (issue 16, item 4): matches a request's URL
 * against one row of the route table in api.c. Literal characters match
 * themselves; {id} is 1.. with no leading zero (an image), {n} 1 to 18
 * digits (an alert), {name} the rest of the URL (a VSE), {page} a file of
 * the dashboard (pgi_serve_static). The URL comes from the network:
 * fuzz/serve_pathmatch.c holds the promises below.
 */
#include "payguard/serve.h"
#include "serve_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Reads the decimal parameter at *u into *id and moves *u past it; 0 on a
 * match. {id}: 1.. with no leading zero; {n}: 1 to 18 digits. */
static int
match_number(const char **u, int any_lead, int64_t *id)
{
	const char *p = *u;
	char *end;
	long long v;

	if (*p < (any_lead ? '0' : '1') || *p > '9')
		return -1;
	errno = 0;
	v = strtoll(p, &end, 10);
	if (errno || v < 0 || (any_lead && end - p > 18))
		return -1;
	*id = v;
	*u = end;
	return 0;
}

int
pg_serve_path_match(const char *pat, const char *url, int64_t *id, const char **name)
{
	const char *u = url;

	while (*pat) {
		if (strncmp(pat, "{page}", 6) == 0) {
			/* the dashboard's files answer their own paths (dashboard.c) */
			return pgi_serve_static(url, NULL, NULL, NULL) == 0 ? PG_SERVE_PATH_MATCH
									    : PG_SERVE_PATH_NONE;
		} else if (strncmp(pat, "{name}", 6) == 0) {
			*name = u;
			return PG_SERVE_PATH_MATCH;
		} else if (strncmp(pat, "{id}", 4) == 0) {
			if (match_number(&u, 0, id) < 0)
				return PG_SERVE_PATH_NONE;
			pat += 4;
		} else if (strncmp(pat, "{n}", 3) == 0) {
			if (match_number(&u, 1, id) < 0 || (*u && !pat[3]))
				return PG_SERVE_PATH_BAD;
			pat += 3;
		} else if (*pat++ != *u++) {
			return PG_SERVE_PATH_NONE;
		}
	}
	return *u ? PG_SERVE_PATH_NONE : PG_SERVE_PATH_MATCH;
}
