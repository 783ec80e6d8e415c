/*
 * Fuzzes the T=0 host's procedure-byte handling (ISO/IEC 7816-3 10.3.3 and
 * 12.2): after the ATR 3B 00 the fake card answers with the fuzz input; the
 * first byte picks the APDU case the host sends.
 */
#include "payguard/apdu.h"
#include "se_double.h"

#include <stdlib.h>
#include <string.h>

extern const struct pg_link_ops pgi_link_t0_ops;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[1 << 16], capdu[300], rapdu[300];
	struct pg_link *l = NULL;
	size_t n, cl, rl = sizeof(rapdu);

	if (size < 1 || size > sizeof(buf) - 2)
		return 0;
	buf[0] = 0x3B;
	buf[1] = 0x00;
	memcpy(buf + 2, data + 1, size - 1);
	n = size + 1;
	/* Case 1, 2 (Le 4 / 256), 3, 4 on channel data[0] >> 6. */
	memcpy(capdu, "\x00\xCA\x00\x04", 4);
	capdu[0] = (uint8_t)(data[0] >> 6);
	switch (data[0] % 5) {
	case 0:
		cl = 4;
		break;
	case 1:
		capdu[4] = 0x04;
		cl = 5;
		break;
	case 2:
		capdu[4] = 0x00;
		cl = 5;
		break;
	case 3:
		capdu[1] = 0x10;
		capdu[4] = 0x03;
		memcpy(capdu + 5, "\x01\x02\x03", 3);
		cl = 8;
		break;
	default:
		capdu[1] = 0x10;
		capdu[4] = 0xFF;
		memset(capdu + 5, 0x33, 255);
		capdu[260] = 0x00;
		cl = 261;
		break;
	}
	if (pgi_link_t0_ops.host_open(&l, sd_script_new(buf, n), NULL, NULL) < 0)
		return 0;
	(void)pg_link_transmit(l, capdu, cl, rapdu, &rl);
	pg_link_close(l);
	return 0;
}
