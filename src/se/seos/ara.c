/*
 * GlobalPlatform Secure Element Access Control v1.1 (GPD_SPE_013): the
 * ARA-M's Response-ALL-REF-AR-DO (GET DATA [All], tag FF40), its rules
 * (REF-AR-DO E2 = REF-DO E1 + AR-DO E3) and the access decision for a client
 * identity hash x SE application AID x APDU header (SEAC 3.4 precedence).
 */
#include "payguard/seos.h"

#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/tlv.h"

#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#define SUBSYS "ara"

const uint8_t pg_ara_m_aid[9] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x41, 0x43, 0x4C, 0x00};

/* Reads the next object of a constructed value strictly (no padding allowed). */
static int
next_do(struct pg_tlv *t, const uint8_t *p, size_t n, const char *where)
{
	int r;

	if (n == 0)
		return 0;
	if (p[0] == 0x00 || p[0] == 0xFF)
		return pg_error(PG_EFORMAT, SUBSYS, "%s: padding byte %02X where a DO is expected",
				where, p[0]);
	r = pg_tlv_next(t, p, n);
	if (r == 0)
		return pg_error(PG_EFORMAT, SUBSYS, "%s: empty object", where);
	return r;
}

static int
parse_ref_do(struct pg_ara_rule *r, const uint8_t *p, size_t n)
{
	int have_aid = 0, have_hash = 0;

	while (n) {
		struct pg_tlv t;
		int k = next_do(&t, p, n, "REF-DO");

		if (k < 0)
			return k;
		switch (t.tag) {
		case 0x4F: /* AID-REF-DO */
		case 0xC0: /* AID-REF-DO for the implicitly selected application */
			if (have_aid++)
				return pg_error(PG_EFORMAT, SUBSYS, "REF-DO: two AID-REF-DOs");
			if (t.tag == 0xC0) {
				if (t.len != 0)
					return pg_error(PG_EFORMAT, SUBSYS,
							"AID-REF-DO C0 must be empty (len %zu)",
							t.len);
				r->aid_kind = PG_ARA_AID_DEFAULT;
			} else if (t.len == 0) {
				r->aid_kind = PG_ARA_AID_ALL;
			} else if (t.len < 5 || t.len > 16) {
				return pg_error(PG_EFORMAT, SUBSYS,
						"AID-REF-DO: AID of %zu bytes (5..16)", t.len);
			} else {
				r->aid_kind = PG_ARA_AID_SPECIFIC;
				memcpy(r->aid, t.val, t.len);
				r->aid_len = t.len;
			}
			break;
		case 0xC1: /* DeviceAppID-REF-DO */
			if (have_hash++)
				return pg_error(PG_EFORMAT, SUBSYS,
						"REF-DO: two DeviceAppID-REF-DOs");
			if (t.len != 0 && t.len != 20 && t.len != 32)
				return pg_error(PG_EFORMAT, SUBSYS,
						"DeviceAppID-REF-DO of %zu bytes (0, 20 or 32)",
						t.len);
			memcpy(r->hash, t.val, t.len);
			r->hash_len = t.len;
			break;
		default:
			/*
			 * Unknown references (e.g. a PKG-REF-DO) narrow a rule in
			 * ways this enforcer cannot check: ignoring them would widen
			 * access, so the whole rule set is refused.
			 */
			return pg_error(PG_EFORMAT, SUBSYS, "REF-DO: unsupported reference tag %X",
					t.tag);
		}
		p += k;
		n -= (size_t)k;
	}
	if (!have_aid || !have_hash)
		return pg_error(PG_EFORMAT, SUBSYS,
				"REF-DO needs an AID-REF-DO and a "
				"DeviceAppID-REF-DO");
	return 0;
}

static int
parse_ar_do(struct pg_ara_rule *r, const uint8_t *p, size_t n)
{
	int have_apdu = 0, have_nfc = 0;

	r->nfc = -1;
	while (n) {
		struct pg_tlv t;
		int k = next_do(&t, p, n, "AR-DO");

		if (k < 0)
			return k;
		if (t.tag == 0xD0) { /* APDU-AR-DO */
			if (have_apdu++)
				return pg_error(PG_EFORMAT, SUBSYS, "AR-DO: two APDU-AR-DOs");
			if (t.len == 1) {
				if (t.val[0] > 1)
					return pg_error(PG_EFORMAT, SUBSYS,
							"APDU-AR-DO: access %02X (00 or 01)",
							t.val[0]);
				r->apdu = t.val[0] ? PG_ARA_APDU_ALWAYS : PG_ARA_APDU_NEVER;
			} else if (t.len > 0 && t.len % 8 == 0) {
				if (t.len / 8 > PG_ARA_MAX_FILTERS)
					return pg_error(PG_ETOOBIG, SUBSYS,
							"APDU-AR-DO: %zu filters (max %d)",
							t.len / 8, PG_ARA_MAX_FILTERS);
				r->apdu = PG_ARA_APDU_FILTER;
				r->nfilters = t.len / 8;
				memcpy(r->filters, t.val, t.len);
			} else {
				return pg_error(PG_EFORMAT, SUBSYS,
						"APDU-AR-DO of %zu bytes (1 or a multiple of 8)",
						t.len);
			}
		} else if (t.tag == 0xD1) { /* NFC-AR-DO */
			if (have_nfc++)
				return pg_error(PG_EFORMAT, SUBSYS, "AR-DO: two NFC-AR-DOs");
			if (t.len != 1 || t.val[0] > 1)
				return pg_error(PG_EFORMAT, SUBSYS, "NFC-AR-DO must be 00 or 01");
			r->nfc = t.val[0];
		} else {
			return pg_error(PG_EFORMAT, SUBSYS, "AR-DO: unsupported tag %X", t.tag);
		}
		p += k;
		n -= (size_t)k;
	}
	if (!have_apdu && !have_nfc)
		return pg_error(PG_EFORMAT, SUBSYS, "empty AR-DO");
	return 0;
}

