/*
 * The issuer security domain of the GP card (GlobalPlatform Card Specification
 * v2.3): GET DATA (CPLC 9F7F, card recognition data 66 per Annex H, key
 * information template E0, IIN 42, CIN 45, sequence counter C1), GET STATUS,
 * INSTALL, DELETE, STORE DATA (DGI format), PUT KEY and SET STATUS. Card
 * content management and personalisation need an authenticated SCP03 session
 * (the command came C-MACed, gp.c unwraps it). No downloaded code runs: every
 * instance comes from the built-in catalogue.
 */
#include "gp_int.h"

#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/mem.h"
#include "payguard/tlv.h"

#include <string.h>

/* Security domain, card lock, card terminate, card reset (default selected), CVM management. */
const uint8_t pgi_gp_isd_priv[3] = {0x9E, 0x00, 0x00};

uint16_t pgi_gp_get_status(struct pg_gp_card *g, int chn, const struct pg_capdu *c, uint8_t *resp,
			   size_t *rlen);

/* Card recognition data (GP 2.3 Annex H): GP 2.3.1, SCP03 with i=70. */
static const uint8_t card_recognition[] = {
    0x73, 0x2F, 0x06, 0x07, 0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B, 0x01, /* card recognition OID */
    0x60, 0x0C, 0x06, 0x0A, 0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B, 0x02, 0x02, 0x03, 0x01, /* GP */
    0x63, 0x09, 0x06, 0x07, 0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B, 0x03, /* card identification */
    0x64, 0x0B, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B, 0x04, 0x03, 0x70, /* SCP03 */
};

static uint16_t
out_buf(const struct pg_buf *b, uint8_t *resp, size_t *rlen)
{
	if (b->len > *rlen) {
		*rlen = 0;
		return PG_SW_WRONG_LENGTH;
	}
	memcpy(resp, b->data, b->len);
	*rlen = b->len;
	return PG_SW_OK;
}

static uint16_t
get_data(struct pg_gp_card *g, const struct pg_capdu *c, uint8_t *resp, size_t *rlen)
{
	uint16_t tag = (uint16_t)(c->p1 << 8 | c->p2), sw = PG_SW_OK;
	struct pg_buf b = PG_BUF_INIT(512);
	size_t mark;
	int rc = 0;

	switch (tag) {
	case 0x9F7F:
		rc = pg_card_rt_cplc(g->rt, resp, *rlen);
		if (rc < 0) {
			sw = PG_SW_WRONG_LENGTH;
			*rlen = 0;
		} else {
			*rlen = (size_t)rc;
		}
		goto out;
	case 0x0066:
		rc = pg_tlv_append(&b, 0x66, card_recognition, sizeof(card_recognition));
		break;
	case 0x00E0: {
		/* Key information template (GP 2.3 11.3.3.1): C0 {key id, kvn, type 88 AES,
		 * length}. */
		rc = pg_tlv_open(&b, 0xE0, &mark);
		for (uint8_t id = 1; id <= 3 && rc >= 0; id++) {
			uint8_t ki[4] = {id, g->scc.keys.kvn, 0x88, (uint8_t)g->scc.keys.len};

			rc = pg_tlv_append(&b, 0xC0, ki, sizeof(ki));
		}
		if (rc >= 0)
			rc = pg_tlv_close(&b, mark);
		break;
	}
	case 0x0042:
	case 0x0045: {
		const uint8_t *v = tag == 0x42 ? g->iin : g->cin;
		size_t n = tag == 0x42 ? g->iin_len : g->cin_len;

		if (!n) {
			sw = PG_SW_REF_DATA_NOT_FOUND;
			*rlen = 0;
			goto out;
		}
		rc = pg_tlv_append(&b, tag, v, n);
		break;
	}
	case 0xDF50: { /* configuration version (payguard convention, read by the SE OS) */
		if (g->no_cfg_version) {
			sw = PG_SW_REF_DATA_NOT_FOUND;
			*rlen = 0;
			goto out;
		}
		uint8_t v[4] = {(uint8_t)(g->cfg_version >> 24), (uint8_t)(g->cfg_version >> 16),
				(uint8_t)(g->cfg_version >> 8), (uint8_t)g->cfg_version};

		rc = pg_tlv_append(&b, 0xDF50, v, 4);
		break;
	}
	case 0x00C1: { /* sequence counter of the default key version (3 bytes) */
		uint8_t s[3] = {(uint8_t)(g->scc.seq >> 16), (uint8_t)(g->scc.seq >> 8),
				(uint8_t)g->scc.seq};

		rc = pg_tlv_append(&b, 0xC1, s, 3);
		break;
	}
	default:
		sw = PG_SW_REF_DATA_NOT_FOUND;
		*rlen = 0;
		goto out;
	}
	sw = rc < 0 ? PG_SW_UNKNOWN : out_buf(&b, resp, rlen);
out:
	if (sw == PG_SW_OK && c->has_le && c->le < *rlen && c->le != 256) {
		sw = PG_SW_WRONG_LE(*rlen);
		*rlen = 0;
	}
	pg_buf_release(&b);
	return sw;
}

