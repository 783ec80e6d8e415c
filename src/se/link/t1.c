/*
 * ISO/IEC 7816-3:2006 clause 11, T=1 half-duplex block protocol: host role
 * (interface device) and card role over a pg_stream. I-blocks with N(S) and
 * chaining both ways, R-blocks, S-blocks (RESYNCH, IFS, ABORT, WTX), LRC/CRC,
 * IFSD negotiation after the ATR and the error recovery rules of 11.6.
 * Exactly-once: the card keeps the last block it sent and its sequence
 * state, so a lost or corrupted frame is answered by resending, never by
 * executing a command again.
 *
 * This is the project's one T=1 block engine: it runs with a framing
 * description (t1_proto.h): NAD bytes, 1- or 2-byte LEN, LRC/CRC and the
 * rules of GlobalPlatform's SPI/I2C variant (GPC_SPE_172: S(CIP) instead of
 * an ATR, S(SWR), S(RELEASE), 2-byte S(IFS)), which spi.c describes. A card
 * asking for more time is granted the extension for the next block only and
 * at most T1_MAX_WTX times per exchange, on every framing.
 */
#include "atr.h"
#include "drivers.h"
#include "t1_proto.h"

#include "payguard/buf.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PCB_R	  0x80
#define PCB_S	  0xC0
#define PCB_S_RSP 0x20
#define PCB_M	  0x20

#define DEFAULT_TIMEOUT_MS 1000
#define DEFAULT_RETRIES	   3
#define DEFAULT_IFS	   32

/* ---- blocks ---- */

uint8_t
pgi_t1_lrc(const uint8_t *p, size_t n)
{
	uint8_t x = 0;

	while (n--)
		x ^= *p++;
	return x;
}

/*
 * Reflected x^16 + x^12 + x^5 + 1 (8408) four bits at a time: a 16-entry
 * constant table, so nothing is initialised at run time (threads share it).
 */
static const uint16_t crc_nibble[16] = {
    0x0000, 0x1081, 0x2102, 0x3183, 0x4204, 0x5285, 0x6306, 0x7387,
    0x8408, 0x9489, 0xA50A, 0xB58B, 0xC60C, 0xD68D, 0xE70E, 0xF78F,
};

uint16_t
pgi_t1_crc(const uint8_t *p, size_t n)
{
	uint16_t v = 0xFFFF;

	while (n--) {
		uint8_t x = *p++;

		v = (uint16_t)((v >> 4) ^ crc_nibble[(v ^ x) & 0x0F]);
		v = (uint16_t)((v >> 4) ^ crc_nibble[(v ^ (x >> 4)) & 0x0F]);
	}
	return v;
}

const struct t1_framing pgi_t1_framing_iso = {
    .name = "t1",
    .ops = &pgi_link_t1_ops,
    .len_bytes = 1,
    .crc16 = pgi_t1_crc,
    .default_ifs = DEFAULT_IFS,
    .max_ifs = T1_MAX_INF,
};

static size_t
hdr_len(const struct t1_framing *f)
{
	return 2u + f->len_bytes;
}

/* The largest block of a framing: prologue, INF of the largest IFS (or CIP), CRC. */
static size_t
block_cap(const struct t1_framing *f)
{
	size_t inf = f->max_ifs > T1_CIP_MAX ? f->max_ifs : T1_CIP_MAX;

	return f->len_bytes == 1 ? T1_MAX_BLOCK : hdr_len(f) + inf + 2;
}

size_t
pgi_t1_encode_framed(const struct t1_framing *f, uint8_t *out, uint8_t nad, uint8_t pcb,
		     const uint8_t *inf, size_t len, int crc)
{
	size_t h = hdr_len(f);

	out[0] = nad;
	out[1] = pcb;
	if (f->len_bytes == 2)
		pg_put_be16(out + 2, (uint16_t)len);
	else
		out[2] = (uint8_t)len;
	if (len)
		memcpy(out + h, inf, len);
	if (crc || f->crc_only) {
		pg_put_be16(out + h + len, f->crc16(out, h + len));
		return h + len + 2;
	}
	out[h + len] = pgi_t1_lrc(out, h + len);
	return h + len + 1;
}

size_t
pgi_t1_encode(uint8_t *out, uint8_t nad, uint8_t pcb, const uint8_t *inf, size_t len, int crc)
{
	return pgi_t1_encode_framed(&pgi_t1_framing_iso, out, nad, pcb, inf, len, crc);
}

/* S-block INF rules of the framing (11.3.2.2; GP variant). */
static int
s_block_valid(const struct t1_framing *f, const struct t1_block *b)
{
	size_t v;

	switch (b->stype) {
	case T1_S_RESYNCH:
	case T1_S_ABORT:
		return b->len == 0;
	case T1_S_IFS:
		if (!f->gp) /* IFS values 00 and FF are reserved. */
			return b->len == 1 && b->inf[0] != 0 && b->inf[0] != 0xFF;
		if (b->len != 1 && b->len != 2)
			return 0;
		v = b->len == 1 ? b->inf[0] : pg_be16(b->inf);
		return v >= 1 && v <= f->max_ifs;
	case T1_S_WTX:
		return b->len == 1 && b->inf[0] != 0;
	case T1_S_CIP:
		return f->gp && (b->resp ? b->len <= T1_CIP_MAX : b->len == 0);
	case T1_S_RELEASE:
	case T1_S_SWR:
		return f->gp && b->len == 0;
	default:
		return 0; /* VPP error (4) is not used by contact-less-power cards */
	}
}

