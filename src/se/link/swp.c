/*
 * SWP link driver: ETSI TS 102 613 SHDLC (shdlc.c) carrying ETSI TS 102 622
 * HCI (hci.c) with the APDU gate of 102 622 clause 12 (EVT_C-APDU /
 * EVT_R-APDU, EVT_ABORT answered by EVT_ATR). The host role plays the
 * contactless front-end (host controller + terminal host); the card role
 * is the UICC/SE host that owns the APDU gate.
 */
#include "drivers.h"
#include "hci.h"
#include "hcp_port.h"
#include "payguard/buf.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "shdlc.h"

#include <stdlib.h>
#include <string.h>

#define SWP_MAX_CAPDU	  65535u /* MAX_C-APDU_SIZE is a 2-byte registry entry */
#define SWP_MAX_RAPDU	  PG_APDU_MAX_R
#define SWP_DEFAULT_RETRY 10
#define SWP_MAX_WAIT_MS	  1000 /* MAX_WAIT_TIME registry value we announce */
#define SWP_APDU_PIPE	  HCI_PIPE_DYN_FIRST

/* ---------------- host role ---------------- */

struct swp_host {
	struct pg_link base;
	struct hcp_port port; /* stream, HCP messages both ways, frame reads */
	struct shdlc e;
	int retries, window;
	int connected;
	uint8_t apdu_pipe;
	size_t max_capdu;
};

/* What host_request does after one frame (or errors, negative). */
enum req_step {
	REQ_DONE, /* the awaited message is in h->port.msg */
	REQ_MORE, /* look at the message joined, if any, then read on */
	REQ_SKIP, /* read on */
	REQ_FAIL, /* too many errors or frames without progress: give up */
};

/* A read that brought no valid frame (time-out or damaged frame). */
static int
host_on_no_frame(struct swp_host *h, int rc, int *errors)
{
	if (++*errors > h->retries)
		return REQ_FAIL;
	if (rc != PG_ETIMEDOUT)
		return REQ_SKIP; /* the next read times out if nothing else follows */
	/* Timeout: resend what is unacknowledged, else ask for the card's frames. */
	rc = shdlc_unacked(&h->e) ? pgi_shdlc_retransmit(&h->e)
				  : pgi_shdlc_send_s(&h->e, SHDLC_S_REJ);
	return rc < 0 ? rc : REQ_SKIP;
}

/* Applies one frame to the SHDLC endpoint and counts progress (`errors`, `idle`). */
static int
host_on_frame(struct swp_host *h, const struct shdlc_frame *f, int *errors, int *idle)
{
	int r = pgi_shdlc_input(&h->e, f), rc;

	if (r < 0) {
		pg_debug("swp", "bad HCP packet from the card: %s", pg_strerror(r));
		return ++*errors > h->retries ? REQ_FAIL : REQ_SKIP;
	}
	if (r & SHDLC_RX_UA)
		return REQ_SKIP; /* a late answer to a repeated RSET: the card reset before our
				    I-frames */
	if (r & SHDLC_RX_RSET) {
		h->connected = 0;
		return pg_error(PG_ELINK, "swp", "card reset the SHDLC link");
	}
	if (r & (SHDLC_RX_NEW | SHDLC_RX_ACK))
		*errors = *idle = 0;
	else if (++*idle > 16 * (h->retries + 1))
		return REQ_FAIL; /* only frames that move nothing forward: a babbling peer */
	if ((r & SHDLC_RX_GAP) && !h->e.rej_sent) {
		h->e.rej_sent = 1;
		if ((rc = pgi_shdlc_send_s(&h->e, SHDLC_S_REJ)) < 0)
			return rc;
	}
	return REQ_MORE;
}

/* The message just joined: the one awaited, a request for more time, or one to ignore. */
static int
host_on_msg(struct swp_host *h, uint8_t pipe, int type, int instr, int *errors)
{
	const struct hcp_msg *m = &h->port.msg;

	h->port.have_msg = 0;
	if (m->pipe == pipe && m->type == HCP_TYPE_EVT && m->instr == EVT_WTX &&
	    type == HCP_TYPE_EVT) {
		*errors = 0; /* 12.3.2.2: the card needs more time */
		return REQ_SKIP;
	}
	if (m->pipe == pipe && m->type == type && (instr < 0 || m->instr == instr))
		return REQ_DONE;
	pg_debug("swp", "ignoring HCP message type %d instr %02X on pipe %02X", m->type, m->instr,
		 m->pipe);
	return REQ_SKIP;
}

