/*
 * Card runtime (issues 2 and 3): ISO/IEC 7816-4 command dispatch with
 * logical channels (MANAGE CHANNEL, clause 11.1.2), SELECT by DF name over
 * an applet table (full and partial AID, first/next occurrence, 11.1.1), and
 * the GlobalPlatform issuer security domain's GET DATA for the CPLC (GP Card
 * Specification v2.3, GET DATA with tag 9F7F). The per-command path allocates
 * nothing: links run it at hundreds of thousands of APDUs per second.
 */
#include "payguard/card.h"
#include "link/atr.h"
#include "payguard/buf.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/tlv.h"

#include <stdlib.h>
#include <string.h>

const uint8_t pg_card_isd_aid[8] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
const uint8_t pg_card_test_aid[10] = {0xF0, 'p', 'a', 'y', 'g', 'u', 'a', 'r', 'd', 0x01};

/* The default ATR's card issuer's data (see pg_card_atr_build). */
static const uint8_t default_atr_id[] = {'p', 'a', 'y', 'g', 'u', 'a', 'r', 'd'};

#define NO_APPLET (-1)

struct channel {
	int open;
	int selected; /* index in applets[], NO_APPLET when none */
};

struct pg_card_rt {
	struct pg_card card;
	uint8_t atr[PG_ATR_MAX];
	size_t atr_len;
	uint32_t serial;
	int max_channels;
	uint64_t counter;
	struct channel ch[PG_CARD_MAX_CHANNELS];
	struct pg_applet applets[PG_CARD_MAX_APPLETS];
	int napplets;
	int isd;	  /* index of the ISD, the default-selected application */
	int custom_alloc; /* from cfg->alloc: handed back to cfg->dealloc */
	void (*dealloc)(void *actx, void *p);
	void *actx;
};

static int
rt_atr(void *ctx, uint8_t *atr, size_t *len)
{
	struct pg_card_rt *rt = ctx;

	if (*len < rt->atr_len)
		return PG_ETOOBIG;
	memcpy(atr, rt->atr, rt->atr_len);
	*len = rt->atr_len;
	return 0;
}

static void
rt_reset(void *ctx)
{
	struct pg_card_rt *rt = ctx;

	/* Power off/reset: only the basic channel stays, with the ISD selected. */
	memset(rt->ch, 0, sizeof(rt->ch));
	rt->ch[0].open = 1;
	rt->ch[0].selected = rt->isd;
	for (int i = 1; i < PG_CARD_MAX_CHANNELS; i++)
		rt->ch[i].selected = NO_APPLET;
}

/* Channel from any CLA: interindustry per 7816-4; proprietary classes (GP's 80..83, C0..CF)
 * use the same bit layout with bit 8 set. -1 for CLA FF (invalid). */
static int
cla_channel(uint8_t cla)
{
	if (cla == 0xFF)
		return -1;
	return pg_cla_channel((uint8_t)(cla & 0x7F));
}

static size_t
put_sw(uint8_t *r, size_t at, uint16_t sw)
{
	r[at] = (uint8_t)(sw >> 8);
	r[at + 1] = (uint8_t)sw;
	return at + 2;
}

/* Applet index whose AID starts with aid[0..n), searching after index `after`. */
static int
find_applet(const struct pg_card_rt *rt, const uint8_t *aid, size_t n, int after)
{
	for (int i = after + 1; i < rt->napplets; i++)
		if (n <= rt->applets[i].aid_len && memcmp(rt->applets[i].aid, aid, n) == 0)
			return i;
	return NO_APPLET;
}

