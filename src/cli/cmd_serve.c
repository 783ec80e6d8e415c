/* `payguard serve ...` verbs: the daemon (issue 9) and its internal worker entry. */
#include "cli.h"
#include "payguard/error.h"
#include "payguard/events.h"
#include "payguard/fs.h"
#include "payguard/log.h"
#include "payguard/mem.h"
#include "payguard/pos.h"
#include "payguard/serve.h"
#include "payguard/store.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Every option of both serve verbs; each verb's table lists the ones it takes. */
struct serveopt {
	const char *config, *data, *store, *listen, *port_file, *token_file, *load_source, *name,
	    *node, *nats, *intake, *webhook_secret_file, *pos_report;
	struct pg_opt_strings allow_host, webhooks;
	int port, demo, load_period_ms, job, pos_keep_days;
};

#define S struct serveopt
static const struct pg_opt run_opts[] = {
    PG_STR(S, config, "config", "FILE",
	   "JSON configuration file, re-read on SIGHUP (default DIR/serve.json if present)"),
    PG_STR(S, data, "data", "DIR",
	   "data directory (default $PAYGUARD_DATA_DIR, else ~/.local/share/payguard)"),
    PG_STR(S, store, "store", "URL",
	   "the store: a SQLite file (default DIR/payguard.db) or postgresql://... (a libpq URL or "
	   "keyword string); local files stay in DIR"),
    PG_STR(S, listen, "listen", "ADDR",
	   "address to bind: localhost, an IPv4 or IPv6 address (default 127.0.0.1; one not "
	   "loopback needs --token-file)"),
    PG_INT(S, port, "port", "N", 0, 65535, "HTTP port (default 8470; 0 = any free port)"),
    PG_STR(S, port_file, "port-file", "FILE", "write the bound port to FILE"),
    PG_STR(S, token_file, "token-file", "FILE",
	   "require 'Authorization: Bearer <token>' (token: first line of FILE); a browser logs "
	   "in by opening /?token=TOKEN once (a session cookie)"),
    PG_STRS(S, allow_host, "allow-host", "NAME",
	    "also answer requests whose Host is NAME (any port), e.g. the name a reverse proxy "
	    "forwards; loopback names always"),
    PG_STR(S, load_source, "load-source", "SPEC",
	   "live load collector polled every period (cgroup:DIR or libvirt:URI); without it "
	   "--demo estimates a generated fleet"),
    PG_FLAG(S, demo, "demo", "fill POS and load with live generated data"),
    PG_INT(S, load_period_ms, "load-period-ms", "MS", 100, 3600000,
	   "how often the load service estimates (default 5000)"),
    PG_STR(S, node, "node", "NAME",
	   "this daemon's name in a cluster sharing a PostgreSQL store (default: the host "
	   "name; docs/cluster.md)"),
    PG_STR(S, nats, "nats", "URLS",
	   "publish events to these NATS JetStream servers (comma-separated; docs/events.md)"),
    PG_STRS(S, webhooks, "webhook", "URL", "also POST every event to URL (repeatable)"),
    PG_STR(S, webhook_secret_file, "webhook-secret-file", "FILE",
	   "the webhooks' signing secret, whsec_<base64> (a file only its owner may read)"),
    PG_STR(S, intake, "intake", "MODE",
	   "POS intake: store (default) or jetstream (through the stream; needs --nats)"),
    PG_STR(S, pos_report, "pos-report", "LIST",
	   "POS decisions also stored as events, e.g. unregistered,undetermined (default none)"),
    PG_INT(S, pos_keep_days, "pos-keep-days", "N", 1, 3660,
	   "PostgreSQL store: days of POS transactions kept; older day partitions are dropped "
	   "(default 7)"),
    {0}};
static const struct pg_opt worker_opts[] = {
    PG_STR(S, name, "name", "WORKER",
	   "a name of the worker table (src/serve/workers.c; a wrong one lists them), or upgrade"),
    PG_STR(S, data, "data", "DIR", "the data directory (required)"),
    PG_FLAG(S, demo, "demo", "the demo's data"),
    PG_INT(S, load_period_ms, "load-period-ms", "MS", 100, 3600000,
	   "how often the load service estimates (default 5000)"),
    PG_STR(S, load_source, "load-source", "SPEC", "the load worker's live collector"),
    PG_INT(S, job, "job", "N", 1, INT_MAX, "with --name upgrade: the queued job to run"),
    {0}};
#undef S

