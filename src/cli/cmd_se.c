/*
 * `payguard se ...` verbs: thin wrappers over the se library — simulated
 * SEs on any link's card role (seed 7's SEs of every type), APDUs over any
 * host link, the driver table, the converter and the demonstration.
 */
#include "cli.h"
#include "payguard/card.h"
#include "payguard/card_gp.h"
#include "payguard/converter.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/link.h"
#include "payguard/log.h"
#include "payguard/se_pcsc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct pg_link_ops *
need_link(const char *argv0, const char *name)
{
	const struct pg_link_ops *ops = name ? pg_link_find(name) : NULL;

	if (!ops) {
		fprintf(stderr, "%s: unknown or unavailable link '%s'; available:", argv0,
			name ? name : "");
		for (int i = 0; i < PG_LINK_COUNT; i++)
			if (pg_link_drivers[i])
				fprintf(stderr, " %s", pg_link_drivers[i]->name);
		fputc('\n', stderr);
	}
	return ops;
}

/* ---- se sim ---- */

/* Every option of every se verb; each verb's table lists the ones it takes. */
struct se_opts {
	const char *link, *listen, *connect, *serial, *atr, *addr, *script, *pcsc, *vpcd, *reader;
	int once, json, keep_going;
	struct pg_opt_strings applets, ifaces;
};
#define O struct se_opts
static const struct pg_opt sim_opts[] = {
    PG_STR(O, link, "link", "TYPE", "card-role driver (see `payguard se links`)"),
    PG_STR(O, listen, "listen", "ADDR", "serve hosts on unix:PATH or tcp:HOST:PORT, one at a time"),
    PG_STR(O, connect, "connect", "ADDR",
	   "vpcd only: dial vpcd (tcp:127.0.0.1:35963 = reader slot 0)"),
    PG_STR(O, serial, "serial", "N", "IC serial number in the CPLC (default 0x50470001)"),
    PG_STR(O, atr, "atr", "HEX",
	   "answer to reset, checked (default: T=0/T=1 ATR, historical bytes of category 80 "
	   "with \"payguard\" as issuer's data)"),
    PG_STRS(O, applets, "applet", "NAME[@AID]",
	    "a catalogue applet, installed at its default AID or at AID (default: test)"),
    PG_FLAG(O, once, "once", "stop after the first host (or vpcd session) ends"),
    {0}};
static const struct pg_opt transmit_opts[] = {
    PG_STR(O, link, "link", "TYPE", "host-role driver (t0, t1, swp, spi, i2c, ccid, pcsc)"),
    PG_STR(O, addr, "addr", "ADDR", "unix:PATH or tcp:HOST:PORT; for pcsc a reader name or index"),
    PG_FLAG(O, json, "json", "print the ATR and each exchange as JSON"),
    {0}};
static const struct pg_opt links_opts[] = {PG_FLAG(O, json, "json", "print JSON"), {0}};
static const struct pg_opt converter_opts[] = {
    PG_STRS(O, ifaces, "iface", "NAME=LINK:ADDR",
	    "bind an interface: ADDR is unix:PATH, tcp:HOST:PORT, a PC/SC reader (LINK pcsc) or "
	    "'sim' (in-process SE); at least two"),
    PG_STR(O, script, "script", "FILE", "management commands, one per line (default stdin)"),
    PG_FLAG(O, keep_going, "keep-going", "do not stop at the first failed command"),
    {0}};
static const struct pg_opt demo_opts[] = {
    PG_STR(O, pcsc, "pcsc", "auto|yes|no",
	   "include PC/SC via pcscd + vpcd: when present (auto), required, never"),
    PG_STR(O, vpcd, "vpcd", "ADDR", "vpcd address (default tcp:127.0.0.1:35963)"),
    PG_STR(O, reader, "reader", "NAME",
	   "PC/SC reader of that vpcd slot (default \"Virtual PCD 00 00\")"),
    {0}};
#undef O

/* Parses a verb's options; 0, or PG_EXIT_USAGE after a message. With
 * operands 0 any operand is refused. */