static int
is_isd_aid(const uint8_t *aid, size_t n)
{
	return n == sizeof(pg_card_isd_aid) && memcmp(aid, pg_card_isd_aid, n) == 0;
}

static uint16_t
install(struct pg_gp_card *g, int chn, const struct pg_capdu *c, uint8_t *resp, size_t *rlen)
{
	struct pgi_gp_install in;
	struct gp_inst *inst;
	uint16_t sw;

	*rlen = 0;
	if (!g->cur_auth)
		return PG_SW_SECURITY_STATUS;
	if (g->card_lc == PG_GP_CARD_LOCKED || g->card_lc == PG_GP_CARD_TERMINATED)
		return PG_SW_CONDITIONS;
	if (c->p2 != 0x00 || (c->p1 != 0x04 && c->p1 != 0x08 && c->p1 != 0x0C && c->p1 != 0x20))
		return PG_SW_INCORRECT_P1P2;
	if (pgi_gp_install_parse(c->p1, c->data, c->lc, &in) < 0)
		return PG_SW_WRONG_DATA;
	if (c->p1 & 0x04) {
		const struct gp_class *cls = pgi_gp_class_by_elf(in.elf, in.elf_len);
		uint8_t priv[3] = {0, 0, 0};

		if (!cls || in.mod_len != cls->mod_len || memcmp(in.mod, cls->mod_aid, in.mod_len))
			return PG_SW_REF_DATA_NOT_FOUND; /* not in the catalogue */
		memcpy(priv, in.priv, in.priv_len);
		if (priv[0] & 0x80)
			return PG_SW_WRONG_DATA; /* no supplementary security domains */
		sw = pgi_gp_install(g, cls, in.app, in.app_len, priv, in.c9, in.c9_len,
				    c->p1 & 0x08);
	} else if (c->p1 == 0x08) {
		inst = pgi_gp_find_inst(g, in.app, in.app_len);
		if (!inst)
			return PG_SW_REF_DATA_NOT_FOUND;
		if (inst->lc != PG_GP_APP_INSTALLED)
			return PG_SW_CONDITIONS;
		inst->lc = PG_GP_APP_SELECTABLE;
		if (in.priv_len)
			memcpy(inst->priv + (in.priv_len == 1 ? 0 : 0), in.priv, in.priv_len);
		sw = pgi_gp_sync_table(g) < 0 ? PG_SW_NOT_ENOUGH_MEMORY : PG_SW_OK;
		pgi_gp_dirty(g);
	} else { /* 0x20: for personalization */
		inst = pgi_gp_find_inst(g, in.app, in.app_len);
		if (!inst)
			return PG_SW_REF_DATA_NOT_FOUND;
		if (inst->lc & PG_GP_APP_LOCKED || !inst->cls->store_dgi)
			return PG_SW_CONDITIONS;
		memcpy(g->perso_aid[chn], in.app, in.app_len);
		g->perso_len[chn] = in.app_len;
		g->perso_block[chn] = 0;
		sw = PG_SW_OK;
	}
	if (sw == PG_SW_OK) {
		resp[0] = 0x00; /* GP 11.5.3: one byte 00 */
		*rlen = 1;
	}
	return sw;
}

