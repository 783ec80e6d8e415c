/*
 * ETSI TS 102 622 HCP: cutting messages into packets that fit one SHDLC
 * information field (CB = 0 on all but the last) and joining them again,
 * with a hard maximum on the joined size (the peer's bytes are untrusted).
 */
#include "hci.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <string.h>

int
pgi_hcp_tx_start(struct hcp_tx *t, uint8_t pipe, uint8_t hdr, const uint8_t *data, size_t len)
{
	if (t->active)
		return PG_EBUSY;
	t->data = data;
	t->len = len;
	t->off = 0;
	t->pipe = pipe & HCP_PIPE_MASK;
	t->hdr = hdr;
	t->first = 1;
	t->active = 1;
	return 0;
}

int
pgi_hcp_tx_next(struct hcp_tx *t, uint8_t *pkt)
{
	size_t room, chunk, n = 1;

	if (!t->active)
		return 0;
	room = t->mtu - 1;
	if (t->first) {
		pkt[n++] = t->hdr;
		room--;
		t->first = 0;
	}
	chunk = t->len - t->off < room ? t->len - t->off : room;
	if (chunk)
		memcpy(pkt + n, t->data + t->off, chunk);
	n += chunk;
	t->off += chunk;
	pkt[0] = t->pipe;
	if (t->off == t->len) {
		pkt[0] |= HCP_CB;
		t->active = 0;
	}
	return (int)n;
}

void
pgi_hcp_rx_reset(struct hcp_rx *r)
{
	r->len = 0;
	r->active = 0;
}

int
pgi_hcp_rx_feed(struct hcp_rx *r, const uint8_t *pkt, size_t n, struct hcp_msg *m)
{
	uint8_t pipe;

	if (n < 1)
		return pg_error(PG_EFORMAT, "hcp", "empty HCP packet");
	pipe = pkt[0] & HCP_PIPE_MASK;
	if (!r->active) {
		if (n < 2) {
			return pg_error(PG_EFORMAT, "hcp",
					"first HCP packet on pipe %02X has no message header",
					pipe);
		}
		r->active = 1;
		r->pipe = pipe;
		r->len = 0;
	} else if (pipe != r->pipe) {
		/* Fragments of one message are sent back to back (102 622 5.1). */
		pgi_hcp_rx_reset(r);
		return pg_error(PG_EFORMAT, "hcp",
				"fragment for pipe %02X inside a message on %02X", pipe, r->pipe);
	}
	if (n - 1 > r->max - r->len) {
		pgi_hcp_rx_reset(r);
		return pg_error(PG_ETOOBIG, "hcp", "HCP message longer than %zu bytes", r->max);
	}
	memcpy(r->buf + r->len, pkt + 1, n - 1);
	r->len += n - 1;
	if (!(pkt[0] & HCP_CB))
		return 0;
	r->active = 0;
	m->pipe = pipe;
	m->type = r->buf[0] >> 6;
	m->instr = r->buf[0] & 0x3F;
	m->data = r->buf + 1;
	m->len = r->len - 1;
	return 1;
}
