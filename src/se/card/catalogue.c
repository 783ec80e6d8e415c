/*
 * The built-in catalogue of the GP card: executable load files (in "ROM",
 * never downloaded) with one module each — PPSE, EMV-style payment, PIN and
 * key store, the link test applet, ARA-M, echo and transit — and the strict parsers of INSTALL
 * command data (GP 2.3 11.5.2.3) and STORE DATA DGIs (EMV CPS / GP 11.11).
 */
#include "gp_int.h"

#include "payguard/error.h"
#include "payguard/tlv.h"

#include <stdio.h>
#include <string.h>

static const struct gp_class *const classes[] = {
    &pgi_gp_class_ppse, &pgi_gp_class_pay,  &pgi_gp_class_pin,	  &pgi_gp_class_test,
    &pgi_gp_class_aram, &pgi_gp_class_echo, &pgi_gp_class_transit};
#define NCLASSES ((int)(sizeof(classes) / sizeof(classes[0])))

const struct gp_class *
pgi_gp_class_by_name(const char *name)
{
	for (int i = 0; i < NCLASSES; i++)
		if (strcmp(classes[i]->name, name) == 0)
			return classes[i];
	return NULL;
}

const struct gp_class *
pgi_gp_class_by_id(uint8_t id)
{
	for (int i = 0; i < NCLASSES; i++)
		if (classes[i]->id == id)
			return classes[i];
	return NULL;
}

const struct gp_class *
pgi_gp_class_by_elf(const uint8_t *aid, size_t n)
{
	for (int i = 0; i < NCLASSES; i++)
		if (classes[i]->elf_len == n && memcmp(classes[i]->elf_aid, aid, n) == 0)
			return classes[i];
	return NULL;
}

int
pgi_gp_class_count(void)
{
	return NCLASSES;
}

const struct gp_class *
pgi_gp_class_at(int i)
{
	return i >= 0 && i < NCLASSES ? classes[i] : NULL;
}

const char *
pg_gp_catalogue_names(void)
{
	/* from the table, so a new applet is one line there (per thread: no lock) */
	static _Thread_local char names[16 * NCLASSES];
	size_t o = 0;

	for (int i = 0; i < NCLASSES && o < sizeof(names); i++)
		o += (size_t)snprintf(names + o, sizeof(names) - o, "%s%s", i ? ", " : "",
				      classes[i]->name);
	return names;
}

int
pg_gp_catalogue_known(const char *name)
{
	return name && pgi_gp_class_by_name(name) != NULL;
}

/* One length-value field of INSTALL data: length byte, then min..max bytes. */
static int
lv(const uint8_t **p, const uint8_t *end, size_t min, size_t max, const uint8_t **v, size_t *len)
{
	size_t l;

	if (*p >= end)
		return PG_ETRUNC;
	l = **p;
	(*p)++;
	if (l < min || l > max || (size_t)(end - *p) < l)
		return PG_EFORMAT;
	*v = *p;
	*len = l;
	*p += l;
	return 0;
}

/* Install parameters: TLVs C9 (mandatory, once), EF, C7, C8, EA; nothing else. */
static int
params_parse(struct pgi_gp_install *o)
{
	size_t off = 0;
	int seen = 0;

	while (off < o->params_len) {
		struct pg_tlv t;
		int n = pg_tlv_next(&t, o->params + off, o->params_len - off);

		if (n <= 0)
			return PG_EFORMAT;
		if (o->params[off] == 0x00 || o->params[off] == 0xFF)
			return PG_EFORMAT; /* no padding inside the parameters */
		if (t.tag == 0xC9) {
			if (seen++)
				return PG_EFORMAT;
			o->c9 = t.val;
			o->c9_len = t.len;
		} else if (t.tag != 0xEF && t.tag != 0xC7 && t.tag != 0xC8 && t.tag != 0xEA) {
			return PG_EFORMAT;
		} else if (t.constructed && pg_tlv_validate(t.val, t.len) < 0) {
			return PG_EFORMAT;
		}
		off += (size_t)n;
	}
	return seen ? 0 : PG_EFORMAT;
}

