/*
 * `payguard serve` (issue 9): one daemon that supervises the services of the
 * other areas as worker processes and serves their data as a JSON HTTP API
 * (libmicrohttpd) with Prometheus metrics. Layout: docs/serve.md, docs/api.md.
 */
#ifndef PAYGUARD_SERVE_H
#define PAYGUARD_SERVE_H

#include <stddef.h>
#include <stdint.h>

#define PG_SERVE_DEFAULT_PORT	 8470
#define PG_SERVE_MAX_BODY	 4096 /* request bodies larger than this get 413 */
#define PG_SERVE_MAX_ALLOW_HOSTS 16
#define PG_SERVE_HOST_NAME	 256 /* an allowed host name, NUL included */

struct pg_serve_cfg {
	const char *data_dir; /* NULL: pg_data_dir() */
	/* the store URL (db.h: a SQLite path, sqlite:PATH or postgresql://...);
	 * NULL: DATA_DIR/payguard.db */
	const char *store;
	const char *host; /* IPv4 address to bind; NULL: 127.0.0.1 */
	int port;	  /* 0: any free port */
	const char *port_file;
	const char *token; /* Bearer token; required when host is not loopback */
	int demo;	   /* start the demo traffic generator and demo data */
	int load_period_ms;
	/* live load collector spec ("cgroup:DIR", "libvirt:URI"); NULL: the
	 * generated fleet with --demo, else no load estimates */
	const char *load_source;
	const char *self_exe; /* the payguard binary workers are started from */
	/* the configuration file re-read on SIGHUP (NULL: none), and the keys the
	 * command line set (PG_SERVE_KEY_... bits), which the file never overrides */
	const char *config_path;
	unsigned cli_keys;
	/* host names (besides loopback) the API answers to: --allow-host / allowed_hosts */
	const char (*allow_hosts)[PG_SERVE_HOST_NAME];
	int nallow_hosts;
	/* cluster mode (docs/cluster.md): this daemon's node name; NULL: the
	 * host name. Only a PostgreSQL store has several nodes. */
	const char *node;
	/* events (issue 15, docs/events.md): NATS server URLs (comma-separated,
	 * NULL none) the "events" singleton publishes to; webhook URLs it POSTs
	 * to; the file of the webhooks' signing secret (checked private at the
	 * start, read by the worker itself); POS intake through JetStream */
	const char *nats;
	const char *const *webhooks;
	int nwebhooks;
	const char *webhook_secret_file;
	int intake_jetstream;
	/* POS decisions reported as events ("unregistered,undetermined"; NULL none) */
	const char *pos_report;
	/* PostgreSQL store: days of pos_txn kept (whole day partitions dropped) */
	int pos_keep_days;
};

