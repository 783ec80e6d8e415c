/*
 * The serve HTTP API over libmicrohttpd: JSON resources of the POS and load
 * services, alert actions, Prometheus text metrics at /metrics, and the
 * static dashboard page. Every route is in docs/api.md. Requests are
 * authenticated (Bearer token, compared in constant time) when a token is
 * set; bodies are bounded by PG_SERVE_MAX_BODY and validated before use.
 *
 * Threads (issue 13, item 7): libmicrohttpd's pool of PG_SERVE_API_THREADS
 * threads answers; a request takes one of as many store connections (SQLite
 * connections are never shared between threads), so a slow call (the VSE
 * hypervisor, 5 s at most) holds its own thread only. Connections are limited
 * per client address and in all, idle ones close after API_TIMEOUT_S, ones
 * whose request head is API_HEAD_S overdue are cut (pgi_serve_api_tick),
 * refused and cut ones are logged at most once per REFUSED_LOG_S with a
 * count, and /metrics
 * reads the store's counts from a cache refreshed at most once a second.
 */
#include "payguard/json.h"
#include "payguard/clock.h"
#include "payguard/db_json.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/image.h"
#include "payguard/link.h"
#include "payguard/log.h"
#include "payguard/mem.h"
#include "payguard/pos.h"
#include "payguard/serve.h"
#include "payguard/vse.h"
#include "cluster.h"
#include "serve_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define API_PER_IP_LIMIT 128   /* connections from one client address */
#define API_CONN_LIMIT	 512   /* connections in all */
#define API_TIMEOUT_S	 10    /* an idle connection closes */
#define API_HEAD_S	 15    /* a request head not complete by then: connection cut */
#define API_MAX_URI	 4096  /* longer request targets get 414 */
#define API_MAX_HEADERS	 16384 /* more header bytes get 431 */
#define REFUSED_LOG_S	 10    /* at most one log line per kind this often */
#define METRICS_CACHE_MS 1000  /* the store's counts in /metrics are at most this old */

/* One client address with open connections (for the per-client limit). */
struct ipcount {
	unsigned char addr[16];
	int fam;
	unsigned n;
};

/* One open connection: its client address, socket, and since when the
 * daemon waits for its next request head (0: a request is being answered). */
struct conn_key {
	unsigned char addr[16];
	int fam, fd;
	uint64_t head_since_ms;
	struct conn_key *prev, *next;
};

/* A rate-limited kind of log line: counted always, written once per period. */
struct ratelog {
	uint64_t count, last_ms;
	char last[200];
};

struct pg_serve_api {
	struct pg_serve_state *s;
	struct MHD_Daemon *d;
	/* the store connections, one per request at a time */
	pthread_mutex_t pool_mu;
	pthread_cond_t pool_cv;
	struct pg_store st[PG_SERVE_API_THREADS];
	int busy[PG_SERVE_API_THREADS];
	/* open connections by client address, and the list of them (ip_mu) */
	pthread_mutex_t ip_mu;
	struct ipcount ips[API_CONN_LIMIT + 2 * PG_SERVE_API_THREADS];
	struct conn_key *conns;
	uint64_t swept_ms;
	/* refused connections, cut slow heads, other libmicrohttpd messages */
	pthread_mutex_t log_mu;
	struct ratelog logs[3];
	/* the store part of /metrics */
	pthread_mutex_t m_mu;
	char *m_text;
	uint64_t m_at_ms;
};

/* Per-request state: the body gathered so far. */
struct req {
	char body[PG_SERVE_MAX_BODY];
	size_t len;
	int too_big;
	int started;	/* the handler has seen this request's headers */
	int uri_nul;	/* the raw request target has %00 */
	size_t uri_len; /* the raw request target's length */
};

struct reply {
	int status;
	char *text; /* malloc'd */
	const char *ctype;
	const char *allow; /* for 405: the methods the resource takes */
	char allow_buf[32];
};

static void
reply_json(struct reply *r, int status, json_t *v)
{
	r->status = status;
	r->ctype = "application/json";
	r->text = v ? pg_json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
	json_decref(v);
	if (!r->text) {
		r->status = 500;
		r->text = strdup("{\"error\":{\"status\":500,\"message\":\"out of memory\"}}");
	}
}

static void reply_error(struct reply *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
reply_error(struct reply *r, int status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	reply_json(r, status,
		   json_pack("{s:{s:i,s:s}}", "error", "status", status, "message", msg));
}

/* 405 with the methods the resource takes in Allow (RFC 9110, 15.5.6). */
static void
reply_405(struct reply *r, const char *method, const char *url, const char *allow)
{
	reply_error(r, 405, "method %.32s not allowed on %.200s (allowed: %s)", method, url, allow);
	r->allow = allow;
}

static int
status_of(int rc)
{
	switch (rc) {
	case PG_ENOENT:
		return 404;
	case PG_ESTATE:
	case PG_EEXIST:
		return 409;
	case PG_EINVAL:
	case PG_EFORMAT:
	case PG_ERANGE:
		return 400;
	case PG_ETOOBIG:
		return 413;
	case PG_EBUSY:
		return 503;
	default:
		return 500;
	}
}

static void
reply_rc(struct reply *r, int rc)
{
	const char *d = pg_last_error();

	reply_error(r, status_of(rc), "%s", d[0] ? d : pg_strerror(rc));
}

/* ---- helpers over the store ---- */

static int64_t
count_sql(struct pg_store *st, const char *sql)
{
	int64_t n = 0;

	(void)pg_db_query_int64(st->pdb, sql, &n);
	return n;
}

/* Runs a query and returns its rows as objects keyed by column name. */
static int
rows_json(struct pg_store *st, const char *sql, json_t **out)
{
	return pg_db_query_json(st->pdb, sql, NULL, out);
}

/* The newest load estimate's column ("vms" or "types") as JSON. */
static int
load_latest(struct pg_store *st, const char *col, json_t **out)
{
	struct pg_db_stmt *q = NULL;
	char sql[128];
	int rc;

	snprintf(sql, sizeof(sql),
		 "SELECT at_ms, silhouette, %s FROM serve_load ORDER BY id DESC LIMIT 1", col);
	rc = pg_db_prepare(st->pdb, sql, &q);
	if (rc >= 0)
		rc = pg_db_step(q);
	if (rc > 0) {
		json_t *v = json_loads(pg_db_column_text(q, 2), 0, NULL);

		*out =
		    json_pack("{s:I,s:f,s:o}", "at_ms", (json_int_t)pg_db_column_int64(q, 0),
			      "silhouette", pg_db_column_double(q, 1), col, v ? v : json_array());
		rc = 0;
	} else if (rc == 0) {
		rc = pg_error(PG_ENOENT, "serve",
			      "no load estimate yet (the load service makes one every period "
			      "from its load_source, or from the generated fleet with --demo)");
	}
	if (q)
		pg_db_reset(q);
	return rc;
}

/* A worker's newest snapshot row (table serve_nfcsw or serve_seos) as JSON. */
static int
snapshot_latest(struct pg_store *st, const char *table, const char *svc, json_t **out)
{
	struct pg_db_stmt *q = NULL;
	char sql[96];
	int rc;

	snprintf(sql, sizeof(sql), "SELECT at_ms, snapshot FROM %s WHERE id = 1", table);
	rc = pg_db_prepare(st->pdb, sql, &q);
	if (rc >= 0)
		rc = pg_db_step(q);
	if (rc > 0) {
		json_t *v = json_loads(pg_db_column_text(q, 1), 0, NULL);

		if (v) {
			json_object_set_new(v, "at_ms", json_integer(pg_db_column_int64(q, 0)));
			*out = v;
			rc = 0;
		} else {
			rc = pg_error(PG_ECORRUPT, "serve", "%s snapshot is not JSON", svc);
		}
	} else if (rc == 0) {
		rc = pg_error(PG_ENOENT, "serve", "the %s service has not reported yet", svc);
	}
	if (q)
		pg_db_reset(q);
	return rc;
}

/* The nfcswitch worker's newest snapshot (SEs, routing table, counters). */
static int
nfcsw_latest(struct pg_store *st, json_t **out)
{
	return snapshot_latest(st, "serve_nfcsw", "nfcswitch", out);
}

/* One VM's load in a stored estimate's "vms" array, appended to a. */
static void
history_point(json_t *a, int64_t at_ms, const char *vms_text, const char *vm)
{
	json_t *vms = json_loads(vms_text, 0, NULL), *v;
	size_t i;

	json_array_foreach(vms, i, v)
	{
		if (strcmp(json_string_value(json_object_get(v, "name")) ?: "", vm) == 0) {
			json_array_append_new(a,
					      json_pack("{s:I,s:O,s:O}", "at_ms", (json_int_t)at_ms,
							"load", json_object_get(v, "load"), "type",
							json_object_get(v, "type")));
			break;
		}
	}
	json_decref(vms);
}

static int
load_history(struct pg_store *st, const char *vm, json_t **out)
{
	struct pg_db_stmt *q = NULL;
	json_t *a = json_array();
	int rc =
	    pg_db_prepare(st->pdb,
			  "SELECT at_ms, vms FROM (SELECT id, at_ms, vms FROM serve_load ORDER "
			  "BY id DESC LIMIT 100) AS recent ORDER BY id",
			  &q);

	while (rc >= 0 && (rc = pg_db_step(q)) > 0)
		history_point(a, pg_db_column_int64(q, 0), pg_db_column_text(q, 1), vm);
	if (q)
		pg_db_reset(q);
	if (rc < 0) {
		json_decref(a);
		return rc;
	}
	if (json_array_size(a) == 0) {
		json_decref(a);
		return pg_error(PG_ENOENT, "serve", "no VM named '%.64s' in the recent estimates",
				vm);
	}
	*out = json_pack("{s:s,s:o}", "vm", vm, "history", a);
	return 0;
}

static json_t *
find_alert(struct pg_store *st, int64_t id)
{
	json_t *all = pg_pos_alerts_list(st, NULL, 100000), *a, *hit = NULL;
	size_t i;

	json_array_foreach(all, i, a)
	{
		if (json_integer_value(json_object_get(a, "id")) == id) {
			hit = json_incref(a);
			break;
		}
	}
	json_decref(all);
	return hit;
}

static json_t *
services_json(struct pg_serve_state *s)
{
	json_t *a = json_array();

	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < s->nsvc; i++) {
		const struct pg_serve_svc *w = &s->svc[i];

		json_array_append_new(a, json_pack("{s:s,s:s,s:i,s:I,s:I,s:s}", "name", w->name,
						   "state", w->state, "pid", (int)w->pid,
						   "restarts", (json_int_t)w->restarts,
						   "started_ms", (json_int_t)w->started_ms,
						   "last_exit", w->last_exit));
	}
	pthread_mutex_unlock(&s->mu);
	return a;
}

