/*
 * `payguard nfcswitch ...` verbs (issue 8): thin wrappers over the nfcswitch
 * library — serve the switch's slave port, print the routing table, play a
 * contactless reader through a simulated NFC controller, the demo, and demo
 * SEs with payment/transit applets on any link's card role.
 */
#include "cli.h"
#include "payguard/card.h"
#include "payguard/card_gp.h"
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/hex.h"
#include "payguard/link.h"
#include "payguard/log.h"
#include "payguard/nfcswitch.h"
#include "payguard/se_pcsc.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int
load_config(const char *argv0, const char *path, struct pg_nfcsw **sw, int timeout_ms)
{
	struct pg_nfcsw_conf conf;
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	int rc;

	if (!path)
		return pg_cli_usage(argv0, "--config FILE is required");
	f = fopen(path, "rb");
	if (!f)
		return pg_cli_fail(PG_ENOENT, "cannot open '%s'", path);
	text = malloc(PG_NFCSW_CONF_MAX_BYTES + 1);
	if (text)
		len = fread(text, 1, PG_NFCSW_CONF_MAX_BYTES + 1, f);
	fclose(f);
	if (!text)
		return pg_cli_fail(PG_ENOMEM, "reading '%s'", path);
	rc = pg_nfcsw_conf_parse(&conf, text, len);
	free(text);
	if (rc < 0)
		return pg_cli_fail(rc, "%s", path);
	rc = pg_nfcsw_new(sw);
	if (rc >= 0)
		rc = pg_nfcsw_apply(*sw, &conf, timeout_ms);
	pg_nfcsw_conf_release(&conf);
	if (rc < 0) {
		pg_nfcsw_free(*sw);
		*sw = NULL;
		return pg_cli_fail(rc, "configuring the switch from '%s'", path);
	}
	return 0;
}

static int
print_routes(struct pg_nfcsw *sw, int json)
{
	static const char *const sh[] = {"SE",	 "LINK", "ADDRESS", "STATE",
					 "PRIO", "APPS", "REGISTRY"};
	static const char *const ah[] = {"AID",	 "SE",	  "PRIO", "LIFE CYCLE",
					 "TYPE", "LABEL", "ROUTE"};
	struct pg_nfcsw_se_info ses[PG_NFCSW_MAX_SES];
	struct pg_nfcsw_app *apps = NULL;
	size_t ns = 0, na = 0;
	int rc = pg_nfcsw_ses(sw, ses, PG_NFCSW_MAX_SES, &ns);

	if (rc >= 0)
		rc = pg_nfcsw_apps(sw, &apps, &na);
	if (rc < 0)
		return pg_cli_fail(rc, "routing table");
	if (json) {
		json_t *o = json_object(), *js = json_array(), *ja = json_array();

		for (size_t i = 0; i < ns; i++)
			json_array_append_new(
			    js,
			    json_pack("{s:s,s:s,s:s,s:s,s:i,s:i,s:s}", "name", ses[i].name, "link",
				      ses[i].link, "addr", ses[i].addr, "state", ses[i].state,
				      "priority", ses[i].priority, "apps", ses[i].apps, "registry",
				      ses[i].source ? ses[i].source : "-"));
		for (size_t i = 0; i < na; i++) {
			char h[33];
			struct pg_nfcsw_app w;
			int r = pg_nfcsw_route(sw, apps[i].aid, apps[i].aid_len, 0, &w);

			pg_hex_encode_upper(h, apps[i].aid, apps[i].aid_len, 0);
			json_array_append_new(
			    ja, json_pack("{s:s,s:s,s:i,s:i,s:b,s:s,s:s}", "aid", h, "se",
					  pg_nfcsw_se_name(sw, apps[i].se), "priority",
					  apps[i].priority, "lifecycle", apps[i].lifecycle,
					  "payment", !!(apps[i].flags & PG_NFCSW_APP_PAYMENT),
					  "label", apps[i].label, "route",
					  r == PG_EEXIST ? "refused"
					  : r >= 0 && w.se == apps[i].se && w.seq == apps[i].seq
					      ? "active"
					      : "shadowed"));
		}
		json_object_set_new(o, "policy",
				    json_string(pg_nfcsw_policy_name(pg_nfcsw_policy(sw))));
		json_object_set_new(o, "ses", js);
		json_object_set_new(o, "apps", ja);
		free(apps);
		return pg_cli_print_json(o) < 0 ? PG_EXIT_FAIL : PG_EXIT_OK;
	}
	struct pg_table *t = pg_table_new(7, sh);

	for (size_t i = 0; t && i < ns; i++) {
		char p[8], a[16];

		snprintf(p, sizeof(p), "%d", ses[i].priority);
		snprintf(a, sizeof(a), "%d", ses[i].apps);
		const char *row[] = {ses[i].name, ses[i].link, ses[i].addr,  ses[i].state,
				     p,		  a,	       ses[i].source};
		pg_table_add(t, row);
	}
	printf("policy: %s\n", pg_nfcsw_policy_name(pg_nfcsw_policy(sw)));
	pg_table_print(t);
	pg_table_free(t);
	printf("\n");
	t = pg_table_new(7, ah);
	for (size_t i = 0; t && i < na; i++) {
		char h[33], p[8], lc[8];
		struct pg_nfcsw_app w;
		int r = pg_nfcsw_route(sw, apps[i].aid, apps[i].aid_len, 0, &w);

		pg_hex_encode_upper(h, apps[i].aid, apps[i].aid_len, 0);
		snprintf(p, sizeof(p), "%u", apps[i].priority);
		snprintf(lc, sizeof(lc), "%02X", apps[i].lifecycle);
		const char *row[] = {h,
				     pg_nfcsw_se_name(sw, apps[i].se),
				     p,
				     lc,
				     apps[i].flags & PG_NFCSW_APP_PAYMENT ? "payment" : "other",
				     apps[i].label[0] ? apps[i].label : NULL,
				     r == PG_EEXIST ? "refused (conflict)"
				     : r >= 0 && w.se == apps[i].se && w.seq == apps[i].seq
					 ? "active"
					 : "shadowed"};
		pg_table_add(t, row);
	}
	pg_table_print(t);
	pg_table_free(t);
	free(apps);
	return PG_EXIT_OK;
}

