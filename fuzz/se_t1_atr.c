/*
 * Fuzzes the ISO/IEC 7816-3 clause 8 ATR parser shared by the link drivers:
 * length discovery must agree with the strict parse, and a T=1 ATR rebuilt
 * from what was parsed must parse to the same T=1 parameters. The full check
 * of a given ATR (pgi_atr_check: `se sim --atr`, card configurations) runs on
 * every input and accepts only what the strict parse accepts.
 */
#include "se/link/atr.h"

#include "payguard/link.h"

#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_atr a, b;
	uint8_t out[PG_ATR_MAX];
	int len, n;

	len = pgi_atr_length(data, size);
	if (pgi_atr_parse(&a, data, size) != 0) {
		if (pgi_atr_check(data, size) == 0)
			abort();
		return 0;
	}
	(void)pgi_atr_hist_check(a.hist, a.hist_len);
	(void)pgi_atr_check(data, size);
	/* A parsed ATR is exactly as long as the length discovery says. */
	if (len != (int)size || a.len != size || a.hist_len > 15)
		abort();
	if (a.ifsc < 1 || a.ifsc > 254)
		abort();
	n = pgi_atr_build(out, sizeof(out), 1, a.ifsc, a.bwi, a.cwi, a.crc, a.hist, a.hist_len);
	if (n > 0) {
		if (pgi_atr_parse(&b, out, (size_t)n) != 0 || b.ifsc != a.ifsc || b.crc != a.crc ||
		    b.hist_len != a.hist_len || memcmp(b.hist, a.hist, a.hist_len) != 0)
			abort();
	}
	return 0;
}