int
pgi_t1_decode_framed(const struct t1_framing *f, struct t1_block *b, const uint8_t *p, size_t n,
		     int crc)
{
	size_t h = hdr_len(f), edc, len;

	crc = crc || f->crc_only;
	edc = crc ? 2 : 1;
	memset(b, 0, sizeof(*b));
	if (n < h + edc)
		return PG_EFORMAT;
	len = f->len_bytes == 2 ? pg_be16(p + 2) : p[2];
	if ((f->len_bytes == 1 && len == 255) || n != h + len + edc)
		return PG_EFORMAT;
	if (crc ? pg_be16(p + h + len) != f->crc16(p, h + len) : pgi_t1_lrc(p, h + len + 1) != 0)
		return PG_ECORRUPT;
	b->nad = p[0];
	b->pcb = p[1];
	b->inf = p + h;
	b->len = len;
	if (!(b->pcb & 0x80)) {
		/* I-block: b7 N(S), b6 M, b5..b1 reserved (0). */
		if (b->pcb & 0x1F)
			return PG_EFORMAT;
		b->kind = T1_I;
		b->ns = (b->pcb >> 6) & 1;
		b->m = (b->pcb >> 5) & 1;
		return 0;
	}
	if ((b->pcb & 0xC0) == PCB_R) {
		/* R-block: b5 N(R), b4..b1 0 / 1 / 2; b6 reserved; no information field. */
		b->kind = T1_R;
		b->nr = (b->pcb >> 4) & 1;
		b->err = b->pcb & 0x0F;
		if ((b->pcb & 0x20) || b->err > 2 || len != 0)
			return PG_EFORMAT;
		return 0;
	}
	b->kind = T1_S;
	b->resp = (b->pcb & PCB_S_RSP) != 0;
	b->stype = b->pcb & 0x1F;
	return s_block_valid(f, b) ? 0 : PG_EFORMAT;
}

int
pgi_t1_decode(struct t1_block *b, const uint8_t *f, size_t n, int crc)
{
	return pgi_t1_decode_framed(&pgi_t1_framing_iso, b, f, n, crc);
}

/* An S(IFS) value: 1 byte, or 2 big-endian bytes in the GP variant. */
static size_t
ifs_value(const struct t1_block *b)
{
	return b->len == 1 ? b->inf[0] : pg_be16(b->inf);
}

static size_t
ifs_encode(uint8_t inf[2], size_t v)
{
	if (v <= T1_MAX_INF) {
		inf[0] = (uint8_t)v;
		return 1;
	}
	pg_put_be16(inf, (uint16_t)v);
	return 2;
}

static int
params_defaults(struct pg_link_params *d, const struct pg_link_params *p,
		const struct t1_framing *f)
{
	memset(d, 0, sizeof(*d));
	if (p)
		*d = *p;
	if (f->gp && (d->ifsc > f->max_ifs || d->ifsd > f->max_ifs))
		return pg_error(PG_EINVAL, f->name, "IFS above %zu", f->max_ifs);
	if (d->timeout_ms <= 0)
		d->timeout_ms = DEFAULT_TIMEOUT_MS;
	if (d->retries <= 0)
		d->retries = DEFAULT_RETRIES;
	/* GP host: IFSC 0 means "take the CIP's". */
	if (d->ifsc == 0 && !f->gp)
		d->ifsc = DEFAULT_IFS;
	if (d->ifsd == 0)
		d->ifsd = T1_MAX_INF;
	if (d->ifsc > f->max_ifs)
		d->ifsc = (uint16_t)f->max_ifs;
	if (d->ifsd > f->max_ifs)
		d->ifsd = (uint16_t)f->max_ifs;
	if (f->crc_only)
		d->crc = 1;
	return 0;
}

/* ---- host role (interface device) ---- */

struct t1_host {
	struct pg_link base;
	const struct t1_framing *f;
	struct pg_stream *s;
	struct pg_link_params p;
	int powered, crc;
	size_t ifsc, ifsd, atr_ifsc;
	int ns;		/* N(S) of our current / next I-block */
	int nr;		/* N(S) we expect in the card's next I-block */
	int wtx;	/* multiplier for the next wait only (0 = none) */
	uint8_t last_r; /* PCB of the last block sent if it was an R-block, else 0 */
	uint64_t retransmits, resyncs;
	size_t cap;	  /* size of tx and rx: the framing's largest block */
	uint8_t *tx, *rx; /* last block sent; block being read */
};

static int
host_send(struct t1_host *h, uint8_t pcb, const uint8_t *inf, size_t len)
{
	size_t n = pgi_t1_encode_framed(h->f, h->tx, h->f->nad_host, pcb, inf, len, h->crc);

	h->last_r = (pcb & 0xC0) == PCB_R ? pcb : 0;
	return pg_stream_write(h->s, h->tx, n);
}

/*
 * The wait for the card's next block: the block waiting time, times the
 * multiplier of a WTX the card asked for and we granted (rule 3: for the
 * next block only).
 */
static int
host_wait_ms(struct t1_host *h)
{
	long long tmo = (long long)h->p.timeout_ms * (h->wtx ? h->wtx : 1);

	h->wtx = 0;
	return tmo > 0x7FFFFFFF ? 0x7FFFFFFF : (int)tmo;
}

/* Reads the prologue; on SPI first skips the idle bytes before the card's NAD. */
static int
host_read_prologue(struct t1_host *h, int tmo)
{
	size_t hl = hdr_len(h->f);
	int rc;

	if (!h->f->max_filler)
		return pg_stream_read_full(h->s, h->rx, hl, tmo);
	for (int skipped = 0;; skipped++) {
		if (skipped > h->f->max_filler)
			return PG_EFORMAT;
		rc = pg_stream_read(h->s, h->rx, 1, tmo);
		if (rc < 0)
			return rc;
		if (h->rx[0] == h->f->nad_card)
			break;
	}
	return pg_stream_read_full(h->s, h->rx + 1, hl - 1, tmo);
}