static int
cmd_routes(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"json", no_argument, NULL, 'j'},
					     {NULL, 0, NULL, 0}};
	const char *config = NULL;
	struct pg_nfcsw *sw = NULL;
	int json = 0, o, rc;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'c')
			config = optarg;
		else if (o == 'j')
			json = 1;
		else
			return PG_EXIT_USAGE;
	}
	if (optind != argc)
		return pg_cli_usage(argv[0], "unexpected argument '%s'", argv[optind]);
	if ((rc = load_config(argv[0], config, &sw, 3000)) != 0)
		return rc;
	rc = print_routes(sw, json);
	pg_nfcsw_free(sw);
	return rc;
}

static int
cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},	  {"listen", required_argument, NULL, 'L'},
	    {"vpcd", required_argument, NULL, 'v'},	  {"once", no_argument, NULL, '1'},
	    {"refresh-ms", required_argument, NULL, 'r'}, {NULL, 0, NULL, 0}};
	const char *config = NULL, *listen_addr = NULL, *vpcd = NULL;
	struct pg_nfcsw *sw = NULL;
	int once = 0, o, rc, fd, refresh_ms = 0;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			config = optarg;
			break;
		case 'L':
			listen_addr = optarg;
			break;
		case 'v':
			vpcd = optarg;
			break;
		case '1':
			once = 1;
			break;
		case 'r':
			refresh_ms = atoi(optarg);
			if (refresh_ms < 100)
				return pg_cli_usage(argv[0], "--refresh-ms must be >= 100");
			break;
		default:
			return PG_EXIT_USAGE;
		}
	}
	if (optind != argc)
		return pg_cli_usage(argv[0], "unexpected argument '%s'", argv[optind]);
	if (!!listen_addr == !!vpcd)
		return pg_cli_usage(argv[0],
				    "give exactly one of --listen ADDR or --vpcd HOST:PORT");
	if ((rc = load_config(argv[0], config, &sw, 3000)) != 0)
		return rc;
	if (refresh_ms && (rc = pg_nfcsw_start_refresh(sw, refresh_ms)) < 0) {
		pg_nfcsw_free(sw);
		return pg_cli_fail(rc, "refresh");
	}
	if (vpcd) {
		fprintf(stderr, "payguard: NFC switch as a contactless card, dialing vpcd at %s\n",
			vpcd);
		do
			rc = pg_vpcd_serve(vpcd, pg_nfcsw_card(sw), 10000, NULL);
		while (rc == 0 && !once);
		pg_nfcsw_free(sw);
		return rc < 0 ? pg_cli_fail(rc, "vpcd session") : PG_EXIT_OK;
	}
	fd = pg_stream_listen(listen_addr);
	if (fd < 0) {
		pg_nfcsw_free(sw);
		return pg_cli_fail(fd, "cannot listen on '%s'", listen_addr);
	}
	fprintf(stderr, "payguard: NFC switch slave port (SWP card RF gates) listening on %s\n",
		listen_addr);
	rc = 0;
	for (int n = 0; !once || n < 1; n++) {
		struct pg_nfcsw_slave *s = NULL;
		int cfd = accept(fd, NULL, NULL);

		if (cfd < 0) {
			rc = pg_error(PG_ESYS, "nfcswitch", "accept failed");
			break;
		}
		if ((rc = pg_nfcsw_slave_new(&s, sw)) < 0) {
			close(cfd);
			break;
		}
		rc = pg_stream_serve_fd(cfd, pg_nfcsw_slave_packet, s);
		pg_nfcsw_field_off(sw);
		pg_nfcsw_slave_free(s);
		pg_info("nfcswitch", "NFC controller disconnected (%s)",
			rc < 0 ? pg_strerror(rc) : "ok");
		rc = 0;
	}
	close(fd);
	pg_nfcsw_free(sw);
	return rc < 0 ? pg_cli_fail(rc, "serve") : PG_EXIT_OK;
}

