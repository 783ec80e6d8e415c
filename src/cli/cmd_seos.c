/*
 * `payguard seos ...` verbs: thin wrappers over the SE OS (issue 7): the
 * daemon, its client API (readers, whoami, transmit), the SE list in the
 * store, a test SE with SCP03 + ARA-M on any link, and the demonstration.
 */
#include "cli.h"
#include "payguard/card_gp.h"
#include "payguard/card.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/link.h"
#include "payguard/log.h"
#include "payguard/mem.h"
#include "payguard/se_pcsc.h"
#include "payguard/seos.h"
#include "payguard/seos_client.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile int stop_flag;

static void
on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static int
read_text_or_file(const char *arg, uint8_t *out, size_t cap)
{
	if (arg[0] == '@') {
		FILE *f = fopen(arg + 1, "rb");
		size_t n;

		if (!f)
			return pg_error(PG_ENOENT, "seos", "cannot open '%s'", arg + 1);
		n = fread(out, 1, cap, f);
		fclose(f);
		return (int)n;
	}
	return pg_hex_decode(out, cap, arg);
}

/* Every option of every seos verb; each verb's table lists the ones it takes. */
struct seos_opts {
	const char *link, *listen, *connect, *serial, *master, *version, *rules;
	const char *sock, *watch, *keys, *db, *devkey, *app, *reader, *aid, *p2;
	int pcsc, json, basic;
};
#define O struct seos_opts
#define SOCKET_OPT                                                                                 \
	PG_STR(O, sock, "socket", "PATH",                                                          \
	       "the daemon's socket (default $PAYGUARD_SEOS_SOCKET, else "                         \
	       "/tmp/payguard-seos.sock)")
#define APP_OPT PG_STR(O, app, "app", "NAME", "the client's name (default payguard-cli)")
static const struct pg_opt sim_opts[] = {
    PG_STR(O, link, "link", "LINK", "t0 t1 swp spi i2c ccid, or vpcd with --connect"),
    PG_STR(O, listen, "listen", "ADDR", "serve hosts on unix:PATH or tcp:HOST:PORT"),
    PG_STR(O, connect, "connect", "ADDR", "vpcd only: dial vpcd (tcp:127.0.0.1:35963)"),
    PG_STR(O, master, "master", "HEX",
	   "master key (required); the SE's SCP03 keys are it diversified by the SE identity"),
    PG_STR(O, serial, "serial", "N", "IC serial number, part of the SE identity (default 1)"),
    PG_STR(O, version, "version", "N", "configuration version GET DATA DF50 reports (default 1)"),
    PG_STR(O, rules, "rules", "HEX|@FILE",
	   "ARA-M GET DATA [All] data (FF40...), hex or @file; default: allow all"),
    {0}};
static const struct pg_opt serve_opts[] = {
    PG_STR(O, sock, "socket", "PATH", "UNIX socket for clients (Open Mobile API calls); required"),
    PG_STR(O, watch, "watch", "DIR",
	   "directory of SE endpoint files NAME.se (lines link=, addr=, kind=sim|vse); created and "
	   "removed files attach and detach SEs (inotify)"),
    PG_STR(O, keys, "keys", "FILE",
	   "key store: 'master KVN HEX' and/or 'se ID KVN ENC MAC DEK' lines"),
    PG_FLAG(O, pcsc, "pcsc", "follow PC/SC reader events (SCardGetStatusChange) through pcscd"),
    PG_STR(
	O, db, "db", "PATH|URL",
	"the store: a SQLite path or postgresql://... (default: the data directory's payguard.db)"),
    PG_STR(O, devkey, "device-key", "PATH",
	   "the cache MAC key file (default: data directory, mode 0600)"),
    {0}};
static const struct pg_opt list_opts[] = {
    PG_STR(O, db, "db", "PATH|URL", "the store"),
    PG_STR(O, devkey, "device-key", "PATH", "the cache MAC key file"),
    PG_FLAG(O, json, "json", "print JSON"),
    {0}};
static const struct pg_opt readers_opts[] = {
    SOCKET_OPT, APP_OPT, PG_FLAG(O, json, "json", "print JSON"), {0}};
static const struct pg_opt whoami_opts[] = {SOCKET_OPT, APP_OPT, {0}};
static const struct pg_opt transmit_opts[] = {
    PG_STR(O, reader, "reader", "NAME", "the reader (SE) to open a session on; required"),
    PG_STR(O, aid, "aid", "HEX", "application to select (default: the default application)"),
    PG_FLAG(O, basic, "basic", "use the basic channel (default: a logical channel)"),
    PG_STR(O, p2, "p2", "HEX", "SELECT P2 (default 00)"),
    SOCKET_OPT,
    APP_OPT,
    {0}};
