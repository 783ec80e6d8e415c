/* Private to src/serve: the store schema of the serve area and shared helpers. */
#ifndef PAYGUARD_SERVE_INT_H
#define PAYGUARD_SERVE_INT_H

#include "payguard/store.h"

int pg_serve_migrate(struct pg_store *st);
int pg_serve_demo_pos_data(struct pg_store *st, const char *dir);

#include <stddef.h>

/* The dashboard's embedded files (dashboard.c): 0 and the file for a URL
 * ("/", "/se", "/se.html", "/static/app.js", ...), else PG_ENOENT. */
int pg_serve_static(const char *url, const char **ctype, const unsigned char **data, size_t *len);

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#define PG_SERVE_MAX_SVC 8

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
	int reload_start; /* the next start is that planned one */
};

struct pg_serve_state {
	pthread_mutex_t mu; /* guards svc[] (supervisor loop vs API thread) */
	struct pg_serve_svc svc[PG_SERVE_MAX_SVC];
	int nsvc;
	char data_dir[512], dbpath[600];
	const char *token; /* NULL: no token required */
	int64_t started_ms;
	int load_period_ms; /* current, after reloads */
	unsigned reloads;
	struct pg_store st;	/* the supervisor's connection */
	struct pg_store api_st; /* the API thread's own connection */
	/* request counters by status class (2xx .. 5xx), API thread only */
	uint64_t req[6];
	uint64_t req_total;
};

struct MHD_Daemon;
int pg_serve_api_start(struct pg_serve_state *s, const char *host, int port, int *bound,
		       struct MHD_Daemon **out);
void pg_serve_api_stop(struct MHD_Daemon *d);

#endif
