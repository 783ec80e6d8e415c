/*
 * Fuzzes the serve API's request guard (issue 13): the Host, Origin and
 * Content-Type checks over header values a client chose, and the allowed
 * host name check. Input: four lines (Host, Origin, Content-Type, a name).
 * Any bytes give a yes or a no, and a yes holds the guard's promises.
 */
#include "payguard/serve.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char allow[2][PG_SERVE_HOST_NAME] = {"payguard.example", "[fd00::1]"};
	static char empty[1];
	char *text = malloc(size + 1), *f[4] = {empty, empty, empty, empty}, *p;
	int n = 0;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	for (p = text; n < 4; n++) {
		char *nl = strchr(p, '\n');

		f[n] = p;
		if (!nl)
			break;
		*nl = 0;
		p = nl + 1;
	}
	if (pg_serve_host_ok(f[0], 8470, "10.1.2.3", allow, 2)) {
		/* a name we answer to: no path, no user info, no space */
		if (strpbrk(f[0], "/@ \t?#") || !f[0][0])
			abort();
	}
	if (pg_serve_origin_ok(f[1], f[0])) {
		size_t k = strncmp(f[1], "https://", 8) == 0 ? 8 : 7;

		if (strlen(f[1]) != k + strlen(f[0]) || strcasecmp(f[1] + k, f[0]) != 0)
			abort();
	}
	if (pg_serve_ctype_json(f[2]) && strncasecmp(f[2], "application/json", 16) != 0)
		abort();
	if (pg_serve_check_host_name(f[3]) == 0 &&
	    (strlen(f[3]) >= PG_SERVE_HOST_NAME || strpbrk(f[3], "/@ \t?#\r\n")))
		abort();
	free(text);
	return 0;
}