static json_t *
links_json(void)
{
	json_t *a = json_array();

	for (size_t i = 0; pg_link_drivers[i]; i++) {
		const struct pg_link_ops *o = pg_link_drivers[i];

		json_array_append_new(
		    a, json_pack("{s:s,s:i,s:I,s:I,s:b,s:b}", "name", o->name, "type", (int)o->type,
				 "max_capdu", (json_int_t)o->max_capdu, "max_rapdu",
				 (json_int_t)o->max_rapdu, "host", o->host_open != NULL, "card",
				 o->card_open != NULL));
	}
	return a;
}

/* ---- metrics ---- */

struct mbuf {
	char *p;
	size_t len, cap;
};

static void mprintf(struct mbuf *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
mprintf(struct mbuf *m, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!m->p)
		return;
	va_start(ap, fmt);
	n = vsnprintf(m->p + m->len, m->cap - m->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= m->cap - m->len) {
		char *np = realloc(m->p, m->cap * 2 + (size_t)n);

		if (!np) {
			free(m->p);
			m->p = NULL;
			return;
		}
		m->p = np;
		m->cap = m->cap * 2 + (size_t)n;
		va_start(ap, fmt);
		vsnprintf(m->p + m->len, m->cap - m->len, fmt, ap);
		va_end(ap);
	}
	m->len += (size_t)n;
}

/* Connections open now over the whole thread pool (libmicrohttpd's count). */
static unsigned
http_conn_open(struct pg_serve_api *a)
{
	const union MHD_DaemonInfo *di =
	    a->d ? MHD_get_daemon_info(a->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS) : NULL;

	return di ? di->num_connections : 0;
}

/* The API's connection use for /api/health (issue 17, the health page). */
static json_t *
http_json(struct pg_serve_api *a)
{
	struct pg_serve_state *s = a->s;

	return json_pack("{s:I,s:I,s:I,s:I,s:I}", "connections", (json_int_t)http_conn_open(a),
			 "connection_limit", (json_int_t)s->http_conn_limit, "connections_total",
			 (json_int_t)atomic_load(&s->http_conn_total), "refused_total",
			 (json_int_t)atomic_load(&s->http_conn_refused), "requests_total",
			 (json_int_t)__atomic_load_n(&s->req_total, __ATOMIC_RELAXED));
}

/* The part of /metrics counted in the store (the expensive part). */
static char *
metrics_store(struct pg_store *st)
{
	static const char *const decs[] = {"in_place", "moved", "undetermined", "unregistered",
					   "format"};
	static const char *const states[] = {"open", "acknowledged", "closed"};
	struct mbuf m = {malloc(4096), 0, 4096};
	char sql[256];

	mprintf(&m,
		"# HELP payguard_pos_transactions_total POS transactions decided and recorded.\n"
		"# TYPE payguard_pos_transactions_total counter\n"
		"payguard_pos_transactions_total %lld\n",
		(long long)count_sql(st, "SELECT (SELECT count(*) FROM pos_txn) +"
					 " (SELECT coalesce(sum(n), 0) FROM serve_pos_pruned)"));
	mprintf(&m, "# HELP payguard_pos_decisions_total POS decisions by kind.\n"
		    "# TYPE payguard_pos_decisions_total counter\n");
	for (size_t i = 0; i < sizeof(decs) / sizeof(decs[0]); i++) {
		/* rows the retention pruned are counted in serve_pos_pruned */
		snprintf(sql, sizeof(sql),
			 "SELECT (SELECT count(*) FROM pos_txn WHERE decision='%s') +"
			 " (SELECT coalesce(sum(n), 0) FROM serve_pos_pruned WHERE decision='%s')",
			 decs[i], decs[i]);
		mprintf(&m, "payguard_pos_decisions_total{decision=\"%s\"} %lld\n", decs[i],
			(long long)count_sql(st, sql));
	}
	mprintf(
	    &m,
	    "# HELP payguard_pos_alerts POS alerts by state.\n# TYPE payguard_pos_alerts gauge\n");
	for (size_t i = 0; i < 3; i++) {
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM pos_alerts WHERE state='%s'",
			 states[i]);
		mprintf(&m, "payguard_pos_alerts{state=\"%s\"} %lld\n", states[i],
			(long long)count_sql(st, sql));
	}
	mprintf(&m,
		"# HELP payguard_load_estimates_total Two-level k-means estimates made.\n"
		"# TYPE payguard_load_estimates_total counter\n"
		"payguard_load_estimates_total %lld\n",
		(long long)count_sql(st, "SELECT coalesce(max(id), 0) FROM serve_load"));
	{
		json_t *snap = NULL, *se;
		size_t i;

		mprintf(&m, "# HELP payguard_se_apdus_total APDUs the NFC switch sent to each SE.\n"
			    "# TYPE payguard_se_apdus_total counter\n");
		if (nfcsw_latest(st, &snap) == 0) {
			json_array_foreach(json_object_get(snap, "ses"), i, se)
			    mprintf(&m, "payguard_se_apdus_total{se=\"%s\"} %lld\n",
				    json_string_value(json_object_get(se, "name")),
				    (long long)json_integer_value(json_object_get(se, "apdus")));
			mprintf(&m,
				"# HELP payguard_nfcsw_selects_total SELECTs routed by the NFC "
				"switch.\n"
				"# TYPE payguard_nfcsw_selects_total counter\n"
				"payguard_nfcsw_selects_total %lld\n",
				(long long)json_integer_value(json_object_get(snap, "selects")));
		}
		json_decref(snap);
	}
	{
		static const char *const js[] = {"queued",	"running",   "done",	  "failed",
						 "interrupted", "committed", "rolledback"};

		mprintf(&m, "# HELP payguard_image_upgrades Image upgrade jobs by state.\n"
			    "# TYPE payguard_image_upgrades gauge\n");
		for (size_t i = 0; i < sizeof(js) / sizeof(js[0]); i++) {
			snprintf(sql, sizeof(sql),
				 "SELECT count(*) FROM image_job WHERE state='%s'", js[i]);
			mprintf(&m, "payguard_image_upgrades{state=\"%s\"} %lld\n", js[i],
				(long long)count_sql(st, sql));
		}
		mprintf(&m,
			"# HELP payguard_images Images in the inventory.\n"
			"# TYPE payguard_images gauge\npayguard_images %lld\n",
			(long long)count_sql(st, "SELECT count(*) FROM image"));
	}
	{
		json_t *snap = NULL;

		if (snapshot_latest(st, "serve_seos", "seos", &snap) == 0) {
			mprintf(
			    &m,
			    "# HELP payguard_seos_exchanges_total Wallet exchanges through the "
			    "SE OS.\n# TYPE payguard_seos_exchanges_total counter\n"
			    "payguard_seos_exchanges_total{result=\"ok\"} %lld\n"
			    "payguard_seos_exchanges_total{result=\"failed\"} %lld\n"
			    "# HELP payguard_seos_ses SEs in the SE OS's list.\n"
			    "# TYPE payguard_seos_ses gauge\npayguard_seos_ses %zu\n",
			    (long long)json_integer_value(json_object_get(snap, "exchanges_ok")),
			    (long long)(json_integer_value(json_object_get(snap, "exchanges")) -
					json_integer_value(json_object_get(snap, "exchanges_ok"))),
			    json_array_size(json_object_get(snap, "ses")));
		}
		json_decref(snap);
		pg_clear_error();
	}
	return m.p;
}

