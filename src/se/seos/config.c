/*
 * The connection configuration the SE OS caches per SE (issue 7, seed
 * "Establishment of communication connection ..."): link parameters, the
 * application list and the ARA-M rules, serialised as BER-TLV inside a
 * private template E0 so a cached record is self-describing; and the key
 * store (per-SE SCP03 keys or a master key diversified by SE identity).
 */
#include "payguard/buf.h"
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/mem.h"
#include "payguard/seos.h"
#include "payguard/tlv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUBSYS "seos"

void
pg_seos_config_release(struct pg_seos_config *c)
{
	if (!c)
		return;
	free(c->ara);
	memset(c, 0, sizeof(*c));
}

int
pg_seos_config_encode(const struct pg_seos_config *c, uint8_t **out, size_t *len)
{
	struct pg_buf b = PG_BUF_INIT(PG_ARA_MAX_DATA + 4096);
	uint8_t v[4] = {(uint8_t)(c->version >> 24), (uint8_t)(c->version >> 16),
			(uint8_t)(c->version >> 8), (uint8_t)c->version};
	uint8_t u16[4] = {(uint8_t)(c->ifsc >> 8), (uint8_t)c->ifsc, (uint8_t)(c->ifsd >> 8),
			  (uint8_t)c->ifsd};
	uint8_t misc[3] = {c->window, c->ext_len, c->channels};
	size_t top, app;
	int rc;

	*out = NULL;
	if ((rc = pg_tlv_open(&b, 0xE0, &top)) < 0 || (rc = pg_tlv_append(&b, 0x80, v, 4)) < 0 ||
	    (rc = pg_tlv_append(&b, 0x81, c->link, strnlen(c->link, sizeof(c->link)))) < 0 ||
	    (rc = pg_tlv_append(&b, 0x82, u16, 4)) < 0 ||
	    (rc = pg_tlv_append(&b, 0x83, misc, 3)) < 0 ||
	    (rc = pg_tlv_append(&b, 0x84, c->iin, c->iin_len)) < 0 ||
	    (rc = pg_tlv_append(&b, 0x85, c->cin, c->cin_len)) < 0)
		goto out;
	for (size_t i = 0; i < c->napps; i++) {
		const struct pg_seos_app *a = &c->app[i];

		if ((rc = pg_tlv_open(&b, 0xA1, &app)) < 0 ||
		    (rc = pg_tlv_append(&b, 0x4F, a->aid, a->aid_len)) < 0 ||
		    (rc = pg_tlv_append(&b, 0x9F70, &a->life_cycle, 1)) < 0 ||
		    (rc = pg_tlv_append(&b, 0xC5, a->priv, 3)) < 0 ||
		    (rc = pg_tlv_close(&b, app)) < 0)
			goto out;
	}
	if (c->ara && (rc = pg_tlv_append(&b, 0x86, c->ara, c->ara_len)) < 0)
		goto out;
	if ((rc = pg_tlv_close(&b, top)) < 0)
		goto out;
	*out = b.data;
	*len = b.len;
	return 0;
out:
	pg_buf_release(&b);
	return rc;
}

static int
decode_app(struct pg_seos_app *a, const uint8_t *p, size_t n)
{
	int have = 0, seen = 0;

	while (n) {
		struct pg_tlv t;
		int k = pg_tlv_next(&t, p, n);

		if (k < 0)
			return k;
		if (k == 0)
			break;
		/* Each field once: a repeated field would make the record ambiguous. */
		int bit = t.tag == 0x4F ? 1 : t.tag == 0x9F70 ? 2 : t.tag == 0xC5 ? 4 : 0;

		if (bit && (seen & bit))
			return pg_error(PG_EFORMAT, SUBSYS, "config: repeated field %X", t.tag);
		seen |= bit;
		if (t.tag == 0x4F && t.len >= 5 && t.len <= sizeof(a->aid)) {
			memcpy(a->aid, t.val, t.len);
			a->aid_len = t.len;
			have = 1;
		} else if (t.tag == 0x9F70 && t.len == 1) {
			a->life_cycle = t.val[0];
		} else if (t.tag == 0xC5 && t.len == 3) {
			memcpy(a->priv, t.val, 3);
		} else {
			return pg_error(PG_EFORMAT, SUBSYS, "config: bad application entry tag %X",
					t.tag);
		}
		p += k;
		n -= (size_t)k;
	}
	return have ? 0 : pg_error(PG_EFORMAT, SUBSYS, "config: application without AID");
}

