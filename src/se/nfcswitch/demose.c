/*
 * Demo SEs for the NFC switch (issue 8) until issue 3's virtual SE applets
 * are on main: the card runtime (src/se/card) with a GlobalPlatform-like ISD
 * front (GET STATUS P1 40 in the GP 2.3 TLV format, DELETE by AID), an own
 * PPSE, and scripted EMV contactless applets (payment and transit):
 * SELECT FCI, GET PROCESSING OPTIONS, READ RECORD, GENERATE AC whose
 * cryptogram is an HMAC-SHA-256 over the CDOL data and the ATC.
 */
#include "payguard/apdu.h"
#include "payguard/buf.h"
#include "payguard/card.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/nfcswitch.h"
#include "payguard/tlv.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t ppse_name[14] = {'2', 'P', 'A', 'Y', '.', 'S', 'Y',
				      'S', '.', 'D', 'D', 'F', '0', '1'};

struct dapplet {
	struct pg_nfcsw_demo_se *owner;
	enum pg_nfcsw_applet_kind kind;
	uint8_t aid[PG_AID_MAX];
	size_t len;
	char label[PG_NFCSW_LABEL_MAX + 1];
	uint8_t prio;
	int deleted, gpo_done;
	uint16_t atc;
	uint32_t balance;
	uint8_t key[32];
	uint8_t pan[8];
};

struct pg_nfcsw_demo_se {
	struct pg_card_rt *rt;
	const struct pg_card *inner;
	struct pg_card card;
	struct dapplet *apps[PG_CARD_MAX_APPLETS];
	int n, with_ppse;
	uint32_t serial;
	uint64_t txns;
};

static size_t
put_sw(uint8_t *r, size_t at, uint16_t sw)
{
	r[at] = (uint8_t)(sw >> 8);
	r[at + 1] = (uint8_t)sw;
	return at + 2;
}

static uint16_t
applet_select(struct pg_card_rt *rt, void *state, int channel)
{
	struct dapplet *a = state;

	(void)rt, (void)channel;
	if (a->deleted)
		return PG_SW_NOT_FOUND;
	a->gpo_done = 0;
	return PG_SW_OK;
}

/* Copies a built TLV buffer into the response. */
static int
emit(struct pg_buf *b, uint8_t *resp, size_t *rlen, uint16_t *sw)
{
	if (b->len > *rlen) {
		pg_buf_release(b);
		return PG_ETOOBIG;
	}
	memcpy(resp, b->data, b->len);
	*rlen = b->len;
	*sw = PG_SW_OK;
	pg_buf_release(b);
	return 0;
}

