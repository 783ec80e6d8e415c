/* Private to src/serve: the store schema of the serve area and shared helpers. */
#ifndef PAYGUARD_SERVE_INT_H
#define PAYGUARD_SERVE_INT_H

#include "payguard/serve.h"
#include "payguard/store.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

int pgi_serve_migrate(struct pg_store *st);
/*
 * pos_txn retention, once a minute on the node leading "retention": on
 * PostgreSQL the day partitions older than keep_days are dropped (and stray
 * old rows of the default partition deleted); on SQLite, one machine's
 * embedded store, rows beyond the newest 100,000 that no alert cites are
 * deleted. What goes is first added to serve_pos_pruned in the same
 * transaction, so the /metrics counters never go down.
 */
int pgi_serve_retention(struct pg_store *st, int64_t now_ms, int keep_days);
int pgi_serve_demo_pos_data(struct pg_store *st, const char *dir);

/* The live APDU log (table serve_apdu, the last 500): data of secret-bearing
 * commands (INITIALIZE UPDATE, EXTERNAL AUTHENTICATE, PUT KEY, ...) is not kept. */
int pgi_serve_log_apdu(struct pg_store *st, const char *source, const char *se, const char *link,
		       const uint8_t *c, size_t cn, const uint8_t *r, size_t rn, int64_t us);
/* The data directory's SE master key (DIR/seos/master.key, 16 random bytes, 0600,
 * made at first use): the SE OS's key store diversifies it for simulated SEs (by SE
 * id) and VSEs (by CIN); VSEs the API creates without keys get it. */
int pgi_serve_master_key(const char *dir, uint8_t key[16]);
/* Replaces the one row of a worker's snapshot table (serve_nfcsw, serve_seos). */
int pgi_serve_put_snapshot(struct pg_store *st, const char *table, json_t *snap);
/* What every worker is given (pg_serve_worker). */
struct pg_serve_wargs {
	const char *dir;
	const char *store; /* store URL: a SQLite path or a PostgreSQL URL */
	int demo, load_period_ms;
	const char *load_source; /* NULL or "" none */
};
/* One row of the worker table (workers.c): the supervisor starts a process
 * `payguard serve worker --name NAME` per row, and that process runs `run`. */
struct pg_serve_worker_def {
	const char *name;
	int (*run)(const struct pg_serve_wargs *a);
	int demo_only; /* supervised with --demo only */
	/* the cluster singleton it is (cluster.c): one node of a cluster runs
	 * it, the others keep it in standby; NULL: every node runs it */
	const char *singleton;
	int stop_last; /* stops after the others have (daemon.c, stop_workers) */
};
extern const struct pg_serve_worker_def pgi_serve_workers[]; /* ends with a NULL name */
/* The "seos" worker: runs until *stop. */
int pgi_serve_worker_seos(const char *dir, const char *store, int demo, const volatile int *stop);
/* The "nfcswitch" worker: the NFC switch over the SE OS's SEs, until *stop. */
int pgi_serve_worker_nfcswitch(const char *dir, const char *store, const volatile int *stop);
/* The one-shot "upgrade" worker: runs queued image job `job` (table serve_upgrade). */
int pgi_serve_worker_upgrade(const char *dir, const char *store, int64_t job,
			     const volatile int *stop);

/* The dashboard's embedded files (dashboard.c): 0 and the file for a URL
 * ("/", "/se", "/se.html", "/static/app.js", ...), else PG_ENOENT. */
int pgi_serve_static(const char *url, const char **ctype, const unsigned char **data, size_t *len);

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#define PG_SERVE_MAX_SVC   12
#define PG_SERVE_MAX_TASKS 2 /* upgrades running at once */

/* The request guard's state (guard.c): allowed host names and the dashboard's
 * login sessions (random ids from the token, in memory only). */
#define PG_SERVE_SESSIONS   64
#define PG_SERVE_SESSION_MS (12 * 3600 * 1000) /* a session lasts 12 h */
struct pg_serve_session {
	unsigned char id[32];
	int64_t expires_ms; /* wall clock; 0: free slot */
};
struct pgi_serve_guard {
	int inited;
	pthread_mutex_t mu; /* guards sess[] (any API thread) */
	struct pg_serve_session sess[PG_SERVE_SESSIONS];
	char allow[PG_SERVE_MAX_ALLOW_HOSTS][PG_SERVE_HOST_NAME];
	int nallow;
};

