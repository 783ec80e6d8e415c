/*
 * `payguard vse ...` verbs (seed 6): `serve` runs the hypervisor, `create`,
 * `list`, `show`, `start`, `stop`, `destroy` are the secure element manager
 * talking to it over its socket API, `apdu` is a host that talks to a VSE on
 * its link, `demo` shows three VSEs on three links. Thin wrappers over pg_vse.
 */
#include "cli.h"
#include "payguard/json.h"
#include "payguard/clock.h"
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/hex.h"
#include "payguard/link.h"
#include "payguard/log.h"
#include "payguard/mem.h"
#include "payguard/scp03.h"
#include "payguard/stream.h"
#include "payguard/vse.h"

#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define API_TIMEOUT_MS 15000

/* Every option of every vse verb; each verb's table lists the ones it takes. */
struct vse_opts {
	const char *data_dir, *announce, *db, *node;
	const char *name, *arena, *pmem, *cin, *iu_rate, *iu_burst, *master, *keys, *kvn, *link,
	    *listen, *slot, *request, *sock, *level;
	struct pg_opt_strings applets;
	int json, scp;
};
#define O	   struct vse_opts
#define SOCKET_OPT PG_STR(O, sock, "socket", "PATH", "the hypervisor's socket")
#define JSON_OPT   PG_FLAG(O, json, "json", "print JSON")
static const struct pg_opt serve_opts[] = {
    PG_STR(O, data_dir, "data-dir", "DIR", "the hypervisor's folder (default: the data directory)"),
    PG_STR(O, announce, "announce", "DIR",
	   "announce each running socket-exposed VSE to an SE OS (`payguard seos serve --watch "
	   "DIR`) as DIR/NAME.se"),
    PG_STR(O, db, "db", "URL",
	   "the store of the VSE registry: a SQLite path or postgresql://... (default: "
	   "DIR/payguard.db); keys stay wrapped under DIR/kek"),
    PG_STR(O, node, "node", "NAME",
	   "run only this node's VSEs of a store several hypervisors share; the others are "
	   "listed, not run"),
    {0}};
static const struct pg_opt create_opts[] = {
    PG_STR(O, name, "name", "NAME", "the VSE's name"),
    PG_STR(O, arena, "arena", "SIZE", "its memory arena (default 256K)"),
    PG_STR(O, pmem, "pmem", "SIZE", "its persistent memory (default 64K)"),
    PG_STRS(O, applets, "applet", "NAME", "a catalogue applet to install"),
    PG_STR(O, master, "master", "HEX", "ISD keys diversified from this master key by the CIN"),
    PG_STR(O, keys, "keys", "ENC:MAC:DEK", "explicit ISD AES keys"),
    PG_STR(O, kvn, "kvn", "N", "key version number"),
    PG_STR(O, cin, "cin", "HEX", "card image number"),
    PG_STR(O, link, "link", "t0|t1|swp|spi|i2c|ccid|vpcd", "how it is exposed (default t1)"),
    PG_STR(O, listen, "listen", "tcp:127.0.0.1:PORT", "where a socket link listens"),
    PG_STR(O, slot, "slot", "N", "the vpcd reader slot"),
    PG_STR(O, iu_rate, "iu-rate", "N",
	   "unauthenticated SCP03 INITIALIZE UPDATEs allowed a second (default 1; 0: no limit); "
	   "beyond it the card answers 6985, its counter untouched"),
    PG_STR(O, iu_burst, "iu-burst", "N", "how many may come at once (default 10)"),
    PG_STR(O, request, "request", "FILE.json",
	   "the whole request from a private file (instead of the options above)"),
    SOCKET_OPT,
    JSON_OPT,
    {0}};
static const struct pg_opt common_opts[] = {SOCKET_OPT, JSON_OPT, {0}};
static const struct pg_opt apdu_opts[] = {
    PG_FLAG(O, scp, "scp03", "open a GlobalPlatform SCP03 session with the ISD first"),
    PG_STR(O, master, "master", "HEX", "diversify the keys from this master key by the card's CIN"),
    PG_STR(O, keys, "keys", "ENC:MAC:DEK", "explicit AES keys"),
    PG_STR(O, kvn, "kvn", "N", "key version number (default 0x30)"),
    PG_STR(O, level, "level", "L",
	   "security level, hex: 01 C-MAC (default), 03 C-MAC+C-DECRYPTION, 11 C-MAC+R-MAC, 13, "
	   "33 all four"),
    SOCKET_OPT,
    JSON_OPT,
    {0}};
static const struct pg_opt none_opts[] = {{0}};
#undef O

/* Parses a verb's options into o; the first operand, or -1 after a message. */
static int
parse_opts(int argc, char **argv, const struct pg_opt *tab, struct vse_opts *o)
{
	int first;

	memset(o, 0, sizeof(*o));
	if (pg_cli_parse(argc, argv, tab, o, &first))
		return -1;
	return first;
}