/*
 * Sends one HCP message and runs the link until a message of type `type`
 * (and instruction `instr`, or any when < 0) arrives on `pipe`.
 */
static int
host_request(struct swp_host *h, uint8_t pipe, uint8_t hdr, const uint8_t *data, size_t len,
	     int type, int instr)
{
	int errors = 0, idle = 0, rc;

	h->port.tx.active = 0;
	h->port.have_msg = 0;
	rc = pgi_hcp_tx_start(&h->port.tx, pipe, hdr, data, len);
	if (rc < 0)
		return rc;
	for (;;) {
		struct shdlc_frame f;

		rc = pgi_shdlc_pump(&h->e);
		if (rc < 0)
			return rc;
		/* Keep the card's window open while a long response streams in. */
		if (h->e.unacked_rx >= h->e.window &&
		    (rc = pgi_shdlc_send_s(&h->e, SHDLC_S_RR)) < 0)
			return rc;
		rc = pgi_hcp_port_read_frame(&h->port, &f);
		if (rc == PG_ETIMEDOUT || rc == PG_EFORMAT || rc == PG_ECORRUPT) {
			rc = host_on_no_frame(h, rc, &errors);
		} else if (rc == 0) {
			rc = host_on_frame(h, &f, &errors, &idle);
			if (rc == REQ_MORE && h->port.have_msg)
				rc = host_on_msg(h, pipe, type, instr, &errors);
		}
		if (rc <= 0)
			return rc; /* the answer (REQ_DONE), or an error */
		if (rc == REQ_FAIL)
			break;
	}
	h->connected = 0;
	return pg_error(PG_ELINK, "swp", "no answer from the card after %d attempts", h->retries);
}

static int
host_command(struct swp_host *h, uint8_t pipe, uint8_t cmd, const uint8_t *data, size_t len,
	     const char *what)
{
	int rc = host_request(h, pipe, HCP_HDR(HCP_TYPE_CMD, cmd), data, len, HCP_TYPE_RSP, -1);

	if (rc < 0)
		return rc;
	if (h->port.msg.instr != ANY_OK)
		return pg_error(PG_EPROTO, "swp", "%s on pipe %02X: card answered %02X", what, pipe,
				h->port.msg.instr);
	return 0;
}

/* 102 613 10.8: RSET carries our window; the card answers UA or its own RSET. */
static int
host_link_setup(struct swp_host *h)
{
	uint8_t info[1] = {(uint8_t)h->window};

	for (int attempt = 0; attempt <= h->retries; attempt++) {
		int rc;

		pgi_shdlc_reset(&h->e, h->window);
		pgi_hcp_rx_reset(&h->port.rx);
		h->port.tx.active = 0;
		pg_stream_flush(h->port.s);
		rc = pgi_shdlc_send_u(&h->e, SHDLC_U_RSET, info, sizeof(info));
		if (rc < 0)
			return rc;
		for (;;) {
			struct shdlc_frame f;

			rc = pgi_hcp_port_read_frame(&h->port, &f);
			if (rc == PG_ETIMEDOUT)
				break;
			if (rc == PG_EFORMAT || rc == PG_ECORRUPT)
				continue;
			if (rc < 0)
				return rc;
			if (f.kind != SHDLC_U)
				continue;
			if (f.type == SHDLC_U_UA)
				return 0;
			/* The card proposes a smaller window: adopt it and confirm. */
			{
				int w = f.len >= 1 ? f.info[0] : SHDLC_MAX_WINDOW;

				if (w > h->window)
					return pg_error(PG_EPROTO, "swp",
							"card proposes window %d > ours %d", w,
							h->window);
				pgi_shdlc_reset(&h->e, w);
				return pgi_shdlc_send_u(&h->e, SHDLC_U_UA, NULL, 0);
			}
		}
	}
	return pg_error(PG_ELINK, "swp", "no UA to RSET after %d attempts", h->retries + 1);
}

