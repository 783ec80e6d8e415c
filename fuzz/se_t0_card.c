/*
 * Fuzzes the T=0 card role (ISO/IEC 7816-3 clause 10): headers, data bytes
 * and GET RESPONSE / re-issue state, fed as packets [len][bytes] (len FF =
 * reset) as a host would send them.
 */
#include "se_t01_fake.h"

#include <stdlib.h>

extern const struct pg_link_ops pg_link_t0_ops;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_card card = {.process = echo_process};
	struct pg_link_card *c = NULL;
	struct pg_stream *sink = fake_stream(NULL, 0);
	size_t i = 0;

	if (pg_link_t0_ops.card_open(&c, &card, NULL) < 0)
		goto out;
	while (i < size) {
		size_t n = data[i++];

		if (n == 0xFF) {
			pg_link_t0_ops.card_packet(c, PG_PKT_RESET, NULL, 0, sink);
			continue;
		}
		if (n > size - i)
			n = size - i;
		pg_link_t0_ops.card_packet(c, PG_PKT_DATA, data + i, n, sink);
		i += n;
	}
	pg_link_card_close(c);
out:
	pg_stream_free(sink);
	return 0;
}
