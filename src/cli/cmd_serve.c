/* `payguard serve ...` verbs: the daemon (issue 9) and its internal worker entry. */
#include "cli.h"
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/log.h"
#include "payguard/mem.h"
#include "payguard/serve.h"
#include "payguard/store.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
	O_CONFIG = 999,
	O_DATA = 1000,
	O_LISTEN,
	O_PORT,
	O_PORT_FILE,
	O_TOKEN_FILE,
	O_DEMO,
	O_LOAD_PERIOD,
	O_NAME,
	O_JOB,
	O_LOAD_SOURCE,
	O_ALLOW_HOST
};

static int
parse_int(const char *s, int lo, int hi, int *out)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (!s[0] || *end || v < lo || v > hi)
		return -1;
	*out = (int)v;
	return 0;
}

static int
cmd_serve_run(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, O_CONFIG},
	    {"data", required_argument, NULL, O_DATA},
	    {"listen", required_argument, NULL, O_LISTEN},
	    {"port", required_argument, NULL, O_PORT},
	    {"port-file", required_argument, NULL, O_PORT_FILE},
	    {"token-file", required_argument, NULL, O_TOKEN_FILE},
	    {"demo", no_argument, NULL, O_DEMO},
	    {"load-period-ms", required_argument, NULL, O_LOAD_PERIOD},
	    {"load-source", required_argument, NULL, O_LOAD_SOURCE},
	    {"allow-host", required_argument, NULL, O_ALLOW_HOST},
	    {0},
	};
	static char allow[PG_SERVE_MAX_ALLOW_HOSTS][PG_SERVE_HOST_NAME];
	struct pg_serve_cfg cfg = {.port = PG_SERVE_DEFAULT_PORT, .load_period_ms = 5000};
	struct pg_serve_conf conf;
	char exe[PATH_MAX], token[256], datadir[512], confpath[600];
	const char *config = NULL, *token_file = NULL;
	ssize_t n;
	int c, rc;

	token[0] = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case O_CONFIG:
			config = optarg;
			break;
		case O_DATA:
			cfg.data_dir = optarg;
			break;
		case O_LISTEN:
			cfg.host = optarg;
			cfg.cli_keys |= PG_SERVE_KEY_LISTEN;
			break;
		case O_PORT:
			if (parse_int(optarg, 0, 65535, &cfg.port) < 0)
				return pg_cli_usage(argv[0], "--port takes 0..65535");
			cfg.cli_keys |= PG_SERVE_KEY_PORT;
			break;
		case O_PORT_FILE:
			cfg.port_file = optarg;
			break;
		case O_TOKEN_FILE:
			token_file = optarg;
			cfg.cli_keys |= PG_SERVE_KEY_TOKEN_FILE;
			break;
		case O_DEMO:
			cfg.demo = 1;
			cfg.cli_keys |= PG_SERVE_KEY_DEMO;
			break;
		case O_LOAD_PERIOD:
			if (parse_int(optarg, 100, 3600000, &cfg.load_period_ms) < 0)
				return pg_cli_usage(argv[0], "--load-period-ms takes 100..3600000");
			cfg.cli_keys |= PG_SERVE_KEY_LOAD_PERIOD;
			break;
		case O_LOAD_SOURCE:
			if (pg_serve_check_load_source(optarg) < 0)
				return pg_cli_usage(argv[0], "%s", pg_last_error());
			cfg.load_source = optarg;
			cfg.cli_keys |= PG_SERVE_KEY_LOAD_SOURCE;
			break;
		case O_ALLOW_HOST:
			if (cfg.nallow_hosts == PG_SERVE_MAX_ALLOW_HOSTS)
				return pg_cli_usage(argv[0], "at most %d --allow-host",
						    PG_SERVE_MAX_ALLOW_HOSTS);
			if (pg_serve_check_host_name(optarg) < 0)
				return pg_cli_usage(argv[0], "--allow-host: %s", pg_last_error());
			memcpy(allow[cfg.nallow_hosts++], optarg, strlen(optarg) + 1);
			cfg.allow_hosts = allow;
			cfg.cli_keys |= PG_SERVE_KEY_ALLOWED_HOSTS;
			break;
		default:
			return PG_EXIT_USAGE;
		}
	}
	if (optind < argc)
		return pg_cli_usage(argv[0], "unexpected argument '%s'", argv[optind]);
	/* the configuration file: --config, else <data dir>/serve.json when it exists */
	pg_serve_conf_default(&conf);
	if (!config) {
		if (cfg.data_dir)
			snprintf(datadir, sizeof(datadir), "%s", cfg.data_dir);
		else if ((rc = pg_data_dir(datadir, sizeof(datadir))) < 0)
			return pg_cli_fail(rc, "data directory");
		snprintf(confpath, sizeof(confpath), "%s/serve.json", datadir);
		if (access(confpath, F_OK) == 0)
			config = confpath;
	}
	if (config) {
		rc = pg_serve_conf_load(config, &conf);
		if (rc < 0)
			return pg_cli_fail(rc, "configuration");
		cfg.config_path = config;
		if (conf.keys & PG_SERVE_KEY_LOG_LEVEL)
			pg_log_set_level(conf.log_level);
	}
	if (!(cfg.cli_keys & PG_SERVE_KEY_LISTEN) && (conf.keys & PG_SERVE_KEY_LISTEN))
		cfg.host = conf.listen;
	if (!(cfg.cli_keys & PG_SERVE_KEY_PORT) && (conf.keys & PG_SERVE_KEY_PORT))
		cfg.port = conf.port;
	if (!(cfg.cli_keys & PG_SERVE_KEY_DEMO) && (conf.keys & PG_SERVE_KEY_DEMO))
		cfg.demo = conf.demo;
	if (!(cfg.cli_keys & PG_SERVE_KEY_LOAD_PERIOD) && (conf.keys & PG_SERVE_KEY_LOAD_PERIOD))
		cfg.load_period_ms = conf.load_period_ms;
	if (!(cfg.cli_keys & PG_SERVE_KEY_LOAD_SOURCE) && (conf.keys & PG_SERVE_KEY_LOAD_SOURCE))
		cfg.load_source = conf.load_source;
	if (!(cfg.cli_keys & PG_SERVE_KEY_ALLOWED_HOSTS) &&
	    (conf.keys & PG_SERVE_KEY_ALLOWED_HOSTS)) {
		cfg.allow_hosts = (const char(*)[PG_SERVE_HOST_NAME])conf.allowed_hosts;
		cfg.nallow_hosts = conf.nallowed_hosts;
	}
	/* the image and upgrade workers inherit it (never from elsewhere) */
	if (conf.keys & PG_SERVE_KEY_IMAGE_BACKING_DIRS)
		setenv(PG_SERVE_BACKING_ENV, conf.image_backing_dirs, 1);
	else
		unsetenv(PG_SERVE_BACKING_ENV);
	if (!token_file && (conf.keys & PG_SERVE_KEY_TOKEN_FILE))
		token_file = conf.token_file;
	if (token_file) {
		uint8_t *data = NULL;
		size_t len = 0;

		/* a token others can read is no secret: refused, as ssh refuses keys */
		rc = pg_fs_check_private(token_file, 0);
		if (rc == 0)
			rc = pg_read_file(token_file, sizeof(token) - 1, &data, &len);
		if (rc < 0)
			return pg_cli_fail(rc, "token file '%s'", token_file);
		while (len && (data[len - 1] == '\n' || data[len - 1] == '\r'))
			len--;
		memcpy(token, data, len);
		token[len] = 0;
		pg_memzero(data, len);
		free(data);
		if (len < 16 || strlen(token) != len)
			return pg_cli_usage(argv[0], "the token must be 16..255 bytes, no NUL");
		cfg.token = token;
	}
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
	static const struct option opts[] = {
	    {"name", required_argument, NULL, O_NAME},
	    {"data", required_argument, NULL, O_DATA},
	    {"demo", no_argument, NULL, O_DEMO},
	    {"load-period-ms", required_argument, NULL, O_LOAD_PERIOD},
	    {"job", required_argument, NULL, O_JOB},
	    {"load-source", required_argument, NULL, O_LOAD_SOURCE},
	    {0},
	};
	const char *name = NULL, *data = NULL, *load_source = NULL;
	int c, rc, demo = 0, period = 5000, job = 0;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case O_NAME:
			name = optarg;
			break;
		case O_DATA:
			data = optarg;
			break;
		case O_DEMO:
			demo = 1;
			break;
		case O_LOAD_PERIOD:
			if (parse_int(optarg, 100, 3600000, &period) < 0)
				return pg_cli_usage(argv[0], "--load-period-ms takes 100..3600000");
			break;
		case O_JOB:
			if (parse_int(optarg, 1, INT_MAX, &job) < 0)
				return pg_cli_usage(argv[0], "--job takes a job number");
			break;
		case O_LOAD_SOURCE:
			load_source = optarg;
			break;
		default:
			return PG_EXIT_USAGE;
		}
	}
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
		rc = pg_serve_worker(name, data, demo, period, load_source);
	}
	if (rc < 0)
		return pg_cli_fail(rc, "worker %s", name);
	return PG_EXIT_OK;
}

