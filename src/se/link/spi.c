/*
 * SPI and I2C embedded-SE link drivers: the GlobalPlatform "APDU Transport
 * over SPI/I2C" (GPC_SPE_172) T=1 variant as NXP's GP-mode eSE stacks frame
 * it: NAD (5A host->SE, A5 SE->host) | PCB | LEN (2 bytes, big-endian) |
 * INF | CRC-16/X.25 over NAD..INF, high byte first. I/R/S blocks with
 * chaining both ways, S(RESYNCH), S(IFS) (1- or 2-byte INF), S(ABORT),
 * S(WTX), S(CIP) (the ATR equivalent), S(RELEASE) = end of APDU session and
 * S(SWR) soft reset. One engine; SPI and I2C differ in the CIP's PLID.
 * Kept separate from t1.c (ISO 7816-3) on purpose until that lands on main.
 */
#include "drivers.h"
#include "payguard/buf.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "shdlc.h" /* shdlc_crc: the same ISO/IEC 13239 CRC-16 */

#include <stdlib.h>
#include <string.h>

#define GP_NAD_HOST    0x5A /* host -> SE */
#define GP_NAD_SE      0xA5 /* SE -> host */
#define GP_HDR	       4
#define GP_MAX_IFS     (PG_STREAM_MAX_PACKET - GP_HDR - 2)
#define GP_DEFAULT_IFS 254
#define GP_PCB_I_NS    0x40
#define GP_PCB_I_M     0x20
#define GP_PCB_R       0x80
#define GP_PCB_R_NR    0x10
#define GP_PCB_S       0xC0
#define GP_S_RESP      0x20
#define GP_S_RESYNCH   0x00
#define GP_S_IFS       0x01
#define GP_S_ABORT     0x02
#define GP_S_WTX       0x03
#define GP_S_CIP       0x04
#define GP_S_RELEASE   0x06 /* END OF APDU SESSION */
#define GP_S_SWR       0x0F
#define GP_PLID_SPI    0x01
#define GP_PLID_I2C    0x02
#define GP_BWT_MS      300
#define GP_MAX_FILLER  64 /* idle bytes tolerated before a NAD (SPI polling) */
#define GP_CIP_MAX     64

enum gp_kind { GP_I = 1, GP_R, GP_S };

struct gp_block {
	enum gp_kind kind;
	uint8_t nad, pcb;
	int ns, more;	 /* I */
	int nr, err;	 /* R */
	int stype, resp; /* S */
	const uint8_t *inf;
	size_t len;
};

/* Parses one block (whole frame); PG_ECORRUPT on CRC, PG_EFORMAT otherwise. */
int pg_gp_block_decode(struct gp_block *b, const uint8_t *p, size_t n, size_t max_inf);

