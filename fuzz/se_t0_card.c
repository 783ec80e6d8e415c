/*
 * Fuzzes the T=0 card role (ISO/IEC 7816-3 clause 10): headers, data bytes
 * and GET RESPONSE / re-issue state, fed as packets [len][bytes] (len FF =
 * reset) as a host would send them.
 */
#include "se_double.h"

extern const struct pg_link_ops pgi_link_t0_ops;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_link_card *c = NULL;

	if (pgi_link_t0_ops.card_open(&c, &sd_echo_card, NULL) < 0)
		return 0;
	sd_feed_card_role(&pgi_link_t0_ops, c, data, size, SD_LEN8);
	pg_link_card_close(c);
	return 0;
}
