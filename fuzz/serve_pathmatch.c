/*
 * Fuzzes the HTTP API's path matcher (src/serve/pathmatch.c, issue 16 item
 * 4) with URLs a client chose, against the kinds of pattern the route table
 * in api.c uses. A match holds the pattern's promises: the URL is used up,
 * an {id} is positive, an {n} has at most 18 digits, a {name} is a suffix.
 */
#include "payguard/serve.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const pats[] = {
	    "/api",
	    "/api/pos/alerts/{n}",
	    "/api/vses/{name}",
	    "/api/images/{id}",
	    "/api/images/{id}/packages",
	    "/{page}",
	};
	char *url = malloc(size + 1);

	if (!url)
		return 0;
	memcpy(url, data, size);
	url[size] = 0;
	for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++) {
		int64_t id = -1;
		const char *name = NULL;
		int m = pg_serve_path_match(pats[i], url, &id, &name);

		if (m != PG_SERVE_PATH_NONE && m != PG_SERVE_PATH_MATCH && m != PG_SERVE_PATH_BAD)
			abort();
		if (m != PG_SERVE_PATH_MATCH)
			continue;
		if (i == 0 && strcmp(url, "/api") != 0)
			abort();
		if (i == 1 && (id < 0 || id > 999999999999999999LL))
			abort();
		if ((i == 3 || i == 4) && id < 1)
			abort();
		if (i == 2 && (!name || name < url || name > url + strlen(url) ||
			       strncmp(url, "/api/vses/", 10) != 0))
			abort();
	}
	free(url);
	return 0;
}
