/*
 * Fuzzes the cached connection-configuration decoder (a record read back
 * from the store) and checks that what decodes re-encodes to a record that
 * decodes to the same configuration.
 */
#include "payguard/seos.h"

#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_seos_config a, b;
	uint8_t *enc = NULL;
	size_t n = 0;

	if (pg_seos_config_decode(&a, data, size) < 0)
		return 0;
	if (pg_seos_config_encode(&a, &enc, &n) == 0) {
		if (pg_seos_config_decode(&b, enc, n) < 0 || b.version != a.version ||
		    b.napps != a.napps || b.ara_len != a.ara_len ||
		    memcmp(b.app, a.app, sizeof(a.app)) != 0)
			abort();
		pg_seos_config_release(&b);
	}
	free(enc);
	pg_seos_config_release(&a);
	return 0;
}
