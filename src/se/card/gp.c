/*
 * The GlobalPlatform card (issue 3): wraps the card runtime of card.c with
 * what GP 2.3 puts around applets — SCP03 secure messaging on the issuer
 * security domain (Amendment D), GET RESPONSE chaining of long responses,
 * applet instances from the catalogue with life cycles, and one atomic commit
 * of the persistent image per state-changing command (pg_nvm) before the
 * response leaves the card. docs/se-card.md.
 */
#include "gp_int.h"

#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/mem.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define IMG_MAGIC    "PGC2"
#define IMG_MAGIC_V1 "PGC1" /* read only: no configuration version (taken as 1) */

static const uint8_t test_keys[16] = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
				      0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F};

/* ---- allocation: the one place that picks the host's allocator (a VSE arena) ---- */

void *
pgi_gp_alloc(struct pg_gp_card *g, size_t n)
{
	void *p;

	if (!g->alloc)
		return calloc(1, n ? n : 1);
	p = g->alloc(g->actx, n ? n : 1);
	if (p)
		memset(p, 0, n);
	return p;
}

void
pgi_gp_free(struct pg_gp_card *g, void *p, size_t n)
{
	if (!p)
		return;
	pg_memzero(p, n);
	if (!g->alloc)
		free(p);
	else if (g->dealloc)
		g->dealloc(g->actx, p);
}

static void *
rt_alloc(void *actx, size_t n)
{
	return pgi_gp_alloc(actx, n);
}

static void
rt_dealloc(void *actx, void *p)
{
	struct pg_gp_card *g = actx;

	if (!g->alloc)
		free(p);
	else if (g->dealloc)
		g->dealloc(g->actx, p);
}

/* ---- crypto helpers (OpenSSL 3) ---- */

int
pgi_gp_aes_ecb(const uint8_t *key, size_t klen, const uint8_t in[16], uint8_t out[16])
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	const EVP_CIPHER *alg = klen == 32   ? EVP_aes_256_ecb()
				: klen == 24 ? EVP_aes_192_ecb()
					     : EVP_aes_128_ecb();
	int l1 = 0, rc = PG_ECRYPTO;

	if (c && EVP_EncryptInit_ex(c, alg, NULL, key, NULL) && EVP_CIPHER_CTX_set_padding(c, 0) &&
	    EVP_EncryptUpdate(c, out, &l1, in, 16) && l1 == 16)
		rc = 0;
	EVP_CIPHER_CTX_free(c);
	return rc;
}

/* ---- instances ---- */

static int
inst_process(struct pg_card_rt *rt, void *state, int chn, const struct pg_capdu *c, uint8_t *resp,
	     size_t *rlen, uint16_t *sw)
{
	struct gp_inst *in = state;

	(void)rt;
	return in->cls->process(in, chn, c, resp, rlen, sw);
}

struct gp_inst *
pgi_gp_find_inst(struct pg_gp_card *g, const uint8_t *aid, size_t n)
{
	for (int i = 0; i < g->ninst; i++)
		if (g->inst[i]->aid_len == n && memcmp(g->inst[i]->aid, aid, n) == 0)
			return g->inst[i];
	return NULL;
}

static int
selectable(const struct pg_gp_card *g, const struct gp_inst *in)
{
	if (g->card_lc == PG_GP_CARD_LOCKED || g->card_lc == PG_GP_CARD_TERMINATED)
		return 0;
	return !(in->lc & PG_GP_APP_LOCKED) &&
	       (in->lc == PG_GP_APP_SELECTABLE || in->lc == PG_GP_APP_PERSONALIZED);
}

int
pgi_gp_sync_table(struct pg_gp_card *g)
{
	for (int i = 0; i < g->ninst; i++) {
		struct gp_inst *in = g->inst[i];
		int want = selectable(g, in);

		if (in->in_rt && !want) {
			pg_card_rt_remove_applet(g->rt, in->aid, in->aid_len);
			in->in_rt = 0;
		} else if (!in->in_rt && want) {
			struct pg_applet a = {.name = in->cls->name,
					      .aid_len = in->aid_len,
					      .process = inst_process,
					      .state = in};
			int rc;

			memcpy(a.aid, in->aid, in->aid_len);
			rc = pg_card_rt_add_applet(g->rt, &a);
			if (rc < 0)
				return rc;
			in->in_rt = 1;
		}
	}
	return 0;
}

