/*
 * The host controller's end of HCP (ETSI TS 102 622) over SHDLC (TS 102 613)
 * on a packet stream: see hcp_port.h.
 */
#include "hcp_port.h"

#include "payguard/error.h"

static int
port_next(void *ctx, uint8_t *info)
{
	return pgi_hcp_tx_next(&((struct hcp_port *)ctx)->tx, info);
}

static int
port_deliver(void *ctx, const uint8_t *info, size_t n)
{
	struct hcp_port *p = ctx;
	int rc = pgi_hcp_rx_feed(&p->rx, info, n, &p->msg);

	if (rc > 0)
		p->have_msg = 1;
	return rc < 0 ? rc : 0;
}

void
pgi_hcp_port_bind(struct hcp_port *p, struct shdlc *e)
{
	e->out = p->s;
	e->next = port_next;
	e->deliver = port_deliver;
	e->ctx = p;
}

int
pgi_hcp_port_read_frame(struct hcp_port *p, struct shdlc_frame *f)
{
	int rc = pg_stream_read(p->s, p->frame, 1, p->timeout_ms);
	size_t len;

	if (rc < 0)
		return rc;
	len = p->frame[0];
	if (len < SHDLC_MIN_LEN || len > SHDLC_MAX_FRAME - 1) {
		pg_stream_flush(p->s);
		return PG_EFORMAT;
	}
	rc = pg_stream_read_full(p->s, p->frame + 1, len, p->timeout_ms);
	if (rc == PG_ETIMEDOUT) {
		/* A length byte hit by noise: resynchronise on frame boundaries. */
		pg_stream_flush(p->s);
		return PG_EFORMAT;
	}
	if (rc < 0)
		return rc;
	rc = pgi_shdlc_decode(f, p->frame, len + 1);
	if (rc < 0)
		pg_stream_flush(p->s);
	return rc;
}