static int
applet_process(struct pg_card_rt *rt, void *state, int channel, const struct pg_capdu *c,
	       uint8_t *resp, size_t *rlen, uint16_t *sw)
{
	struct dapplet *a = state;
	struct pg_buf b = PG_BUF_INIT(256);
	size_t m;
	int rc = 0;

	(void)rt, (void)channel;
	if (a->deleted) {
		*rlen = 0;
		*sw = PG_SW_NOT_FOUND;
		return 0;
	}
	if (c->cla == 0x80 && c->ins == 0xA8) { /* GET PROCESSING OPTIONS */
		uint8_t aip[2] = {0x19, 0x80}, afl[4] = {0x08, 0x01, 0x01, 0x00};

		if (c->lc < 2 || c->data[0] != 0x83 || c->data[1] != c->lc - 2 ||
		    (c->data[1] != 0 && c->data[1] != 14)) { /* empty or the PDOL's 4 + 6 + 4 */
			*rlen = 0;
			*sw = PG_SW_WRONG_DATA;
			return 0;
		}
		if (a->kind == PG_NFCSW_APPLET_TRANSIT)
			aip[0] = 0x00; /* no offline data authentication: a transit profile */
		a->gpo_done = 1;
		a->owner->txns++;
		if ((rc = pg_tlv_open(&b, 0x77, &m)) < 0 ||
		    (rc = pg_tlv_append(&b, 0x82, aip, 2)) < 0 ||
		    (rc = pg_tlv_append(&b, 0x94, afl, 4)) < 0 || (rc = pg_tlv_close(&b, m)) < 0)
			goto fail;
		return emit(&b, resp, rlen, sw);
	}
	if (c->cla == 0x00 && c->ins == 0xB2) { /* READ RECORD */
		static const uint8_t exp[3] = {0x29, 0x12, 0x31};
		static const uint8_t cdol[] = {0x9F, 0x02, 0x06, 0x9F, 0x37, 0x04};

		if (!a->gpo_done) {
			*rlen = 0;
			*sw = PG_SW_CONDITIONS;
			return 0;
		}
		if (c->p1 != 1 || c->p2 != 0x0C) {
			*rlen = 0;
			*sw = PG_SW_RECORD_NOT_FOUND;
			return 0;
		}
		a->owner->txns++;
		if ((rc = pg_tlv_open(&b, 0x70, &m)) < 0 ||
		    (rc = pg_tlv_append(&b, 0x5A, a->pan, sizeof(a->pan))) < 0 ||
		    (rc = pg_tlv_append(&b, 0x5F24, exp, 3)) < 0 ||
		    (rc = pg_tlv_append(&b, 0x8C, cdol, sizeof(cdol))) < 0 ||
		    (rc = pg_tlv_close(&b, m)) < 0)
			goto fail;
		return emit(&b, resp, rlen, sw);
	}
	if (c->cla == 0x80 && c->ins == 0xAE) { /* GENERATE AC */
		uint8_t atc[2], mac[32], cid = c->p1 & 0xC0, iad[4] = {0x06, 0x01, 0x0A, 0x03};
		unsigned int ml = sizeof(mac);
		uint8_t in[256 + 2];

		if (!a->gpo_done) {
			*rlen = 0;
			*sw = PG_SW_CONDITIONS;
			return 0;
		}
		if (c->lc < 10 || c->lc > 256) {
			*rlen = 0;
			*sw = PG_SW_WRONG_LENGTH;
			return 0;
		}
		a->atc++;
		a->owner->txns++;
		atc[0] = (uint8_t)(a->atc >> 8);
		atc[1] = (uint8_t)a->atc;
		memcpy(in, c->data, c->lc);
		memcpy(in + c->lc, atc, 2);
		if (!HMAC(EVP_sha256(), a->key, sizeof(a->key), in, c->lc + 2, mac, &ml)) {
			rc = PG_ECRYPTO;
			goto fail;
		}
		if (cid == 0xC0)
			cid = 0x00; /* RFU: answer AAC */
		if ((rc = pg_tlv_open(&b, 0x77, &m)) < 0 ||
		    (rc = pg_tlv_append(&b, 0x9F27, &cid, 1)) < 0 ||
		    (rc = pg_tlv_append(&b, 0x9F36, atc, 2)) < 0 ||
		    (rc = pg_tlv_append(&b, 0x9F26, mac, 8)) < 0 ||
		    (rc = pg_tlv_append(&b, 0x9F10, iad, sizeof(iad))) < 0 ||
		    (rc = pg_tlv_close(&b, m)) < 0)
			goto fail;
		return emit(&b, resp, rlen, sw);
	}
	if (a->kind == PG_NFCSW_APPLET_TRANSIT && c->cla == 0x80 &&
	    (c->ins == 0x5C || c->ins == 0x54)) { /* GET BALANCE / DEBIT */
		if (c->ins == 0x54) {
			uint32_t amount;

			if (c->lc != 4) {
				*rlen = 0;
				*sw = PG_SW_WRONG_LENGTH;
				return 0;
			}
			amount = (uint32_t)c->data[0] << 24 | (uint32_t)c->data[1] << 16 |
				 (uint32_t)c->data[2] << 8 | c->data[3];
			if (amount > a->balance) {
				*rlen = 0;
				*sw = PG_SW_CONDITIONS;
				return 0;
			}
			a->balance -= amount;
		}
		a->owner->txns++;
		if (*rlen < 4)
			return PG_ETOOBIG;
		resp[0] = (uint8_t)(a->balance >> 24);
		resp[1] = (uint8_t)(a->balance >> 16);
		resp[2] = (uint8_t)(a->balance >> 8);
		resp[3] = (uint8_t)a->balance;
		*rlen = 4;
		*sw = PG_SW_OK;
		return 0;
	}
	*rlen = 0;
	*sw = PG_SW_INS_NOT_SUPPORTED;
	return 0;
fail:
	pg_buf_release(&b);
	return rc;
}