static int
swp_power_on(struct pg_link *l, uint8_t *atr, size_t *atrlen)
{
	struct swp_host *h = (struct swp_host *)l;
	uint8_t p[5];
	int rc;

	h->connected = 0;
	rc = pg_stream_event(h->port.s, PG_PKT_RESET);
	if (rc < 0)
		return rc;
	rc = host_link_setup(h);
	if (rc < 0)
		return rc;
	rc = host_command(h, HCI_PIPE_ADMIN, ANY_OPEN_PIPE, NULL, 0, "ANY_OPEN_PIPE");
	if (rc < 0)
		return rc;
	/* Pipe from our APDU application gate to the card's APDU gate. */
	p[0] = HCI_HOST_TERMINAL;
	p[1] = HCI_GATE_APDU_APP;
	p[2] = HCI_HOST_UICC;
	p[3] = HCI_GATE_APDU;
	p[4] = SWP_APDU_PIPE;
	rc = host_command(h, HCI_PIPE_ADMIN, ADM_NOTIFY_PIPE_CREATED, p, 5,
			  "ADM_NOTIFY_PIPE_CREATED");
	if (rc < 0)
		return rc;
	h->apdu_pipe = SWP_APDU_PIPE;
	rc = host_command(h, h->apdu_pipe, ANY_OPEN_PIPE, NULL, 0, "ANY_OPEN_PIPE");
	if (rc < 0)
		return rc;
	p[0] = APDU_REG_MAX_C_APDU_SIZE;
	rc = host_command(h, h->apdu_pipe, ANY_GET_PARAMETER, p, 1, "ANY_GET_PARAMETER");
	if (rc < 0)
		return rc;
	if (h->port.msg.len != 2 || pg_be16(h->port.msg.data) < 5)
		return pg_error(PG_EPROTO, "swp", "bad MAX_C-APDU_SIZE (%zu bytes)",
				h->port.msg.len);
	h->max_capdu = pg_be16(h->port.msg.data);
	/* 12.2.2.2: EVT_ABORT resets the APDU gate; the card answers EVT_ATR. */
	rc = host_request(h, h->apdu_pipe, HCP_HDR(HCP_TYPE_EVT, EVT_ABORT), NULL, 0, HCP_TYPE_EVT,
			  EVT_ATR);
	if (rc < 0)
		return rc;
	if (h->port.msg.len > *atrlen || h->port.msg.len > PG_ATR_MAX)
		return pg_error(PG_EPROTO, "swp", "EVT_ATR of %zu bytes", h->port.msg.len);
	memcpy(atr, h->port.msg.data, h->port.msg.len);
	*atrlen = h->port.msg.len;
	h->connected = 1;
	return 0;
}

static int
swp_transmit(struct pg_link *l, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t *rlen)
{
	struct swp_host *h = (struct swp_host *)l;
	int rc;

	if (!h->connected)
		return pg_error(PG_ESTATE, "swp", "link not up: power on first");
	if (clen > h->max_capdu)
		return pg_error(PG_ETOOBIG, "swp", "C-APDU of %zu bytes, card takes %zu", clen,
				h->max_capdu);
	rc = host_request(h, h->apdu_pipe, HCP_HDR(HCP_TYPE_EVT, EVT_C_APDU), capdu, clen,
			  HCP_TYPE_EVT, EVT_R_APDU);
	if (rc < 0)
		return rc;
	if (h->port.msg.len < 2)
		return pg_error(PG_EPROTO, "swp", "EVT_R-APDU of %zu bytes", h->port.msg.len);
	if (h->port.msg.len > *rlen)
		return pg_error(PG_ETOOBIG, "swp", "R-APDU of %zu bytes, room for %zu",
				h->port.msg.len, *rlen);
	memcpy(rapdu, h->port.msg.data, h->port.msg.len);
	*rlen = h->port.msg.len;
	return 0;
}

static void
swp_host_close(struct pg_link *l)
{
	struct swp_host *h = (struct swp_host *)l;

	if (!h)
		return;
	pg_stream_free(h->port.s);
	free(h->port.rx.buf);
	free(h);
}