static int
cmd_vse_serve(int argc, char **argv)
{
	struct pg_vse_hv_opts o = {.ready_fd = -1};
	struct vse_opts vo;
	struct stat st;
	int rc, first = parse_opts(argc, argv, serve_opts, &vo);

	if (first < 0)
		return PG_EXIT_USAGE;
	if (first < argc)
		return pg_cli_usage(argv[0], "unexpected argument '%s'", argv[first]);
	o.data_dir = vo.data_dir, o.announce_dir = vo.announce, o.store = vo.db, o.node = vo.node;
	if (o.announce_dir && (stat(o.announce_dir, &st) != 0 || !S_ISDIR(st.st_mode)))
		return pg_cli_usage(argv[0], "--announce needs an existing directory");
	rc = pg_vse_serve(&o);
	return rc < 0 ? pg_cli_fail(rc, "vse serve") : PG_EXIT_OK;
}

static int
cmd_vse_run_one(int argc, char **argv)
{
	struct vse_opts vo;

	/* the hypervisor passes the VSE's name (shown by ps); the rest comes on fd 3 */
	if (parse_opts(argc, argv, none_opts, &vo) < 0)
		return PG_EXIT_USAGE;
	return pg_vse_run_one() < 0 ? PG_EXIT_FAIL : PG_EXIT_OK;
}

static void
print_vse_table(json_t *arr)
{
	static const char *const hdr[] = {"NAME", "STATE",    "PID",	 "LINK", "ARENA",
					  "PMEM", "RESTARTS", "ADDRESS", "NODE"};
	struct pg_table *t;
	size_t i, ncols = 8;
	json_t *v;

	/* a NODE column once the registry is shared by several nodes */
	json_array_foreach(arr, i, v)
	{
		const char *node = json_string_value(json_object_get(v, "node"));

		if (node && *node)
			ncols = 9;
	}
	t = pg_table_new(ncols, hdr);
	json_array_foreach(arr, i, v)
	{
		json_t *r = json_object_get(v, "request");
		char pid[16] = "-", arena[24], pmem[24], rs[16];
		const char *cells[9];

		if (json_is_integer(json_object_get(v, "pid")))
			snprintf(pid, sizeof(pid), "%lld",
				 (long long)json_integer_value(json_object_get(v, "pid")));
		snprintf(arena, sizeof(arena), "%lldK",
			 (long long)json_integer_value(json_object_get(r, "arena")) / 1024);
		snprintf(pmem, sizeof(pmem), "%lldK",
			 (long long)json_integer_value(json_object_get(r, "pmem")) / 1024);
		snprintf(rs, sizeof(rs), "%lld",
			 (long long)json_integer_value(json_object_get(v, "restarts")));
		cells[0] = json_string_value(json_object_get(v, "name"));
		cells[1] = json_string_value(json_object_get(v, "state"));
		cells[2] = pid;
		cells[3] = json_string_value(json_object_get(json_object_get(r, "expose"), "link"));
		cells[4] = arena;
		cells[5] = pmem;
		cells[6] = rs;
		cells[7] = json_string_value(json_object_get(v, "address"));
		cells[8] = json_string_value(json_object_get(v, "node"));
		pg_table_add(t, cells);
	}
	pg_table_print(t);
	pg_table_free(t);
}

static int
call(const char *sock, json_t *req, json_t **resp, const char *what)
{
	int rc = pg_vse_api_call(sock, req, resp, API_TIMEOUT_MS);

	return rc < 0 ? pg_cli_fail(rc, "%s", what) : 0;
}

/* The parts of a `vse create` request built from options. */
enum create_obj { CR_VSE, CR_KEYS, CR_EXPOSE, CR_NOBJ };

enum create_kind {
	CR_TEXT,	/* the argument as a string */
	CR_INT_ANY,	/* strtol base 0 (kvn: 0x30 or 48) */
	CR_INT_DEC,	/* strtol base 10 */
	CR_NUM_OR_TEXT, /* a number, else the text, so the request check names the field */
};

/* The options that set one field of the request: option's value, where, field, how. */
static const struct create_field {
	size_t off; /* a const char * in struct vse_opts */
	enum create_obj obj;
	const char *key;
	enum create_kind kind;
} create_fields[] = {
#define F(f) offsetof(struct vse_opts, f)
    {F(name), CR_VSE, "name", CR_TEXT},
    {F(arena), CR_VSE, "arena", CR_TEXT},
    {F(pmem), CR_VSE, "pmem", CR_TEXT},
    {F(cin), CR_VSE, "cin", CR_TEXT},
    {F(iu_rate), CR_VSE, "iu_rate", CR_NUM_OR_TEXT},
    {F(iu_burst), CR_VSE, "iu_burst", CR_NUM_OR_TEXT},
    {F(master), CR_KEYS, "master", CR_TEXT},
    {F(kvn), CR_KEYS, "kvn", CR_INT_ANY},
    {F(link), CR_EXPOSE, "link", CR_TEXT},
    {F(listen), CR_EXPOSE, "listen", CR_TEXT},
    {F(slot), CR_EXPOSE, "slot", CR_INT_DEC},
#undef F
};

