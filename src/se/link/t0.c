/*
 * ISO/IEC 7816-3:2006 clause 10 (T=0 character protocol) and 12.2 (APDU
 * transport by T=0): host role (procedure bytes, 61xx GET RESPONSE, 6Cxx
 * re-send, case 4 as case 3 + GET RESPONSE) and a card role that answers the
 * way real T=0 cards do: 61xx when a command has response data, 6Cxx when Le
 * does not match. T=0 carries short APDUs only.
 */
#include "atr.h"
#include "drivers.h"

#include "payguard/buf.h"
#include "payguard/clock.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <stdlib.h>
#include <string.h>

#define T0_NULL		   0x60
#define INS_GET_RESPONSE   0xC0
#define DEFAULT_TIMEOUT_MS 1000
#define MAX_NULLS	   10000 /* NULL bytes in a row before we call the card dead */
#define MAX_REISSUE	   2	 /* 6Cxx re-sends per command */

/* 1 when the byte is SW1 (6X or 9X, except 60), 10.3.3 table 11. */
static int
is_sw1(uint8_t b)
{
	return b != T0_NULL && ((b & 0xF0) == 0x60 || (b & 0xF0) == 0x90);
}

/* ---- host role ---- */

struct t0_host {
	struct pg_link base;
	struct pg_stream *s;
	int timeout_ms, powered;
	uint8_t tmp[256 + 2];
};

/*
 * One command TPDU: sends the header, then follows the procedure bytes
 * (10.3.3): NULL waits, INS moves all remaining data, INS^FF moves one byte,
 * SW1 ends with SW2. `out` is what the host may send (incoming command),
 * `in` receives up to inlen bytes (outgoing command); *got counts them.
 */
static int
tpdu(struct t0_host *h, const uint8_t hdr[5], const uint8_t *out, size_t outlen, uint8_t *in,
     size_t inlen, size_t *got, uint16_t *sw)
{
	size_t done = 0;
	int nulls = 0, rc;
	uint8_t pb, sw2;
	const uint8_t ack_one = (uint8_t)(0xFF - hdr[1]);

	*got = 0;
	rc = pg_stream_write(h->s, hdr, 5);
	if (rc < 0)
		return rc;
	for (;;) {
		rc = pg_stream_read(h->s, &pb, 1, h->timeout_ms);
		if (rc < 0)
			return pg_error(rc, "t0", "no procedure byte after %zu data bytes", done);
		if (pb == T0_NULL) {
			/* The card needs more time: the work waiting time restarts. */
			if (++nulls > MAX_NULLS)
				return pg_error(PG_ETIMEDOUT, "t0", "card sends only NULL bytes");
			continue;
		}
		if (is_sw1(pb)) {
			rc = pg_stream_read(h->s, &sw2, 1, h->timeout_ms);
			if (rc < 0)
				return pg_error(rc, "t0", "no SW2 after SW1 %02X", pb);
			*sw = (uint16_t)(pb << 8 | sw2);
			*got = done;
			return 0;
		}
		if (pb == hdr[1] || pb == ack_one) {
			size_t n;

			if (outlen) {
				n = pb == hdr[1] ? outlen - done : (done < outlen ? 1 : 0);
				if (n) {
					rc = pg_stream_write(h->s, out + done, n);
					if (rc < 0)
						return rc;
				}
			} else {
				n = pb == hdr[1] ? inlen - done : (done < inlen ? 1 : 0);
				if (n) {
					rc = pg_stream_read_full(h->s, in + done, n, h->timeout_ms);
					if (rc < 0)
						return pg_error(rc, "t0",
								"card sent %zu of %zu data bytes",
								done, inlen);
				}
			}
			/* An ACK with nothing left to move is a NULL in disguise: bounded too. */
			if (n == 0 && ++nulls > MAX_NULLS)
				return pg_error(PG_EPROTO, "t0",
						"card keeps ACKing with no data left");
			done += n;
			continue;
		}
		return pg_error(PG_EPROTO, "t0", "invalid procedure byte %02X for INS %02X", pb,
				hdr[1]);
	}
}

/* GET RESPONSE's class byte: the command's logical channel on an interindustry class. */
static uint8_t
get_response_cla(uint8_t cla)
{
	int ch;

	if (cla == 0xA0)
		return 0xA0; /* GSM 11.11 class */
	if (!pg_cla_is_interindustry(cla))
		return (uint8_t)(cla & 0x03); /* GlobalPlatform: channel in b2 b1 */
	ch = pg_cla_channel(cla);
	ch = pg_cla_set_channel(0x00, ch < 0 ? 0 : ch);
	return (uint8_t)(ch < 0 ? 0 : ch);
}

