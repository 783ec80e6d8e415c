/*
 * The NFC switch's slave port (issue 8): toward the NFC controller the switch
 * is one SWP secure element — ETSI TS 102 613 SHDLC (src/se/link/shdlc.c)
 * carrying ETSI TS 102 622 HCP (src/se/link/hci.c) — that owns the card
 * application gates type A (23) and B (21) at the end of the controller's
 * card RF gate pipes: EVT_FIELD_ON/OFF, EVT_CARD_ACTIVATED/DEACTIVATED and
 * EVT_SEND_DATA carrying the reader's C-APDUs in and the R-APDUs back.
 * Also the simulated NFC controller (host controller role) used in tests and
 * in the demo.
 */
#include "hci.h"
#include "hcp_port.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/nfcswitch.h"
#include "shdlc.h"

#include <stdlib.h>
#include <string.h>

/* Card RF gates (102 622 clause 13.2) and their events. */
#define GATE_CARD_RF_B	     0x21
#define GATE_CARD_RF_A	     0x23
#define EVT_SEND_DATA	     0x10
#define EVT_FIELD_ON	     0x11
#define EVT_CARD_DEACTIVATED 0x12
#define EVT_CARD_ACTIVATED   0x13
#define EVT_FIELD_OFF	     0x14
/* Card RF gate type A registry (13.2.2.1): what the controller may read from us. */
#define REG_A_MODE 0x01
#define REG_A_UID  0x02
#define REG_A_SAK  0x03
#define REG_A_ATQA 0x04

#define SLAVE_MAX_CAPDU 65535u
#define SLAVE_MAX_RAPDU PG_APDU_MAX_R

struct pg_nfcsw_slave {
	struct pg_nfcsw *sw;
	struct shdlc e;
	struct hcp_tx tx;
	struct hcp_rx rx;
	int linked, admin_open;
	uint8_t pipe[2]; /* pipes to our card gates A, B (0: none) */
	int open[2];
	uint8_t rsp[8];
	uint8_t *rapdu;
	struct pg_nfcsw_slave_stats st;
};

static int
slave_next(void *ctx, uint8_t *info)
{
	return pgi_hcp_tx_next(&((struct pg_nfcsw_slave *)ctx)->tx, info);
}

static int
reply(struct pg_nfcsw_slave *s, uint8_t pipe, uint8_t hdr, const uint8_t *d, size_t n)
{
	int rc = pgi_hcp_tx_start(&s->tx, pipe, hdr, d, n);

	if (rc < 0)
		pg_debug("nfcswitch", "slave: answer dropped, the last one is still queued");
	return rc < 0 ? 0 : rc; /* the controller times out and retries */
}

static int
rsp(struct pg_nfcsw_slave *s, uint8_t pipe, uint8_t code, size_t extra)
{
	return reply(s, pipe, HCP_HDR(HCP_TYPE_RSP, code), s->rsp, extra);
}

static int
gate_index(uint8_t gate)
{
	return gate == GATE_CARD_RF_A ? 0 : gate == GATE_CARD_RF_B ? 1 : -1;
}

static int
admin(struct pg_nfcsw_slave *s, const struct hcp_msg *m)
{
	if (m->type != HCP_TYPE_CMD)
		return 0;
	if (!s->admin_open && m->instr != ANY_OPEN_PIPE)
		return rsp(s, m->pipe, ANY_E_PIPE_NOT_OPENED, 0);
	switch (m->instr) {
	case ANY_OPEN_PIPE:
		s->admin_open = 1;
		return rsp(s, m->pipe, ANY_OK, 0);
	case ANY_CLOSE_PIPE:
		s->admin_open = 0;
		return rsp(s, m->pipe, ANY_OK, 0);
	case ADM_NOTIFY_PIPE_CREATED: {
		int g;

		/* source host, source gate, destination host, destination gate, pipe */
		if (m->len != 5)
			return rsp(s, m->pipe, ANY_E_CMD_PAR_UNKNOWN, 0);
		g = gate_index(m->data[3]);
		if (g < 0 || m->data[4] < HCI_PIPE_DYN_FIRST || m->data[4] > HCI_PIPE_DYN_LAST)
			return rsp(s, m->pipe, ANY_E_NOK, 0);
		s->pipe[g] = m->data[4];
		s->open[g] = 0;
		return rsp(s, m->pipe, ANY_OK, 0);
	}
	case ADM_NOTIFY_PIPE_DELETED:
		if (m->len != 1)
			return rsp(s, m->pipe, ANY_E_CMD_PAR_UNKNOWN, 0);
		for (int g = 0; g < 2; g++)
			if (s->pipe[g] == m->data[0])
				s->pipe[g] = 0, s->open[g] = 0;
		return rsp(s, m->pipe, ANY_OK, 0);
	case ADM_NOTIFY_ALL_PIPE_CLEARED:
		s->pipe[0] = s->pipe[1] = 0;
		s->open[0] = s->open[1] = 0;
		pg_nfcsw_field_off(s->sw);
		return rsp(s, m->pipe, ANY_OK, 0);
	default:
		return rsp(s, m->pipe, ANY_E_CMD_NOT_SUPPORTED, 0);
	}
}

