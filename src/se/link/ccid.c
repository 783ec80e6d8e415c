/*
 * USB CCID link driver (CCID Rev 1.1, bulk-OUT/bulk-IN messages): host role
 * = the PC's CCID class driver; card role = the reader with one slot and its
 * card. APDU-level exchange (dwFeatures "short and extended APDU level"),
 * with wLevelParameter / bChainParameter chaining when an APDU exceeds
 * dwMaxCCIDMessageLength; bSeq matching; bStatus/bError slot errors.
 * On the stream each message is a USB bulk transfer: 512-byte packets, the
 * last one short (a zero-length packet if needed), so the reader can tell a
 * dwLength that lies from the transfer's real size, as real readers do.
 */
#include "drivers.h"
#include "payguard/buf.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <stdlib.h>
#include <string.h>

#define CCID_HDR	 10
#define CCID_DEFAULT_MAX (PG_APDU_MAX_C + CCID_HDR) /* 65554 */
#define CCID_MIN_MAX	 (CCID_HDR + 16)
#define USB_MAX_PACKET	 512 /* high-speed bulk wMaxPacketSize */

/* Message types (CCID 6.1, 6.2) */
#define PC_TO_RDR_ICCPOWERON	  0x62
#define PC_TO_RDR_ICCPOWEROFF	  0x63
#define PC_TO_RDR_GETSLOTSTATUS	  0x65
#define PC_TO_RDR_XFRBLOCK	  0x6F
#define PC_TO_RDR_GETPARAMETERS	  0x6C
#define PC_TO_RDR_RESETPARAMETERS 0x6D
#define PC_TO_RDR_SETPARAMETERS	  0x61
#define PC_TO_RDR_ESCAPE	  0x6B
#define PC_TO_RDR_ICCCLOCK	  0x6E
#define PC_TO_RDR_T0APDU	  0x6A
#define PC_TO_RDR_SECURE	  0x69
#define PC_TO_RDR_MECHANICAL	  0x71
#define PC_TO_RDR_ABORT		  0x72
#define RDR_TO_PC_DATABLOCK	  0x80
#define RDR_TO_PC_SLOTSTATUS	  0x81
#define RDR_TO_PC_PARAMETERS	  0x82
#define RDR_TO_PC_ESCAPE	  0x83

/* bStatus (6.2.6): bmICCStatus bits 0-1, bmCommandStatus bits 6-7 */
#define ICC_ACTIVE   0x00
#define ICC_INACTIVE 0x01
#define ICC_ABSENT   0x02
#define CMD_FAILED   0x40
#define CMD_TIME_EXT 0x80
/* bError (6.2.6 table) */
#define ERR_CMD_ABORTED		0xFF
#define ERR_ICC_MUTE		0xFE
#define ERR_XFR_PARITY		0xFD
#define ERR_XFR_OVERRUN		0xFC
#define ERR_HW_ERROR		0xFB
#define ERR_CMD_SLOT_BUSY	0xE0
#define ERR_CMD_NOT_SUPPORTED	0x00
#define ERR_OFFSET_DWLENGTH	1
#define ERR_OFFSET_BSLOT	5
#define ERR_OFFSET_BPOWERSELECT 7
/* wLevelParameter / bChainParameter (6.1.4, 6.2.1) */
#define CHAIN_WHOLE    0x00
#define CHAIN_BEGIN    0x01
#define CHAIN_END      0x02
#define CHAIN_MIDDLE   0x03
#define CHAIN_CONTINUE 0x10

struct ccid_msg {
	uint8_t type, slot, seq, p[3];
	uint32_t len;
	const uint8_t *data;
};

/* Parses one whole message; PG_EFORMAT if the header is short or dwLength lies. */
int pgi_ccid_msg_parse(struct ccid_msg *m, const uint8_t *p, size_t n, size_t max);