const struct pg_cmd pg_cli_serve[] = {
    {"run", cmd_serve_run, "run the daemon: supervised services, HTTP API, metrics, dashboard",
     "[--config FILE] [--data DIR] [--listen ADDR] [--port N] [--port-file FILE] [--token-file "
     "FILE] [--allow-host NAME]... [--demo] "
     "[--load-period-ms MS] [--load-source SPEC]\n\n"
     "  --config FILE       JSON configuration file, re-read on SIGHUP (default "
     "DIR/serve.json if present)\n"
     "  --data DIR          data directory (default $PAYGUARD_DATA_DIR, else "
     "~/.local/share/payguard)\n"
     "  --listen ADDR       address to bind: localhost, an IPv4 or IPv6 address (default\n"
     "                      127.0.0.1; one not loopback needs --token-file)\n"
     "  --port N            HTTP port (default 8470; 0 = any free port)\n"
     "  --port-file FILE    write the bound port to FILE\n"
     "  --token-file FILE   require 'Authorization: Bearer <token>' (token: first line of FILE);\n"
     "                      a browser logs in by opening /?token=TOKEN once (a session cookie)\n"
     "  --allow-host NAME   also answer requests whose Host is NAME (any port), e.g. the\n"
     "                      name a reverse proxy forwards; loopback names always (repeatable)\n"
     "  --load-source SPEC  live load collector polled every period (cgroup:DIR or\n"
     "                      libvirt:URI); without it --demo estimates a generated fleet\n"
     "  --demo              fill POS and load with live generated data\n"
     "  --load-period-ms MS how often the load service estimates (default 5000)\n"
     "Options on the command line win over the file. SIGTERM or SIGINT stops every service "
     "cleanly; SIGHUP reloads the file.",
     NULL, NULL},
    {"worker", cmd_serve_worker, "internal: one supervised service (started by 'serve run')",
     "--name WORKER --data DIR [--demo] "
     "[--load-period-ms MS] [--load-source SPEC]\n       --name upgrade --job N --data DIR\n\n"
     "  WORKER  a name of the worker table (src/serve/workers.c); a wrong one lists them",
     NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};
