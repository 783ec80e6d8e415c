/*
 * A small simulated SE for the SE OS (issue 7) until the VSE's full ISD
 * lands: the card runtime (test applet + ISD answering CPLC), with the ISD
 * on the basic channel extended by SCP03 (GP 2.3 Amendment D, card role),
 * GET DATA IIN / CIN / configuration version (DF50) and GET STATUS (GP 2.3
 * 11.4, P2 02 TLV format), plus an ARA-M applet (GP SEAC v1.1: GET DATA
 * [All] FF40, [Next] FF60, [Refresh tag] DF20) and an echo applet.
 */
#include "payguard/card.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/mem.h"
#include "payguard/seos.h"

#include <stdlib.h>
#include <string.h>

#define SUBSYS "seos-card"

static const uint8_t echo_aid[7] = {0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x10};

/*
 * ATR: T=0 and T=1 offered, IFSC 254 (TA3), historical bytes of category 80
 * with card capabilities (ISO/IEC 7816-4 8.1.1.2.7, tag 73): selection by
 * full DF name, extended Lc/Le, logical channels assigned by the card, 8+.
 */
static const uint8_t atr_body[] = {0x3B, 0x85, 0x80, 0x11, 0xFE, 0x80, 0x73, 0x80, 0x21, 0x5F};

struct pg_seos_testcard {
	struct pg_card card;
	struct pg_card_rt *rt;
	const struct pg_card *inner;
	struct pg_scp03 s;
	struct pg_scp03_card sd;
	uint32_t version;
	int no_version;
	uint8_t *rules;
	size_t rules_len, next_off;
	uint8_t refresh[8];
	int isd_selected; /* the ISD is selected on the basic channel */
	uint64_t apdus;
	uint8_t atr[PG_ATR_MAX];
	size_t atr_len;
	uint8_t plain[PG_APDU_MAX_C];
};

/* Logical channel of any class byte (GP's proprietary 80..8F, C0..CF use the 7816-4 layout). */
static int
chan_of(uint8_t cla)
{
	return (cla & 0x40) ? 4 + (cla & 0x0F) : (cla & 0x03);
}

static size_t
put_sw(uint8_t *r, size_t at, uint16_t sw)
{
	r[at] = (uint8_t)(sw >> 8);
	r[at + 1] = (uint8_t)sw;
	return at + 2;
}

/* ---- ARA-M applet ---- */

static int
ara_process(struct pg_card_rt *rt, void *state, int channel, const struct pg_capdu *c,
	    uint8_t *resp, size_t *rlen, uint16_t *sw)
{
	struct pg_seos_testcard *tc = state;
	size_t cap = *rlen, n;

	(void)rt, (void)channel;
	*rlen = 0;
	if (c->ins != 0xCA) {
		*sw = PG_SW_INS_NOT_SUPPORTED;
		return 0;
	}
	if (c->p1 == 0xDF && c->p2 == 0x20) { /* refresh tag */
		if (cap < 11)
			return PG_ETOOBIG;
		resp[0] = 0xDF;
		resp[1] = 0x20;
		resp[2] = 8;
		memcpy(resp + 3, tc->refresh, 8);
		*rlen = 11;
		*sw = PG_SW_OK;
		return 0;
	}
	if (c->p1 == 0xFF && c->p2 == 0x40)
		tc->next_off = 0;
	else if (!(c->p1 == 0xFF && c->p2 == 0x60) || tc->next_off == 0) {
		*sw = PG_SW_REF_DATA_NOT_FOUND;
		return 0;
	}
	/* At most 255 bytes a response: the rest comes with GET DATA [Next]. */
	n = tc->rules_len - tc->next_off;
	if (n > 255)
		n = 255;
	if (n > cap)
		return PG_ETOOBIG;
	memcpy(resp, tc->rules + tc->next_off, n);
	tc->next_off += n;
	if (tc->next_off == tc->rules_len)
		tc->next_off = 0;
	*rlen = n;
	*sw = PG_SW_OK;
	return 0;
}

