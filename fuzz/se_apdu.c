/* Fuzzes the ISO 7816-4 C-APDU parser and checks parse -> encode round trips. */
#include "payguard/apdu.h"

#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_capdu c;
	static uint8_t out[PG_APDU_MAX_C];

	if (pg_capdu_parse(&c, data, size) == 0) {
		int n = pg_capdu_encode(&c, c.apdu_case >= PG_APDU_CASE2E, out, sizeof(out));

		/* A parsed APDU re-encodes to the same bytes in the same form. */
		if (n < 0 || (size_t)n != size || memcmp(out, data, size) != 0)
			abort();
		(void)pg_cla_channel(c.cla);
	}
	return 0;
}