int
pg_gp_block_decode(struct gp_block *b, const uint8_t *p, size_t n, size_t max_inf)
{
	uint16_t crc;
	size_t len;

	memset(b, 0, sizeof(*b));
	if (n < GP_HDR + 2)
		return pg_error(PG_EFORMAT, "gp-t1", "block of %zu bytes", n);
	len = pg_be16(p + 2);
	if (len + GP_HDR + 2 != n)
		return pg_error(PG_EFORMAT, "gp-t1", "LEN %zu in a block of %zu bytes", len, n);
	crc = pg_be16(p + n - 2);
	if (crc != shdlc_crc(p, n - 2))
		return PG_ECORRUPT;
	b->nad = p[0];
	b->pcb = p[1];
	b->inf = p + GP_HDR;
	b->len = len;
	if (!(b->pcb & 0x80)) {
		if (b->pcb & 0x1F)
			return pg_error(PG_EFORMAT, "gp-t1", "I-block PCB %02X", b->pcb);
		if (len > max_inf)
			return pg_error(PG_EFORMAT, "gp-t1", "I-block of %zu bytes > IFS %zu", len,
					max_inf);
		b->kind = GP_I;
		b->ns = !!(b->pcb & GP_PCB_I_NS);
		b->more = !!(b->pcb & GP_PCB_I_M);
	} else if ((b->pcb & 0xC0) == GP_PCB_R) {
		if (len || (b->pcb & 0x2C))
			return pg_error(PG_EFORMAT, "gp-t1", "R-block PCB %02X LEN %zu", b->pcb,
					len);
		b->kind = GP_R;
		b->nr = !!(b->pcb & GP_PCB_R_NR);
		b->err = b->pcb & 0x03;
	} else {
		b->kind = GP_S;
		b->resp = !!(b->pcb & GP_S_RESP);
		b->stype = b->pcb & 0x1F;
		switch (b->stype) {
		case GP_S_RESYNCH:
		case GP_S_ABORT:
		case GP_S_RELEASE:
		case GP_S_SWR:
			if (len)
				return pg_error(PG_EFORMAT, "gp-t1", "S(%02X) with INF", b->stype);
			break;
		case GP_S_IFS:
			if (len < 1 || len > 2)
				return pg_error(PG_EFORMAT, "gp-t1", "S(IFS) INF of %zu bytes",
						len);
			break;
		case GP_S_WTX:
			if (len != 1)
				return pg_error(PG_EFORMAT, "gp-t1", "S(WTX) INF of %zu bytes",
						len);
			break;
		case GP_S_CIP:
			if (!b->resp ? len != 0 : len > GP_CIP_MAX)
				return pg_error(PG_EFORMAT, "gp-t1", "S(CIP) INF of %zu bytes",
						len);
			break;
		default:
			return pg_error(PG_EFORMAT, "gp-t1", "unknown S-block %02X", b->pcb);
		}
	}
	return 0;
}

static size_t
gp_encode(uint8_t *out, uint8_t nad, uint8_t pcb, const uint8_t *inf, size_t n)
{
	uint16_t crc;

	out[0] = nad;
	out[1] = pcb;
	pg_put_be16(out + 2, (uint16_t)n);
	if (n)
		memcpy(out + GP_HDR, inf, n);
	crc = shdlc_crc(out, GP_HDR + n);
	pg_put_be16(out + GP_HDR + n, crc);
	return GP_HDR + n + 2;
}

/*
 * CIP (communication interface parameters), the SE's identity:
 * PVER | IIN len, IIN | PLID | PLP len, PLP | DLLP len, DLLP (BWT 2, IFSC 2) | HB len, HB.
 */
struct gp_cip {
	uint8_t pver, plid;
	uint16_t bwt_ms, ifsc;
	const uint8_t *hb;
	size_t hblen;
};

int pg_gp_cip_parse(struct gp_cip *c, const uint8_t *p, size_t n);

int
pg_gp_cip_parse(struct gp_cip *c, const uint8_t *p, size_t n)
{
	size_t o = 0, l;

	memset(c, 0, sizeof(*c));
#define NEED(k)                                                                                    \
	do {                                                                                       \
		if (n - o < (size_t)(k))                                                           \
			return pg_error(PG_EFORMAT, "gp-t1", "CIP truncated at byte %zu", o);      \
	} while (0)
	NEED(1);
	c->pver = p[o++];
	NEED(1);
	l = p[o++];
	NEED(l);
	o += l; /* IIN */
	NEED(1);
	c->plid = p[o++];
	NEED(1);
	l = p[o++];
	NEED(l);
	o += l; /* PLP: physical-layer timing, not used over a packet stream */
	NEED(1);
	l = p[o++];
	if (l < 4)
		return pg_error(PG_EFORMAT, "gp-t1", "CIP DLLP of %zu bytes", l);
	NEED(l);
	c->bwt_ms = pg_be16(p + o);
	c->ifsc = pg_be16(p + o + 2);
	o += l;
	NEED(1);
	l = p[o++];
	NEED(l);
	c->hb = p + o;
	c->hblen = l;
	o += l;
#undef NEED
	if (o != n)
		return pg_error(PG_EFORMAT, "gp-t1", "%zu bytes after the CIP", n - o);
	if (c->ifsc < 1 || c->ifsc > GP_MAX_IFS)
		return pg_error(PG_EFORMAT, "gp-t1", "CIP IFSC %u", c->ifsc);
	return 0;
}