int
pgi_ccid_msg_parse(struct ccid_msg *m, const uint8_t *p, size_t n, size_t max)
{
	memset(m, 0, sizeof(*m));
	if (n < CCID_HDR)
		return pg_error(PG_EFORMAT, "ccid", "message of %zu bytes", n);
	m->type = p[0];
	m->len = pg_le32(p + 1);
	m->slot = p[5];
	m->seq = p[6];
	memcpy(m->p, p + 7, 3);
	m->data = p + CCID_HDR;
	if (n > max)
		return pg_error(PG_ETOOBIG, "ccid", "message of %zu bytes > %zu", n, max);
	if (m->len != n - CCID_HDR)
		return pg_error(PG_EFORMAT, "ccid", "dwLength %u for %zu data bytes", m->len,
				n - CCID_HDR);
	return 0;
}

static void
put_hdr(uint8_t *o, uint8_t type, uint32_t len, uint8_t slot, uint8_t seq, uint8_t a, uint8_t b,
	uint8_t c)
{
	o[0] = type;
	pg_put_le32(o + 1, len);
	o[5] = slot;
	o[6] = seq;
	o[7] = a;
	o[8] = b;
	o[9] = c;
}

static const char *
ccid_err_name(uint8_t e)
{
	switch (e) {
	case ERR_CMD_ABORTED:
		return "CMD_ABORTED";
	case ERR_ICC_MUTE:
		return "ICC_MUTE";
	case ERR_XFR_PARITY:
		return "XFR_PARITY_ERROR";
	case ERR_XFR_OVERRUN:
		return "XFR_OVERRUN";
	case ERR_HW_ERROR:
		return "HW_ERROR";
	case ERR_CMD_SLOT_BUSY:
		return "CMD_SLOT_BUSY";
	case ERR_CMD_NOT_SUPPORTED:
		return "command not supported";
	default:
		return e < 0x80 ? "bad parameter" : "reader error";
	}
}

/* ---------------- host role ---------------- */

struct ccid_host {
	struct pg_link base;
	struct pg_stream *s;
	int timeout_ms;
	size_t max;
	uint8_t seq;
	int powered;
	uint8_t *buf; /* one message in or out */
	uint64_t time_ext, stale;
};

/* Maps a failed bStatus/bError to a code with a detail. */
static int
host_status_error(const struct ccid_msg *m, const char *what)
{
	uint8_t st = m->p[0], err = m->p[1];

	if ((st & 3) == ICC_ABSENT)
		return pg_error(PG_ENOCARD, "ccid", "%s: no ICC in slot %u", what, m->slot);
	switch (err) {
	case ERR_ICC_MUTE:
		return pg_error(PG_ETIMEDOUT, "ccid", "%s: ICC mute (bError FE)", what);
	case ERR_CMD_SLOT_BUSY:
		return pg_error(PG_EBUSY, "ccid", "%s: slot busy (bError E0)", what);
	case ERR_XFR_PARITY:
	case ERR_XFR_OVERRUN:
	case ERR_HW_ERROR:
		return pg_error(PG_ELINK, "ccid", "%s: %s (bError %02X)", what, ccid_err_name(err),
				err);
	case ERR_CMD_NOT_SUPPORTED:
		return pg_error(PG_ENOTSUP, "ccid", "%s: command not supported", what);
	default:
		return pg_error(PG_EPROTO, "ccid", "%s: %s (bError %02X)", what, ccid_err_name(err),
				err);
	}
}

/* Writes one bulk transfer: full packets, then a short (maybe empty) one. */
static int
usb_bulk_out(struct pg_stream *s, const uint8_t *p, size_t n, int zlp)
{
	for (;;) {
		size_t k = n < USB_MAX_PACKET ? n : USB_MAX_PACKET;
		int rc;

		if (k == 0 && !zlp)
			return 0;
		rc = pg_stream_write(s, p, k);
		if (rc < 0 || k < USB_MAX_PACKET)
			return rc;
		p += k;
		n -= k;
	}
}