static const struct pg_opt demo_opts[] = {{0}};
#undef O

/* Parses a verb's options; 0, or PG_EXIT_USAGE after a message. Without
 * operands any operand is refused. */
static int
parse_opts(int argc, char **argv, const struct pg_opt *tab, struct seos_opts *o, int *first)
{
	int f;

	memset(o, 0, sizeof(*o));
	if (pg_cli_parse(argc, argv, tab, o, &f))
		return PG_EXIT_USAGE;
	if (!first && f < argc)
		return pg_cli_usage(argv[0], "unexpected argument '%s'", argv[f]);
	if (first)
		*first = f;
	if (!o->sock)
		o->sock = getenv("PAYGUARD_SEOS_SOCKET");
	if (!o->sock && tab != serve_opts)
		o->sock = "/tmp/payguard-seos.sock";
	if (!o->app)
		o->app = "payguard-cli";
	return 0;
}

/* ---- seos sim ---- */

static int
cmd_seos_sim(int argc, char **argv)
{
	struct pg_seos_sim_card_cfg cfg = {.serial = 1, .version = 1};
	struct pg_gp_card *card = NULL;
	const struct pg_link_ops *ops;
	static uint8_t rbuf[PG_ARA_MAX_DATA];
	uint8_t m[32];
	struct seos_opts o;
	const char *link, *listen_addr, *connect_addr, *master, *rules;
	int rc, fd, ml = 0, rl;

	if (parse_opts(argc, argv, sim_opts, &o, NULL))
		return PG_EXIT_USAGE;
	link = o.link, listen_addr = o.listen, connect_addr = o.connect;
	master = o.master, rules = o.rules;
	if (pg_cli_u32(argv[0], "serial", o.serial, 0, &cfg.serial) ||
	    pg_cli_u32(argv[0], "version", o.version, 0, &cfg.version))
		return PG_EXIT_USAGE;
	if (!link || !(ops = pg_link_find(link)) || !ops->card_open)
		return pg_cli_usage(argv[0], "--link must name a link with a card role");
	if (!!listen_addr == !!connect_addr)
		return pg_cli_usage(argv[0], "give exactly one of --listen ADDR or --connect ADDR");
	if (!master)
		return pg_cli_usage(argv[0],
				    "--master HEX is required (the key store's master key)");
	ml = pg_hex_decode(m, sizeof(m), master);
	if (ml != 16 && ml != 24 && ml != 32)
		return pg_cli_usage(argv[0], "--master must be 16, 24 or 32 bytes of hex");
	if (rules) {
		rl = read_text_or_file(rules, rbuf, sizeof(rbuf));
		if (rl <= 0)
			return pg_cli_fail(rl < 0 ? rl : PG_EINVAL, "bad --rules");
		cfg.rules = rbuf;
		cfg.rules_len = (size_t)rl;
	}
	cfg.master = m;
	cfg.master_len = (size_t)ml;
	rc = pg_seos_sim_card_new(&card, &cfg);
	pg_memzero(m, sizeof(m));
	if (rc < 0)
		return pg_cli_fail(rc, "cannot create the test SE");
	if (connect_addr) {
		fprintf(stderr, "payguard: test SE (serial %u) dialing vpcd at %s\n", cfg.serial,
			connect_addr);
		do
			rc = pg_vpcd_serve(connect_addr, pg_gp_card_card(card), 10000, NULL);
		while (rc == 0);
		goto out;
	}
	fd = pg_stream_listen(listen_addr);
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	fprintf(stderr, "payguard: test SE (serial %u, version %u) on link %s listening on %s\n",
		cfg.serial, cfg.version, ops->name, listen_addr);
	rc = pg_card_serve_listener(fd, ops, pg_gp_card_card(card), NULL, 0);
	close(fd);
out:
	pg_gp_card_free(card);
	return rc < 0 ? pg_cli_fail(rc, "test SE") : PG_EXIT_OK;
}

/* ---- seos serve ---- */