/* ---------------- host role ---------------- */

struct gp_host {
	struct pg_link base;
	struct pg_stream *s;
	int timeout_ms, retries;
	uint8_t plid;
	size_t ifsc, ifsd;
	int ns, nr_exp; /* our next N(S); the card's N(S) we expect */
	int up;
	uint8_t *tx, *rx; /* our last I-block; the block being read */
	size_t txlen;
	uint8_t ctl[GP_HDR + GP_CIP_MAX + 2]; /* R- and S-blocks */
	uint8_t cip[GP_CIP_MAX];
	size_t ciplen;
	uint64_t wtx_count;
};

static int
host_send(struct gp_host *h, uint8_t pcb, const uint8_t *inf, size_t n)
{
	size_t len;

	if (!(pcb & 0x80)) {
		h->txlen = gp_encode(h->tx, GP_NAD_HOST, pcb, inf, n);
		return pg_stream_write(h->s, h->tx, h->txlen);
	}
	len = gp_encode(h->ctl, GP_NAD_HOST, pcb, inf, n);
	return pg_stream_write(h->s, h->ctl, len);
}

static int
host_read(struct gp_host *h, struct gp_block *b)
{
	int rc, skipped = 0;
	size_t len;

	/* SPI: the host polls until the SE's NAD appears; idle bytes before it are skipped. */
	for (;;) {
		rc = pg_stream_read(h->s, h->rx, 1, h->timeout_ms);
		if (rc < 0)
			return rc;
		if (h->rx[0] == GP_NAD_SE)
			break;
		if (++skipped > GP_MAX_FILLER) {
			pg_stream_flush(h->s);
			return PG_EFORMAT;
		}
	}
	rc = pg_stream_read_full(h->s, h->rx + 1, 3, h->timeout_ms);
	if (rc < 0)
		goto bad;
	len = pg_be16(h->rx + 2);
	if (len > h->ifsd && len > GP_CIP_MAX) {
		rc = PG_EFORMAT;
		goto bad;
	}
	rc = pg_stream_read_full(h->s, h->rx + GP_HDR, len + 2, h->timeout_ms);
	if (rc < 0)
		goto bad;
	rc = pg_gp_block_decode(b, h->rx, len + GP_HDR + 2, h->ifsd);
	if (rc < 0)
		goto bad;
	return 0;
bad:
	if (rc == PG_ECLOSED || rc == PG_EIO)
		return rc;
	pg_stream_flush(h->s);
	return rc == PG_ETIMEDOUT ? PG_EFORMAT : rc;
}

static int host_resynch(struct gp_host *h);

/* Sends an S-request and waits for its response; answers S(WTX) meanwhile. */
static int
host_s_exchange(struct gp_host *h, int type, const uint8_t *inf, size_t n, struct gp_block *b)
{
	int rc;

	for (int attempt = 0; attempt <= h->retries; attempt++) {
		rc = host_send(h, (uint8_t)(GP_PCB_S | type), inf, n);
		if (rc < 0)
			return rc;
		for (;;) {
			rc = host_read(h, b);
			if (rc == PG_ECLOSED || rc == PG_EIO)
				return rc;
			if (rc < 0)
				break;
			if (b->kind == GP_S && !b->resp && b->stype == GP_S_WTX) {
				h->wtx_count++;
				rc = host_send(h, GP_PCB_S | GP_S_RESP | GP_S_WTX, b->inf, 1);
				if (rc < 0)
					return rc;
				continue;
			}
			if (b->kind == GP_S && b->resp && b->stype == type)
				return 0;
			break; /* anything else: ask again */
		}
	}
	return pg_error(PG_ELINK, "gp-t1", "no S(%02X) response after %d attempts", type,
			h->retries + 1);
}