static int
swp_host_open(struct pg_link **out, struct pg_stream *s, const char *addr,
	      const struct pg_link_params *p)
{
	struct swp_host *h;

	(void)addr;
	*out = NULL;
	if (!s)
		return pg_error(PG_EINVAL, "swp", "the SWP host needs a stream");
	h = calloc(1, sizeof(*h));
	if (!h || !(h->port.rx.buf = malloc(1 + SWP_MAX_RAPDU))) {
		free(h);
		pg_stream_free(s);
		return PG_ENOMEM;
	}
	h->base.ops = &pgi_link_swp_ops;
	h->port.s = s;
	h->port.rx.max = 1 + SWP_MAX_RAPDU;
	h->port.tx.mtu = SHDLC_MAX_INFO;
	h->port.timeout_ms = p && p->timeout_ms ? p->timeout_ms : 1000;
	h->retries = p && p->retries ? p->retries : SWP_DEFAULT_RETRY;
	h->window = p && p->window ? p->window : SHDLC_MAX_WINDOW;
	if (h->window < 1 || h->window > SHDLC_MAX_WINDOW) {
		swp_host_close(&h->base);
		return pg_error(PG_EINVAL, "swp", "SHDLC window %d (allowed 1..4)",
				p ? p->window : 0);
	}
	h->max_capdu = SWP_MAX_CAPDU;
	pgi_hcp_port_bind(&h->port, &h->e);
	*out = &h->base;
	return 0;
}

/* ---------------- card role ---------------- */

struct swp_card {
	struct pg_link_card base;
	struct pg_card card;
	struct shdlc e;
	struct hcp_tx tx;
	struct hcp_rx rx;
	int max_window;
	int linked;
	int admin_open, apdu_open;
	uint8_t apdu_pipe;
	uint8_t rsp[4];
	uint8_t atr[PG_ATR_MAX];
	uint8_t *rapdu;
};

static int
card_next(void *ctx, uint8_t *info)
{
	return pgi_hcp_tx_next(&((struct swp_card *)ctx)->tx, info);
}

static int
card_reply(struct swp_card *c, uint8_t pipe, uint8_t hdr, const uint8_t *d, size_t n)
{
	int rc = pgi_hcp_tx_start(&c->tx, pipe, hdr, d, n);

	if (rc < 0)
		pg_debug("swp", "card: new message while the last one is still queued");
	return rc;
}

static int
card_rsp(struct swp_card *c, uint8_t pipe, uint8_t code, size_t extra)
{
	return card_reply(c, pipe, HCP_HDR(HCP_TYPE_RSP, code), c->rsp + 1, extra);
}

static int
card_admin(struct swp_card *c, const struct hcp_msg *m)
{
	if (m->type != HCP_TYPE_CMD)
		return 0;
	if (!c->admin_open && m->instr != ANY_OPEN_PIPE)
		return card_rsp(c, m->pipe, ANY_E_PIPE_NOT_OPENED, 0);
	switch (m->instr) {
	case ANY_OPEN_PIPE:
		c->admin_open = 1;
		return card_rsp(c, m->pipe, ANY_OK, 0);
	case ANY_CLOSE_PIPE:
		c->admin_open = 0;
		return card_rsp(c, m->pipe, ANY_OK, 0);
	case ADM_NOTIFY_PIPE_CREATED:
		/* source host, source gate, destination host, destination gate, pipe id */
		if (m->len != 5)
			return card_rsp(c, m->pipe, ANY_E_CMD_PAR_UNKNOWN, 0);
		if (m->data[3] != HCI_GATE_APDU || m->data[4] < HCI_PIPE_DYN_FIRST ||
		    m->data[4] > HCI_PIPE_DYN_LAST)
			return card_rsp(c, m->pipe, ANY_E_NOK, 0);
		c->apdu_pipe = m->data[4];
		c->apdu_open = 0;
		return card_rsp(c, m->pipe, ANY_OK, 0);
	case ADM_NOTIFY_PIPE_DELETED:
		if (m->len != 1)
			return card_rsp(c, m->pipe, ANY_E_CMD_PAR_UNKNOWN, 0);
		if (m->data[0] == c->apdu_pipe)
			c->apdu_pipe = 0;
		return card_rsp(c, m->pipe, ANY_OK, 0);
	case ADM_NOTIFY_ALL_PIPE_CLEARED:
		c->apdu_pipe = 0;
		return card_rsp(c, m->pipe, ANY_OK, 0);
	default:
		return card_rsp(c, m->pipe, ANY_E_CMD_NOT_SUPPORTED, 0);
	}
}

