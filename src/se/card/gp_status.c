/*
 * GET STATUS of the issuer security domain (GP Card Specification v2.3
 * 11.4): the ISD (P1 80), applications (40), executable load files (20) and
 * load files with their modules (10), in the TLV format (P2 b2 = 1), with
 * 6310 "more data" and continuation by P2 "next occurrence" when the entries
 * do not fit one short response.
 */
#include "gp_int.h"

#include "payguard/error.h"
#include "payguard/tlv.h"

#include <string.h>

#define GS_BUDGET 256u /* one short response */

uint16_t pgi_gp_get_status(struct pg_gp_card *g, int chn, const struct pg_capdu *c, uint8_t *resp,
			   size_t *rlen);

static int
entry_count(struct pg_gp_card *g, uint8_t p1)
{
	switch (p1) {
	case 0x80:
		return 1;
	case 0x40:
		return g->ninst;
	default:
		return pgi_gp_class_count();
	}
}

/* Builds entry i of the registry for P1 into b (E3 template); 0 if filtered out, 1 added. */
static int
entry(struct pg_gp_card *g, uint8_t p1, int i, const uint8_t *crit, size_t clen, struct pg_buf *b)
{
	const uint8_t *aid;
	size_t alen, mark;
	uint8_t lc;
	int rc;

	if (p1 == 0x80) {
		aid = pg_card_isd_aid, alen = sizeof(pg_card_isd_aid), lc = g->card_lc;
	} else if (p1 == 0x40) {
		aid = g->inst[i]->aid, alen = g->inst[i]->aid_len, lc = g->inst[i]->lc;
	} else {
		aid = pgi_gp_class_at(i)->elf_aid, alen = pgi_gp_class_at(i)->elf_len;
		lc = 0x01; /* LOADED */
	}
	if (clen > alen || memcmp(aid, crit, clen) != 0)
		return 0;
	if ((rc = pg_tlv_open(b, 0xE3, &mark)) < 0 ||
	    (rc = pg_tlv_append(b, 0x4F, aid, alen)) < 0 ||
	    (rc = pg_tlv_append(b, 0x9F70, &lc, 1)) < 0)
		return rc;
	if (p1 == 0x80)
		rc = pg_tlv_append(b, 0xC5, pgi_gp_isd_priv, 3);
	else if (p1 == 0x40) {
		const struct gp_class *cls = g->inst[i]->cls;

		if ((rc = pg_tlv_append(b, 0xC5, g->inst[i]->priv, 3)) < 0 ||
		    (rc = pg_tlv_append(b, 0xC4, cls->elf_aid, cls->elf_len)) < 0)
			return rc;
		rc = pg_tlv_append(b, 0xCC, pg_card_isd_aid, sizeof(pg_card_isd_aid));
	} else {
		rc = pg_tlv_append(b, 0xCC, pg_card_isd_aid, sizeof(pg_card_isd_aid));
		if (rc >= 0 && p1 == 0x10)
			rc = pg_tlv_append(b, 0x84, pgi_gp_class_at(i)->mod_aid,
					   pgi_gp_class_at(i)->mod_len);
	}
	if (rc < 0)
		return rc;
	if ((rc = pg_tlv_close(b, mark)) < 0)
		return rc;
	return 1;
}

/*
 * P2 of a GET STATUS: 02 starts a search (the 4F search criteria, optionally a
 * 5C tag list), 03 continues the one on this channel for the same P1.
 */
static uint16_t
search_start(struct gp_gs *gs, const struct pg_capdu *c)
{
	struct pg_tlv t;
	int n;

	if (c->p2 == 0x03)
		return gs->active && gs->p1 == c->p1 ? PG_SW_OK : PG_SW_CONDITIONS;
	n = pg_tlv_next(&t, c->data, c->lc);
	/* Search criteria: 4F with an AID prefix (0..16 bytes), optionally a 5C tag list. */
	if (n <= 0 || t.tag != 0x4F || t.len > PG_AID_MAX)
		return PG_SW_WRONG_DATA;
	if ((size_t)n < c->lc) {
		struct pg_tlv t2;
		int m = pg_tlv_next(&t2, c->data + n, c->lc - (size_t)n);

		if (m <= 0 || t2.tag != 0x5C || (size_t)(n + m) != c->lc)
			return PG_SW_WRONG_DATA;
	}
	gs->active = 1;
	gs->p1 = c->p1;
	gs->next = 0;
	memcpy(gs->crit, t.val, t.len);
	gs->crit_len = t.len;
	return PG_SW_OK;
}

/*
 * Appends the matching entries from gs->next on while they fit `budget`
 * bytes; *i is where the next GET STATUS resumes, *found how many were added.
 */
static int
fill(struct pg_gp_card *g, struct gp_gs *gs, uint8_t p1, size_t budget, struct pg_buf *b, int *i,
     int *found)
{
	int total = entry_count(g, p1), rc;

	*found = 0;
	for (*i = gs->next; *i < total; (*i)++) {
		size_t before = b->len;

		rc = entry(g, p1, *i, gs->crit, gs->crit_len, b);
		if (rc < 0)
			return rc;
		if (rc == 0)
			continue;
		if (b->len > budget) {
			b->len = before; /* does not fit: the next GET STATUS starts here */
			break;
		}
		(*found)++;
	}
	return total;
}

uint16_t
pgi_gp_get_status(struct pg_gp_card *g, int chn, const struct pg_capdu *c, uint8_t *resp,
		  size_t *rlen)
{
	struct gp_gs *gs = &g->gs[chn];
	struct pg_buf b = PG_BUF_INIT(4096);
	size_t cap = *rlen, budget = GS_BUDGET;
	int i, total, found;
	uint16_t sw;

	*rlen = 0;
	if (c->p1 != 0x80 && c->p1 != 0x40 && c->p1 != 0x20 && c->p1 != 0x10)
		return PG_SW_INCORRECT_P1P2;
	if (c->p2 != 0x02 && c->p2 != 0x03)
		return PG_SW_INCORRECT_P1P2; /* only the TLV format (GP 2.3 table 11-33) */
	sw = search_start(gs, c);
	if (sw != PG_SW_OK)
		return sw;
	if (c->has_le && c->le < budget)
		budget = c->le;
	if (budget > cap)
		budget = cap;
	total = fill(g, gs, c->p1, budget, &b, &i, &found);
	if (total < 0)
		sw = PG_SW_UNKNOWN;
	else if (found == 0 && i < total)
		sw = PG_SW_WRONG_LENGTH; /* one entry alone exceeds Le */
	else if (found == 0 && gs->next == 0)
		sw = PG_SW_REF_DATA_NOT_FOUND;
	else {
		gs->next = i;
		sw = i < total ? 0x6310 : PG_SW_OK; /* 6310: more data available */
		if (sw == PG_SW_OK)
			gs->active = 0;
		memcpy(resp, b.data, b.len);
		*rlen = b.len;
	}
	if (sw != PG_SW_OK && sw != 0x6310)
		gs->active = 0;
	pg_buf_release(&b);
	return sw;
}