static int
host_resynch(struct gp_host *h)
{
	struct gp_block b;
	int rc = host_s_exchange(h, GP_S_RESYNCH, NULL, 0, &b);

	if (rc < 0)
		return rc;
	h->ns = 0;
	h->nr_exp = 0;
	return 0;
}

static int
host_set_ifsd(struct gp_host *h)
{
	uint8_t inf[2];
	size_t n;
	struct gp_block b;
	int rc;

	if (h->ifsd <= 254) {
		inf[0] = (uint8_t)h->ifsd;
		n = 1;
	} else {
		pg_put_be16(inf, (uint16_t)h->ifsd);
		n = 2;
	}
	rc = host_s_exchange(h, GP_S_IFS, inf, n, &b);
	if (rc < 0)
		return rc;
	if (b.len != n || memcmp(b.inf, inf, n) != 0)
		return pg_error(PG_EPROTO, "gp-t1", "S(IFS response) does not echo our IFSD");
	return 0;
}

static int
gp_power_on(struct pg_link *l, uint8_t *atr, size_t *atrlen)
{
	struct gp_host *h = (struct gp_host *)l;
	struct gp_block b;
	struct gp_cip cip;
	int rc;

	h->up = 0;
	rc = pg_stream_event(h->s, PG_PKT_RESET);
	if (rc < 0)
		return rc;
	pg_stream_flush(h->s);
	/* Soft reset brings both ends to N(S) = 0 with default IFS; then read the CIP. */
	rc = host_s_exchange(h, GP_S_SWR, NULL, 0, &b);
	if (rc < 0)
		return rc;
	h->ns = h->nr_exp = 0;
	rc = host_s_exchange(h, GP_S_CIP, NULL, 0, &b);
	if (rc < 0)
		return rc;
	rc = pg_gp_cip_parse(&cip, b.inf, b.len);
	if (rc < 0)
		return rc;
	if (cip.plid != h->plid)
		return pg_error(PG_EPROTO, "gp-t1", "CIP says PLID %u, link is %s", cip.plid,
				h->base.ops->name);
	memcpy(h->cip, b.inf, b.len);
	h->ciplen = b.len;
	if (cip.ifsc < h->ifsc || !h->ifsc)
		h->ifsc = cip.ifsc;
	rc = host_set_ifsd(h);
	if (rc < 0)
		return rc;
	if (cip.hblen > *atrlen || cip.hblen > PG_ATR_MAX)
		return pg_error(PG_EPROTO, "gp-t1", "CIP historical bytes of %zu bytes", cip.hblen);
	memcpy(atr, cip.hb, cip.hblen);
	*atrlen = cip.hblen;
	h->up = 1;
	return 0;
}

/* 7816-3 11.6.3.4 / GP: after the retries, resynchronise; the command may not have run. */
static int
host_give_up(struct gp_host *h, const char *why)
{
	int rc = host_resynch(h);

	if (rc < 0) {
		h->up = 0;
		return pg_error(PG_ELINK, "gp-t1", "%s after %d attempts; resynchronisation failed",
				why, h->retries);
	}
	return pg_error(PG_ERESYNC, "gp-t1",
			"%s: link resynchronised, the command may need re-sending", why);
}

