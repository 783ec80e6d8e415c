/*
 * ARA-M applet (GlobalPlatform Secure Element Access Control v1.1, AID
 * A00000015141434C00): GET DATA [All] (FF40) and [Next] (FF60) serve the
 * REF-AR-DO rules stored by STORE DATA (DGI 0100 replace, DGI 0101 append).
 */
#include "gp_int.h"

#include "payguard/error.h"
#include "payguard/tlv.h"

#include <string.h>

#define ARAM_MAX 1024u /* bytes of REF-AR-DOs an instance stores */

/*
 * Persistent state, a flat byte array: stored flag, 2-byte length, rules.
 * Nothing stored: one permissive rule (every AID, every client: ALWAYS), so
 * an instance installed without personalisation grants what a card without
 * access control would; a STORE DATA (even of no rules) replaces it.
 */
struct aram_p {
	uint8_t stored;
	uint8_t len[2];
	uint8_t rules[ARAM_MAX];
};

/* Transient: where [Next] continues in the FF40 object, and whether it may. */
struct aram_v {
	uint8_t active;
	uint8_t off[2];
};

/* E2 { E1 { 4F 00 (all AIDs), C1 00 (all clients) }, E3 { D0 01 01 (ALWAYS) } } */
static const uint8_t aram_default[] = {0xE2, 0x0B, 0xE1, 0x04, 0x4F, 0x00, 0xC1,
				       0x00, 0xE3, 0x03, 0xD0, 0x01, 0x01};

static void
aram_rules(const struct gp_inst *in, const uint8_t **r, size_t *n)
{
	const struct aram_p *p = (const struct aram_p *)in->p;

	if (!p->stored) {
		*r = aram_default, *n = sizeof(aram_default);
		return;
	}
	*r = p->rules;
	*n = (size_t)p->len[0] << 8 | p->len[1];
}

static int
aram_check(const uint8_t *raw)
{
	const struct aram_p *p = (const struct aram_p *)raw;
	size_t n = (size_t)p->len[0] << 8 | p->len[1];

	if (p->stored > 1 || n > ARAM_MAX || (p->stored && n && pg_tlv_validate(p->rules, n) < 0))
		return PG_ECORRUPT;
	return 0;
}

/* Every top-level object must be a REF-AR-DO (E2) with well-formed content. */
static int
rules_valid(const uint8_t *d, size_t n)
{
	size_t off = 0;

	if (n && pg_tlv_validate(d, n) < 0)
		return 0;
	while (off < n) {
		struct pg_tlv t;
		int k = pg_tlv_next(&t, d + off, n - off);

		if (k <= 0 || t.tag != 0xE2)
			return 0;
		off += (size_t)k;
	}
	return 1;
}

static uint16_t
aram_store_dgi(struct gp_inst *in, uint16_t dgi, const uint8_t *d, size_t n)
{
	struct aram_p *p = (struct aram_p *)in->p;
	size_t have = (size_t)p->len[0] << 8 | p->len[1];

	if (dgi == 0x0100) { /* replace: the value is whole REF-AR-DOs (or nothing) */
		if (n > ARAM_MAX || !rules_valid(d, n))
			return PG_SW_WRONG_DATA;
		have = 0;
	} else if (dgi == 0x0101) { /* append: for rule sets longer than one block */
		if (!p->stored || n > ARAM_MAX - have)
			return n > ARAM_MAX - have ? PG_SW_NOT_ENOUGH_MEMORY : PG_SW_CONDITIONS;
		if (!rules_valid(d, n))
			return PG_SW_WRONG_DATA;
	} else {
		return PG_SW_REF_DATA_NOT_FOUND;
	}
	if (n)
		memcpy(p->rules + have, d, n);
	have += n;
	p->stored = 1;
	p->len[0] = (uint8_t)(have >> 8), p->len[1] = (uint8_t)have;
	return PG_SW_OK;
}

static int
aram_perso_done(const struct gp_inst *in)
{
	return ((const struct aram_p *)in->p)->stored;
}

/* Writes object bytes [off, off+cnt) of FF40 L rules without building it whole. */
static size_t
object_slice(const uint8_t *r, size_t n, size_t off, uint8_t *out, size_t cap)
{
	uint8_t hdr[5] = {0xFF, 0x40};
	size_t hl, w = 0;

	if (n < 0x80)
		hdr[2] = (uint8_t)n, hl = 3;
	else if (n < 0x100)
		hdr[2] = 0x81, hdr[3] = (uint8_t)n, hl = 4;
	else
		hdr[2] = 0x82, hdr[3] = (uint8_t)(n >> 8), hdr[4] = (uint8_t)n, hl = 5;
	while (w < cap && off < hl + n) {
		out[w++] = off < hl ? hdr[off] : r[off - hl];
		off++;
	}
	return w;
}

static int
aram_process(struct gp_inst *in, int chn, const struct pg_capdu *c, uint8_t *resp, size_t *rlen,
	     uint16_t *sw)
{
	struct aram_v *v = (struct aram_v *)in->v;
	const uint8_t *r;
	size_t n, off, total, cap = *rlen < 256 ? *rlen : 256, w;
	uint16_t p1p2 = (uint16_t)(c->p1 << 8 | c->p2);

	(void)chn;
	*rlen = 0;
	if ((c->cla & 0x80) == 0 || c->ins != 0xCA) {
		*sw = (c->cla & 0x80) == 0 ? PG_SW_CLA_NOT_SUPPORTED : PG_SW_INS_NOT_SUPPORTED;
		return 0;
	}
	if (p1p2 != 0xFF40 && p1p2 != 0xFF60) {
		*sw = PG_SW_REF_DATA_NOT_FOUND;
		return 0;
	}
	aram_rules(in, &r, &n);
	total = n + (n < 0x80 ? 3 : n < 0x100 ? 4 : 5);
	if (p1p2 == 0xFF40) {
		off = 0;
	} else {
		off = (size_t)v->off[0] << 8 | v->off[1];
		if (!v->active || off >= total) { /* [Next] without a pending [All] */
			*sw = PG_SW_CONDITIONS;
			return 0;
		}
	}
	w = object_slice(r, n, off, resp, cap);
	off += w;
	v->active = off < total;
	v->off[0] = (uint8_t)(off >> 8), v->off[1] = (uint8_t)off;
	*rlen = w;
	*sw = PG_SW_OK;
	return 0;
}

const struct gp_class pgi_gp_class_aram = {
    .name = "aram",
    .id = 5,
    .elf_aid = {0xF0, 'P', 'G', 'L', 'F', 0x05},
    .elf_len = 6,
    .mod_aid = {0xF0, 'P', 'G', 'M', 'D', 0x05},
    .mod_len = 6,
    .def_aid = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x41, 0x43, 0x4C, 0x00},
    .def_len = 9,
    .pstate = sizeof(struct aram_p),
    .vstate = sizeof(struct aram_v),
    .check = aram_check,
    .process = aram_process,
    .store_dgi = aram_store_dgi,
    .perso_done = aram_perso_done,
};