/* SELECT by DF name (P1=04). P2: 00 first/FCI, 02 next, 0C no FCI (combinable). */
static uint16_t
do_select(struct pg_card_rt *rt, int chn, const struct pg_capdu *c, uint8_t *resp, size_t *rlen)
{
	size_t cap = *rlen;
	int occurrence = c->p2 & 0x03, fci = (c->p2 & 0x0C) == 0x00, idx;
	const struct pg_applet *a;
	uint16_t sw = PG_SW_OK;

	*rlen = 0;
	if (c->p1 != 0x04)
		return PG_SW_INCORRECT_P1P2; /* only DF-name selection: no file system */
	if ((c->p2 & 0xF0) || (occurrence != 0 && occurrence != 2) ||
	    ((c->p2 & 0x0C) != 0 && (c->p2 & 0x0C) != 0x0C))
		return PG_SW_INCORRECT_P1P2;
	if (c->lc == 0) {
		/* No AID: select the default application (the ISD). */
		idx = rt->isd;
	} else if (c->lc > PG_AID_MAX) {
		return PG_SW_WRONG_DATA;
	} else if (occurrence == 2) {
		int cur = rt->ch[chn].selected;

		/* Next occurrence: the next applet after the current one matching the prefix. */
		idx = find_applet(rt, c->data, c->lc, cur);
	} else {
		idx = find_applet(rt, c->data, c->lc, -1);
	}
	if (idx == NO_APPLET)
		return PG_SW_NOT_FOUND; /* the current selection stays (7816-4 11.1.1) */
	a = &rt->applets[idx];
	if (a->select) {
		sw = a->select(rt, a->state, chn);
		if (sw != PG_SW_OK)
			return sw;
	}
	rt->ch[chn].selected = idx;
	if (fci) {
		/* FCI template: 6F { 84 DF name, A5 proprietary { 9F65 max command length } } */
		size_t need = 2 + 2 + a->aid_len + 2 + 4;

		if (cap < need)
			return PG_SW_WRONG_LENGTH;
		resp[0] = 0x6F;
		resp[1] = (uint8_t)(need - 2);
		resp[2] = 0x84;
		resp[3] = (uint8_t)a->aid_len;
		memcpy(resp + 4, a->aid, a->aid_len);
		resp[4 + a->aid_len] = 0xA5;
		resp[5 + a->aid_len] = 4;
		resp[6 + a->aid_len] = 0x9F;
		resp[7 + a->aid_len] = 0x65;
		resp[8 + a->aid_len] = 1;
		resp[9 + a->aid_len] = 0xFF;
		*rlen = need;
	}
	return sw;
}

/* MANAGE CHANNEL (INS 70): P1=00 open (P2=00 card assigns, else that number), P1=80 close. */
static uint16_t
do_manage_channel(struct pg_card_rt *rt, int chn, const struct pg_capdu *c, uint8_t *resp,
		  size_t *rlen)
{
	size_t cap = *rlen;

	*rlen = 0;
	if (c->lc != 0)
		return PG_SW_WRONG_LENGTH;
	if (c->p1 == 0x00) {
		int n = c->p2;

		if (n == 0) {
			if (!c->has_le || c->le < 1 || cap < 1)
				return PG_SW_WRONG_LENGTH;
			for (n = 1; n < rt->max_channels && rt->ch[n].open; n++)
				;
			if (n >= rt->max_channels)
				return PG_SW_FUNC_NOT_SUPPORTED; /* no channel left */
		} else if (n >= rt->max_channels) {
			return PG_SW_INCORRECT_P1P2;
		} else if (rt->ch[n].open) {
			return PG_SW_CONDITIONS;
		}
		rt->ch[n].open = 1;
		/* From the basic channel the default application; else the origin's selection. */
		rt->ch[n].selected = chn == 0 ? rt->isd : rt->ch[chn].selected;
		if (c->p2 == 0) {
			resp[0] = (uint8_t)n;
			*rlen = 1;
		}
		return PG_SW_OK;
	}
	if (c->p1 == 0x80) {
		int n = c->p2 ? c->p2 : chn;

		if (n == 0 || n >= rt->max_channels)
			return PG_SW_INCORRECT_P1P2; /* the basic channel never closes */
		if (!rt->ch[n].open)
			return PG_SW_CHANNEL_NOT_SUPPORTED;
		rt->ch[n].open = 0;
		rt->ch[n].selected = NO_APPLET;
		return PG_SW_OK;
	}
	return PG_SW_INCORRECT_P1P2;
}

