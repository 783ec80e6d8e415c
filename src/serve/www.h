/* Private to src/serve: the dashboard's static files (src/serve/www, issue 9),
 * embedded at build time by www_embed.cmake into www_files.c. */
#ifndef PAYGUARD_SERVE_WWW_H
#define PAYGUARD_SERVE_WWW_H

#include <stddef.h>

struct pg_www_file {
	const char *url;   /* "/" for index.html, "/se" for se.html, "/static/app.js" */
	const char *ctype; /* Content-Type */
	const unsigned char *data;
	size_t len;
};

extern const struct pg_www_file pgi_www_files[];
extern const size_t pgi_www_nfiles;

#endif
