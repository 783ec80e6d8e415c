/*
 * Cluster mode of `payguard serve` (issue 14, "Cluster mode"; cluster.h,
 * docs/cluster.md). Several daemons share one PostgreSQL store; each one
 * runs a thread with its own connection that, every second:
 *   - holds the node's name lock ("payguard.node.<name>": two daemons never
 *     run as one node) and upserts its row of cluster_node (address, pid,
 *     start, heartbeat on the server's clock, services, version);
 *   - marks nodes silent for PG_SERVE_CLUSTER_DOWN_MS down;
 *   - tries for (or checks it still holds) each singleton's advisory lock
 *     "payguard.singleton.<name>" and records a leader in cluster_leader;
 *   - reads both tables into the snapshot GET /api/cluster answers with.
 * A node that dies loses its session and with it its locks at once; the
 * others take them at their next round, so a singleton moves within about
 * a second plus its worker's start. A node cut off from the server stops its
 * singletons after PG_SERVE_CLUSTER_FENCE_MS without a good round, before
 * the server ends its idle session (idle_session_timeout) and frees them.
 * On SQLite there is no connection: the node is alone and leads everything.
 */
#include "cluster.h"

#include "payguard/clock.h"
#include "payguard/db.h"
#include "payguard/error.h"
#include "payguard/events.h"
#include "payguard/image.h"
#include "payguard/json.h"
#include "payguard/log.h"
#include "serve_int.h"

#include <assert.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLUSTER_IDLE_S	  10		       /* the cluster session's idle_session_timeout */
#define CLUSTER_FORGET_MS (24 * 3600 * 1000LL) /* a node down this long is dropped */
#define NODE_LOCK_PREFIX  "payguard.node."
#define LEAD_LOCK_PREFIX  "payguard.singleton."
/* milliseconds on the server's clock: every node compares heartbeats on one clock */
#define DB_NOW_MS "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)"

/*
 * The singletons, one node of a cluster runs each: index 0 is the
 * supervisor's own "retention" (prune_pos in daemon.c), then each row of the
 * worker table (pgi_serve_workers, workers.c) that names one, in its order.
 * The worker table is the one place that says which worker is which.
 */
#define NSINGLE_MAX (1 + PG_SERVE_MAX_SVC)

/* The worker row of singleton i (NULL: the supervisor's own, or no such i). */
static const struct pg_serve_worker_def *
single_row(size_t i)
{
	for (const struct pg_serve_worker_def *w = pgi_serve_workers; w->name && i; w++)
		if (w->singleton && --i == 0)
			return w;
	return NULL;
}

static size_t
nsingle(void)
{
	size_t n = 1;

	while (single_row(n))
		n++;
	return n;
}

static const char *
single_name(size_t i)
{
	return i ? single_row(i)->singleton : "retention";
}

/* The worker that is singleton i, NULL for the supervisor's own job. */
static const char *
single_worker(size_t i)
{
	const struct pg_serve_worker_def *w = single_row(i);

	return w ? w->name : NULL;
}

struct pg_serve_cluster {
	struct pg_serve_state *s;
	char node[PG_SERVE_NODE_NAME];
	char address[300];
	char *url;
	int postgres;
	struct pg_db *db; /* the cluster connection: the heartbeat thread's only */
	int64_t started_ms;
	int joined; /* holds its name: leaving marks its row down */
	pthread_t th;
	int th_started;
	atomic_int stop;
	atomic_int leads[NSINGLE_MAX];
	_Atomic uint64_t last_ok_mono; /* end of the last round that fully worked */
	int err_logged;		       /* the last round failed and said so */
	uint64_t last_claim_mono;      /* the supervisor's last job claim */
	int claim_err_logged;
	pthread_mutex_t mu; /* guards snapshot */
	json_t *snapshot;
};

static const struct pg_db_migration cluster_migrations[] = {
    {1,
     "CREATE TABLE cluster_node(name TEXT PRIMARY KEY, address TEXT NOT NULL,"
     " pid BIGINT NOT NULL, started_ms BIGINT NOT NULL, heartbeat_ms BIGINT NOT NULL,"
     " state TEXT NOT NULL, services TEXT NOT NULL, version TEXT NOT NULL);"
     "CREATE TABLE cluster_leader(singleton TEXT PRIMARY KEY, node TEXT NOT NULL,"
     " since_ms BIGINT NOT NULL);",
     NULL, NULL},
};

const char *
pgi_serve_cluster_singleton_of(const char *worker)
{
	const struct pg_serve_worker_def *w = pg_serve_worker_find(worker);

	return w ? w->singleton : NULL;
}

static int
single_index(const char *name)
{
	for (size_t i = 0; i < nsingle(); i++)
		if (strcmp(single_name(i), name) == 0)
			return (int)i;
	return -1;
}