static int
host_send(struct ccid_host *h, uint8_t type, const uint8_t *d, size_t n, uint8_t a, uint8_t b,
	  uint8_t c)
{
	h->seq++;
	put_hdr(h->buf, type, (uint32_t)n, 0, h->seq, a, b, c);
	if (n)
		memcpy(h->buf + CCID_HDR, d, n);
	return usb_bulk_out(h->s, h->buf, CCID_HDR + n, 1);
}

/*
 * Reads the answer to our last message: skips answers to older bSeq values,
 * waits again on time extension; checks type and dwLength.
 */
#define CCID_MAX_WAITS 10000 /* time extensions + stale answers tolerated per command */

static int
host_recv(struct ccid_host *h, uint8_t want_type, struct ccid_msg *m, const char *what)
{
	for (int waits = 0;; waits++) {
		size_t len;
		int rc = pg_stream_read_full(h->s, h->buf, CCID_HDR, h->timeout_ms);

		if (waits > CCID_MAX_WAITS)
			return pg_error(PG_ETIMEDOUT, "ccid", "%s: reader keeps asking for time",
					what);
		if (rc < 0)
			return rc == PG_ETIMEDOUT ? pg_error(PG_ETIMEDOUT, "ccid",
							     "%s: no answer from the reader", what)
						  : rc;
		len = pg_le32(h->buf + 1);
		if (len > h->max - CCID_HDR) {
			pg_stream_flush(h->s);
			return pg_error(PG_EPROTO, "ccid", "%s: dwLength %zu > %zu", what, len,
					h->max - CCID_HDR);
		}
		rc = pg_stream_read_full(h->s, h->buf + CCID_HDR, len, h->timeout_ms);
		if (rc < 0) {
			pg_stream_flush(h->s);
			return pg_error(PG_EPROTO, "ccid", "%s: message shorter than dwLength %zu",
					what, len);
		}
		rc = pgi_ccid_msg_parse(m, h->buf, CCID_HDR + len, h->max);
		if (rc < 0)
			return rc;
		if (m->seq != h->seq) {
			h->stale++;
			pg_debug("ccid", "dropping answer with bSeq %u (want %u)", m->seq, h->seq);
			continue;
		}
		if (m->type != want_type)
			return pg_error(PG_EPROTO, "ccid", "%s: answer type %02X, want %02X", what,
					m->type, want_type);
		if ((m->p[0] & 0xC0) == CMD_TIME_EXT) {
			h->time_ext++; /* 6.2.6: the reader needs more time (BWT multiples) */
			continue;
		}
		if (m->p[0] & CMD_FAILED)
			return host_status_error(m, what);
		return 0;
	}
}

static int
ccid_power_on(struct pg_link *l, uint8_t *atr, size_t *atrlen)
{
	struct ccid_host *h = (struct ccid_host *)l;
	struct ccid_msg m;
	int rc;

	h->powered = 0;
	rc = host_send(h, PC_TO_RDR_GETSLOTSTATUS, NULL, 0, 0, 0, 0);
	if (rc < 0)
		return rc;
	rc = host_recv(h, RDR_TO_PC_SLOTSTATUS, &m, "GetSlotStatus");
	if (rc < 0)
		return rc;
	if ((m.p[0] & 3) == ICC_ABSENT)
		return pg_error(PG_ENOCARD, "ccid", "no ICC in the reader's slot");
	rc = host_send(h, PC_TO_RDR_ICCPOWERON, NULL, 0, 0 /* automatic voltage */, 0, 0);
	if (rc < 0)
		return rc;
	rc = host_recv(h, RDR_TO_PC_DATABLOCK, &m, "IccPowerOn");
	if (rc < 0)
		return rc;
	if (m.len < 2 || m.len > PG_ATR_MAX || m.len > *atrlen)
		return pg_error(PG_EPROTO, "ccid", "ATR of %u bytes", m.len);
	memcpy(atr, m.data, m.len);
	*atrlen = m.len;
	h->powered = 1;
	return 0;
}

