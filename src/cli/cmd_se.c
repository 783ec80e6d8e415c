/*
 * `payguard se ...` verbs: thin wrappers over the se library — simulated
 * SEs on any link's card role (seed 7's SEs of every type), APDUs over any
 * host link, the driver table, the converter and the demonstration.
 */
#include "cli.h"
#include "payguard/card.h"
#include "payguard/converter.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/link.h"
#include "payguard/log.h"
#include "payguard/se_pcsc.h"

#include <getopt.h>
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

static int
cmd_se_sim(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"link", required_argument, NULL, 'l'},
	    {"listen", required_argument, NULL, 'L'},
	    {"connect", required_argument, NULL, 'c'},
	    {"serial", required_argument, NULL, 's'},
	    {"atr", required_argument, NULL, 'a'},
	    {"once", no_argument, NULL, '1'},
	    {NULL, 0, NULL, 0},
	};
	const char *link = NULL, *listen_addr = NULL, *connect_addr = NULL, *atr_hex = NULL;
	const struct pg_link_ops *ops;
	struct pg_card_rt *rt = NULL;
	uint8_t atr[PG_ATR_MAX];
	unsigned long serial = 0x50470001ul;
	int atr_len = 0, once = 0, o, rc, fd;

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
		case 's': {
			char *end;

			serial = strtoul(optarg, &end, 0);
			if (*end || serial > 0xFFFFFFFFul)
				return pg_cli_usage(argv[0], "bad --serial '%s'", optarg);
			break;
		}
		case 'a':
			atr_hex = optarg;
			break;
		case '1':
			once = 1;
			break;
		default:
			return PG_EXIT_USAGE;
		}
	}
	if (optind != argc)
		return pg_cli_usage(argv[0], "unexpected argument '%s'", argv[optind]);
	if (!(ops = need_link(argv[0], link)))
		return PG_EXIT_USAGE;
	if (!ops->card_open)
		return pg_cli_usage(argv[0], "link %s has no card role", ops->name);
	if (!!listen_addr == !!connect_addr)
		return pg_cli_usage(argv[0], "give exactly one of --listen ADDR or --connect ADDR");
	if (connect_addr && ops->type != PG_LINK_VPCD)
		return pg_cli_usage(argv[0], "--connect is for --link vpcd (the card dials vpcd)");
	if (atr_hex) {
		atr_len = pg_hex_decode(atr, sizeof(atr), atr_hex);
		if (atr_len < 2)
			return pg_cli_fail(atr_len < 0 ? atr_len : PG_EINVAL, "bad --atr '%s'",
					   atr_hex);
	}
	/* The card runtime checks a given ATR (TCK, interface and historical bytes) on every
	 * link: a card never answers with an ATR a reader would call wrong. */
	rc = pg_card_sim_new(&rt, (uint32_t)serial, atr_hex ? atr : NULL, (size_t)atr_len);
	if (rc < 0 && atr_hex)
		return pg_cli_fail(rc, "--atr %s refused", atr_hex);
	if (rc < 0)
		return pg_cli_fail(rc, "cannot create the simulated card");
	if (connect_addr) {
		fprintf(stderr, "payguard: simulated SE (serial %08lX) dialing vpcd at %s\n",
			serial, connect_addr);
		do
			rc = pg_vpcd_serve(connect_addr, pg_card_rt_card(rt), 10000, NULL);
		while (rc == 0 && !once);
		pg_card_rt_free(rt);
		return rc < 0 ? pg_cli_fail(rc, "vpcd session") : PG_EXIT_OK;
	}
	fd = pg_stream_listen(listen_addr);
	if (fd < 0) {
		pg_card_rt_free(rt);
		return pg_cli_fail(fd, "cannot listen on '%s'", listen_addr);
	}
	fprintf(stderr, "payguard: simulated SE (serial %08lX) on link %s listening on %s\n",
		serial, ops->name, listen_addr);
	rc = pg_card_serve_listener(fd, ops, pg_card_rt_card(rt), NULL, once ? 1 : 0);
	close(fd);
	pg_card_rt_free(rt);
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
	static const struct option opts[] = {
	    {"link", required_argument, NULL, 'l'},
	    {"addr", required_argument, NULL, 'a'},
	    {"json", no_argument, NULL, 'j'},
	    {NULL, 0, NULL, 0},
	};
	const char *link = NULL, *addr = NULL;
	const struct pg_link_ops *ops;
	struct pg_link *l = NULL;
	uint8_t atr[PG_ATR_MAX], *c = NULL, *r = NULL;
	size_t atrlen = sizeof(atr);
	json_t *root = NULL, *arr = NULL;
	int json = 0, o, rc, ret = PG_EXIT_OK;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'l':
			link = optarg;
			break;
		case 'a':
			addr = optarg;
			break;
		case 'j':
			json = 1;
			break;
		default:
			return PG_EXIT_USAGE;
		}
	}
	if (!(ops = need_link(argv[0], link)))
		return PG_EXIT_USAGE;
	if (!ops->host_open)
		return pg_cli_usage(argv[0], "link %s has no host role", ops->name);
	if (!addr)
		return pg_cli_usage(argv[0], "--addr is required");
	if (optind == argc)
		return pg_cli_usage(argv[0], "give at least one APDU in hex");
	c = malloc(PG_APDU_MAX_C);
	r = malloc(PG_APDU_MAX_R);
	if (!c || !r) {
		ret = pg_cli_fail(PG_ENOMEM, "buffers");
		goto out;
	}
	/* Validate every APDU before touching the card. */
	for (int i = optind; i < argc; i++) {
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
	for (int i = optind; i < argc; i++) {
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
	int json = argc > 1 && strcmp(argv[1], "--json") == 0;
	json_t *arr = json ? json_array() : NULL;
	struct pg_table *t = json ? NULL : pg_table_new(5, hdr);

	if (argc > 1 + json)
		return pg_cli_usage(argv[0], "unexpected argument '%s'", argv[1 + json]);
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
	struct pg_card_rt *cards[64];
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

		if (cc->ncards >= 64)
			return pg_error(PG_ERANGE, "se", "too many simulated SEs");
		rc = pg_card_sim_new(&cc->cards[cc->ncards], 0x50470100u + (uint32_t)cc->ncards,
				     NULL, 0);
		if (rc < 0)
			return rc;
		rc = pg_link_open_memory(&l, ops, pg_card_rt_card(cc->cards[cc->ncards++]), NULL);
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
	static const struct option opts[] = {
	    {"iface", required_argument, NULL, 'i'},
	    {"script", required_argument, NULL, 's'},
	    {"keep-going", no_argument, NULL, 'k'},
	    {NULL, 0, NULL, 0},
	};
	struct conv_cli cc = {0};
	const char *script = "-";
	char *line = NULL;
	size_t linecap = 0;
	ssize_t got;
	FILE *in = NULL;
	int o, rc, ret = PG_EXIT_OK, keep = 0, lineno = 0, any = 0;
	char **specs = calloc((size_t)argc, sizeof(*specs));

	if (!specs)
		return pg_cli_fail(PG_ENOMEM, "converter");
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'i':
			specs[any++] = optarg;
			break;
		case 's':
			script = optarg;
			break;
		case 'k':
			keep = 1;
			break;
		default:
			free(specs);
			return PG_EXIT_USAGE;
		}
	}
	if (optind != argc || any < 2) {
		free(specs);
		return pg_cli_usage(argv[0], "give at least two --iface NAME=LINK:ADDR");
	}
	rc = pg_conv_new(&cc.conv);
	if (rc < 0) {
		free(specs);
		return pg_cli_fail(rc, "converter");
	}
	pg_conv_set_trace(cc.conv, pg_conv_trace_file, stdout);
	for (int i = 0; i < any; i++) {
		rc = conv_attach_spec(&cc, specs[i]);
		if (rc < 0) {
			ret = pg_cli_fail(rc, "cannot attach '%s'", specs[i]);
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
		if (rc < 0 && !keep) {
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
		pg_card_rt_free(cc.cards[i]);
	free(specs);
	return ret;
}

/* ---- se demo ---- */

static int
cmd_se_demo(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"pcsc", required_argument, NULL, 'p'},
	    {"vpcd", required_argument, NULL, 'v'},
	    {"reader", required_argument, NULL, 'r'},
	    {NULL, 0, NULL, 0},
	};
	struct pg_se_demo_opts d = {.pcsc = -1};
	int o, rc;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'p':
			if (strcmp(optarg, "auto") == 0)
				d.pcsc = -1;
			else if (strcmp(optarg, "no") == 0)
				d.pcsc = 0;
			else if (strcmp(optarg, "yes") == 0)
				d.pcsc = 1;
			else
				return pg_cli_usage(argv[0], "--pcsc takes auto, yes or no");
			break;
		case 'v':
			d.vpcd_addr = optarg;
			break;
		case 'r':
			d.reader = optarg;
			break;
		default:
			return PG_EXIT_USAGE;
		}
	}
	if (optind != argc)
		return pg_cli_usage(argv[0], "unexpected argument '%s'", argv[optind]);
	rc = pg_se_demo(stdout, &d);
	return rc < 0 ? pg_cli_fail(rc, "se demo") : PG_EXIT_OK;
}