struct create_req {
	json_t *obj[CR_NOBJ];
	json_t *apps;
	const char *reqfile;
};

static void
create_req_release(struct create_req *q)
{
	for (int i = 0; i < CR_NOBJ; i++)
		json_decref(q->obj[i]), q->obj[i] = NULL;
	json_decref(q->apps), q->apps = NULL;
}

static json_t *
create_value(enum create_kind kind, const char *arg)
{
	char *end = NULL;
	long n;

	switch (kind) {
	case CR_INT_ANY:
		return json_integer(strtol(arg, NULL, 0));
	case CR_INT_DEC:
		return json_integer(strtol(arg, NULL, 10));
	case CR_NUM_OR_TEXT:
		n = strtol(arg, &end, 10);
		return end && end != arg && !*end ? json_integer(n) : json_string(arg);
	default:
		return json_string(arg);
	}
}

/* --keys ENC:MAC:DEK */
static void
create_keys(json_t *keys, const char *arg)
{
	char *dup = strdup(arg), *save = NULL;
	const char *nm[3] = {"enc", "mac", "dek"};
	char *tok = dup ? strtok_r(dup, ":", &save) : NULL;

	for (int i = 0; i < 3 && tok; i++, tok = strtok_r(NULL, ":", &save))
		json_object_set_new(keys, nm[i], json_string(tok));
	free(dup);
}

/* The request's fields from the options given (the defaults are already set). */
static void
create_from_opts(struct create_req *q, const struct vse_opts *o)
{
	for (size_t i = 0; i < sizeof(create_fields) / sizeof(create_fields[0]); i++) {
		const struct create_field *f = &create_fields[i];
		const char *arg = *(const char *const *)((const char *)o + f->off);

		if (arg)
			json_object_set_new(q->obj[f->obj], f->key, create_value(f->kind, arg));
	}
	for (int i = 0; i < o->applets.n; i++)
		json_array_append_new(q->apps, json_string(o->applets.v[i]));
	if (o->keys)
		create_keys(q->obj[CR_KEYS], o->keys);
	q->reqfile = o->request;
}

/*
 * The request: read from --request (it holds the VSE's keys: refused if
 * others can read it), else put together from the options. Validated here
 * too, so a bad request fails before reaching the daemon. Returns 0 with
 * *vse set, or the exit code.
 */
static int
create_request(struct create_req *q, json_t **vse)
{
	struct pg_vse_request *r;
	int rc;

	*vse = NULL;
	if (q->reqfile) {
		json_error_t err;

		create_req_release(q);
		if ((rc = pg_fs_check_private(q->reqfile, 0)) < 0)
			return pg_cli_fail(rc, "request '%s'", q->reqfile);
		*vse = json_load_file(q->reqfile, JSON_REJECT_DUPLICATES, &err);
		if (!*vse)
			return pg_cli_fail(PG_EFORMAT, "request '%s': line %d: %s", q->reqfile,
					   err.line, err.text);
	} else {
		*vse = q->obj[CR_VSE];
		json_object_set_new(*vse, "applets", q->apps);
		json_object_set_new(*vse, "keys", q->obj[CR_KEYS]);
		json_object_set_new(*vse, "expose", q->obj[CR_EXPOSE]);
		memset(q->obj, 0, sizeof(q->obj));
		q->apps = NULL;
	}
	r = calloc(1, sizeof(*r));
	rc = r ? pg_vse_request_from_json(r, *vse) : PG_ENOMEM;
	free(r);
	if (rc < 0) {
		json_decref(*vse);
		*vse = NULL;
		return pg_cli_fail(rc, "vse create");
	}
	return 0;
}