/*
 * Receives one block. Returns 0, PG_ETIMEDOUT / PG_ECORRUPT / PG_EFORMAT
 * (an invalid block: recoverable), or PG_ECLOSED / PG_EIO (fatal).
 */
static int
host_recv(struct t1_host *h, struct t1_block *b)
{
	int tmo = host_wait_ms(h);
	size_t hl = hdr_len(h->f), edc = h->crc ? 2 : 1, len;
	int rc;

	rc = host_read_prologue(h, tmo);
	if (rc < 0)
		goto bad;
	len = h->f->len_bytes == 2 ? pg_be16(h->rx + 2) : h->rx[2];
	if ((h->f->len_bytes == 1 && len == 255) || hl + len + edc > h->cap) {
		rc = PG_EFORMAT;
		goto bad;
	}
	rc = pg_stream_read_full(h->s, h->rx + hl, len + edc, tmo);
	if (rc < 0)
		goto bad;
	rc = pgi_t1_decode_framed(h->f, b, h->rx, hl + len + edc, h->crc);
	if (rc == 0 && h->f->check_nad && b->nad != h->f->nad_card)
		rc = PG_EFORMAT;
	if (rc == 0)
		return 0;
bad:
	if (rc == PG_ECLOSED || rc == PG_EIO)
		return rc;
	/* Drop the rest of a damaged frame so the next read starts on a boundary. */
	pg_stream_flush(h->s);
	return rc;
}

static int
is_fatal(int rc)
{
	return rc == PG_ECLOSED || rc == PG_EIO || rc == PG_ENOMEM;
}

/*
 * Rule 3: grants the card's S(WTX request) — the multiplier applies to the
 * wait for the next block only — unless the card has already asked
 * T1_MAX_WTX times in this exchange (`*count`): then it is a card that will
 * never answer, and the caller gives up with PG_ETIMEDOUT (returned here
 * without a message; the caller says what it gave up on).
 */
static int
host_grant_wtx(struct t1_host *h, const struct t1_block *b, int *count)
{
	if (++*count > T1_MAX_WTX)
		return PG_ETIMEDOUT;
	h->wtx = b->inf[0];
	return host_send(h, PCB_S | PCB_S_RSP | T1_S_WTX, b->inf, 1);
}

static const char *
s_name(int stype)
{
	switch (stype) {
	case T1_S_RESYNCH:
		return "RESYNCH";
	case T1_S_IFS:
		return "IFS";
	case T1_S_ABORT:
		return "ABORT";
	case T1_S_CIP:
		return "CIP";
	case T1_S_RELEASE:
		return "RELEASE";
	case T1_S_SWR:
		return "SWR";
	default:
		return "?";
	}
}

/*
 * One S(request)/S(response) exchange (IFS, RESYNCH, ABORT; CIP, SWR,
 * RELEASE on GP links), resending the request on a missing or invalid answer
 * (rule 7.3). Grants WTX on the way, within the cap. *b holds the response
 * (valid until the next read).
 */
static int
host_s_exchange(struct t1_host *h, int stype, const uint8_t *inf, size_t len, struct t1_block *b)
{
	int rc, wtx = 0;

	for (int tries = 0; tries <= h->p.retries; tries++) {
		pg_stream_flush(h->s);
		rc = host_send(h, (uint8_t)(PCB_S | stype), inf, len);
		if (rc < 0)
			return rc;
		for (;;) {
			rc = host_recv(h, b);
			if (is_fatal(rc))
				return rc;
			if (rc < 0 || b->kind != T1_S || b->resp || b->stype != T1_S_WTX)
				break;
			rc = host_grant_wtx(h, b, &wtx);
			if (rc == PG_ETIMEDOUT)
				return pg_error(PG_ETIMEDOUT, h->f->name,
						"no S(%s response): the card asked for more time "
						"(S(WTX)) %d times; gave up",
						s_name(stype), T1_MAX_WTX + 1);
			if (rc < 0)
				return rc;
		}
		if (rc == 0 && b->kind == T1_S && b->resp && b->stype == stype &&
		    (stype != T1_S_IFS || (b->len == len && memcmp(b->inf, inf, len) == 0)))
			return 0;
	}
	return pg_error(PG_ELINK, h->f->name, "no S(%s response) after %d attempts", s_name(stype),
			h->p.retries + 1);
}

static int
host_negotiate_ifsd(struct t1_host *h)
{
	uint8_t inf[2];
	size_t n = ifs_encode(inf, h->p.ifsd);
	struct t1_block b;
	int rc = host_s_exchange(h, T1_S_IFS, inf, n, &b);

	if (rc == 0)
		h->ifsd = h->p.ifsd;
	return rc;
}

/*
 * Rule 6.4 / 7.4: S(RESYNCH), then back to the initial state and IFSD again.
 * In the GP variant RESYNCH resets the sequence numbers only.
 */
static int
host_resync(struct t1_host *h)
{
	struct t1_block b;
	int rc;

	h->resyncs++;
	rc = host_s_exchange(h, T1_S_RESYNCH, NULL, 0, &b);
	if (rc < 0) {
		/* 7.4.3: without a resynchronisation the card needs a new reset. */
		h->powered = 0;
		return rc;
	}
	h->ns = h->nr = 0;
	if (h->f->gp)
		return 0;
	h->ifsc = h->atr_ifsc;
	h->ifsd = DEFAULT_IFS;
	rc = host_negotiate_ifsd(h);
	if (rc < 0)
		h->powered = 0;
	return rc;
}