static int
ccid_transmit(struct pg_link *l, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t *rlen)
{
	struct ccid_host *h = (struct ccid_host *)l;
	size_t room = h->max - CCID_HDR, off = 0, got = 0;
	struct ccid_msg m;
	int rc;

	if (!h->powered)
		return pg_error(PG_ESTATE, "ccid", "ICC not powered: power on first");
	/* Command: one XfrBlock, or a chain of them (wLevelParameter 01, 03..., 02). */
	for (;;) {
		size_t chunk = clen - off < room ? clen - off : room;
		int first = off == 0, last = off + chunk == clen;
		uint16_t level = first && last ? CHAIN_WHOLE
				 : first       ? CHAIN_BEGIN
				 : last	       ? CHAIN_END
					       : CHAIN_MIDDLE;

		rc = host_send(h, PC_TO_RDR_XFRBLOCK, capdu + off, chunk, 0, (uint8_t)level,
			       (uint8_t)(level >> 8));
		if (rc < 0)
			return rc;
		rc = host_recv(h, RDR_TO_PC_DATABLOCK, &m, "XfrBlock");
		if (rc < 0)
			goto fail;
		off += chunk;
		if (last)
			break;
		if (m.p[2] != CHAIN_CONTINUE || m.len) {
			rc = pg_error(PG_EPROTO, "ccid", "reader did not ask for the next block");
			goto fail;
		}
	}
	/* Response: bChainParameter 00, or 01 (03...) 02 pulled with wLevelParameter 10. */
	for (;;) {
		uint8_t chain = m.p[2];

		if (got + m.len > *rlen)
			return pg_error(PG_ETOOBIG, "ccid", "R-APDU longer than %zu bytes", *rlen);
		memcpy(rapdu + got, m.data, m.len);
		got += m.len;
		if (chain == CHAIN_WHOLE || chain == CHAIN_END)
			break;
		if (chain != CHAIN_BEGIN && chain != CHAIN_MIDDLE) {
			rc = pg_error(PG_EPROTO, "ccid", "bChainParameter %02X", chain);
			goto fail;
		}
		rc = host_send(h, PC_TO_RDR_XFRBLOCK, NULL, 0, 0, CHAIN_CONTINUE, 0);
		if (rc < 0)
			return rc;
		rc = host_recv(h, RDR_TO_PC_DATABLOCK, &m, "XfrBlock (response chain)");
		if (rc < 0)
			goto fail;
	}
	if (got < 2)
		return pg_error(PG_EPROTO, "ccid", "R-APDU of %zu bytes", got);
	*rlen = got;
	return 0;
fail:
	if (rc == PG_ENOCARD)
		h->powered = 0;
	return rc;
}

static void
ccid_host_close(struct pg_link *l)
{
	struct ccid_host *h = (struct ccid_host *)l;

	if (!h)
		return;
	if (h->powered && host_send(h, PC_TO_RDR_ICCPOWEROFF, NULL, 0, 0, 0, 0) == 0) {
		struct ccid_msg m;

		h->timeout_ms = h->timeout_ms < 200 ? h->timeout_ms : 200;
		(void)host_recv(h, RDR_TO_PC_SLOTSTATUS, &m, "IccPowerOff");
	}
	pg_stream_free(h->s);
	free(h->buf);
	free(h);
}

static int
ccid_host_open(struct pg_link **out, struct pg_stream *s, const char *addr,
	       const struct pg_link_params *p)
{
	struct ccid_host *h;
	size_t max = p && p->max_frame ? p->max_frame : CCID_DEFAULT_MAX;

	(void)addr;
	*out = NULL;
	if (!s)
		return pg_error(PG_EINVAL, "ccid", "the CCID host needs a stream");
	if (max < CCID_MIN_MAX || max > CCID_DEFAULT_MAX) {
		pg_stream_free(s);
		return pg_error(PG_EINVAL, "ccid", "dwMaxCCIDMessageLength %zu (allowed %u..%u)",
				max, CCID_MIN_MAX, CCID_DEFAULT_MAX);
	}
	h = calloc(1, sizeof(*h));
	if (!h || !(h->buf = malloc(max))) {
		free(h);
		pg_stream_free(s);
		return PG_ENOMEM;
	}
	h->base.ops = &pgi_link_ccid_ops;
	h->s = s;
	h->max = max;
	h->timeout_ms = p && p->timeout_ms ? p->timeout_ms : 1000;
	*out = &h->base;
	return 0;
}