static int
echo_process(struct pg_card_rt *rt, void *state, int channel, const struct pg_capdu *c,
	     uint8_t *resp, size_t *rlen, uint16_t *sw)
{
	(void)rt, (void)state, (void)channel;
	if (c->lc > *rlen)
		return PG_ETOOBIG;
	memcpy(resp, c->data, c->lc);
	*rlen = c->lc;
	*sw = PG_SW_OK;
	return 0;
}

/* ---- ISD extension on the basic channel ---- */

/* GET STATUS P1 40 (applications), P2 02 (TLV): E3 { 4F AID, 9F70 LC, C5 privileges }. */
static uint16_t
get_status(struct pg_seos_testcard *tc, const struct pg_capdu *c, uint8_t *resp, size_t *rlen)
{
	static const struct {
		const uint8_t *aid;
		size_t len;
		uint8_t lc;
	} apps[] = {
	    {pg_card_test_aid, sizeof(pg_card_test_aid), 0x07},
	    {echo_aid, sizeof(echo_aid), 0x0F},
	    {pg_ara_m_aid, sizeof(pg_ara_m_aid), 0x07},
	};
	size_t n = 0;

	(void)tc;
	if (c->p1 != 0x40 || (c->p2 & 0xFE) != 0x02)
		return PG_SW_INCORRECT_P1P2;
	for (size_t i = 0; i < sizeof(apps) / sizeof(apps[0]); i++) {
		size_t need = 2 + 2 + apps[i].len + 4 + 5;

		if (n + need > *rlen)
			return PG_SW_WRONG_LENGTH;
		resp[n++] = 0xE3;
		resp[n++] = (uint8_t)(need - 2);
		resp[n++] = 0x4F;
		resp[n++] = (uint8_t)apps[i].len;
		memcpy(resp + n, apps[i].aid, apps[i].len);
		n += apps[i].len;
		resp[n++] = 0x9F;
		resp[n++] = 0x70;
		resp[n++] = 1;
		resp[n++] = apps[i].lc;
		resp[n++] = 0xC5;
		resp[n++] = 3;
		resp[n++] = 0;
		resp[n++] = 0;
		resp[n++] = 0;
	}
	*rlen = n;
	return PG_SW_OK;
}

/* Handles an ISD command the runtime does not know; returns 1 if handled. */
static int
isd_ext(struct pg_seos_testcard *tc, const struct pg_capdu *c, int secured, uint8_t *resp,
	size_t *rlen, uint16_t *sw)
{
	uint16_t tag = (uint16_t)(c->p1 << 8 | c->p2);

	if (c->ins == 0xF2 && (c->cla & 0x80)) {
		*sw = secured ? get_status(tc, c, resp, rlen) : PG_SW_SECURITY_STATUS;
		if (!secured || *sw != PG_SW_OK)
			*rlen = 0;
		return 1;
	}
	if (c->ins == 0xCA && (tag == PG_SEOS_TAG_IIN || tag == PG_SEOS_TAG_CIN)) {
		/* IIN: 42 "PG" issuer; CIN: 45 + the IC serial as an 8-byte number. */
		size_t n = 0;

		resp[n++] = (uint8_t)tag;
		if (tag == PG_SEOS_TAG_IIN) {
			resp[n++] = 3;
			resp[n++] = 0x89;
			resp[n++] = 0x50;
			resp[n++] = 0x47;
		} else {
			uint8_t cplc[64];

			if (pg_card_rt_cplc(tc->rt, cplc, sizeof(cplc)) < 0)
				return 0;
			resp[n++] = 8;
			memcpy(resp + n, "\x50\x47\x00\x02", 4);
			memcpy(resp + n + 4, cplc + 3 + 12, 4);
			n += 8;
		}
		*rlen = n;
		*sw = PG_SW_OK;
		return 1;
	}
	if (c->ins == 0xCA && tag == PG_SEOS_TAG_CONFIG_VERSION && tc->no_version) {
		*rlen = 0;
		*sw = PG_SW_REF_DATA_NOT_FOUND;
		return 1;
	}
	if (c->ins == 0xCA && tag == PG_SEOS_TAG_CONFIG_VERSION) {
		resp[0] = 0xDF;
		resp[1] = 0x50;
		resp[2] = 4;
		resp[3] = (uint8_t)(tc->version >> 24);
		resp[4] = (uint8_t)(tc->version >> 16);
		resp[5] = (uint8_t)(tc->version >> 8);
		resp[6] = (uint8_t)tc->version;
		*rlen = 7;
		*sw = PG_SW_OK;
		return 1;
	}
	return 0;
}