/*
 * GET /metrics: the request counters and services read now, the store's counts
 * from a cache at most METRICS_CACHE_MS old. One scrape refreshes it; scrapes
 * meanwhile take the previous text instead of waiting (or counting again).
 */
static void
metrics(struct pg_serve_api *a, struct pg_store *st, struct reply *r)
{
	static const char *const cls[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
	struct pg_serve_state *s = a->s;
	struct mbuf m = {malloc(4096), 0, 4096};
	uint64_t now = pg_mono_ms();
	int locked = 0;

	if (pthread_mutex_trylock(&a->m_mu) == 0)
		locked = 1;
	else if (!__atomic_load_n(&a->m_text, __ATOMIC_ACQUIRE))
		locked = pthread_mutex_lock(&a->m_mu) == 0; /* the first one: wait for it */
	if (locked) {
		if (!a->m_text || now - a->m_at_ms >= METRICS_CACHE_MS) {
			char *t = metrics_store(st);

			if (t) {
				pthread_mutex_lock(&s->mu); /* guards the swap against readers */
				free(a->m_text);
				__atomic_store_n(&a->m_text, t, __ATOMIC_RELEASE);
				a->m_at_ms = now;
				pthread_mutex_unlock(&s->mu);
			}
		}
		pthread_mutex_unlock(&a->m_mu);
	}
	mprintf(&m, "# HELP payguard_http_requests_total HTTP requests answered, by status class.\n"
		    "# TYPE payguard_http_requests_total counter\n");
	for (int i = 0; i < 5; i++)
		mprintf(&m, "payguard_http_requests_total{code=\"%s\"} %llu\n", cls[i],
			(unsigned long long)__atomic_load_n(&s->req[i + 1], __ATOMIC_RELAXED));
	mprintf(&m,
		"# HELP payguard_http_connections HTTP connections open now.\n"
		"# TYPE payguard_http_connections gauge\npayguard_http_connections %u\n"
		"# HELP payguard_http_connection_limit Most HTTP connections served at once.\n"
		"# TYPE payguard_http_connection_limit gauge\npayguard_http_connection_limit %u\n"
		"# HELP payguard_http_connections_total HTTP connections accepted.\n"
		"# TYPE payguard_http_connections_total counter\n"
		"payguard_http_connections_total %llu\n"
		"# HELP payguard_http_connections_refused_total HTTP connections refused at the "
		"connection limits.\n"
		"# TYPE payguard_http_connections_refused_total counter\n"
		"payguard_http_connections_refused_total %llu\n",
		http_conn_open(a), s->http_conn_limit,
		(unsigned long long)atomic_load(&s->http_conn_total),
		(unsigned long long)atomic_load(&s->http_conn_refused));
	pthread_mutex_lock(&s->mu);
	if (a->m_text)
		mprintf(&m, "%s", a->m_text);
	mprintf(&m, "# HELP payguard_service_restarts_total Worker restarts by the supervisor.\n"
		    "# TYPE payguard_service_restarts_total counter\n");
	for (int i = 0; i < s->nsvc; i++)
		mprintf(&m, "payguard_service_restarts_total{service=\"%s\"} %u\n", s->svc[i].name,
			s->svc[i].restarts);
	mprintf(&m, "# HELP payguard_service_up 1 when the worker process is running.\n"
		    "# TYPE payguard_service_up gauge\n");
	for (int i = 0; i < s->nsvc; i++)
		mprintf(&m, "payguard_service_up{service=\"%s\"} %d\n", s->svc[i].name,
			s->svc[i].pid > 0);
	pthread_mutex_unlock(&s->mu);
	if (!m.p) {
		reply_error(r, 500, "out of memory");
		return;
	}
	r->status = 200;
	r->ctype = "text/plain; version=0.0.4";
	r->text = m.p;
}

/* ---- routing ---- */

static int
token_ok(struct pg_serve_state *s, struct MHD_Connection *c)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");

	if (!s->token)
		return 1;
	if (pgi_serve_guard_session(s, c)) /* the dashboard's cookie (guard.c) */
		return 1;
	if (!h || strncmp(h, "Bearer ", 7) != 0)
		return 0;
	return pgi_serve_token_equal(s->token, h + 7);
}

#define VSE_CALL_TIMEOUT_MS 5000
static int vse_calls; /* hypervisor calls in flight */

/* Forwards one request to the VSE hypervisor after validating it there-side
 * rules here first (pg_vse_api_decode), so nothing malformed reaches it. */
static void
vse_call(struct pg_serve_state *s, json_t *req, int ok_status, struct reply *r)
{
	struct pg_vse_api_req dec;
	char sock[600], *text = pg_json_dumps(req, JSON_COMPACT);
	json_t *resp = NULL;
	int rc;

	if (!text) {
		json_decref(req);
		return reply_error(r, 500, "out of memory");
	}
	rc = pg_vse_api_decode(&dec, (const uint8_t *)text, strlen(text));
	free(text);
	if (rc < 0) {
		json_decref(req);
		return reply_rc(r, rc);
	}
	snprintf(sock, sizeof(sock), "%s/vse/hv.sock", s->data_dir);
	/* a hung hypervisor holds each caller's thread until the timeout: never
	 * more than half of the pool, so the rest of the API keeps answering */
	if (__atomic_add_fetch(&vse_calls, 1, __ATOMIC_ACQ_REL) > PG_SERVE_API_THREADS / 2) {
		__atomic_sub_fetch(&vse_calls, 1, __ATOMIC_ACQ_REL);
		json_decref(req);
		return reply_error(r, 503,
				   "VSE hypervisor: %d calls are waiting for it already; try again "
				   "later",
				   PG_SERVE_API_THREADS / 2);
	}
	rc = pg_vse_api_call(sock, req, &resp, VSE_CALL_TIMEOUT_MS);
	__atomic_sub_fetch(&vse_calls, 1, __ATOMIC_ACQ_REL);
	if (rc < 0) {
		const char *d = pg_last_error();

		if (rc == PG_ECLOSED || rc == PG_ESYS || rc == PG_EIO || rc == PG_ETIMEDOUT)
			return reply_error(r, 503, "VSE hypervisor: %s",
					   d[0] ? d : pg_strerror(rc));
		return reply_rc(r, rc);
	}
	reply_json(r, ok_status, resp);
}