/* ISO: reset, read the ATR (it carries its own length), take its protocol parameters. */
static int
host_power_on_atr(struct t1_host *h, uint8_t *atr, size_t *atrlen)
{
	uint8_t buf[PG_ATR_MAX];
	struct pg_atr a;
	size_t have = 0;
	int need = 2, rc;

	pg_stream_flush(h->s);
	rc = pg_stream_event(h->s, PG_PKT_RESET);
	if (rc < 0)
		return rc;
	while ((size_t)need > have) {
		rc = pg_stream_read_full(h->s, buf + have, (size_t)need - have, h->p.timeout_ms);
		if (rc < 0)
			return pg_error(rc == PG_ETIMEDOUT ? PG_ENOCARD : rc, "t1",
					"no complete ATR after %zu bytes", have);
		have = (size_t)need;
		need = pgi_atr_length(buf, have);
		if (need < 0)
			return need;
	}
	rc = pgi_atr_parse(&a, buf, have);
	if (rc < 0)
		return rc;
	if (!(a.protocols & 2))
		return pg_error(PG_EPROTO, "t1", "the card's ATR does not offer T=1");
	if (atr) {
		if (*atrlen < have)
			return PG_ETOOBIG;
		memcpy(atr, buf, have);
		*atrlen = have;
	}
	h->crc = a.crc;
	h->ifsc = h->atr_ifsc = a.ifsc;
	return 0;
}

/*
 * GP: reset, S(SWR) brings both ends to N(S) = 0 with default IFS, then the
 * CIP (the card's identity: its historical bytes are what power-on returns).
 */
static int
host_power_on_cip(struct t1_host *h, uint8_t *atr, size_t *atrlen)
{
	struct t1_block b;
	struct t1_ident id;
	int rc;

	rc = pg_stream_event(h->s, PG_PKT_RESET);
	if (rc < 0)
		return rc;
	pg_stream_flush(h->s);
	rc = host_s_exchange(h, T1_S_SWR, NULL, 0, &b);
	if (rc < 0)
		return rc;
	h->ns = h->nr = 0;
	rc = host_s_exchange(h, T1_S_CIP, NULL, 0, &b);
	if (rc < 0)
		return rc;
	rc = h->f->cip_parse(h->f, b.inf, b.len, &id);
	if (rc < 0)
		return rc;
	if (atr) {
		if (id.hblen > *atrlen || id.hblen > PG_ATR_MAX)
			return pg_error(PG_EPROTO, h->f->name, "CIP historical bytes of %zu bytes",
					id.hblen);
		memcpy(atr, id.hb, id.hblen);
		*atrlen = id.hblen;
	}
	h->ifsc = h->atr_ifsc = h->p.ifsc && h->p.ifsc < id.ifsc ? h->p.ifsc : id.ifsc;
	return 0;
}

int
pgi_t1_power_on(struct pg_link *l, uint8_t *atr, size_t *atrlen)
{
	struct t1_host *h = (struct t1_host *)l;
	int rc;

	h->powered = 0;
	h->wtx = 0;
	rc = h->f->gp ? host_power_on_cip(h, atr, atrlen) : host_power_on_atr(h, atr, atrlen);
	if (rc < 0)
		return rc;
	h->ifsd = h->f->default_ifs;
	h->ns = h->nr = 0;
	/* Rule 1: the first block after the ATR; tell the card our IFSD. */
	rc = host_negotiate_ifsd(h);
	if (rc < 0)
		return rc;
	h->powered = 1;
	return 0;
}

/* Copies response bytes, counting past the caller's capacity. */
static void
rsp_append(uint8_t *r, size_t cap, size_t *rn, const uint8_t *p, size_t n)
{
	if (*rn + n <= cap)
		memcpy(r + *rn, p, n);
	*rn += n;
}

/* Sends our I-block with the data at off. */
static int
host_send_i(struct t1_host *h, const uint8_t *capdu, size_t off, size_t chunk, int m)
{
	return host_send(h, (uint8_t)(h->ns << 6 | (m ? PCB_M : 0)), capdu + off, chunk);
}

/*
 * One command exchange of the host (pgi_t1_transmit): the command being sent in
 * chunks of IFSC, the response being gathered, and the counters that bound
 * recovery (7.4): `bad` counts invalid blocks or time-outs in a row (any valid
 * block resets it); `resent` counts retransmissions of the current block the
 * card asked for (progress resets it); `stall` bounds blocks without progress,
 * whatever a confused card does.
 */
struct t1_xchg {
	const uint8_t *capdu;
	size_t clen, off, chunk; /* command; the block in flight is capdu[off..off+chunk) */
	int m;			 /* the block in flight is chained */
	int acked;		 /* the card has acknowledged our last I-block */
	uint8_t *rapdu;
	size_t cap, rn; /* response room and bytes gathered (rn may pass cap) */
	int wtx_count, bad, resent, stall;
};

/* What the exchange loop does after a block: the handlers' answers (or a negative error). */
enum t1_step {
	T1_STEP_NEXT,	 /* wait for the card's next block */
	T1_STEP_INVALID, /* rule 7.1/7.2: answer with an R-block */
	T1_STEP_RESYNC,	 /* give up on the block: S(RESYNCH) (7.4) */
	T1_STEP_DONE,	 /* the response is complete */
};

/*
 * The host's sequence state between blocks: N(S), N(R) are one bit; the block
 * in flight lies inside the command and is chained exactly when more follows;
 * the next wait's WTX multiplier is one byte.
 */