/* The configuration file (JSON object; docs/serve.md lists keys and defaults). */
enum {
	PG_SERVE_KEY_LISTEN = 1u << 0,
	PG_SERVE_KEY_PORT = 1u << 1,
	PG_SERVE_KEY_TOKEN_FILE = 1u << 2,
	PG_SERVE_KEY_DEMO = 1u << 3,
	PG_SERVE_KEY_LOAD_PERIOD = 1u << 4,
	PG_SERVE_KEY_LOG_LEVEL = 1u << 5,
	PG_SERVE_KEY_LOAD_SOURCE = 1u << 6,
	PG_SERVE_KEY_ALLOWED_HOSTS = 1u << 7,
	PG_SERVE_KEY_IMAGE_BACKING_DIRS = 1u << 8,
	PG_SERVE_KEY_NODE = 1u << 10,
	PG_SERVE_KEY_STORE = 1u << 9,
	PG_SERVE_KEY_NATS = 1u << 11,
	PG_SERVE_KEY_WEBHOOKS = 1u << 12,
	PG_SERVE_KEY_WEBHOOK_SECRET = 1u << 13,
	PG_SERVE_KEY_INTAKE = 1u << 14,
	PG_SERVE_KEY_POS_REPORT = 1u << 15,
	PG_SERVE_KEY_POS_KEEP_DAYS = 1u << 16,
};
#define PG_SERVE_MAX_WEBHOOKS 8
/* A cluster node's name: 1..63 letters, digits, '.', '_' or '-'. */
#define PG_SERVE_NODE_NAME 64
/* pos_txn days a PostgreSQL store keeps unless told (pos_keep_days). */
#define PG_SERVE_POS_KEEP_DAYS 7
/* 0 when name is a valid node name, else PG_EINVAL with a message. */
int pg_serve_check_node_name(const char *name);
#define PG_SERVE_MAX_CONF 65536
struct pg_serve_conf {
	char listen[64];
	int port;
	char token_file[512];
	int demo;
	int load_period_ms;
	int log_level; /* -1: leave as is */
	char load_source[512];
	char allowed_hosts[PG_SERVE_MAX_ALLOW_HOSTS][PG_SERVE_HOST_NAME];
	int nallowed_hosts;
	/* image_backing_dirs: absolute folders where qcow2 backing files may be
	 * read besides each image's own, '\n'-separated ("" none) */
	char image_backing_dirs[2048];
	char node[PG_SERVE_NODE_NAME]; /* "" the host name */
	char store[1024];	       /* the store URL ("" default) */
	char nats[1024];	       /* NATS URLs, comma-separated ("" none) */
	char webhooks[PG_SERVE_MAX_WEBHOOKS][512];
	int nwebhooks;
	char webhook_secret_file[512];
	int intake_jetstream; /* intake: "jetstream" (1) or "store" (0) */
	char pos_report[128]; /* pos_report: decisions reported as events ("" none) */
	int pos_keep_days;    /* PostgreSQL: days of pos_txn kept */
	unsigned keys;	      /* PG_SERVE_KEY_... bits present in the file */
};
void pg_serve_conf_default(struct pg_serve_conf *c);
/* Parses a file's bytes over c (keys absent keep their value); PG_EFORMAT/PG_EINVAL. */
int pg_serve_conf_parse(const char *text, size_t len, struct pg_serve_conf *c);
int pg_serve_conf_load(const char *path, struct pg_serve_conf *c);

/* Runs the daemon until SIGTERM/SIGINT; returns 0 after a clean stop. */
int pg_serve_run(const struct pg_serve_cfg *cfg);

/* Runs one worker (called in the child process the supervisor started). */
int pg_serve_worker(const char *name, const char *data_dir, int demo, int load_period_ms,
		    const char *load_source);
/* Matches a request's URL against a route's path pattern (src/serve/pathmatch.c):
 * PG_SERVE_PATH_MATCH with *id ({id}, {n}) or *name ({name}) set, _NONE, or
 * _BAD when the literal part before {n} matched but no alert id follows. */
enum { PG_SERVE_PATH_NONE = 0, PG_SERVE_PATH_MATCH = 1, PG_SERVE_PATH_BAD = 2 };
int pg_serve_path_match(const char *pattern, const char *url, int64_t *id, const char **name);
/* The worker named `name` (NULL if none): a row of the table in workers.c. */
const struct pg_serve_worker_def *pg_serve_worker_find(const char *name);
/* The supervised workers' names joined by sep, for help and usage texts. */
int pg_serve_worker_names(char *out, size_t size, const char *sep);
/* 0 when spec names a live load collector (one that polls), else PG_EINVAL
 * with a message; the daemon's load service polls it every period. */
int pg_serve_check_load_source(const char *spec);
/* The workers that open images (image, upgrade) read the configured
 * image_backing_dirs from this environment variable, set by `serve run`. */
#define PG_SERVE_BACKING_ENV "PAYGUARD_SERVE_IMAGE_BACKING_DIRS"
/* Workers and tasks read the daemon's store URL from this environment
 * variable (set by `serve run`; DATA_DIR/payguard.db when unset): a URL may
 * carry a password, so it is never on a command line. */
