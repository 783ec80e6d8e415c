/*
 * Fuzzes the T=1 card role's block parser and state machine (ISO/IEC 7816-3
 * clause 11): the input is a series of packets [len][bytes] (len FF = a
 * reset), each handed to the card role as one frame from the host.
 */
#include "se_double.h"

extern const struct pg_link_ops pgi_link_t1_ops;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_link_params p = {0};
	struct pg_link_card *c = NULL;

	if (size < 1)
		return 0;
	/* First byte: epilogue and IFSC. */
	p.crc = data[0] & 1;
	p.ifsc = (uint16_t)(data[0] & 0x80 ? 254 : 32);
	if (pgi_link_t1_ops.card_open(&c, &sd_echo_card, &p) < 0)
		return 0;
	sd_feed_card_role(&pgi_link_t1_ops, c, data + 1, size - 1, SD_LEN8);
	pg_link_card_close(c);
	return 0;
}
