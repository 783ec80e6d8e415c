/*
 * Cluster mode's membership and singleton election (src/serve/cluster.c,
 * issue 14): on SQLite one node leads everything; given --postgres-url-file
 * FILE (the CTest fixture tests/fixtures/postgres.sh) two or three nodes
 * share a real server: one leads each singleton, a second daemon cannot
 * take a running node's name, a node that leaves or loses its session hands
 * its singletons over within seconds, and /api/cluster's snapshot shows it.
 * The heartbeat renews the leases of the image jobs whose upgrade task is
 * alive on the node (a task without progress keeps its job past the lease
 * time) and not those of a task that died or is stopped (their lease runs
 * out).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cluster.h"
#include "core/db_int.h" /* pgi_db_lock_key */
#include "payguard/clock.h"
#include "payguard/db.h"
#include "payguard/error.h"
#include "payguard/image.h"
#include "payguard/serve.h"
#include "payguard/store.h"
#include "serve_int.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* from src/image (imagedb.h) */
int pgi_image_save(struct pg_store *st, json_t *inv, int64_t *id);

static char url[4096];
static int on_postgres;

/* A supervisor's state with the worker rows cluster.c looks at. */
static struct pg_serve_state *
state_new(int demo)
{
	static const char *const names[] = {"pos", "load", "image", "vse", "pos-traffic"};
	struct pg_serve_state *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	pthread_mutex_init(&s->mu, NULL);
	for (int i = 0; i < 4 + demo; i++) {
		snprintf(s->svc[i].name, sizeof(s->svc[i].name), "%s", names[i]);
		s->svc[i].state = "standby";
	}
	s->nsvc = 4 + demo;
	return s;
}