static int
gp_transmit(struct pg_link *l, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t *rlen)
{
	struct gp_host *h = (struct gp_host *)l;
	size_t off = 0, chunk = 0, got = 0;
	int errors = 0, sending = 1, more = 0, rc;
	struct gp_block b;

	if (!h->up)
		return pg_error(PG_ESTATE, "gp-t1", "link not up: power on first");
next_chunk:
	chunk = clen - off < h->ifsc ? clen - off : h->ifsc;
	more = off + chunk < clen;
	rc = host_send(h, (uint8_t)((h->ns ? GP_PCB_I_NS : 0) | (more ? GP_PCB_I_M : 0)),
		       capdu + off, chunk);
	if (rc < 0)
		return rc;
	for (;;) {
		rc = host_read(h, &b);
		if (rc == PG_ECLOSED || rc == PG_EIO)
			return rc;
		if (rc < 0) {
			if (++errors > h->retries)
				return host_give_up(h, "no valid block");
			rc = host_send(h,
				       (uint8_t)(GP_PCB_R | (h->nr_exp ? GP_PCB_R_NR : 0) |
						 (rc == PG_ECORRUPT ? 1 : 2)),
				       NULL, 0);
			if (rc < 0)
				return rc;
			continue;
		}
		if (b.kind == GP_S) {
			if (!b.resp && b.stype == GP_S_WTX) {
				h->wtx_count++;
				errors = 0;
				rc = host_send(h, GP_PCB_S | GP_S_RESP | GP_S_WTX, b.inf, 1);
			} else if (!b.resp && b.stype == GP_S_IFS) {
				size_t v = b.len == 1 ? b.inf[0] : pg_be16(b.inf);

				if (v >= 1 && v <= GP_MAX_IFS)
					h->ifsc = v;
				rc = host_send(h, GP_PCB_S | GP_S_RESP | GP_S_IFS, b.inf, b.len);
			} else {
				rc = 0;
				errors++;
			}
			if (rc < 0)
				return rc;
			continue;
		}
		if (b.kind == GP_R) {
			if (sending && more && b.nr != h->ns) {
				/* Chained block acknowledged: send the next one. */
				h->ns ^= 1;
				off += chunk;
				errors = 0;
				goto next_chunk;
			}
			if (++errors > h->retries)
				return host_give_up(h, "card keeps asking for our block");
			/* The card asks again for what it expects: our last block. */
			rc = pg_stream_write(h->s, h->tx, h->txlen);
			if (rc < 0)
				return rc;
			continue;
		}
		/* I-block from the card. */
		if (sending && more) {
			errors++;
			continue;
		}
		if (b.ns != h->nr_exp) {
			/* A repeat of a block we already have: acknowledge again. */
			if (++errors > h->retries)
				return host_give_up(h, "card keeps repeating a block");
			rc = host_send(h, (uint8_t)(GP_PCB_R | (h->nr_exp ? GP_PCB_R_NR : 0)), NULL,
				       0);
			if (rc < 0)
				return rc;
			continue;
		}
		if (sending) {
			h->ns ^= 1; /* our last block is acknowledged by the card's I-block */
			sending = 0;
		}
		h->nr_exp ^= 1;
		errors = 0;
		if (got + b.len > *rlen)
			return pg_error(PG_ETOOBIG, "gp-t1", "R-APDU longer than %zu bytes", *rlen);
		memcpy(rapdu + got, b.inf, b.len);
		got += b.len;
		if (!b.more)
			break;
		rc = host_send(h, (uint8_t)(GP_PCB_R | (h->nr_exp ? GP_PCB_R_NR : 0)), NULL, 0);
		if (rc < 0)
			return rc;
	}
	if (got < 2)
		return pg_error(PG_EPROTO, "gp-t1", "R-APDU of %zu bytes", got);
	*rlen = got;
	return 0;
}

static void
gp_host_close(struct pg_link *l)
{
	struct gp_host *h = (struct gp_host *)l;

	if (!h)
		return;
	if (h->up) {
		/* End of APDU session: lets the SE go to power saving (best effort). */
		struct gp_block b;

		h->retries = 0;
		(void)host_s_exchange(h, GP_S_RELEASE, NULL, 0, &b);
	}
	pg_stream_free(h->s);
	free(h->tx);
	free(h->rx);
	free(h);
}

