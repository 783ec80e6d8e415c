/* libFuzzer harness: the Bitbrains GWA-T-12 trace reader (src/load/csv.c). */
#include "load/load_int.h"

#include <stdint.h>
#include <stdio.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_load_series s;
	FILE *f;

	if (size == 0)
		return 0;
	f = fmemopen((void *)data, size, "r");
	if (!f)
		return 0;
	pg_load_series_init(&s, 4096);
	(void)pgi_load_bitbrains_read(f, "fuzz.csv", &s);
	pg_load_series_release(&s);
	fclose(f);
	return 0;
}
