/*
 * SPI and I2C embedded-SE link drivers: the GlobalPlatform "APDU Transport
 * over SPI/I2C" (GPC_SPE_172) T=1 variant as NXP's GP-mode eSE stacks frame
 * it: NAD (5A host->SE, A5 SE->host) | PCB | LEN (2 bytes, big-endian) |
 * INF | CRC-16/X.25 over NAD..INF, high byte first. I/R/S blocks with
 * chaining both ways, S(RESYNCH), S(IFS) (1- or 2-byte INF), S(ABORT),
 * S(WTX), S(CIP) (the ATR equivalent), S(RELEASE) = end of APDU session and
 * S(SWR) soft reset.
 *
 * This file is only the framing description and the CIP codec: the blocks
 * are run by the one T=1 engine in t1.c (t1_proto.h), so error recovery, the
 * WTX cap and the wait extension are those of ISO T=1. SPI and I2C differ
 * in the CIP's PLID.
 */
#include "drivers.h"
#include "payguard/buf.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "shdlc.h" /* pgi_shdlc_crc: CRC-16/X.25, the same ISO/IEC 13239 CRC as SWP */
#include "t1_proto.h"

#include <string.h>

#define GP_NAD_HOST   0x5A /* host -> SE */
#define GP_NAD_SE     0xA5 /* SE -> host */
#define GP_MAX_IFS    (PG_STREAM_MAX_PACKET - 4 - 2)
#define GP_DEFAULT_IF 254
#define GP_PLID_SPI   0x01
#define GP_PLID_I2C   0x02
#define GP_BWT_MS     300
#define GP_MAX_FILLER 64 /* idle bytes tolerated before a NAD (SPI polling) */

/*
 * CIP (communication interface parameters), the SE's identity:
 * PVER | IIN len, IIN | PLID | PLP len, PLP | DLLP len, DLLP (BWT 2, IFSC 2) | HB len, HB.
 */
static int
gp_cip_parse(const struct t1_framing *f, const uint8_t *p, size_t n, struct t1_ident *id)
{
	size_t o = 0, l;
	uint8_t plid;

	memset(id, 0, sizeof(*id));
#define NEED(k)                                                                                    \
	do {                                                                                       \
		if (n - o < (size_t)(k))                                                           \
			return pg_error(PG_EFORMAT, f->name, "CIP truncated at byte %zu", o);      \
	} while (0)
	NEED(1);
	o++; /* PVER */
	NEED(1);
	l = p[o++];
	NEED(l);
	o += l; /* IIN */
	NEED(1);
	plid = p[o++];
	NEED(1);
	l = p[o++];
	NEED(l);
	o += l; /* PLP: physical-layer timing, not used over a packet stream */
	NEED(1);
	l = p[o++];
	if (l < 4)
		return pg_error(PG_EFORMAT, f->name, "CIP DLLP of %zu bytes", l);
	NEED(l);
	id->ifsc = pg_be16(p + o + 2); /* after the BWT */
	o += l;
	NEED(1);
	l = p[o++];
	NEED(l);
	id->hb = p + o;
	id->hblen = l;
	o += l;
#undef NEED
	if (o != n)
		return pg_error(PG_EFORMAT, f->name, "%zu bytes after the CIP", n - o);
	if (id->ifsc < 1 || id->ifsc > GP_MAX_IFS)
		return pg_error(PG_EFORMAT, f->name, "CIP IFSC %zu", id->ifsc);
	if (plid != f->plid)
		return pg_error(PG_EPROTO, f->name, "CIP says PLID %u, link is %s", plid, f->name);
	return 0;
}

static int
gp_cip_build(const struct t1_framing *f, const struct pg_card *card, size_t ifsc, uint8_t *out,
	     size_t cap, size_t *n)
{
	uint8_t atr[PG_ATR_MAX];
	size_t alen = sizeof(atr), o = 0;
	int rc = card->atr(card->ctx, atr, &alen);

	if (rc < 0)
		return rc;
	if (cap < 15 + alen)
		return PG_ETOOBIG;
	out[o++] = 0x01;			/* PVER */
	out[o++] = 4;				/* IIN */
	memcpy(out + o, "\x00\x00\x00\x00", 4); /* no issuer number for a simulation */
	o += 4;
	out[o++] = f->plid;
	out[o++] = 0; /* PLP: none over a packet stream */
	out[o++] = 4; /* DLLP: BWT, IFSC */
	pg_put_be16(out + o, GP_BWT_MS);
	pg_put_be16(out + o + 2, (uint16_t)ifsc);
	o += 4;
	out[o++] = (uint8_t)alen; /* HB: the card's ATR, its identity on every link */
	memcpy(out + o, atr, alen);
	*n = o + alen;
	return 0;
}

#define GP_FRAMING(nm, ops_, plid_)                                                                \
	{                                                                                          \
		.name = nm, .ops = ops_, .nad_host = GP_NAD_HOST, .nad_card = GP_NAD_SE,           \
		.check_nad = 1, .len_bytes = 2, .crc_only = 1, .crc16 = pgi_shdlc_crc,             \
		.default_ifs = GP_DEFAULT_IF, .max_ifs = GP_MAX_IFS, .max_filler = GP_MAX_FILLER,  \
		.gp = 1, .plid = plid_, .cip_build = gp_cip_build, .cip_parse = gp_cip_parse,      \
	}

const struct t1_framing pgi_t1_framing_spi = GP_FRAMING("spi", &pgi_link_spi_ops, GP_PLID_SPI);
const struct t1_framing pgi_t1_framing_i2c = GP_FRAMING("i2c", &pgi_link_i2c_ops, GP_PLID_I2C);

static int
spi_host_open(struct pg_link **out, struct pg_stream *s, const char *addr,
	      const struct pg_link_params *p)
{
	(void)addr;
	return pgi_t1_host_open(out, s, p, &pgi_t1_framing_spi);
}
static int
i2c_host_open(struct pg_link **out, struct pg_stream *s, const char *addr,
	      const struct pg_link_params *p)
{
	(void)addr;
	return pgi_t1_host_open(out, s, p, &pgi_t1_framing_i2c);
}
static int
spi_card_open(struct pg_link_card **out, const struct pg_card *card, const struct pg_link_params *p)
{
	return pgi_t1_card_open(out, card, p, &pgi_t1_framing_spi);
}
static int
i2c_card_open(struct pg_link_card **out, const struct pg_card *card, const struct pg_link_params *p)
{
	return pgi_t1_card_open(out, card, p, &pgi_t1_framing_i2c);
}

const struct pg_link_ops pgi_link_spi_ops = {
    .name = "spi",
    .type = PG_LINK_SPI,
    .max_capdu = PG_APDU_MAX_C,
    .max_rapdu = PG_APDU_MAX_R,
    .host_open = spi_host_open,
    .power_on = pgi_t1_power_on,
    .transmit = pgi_t1_transmit,
    .host_close = pgi_t1_host_close,
    .card_open = spi_card_open,
    .card_packet = pgi_t1_card_packet,
    .card_close = pgi_t1_card_close,
};

const struct pg_link_ops pgi_link_i2c_ops = {
    .name = "i2c",
    .type = PG_LINK_I2C,
    .max_capdu = PG_APDU_MAX_C,
    .max_rapdu = PG_APDU_MAX_R,
    .host_open = i2c_host_open,
    .power_on = pgi_t1_power_on,
    .transmit = pgi_t1_transmit,
    .host_close = pgi_t1_host_close,
    .card_open = i2c_card_open,
    .card_packet = pgi_t1_card_packet,
    .card_close = pgi_t1_card_close,
};
