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

#include <errno.h>
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

/* Every option of every nfcswitch verb; each verb's table lists the ones it takes. */
struct sw_opts {
	const char *config, *listen, *vpcd, *connect, *script, *link, *serial;
	struct pg_opt_strings apps;
	int json, once, refresh_ms, no_ppse;
};
#define O struct sw_opts
static const struct pg_opt routes_opts[] = {
    PG_STR(O, config, "config", "FILE", "the routing configuration (required)"),
    PG_FLAG(O, json, "json", "print JSON"),
    {0}};
static const struct pg_opt serve_opts[] = {
    PG_STR(O, config, "config", "FILE", "the routing configuration (required)"),
    PG_STR(O, listen, "listen", "ADDR",
	   "serve an NFC controller (SHDLC + HCI card RF gates) on unix:PATH or tcp:HOST:PORT"),
    PG_STR(O, vpcd, "vpcd", "HOST:PORT", "be a contactless card in vpcd instead"),
    PG_FLAG(O, once, "once", "stop after the first controller (or vpcd session)"),
    PG_INT(O, refresh_ms, "refresh-ms", "N", 100, 86400000,
	   "re-read every SE's applications (GET STATUS) every N ms"),
    {0}};
static const struct pg_opt simulate_opts[] = {
    PG_STR(O, connect, "connect", "ADDR", "the switch's slave port (required)"),
    PG_STR(O, script, "script", "FILE|-", "the reader's script (required)"),
    PG_FLAG(O, json, "json", "print the transcript as JSON"),
    {0}};
static const struct pg_opt demo_opts[] = {PG_FLAG(O, json, "json", "print JSON"), {0}};
static const struct pg_opt sim_opts[] = {
    PG_STR(O, link, "link", "NAME", "card-role driver (required)"),
    PG_STR(O, listen, "listen", "ADDR", "serve hosts on unix:PATH or tcp:HOST:PORT (required)"),
    PG_STRS(O, apps, "app", "KIND:AID[:LABEL[:PRIO]]",
	    "an application: KIND payment or transit, PRIO 0..15"),
    PG_STR(O, serial, "serial", "N", "IC serial number in the CPLC (default 0x4E460001)"),
    PG_FLAG(O, no_ppse, "no-ppse", "no PPSE on this SE"),
    PG_FLAG(O, once, "once", "stop after the first host"),
    {0}};
#undef O

/* Parses a verb's options; 0, or PG_EXIT_USAGE after a message (operands refused). */
static int
parse_opts(int argc, char **argv, const struct pg_opt *tab, struct sw_opts *o)
{
	int first;

	memset(o, 0, sizeof(*o));
	if (pg_cli_parse(argc, argv, tab, o, &first))
		return PG_EXIT_USAGE;
	if (first < argc)
		return pg_cli_usage(argv[0], "unexpected argument '%s'", argv[first]);
	return 0;
}

static int
cmd_routes(int argc, char **argv)
{
	struct pg_nfcsw *sw = NULL;
	struct sw_opts o;
	int rc;
	const char *config;
	int json;

	if (parse_opts(argc, argv, routes_opts, &o))
		return PG_EXIT_USAGE;
	config = o.config, json = o.json;
	if ((rc = load_config(argv[0], config, &sw, 3000)) != 0)
		return rc;
	rc = print_routes(sw, json);
	pg_nfcsw_free(sw);
	return rc;
}

