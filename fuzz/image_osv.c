/* Fuzz target: the OSV advisory parser (JSON, Debian ecosystem ranges). */
#include "image/image_int.h"

#include "payguard/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_osv *v = NULL;
	size_t n = 0;

	pg_log_set_level(-1);
	if (size > (1u << 20))
		return 0;
	if (pgi_osv_parse((const char *)data, size, &v, &n) == 0)
		pgi_osv_free(v, n);
	return 0;
}