static int
cmd_vse_create(int argc, char **argv)
{
	struct create_req q = {.obj = {json_object(), json_object(), json_object()},
			       .apps = json_array()};
	json_t *vse, *resp = NULL, *arr;
	struct vse_opts o;
	int rc, first = parse_opts(argc, argv, create_opts, &o);

	if (first < 0 || first < argc) {
		create_req_release(&q);
		return first < 0 ? PG_EXIT_USAGE
				 : pg_cli_usage(argv[0], "unexpected argument '%s'", argv[first]);
	}
	json_object_set_new(q.obj[CR_VSE], "arena", json_string("256K"));
	json_object_set_new(q.obj[CR_VSE], "pmem", json_string("64K"));
	json_object_set_new(q.obj[CR_EXPOSE], "link", json_string("t1"));
	create_from_opts(&q, &o);
	if ((rc = create_request(&q, &vse)) != 0)
		return rc;
	rc = call(o.sock, json_pack("{s:s, s:o}", "op", "create", "vse", vse), &resp, "vse create");
	if (rc)
		return rc;
	if (o.json) {
		/* Take the reference before the response goes: "vse" lives inside it. */
		json_t *v = json_incref(json_object_get(resp, "vse"));

		json_decref(resp);
		return pg_cli_print_json(v);
	}
	arr = json_array();
	json_array_append(arr, json_object_get(resp, "vse"));
	print_vse_table(arr);
	json_decref(arr);
	json_decref(resp);
	return PG_EXIT_OK;
}

static int
cmd_vse_list(int argc, char **argv)
{
	json_t *resp = NULL;
	struct vse_opts o;
	int rc, json, first = parse_opts(argc, argv, common_opts, &o);

	if (first < 0)
		return PG_EXIT_USAGE;
	if (first != argc)
		return pg_cli_usage(argv[0], "unexpected argument '%s'", argv[first]);
	json = o.json;
	if ((rc = call(o.sock, json_pack("{s:s}", "op", "list"), &resp, "vse list")))
		return rc;
	if (json) {
		rc = pg_cli_print_json(json_incref(json_object_get(resp, "vses")));
	} else {
		print_vse_table(json_object_get(resp, "vses"));
		rc = PG_EXIT_OK;
	}
	json_decref(resp);
	return rc;
}

static int
named(int argc, char **argv, const char *op)
{
	json_t *resp = NULL, *v;
	struct vse_opts o;
	int rc, json, first = parse_opts(argc, argv, common_opts, &o);

	if (first < 0)
		return PG_EXIT_USAGE;
	if (first + 1 != argc)
		return pg_cli_usage(argv[0], "expected one VSE name");
	json = o.json;
	if (!pg_vse_name_ok(argv[first]))
		return pg_cli_fail(pg_error(PG_EINVAL, "vse", "bad VSE name '%s'", argv[first]),
				   "vse %s", op);
	rc = call(o.sock, json_pack("{s:s, s:s}", "op", op, "name", argv[first]), &resp, op);
	if (rc)
		return rc;
	v = json_object_get(resp, "vse");
	if (json) {
		rc = pg_cli_print_json(json_incref(v ? v : resp));
	} else if (v && strcmp(op, "show") == 0) {
		char *s = pg_json_dumps(v, JSON_INDENT(2));

		printf("%s\n", s ? s : "");
		free(s);
		rc = PG_EXIT_OK;
	} else if (v) {
		json_t *arr = json_array();

		json_array_append(arr, v);
		print_vse_table(arr);
		json_decref(arr);
		rc = PG_EXIT_OK;
	} else {
		printf("%s: %s\n", op, argv[first]);
		rc = PG_EXIT_OK;
	}
	json_decref(resp);
	return rc;
}

static int
cmd_vse_show(int argc, char **argv)
{
	return named(argc, argv, "show");
}
static int
cmd_vse_start(int argc, char **argv)
{
	return named(argc, argv, "start");
}
static int
cmd_vse_stop(int argc, char **argv)
{
	return named(argc, argv, "stop");
}
static int
cmd_vse_destroy(int argc, char **argv)
{
	return named(argc, argv, "destroy");
}