static struct dapplet *
find(struct pg_nfcsw_demo_se *d, const uint8_t *aid, size_t len)
{
	for (int i = 0; i < d->n; i++)
		if (d->apps[i]->len == len && !memcmp(d->apps[i]->aid, aid, len))
			return d->apps[i];
	return NULL;
}

/* FCI of an EMV application (EMV Book 1 11.3.4): 6F { 84 AID, A5 { 50 label, 87 priority } }. */
static int
app_fci(const struct dapplet *a, uint8_t *r, size_t cap, size_t *len)
{
	/* PDOL: terminal transaction qualifiers, amount, unpredictable number. */
	static const uint8_t pdol[] = {0x9F, 0x66, 0x04, 0x9F, 0x02, 0x06, 0x9F, 0x37, 0x04};
	struct pg_buf b = PG_BUF_INIT(128);
	size_t m6f, ma5;
	int rc;

	if ((rc = pg_tlv_open(&b, 0x6F, &m6f)) < 0 ||
	    (rc = pg_tlv_append(&b, 0x84, a->aid, a->len)) < 0 ||
	    (rc = pg_tlv_open(&b, 0xA5, &ma5)) < 0 ||
	    (rc = pg_tlv_append(&b, 0x50, a->label, strlen(a->label))) < 0 ||
	    (rc = pg_tlv_append(&b, 0x87, &a->prio, 1)) < 0 ||
	    (rc = pg_tlv_append(&b, 0x9F38, pdol, sizeof(pdol))) < 0 ||
	    (rc = pg_tlv_close(&b, ma5)) < 0 || (rc = pg_tlv_close(&b, m6f)) < 0)
		goto out;
	if (b.len > cap) {
		rc = PG_ETOOBIG;
		goto out;
	}
	memcpy(r, b.data, b.len);
	*len = b.len;
out:
	pg_buf_release(&b);
	return rc;
}

static int
own_ppse(struct pg_nfcsw_demo_se *d, uint8_t *r, size_t cap, size_t *len)
{
	struct pg_buf b = PG_BUF_INIT(256);
	size_t m6f, ma5, mbf;
	int rc;

	if ((rc = pg_tlv_open(&b, 0x6F, &m6f)) < 0 ||
	    (rc = pg_tlv_append(&b, 0x84, ppse_name, sizeof(ppse_name))) < 0 ||
	    (rc = pg_tlv_open(&b, 0xA5, &ma5)) < 0 || (rc = pg_tlv_open(&b, 0xBF0C, &mbf)) < 0)
		goto out;
	for (int i = 0; i < d->n; i++) {
		const struct dapplet *a = d->apps[i];
		size_t m;

		if (a->deleted || a->kind != PG_NFCSW_APPLET_PAYMENT)
			continue;
		if ((rc = pg_tlv_open(&b, 0x61, &m)) < 0 ||
		    (rc = pg_tlv_append(&b, 0x4F, a->aid, a->len)) < 0 ||
		    (rc = pg_tlv_append(&b, 0x50, a->label, strlen(a->label))) < 0 ||
		    (rc = pg_tlv_append(&b, 0x87, &a->prio, 1)) < 0 ||
		    (rc = pg_tlv_close(&b, m)) < 0)
			goto out;
	}
	if ((rc = pg_tlv_close(&b, mbf)) < 0 || (rc = pg_tlv_close(&b, ma5)) < 0 ||
	    (rc = pg_tlv_close(&b, m6f)) < 0)
		goto out;
	if (b.len > cap) {
		rc = PG_ETOOBIG;
		goto out;
	}
	memcpy(r, b.data, b.len);
	*len = b.len;
out:
	pg_buf_release(&b);
	return rc;
}

/* GET STATUS answer (GP 2.3 11.4.3.2, TLV format): E3 { 4F AID, 9F70 life cycle, C5 privileges }.
 */
