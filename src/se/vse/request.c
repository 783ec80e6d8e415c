/*
 * The SEM's request (seed 6): the virtualization configuration of one VSE,
 * decoded from JSON and validated field by field before anything acts on it,
 * and the socket API's message decoder. Everything here parses outside bytes:
 * fuzz/vse_request.c drives pg_vse_api_decode().
 */
#include "payguard/card_gp.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/mem.h"
#include "payguard/vse.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* The catalogue is the card runtime's (src/se/card/catalogue.c). */
int
pg_vse_applet_known(const char *name)
{
	return pg_gp_catalogue_known(name);
}

const char *
pg_vse_catalogue(void)
{
	return pg_gp_catalogue_names();
}

int
pg_vse_name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > PG_VSE_NAME_MAX)
		return 0;
	if (!islower((unsigned char)name[0]) && !isdigit((unsigned char)name[0]))
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (!(c < 0x80 && (islower(c) || isdigit(c) || c == '-' || c == '_')))
			return 0;
	}
	return 1;
}

int
pg_vse_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0, mul = 1;
	size_t i = 0;

	if (!s || !isdigit((unsigned char)s[0]))
		return pg_error(PG_EFORMAT, "vse", "size '%.32s' is not a number", s ? s : "");
	for (; isdigit((unsigned char)s[i]); i++) {
		if (v > (UINT64_MAX - 9) / 10 || i > 15)
			return pg_error(PG_ERANGE, "vse", "size '%.32s' too large", s);
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (s[i] == 'K' || s[i] == 'k')
		mul = 1024u, i++;
	else if (s[i] == 'M' || s[i] == 'm')
		mul = 1024u * 1024u, i++;
	else if (s[i] == 'G' || s[i] == 'g')
		mul = 1024u * 1024u * 1024u, i++;
	if (s[i] == 'i' && mul > 1)
		i++;
	if (s[i] == 'B' && mul > 1)
		i++;
	if (s[i] != '\0')
		return pg_error(PG_EFORMAT, "vse", "size '%.32s': unknown unit", s);
	*out = v * mul;
	return 0;
}

static int
size_field(const json_t *j, const char *key, uint64_t lo, uint64_t hi, uint64_t *out)
{
	const json_t *v = json_object_get(j, key);
	int rc;

	if (!v)
		return pg_error(PG_EINVAL, "vse", "request: '%s' is missing", key);
	if (json_is_integer(v)) {
		if (json_integer_value(v) < 0)
			return pg_error(PG_ERANGE, "vse", "request: '%s' is negative", key);
		*out = (uint64_t)json_integer_value(v);
	} else if (json_is_string(v)) {
		rc = pg_vse_parse_size(json_string_value(v), out);
		if (rc < 0)
			return pg_error(rc, "vse", "request: '%s': %s", key, pg_last_error());
	} else {
		return pg_error(PG_EFORMAT, "vse", "request: '%s' must be a number or \"64K\"",
				key);
	}
	if (*out < lo || *out > hi)
		return pg_error(PG_ERANGE, "vse", "request: '%s' %llu outside %llu..%llu", key,
				(unsigned long long)*out, (unsigned long long)lo,
				(unsigned long long)hi);
	return 0;
}

/* An optional integer lo..PG_VSE_IU_MAX (def when absent). */
static int
count_field(const json_t *j, const char *key, uint32_t lo, uint32_t def, uint32_t *out)
{
	const json_t *v = json_object_get(j, key);

	if (!v) {
		*out = def;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < lo ||
	    json_integer_value(v) > PG_VSE_IU_MAX)
		return pg_error(PG_EINVAL, "vse", "request: '%s' must be an integer %u..%u", key,
				(unsigned)lo, (unsigned)PG_VSE_IU_MAX);
	*out = (uint32_t)json_integer_value(v);
	return 0;
}

/* Hex field into out; len must be one of the AES key lengths unless exact is set. */
static int
hex_field(const json_t *j, const char *key, uint8_t *out, size_t cap, size_t *len, int aes)
{
	const json_t *v = json_object_get(j, key);
	const char *s;
	int n;

	if (!v || !json_is_string(v))
		return pg_error(PG_EINVAL, "vse", "request: keys.%s must be a hex string", key);
	s = json_string_value(v);
	if (strlen(s) > 2 * cap + 16)
		return pg_error(PG_ETOOBIG, "vse", "request: keys.%s too long", key);
	n = pg_hex_decode(out, cap, s);
	if (n < 0)
		return pg_error(PG_EFORMAT, "vse", "request: %s is not hex of at most %zu bytes",
				key, cap);
	if (aes && n != 16 && n != 24 && n != 32)
		return pg_error(PG_EINVAL, "vse", "request: %s must be 16, 24 or 32 bytes (AES)",
				key);
	*len = (size_t)n;
	return 0;
}

