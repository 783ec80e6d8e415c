/* libFuzzer harness: the Prometheus query_range response parser (src/load/prom.c). */
#include "payguard/load.h"

#include <stdint.h>

static int
sink(void *ctx, const char *vm, int64_t ts, double v)
{
	(void)vm;
	(void)ts;
	*(double *)ctx += v;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	double acc = 0;

	(void)pg_load_prom_parse((const char *)data, size, "domain", sink, &acc);
	return 0;
}