/* Which configuration keys the command line set: those win over the file.
 * The numbers start at -1 (not given): no value the parser accepts. */
static unsigned
cli_keys(const struct serveopt *o)
{
	unsigned k = 0;

	k |= o->listen ? PG_SERVE_KEY_LISTEN : 0;
	k |= o->port >= 0 ? PG_SERVE_KEY_PORT : 0;
	k |= o->load_period_ms >= 0 ? PG_SERVE_KEY_LOAD_PERIOD : 0;
	k |= o->token_file ? PG_SERVE_KEY_TOKEN_FILE : 0;
	k |= o->demo ? PG_SERVE_KEY_DEMO : 0;
	k |= o->load_source ? PG_SERVE_KEY_LOAD_SOURCE : 0;
	k |= o->allow_host.n ? PG_SERVE_KEY_ALLOWED_HOSTS : 0;
	k |= o->node ? PG_SERVE_KEY_NODE : 0;
	k |= o->store ? PG_SERVE_KEY_STORE : 0;
	k |= o->nats ? PG_SERVE_KEY_NATS : 0;
	k |= o->webhooks.n ? PG_SERVE_KEY_WEBHOOKS : 0;
	k |= o->webhook_secret_file ? PG_SERVE_KEY_WEBHOOK_SECRET : 0;
	k |= o->intake ? PG_SERVE_KEY_INTAKE : 0;
	k |= o->pos_report ? PG_SERVE_KEY_POS_REPORT : 0;
	k |= o->pos_keep_days >= 0 ? PG_SERVE_KEY_POS_KEEP_DAYS : 0;
	return k;
}

/* The command line's values into cfg (checked: exit 2 on a bad one). */
static int
apply_cli(const char *argv0, const struct serveopt *o, struct pg_serve_cfg *cfg)
{
	static char allow[PG_SERVE_MAX_ALLOW_HOSTS][PG_SERVE_HOST_NAME];

	cfg->data_dir = o->data;
	cfg->store = o->store;
	cfg->host = o->listen;
	cfg->port = o->port >= 0 ? o->port : PG_SERVE_DEFAULT_PORT;
	cfg->port_file = o->port_file;
	cfg->demo = o->demo;
	cfg->load_period_ms = o->load_period_ms >= 0 ? o->load_period_ms : 5000;
	cfg->pos_keep_days = o->pos_keep_days >= 0 ? o->pos_keep_days : PG_SERVE_POS_KEEP_DAYS;
	if (o->load_source && pg_serve_check_load_source(o->load_source) < 0)
		return pg_cli_usage(argv0, "%s", pg_last_error());
	cfg->load_source = o->load_source;
	if (o->node && pg_serve_check_node_name(o->node) < 0)
		return pg_cli_usage(argv0, "--node: %s", pg_last_error());
	cfg->node = o->node;
	if (o->allow_host.n > PG_SERVE_MAX_ALLOW_HOSTS)
		return pg_cli_usage(argv0, "at most %d --allow-host", PG_SERVE_MAX_ALLOW_HOSTS);
	for (int i = 0; i < o->allow_host.n; i++) {
		if (pg_serve_check_host_name(o->allow_host.v[i]) < 0)
			return pg_cli_usage(argv0, "--allow-host: %s", pg_last_error());
		memcpy(allow[i], o->allow_host.v[i], strlen(o->allow_host.v[i]) + 1);
	}
	cfg->nallow_hosts = o->allow_host.n;
	if (o->allow_host.n)
		cfg->allow_hosts = allow;
	if (o->intake && strcmp(o->intake, "store") && strcmp(o->intake, "jetstream"))
		return pg_cli_usage(argv0, "--intake is store or jetstream");
	cfg->intake_jetstream = o->intake && strcmp(o->intake, "jetstream") == 0;
	cfg->nats = o->nats;
	if (o->webhooks.n > PG_SERVE_MAX_WEBHOOKS)
		return pg_cli_usage(argv0, "at most %d --webhook", PG_SERVE_MAX_WEBHOOKS);
	for (int i = 0; i < o->webhooks.n; i++)
		if (pg_serve_check_webhook(o->webhooks.v[i]) < 0)
			return pg_cli_usage(argv0, "--webhook: %s", pg_last_error());
	cfg->webhooks = (const char *const *)o->webhooks.v;
	cfg->nwebhooks = o->webhooks.n;
	cfg->webhook_secret_file = o->webhook_secret_file;
	if (o->pos_report) {
		unsigned mask;

		if (pg_pos_report_parse(o->pos_report, &mask) < 0)
			return pg_cli_usage(argv0, "--pos-report: %s", pg_last_error());
	}
	cfg->pos_report = o->pos_report;
	return 0;
}

