/*
 * Fuzzes the card runtime's command processing as an arbitrary host would
 * drive it: the input is a sequence of C-APDUs, each prefixed by a 2-byte
 * big-endian length, sent one after another to one card (so channels opened
 * and applets selected by earlier commands shape later ones). Every answer
 * must be a whole R-APDU within the buffer, and the counter must count each.
 */
#include "payguard/buf.h"
#include "payguard/card.h"

#include <stdlib.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t r[PG_APDU_MAX_R];
	static struct pg_card_rt *rt;
	const struct pg_card *card;
	size_t off = 0;
	uint64_t before;

	if (!rt && pg_card_sim_new(&rt, 2, NULL, 0) < 0)
		abort();
	card = pg_card_rt_card(rt);
	card->reset(card->ctx);
	while (off + 2 <= size) {
		size_t n = pg_be16(data + off), rl;

		off += 2;
		if (n > size - off)
			n = size - off;
		/* Vary the response room: a host may offer less than the card wants. */
		rl = (off & 1) ? sizeof(r) : 258;
		before = pg_card_rt_counter(rt);
		if (card->process(card->ctx, data + off, n, r, &rl) == 0) {
			if (rl < 2 || rl > ((off & 1) ? sizeof(r) : 258))
				abort();
			if (pg_card_rt_counter(rt) != before + 1)
				abort();
		}
		if (pg_card_rt_open_channels(rt) < 1 || pg_card_rt_open_channels(rt) > 20)
			abort();
		off += n;
	}
	return 0;
}