int
pg_card_rt_cplc(const struct pg_card_rt *rt, uint8_t *out, size_t outlen)
{
	/*
	 * GP 2.3 CPLC, 42 bytes: IC fabricator, IC type, OS identifier, OS
	 * release date, OS release level, IC fabrication date (2 each), IC serial
	 * number (4), IC batch identifier, module fabricator, module packaging
	 * date, ICC manufacturer, IC embedding date, pre-personalizer,
	 * pre-perso equipment date (2 each), pre-perso equipment id (4),
	 * personalizer, personalization date (2 each), perso equipment id (4).
	 * Dates are YDDD in BCD (year digit, day of year): 6330 = 2026, day 330.
	 */
	uint8_t v[42] = {0x50, 0x47,		  /* IC fabricator "PG" */
			 0x00, 0x02,		  /* IC type */
			 0x70, 0x67,		  /* OS identifier "pg" */
			 0x63, 0x30,		  /* OS release date */
			 0x01, 0x00,		  /* OS release level 1.0 */
			 0x63, 0x30,		  /* IC fabrication date */
			 0,    0,    0,	   0,	  /* IC serial number (below) */
			 0x00, 0x01,		  /* IC batch identifier */
			 0x50, 0x47,		  /* module fabricator */
			 0x63, 0x30,		  /* module packaging date */
			 0x50, 0x47,		  /* ICC manufacturer */
			 0x63, 0x30,		  /* IC embedding date */
			 0x50, 0x47,		  /* pre-personalizer */
			 0x63, 0x30,		  /* pre-perso equipment date */
			 0x00, 0x00, 0x00, 0x01,  /* pre-perso equipment id */
			 0x50, 0x47,		  /* personalizer */
			 0x63, 0x30,		  /* personalization date */
			 0x00, 0x00, 0x00, 0x01}; /* perso equipment id */
	struct pg_buf b = PG_BUF_INIT(64);
	int rc;

	v[12] = (uint8_t)(rt->serial >> 24);
	v[13] = (uint8_t)(rt->serial >> 16);
	v[14] = (uint8_t)(rt->serial >> 8);
	v[15] = (uint8_t)rt->serial;
	rc = pg_tlv_append(&b, 0x9F7F, v, sizeof(v));
	if (rc < 0)
		goto out;
	if (b.len > outlen) {
		rc = PG_ETOOBIG;
		goto out;
	}
	memcpy(out, b.data, b.len);
	rc = (int)b.len;
out:
	pg_buf_release(&b);
	return rc;
}

/* The issuer security domain: GET DATA for the CPLC (CLA 00 or 80, INS CA, P1P2 9F7F). */
static int
isd_process(struct pg_card_rt *rt, void *state, int channel, const struct pg_capdu *c,
	    uint8_t *resp, size_t *rlen, uint16_t *sw)
{
	(void)state, (void)channel;
	if (c->ins == 0xCA || c->ins == 0xCB) {
		if (c->p1 == 0x9F && c->p2 == 0x7F) {
			int n = pg_card_rt_cplc(rt, resp, *rlen);

			if (n < 0)
				return n;
			if (c->has_le && c->le < (size_t)n && c->le != 256) {
				*rlen = 0;
				*sw = PG_SW_WRONG_LE(n);
				return 0;
			}
			*rlen = (size_t)n;
			*sw = PG_SW_OK;
			return 0;
		}
		*rlen = 0;
		*sw = PG_SW_REF_DATA_NOT_FOUND;
		return 0;
	}
	*rlen = 0;
	*sw = PG_SW_INS_NOT_SUPPORTED;
	return 0;
}

/* The test applet: ECHO and GET COUNTER. */
static int
test_process(struct pg_card_rt *rt, void *state, int channel, const struct pg_capdu *c,
	     uint8_t *resp, size_t *rlen, uint16_t *sw)
{
	size_t cap = *rlen;

	(void)state, (void)channel;
	*rlen = 0;
	switch (c->ins) {
	case PG_TEST_INS_ECHO:
		if (c->lc > 0) {
			/*
			 * Echo the data (at most Ne when Le is present). Without Le too:
			 * T=0 carries case 4 as case 3 + GET RESPONSE (ISO/IEC 7816-3
			 * 12.2.4), so a card cannot tell the two apart.
			 */
			size_t n = c->has_le && c->le < c->lc ? c->le : c->lc;

			if (n > cap)
				return PG_ETOOBIG;
			memcpy(resp, c->data, n);
			*rlen = n;
		} else if (c->has_le) {
			/* Case 2: Ne bytes of a counting pattern (long responses for link tests).
			 */
			if (c->le > cap)
				return PG_ETOOBIG;
			for (size_t i = 0; i < c->le; i++)
				resp[i] = (uint8_t)i;
			*rlen = c->le;
		}
		*sw = PG_SW_OK;
		return 0;
	case PG_TEST_INS_COUNTER:
		if (cap < 8)
			return PG_ETOOBIG;
		for (int i = 0; i < 8; i++)
			resp[i] = (uint8_t)(rt->counter >> (56 - 8 * i));
		*rlen = 8;
		*sw = PG_SW_OK;
		return 0;
	default:
		*sw = PG_SW_INS_NOT_SUPPORTED;
		return 0;
	}
}