int
pgi_serve_cluster_leads(struct pg_serve_cluster *c, const char *singleton)
{
	int i;

	if (!c || !c->postgres)
		return 1;
	i = single_index(singleton);
	if (i < 0)
		return 1;
	if (!atomic_load(&c->leads[i]))
		return 0;
	/* fenced: without a good round for this long the lock may be gone */
	return pg_mono_ms() - atomic_load(&c->last_ok_mono) < PG_SERVE_CLUSTER_FENCE_MS;
}

int
pgi_serve_cluster_runs(struct pg_serve_cluster *c, const char *worker)
{
	const char *sg = pgi_serve_cluster_singleton_of(worker);

	return !sg || pgi_serve_cluster_leads(c, sg);
}

int
pgi_serve_cluster_shared(const struct pg_serve_cluster *c)
{
	return c && c->postgres;
}

void
pgi_serve_cluster_jobs(struct pg_serve_state *s, uint64_t now)
{
	struct pg_serve_cluster *c = s->cluster;
	int64_t job = 0, image = 0;
	int free_slot = 0, rc;

	if (!c || !c->postgres || now - c->last_claim_mono < 500)
		return;
	c->last_claim_mono = now;
	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < PG_SERVE_MAX_TASKS; i++)
		free_slot |= s->task[i] == 0;
	pthread_mutex_unlock(&s->mu);
	if (!free_slot)
		return; /* only this thread starts tasks in a cluster: the slot stays free */
	rc = pg_image_job_claim(&s->st, c->node, 0, &job, &image);
	if (rc == PG_ENOENT)
		return;
	if (rc < 0) {
		if (!c->claim_err_logged)
			pg_warn("cluster", "node %s cannot take image jobs: %s", c->node,
				pg_last_error());
		c->claim_err_logged = 1;
		return;
	}
	c->claim_err_logged = 0;
	pg_info("cluster", "node %s took image job %lld (image %lld)", c->node, (long long)job,
		(long long)image);
	/* should the task not start, the lease runs out and a node takes it again */
	if (pgi_serve_start_upgrade(s, job) < 0)
		pg_warn("cluster", "image job %lld: %s", (long long)job, pg_last_error());
}

const char *
pgi_serve_cluster_node(const struct pg_serve_cluster *c)
{
	return c->node;
}

/* Whether this node has the singleton's worker at all (pos-traffic: --demo). */
static int
enabled(struct pg_serve_cluster *c, size_t i)
{
	struct pg_serve_state *s = c->s;
	int on = 0;

	if (!single_worker(i))
		return 1;
	pthread_mutex_lock(&s->mu);
	for (int k = 0; k < s->nsvc && !on; k++)
		on = strcmp(s->svc[k].name, single_worker(i)) == 0;
	pthread_mutex_unlock(&s->mu);
	return on;
}

/* [{name, state, pid}] of this node's workers. */
static json_t *
services(struct pg_serve_state *s)
{
	json_t *a = json_array();

	pthread_mutex_lock(&s->mu);
	for (int i = 0; a && i < s->nsvc; i++)
		json_array_append_new(a, json_pack("{s:s,s:s,s:i}", "name", s->svc[i].name, "state",
						   s->svc[i].state, "pid", (int)s->svc[i].pid));
	pthread_mutex_unlock(&s->mu);
	return a;
}

static void
set_snapshot(struct pg_serve_cluster *c, json_t *v)
{
	json_t *old;

	pthread_mutex_lock(&c->mu);
	old = c->snapshot;
	c->snapshot = v;
	pthread_mutex_unlock(&c->mu);
	json_decref(old);
}

/* SQLite: one node, up, leading every singleton it has. */
static json_t *
alone_snapshot(struct pg_serve_cluster *c)
{
	json_t *leaders = json_array(), *nodes = json_array();

	for (size_t i = 0; leaders && i < nsingle(); i++)
		if (enabled(c, i))
			json_array_append_new(
			    leaders,
			    json_pack("{s:s,s:s?,s:s,s:I,s:s}", "singleton", single_name(i),
				      "worker", single_worker(i), "node", c->node, "since_ms",
				      (json_int_t)c->started_ms, "node_state", "up"));
	json_array_append_new(
	    nodes, json_pack("{s:s,s:s,s:s,s:i,s:I,s:I,s:I,s:o,s:s,s:b}", "name", c->node,
			     "address", c->address, "state", "up", "pid", (int)getpid(),
			     "started_ms", (json_int_t)c->started_ms, "heartbeat_ms",
			     (json_int_t)pg_wall_ms(), "age_ms", (json_int_t)0, "services",
			     services(c->s), "version", PG_SERVE_VERSION, "self", 1));
	return json_pack("{s:s,s:s,s:i,s:i,s:o,s:o}", "node", c->node, "engine", "sqlite",
			 "heartbeat_ms", PG_SERVE_CLUSTER_BEAT_MS, "down_after_ms",
			 PG_SERVE_CLUSTER_DOWN_MS, "nodes", nodes, "leaders", leaders);
}

