/*
 * Fuzzes ETSI TS 102 622 HCP reassembly with packets cut from the input
 * ([len:1][bytes]...), and checks that fragmenting any message and joining
 * it again gives the message back.
 */
#include "payguard/error.h"
#include "payguard/log.h"
#include "se/link/hci.h"
#include "se/link/shdlc.h"

#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[512], buf2[2048];
	struct hcp_rx r = {.buf = buf, .max = sizeof(buf)};
	struct hcp_msg m;
	size_t o = 0;

	pg_log_set_level(PG_LOG_ERROR);
	while (o < size) {
		size_t len = data[o++];

		if (len > size - o)
			len = size - o;
		if (pgi_hcp_rx_feed(&r, data + o, len, &m) == 1 &&
		    (m.len > sizeof(buf) || m.type > 3))
			abort();
		o += len;
	}
	/* Round trip of the whole input as one message. */
	if (size >= 1 && size <= 1500) {
		struct hcp_tx t = {.mtu = SHDLC_MAX_INFO};
		struct hcp_rx r2 = {.buf = buf2, .max = sizeof(buf2)};
		uint8_t pkt[SHDLC_MAX_INFO];
		int n, done = 0;

		pgi_hcp_tx_start(&t, data[0], data[0], data + 1, size - 1);
		while ((n = pgi_hcp_tx_next(&t, pkt)) > 0) {
			int rc = pgi_hcp_rx_feed(&r2, pkt, (size_t)n, &m);

			if (rc < 0 || done)
				abort();
			done = rc;
		}
		if (!done || m.len != size - 1 || m.pipe != (data[0] & 0x7F) ||
		    m.instr != (data[0] & 0x3F) || (size > 1 && memcmp(m.data, data + 1, size - 1)))
			abort();
	}
	return 0;
}