static int
rt_process(void *ctx, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t *rlen)
{
	struct pg_card_rt *rt = ctx;
	struct pg_capdu c;
	size_t cap = *rlen, dlen;
	uint16_t sw;
	int chn, rc;

	if (cap < 2)
		return PG_ETOOBIG;
	dlen = cap - 2;
	rt->counter++;
	if (pg_capdu_parse(&c, capdu, clen) < 0) {
		/* A malformed length field is the card's "wrong length", not a mute card. */
		uint16_t bad = clen < 4		  ? PG_SW_UNKNOWN
			       : capdu[0] == 0xFF ? PG_SW_CLA_NOT_SUPPORTED
						  : PG_SW_WRONG_LENGTH;

		*rlen = put_sw(rapdu, 0, bad);
		return 0;
	}
	chn = cla_channel(c.cla);
	if (chn < 0) {
		*rlen = put_sw(rapdu, 0, PG_SW_CLA_NOT_SUPPORTED);
		return 0;
	}
	if (chn >= rt->max_channels || !rt->ch[chn].open) {
		*rlen = put_sw(rapdu, 0, PG_SW_CHANNEL_NOT_SUPPORTED);
		return 0;
	}
	if (c.ins == 0xA4 && pg_cla_is_interindustry(c.cla)) {
		sw = do_select(rt, chn, &c, rapdu, &dlen);
	} else if (c.ins == 0x70 && pg_cla_is_interindustry(c.cla)) {
		sw = do_manage_channel(rt, chn, &c, rapdu, &dlen);
	} else if (rt->ch[chn].selected == NO_APPLET) {
		dlen = 0;
		sw = PG_SW_CONDITIONS;
	} else {
		struct pg_applet *a = &rt->applets[rt->ch[chn].selected];

		rc = a->process(rt, a->state, chn, &c, rapdu, &dlen, &sw);
		if (rc < 0) {
			pg_debug("card", "applet '%s' fault: %s", a->name, pg_strerror(rc));
			dlen = 0;
			sw = rc == PG_ETOOBIG ? PG_SW_WRONG_LENGTH : PG_SW_UNKNOWN;
		}
	}
	*rlen = put_sw(rapdu, dlen, sw);
	return 0;
}

int
pg_card_rt_add_applet(struct pg_card_rt *rt, const struct pg_applet *a)
{
	if (!a->process || a->aid_len < 5 || a->aid_len > PG_AID_MAX)
		return pg_error(PG_EINVAL, "card", "applet '%s': AID must be 5..16 bytes",
				a->name ? a->name : "?");
	for (int i = 0; i < rt->napplets; i++)
		if (rt->applets[i].aid_len == a->aid_len &&
		    memcmp(rt->applets[i].aid, a->aid, a->aid_len) == 0)
			return pg_error(PG_EEXIST, "card", "applet AID already installed");
	if (rt->napplets >= PG_CARD_MAX_APPLETS)
		return pg_error(PG_ERANGE, "card", "applet table full (%d)", PG_CARD_MAX_APPLETS);
	rt->applets[rt->napplets++] = *a;
	return 0;
}

int
pg_card_rt_new(struct pg_card_rt **out, const struct pg_card_config *cfg)
{
	struct pg_card_rt *rt;
	struct pg_applet isd = {
	    .name = "isd", .aid_len = sizeof(pg_card_isd_aid), .process = isd_process};
	int rc;

	*out = NULL;
	if (cfg->atr && (cfg->atr_len < 2 || cfg->atr_len > PG_ATR_MAX))
		return pg_error(PG_EINVAL, "card", "ATR must be 2..%u bytes", PG_ATR_MAX);
	/* A card never answers with an ATR a reader would call wrong (issue 13 item 11). */
	if (cfg->atr && (rc = pgi_atr_check(cfg->atr, cfg->atr_len)) < 0)
		return rc;
	if (cfg->max_channels < 0 || cfg->max_channels > PG_CARD_MAX_CHANNELS)
		return pg_error(PG_EINVAL, "card", "max channels must be 1..%d",
				PG_CARD_MAX_CHANNELS);
	/* The one allocation of the runtime: from the host's allocator (a VSE's arena) if given. */
	rt = cfg->alloc ? cfg->alloc(cfg->actx, sizeof(*rt)) : calloc(1, sizeof(*rt));
	if (!rt)
		return PG_ENOMEM;
	if (cfg->alloc)
		memset(rt, 0, sizeof(*rt));
	rt->custom_alloc = cfg->alloc != NULL;
	rt->dealloc = cfg->dealloc;
	rt->actx = cfg->actx;
	if (cfg->atr) {
		memcpy(rt->atr, cfg->atr, cfg->atr_len);
		rt->atr_len = cfg->atr_len;
	} else {
		rc = pg_card_atr_build(rt->atr, sizeof(rt->atr), default_atr_id,
				       sizeof(default_atr_id));
		if (rc < 0) {
			pg_card_rt_free(rt);
			return rc;
		}
		rt->atr_len = (size_t)rc;
	}
	rt->serial = cfg->serial;
	rt->max_channels = cfg->max_channels ? cfg->max_channels : PG_CARD_MAX_CHANNELS;
	rt->card.ctx = rt;
	rt->card.atr = rt_atr;
	rt->card.process = rt_process;
	rt->card.reset = rt_reset;
	memcpy(isd.aid, pg_card_isd_aid, sizeof(pg_card_isd_aid));
	rc = pg_card_rt_add_applet(rt, cfg->isd ? cfg->isd : &isd);
	if (rc < 0) {
		pg_card_rt_free(rt);
		return rc;
	}
	rt->isd = 0;
	rt_reset(rt);
	*out = rt;
	return 0;
}