static int
card_gate(struct pg_nfcsw_slave *s, int g, const struct hcp_msg *m)
{
	if (m->type == HCP_TYPE_CMD) {
		if (!s->open[g] && m->instr != ANY_OPEN_PIPE)
			return rsp(s, m->pipe, ANY_E_PIPE_NOT_OPENED, 0);
		switch (m->instr) {
		case ANY_OPEN_PIPE:
			s->open[g] = 1;
			return rsp(s, m->pipe, ANY_OK, 0);
		case ANY_CLOSE_PIPE:
			s->open[g] = 0;
			pg_nfcsw_field_off(s->sw);
			return rsp(s, m->pipe, ANY_OK, 0);
		case ANY_GET_PARAMETER:
			if (m->len != 1 || g != 0)
				return rsp(s, m->pipe, ANY_E_REG_PAR_UNKNOWN, 0);
			switch (m->data[0]) {
			case REG_A_MODE:
				s->rsp[0] = 0x02; /* card emulation enabled */
				return rsp(s, m->pipe, ANY_OK, 1);
			case REG_A_UID: /* random UID (single size, 08 first byte: ISO 14443-3) */
				memcpy(s->rsp, "\x08\x4E\x46\x43", 4);
				return rsp(s, m->pipe, ANY_OK, 4);
			case REG_A_SAK:
				s->rsp[0] = 0x20; /* ISO/IEC 14443-4 compliant */
				return rsp(s, m->pipe, ANY_OK, 1);
			case REG_A_ATQA:
				s->rsp[0] = 0x00, s->rsp[1] = 0x04;
				return rsp(s, m->pipe, ANY_OK, 2);
			default:
				return rsp(s, m->pipe, ANY_E_REG_PAR_UNKNOWN, 0);
			}
		default:
			return rsp(s, m->pipe, ANY_E_CMD_NOT_SUPPORTED, 0);
		}
	}
	if (m->type != HCP_TYPE_EVT || !s->open[g])
		return 0; /* events are not answered; a closed pipe drops them */
	switch (m->instr) {
	case EVT_FIELD_ON:
		s->st.field_on++;
		return 0;
	case EVT_CARD_ACTIVATED:
		s->st.activated++;
		pg_nfcsw_field_off(s->sw); /* a new activation starts with no session */
		return 0;
	case EVT_CARD_DEACTIVATED:
		s->st.deactivated++;
		pg_nfcsw_field_off(s->sw);
		return 0;
	case EVT_FIELD_OFF:
		s->st.field_off++;
		pg_nfcsw_field_off(s->sw);
		return 0;
	case EVT_SEND_DATA: {
		size_t rlen = SLAVE_MAX_RAPDU;
		int rc;

		s->st.capdus++;
		rc = pg_nfcsw_process(s->sw, m->data, m->len, s->rapdu, &rlen);
		if (rc < 0)
			return rc;
		return reply(s, m->pipe, HCP_HDR(HCP_TYPE_EVT, EVT_SEND_DATA), s->rapdu, rlen);
	}
	default:
		s->st.bad_msgs++;
		return 0;
	}
}

