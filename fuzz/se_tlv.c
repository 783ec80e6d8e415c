/* Fuzzes the BER-TLV parser: validate, search, and walk every object. */
#include "payguard/tlv.h"

#include <stdlib.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_tlv t;
	const uint8_t *p = data;
	size_t n = size;

	(void)pg_tlv_validate(data, size);
	(void)pg_tlv_find(&t, data, size, 0x9F7F, 1);
	while (n) {
		int r = pg_tlv_next(&t, p, n);

		if (r <= 0)
			break;
		if ((size_t)r > n || t.val + t.len > data + size)
			abort();
		p += r;
		n -= (size_t)r;
	}
	return 0;
}