/* What the one-shot upgrade worker reads: the request behind queued job `job`. */
static int
insert_upgrade_req(struct pg_store *st, int64_t job, int64_t image_id, int fix, const char *debs)
{
	return pg_db_run_json(
	    st->pdb, "INSERT INTO serve_upgrade(job, image_id, fix, debs) VALUES(?,?,?,?)",
	    json_pack("[I,I,i,s]", (json_int_t)job, (json_int_t)image_id, fix, debs), NULL);
}

/* ---- the routes: one table (docs/ARCHITECTURE.md, "Adding a route") ----
 *
 * A request is answered by the first row whose path pattern matches its URL
 * and whose method is the request's (a GET row also answers HEAD). When the
 * path matches rows but none takes the method, the answer is 405 with Allow
 * made from those rows. GET /api lists the table. */

/* What a handler gets: the request, the parameters of its path, the reply. */
struct call {
	struct pg_serve_api *a;
	struct pg_serve_state *s;
	struct pg_store *st;
	struct MHD_Connection *c;
	const char *url;
	struct req *rq;
	struct reply *r;
	int64_t id;	  /* {id} or {n} */
	const char *name; /* {name}: the rest of the URL */
};

struct route {
	const char *method; /* "GET" (answers HEAD too) or "POST" */
	/* literal segments and parameters: {id} a decimal number from 1 with no
	 * leading zero (an image), {n} one of at most 18 digits (an alert),
	 * {name} the rest of the URL, {page} a page or file of the dashboard */
	const char *path;
	void (*fn)(struct call *x);
	int body;	  /* takes a body: larger than PG_SERVE_MAX_BODY is 413 */
	const char *desc; /* one line for GET /api; docs/api.md has the details */
};

static void
get_page(struct call *x)
{
	const unsigned char *data;
	size_t len;

	if (pgi_serve_static(x->url, &x->r->ctype, &data, &len) != 0)
		return reply_error(x->r, 500, "dashboard file vanished");
	x->r->text = malloc(len + 1);
	if (!x->r->text)
		return reply_error(x->r, 500, "out of memory");
	memcpy(x->r->text, data, len);
	x->r->text[len] = '\0';
	x->r->status = 200;
}

/* Replies 200 with v, or the error of rc. */
static void
reply_v(struct reply *r, int rc, json_t *v)
{
	if (rc < 0) {
		json_decref(v);
		return reply_rc(r, rc);
	}
	reply_json(r, 200, v);
}

static void get_api(struct call *x);

static void
get_health(struct call *x)
{
	struct pg_serve_state *s = x->s;
	json_t *v;

	pthread_mutex_lock(&s->mu);
	v = json_pack("{s:s,s:I,s:s,s:i,s:i}", "status", "ok", "uptime_ms",
		      (json_int_t)(pg_wall_ms() - s->started_ms), "data_dir", s->data_dir,
		      "load_period_ms", s->load_period_ms, "reloads", (int)s->reloads);
	pthread_mutex_unlock(&s->mu);
	json_object_set_new(v, "http", http_json(x->a)); /* connection use, for the health page */
	reply_json(x->r, 200, v);
}

static void
get_services(struct call *x)
{
	reply_json(x->r, 200, services_json(x->s));
}

/* The cluster's nodes and who leads each singleton (cluster.c, docs/cluster.md). */
static void
get_cluster(struct call *x)
{
	json_t *v = pgi_serve_cluster_json(x->s->cluster);

	if (!v)
		return reply_error(x->r, 500, "out of memory");
	reply_json(x->r, 200, v);
}

static void
get_terminals(struct call *x)
{
	json_t *v = NULL;
	int rc = rows_json(x->st,
			   "SELECT t.tid AS terminal, t.mid AS merchant, m.name, m.lat, m.lon,"
			   " m.limit_m, coalesce(x.n, 0) AS transactions,"
			   " coalesce(x.moved, 0) AS moved, x.last_ts,"
			   " l.decision AS last_decision, l.est_lat, l.est_lon, l.acc_m"
			   " FROM pos_terminals t JOIN pos_merchants m ON m.mid=t.mid"
			   " LEFT JOIN (SELECT tid, count(*) AS n,"
			   " sum(CASE WHEN decision='moved' THEN 1 ELSE 0 END) AS moved,"
			   " max(ts) AS last_ts, max(id) AS last_id FROM pos_txn GROUP BY tid) x"
			   " ON x.tid=t.tid"
			   /* the newest transaction's fields, read once through its id */
			   " LEFT JOIN pos_txn l ON l.id = x.last_id"
			   " ORDER BY t.tid",
			   &v);

	reply_v(x->r, rc, v);
}

/* Reads query parameter `key` as 1..max into *out (def when absent); 0, or
 * -1 after a 400 reply. */
static int
query_limit(struct call *x, const char *key, long def, long max, long *out)
{
	const char *q = MHD_lookup_connection_value(x->c, MHD_GET_ARGUMENT_KIND, key);
	char *end;

	*out = def;
	if (!q)
		return 0;
	*out = strtol(q, &end, 10);
	if (*end || *out < 1 || *out > max) {
		reply_error(x->r, 400, "%s must be 1..%ld", key, max);
		return -1;
	}
	return 0;
}

static void
get_alerts(struct call *x)
{
	const char *state = MHD_lookup_connection_value(x->c, MHD_GET_ARGUMENT_KIND, "state");
	long limit;
	json_t *v;

	if (state && strcmp(state, "open") && strcmp(state, "acknowledged") &&
	    strcmp(state, "closed"))
		return reply_error(x->r, 400, "state must be open, acknowledged or closed");
	if (query_limit(x, "limit", 100, 10000, &limit) < 0)
		return;
	v = pg_pos_alerts_list(x->st, state, (int)limit);
	reply_v(x->r, v ? 0 : PG_ESTORE, v);
}

static void
get_alert(struct call *x)
{
	json_t *v = find_alert(x->st, x->id);

	if (!v)
		return reply_error(x->r, 404, "no alert %lld", (long long)x->id);
	reply_json(x->r, 200, v);
}

static void
post_alert(struct call *x)
{
	struct pg_serve_alert_action act;
	int rc = pg_serve_parse_alert_action(x->rq->body, x->rq->len, &act);

	if (rc == 0)
		rc = pg_pos_alert_set_state(x->st, x->id, act.state, act.note[0] ? act.note : NULL);
	if (rc < 0)
		return reply_rc(x->r, rc);
	get_alert(x);
}

static void
get_load_vms(struct call *x)
{
	json_t *v = NULL;
	int rc = load_latest(x->st, "vms", &v);

	reply_v(x->r, rc, v);
}

static void
get_load_types(struct call *x)
{
	json_t *v = NULL;
	int rc = load_latest(x->st, "types", &v);

	reply_v(x->r, rc, v);
}

static void
get_load_history(struct call *x)
{
	const char *q = MHD_lookup_connection_value(x->c, MHD_GET_ARGUMENT_KIND, "vm");
	json_t *v = NULL;
	int rc;

	if (!q || !q[0] || strlen(q) > 127)
		return reply_error(x->r, 400, "query parameter vm (1..127 bytes) is required");
	rc = load_history(x->st, q, &v);
	reply_v(x->r, rc, v);
}