int
pgi_gp_install_parse(uint8_t p1, const uint8_t *d, size_t n, struct pgi_gp_install *o)
{
	const uint8_t *p, *end;
	int rc;

	memset(o, 0, sizeof(*o));
	if (!d || n == 0)
		return PG_ETRUNC; /* an APDU without data has no data pointer at all */
	p = d, end = d + n;
	if (p1 & 0x04) { /* for install (and make selectable) */
		if ((rc = lv(&p, end, 5, PG_AID_MAX, &o->elf, &o->elf_len)) < 0 ||
		    (rc = lv(&p, end, 5, PG_AID_MAX, &o->mod, &o->mod_len)) < 0 ||
		    (rc = lv(&p, end, 5, PG_AID_MAX, &o->app, &o->app_len)) < 0 ||
		    (rc = lv(&p, end, 1, 3, &o->priv, &o->priv_len)) < 0 ||
		    (rc = lv(&p, end, 2, 255, &o->params, &o->params_len)) < 0 ||
		    (rc = lv(&p, end, 0, 0, &o->token, &o->token_len)) < 0)
			return rc;
		if (o->priv_len == 2 || (rc = params_parse(o)) < 0)
			return PG_EFORMAT;
	} else if (p1 == 0x08) { /* for make selectable */
		if ((rc = lv(&p, end, 0, 0, &o->elf, &o->elf_len)) < 0 ||
		    (rc = lv(&p, end, 0, 0, &o->mod, &o->mod_len)) < 0 ||
		    (rc = lv(&p, end, 5, PG_AID_MAX, &o->app, &o->app_len)) < 0 ||
		    (rc = lv(&p, end, 0, 3, &o->priv, &o->priv_len)) < 0 ||
		    (rc = lv(&p, end, 0, 0, &o->params, &o->params_len)) < 0 ||
		    (rc = lv(&p, end, 0, 0, &o->token, &o->token_len)) < 0)
			return rc;
		if (o->priv_len == 2)
			return PG_EFORMAT;
	} else if (p1 == 0x20) { /* for personalization */
		if ((rc = lv(&p, end, 0, 0, &o->elf, &o->elf_len)) < 0 ||
		    (rc = lv(&p, end, 0, 0, &o->mod, &o->mod_len)) < 0 ||
		    (rc = lv(&p, end, 5, PG_AID_MAX, &o->app, &o->app_len)) < 0 ||
		    (rc = lv(&p, end, 0, 0, &o->priv, &o->priv_len)) < 0 ||
		    (rc = lv(&p, end, 0, 0, &o->params, &o->params_len)) < 0 ||
		    (rc = lv(&p, end, 0, 0, &o->token, &o->token_len)) < 0)
			return rc;
	} else {
		return PG_EINVAL;
	}
	return p == end ? 0 : PG_EFORMAT;
}

int
pgi_gp_dgi_next(struct gp_dgi *o, const uint8_t *d, size_t n)
{
	size_t len, hdr = 3;

	if (n < 3)
		return PG_ETRUNC;
	o->tag = (uint16_t)(d[0] << 8 | d[1]);
	len = d[2];
	if (len == 0xFF) {
		if (n < 5)
			return PG_ETRUNC;
		len = (size_t)d[3] << 8 | d[4];
		hdr = 5;
		if (len < 0xFF)
			return PG_EFORMAT; /* the long form only for 255 bytes and more */
	}
	if (o->tag == 0x0000 || o->tag == 0xFFFF)
		return PG_EFORMAT;
	if (n - hdr < len)
		return PG_ETRUNC;
	o->val = d + hdr;
	o->len = len;
	return (int)(hdr + len);
}

/* ---- the link test applet (ECHO and GET COUNTER, as card.h's test applet) ---- */

static int
test_process(struct gp_inst *in, int chn, const struct pg_capdu *c, uint8_t *resp, size_t *rlen,
	     uint16_t *sw)
{
	size_t cap = *rlen;
	uint64_t ctr;

	(void)chn;
	*rlen = 0;
	*sw = PG_SW_OK;
	switch (c->ins) {
	case PG_TEST_INS_ECHO:
		if (c->lc > 0) {
			size_t n = c->has_le && c->le < c->lc ? c->le : c->lc;

			if (n > cap)
				return PG_ETOOBIG;
			memcpy(resp, c->data, n);
			*rlen = n;
		} else if (c->has_le) {
			if (c->le > cap)
				return PG_ETOOBIG;
			for (size_t i = 0; i < c->le; i++)
				resp[i] = (uint8_t)i;
			*rlen = c->le;
		}
		return 0;
	case PG_TEST_INS_COUNTER:
		if (cap < 8)
			return PG_ETOOBIG;
		ctr = pg_card_rt_counter(in->g->rt);
		for (int i = 0; i < 8; i++)
			resp[i] = (uint8_t)(ctr >> (56 - 8 * i));
		*rlen = 8;
		return 0;
	default:
		*sw = PG_SW_INS_NOT_SUPPORTED;
		return 0;
	}
}

/* The echo applet: every command's data back with 9000 (link and SE OS tests). */
static int
echo_process(struct gp_inst *in, int chn, const struct pg_capdu *c, uint8_t *resp, size_t *rlen,
	     uint16_t *sw)
{
	(void)in, (void)chn;
	if (c->lc > *rlen)
		return PG_ETOOBIG;
	if (c->lc) /* a case 1 or 2 command has no data (c->data may be NULL) */
		memcpy(resp, c->data, c->lc);
	*rlen = c->lc;
	*sw = PG_SW_OK;
	return 0;
}

const struct gp_class pgi_gp_class_echo = {
    .name = "echo",
    .id = 6,
    .elf_aid = {0xF0, 'P', 'G', 'L', 'F', 0x06},
    .elf_len = 6,
    .mod_aid = {0xF0, 'P', 'G', 'M', 'D', 0x06},
    .mod_len = 6,
    .def_aid = {0xF0, 'P', 'G', 'E', 'C', 'H', 'O', 0x01},
    .def_len = 8,
    .pstate = 0,
    .vstate = 0,
    .process = echo_process,
};

const struct gp_class pgi_gp_class_test = {
    .name = "test",
    .id = 4,
    .elf_aid = {0xF0, 'P', 'G', 'L', 'F', 0x04},
    .elf_len = 6,
    .mod_aid = {0xF0, 'P', 'G', 'M', 'D', 0x04},
    .mod_len = 6,
    .def_aid = {0xF0, 'p', 'a', 'y', 'g', 'u', 'a', 'r', 'd', 0x01},
    .def_len = 10,
    .pstate = 0,
    .vstate = 0,
    .process = test_process,
};