static int
parse_opts(int argc, char **argv, const struct pg_opt *tab, struct se_opts *o, int *first,
	   int operands)
{
	int f;

	memset(o, 0, sizeof(*o));
	if (pg_cli_parse(argc, argv, tab, o, &f))
		return PG_EXIT_USAGE;
	if (!operands && f < argc)
		return pg_cli_usage(argv[0], "unexpected argument '%s'", argv[f]);
	if (first)
		*first = f;
	return 0;
}

/*
 * The simulated SE: the GlobalPlatform card of src/se/card (ISD with SCP03
 * under the 40..4F test keys, the catalogue's applets), like every other
 * simulated SE in the project.
 */
static int
sim_card(const struct se_opts *o, uint32_t serial, struct pg_gp_card **card)
{
	static const char *const def_applets[] = {"test"};
	uint8_t atr[PG_ATR_MAX];
	int atr_len = 0, rc;
	struct pg_gp_config cfg = {.serial = serial,
				   .applets = o->applets.n ? o->applets.v : def_applets,
				   .n_applets = o->applets.n ? o->applets.n : 1};

	if (o->atr) {
		atr_len = pg_hex_decode(atr, sizeof(atr), o->atr);
		if (atr_len < 2)
			return pg_cli_fail(atr_len < 0 ? atr_len : PG_EINVAL, "bad --atr '%s'",
					   o->atr);
		cfg.atr = atr;
		cfg.atr_len = (size_t)atr_len;
	}
	/* The card runtime checks a given ATR (TCK, interface and historical bytes) on every
	 * link: a card never answers with an ATR a reader would call wrong. */
	rc = pg_gp_card_new(card, &cfg);
	if (rc < 0 && o->atr && rc != PG_ENOMEM)
		return pg_cli_fail(rc, "--atr %s refused", o->atr);
	if (rc < 0)
		return pg_cli_fail(rc, "cannot create the simulated card%s",
				   o->applets.n ? " (check --applet)" : "");
	return 0;
}

static int
cmd_se_sim(int argc, char **argv)
{
	const struct pg_link_ops *ops;
	struct pg_gp_card *card = NULL;
	uint32_t serial = 0x50470001u;
	struct se_opts o;
	int rc, fd;

	if (parse_opts(argc, argv, sim_opts, &o, NULL, 0))
		return PG_EXIT_USAGE;
	if (pg_cli_u32(argv[0], "serial", o.serial, 0, &serial))
		return PG_EXIT_USAGE;
	if (!(ops = need_link(argv[0], o.link)))
		return PG_EXIT_USAGE;
	if (!ops->card_open)
		return pg_cli_usage(argv[0], "link %s has no card role", ops->name);
	if (!!o.listen == !!o.connect)
		return pg_cli_usage(argv[0], "give exactly one of --listen ADDR or --connect ADDR");
	if (o.connect && ops->type != PG_LINK_VPCD)
		return pg_cli_usage(argv[0], "--connect is for --link vpcd (the card dials vpcd)");
	for (int i = 0; i < o.applets.n; i++) {
		char name[32];
		size_t n = strcspn(o.applets.v[i], "@,");

		snprintf(name, sizeof(name), "%.*s", (int)(n < sizeof(name) ? n : 0),
			 o.applets.v[i]);
		if (!pg_gp_catalogue_known(name))
			return pg_cli_usage(argv[0], "unknown applet '%s' (catalogue: %s)",
					    o.applets.v[i], pg_gp_catalogue_names());
	}
	if ((rc = sim_card(&o, serial, &card)) != 0)
		return rc;
	if (o.connect) {
		fprintf(stderr, "payguard: simulated SE (serial %08lX) dialing vpcd at %s\n",
			(unsigned long)serial, o.connect);
		do
			rc = pg_vpcd_serve(o.connect, pg_gp_card_card(card), 10000, NULL);
		while (rc == 0 && !o.once);
		pg_gp_card_free(card);
		return rc < 0 ? pg_cli_fail(rc, "vpcd session") : PG_EXIT_OK;
	}
	fd = pg_stream_listen(o.listen);
	if (fd < 0) {
		pg_gp_card_free(card);
		return pg_cli_fail(fd, "cannot listen on '%s'", o.listen);
	}
	fprintf(stderr, "payguard: simulated SE (serial %08lX) on link %s listening on %s\n",
		(unsigned long)serial, ops->name, o.listen);
	rc = pg_card_serve_listener(fd, ops, pg_gp_card_card(card), NULL, o.once ? 1 : 0);
	close(fd);
	pg_gp_card_free(card);
	return rc < 0 ? pg_cli_fail(rc, "simulated SE") : PG_EXIT_OK;
}