static int
gp_host_open(struct pg_link **out, struct pg_stream *s, const struct pg_link_params *p,
	     const struct pg_link_ops *ops, uint8_t plid)
{
	struct gp_host *h;

	*out = NULL;
	if (!s)
		return pg_error(PG_EINVAL, "gp-t1", "%s host needs a stream", ops->name);
	h = calloc(1, sizeof(*h));
	if (!h || !(h->tx = malloc(PG_STREAM_MAX_PACKET)) ||
	    !(h->rx = malloc(PG_STREAM_MAX_PACKET))) {
		if (h)
			free(h->tx);
		free(h);
		pg_stream_free(s);
		return PG_ENOMEM;
	}
	h->base.ops = ops;
	h->s = s;
	h->plid = plid;
	h->timeout_ms = p && p->timeout_ms ? p->timeout_ms : 1000;
	h->retries = p && p->retries ? p->retries : 3;
	h->ifsc = p && p->ifsc ? p->ifsc : 0; /* 0: take the CIP's */
	h->ifsd = p && p->ifsd ? p->ifsd : GP_DEFAULT_IFS;
	if (h->ifsc > GP_MAX_IFS || h->ifsd > GP_MAX_IFS) {
		gp_host_close(&h->base);
		return pg_error(PG_EINVAL, "gp-t1", "IFS above %u", GP_MAX_IFS);
	}
	*out = &h->base;
	return 0;
}

/* ---------------- card role ---------------- */

struct gp_card {
	struct pg_link_card base;
	struct pg_card card;
	uint8_t plid;
	size_t ifsc, ifsd;	     /* ours (announced in the CIP), the host's */
	int ns, nr_exp;		     /* our next N(S); the host's N(S) we expect */
	uint8_t *capdu, *rapdu, *tx; /* tx: our last I-block */
	size_t clen, rlen, roff, rchunk, txlen;
	int sending;			      /* R-APDU being chained out */
	int i_unacked;			      /* our last I-block awaits the host's next I-block */
	uint8_t ctl[GP_HDR + GP_CIP_MAX + 2]; /* R- and S-blocks */
	uint8_t cip[GP_CIP_MAX];
	size_t ciplen;
};

static int
card_send(struct gp_card *c, struct pg_stream *out, uint8_t pcb, const uint8_t *inf, size_t n)
{
	size_t len;

	if (!(pcb & 0x80)) {
		c->txlen = gp_encode(c->tx, GP_NAD_SE, pcb, inf, n);
		c->i_unacked = 1;
		return pg_stream_write(out, c->tx, c->txlen);
	}
	len = gp_encode(c->ctl, GP_NAD_SE, pcb, inf, n);
	return pg_stream_write(out, c->ctl, len);
}

static int
card_send_chunk(struct gp_card *c, struct pg_stream *out)
{
	int more;

	c->rchunk = c->rlen - c->roff < c->ifsd ? c->rlen - c->roff : c->ifsd;
	more = c->roff + c->rchunk < c->rlen;
	c->sending = more;
	return card_send(c, out, (uint8_t)((c->ns ? GP_PCB_I_NS : 0) | (more ? GP_PCB_I_M : 0)),
			 c->rapdu + c->roff, c->rchunk);
}

static int
card_build_cip(struct gp_card *c)
{
	uint8_t atr[PG_ATR_MAX];
	size_t alen = sizeof(atr), o = 0;
	int rc = c->card.atr(c->card.ctx, atr, &alen);

	if (rc < 0)
		return rc;
	c->cip[o++] = 0x01;			   /* PVER */
	c->cip[o++] = 4;			   /* IIN */
	memcpy(c->cip + o, "\x00\x00\x00\x00", 4); /* no issuer number for a simulation */
	o += 4;
	c->cip[o++] = c->plid;
	c->cip[o++] = 0; /* PLP: none over a packet stream */
	c->cip[o++] = 4; /* DLLP: BWT, IFSC */
	pg_put_be16(c->cip + o, GP_BWT_MS);
	pg_put_be16(c->cip + o + 2, (uint16_t)c->ifsc);
	o += 4;
	c->cip[o++] = (uint8_t)alen; /* HB: the card's ATR, its identity on every link */
	memcpy(c->cip + o, atr, alen);
	o += alen;
	c->ciplen = o;
	return 0;
}

static void
card_proto_reset(struct gp_card *c)
{
	c->ns = c->nr_exp = 0;
	c->clen = 0;
	c->sending = 0;
	c->txlen = 0;
	c->i_unacked = 0;
	c->ifsd = GP_DEFAULT_IFS;
}