/* The configuration file's keys the command line did not set. */
static void
merge_conf(struct pg_serve_cfg *cfg, const struct pg_serve_conf *conf)
{
	unsigned only_file = conf->keys & ~cfg->cli_keys;

	if (only_file & PG_SERVE_KEY_STORE)
		cfg->store = conf->store;
	if (only_file & PG_SERVE_KEY_LISTEN)
		cfg->host = conf->listen;
	if (only_file & PG_SERVE_KEY_PORT)
		cfg->port = conf->port;
	if (only_file & PG_SERVE_KEY_DEMO)
		cfg->demo = conf->demo;
	if (only_file & PG_SERVE_KEY_LOAD_PERIOD)
		cfg->load_period_ms = conf->load_period_ms;
	if (only_file & PG_SERVE_KEY_POS_KEEP_DAYS)
		cfg->pos_keep_days = conf->pos_keep_days;
	if (only_file & PG_SERVE_KEY_LOAD_SOURCE)
		cfg->load_source = conf->load_source;
	if (only_file & PG_SERVE_KEY_NODE)
		cfg->node = conf->node;
	if (only_file & PG_SERVE_KEY_NATS)
		cfg->nats = conf->nats;
	if (only_file & PG_SERVE_KEY_INTAKE)
		cfg->intake_jetstream = conf->intake_jetstream;
	if (only_file & PG_SERVE_KEY_POS_REPORT)
		cfg->pos_report = conf->pos_report;
	if (only_file & PG_SERVE_KEY_WEBHOOK_SECRET)
		cfg->webhook_secret_file = conf->webhook_secret_file;
	if (only_file & PG_SERVE_KEY_WEBHOOKS) {
		static const char *hooks[PG_SERVE_MAX_WEBHOOKS];

		for (int i = 0; i < conf->nwebhooks; i++)
			hooks[i] = conf->webhooks[i];
		cfg->webhooks = hooks;
		cfg->nwebhooks = conf->nwebhooks;
	}
	if (only_file & PG_SERVE_KEY_ALLOWED_HOSTS) {
		cfg->allow_hosts = (const char(*)[PG_SERVE_HOST_NAME])conf->allowed_hosts;
		cfg->nallow_hosts = conf->nallowed_hosts;
	}
	/* the image and upgrade workers inherit it (never from elsewhere) */
	if (conf->keys & PG_SERVE_KEY_IMAGE_BACKING_DIRS)
		setenv(PG_SERVE_BACKING_ENV, conf->image_backing_dirs, 1);
	else
		unsetenv(PG_SERVE_BACKING_ENV);
}

/* The configuration file: --config, else <data dir>/serve.json when it exists. */
static int
load_conf(const char *config, struct pg_serve_cfg *cfg, struct pg_serve_conf *conf, char *confpath,
	  size_t size)
{
	char datadir[512];
	int rc;

	pg_serve_conf_default(conf);
	if (!config) {
		if (cfg->data_dir)
			snprintf(datadir, sizeof(datadir), "%s", cfg->data_dir);
		else if ((rc = pg_data_dir(datadir, sizeof(datadir))) < 0)
			return pg_cli_fail(rc, "data directory");
		snprintf(confpath, size, "%s/serve.json", datadir);
		if (access(confpath, F_OK) == 0)
			config = confpath;
	}
	if (!config)
		return 0;
	rc = pg_serve_conf_load(config, conf);
	if (rc < 0)
		return pg_cli_fail(rc, "configuration");
	cfg->config_path = config;
	if (conf->keys & PG_SERVE_KEY_LOG_LEVEL)
		pg_log_set_level(conf->log_level);
	return 0;
}

/* The bearer token: the first line of a file only we can read. */
static int
read_token(const char *argv0, const char *token_file, char *token, size_t size)
{
	uint8_t *data = NULL;
	size_t len = 0;
	int rc;

	/* a token others can read is no secret: refused, as ssh refuses keys */
	rc = pg_fs_check_private(token_file, 0);
	if (rc == 0)
		rc = pg_read_file(token_file, size - 1, &data, &len);
	if (rc < 0)
		return pg_cli_fail(rc, "token file '%s'", token_file);
	while (len && (data[len - 1] == '\n' || data[len - 1] == '\r'))
		len--;
	memcpy(token, data, len);
	token[len] = 0;
	pg_memzero(data, len);
	free(data);
	if (len < 16 || strlen(token) != len)
		return pg_cli_usage(argv0, "the token must be 16..255 bytes, no NUL");
	return 0;
}