#define CFG_BAD 1 /* decode_field: unexpected or malformed field */

/* One field of the E0 template into c: 0, CFG_BAD, or a PG_E code. */
static int
decode_field(struct pg_seos_config *c, const struct pg_tlv *t)
{
	switch (t->tag) {
	case 0x80:
		if (t->len != 4)
			return CFG_BAD;
		c->version = pg_be32(t->val);
		return 0;
	case 0x81:
		if (t->len >= sizeof(c->link))
			return CFG_BAD;
		memcpy(c->link, t->val, t->len);
		return 0;
	case 0x82:
		if (t->len != 4)
			return CFG_BAD;
		c->ifsc = pg_be16(t->val);
		c->ifsd = pg_be16(t->val + 2);
		return 0;
	case 0x83:
		if (t->len != 3)
			return CFG_BAD;
		c->window = t->val[0];
		c->ext_len = t->val[1];
		c->channels = t->val[2];
		return 0;
	case 0x84:
	case 0x85:
		if (t->len > 16)
			return CFG_BAD;
		memcpy(t->tag == 0x84 ? c->iin : c->cin, t->val, t->len);
		*(t->tag == 0x84 ? &c->iin_len : &c->cin_len) = t->len;
		return 0;
	case 0xA1: {
		int rc;

		if (c->napps == PG_SEOS_MAX_APPS)
			return CFG_BAD;
		if ((rc = decode_app(&c->app[c->napps], t->val, t->len)) < 0)
			return rc;
		c->napps++;
		return 0;
	}
	case 0x86:
		if (c->ara || t->len > PG_ARA_MAX_DATA + 8)
			return CFG_BAD;
		if (!(c->ara = malloc(t->len ? t->len : 1)))
			return PG_ENOMEM;
		memcpy(c->ara, t->val, t->len);
		c->ara_len = t->len;
		return 0;
	default:
		return CFG_BAD;
	}
}

int
pg_seos_config_decode(struct pg_seos_config *c, const uint8_t *p, size_t n)
{
	struct pg_tlv top;
	unsigned seen = 0;
	int k, rc = 0;

	memset(c, 0, sizeof(*c));
	k = pg_tlv_next(&top, p, n);
	if (k <= 0 || top.tag != 0xE0 || (size_t)k != n)
		return k < 0 ? k : pg_error(PG_EFORMAT, SUBSYS, "config: not one E0 template");
	p = top.val;
	n = top.len;
	while (n && rc == 0) {
		struct pg_tlv t;

		k = pg_tlv_next(&t, p, n);
		if (k <= 0) {
			rc = k;
			break;
		}
		/* 80..86 at most once each */
		if (t.tag >= 0x80 && t.tag <= 0x86 && (seen & (1u << (t.tag - 0x80))))
			rc = CFG_BAD;
		else if (t.tag >= 0x80 && t.tag <= 0x86)
			seen |= 1u << (t.tag - 0x80);
		if (rc == 0)
			rc = decode_field(c, &t);
		p += k;
		n -= (size_t)k;
	}
	if (rc == 0)
		return 0;
	if (rc == CFG_BAD)
		rc = pg_error(PG_EFORMAT, SUBSYS, "config: unexpected or malformed field");
	pg_seos_config_release(c);
	return rc;
}

/* ---------------- key store ---------------- */

struct ks_entry {
	uint8_t id[PG_SEOS_ID_LEN];
	struct pg_scp03_keys keys;
};

struct pg_seos_keystore {
	struct ks_entry *e;
	size_t n;
	int has_master;
	uint8_t master[32];
	size_t master_len;
	uint8_t master_kvn;
	/* "master-cin": for SEs whose CIN starts with the prefix, diversified by CIN */
	int has_cmaster;
	uint8_t cmaster[32];
	size_t cmaster_len;
	uint8_t cmaster_kvn;
	uint8_t cprefix[16];
	size_t cprefix_len;
};

