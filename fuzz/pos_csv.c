/*
 * Fuzzes the two CSV row parsers of seed 4's data: OpenCellID cell rows and
 * merchant registry rows. Byte 0 picks which.
 */
#include "payguard/pos.h"

#include <math.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 1) {
		struct pg_cell_rec r;

		if (pg_cells_parse_row((const char *)data + 1, size - 1, &r) == 0 &&
		    (!(fabs(r.lat) <= 90) || !(fabs(r.lon) <= 180)))
			abort();
	} else {
		struct pg_merchant_rec r;

		if (pg_merchants_parse_row((const char *)data + 1, size - 1, &r) == 0 &&
		    (!(fabs(r.lat) <= 90) || r.tid[8] != 0 || r.mid[15] != 0))
			abort();
	}
	return 0;
}