/* One supervised worker process. */
struct pg_serve_svc {
	char name[24];
	pid_t pid;	   /* 0 when not running */
	const char *state; /* "running", "backoff", "stopped" */
	unsigned restarts;
	int64_t started_ms; /* wall clock of the last start */
	uint64_t started_mono, next_start_mono;
	unsigned backoff_ms;
	char last_exit[48];
	int reloading;	  /* stopped on purpose for a reload: restart now, not counted */
	int standby;	  /* stopped because another node leads it (cluster.c) */
	int reload_start; /* the next start is that planned one */
};

struct pg_serve_state {
	pthread_mutex_t mu; /* guards svc[] (supervisor loop vs API thread) */
	struct pg_serve_svc svc[PG_SERVE_MAX_SVC];
	int nsvc;
	char data_dir[512];
	char store[1024];  /* the store URL (pick_store in daemon.c) */
	const char *token; /* NULL: no token required */
	int64_t started_ms;
	int load_period_ms; /* current, after reloads */
	int pos_keep_days;  /* PostgreSQL: days of pos_txn retention keeps */
	unsigned reloads;
	struct pg_store st; /* the supervisor's connection */
	/* request counters by status class (2xx .. 5xx), added to atomically by
	 * the API's threads */
	uint64_t req[6];
	uint64_t req_total;
	const char *exe; /* the payguard binary workers and tasks are started from */
	/* one-shot upgrade workers the API started (guarded by mu) */
	pid_t task[PG_SERVE_MAX_TASKS];
	int64_t task_job[PG_SERVE_MAX_TASKS];
	struct pgi_serve_guard guard;
	/* HTTP connections (api.c, issue 17): accepted since the start and refused
	 * at the connection limits (libmicrohttpd's global or per-IP limit).
	 * Atomic: libmicrohttpd may call its callbacks from several threads. */
	_Atomic uint64_t http_conn_total, http_conn_refused;
	unsigned http_conn_limit; /* MHD_OPTION_CONNECTION_LIMIT as started */
	/* cluster mode (cluster.c): membership and singleton leadership; set
	 * before the services start, never NULL while the daemon runs */
	struct pg_serve_cluster *cluster;
};
/* Starts the one-shot upgrade worker for queued job `job`; PG_EBUSY when
 * PG_SERVE_MAX_TASKS are running. Called from the API thread. */
int pgi_serve_start_upgrade(struct pg_serve_state *s, int64_t job);

struct MHD_Connection;
struct MHD_Response;
/* guard.c: pgi_serve_guard_init copies the allowed host names; _release wipes the
 * sessions. */
int pgi_serve_guard_init(struct pg_serve_state *s, const char (*allow)[PG_SERVE_HOST_NAME],
			 int nallow);
void pgi_serve_guard_release(struct pg_serve_state *s);
/* Run by the API's handler before it authenticates or routes a request: 0 to
 * go on, else 1 with a reply (421 foreign Host, 403 cross-site, 415 not JSON,
 * 303 token login) already queued and *ret its MHD result. */
int pgi_serve_guard(struct pg_serve_state *s, struct MHD_Connection *c, const char *url,
		    const char *method, int *ret);
/* 1 when the request carries a live dashboard session cookie (pg_session). */
int pgi_serve_guard_session(struct pg_serve_state *s, struct MHD_Connection *c);
/* 1 when got is the token (both hashed, compared in constant time). */
int pgi_serve_token_equal(const char *token, const char *got);
/* Adds the security headers every answer carries (CSP, framing, referrer). */
void pgi_serve_guard_headers(struct MHD_Response *resp);

/* A listen address: "localhost" (= 127.0.0.1), an IPv4 address, or an IPv6
 * address ("::1", optionally in brackets). 0, or PG_EINVAL with a message. */
struct sockaddr_storage;
int pgi_serve_parse_listen(const char *host, struct sockaddr_storage *ss, unsigned *len,
			   int *loopback);
/* Binds and listens on host:port (close-on-exec, non-blocking), before anything
 * else of the daemon starts: a port in use fails here with a clear message.
 * *bound is the port (for port 0), *loopback whether the address is loopback. */
int pgi_serve_listen(const char *host, int port, int *fd, int *bound, int *loopback);

/* The HTTP API (api.c): a pool of PG_SERVE_API_THREADS libmicrohttpd threads
 * answering on the socket pgi_serve_listen made, each request with a store
 * connection of its own from a pool of as many. */
#define PG_SERVE_API_THREADS 8
struct pg_serve_api;
int pgi_serve_api_start(struct pg_serve_state *s, int listen_fd, struct pg_serve_api **out);
void pgi_serve_api_stop(struct pg_serve_api *a);
/* Called by the supervisor loop: cuts connections whose request head is
 * overdue (API_HEAD_S in api.c); does its work at most once a second. */
void pgi_serve_api_tick(struct pg_serve_api *a);

#endif