/* ---- se transmit ---- */

static json_t *
hex_json(const uint8_t *p, size_t n)
{
	char *h = malloc(2 * n + 1);
	json_t *v;

	if (!h)
		return NULL;
	pg_hex_encode(h, p, n);
	v = json_string(h);
	free(h);
	return v;
}

static void
print_hex_line(const char *tag, const uint8_t *p, size_t n)
{
	char *h = malloc(3 * n + 1);

	if (!h)
		return;
	pg_hex_encode_upper(h, p, n, 1);
	printf("%s %s", tag, h);
	free(h);
}

static int
open_host(const struct pg_link_ops *ops, const char *addr, struct pg_link **l)
{
	struct pg_stream *s = NULL;
	int rc;

	if (ops->type != PG_LINK_PCSC) {
		rc = pg_stream_connect(&s, addr, 3000);
		if (rc < 0)
			return rc;
	}
	return ops->host_open(l, s, addr, NULL);
}

static int
cmd_se_transmit(int argc, char **argv)
{
	const struct pg_link_ops *ops;
	struct pg_link *l = NULL;
	uint8_t atr[PG_ATR_MAX], *c = NULL, *r = NULL;
	size_t atrlen = sizeof(atr);
	json_t *root = NULL, *arr = NULL;
	struct se_opts o;
	int rc, ret = PG_EXIT_OK, first, json;
	const char *link, *addr;

	if (parse_opts(argc, argv, transmit_opts, &o, &first, 1))
		return PG_EXIT_USAGE;
	link = o.link;
	addr = o.addr;
	json = o.json;
	if (!(ops = need_link(argv[0], link)))
		return PG_EXIT_USAGE;
	if (!ops->host_open)
		return pg_cli_usage(argv[0], "link %s has no host role", ops->name);
	if (!addr)
		return pg_cli_usage(argv[0], "--addr is required");
	if (first == argc)
		return pg_cli_usage(argv[0], "give at least one APDU in hex");
	c = malloc(PG_APDU_MAX_C);
	r = malloc(PG_APDU_MAX_R);
	if (!c || !r) {
		ret = pg_cli_fail(PG_ENOMEM, "buffers");
		goto out;
	}
	/* Validate every APDU before touching the card. */
	for (int i = first; i < argc; i++) {
		int n = pg_hex_decode(c, PG_APDU_MAX_C, argv[i]);
		struct pg_capdu cap;

		if (n < 0) {
			ret = pg_cli_fail(n, "bad APDU '%s'", argv[i]);
			goto out;
		}
		rc = pg_capdu_parse(&cap, c, (size_t)n);
		if (rc < 0) {
			ret = pg_cli_fail(rc, "bad APDU '%s'", argv[i]);
			goto out;
		}
	}
	rc = open_host(ops, addr, &l);
	if (rc < 0) {
		ret = pg_cli_fail(rc, "cannot open %s link to '%s'", ops->name, addr);
		goto out;
	}
	rc = pg_link_power_on(l, atr, &atrlen);
	if (rc < 0) {
		ret = pg_cli_fail(rc, "no answer to reset on %s '%s'", ops->name, addr);
		goto out;
	}
	if (json) {
		root = json_object();
		arr = json_array();
		json_object_set_new(root, "link", json_string(ops->name));
		json_object_set_new(root, "addr", json_string(addr));
		json_object_set_new(root, "atr", hex_json(atr, atrlen));
		json_object_set(root, "exchanges", arr);
	} else {
		printf("link %s, %s\n", ops->name, addr);
		print_hex_line("ATR", atr, atrlen);
		putchar('\n');
	}
	for (int i = first; i < argc; i++) {
		int n = pg_hex_decode(c, PG_APDU_MAX_C, argv[i]);
		size_t rl = PG_APDU_MAX_R;
		uint16_t sw;

		rc = pg_link_transmit(l, c, (size_t)n, r, &rl);
		if (rc < 0) {
			ret = pg_cli_fail(rc, "transmit");
			goto out;
		}
		sw = pg_rapdu_sw(r, rl);
		if (json) {
			json_t *e = json_object();

			json_object_set_new(e, "capdu", hex_json(c, (size_t)n));
			json_object_set_new(e, "rapdu", hex_json(r, rl));
			json_object_set_new(e, "sw", json_integer(sw));
			json_object_set_new(e, "meaning", json_string(pg_sw_meaning(sw)));
			json_array_append_new(arr, e);
		} else {
			print_hex_line(">>", c, (size_t)n);
			putchar('\n');
			print_hex_line("<<", r, rl);
			printf("   [%04X: %s]\n", sw, pg_sw_meaning(sw));
		}
	}
	if (json) {
		ret = pg_cli_print_json(root);
		root = NULL;
	}
out:
	json_decref(arr);
	json_decref(root);
	pg_link_close(l);
	free(c);
	free(r);
	return ret;
}