static void
state_free(struct pg_serve_state *s)
{
	pgi_serve_cluster_close(s->cluster);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

static json_t *
leader_of(json_t *snap, const char *singleton)
{
	json_t *l;
	size_t i;

	json_array_foreach(json_object_get(snap, "leaders"), i, l)
	{
		if (strcmp(json_string_value(json_object_get(l, "singleton")), singleton) == 0)
			return l;
	}
	return NULL;
}

static const char *
node_state(json_t *snap, const char *node)
{
	json_t *n;
	size_t i;

	json_array_foreach(json_object_get(snap, "nodes"), i, n)
	{
		if (strcmp(json_string_value(json_object_get(n, "name")), node) == 0)
			return json_string_value(json_object_get(n, "state"));
	}
	return NULL;
}

/* Waits up to ms for node c to lead (want 1) or not lead (want 0) singleton. */
static int
wait_lead(struct pg_serve_cluster *c, const char *singleton, int want, int ms)
{
	uint64_t t0 = pg_mono_ms();

	while (pgi_serve_cluster_leads(c, singleton) != want) {
		if (pg_mono_ms() - t0 > (uint64_t)ms)
			return -1;
		usleep(50 * 1000);
	}
	return (int)(pg_mono_ms() - t0);
}

static void
test_node_names(void **state)
{
	(void)state;
	assert_int_equal(pg_serve_check_node_name("n1"), 0);
	assert_int_equal(pg_serve_check_node_name("db-2.rack_3"), 0);
	assert_int_equal(pg_serve_check_node_name(""), PG_EINVAL);
	assert_int_equal(pg_serve_check_node_name("a b"), PG_EINVAL);
	assert_int_equal(pg_serve_check_node_name("x'; DROP TABLE y"), PG_EINVAL);
	assert_int_equal(pg_serve_check_node_name("0123456789012345678901234567890123456789012345"
						  "678901234567890123"),
			 PG_EINVAL);
	assert_string_equal(pgi_serve_cluster_singleton_of("load"), "load");
	assert_string_equal(pgi_serve_cluster_singleton_of("image"), "image-watch");
	assert_string_equal(pgi_serve_cluster_singleton_of("pos-traffic"), "pos-traffic");
	assert_null(pgi_serve_cluster_singleton_of("pos"));
	assert_null(pgi_serve_cluster_singleton_of("vse"));
	assert_string_equal(pgi_serve_cluster_singleton_of("events"), "events");
	assert_null(pgi_serve_cluster_singleton_of("no-such-worker"));
}

/* SQLite: the node is alone and runs every service, as before clusters. */
static void
test_sqlite_alone(void **state)
{
	struct pg_serve_state *s = state_new(0);
	json_t *v;

	(void)state;
	assert_int_equal(pgi_serve_cluster_open(s, "/tmp/payguard-no-such.db", "solo",
						"127.0.0.1:1", &s->cluster),
			 0);
	assert_int_equal(pgi_serve_cluster_start(s->cluster), 0);
	assert_true(pgi_serve_cluster_leads(s->cluster, "load"));
	assert_true(pgi_serve_cluster_leads(s->cluster, "retention"));
	assert_true(pgi_serve_cluster_runs(s->cluster, "image"));
	assert_true(pgi_serve_cluster_runs(s->cluster, "pos"));
	assert_true(pgi_serve_cluster_leads(NULL, "load"));
	v = pgi_serve_cluster_json(s->cluster);
	assert_string_equal(json_string_value(json_object_get(v, "engine")), "sqlite");
	assert_int_equal(json_array_size(json_object_get(v, "nodes")), 1);
	assert_string_equal(node_state(v, "solo"), "up");
	assert_string_equal(json_string_value(json_object_get(leader_of(v, "load"), "node")),
			    "solo");
	assert_non_null(leader_of(v, "retention"));
	assert_non_null(leader_of(v, "image-watch"));
	/* no demo: no demo traffic to lead */
	assert_null(leader_of(v, "pos-traffic"));
	/* the worker table names each worker's singleton: the cluster leads
	 * it as that worker (issue 16: one table for supervisor and workers) */
	for (const struct pg_serve_worker_def *w = pgi_serve_workers; w->name; w++) {
		json_t *l;

		if (!w->singleton || strcmp(w->name, "pos-traffic") == 0 ||
		    strcmp(w->name, "events") == 0) /* not in state_new's rows */
			continue;
		l = leader_of(v, w->singleton);
		assert_non_null(l);
		assert_string_equal(json_string_value(json_object_get(l, "worker")), w->name);
	}
	json_decref(v);
	/* the supervisor's step changes nothing on SQLite */
	pgi_serve_cluster_apply(s, pg_mono_ms());
	assert_string_equal(s->svc[1].state, "standby");
	state_free(s);
}

static void
clean_tables(void)
{
	struct pg_db *db = NULL;

	assert_int_equal(pg_db_open(&db, url), 0);
	(void)pg_db_exec(db, "DROP TABLE IF EXISTS cluster_node; DROP TABLE IF EXISTS "
			     "cluster_leader; DELETE FROM pg_schema WHERE area = 'cluster'");
	pg_db_free(db);
}

static void
test_election(void **state)
{
	struct pg_serve_state *a = state_new(1), *b = state_new(0), *dup = state_new(0);
	json_t *v;
	int ms;

	(void)state;
	if (!on_postgres) {
		state_free(a);
		state_free(b);
		state_free(dup);
		return;
	}
	clean_tables();
	assert_int_equal(pgi_serve_cluster_open(a, url, "na", "127.0.0.1:1001", &a->cluster), 0);
	/* the first node leads every singleton it has from its first round */
	assert_true(pgi_serve_cluster_leads(a->cluster, "load"));
	assert_true(pgi_serve_cluster_leads(a->cluster, "retention"));
	assert_true(pgi_serve_cluster_leads(a->cluster, "image-watch"));
	assert_true(pgi_serve_cluster_leads(a->cluster, "pos-traffic"));
	assert_int_equal(pgi_serve_cluster_open(b, url, "nb", "127.0.0.1:1002", &b->cluster), 0);
	assert_false(pgi_serve_cluster_leads(b->cluster, "load"));
	assert_false(pgi_serve_cluster_leads(b->cluster, "retention"));
	assert_false(pgi_serve_cluster_runs(b->cluster, "image"));
	assert_true(pgi_serve_cluster_runs(b->cluster, "pos")); /* everywhere */
	/* a second daemon as node "na" is refused while na runs */
	assert_int_equal(pgi_serve_cluster_open(dup, url, "na", "127.0.0.1:1003", &dup->cluster),
			 PG_EBUSY);
	assert_null(dup->cluster);
	assert_int_equal(pgi_serve_cluster_start(a->cluster), 0);
	assert_int_equal(pgi_serve_cluster_start(b->cluster), 0);
	sleep(2);
	v = pgi_serve_cluster_json(b->cluster);
	assert_string_equal(json_string_value(json_object_get(v, "engine")), "postgres");
	assert_string_equal(node_state(v, "na"), "up");
	assert_string_equal(node_state(v, "nb"), "up");
	assert_string_equal(json_string_value(json_object_get(leader_of(v, "load"), "node")), "na");
	assert_string_equal(json_string_value(json_object_get(leader_of(v, "pos-traffic"), "node")),
			    "na");
	json_decref(v);
	{
		char addr[64];

		assert_int_equal(pgi_serve_cluster_address(b->cluster, "na", addr, sizeof(addr)),
				 0);
		assert_string_equal(addr, "127.0.0.1:1001");
		assert_int_equal(
		    pgi_serve_cluster_address(b->cluster, "nobody", addr, sizeof(addr)), PG_ENOENT);
	}
	/* b's supervisor step: nothing to start while na leads */
	pgi_serve_cluster_apply(b, pg_mono_ms());
	assert_string_equal(b->svc[1].state, "standby");
	/* na leaves: nb takes load, retention and the watcher over within 10 s */
	pgi_serve_cluster_close(a->cluster);
	a->cluster = NULL;
	ms = wait_lead(b->cluster, "load", 1, 10000);
	assert_true(ms >= 0);
	print_message("takeover after a clean leave: %d ms\n", ms);
	assert_true(wait_lead(b->cluster, "retention", 1, 3000) >= 0);
	assert_true(wait_lead(b->cluster, "image-watch", 1, 3000) >= 0);
	/* nb has no demo traffic: no one leads it now */
	assert_false(pgi_serve_cluster_leads(b->cluster, "pos-traffic"));
	pgi_serve_cluster_apply(b, pg_mono_ms());
	assert_string_equal(b->svc[1].state, "backoff"); /* restart_due starts it now */
	sleep(2);
	v = pgi_serve_cluster_json(b->cluster);
	assert_string_equal(node_state(v, "na"), "down");
	assert_string_equal(json_string_value(json_object_get(leader_of(v, "load"), "node")), "nb");
	assert_string_equal(
	    json_string_value(json_object_get(leader_of(v, "pos-traffic"), "node_state")), "down");
	json_decref(v);
	/* the name is free again: na can come back (and leads nothing nb holds) */
	assert_int_equal(pgi_serve_cluster_open(dup, url, "na", "127.0.0.1:1003", &dup->cluster),
			 0);
	assert_false(pgi_serve_cluster_leads(dup->cluster, "load"));
	state_free(dup);
	state_free(b);
	state_free(a);
}

/* A node whose session dies (as when its machine or PostgreSQL link goes)
 * loses every lock; another node takes them over. */
static void
test_takeover_after_lost_session(void **state)
{
	struct pg_serve_state *a = state_new(0), *b = state_new(0);
	struct pg_db *admin = NULL;
	struct pg_db_stmt *q;
	uint64_t key;
	int ms;

	(void)state;
	if (!on_postgres) {
		state_free(a);
		state_free(b);
		return;
	}
	clean_tables();
	assert_int_equal(pgi_serve_cluster_open(a, url, "la", "127.0.0.1:1", &a->cluster), 0);
	assert_int_equal(pgi_serve_cluster_open(b, url, "lb", "127.0.0.1:2", &b->cluster), 0);
	assert_true(pgi_serve_cluster_leads(a->cluster, "load"));
	assert_int_equal(pgi_serve_cluster_start(b->cluster), 0);
	/* a's heartbeat thread is not started: its session goes from outside */
	assert_int_equal(pg_db_open(&admin, url), 0);
	key = (uint64_t)pgi_db_lock_key("payguard.singleton.load");
	assert_int_equal(pg_db_prepare(admin,
				       "SELECT pg_terminate_backend(pid) FROM pg_locks"
				       " WHERE locktype = 'advisory' AND objsubid = 1 AND granted"
				       " AND classid::bigint = ? AND objid::bigint = ?"
				       " AND database = (SELECT oid FROM pg_database"
				       " WHERE datname = current_database())",
				       &q),
			 0);
	assert_int_equal(pg_db_bind_int64(q, 1, (int64_t)(key >> 32)), 0);
	assert_int_equal(pg_db_bind_int64(q, 2, (int64_t)(key & 0xffffffffu)), 0);
	assert_int_equal(pg_db_step(q), 1);
	assert_int_equal(pg_db_column_int64(q, 0), 1);
	assert_int_equal(pg_db_step(q), 0); /* one holder */
	pg_db_reset(q);
	pg_db_free(admin);
	ms = wait_lead(b->cluster, "load", 1, 10000);
	assert_true(ms >= 0);
	print_message("takeover after a lost session: %d ms\n", ms);
	/* a learns it at its next round and stops leading */
	assert_int_equal(pgi_serve_cluster_start(a->cluster), 0);
	assert_true(wait_lead(a->cluster, "load", 0, 5000) >= 0);
	state_free(a);
	state_free(b);
}

/* Milliseconds left on a job's lease, on the store's clock. */
static int64_t
lease_left(struct pg_store *st, int64_t job)
{
	struct pg_db_stmt *q;
	int64_t left;

	assert_int_equal(
	    pg_db_prepare(
		st->pdb,
		"SELECT lease_until_ms - CAST(extract(epoch FROM clock_timestamp()) * 1000"
		" AS BIGINT) FROM image_job WHERE id = ?",
		&q),
	    0);
	pg_db_bind_int64(q, 1, job);
	assert_int_equal(pg_db_step(q), 1);
	left = pg_db_column_int64(q, 0);
	pg_db_reset(q);
	return left;
}

/*
 * Two upgrade jobs taken by node "hb" with a 1.5 s lease; the supervisor's
 * task slots hold a live process for the first (it makes no progress: it
 * sleeps) and a process that died for the second. After 3 s of heartbeats
 * the first job's lease was renewed (about PG_IMAGE_LEASE_MS left), the
 * second one's ran out and another node may take it over. Then a stopped
 * task's job and a zombie task's job are not renewed either.
 */
static void
test_heartbeat_renews_live_tasks(void **state)
{
	struct pg_serve_state *s = state_new(0);
	struct pg_store st;
	json_t *inv;
	int64_t img = 0, j1 = 0, j2 = 0, j3 = 0, j4 = 0, got, gimg;
	pid_t live, dead, zombie;

	(void)state;
	if (!on_postgres) {
		state_free(s);
		return;
	}
	clean_tables();
	memset(&st, 0, sizeof(st));
	assert_int_equal(pg_store_open(&st, url), 0);
	assert_int_equal(pg_image_db_open(&st), 0);
	inv = json_pack("{s:s, s:s, s:i, s:I, s:I, s:I, s:I, s:[], s:[], s:[]}", "path",
			"/nonexistent/heartbeat-test.img", "format", "raw", "format_version", 0,
			"virtual_size", (json_int_t)1048576, "file_size", (json_int_t)1048576,
			"mtime_ns", (json_int_t)0, "file_ino", (json_int_t)0, "chain", "partitions",
			"packages");
	assert_int_equal(pgi_image_save(&st, inv, &img), 0);
	json_decref(inv);
	assert_int_equal(pg_db_exec(st.pdb, "DELETE FROM image_job"), 0);
	assert_int_equal(pg_image_job_queue(&st, "/nonexistent/heartbeat-test.img", &j1), 0);
	assert_int_equal(pg_image_job_queue(&st, "/nonexistent/heartbeat-test.img", &j2), 0);
	assert_int_equal(pg_image_job_claim(&st, "hb", 1500, &got, &gimg), 0);
	assert_int_equal(got, j1);
	assert_int_equal(pg_image_job_claim(&st, "hb", 1500, &got, &gimg), 0);
	assert_int_equal(got, j2);

	live = fork();
	assert_true(live >= 0);
	if (live == 0) {
		sleep(30); /* a task in a long step: no progress, no renewal of its own */
		_exit(0);
	}
	dead = fork();
	assert_true(dead >= 0);
	if (dead == 0)
		_exit(1); /* a task that crashed */
	assert_int_equal(waitpid(dead, NULL, 0), dead);
	pthread_mutex_lock(&s->mu);
	s->task[0] = live;
	s->task_job[0] = j1;
	s->task[1] = dead; /* not reaped by the supervisor yet: the pid is gone */
	s->task_job[1] = j2;
	pthread_mutex_unlock(&s->mu);

	assert_int_equal(pgi_serve_cluster_open(s, url, "hb", "127.0.0.1:1", &s->cluster), 0);
	assert_int_equal(pgi_serve_cluster_start(s->cluster), 0);
	sleep(3);
	print_message("lease left: live task's job %lld ms, dead task's job %lld ms\n",
		      (long long)lease_left(&st, j1), (long long)lease_left(&st, j2));
	assert_true(lease_left(&st, j1) > PG_IMAGE_LEASE_MS - 5000);
	assert_true(lease_left(&st, j2) < 0);
	/* another node takes the dead task's job over, never the live one's */
	assert_int_equal(pg_image_job_claim(&st, "other", 60000, &got, &gimg), 0);
	assert_int_equal(got, j2);
	assert_int_equal(pg_image_job_claim(&st, "other", 60000, &got, &gimg), PG_ENOENT);

	/*
	 * Two more jobs: one whose task is stopped (SIGSTOP: it exists but makes
	 * no progress, as one stalled) and one whose task exited and is not
	 * reaped yet (a zombie: kill(pid, 0) still succeeds). Neither is renewed.
	 */
	assert_int_equal(pg_image_job_queue(&st, "/nonexistent/heartbeat-test.img", &j3), 0);
	assert_int_equal(pg_image_job_queue(&st, "/nonexistent/heartbeat-test.img", &j4), 0);
	assert_int_equal(pg_image_job_claim(&st, "hb", 1500, &got, &gimg), 0);
	assert_int_equal(got, j3);
	assert_int_equal(pg_image_job_claim(&st, "hb", 1500, &got, &gimg), 0);
	assert_int_equal(got, j4);
	zombie = fork();
	assert_true(zombie >= 0);
	if (zombie == 0)
		_exit(1);
	assert_int_equal(kill(live, SIGSTOP), 0);
	pthread_mutex_lock(&s->mu);
	s->task_job[0] = j3; /* the stopped one */
	s->task[1] = zombie;
	s->task_job[1] = j4;
	pthread_mutex_unlock(&s->mu);
	sleep(3);
	print_message("lease left: stopped task's job %lld ms, zombie task's job %lld ms\n",
		      (long long)lease_left(&st, j3), (long long)lease_left(&st, j4));
	assert_true(lease_left(&st, j3) < 0);
	assert_true(lease_left(&st, j4) < 0);
	assert_int_equal(pg_image_job_claim(&st, "other", 60000, &got, &gimg), 0);
	assert_int_equal(got, j3);
	assert_int_equal(pg_image_job_claim(&st, "other", 60000, &got, &gimg), 0);
	assert_int_equal(got, j4);
	assert_int_equal(pg_image_job_claim(&st, "other", 60000, &got, &gimg), PG_ENOENT);

	kill(live, SIGKILL);
	assert_int_equal(waitpid(live, NULL, 0), live);
	assert_int_equal(waitpid(zombie, NULL, 0), zombie);
	s->task[0] = s->task[1] = 0;
	state_free(s);
	assert_int_equal(pg_db_exec(st.pdb, "DELETE FROM image_job"), 0);
	pg_store_close(&st);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_node_names),
	    cmocka_unit_test(test_sqlite_alone),
	    cmocka_unit_test(test_election),
	    cmocka_unit_test(test_takeover_after_lost_session),
	    cmocka_unit_test(test_heartbeat_renews_live_tasks),
	};

	if (argc == 3 && strcmp(argv[1], "--postgres-url-file") == 0) {
		FILE *f = fopen(argv[2], "r");

		if (!f || !fgets(url, sizeof(url), f)) {
			fprintf(stderr, "test_cluster: cannot read the PostgreSQL URL from %s\n",
				argv[2]);
			return 1;
		}
		fclose(f);
		url[strcspn(url, "\n")] = 0;
		on_postgres = 1;
		return cmocka_run_group_tests_name("cluster_postgres", tests, NULL, NULL);
	}
	return cmocka_run_group_tests_name("cluster_sqlite", tests, NULL, NULL);
}
