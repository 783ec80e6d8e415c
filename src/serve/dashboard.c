/*
 * The dashboard (issue 9): the static pages of src/serve/www, embedded into
 * the binary at build time (www_embed.cmake), looked up by URL. No external
 * resources, so the dashboard works with no internet access.
 */
#include <string.h>

#include "payguard/error.h"
#include "serve_int.h"
#include "www.h"

/*
 * "/" and "/index.html" are the overview; "/se" and "/se.html" a page;
 * "/static/app.js" a shared file. Anything else is PG_ENOENT (the API
 * answers 404).
 */
int
pgi_serve_static(const char *url, const char **ctype, const unsigned char **data, size_t *len)
{
	char want[64];
	size_t n = strlen(url);

	if (n >= sizeof(want))
		return PG_ENOENT;
	memcpy(want, url, n + 1);
	if (strcmp(want, "/index.html") == 0 || strcmp(want, "/index") == 0) {
		strcpy(want, "/");
	} else if (strncmp(want, "/static/", 8) != 0 && n > 5 &&
		   strcmp(want + n - 5, ".html") == 0) {
		want[n - 5] = '\0';
	}
	for (size_t i = 0; i < pgi_www_nfiles; i++) {
		const struct pg_www_file *f = &pgi_www_files[i];

		if (strcmp(f->url, want) != 0)
			continue;
		if (ctype)
			*ctype = f->ctype;
		if (data)
			*data = f->data;
		if (len)
			*len = f->len;
		return 0;
	}
	return PG_ENOENT;
}