static struct gp_inst *
inst_new(struct pg_gp_card *g, const struct gp_class *cls)
{
	struct gp_inst *in;

	if (g->ninst >= GP_MAX_INST)
		return NULL;
	in = pgi_gp_alloc(g, sizeof(*in));
	if (!in)
		return NULL;
	in->cls = cls;
	in->g = g;
	in->p = pgi_gp_alloc(g, cls->pstate);
	in->v = pgi_gp_alloc(g, cls->vstate);
	if (!in->p || !in->v) {
		pgi_gp_free(g, in->p, cls->pstate);
		pgi_gp_free(g, in->v, cls->vstate);
		pgi_gp_free(g, in, sizeof(*in));
		return NULL;
	}
	return in;
}

static void
inst_free(struct pg_gp_card *g, struct gp_inst *in)
{
	if (in->in_rt)
		pg_card_rt_remove_applet(g->rt, in->aid, in->aid_len);
	pgi_gp_free(g, in->p, in->cls->pstate);
	pgi_gp_free(g, in->v, in->cls->vstate);
	pgi_gp_free(g, in, sizeof(*in));
}

uint16_t
pgi_gp_install(struct pg_gp_card *g, const struct gp_class *cls, const uint8_t *aid, size_t aid_len,
	       const uint8_t priv[3], const uint8_t *params, size_t pn, int make_selectable)
{
	struct gp_inst *in;
	uint16_t sw;

	if (aid_len < 5 || aid_len > PG_AID_MAX)
		return PG_SW_WRONG_DATA;
	if (pgi_gp_find_inst(g, aid, aid_len) ||
	    (aid_len == sizeof(pg_card_isd_aid) && memcmp(aid, pg_card_isd_aid, aid_len) == 0))
		return 0x6A89; /* already exists */
	if (g->ninst >= GP_MAX_INST)
		return PG_SW_NOT_ENOUGH_MEMORY;
	in = inst_new(g, cls);
	if (!in)
		return PG_SW_NOT_ENOUGH_MEMORY; /* the arena is exhausted */
	memcpy(in->aid, aid, aid_len);
	in->aid_len = aid_len;
	memcpy(in->priv, priv, 3);
	in->lc = make_selectable ? PG_GP_APP_SELECTABLE : PG_GP_APP_INSTALLED;
	sw = cls->install ? cls->install(in, params, pn) : PG_SW_OK;
	if (sw != PG_SW_OK) {
		inst_free(g, in);
		return sw;
	}
	g->inst[g->ninst++] = in;
	if (pgi_gp_sync_table(g) < 0) {
		g->ninst--;
		inst_free(g, in);
		return PG_SW_NOT_ENOUGH_MEMORY;
	}
	pgi_gp_config_changed(g);
	return PG_SW_OK;
}

void
pgi_gp_delete_inst(struct pg_gp_card *g, struct gp_inst *in)
{
	int i;

	for (i = 0; i < g->ninst && g->inst[i] != in; i++)
		;
	if (i == g->ninst)
		return;
	memmove(&g->inst[i], &g->inst[i + 1], (size_t)(g->ninst - i - 1) * sizeof(g->inst[0]));
	g->ninst--;
	inst_free(g, in);
	pgi_gp_config_changed(g);
}

static void
inst_free_all(struct pg_gp_card *g)
{
	while (g->ninst > 0)
		inst_free(g, g->inst[--g->ninst]);
}

/* ---- the persistent image ---- */

/*
 * "PGC2" card-lc(1) seq(4) cfg-version(4) kvn(1) klen(1) K-ENC K-MAC K-DEK iin-len(1) IIN
 * cin-len(1) CIN n(1), then per instance: class(1) aid-len(1) AID lc(1)
 * privileges(3) state-len(2) state. Canonical: equal states, equal bytes.
 */