static int
slave_deliver(void *ctx, const uint8_t *info, size_t n)
{
	struct pg_nfcsw_slave *s = ctx;
	struct hcp_msg m;
	int rc = pgi_hcp_rx_feed(&s->rx, info, n, &m);

	if (rc < 0)
		s->st.bad_msgs++;
	if (rc <= 0)
		return 0; /* a bad HCP packet loses its message, not the link */
	if (m.pipe == HCI_PIPE_ADMIN)
		return admin(s, &m);
	for (int g = 0; g < 2; g++)
		if (s->pipe[g] && m.pipe == s->pipe[g])
			return card_gate(s, g, &m);
	if (m.type == HCP_TYPE_CMD)
		return rsp(s, m.pipe, ANY_E_NOK, 0);
	s->st.bad_msgs++;
	return 0;
}

static void
link_reset(struct pg_nfcsw_slave *s, int window)
{
	pgi_shdlc_reset(&s->e, window);
	pgi_hcp_rx_reset(&s->rx);
	s->tx.active = 0;
}

int
pg_nfcsw_slave_packet(void *ctx, int type, const uint8_t *p, size_t n, struct pg_stream *out)
{
	struct pg_nfcsw_slave *s = ctx;
	struct shdlc_frame f;
	int r, rc;

	s->e.out = out;
	if (type != PG_PKT_DATA) {
		link_reset(s, SHDLC_MAX_WINDOW);
		s->linked = s->admin_open = 0;
		memset(s->pipe, 0, sizeof(s->pipe));
		memset(s->open, 0, sizeof(s->open));
		pg_nfcsw_field_off(s->sw);
		return 0;
	}
	if (pgi_shdlc_decode(&f, p, n) < 0)
		return 0; /* 102 613: a frame in error is discarded */
	if (f.kind == SHDLC_U) {
		int w = f.len >= 1 ? f.info[0] : SHDLC_MAX_WINDOW;

		if (f.type == SHDLC_U_UA) {
			link_reset(s, SHDLC_MAX_WINDOW);
			s->linked = 1;
			return 0;
		}
		if (f.type != SHDLC_U_RSET)
			return 0;
		if (w < 1 || w > SHDLC_MAX_WINDOW || (f.len >= 2 && (f.info[1] & SHDLC_CAP_SREJ))) {
			uint8_t mine[1] = {SHDLC_MAX_WINDOW};

			s->linked = 0;
			return pgi_shdlc_send_u(&s->e, SHDLC_U_RSET, mine, 1);
		}
		link_reset(s, w);
		s->linked = 1;
		return pgi_shdlc_send_u(&s->e, SHDLC_U_UA, NULL, 0);
	}
	if (!s->linked)
		return 0;
	r = pgi_shdlc_input(&s->e, &f);
	if (r < 0)
		return r;
	if (r & SHDLC_RX_DUP) {
		rc = shdlc_unacked(&s->e) ? pgi_shdlc_retransmit(&s->e)
					  : pgi_shdlc_send_s(&s->e, SHDLC_S_RR);
		if (rc < 0)
			return rc;
	} else if ((r & SHDLC_RX_GAP) && !s->e.rej_sent) {
		s->e.rej_sent = 1;
		if ((rc = pgi_shdlc_send_s(&s->e, SHDLC_S_REJ)) < 0)
			return rc;
	}
	if ((rc = pgi_shdlc_pump(&s->e)) < 0)
		return rc;
	/* Every I-frame is acknowledged at once: events have no answer to carry N(R). */
	if (s->e.unacked_rx > 0)
		return pgi_shdlc_send_s(&s->e, SHDLC_S_RR);
	return 0;
}

int
pg_nfcsw_slave_new(struct pg_nfcsw_slave **out, struct pg_nfcsw *sw)
{
	struct pg_nfcsw_slave *s = calloc(1, sizeof(*s));

	*out = NULL;
	if (!s || !(s->rx.buf = malloc(1 + SLAVE_MAX_CAPDU)) ||
	    !(s->rapdu = malloc(SLAVE_MAX_RAPDU))) {
		pg_nfcsw_slave_free(s);
		return PG_ENOMEM;
	}
	s->sw = sw;
	s->rx.max = 1 + SLAVE_MAX_CAPDU;
	s->tx.mtu = SHDLC_MAX_INFO;
	s->e.next = slave_next;
	s->e.deliver = slave_deliver;
	s->e.ctx = s;
	pgi_shdlc_reset(&s->e, SHDLC_MAX_WINDOW);
	*out = s;
	return 0;
}