static int
parse_ref_ar_do(struct pg_ara_rule *r, const uint8_t *p, size_t n)
{
	struct pg_tlv a, b;
	int k1, k2;

	memset(r, 0, sizeof(*r));
	k1 = next_do(&a, p, n, "REF-AR-DO");
	if (k1 < 0)
		return k1;
	if (a.tag != 0xE1)
		return pg_error(PG_EFORMAT, SUBSYS, "REF-AR-DO: expected REF-DO E1, got %X", a.tag);
	k2 = next_do(&b, p + k1, n - (size_t)k1, "REF-AR-DO");
	if (k2 <= 0)
		return k2 < 0 ? k2 : pg_error(PG_EFORMAT, SUBSYS, "REF-AR-DO without AR-DO");
	if (b.tag != 0xE3)
		return pg_error(PG_EFORMAT, SUBSYS, "REF-AR-DO: expected AR-DO E3, got %X", b.tag);
	if ((size_t)k1 + (size_t)k2 != n)
		return pg_error(PG_EFORMAT, SUBSYS, "REF-AR-DO: trailing bytes");
	k1 = parse_ref_do(r, a.val, a.len);
	if (k1 < 0)
		return k1;
	return parse_ar_do(r, b.val, b.len);
}

int
pg_ara_parse(struct pg_ara_rules *rules, const uint8_t *p, size_t n)
{
	struct pg_ara_rule *v = NULL;
	size_t cnt = 0, len, i;
	int rc;

	memset(rules, 0, sizeof(*rules));
	if (n > PG_ARA_MAX_DATA + 8)
		return pg_error(PG_ETOOBIG, SUBSYS, "rule data of %zu bytes", n);
	/* The outer FF40 is read by hand: the generic reader skips FF as padding. */
	if (n < 3 || p[0] != 0xFF || p[1] != 0x40)
		return pg_error(PG_EFORMAT, SUBSYS, "not a Response-ALL-REF-AR-DO (tag FF40)");
	i = 2;
	len = p[i++];
	if (len == 0x80 || len > 0x83)
		return pg_error(PG_EFORMAT, SUBSYS, "FF40: bad length byte %02zX", len);
	if (len > 0x80) {
		size_t nb = len & 0x7F;

		if (i + nb > n)
			return pg_error(PG_ETRUNC, SUBSYS, "FF40: length truncated");
		len = 0;
		while (nb--)
			len = len << 8 | p[i++];
	}
	if (len != n - i)
		return pg_error(len > n - i ? PG_ETRUNC : PG_EFORMAT, SUBSYS,
				"FF40: value of %zu bytes, %zu present", len, n - i);
	p += i;
	n = len;
	while (n) {
		struct pg_tlv t;
		int k = next_do(&t, p, n, "Response-ALL-REF-AR-DO");

		if (k < 0) {
			rc = k;
			goto fail;
		}
		if (t.tag != 0xE2) {
			rc = pg_error(PG_EFORMAT, SUBSYS, "expected REF-AR-DO E2, got %X", t.tag);
			goto fail;
		}
		if (cnt == PG_ARA_MAX_RULES) {
			rc = pg_error(PG_ETOOBIG, SUBSYS, "more than %d rules", PG_ARA_MAX_RULES);
			goto fail;
		}
		if (cnt % 16 == 0) {
			struct pg_ara_rule *nv = realloc(v, (cnt + 16) * sizeof(*v));

			if (!nv) {
				rc = PG_ENOMEM;
				goto fail;
			}
			v = nv;
		}
		rc = parse_ref_ar_do(&v[cnt], t.val, t.len);
		if (rc < 0)
			goto fail;
		cnt++;
		p += k;
		n -= (size_t)k;
	}
	rules->rule = v;
	rules->n = cnt;
	return 0;
fail:
	free(v);
	return rc;
}

void
pg_ara_rules_release(struct pg_ara_rules *rules)
{
	if (!rules)
		return;
	free(rules->rule);
	rules->rule = NULL;
	rules->n = 0;
}

