/*
 * Fuzzes the ISO 8583 field-definition file reader (seed 4 dialects), then
 * decodes a fixed message with whatever dialect came out.
 */
#include "payguard/pos.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pg_iso_dialect d;
	static struct pg_iso_msg m;
	static const uint8_t msg[] = "0200F23C46C1A8E0910000000000000020164761739001010119";

	if (pg_iso_dialect_parse(&d, (const char *)data, size) == 0)
		pg_iso_unpack(&d, msg, sizeof(msg) - 1, &m);
	return 0;
}
