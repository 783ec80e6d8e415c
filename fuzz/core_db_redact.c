/*
 * libFuzzer harness: pgi_db_redact (src/core/db.c), the store URL as logs
 * show it (pg_db_name). The URL comes from the command line or serve.json
 * (`store`): any bytes, up to the NUL a C string ends at.
 */
#include "core/db_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), *r;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	r = pgi_db_redact(s);
	/* the masks never make it longer than its buffer of 2 * strlen + 1 */
	if (r && strlen(r) > 2 * strlen(s))
		abort();
	free(r);
	free(s);
	return 0;
}