/*
 * Script lines: "field on", "field off", "apdu HEX [SW]" (SW: expected status
 * word, e.g. 9000 or 6A82), "#" comments.
 */
static int
cmd_simulate(int argc, char **argv)
{
	static const struct option opts[] = {{"connect", required_argument, NULL, 'c'},
					     {"script", required_argument, NULL, 's'},
					     {"json", no_argument, NULL, 'j'},
					     {NULL, 0, NULL, 0}};
	const char *addr = NULL, *script = NULL;
	struct pg_nfcsw_clf *clf = NULL;
	struct pg_stream *st = NULL;
	json_t *log = NULL;
	char line[1200];
	int json = 0, o, rc, failures = 0, lineno = 0;
	FILE *f;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'c')
			addr = optarg;
		else if (o == 's')
			script = optarg;
		else if (o == 'j')
			json = 1;
		else
			return PG_EXIT_USAGE;
	}
	if (!addr || !script || optind != argc)
		return pg_cli_usage(argv[0], "--connect ADDR and --script FILE are required");
	f = strcmp(script, "-") ? fopen(script, "r") : stdin;
	if (!f)
		return pg_cli_fail(PG_ENOENT, "cannot open '%s'", script);
	if ((rc = pg_stream_connect(&st, addr, 3000)) < 0) {
		rc = pg_cli_fail(rc, "cannot reach the switch at %s", addr);
		goto out;
	}
	rc = pg_nfcsw_clf_open(&clf, st, 3000);
	if (rc < 0) {
		rc = pg_cli_fail(rc, "NFC controller link");
		goto out;
	}
	if (json)
		log = json_array();
	while (fgets(line, sizeof(line), f)) {
		char *p = line, *hex, *exp;
		uint8_t c[520], r[PG_APDU_MAX_R];
		size_t rl = sizeof(r);
		int n;

		lineno++;
		line[strcspn(line, "\r\n#")] = 0;
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			continue;
		if (!strcmp(p, "field on") || !strcmp(p, "field off")) {
			rc = p[7] == 'n' ? pg_nfcsw_clf_field_on(clf) : pg_nfcsw_clf_field_off(clf);
			if (rc < 0) {
				rc = pg_cli_fail(rc, "line %d", lineno);
				goto out;
			}
			if (!json)
				printf("-- %s\n", p);
			continue;
		}
		if (strncmp(p, "apdu ", 5)) {
			rc = pg_cli_fail(PG_EFORMAT, "%s line %d: field on|field off|apdu HEX [SW]",
					 script, lineno);
			goto out;
		}
		hex = strtok(p + 5, " \t");
		exp = strtok(NULL, " \t");
		n = hex ? pg_hex_decode(c, sizeof(c), hex) : PG_EFORMAT;
		if (n < 4) {
			rc = pg_cli_fail(n < 0 ? n : PG_EFORMAT, "%s line %d: bad APDU", script,
					 lineno);
			goto out;
		}
		rc = pg_nfcsw_clf_transceive(clf, c, (size_t)n, r, &rl);
		if (rc < 0) {
			rc = pg_cli_fail(rc, "line %d: no answer", lineno);
			goto out;
		}
		{
			char *hc = malloc(2 * (size_t)n + 1), *hr = malloc(2 * rl + 1),
			     want[8] = "";
			uint16_t sw = pg_rapdu_sw(r, rl);
			int bad = 0;

			if (!hc || !hr) {
				free(hc), free(hr);
				rc = pg_cli_fail(PG_ENOMEM, "transcript");
				goto out;
			}
			pg_hex_encode_upper(hc, c, (size_t)n, 0);
			pg_hex_encode_upper(hr, r, rl, 0);
			if (exp) {
				snprintf(want, sizeof(want), "%04X", sw);
				bad = strcasecmp(want, exp) != 0;
				failures += bad;
			}
			if (json)
				json_array_append_new(log, json_pack("{s:s,s:s,s:b}", "capdu", hc,
								     "rapdu", hr, "ok", !bad));
			else
				printf("> %s\n< %s%s\n", hc, hr,
				       bad ? "   !! unexpected status" : "");
			free(hc);
			free(hr);
		}
	}
	if (json) {
		pg_cli_print_json(json_pack("{s:o,s:i}", "transcript", log, "failures", failures));
		log = NULL;
	}
	rc = failures ? pg_cli_fail(PG_EPROTO, "%d unexpected status word(s)", failures)
		      : PG_EXIT_OK;