/* Opens a host link to a VSE's exposure (its address from `show`) and powers it on. */
static int
host_connect(const char *sock, const char *name, struct pg_link **out, uint8_t *atr, size_t *atrlen)
{
	json_t *resp = NULL, *v;
	const struct pg_link_ops *ops;
	struct pg_stream *s = NULL;
	const char *addr, *link;
	int rc;

	rc = pg_vse_api_call(sock, json_pack("{s:s, s:s}", "op", "show", "name", name), &resp,
			     API_TIMEOUT_MS);
	if (rc < 0)
		return rc;
	v = json_object_get(resp, "vse");
	addr = json_string_value(json_object_get(v, "address"));
	link = json_string_value(
	    json_object_get(json_object_get(json_object_get(v, "request"), "expose"), "link"));
	ops = link ? pg_link_find(link) : NULL;
	if (addr && strncmp(addr, "vpcd slot ", 10) == 0) {
		/* Through pcscd: Debian's vpcd entry names its readers "Virtual PCD 00 0<slot>". */
		int slot = atoi(addr + 10);
		char reader[64];
		uint64_t end = pg_mono_ms() + 5000;

		ops = pg_link_find("pcsc");
		if (!ops || slot > 1) {
			rc = pg_error(PG_ENOTSUP, "vse",
				      "VSE '%s' is on vpcd slot %d: reach it with a PC/SC client",
				      name, slot);
			goto out;
		}
		snprintf(reader, sizeof(reader), "Virtual PCD 00 %02d", slot);
		/* pcscd notices a new card by polling: retry while it is not there yet. */
		do {
			rc = ops->host_open(out, NULL, reader, NULL);
			if (rc == 0)
				break;
			usleep(100000);
		} while (pg_mono_ms() < end);
		if (rc < 0)
			goto out;
		*atrlen = PG_ATR_MAX;
		rc = pg_link_power_on(*out, atr, atrlen);
		if (rc < 0) {
			pg_link_close(*out);
			*out = NULL;
		}
		goto out;
	}
	if (!addr || !ops || !ops->host_open) {
		rc = pg_error(PG_ENOTSUP, "vse", "VSE '%s' has no host-reachable link", name);
		goto out;
	}
	PG_TRY_GOTO(pg_stream_connect(&s, addr, 5000), out, "vse", "connect");
	PG_TRY_GOTO(ops->host_open(out, s, NULL, NULL), out, "vse", "host open");
	*atrlen = PG_ATR_MAX;
	rc = pg_link_power_on(*out, atr, atrlen);
	if (rc < 0) {
		pg_link_close(*out);
		*out = NULL;
	}
out:
	json_decref(resp);
	return rc;
}

/* Sends one plain C-APDU, wrapped when a session is open; writes the plain R-APDU. */
static int
exchange(struct pg_link *l, struct pg_scp03 *sc, const uint8_t *c, size_t n, uint8_t *r, size_t *rl)
{
	uint8_t w[261 + 64]; /* a short APDU and its C-MAC (and padding) */
	size_t cap = *rl;
	int wn, rc;

	if (!pg_scp03_is_open(sc))
		return pg_link_transmit(l, c, n, r, rl);
	if (n > 261)
		return pg_error(PG_ETOOBIG, "vse", "APDU too long for a secured exchange");
	wn = pg_scp03_host_wrap(sc, c, n, w, sizeof(w));
	if (wn < 0)
		return wn;
	rc = pg_link_transmit(l, w, (size_t)wn, r, rl);
	if (rc < 0)
		return rc;
	rc = pg_scp03_host_unwrap(sc, r, *rl, r, cap);
	if (rc < 0)
		return rc;
	*rl = (size_t)rc;
	return 0;
}

/*
 * Opens an SCP03 session (C-MAC) with the ISD: keys explicit, or diversified
 * from the master by the CIN the card reports (GET DATA 45), as the
 * hypervisor did when it created the VSE.
 */
static int
open_scp03(struct pg_link *l, struct pg_scp03 *sc, const char *master, const char *keys, int kvn,
	   int level)
{
	static const uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0x00,
				      0x00, 0x01, 0x51, 0x00, 0x00, 0x00, 0x00};
	static const uint8_t cin[] = {0x00, 0xCA, 0x00, 0x45, 0x00};
	struct pg_scp03_keys k = {0};
	uint8_t r[300], a[300], m[32];
	size_t rl = sizeof(r);
	int rc, n;

	PG_TRY_GOTO(pg_link_transmit(l, sel, sizeof(sel), r, &rl), out, "vse", "select ISD");
	if (master) {
		n = pg_hex_decode(m, sizeof(m), master);
		if (n != 16 && n != 24 && n != 32) {
			rc = pg_error(PG_EINVAL, "vse",
				      "--master must be 16, 24 or 32 bytes of hex");
			goto out;
		}
		rl = sizeof(r);
		PG_TRY_GOTO(pg_link_transmit(l, cin, sizeof(cin), r, &rl), out, "vse", "CIN");
		if (rl != 12 || r[0] != 0x45 || r[1] != 8) {
			rc =
			    pg_error(PG_EPROTO, "vse", "the card reports no CIN to diversify from");
			goto out;
		}
		PG_TRY_GOTO(pg_scp03_diversify(m, (size_t)n, r + 2, 8, (uint8_t)kvn, &k), out,
			    "vse", "diversify");
	} else {
		char buf[200], *save = NULL, *t;
		uint8_t *dst[3] = {k.enc, k.mac, k.dek};
		int len = -1;

		snprintf(buf, sizeof(buf), "%s", keys);
		t = strtok_r(buf, ":", &save);
		for (int i = 0; i < 3; i++, t = strtok_r(NULL, ":", &save)) {
			n = t ? pg_hex_decode(dst[i], 32, t) : -1;
			if ((n != 16 && n != 24 && n != 32) || (len >= 0 && n != len)) {
				rc = pg_error(PG_EINVAL, "vse",
					      "--keys must be ENC:MAC:DEK, AES keys of "
					      "one length");
				goto out;
			}
			len = n;
		}
		k.len = (size_t)len;
		k.kvn = (uint8_t)kvn;
	}
	memset(sc, 0, sizeof(*sc));
	n = pg_scp03_host_init_update(sc, k.kvn, NULL, 8, a, sizeof(a));
	rl = sizeof(r);
	PG_TRY_GOTO(n < 0 ? n : pg_link_transmit(l, a, (size_t)n, r, &rl), out, "vse", "IU");
	n = pg_scp03_host_auth(sc, &k, r, rl, (uint8_t)level, a, sizeof(a));
	rl = sizeof(r);
	PG_TRY_GOTO(n < 0 ? n : pg_link_transmit(l, a, (size_t)n, r, &rl), out, "vse", "EA");
	rc = pg_scp03_host_auth_done(sc, r, rl);
	if (rc < 0)
		rc = pg_error(PG_EAUTH, "vse", "EXTERNAL AUTHENTICATE refused (wrong keys?)");