void
pg_card_rt_free(struct pg_card_rt *rt)
{
	if (!rt)
		return;
	if (!rt->custom_alloc)
		free(rt);
	else if (rt->dealloc)
		rt->dealloc(rt->actx, rt);
}

int
pg_card_rt_remove_applet(struct pg_card_rt *rt, const uint8_t *aid, size_t aid_len)
{
	int i;

	for (i = 0; i < rt->napplets; i++)
		if (rt->applets[i].aid_len == aid_len &&
		    memcmp(rt->applets[i].aid, aid, aid_len) == 0)
			break;
	if (i == rt->napplets || i == rt->isd)
		return PG_ENOENT;
	memmove(&rt->applets[i], &rt->applets[i + 1],
		(size_t)(rt->napplets - i - 1) * sizeof(rt->applets[0]));
	rt->napplets--;
	if (rt->isd > i)
		rt->isd--;
	for (int c = 0; c < PG_CARD_MAX_CHANNELS; c++) {
		if (rt->ch[c].selected == i)
			rt->ch[c].selected = NO_APPLET;
		else if (rt->ch[c].selected > i)
			rt->ch[c].selected--;
	}
	return 0;
}

const struct pg_applet *
pg_card_rt_selected(const struct pg_card_rt *rt, int channel)
{
	if (channel < 0 || channel >= rt->max_channels || !rt->ch[channel].open ||
	    rt->ch[channel].selected == NO_APPLET)
		return NULL;
	return &rt->applets[rt->ch[channel].selected];
}

const struct pg_card *
pg_card_rt_card(struct pg_card_rt *rt)
{
	return &rt->card;
}

uint64_t
pg_card_rt_counter(const struct pg_card_rt *rt)
{
	return rt->counter;
}

int
pg_card_rt_open_channels(const struct pg_card_rt *rt)
{
	int n = 0;

	for (int i = 0; i < rt->max_channels; i++)
		n += rt->ch[i].open;
	return n;
}

int
pg_card_atr_build(uint8_t *out, size_t cap, const uint8_t *id, size_t idlen)
{
	size_t i = 0;
	uint8_t x = 0;

	if (idlen < 1 || idlen > 13 || cap < 4 + 2 + idlen + 1)
		return pg_error(PG_EINVAL, "card", "card issuer's data of %zu bytes (1..13)",
				idlen);
	out[i++] = 0x3B;			  /* TS: direct convention */
	out[i++] = (uint8_t)(0x80 | (2 + idlen)); /* T0: TD1 follows, K historical bytes */
	out[i++] = 0x80;			  /* TD1: TD2 follows, T=0 */
	out[i++] = 0x01;			  /* TD2: T=1 */
	out[i++] = 0x80;			  /* category: COMPACT-TLV objects */
	out[i++] = (uint8_t)(0x50 | idlen);	  /* tag 5, card issuer's data */
	memcpy(out + i, id, idlen);
	i += idlen;
	for (size_t j = 1; j < i; j++)
		x ^= out[j];
	out[i++] = x; /* TCK: T=1 is offered (7816-3 8.2.5) */
	return (int)i;
}

int
pg_card_sim_new(struct pg_card_rt **out, uint32_t serial, const uint8_t *atr, size_t atr_len)
{
	struct pg_card_config cfg = {.atr = atr, .atr_len = atr_len, .serial = serial};
	struct pg_applet test = {
	    .name = "test", .aid_len = sizeof(pg_card_test_aid), .process = test_process};
	int rc;

	rc = pg_card_rt_new(out, &cfg);
	if (rc < 0)
		return rc;
	memcpy(test.aid, pg_card_test_aid, sizeof(pg_card_test_aid));
	rc = pg_card_rt_add_applet(*out, &test);
	if (rc < 0) {
		pg_card_rt_free(*out);
		*out = NULL;
	}
	return rc;
}