const struct pg_cmd pg_cli_se[] = {
    {"sim", cmd_se_sim, "run a simulated SE on a link's card role",
     "--link TYPE (--listen ADDR | --connect ADDR) [options]\n"
     "  --link TYPE      card-role driver (see `payguard se links`)\n"
     "  --listen ADDR    serve hosts on unix:PATH or tcp:HOST:PORT, one at a time\n"
     "  --connect ADDR   vpcd only: dial vpcd (tcp:127.0.0.1:35963 = reader slot 0)\n"
     "  --serial N       IC serial number in the CPLC (default 0x50470001)\n"
     "  --atr HEX        answer to reset, checked (default: T=0/T=1 ATR, historical\n"
     "                   bytes of category 80 with \"payguard\" as issuer's data)\n"
     "  --once           stop after the first host (or vpcd session) ends\n",
     NULL, NULL},
    {"transmit", cmd_se_transmit, "send APDUs over a host link and print the exchange",
     "--link TYPE --addr ADDR [--json] APDU...\n"
     "  --link TYPE   host-role driver (t0, t1, swp, spi, i2c, ccid, pcsc)\n"
     "  --addr ADDR   unix:PATH or tcp:HOST:PORT; for pcsc a reader name or index\n"
     "  --json        print the ATR and each exchange as JSON\n"
     "  APDU          command APDU in hex (spaces allowed inside one argument)\n",
     NULL, NULL},
    {"links", cmd_se_links, "list the link drivers and their roles", "[--json]\n", NULL, NULL},
    {"converter", cmd_se_converter, "run the protocol converter over a management script",
     "--iface NAME=LINK:ADDR --iface ... [--script FILE] "
     "[--keep-going]\n"
     "  --iface NAME=LINK:ADDR  bind an interface: ADDR is unix:PATH, tcp:HOST:PORT,\n"
     "                          a PC/SC reader (LINK pcsc) or 'sim' (in-process SE)\n"
     "  --script FILE           management commands (default stdin), one per line:\n"
     "                          open A B | close CH | send CH A|B HEX | detach NAME |\n"
     "                          probe | list\n"
     "  --keep-going            do not stop at the first failed command\n",
     NULL, NULL},
    {"demo", cmd_se_demo, "simulated SEs of every link type talking through the converter",
     "[--pcsc auto|yes|no] [--vpcd ADDR] [--reader NAME]\n"
     "  --pcsc     include PC/SC via pcscd + vpcd: when present (auto), required, never\n"
     "  --vpcd     vpcd address (default tcp:127.0.0.1:35963)\n"
     "  --reader   PC/SC reader of that vpcd slot (default \"Virtual PCD 00 00\")\n",
     NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};