static int
card_s_request(struct gp_card *c, const struct gp_block *b, struct pg_stream *out)
{
	uint8_t pcb = (uint8_t)(GP_PCB_S | GP_S_RESP | b->stype);
	int rc;

	switch (b->stype) {
	case GP_S_RESYNCH:
		card_proto_reset(c);
		return card_send(c, out, pcb, NULL, 0);
	case GP_S_SWR:
		card_proto_reset(c);
		if (c->card.reset)
			c->card.reset(c->card.ctx);
		return card_send(c, out, pcb, NULL, 0);
	case GP_S_IFS: {
		size_t v = b->len == 1 ? b->inf[0] : pg_be16(b->inf);

		if (v < 1 || v > GP_MAX_IFS)
			return 0; /* invalid: no answer, the host retries */
		c->ifsd = v;
		return card_send(c, out, pcb, b->inf, b->len);
	}
	case GP_S_CIP:
		rc = card_build_cip(c);
		if (rc < 0)
			return rc;
		return card_send(c, out, pcb, c->cip, c->ciplen);
	case GP_S_ABORT:
		c->clen = 0;
		c->sending = 0;
		return card_send(c, out, pcb, NULL, 0);
	case GP_S_RELEASE:
		return card_send(c, out, pcb, NULL, 0);
	default:
		return 0;
	}
}

static int
gp_card_packet(struct pg_link_card *lc, int type, const uint8_t *data, size_t n,
	       struct pg_stream *out)
{
	struct gp_card *c = (struct gp_card *)lc;
	struct gp_block b;
	int rc;

	if (type != PG_PKT_DATA) {
		card_proto_reset(c);
		if (c->card.reset)
			c->card.reset(c->card.ctx);
		return 0;
	}
	rc = pg_gp_block_decode(&b, data, n, c->ifsc);
	if (rc < 0 || b.nad != GP_NAD_HOST) {
		/* 7816-3 11.6.3.2 rule 7.1: a bad block gets R(N(R) expected, error). */
		return card_send(c, out,
				 (uint8_t)(GP_PCB_R | (c->nr_exp ? GP_PCB_R_NR : 0) |
					   (rc == PG_ECORRUPT ? 1 : 2)),
				 NULL, 0);
	}
	if (b.kind == GP_S) {
		if (b.resp)
			return 0; /* S(WTX response): we never ask for time */
		return card_s_request(c, &b, out);
	}
	if (b.kind == GP_R) {
		if (c->sending && b.nr != c->ns) {
			/* Our chained block acknowledged: next one. */
			c->ns ^= 1;
			c->roff += c->rchunk;
			return card_send_chunk(c, out);
		}
		if (c->txlen && b.nr == !!(c->tx[1] & GP_PCB_I_NS))
			/* The host wants our last I-block again. */
			return pg_stream_write(out, c->tx, c->txlen);
		/* Otherwise tell the host which I-block we expect. */
		return card_send(c, out, (uint8_t)(GP_PCB_R | (c->nr_exp ? GP_PCB_R_NR : 0)), NULL,
				 0);
	}
	/* I-block */
	if (b.ns != c->nr_exp) {
		/* Duplicate: never run a command twice; repeat our last answer to it. */
		if (!b.more && c->txlen)
			return pg_stream_write(out, c->tx, c->txlen);
		return card_send(c, out, (uint8_t)(GP_PCB_R | (c->nr_exp ? GP_PCB_R_NR : 0)), NULL,
				 0);
	}
	if (c->i_unacked) {
		/* The host's new I-block acknowledges our last one. */
		c->ns ^= 1;
		c->i_unacked = 0;
	}
	c->sending = 0;
	if (b.len > PG_APDU_MAX_C - c->clen) {
		c->clen = 0;
		return pg_error(PG_ETOOBIG, "gp-t1", "C-APDU longer than %u bytes", PG_APDU_MAX_C);
	}
	memcpy(c->capdu + c->clen, b.inf, b.len);
	c->clen += b.len;
	c->nr_exp ^= 1;
	if (b.more)
		return card_send(c, out, (uint8_t)(GP_PCB_R | (c->nr_exp ? GP_PCB_R_NR : 0)), NULL,
				 0);
	/* Whole C-APDU: run it; the first block of the answer acknowledges the last one. */
	c->rlen = PG_APDU_MAX_R;
	rc = c->card.process(c->card.ctx, c->capdu, c->clen, c->rapdu, &c->rlen);
	c->clen = 0;
	if (rc < 0)
		return rc;
	c->base.apdus++;
	c->roff = 0;
	return card_send_chunk(c, out);
}