static int
card_apdu_gate(struct swp_card *c, const struct hcp_msg *m)
{
	if (m->type == HCP_TYPE_CMD) {
		if (!c->apdu_open && m->instr != ANY_OPEN_PIPE)
			return card_rsp(c, m->pipe, ANY_E_PIPE_NOT_OPENED, 0);
		switch (m->instr) {
		case ANY_OPEN_PIPE:
			c->apdu_open = 1;
			return card_rsp(c, m->pipe, ANY_OK, 0);
		case ANY_CLOSE_PIPE:
			c->apdu_open = 0;
			return card_rsp(c, m->pipe, ANY_OK, 0);
		case ANY_GET_PARAMETER:
			if (m->len != 1)
				return card_rsp(c, m->pipe, ANY_E_CMD_PAR_UNKNOWN, 0);
			if (m->data[0] == APDU_REG_MAX_C_APDU_SIZE) {
				pg_put_be16(c->rsp + 1, (uint16_t)SWP_MAX_CAPDU);
				return card_rsp(c, m->pipe, ANY_OK, 2);
			}
			if (m->data[0] == APDU_REG_MAX_WAIT_TIME) {
				pg_put_be16(c->rsp + 1, SWP_MAX_WAIT_MS);
				return card_rsp(c, m->pipe, ANY_OK, 2);
			}
			return card_rsp(c, m->pipe, ANY_E_REG_PAR_UNKNOWN, 0);
		case ANY_SET_PARAMETER:
			return card_rsp(c, m->pipe, ANY_E_REG_ACCESS_DENIED, 0);
		default:
			return card_rsp(c, m->pipe, ANY_E_CMD_NOT_SUPPORTED, 0);
		}
	}
	if (m->type != HCP_TYPE_EVT || !c->apdu_open)
		return 0; /* events cannot be refused; a closed pipe drops them */
	switch (m->instr) {
	case EVT_C_APDU: {
		size_t rlen = SWP_MAX_RAPDU;
		int rc;

		if (m->len < 4)
			return pg_error(PG_EPROTO, "swp", "EVT_C-APDU of %zu bytes", m->len);
		rc = c->card.process(c->card.ctx, m->data, m->len, c->rapdu, &rlen);
		if (rc < 0)
			return rc; /* card mute */
		c->base.apdus++;
		return card_reply(c, m->pipe, HCP_HDR(HCP_TYPE_EVT, EVT_R_APDU), c->rapdu, rlen);
	}
	case EVT_ABORT: {
		size_t alen = PG_ATR_MAX;
		int rc;

		if (c->card.reset)
			c->card.reset(c->card.ctx);
		rc = c->card.atr(c->card.ctx, c->atr, &alen);
		if (rc < 0)
			return rc;
		return card_reply(c, m->pipe, HCP_HDR(HCP_TYPE_EVT, EVT_ATR), c->atr, alen);
	}
	default:
		return 0; /* EVT_END_OF_APDU_TRANSACTION and others: nothing to answer */
	}
}

static int
card_deliver(void *ctx, const uint8_t *info, size_t n)
{
	struct swp_card *c = ctx;
	struct hcp_msg m;
	int rc = pgi_hcp_rx_feed(&c->rx, info, n, &m);

	if (rc <= 0)
		return rc;
	if (m.pipe == HCI_PIPE_ADMIN)
		return card_admin(c, &m);
	if (c->apdu_pipe && m.pipe == c->apdu_pipe)
		return card_apdu_gate(c, &m);
	if (m.type == HCP_TYPE_CMD)
		return card_rsp(c, m.pipe, ANY_E_NOK, 0);
	return 0;
}

static void
card_link_reset(struct swp_card *c, int window)
{
	pgi_shdlc_reset(&c->e, window);
	pgi_hcp_rx_reset(&c->rx);
	c->tx.active = 0;
}

static int
swp_card_packet(struct pg_link_card *lc, int type, const uint8_t *data, size_t n,
		struct pg_stream *out)
{
	struct swp_card *c = (struct swp_card *)lc;
	struct shdlc_frame f;
	int r, rc;