static void
get_se_links(struct call *x)
{
	reply_json(x->r, 200, links_json());
}

/* The NFC switch's latest snapshot's member `key` ("ses" or "routes"). */
static void
nfcsw_part(struct call *x, const char *key)
{
	json_t *snap = NULL, *v = NULL;
	int rc = nfcsw_latest(x->st, &snap);

	if (rc == 0)
		v = json_pack("{s:I,s:s,s:O}", "at_ms",
			      json_integer_value(json_object_get(snap, "at_ms")), "policy",
			      json_string_value(json_object_get(snap, "policy")) ?: "", key,
			      json_object_get(snap, key));
	json_decref(snap);
	reply_v(x->r, rc, v);
}

static void
get_se_ses(struct call *x)
{
	nfcsw_part(x, "ses");
}

static void
get_se_routes(struct call *x)
{
	nfcsw_part(x, "routes");
}

static void
get_se_apdus(struct call *x)
{
	json_t *v = NULL;
	char sql[200];
	long limit;
	int rc;

	if (query_limit(x, "limit", 50, 500, &limit) < 0)
		return;
	snprintf(sql, sizeof(sql),
		 "SELECT id, at_ms, source, se, link, capdu, rapdu, sw, us FROM "
		 "serve_apdu ORDER BY id DESC LIMIT %ld",
		 limit);
	rc = rows_json(x->st, sql, &v);
	if (rc == 0)
		v = json_pack("{s:o}", "apdus", v);
	reply_v(x->r, rc, v);
}

static void
get_seos_ses(struct call *x)
{
	json_t *v = NULL;
	int rc = snapshot_latest(x->st, "serve_seos", "seos", &v);

	reply_v(x->r, rc, v);
}

static void
get_vses(struct call *x)
{
	vse_call(x->s, json_pack("{s:s}", "op", "list"), 200, x->r);
}

static void
post_vses(struct call *x)
{
	json_error_t jerr;
	json_t *b = json_loadb(x->rq->body, x->rq->len, JSON_REJECT_DUPLICATES, &jerr);
	int rc;

	if (!b)
		return reply_error(x->r, 400, "malformed JSON at line %d column %d: %s", jerr.line,
				   jerr.column, jerr.text);
	if (!json_is_object(b)) {
		json_decref(b);
		return reply_error(x->r, 400, "body must be a JSON object (a VSE request)");
	}
	if (!json_object_get(b, "keys")) {
		/* no keys given: the data directory's SE master key, diversified
		 * by the VSE's CIN, so the SE OS worker can authenticate it */
		uint8_t mk[16];
		char mh[33];

		rc = pgi_serve_master_key(x->s->data_dir, mk);
		if (rc < 0) {
			json_decref(b);
			return reply_rc(x->r, rc);
		}
		pg_hex_encode_upper(mh, mk, 16, 0);
		json_object_set_new(b, "keys", json_pack("{s:s,s:i}", "master", mh, "kvn", 0x30));
		pg_memzero(mk, sizeof(mk));
		pg_memzero(mh, sizeof(mh));
	}
	vse_call(x->s, json_pack("{s:s,s:o}", "op", "create", "vse", b), 201, x->r);
}

/*
 * Cluster mode: the node that runs VSE `name` when that is another node,
 * from the hypervisor's own answer (the shared registry records each VSE's
 * node); "" for this node's VSEs, unknown names and any failure (the local
 * call that follows then answers).
 */
static void
vse_owner(struct pg_serve_state *s, const char *name, char *node, size_t size)
{
	char sock[600];
	json_t *resp = NULL;
	const char *n;

	node[0] = 0;
	snprintf(sock, sizeof(sock), "%s/vse/hv.sock", s->data_dir);
	if (__atomic_add_fetch(&vse_calls, 1, __ATOMIC_ACQ_REL) <= PG_SERVE_API_THREADS / 2 &&
	    pg_vse_api_call(sock, json_pack("{s:s,s:s}", "op", "show", "name", name), &resp,
			    VSE_CALL_TIMEOUT_MS) == 0) {
		n = json_string_value(json_object_get(json_object_get(resp, "vse"), "node"));
		if (n && n[0] && strcmp(n, pgi_serve_cluster_node(s->cluster)) != 0)
			snprintf(node, size, "%s", n);
	}
	__atomic_sub_fetch(&vse_calls, 1, __ATOMIC_ACQ_REL);
	json_decref(resp);
}

/* Sends the action to the owner's API and answers with its answer. */
static void
vse_forward(struct call *x, const char *owner)
{
	char path[300];
	json_t *reply = NULL;
	long status = 0;
	int rc;

	snprintf(path, sizeof(path), "/api/vses/%s", x->name);
	rc = pgi_serve_cluster_forward(x->s->cluster, owner, path, x->rq->body, x->rq->len,
				       x->s->token, &status, &reply);
	if (rc == PG_ENOENT)
		return reply_error(x->r, 503, "VSE %s runs on node %s, which is not up", x->name,
				   owner);
	if (rc < 0)
		return reply_error(x->r, 503, "VSE %s runs on node %s: %s", x->name, owner,
				   pg_last_error());
	pg_info("serve", "VSE %s: action forwarded to node %s (%ld)", x->name, owner, status);
	reply_json(x->r, status >= 200 && status < 600 ? (int)status : 502, reply);
}

static void
post_vse_action(struct call *x)
{
	char action[16], owner[PG_SERVE_NODE_NAME];
	int rc = pg_serve_parse_vse_action(x->rq->body, x->rq->len, action);

	if (rc < 0)
		return reply_rc(x->r, rc);
	/* a VSE's memory is on its node's disk: another node's VSE is acted on
	 * there; a request forwarded once is never forwarded again */
	if (pgi_serve_cluster_shared(x->s->cluster)) {
		vse_owner(x->s, x->name, owner, sizeof(owner));
		if (owner[0] &&
		    MHD_lookup_connection_value(x->c, MHD_HEADER_KIND, PG_SERVE_FORWARDED_HEADER))
			return reply_error(x->r, 409,
					   "VSE %s runs on node %s; a forwarded request is not "
					   "forwarded again",
					   x->name, owner);
		if (owner[0])
			return vse_forward(x, owner);
	}
	vse_call(x->s, json_pack("{s:s,s:s}", "op", action, "name", x->name), 200, x->r);
}

static void
get_images(struct call *x)
{
	json_t *v = NULL;
	int rc = pg_image_list(x->st, &v);

	reply_v(x->r, rc, v);
}

static void
get_findings(struct call *x)
{
	json_t *v = NULL;
	int rc = pg_image_findings(x->st, NULL, &v);

	reply_v(x->r, rc, v);
}

static void
get_jobs(struct call *x)
{
	json_t *v = NULL;
	int rc = pg_image_jobs(x->st, &v);

	reply_v(x->r, rc, v);
}

static void
get_image(struct call *x)
{
	json_t *v = NULL;
	char ref[24];
	int rc;

	snprintf(ref, sizeof(ref), "%lld", (long long)x->id);
	rc = pg_image_show(x->st, ref, &v);
	reply_v(x->r, rc, v);
}

static void
get_image_packages(struct call *x)
{
	json_t *v = NULL;
	char ref[24];
	int rc;

	snprintf(ref, sizeof(ref), "%lld", (long long)x->id);
	rc = pg_image_packages(x->st, ref, &v);
	reply_v(x->r, rc, v);
}

/* Queues the upgrade request of job `job` and starts its worker. */
static int
queue_upgrade(struct call *x, int64_t job, const struct pg_serve_upgrade_req *u)
{
	json_t *debs = json_array();
	char *dtext;
	int rc;

	for (size_t i = 0; i < u->ndebs; i++)
		json_array_append_new(debs, json_string(u->debs[i]));
	dtext = pg_json_dumps(debs, JSON_COMPACT);
	json_decref(debs);
	rc = dtext ? insert_upgrade_req(x->st, job, x->id, u->fix, dtext) : PG_ENOMEM;
	free(dtext);
	/* one machine runs what it queues at once; in a cluster the first node
	 * with a free slot takes the job (pgi_serve_cluster_jobs) */
	if (rc == 0 && !pgi_serve_cluster_shared(x->s->cluster))
		rc = pgi_serve_start_upgrade(x->s, job);
	return rc;
}

