/*
 * Fuzzes the T=1 card role's block parser and state machine (ISO/IEC 7816-3
 * clause 11): the input is a series of packets [len][bytes] (len FF = a
 * reset), each handed to the card role as one frame from the host.
 */
#include "se_t01_fake.h"

#include <stdlib.h>

extern const struct pg_link_ops pg_link_t1_ops;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_card card = {.process = echo_process};
	struct pg_link_params p = {0};
	struct pg_link_card *c = NULL;
	struct pg_stream *sink = fake_stream(NULL, 0);
	size_t i = 1;

	if (size < 1)
		goto out;
	/* First byte: epilogue and IFSC. */
	p.crc = data[0] & 1;
	p.ifsc = (uint16_t)(data[0] & 0x80 ? 254 : 32);
	if (pg_link_t1_ops.card_open(&c, &card, &p) < 0)
		goto out;
	while (i < size) {
		size_t n = data[i++];

		if (n == 0xFF) {
			pg_link_t1_ops.card_packet(c, PG_PKT_RESET, NULL, 0, sink);
			continue;
		}
		if (n > size - i)
			n = size - i;
		pg_link_t1_ops.card_packet(c, PG_PKT_DATA, data + i, n, sink);
		i += n;
	}
	pg_link_card_close(c);
out:
	pg_stream_free(sink);
	return 0;
}