#define PG_SERVE_STORE_ENV "PAYGUARD_SERVE_STORE"
/* In cluster mode (a PostgreSQL store) the supervisor tells its workers and
 * tasks the node's name in this variable: the VSE hypervisor runs this
 * node's VSEs, upgrade jobs are leased to it (docs/cluster.md). */
#define PG_SERVE_NODE_ENV "PAYGUARD_SERVE_NODE"
/* The events worker and the pos worker read the events configuration from
 * these (set by `serve run`; never on a command line): the NATS URLs (they
 * may carry a user and password), the webhook URLs ('\n'-separated), the
 * path of the webhook secret's file (the worker reads it, checked private,
 * itself) and the POS intake ("jetstream" or unset). */
#define PG_SERVE_NATS_ENV	 "PAYGUARD_SERVE_NATS"
#define PG_SERVE_WEBHOOKS_ENV	 "PAYGUARD_SERVE_WEBHOOKS"
#define PG_SERVE_WEBHOOK_KEY_ENV "PAYGUARD_SERVE_WEBHOOK_SECRET_FILE"
#define PG_SERVE_INTAKE_ENV	 "PAYGUARD_SERVE_INTAKE"
#define PG_SERVE_POS_REPORT_ENV	 "PAYGUARD_SERVE_POS_REPORT"
/* 0 when url is an http:// or https:// URL fit for a webhook, else PG_EINVAL. */
int pg_serve_check_webhook(const char *url);
/* Runs queued image upgrade job `job` (the one-shot worker the API starts). */
int pg_serve_run_upgrade(const char *data_dir, int64_t job);

/* A validated POST /api/pos/alerts/{id} body: {"action": "...", "note": "..."}. */
struct pg_serve_alert_action {
	char state[16]; /* "acknowledged" or "closed" */
	char note[256];
};
/* Parses and validates a body; PG_ETOOBIG, PG_EFORMAT or PG_EINVAL with a detail. */
int pg_serve_parse_alert_action(const char *body, size_t len, struct pg_serve_alert_action *a);

/* A validated POST /api/images/{id}/upgrade body: {"fix": true} (the packages of the
 * data directory's repo/ that fix the image's findings) or {"packages": [names]}
 * (.deb file names in repo/, never paths). */
#define PG_SERVE_MAX_DEBS 8
#define PG_SERVE_DEB_NAME 128
struct pg_serve_upgrade_req {
	int fix;
	size_t ndebs;
	char debs[PG_SERVE_MAX_DEBS][PG_SERVE_DEB_NAME];
};
int pg_serve_parse_upgrade(const char *body, size_t len, struct pg_serve_upgrade_req *u);

/*
 * The API's request guard (guard.c, issue 13): the checks against cross-site
 * requests and DNS rebinding, on the raw header values a client sent.
 */
/* 0 when name may be an allowed host: a DNS name or an IPv4/bracketed IPv6
 * literal, no port; else PG_EINVAL with a message. */
int pg_serve_check_host_name(const char *name);
/* 1 when a Host header names this daemon: localhost, a 127.0.0.0/8 address,
 * [::1] or local_ip (the address the connection came to; may be NULL), each
 * with the daemon's port (no port: 80), or one of allow[] with any port. */
int pg_serve_host_ok(const char *host, int port, const char *local_ip,
		     const char (*allow)[PG_SERVE_HOST_NAME], int nallow);
/* 1 when an Origin header is this daemon's own origin: http:// or https://
 * and exactly the (already checked) Host header, nothing else. */
int pg_serve_origin_ok(const char *origin, const char *host);
/* 1 when a Content-Type header is application/json (parameters allowed). */
int pg_serve_ctype_json(const char *ctype);

/* A validated POST /api/vses/{name} body: {"action": "start" | "stop" | "destroy"}. */
int pg_serve_parse_vse_action(const char *body, size_t len, char action[16]);

#endif