out:
	pg_memzero(&k, sizeof(k));
	pg_memzero(m, sizeof(m));
	return rc;
}

/* Options of `vse apdu`. */
struct apdu_opts {
	const char *sock, *master, *keys;
	int json, scp, kvn, level;
};

/* Parses the options; the first operand (the VSE's name), or -1 after a message. */
static int
apdu_parse_opts(int argc, char **argv, struct apdu_opts *o)
{
	struct vse_opts v;
	char *end;
	int first = parse_opts(argc, argv, apdu_opts, &v);

	if (first < 0)
		return -1;
	o->sock = v.sock, o->master = v.master, o->keys = v.keys, o->json = v.json, o->scp = v.scp;
	if (v.kvn) {
		long k = strtol(v.kvn, &end, 0);

		if (!*v.kvn || *end || k < 0 || k > 0xFF)
			return pg_cli_usage(argv[0], "--kvn takes 0..255 (0x30 or 48)"), -1;
		o->kvn = (int)k;
	}
	if (v.level) {
		/* Security levels of GP Amd D 7.1.2.2: 01, 03, 11, 13, 33. */
		o->level = (int)strtol(v.level, &end, 16);
		if (*end || (o->level != 0x01 && o->level != 0x03 && o->level != 0x11 &&
			     o->level != 0x13 && o->level != 0x33))
			return pg_cli_usage(argv[0], "--level takes 01, 03, 11, 13 or 33 (hex)"),
			       -1;
	}
	if (first + 2 > argc)
		return pg_cli_usage(argv[0], "expected a VSE name and at least one APDU (hex)"), -1;
	if (o->scp && !o->master == !o->keys)
		return pg_cli_usage(argv[0], "--scp03 needs --master HEX or --keys ENC:MAC:DEK"),
		       -1;
	return first;
}

/* One APDU (hex) to the VSE: printed as "> C / < R", or added to `out` with --json. */
static int
apdu_one(struct pg_link *l, struct pg_scp03 *sc, const char *arg, int json, json_t *out,
	 uint8_t *capdu, uint8_t *rapdu)
{
	int n = pg_hex_decode(capdu, PG_APDU_MAX_C, arg), rc;
	size_t rl = PG_APDU_MAX_R;
	char *rh, *ch;

	if (n < 4)
		return pg_error(PG_EFORMAT, "vse", "APDU '%.40s' is not hex of >= 4 bytes", arg);
	rc = exchange(l, sc, capdu, (size_t)n, rapdu, &rl);
	if (rc < 0)
		return rc;
	rh = malloc(2 * rl + 1);
	ch = malloc(2 * (size_t)n + 1);
	if (rh && ch) {
		pg_hex_encode_upper(rh, rapdu, rl, 0);
		pg_hex_encode_upper(ch, capdu, (size_t)n, 0);
		if (json)
			json_array_append_new(out, json_pack("{s:s, s:s, s:s+}", "c", ch, "r", rh,
							     "sw", rh + 2 * rl - 4, ""));
		else
			printf("> %s\n< %s\n", ch, rh);
	}
	free(rh);
	free(ch);
	return 0;
}