json_t *
pgi_serve_cluster_json(struct pg_serve_cluster *c)
{
	json_t *v;

	if (!c)
		return NULL;
	if (!c->postgres)
		set_snapshot(c, alone_snapshot(c)); /* services change: always fresh */
	pthread_mutex_lock(&c->mu);
	/* a copy: the API thread dumps it while the next round replaces it */
	v = json_deep_copy(c->snapshot);
	pthread_mutex_unlock(&c->mu);
	if (!v)
		v = json_pack("{s:s,s:s,s:[],s:[]}", "node", c->node, "engine", "postgres", "nodes",
			      "leaders");
	return v;
}

static const char *str_of(json_t *o, const char *key);

int
pgi_serve_cluster_address(struct pg_serve_cluster *c, const char *node, char *out, size_t size)
{
	json_t *nodes, *n;
	size_t i;
	int rc = PG_ENOENT;

	pthread_mutex_lock(&c->mu);
	nodes = json_object_get(c->snapshot, "nodes");
	json_array_foreach(nodes, i, n)
	{
		if (strcmp(str_of(n, "name"), node) != 0)
			continue;
		if (strcmp(str_of(n, "state"), "up") == 0) {
			snprintf(out, size, "%s", str_of(n, "address"));
			rc = 0;
		}
		break;
	}
	pthread_mutex_unlock(&c->mu);
	if (rc < 0)
		return pg_error(PG_ENOENT, "serve", "node %s is not up in the cluster", node);
	return 0;
}

/* ---- one round of the heartbeat thread (PostgreSQL) ---- */

static int
run(struct pg_db *db, const char *sql, const char *fmt, ...)
{
	struct pg_db_stmt *q;
	va_list ap;
	int rc = pg_db_prepare(db, sql, &q);

	va_start(ap, fmt);
	for (int i = 1; rc >= 0 && fmt[i - 1]; i++) {
		if (fmt[i - 1] == 's')
			rc = pg_db_bind_text(q, i, va_arg(ap, const char *), -1);
		else
			rc = pg_db_bind_int64(q, i, va_arg(ap, int64_t));
	}
	va_end(ap);
	if (rc >= 0)
		rc = pg_db_step(q);
	if (rc >= 0)
		pg_db_reset(q);
	return rc < 0 ? rc : 0;
}

/* A cluster event (issue 15) in the transaction of the change it reports. */
static int
node_event(struct pg_db *db, const char *event, const char *node, const char *reason,
	   const char *address)
{
	json_t *d =
	    json_pack("{s:s, s:s?, s:s?}", "node", node, "reason", reason, "address", address);
	int rc = d ? pg_event_emit(db, "cluster", event, node, d, NULL) : PG_ENOMEM;

	json_decref(d);
	return rc;
}

/* This node's row before the heartbeat: its state and incarnation. */
static int
own_row(struct pg_serve_cluster *c, char state[8], int64_t *pid, int64_t *started)
{
	struct pg_db_stmt *q;
	int rc = pg_db_prepare(
	    c->db, "SELECT state, pid, started_ms FROM cluster_node WHERE name = ? FOR UPDATE", &q);

	state[0] = 0;
	if (rc < 0)
		return rc;
	pg_db_bind_text(q, 1, c->node, -1);
	rc = pg_db_step(q);
	if (rc == 1) {
		snprintf(state, 8, "%s", pg_db_column_text(q, 0));
		*pid = pg_db_column_int64(q, 1);
		*started = pg_db_column_int64(q, 2);
	}
	pg_db_reset(q);
	return rc < 0 ? rc : 0;
}

/* Marks the silent nodes down, each with its node_left event. Two nodes
 * sweeping at once: the second's UPDATE finds the row down and returns nothing. */
static int
sweep(struct pg_serve_cluster *c)
{
	struct pg_db_stmt *q;
	char names[32][PG_SERVE_NODE_NAME];
	int n = 0, rc = pg_db_prepare(c->db,
				      "UPDATE cluster_node SET state = 'down' WHERE state = 'up'"
				      " AND heartbeat_ms < " DB_NOW_MS " - ? RETURNING name",
				      &q);

	if (rc < 0)
		return rc;
	pg_db_bind_int64(q, 1, PG_SERVE_CLUSTER_DOWN_MS);
	while ((rc = pg_db_step(q)) == 1)
		if (n < 32)
			snprintf(names[n++], PG_SERVE_NODE_NAME, "%s", pg_db_column_text(q, 0));
	pg_db_reset(q);
	for (int i = 0; rc >= 0 && i < n; i++) {
		pg_info("cluster", "node %s is silent: down", names[i]);
		rc = node_event(c->db, "node_left", names[i], "silent", NULL);
	}
	return rc < 0 ? rc : 0;
}