/* ---- se links ---- */

static int
cmd_se_links(int argc, char **argv)
{
	static const char *const hdr[] = {"link", "host role", "card role", "max C-APDU",
					  "max R-APDU"};
	struct se_opts so;
	json_t *arr;
	struct pg_table *t;
	int json;

	if (parse_opts(argc, argv, links_opts, &so, NULL, 0))
		return PG_EXIT_USAGE;
	json = so.json;
	arr = json ? json_array() : NULL;
	t = json ? NULL : pg_table_new(5, hdr);
	if (json ? !arr : !t)
		return pg_cli_fail(PG_ENOMEM, "links");
	for (int i = 0; i < PG_LINK_COUNT; i++) {
		const struct pg_link_ops *o = pg_link_drivers[i];
		char mc[24], mr[24];

		if (!o)
			continue;
		snprintf(mc, sizeof(mc), "%zu", o->max_capdu);
		snprintf(mr, sizeof(mr), "%zu", o->max_rapdu);
		if (json) {
			json_t *e = json_object();

			json_object_set_new(e, "name", json_string(o->name));
			json_object_set_new(e, "host", json_boolean(o->host_open != NULL));
			json_object_set_new(e, "card", json_boolean(o->card_open != NULL));
			json_object_set_new(e, "max_capdu", json_integer((json_int_t)o->max_capdu));
			json_object_set_new(e, "max_rapdu", json_integer((json_int_t)o->max_rapdu));
			json_array_append_new(arr, e);
		} else {
			const char *row[] = {o->name, o->host_open ? "yes" : "no",
					     o->card_open ? "yes" : "no", mc, mr};

			pg_table_add(t, row);
		}
	}
	if (json)
		return pg_cli_print_json(arr);
	pg_table_print(t);
	pg_table_free(t);
	return PG_EXIT_OK;
}

/* ---- se converter ---- */

struct conv_cli {
	struct pg_conv *conv;
	struct pg_gp_card *cards[64];
	int ncards;
};