static uint16_t delete (struct pg_gp_card *g, const struct pg_capdu *c, uint8_t *resp, size_t *rlen)
{
	struct pg_tlv t;
	struct gp_inst *inst;
	int n;

	*rlen = 0;
	if (!g->cur_auth)
		return PG_SW_SECURITY_STATUS;
	if (g->card_lc == PG_GP_CARD_LOCKED || g->card_lc == PG_GP_CARD_TERMINATED)
		return PG_SW_CONDITIONS;
	if (c->p1 != 0x00 || (c->p2 != 0x00 && c->p2 != 0x80))
		return PG_SW_INCORRECT_P1P2;
	/* Exactly one 4F with an AID of 5..16 bytes (no delete tokens). */
	n = pg_tlv_next(&t, c->data, c->lc);
	if (n <= 0 || (size_t)n != c->lc || t.tag != 0x4F || t.len < 5 || t.len > PG_AID_MAX ||
	    t.hdr_len != 2 || c->data[0] != 0x4F)
		return PG_SW_WRONG_DATA;
	if (is_isd_aid(t.val, t.len) || pgi_gp_class_by_elf(t.val, t.len))
		return PG_SW_CONDITIONS; /* the ISD and the ROM load files cannot go */
	inst = pgi_gp_find_inst(g, t.val, t.len);
	if (!inst)
		return PG_SW_REF_DATA_NOT_FOUND;
	pgi_gp_delete_inst(g, inst);
	for (int i = 0; i < GP_CH; i++)
		if (g->perso_len[i] == t.len && memcmp(g->perso_aid[i], t.val, t.len) == 0)
			g->perso_len[i] = 0;
	resp[0] = 0x00;
	*rlen = 1;
	return PG_SW_OK;
}

static uint16_t
isd_store_dgi(struct pg_gp_card *g, uint16_t dgi, const uint8_t *d, size_t n)
{
	if (dgi == 0x0042 || dgi == 0x0045) {
		if (n < 1 || n > 8)
			return PG_SW_WRONG_DATA;
		memcpy(dgi == 0x42 ? g->iin : g->cin, d, n);
		if (dgi == 0x42)
			g->iin_len = n;
		else
			g->cin_len = n;
		if (dgi == 0x45) {
			memset(g->scc.div_data, 0, sizeof(g->scc.div_data));
			memcpy(g->scc.div_data, d, n);
		}
		return PG_SW_OK;
	}
	return PG_SW_REF_DATA_NOT_FOUND;
}

static uint16_t
store_data(struct pg_gp_card *g, int chn, const struct pg_capdu *c, size_t *rlen)
{
	struct gp_inst *target = NULL;
	struct gp_dgi d;
	uint8_t iin[8], cin[8];
	size_t iin_len = g->iin_len, cin_len = g->cin_len, off;
	uint16_t sw = PG_SW_OK;
	int n;

	*rlen = 0;
	if (!g->cur_auth)
		return PG_SW_SECURITY_STATUS;
	if (g->card_lc == PG_GP_CARD_LOCKED || g->card_lc == PG_GP_CARD_TERMINATED)
		return PG_SW_CONDITIONS;
	/* P1: b8 last block, b7-b6 encryption (none), b5-b4 DGI format (01), b3-b1 zero. */
	if ((c->p1 & 0x7F) != 0x08 || c->p2 != (uint8_t)g->perso_block[chn])
		return PG_SW_INCORRECT_P1P2;
	if (g->perso_len[chn]) {
		target = pgi_gp_find_inst(g, g->perso_aid[chn], g->perso_len[chn]);
		if (!target || (target->lc & PG_GP_APP_LOCKED))
			return PG_SW_CONDITIONS;
	}
	/* Parse every DGI before applying any: a malformed block changes nothing. */
	for (off = 0; off < c->lc; off += (size_t)n) {
		n = pgi_gp_dgi_next(&d, c->data + off, c->lc - off);
		if (n < 0)
			return PG_SW_WRONG_DATA;
	}
	if (c->lc == 0)
		return PG_SW_WRONG_LENGTH;
	/* Apply on a copy of the state, so a refused DGI leaves the old one. */
	memcpy(iin, g->iin, 8), memcpy(cin, g->cin, 8);
	if (target)
		memcpy(g->work, target->p, target->cls->pstate);
	for (off = 0; off < c->lc && sw == PG_SW_OK; off += (size_t)n) {
		n = pgi_gp_dgi_next(&d, c->data + off, c->lc - off);
		sw = target ? target->cls->store_dgi(target, d.tag, d.val, d.len)
			    : isd_store_dgi(g, d.tag, d.val, d.len);
	}
	if (sw != PG_SW_OK) {
		if (target)
			memcpy(target->p, g->work, target->cls->pstate);
		memcpy(g->iin, iin, 8), memcpy(g->cin, cin, 8);
		g->iin_len = iin_len, g->cin_len = cin_len;
		pg_memzero(g->work, g->nvm_cap);
		return sw;
	}
	pg_memzero(g->work, g->nvm_cap);
	g->perso_block[chn]++;
	if (c->p1 & 0x80) { /* last block */
		if (target && target->cls->perso_done && target->cls->perso_done(target) &&
		    !(target->lc & PG_GP_APP_LOCKED))
			target->lc = PG_GP_APP_PERSONALIZED;
		g->perso_len[chn] = 0;
		g->perso_block[chn] = 0;
	}
	pgi_gp_config_changed(g); /* rules, IIN/CIN or applet data: an SE OS must re-read */
	return PG_SW_OK;
}