static void
host_check_state(const struct t1_host *h, const struct t1_xchg *x)
{
	assert((h->ns | h->nr) <= 1);
	assert(h->wtx >= 0 && h->wtx <= 0xFF);
	assert(x->off + x->chunk <= x->clen);
	assert(x->m == (x->off + x->chunk < x->clen));
	(void)h, (void)x;
}

/* Sends the block of the command at x->off: at most IFSC bytes, chained if more follow. */
static int
host_send_chunk(struct t1_host *h, struct t1_xchg *x)
{
	size_t left = x->clen - x->off;

	x->chunk = left < h->ifsc ? left : h->ifsc;
	x->m = left > x->chunk;
	host_check_state(h, x);
	return host_send_i(h, x->capdu, x->off, x->chunk, x->m);
}

/* The card's I-block: a piece of the response (rules 2, 5, 9). */
static int
host_on_i(struct t1_host *h, struct t1_xchg *x, struct t1_block *b)
{
	int rc;

	/* While we chain, the card must acknowledge with R-blocks. */
	if (x->m || b->ns != h->nr || b->len > h->ifsd)
		return T1_STEP_INVALID;
	if (!x->acked) {
		/* The card's I-block acknowledges our last one (rule 2). */
		h->ns ^= 1;
		x->acked = 1;
	}
	h->nr ^= 1;
	x->resent = x->stall = 0;
	rsp_append(x->rapdu, x->cap, &x->rn, b->inf, b->len);
	if (x->rn > PG_APDU_MAX_R) {
		/* A chain longer than any R-APDU: stop it (rule 9). */
		(void)host_s_exchange(h, T1_S_ABORT, NULL, 0, b);
		return pg_error(PG_EPROTO, h->f->name, "card response chain exceeds %u bytes",
				PG_APDU_MAX_R);
	}
	if (b->m) {
		/* Rule 5: acknowledge a chained block with R(N(R) = next N(S)). */
		rc = host_send(h, (uint8_t)(PCB_R | h->nr << 4), NULL, 0);
		return rc < 0 ? rc : T1_STEP_NEXT;
	}
	return T1_STEP_DONE;
}

/* The card's R-block: it asks for our block again, or acknowledges a chained one (5, 7). */
static int
host_on_r(struct t1_host *h, struct t1_xchg *x, const struct t1_block *b)
{
	int rc;

	if (x->acked)
		return T1_STEP_INVALID; /* our R-ack got lost or damaged: resend it */
	if (b->nr == h->ns) {
		/* Rules 7.1/7.5: the card asks for our I-block again. */
		if (++x->resent > h->p.retries)
			return T1_STEP_RESYNC;
		h->retransmits++;
		rc = host_send_i(h, x->capdu, x->off, x->chunk, x->m);
		return rc < 0 ? rc : T1_STEP_NEXT;
	}
	if (!x->m)
		return T1_STEP_INVALID;
	/* Rule 5: the chained block is acknowledged; send the next one. */
	h->ns ^= 1;
	x->off += x->chunk;
	x->resent = x->stall = 0;
	rc = host_send_chunk(h, x);
	return rc < 0 ? rc : T1_STEP_NEXT;
}

/* The card's S(request): WTX (rule 3), IFS (rule 4) or ABORT (rule 9). */
static int
host_on_s(struct t1_host *h, struct t1_xchg *x, const struct t1_block *b)
{
	const char *name = h->f->name;
	int rc;

	if (b->resp)
		return T1_STEP_INVALID;
	switch (b->stype) {
	case T1_S_WTX:
		rc = host_grant_wtx(h, b, &x->wtx_count);
		if (rc == PG_ETIMEDOUT) {
			/* Whatever the card was doing, start both ends afresh. */
			h->wtx = 0;
			if (host_resync(h) < 0)
				h->powered = 0;
			return pg_error(PG_ETIMEDOUT, name,
					"the card asked for more time (S(WTX)) %d "
					"times for one command; gave up after %d",
					T1_MAX_WTX + 1, T1_MAX_WTX);
		}
		return rc < 0 ? rc : T1_STEP_NEXT;
	case T1_S_IFS: {
		/* The card announces a new IFSC (rule 4). */
		size_t v = ifs_value(b);

		h->ifsc = v > h->f->max_ifs ? h->f->max_ifs : v;
		rc = host_send(h, PCB_S | PCB_S_RSP | T1_S_IFS, b->inf, b->len);
		return rc < 0 ? rc : T1_STEP_NEXT;
	}
	case T1_S_ABORT:
		rc = host_send(h, PCB_S | PCB_S_RSP | T1_S_ABORT, NULL, 0);
		if (rc < 0)
			return rc;
		/* Both sides drop the chain; the sequence numbers stand. */
		if (!x->acked)
			h->ns ^= 1;
		return pg_error(PG_EPROTO, name, "the card aborted the chain");
	default:
		return T1_STEP_INVALID;
	}
}

/*
 * Rule 7.1: an invalid block or a time-out after an I- or S-block is answered
 * by an R-block asking for the I-block we expect, its low bits saying EDC (1)
 * or other error (2, time-outs too). Rule 7.2: after an R-block, the same
 * R-block is sent again. After `retries` failures in a row, resynchronise (7.4).
 */
static int
host_on_invalid(struct t1_host *h, struct t1_xchg *x, int err)
{
	int rc;

	if (++x->bad > h->p.retries)
		return T1_STEP_RESYNC;
	h->retransmits++;
	rc = host_send(h, h->last_r ? h->last_r : (uint8_t)(PCB_R | h->nr << 4 | err), NULL, 0);
	return rc < 0 ? rc : T1_STEP_NEXT;
}