void
pg_ara_client_from(struct pg_ara_client *c, const void *id, size_t n)
{
	SHA1(id, n, c->sha1);
	SHA256(id, n, c->sha256);
}

static int
aid_matches(const struct pg_ara_rule *r, const uint8_t *aid, size_t aid_len)
{
	if (aid_len == 0)
		return r->aid_kind == PG_ARA_AID_DEFAULT;
	return r->aid_kind == PG_ARA_AID_SPECIFIC && r->aid_len == aid_len &&
	       memcmp(r->aid, aid, aid_len) == 0;
}

static int
hash_matches(const struct pg_ara_rule *r, const struct pg_ara_client *c)
{
	if (r->hash_len == 20)
		return memcmp(r->hash, c->sha1, 20) == 0;
	if (r->hash_len == 32)
		return memcmp(r->hash, c->sha256, 32) == 0;
	return 0;
}

/* Unites the rule into the decision: NEVER beats ALWAYS beats filters. */
static void
merge(struct pg_ara_access *a, const struct pg_ara_rule *r)
{
	if (r->nfc >= 0)
		a->nfc = a->nfc == 0 ? 0 : r->nfc;
	switch (r->apdu) {
	case PG_ARA_APDU_NONE:
		break;
	case PG_ARA_APDU_NEVER:
		a->apdu = PG_ARA_APDU_NEVER;
		break;
	case PG_ARA_APDU_ALWAYS:
		if (a->apdu != PG_ARA_APDU_NEVER)
			a->apdu = PG_ARA_APDU_ALWAYS;
		break;
	case PG_ARA_APDU_FILTER:
		if (a->apdu == PG_ARA_APDU_NEVER || a->apdu == PG_ARA_APDU_ALWAYS)
			break;
		a->apdu = PG_ARA_APDU_FILTER;
		for (size_t i = 0; i < r->nfilters && a->nfilters < PG_ARA_MAX_FILTERS; i++)
			memcpy(a->filters[a->nfilters++], r->filters[i], 8);
		break;
	}
}

int
pg_ara_decide(const struct pg_ara_rules *r, const uint8_t *aid, size_t aid_len,
	      const struct pg_ara_client *c, struct pg_ara_access *out)
{
	int aid_has_rules = 0;

	memset(out, 0, sizeof(*out));
	out->nfc = -1;
	/* Levels 1-2: rules naming this application (or the implicit one). */
	for (int level = 1; level <= 4 && out->level == 0; level++) {
		for (size_t i = 0; i < r->n; i++) {
			const struct pg_ara_rule *q = &r->rule[i];
			int am = level <= 2 ? aid_matches(q, aid, aid_len)
					    : q->aid_kind == PG_ARA_AID_ALL;
			int hm = (level % 2 == 1) ? hash_matches(q, c) : q->hash_len == 0;

			if (level <= 2 && am)
				aid_has_rules = 1;
			if (am && hm) {
				merge(out, q);
				out->level = level;
			}
		}
		/*
		 * SEAC 3.4: when the application has rules but none for this
		 * client, the generic "all applications" rules do not apply.
		 */
		if (level == 2 && out->level == 0 && aid_has_rules)
			break;
	}
	if (out->level == 0)
		return pg_error(PG_EPERM, SUBSYS,
				"no access rule grants this client the application");
	if (out->apdu == PG_ARA_APDU_NONE || out->apdu == PG_ARA_APDU_NEVER)
		return pg_error(PG_EPERM, SUBSYS,
				"access rule (level %d) denies APDU access to this client",
				out->level);
	return 0;
}

int
pg_ara_check_apdu(const struct pg_ara_access *a, const uint8_t *capdu, size_t n)
{
	uint8_t h[4];

	if (a->apdu == PG_ARA_APDU_ALWAYS)
		return 0;
	if (a->apdu != PG_ARA_APDU_FILTER)
		return pg_error(PG_EPERM, SUBSYS, "APDU access not granted");
	if (n < 4)
		return pg_error(PG_EFORMAT, SUBSYS, "C-APDU shorter than its header");
	memcpy(h, capdu, 4);
	/*
	 * The logical channel is the SE OS's choice, not the client's: compare
	 * the class byte as if on the basic channel (a further interindustry
	 * class is rewritten as the first-class byte of channel 0).
	 */
	if ((h[0] & 0xC0) == 0x40) /* further class: keep chaining and SM, as a first class */
		h[0] = (uint8_t)((h[0] & 0x10) | ((h[0] & 0x20) ? 0x08 : 0));
	else if ((h[0] & 0x80) == 0)
		h[0] = (uint8_t)(h[0] & ~0x03);
	for (size_t i = 0; i < a->nfilters; i++) {
		const uint8_t *f = a->filters[i];
		int ok = 1;

		for (int k = 0; k < 4; k++)
			if ((h[k] & f[4 + k]) != f[k])
				ok = 0;
		if (ok)
			return 0;
	}
	return pg_error(PG_EPERM, SUBSYS,
			"APDU %02X %02X %02X %02X blocked by the access rule's filters", capdu[0],
			capdu[1], capdu[2], capdu[3]);
}