out:
	json_decref(log);
	pg_nfcsw_clf_close(clf);
	if (f != stdin)
		fclose(f);
	return rc;
}

static int
cmd_demo(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
	int json = 0, o, rc;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'j')
			json = 1;
		else
			return PG_EXIT_USAGE;
	}
	if (optind != argc)
		return pg_cli_usage(argv[0], "unexpected argument '%s'", argv[optind]);
	rc = pg_nfcsw_demo_run(stdout, json);
	return rc < 0 ? pg_cli_fail(rc, "NFC switch demo") : PG_EXIT_OK;
}

/* A simulated SE (the GP card with payment/transit applets) on a link's card role. */
static int
cmd_sim(int argc, char **argv)
{
	static const struct option opts[] = {{"link", required_argument, NULL, 'l'},
					     {"listen", required_argument, NULL, 'L'},
					     {"app", required_argument, NULL, 'a'},
					     {"serial", required_argument, NULL, 's'},
					     {"no-ppse", no_argument, NULL, 'n'},
					     {"once", no_argument, NULL, '1'},
					     {NULL, 0, NULL, 0}};
	const char *link = NULL, *listen_addr = NULL;
	char bufs[PG_NFCSW_MAX_SES][128];
	struct pg_nfcsw_sim_app apps[PG_NFCSW_MAX_SES];
	const struct pg_link_ops *ops;
	struct pg_gp_card *card = NULL;
	unsigned long serial = 0x4E460001ul;
	int napps = 0, ppse = 1, once = 0, o, rc, fd;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'l':
			link = optarg;
			break;
		case 'L':
			listen_addr = optarg;
			break;
		case 'a': {
			/* KIND:AID[:LABEL[:PRIORITY]] */
			char *kind, *prio;

			if (napps == PG_NFCSW_MAX_SES)
				return pg_cli_usage(argv[0], "at most %d --app", PG_NFCSW_MAX_SES);
			snprintf(bufs[napps], sizeof(bufs[napps]), "%s", optarg);
			kind = strtok(bufs[napps], ":");
			apps[napps].se = NULL;
			apps[napps].aid_hex = strtok(NULL, ":");
			apps[napps].label = strtok(NULL, ":");
			prio = strtok(NULL, ":");
			apps[napps].priority = prio ? atoi(prio) : 0;
			if (!kind || !apps[napps].aid_hex ||
			    (strcmp(kind, "payment") && strcmp(kind, "transit")) ||
			    apps[napps].priority < 0 || apps[napps].priority > 15)
				return pg_cli_usage(argv[0],
						    "--app payment|transit:AID[:LABEL[:PRIO]]");
			apps[napps].kind =
			    kind[0] == 'p' ? PG_NFCSW_APPLET_PAYMENT : PG_NFCSW_APPLET_TRANSIT;
			napps++;
			break;
		}
		case 's':
			serial = strtoul(optarg, NULL, 0);
			break;
		case 'n':
			ppse = 0;
			break;
		case '1':
			once = 1;
			break;
		default:
			return PG_EXIT_USAGE;
		}
	}
	if (!link || !listen_addr || optind != argc)
		return pg_cli_usage(argv[0], "--link NAME and --listen ADDR are required");
	ops = pg_link_find(link);
	if (!ops || !ops->card_open)
		return pg_cli_usage(argv[0], "link '%s' has no card role", link);
	rc = pg_nfcsw_sim_se_new(&card, (uint32_t)serial, ppse, apps, (size_t)napps, NULL);
	if (rc == PG_EINVAL)
		return pg_cli_usage(argv[0], "--app payment|transit:AID[:LABEL[:PRIO]]: %s",
				    pg_last_error());
	if (rc < 0)
		return pg_cli_fail(rc, "simulated SE");
	fd = pg_stream_listen(listen_addr);
	if (fd < 0) {
		pg_gp_card_free(card);
		return pg_cli_fail(fd, "cannot listen on '%s'", listen_addr);
	}
	fprintf(stderr, "payguard: simulated SE (GP card) on link %s listening on %s\n", ops->name,
		listen_addr);
	rc = pg_card_serve_listener(fd, ops, pg_gp_card_card(card), NULL, once ? 1 : 0);
	close(fd);
	pg_gp_card_free(card);
	return rc < 0 ? pg_cli_fail(rc, "simulated SE") : PG_EXIT_OK;
}

