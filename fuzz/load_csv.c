/* libFuzzer harness: our plain CSV reader, VM after VM (src/load/csv.c). */
#include "load/load_int.h"

#include <stdint.h>
#include <stdio.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct load_csv_reader r;
	struct pg_load_series s;
	FILE *f;

	if (size == 0)
		return 0;
	f = fmemopen((void *)data, size, "r");
	if (!f)
		return 0;
	pg_load_series_init(&s, 4096);
	pgi_load_csv_reader_init(&r, f, "fuzz.csv");
	/* A rejected VM must not stop the reader: go on until the end. */
	for (int i = 0; i < 100000; i++)
		if (pgi_load_csv_next(&r, &s) == 0)
			break;
	pgi_load_csv_reader_release(&r);
	pg_load_series_release(&s);
	fclose(f);
	return 0;
}
