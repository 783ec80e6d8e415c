/*
 * NFC switch core (issue 8, seed "switching device ... switching security
 * element"): the registry unit (SE connection information + every
 * application's AID and life cycle), the AID routing table, the master
 * controller's session logic (first channel: the reader; second channel: the
 * chosen SE) and the combined PPSE directory (EMV Book B), encoded by the
 * card's PPSE FCI builder (card_gp.h: one PPSE encoder in the project).
 */
#include "payguard/apdu.h"
#include "payguard/buf.h"
#include "payguard/card.h"
#include "payguard/card_gp.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/nfcswitch.h"
#include "payguard/tlv.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const uint8_t isd_aid[8] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};

#define SESS_NONE   (-1)
#define SESS_SWITCH (-2) /* the switch's own PPSE is selected */
#define RAPDU_MAX   (PG_APDU_MAX_R)

/* One registry entry; the table is kept sorted by (AID, rank, seq). */
struct route {
	uint8_t aid[PG_NFCSW_AID_MAX];
	uint8_t len, lc, flags, prio; /* prio: effective 1..15 (SE's when the app has none) */
	uint8_t se, conflict, own_prio;
	uint32_t seq;
	char label[PG_NFCSW_LABEL_MAX + 1];
};

struct expect {
	char se[PG_NFCSW_NAME_MAX];
	uint8_t aid[PG_NFCSW_AID_MAX];
	uint8_t len, prio, flags;
	char label[PG_NFCSW_LABEL_MAX + 1];
};

struct slot {
	int used, up;
	char name[PG_NFCSW_NAME_MAX];
	char addr[96];
	struct pg_link *link;
	int prio;
	const char *source;
	uint64_t apdus;
};

struct pg_nfcsw {
	pthread_mutex_t mu;
	enum pg_nfcsw_policy policy;
	struct route *r;
	size_t n, cap;
	int dirty;
	uint32_t seq;
	struct slot se[PG_NFCSW_MAX_SES];
	struct expect *exp;
	size_t nexp, capexp;
	int default_se;
	/* session: the SE the reader talks to since its last SELECT */
	int sess;
	int sess_lost; /* the session's SE was detached or failed */
	int sess_has_app;
	struct route sess_app;
	struct pg_card card;
	pthread_t refresher;
	int refresh_ms, refresh_running;
	volatile int refresh_stop;
	uint8_t cmd[5 + PG_NFCSW_AID_MAX + 1];
};

/* ---------------- registry ---------------- */

static int
aid_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	if (c)
		return c;
	return (int)al - (int)bl;
}

static enum pg_nfcsw_policy sort_policy; /* qsort has no context; set under sw->mu */