/*
 * Outgoing TPDU with 6Cxx handling (12.2.3 case 2S.3): re-issue with P3 = La
 * and keep the first `want` bytes. Appends to r (capacity cap) at *rn.
 */
static int
tpdu_out(struct t0_host *h, uint8_t hdr[5], size_t want, uint8_t *r, size_t cap, size_t *rn,
	 uint16_t *sw)
{
	size_t got;
	int rc;

	for (int re = 0;; re++) {
		size_t p3 = hdr[4] ? hdr[4] : 256;

		rc = tpdu(h, hdr, NULL, 0, h->tmp, p3, &got, sw);
		if (rc < 0)
			return rc;
		if ((*sw >> 8) != 0x6C || re == MAX_REISSUE)
			break;
		hdr[4] = (uint8_t)(*sw & 0xFF);
	}
	if (got > want)
		got = want;
	if (*rn + got + 2 > cap)
		return pg_error(PG_ETOOBIG, "t0", "R-APDU larger than %zu bytes", cap);
	memcpy(r + *rn, h->tmp, got);
	*rn += got;
	return 0;
}

/* 12.2.5 case 4S.3 / 2S: fetch what the card holds with GET RESPONSE while it says 61xx. */
static int
get_responses(struct t0_host *h, uint8_t cla, size_t ne, uint8_t *r, size_t cap, size_t *rn,
	      uint16_t *sw)
{
	while ((*sw >> 8) == 0x61 && *rn < ne) {
		size_t want = (*sw & 0xFF) ? (*sw & 0xFF) : 256;
		uint8_t hdr[5] = {get_response_cla(cla), INS_GET_RESPONSE, 0, 0, 0};
		int rc;

		if (want > ne - *rn)
			want = ne - *rn;
		hdr[4] = (uint8_t)(want & 0xFF);
		rc = tpdu_out(h, hdr, want, r, cap, rn, sw);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int
t0_transmit(struct pg_link *l, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t *rlen)
{
	struct t0_host *h = (struct t0_host *)l;
	struct pg_capdu c;
	uint8_t hdr[5];
	size_t rn = 0, got, cap = *rlen;
	uint16_t sw = 0;
	int rc;

	rc = pg_capdu_parse(&c, capdu, clen);
	if (rc < 0)
		return rc;
	if (c.apdu_case >= PG_APDU_CASE2E)
		return pg_error(PG_EINVAL, "t0",
				"T=0 carries short APDUs only (Lc <= 255, Le <= 256); this one is "
				"extended");
	if (!h->powered) {
		rc = l->ops->power_on(l, NULL, NULL);
		if (rc < 0)
			return rc;
	}
	if (cap < 2)
		return pg_error(PG_ETOOBIG, "t0", "no room for a status word");
	memcpy(hdr, capdu, 4);
	switch (c.apdu_case) {
	case PG_APDU_CASE1:
		/* 12.2.2: P3 = 00, the response TPDU is the response APDU. */
		hdr[4] = 0;
		rc = tpdu(h, hdr, NULL, 0, NULL, 0, &got, &sw);
		break;
	case PG_APDU_CASE2S:
		/* 12.2.3: P3 = Le ('00' for 256); 6Cxx re-issue; 61xx fetched. */
		hdr[4] = (uint8_t)(c.le & 0xFF);
		rc = tpdu_out(h, hdr, c.le, rapdu, cap, &rn, &sw);
		if (rc == 0)
			rc = get_responses(h, c.cla, c.le, rapdu, cap, &rn, &sw);
		break;
	case PG_APDU_CASE3S:
	case PG_APDU_CASE4S:
		/* 12.2.4 / 12.2.5: P3 = Lc with the data; case 4 fetches with GET RESPONSE. */
		hdr[4] = (uint8_t)c.lc;
		rc = tpdu(h, hdr, c.data, c.lc, NULL, 0, &got, &sw);
		if (rc == 0 && c.apdu_case == PG_APDU_CASE4S)
			rc = get_responses(h, c.cla, c.le, rapdu, cap, &rn, &sw);
		break;
	default:
		rc = PG_EINVAL;
	}
	if (rc < 0) {
		/*
		 * T=0 has no resynchronisation: after a time-out or a bad procedure
		 * byte the card may still wait for data or send some. The next
		 * command starts with a reset (7816-3 10.3.3: the interface device
		 * deactivates or resets), which puts both sides back in step.
		 */
		if (rc != PG_ETOOBIG)
			h->powered = 0;
		return rc;
	}
	pg_put_be16(rapdu + rn, sw);
	*rlen = rn + 2;
	return 0;
}

static int
t0_power_on(struct pg_link *l, uint8_t *atr, size_t *atrlen)
{
	struct t0_host *h = (struct t0_host *)l;
	uint8_t buf[PG_ATR_MAX];
	struct pg_atr a;
	size_t have = 0;
	int need = 2, rc;

	h->powered = 0;
	pg_stream_flush(h->s);
	rc = pg_stream_event(h->s, PG_PKT_RESET);
	if (rc < 0)
		return rc;
	while ((size_t)need > have) {
		rc = pg_stream_read_full(h->s, buf + have, (size_t)need - have, h->timeout_ms);
		if (rc < 0)
			return pg_error(rc == PG_ETIMEDOUT ? PG_ENOCARD : rc, "t0",
					"no complete ATR after %zu bytes", have);
		have = (size_t)need;
		need = pgi_atr_length(buf, have);
		if (need < 0)
			return need;
	}
	rc = pgi_atr_parse(&a, buf, have);
	if (rc < 0)
		return rc;
	if (!(a.protocols & 1))
		return pg_error(PG_EPROTO, "t0", "the card's ATR does not offer T=0");
	if (atr) {
		if (*atrlen < have)
			return PG_ETOOBIG;
		memcpy(atr, buf, have);
		*atrlen = have;
	}
	h->powered = 1;
	return 0;
}

static void
t0_host_close(struct pg_link *l)
{
	struct t0_host *h = (struct t0_host *)l;

	if (!h)
		return;
	pg_stream_free(h->s);
	free(h);
}

static int
t0_host_open(struct pg_link **out, struct pg_stream *s, const char *addr,
	     const struct pg_link_params *p)
{
	struct t0_host *h;

	(void)addr;
	*out = NULL;
	if (!s)
		return pg_error(PG_EINVAL, "t0", "the T=0 host needs a stream");
	h = calloc(1, sizeof(*h));
	if (!h) {
		pg_stream_free(s);
		return PG_ENOMEM;
	}
	h->base.ops = &pgi_link_t0_ops;
	h->s = s;
	h->timeout_ms = p && p->timeout_ms > 0 ? p->timeout_ms : DEFAULT_TIMEOUT_MS;
	*out = &h->base;
	return 0;
}

/* ---- card role ---- */

struct t0_card {
	struct pg_link_card base;
	struct pg_card card;
	int timeout_ms;
	uint8_t atr[PG_ATR_MAX];
	size_t atrlen;
	/* Command being received: header, then P3 data bytes. */
	uint8_t cmd[5 + 255];
	size_t have, need; /* need = 5 + data bytes expected; have = bytes so far */
	int in_data;
	/* Response waiting for GET RESPONSE (61xx) or for the re-issue after 6Cxx. */
	uint8_t *rbuf;
	size_t rlen, roff; /* data bytes, bytes already fetched */
	uint16_t rsw;
	int pending;	 /* 61xx: served by GET RESPONSE */
	int reissue;	 /* 6Cxx: served to the same header with P3 = La */
	uint8_t rhdr[4]; /* header of the command whose response waits for a re-issue */
	uint8_t out[2 + 256 + 2];
};

/*
 * A T=0 card must know from the header alone whether data flows in or out
 * (10.3.2). These interindustry / GlobalPlatform / GSM instructions send data;
 * every other instruction receives P3 bytes (P3 = 00: none).
 */
static int
ins_is_outgoing(uint8_t cla, uint8_t ins)
{
	switch (ins) {
	case 0xB0: /* READ BINARY */
	case 0xB1:
	case 0xB2: /* READ RECORD */
	case 0xB3:
	case 0xC0: /* GET RESPONSE */
	case 0xCA: /* GET DATA */
	case 0xCB:
	case 0x84: /* GET CHALLENGE */
	case 0x70: /* MANAGE CHANNEL (open: Le = 01; close has P3 = 00 and no data) */
	case 0x12: /* GET ENVELOPE / the simulated SE's counter */
		return 1;
	case 0xF2: /* GSM 11.11 STATUS; GlobalPlatform GET STATUS (80 F2) takes data */
		return cla == 0xA0;
	default:
		return 0;
	}
}

static int
card_sw(struct pg_stream *out, uint16_t sw)
{
	uint8_t b[2];

	pg_put_be16(b, sw);
	return pg_stream_write(out, b, 2);
}

/* ACK (INS), data, SW in one write. */
static int
card_send_data(struct t0_card *c, struct pg_stream *out, uint8_t ins, const uint8_t *d, size_t n,
	       uint16_t sw)
{
	c->out[0] = ins;
	memcpy(c->out + 1, d, n);
	pg_put_be16(c->out + 1 + n, sw);
	return pg_stream_write(out, c->out, n + 3);
}

/* Runs the application; returns 0 with the response in rbuf/rlen/rsw. */
static int
card_run(struct t0_card *c, const uint8_t *capdu, size_t clen, struct pg_stream *out)
{
	size_t rl = PG_APDU_MAX_R;
	uint64_t t0 = pg_mono_ms();
	int rc;

	c->pending = c->reissue = 0;
	rc = c->card.process(c->card.ctx, capdu, clen, c->rbuf, &rl);
	if (rc < 0)
		return rc; /* mute card */
	c->base.apdus++;
	if (rl < 2 || rl > PG_APDU_MAX_R)
		return pg_error(PG_EPROTO, "t0", "card application gave %zu response bytes", rl);
	c->rlen = rl - 2;
	c->rsw = pg_be16(c->rbuf + rl - 2);
	c->roff = 0;
	/* A slow command: a NULL byte restarts the host's work waiting time (10.2). */
	if ((pg_mono_ms() - t0) * 2 > (uint64_t)c->timeout_ms) {
		uint8_t nul = T0_NULL;

		return pg_stream_write(out, &nul, 1);
	}
	return 0;
}

/* Answers an outgoing command (or GET RESPONSE) asking for p3 bytes at roff. */
static int
card_serve(struct t0_card *c, struct pg_stream *out, uint8_t ins, size_t p3)
{
	size_t rem = c->rlen - c->roff;
	uint16_t sw;

	if (p3 > rem && rem <= 256) {
		/* Wrong Le: tell the host the right one (6Cxx); keep the response. */
		c->reissue = !c->pending;
		return card_sw(out, (uint16_t)PG_SW_WRONG_LE(rem));
	}
	if (p3 == rem)
		sw = c->rsw;
	else
		sw = (uint16_t)PG_SW_BYTES_REMAINING(rem - p3 > 255 ? 0 : rem - p3);
	c->pending = p3 < rem;
	c->reissue = 0;
	{
		int rc = card_send_data(c, out, ins, c->rbuf + c->roff, p3, sw);

		c->roff += p3;
		return rc;
	}
}

static int
card_on_header(struct t0_card *c, struct pg_stream *out)
{
	const uint8_t *h = c->cmd;
	uint8_t ins = h[1];
	size_t p3 = h[4];
	int rc;

	if (is_sw1(ins) || ins == T0_NULL)
		return card_sw(out, PG_SW_INS_NOT_SUPPORTED); /* 6X / 9X cannot be ACKs */
	if (ins == INS_GET_RESPONSE && c->pending)
		return card_serve(c, out, ins, p3 ? p3 : 256);
	if (c->reissue && memcmp(c->rhdr, h, 4) == 0 && (p3 ? p3 : 256) == c->rlen) {
		/*
		 * The re-issue after our 6Cxx: the command already ran (a counter
		 * must not count it twice); send the answer it gave.
		 */
		return card_serve(c, out, ins, c->rlen);
	}
	c->pending = c->reissue = 0;
	if (ins_is_outgoing(h[0], ins)) {
		/* Case 2: P3 is Le ('00' = 256). */
		size_t le = p3 ? p3 : 256;

		rc = card_run(c, h, 5, out);
		if (rc < 0)
			return rc;
		memcpy(c->rhdr, h, 4);
		if (c->rlen == 0)
			return card_sw(out, c->rsw);
		if (c->rlen > 256) {
			c->pending = 1; /* more than Le can carry: 61xx and GET RESPONSE */
			return card_sw(out, PG_SW_BYTES_REMAINING(0));
		}
		if (le != c->rlen) {
			/* 12.2.3 case 2S.3: wrong Le, the right one is La (6CXX). */
			c->reissue = 1;
			return card_sw(out, (uint16_t)PG_SW_WRONG_LE(c->rlen));
		}
		return card_serve(c, out, ins, le);
	}
	if (p3 == 0) {
		/* Case 1. */
		rc = card_run(c, h, 4, out);
		if (rc < 0)
			return rc;
		goto answer;
	}
	/* Incoming data: ACK the first byte alone (INS^FF), then the rest (INS). */
	c->need = 5 + p3;
	c->in_data = 1;
	{
		uint8_t ack = (uint8_t)(ins ^ 0xFF);

		return pg_stream_write(out, &ack, 1);
	}
answer:
	if (c->rlen == 0)
		return card_sw(out, c->rsw);
	/* Response data to a command the card saw as case 1/3: 61xx (12.2.5 case 4S.3). */
	c->pending = 1;
	return card_sw(out, PG_SW_BYTES_REMAINING(c->rlen > 255 ? 0 : c->rlen));
}

static int
card_on_data_done(struct t0_card *c, struct pg_stream *out)
{
	uint8_t capdu[5 + 255];
	size_t n = c->need;
	int rc;

	c->in_data = 0;
	/* The card sees a case 3 command: CLA INS P1 P2 Lc data. */
	memcpy(capdu, c->cmd, n);
	rc = card_run(c, capdu, n, out);
	if (rc < 0)
		return rc;
	if (c->rlen == 0)
		return card_sw(out, c->rsw);
	c->pending = 1;
	return card_sw(out, PG_SW_BYTES_REMAINING(c->rlen > 255 ? 0 : c->rlen));
}

static void
card_state_reset(struct t0_card *c)
{
	c->have = c->need = 0;
	c->in_data = c->pending = c->reissue = 0;
	c->rlen = c->roff = 0;
}

static int
t0_card_packet(struct pg_link_card *lc, int type, const uint8_t *data, size_t n,
	       struct pg_stream *out)
{
	struct t0_card *c = (struct t0_card *)lc;
	int rc = 0;

	if (type == PG_PKT_RESET || type == PG_PKT_POWER_OFF) {
		card_state_reset(c);
		if (c->card.reset)
			c->card.reset(c->card.ctx);
		return type == PG_PKT_RESET ? pg_stream_write(out, c->atr, c->atrlen) : 0;
	}
	if (type != PG_PKT_DATA)
		return 0;
	/* Characters, as on the wire: a packet may hold part of a header or of the data. */
	for (size_t i = 0; i < n && rc >= 0; i++) {
		c->cmd[c->have++] = data[i];
		if (!c->in_data) {
			if (c->have < 5)
				continue;
			c->have = 5;
			rc = card_on_header(c, out);
			if (!c->in_data)
				c->have = 0;
			continue;
		}
		if (c->have == 6 && c->need > 6) {
			/* First byte in after INS^FF: ask for all the rest with INS. */
			uint8_t ack = c->cmd[1];

			rc = pg_stream_write(out, &ack, 1);
			continue;
		}
		if (c->have == c->need) {
			rc = card_on_data_done(c, out);
			c->have = 0;
		}
	}
	if (rc < 0)
		card_state_reset(c);
	return rc;
}

static void
t0_card_close(struct pg_link_card *lc)
{
	struct t0_card *c = (struct t0_card *)lc;

	if (!c)
		return;
	free(c->rbuf);
	free(c);
}

static int
t0_card_open(struct pg_link_card **out, const struct pg_card *card, const struct pg_link_params *p)
{
	struct t0_card *c;
	int rc;

	*out = NULL;
	if (!card || !card->process)
		return pg_error(PG_EINVAL, "t0", "the T=0 card role needs a card");
	c = calloc(1, sizeof(*c));
	if (!c)
		return PG_ENOMEM;
	c->base.ops = &pgi_link_t0_ops;
	c->card = *card;
	c->timeout_ms = p && p->timeout_ms > 0 ? p->timeout_ms : DEFAULT_TIMEOUT_MS;
	c->rbuf = malloc(PG_APDU_MAX_R);
	if (!c->rbuf) {
		rc = PG_ENOMEM;
		goto fail;
	}
	/* The card's historical bytes in an ATR that offers T=0 only. */
	rc = pgi_atr_build_for_card(c->atr, sizeof(c->atr), card, 0, 32, 4, 13, 0);
	if (rc < 0)
		goto fail;
	c->atrlen = (size_t)rc;
	*out = &c->base;
	return 0;
fail:
	t0_card_close(&c->base);
	return rc;
}

const struct pg_link_ops pgi_link_t0_ops = {
    .name = "t0",
    .type = PG_LINK_T0,
    /* Case 4 short with 255 data bytes: 4 + 1 + 255 + 1; 256 data + SW back. */
    .max_capdu = 4 + 1 + 255 + 1,
    .max_rapdu = 256 + 2,
    .host_open = t0_host_open,
    .power_on = t0_power_on,
    .transmit = t0_transmit,
    .host_close = t0_host_close,
    .card_open = t0_card_open,
    .card_packet = t0_card_packet,
    .card_close = t0_card_close,
};