void
pg_nfcsw_slave_free(struct pg_nfcsw_slave *s)
{
	if (!s)
		return;
	free(s->rx.buf);
	free(s->rapdu);
	free(s);
}

void
pg_nfcsw_slave_stats(const struct pg_nfcsw_slave *s, struct pg_nfcsw_slave_stats *st)
{
	*st = s->st;
}

/* ---------------- simulated NFC controller ---------------- */

#define CLF_PIPE_A  0x05
#define CLF_RETRIES 10

struct pg_nfcsw_clf {
	struct hcp_port port; /* stream, HCP messages both ways, frame reads */
	struct shdlc e;
};

/*
 * Sends one HCP message and runs the link until a message of `type`/`instr`
 * arrives on `pipe` (type < 0: until the SE has acknowledged everything).
 */
static int
clf_request(struct pg_nfcsw_clf *c, uint8_t pipe, uint8_t hdr, const uint8_t *d, size_t n, int type,
	    int instr)
{
	int errors = 0, rc;

	c->port.tx.active = 0;
	c->port.have_msg = 0;
	if ((rc = pgi_hcp_tx_start(&c->port.tx, pipe, hdr, d, n)) < 0)
		return rc;
	for (;;) {
		struct shdlc_frame f;
		int r;

		if ((rc = pgi_shdlc_pump(&c->e)) < 0)
			return rc;
		if (type < 0 && !c->port.tx.active && shdlc_unacked(&c->e) == 0)
			return 0;
		if (c->e.unacked_rx >= c->e.window &&
		    (rc = pgi_shdlc_send_s(&c->e, SHDLC_S_RR)) < 0)
			return rc;
		rc = pgi_hcp_port_read_frame(&c->port, &f);
		if (rc == PG_ETIMEDOUT || rc == PG_EFORMAT || rc == PG_ECORRUPT) {
			if (++errors > CLF_RETRIES)
				return pg_error(PG_ELINK, "nfcswitch", "SE does not answer (SWP)");
			if (rc == PG_ETIMEDOUT &&
			    (rc = shdlc_unacked(&c->e) ? pgi_shdlc_retransmit(&c->e)
						       : pgi_shdlc_send_s(&c->e, SHDLC_S_REJ)) < 0)
				return rc;
			continue;
		}
		if (rc < 0)
			return rc;
		r = pgi_shdlc_input(&c->e, &f);
		if (r < 0)
			return r;
		if (r & SHDLC_RX_RSET)
			return pg_error(PG_ELINK, "nfcswitch", "SE reset the SHDLC link");
		if (r & (SHDLC_RX_NEW | SHDLC_RX_ACK))
			errors = 0;
		if (!c->port.have_msg)
			continue;
		c->port.have_msg = 0;
		if (type >= 0 && c->port.msg.pipe == pipe && c->port.msg.type == type &&
		    (instr < 0 || c->port.msg.instr == instr)) {
			/* Acknowledge the answer's frames now, so the SE's window stays empty. */
			if (c->e.unacked_rx && (rc = pgi_shdlc_send_s(&c->e, SHDLC_S_RR)) < 0)
				return rc;
			return 0;
		}
	}
}

static int
clf_cmd(struct pg_nfcsw_clf *c, uint8_t pipe, uint8_t cmd, const uint8_t *d, size_t n)
{
	int rc = clf_request(c, pipe, HCP_HDR(HCP_TYPE_CMD, cmd), d, n, HCP_TYPE_RSP, -1);

	if (rc < 0)
		return rc;
	if (c->port.msg.instr != ANY_OK)
		return pg_error(PG_EPROTO, "nfcswitch", "SE answered %02X to command %02X",
				c->port.msg.instr, cmd);
	return 0;
}

static int
clf_event(struct pg_nfcsw_clf *c, uint8_t evt)
{
	return clf_request(c, CLF_PIPE_A, HCP_HDR(HCP_TYPE_EVT, evt), NULL, 0, -1, -1);
}