/* Reads the card's next block and runs the rule for it; returns a step or an error. */
static int
host_step(struct t1_host *h, struct t1_xchg *x)
{
	struct t1_block b;
	int rc, step;

	if (++x->stall > 4 * (h->p.retries + 1) + x->wtx_count)
		return T1_STEP_RESYNC;
	rc = host_recv(h, &b);
	if (is_fatal(rc))
		return rc;
	if (rc < 0)
		return host_on_invalid(h, x, rc == PG_ECORRUPT ? 1 : 2);
	x->bad = 0;
	switch (b.kind) {
	case T1_I:
		step = host_on_i(h, x, &b);
		break;
	case T1_R:
		step = host_on_r(h, x, &b);
		break;
	case T1_S:
		step = host_on_s(h, x, &b);
		break;
	default:
		step = T1_STEP_INVALID;
	}
	if (step == T1_STEP_INVALID)
		return host_on_invalid(h, x, 2);
	host_check_state(h, x);
	return step;
}

int
pgi_t1_transmit(struct pg_link *l, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t *rlen)
{
	struct t1_host *h = (struct t1_host *)l;
	struct t1_xchg x = {.capdu = capdu, .clen = clen, .rapdu = rapdu, .cap = *rlen};
	int rc;

	if (!h->powered) {
		rc = pgi_t1_power_on(l, NULL, NULL);
		if (rc < 0)
			return rc;
	}
	/* Bytes left over from an earlier exchange (a late duplicate) are stale. */
	pg_stream_flush(h->s);
	h->wtx = 0;
	rc = host_send_chunk(h, &x);
	if (rc < 0)
		return rc;
	do
		rc = host_step(h, &x);
	while (rc == T1_STEP_NEXT);
	if (rc < 0)
		return rc;
	if (rc == T1_STEP_DONE) {
		*rlen = x.rn;
		if (x.rn > x.cap)
			return pg_error(PG_ETOOBIG, h->f->name, "R-APDU of %zu bytes, room for %zu",
					x.rn, x.cap);
		return 0;
	}
	rc = host_resync(h);
	if (rc < 0)
		return pg_error(PG_ELINK, h->f->name, "link lost: no answer to S(RESYNCH request)");
	return pg_error(PG_ERESYNC, h->f->name, "resynchronised after %d failed exchanges",
			h->p.retries + 1);
}

void
pgi_t1_host_close(struct pg_link *l)
{
	struct t1_host *h = (struct t1_host *)l;

	if (!h)
		return;
	if (h->f->gp && h->powered) {
		/* End of APDU session: lets the SE go to power saving (best effort). */
		struct t1_block b;

		h->p.retries = 0;
		(void)host_s_exchange(h, T1_S_RELEASE, NULL, 0, &b);
	}
	pg_stream_free(h->s);
	free(h->tx);
	free(h->rx);
	free(h);
}

int
pgi_t1_host_open(struct pg_link **out, struct pg_stream *s, const struct pg_link_params *p,
		 const struct t1_framing *f)
{
	struct t1_host *h;
	int rc;

	*out = NULL;
	if (!s)
		return pg_error(PG_EINVAL, f->name, "the %s host needs a stream", f->name);
	h = calloc(1, sizeof(*h));
	if (!h) {
		pg_stream_free(s);
		return PG_ENOMEM;
	}
	h->base.ops = f->ops;
	h->f = f;
	h->s = s;
	h->cap = block_cap(f);
	h->tx = malloc(h->cap);
	h->rx = malloc(h->cap);
	if (!h->tx || !h->rx) {
		pgi_t1_host_close(&h->base);
		return PG_ENOMEM;
	}
	rc = params_defaults(&h->p, p, f);
	if (rc < 0) {
		pgi_t1_host_close(&h->base);
		return rc;
	}
	h->crc = h->p.crc;
	h->ifsc = h->atr_ifsc = f->default_ifs;
	h->ifsd = f->default_ifs;
	*out = &h->base;
	return 0;
}

static int
t1_host_open(struct pg_link **out, struct pg_stream *s, const char *addr,
	     const struct pg_link_params *p)
{
	(void)addr;
	return pgi_t1_host_open(out, s, p, &pgi_t1_framing_iso);
}

/* ---- card role ---- */

struct t1_card {
	struct pg_link_card base;
	const struct t1_framing *f;
	struct pg_card card;
	struct pg_link_params p;
	uint8_t atr[PG_ATR_MAX];
	size_t atrlen;
	size_t ifsc, ifsd;
	int ns; /* N(S) of the card's next new I-block */
	int nr; /* N(S) expected in the host's next I-block */
	/* Command being received (chained), and response being sent. */
	uint8_t *cbuf, *rbuf;
	size_t clen, rlen, roff, rchunk;
	int out_active, out_m, out_ns; /* current response block */
	int wtx_pending;
	/* Last block sent, resent on a repeated I-block or an R-block (rule 7). */
	uint8_t *last, *frame; /* both of the framing's largest block */
	size_t lastlen;
	int last_is_sreq;
};

/*
 * The card's state between blocks: N(S), N(R) are one bit; the command
 * gathered fits its buffer; a response block in flight lies inside the
 * response and only it may be chained; while an S(WTX request) waits for its
 * answer no response block is in flight.
 */
static void
card_check_state(const struct t1_card *c)
{
	assert((c->ns | c->nr | c->out_ns) <= 1);
	assert(c->clen <= PG_APDU_MAX_C && c->rlen <= PG_APDU_MAX_R);
	assert(!c->out_active || c->roff + c->rchunk <= c->rlen);
	assert(!c->out_m || c->out_active);
	assert(!(c->wtx_pending && c->out_active));
	(void)c;
}