	c->e.out = out;
	if (type != PG_PKT_DATA) {
		/* Power cycle: the link, the pipes and the application restart. */
		card_link_reset(c, c->max_window);
		c->linked = 0;
		c->admin_open = c->apdu_open = 0;
		c->apdu_pipe = 0;
		if (c->card.reset)
			c->card.reset(c->card.ctx);
		return 0;
	}
	if (pgi_shdlc_decode(&f, data, n) < 0)
		return 0; /* 102 613: frames in error are discarded; the sender times out */
	if (f.kind == SHDLC_U) {
		if (f.type == SHDLC_U_UA) {
			card_link_reset(c, c->max_window);
			c->linked = 1;
			return 0;
		}
		{
			int w = f.len >= 1 ? f.info[0] : SHDLC_MAX_WINDOW;
			int srej = f.len >= 2 && (f.info[1] & SHDLC_CAP_SREJ);

			if (w > c->max_window || srej) {
				uint8_t mine[1] = {(uint8_t)c->max_window};

				c->linked = 0;
				return pgi_shdlc_send_u(&c->e, SHDLC_U_RSET, mine, 1);
			}
			card_link_reset(c, w);
			c->linked = 1;
			return pgi_shdlc_send_u(&c->e, SHDLC_U_UA, NULL, 0);
		}
	}
	if (!c->linked)
		return 0;
	r = pgi_shdlc_input(&c->e, &f);
	if (r < 0)
		pg_debug("swp", "card: %s", pg_strerror(r));
	else if (r & SHDLC_RX_DUP) {
		/* The host timed out: our frames were probably lost too. */
		rc = shdlc_unacked(&c->e) ? pgi_shdlc_retransmit(&c->e)
					  : pgi_shdlc_send_s(&c->e, SHDLC_S_RR);
		if (rc < 0)
			return rc;
	} else if ((r & SHDLC_RX_GAP) && !c->e.rej_sent) {
		c->e.rej_sent = 1;
		rc = pgi_shdlc_send_s(&c->e, SHDLC_S_REJ);
		if (rc < 0)
			return rc;
	}
	rc = pgi_shdlc_pump(&c->e);
	if (rc < 0)
		return rc;
	if (c->e.unacked_rx >= c->e.window)
		return pgi_shdlc_send_s(&c->e, SHDLC_S_RR);
	return 0;
}

static void
swp_card_close(struct pg_link_card *lc)
{
	struct swp_card *c = (struct swp_card *)lc;

	if (!c)
		return;
	free(c->rx.buf);
	free(c->rapdu);
	free(c);
}

static int
swp_card_open(struct pg_link_card **out, const struct pg_card *card, const struct pg_link_params *p)
{
	struct swp_card *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c || !(c->rx.buf = malloc(1 + SWP_MAX_CAPDU)) || !(c->rapdu = malloc(SWP_MAX_RAPDU))) {
		swp_card_close(c ? &c->base : NULL);
		return PG_ENOMEM;
	}
	c->base.ops = &pgi_link_swp_ops;
	c->card = *card;
	c->rx.max = 1 + SWP_MAX_CAPDU;
	c->tx.mtu = SHDLC_MAX_INFO;
	c->max_window = p && p->window ? p->window : SHDLC_MAX_WINDOW;
	if (c->max_window < 1 || c->max_window > SHDLC_MAX_WINDOW) {
		swp_card_close(&c->base);
		return pg_error(PG_EINVAL, "swp", "SHDLC window %d (allowed 1..4)", p->window);
	}
	c->e.next = card_next;
	c->e.deliver = card_deliver;
	c->e.ctx = c;
	pgi_shdlc_reset(&c->e, c->max_window);
	*out = &c->base;
	return 0;
}

const struct pg_link_ops pgi_link_swp_ops = {
    .name = "swp",
    .type = PG_LINK_SWP,
    .max_capdu = SWP_MAX_CAPDU,
    .max_rapdu = SWP_MAX_RAPDU,
    .host_open = swp_host_open,
    .power_on = swp_power_on,
    .transmit = swp_transmit,
    .host_close = swp_host_close,
    .card_open = swp_card_open,
    .card_packet = swp_card_packet,
    .card_close = swp_card_close,
};