/* ---------------- card role: the reader and its slot ---------------- */

struct ccid_card {
	struct pg_link_card base;
	struct pg_card card;
	size_t max;
	int powered;
	uint8_t *capdu, *rapdu, *out, *in;
	size_t clen, rlen, roff, inlen;
	int overflow; /* the current transfer exceeds dwMaxCCIDMessageLength */
	int chaining_in, chaining_out;
};

static int
rdr_send(struct ccid_card *c, struct pg_stream *o, uint8_t type, uint8_t seq, uint8_t status,
	 uint8_t err, uint8_t p3, const uint8_t *d, size_t n)
{
	put_hdr(c->out, type, (uint32_t)n, 0, seq, status, err, p3);
	if (n)
		memcpy(c->out + CCID_HDR, d, n);
	return usb_bulk_out(o, c->out, CCID_HDR + n, 0);
}

/* Answer type for a command that failed before it ran. */
static uint8_t
answer_type(uint8_t cmd)
{
	switch (cmd) {
	case PC_TO_RDR_ICCPOWERON:
	case PC_TO_RDR_XFRBLOCK:
	case PC_TO_RDR_SECURE:
	case PC_TO_RDR_T0APDU:
		return RDR_TO_PC_DATABLOCK;
	case PC_TO_RDR_GETPARAMETERS:
	case PC_TO_RDR_RESETPARAMETERS:
	case PC_TO_RDR_SETPARAMETERS:
		return RDR_TO_PC_PARAMETERS;
	case PC_TO_RDR_ESCAPE:
		return RDR_TO_PC_ESCAPE;
	default:
		return RDR_TO_PC_SLOTSTATUS;
	}
}

static int
icc_present(struct ccid_card *c, uint8_t *atr, size_t *alen)
{
	uint8_t tmp[PG_ATR_MAX];
	size_t tl = sizeof(tmp);
	int rc = c->card.atr(c->card.ctx, atr ? atr : tmp, alen ? alen : &tl);

	return rc == PG_ENOCARD ? 0 : rc < 0 ? rc : 1;
}

static uint8_t
icc_status(struct ccid_card *c)
{
	if (icc_present(c, NULL, NULL) <= 0) {
		c->powered = 0;
		return ICC_ABSENT;
	}
	return c->powered ? ICC_ACTIVE : ICC_INACTIVE;
}

static int
rdr_fail(struct ccid_card *c, struct pg_stream *o, const struct ccid_msg *m, uint8_t err)
{
	return rdr_send(c, o, answer_type(m->type), m->seq, (uint8_t)(CMD_FAILED | icc_status(c)),
			err, 0, NULL, 0);
}

static int
rdr_send_rchunk(struct ccid_card *c, struct pg_stream *o, uint8_t seq)
{
	size_t room = c->max - CCID_HDR,
	       chunk = c->rlen - c->roff < room ? c->rlen - c->roff : room;
	int first = c->roff == 0, last = c->roff + chunk == c->rlen;
	uint8_t chain = first && last ? CHAIN_WHOLE
			: first	      ? CHAIN_BEGIN
			: last	      ? CHAIN_END
				      : CHAIN_MIDDLE;
	int rc = rdr_send(c, o, RDR_TO_PC_DATABLOCK, seq, ICC_ACTIVE, 0, chain, c->rapdu + c->roff,
			  chunk);

	c->roff += chunk;
	c->chaining_out = !last;
	return rc;
}

