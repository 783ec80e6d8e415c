/* Fuzzes the ETSI TS 102 613 SHDLC frame decoder: a decoded frame re-encodes to the same bytes. */
#include "se/link/shdlc.h"

#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct shdlc_frame f;
	uint8_t out[SHDLC_MAX_FRAME];
	char desc[64];

	if (pgi_shdlc_decode(&f, data, size) == 0) {
		size_t n = pgi_shdlc_encode(out, f.ctrl, f.info, f.len);

		if (n != size || memcmp(out, data, n) != 0)
			abort();
		(void)pgi_shdlc_describe(&f, desc, sizeof(desc));
	}
	return 0;
}