const struct pg_cmd pg_cli_nfcswitch[] = {
    {"serve", cmd_serve, "serve the switch's slave port (SWP card RF gates) or a vpcd reader",
     "--config FILE (--listen ADDR | --vpcd HOST:PORT) [--once]\n"
     "  [--refresh-ms N]\n"
     "  Attaches the SEs of the routing configuration FILE and serves the switch\n"
     "  toward an NFC controller (SHDLC + HCI card RF gates) on ADDR\n"
     "  (unix:/path or tcp:host:port), or as a contactless card in vpcd.\n"
     "  --refresh-ms: re-read every SE's applications (GET STATUS) every N ms.\n",
     NULL, NULL},
    {"routes", cmd_routes, "print the routing table of a configuration",
     "--config FILE [--json]\n"
     "  Attaches the configured SEs, fills the registry (GET STATUS or probing)\n"
     "  and prints the SEs and every application with its route.\n",
     NULL, NULL},
    {"simulate", cmd_simulate, "play a contactless reader through a simulated NFC controller",
     "--connect ADDR --script FILE|- [--json]\n"
     "  Script lines: 'field on', 'field off', 'apdu HEX [SW]' (SW: expected\n"
     "  status word); exits non-zero when a status word differs.\n",
     NULL, NULL},
    {"demo", cmd_demo, "three SEs on three links, full contactless transactions", "[--json]\n",
     NULL, NULL},
    {"sim", cmd_sim, "a simulated SE (GP card, payment/transit applets) on a link's card role",
     "--link NAME --listen ADDR [--app KIND:AID[:LABEL[:PRIO]]]...\n"
     "  [--serial N] [--no-ppse] [--once]\n"
     "  KIND is payment or transit. The SE is the GlobalPlatform card (ISD with\n"
     "  SCP03, test keys 40..4F kvn 30) with a PPSE unless --no-ppse.\n",
     NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};