static int
cmd_seos_serve(int argc, char **argv)
{
	struct pg_seos_serve_opts so = {.stop = &stop_flag};
	struct pg_seos_keystore *ks = NULL;
	struct pg_seos_server *srv = NULL;
	struct seos_opts o;
	const char *keys;
	int rc;

	if (parse_opts(argc, argv, serve_opts, &o, NULL))
		return PG_EXIT_USAGE;
	so.sock = o.sock, so.watch = o.watch, so.pcsc = o.pcsc, so.db = o.db;
	so.devkey = o.devkey;
	keys = o.keys;
	if (!so.sock)
		return pg_cli_usage(argv[0], "--socket PATH is required");
	if (keys) {
		rc = pg_seos_keystore_load(&ks, keys);
		if (rc < 0)
			return pg_cli_fail(rc, "key store");
	}
	so.ks = ks;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	rc = pg_seos_serve_new(&srv, &so);
	if (rc == 0)
		rc = pg_seos_serve_run(srv);
	pg_seos_serve_free(srv);
	pg_seos_keystore_free(ks);
	return rc < 0 ? pg_cli_fail(rc, "seos serve") : PG_EXIT_OK;
}

/* ---- seos list (the SE list in the store) ---- */

struct list_ctx {
	struct pg_table *t;
	json_t *arr;
};

static int
list_row(void *arg, const struct pg_seos_entry *e)
{
	struct list_ctx *lc = arg;
	char ver[16], apps[16];

	if (lc->arr) {
		json_array_append_new(
		    lc->arr,
		    json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "name", e->name, "id",
			      e->id_hex, "link", e->link, "addr", e->addr, "atr", e->atr_hex,
			      "state", pg_seos_state_name(e->state), "reason", e->reason, "version",
			      (json_int_t)e->version, "apps", (json_int_t)e->napps));
		return 0;
	}
	snprintf(ver, sizeof(ver), "%u", e->version);
	snprintf(apps, sizeof(apps), "%zu", e->napps);
	const char *cells[] = {
	    e->name, e->link, e->id_hex[0] ? e->id_hex : NULL, pg_seos_state_name(e->state),
	    ver,     apps,    e->reason[0] ? e->reason : NULL};
	return pg_table_add(lc->t, cells);
}

static int
cmd_seos_list(int argc, char **argv)
{
	static const char *const hdr[] = {"NAME",    "LINK", "ID",    "STATE",
					  "VERSION", "APPS", "REASON"};
	struct list_ctx lc = {0};
	struct pg_seos *os;
	struct seos_opts o;
	int json, rc;

	if (parse_opts(argc, argv, list_opts, &o, NULL))
		return PG_EXIT_USAGE;
	json = o.json;
	rc = pg_seos_open(&os, o.db, o.devkey, NULL);
	if (rc < 0)
		return pg_cli_fail(rc, "SE list");
	if (json)
		lc.arr = json_array();
	else
		lc.t = pg_table_new(7, hdr);
	rc = pg_seos_list(os, list_row, &lc);
	pg_seos_close(os);
	if (rc < 0) {
		json_decref(lc.arr);
		pg_table_free(lc.t);
		return pg_cli_fail(rc, "SE list");
	}
	if (json)
		return pg_cli_print_json(lc.arr);
	pg_table_print(lc.t);
	pg_table_free(lc.t);
	return PG_EXIT_OK;
}

/* ---- client verbs ---- */

static int
cmd_seos_readers(int argc, char **argv)
{
	struct pg_seos_reader r[64];
	struct pg_seos_client *c;
	struct seos_opts o;
	size_t n;
	int json, rc;

	if (parse_opts(argc, argv, readers_opts, &o, NULL))
		return PG_EXIT_USAGE;
	json = o.json;
	rc = pg_seos_client_connect(&c, o.sock, o.app);
	if (rc == 0)
		rc = pg_seos_client_readers(c, r, 64, &n);
	pg_seos_client_close(c);
	if (rc < 0)
		return pg_cli_fail(rc, "readers");
	if (json) {
		json_t *a = json_array();

		for (size_t i = 0; i < n; i++)
			json_array_append_new(a, json_pack("{s:s,s:s}", "name", r[i].name, "state",
							   pg_seos_state_name(r[i].state)));
		return pg_cli_print_json(a);
	}
	for (size_t i = 0; i < n; i++)
		printf("%-24s %s\n", r[i].name, pg_seos_state_name(r[i].state));
	return PG_EXIT_OK;
}

static int
cmd_seos_whoami(int argc, char **argv)
{
	struct pg_seos_client *c;
	char h256[65], h1[41], text[512];
	struct seos_opts o;
	int rc;

	if (parse_opts(argc, argv, whoami_opts, &o, NULL))
		return PG_EXIT_USAGE;
	rc = pg_seos_client_connect(&c, o.sock, o.app);
	if (rc == 0)
		rc = pg_seos_client_whoami(c, h256, h1, text, sizeof(text));
	pg_seos_client_close(c);
	if (rc < 0)
		return pg_cli_fail(rc, "whoami");
	printf("identity %s\nsha1     %s\nsha256   %s\n", text, h1, h256);
	return PG_EXIT_OK;
}