static void
post_image_upgrade(struct call *x)
{
	struct pg_serve_upgrade_req u;
	int64_t job = 0;
	char ref[24];
	int rc;

	snprintf(ref, sizeof(ref), "%lld", (long long)x->id);
	rc = pg_serve_parse_upgrade(x->rq->body, x->rq->len, &u);
	if (rc < 0)
		return reply_rc(x->r, rc);
	/* the image must exist; the job row is made before the worker starts */
	rc = pg_image_job_queue(x->st, ref, &job);
	if (rc < 0)
		return reply_rc(x->r, rc);
	rc = queue_upgrade(x, job, &u);
	if (rc < 0) {
		const char *d = pg_last_error();
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", d[0] ? d : pg_strerror(rc));
		/* the queued job will never run: say so in it, now rather than
		 * when the image store calls it interrupted after 60 s */
		(void)pg_image_job_abandon(x->st, job, msg);
		pg_error(rc, "serve", "%s", msg);
		return reply_rc(x->r, rc);
	}
	reply_json(x->r, 202,
		   json_pack("{s:I,s:I,s:s,s:b,s:i}", "job", (json_int_t)job, "image_id",
			     (json_int_t)x->id, "state", "queued", "fix", u.fix, "packages",
			     (int)u.ndebs));
}

static void
get_metrics(struct call *x)
{
	metrics(x->a, x->st, x->r);
}

/* Every route; docs/api.md has a section for each. Rows with the same path
 * are one resource: together they make its 405 Allow. */
static const struct route routes[] = {
    {"GET", "/{page}", get_page, 0, "the dashboard's pages and files"},
    {"GET", "/api", get_api, 0, "this route table"},
    {"GET", "/api/health", get_health, 0, "daemon status, uptime and the API's connection use"},
    {"GET", "/api/services", get_services, 0, "the supervised workers: state, pid, restarts"},
    {"GET", "/api/cluster", get_cluster, 0, "the cluster's nodes and the leader of each singleton"},
    {"GET", "/api/pos/terminals", get_terminals, 0,
     "POS terminals with their merchant and last decision"},
    {"GET", "/api/pos/alerts", get_alerts, 0, "POS alerts (?state=, ?limit=)"},
    {"GET", "/api/pos/alerts/{n}", get_alert, 0, "one POS alert"},
    {"POST", "/api/pos/alerts/{n}", post_alert, 1, "acknowledge or close a POS alert"},
    {"GET", "/api/load/vms", get_load_vms, 0, "the newest load estimate's VMs"},
    {"GET", "/api/load/types", get_load_types, 0, "the newest load estimate's VM types"},
    {"GET", "/api/load/history", get_load_history, 0, "one VM's load in recent estimates (?vm=)"},
    {"GET", "/api/se/links", get_se_links, 0, "the SE link drivers"},
    {"GET", "/api/se/ses", get_se_ses, 0, "the SEs behind the NFC switch"},
    {"GET", "/api/se/routes", get_se_routes, 0, "the NFC switch's AID routing table"},
    {"GET", "/api/se/apdus", get_se_apdus, 0, "the newest APDUs exchanged (?limit=)"},
    {"GET", "/api/seos/ses", get_seos_ses, 0, "the SE OS's SE list"},
    {"GET", "/api/vses", get_vses, 0, "the virtual SEs"},
    {"POST", "/api/vses", post_vses, 1, "create a virtual SE"},
    {"POST", "/api/vses/{name}", post_vse_action, 1, "start, stop or destroy a virtual SE"},
    {"GET", "/api/images", get_images, 0, "the image inventory"},
    {"GET", "/api/images/findings", get_findings, 0, "packages of images affected by an advisory"},
    {"GET", "/api/images/jobs", get_jobs, 0, "offline image upgrade jobs"},
    {"GET", "/api/images/{id}", get_image, 0, "one image"},
    {"GET", "/api/images/{id}/packages", get_image_packages, 0, "one image's packages"},
    {"POST", "/api/images/{id}/upgrade", post_image_upgrade, 1,
     "queue an offline upgrade of an image"},
    {"GET", "/metrics", get_metrics, 0, "Prometheus text metrics"},
};

#define NROUTES (sizeof(routes) / sizeof(routes[0]))

static void
get_api(struct call *x)
{
	json_t *v = json_array();

	for (size_t i = 0; i < NROUTES; i++)
		json_array_append_new(v, json_pack("{s:s,s:s,s:s,s:b}", "method", routes[i].method,
						   "path", routes[i].path, "description",
						   routes[i].desc, "changes_state",
						   strcmp(routes[i].method, "GET") != 0));
	reply_json(x->r, 200, json_pack("{s:o}", "routes", v));
}