static int
keys_field(struct pg_vse_request *r, const json_t *j)
{
	const json_t *k = json_object_get(j, "keys"), *kvn;
	size_t l1, l2, l3;
	int rc;

	if (!k || !json_is_object(k))
		return pg_error(
		    PG_EINVAL, "vse",
		    "request: 'keys' must be {\"master\":HEX} or {\"enc\",\"mac\",\"dek\"}");
	kvn = json_object_get(k, "kvn");
	r->keys.kvn = 0x30;
	if (kvn) {
		if (!json_is_integer(kvn) || json_integer_value(kvn) < 1 ||
		    json_integer_value(kvn) > 0x7F)
			return pg_error(PG_ERANGE, "vse", "request: keys.kvn must be 1..127");
		r->keys.kvn = (uint8_t)json_integer_value(kvn);
	}
	if (json_object_get(k, "master")) {
		if (json_object_get(k, "enc") || json_object_get(k, "mac") ||
		    json_object_get(k, "dek"))
			return pg_error(PG_EINVAL, "vse",
					"request: keys: give either master or enc/mac/dek");
		r->diversified = 1;
		return hex_field(k, "master", r->master, sizeof(r->master), &r->master_len, 1);
	}
	if ((rc = hex_field(k, "enc", r->keys.enc, 32, &l1, 1)) < 0 ||
	    (rc = hex_field(k, "mac", r->keys.mac, 32, &l2, 1)) < 0 ||
	    (rc = hex_field(k, "dek", r->keys.dek, 32, &l3, 1)) < 0)
		return rc;
	if (l1 != l2 || l2 != l3)
		return pg_error(PG_EINVAL, "vse", "request: enc, mac and dek must have one length");
	r->keys.len = l1;
	return 0;
}

static int
copy_str(const json_t *v, const char *what, char *out, size_t cap)
{
	const char *s;

	if (!v || !json_is_string(v))
		return pg_error(PG_EINVAL, "vse", "request: '%s' must be a string", what);
	s = json_string_value(v);
	if (strlen(s) >= cap || strlen(s) != json_string_length(v))
		return pg_error(PG_ETOOBIG, "vse", "request: '%s' longer than %zu bytes", what,
				cap - 1);
	memcpy(out, s, strlen(s) + 1);
	return 0;
}

/* "tcp:127.0.0.1:PORT" (loopback only: a VSE is a local peer, never a network service). */
static int
tcp_loopback_ok(const char *a)
{
	const char *p = a + strlen("tcp:127.0.0.1:");
	long port = 0;

	if (strncmp(a, "tcp:127.0.0.1:", 14) != 0 || !*p || strlen(p) > 5)
		return 0;
	for (; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return 0;
		port = port * 10 + (*p - '0');
	}
	return port >= 1024 && port <= 65535;
}

static int
expose_field(struct pg_vse_request *r, const json_t *j)
{
	const json_t *e = json_object_get(j, "expose"), *v;
	struct pg_vse_expose *x = &r->expose;
	static const char *const links[] = {"t0", "t1", "swp", "spi", "i2c", "ccid", "vpcd"};
	int ok = 0, rc;

	if (!e)
		return pg_error(PG_EINVAL, "vse", "request: 'expose' is missing");
	if (!json_is_object(e))
		return pg_error(PG_EINVAL, "vse", "request: 'expose' must be an object");
	if ((rc = copy_str(json_object_get(e, "link"), "expose.link", x->link, sizeof(x->link))) <
	    0)
		return rc;
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++)
		ok |= strcmp(links[i], x->link) == 0;
	if (!ok)
		return pg_error(
		    PG_EINVAL, "vse",
		    "request: expose.link '%s' is not one of t0 t1 swp spi i2c ccid vpcd", x->link);
	if (strcmp(x->link, "vpcd") == 0) {
		if (json_object_get(e, "listen"))
			return pg_error(PG_EINVAL, "vse",
					"request: vpcd takes 'slot', not 'listen'");
		v = json_object_get(e, "slot");
		if (!v || !json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) >= PG_VSE_VPCD_SLOTS)
			return pg_error(PG_ERANGE, "vse", "request: expose.slot must be 0..%d",
					PG_VSE_VPCD_SLOTS - 1);
		x->vpcd_slot = (int)json_integer_value(v);
		strcpy(x->vpcd_host, "127.0.0.1");
		return 0;
	}
	if (json_object_get(e, "slot"))
		return pg_error(PG_EINVAL, "vse", "request: 'slot' is for vpcd only");
	v = json_object_get(e, "listen");
	if (v) {
		if ((rc = copy_str(v, "expose.listen", x->listen, sizeof(x->listen))) < 0)
			return rc;
		if (x->listen[0] && !tcp_loopback_ok(x->listen))
			return pg_error(
			    PG_EINVAL, "vse",
			    "request: expose.listen must be \"tcp:127.0.0.1:PORT\" "
			    "(1024..65535) or empty for a UNIX socket in the VSE's directory");
	}
	return 0;
}