static int
hex_key(const char *h, uint8_t *out, size_t *len)
{
	int n = pg_hex_decode(out, 32, h);

	if (n != 16 && n != 24 && n != 32)
		return pg_error(PG_EFORMAT, SUBSYS,
				"keystore: key must be 16, 24 or 32 bytes of hex");
	*len = (size_t)n;
	return 0;
}

/* "master KVN KEY" */
static int
ks_master(struct pg_seos_keystore *ks, char w[][80], unsigned kvn)
{
	int rc = hex_key(w[2], ks->master, &ks->master_len);

	if (rc < 0)
		return rc;
	ks->has_master = 1;
	ks->master_kvn = (uint8_t)kvn;
	return 0;
}

/* "master-cin KVN KEY CINPREFIX" */
static int
ks_master_cin(struct pg_seos_keystore *ks, char w[][80], unsigned kvn)
{
	int pl = pg_hex_decode(ks->cprefix, sizeof(ks->cprefix), w[3]);
	int rc = hex_key(w[2], ks->cmaster, &ks->cmaster_len);

	if (rc < 0)
		return rc;
	if (pl < 0)
		return pg_error(PG_EFORMAT, SUBSYS,
				"keystore: CIN prefix must be 0..16 bytes of hex");
	ks->cprefix_len = (size_t)pl;
	ks->has_cmaster = 1;
	ks->cmaster_kvn = (uint8_t)kvn;
	return 0;
}

/* "se ID KVN ENC MAC DEK" */
static int
ks_se(struct pg_seos_keystore *ks, char w[][80], unsigned kvn)
{
	struct ks_entry *ne = realloc(ks->e, (ks->n + 1) * sizeof(*ne)), *e;
	size_t l1 = 0, l2 = 0, l3 = 0;
	int rc;

	if (!ne)
		return PG_ENOMEM;
	ks->e = ne;
	e = &ks->e[ks->n];
	memset(e, 0, sizeof(*e));
	if (pg_hex_decode(e->id, sizeof(e->id), w[1]) != PG_SEOS_ID_LEN)
		return pg_error(PG_EFORMAT, SUBSYS, "keystore: SE id must be %d bytes",
				PG_SEOS_ID_LEN);
	if ((rc = hex_key(w[3], e->keys.enc, &l1)) < 0 ||
	    (rc = hex_key(w[4], e->keys.mac, &l2)) < 0 ||
	    (rc = hex_key(w[5], e->keys.dek, &l3)) < 0)
		return rc;
	if (l1 != l2 || l2 != l3)
		return pg_error(PG_EFORMAT, SUBSYS, "keystore: keys of one SE differ in length");
	e->keys.len = l1;
	e->keys.kvn = (uint8_t)kvn;
	ks->n++;
	return 0;
}

/* The line kinds: first word, number of words, where the KVN is, the parser. */
static const struct ks_kind {
	const char *word;
	int nw, kvn_at;
	int (*parse)(struct pg_seos_keystore *ks, char w[][80], unsigned kvn);
} ks_kinds[] = {
    {"master", 3, 1, ks_master},
    {"master-cin", 4, 1, ks_master_cin},
    {"se", 6, 2, ks_se},
};

/* One line (not blank, not a comment): 0 or a PG_E code with pg_last_error set. */
static int
ks_line(struct pg_seos_keystore *ks, const char *line)
{
	char w[6][80];
	unsigned kvn;
	int nw, rc = pg_error(PG_EFORMAT, SUBSYS, "keystore: unrecognised line");

	nw = sscanf(line, "%79s %79s %79s %79s %79s %79s", w[0], w[1], w[2], w[3], w[4], w[5]);
	for (size_t i = 0; i < sizeof(ks_kinds) / sizeof(ks_kinds[0]); i++) {
		const struct ks_kind *k = &ks_kinds[i];

		if (nw == k->nw && strcmp(w[0], k->word) == 0 &&
		    sscanf(w[k->kvn_at], "%x", &kvn) == 1 && kvn <= 0xFF) {
			rc = k->parse(ks, w, kvn);
			break;
		}
	}
	pg_memzero(w, sizeof(w)); /* the words held keys */
	return rc;
}