static int
tc_atr(void *ctx, uint8_t *atr, size_t *len)
{
	struct pg_seos_testcard *tc = ctx;

	if (*len < tc->atr_len)
		return PG_ETOOBIG;
	memcpy(atr, tc->atr, tc->atr_len);
	*len = tc->atr_len;
	return 0;
}

static void
tc_reset(void *ctx)
{
	struct pg_seos_testcard *tc = ctx;

	tc->inner->reset(tc->inner->ctx);
	pg_scp03_close(&tc->s);
	tc->isd_selected = 1;
	tc->next_off = 0;
}

static int
tc_process(void *ctx, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t *rlen)
{
	struct pg_seos_testcard *tc = ctx;
	struct pg_capdu c;
	size_t cap = *rlen, dlen;
	uint16_t sw;
	int n, rc;

	tc->apdus++;
	if (cap < 2)
		return PG_ETOOBIG;
	if (clen < 4 || pg_capdu_parse(&c, capdu, clen) < 0 || (c.cla & 0x80) == 0 ||
	    chan_of(c.cla) != 0 || !tc->isd_selected)
		goto runtime;
	/* The ISD on the basic channel, proprietary class: SCP03 and the extension. */
	if (c.ins == 0x50 || c.ins == 0x82) {
		n = pg_scp03_card_process(&tc->s, &tc->sd, capdu, clen, rapdu, cap);
		if (n < 0)
			return n;
		*rlen = (size_t)n;
		return 0;
	}
	if (c.cla & 0x04) {
		n = pg_scp03_card_unwrap(&tc->s, capdu, clen, tc->plain, sizeof(tc->plain), &sw);
		if (n < 0) {
			*rlen = put_sw(rapdu, 0, sw);
			return 0;
		}
		if (pg_capdu_parse(&c, tc->plain, (size_t)n) < 0) {
			*rlen = put_sw(rapdu, 0, PG_SW_WRONG_LENGTH);
			return 0;
		}
		uint8_t data[512];

		dlen = sizeof(data);
		if (!isd_ext(tc, &c, 1, data, &dlen, &sw)) {
			/* A secured command the runtime's ISD answers (e.g. CPLC). */
			size_t il = sizeof(data);

			rc = tc->inner->process(tc->inner->ctx, tc->plain, (size_t)n, data, &il);
			if (rc < 0)
				return rc;
			sw = pg_rapdu_sw(data, il);
			dlen = il - 2;
		}
		n = pg_scp03_card_wrap(&tc->s, data, dlen, sw, rapdu, cap);
		if (n < 0)
			return n;
		*rlen = (size_t)n;
		return 0;
	}
	dlen = cap - 2;
	if (isd_ext(tc, &c, 0, rapdu, &dlen, &sw)) {
		*rlen = put_sw(rapdu, dlen, sw);
		return 0;
	}
runtime:
	rc = tc->inner->process(tc->inner->ctx, capdu, clen, rapdu, rlen);
	if (rc < 0)
		return rc;
	/* A successful SELECT on the basic channel ends the ISD's session (GP 2.3 10.2). */
	if (clen >= 5 && capdu[1] == 0xA4 && (capdu[0] & 0x80) == 0 && chan_of(capdu[0]) == 0 &&
	    pg_rapdu_sw(rapdu, *rlen) == PG_SW_OK) {
		tc->isd_selected = clen >= 13 && capdu[4] == sizeof(pg_card_isd_aid) &&
				   memcmp(capdu + 5, pg_card_isd_aid, sizeof(pg_card_isd_aid)) == 0;
		pg_scp03_close(&tc->s);
	}
	return 0;
}

/* The default rules: every client, every application, every command. */
static const uint8_t default_rules[] = {0xFF, 0x40, 0x0D, 0xE2, 0x0B, 0xE1, 0x04, 0x4F,
					0x00, 0xC1, 0x00, 0xE3, 0x03, 0xD0, 0x01, 0x01};