static int
request_fields(struct pg_vse_request *r, const json_t *j)
{
	const json_t *v;
	const char *key;
	int rc;

	if (!json_is_object(j))
		return pg_error(PG_EFORMAT, "vse", "request must be a JSON object");
	json_object_foreach((json_t *)j, key, v)
	{
		static const char *const known[] = {"name", "arena",  "pmem",	 "applets", "keys",
						    "cin",  "expose", "iu_rate", "iu_burst"};
		int ok = 0;

		for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			ok |= strcmp(known[i], key) == 0;
		if (!ok)
			return pg_error(PG_EINVAL, "vse", "request: unknown field '%.40s'", key);
	}
	if ((rc = copy_str(json_object_get(j, "name"), "name", r->name, sizeof(r->name))) < 0)
		return rc;
	if (!pg_vse_name_ok(r->name))
		return pg_error(PG_EINVAL, "vse",
				"request: name '%s' must be 1..%d of [a-z0-9_-], starting with a "
				"letter or digit",
				r->name, PG_VSE_NAME_MAX);
	if ((rc = size_field(j, "arena", PG_VSE_ARENA_MIN, PG_VSE_ARENA_MAX, &r->arena_size)) < 0 ||
	    (rc = size_field(j, "pmem", PG_VSE_PMEM_MIN, PG_VSE_PMEM_MAX, &r->pmem_size)) < 0)
		return rc;
	v = json_object_get(j, "applets");
	if (v) {
		size_t i;
		const json_t *a;

		if (!json_is_array(v) || json_array_size(v) > PG_VSE_MAX_APPLETS)
			return pg_error(PG_EINVAL, "vse",
					"request: 'applets' must be an array of at most %d names",
					PG_VSE_MAX_APPLETS);
		json_array_foreach(v, i, a)
		{
			char *dst = r->applets[r->n_applets];

			if ((rc = copy_str(a, "applets[]", dst, PG_VSE_APPLET_NAME_MAX + 1)) < 0)
				return rc;
			if (!pg_vse_applet_known(dst))
				return pg_error(PG_EINVAL, "vse",
						"request: applet '%s' is not in the catalogue (%s)",
						dst, pg_vse_catalogue());
			for (int k = 0; k < r->n_applets; k++)
				if (strcmp(r->applets[k], dst) == 0)
					return pg_error(PG_EINVAL, "vse",
							"request: applet '%s' listed twice", dst);
			r->n_applets++;
		}
	}
	if ((rc = keys_field(r, j)) < 0)
		return rc;
	v = json_object_get(j, "cin");
	if (v) {
		size_t n;

		if ((rc = hex_field(j, "cin", r->cin, sizeof(r->cin), &n, 0)) < 0)
			return rc;
		if (n != sizeof(r->cin))
			return pg_error(PG_EINVAL, "vse", "request: cin must be 8 bytes");
		r->has_cin = 1;
	}
	if ((rc = count_field(j, "iu_rate", 0, PG_VSE_IU_RATE_DEFAULT, &r->iu_rate)) < 0 ||
	    (rc = count_field(j, "iu_burst", 1, PG_VSE_IU_BURST_DEFAULT, &r->iu_burst)) < 0)
		return rc;
	return expose_field(r, j);
}

int
pg_vse_request_from_json(struct pg_vse_request *r, const json_t *j)
{
	int rc;

	memset(r, 0, sizeof(*r));
	rc = request_fields(r, j);
	if (rc < 0)
		pg_memzero(r, sizeof(*r));
	return rc;
}

int
pg_vse_request_resolve_keys(struct pg_vse_request *r)
{
	uint8_t kvn = r->keys.kvn;

	if (!r->diversified)
		return 0;
	if (!r->has_cin)
		return pg_error(PG_ESTATE, "vse", "diversified keys need the card's CIN first");
	return pg_scp03_diversify(r->master, r->master_len, r->cin, sizeof(r->cin), kvn, &r->keys);
}

static json_t *
hexstr(const uint8_t *p, size_t n)
{
	char buf[2 * 32 + 1];

	if (n > 32)
		return NULL;
	pg_hex_encode(buf, p, n);
	return json_string(buf);
}