static uint16_t
put_key(struct pg_gp_card *g, uint8_t *resp, size_t *rlen)
{
	struct pg_scp03_keys old = g->scc.keys;
	int chn = g->cur_len ? pg_cla_channel((uint8_t)(g->cur[0] & 0x7F)) : 0;
	int n;
	uint16_t sw;

	*rlen = 0;
	if (!g->cur_auth || chn < 0)
		return PG_SW_SECURITY_STATUS;
	n = pg_scp03_card_put_key(&g->scp[chn], &g->scc, g->cur, g->cur_len, g->resp,
				  GP_SM_MAX + 2);
	if (n < 2) {
		pg_memzero(&old, sizeof(old));
		return PG_SW_UNKNOWN;
	}
	sw = pg_rapdu_sw(g->resp, (size_t)n);
	memcpy(resp, g->resp, (size_t)n - 2);
	*rlen = (size_t)n - 2;
	if (memcmp(&old, &g->scc.keys, sizeof(old)) != 0)
		pgi_gp_dirty(g);
	pg_memzero(&old, sizeof(old));
	return sw;
}

static uint16_t
set_status(struct pg_gp_card *g, const struct pg_capdu *c)
{
	if (!g->cur_auth)
		return PG_SW_SECURITY_STATUS;
	if (c->p1 == 0x80) {
		uint8_t from = g->card_lc, to = c->p2;
		int ok = (from == PG_GP_CARD_OP_READY && to == PG_GP_CARD_INITIALIZED) ||
			 (from == PG_GP_CARD_INITIALIZED && to == PG_GP_CARD_SECURED) ||
			 (from == PG_GP_CARD_SECURED && to == PG_GP_CARD_LOCKED) ||
			 (from == PG_GP_CARD_LOCKED && to == PG_GP_CARD_SECURED) ||
			 (from != PG_GP_CARD_TERMINATED && to == PG_GP_CARD_TERMINATED);

		if (c->lc)
			return PG_SW_WRONG_LENGTH;
		if (!ok)
			return PG_SW_CONDITIONS; /* GP 5.1.1: irreversible / invalid transition */
		g->card_lc = to;
	} else if (c->p1 == 0x40) {
		struct gp_inst *in;

		if (c->lc < 5 || c->lc > PG_AID_MAX)
			return PG_SW_WRONG_DATA;
		if (g->card_lc == PG_GP_CARD_TERMINATED)
			return PG_SW_CONDITIONS;
		in = pgi_gp_find_inst(g, c->data, c->lc);
		if (!in)
			return PG_SW_REF_DATA_NOT_FOUND;
		if (c->p2 == 0x80)
			in->lc |= PG_GP_APP_LOCKED;
		else if (c->p2 == 0x00)
			in->lc &= (uint8_t)~PG_GP_APP_LOCKED;
		else
			return PG_SW_INCORRECT_P1P2;
	} else {
		return PG_SW_INCORRECT_P1P2;
	}
	if (pgi_gp_sync_table(g) < 0)
		return PG_SW_NOT_ENOUGH_MEMORY;
	pgi_gp_config_changed(g); /* life cycles are part of GET STATUS */
	return PG_SW_OK;
}

int
pgi_gp_isd_process(struct pg_card_rt *rt, void *state, int chn, const struct pg_capdu *c,
		   uint8_t *resp, size_t *rlen, uint16_t *sw)
{
	struct pg_gp_card *g = state;

	(void)rt;
	if ((c->ins == 0xCA || c->ins == 0xCB)) {
		*sw = get_data(g, c, resp, rlen);
		return 0;
	}
	if (!(c->cla & 0x80)) { /* the rest are GlobalPlatform-class commands */
		*rlen = 0;
		*sw = PG_SW_INS_NOT_SUPPORTED;
		return 0;
	}
	switch (c->ins) {
	case 0xF2:
		*sw = pgi_gp_get_status(g, chn, c, resp, rlen);
		break;
	case 0xE6:
		*sw = install(g, chn, c, resp, rlen);
		break;
	case 0xE4:
		*sw = delete (g, c, resp, rlen);
		break;
	case 0xE2:
		*sw = store_data(g, chn, c, rlen);
		break;
	case 0xD8:
		*sw = put_key(g, resp, rlen);
		break;
	case 0xF0:
		*rlen = 0;
		*sw = set_status(g, c);
		break;
	default:
		*rlen = 0;
		*sw = PG_SW_INS_NOT_SUPPORTED;
	}
	return 0;
}