static int
beat_tx(struct pg_db *db, void *arg)
{
	struct pg_serve_cluster *c = arg;
	json_t *sv = services(c->s);
	char *text = sv ? pg_json_dumps(sv, JSON_COMPACT) : NULL, was[8];
	int64_t pid = 0, started = 0;
	int rc;

	(void)db;
	json_decref(sv);
	if (!text)
		return PG_ENOMEM;
	rc = own_row(c, was, &pid, &started);
	if (rc == 0)
		rc = run(c->db,
			 "INSERT INTO cluster_node(name, address, pid, started_ms, heartbeat_ms,"
			 " state, services, version) VALUES(?, ?, ?, ?, " DB_NOW_MS ", 'up', ?, ?)"
			 " ON CONFLICT(name) DO UPDATE SET address = excluded.address,"
			 " pid = excluded.pid, started_ms = excluded.started_ms,"
			 " heartbeat_ms = excluded.heartbeat_ms, state = 'up',"
			 " services = excluded.services, version = excluded.version",
			 "ssIIss", c->node, c->address, (int64_t)getpid(), c->started_ms, text,
			 PG_SERVE_VERSION);
	free(text);
	/* an earlier daemon of this name that died unseen: it left, this one joins */
	if (rc == 0 && strcmp(was, "up") == 0 &&
	    (pid != (int64_t)getpid() || started != c->started_ms))
		rc = node_event(c->db, "node_left", c->node, "replaced", NULL);
	if (rc == 0 &&
	    (strcmp(was, "up") != 0 || pid != (int64_t)getpid() || started != c->started_ms))
		rc = node_event(c->db, "node_joined", c->node, NULL, c->address);
	/* whoever is up marks the silent down, and forgets the long gone */
	if (rc == 0)
		rc = sweep(c);
	if (rc == 0)
		rc = run(c->db, "DELETE FROM cluster_node WHERE heartbeat_ms < " DB_NOW_MS " - ?",
			 "I", (int64_t)CLUSTER_FORGET_MS);
	return rc;
}

static int
beat(struct pg_serve_cluster *c)
{
	return pg_db_transact(c->db, beat_tx, c, 3);
}

/*
 * Whether a task process can still make progress: it exists and is neither
 * a zombie (dead, not reaped yet) nor stopped (SIGSTOP, a debugger), which
 * /proc/PID/stat's state letter after the command's ')' tells.
 */
static int
task_runs(pid_t pid)
{
	char path[32], buf[512], *p;
	size_t n;
	FILE *f;

	if (kill(pid, 0) != 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] && !strchr("ZXxTt", p[2]);
}

/*
 * Keeps the leases of this node's image jobs whose upgrade task process runs
 * (issue 14, "a lease renewed by heartbeat"): a task in a long step without
 * progress keeps its job. A task that died (reaped, gone or a zombie) or is
 * stopped is not renewed: its lease runs out and a node takes the job over
 * (a stopped one that wakes finds it lost the job and stops; image.md).
 */
static int
renew_tasks(struct pg_serve_cluster *c)
{
	struct pg_serve_state *s = c->s;
	struct pg_store st = {.pdb = c->db};
	int64_t jobs[PG_SERVE_MAX_TASKS];
	pid_t pids[PG_SERVE_MAX_TASKS];
	size_t k = 0, n = 0;
	int rc;

	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < PG_SERVE_MAX_TASKS; i++)
		if (s->task[i] > 0 && s->task_job[i] > 0) {
			pids[k] = s->task[i];
			jobs[k++] = s->task_job[i];
		}
	pthread_mutex_unlock(&s->mu);
	/* /proc is read outside the lock: the supervisor reaps under it */
	for (size_t i = 0; i < k; i++)
		if (task_runs(pids[i]))
			jobs[n++] = jobs[i];
	if (!n)
		return 0;
	rc = pg_image_job_renew_jobs(&st, c->node, jobs, n, 0);
	return rc < 0 ? rc : 0;
}

static void
lock_name(char *out, size_t size, const char *prefix, const char *name)
{
	snprintf(out, size, "%s%s", prefix, name);
}

static void
drop_all(struct pg_serve_cluster *c, const char *why)
{
	for (size_t i = 0; i < nsingle(); i++)
		if (atomic_exchange(&c->leads[i], 0))
			pg_warn("cluster", "node %s no longer leads %s: %s", c->node,
				single_name(i), why);
}