static int
image_build(struct pg_gp_card *g, uint8_t *out, size_t cap)
{
	size_t k = g->scc.keys.len,
	       n = 4 + 1 + 4 + 4 + 2 + 3 * k + 1 + g->iin_len + 1 + g->cin_len + 1;
	uint8_t *p = out;

	for (int i = 0; i < g->ninst; i++)
		n += 2 + g->inst[i]->aid_len + 4 + 2 + g->inst[i]->cls->pstate;
	if (n > cap)
		return PG_ERANGE;
	memcpy(p, IMG_MAGIC, 4), p += 4;
	*p++ = g->card_lc;
	*p++ = (uint8_t)(g->scc.seq >> 24), *p++ = (uint8_t)(g->scc.seq >> 16);
	*p++ = (uint8_t)(g->scc.seq >> 8), *p++ = (uint8_t)g->scc.seq;
	*p++ = (uint8_t)(g->cfg_version >> 24), *p++ = (uint8_t)(g->cfg_version >> 16);
	*p++ = (uint8_t)(g->cfg_version >> 8), *p++ = (uint8_t)g->cfg_version;
	*p++ = g->scc.keys.kvn;
	*p++ = (uint8_t)k;
	memcpy(p, g->scc.keys.enc, k), p += k;
	memcpy(p, g->scc.keys.mac, k), p += k;
	memcpy(p, g->scc.keys.dek, k), p += k;
	*p++ = (uint8_t)g->iin_len;
	memcpy(p, g->iin, g->iin_len), p += g->iin_len;
	*p++ = (uint8_t)g->cin_len;
	memcpy(p, g->cin, g->cin_len), p += g->cin_len;
	*p++ = (uint8_t)g->ninst;
	for (int i = 0; i < g->ninst; i++) {
		const struct gp_inst *in = g->inst[i];

		*p++ = in->cls->id;
		*p++ = (uint8_t)in->aid_len;
		memcpy(p, in->aid, in->aid_len), p += in->aid_len;
		*p++ = in->lc;
		memcpy(p, in->priv, 3), p += 3;
		*p++ = (uint8_t)(in->cls->pstate >> 8), *p++ = (uint8_t)in->cls->pstate;
		memcpy(p, in->p, in->cls->pstate), p += in->cls->pstate;
	}
	return (int)(p - out);
}

#define NEED(m)                                                                                    \
	do {                                                                                       \
		if ((size_t)(end - p) < (size_t)(m))                                               \
			goto bad;                                                                  \
	} while (0)