int
pg_seos_testcard_new(struct pg_seos_testcard **out, const struct pg_seos_testcard_cfg *cfg)
{
	struct pg_seos_testcard *tc;
	struct pg_applet ara = {
	    .name = "ara-m", .aid_len = sizeof(pg_ara_m_aid), .process = ara_process};
	struct pg_applet echo = {
	    .name = "echo", .aid_len = sizeof(echo_aid), .process = echo_process};
	uint8_t tck = 0;
	int rc;

	*out = NULL;
	tc = calloc(1, sizeof(*tc));
	if (!tc)
		return PG_ENOMEM;
	memcpy(tc->atr, atr_body, sizeof(atr_body));
	for (size_t i = 1; i < sizeof(atr_body); i++)
		tck ^= atr_body[i];
	tc->atr[sizeof(atr_body)] = tck;
	tc->atr_len = sizeof(atr_body) + 1;
	rc = pg_card_sim_new(&tc->rt, cfg->serial, tc->atr, tc->atr_len);
	if (rc < 0)
		goto fail;
	tc->inner = pg_card_rt_card(tc->rt);
	memcpy(ara.aid, pg_ara_m_aid, sizeof(pg_ara_m_aid));
	ara.state = tc;
	memcpy(echo.aid, echo_aid, sizeof(echo_aid));
	if ((rc = pg_card_rt_add_applet(tc->rt, &ara)) < 0 ||
	    (rc = pg_card_rt_add_applet(tc->rt, &echo)) < 0)
		goto fail;
	tc->rules_len = cfg->rules ? cfg->rules_len : sizeof(default_rules);
	tc->rules = malloc(tc->rules_len);
	if (!tc->rules) {
		rc = PG_ENOMEM;
		goto fail;
	}
	memcpy(tc->rules, cfg->rules ? cfg->rules : default_rules, tc->rules_len);
	memset(tc->refresh, 0, sizeof(tc->refresh));
	tc->refresh[7] = (uint8_t)cfg->version;
	tc->version = cfg->version;
	tc->no_version = cfg->no_version;
	tc->sd.keys = cfg->keys;
	tc->sd.i_param = 0x70;
	pg_seos_testcard_id(tc, tc->sd.div_data);
	memcpy(tc->sd.aid, pg_card_isd_aid, sizeof(pg_card_isd_aid));
	tc->sd.aid_len = sizeof(pg_card_isd_aid);
	tc->card.ctx = tc;
	tc->card.atr = tc_atr;
	tc->card.process = tc_process;
	tc->card.reset = tc_reset;
	tc->isd_selected = 1;
	*out = tc;
	return 0;
fail:
	pg_seos_testcard_free(tc);
	return rc;
}

void
pg_seos_testcard_free(struct pg_seos_testcard *tc)
{
	if (!tc)
		return;
	pg_card_rt_free(tc->rt);
	free(tc->rules);
	pg_memzero(&tc->sd, sizeof(tc->sd));
	pg_scp03_close(&tc->s);
	free(tc);
}

const struct pg_card *
pg_seos_testcard_card(struct pg_seos_testcard *tc)
{
	return &tc->card;
}

void
pg_seos_testcard_set_version(struct pg_seos_testcard *tc, uint32_t version)
{
	tc->version = version;
	tc->refresh[7] = (uint8_t)version;
}

void
pg_seos_testcard_set_keys(struct pg_seos_testcard *tc, const struct pg_scp03_keys *k)
{
	tc->sd.keys = *k;
}

void
pg_seos_testcard_id(const struct pg_seos_testcard *tc, uint8_t id[PG_SEOS_ID_LEN])
{
	uint8_t cplc[64];

	/* CPLC value starts after 9F7F 2A: fabricator, type (4), serial at 12 (4), batch (2). */
	memset(id, 0, PG_SEOS_ID_LEN);
	if (pg_card_rt_cplc(tc->rt, cplc, sizeof(cplc)) < 45)
		return;
	memcpy(id, cplc + 3, 4);
	memcpy(id + 4, cplc + 3 + 12, 6);
}

uint64_t
pg_seos_testcard_apdus(const struct pg_seos_testcard *tc)
{
	return tc->apdus;
}
