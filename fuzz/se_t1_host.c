/*
 * Fuzzes the T=1 host role (ISO/IEC 7816-3 clause 11): a fake card whose
 * answers are the fuzz input. With bit 0 of the first byte set, a valid T=1
 * ATR and S(IFS response) come first so the input reaches the block exchange.
 */
#include "payguard/apdu.h"
#include "se_double.h"

#include <stdlib.h>
#include <string.h>

extern const struct pg_link_ops pgi_link_t1_ops;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t prefix[] = {0x3B, 0x80, 0x01, 0x81,	/* ATR: T=1, TCK */
					 0x00, 0xE1, 0x01, 0xFE, 0x1E}; /* S(IFS rsp 254) */
	static uint8_t buf[1 << 16], capdu[400], rapdu[PG_APDU_MAX_R];
	struct pg_link_params p = {.retries = 2};
	struct pg_link *l = NULL;
	size_t n = 0;

	if (size < 1 || size > sizeof(buf) - sizeof(prefix))
		return 0;
	if (data[0] & 1) {
		memcpy(buf, prefix, sizeof(prefix));
		n = sizeof(prefix);
	}
	memcpy(buf + n, data + 1, size - 1);
	n += size - 1;
	if (pgi_link_t1_ops.host_open(&l, sd_script_new(buf, n), NULL, &p) < 0)
		return 0;
	if (pg_link_power_on(l, NULL, NULL) == 0) {
		/* A short command, then one that chains (300 data bytes, case 3E). */
		memcpy(capdu, "\x00\x10\x00\x00\x02\xAA\xBB\x00", 8);
		for (int k = 0; k < 2; k++) {
			size_t rl = sizeof(rapdu), cl = k ? 307 : 8;

			if (k) {
				memcpy(capdu, "\x00\x10\x00\x00\x00\x01\x2C", 7);
				memset(capdu + 7, 0x5A, 300);
			}
			(void)pg_link_transmit(l, capdu, cl, rapdu, &rl);
		}
	}
	pg_link_close(l);
	return 0;
}