static int
rdr_xfrblock(struct ccid_card *c, struct pg_stream *o, const struct ccid_msg *m)
{
	uint16_t level = (uint16_t)(m->p[1] | m->p[2] << 8);
	int rc;

	if (!c->powered)
		return rdr_fail(c, o, m, ERR_ICC_MUTE);
	if (level == CHAIN_CONTINUE) {
		if (!c->chaining_out || m->len)
			return rdr_fail(c, o, m, 8); /* wLevelParameter (offset 8) out of turn */
		return rdr_send_rchunk(c, o, m->seq);
	}
	if (level != CHAIN_WHOLE && level != CHAIN_BEGIN && level != CHAIN_END &&
	    level != CHAIN_MIDDLE)
		return rdr_fail(c, o, m, 8);
	if ((level == CHAIN_WHOLE || level == CHAIN_BEGIN) ? c->chaining_in : !c->chaining_in) {
		c->chaining_in = 0;
		c->clen = 0;
		return rdr_fail(c, o, m, 8);
	}
	if (level == CHAIN_WHOLE || level == CHAIN_BEGIN)
		c->clen = 0;
	c->chaining_out = 0;
	if (m->len > PG_APDU_MAX_C - c->clen) {
		c->chaining_in = 0;
		c->clen = 0;
		return rdr_fail(c, o, m, ERR_XFR_OVERRUN);
	}
	memcpy(c->capdu + c->clen, m->data, m->len);
	c->clen += m->len;
	if (level == CHAIN_BEGIN || level == CHAIN_MIDDLE) {
		c->chaining_in = 1;
		return rdr_send(c, o, RDR_TO_PC_DATABLOCK, m->seq, ICC_ACTIVE, 0, CHAIN_CONTINUE,
				NULL, 0);
	}
	c->chaining_in = 0;
	c->rlen = PG_APDU_MAX_R;
	rc = c->card.process(c->card.ctx, c->capdu, c->clen, c->rapdu, &c->rlen);
	c->clen = 0;
	if (rc < 0)
		return rdr_fail(c, o, m, ERR_ICC_MUTE);
	c->base.apdus++;
	c->roff = 0;
	return rdr_send_rchunk(c, o, m->seq);
}

static int
ccid_card_packet(struct pg_link_card *lc, int type, const uint8_t *data, size_t n,
		 struct pg_stream *o)
{
	struct ccid_card *c = (struct ccid_card *)lc;
	struct ccid_msg m;
	int rc;