/* since_ms kept while the same node leads */
static int
lead_row(struct pg_serve_cluster *c, const char *singleton)
{
	return run(c->db,
		   "INSERT INTO cluster_leader(singleton, node, since_ms)"
		   " VALUES(?, ?, " DB_NOW_MS ") ON CONFLICT(singleton) DO UPDATE"
		   " SET node = excluded.node, since_ms = CASE WHEN"
		   " cluster_leader.node = excluded.node THEN cluster_leader.since_ms"
		   " ELSE excluded.since_ms END",
		   "ss", singleton, c->node);
}

struct lead {
	struct pg_serve_cluster *c;
	const char *singleton;
};

/* This node took a singleton's lock: its row, and leader_changed when the
 * leader was another node (or none), in one transaction (issue 15). */
static int
lead_tx(struct pg_db *db, void *arg)
{
	struct lead *l = arg;
	struct pg_db_stmt *q;
	char prev[PG_SERVE_NODE_NAME] = "";
	json_t *d;
	int rc =
	    pg_db_prepare(db, "SELECT node FROM cluster_leader WHERE singleton = ? FOR UPDATE", &q);

	if (rc < 0)
		return rc;
	pg_db_bind_text(q, 1, l->singleton, -1);
	rc = pg_db_step(q);
	if (rc == 1)
		snprintf(prev, sizeof(prev), "%s", pg_db_column_text(q, 0));
	pg_db_reset(q);
	if (rc >= 0)
		rc = lead_row(l->c, l->singleton);
	if (rc < 0 || strcmp(prev, l->c->node) == 0)
		return rc < 0 ? rc : 0;
	d = json_pack("{s:s, s:s, s:s?}", "singleton", l->singleton, "node", l->c->node, "previous",
		      prev[0] ? prev : NULL);
	rc = d ? pg_event_emit(db, "cluster", "leader_changed", l->singleton, d, NULL) : PG_ENOMEM;
	json_decref(d);
	return rc;
}

/* Takes or keeps each singleton's lock; records what this node leads. */
static int
elect(struct pg_serve_cluster *c)
{
	char name[128];
	int rc = 0;

	for (size_t i = 0; i < nsingle() && rc >= 0; i++) {
		int had = atomic_load(&c->leads[i]);

		lock_name(name, sizeof(name), LEAD_LOCK_PREFIX, single_name(i));
		if (!enabled(c, i)) {
			if (had) { /* cannot happen today: the worker table is fixed */
				atomic_store(&c->leads[i], 0);
				rc = pg_db_unlock(c->db, name);
			}
			continue;
		}
		rc = had ? pg_db_lock_held(c->db, name) : pg_db_try_lock(c->db, name);
		if (rc == 1) {
			struct lead l = {c, single_name(i)};

			/* a new lead records itself with its event; a kept one its row */
			rc = had ? lead_row(c, l.singleton) : pg_db_transact(c->db, lead_tx, &l, 3);
			if (rc < 0)
				break;
			if (!had) {
				atomic_store(&c->leads[i], 1);
				pg_info("cluster", "node %s leads %s", c->node, single_name(i));
			}
		} else if (had) {
			atomic_store(&c->leads[i], 0);
			pg_warn("cluster", "node %s lost the lead of %s%s", c->node, single_name(i),
				rc < 0 ? " (store error)" : "");
		}
	}
	if (rc == PG_ECONNLOST)
		drop_all(c, "the store connection was lost"); /* its locks went with it */
	return rc < 0 ? rc : 0;
}

static json_t *
read_nodes(struct pg_serve_cluster *c)
{
	struct pg_db_stmt *q;
	json_t *a = json_array();
	int rc =
	    pg_db_prepare(c->db,
			  "SELECT name, address, pid, started_ms, heartbeat_ms, state, services,"
			  " version, " DB_NOW_MS " - heartbeat_ms FROM cluster_node ORDER BY name",
			  &q);

	while (rc >= 0 && a && (rc = pg_db_step(q)) == 1) {
		int64_t age = pg_db_column_int64(q, 8);
		const char *state = pg_db_column_text(q, 5);
		json_t *sv = json_loads(pg_db_column_text(q, 6), 0, NULL);

		/* silent past the limit: down even before a sweep marks it */
		if (strcmp(state, "up") == 0 && age > PG_SERVE_CLUSTER_DOWN_MS)
			state = "down";
		json_array_append_new(
		    a, json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:o,s:s,s:b}", "name",
				 pg_db_column_text(q, 0), "address", pg_db_column_text(q, 1),
				 "state", state, "pid", (json_int_t)pg_db_column_int64(q, 2),
				 "started_ms", (json_int_t)pg_db_column_int64(q, 3), "heartbeat_ms",
				 (json_int_t)pg_db_column_int64(q, 4), "age_ms", (json_int_t)age,
				 "services", sv ? sv : json_array(), "version",
				 pg_db_column_text(q, 7), "self",
				 strcmp(pg_db_column_text(q, 0), c->node) == 0));
	}
	if (rc >= 0)
		pg_db_reset(q);
	if (rc < 0 || !a) {
		json_decref(a);
		return NULL;
	}
	return a;
}