static int
card_send(struct t1_card *c, struct pg_stream *out, uint8_t pcb, const uint8_t *inf, size_t len,
	  int keep)
{
	uint8_t *fr = keep ? c->last : c->frame;
	size_t n = pgi_t1_encode_framed(c->f, fr, c->f->nad_card, pcb, inf, len, c->p.crc);

	if (keep) {
		c->lastlen = n;
		c->last_is_sreq = (pcb & 0xE0) == PCB_S;
	}
	return pg_stream_write(out, fr, n);
}

static int
card_resend_last(struct t1_card *c, struct pg_stream *out)
{
	if (!c->lastlen)
		return card_send(c, out, (uint8_t)(PCB_R | c->nr << 4), NULL, 0, 0);
	return pg_stream_write(out, c->last, c->lastlen);
}

/* Back to the state after a reset; `keep_ifs`: a GP RESYNCH leaves the IFS as they are. */
static void
card_state_reset(struct t1_card *c, int keep_ifs)
{
	c->ns = c->nr = 0;
	c->clen = c->rlen = c->roff = c->rchunk = 0;
	c->out_active = c->out_m = c->wtx_pending = 0;
	if (!keep_ifs)
		c->ifsd = c->f->default_ifs;
	c->lastlen = 0;
	c->last_is_sreq = 0;
}

/* Sends the response block starting at roff. */
static int
card_send_chunk(struct t1_card *c, struct pg_stream *out)
{
	size_t left = c->rlen - c->roff;

	c->rchunk = left < c->ifsd ? left : c->ifsd;
	c->out_m = left > c->rchunk;
	c->out_ns = c->ns;
	c->ns ^= 1;
	c->out_active = 1;
	return card_send(c, out, (uint8_t)(c->out_ns << 6 | (c->out_m ? PCB_M : 0)),
			 c->rbuf + c->roff, c->rchunk, 1);
}

/*
 * The card's sense of elapsed time for its WTX decision: a coarse clock (a
 * few ms resolution) is enough against a block waiting time of tens of ms or
 * more, and costs far less per APDU than the precise one.
 */
static uint64_t
coarse_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int
card_execute(struct t1_card *c, struct pg_stream *out)
{
	size_t rl = PG_APDU_MAX_R;
	uint64_t t0 = coarse_ms(), took;
	int rc;

	rc = c->card.process(c->card.ctx, c->cbuf, c->clen, c->rbuf, &rl);
	c->clen = 0;
	if (rc < 0)
		return rc; /* card mute: the host recovers or resynchronises */
	c->base.apdus++;
	if (rl < 2 || rl > PG_APDU_MAX_R)
		return pg_error(PG_EPROTO, c->f->name, "card application gave %zu response bytes",
				rl);
	c->rlen = rl;
	c->roff = 0;
	took = coarse_ms() - t0;
	if (took * 2 > (uint64_t)c->p.timeout_ms) {
		/*
		 * The command ran past half the block waiting time: ask for a
		 * waiting time extension before answering (rule 3), as a card
		 * that needs more time does.
		 */
		uint64_t mult = took / (uint64_t)c->p.timeout_ms + 2;
		uint8_t v = (uint8_t)(mult > 255 ? 255 : mult);

		c->wtx_pending = 1;
		c->out_active = 0;
		return card_send(c, out, PCB_S | T1_S_WTX, &v, 1, 1);
	}
	return card_send_chunk(c, out);
}

static int
card_on_i(struct t1_card *c, const struct t1_block *b, struct pg_stream *out)
{
	if ((c->out_active && c->out_m) || c->wtx_pending) {
		/* We are chaining or waiting for S(WTX response): a repeat gets the
		 * last block again, anything else is an error. */
		if (b->ns != c->nr)
			return card_resend_last(c, out);
		return card_send(c, out, (uint8_t)(PCB_R | c->nr << 4 | 2), NULL, 0, 0);
	}
	if (b->ns != c->nr)
		return card_resend_last(c, out); /* repeated block: never re-execute */
	if (b->len > c->ifsc || c->clen + b->len > PG_APDU_MAX_C)
		return card_send(c, out, (uint8_t)(PCB_R | c->nr << 4 | 2), NULL, 0, 0);
	c->nr ^= 1;
	c->out_active = 0;
	memcpy(c->cbuf + c->clen, b->inf, b->len);
	c->clen += b->len;
	if (b->m)
		return card_send(c, out, (uint8_t)(PCB_R | c->nr << 4), NULL, 0, 1);
	return card_execute(c, out);
}

static int
card_on_r(struct t1_card *c, const struct t1_block *b, struct pg_stream *out)
{
	if (c->out_active && c->out_m && b->nr != c->out_ns) {
		/* Rule 5: the host acknowledged our chained block. */
		c->roff += c->rchunk;
		return card_send_chunk(c, out);
	}
	if (c->out_active && b->nr == c->out_ns)
		return card_send(c, out, /* rule 7.5: our I-block got lost; send it again */
				 (uint8_t)(c->out_ns << 6 | (c->out_m ? PCB_M : 0)),
				 c->rbuf + c->roff, c->rchunk, 1);
	if (c->last_is_sreq)
		return card_resend_last(c, out); /* our S(WTX request) got lost */
	/* Ask for the I-block we expect. */
	return card_send(c, out, (uint8_t)(PCB_R | c->nr << 4), NULL, 0, 1);
}