static int
cmd_vse_apdu(int argc, char **argv)
{
	struct apdu_opts o = {.kvn = 0x30, .level = PG_SCP03_SL_CMAC};
	struct pg_link *l = NULL;
	struct pg_scp03 sc = {0};
	uint8_t atr[PG_ATR_MAX], *capdu = NULL, *rapdu = NULL;
	char hex[3 * 64 + 1];
	json_t *out = NULL;
	size_t atrlen;
	int rc, first = apdu_parse_opts(argc, argv, &o);

	if (first < 0)
		return PG_EXIT_USAGE;
	rc = host_connect(o.sock, argv[first], &l, atr, &atrlen);
	if (rc < 0)
		return pg_cli_fail(rc, "vse apdu '%s'", argv[first]);
	out = json_array();
	capdu = malloc(PG_APDU_MAX_C);
	rapdu = malloc(PG_APDU_MAX_R);
	if (!capdu || !rapdu || !out) {
		rc = PG_ENOMEM;
		goto out;
	}
	pg_hex_encode_upper(hex, atr, atrlen, 0);
	if (!o.json)
		printf("ATR %s\n", hex);
	if (o.scp) {
		PG_TRY_GOTO(open_scp03(l, &sc, o.master, o.keys, o.kvn, o.level), out, "vse",
			    "scp03");
		if (!o.json)
			printf("SCP03 session open (security level %02X)\n", o.level);
	}
	for (int i = first + 1; i < argc && rc >= 0; i++)
		rc = apdu_one(l, &sc, argv[i], o.json, out, capdu, rapdu);
out:
	pg_scp03_close(&sc);
	free(capdu);
	free(rapdu);
	pg_link_close(l);
	if (rc < 0) {
		json_decref(out);
		return pg_cli_fail(rc, "vse apdu");
	}
	if (o.json)
		return pg_cli_print_json(json_pack("{s:s, s:o}", "atr", hex, "apdus", out));
	json_decref(out);
	return PG_EXIT_OK;
}

/* Creates demo VSE `name` on `link` (vpcd: slot 1); returns 0 or the error. */
static int
demo_create(const char *sock, const char *name, const char *link)
{
	json_t *ex = strcmp(link, "vpcd") == 0 ? json_pack("{s:s, s:i}", "link", link, "slot", 1)
					       : json_pack("{s:s}", "link", link);
	json_t *resp = NULL;
	int rc = pg_vse_api_call(sock,
				 json_pack("{s:s, s:{s:s, s:s, s:s, s:[s], s:{s:s}, s:o}}", "op",
					   "create", "vse", "name", name, "arena", "256K", "pmem",
					   "16K", "applets", "test", "keys", "master",
					   "000102030405060708090A0B0C0D0E0F", "expose", ex),
				 &resp, API_TIMEOUT_MS);

	json_decref(resp);
	return rc;
}

/*
 * `payguard vse demo`: a hypervisor (a child process, its own data directory
 * under /tmp), three VSEs on three links (T=1 and SWP on UNIX sockets, and a
 * vpcd reader in pcscd when one runs, else CCID),
 * SELECT ISD and GET DATA CPLC to each, a summary, then everything stopped.
 */
