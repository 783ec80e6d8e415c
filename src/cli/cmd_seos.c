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

#include <getopt.h>
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

/* ---- seos sim ---- */

static int
cmd_seos_sim(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"link", required_argument, NULL, 'l'},    {"listen", required_argument, NULL, 'L'},
	    {"connect", required_argument, NULL, 'c'}, {"serial", required_argument, NULL, 's'},
	    {"master", required_argument, NULL, 'm'},  {"version", required_argument, NULL, 'v'},
	    {"rules", required_argument, NULL, 'r'},   {NULL, 0, NULL, 0},
	};
	const char *link = NULL, *listen_addr = NULL, *connect_addr = NULL, *master = NULL,
		   *rules = NULL;
	struct pg_seos_sim_card_cfg cfg = {.serial = 1, .version = 1};
	struct pg_gp_card *card = NULL;
	const struct pg_link_ops *ops;
	static uint8_t rbuf[PG_ARA_MAX_DATA];
	uint8_t m[32];
	int o, rc, fd, ml = 0, rl;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'l':
			link = optarg;
			break;
		case 'L':
			listen_addr = optarg;
			break;
		case 'c':
			connect_addr = optarg;
			break;
		case 's':
			cfg.serial = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'm':
			master = optarg;
			break;
		case 'v':
			cfg.version = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'r':
			rules = optarg;
			break;
		default:
			return PG_EXIT_USAGE;
		}
	}
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
	static const struct option opts[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"watch", required_argument, NULL, 'w'},
	    {"keys", required_argument, NULL, 'k'},
	    {"pcsc", no_argument, NULL, 'p'},
	    {"db", required_argument, NULL, 'd'},
	    {"device-key", required_argument, NULL, 'K'},
	    {NULL, 0, NULL, 0},
	};
	struct pg_seos_serve_opts so = {.stop = &stop_flag};
	struct pg_seos_keystore *ks = NULL;
	struct pg_seos_server *srv = NULL;
	const char *keys = NULL;
	int o, rc;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			so.sock = optarg;
			break;
		case 'w':
			so.watch = optarg;
			break;
		case 'k':
			keys = optarg;
			break;
		case 'p':
			so.pcsc = 1;
			break;
		case 'd':
			so.db = optarg;
			break;
		case 'K':
			so.devkey = optarg;
			break;
		default:
			return PG_EXIT_USAGE;
		}
	}
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
	static const struct option opts[] = {
	    {"db", required_argument, NULL, 'd'},
	    {"device-key", required_argument, NULL, 'K'},
	    {"json", no_argument, NULL, 'j'},
	    {NULL, 0, NULL, 0},
	};
	static const char *const hdr[] = {"NAME",    "LINK", "ID",    "STATE",
					  "VERSION", "APPS", "REASON"};
	const char *db = NULL, *dk = NULL;
	struct list_ctx lc = {0};
	struct pg_seos *os;
	int o, json = 0, rc;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'd')
			db = optarg;
		else if (o == 'K')
			dk = optarg;
		else if (o == 'j')
			json = 1;
		else
			return PG_EXIT_USAGE;
	}
	rc = pg_seos_open(&os, db, dk, NULL);
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

static const char *
default_sock(void)
{
	const char *s = getenv("PAYGUARD_SEOS_SOCKET");

	return s ? s : "/tmp/payguard-seos.sock";
}