static void
gp_card_close(struct pg_link_card *lc)
{
	struct gp_card *c = (struct gp_card *)lc;

	if (!c)
		return;
	free(c->capdu);
	free(c->rapdu);
	free(c->tx);
	free(c);
}

static int
gp_card_open(struct pg_link_card **out, const struct pg_card *card, const struct pg_link_params *p,
	     const struct pg_link_ops *ops, uint8_t plid)
{
	struct gp_card *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c || !(c->capdu = malloc(PG_APDU_MAX_C)) || !(c->rapdu = malloc(PG_APDU_MAX_R)) ||
	    !(c->tx = malloc(PG_STREAM_MAX_PACKET))) {
		gp_card_close(c ? &c->base : NULL);
		return PG_ENOMEM;
	}
	c->base.ops = ops;
	c->card = *card;
	c->plid = plid;
	c->ifsc = p && p->ifsc ? p->ifsc : GP_DEFAULT_IFS;
	if (c->ifsc > GP_MAX_IFS) {
		gp_card_close(&c->base);
		return pg_error(PG_EINVAL, "gp-t1", "IFSC above %u", GP_MAX_IFS);
	}
	card_proto_reset(c);
	*out = &c->base;
	return 0;
}

/* ---------------- the two ops tables ---------------- */

static int
spi_host_open(struct pg_link **out, struct pg_stream *s, const char *addr,
	      const struct pg_link_params *p)
{
	(void)addr;
	return gp_host_open(out, s, p, &pg_link_spi_ops, GP_PLID_SPI);
}
static int
i2c_host_open(struct pg_link **out, struct pg_stream *s, const char *addr,
	      const struct pg_link_params *p)
{
	(void)addr;
	return gp_host_open(out, s, p, &pg_link_i2c_ops, GP_PLID_I2C);
}
static int
spi_card_open(struct pg_link_card **out, const struct pg_card *card, const struct pg_link_params *p)
{
	return gp_card_open(out, card, p, &pg_link_spi_ops, GP_PLID_SPI);
}
static int
i2c_card_open(struct pg_link_card **out, const struct pg_card *card, const struct pg_link_params *p)
{
	return gp_card_open(out, card, p, &pg_link_i2c_ops, GP_PLID_I2C);
}

const struct pg_link_ops pg_link_spi_ops = {
    .name = "spi",
    .type = PG_LINK_SPI,
    .max_capdu = PG_APDU_MAX_C,
    .max_rapdu = PG_APDU_MAX_R,
    .host_open = spi_host_open,
    .power_on = gp_power_on,
    .transmit = gp_transmit,
    .host_close = gp_host_close,
    .card_open = spi_card_open,
    .card_packet = gp_card_packet,
    .card_close = gp_card_close,
};

const struct pg_link_ops pg_link_i2c_ops = {
    .name = "i2c",
    .type = PG_LINK_I2C,
    .max_capdu = PG_APDU_MAX_C,
    .max_rapdu = PG_APDU_MAX_R,
    .host_open = i2c_host_open,
    .power_on = gp_power_on,
    .transmit = gp_transmit,
    .host_close = gp_host_close,
    .card_open = i2c_card_open,
    .card_packet = gp_card_packet,
    .card_close = gp_card_close,
};