static const char *
str_of(json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));

	return v ? v : "";
}

static const char *
node_state(json_t *nodes, const char *name)
{
	json_t *n;
	size_t i;

	json_array_foreach(nodes, i, n)
	{
		if (strcmp(str_of(n, "name"), name) == 0)
			return str_of(n, "state");
	}
	return "unknown";
}

static json_t *
read_leaders(struct pg_serve_cluster *c, json_t *nodes)
{
	struct pg_db_stmt *q;
	json_t *a = json_array();
	int rc = pg_db_prepare(
	    c->db, "SELECT singleton, node, since_ms FROM cluster_leader ORDER BY singleton", &q);

	while (rc >= 0 && a && (rc = pg_db_step(q)) == 1) {
		const char *sg = pg_db_column_text(q, 0), *node = pg_db_column_text(q, 1);
		int i = single_index(sg);

		json_array_append_new(
		    a, json_pack("{s:s,s:s?,s:s,s:I,s:s}", "singleton", sg, "worker",
				 i >= 0 ? single_worker((size_t)i) : NULL, "node", node, "since_ms",
				 (json_int_t)pg_db_column_int64(q, 2), "node_state",
				 node_state(nodes, node)));
	}
	if (rc >= 0)
		pg_db_reset(q);
	if (rc < 0 || !a) {
		json_decref(a);
		return NULL;
	}
	return a;
}

static int
refresh(struct pg_serve_cluster *c)
{
	json_t *nodes = read_nodes(c), *leaders = nodes ? read_leaders(c, nodes) : NULL;
	json_t *v;

	if (!leaders) {
		json_decref(nodes);
		return PG_ESTORE;
	}
	v = json_pack("{s:s,s:s,s:i,s:i,s:o,s:o}", "node", c->node, "engine", "postgres",
		      "heartbeat_ms", PG_SERVE_CLUSTER_BEAT_MS, "down_after_ms",
		      PG_SERVE_CLUSTER_DOWN_MS, "nodes", nodes, "leaders", leaders);
	if (!v)
		return PG_ENOMEM;
	set_snapshot(c, v);
	return 0;
}

/* The name lock: held, or another daemon runs as this node (PG_EBUSY). */
static int
hold_name(struct pg_serve_cluster *c)
{
	char name[128];
	int rc;

	lock_name(name, sizeof(name), NODE_LOCK_PREFIX, c->node);
	rc = pg_db_try_lock(c->db, name);
	if (rc == 0)
		return pg_error(PG_EBUSY, "cluster",
				"another payguard serve runs as node %s on this store; give each "
				"daemon its own --node",
				c->node);
	return rc < 0 ? rc : 0;
}

static int
session_setup(struct pg_serve_cluster *c)
{
	char sql[160];

	/* a node cut off from the server stops sending: its session (and its
	 * locks) end after this long; its rounds come every second */
	snprintf(sql, sizeof(sql), "SET idle_session_timeout = '%ds'; SET application_name = '%s'",
		 CLUSTER_IDLE_S, "payguard cluster");
	return pg_db_exec(c->db, sql);
}

static int
round_once(struct pg_serve_cluster *c)
{
	int rc = hold_name(c);

	if (rc == 0)
		rc = beat(c);
	if (rc == 0)
		rc = renew_tasks(c);
	if (rc == 0)
		rc = elect(c);
	if (rc == 0)
		rc = refresh(c);
	if (rc == PG_ECONNLOST)
		drop_all(c, "the store connection was lost");
	if (rc == PG_EBUSY)
		drop_all(c, "another daemon uses this node's name");
	if (rc < 0) {
		if (!c->err_logged)
			pg_err("cluster", "node %s: %s", c->node, pg_last_error());
		c->err_logged = 1;
		return rc;
	}
	if (c->err_logged)
		pg_info("cluster", "node %s: the store answers again", c->node);
	c->err_logged = 0;
	atomic_store(&c->last_ok_mono, pg_mono_ms());
	return 0;
}

static void *
beat_thread(void *arg)
{
	struct pg_serve_cluster *c = arg;
	sigset_t all;
	int was_lost = 0;

	sigfillset(&all); /* signals are the supervisor's */
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	while (!atomic_load(&c->stop)) {
		uint64_t t0 = pg_mono_ms();
		int rc = round_once(c);

		/* a new session has the server's defaults again */
		if (rc == PG_ECONNLOST)
			was_lost = 1;
		else if (was_lost && session_setup(c) == 0)
			was_lost = 0;
		while (!atomic_load(&c->stop) && pg_mono_ms() - t0 < PG_SERVE_CLUSTER_BEAT_MS)
			usleep(50 * 1000);
	}
	return NULL;
}