/* NAME=LINK:ADDR (socket or reader) or NAME=LINK:sim (in-process simulated SE). */
static int
conv_attach_spec(struct conv_cli *cc, const char *spec)
{
	char name[PG_CONV_NAME_MAX], link[16];
	const char *eq = strchr(spec, '='), *colon = eq ? strchr(eq + 1, ':') : NULL;
	const struct pg_link_ops *ops;

	if (!eq || !colon || eq == spec || (size_t)(eq - spec) >= sizeof(name) ||
	    (size_t)(colon - eq - 1) >= sizeof(link))
		return pg_error(PG_EUSAGE, "se", "interface '%s': want NAME=LINK:ADDR", spec);
	memcpy(name, spec, (size_t)(eq - spec));
	name[eq - spec] = '\0';
	memcpy(link, eq + 1, (size_t)(colon - eq - 1));
	link[colon - eq - 1] = '\0';
	ops = pg_link_find(link);
	if (!ops)
		return pg_error(PG_EUSAGE, "se", "interface '%s': unknown link '%s'", name, link);
	if (strcmp(colon + 1, "sim") == 0) {
		struct pg_link *l = NULL;
		int rc;

		static const char *const applets[] = {"test"};
		struct pg_gp_config cfg = {.serial = 0x50470100u + (uint32_t)cc->ncards,
					   .applets = applets,
					   .n_applets = 1};

		if (cc->ncards >= 64)
			return pg_error(PG_ERANGE, "se", "too many simulated SEs");
		rc = pg_gp_card_new(&cc->cards[cc->ncards], &cfg);
		if (rc < 0)
			return rc;
		rc = pg_link_open_memory(&l, ops, pg_gp_card_card(cc->cards[cc->ncards++]), NULL);
		if (rc < 0)
			return rc;
		return pg_conv_attach(cc->conv, name, l);
	}
	return pg_conv_attach_addr(cc->conv, name, ops, colon + 1, NULL);
}

/* One management line: open A B | close CH | send CH A|B HEX | detach NAME | probe | list. */
static int
conv_line(struct conv_cli *cc, char *line, int lineno)
{
	char *argv[4];
	int n = 0, rc;
	char *save = NULL;

	for (char *t = strtok_r(line, " \t\r\n", &save); t && n < 4;
	     t = strtok_r(NULL, " \t\r\n", &save))
		argv[n++] = t;
	if (n == 0 || argv[0][0] == '#')
		return 0;
	if (strcmp(argv[0], "open") == 0 && n == 3) {
		rc = pg_conv_open(cc->conv, argv[1], argv[2]);
		if (rc > 0)
			printf("ok channel %d\n", rc);
	} else if (strcmp(argv[0], "close") == 0 && n == 2) {
		rc = pg_conv_close(cc->conv, atoi(argv[1]));
	} else if (strcmp(argv[0], "detach") == 0 && n == 2) {
		rc = pg_conv_detach(cc->conv, argv[1]);
	} else if (strcmp(argv[0], "probe") == 0 && n == 1) {
		rc = pg_conv_probe(cc->conv);
		if (rc >= 0)
			printf("ok %d failed\n", rc);
	} else if (strcmp(argv[0], "list") == 0 && n == 1) {
		struct pg_conv_iface_info info;

		for (int i = 0; pg_conv_iface(cc->conv, i, &info) == 0; i++)
			printf("iface %s %s %s %llu\n", info.name, info.link,
			       info.state == 0 ? "live" : pg_errname(info.state),
			       (unsigned long long)info.apdus);
		rc = 0;
	} else if (strcmp(argv[0], "send") == 0 && n == 4 &&
		   (strcmp(argv[2], "A") == 0 || strcmp(argv[2], "B") == 0)) {
		static uint8_t c[PG_APDU_MAX_C], r[PG_APDU_MAX_R];
		size_t rl = sizeof(r);
		int len = pg_hex_decode(c, sizeof(c), argv[3]);

		rc = len < 0 ? len
			     : pg_conv_transmit(cc->conv, atoi(argv[1]),
						argv[2][0] == 'A' ? PG_CONV_A : PG_CONV_B, c,
						(size_t)len, r, &rl);
	} else {
		fprintf(stderr,
			"payguard: line %d: unknown command (open A B | close CH | send "
			"CH A|B HEX | detach NAME | probe | list)\n",
			lineno);
		return PG_EUSAGE;
	}
	if (rc < 0)
		printf("error line %d: %s\n", lineno,
		       pg_last_error()[0] ? pg_last_error() : pg_strerror(rc));
	return rc < 0 ? rc : 0;
}