static int
cmd_seos_readers(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"app", required_argument, NULL, 'a'},
	    {"json", no_argument, NULL, 'j'},
	    {NULL, 0, NULL, 0},
	};
	const char *sock = default_sock(), *app = "payguard-cli";
	struct pg_seos_reader r[64];
	struct pg_seos_client *c;
	size_t n;
	int o, json = 0, rc;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 's')
			sock = optarg;
		else if (o == 'a')
			app = optarg;
		else if (o == 'j')
			json = 1;
		else
			return PG_EXIT_USAGE;
	}
	rc = pg_seos_client_connect(&c, sock, app);
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
	static const struct option opts[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"app", required_argument, NULL, 'a'},
	    {NULL, 0, NULL, 0},
	};
	const char *sock = default_sock(), *app = "payguard-cli";
	struct pg_seos_client *c;
	char h256[65], h1[41], text[512];
	int o, rc;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 's')
			sock = optarg;
		else if (o == 'a')
			app = optarg;
		else
			return PG_EXIT_USAGE;
	}
	rc = pg_seos_client_connect(&c, sock, app);
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
	static const struct option opts[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"app", required_argument, NULL, 'a'},
	    {"reader", required_argument, NULL, 'r'},
	    {"aid", required_argument, NULL, 'A'},
	    {"basic", no_argument, NULL, 'b'},
	    {"p2", required_argument, NULL, 'p'},
	    {NULL, 0, NULL, 0},
	};
	const char *sock = default_sock(), *app = "payguard-cli", *reader = NULL, *aidh = NULL;
	static uint8_t capdu[PG_APDU_MAX_C], rapdu[PG_APDU_MAX_R];
	struct pg_seos_client *c = NULL;
	uint8_t aid[16];
	int o, rc, aid_len = 0, basic = 0;
	unsigned p2 = 0;
	uint32_t sess, ch;
	char *hex = NULL;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			sock = optarg;
			break;
		case 'a':
			app = optarg;
			break;
		case 'r':
			reader = optarg;
			break;
		case 'A':
			aidh = optarg;
			break;
		case 'b':
			basic = 1;
			break;
		case 'p':
			p2 = (unsigned)strtoul(optarg, NULL, 16) & 0xFF;
			break;
		default:
			return PG_EXIT_USAGE;
		}
	}
	if (!reader)
		return pg_cli_usage(argv[0], "--reader NAME is required");
	if (aidh && (aid_len = pg_hex_decode(aid, sizeof(aid), aidh)) < 5)
		return pg_cli_usage(argv[0], "--aid must be 5..16 bytes of hex");
	rc = pg_seos_client_connect(&c, sock, app);
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
	for (int i = optind; i < argc; i++) {
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
	(void)argc;
	(void)argv;
	int rc = pg_seos_demo(stdout);

	return rc < 0 ? pg_cli_fail(rc, "seos demo") : PG_EXIT_OK;
}

const struct pg_cmd pg_cli_seos[] = {
    {"serve", cmd_seos_serve, "run the SE OS daemon (SE detection, authentication, client API)",
     "payguard seos serve --socket PATH [--watch DIR] [--keys FILE] [--pcsc] [--db PATH|URL]\n"
     "                    [--device-key PATH]\n"
     "  --socket      UNIX socket for clients (Open Mobile API calls)\n"
     "  --watch       directory of SE endpoint files NAME.se (lines link=, addr=, kind=sim|vse);\n"
     "                created/removed files attach/detach SEs (inotify)\n"
     "  --keys        key store: 'master KVN HEX' and/or 'se ID KVN ENC MAC DEK' lines\n"
     "  --pcsc        follow PC/SC reader events (SCardGetStatusChange) through pcscd\n"
     "  --db          the store: a SQLite path or postgresql://... (default: the data\n"
     "                directory's payguard.db)\n"
     "  --device-key  the cache MAC key file (default: data directory, mode 0600)\n",
     NULL, NULL},
    {"sim", cmd_seos_sim, "serve a test SE (SCP03 ISD, GET STATUS, ARA-M) on a link's card role",
     "payguard seos sim --link LINK (--listen ADDR | --connect ADDR) --master HEX\n"
     "                  [--serial N] [--version N] [--rules HEX|@FILE]\n"
     "  --link     t0 t1 swp spi i2c ccid, or vpcd with --connect tcp:127.0.0.1:35963\n"
     "  --master   master key; the SE's SCP03 keys are it diversified by the SE identity\n"
     "  --serial   IC serial number (part of the SE identity)\n"
     "  --version  configuration version reported by GET DATA DF50\n"
     "  --rules    ARA-M GET DATA [All] data (FF40...), hex or @file; default: allow all\n",
     NULL, NULL},
    {"list", cmd_seos_list, "show the SE list kept in the store",
     "payguard seos list [--db PATH|URL] [--device-key PATH] [--json]\n", NULL, NULL},
    {"readers", cmd_seos_readers, "list the daemon's readers (SEs) and their states",
     "payguard seos readers [--socket PATH] [--app NAME] [--json]\n", NULL, NULL},
    {"whoami", cmd_seos_whoami, "show the identity (and hashes for ARA-M rules) the daemon sees",
     "payguard seos whoami [--socket PATH] [--app NAME]\n", NULL, NULL},
    {"transmit", cmd_seos_transmit, "open a session and channel, send APDUs, print responses",
     "--reader NAME [--aid HEX] [--basic] [--p2 HEX] [--socket PATH]\n"
     "                       [--app NAME] APDU...\n"
     "  --aid    application to select (default: the default application)\n"
     "  --basic  use the basic channel (default: a logical channel)\n"
     "  --p2     SELECT P2 (hex, default 00)\n",
     NULL, NULL},
    {"demo", cmd_seos_demo, "attach 3 simulated SEs, authenticate, cache miss then hit, a client",
     "payguard seos demo\n", NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};
