/*
 * Fuzzes the vpcd card driver as vpcd (inside pcscd) drives it: the input is
 * the byte stream vpcd sends ([length:2 BE][payload] messages), fed in
 * irregular chunks to the reassembler; each whole message goes to the vpcd
 * card role over the simulated SE, whose answers must be well-formed.
 */
#include "payguard/card.h"
#include "payguard/link.h"
#include "se/link/vpcd_msg.h"

#include <stdlib.h>

/* A stream that checks and drops what the card sends back. */
static int
sink_write(struct pg_stream *s, int type, const uint8_t *p, size_t n)
{
	(void)s, (void)p;
	if (type == PG_PKT_DATA && (n == 0 || n > 65535))
		abort(); /* vpcd cannot frame it */
	return 0;
}
static int
sink_read(struct pg_stream *s, uint8_t *p, size_t n, int t)
{
	(void)s, (void)p, (void)n, (void)t;
	return -1;
}
static void
sink_destroy(struct pg_stream *s)
{
	(void)s;
}
static const struct pg_stream_ops sink_ops = {sink_write, sink_read, NULL, sink_destroy};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pg_vpcd_rx rx;
	static struct pg_card_rt *rt;
	struct pg_stream sink = {&sink_ops};
	const struct pg_link_ops *ops = pg_link_find("vpcd");
	const struct pg_card *card;
	struct pg_link_card *lc = NULL;
	size_t off = 0, chunk = 1;

	if (!ops || (!rt && pg_card_sim_new(&rt, 1, NULL, 0) < 0))
		abort();
	card = pg_card_rt_card(rt);
	card->reset(card->ctx); /* each input starts from a freshly reset card */
	if (ops->card_open(&lc, card, NULL) < 0)
		abort();
	pgi_vpcd_rx_init(&rx);
	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk;

		while (n) {
			int done;
			size_t mlen;
			int used = pgi_vpcd_rx_feed(&rx, data + off, n, &done, &mlen);

			if (used < 0) {
				/* A bad length ends the session, as pg_vpcd_serve() does. */
				pg_link_card_close(lc);
				return 0;
			}
			if (used == 0 || (size_t)used > n ||
			    (done && (mlen == 0 || mlen > PG_VPCD_MAX_MSG)))
				abort();
			off += (size_t)used;
			n -= (size_t)used;
			if (done)
				(void)ops->card_packet(lc, PG_PKT_DATA, rx.msg, mlen, &sink);
		}
		chunk = chunk * 3 % 1000 + 1; /* irregular reads, as TCP delivers them */
	}
	pg_link_card_close(lc);
	return 0;
}
