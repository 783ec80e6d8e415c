/*
 * Fuzz target: the Debian Security Tracker JSON parser (dsa_tracker.c) and the
 * format detection of `image advisories import` (auto: OSV or tracker).
 */
#include "image/image_int.h"

#include "payguard/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_osv *v = NULL;
	size_t n = 0;
	const char *found = NULL;

	pg_log_set_level(-1);
	if (size > (1u << 20))
		return 0;
	if (pgi_debtracker_parse((const char *)data, size, &v, &n) == 0)
		pgi_osv_free(v, n);
	if (pgi_advisories_parse((const char *)data, size, "auto", &v, &n, &found) == 0)
		pgi_osv_free(v, n);
	return 0;
}