static int
get_status(struct pg_nfcsw_demo_se *d, const struct pg_capdu *c, uint8_t *r, size_t cap,
	   size_t *len)
{
	struct pg_buf b = PG_BUF_INIT(PG_APDU_MAX_R);
	int rc = 0, any = 0;

	if (c->p1 != 0x40)
		return PG_SW_REF_DATA_NOT_FOUND; /* only applications are listed here */
	if (!(c->p2 & 0x02))
		return PG_SW_INCORRECT_P1P2; /* the deprecated format is not offered */
	if (c->p2 & 0x01)
		return PG_SW_REF_DATA_NOT_FOUND; /* everything fits in the first block */
	for (int i = 0; i < d->n; i++) {
		const struct dapplet *a = d->apps[i];
		uint8_t lc = PG_NFCSW_LC_SELECTABLE, priv = 0;
		size_t m;

		if (a->deleted)
			continue;
		any = 1;
		if ((rc = pg_tlv_open(&b, 0xE3, &m)) < 0 ||
		    (rc = pg_tlv_append(&b, 0x4F, a->aid, a->len)) < 0 ||
		    (rc = pg_tlv_append(&b, 0x9F70, &lc, 1)) < 0 ||
		    (rc = pg_tlv_append(&b, 0xC5, &priv, 1)) < 0 || (rc = pg_tlv_close(&b, m)) < 0)
			break;
	}
	if (rc >= 0 && b.len > cap)
		rc = PG_ETOOBIG;
	if (rc >= 0) {
		if (b.len) /* an empty buffer has no data pointer */
			memcpy(r, b.data, b.len);
		*len = b.len;
	}
	pg_buf_release(&b);
	if (rc < 0)
		return PG_SW_UNKNOWN;
	return any ? PG_SW_OK : PG_SW_NOT_FOUND;
}

static int
se_process(void *ctx, const uint8_t *capdu, size_t clen, uint8_t *r, size_t *rl)
{
	struct pg_nfcsw_demo_se *d = ctx;
	struct pg_capdu c;
	size_t cap = *rl, n = 0;
	int rc;

	if (cap < 2)
		return PG_ETOOBIG;
	if (pg_capdu_parse(&c, capdu, clen) == 0 && (c.cla & 0x03) == 0) {
		if (c.cla == 0x80 && c.ins == 0xF2) {
			uint16_t st = (uint16_t)get_status(d, &c, r, cap - 2, &n);

			*rl = put_sw(r, st == PG_SW_OK ? n : 0, st);
			return 0;
		}
		if (c.cla == 0x80 && c.ins == 0xE4) { /* DELETE: 4F AID */
			struct dapplet *a = NULL;

			if (c.lc >= 2 && c.data[0] == 0x4F && c.data[1] + 2u <= c.lc)
				a = find(d, c.data + 2, c.data[1]);
			if (!a || a->deleted) {
				*rl = put_sw(r, 0, PG_SW_REF_DATA_NOT_FOUND);
				return 0;
			}
			a->deleted = 1;
			r[0] = 0x00;
			*rl = put_sw(r, 1, PG_SW_OK);
			return 0;
		}
		if (c.ins == 0xA4 && c.p1 == 0x04 && d->with_ppse && c.lc == sizeof(ppse_name) &&
		    !memcmp(c.data, ppse_name, sizeof(ppse_name))) {
			rc = own_ppse(d, r, cap - 2, &n);
			*rl = put_sw(r, rc < 0 ? 0 : n, rc < 0 ? PG_SW_UNKNOWN : PG_SW_OK);
			return 0;
		}
	}
	rc = d->inner->process(d->inner->ctx, capdu, clen, r, rl);
	if (rc < 0)
		return rc;
	/* A selected EMV applet answers with its own FCI (the runtime's is generic). */
	if (c.ins == 0xA4 && c.p1 == 0x04 && (c.p2 & 0x0C) == 0 &&
	    pg_rapdu_sw(r, *rl) == PG_SW_OK) {
		const struct dapplet *a = find(d, c.data, c.lc);

		if (a && app_fci(a, r, cap - 2, &n) == 0)
			*rl = put_sw(r, n, PG_SW_OK);
	}
	return 0;
}

static int
se_atr(void *ctx, uint8_t *atr, size_t *len)
{
	struct pg_nfcsw_demo_se *d = ctx;

	return d->inner->atr(d->inner->ctx, atr, len);
}