static int
card_on_s(struct t1_card *c, const struct t1_block *b, struct pg_stream *out)
{
	uint8_t rsp = (uint8_t)(PCB_S | PCB_S_RSP | b->stype);
	uint8_t cip[T1_CIP_MAX];
	size_t v, n;
	int rc;

	if (b->resp) {
		if (b->stype == T1_S_WTX && c->wtx_pending) {
			c->wtx_pending = 0;
			return card_send_chunk(c, out);
		}
		return card_send(c, out, (uint8_t)(PCB_R | c->nr << 4 | 2), NULL, 0, 0);
	}
	switch (b->stype) {
	case T1_S_RESYNCH:
		card_state_reset(c, c->f->gp);
		return card_send(c, out, rsp, NULL, 0, 1);
	case T1_S_IFS:
		v = ifs_value(b);
		c->ifsd = v > c->f->max_ifs ? c->f->max_ifs : v;
		return card_send(c, out, rsp, b->inf, b->len, 1);
	case T1_S_ABORT:
		c->clen = 0;
		c->out_active = c->out_m = c->wtx_pending = 0;
		return card_send(c, out, rsp, NULL, 0, 1);
	case T1_S_SWR:
		card_state_reset(c, 0);
		if (c->card.reset)
			c->card.reset(c->card.ctx);
		return card_send(c, out, rsp, NULL, 0, 1);
	case T1_S_CIP:
		rc = c->f->cip_build(c->f, &c->card, c->ifsc, cip, sizeof(cip), &n);
		if (rc < 0)
			return rc;
		return card_send(c, out, rsp, cip, n, 1);
	case T1_S_RELEASE:
		return card_send(c, out, rsp, NULL, 0, 1);
	default:
		return card_send(c, out, (uint8_t)(PCB_R | c->nr << 4 | 2), NULL, 0, 0);
	}
}

int
pgi_t1_card_packet(struct pg_link_card *lc, int type, const uint8_t *data, size_t n,
		   struct pg_stream *out)
{
	struct t1_card *c = (struct t1_card *)lc;
	struct t1_block b;
	int rc;

	if (type == PG_PKT_RESET || type == PG_PKT_POWER_OFF) {
		card_state_reset(c, 0);
		if (c->card.reset)
			c->card.reset(c->card.ctx);
		/* ISO: the ATR; the GP variant has no ATR (the CIP is asked for). */
		return type == PG_PKT_RESET && !c->f->gp ? pg_stream_write(out, c->atr, c->atrlen)
							 : 0;
	}
	if (type != PG_PKT_DATA)
		return 0;
	/* One frame per packet: a packet that is not exactly one block is invalid. */
	rc = pgi_t1_decode_framed(c->f, &b, data, n, c->p.crc);
	if (rc == 0 && c->f->check_nad && b.nad != c->f->nad_host)
		rc = PG_EFORMAT;
	if (rc < 0)
		return card_send(c, out,
				 (uint8_t)(PCB_R | c->nr << 4 | (rc == PG_ECORRUPT ? 1 : 2)), NULL,
				 0, 0);
	switch (b.kind) {
	case T1_I:
		rc = card_on_i(c, &b, out);
		break;
	case T1_R:
		rc = card_on_r(c, &b, out);
		break;
	default:
		rc = card_on_s(c, &b, out);
	}
	card_check_state(c);
	return rc;
}

void
pgi_t1_card_close(struct pg_link_card *lc)
{
	struct t1_card *c = (struct t1_card *)lc;

	if (!c)
		return;
	free(c->cbuf);
	free(c->rbuf);
	free(c->last);
	free(c->frame);
	free(c);
}

int
pgi_t1_card_open(struct pg_link_card **out, const struct pg_card *card,
		 const struct pg_link_params *p, const struct t1_framing *f)
{
	struct t1_card *c;
	size_t cap = block_cap(f);
	int rc;

	*out = NULL;
	if (!card || !card->process)
		return pg_error(PG_EINVAL, f->name, "the %s card role needs a card", f->name);
	c = calloc(1, sizeof(*c));
	if (!c)
		return PG_ENOMEM;
	c->base.ops = f->ops;
	c->f = f;
	c->card = *card;
	rc = params_defaults(&c->p, p, f);
	if (rc < 0)
		goto fail;
	c->ifsc = c->p.ifsc ? c->p.ifsc : f->default_ifs;
	c->cbuf = malloc(PG_APDU_MAX_C);
	c->rbuf = malloc(PG_APDU_MAX_R);
	c->last = malloc(cap);
	c->frame = malloc(cap);
	if (!c->cbuf || !c->rbuf || !c->last || !c->frame) {
		rc = PG_ENOMEM;
		goto fail;
	}
	if (!f->gp) {
		/* Keep the card's historical bytes; the interface bytes announce T=1 as
		 * configured. */
		rc = pgi_atr_build_for_card(c->atr, sizeof(c->atr), card, 1, (uint16_t)c->ifsc, 4,
					    5, c->p.crc);
		if (rc < 0)
			goto fail;
		c->atrlen = (size_t)rc;
	}
	card_state_reset(c, 0);
	*out = &c->base;
	return 0;
fail:
	pgi_t1_card_close(&c->base);
	return rc;
}

static int
t1_card_open(struct pg_link_card **out, const struct pg_card *card, const struct pg_link_params *p)
{
	return pgi_t1_card_open(out, card, p, &pgi_t1_framing_iso);
}

const struct pg_link_ops pgi_link_t1_ops = {
    .name = "t1",
    .type = PG_LINK_T1,
    .max_capdu = PG_APDU_MAX_C,
    .max_rapdu = PG_APDU_MAX_R,
    .host_open = t1_host_open,
    .power_on = pgi_t1_power_on,
    .transmit = pgi_t1_transmit,
    .host_close = pgi_t1_host_close,
    .card_open = t1_card_open,
    .card_packet = pgi_t1_card_packet,
    .card_close = pgi_t1_card_close,
};