json_t *
pg_vse_request_to_json(const struct pg_vse_request *r, int secrets)
{
	json_t *j = json_object(), *apps = json_array(), *keys = json_object(), *ex = json_object();

	if (!j || !apps || !keys || !ex)
		goto fail;
	json_object_set_new(j, "name", json_string(r->name));
	json_object_set_new(j, "arena", json_integer((json_int_t)r->arena_size));
	json_object_set_new(j, "pmem", json_integer((json_int_t)r->pmem_size));
	json_object_set_new(j, "iu_rate", json_integer(r->iu_rate));
	json_object_set_new(j, "iu_burst", json_integer(r->iu_burst));
	for (int i = 0; i < r->n_applets; i++)
		json_array_append_new(apps, json_string(r->applets[i]));
	json_object_set_new(j, "applets", apps);
	apps = NULL;
	json_object_set_new(keys, "kvn", json_integer(r->keys.kvn));
	if (secrets && r->diversified) {
		json_object_set_new(keys, "master", hexstr(r->master, r->master_len));
	} else if (secrets) {
		json_object_set_new(keys, "enc", hexstr(r->keys.enc, r->keys.len));
		json_object_set_new(keys, "mac", hexstr(r->keys.mac, r->keys.len));
		json_object_set_new(keys, "dek", hexstr(r->keys.dek, r->keys.len));
	} else {
		/* Display: the mode and, once resolved, the key check values (GP B.6). */
		json_object_set_new(keys, "mode",
				    json_string(r->diversified ? "diversified" : "explicit"));
		if (r->keys.len) {
			uint8_t kcv[3];
			const uint8_t *k[3] = {r->keys.enc, r->keys.mac, r->keys.dek};
			const char *nm[3] = {"kcv_enc", "kcv_mac", "kcv_dek"};

			for (int i = 0; i < 3; i++)
				if (pg_scp03_kcv(k[i], r->keys.len, kcv) == 0)
					json_object_set_new(keys, nm[i], hexstr(kcv, 3));
		}
	}
	json_object_set_new(j, "keys", keys);
	keys = NULL;
	if (r->has_cin)
		json_object_set_new(j, "cin", hexstr(r->cin, sizeof(r->cin)));
	json_object_set_new(ex, "link", json_string(r->expose.link));
	if (strcmp(r->expose.link, "vpcd") == 0)
		json_object_set_new(ex, "slot", json_integer(r->expose.vpcd_slot));
	else if (r->expose.listen[0])
		json_object_set_new(ex, "listen", json_string(r->expose.listen));
	json_object_set_new(j, "expose", ex);
	return j;
fail:
	json_decref(j);
	json_decref(apps);
	json_decref(keys);
	json_decref(ex);
	return NULL;
}

int
pg_vse_api_decode(struct pg_vse_api_req *out, const uint8_t *p, size_t n)
{
	static const struct {
		const char *name;
		int op;
	} ops[] = {{"create", PG_VSE_OP_CREATE}, {"list", PG_VSE_OP_LIST},
		   {"show", PG_VSE_OP_SHOW},	 {"start", PG_VSE_OP_START},
		   {"stop", PG_VSE_OP_STOP},	 {"destroy", PG_VSE_OP_DESTROY}};
	json_error_t err;
	json_t *j = NULL;
	const char *op;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (n > PG_VSE_API_MAX)
		return pg_error(PG_ETOOBIG, "vse", "api: message of %zu bytes (max %u)", n,
				PG_VSE_API_MAX);
	/* Depth is bounded by jansson's own limit; duplicates would let a field hide. */
	j = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &err);
	if (!j)
		return pg_error(PG_EFORMAT, "vse", "api: bad JSON at %d: %s", err.position,
				err.text);
	if (!json_is_object(j) || !json_is_string(json_object_get(j, "op"))) {
		rc = pg_error(PG_EFORMAT, "vse", "api: message must be {\"op\": ...}");
		goto out;
	}
	op = json_string_value(json_object_get(j, "op"));
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (strcmp(ops[i].name, op) == 0)
			out->op = ops[i].op;
	if (!out->op) {
		rc = pg_error(PG_EINVAL, "vse", "api: unknown op '%.32s'", op);
		goto out;
	}
	if (out->op == PG_VSE_OP_CREATE) {
		rc = pg_vse_request_from_json(&out->vse, json_object_get(j, "vse"));
	} else if (out->op != PG_VSE_OP_LIST) {
		rc = copy_str(json_object_get(j, "name"), "name", out->name, sizeof(out->name));
		if (rc == 0 && !pg_vse_name_ok(out->name))
			rc = pg_error(PG_EINVAL, "vse", "api: bad VSE name");
	}
out:
	json_decref(j);
	if (rc < 0)
		pg_memzero(out, sizeof(*out));
	return rc;
}