int
pg_nfcsw_clf_open(struct pg_nfcsw_clf **out, struct pg_stream *s, int timeout_ms)
{
	struct pg_nfcsw_clf *c = calloc(1, sizeof(*c));
	uint8_t info[1] = {SHDLC_MAX_WINDOW}, p[5], reg = REG_A_SAK;
	int rc = PG_ENOMEM, up = 0;

	*out = NULL;
	if (!c || !(c->port.rx.buf = malloc(1 + SLAVE_MAX_RAPDU))) {
		free(c);
		pg_stream_free(s);
		return PG_ENOMEM;
	}
	c->port.s = s;
	c->port.rx.max = 1 + SLAVE_MAX_RAPDU;
	c->port.tx.mtu = SHDLC_MAX_INFO;
	c->port.timeout_ms = timeout_ms > 0 ? timeout_ms : 1000;
	pgi_hcp_port_bind(&c->port, &c->e);
	if ((rc = pg_stream_event(s, PG_PKT_RESET)) < 0)
		goto fail;
	/* 102 613 10.8: link establishment. */
	for (int attempt = 0; attempt <= CLF_RETRIES && !up; attempt++) {
		pgi_shdlc_reset(&c->e, SHDLC_MAX_WINDOW);
		if ((rc = pgi_shdlc_send_u(&c->e, SHDLC_U_RSET, info, 1)) < 0)
			goto fail;
		for (;;) {
			struct shdlc_frame f;

			rc = pgi_hcp_port_read_frame(&c->port, &f);
			if (rc == PG_ETIMEDOUT)
				break;
			if (rc == PG_EFORMAT || rc == PG_ECORRUPT)
				continue;
			if (rc < 0)
				goto fail;
			if (f.kind == SHDLC_U && f.type == SHDLC_U_UA) {
				up = 1;
				break;
			}
		}
	}
	if (!up) {
		rc = pg_error(PG_ELINK, "nfcswitch", "no UA from the SE");
		goto fail;
	}
	/* Admin pipe, then the pipe from our card RF gate A to the SE's card application gate A. */
	if ((rc = clf_cmd(c, HCI_PIPE_ADMIN, ANY_OPEN_PIPE, NULL, 0)) < 0)
		goto fail;
	p[0] = HCI_HOST_CONTROLLER;
	p[1] = GATE_CARD_RF_A;
	p[2] = HCI_HOST_UICC;
	p[3] = GATE_CARD_RF_A;
	p[4] = CLF_PIPE_A;
	if ((rc = clf_cmd(c, HCI_PIPE_ADMIN, ADM_NOTIFY_PIPE_CREATED, p, 5)) < 0 ||
	    (rc = clf_cmd(c, CLF_PIPE_A, ANY_OPEN_PIPE, NULL, 0)) < 0 ||
	    (rc = clf_cmd(c, CLF_PIPE_A, ANY_GET_PARAMETER, &reg, 1)) < 0)
		goto fail;
	if (c->port.msg.len != 1 || !(c->port.msg.data[0] & 0x20)) {
		rc = pg_error(PG_EPROTO, "nfcswitch", "SE is not ISO/IEC 14443-4 (SAK)");
		goto fail;
	}
	*out = c;
	return 0;
fail:
	pg_nfcsw_clf_close(c);
	return rc;
}

void
pg_nfcsw_clf_close(struct pg_nfcsw_clf *c)
{
	if (!c)
		return;
	pg_stream_free(c->port.s);
	free(c->port.rx.buf);
	free(c);
}

int
pg_nfcsw_clf_field_on(struct pg_nfcsw_clf *c)
{
	int rc = clf_event(c, EVT_FIELD_ON);

	return rc < 0 ? rc : clf_event(c, EVT_CARD_ACTIVATED);
}

int
pg_nfcsw_clf_field_off(struct pg_nfcsw_clf *c)
{
	int rc = clf_event(c, EVT_CARD_DEACTIVATED);

	return rc < 0 ? rc : clf_event(c, EVT_FIELD_OFF);
}

int
pg_nfcsw_clf_transceive(struct pg_nfcsw_clf *c, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
			size_t *rlen)
{
	int rc = clf_request(c, CLF_PIPE_A, HCP_HDR(HCP_TYPE_EVT, EVT_SEND_DATA), capdu, clen,
			     HCP_TYPE_EVT, EVT_SEND_DATA);

	if (rc < 0)
		return rc;
	if (c->port.msg.len < 2 || c->port.msg.len > *rlen)
		return pg_error(PG_EPROTO, "nfcswitch", "R-APDU of %zu bytes", c->port.msg.len);
	memcpy(rapdu, c->port.msg.data, c->port.msg.len);
	*rlen = c->port.msg.len;
	return 0;
}