	if (type != PG_PKT_DATA)
		return 0; /* USB has no reset line: IccPowerOn/Off carry power */
	if (n > USB_MAX_PACKET)
		return pg_error(PG_EPROTO, "ccid", "USB packet of %zu bytes", n);
	/* Collect one bulk transfer; it ends with a short packet. */
	{
		size_t take = n;

		if (c->overflow || c->inlen + n > c->max) {
			/* Too long: keep only the header, to answer with its bSeq. */
			c->overflow = 1;
			take = c->inlen < CCID_HDR ? CCID_HDR - c->inlen : 0;
			take = take < n ? take : n;
		}
		if (take)
			memcpy(c->in + c->inlen, data, take);
		c->inlen += take;
	}
	if (n == USB_MAX_PACKET)
		return 0;
	n = c->inlen;
	c->inlen = 0;
	if (c->overflow) {
		c->overflow = 0;
		if (n < CCID_HDR)
			return 0;
		(void)pgi_ccid_msg_parse(&m, c->in, CCID_HDR, CCID_HDR);
		return rdr_fail(c, o, &m, ERR_OFFSET_DWLENGTH);
	}
	data = c->in;
	rc = pgi_ccid_msg_parse(&m, data, n, c->max);
	if (rc < 0)
		return n >= CCID_HDR ? rdr_fail(c, o, &m, ERR_OFFSET_DWLENGTH) : 0;
	if (m.slot != 0)
		return rdr_send(c, o, answer_type(m.type), m.seq, CMD_FAILED | ICC_ABSENT,
				ERR_OFFSET_BSLOT, 0, NULL, 0);
	switch (m.type) {
	case PC_TO_RDR_GETSLOTSTATUS:
		return rdr_send(c, o, RDR_TO_PC_SLOTSTATUS, m.seq, icc_status(c), 0,
				c->powered ? 0x00 : 0x01 /* clock running / stopped */, NULL, 0);
	case PC_TO_RDR_ICCPOWERON: {
		uint8_t atr[PG_ATR_MAX];
		size_t alen = sizeof(atr);

		if (m.p[0] > 3)
			return rdr_fail(c, o, &m, ERR_OFFSET_BPOWERSELECT);
		rc = icc_present(c, atr, &alen);
		if (rc <= 0)
			return rdr_send(c, o, RDR_TO_PC_DATABLOCK, m.seq, CMD_FAILED | ICC_ABSENT,
					ERR_ICC_MUTE, 0, NULL, 0);
		if (c->card.reset)
			c->card.reset(c->card.ctx);
		c->powered = 1;
		c->chaining_in = c->chaining_out = 0;
		c->clen = 0;
		return rdr_send(c, o, RDR_TO_PC_DATABLOCK, m.seq, ICC_ACTIVE, 0, 0, atr, alen);
	}
	case PC_TO_RDR_ICCPOWEROFF:
		if (c->powered && c->card.reset)
			c->card.reset(c->card.ctx);
		c->powered = 0;
		c->chaining_in = c->chaining_out = 0;
		return rdr_send(c, o, RDR_TO_PC_SLOTSTATUS, m.seq, icc_status(c), 0, 0x01, NULL, 0);
	case PC_TO_RDR_XFRBLOCK:
		if (icc_status(c) == ICC_ABSENT)
			return rdr_send(c, o, RDR_TO_PC_DATABLOCK, m.seq, CMD_FAILED | ICC_ABSENT,
					ERR_ICC_MUTE, 0, NULL, 0);
		return rdr_xfrblock(c, o, &m);
	case PC_TO_RDR_ABORT:
		c->chaining_in = c->chaining_out = 0;
		c->clen = 0;
		return rdr_send(c, o, RDR_TO_PC_SLOTSTATUS, m.seq, icc_status(c), 0, 0, NULL, 0);
	default:
		return rdr_fail(c, o, &m, ERR_CMD_NOT_SUPPORTED);
	}
}

static void
ccid_card_close(struct pg_link_card *lc)
{
	struct ccid_card *c = (struct ccid_card *)lc;

	if (!c)
		return;
	free(c->capdu);
	free(c->rapdu);
	free(c->out);
	free(c->in);
	free(c);
}

static int
ccid_card_open(struct pg_link_card **out, const struct pg_card *card,
	       const struct pg_link_params *p)
{
	struct ccid_card *c;
	size_t max = p && p->max_frame ? p->max_frame : CCID_DEFAULT_MAX;

	*out = NULL;
	if (max < CCID_MIN_MAX || max > CCID_DEFAULT_MAX)
		return pg_error(PG_EINVAL, "ccid", "dwMaxCCIDMessageLength %zu (allowed %u..%u)",
				max, CCID_MIN_MAX, CCID_DEFAULT_MAX);
	c = calloc(1, sizeof(*c));
	if (!c || !(c->capdu = malloc(PG_APDU_MAX_C)) || !(c->rapdu = malloc(PG_APDU_MAX_R)) ||
	    !(c->out = malloc(max)) || !(c->in = malloc(max))) {
		ccid_card_close(c ? &c->base : NULL);
		return PG_ENOMEM;
	}
	c->base.ops = &pgi_link_ccid_ops;
	c->card = *card;
	c->max = max;
	*out = &c->base;
	return 0;
}

const struct pg_link_ops pgi_link_ccid_ops = {
    .name = "ccid",
    .type = PG_LINK_CCID,
    .max_capdu = PG_APDU_MAX_C,
    .max_rapdu = PG_APDU_MAX_R,
    .host_open = ccid_host_open,
    .power_on = ccid_power_on,
    .transmit = ccid_transmit,
    .host_close = ccid_host_close,
    .card_open = ccid_card_open,
    .card_packet = ccid_card_packet,
    .card_close = ccid_card_close,
};