int
pg_seos_keystore_parse(struct pg_seos_keystore **out, const char *text)
{
	struct pg_seos_keystore *ks;
	char *copy, *line, *save = NULL;
	int rc = 0, lineno = 0;

	*out = NULL;
	ks = calloc(1, sizeof(*ks));
	copy = strdup(text);
	if (!ks || !copy)
		rc = PG_ENOMEM;
	for (line = rc ? NULL : strtok_r(copy, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		lineno++;
		while (*line == ' ' || *line == '\t')
			line++;
		if (*line == '#' || *line == '\0' || *line == '\r')
			continue;
		if ((rc = ks_line(ks, line)) < 0) {
			char why[512];

			snprintf(why, sizeof(why), "%s", pg_last_error());
			if (rc != PG_ENOMEM)
				pg_error(rc, SUBSYS, "keystore line %d: %s", lineno, why);
			break;
		}
	}
	if (rc == 0) {
		*out = ks;
		ks = NULL;
	}
	if (copy) {
		pg_memzero(copy, strlen(copy));
		free(copy);
	}
	pg_seos_keystore_free(ks);
	return rc;
}

int
pg_seos_keystore_load(struct pg_seos_keystore **out, const char *path)
{
	uint8_t *data = NULL;
	size_t len = 0;
	char *text;
	int rc;

	*out = NULL;
	/* SCP03 keys: a file group or others can read is refused, as ssh does */
	rc = pg_fs_check_private(path, 0);
	if (rc < 0)
		return rc;
	rc = pg_read_file(path, 1 << 20, &data, &len);
	if (rc < 0)
		return pg_error(rc, SUBSYS, "cannot read key store '%s'", path);
	text = malloc(len + 1);
	if (!text) {
		rc = PG_ENOMEM;
		goto out;
	}
	memcpy(text, data, len);
	text[len] = '\0';
	rc = pg_seos_keystore_parse(out, text);
	pg_memzero(text, len);
	free(text);
out:
	pg_memzero(data, len);
	free(data);
	return rc;
}

void
pg_seos_keystore_free(struct pg_seos_keystore *ks)
{
	if (!ks)
		return;
	if (ks->e)
		pg_memzero(ks->e, ks->n * sizeof(*ks->e));
	free(ks->e);
	pg_memzero(ks, sizeof(*ks));
	free(ks);
}

int
pg_seos_keystore_wants_cin(const struct pg_seos_keystore *ks)
{
	return ks && ks->has_cmaster;
}

int
pg_seos_keystore_find(const struct pg_seos_keystore *ks, const uint8_t id[PG_SEOS_ID_LEN],
		      struct pg_scp03_keys *out)
{
	return pg_seos_keystore_find_cin(ks, id, NULL, 0, out);
}

int
pg_seos_keystore_find_cin(const struct pg_seos_keystore *ks, const uint8_t id[PG_SEOS_ID_LEN],
			  const uint8_t *cin, size_t cin_len, struct pg_scp03_keys *out)
{
	if (!ks)
		return pg_error(PG_ENOENT, SUBSYS, "no key store");
	for (size_t i = 0; i < ks->n; i++)
		if (memcmp(ks->e[i].id, id, PG_SEOS_ID_LEN) == 0) {
			*out = ks->e[i].keys;
			return 0;
		}
	if (ks->has_cmaster && cin && cin_len >= ks->cprefix_len &&
	    memcmp(cin, ks->cprefix, ks->cprefix_len) == 0)
		return pg_scp03_diversify(ks->cmaster, ks->cmaster_len, cin, cin_len,
					  ks->cmaster_kvn, out);
	if (ks->has_master)
		return pg_scp03_diversify(ks->master, ks->master_len, id, PG_SEOS_ID_LEN,
					  ks->master_kvn, out);
	return pg_error(PG_ENOENT, SUBSYS, "no keys for this SE in the key store");
}