static int
cmd_vse_demo(int argc, char **argv)
{
	const char *links[3] = {"t1", "swp", "vpcd"};
	char dir[] = "/tmp/payguard-vse-demo-XXXXXX", sock[128];
	static const uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0x00,
				      0x00, 0x01, 0x51, 0x00, 0x00, 0x00, 0x00};
	static const uint8_t cplc[] = {0x80, 0xCA, 0x9F, 0x7F, 0x00};
	int ready[2], rc = 0, failed = 0;
	pid_t hv;
	char b;

	{
		struct vse_opts vo;

		if (parse_opts(argc, argv, none_opts, &vo) != argc)
			return pg_cli_usage(argv[0], "takes no options or arguments");
	}
	if (!mkdtemp(dir) || pipe(ready) != 0)
		return pg_cli_fail(PG_ESYS, "vse demo: temporary directory");
	snprintf(sock, sizeof(sock), "%s/vse/hv.sock", dir);
	hv = fork();
	if (hv == 0) {
		struct pg_vse_hv_opts o = {.data_dir = dir, .ready_fd = ready[1]};

		close(ready[0]);
		_exit(pg_vse_serve(&o) < 0 ? 1 : 0);
	}
	close(ready[1]);
	if (hv < 0 || read(ready[0], &b, 1) != 1) {
		close(ready[0]);
		return pg_cli_fail(PG_ESTATE, "vse demo: hypervisor did not start");
	}
	close(ready[0]);
	printf("hypervisor pid %d, data directory %s\n\n", (int)hv, dir);
	printf("%-6s %-5s %-8s %-12s %-10s %-6s %-10s %s\n", "VSE", "LINK", "PID", "CREATE",
	       "SELECT", "CPLC", "IC SERIAL", "ATR");
	for (int i = 0; i < 3; i++) {
		char name[16], hex[2 * PG_ATR_MAX + 1], serial[9] = "-";
		struct pg_link *l = NULL;
		uint8_t atr[PG_ATR_MAX], r[300];
		size_t atrlen = 0, rl;
		uint16_t sw1 = 0, sw2 = 0;
		uint64_t t0 = pg_mono_ns();
		double ms;

		snprintf(name, sizeof(name), "demo%d", i + 1);
		rc = demo_create(sock, name, links[i]);
		if (rc < 0 && strcmp(links[i], "vpcd") == 0) {
			/* No pcscd + vpcd here (scripts/demo.sh starts them): CCID instead. */
			printf("(vpcd slot 1 not reachable: %s; demo3 uses CCID)\n",
			       pg_last_error());
			links[i] = "ccid";
			t0 = pg_mono_ns();
			rc = demo_create(sock, name, links[i]);
		}
		ms = (double)(pg_mono_ns() - t0) / 1e6;
		if (rc == 0)
			rc = host_connect(sock, name, &l, atr, &atrlen);
		if (rc == 0) {
			rl = sizeof(r);
			rc = pg_link_transmit(l, sel, sizeof(sel), r, &rl);
			sw1 = rc == 0 && rl >= 2 ? (uint16_t)(r[rl - 2] << 8 | r[rl - 1]) : 0;
		}
		if (rc == 0) {
			rl = sizeof(r);
			rc = pg_link_transmit(l, cplc, sizeof(cplc), r, &rl);
			sw2 = rc == 0 && rl >= 2 ? (uint16_t)(r[rl - 2] << 8 | r[rl - 1]) : 0;
			if (sw2 == 0x9000 && rl >= 3 + 16 + 2)
				pg_hex_encode_upper(serial, r + 3 + 12, 4, 0);
		}
		pg_link_close(l);
		pg_hex_encode_upper(hex, atr, atrlen, 0);
		if (rc < 0) {
			failed++;
			printf("%-6s %-5s failed: %s\n", name, links[i],
			       pg_last_error()[0] ? pg_last_error() : pg_strerror(rc));
			continue;
		}
		{
			json_t *s = NULL;
			char pid[16] = "-";

			if (pg_vse_api_call(sock,
					    json_pack("{s:s, s:s}", "op", "show", "name", name), &s,
					    API_TIMEOUT_MS) == 0)
				snprintf(pid, sizeof(pid), "%lld",
					 (long long)json_integer_value(
					     json_object_get(json_object_get(s, "vse"), "pid")));
			json_decref(s);
			printf("%-6s %-5s %-8s %7.1f ms   %04X       %04X   %-10s %s\n", name,
			       links[i], pid, ms, sw1, sw2, serial, hex);
		}
		if (sw1 != 0x9000 || sw2 != 0x9000)
			failed++;
	}
	for (int i = 0; i < 3; i++) {
		char name[16];
		json_t *resp = NULL;

		snprintf(name, sizeof(name), "demo%d", i + 1);
		if (pg_vse_api_call(sock, json_pack("{s:s, s:s}", "op", "destroy", "name", name),
				    &resp, API_TIMEOUT_MS) == 0)
			printf("\nstopped and destroyed %s", name);
		json_decref(resp);
	}
	printf("\n");
	kill(hv, SIGTERM);
	waitpid(hv, NULL, 0);
	{
		char cmd[128];

		/* The demo's own temporary directory (mkdtemp above), nothing else. */
		snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", dir);
		if (system(cmd) != 0)
			pg_warn("vse", "could not remove %s", dir);
	}
	printf("%s\n", failed ? "vse demo: FAILED" : "vse demo: 3 VSEs on 3 links answered 9000");
	return failed ? PG_EXIT_FAIL : PG_EXIT_OK;
}

const struct pg_cmd pg_cli_vse[] = {
    {"serve", cmd_vse_serve, "run the hypervisor (socket API in the data directory)", NULL,
     serve_opts, NULL},
    {"create", cmd_vse_create, "create a VSE from a request (options or --request FILE.json)",
     "Give --name and one of --master and --keys, or --request.", create_opts, NULL},
    {"list", cmd_vse_list, "list VSEs", NULL, common_opts, NULL},
    {"show", cmd_vse_show, "show one VSE (configuration without keys, state, memory)", NULL,
     common_opts, "NAME"},
    {"start", cmd_vse_start, "start a stopped VSE", NULL, common_opts, "NAME"},
    {"stop", cmd_vse_stop, "stop a VSE (its persistent memory is kept)", NULL, common_opts, "NAME"},
    {"destroy", cmd_vse_destroy, "stop a VSE and delete it with its persistent memory", NULL,
     common_opts, "NAME"},
    {"apdu", cmd_vse_apdu, "send command APDUs to a VSE over its link (optionally in SCP03)",
     "With --scp03 give --master or --keys.", apdu_opts, "NAME APDU-HEX..."},
    {"demo", cmd_vse_demo, "three VSEs on three links: create, SELECT, GET DATA, stop", NULL,
     none_opts, NULL},
    {"run-one", cmd_vse_run_one, "(internal) one VSE process, exec'd by the hypervisor", NULL,
     none_opts, "[NAME]"},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};
