/*
 * The table of link drivers and what every driver shares: lookup, counting,
 * closing, and wiring a host role to a card role in process.
 */
#include "drivers.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <string.h>

/* Order: contact protocols, contactless/embedded, USB, host stacks. */
const struct pg_link_ops *const pg_link_drivers[] = {
    &pgi_link_t0_ops,	&pgi_link_t1_ops,   &pgi_link_swp_ops,
    &pgi_link_spi_ops,	&pgi_link_i2c_ops,  &pgi_link_ccid_ops,
    &pgi_link_pcsc_ops, &pgi_link_vpcd_ops, NULL,
};

const struct pg_link_ops *
pg_link_find(const char *name)
{
	for (size_t i = 0; i < PG_LINK_COUNT; i++) {
		const struct pg_link_ops *o = pg_link_drivers[i];

		if (o && name && strcmp(o->name, name) == 0)
			return o;
	}
	return NULL;
}

int
pg_link_transmit(struct pg_link *l, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t *rlen)
{
	int rc;

	if (clen < 4 || clen > l->ops->max_capdu)
		return pg_error(PG_EINVAL, "link", "%s: C-APDU of %zu bytes (allowed 4..%zu)",
				l->ops->name, clen, l->ops->max_capdu);
	rc = l->ops->transmit(l, capdu, clen, rapdu, rlen);
	if (rc < 0)
		return rc;
	l->apdus++;
	l->bytes_out += clen;
	l->bytes_in += *rlen;
	return 0;
}

void
pg_link_close(struct pg_link *l)
{
	if (l)
		l->ops->host_close(l);
}

void
pg_link_card_close(struct pg_link_card *c)
{
	if (c)
		c->ops->card_close(c);
}

int
pg_link_card_packet(void *ctx, int type, const uint8_t *p, size_t n, struct pg_stream *out)
{
	struct pg_link_card *c = ctx;

	return c->ops->card_packet(c, type, p, n, out);
}

static void
card_free(void *ctx)
{
	pg_link_card_close(ctx);
}

int
pg_link_open_memory(struct pg_link **out, const struct pg_link_ops *ops, const struct pg_card *card,
		    const struct pg_link_params *p)
{
	struct pg_link_card *c = NULL;
	struct pg_stream *s = NULL;
	int rc;

	*out = NULL;
	if (!ops || !ops->card_open || !ops->host_open)
		return pg_error(PG_ENOTSUP, "link", "%s has no in-process card and host roles",
				ops ? ops->name : "?");
	rc = ops->card_open(&c, card, p);
	if (rc < 0)
		return rc;
	rc = pg_stream_memory_pair(&s, pg_link_card_packet, c, card_free);
	if (rc < 0) {
		pg_link_card_close(c);
		return rc;
	}
	/* From here the stream owns the card role, and the link owns the stream. */
	return ops->host_open(out, s, NULL, p);
}