int
pgi_serve_cluster_open(struct pg_serve_state *s, const char *store_url, const char *node,
		       const char *address, struct pg_serve_cluster **out)
{
	struct pg_serve_cluster *c = calloc(1, sizeof(*c));
	int rc;

	*out = NULL;
	if (!c)
		return PG_ENOMEM;
	assert(nsingle() <= NSINGLE_MAX); /* the worker table has at most PG_SERVE_MAX_SVC rows */
	rc = pg_serve_check_node_name(node);
	if (rc < 0) {
		free(c);
		return rc;
	}
	pthread_mutex_init(&c->mu, NULL);
	c->s = s;
	snprintf(c->node, sizeof(c->node), "%s", node);
	snprintf(c->address, sizeof(c->address), "%s", address);
	c->started_ms = pg_wall_ms();
	c->postgres = pg_db_url_is_postgres(store_url);
	pg_events_set_node(c->node); /* the source of this node's events */
	/* before the API's threads exist: libcurl's global set-up is not thread-safe */
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (!c->postgres) {
		*out = c;
		return 0;
	}
	c->url = strdup(store_url);
	rc = c->url ? pg_db_open(&c->db, c->url) : PG_ENOMEM;
	if (rc == 0)
		rc = session_setup(c);
	if (rc == 0)
		rc = pg_db_migrate(c->db, "cluster", cluster_migrations,
				   sizeof(cluster_migrations) / sizeof(cluster_migrations[0]));
	if (rc == 0)
		rc = pg_events_migrate(c->db);
	if (rc == 0)
		rc = hold_name(c);
	if (rc == 0)
		c->joined = 1;
	if (rc == 0)
		rc = round_once(c);
	if (rc < 0) {
		char why[512];

		snprintf(why, sizeof(why), "%s", pg_last_error());
		pgi_serve_cluster_close(c);
		return pg_error(rc, "cluster", "%s", why);
	}
	pg_info("cluster", "node %s joined the cluster on %s (API %s)", c->node, pg_db_name(c->db),
		c->address);
	*out = c;
	return 0;
}

int
pgi_serve_cluster_start(struct pg_serve_cluster *c)
{
	int rc;

	if (!c || !c->postgres)
		return 0;
	rc = pthread_create(&c->th, NULL, beat_thread, c);
	if (rc != 0)
		return pg_error(PG_ESYS, "cluster", "cannot start the heartbeat thread: %s",
				strerror(rc));
	c->th_started = 1;
	return 0;
}

/* Marks this node down with its node_left event ("left"), unless a sweep
 * already did (it was silent) or another incarnation holds the row. */
static int
leave_tx(struct pg_db *db, void *arg)
{
	struct pg_serve_cluster *c = arg;
	struct pg_db_stmt *q;
	int rc = pg_db_prepare(db,
			       "UPDATE cluster_node SET state = 'down' WHERE name = ? AND pid = ?"
			       " AND started_ms = ? AND state = 'up' RETURNING name",
			       &q);

	if (rc < 0)
		return rc;
	pg_db_bind_text(q, 1, c->node, -1);
	pg_db_bind_int64(q, 2, (int64_t)getpid());
	pg_db_bind_int64(q, 3, c->started_ms);
	rc = pg_db_step(q);
	pg_db_reset(q);
	if (rc == 1)
		rc = node_event(db, "node_left", c->node, "left", NULL);
	return rc < 0 ? rc : 0;
}

void
pgi_serve_cluster_close(struct pg_serve_cluster *c)
{
	if (!c)
		return;
	atomic_store(&c->stop, 1);
	if (c->th_started)
		pthread_join(c->th, NULL);
	if (c->db && c->joined) {
		/* leaving on purpose: down at once, not after the silence */
		if (pg_db_transact(c->db, leave_tx, c, 3) < 0)
			pg_warn("cluster", "cannot mark node %s down: %s", c->node,
				pg_last_error());
		pg_info("cluster", "node %s left the cluster", c->node);
	}
	pg_db_free(c->db); /* the session ends: its locks are free for the others */
	json_decref(c->snapshot);
	pthread_mutex_destroy(&c->mu);
	free(c->url);
	free(c);
}