/* Replaces the card's persistent state by the image's (strict: anything odd is corrupt). */
static int
image_apply(struct pg_gp_card *g, const uint8_t *img, size_t n)
{
	const uint8_t *p = img, *end = img + n;
	size_t k;
	int cnt, v1;

	inst_free_all(g);
	NEED(4 + 1 + 4 + 2);
	v1 = memcmp(p, IMG_MAGIC_V1, 4) == 0;
	if (!v1 && memcmp(p, IMG_MAGIC, 4) != 0)
		goto bad;
	p += 4;
	g->card_lc = *p++;
	g->scc.seq = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
	p += 4;
	g->cfg_version = 1;
	if (!v1) {
		NEED(4 + 2);
		g->cfg_version =
		    (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
		p += 4;
	}
	g->scc.keys.kvn = *p++;
	k = *p++;
	if (k != 16 && k != 24 && k != 32)
		goto bad;
	NEED(3 * k + 1);
	g->scc.keys.len = k;
	memcpy(g->scc.keys.enc, p, k), p += k;
	memcpy(g->scc.keys.mac, p, k), p += k;
	memcpy(g->scc.keys.dek, p, k), p += k;
	g->iin_len = *p++;
	if (g->iin_len > sizeof(g->iin))
		goto bad;
	NEED(g->iin_len + 1);
	memcpy(g->iin, p, g->iin_len), p += g->iin_len;
	g->cin_len = *p++;
	if (g->cin_len > sizeof(g->cin))
		goto bad;
	NEED(g->cin_len + 1);
	memcpy(g->cin, p, g->cin_len), p += g->cin_len;
	cnt = *p++;
	if (cnt > GP_MAX_INST)
		goto bad;
	for (int i = 0; i < cnt; i++) {
		const struct gp_class *cls;
		struct gp_inst *in;
		size_t al, pl;

		NEED(2);
		cls = pgi_gp_class_by_id(p[0]);
		al = p[1];
		p += 2;
		if (!cls || al < 5 || al > PG_AID_MAX)
			goto bad;
		NEED(al + 4 + 2);
		in = inst_new(g, cls);
		if (!in)
			return pg_error(PG_ENOMEM, "card", "image: memory exhausted");
		g->inst[g->ninst++] = in;
		memcpy(in->aid, p, al), p += al;
		in->aid_len = al;
		in->lc = *p++;
		memcpy(in->priv, p, 3), p += 3;
		pl = (size_t)p[0] << 8 | p[1];
		p += 2;
		if (pl != cls->pstate)
			goto bad;
		NEED(pl);
		memcpy(in->p, p, pl), p += pl;
		if (cls->check && cls->check(in->p) < 0)
			goto bad;
	}
	if (p != end)
		goto bad;
	return pgi_gp_sync_table(g);
bad:
	inst_free_all(g);
	return pg_error(PG_ECORRUPT, "card", "persistent image malformed at byte %zu",
			(size_t)(p - img));
}
#undef NEED

void
pgi_gp_dirty(struct pg_gp_card *g)
{
	g->dirty = 1;
}

void
pgi_gp_config_changed(struct pg_gp_card *g)
{
	g->cfg_version++; /* 2^32 changes before it wraps: no card lives that long */
	if (g->cfg_version == 0)
		g->cfg_version = 1;
	g->dirty = 1;
}

int
pgi_gp_commit(struct pg_gp_card *g)
{
	int n = image_build(g, g->work, g->nvm_cap), rc;

	g->dirty = 0;
	if (n < 0) {
		rc = pg_error(n, "card", "persistent image exceeds %zu bytes", g->nvm_cap);
		goto fail;
	}
	if ((size_t)n == g->img_len && memcmp(g->work, g->img, (size_t)n) == 0)
		return 0; /* nothing changed */
	rc = pg_nvm_commit(g->nvm, g->work, (size_t)n);
	if (rc < 0)
		goto fail;
	memcpy(g->img, g->work, (size_t)n);
	g->img_len = (size_t)n;
	return 0;
fail:
	/* Back to the last committed state: the card never acts on an uncommitted one. */
	g->commit_failed = 1;
	if (image_apply(g, g->img, g->img_len) < 0)
		pg_warn("card", "rollback after a failed commit failed");
	return rc;
}

/* ---- command dispatch ---- */

static int
sm_bit(uint8_t cla)
{
	/* First interindustry classes (and GP 80-8F): b3-b4; further classes: b6. */
	if ((cla & 0x40) == 0)
		return (cla & 0x0C) != 0;
	return (cla & 0x20) != 0;
}

static int
chan_of(uint8_t cla)
{
	return cla == 0xFF ? -1 : pg_cla_channel((uint8_t)(cla & 0x7F));
}

static size_t
put_sw(uint8_t *r, size_t at, uint16_t sw)
{
	r[at] = (uint8_t)(sw >> 8);
	r[at + 1] = (uint8_t)sw;
	return at + 2;
}

static uint16_t
get_response(struct pg_gp_card *g, int chn, const struct pg_capdu *c, uint8_t *r, size_t cap,
	     size_t *dlen)
{
	size_t left, ne, n;

	*dlen = 0;
	if (c->p1 || c->p2)
		return PG_SW_INCORRECT_P1P2;
	if (!g->pend_len || g->pend_chn != chn)
		return PG_SW_CONDITIONS;
	left = g->pend_len - g->pend_off;
	ne = c->has_le ? c->le : 256;
	n = left < ne ? left : ne;
	if (n + 2 > cap)
		return PG_SW_WRONG_LENGTH;
	memcpy(r, g->pend + g->pend_off, n);
	g->pend_off += n;
	*dlen = n;
	left -= n;
	if (!left) {
		g->pend_len = g->pend_off = 0;
		return PG_SW_OK;
	}
	return PG_SW_BYTES_REMAINING(left > 255 ? 0 : left);
}

/* After a SELECT the instance may answer its own FCI and reset its session state. */
static size_t
after_select(struct pg_gp_card *g, int chn, const struct pg_capdu *c, uint8_t *r, size_t n,
	     size_t cap)
{
	const struct pg_applet *a = pg_card_rt_selected(g->rt, chn);
	uint16_t sw = pg_rapdu_sw(r, n);
	struct pg_buf b = PG_BUF_INIT(cap);

	if (sw != PG_SW_OK)
		return n;
	pg_scp03_close(&g->scp[chn]); /* selecting ends the channel's secure session */
	g->perso_len[chn] = 0;
	g->gs[chn].active = 0;
	if (!a || a->process != inst_process || !((struct gp_inst *)a->state)->cls->select)
		return n;
	sw = ((struct gp_inst *)a->state)->cls->select(a->state, chn, &b);
	if (sw == PG_SW_OK && b.len == 0) {
		/* no FCI of its own: the runtime's stands */
	} else if ((c->p2 & 0x0C) == 0x0C || sw != PG_SW_OK) {
		n = put_sw(r, 0, sw);
	} else if (b.len + 2 > cap) {
		n = put_sw(r, 0, PG_SW_WRONG_LENGTH);
	} else {
		memcpy(r, b.data, b.len);
		n = put_sw(r, b.len, sw);
	}
	pg_buf_release(&b);
	return n;
}

/* INITIALIZE UPDATE / EXTERNAL AUTHENTICATE to the ISD: SCP03 opens a session. */
static int
process_scp_open(struct pg_gp_card *g, int chn, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
		 size_t cap)
{
	uint32_t seq = g->scc.seq;
	int rc;

	if (g->card_lc == PG_GP_CARD_TERMINATED)
		return (int)put_sw(rapdu, 0, PG_SW_CONDITIONS);
	rc = pg_scp03_card_process(&g->scp[chn], &g->scc, capdu, clen, rapdu, cap);
	if (rc >= 0 && g->scc.seq != seq)
		pgi_gp_dirty(g); /* the sequence counter is persistent */
	return rc;
}

/*
 * A secured command to the ISD: unwrapped, run in plain, its answer wrapped;
 * changes are committed before the answer is wrapped. Returns the response
 * length or a negative code.
 */
static int
process_secured(struct pg_gp_card *g, int chn, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
		size_t cap)
{
	const struct pg_card *inner = pg_card_rt_card(g->rt);
	uint16_t sw;
	size_t rl = GP_SM_MAX + 2;
	int rc;

	rc = pg_scp03_card_unwrap(&g->scp[chn], capdu, clen, g->plain, GP_SM_MAX + 16, &sw);
	if (rc < 0)
		return (int)put_sw(rapdu, 0, sw);
	g->cur = g->plain;
	g->cur_len = (size_t)rc;
	g->cur_auth = pg_scp03_is_open(&g->scp[chn]) && (g->scp[chn].sl & PG_SCP03_SL_CMAC);
	rc = inner->process(inner->ctx, g->plain, g->cur_len, g->resp, &rl);
	if (rc < 0)
		return rc;
	if (g->dirty && pgi_gp_commit(g) < 0)
		rl = put_sw(g->resp, 0, GP_SW_MEMFAIL);
	rc =
	    pg_scp03_card_wrap(&g->scp[chn], g->resp, rl - 2, pg_rapdu_sw(g->resp, rl), rapdu, cap);
	/* Secured commands carry key blocks and personalisation secrets: no copies linger. */
	pg_memzero(g->plain, g->cur_len);
	pg_memzero(g->resp, rl);
	return rc;
}

/*
 * A command in plain to the runtime, then the GP state it changes: a SELECT's
 * FCI and channel state, a MANAGE CHANNEL close ending the channel's session.
 * Returns the response length or a negative code.
 */
static int
process_plain(struct pg_gp_card *g, int chn, const struct pg_capdu *c, const uint8_t *capdu,
	      size_t clen, uint8_t *rapdu, size_t cap)
{
	const struct pg_card *inner = pg_card_rt_card(g->rt);
	size_t n = cap;
	int rc;

	rc = inner->process(inner->ctx, capdu, clen, rapdu, &n);
	if (rc < 0)
		return rc;
	if (c->ins == 0xA4 && pg_cla_is_interindustry(c->cla))
		return (int)after_select(g, chn, c, rapdu, n, cap);
	if (c->ins == 0x70 && c->p1 == 0x80 && pg_rapdu_sw(rapdu, n) == PG_SW_OK) {
		int closed = c->p2 ? c->p2 : chn;

		if (closed < GP_CH) {
			pg_scp03_close(&g->scp[closed]);
			g->perso_len[closed] = 0;
			g->gs[closed].active = 0;
		}
	}
	return (int)n;
}

/*
 * Short command, response longer than 256 bytes: the first part with 61xx,
 * the rest kept for GET RESPONSE (7816-4 5.3.4). Returns the new length.
 */
static size_t
hold_long_response(struct pg_gp_card *g, int chn, const struct pg_capdu *c, uint8_t *rapdu,
		   size_t n)
{
	size_t dlen = n - 2, first, left;

	if (dlen <= 256 || c->apdu_case == PG_APDU_CASE2E || c->apdu_case == PG_APDU_CASE4E ||
	    c->apdu_case == PG_APDU_CASE3E)
		return n;
	first = c->has_le && c->le < 256 ? c->le : 256;
	left = dlen - first;
	if (left > GP_PEND_MAX)
		return put_sw(rapdu, 0, PG_SW_WRONG_LENGTH);
	if (pg_rapdu_sw(rapdu, n) != PG_SW_OK)
		return n;
	memcpy(g->pend, rapdu + first, left);
	g->pend_len = left;
	g->pend_off = 0;
	g->pend_chn = chn;
	return put_sw(rapdu, first, PG_SW_BYTES_REMAINING(left > 255 ? 0 : left));
}

static int
gp_process(void *ctx, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t *rlen)
{
	struct pg_gp_card *g = ctx;
	const struct pg_card *inner = pg_card_rt_card(g->rt);
	struct pg_capdu c;
	size_t cap = *rlen, n, dlen;
	const struct pg_applet *sel;
	int chn, is_isd, rc;

	g->apdus++;
	if (cap < 2)
		return PG_ETOOBIG;
	g->dirty = g->cur_auth = g->commit_failed = 0;
	g->cur = capdu;
	g->cur_len = clen;
	if (pg_capdu_parse(&c, capdu, clen) < 0 || (chn = chan_of(c.cla)) < 0 || chn >= GP_CH)
		return inner->process(inner->ctx, capdu, clen, rapdu, rlen); /* its error SW */
	if (c.ins == 0xC0 && pg_cla_is_interindustry(c.cla) && !sm_bit(c.cla)) {
		uint16_t sw = get_response(g, chn, &c, rapdu, cap, &dlen);

		*rlen = put_sw(rapdu, dlen, sw);
		return 0;
	}
	if (g->pend_chn == chn)
		g->pend_len = g->pend_off = 0; /* GET RESPONSE must follow at once */
	if (g->card_lc == PG_GP_CARD_TERMINATED && c.ins != 0xCA && c.ins != 0xCB &&
	    c.ins != 0xA4) {
		*rlen = put_sw(rapdu, 0, PG_SW_FUNC_NOT_SUPPORTED); /* GP 5.1.1.5: GET DATA only */
		return 0;
	}
	sel = pg_card_rt_selected(g->rt, chn);
	is_isd = sel && sel->process == pgi_gp_isd_process;
	if (is_isd && (c.cla & 0x80) && (c.ins == 0x50 || c.ins == 0x82))
		rc = process_scp_open(g, chn, capdu, clen, rapdu, cap);
	else if (is_isd && sm_bit(c.cla))
		rc = process_secured(g, chn, capdu, clen, rapdu, cap);
	else
		rc = process_plain(g, chn, &c, capdu, clen, rapdu, cap);
	if (rc < 0)
		return rc;
	n = (size_t)rc;
	if (g->dirty && pgi_gp_commit(g) < 0)
		n = put_sw(rapdu, 0, GP_SW_MEMFAIL);
	*rlen = hold_long_response(g, chn, &c, rapdu, n);
	return 0;
}

static int
gp_atr(void *ctx, uint8_t *atr, size_t *len)
{
	struct pg_gp_card *g = ctx;
	const struct pg_card *inner = pg_card_rt_card(g->rt);

	return inner->atr(inner->ctx, atr, len);
}

static void
gp_reset(void *ctx)
{
	struct pg_gp_card *g = ctx;
	const struct pg_card *inner = pg_card_rt_card(g->rt);

	for (int i = 0; i < GP_CH; i++) {
		pg_scp03_close(&g->scp[i]);
		g->perso_len[i] = 0;
		g->gs[i].active = 0;
	}
	g->pend_len = g->pend_off = 0;
	for (int i = 0; i < g->ninst; i++)
		memset(g->inst[i]->v, 0, g->inst[i]->cls->vstate);
	inner->reset(inner->ctx);
}

/* ---- life ---- */

/*
 * Options of a profile's applet after its AID: ",prio=N" and ",label=TEXT"
 * become the INSTALL parameters (C9: priority, then label) the class takes.
 */
static int
spec_params(const char *spec, const char *opt, uint8_t *c9, size_t *n)
{
	uint8_t prio = 1;
	int any = 0;

	*n = 0;
	while (opt && *opt == ',') {
		const char *v = strchr(opt, '='), *end = strchr(opt + 1, ',');
		size_t vl;

		if (!end)
			end = opt + strlen(opt);
		if (!v || v > end)
			return pg_error(PG_EINVAL, "card", "applet '%s': option without '='", spec);
		vl = (size_t)(end - v - 1);
		if ((size_t)(v - opt) == 5 && strncmp(opt, ",prio", 5) == 0) {
			char num[4] = {0};

			if (vl < 1 || vl > 2)
				return pg_error(PG_EINVAL, "card", "applet '%s': prio is 1..15",
						spec);
			memcpy(num, v + 1, vl);
			prio = (uint8_t)atoi(num);
			if (prio < 1 || prio > 15)
				return pg_error(PG_EINVAL, "card", "applet '%s': prio is 1..15",
						spec);
		} else if ((size_t)(v - opt) == 6 && strncmp(opt, ",label", 6) == 0) {
			if (vl < 1 || vl > 16)
				return pg_error(PG_EINVAL, "card",
						"applet '%s': label of 1..16 bytes", spec);
			memcpy(c9 + 1, v + 1, vl);
			*n = 1 + vl;
		} else {
			return pg_error(PG_EINVAL, "card",
					"applet '%s': options are prio= and label=", spec);
		}
		any = 1;
		opt = end;
	}
	if (opt && *opt)
		return pg_error(PG_EINVAL, "card", "applet '%s': unexpected '%s'", spec, opt);
	if (any) {
		c9[0] = prio;
		if (!*n)
			*n = 1;
	}
	return 0;
}

/* One applet of a profile, "name[@AIDHEX][,prio=N][,label=TEXT]", installed and selectable. */
static int
install_named(struct pg_gp_card *g, const char *spec)
{
	static const uint8_t nopriv[3] = {0, 0, 0};
	const struct gp_class *cls;
	const char *at = strchr(spec, '@'), *opt = strchr(spec, ',');
	char name[32], hex[2 * PG_AID_MAX + 1];
	uint8_t aid[PG_AID_MAX], c9[17];
	size_t nl, al, pn;
	uint16_t sw;
	int rc;

	if (at && opt && at > opt)
		at = NULL; /* an '@' inside a label */
	nl = at ? (size_t)(at - spec) : opt ? (size_t)(opt - spec) : strlen(spec);
	if (nl >= sizeof(name))
		return pg_error(PG_EINVAL, "card", "applet '%s': name too long", spec);
	memcpy(name, spec, nl);
	name[nl] = '\0';
	cls = pgi_gp_class_by_name(name);
	if (!cls)
		return pg_error(PG_EINVAL, "card", "applet '%s' is not in the catalogue (%s)", name,
				pg_gp_catalogue_names());
	if ((rc = spec_params(spec, opt, c9, &pn)) < 0)
		return rc;
	if (at) {
		size_t hl = opt ? (size_t)(opt - at - 1) : strlen(at + 1);
		int k = -1;

		if (hl < sizeof(hex)) {
			memcpy(hex, at + 1, hl);
			hex[hl] = '\0';
			k = pg_hex_decode(aid, sizeof(aid), hex);
		}
		if (k < 5)
			return pg_error(PG_EINVAL, "card",
					"applet '%s': AID must be 5..16 bytes of hex", spec);
		al = (size_t)k;
	} else {
		memcpy(aid, cls->def_aid, cls->def_len);
		al = cls->def_len;
	}
	sw = pgi_gp_install(g, cls, aid, al, nopriv, pn ? c9 : NULL, pn, 1);
	if (sw != PG_SW_OK)
		return pg_error(sw == PG_SW_NOT_ENOUGH_MEMORY ? PG_ENOMEM : PG_EINVAL, "card",
				"installing '%s': SW %04X", spec, sw);
	return 0;
}

/* A blank card's profile: its applets, IIN, ARA-M rules and first configuration version. */
static int
blank_profile(struct pg_gp_card *g, const struct pg_gp_config *cfg)
{
	int rc;

	for (int i = 0; i < cfg->n_applets; i++)
		if ((rc = install_named(g, cfg->applets[i])) < 0)
			return rc;
	if (cfg->iin_len) {
		if (cfg->iin_len > sizeof(g->iin))
			return pg_error(PG_EINVAL, "card", "IIN of %zu bytes (at most 8)",
					cfg->iin_len);
		memcpy(g->iin, cfg->iin, cfg->iin_len);
		g->iin_len = cfg->iin_len;
	}
	if (cfg->aram_rules) {
		struct gp_inst *in = NULL;

		for (int i = 0; i < g->ninst && !in; i++)
			if (g->inst[i]->cls == &pgi_gp_class_aram)
				in = g->inst[i];
		if (!in)
			return pg_error(PG_EINVAL, "card", "ARA-M rules given, but no aram applet");
		if (pgi_gp_class_aram.store_dgi(in, 0x0100, cfg->aram_rules, cfg->aram_rules_len) !=
		    PG_SW_OK)
			return pg_error(
			    PG_EINVAL, "card",
			    "ARA-M rules refused (REF-AR-DOs, at most the applet's size)");
		in->lc = PG_GP_APP_PERSONALIZED;
	}
	if (cfg->cfg_version)
		g->cfg_version = cfg->cfg_version;
	return 0;
}

int
pg_gp_card_set_config_version(struct pg_gp_card *g, uint32_t version)
{
	g->cfg_version = version;
	return pgi_gp_commit(g);
}

uint64_t
pg_gp_card_apdus(const struct pg_gp_card *g)
{
	return g->apdus;
}

int
pg_gp_card_new(struct pg_gp_card **out, const struct pg_gp_config *cfg)
{
	struct pg_gp_card *g;
	struct pg_applet isd = {
	    .name = "isd", .aid_len = sizeof(pg_card_isd_aid), .process = pgi_gp_isd_process};
	struct pg_card_config rc_cfg = {.atr = cfg->atr,
					.atr_len = cfg->atr_len,
					.serial = cfg->serial,
					.isd = &isd,
					.alloc = rt_alloc,
					.dealloc = rt_dealloc};
	size_t len = 0;
	int rc;

	*out = NULL;
	g = cfg->alloc ? cfg->alloc(cfg->actx, sizeof(*g)) : calloc(1, sizeof(*g));
	if (!g)
		return pg_error(PG_ENOMEM, "card", "no memory for the card");
	memset(g, 0, sizeof(*g));
	g->alloc = cfg->alloc;
	g->dealloc = cfg->dealloc;
	g->actx = cfg->actx;
	g->serial = cfg->serial;
	g->nvm_cap = cfg->nvm_capacity ? cfg->nvm_capacity : 16384;
	isd.state = g;
	rc_cfg.actx = g;
	memcpy(isd.aid, pg_card_isd_aid, sizeof(pg_card_isd_aid));
	g->img = pgi_gp_alloc(g, g->nvm_cap);
	g->work = pgi_gp_alloc(g, g->nvm_cap);
	g->plain = pgi_gp_alloc(g, GP_SM_MAX + 16);
	g->resp = pgi_gp_alloc(g, GP_SM_MAX + 2);
	g->pend = pgi_gp_alloc(g, GP_PEND_MAX);
	if (!g->img || !g->work || !g->plain || !g->resp || !g->pend) {
		rc = pg_error(PG_ENOMEM, "card", "no memory for the card's buffers");
		goto fail;
	}
	if ((rc = pg_card_rt_new(&g->rt, &rc_cfg)) < 0)
		goto fail;
	if (cfg->nvm) {
		g->nvm = cfg->nvm;
	} else {
		if ((rc = pg_nvm_open_memory(&g->nvm, g->nvm_cap)) < 0)
			goto fail;
		g->own_nvm = 1;
	}
	g->card.ctx = g;
	g->card.atr = gp_atr;
	g->card.process = gp_process;
	g->card.reset = gp_reset;
	g->scc.i_param = 0x70; /* pseudo-random challenge, R-MAC and R-ENC (Amd D table 5-1) */
	memcpy(g->scc.aid, pg_card_isd_aid, sizeof(pg_card_isd_aid));
	g->scc.aid_len = sizeof(pg_card_isd_aid);
	if ((rc = pg_nvm_load(g->nvm, g->img, g->nvm_cap, &len)) < 0)
		goto fail;
	if (len > 0) {
		if ((rc = image_apply(g, g->img, len)) < 0)
			goto fail;
		g->img_len = len;
	} else {
		/* Blank card: the issuer's key set, CIN and first applets, then the first commit.
		 */
		if (cfg->keys) {
			g->scc.keys = *cfg->keys;
		} else {
			memcpy(g->scc.keys.enc, test_keys, 16);
			memcpy(g->scc.keys.mac, test_keys, 16);
			memcpy(g->scc.keys.dek, test_keys, 16);
			g->scc.keys.len = 16;
			g->scc.keys.kvn = 0x30;
		}
		g->card_lc = PG_GP_CARD_SECURED;
		memcpy(g->cin, cfg->cin, 8);
		g->cin_len = 8;
		if ((rc = blank_profile(g, cfg)) < 0)
			goto fail;
		if ((rc = pgi_gp_commit(g)) < 0)
			goto fail;
	}
	/* The key diversification data of INITIALIZE UPDATE: the CIN, zero-padded (GP 2.3 E.4.1).
	 */
	memset(g->scc.div_data, 0, sizeof(g->scc.div_data));
	memcpy(g->scc.div_data, g->cin, g->cin_len);
	g->no_cfg_version = cfg->no_cfg_version;
	gp_reset(g);
	*out = g;
	return 0;
fail:
	pg_gp_card_free(g);
	return rc;
}

void
pg_gp_card_free(struct pg_gp_card *g)
{
	if (!g)
		return;
	inst_free_all(g);
	for (int i = 0; i < GP_CH; i++)
		pg_scp03_close(&g->scp[i]);
	pg_card_rt_free(g->rt);
	if (g->own_nvm)
		pg_nvm_close(g->nvm);
	pgi_gp_free(g, g->img, g->nvm_cap);
	pgi_gp_free(g, g->work, g->nvm_cap);
	pgi_gp_free(g, g->plain, GP_SM_MAX + 16);
	pgi_gp_free(g, g->resp, GP_SM_MAX + 2);
	pgi_gp_free(g, g->pend, GP_PEND_MAX);
	pg_memzero(&g->scc, sizeof(g->scc));
	if (!g->alloc)
		free(g);
	else if (g->dealloc)
		g->dealloc(g->actx, g);
}

const struct pg_card *
pg_gp_card_card(struct pg_gp_card *g)
{
	return &g->card;
}

int
pg_gp_card_image(struct pg_gp_card *g, uint8_t *buf, size_t cap)
{
	return image_build(g, buf, cap);
}
