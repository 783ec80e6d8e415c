/* libFuzzer harness: the .npy matrix reader of `load kmeans` (src/load/npy.c). */
#include "payguard/load.h"

#include <stdint.h>
#include <stdlib.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	double *x = NULL;
	size_t n, d;

	if (pg_load_parse_npy((const char *)data, size, "fuzz", &x, &n, &d) == 0)
		free(x);
	return 0;
}