/* `transmit`: open session + channel, send each APDU, print each response. */
static int
cmd_seos_transmit(int argc, char **argv)
{
	static uint8_t capdu[PG_APDU_MAX_C], rapdu[PG_APDU_MAX_R];
	struct pg_seos_client *c = NULL;
	uint8_t aid[16];
	struct seos_opts o;
	const char *reader, *aidh;
	int rc, aid_len = 0, basic, first;
	uint32_t p2 = 0;
	uint32_t sess, ch;
	char *hex = NULL;

	if (parse_opts(argc, argv, transmit_opts, &o, &first))
		return PG_EXIT_USAGE;
	reader = o.reader, aidh = o.aid, basic = o.basic;
	if (pg_cli_u32(argv[0], "p2", o.p2, 16, &p2))
		return PG_EXIT_USAGE;
	if (p2 > 0xFF)
		return pg_cli_usage(argv[0], "--p2 is one byte of hex");
	if (!reader)
		return pg_cli_usage(argv[0], "--reader NAME is required");
	if (aidh && (aid_len = pg_hex_decode(aid, sizeof(aid), aidh)) < 5)
		return pg_cli_usage(argv[0], "--aid must be 5..16 bytes of hex");
	rc = pg_seos_client_connect(&c, o.sock, o.app);
	if (rc < 0)
		goto out;
	rc = pg_seos_client_open_session(c, reader, &sess);
	if (rc < 0)
		goto out;
	{
		size_t sl = sizeof(rapdu);

		rc = pg_seos_client_open_channel(c, sess, !basic, aid, (size_t)aid_len, (uint8_t)p2,
						 &ch, rapdu, &sl);
		if (rc < 0)
			goto out;
	}
	hex = malloc(2 * PG_APDU_MAX_R + 1);
	if (!hex) {
		rc = PG_ENOMEM;
		goto out;
	}
	for (int i = first; i < argc; i++) {
		int n = pg_hex_decode(capdu, sizeof(capdu), argv[i]);
		size_t rl = sizeof(rapdu);

		if (n < 4) {
			rc = pg_error(PG_EINVAL, "seos", "bad APDU '%s'", argv[i]);
			goto out;
		}
		rc = pg_seos_client_transmit(c, ch, capdu, (size_t)n, rapdu, &rl);
		if (rc < 0)
			goto out;
		pg_hex_encode_upper(hex, rapdu, rl, 0);
		printf("%s\n", hex);
	}
	rc = pg_seos_client_close_channel(c, ch);
out:
	free(hex);
	pg_seos_client_close(c);
	return rc < 0 ? pg_cli_fail(rc, "transmit") : PG_EXIT_OK;
}

/* ---- seos demo ---- */

static int
cmd_seos_demo(int argc, char **argv)
{
	struct seos_opts o;
	int rc;

	if (parse_opts(argc, argv, demo_opts, &o, NULL))
		return PG_EXIT_USAGE;
	rc = pg_seos_demo(stdout);

	return rc < 0 ? pg_cli_fail(rc, "seos demo") : PG_EXIT_OK;
}

const struct pg_cmd pg_cli_seos[] = {
    {"serve", cmd_seos_serve, "run the SE OS daemon (SE detection, authentication, client API)",
     NULL, serve_opts, NULL},
    {"sim", cmd_seos_sim, "serve a test SE (SCP03 ISD, GET STATUS, ARA-M) on a link's card role",
     "Give exactly one of --listen and --connect.", sim_opts, NULL},
    {"list", cmd_seos_list, "show the SE list kept in the store", NULL, list_opts, NULL},
    {"readers", cmd_seos_readers, "list the daemon's readers (SEs) and their states", NULL,
     readers_opts, NULL},
    {"whoami", cmd_seos_whoami, "show the identity (and hashes for ARA-M rules) the daemon sees",
     NULL, whoami_opts, NULL},
    {"transmit", cmd_seos_transmit, "open a session and channel, send APDUs, print responses",
     "APDU is a command APDU in hex; each response is printed in hex, one per line.", transmit_opts,
     "APDU..."},
    {"demo", cmd_seos_demo, "attach 3 simulated SEs, authenticate, cache miss then hit, a client",
     NULL, demo_opts, NULL},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};