/* The events keys together: JetStream intake needs NATS; the webhook
 * secret's file is checked (private, its format) now, then wiped: the
 * events worker reads it itself. */
static int
check_events(const char *argv0, const struct pg_serve_cfg *cfg)
{
	char secret[256];
	int rc;

	if (cfg->intake_jetstream && !(cfg->nats && cfg->nats[0]))
		return pg_cli_usage(argv0,
				    "intake jetstream needs NATS servers (--nats or 'nats')");
	if (cfg->webhook_secret_file && !cfg->nwebhooks)
		return pg_cli_usage(argv0, "a webhook secret file without any webhook");
	if (!cfg->webhook_secret_file)
		return 0;
	rc = pg_events_read_secret(cfg->webhook_secret_file, secret, sizeof(secret));
	pg_memzero(secret, sizeof(secret));
	if (rc < 0)
		return pg_cli_fail(rc, "webhook secret file '%s'", cfg->webhook_secret_file);
	return 0;
}

static int
cmd_serve_run(int argc, char **argv)
{
	struct serveopt o = {.port = -1, .load_period_ms = -1, .pos_keep_days = -1};
	struct pg_serve_cfg cfg = {0};
	struct pg_serve_conf conf;
	char exe[PATH_MAX], token[256], confpath[600];
	const char *token_file;
	ssize_t n;
	int first, rc;

	token[0] = 0;
	if ((rc = pg_cli_parse(argc, argv, run_opts, &o, &first)))
		return rc;
	if (first < argc)
		return pg_cli_usage(argv[0], "unexpected argument '%s'", argv[first]);
	if ((rc = apply_cli(argv[0], &o, &cfg)))
		return rc;
	cfg.cli_keys = cli_keys(&o);
	if ((rc = load_conf(o.config, &cfg, &conf, confpath, sizeof(confpath))))
		return rc;
	merge_conf(&cfg, &conf);
	token_file = o.token_file;
	if (!token_file && (conf.keys & PG_SERVE_KEY_TOKEN_FILE))
		token_file = conf.token_file;
	if (token_file) {
		if ((rc = read_token(argv[0], token_file, token, sizeof(token))))
			return rc;
		cfg.token = token;
	}
	if ((rc = check_events(argv[0], &cfg)))
		return rc;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return pg_cli_fail(PG_ESYS, "cannot find the payguard binary");
	exe[n] = 0;
	cfg.self_exe = exe;
	rc = pg_serve_run(&cfg);
	if (rc < 0)
		return pg_cli_fail(rc, "serve");
	return PG_EXIT_OK;
}

static int
cmd_serve_worker(int argc, char **argv)
{
	struct serveopt o = {.load_period_ms = 5000};
	const char *name, *data;
	int first, rc, job;

	if ((rc = pg_cli_parse(argc, argv, worker_opts, &o, &first)))
		return rc;
	name = o.name;
	data = o.data;
	job = o.job;
	if (!name || !data)
		return pg_cli_usage(argv[0], "--name and --data are required");
	if (strcmp(name, "upgrade") != 0 && !pg_serve_worker_find(name)) {
		char names[256];

		(void)pg_serve_worker_names(names, sizeof(names), ", ");
		return pg_cli_usage(argv[0], "no worker '%s' (workers: %s; upgrade)", name, names);
	}
	if (strcmp(name, "upgrade") == 0) {
		if (!job)
			return pg_cli_usage(argv[0], "--name upgrade needs --job N");
		rc = pg_serve_run_upgrade(data, job);
	} else {
		rc = pg_serve_worker(name, data, o.demo, o.load_period_ms, o.load_source);
	}
	if (rc < 0)
		return pg_cli_fail(rc, "worker %s", name);
	return PG_EXIT_OK;
}

const struct pg_cmd pg_cli_serve[] = {
    {"run", cmd_serve_run, "run the daemon: supervised services, HTTP API, metrics, dashboard",
     "Options on the command line win over the file. SIGTERM or SIGINT stops every service "
     "cleanly;\nSIGHUP reloads the file.",
     run_opts, NULL},
    {"worker", cmd_serve_worker, "internal: one supervised service (started by 'serve run')",
     "--name and --data are required; --name upgrade needs --job.", worker_opts, NULL},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};