static int
cmd_serve(int argc, char **argv)
{
	struct pg_nfcsw *sw = NULL;
	struct sw_opts o;
	const char *config, *listen_addr, *vpcd;
	int once, rc, fd, refresh_ms;

	if (parse_opts(argc, argv, serve_opts, &o))
		return PG_EXIT_USAGE;
	config = o.config, listen_addr = o.listen, vpcd = o.vpcd, once = o.once;
	refresh_ms = o.refresh_ms;
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

/* A `nfcswitch simulate` run: the controller link, the transcript and its verdicts. */
struct sim_run {
	struct pg_nfcsw_clf *clf;
	const char *script;
	int lineno;
	int json; /* --json: the transcript goes to `log`; else lines are printed */
	json_t *log;
	int failures;
};

/* One exchange for the transcript: the APDUs as hex, and whether the SW was the one expected. */
static int
sim_record(struct sim_run *run, const uint8_t *c, size_t n, const uint8_t *r, size_t rl,
	   const char *expect)
{
	char *hc = malloc(2 * n + 1), *hr = malloc(2 * rl + 1), want[8] = "";
	int bad = 0;

	if (!hc || !hr) {
		free(hc), free(hr);
		return pg_cli_fail(PG_ENOMEM, "transcript");
	}
	pg_hex_encode_upper(hc, c, n, 0);
	pg_hex_encode_upper(hr, r, rl, 0);
	if (expect) {
		snprintf(want, sizeof(want), "%04X", pg_rapdu_sw(r, rl));
		bad = strcasecmp(want, expect) != 0;
		run->failures += bad;
	}
	if (run->log)
		json_array_append_new(
		    run->log, json_pack("{s:s,s:s,s:b}", "capdu", hc, "rapdu", hr, "ok", !bad));
	else
		printf("> %s\n< %s%s\n", hc, hr, bad ? "   !! unexpected status" : "");
	free(hc);
	free(hr);
	return 0;
}

/* "apdu HEX [SW]": sends the command through the controller, records the answer. */
static int
sim_apdu(struct sim_run *run, char *args)
{
	char *hex = strtok(args, " \t"), *expect = strtok(NULL, " \t");
	uint8_t c[520], r[PG_APDU_MAX_R];
	size_t rl = sizeof(r);
	int n = hex ? pg_hex_decode(c, sizeof(c), hex) : PG_EFORMAT, rc;

	if (n < 4)
		return pg_cli_fail(n < 0 ? n : PG_EFORMAT, "%s line %d: bad APDU", run->script,
				   run->lineno);
	rc = pg_nfcsw_clf_transceive(run->clf, c, (size_t)n, r, &rl);
	if (rc < 0)
		return pg_cli_fail(rc, "line %d: no answer", run->lineno);
	return sim_record(run, c, (size_t)n, r, rl, expect);
}

/* One script line (comments and blanks skipped); 0 or the exit code of its failure. */
static int
sim_line(struct sim_run *run, char *line)
{
	char *p = line;
	int rc;

	line[strcspn(line, "\r\n#")] = 0;
	while (*p == ' ' || *p == '\t')
		p++;
	if (!*p)
		return 0;
	if (!strcmp(p, "field on") || !strcmp(p, "field off")) {
		rc = p[7] == 'n' ? pg_nfcsw_clf_field_on(run->clf)
				 : pg_nfcsw_clf_field_off(run->clf);
		if (rc < 0)
			return pg_cli_fail(rc, "line %d", run->lineno);
		if (!run->json)
			printf("-- %s\n", p);
		return 0;
	}
	if (strncmp(p, "apdu ", 5))
		return pg_cli_fail(PG_EFORMAT, "%s line %d: field on|field off|apdu HEX [SW]",
				   run->script, run->lineno);
	return sim_apdu(run, p + 5);
}

/*
 * Script lines: "field on", "field off", "apdu HEX [SW]" (SW: expected status
 * word, e.g. 9000 or 6A82), "#" comments.
 */
static int
cmd_simulate(int argc, char **argv)
{
	struct sim_run run = {0};
	struct pg_stream *st = NULL;
	char line[1200];
	struct sw_opts o;
	const char *addr;
	int rc = 0;
	FILE *f;

	if (parse_opts(argc, argv, simulate_opts, &o))
		return PG_EXIT_USAGE;
	addr = o.connect, run.script = o.script, run.json = o.json;
	if (!addr || !run.script)
		return pg_cli_usage(argv[0], "--connect ADDR and --script FILE are required");
	f = strcmp(run.script, "-") ? fopen(run.script, "r") : stdin;
	if (!f)
		return pg_cli_fail(PG_ENOENT, "cannot open '%s'", run.script);
	if ((rc = pg_stream_connect(&st, addr, 3000)) < 0) {
		rc = pg_cli_fail(rc, "cannot reach the switch at %s", addr);
		goto out;
	}
	rc = pg_nfcsw_clf_open(&run.clf, st, 3000);
	if (rc < 0) {
		rc = pg_cli_fail(rc, "NFC controller link");
		goto out;
	}
	if (run.json)
		run.log = json_array();
	while (rc == 0 && fgets(line, sizeof(line), f)) {
		run.lineno++;
		rc = sim_line(&run, line);
	}
	if (rc != 0)
		goto out;
	if (run.json) {
		pg_cli_print_json(
		    json_pack("{s:o,s:i}", "transcript", run.log, "failures", run.failures));
		run.log = NULL;
	}
	rc = run.failures ? pg_cli_fail(PG_EPROTO, "%d unexpected status word(s)", run.failures)
			  : PG_EXIT_OK;
out:
	json_decref(run.log);
	pg_nfcsw_clf_close(run.clf);
	if (f != stdin)
		fclose(f);
	return rc;
}

static int
cmd_demo(int argc, char **argv)
{
	struct sw_opts o;
	int json, rc;

	if (parse_opts(argc, argv, demo_opts, &o))
		return PG_EXIT_USAGE;
	json = o.json;
	rc = pg_nfcsw_demo_run(stdout, json);
	return rc < 0 ? pg_cli_fail(rc, "NFC switch demo") : PG_EXIT_OK;
}

/* --app KIND:AID[:LABEL[:PRIORITY]] into a (its strings in buf); -1 if malformed. */
static int
parse_app(const char *arg, char *buf, size_t cap, struct pg_nfcsw_sim_app *a)
{
	char *kind, *prio, *save = NULL, *end;
	long p = 0;

	snprintf(buf, cap, "%s", arg);
	kind = strtok_r(buf, ":", &save);
	a->se = NULL;
	a->aid_hex = strtok_r(NULL, ":", &save);
	a->label = strtok_r(NULL, ":", &save);
	prio = strtok_r(NULL, ":", &save);
	if (prio && ((p = strtol(prio, &end, 10)), *end))
		return -1;
	a->priority = (int)p;
	if (!kind || !a->aid_hex || (strcmp(kind, "payment") && strcmp(kind, "transit")) || p < 0 ||
	    p > 15)
		return -1;
	a->kind = kind[0] == 'p' ? PG_NFCSW_APPLET_PAYMENT : PG_NFCSW_APPLET_TRANSIT;
	return 0;
}

/* A simulated SE (the GP card with payment/transit applets) on a link's card role. */
static int
cmd_sim(int argc, char **argv)
{
	char bufs[PG_NFCSW_MAX_SES][128];
	struct pg_nfcsw_sim_app apps[PG_NFCSW_MAX_SES];
	const struct pg_link_ops *ops;
	struct pg_gp_card *card = NULL;
	uint32_t serial = 0x4E460001u;
	struct sw_opts o;
	const char *link, *listen_addr;
	int napps, rc, fd;

	if (parse_opts(argc, argv, sim_opts, &o))
		return PG_EXIT_USAGE;
	link = o.link, listen_addr = o.listen;
	if (o.apps.n > PG_NFCSW_MAX_SES)
		return pg_cli_usage(argv[0], "at most %d --app", PG_NFCSW_MAX_SES);
	for (napps = 0; napps < o.apps.n; napps++)
		if (parse_app(o.apps.v[napps], bufs[napps], sizeof(bufs[napps]), &apps[napps]) < 0)
			return pg_cli_usage(argv[0], "--app payment|transit:AID[:LABEL[:PRIO]]");
	if (pg_cli_u32(argv[0], "serial", o.serial, 0, &serial))
		return PG_EXIT_USAGE;
	if (!link || !listen_addr)
		return pg_cli_usage(argv[0], "--link NAME and --listen ADDR are required");
	ops = pg_link_find(link);
	if (!ops || !ops->card_open)
		return pg_cli_usage(argv[0], "link '%s' has no card role", link);
	rc = pg_nfcsw_sim_se_new(&card, serial, !o.no_ppse, apps, (size_t)napps, NULL);
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
	rc = pg_card_serve_listener(fd, ops, pg_gp_card_card(card), NULL, o.once ? 1 : 0);
	close(fd);
	pg_gp_card_free(card);
	return rc < 0 ? pg_cli_fail(rc, "simulated SE") : PG_EXIT_OK;
}

const struct pg_cmd pg_cli_nfcswitch[] = {
    {"serve", cmd_serve, "serve the switch's slave port (SWP card RF gates) or a vpcd reader",
     "Attaches the SEs of the routing configuration FILE and serves the switch toward an NFC\n"
     "controller on --listen, or as a contactless card in vpcd; give exactly one of the two.",
     serve_opts, NULL},
    {"routes", cmd_routes, "print the routing table of a configuration",
     "Attaches the configured SEs, fills the registry (GET STATUS or probing) and prints\n"
     "the SEs and every application with its route.",
     routes_opts, NULL},
    {"simulate", cmd_simulate, "play a contactless reader through a simulated NFC controller",
     "Script lines: 'field on', 'field off', 'apdu HEX [SW]' (SW: expected status word);\n"
     "exits non-zero when a status word differs.",
     simulate_opts, NULL},
    {"demo", cmd_demo, "three SEs on three links, full contactless transactions", NULL, demo_opts,
     NULL},
    {"sim", cmd_sim, "a simulated SE (GP card, payment/transit applets) on a link's card role",
     "The SE is the GlobalPlatform card (ISD with SCP03, test keys 40..4F kvn 30) with a\n"
     "PPSE unless --no-ppse.",
     sim_opts, NULL},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};