static int
cmd_se_converter(int argc, char **argv)
{
	struct conv_cli cc = {0};
	const char *script;
	char *line = NULL;
	size_t linecap = 0;
	ssize_t got;
	FILE *in = NULL;
	struct se_opts o;
	int rc, ret = PG_EXIT_OK, lineno = 0;

	if (parse_opts(argc, argv, converter_opts, &o, NULL, 0))
		return PG_EXIT_USAGE;
	if (o.ifaces.n < 2)
		return pg_cli_usage(argv[0], "give at least two --iface NAME=LINK:ADDR");
	script = o.script ? o.script : "-";
	rc = pg_conv_new(&cc.conv);
	if (rc < 0)
		return pg_cli_fail(rc, "converter");
	pg_conv_set_trace(cc.conv, pg_conv_trace_file, stdout);
	for (int i = 0; i < o.ifaces.n; i++) {
		rc = conv_attach_spec(&cc, o.ifaces.v[i]);
		if (rc < 0) {
			ret = pg_cli_fail(rc, "cannot attach '%s'", o.ifaces.v[i]);
			goto out;
		}
	}
	in = strcmp(script, "-") == 0 ? stdin : fopen(script, "r");
	if (!in) {
		ret = pg_cli_fail(PG_ENOENT, "cannot open script '%s'", script);
		goto out;
	}
	while ((got = getline(&line, &linecap, in)) >= 0) {
		lineno++;
		if ((size_t)got > 2 * PG_APDU_MAX_C + 64) {
			ret = pg_cli_fail(PG_ETOOBIG, "script line %d", lineno);
			goto out;
		}
		rc = conv_line(&cc, line, lineno);
		if (rc == PG_EUSAGE) {
			ret = PG_EXIT_USAGE;
			goto out;
		}
		if (rc < 0 && !o.keep_going) {
			ret = pg_cli_exit_code(rc);
			goto out;
		}
	}
out:
	if (in && in != stdin)
		fclose(in);
	free(line);
	pg_conv_free(cc.conv);
	for (int i = 0; i < cc.ncards; i++)
		pg_gp_card_free(cc.cards[i]);
	return ret;
}

/* ---- se demo ---- */

static int
cmd_se_demo(int argc, char **argv)
{
	struct pg_se_demo_opts d = {.pcsc = -1};
	struct se_opts o;
	int rc;

	if (parse_opts(argc, argv, demo_opts, &o, NULL, 0))
		return PG_EXIT_USAGE;
	if (o.pcsc && strcmp(o.pcsc, "auto") == 0)
		d.pcsc = -1;
	else if (o.pcsc && strcmp(o.pcsc, "no") == 0)
		d.pcsc = 0;
	else if (o.pcsc && strcmp(o.pcsc, "yes") == 0)
		d.pcsc = 1;
	else if (o.pcsc)
		return pg_cli_usage(argv[0], "--pcsc takes auto, yes or no");
	d.vpcd_addr = o.vpcd;
	d.reader = o.reader;
	rc = pg_se_demo(stdout, &d);
	return rc < 0 ? pg_cli_fail(rc, "se demo") : PG_EXIT_OK;
}

const struct pg_cmd pg_cli_se[] = {
    {"sim", cmd_se_sim, "run a simulated SE (a GlobalPlatform card) on a link's card role",
     "Give exactly one of --listen and --connect. The card is src/se/card's\n"
     "GlobalPlatform card: ISD with SCP03 (test keys 40..4F) and the catalogue\n"
     "applets named by --applet (ppse, payment, pin, test, aram, echo, transit).",
     sim_opts, NULL},
    {"transmit", cmd_se_transmit, "send APDUs over a host link and print the exchange",
     "APDU is a command APDU in hex (spaces allowed inside one argument); every\n"
     "APDU is checked before the link is opened.",
     transmit_opts, "APDU..."},
    {"links", cmd_se_links, "list the link drivers and their roles", NULL, links_opts, NULL},
    {"converter", cmd_se_converter, "run the protocol converter over a management script",
     "Script lines: open A B | close CH | send CH A|B HEX | detach NAME | probe | list.",
     converter_opts, NULL},
    {"demo", cmd_se_demo, "simulated SEs of every link type talking through the converter", NULL,
     demo_opts, NULL},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};