static void
se_reset(void *ctx)
{
	struct pg_nfcsw_demo_se *d = ctx;

	if (d->inner->reset)
		d->inner->reset(d->inner->ctx);
}

int
pg_nfcsw_demo_se_new(struct pg_nfcsw_demo_se **out, uint32_t serial, int with_ppse)
{
	struct pg_card_config cfg = {.serial = serial};
	struct pg_nfcsw_demo_se *d = calloc(1, sizeof(*d));
	int rc;

	*out = NULL;
	if (!d)
		return PG_ENOMEM;
	rc = pg_card_rt_new(&d->rt, &cfg);
	if (rc < 0) {
		free(d);
		return rc;
	}
	d->inner = pg_card_rt_card(d->rt);
	d->card.ctx = d;
	d->card.atr = se_atr;
	d->card.process = se_process;
	d->card.reset = se_reset;
	d->with_ppse = with_ppse;
	d->serial = serial;
	*out = d;
	return 0;
}

void
pg_nfcsw_demo_se_free(struct pg_nfcsw_demo_se *d)
{
	if (!d)
		return;
	pg_card_rt_free(d->rt);
	for (int i = 0; i < d->n; i++)
		free(d->apps[i]);
	free(d);
}

int
pg_nfcsw_demo_se_install(struct pg_nfcsw_demo_se *d, enum pg_nfcsw_applet_kind kind,
			 const uint8_t *aid, size_t len, const char *label, uint8_t priority)
{
	struct pg_applet ap = {0};
	struct dapplet *a = find(d, aid, len);
	uint8_t seed[64];
	unsigned int ml = 32;
	int rc;

	if (a) {
		if (!a->deleted)
			return pg_error(PG_EEXIST, "nfcswitch", "applet already installed");
		a->deleted = 0; /* the runtime keeps the class: re-install the instance */
		a->atc = 0;
		return 0;
	}
	if (d->n == PG_CARD_MAX_APPLETS || len < 5 || len > PG_AID_MAX)
		return pg_error(PG_ERANGE, "nfcswitch", "cannot install more applets / bad AID");
	a = calloc(1, sizeof(*a));
	if (!a)
		return PG_ENOMEM;
	a->owner = d;
	a->kind = kind;
	memcpy(a->aid, aid, len);
	a->len = len;
	snprintf(a->label, sizeof(a->label), "%s", label ? label : "APP");
	a->prio = priority;
	a->balance = 5000;
	/* Per-instance demo key and PAN from the SE serial and the AID. */
	seed[0] = (uint8_t)(d->serial >> 24);
	seed[1] = (uint8_t)(d->serial >> 16);
	seed[2] = (uint8_t)(d->serial >> 8);
	seed[3] = (uint8_t)d->serial;
	memcpy(seed + 4, aid, len);
	if (!HMAC(EVP_sha256(), "payguard nfcswitch demo", 23, seed, 4 + len, a->key, &ml)) {
		free(a);
		return PG_ECRYPTO;
	}
	a->pan[0] = 0x47;
	for (int i = 1; i < 8; i++)
		a->pan[i] = (uint8_t)(((a->key[i] % 10) << 4) | (a->key[i + 8] % 10));
	ap.name = a->label;
	memcpy(ap.aid, aid, len);
	ap.aid_len = len;
	ap.select = applet_select;
	ap.process = applet_process;
	ap.state = a;
	rc = pg_card_rt_add_applet(d->rt, &ap);
	if (rc < 0) {
		free(a);
		return rc;
	}
	d->apps[d->n++] = a;
	return 0;
}

int
pg_nfcsw_demo_se_delete(struct pg_nfcsw_demo_se *d, const uint8_t *aid, size_t len)
{
	struct dapplet *a = find(d, aid, len);

	if (!a || a->deleted)
		return pg_error(PG_ENOENT, "nfcswitch", "no such applet");
	a->deleted = 1;
	return 0;
}

const struct pg_card *
pg_nfcsw_demo_se_card(struct pg_nfcsw_demo_se *d)
{
	return &d->card;
}

uint64_t
pg_nfcsw_demo_se_txns(const struct pg_nfcsw_demo_se *d)
{
	return d->txns;
}