static int
route_cmp(const void *pa, const void *pb)
{
	const struct route *a = pa, *b = pb;
	int c = aid_cmp(a->aid, a->len, b->aid, b->len);

	if (c)
		return c;
	if (sort_policy == PG_NFCSW_POLICY_PRIORITY && a->prio != b->prio)
		return (int)a->prio - (int)b->prio;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int
routable(const struct pg_nfcsw *sw, const struct route *e)
{
	return (e->lc & PG_NFCSW_LC_SELECTABLE) == PG_NFCSW_LC_SELECTABLE &&
	       !(e->lc & PG_NFCSW_LC_LOCKED) && sw->se[e->se].up;
}

/* Sorts after additions and marks AIDs that more than one live SE holds. */
static void
reg_sort(struct pg_nfcsw *sw)
{
	size_t i = 0;

	if (!sw->dirty)
		return;
	sort_policy = sw->policy;
	if (sw->n) /* qsort's base may not be NULL, even for 0 elements */
		qsort(sw->r, sw->n, sizeof(*sw->r), route_cmp);
	while (i < sw->n) {
		size_t j = i + 1;
		int live = routable(sw, &sw->r[i]);

		while (j < sw->n &&
		       aid_cmp(sw->r[j].aid, sw->r[j].len, sw->r[i].aid, sw->r[i].len) == 0) {
			live += routable(sw, &sw->r[j]);
			j++;
		}
		for (size_t k = i; k < j; k++)
			sw->r[k].conflict = live > 1;
		i = j;
	}
	sw->dirty = 0;
}

/* First index whose AID is >= key (binary search). */
static size_t
reg_lower(const struct pg_nfcsw *sw, const uint8_t *aid, size_t len)
{
	size_t lo = 0, hi = sw->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (aid_cmp(sw->r[mid].aid, sw->r[mid].len, aid, len) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int
starts_with(const struct route *e, const uint8_t *p, size_t n)
{
	return e->len >= n && memcmp(e->aid, p, n) == 0;
}

static void
app_out(const struct pg_nfcsw *sw, const struct route *e, struct pg_nfcsw_app *a)
{
	(void)sw;
	memcpy(a->aid, e->aid, sizeof(a->aid));
	a->aid_len = e->len;
	a->lifecycle = e->lc;
	a->flags = e->flags;
	a->priority = e->prio;
	memcpy(a->label, e->label, sizeof(a->label));
	a->se = e->se;
	a->seq = e->seq;
}

/*
 * The routing decision (caller holds mu). Occurrences of a partial AID are
 * ordered as the table: by AID bytes, then rank (priority or registration).
 */
static int
route_locked(struct pg_nfcsw *sw, const uint8_t *aid, size_t len, int next, struct route **hit)
{
	size_t i;

	reg_sort(sw);
	if (next && sw->sess_has_app && starts_with(&sw->sess_app, aid, len)) {
		const struct route *cur = &sw->sess_app;

		i = reg_lower(sw, cur->aid, cur->len);
		while (i < sw->n && !(sw->r[i].se == cur->se && sw->r[i].seq == cur->seq) &&
		       aid_cmp(sw->r[i].aid, sw->r[i].len, cur->aid, cur->len) == 0)
			i++;
		if (i < sw->n && sw->r[i].se == cur->se && sw->r[i].seq == cur->seq)
			i++;
		else
			i = reg_lower(sw, cur->aid,
				      cur->len); /* current one gone: from its place */
	} else {
		i = reg_lower(sw, aid, len);
	}
	for (; i < sw->n && starts_with(&sw->r[i], aid, len); i++) {
		struct route *e = &sw->r[i];

		if (!routable(sw, e))
			continue;
		if (e->conflict && sw->policy == PG_NFCSW_POLICY_REFUSE)
			return PG_EEXIST;
		*hit = e;
		return e->se;
	}
	return PG_ENOENT;
}

int
pg_nfcsw_route(struct pg_nfcsw *sw, const uint8_t *aid, size_t len, int next,
	       struct pg_nfcsw_app *app)
{
	struct route *e = NULL;
	int rc;

	pthread_mutex_lock(&sw->mu);
	rc = route_locked(sw, aid, len, next, &e);
	if (rc >= 0 && app)
		app_out(sw, e, app);
	pthread_mutex_unlock(&sw->mu);
	return rc;
}

static int
reg_add(struct pg_nfcsw *sw, int se, const uint8_t *aid, size_t len, int lc, int prio,
	const char *label, int flags)
{
	struct route *e;

	if (len < 1 || len > PG_NFCSW_AID_MAX)
		return pg_error(PG_EINVAL, "nfcswitch", "AID of %zu bytes (1..16)", len);
	if (prio < 0 || prio > 15)
		return pg_error(PG_EINVAL, "nfcswitch", "priority %d (0..15)", prio);
	if (sw->n == sw->cap) {
		size_t nc = sw->cap ? sw->cap * 2 : 64;
		struct route *nr = realloc(sw->r, nc * sizeof(*nr));

		if (!nr)
			return PG_ENOMEM;
		sw->r = nr;
		sw->cap = nc;
	}
	e = &sw->r[sw->n++];
	memset(e, 0, sizeof(*e));
	memcpy(e->aid, aid, len);
	e->len = (uint8_t)len;
	e->lc = (uint8_t)lc;
	e->flags = (uint8_t)flags;
	e->own_prio = (uint8_t)prio;
	e->prio = (uint8_t)(prio ? prio : sw->se[se].prio);
	e->se = (uint8_t)se;
	e->seq = sw->seq++;
	if (label)
		snprintf(e->label, sizeof(e->label), "%s", label);
	sw->dirty = 1;
	return 0;
}

/* Drops every entry of one SE. */
static void
reg_drop_se(struct pg_nfcsw *sw, int se)
{
	size_t w = 0;

	for (size_t i = 0; i < sw->n; i++)
		if (sw->r[i].se != se)
			sw->r[w++] = sw->r[i];
	sw->n = w;
	sw->dirty = 1;
}

static const struct expect *
find_expect(const struct pg_nfcsw *sw, const char *se, const uint8_t *aid, size_t len)
{
	for (size_t i = 0; i < sw->nexp; i++)
		if (!strcmp(sw->exp[i].se, se) && sw->exp[i].len == len &&
		    !memcmp(sw->exp[i].aid, aid, len))
			return &sw->exp[i];
	return NULL;
}

/* ---------------- SE slots ---------------- */

int
pg_nfcsw_find_se(const struct pg_nfcsw *sw, const char *name)
{
	for (int i = 0; i < PG_NFCSW_MAX_SES; i++)
		if (sw->se[i].used && !strcmp(sw->se[i].name, name))
			return i;
	return PG_ENOENT;
}

static int
slot_new(struct pg_nfcsw *sw, const char *name, int prio)
{
	if (!name || !*name || strlen(name) >= PG_NFCSW_NAME_MAX)
		return pg_error(PG_EINVAL, "nfcswitch", "SE name must be 1..%d characters",
				PG_NFCSW_NAME_MAX - 1);
	if (prio < 0 || prio > 15)
		return pg_error(PG_EINVAL, "nfcswitch", "SE priority %d (0..15)", prio);
	if (pg_nfcsw_find_se(sw, name) >= 0)
		return pg_error(PG_EEXIST, "nfcswitch", "SE '%s' is already attached", name);
	for (int i = 0; i < PG_NFCSW_MAX_SES; i++) {
		struct slot *s = &sw->se[i];

		if (s->used)
			continue;
		memset(s, 0, sizeof(*s));
		s->used = 1;
		s->up = 1;
		snprintf(s->name, sizeof(s->name), "%s", name);
		s->prio = prio ? prio : 15;
		s->source = "config";
		return i;
	}
	return pg_error(PG_ERANGE, "nfcswitch", "all %d master ports are in use", PG_NFCSW_MAX_SES);
}

int
pg_nfcsw_add_slot(struct pg_nfcsw *sw, const char *name, int priority)
{
	int rc;

	pthread_mutex_lock(&sw->mu);
	rc = slot_new(sw, name, priority);
	if (rc >= 0)
		snprintf(sw->se[rc].addr, sizeof(sw->se[rc].addr), "none");
	pthread_mutex_unlock(&sw->mu);
	return rc;
}

int
pg_nfcsw_register(struct pg_nfcsw *sw, int se, const uint8_t *aid, size_t len, int lifecycle,
		  int priority, const char *label, int flags)
{
	int rc;

	pthread_mutex_lock(&sw->mu);
	if (se < 0 || se >= PG_NFCSW_MAX_SES || !sw->se[se].used)
		rc = pg_error(PG_ENOENT, "nfcswitch", "no SE in slot %d", se);
	else
		rc = reg_add(sw, se, aid, len, lifecycle, priority, label, flags);
	pthread_mutex_unlock(&sw->mu);
	return rc;
}

/* One command to an SE during registry filling; 0 and the SW, or a link error. */
static int
se_cmd(struct slot *s, const uint8_t *c, size_t n, uint8_t *r, size_t *rl, uint16_t *sw)
{
	int rc = pg_link_transmit(s->link, c, n, r, rl);

	if (rc < 0)
		return rc;
	s->apdus++;
	*sw = pg_rapdu_sw(r, *rl);
	*rl -= 2;
	return 0;
}

static size_t
build_select(uint8_t *c, const uint8_t *aid, size_t len, uint8_t p2)
{
	c[0] = 0x00;
	c[1] = 0xA4;
	c[2] = 0x04;
	c[3] = p2;
	c[4] = (uint8_t)len;
	memcpy(c + 5, aid, len);
	c[5 + len] = 0x00;
	return 6 + len;
}

/* GET STATUS (GP 2.3 11.4), P1 40 (applications), P2 02 (TLV), 03 for the next block. */
static int
fill_get_status(struct pg_nfcsw *sw, int idx, uint8_t *r)
{
	struct slot *s = &sw->se[idx];
	uint8_t c[32];
	size_t rl, n;
	uint16_t st;
	int rc, found = 0;

	n = build_select(c, isd_aid, sizeof(isd_aid), 0x00);
	rl = RAPDU_MAX;
	if ((rc = se_cmd(s, c, n, r, &rl, &st)) < 0)
		return rc;
	if (st != PG_SW_OK) {
		pg_debug("nfcswitch", "SE '%s': ISD not selectable (%04X): no GET STATUS", s->name,
			 st);
		return PG_ENOTSUP;
	}
	for (int round = 0; round < 64; round++) {
		const uint8_t gs[] = {0x80, 0xF2, 0x40, round ? 0x03 : 0x02,
				      0x02, 0x4F, 0x00, 0x00};
		size_t off = 0;

		rl = RAPDU_MAX;
		if ((rc = se_cmd(s, gs, sizeof(gs), r, &rl, &st)) < 0)
			return rc;
		if ((st == PG_SW_NOT_FOUND || st == PG_SW_REF_DATA_NOT_FOUND) && round == 0) {
			s->source = "get-status";
			return 0; /* GP 2.3 11.4.5: no application matches */
		}
		if (st != PG_SW_OK && st != 0x6310) {
			pg_debug("nfcswitch", "SE '%s': GET STATUS answered %04X", s->name, st);
			return round ? 0 : PG_ENOTSUP;
		}
		while (off < rl) {
			struct pg_tlv t, a, l;
			const struct expect *x;
			int lc = PG_NFCSW_LC_SELECTABLE;

			rc = pg_tlv_next(&t, r + off, rl - off);
			if (rc <= 0)
				break;
			off += (size_t)rc;
			if (t.tag != 0xE3 || pg_tlv_find(&a, t.val, t.len, 0x4F, 0) != 1 ||
			    a.len < 1 || a.len > PG_NFCSW_AID_MAX)
				continue;
			if (pg_tlv_find(&l, t.val, t.len, 0x9F70, 0) == 1 && l.len >= 1)
				lc = l.val[0];
			if (a.len == sizeof(pg_gp_ppse_aid) &&
			    !memcmp(a.val, pg_gp_ppse_aid, a.len))
				continue; /* the switch answers PPSE itself (combined directory) */
			x = find_expect(sw, s->name, a.val, a.len);
			rc = reg_add(sw, idx, a.val, a.len, lc, x ? x->prio : 0,
				     x ? x->label : NULL, x ? x->flags : 0);
			if (rc < 0)
				return rc;
			found++;
		}
		if (st == PG_SW_OK)
			break;
	}
	s->source = "get-status";
	return found;
}

/* Without GET STATUS: SELECT each configured AID. */
static int
fill_probe(struct pg_nfcsw *sw, int idx, uint8_t *r)
{
	struct slot *s = &sw->se[idx];
	int found = 0;

	for (size_t i = 0; i < sw->nexp; i++) {
		const struct expect *x = &sw->exp[i];
		uint8_t c[32];
		size_t rl = RAPDU_MAX, n;
		uint16_t st;
		int rc;

		if (strcmp(x->se, s->name))
			continue;
		n = build_select(c, x->aid, x->len, 0x00);
		if ((rc = se_cmd(s, c, n, r, &rl, &st)) < 0)
			return rc;
		if (st != PG_SW_OK && (st & 0xFF00) != 0x6100 && (st & 0xFF00) != 0x6200)
			continue;
		rc = reg_add(sw, idx, x->aid, x->len, PG_NFCSW_LC_SELECTABLE, x->prio, x->label,
			     x->flags);
		if (rc < 0)
			return rc;
		found++;
	}
	s->source = "probe";
	return found;
}

/* The SE's own PPSE, if any: marks its payment applications (label, priority). */
static int
fill_ppse(struct pg_nfcsw *sw, int idx, uint8_t *r)
{
	struct slot *s = &sw->se[idx];
	uint8_t c[32];
	size_t rl = RAPDU_MAX, n = build_select(c, pg_gp_ppse_aid, sizeof(pg_gp_ppse_aid), 0x00),
	       off;
	struct pg_tlv dir;
	uint16_t st;
	int rc;

	if ((rc = se_cmd(s, c, n, r, &rl, &st)) < 0)
		return rc;
	if (st != PG_SW_OK || pg_tlv_find(&dir, r, rl, 0xBF0C, 1) != 1)
		return 0;
	for (off = 0; off < dir.len;) {
		struct pg_tlv t, a, l, p;

		rc = pg_tlv_next(&t, dir.val + off, dir.len - off);
		if (rc <= 0)
			break;
		off += (size_t)rc;
		if (t.tag != 0x61 || pg_tlv_find(&a, t.val, t.len, 0x4F, 0) != 1)
			continue;
		for (size_t i = 0; i < sw->n; i++) {
			struct route *e = &sw->r[i];

			if (e->se != idx || e->len != a.len || memcmp(e->aid, a.val, a.len))
				continue;
			e->flags |= PG_NFCSW_APP_PAYMENT;
			if (!e->label[0] && pg_tlv_find(&l, t.val, t.len, 0x50, 0) == 1) {
				size_t k = l.len < PG_NFCSW_LABEL_MAX ? l.len : PG_NFCSW_LABEL_MAX;

				for (size_t j = 0; j < k; j++)
					e->label[j] = l.val[j] >= 0x20 && l.val[j] < 0x7F
							  ? (char)l.val[j]
							  : '?';
				e->label[k] = 0;
			}
			if (!e->own_prio && pg_tlv_find(&p, t.val, t.len, 0x87, 0) == 1 &&
			    p.len == 1 && (p.val[0] & 0x0F)) {
				e->prio = p.val[0] & 0x0F;
				sw->dirty = 1;
			}
		}
	}
	return 0;
}

/* Fills (again) one SE's registry entries; caller holds mu. */
static int
fill_se(struct pg_nfcsw *sw, int idx)
{
	struct slot *s = &sw->se[idx];
	uint8_t *r = malloc(RAPDU_MAX);
	int rc;

	if (!r)
		return PG_ENOMEM;
	reg_drop_se(sw, idx);
	if (!s->link) {
		rc = 0;
		goto out;
	}
	rc = fill_get_status(sw, idx, r);
	if (rc == PG_ENOTSUP) {
		reg_drop_se(sw, idx);
		rc = fill_probe(sw, idx, r);
	}
	if (rc >= 0)
		rc = fill_ppse(sw, idx, r);
	if (rc < 0) {
		s->up = 0;
		pg_error(rc, "nfcswitch", "SE '%s': registry not filled: %s", s->name,
			 pg_strerror(rc));
	}
out:
	free(r);
	sw->dirty = 1;
	return rc;
}

int
pg_nfcsw_attach(struct pg_nfcsw *sw, const char *name, struct pg_link *link, const char *addr,
		int priority)
{
	uint8_t atr[PG_ATR_MAX];
	size_t atrlen = sizeof(atr);
	int idx, rc;

	if (!link)
		return pg_error(PG_EINVAL, "nfcswitch", "attach '%s': no link", name ? name : "?");
	pthread_mutex_lock(&sw->mu);
	idx = slot_new(sw, name, priority);
	if (idx < 0) {
		pg_link_close(link);
		rc = idx;
		goto out;
	}
	sw->se[idx].link = link;
	snprintf(sw->se[idx].addr, sizeof(sw->se[idx].addr), "%s", addr ? addr : "memory");
	rc = pg_link_power_on(link, atr, &atrlen);
	if (rc < 0) {
		pg_error(rc, "nfcswitch", "SE '%s': power on failed: %s", name, pg_strerror(rc));
		goto fail;
	}
	rc = fill_se(sw, idx);
	if (rc < 0)
		goto fail;
	pg_info("nfcswitch", "attached SE '%s' (%s %s), registry from %s", name, link->ops->name,
		sw->se[idx].addr, sw->se[idx].source);
	rc = idx;
	goto out;
fail:
	pg_link_close(link);
	memset(&sw->se[idx], 0, sizeof(sw->se[idx]));
	reg_drop_se(sw, idx);
out:
	pthread_mutex_unlock(&sw->mu);
	return rc;
}

static void
slot_clear(struct pg_nfcsw *sw, int idx)
{
	if (sw->sess == idx) {
		sw->sess_lost = 1; /* the reader's transaction ends with an error */
		sw->sess_has_app = 0;
	}
	if (sw->default_se == idx)
		sw->default_se = SESS_NONE;
	reg_drop_se(sw, idx);
	pg_link_close(sw->se[idx].link);
	memset(&sw->se[idx], 0, sizeof(sw->se[idx]));
}

int
pg_nfcsw_detach(struct pg_nfcsw *sw, const char *name)
{
	int idx;

	pthread_mutex_lock(&sw->mu);
	idx = pg_nfcsw_find_se(sw, name);
	if (idx >= 0)
		slot_clear(sw, idx);
	pthread_mutex_unlock(&sw->mu);
	if (idx < 0)
		return pg_error(PG_ENOENT, "nfcswitch", "no SE '%s' attached", name);
	pg_info("nfcswitch", "detached SE '%s'", name);
	return 0;
}

static void session_end(struct pg_nfcsw *sw);

/*
 * Refreshing sends SELECT ISD / GET STATUS / SELECT PPSE, which changes the
 * SE's selection: the periodic refresh (skip_busy) leaves the SE of the
 * reader's current session alone until the session ends.
 */
static int
refresh(struct pg_nfcsw *sw, const char *name, int skip_busy)
{
	int rc = 0, any = 0;

	pthread_mutex_lock(&sw->mu);
	for (int i = 0; i < PG_NFCSW_MAX_SES; i++) {
		int r;

		if (!sw->se[i].used || !sw->se[i].link || (name && strcmp(sw->se[i].name, name)))
			continue;
		any = 1;
		if (skip_busy && sw->sess == i)
			continue;
		if (sw->sess == i)
			session_end(sw); /* its selection is gone: the reader must SELECT again */
		r = fill_se(sw, i);
		if (r < 0 && rc == 0)
			rc = r;
	}
	pthread_mutex_unlock(&sw->mu);
	if (name && !any)
		return pg_error(PG_ENOENT, "nfcswitch", "no SE '%s' with a link", name);
	return rc;
}

int
pg_nfcsw_refresh(struct pg_nfcsw *sw, const char *name)
{
	return refresh(sw, name, 0);
}

struct pg_link *
pg_nfcsw_link(struct pg_nfcsw *sw, const char *name)
{
	int idx = pg_nfcsw_find_se(sw, name);

	return idx >= 0 ? sw->se[idx].link : NULL;
}

int
pg_nfcsw_expect(struct pg_nfcsw *sw, const char *se, const uint8_t *aid, size_t len, int priority,
		const char *label, int flags)
{
	struct expect *x;
	int rc = 0;

	if (!se || strlen(se) >= PG_NFCSW_NAME_MAX || len < 1 || len > PG_NFCSW_AID_MAX ||
	    priority < 0 || priority > 15)
		return pg_error(PG_EINVAL, "nfcswitch", "bad application entry");
	pthread_mutex_lock(&sw->mu);
	if (sw->nexp == sw->capexp) {
		size_t nc = sw->capexp ? sw->capexp * 2 : 16;
		struct expect *ne = realloc(sw->exp, nc * sizeof(*ne));

		if (!ne) {
			rc = PG_ENOMEM;
			goto out;
		}
		sw->exp = ne;
		sw->capexp = nc;
	}
	x = &sw->exp[sw->nexp++];
	memset(x, 0, sizeof(*x));
	snprintf(x->se, sizeof(x->se), "%s", se);
	memcpy(x->aid, aid, len);
	x->len = (uint8_t)len;
	x->prio = (uint8_t)priority;
	x->flags = (uint8_t)flags;
	if (label)
		snprintf(x->label, sizeof(x->label), "%s", label);
out:
	pthread_mutex_unlock(&sw->mu);
	return rc;
}

int
pg_nfcsw_set_default(struct pg_nfcsw *sw, const char *se)
{
	int idx;

	pthread_mutex_lock(&sw->mu);
	idx = se ? pg_nfcsw_find_se(sw, se) : SESS_NONE;
	if (se && idx >= 0)
		sw->default_se = idx;
	else if (!se)
		sw->default_se = SESS_NONE;
	pthread_mutex_unlock(&sw->mu);
	if (se && idx < 0)
		return pg_error(PG_ENOENT, "nfcswitch", "default route: no SE '%s'", se);
	return 0;
}

/* ---------------- the master controller ---------------- */

static size_t
put_sw(uint8_t *r, size_t at, uint16_t sw)
{
	r[at] = (uint8_t)(sw >> 8);
	r[at + 1] = (uint8_t)sw;
	return at + 2;
}

static void
session_end(struct pg_nfcsw *sw)
{
	sw->sess = SESS_NONE;
	sw->sess_lost = 0;
	sw->sess_has_app = 0;
}

/* Combined PPSE FCI: payment applications of every live SE, by priority. */
static int
build_ppse(struct pg_nfcsw *sw, uint8_t *out, size_t cap, size_t *len)
{
	struct pg_buf b = PG_BUF_INIT(256);
	const struct route **list = NULL;
	struct pg_ppse_fci f;
	size_t n = 0;
	int rc;

	reg_sort(sw);
	list = malloc((sw->n + 1) * sizeof(*list));
	if (!list)
		return PG_ENOMEM;
	for (size_t i = 0; i < sw->n; i++) {
		const struct route *e = &sw->r[i];

		if (!(e->flags & PG_NFCSW_APP_PAYMENT) || !routable(sw, e))
			continue;
		if (e->conflict && sw->policy == PG_NFCSW_POLICY_REFUSE)
			continue;
		if (n && aid_cmp(list[n - 1]->aid, list[n - 1]->len, e->aid, e->len) == 0)
			continue; /* the conflict's loser is unreachable by SELECT */
		list[n++] = e;
	}
	/* Insertion sort by (priority, registration): n is a handful. */
	for (size_t i = 1; i < n; i++) {
		const struct route *k = list[i];
		size_t j = i;

		while (j > 0 && (list[j - 1]->prio > k->prio ||
				 (list[j - 1]->prio == k->prio && list[j - 1]->seq > k->seq))) {
			list[j] = list[j - 1];
			j--;
		}
		list[j] = k;
	}
	if ((rc = pg_ppse_fci_open(&f, &b)) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		size_t keep = b.len;

		if ((rc = pg_ppse_fci_entry(&f, list[i]->aid, list[i]->len, list[i]->label,
					    strlen(list[i]->label), list[i]->prio)) < 0 ||
		    b.len > 240) {
			/* A short R-APDU holds 256 bytes: the lowest priorities drop out. */
			b.len = keep;
			pg_warn("nfcswitch", "PPSE: directory full, %zu applications left out",
				n - i);
			break;
		}
	}
	if ((rc = pg_ppse_fci_close(&f)) < 0)
		goto out;
	if (b.len > cap) {
		rc = PG_ETOOBIG;
		goto out;
	}
	memcpy(out, b.data, b.len);
	*len = b.len;
	rc = 0;
out:
	free(list);
	pg_buf_release(&b);
	return rc;
}

/* Sends to an SE; on a link failure the SE goes down (its routes stop) and the reader gets 6F00. */
static int
forward(struct pg_nfcsw *sw, int idx, const uint8_t *c, size_t n, uint8_t *r, size_t *rl)
{
	struct slot *s = &sw->se[idx];
	size_t cap = *rl;
	int rc = pg_link_transmit(s->link, c, n, r, rl);

	if (rc < 0 || *rl < 2) {
		pg_warn("nfcswitch", "SE '%s' failed (%s): marked down", s->name,
			rc < 0 ? pg_strerror(rc) : "short R-APDU");
		s->up = 0;
		sw->dirty = 1;
		session_end(sw);
		*rl = cap >= 2 ? put_sw(r, 0, PG_SW_UNKNOWN) : 0;
		return 0;
	}
	s->apdus++;
	return 1;
}

static int
sw_ok_for_select(uint16_t st)
{
	return st == PG_SW_OK || (st & 0xFF00) == 0x6100 || (st & 0xFF00) == 0x6200 ||
	       (st & 0xFF00) == 0x6300;
}

/* SELECT by DF name (P1 04) from the reader. */
static int
do_select(struct pg_nfcsw *sw, const struct pg_capdu *c, const uint8_t *raw, size_t rawlen,
	  uint8_t *r, size_t *rl)
{
	size_t cap = *rl;
	int occ = c->p2 & 0x03, rc, tries;

	if (occ != 0 && occ != 2) {
		*rl = put_sw(r, 0, PG_SW_INCORRECT_P1P2); /* last/previous: not offered */
		return 0;
	}
	if (c->lc == sizeof(pg_gp_ppse_aid) &&
	    !memcmp(c->data, pg_gp_ppse_aid, sizeof(pg_gp_ppse_aid))) {
		size_t n = 0;

		session_end(sw);
		rc = build_ppse(sw, r, cap - 2, &n);
		if (rc < 0) {
			*rl = put_sw(r, 0, PG_SW_UNKNOWN);
			return 0;
		}
		sw->sess = SESS_SWITCH;
		*rl = put_sw(r, (c->p2 & 0x0C) == 0x0C ? 0 : n, PG_SW_OK);
		return 0;
	}
	for (tries = 0; tries < 2; tries++) {
		struct route *e = NULL;
		struct route hit;
		size_t n;
		uint16_t st;

		rc = c->lc ? route_locked(sw, c->data, c->lc, occ == 2, &e) : PG_ENOENT;
		if (rc == PG_EEXIST) {
			session_end(sw);
			*rl = put_sw(r, 0, PG_SW_CONDITIONS);
			return 0;
		}
		if (rc == PG_ENOENT) {
			int d = sw->default_se;

			session_end(sw);
			if (d < 0 || !sw->se[d].up || !sw->se[d].link) {
				*rl = put_sw(r, 0, PG_SW_NOT_FOUND);
				return 0;
			}
			/* Default route: the SE answers the SELECT as it sees fit. */
			if (!forward(sw, d, raw, rawlen, r, rl))
				return 0;
			if (sw_ok_for_select(pg_rapdu_sw(r, *rl)))
				sw->sess = d;
			return 0;
		}
		hit = *e;
		/* The switch resolved the occurrence: the SE gets the full AID, first occurrence.
		 */
		n = build_select(sw->cmd, hit.aid, hit.len, (uint8_t)(c->p2 & 0x0C));
		sw->cmd[0] = c->cla;
		*rl = cap;
		if (!forward(sw, hit.se, sw->cmd, n, r, rl))
			return 0;
		st = pg_rapdu_sw(r, *rl);
		if (st == PG_SW_NOT_FOUND && tries == 0) {
			/* Stale registry (the applet was deleted): re-read that SE and route again.
			 */
			pg_info("nfcswitch", "SE '%s' no longer has a routed AID: refreshing",
				sw->se[hit.se].name);
			fill_se(sw, hit.se);
			*rl = cap;
			continue;
		}
		if (!sw_ok_for_select(st)) {
			session_end(sw);
			return 0;
		}
		sw->sess = hit.se;
		sw->sess_lost = 0;
		sw->sess_has_app = 1;
		sw->sess_app = hit;
		return 0;
	}
	session_end(sw);
	*rl = put_sw(r, 0, PG_SW_NOT_FOUND);
	return 0;
}

int
pg_nfcsw_process(struct pg_nfcsw *sw, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
		 size_t *rlen)
{
	struct pg_capdu c;
	int rc = 0;

	if (*rlen < 2)
		return PG_ETOOBIG;
	pthread_mutex_lock(&sw->mu);
	if (pg_capdu_parse(&c, capdu, clen) < 0) {
		*rlen = put_sw(rapdu, 0, clen < 4 ? PG_SW_UNKNOWN : PG_SW_WRONG_LENGTH);
		goto out;
	}
	if (c.ins == 0xA4 && c.p1 == 0x04 && pg_cla_is_interindustry(c.cla) &&
	    pg_cla_channel(c.cla) == 0) {
		rc = do_select(sw, &c, capdu, clen, rapdu, rlen);
		goto out;
	}
	if (sw->sess_lost) {
		/* The SE went away mid-transaction: the transaction ends with an error. */
		session_end(sw);
		*rlen = put_sw(rapdu, 0, PG_SW_UNKNOWN);
		goto out;
	}
	if (sw->sess == SESS_SWITCH) {
		*rlen =
		    put_sw(rapdu, 0, PG_SW_INS_NOT_SUPPORTED); /* the PPSE only answers SELECT */
		goto out;
	}
	if (sw->sess < 0 || !sw->se[sw->sess].up) {
		session_end(sw);
		*rlen = put_sw(rapdu, 0, PG_SW_CONDITIONS); /* no application selected */
		goto out;
	}
	forward(sw, sw->sess, capdu, clen, rapdu, rlen);
out:
	pthread_mutex_unlock(&sw->mu);
	return rc;
}

void
pg_nfcsw_field_off(struct pg_nfcsw *sw)
{
	pthread_mutex_lock(&sw->mu);
	session_end(sw);
	pthread_mutex_unlock(&sw->mu);
}

const char *
pg_nfcsw_session_se(struct pg_nfcsw *sw)
{
	if (sw->sess == SESS_SWITCH)
		return "(switch PPSE)";
	return sw->sess >= 0 ? sw->se[sw->sess].name : "";
}

static int
card_atr(void *ctx, uint8_t *atr, size_t *len)
{
	/*
	 * ISO 14443-4 card seen through PC/SC (PC/SC part 3 ATR: 3B 8n 80 01 +
	 * historical bytes + TCK), the historical bytes of category 80 with
	 * "NFCSWITCH" as card issuer's data.
	 */
	static const uint8_t id[] = {'N', 'F', 'C', 'S', 'W', 'I', 'T', 'C', 'H'};
	uint8_t a[PG_ATR_MAX];
	int n = pg_card_atr_build(a, sizeof(a), id, sizeof(id));

	(void)ctx;
	if (n < 0)
		return n;
	if (*len < (size_t)n)
		return PG_ETOOBIG;
	memcpy(atr, a, (size_t)n);
	*len = (size_t)n;
	return 0;
}

static int
card_process(void *ctx, const uint8_t *c, size_t n, uint8_t *r, size_t *rl)
{
	return pg_nfcsw_process(ctx, c, n, r, rl);
}

static void
card_reset(void *ctx)
{
	pg_nfcsw_field_off(ctx);
}

const struct pg_card *
pg_nfcsw_card(struct pg_nfcsw *sw)
{
	return &sw->card;
}

/* ---------------- lifetime, policy, listings ---------------- */

int
pg_nfcsw_new(struct pg_nfcsw **out)
{
	struct pg_nfcsw *sw = calloc(1, sizeof(*sw));

	*out = NULL;
	if (!sw)
		return PG_ENOMEM;
	pthread_mutex_init(&sw->mu, NULL);
	sw->default_se = SESS_NONE;
	sw->sess = SESS_NONE;
	sw->card.ctx = sw;
	sw->card.atr = card_atr;
	sw->card.process = card_process;
	sw->card.reset = card_reset;
	*out = sw;
	return 0;
}

static void *
refresh_main(void *arg)
{
	struct pg_nfcsw *sw = arg;

	while (!sw->refresh_stop) {
		for (int waited = 0; waited < sw->refresh_ms && !sw->refresh_stop; waited += 50) {
			struct timespec ts = {0, 50 * 1000 * 1000};

			nanosleep(&ts, NULL);
		}
		if (!sw->refresh_stop)
			refresh(sw, NULL, 1);
	}
	return NULL;
}

int
pg_nfcsw_start_refresh(struct pg_nfcsw *sw, int period_ms)
{
	if (period_ms < 100)
		return pg_error(PG_EINVAL, "nfcswitch", "refresh period %d ms (at least 100)",
				period_ms);
	if (sw->refresh_running)
		return pg_error(PG_ESTATE, "nfcswitch", "refresh already running");
	sw->refresh_ms = period_ms;
	sw->refresh_stop = 0;
	if (pthread_create(&sw->refresher, NULL, refresh_main, sw))
		return pg_error(PG_ESYS, "nfcswitch", "cannot start the refresh thread");
	sw->refresh_running = 1;
	return 0;
}

void
pg_nfcsw_free(struct pg_nfcsw *sw)
{
	if (!sw)
		return;
	if (sw->refresh_running) {
		sw->refresh_stop = 1;
		pthread_join(sw->refresher, NULL);
	}
	for (int i = 0; i < PG_NFCSW_MAX_SES; i++)
		if (sw->se[i].used)
			pg_link_close(sw->se[i].link);
	free(sw->r);
	free(sw->exp);
	pthread_mutex_destroy(&sw->mu);
	free(sw);
}

void
pg_nfcsw_set_policy(struct pg_nfcsw *sw, enum pg_nfcsw_policy p)
{
	pthread_mutex_lock(&sw->mu);
	sw->policy = p;
	sw->dirty = 1;
	pthread_mutex_unlock(&sw->mu);
}

enum pg_nfcsw_policy
pg_nfcsw_policy(const struct pg_nfcsw *sw)
{
	return sw->policy;
}

static const char *const policy_names[] = {"priority", "first", "refuse"};

int
pg_nfcsw_policy_parse(const char *s, enum pg_nfcsw_policy *p)
{
	for (int i = 0; i < 3; i++)
		if (!strcmp(s, policy_names[i])) {
			*p = (enum pg_nfcsw_policy)i;
			return 0;
		}
	return pg_error(PG_EINVAL, "nfcswitch", "policy '%s' (priority, first or refuse)", s);
}

const char *
pg_nfcsw_policy_name(enum pg_nfcsw_policy p)
{
	return (unsigned)p < 3 ? policy_names[p] : "?";
}

const char *
pg_nfcsw_se_name(struct pg_nfcsw *sw, int slot)
{
	return slot >= 0 && slot < PG_NFCSW_MAX_SES && sw->se[slot].used ? sw->se[slot].name : "?";
}

int
pg_nfcsw_apps(struct pg_nfcsw *sw, struct pg_nfcsw_app **out, size_t *n)
{
	int rc = 0;

	pthread_mutex_lock(&sw->mu);
	reg_sort(sw);
	*out = calloc(sw->n + 1, sizeof(**out));
	if (!*out) {
		rc = PG_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < sw->n; i++)
		app_out(sw, &sw->r[i], &(*out)[i]);
	*n = sw->n;
out:
	pthread_mutex_unlock(&sw->mu);
	return rc;
}

int
pg_nfcsw_ses(struct pg_nfcsw *sw, struct pg_nfcsw_se_info *out, size_t max, size_t *n)
{
	pthread_mutex_lock(&sw->mu);
	*n = 0;
	for (int i = 0; i < PG_NFCSW_MAX_SES && *n < max; i++) {
		const struct slot *s = &sw->se[i];
		struct pg_nfcsw_se_info *o = &out[*n];

		if (!s->used)
			continue;
		memset(o, 0, sizeof(*o));
		snprintf(o->name, sizeof(o->name), "%s", s->name);
		snprintf(o->link, sizeof(o->link), "%s", s->link ? s->link->ops->name : "none");
		snprintf(o->addr, sizeof(o->addr), "%s", s->addr);
		o->state = s->up ? "up" : "down";
		o->priority = s->prio;
		o->source = s->source;
		o->apdus = s->apdus;
		for (size_t k = 0; k < sw->n; k++)
			o->apps += sw->r[k].se == i;
		(*n)++;
	}
	pthread_mutex_unlock(&sw->mu);
	return 0;
}