void
pgi_serve_cluster_apply(struct pg_serve_state *s, uint64_t now)
{
	struct pg_serve_cluster *c = s->cluster;

	if (!c || !c->postgres)
		return;
	for (int i = 0; i < s->nsvc; i++) {
		struct pg_serve_svc *w = &s->svc[i];
		int runs;

		if (!pgi_serve_cluster_singleton_of(w->name))
			continue;
		runs = pgi_serve_cluster_runs(c, w->name);
		pthread_mutex_lock(&s->mu);
		if (runs && strcmp(w->state, "standby") == 0) {
			/* leader now: restart_due starts it at once, not counted */
			w->state = "backoff";
			w->next_start_mono = now;
			w->reload_start = 1;
			pthread_mutex_unlock(&s->mu);
			pg_info("cluster", "starting %s: this node leads it", w->name);
			continue;
		}
		if (!runs && w->pid > 0 && !w->standby) {
			w->standby = 1; /* reap() makes it "standby" */
			kill(w->pid, SIGTERM);
			pthread_mutex_unlock(&s->mu);
			pg_warn("cluster", "stopping %s: this node no longer leads it", w->name);
			continue;
		}
		if (!runs && w->pid == 0 && strcmp(w->state, "backoff") == 0)
			w->state = "standby"; /* was waiting to restart: not ours any more */
		pthread_mutex_unlock(&s->mu);
	}
}

/* ---- forwarding an API request to the node that owns the thing ---- */

#define FORWARD_MAX (1u << 20) /* a reply larger than this is cut off: an error */

struct fwd_body {
	char *p;
	size_t len;
	int too_big;
};

static size_t
fwd_write(char *data, size_t size, size_t n, void *arg)
{
	struct fwd_body *b = arg;
	size_t add = size * n;
	char *np;

	if (b->len + add > FORWARD_MAX) {
		b->too_big = 1;
		return 0; /* libcurl stops with a write error */
	}
	np = realloc(b->p, b->len + add + 1);
	if (!np)
		return 0;
	memcpy(np + b->len, data, add);
	b->p = np;
	b->len += add;
	b->p[b->len] = 0;
	return add;
}

int
pgi_serve_cluster_forward(struct pg_serve_cluster *c, const char *node, const char *path,
			  const char *body, size_t len, const char *token, long *status,
			  json_t **reply)
{
	char addr[300], url[600], err[CURL_ERROR_SIZE] = "", auth[300];
	struct curl_slist *h = NULL;
	struct fwd_body b = {0};
	json_error_t jerr;
	CURL *cu;
	CURLcode cc;
	int rc;

	*reply = NULL;
	*status = 0;
	rc = pgi_serve_cluster_address(c, node, addr, sizeof(addr));
	if (rc < 0)
		return rc;
	if (strcmp(node, c->node) == 0)
		return pg_error(PG_EINVAL, "cluster",
				"a request for node %s reached node %s itself", node, c->node);
	snprintf(url, sizeof(url), "http://%s%s", addr, path);
	cu = curl_easy_init();
	if (!cu)
		return PG_ENOMEM;
	/* Host is the address as written: the owner's guard accepts its own
	 * address and port; the request is JSON as the guard wants */
	h = curl_slist_append(h, "Content-Type: application/json");
	h = curl_slist_append(h, "Expect:");
	snprintf(auth, sizeof(auth), "%s: %s", PG_SERVE_FORWARDED_HEADER, c->node);
	h = curl_slist_append(h, auth);
	if (token && token[0]) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		h = curl_slist_append(h, auth);
	}
	curl_easy_setopt(cu, CURLOPT_URL, url);
	curl_easy_setopt(cu, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(cu, CURLOPT_POSTFIELDS, body ? body : "");
	curl_easy_setopt(cu, CURLOPT_POSTFIELDSIZE, body ? (long)len : 0L);
	curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, fwd_write);
	curl_easy_setopt(cu, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(cu, CURLOPT_ERRORBUFFER, err);
	curl_easy_setopt(cu, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
	curl_easy_setopt(cu, CURLOPT_TIMEOUT_MS, (long)PG_SERVE_CLUSTER_FORWARD_MS);
	curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(cu, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(cu, CURLOPT_FOLLOWLOCATION, 0L);
	cc = curl_easy_perform(cu);
	if (cc == CURLE_OK)
		curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, status);
	if (auth[0])
		memset(auth, 0, sizeof(auth)); /* the token */
	curl_slist_free_all(h);		       /* libcurl copied nothing else from it */
	curl_easy_cleanup(cu);
	if (cc != CURLE_OK) {
		free(b.p);
		return pg_error(b.too_big ? PG_ETOOBIG : PG_EIO, "cluster", "node %s (%s): %s",
				node, addr,
				b.too_big ? "reply too large"
				: err[0]  ? err
					  : curl_easy_strerror(cc));
	}
	*reply = b.p ? json_loadb(b.p, b.len, 0, &jerr) : NULL;
	free(b.p);
	if (!*reply)
		return pg_error(PG_EFORMAT, "cluster", "node %s answered %ld without JSON", node,
				*status);
	return 0;
}