static int
method_is(const struct route *rt, const char *method)
{
	return strcmp(rt->method, method) == 0 ||
	       (strcmp(rt->method, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

/* Appends a row's methods to an Allow value ("GET, HEAD, POST"). */
static void
allow_add(char *allow, size_t size, const struct route *rt)
{
	const char *m = strcmp(rt->method, "GET") == 0 ? "GET, HEAD" : rt->method;
	size_t n = strlen(allow);

	snprintf(allow + n, size - n, "%s%s", n ? ", " : "", m);
}

static void
route(struct pg_serve_api *a, struct pg_store *st, struct MHD_Connection *c, const char *url,
      const char *method, struct req *rq, struct reply *r)
{
	struct call x = {.a = a, .s = a->s, .st = st, .c = c, .url = url, .rq = rq, .r = r};
	int bad = 0;

	pg_clear_error();
	r->allow_buf[0] = '\0';
	for (size_t i = 0; i < NROUTES; i++) {
		int m = pg_serve_path_match(routes[i].path, url, &x.id, &x.name);

		bad |= m == PG_SERVE_PATH_BAD;
		if (m != PG_SERVE_PATH_MATCH)
			continue;
		if (!method_is(&routes[i], method)) {
			allow_add(r->allow_buf, sizeof(r->allow_buf), &routes[i]);
			continue;
		}
		if (routes[i].body && rq->too_big)
			return reply_error(r, 413, "request body larger than %d bytes",
					   PG_SERVE_MAX_BODY);
		return routes[i].fn(&x);
	}
	if (r->allow_buf[0]) {
		reply_405(r, method, url, r->allow_buf);
		return;
	}
	if (bad)
		return reply_error(r, 404, "alert id must be a decimal number");
	reply_error(r, 404, "no route %s %.200s", method, url);
}

/* ---- the connection pool of the store ---- */

static struct pg_store *
store_get(struct pg_serve_api *a)
{
	pthread_mutex_lock(&a->pool_mu);
	for (;;) {
		for (int i = 0; i < PG_SERVE_API_THREADS; i++) {
			if (!a->busy[i]) {
				a->busy[i] = 1;
				pthread_mutex_unlock(&a->pool_mu);
				return &a->st[i];
			}
		}
		/* never with one connection per pool thread; kept for safety */
		pthread_cond_wait(&a->pool_cv, &a->pool_mu);
	}
}

static void
store_put(struct pg_serve_api *a, struct pg_store *st)
{
	pthread_mutex_lock(&a->pool_mu);
	a->busy[st - a->st] = 0;
	pthread_cond_signal(&a->pool_cv);
	pthread_mutex_unlock(&a->pool_mu);
}

/* ---- rate-limited logging ---- */

enum { LOG_REFUSED, LOG_HTTP, LOG_SLOW };

/* Counts one event of a kind and writes a line for it at most once per
 * REFUSED_LOG_S, with how many there were since the last line. */
static void
ratelog(struct pg_serve_api *a, int kind, const char *msg, int flush)
{
	struct ratelog *l = &a->logs[kind];
	uint64_t now = pg_mono_ms(), n = 0;
	char text[sizeof(l->last)];

	pthread_mutex_lock(&a->log_mu);
	if (msg) {
		l->count++;
		snprintf(l->last, sizeof(l->last), "%s", msg);
	}
	if (l->count && (flush || l->last_ms == 0 || now - l->last_ms >= REFUSED_LOG_S * 1000)) {
		n = l->count;
		l->count = 0;
		l->last_ms = now;
		memcpy(text, l->last, sizeof(text));
	}
	pthread_mutex_unlock(&a->log_mu);
	if (!n)
		return;
	if (kind == LOG_REFUSED)
		pg_warn("serve",
			"http: refused %llu connection(s) (at most one such line per %d s; limits: "
			"%d per client address, %d in all); last: %s",
			(unsigned long long)n, REFUSED_LOG_S, API_PER_IP_LIMIT, API_CONN_LIMIT,
			text);
	else if (kind == LOG_SLOW)
		pg_warn("serve",
			"http: closed %llu connection(s) that had not sent a whole request head in "
			"%d s (at most one such line per %d s); last: %s",
			(unsigned long long)n, API_HEAD_S, REFUSED_LOG_S, text);
	else
		pg_warn("serve", "http: %s (%llu such message(s); at most one line per %d s)", text,
			(unsigned long long)n, REFUSED_LOG_S);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[200];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = 0;
	/* libmicrohttpd says this for a connection over its global limit and
	 * counts it nowhere else */
	if (strstr(msg, "connection limit"))
		atomic_fetch_add(&((struct pg_serve_api *)cls)->s->http_conn_refused, 1);
	ratelog(cls, strstr(msg, "connection limit") ? LOG_REFUSED : LOG_HTTP, msg, 0);
}

/* ---- connections per client address ---- */

static int
addr_key(const struct sockaddr *sa, unsigned char key[16], int *fam)
{
	memset(key, 0, 16);
	*fam = sa ? sa->sa_family : 0;
	if (*fam == AF_INET)
		memcpy(key, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
	else if (*fam == AF_INET6)
		memcpy(key, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
	else
		return -1;
	return 0;
}

/* The entry of a client address (a free one when add), NULL if none; ip_mu held. */
static struct ipcount *
ip_find(struct pg_serve_api *a, const unsigned char key[16], int fam, int add)
{
	struct ipcount *free_e = NULL;

	for (size_t i = 0; i < sizeof(a->ips) / sizeof(a->ips[0]); i++) {
		struct ipcount *e = &a->ips[i];

		if (e->n && e->fam == fam && memcmp(e->addr, key, 16) == 0)
			return e;
		if (!e->n && !free_e)
			free_e = e;
	}
	if (add && free_e) {
		memcpy(free_e->addr, key, 16);
		free_e->fam = fam;
	}
	return add ? free_e : NULL;
}

/* Refuses a connection from an address that has API_PER_IP_LIMIT open. */
static enum MHD_Result
accept_policy(void *cls, const struct sockaddr *sa, socklen_t len)
{
	struct pg_serve_api *a = cls;
	unsigned char key[16];
	struct ipcount *e;
	unsigned n = 0;
	int fam;

	(void)len;
	if (addr_key(sa, key, &fam) < 0)
		return MHD_YES;
	pthread_mutex_lock(&a->ip_mu);
	e = ip_find(a, key, fam, 0);
	n = e ? e->n : 0;
	pthread_mutex_unlock(&a->ip_mu);
	if (n >= API_PER_IP_LIMIT) {
		char ip[INET6_ADDRSTRLEN] = "?", msg[120];

		inet_ntop(fam, key, ip, sizeof(ip));
		snprintf(msg, sizeof(msg), "%s has %u connections open", ip, n);
		ratelog(a, LOG_REFUSED, msg, 0);
		atomic_fetch_add(&a->s->http_conn_refused, 1);
		return MHD_NO;
	}
	return MHD_YES;
}

/* Counts the open connections of each client address (started .. closed). */
static void
notify_conn(void *cls, struct MHD_Connection *c, void **socket_context,
	    enum MHD_ConnectionNotificationCode code)
{
	struct pg_serve_api *a = cls;
	struct conn_key *k = *socket_context;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) /* accepted: for /api/health, /metrics */
		atomic_fetch_add(&a->s->http_conn_total, 1);
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
		    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		const union MHD_ConnectionInfo *fi =
		    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		struct ipcount *e;

		k = calloc(1, sizeof(*k));
		if (!k || !ci || addr_key(ci->client_addr, k->addr, &k->fam) < 0) {
			free(k);
			return;
		}
		k->fd = fi ? fi->connect_fd : -1;
		k->head_since_ms = pg_mono_ms();
		pthread_mutex_lock(&a->ip_mu);
		e = ip_find(a, k->addr, k->fam, 1);
		if (e)
			e->n++;
		else
			k->fam = 0; /* table full: not counted */
		k->next = a->conns;
		if (a->conns)
			a->conns->prev = k;
		a->conns = k;
		pthread_mutex_unlock(&a->ip_mu);
		*socket_context = k;
	} else if (code == MHD_CONNECTION_NOTIFY_CLOSED && k) {
		/* libmicrohttpd closes the socket after this: once k is off the
		 * list, the sweep below never touches its descriptor again */
		pthread_mutex_lock(&a->ip_mu);
		if (k->fam) {
			struct ipcount *e = ip_find(a, k->addr, k->fam, 0);

			if (e)
				e->n--;
		}
		if (k->prev)
			k->prev->next = k->next;
		else
			a->conns = k->next;
		if (k->next)
			k->next->prev = k->prev;
		pthread_mutex_unlock(&a->ip_mu);
		free(k);
		*socket_context = NULL;
	}
}

/* Marks the connection of c as answering a request (0) or waiting for the
 * next request head (now). */
static void
head_wait(struct pg_serve_api *a, struct MHD_Connection *c, int waiting)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct conn_key *k = ci ? ci->socket_context : NULL;

	if (!k)
		return;
	pthread_mutex_lock(&a->ip_mu);
	k->head_since_ms = waiting ? pg_mono_ms() : 0;
	pthread_mutex_unlock(&a->ip_mu);
}

/*
 * Cuts connections that have not completed a request head API_HEAD_S after
 * they opened or answered their last request: the idle timeout alone lets a
 * client that sends one header line a second hold a connection for ever.
 * shutdown() makes libmicrohttpd's own thread see the end and close it.
 */
void
pgi_serve_api_tick(struct pg_serve_api *a)
{
	uint64_t now = pg_mono_ms();
	char ip[INET6_ADDRSTRLEN] = "?", msg[120];
	unsigned cut = 0;

	if (!a)
		return;
	pthread_mutex_lock(&a->ip_mu);
	if (now - a->swept_ms < 1000) {
		pthread_mutex_unlock(&a->ip_mu);
		return;
	}
	a->swept_ms = now;
	for (struct conn_key *k = a->conns; k; k = k->next) {
		if (k->fd >= 0 && k->head_since_ms && now - k->head_since_ms > API_HEAD_S * 1000) {
			shutdown(k->fd, SHUT_RDWR);
			k->head_since_ms = 0; /* once */
			if (k->fam)
				inet_ntop(k->fam, k->addr, ip, sizeof(ip));
			cut++;
		}
	}
	pthread_mutex_unlock(&a->ip_mu);
	for (unsigned i = 0; i < cut; i++) {
		snprintf(msg, sizeof(msg), "from %s", ip);
		ratelog(a, LOG_SLOW, msg, 0);
	}
}

/* ---- requests ---- */

/* Sees the raw request target before libmicrohttpd decodes it (a %00 would
 * cut the decoded one short); its return value is the request's state. */
static void *
uri_log(void *cls, const char *uri, struct MHD_Connection *c)
{
	struct req *rq = calloc(1, sizeof(*rq));

	(void)cls;
	(void)c;
	if (rq && uri) {
		rq->uri_len = strlen(uri);
		rq->uri_nul = strstr(uri, "%00") != NULL;
	}
	return rq;
}

static enum MHD_Result
header_bytes(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	size_t *n = cls;

	(void)kind;
	*n += strlen(key) + (value ? strlen(value) : 0) + 4;
	return MHD_YES;
}

/* The limits of a request the daemon enforces itself, below libmicrohttpd's
 * own, so that the answer is JSON like every other; 0 when it is within them. */
static int
request_refused(struct req *rq, struct MHD_Connection *c, const char *version, struct reply *r)
{
	size_t hb = 0;

	if (rq->uri_nul) {
		reply_error(r, 400, "the URL contains an encoded NUL byte (%%00)");
		return 1;
	}
	if (rq->uri_len > API_MAX_URI) {
		reply_error(r, 414, "the URL is longer than %d bytes", API_MAX_URI);
		return 1;
	}
	if (strcmp(version, MHD_HTTP_VERSION_1_1) != 0 &&
	    strcmp(version, MHD_HTTP_VERSION_1_0) != 0) {
		reply_error(r, 505, "HTTP version %.20s not supported (HTTP/1.0 and 1.1 are)",
			    version);
		return 1;
	}
	MHD_get_connection_values(c, MHD_HEADER_KIND, header_bytes, &hb);
	if (hb > API_MAX_HEADERS) {
		reply_error(r, 431, "the request headers are larger than %d bytes",
			    API_MAX_HEADERS);
		return 1;
	}
	return 0;
}

static enum MHD_Result
handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
	const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct pg_serve_api *a = cls;
	struct pg_serve_state *s = a->s;
	struct req *rq = *con_cls;
	struct reply r = {0};
	struct MHD_Response *resp;
	enum MHD_Result ret;
	int rc;

	if (!rq) {
		rq = calloc(1, sizeof(*rq));
		if (!rq)
			return MHD_NO;
		*con_cls = rq;
	}
	if (!rq->started) {
		rq->started = 1;
		head_wait(a, c, 0); /* the head is complete */
		return MHD_YES;
	}
	if (*upload_data_size) {
		/* keep at most the limit; the rest is read and dropped, then 413 */
		if (rq->too_big || *upload_data_size > sizeof(rq->body) - rq->len)
			rq->too_big = 1;
		else
			memcpy(rq->body + rq->len, upload_data, *upload_data_size),
			    rq->len += *upload_data_size;
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (request_refused(rq, c, version, &r)) {
		/* answered */
	} else if (pgi_serve_guard(s, c, url, method, &rc)) {
		/* Host, origin and content type, before anything acts (guard.c) */
		return (enum MHD_Result)rc;
	} else if (!token_ok(s, c)) {
		reply_error(
		    &r, 401,
		    "missing or wrong bearer token (in a browser: open /?token=TOKEN once)");
	} else {
		struct pg_store *st = store_get(a);

		route(a, st, c, url, method, rq, &r);
		store_put(a, st);
	}
	if (!r.text) {
		reply_error(&r, 500, "out of memory");
		if (!r.text)
			return MHD_NO;
	}
	resp = MHD_create_response_from_buffer(strlen(r.text), r.text, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(r.text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", r.ctype);
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	pgi_serve_guard_headers(resp);
	if (r.status == 401)
		MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
	if (r.allow)
		MHD_add_response_header(resp, "Allow", r.allow);
	ret = MHD_queue_response(c, (unsigned)r.status, resp);
	MHD_destroy_response(resp);
	if (r.status >= 100 && r.status < 600)
		__atomic_fetch_add(&s->req[r.status / 100], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&s->req_total, 1, __ATOMIC_RELAXED);
	return ret;
}

static void
completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t)
{
	(void)t;
	head_wait(cls, c, 1); /* the next request's head, if any, is due from now */
	free(*con_cls);
	*con_cls = NULL;
}

/* ---- listening ---- */

int
pgi_serve_listen(const char *host, int port, int *fd_out, int *bound, int *loopback)
{
	struct sockaddr_storage ss;
	unsigned len = 0;
	socklen_t sl = sizeof(ss);
	int fd, one = 1, rc;

	if (port < 0 || port > 65535)
		return pg_error(PG_EINVAL, "serve", "port %d: expected 0..65535", port);
	rc = pgi_serve_parse_listen(host, &ss, &len, loopback);
	if (rc < 0)
		return rc;
	((struct sockaddr_in *)(void *)&ss)->sin_port =
	    htons((uint16_t)port); /* same place in both */
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return pg_error(PG_ESYS, "serve", "socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 128) < 0) {
		int e = errno;

		close(fd);
		return pg_error(e == EADDRINUSE ? PG_EBUSY : PG_ESYS, "serve",
				"cannot listen on %s port %d: %s%s", host, port, strerror(e),
				e == EADDRINUSE ? " (another program has it; choose another with "
						  "--port, or --port 0 for any free one)"
						: "");
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		close(fd);
		return pg_error(PG_ESYS, "serve", "getsockname: %s", strerror(errno));
	}
	*bound = ntohs(((struct sockaddr_in *)(void *)&ss)->sin_port);
	*fd_out = fd;
	return 0;
}

int
pgi_serve_api_start(struct pg_serve_state *s, int listen_fd, struct pg_serve_api **out)
{
	struct pg_serve_api *a = calloc(1, sizeof(*a));
	int rc = 0, nst = 0;

	if (!a) {
		close(listen_fd);
		return PG_ENOMEM;
	}
	a->s = s;
	s->http_conn_limit = API_CONN_LIMIT;
	pthread_mutex_init(&a->pool_mu, NULL);
	pthread_cond_init(&a->pool_cv, NULL);
	pthread_mutex_init(&a->ip_mu, NULL);
	pthread_mutex_init(&a->log_mu, NULL);
	pthread_mutex_init(&a->m_mu, NULL);
	/* one store connection per pool thread: a request holds one while it runs */
	for (; nst < PG_SERVE_API_THREADS && rc == 0; nst++) {
		rc = pg_store_open(&a->st[nst], s->store);
		if (rc == 0) /* the image schema, migrated before the first request */
			rc = pg_image_db_open(&a->st[nst]);
	}
	if (rc == 0) {
		a->d = MHD_start_daemon(
		    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG, 0,
		    accept_policy, a, handler, a, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, a,
		    MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_THREAD_POOL_SIZE,
		    (unsigned)PG_SERVE_API_THREADS, MHD_OPTION_NOTIFY_COMPLETED, completed, a,
		    MHD_OPTION_NOTIFY_CONNECTION, notify_conn, a, MHD_OPTION_URI_LOG_CALLBACK,
		    uri_log, NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned)API_CONN_LIMIT,
		    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)API_TIMEOUT_S,
		    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024, MHD_OPTION_END);
		if (!a->d) {
			close(listen_fd);
			rc = pg_error(PG_ESYS, "serve", "cannot start the HTTP server");
		}
	} else {
		close(listen_fd);
	}
	if (rc < 0) {
		for (int i = 0; i < nst; i++)
			pg_store_close(&a->st[i]);
		free(a);
		return rc;
	}
	*out = a;
	return 0;
}

void
pgi_serve_api_stop(struct pg_serve_api *a)
{
	if (!a)
		return;
	MHD_stop_daemon(a->d);
	ratelog(a, LOG_REFUSED, NULL, 1);
	ratelog(a, LOG_SLOW, NULL, 1);
	ratelog(a, LOG_HTTP, NULL, 1);
	for (int i = 0; i < PG_SERVE_API_THREADS; i++)
		pg_store_close(&a->st[i]);
	pthread_mutex_destroy(&a->pool_mu);
	pthread_cond_destroy(&a->pool_cv);
	pthread_mutex_destroy(&a->ip_mu);
	pthread_mutex_destroy(&a->log_mu);
	pthread_mutex_destroy(&a->m_mu);
	free(a->m_text);
	free(a);
}
