/*
 * The store API (include/payguard/db.h) on both engines: the same checks run
 * on a SQLite file and, given --postgres-url-file FILE (written by the
 * PostgreSQL CTest fixture, tests/fixtures/postgres.sh), on a real server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/db_int.h" /* pgi_db_lock_key */
#include "payguard/db.h"
#include "payguard/error.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char url[4096];

static struct pg_db *
open_clean(void)
{
	struct pg_db *db = NULL;

	assert_int_equal(pg_db_open(&db, url), 0);
	assert_int_equal(pg_db_exec(db, "DROP TABLE IF EXISTS t_kv; DROP TABLE IF EXISTS t_mig;"
					"DROP TABLE IF EXISTS t_bulk;"
					"DELETE FROM pg_schema WHERE area LIKE 'test%'"),
			 0);
	return db;
}

static void
test_types_round_trip(void **state)
{
	static const unsigned char blob[] = {0, 1, 2, 0xff, 0, '\\', 'x', 0};
	static const double reals[] = {0.1, 52.52, 1e300, -2.5e-310, 123456789.123456789};
	struct pg_db *db = open_clean();
	struct pg_db_stmt *s;
	size_t len;

	(void)state;
	assert_int_equal(pg_db_exec(db, "CREATE TABLE t_kv(k TEXT PRIMARY KEY, i BIGINT,"
					" d DOUBLE PRECISION, b BYTEA, n TEXT)"),
			 0);
	for (size_t r = 0; r < sizeof(reals) / sizeof(reals[0]); r++) {
		char key[16];

		snprintf(key, sizeof(key), "k%zu", r);
		assert_int_equal(
		    pg_db_prepare(db, "INSERT INTO t_kv(k, i, d, b, n) VALUES(?, ?, ?, ?, ?)", &s),
		    0);
		assert_int_equal(pg_db_bind_text(s, 1, key, -1), 0);
		assert_int_equal(pg_db_bind_int64(s, 2, INT64_MIN + (int64_t)r), 0);
		assert_int_equal(pg_db_bind_double(s, 3, reals[r]), 0);
		assert_int_equal(pg_db_bind_blob(s, 4, blob, sizeof(blob)), 0);
		assert_int_equal(pg_db_bind_null(s, 5), 0);
		assert_int_equal(pg_db_step(s), 0);
		assert_int_equal(pg_db_changes(s), 1);
	}
	assert_int_equal(pg_db_prepare(db, "SELECT k, i, d, b, n FROM t_kv ORDER BY k", &s), 0);
	for (size_t r = 0; r < sizeof(reals) / sizeof(reals[0]); r++) {
		const unsigned char *b;

		assert_int_equal(pg_db_step(s), 1);
		assert_int_equal(pg_db_column_count(s), 5);
		assert_int_equal(pg_db_column_int64(s, 1), INT64_MIN + (int64_t)r);
		/* exact, not close: the double travels as 17 digits */
		assert_true(pg_db_column_double(s, 2) == reals[r]);
		b = pg_db_column_blob(s, 3, &len);
		assert_int_equal(len, sizeof(blob));
		assert_memory_equal(b, blob, sizeof(blob));
		assert_true(pg_db_column_is_null(s, 4));
		assert_false(pg_db_column_is_null(s, 0));
		assert_string_equal(pg_db_column_text(s, 4), "");
	}
	assert_int_equal(pg_db_step(s), 0);
	/* names (the AS alias) and storage classes, for rows read as JSON */
	assert_int_equal(pg_db_prepare(db,
				       "SELECT k AS key, i, d, b, n, CAST(? AS TEXT) AS t"
				       " FROM t_kv WHERE k = 'k0'",
				       &s),
			 0);
	assert_int_equal(pg_db_bind_text(s, 1, "x", -1), 0);
	assert_int_equal(pg_db_step(s), 1);
	assert_string_equal(pg_db_column_name(s, 0), "key");
	assert_string_equal(pg_db_column_name(s, 1), "i");
	assert_string_equal(pg_db_column_name(s, 5), "t");
	assert_string_equal(pg_db_column_name(s, 6), "");
	assert_int_equal(pg_db_column_type(s, 0), PG_DB_COL_TEXT);
	assert_int_equal(pg_db_column_type(s, 1), PG_DB_COL_INT64);
	assert_int_equal(pg_db_column_type(s, 2), PG_DB_COL_DOUBLE);
	assert_int_equal(pg_db_column_type(s, 3), PG_DB_COL_BLOB);
	assert_int_equal(pg_db_column_type(s, 4), PG_DB_COL_NULL);
	assert_int_equal(pg_db_column_type(s, 5), PG_DB_COL_TEXT);
	assert_int_equal(pg_db_step(s), 0);
	assert_int_equal(pg_db_prepare(db, "SELECT count(*) AS c FROM t_kv", &s), 0);
	assert_int_equal(pg_db_step(s), 1);
	assert_int_equal(pg_db_column_type(s, 0), PG_DB_COL_INT64);
	assert_string_equal(pg_db_column_name(s, 0), "c");
	assert_int_equal(pg_db_column_int64(s, 0), 5);
	pg_db_reset(s);
	pg_db_free(db);
}

static void
test_placeholders_and_cache(void **state)
{
	struct pg_db *db = open_clean();
	struct pg_db_stmt *s, *again;

	(void)state;
	/* a ? inside a literal, a quoted name or a comment is not a parameter */
	assert_int_equal(pg_db_prepare(db, "SELECT '?''?' AS \"a?\", ? /* ? */ -- ?\n, ?", &s), 0);
	assert_int_equal(pg_db_bind_text(s, 1, "one", -1), 0);
	assert_int_equal(pg_db_bind_int64(s, 2, 2), 0);
	assert_int_equal(pg_db_bind_int64(s, 3, 9), PG_ERANGE);
	assert_int_equal(pg_db_step(s), 1);
	assert_string_equal(pg_db_column_text(s, 0), "?'?");
	assert_string_equal(pg_db_column_text(s, 1), "one");
	assert_int_equal(pg_db_column_int64(s, 2), 2);
	/* the same text is the same prepared statement, its bindings cleared */
	assert_int_equal(pg_db_prepare(db, "SELECT '?''?' AS \"a?\", ? /* ? */ -- ?\n, ?", &again),
			 0);
	assert_ptr_equal(s, again);
	assert_int_equal(pg_db_bind_text(again, 1, "two", 3), 0);
	assert_int_equal(pg_db_bind_int64(again, 2, 3), 0);
	assert_int_equal(pg_db_step(again), 1);
	assert_string_equal(pg_db_column_text(again, 1), "two");
	/* a reset keeps the bindings: the statement runs again as it was */
	pg_db_reset(again);
	assert_int_equal(pg_db_step(again), 1);
	assert_int_equal(pg_db_column_int64(again, 2), 3);
	pg_db_free(db);
}

static void
test_unique_and_errors(void **state)
{
	struct pg_db *db = open_clean(), *bad = NULL;
	struct pg_db_stmt *s;

	(void)state;
	assert_int_equal(pg_db_exec(db, "CREATE TABLE t_kv(k TEXT PRIMARY KEY, i BIGINT)"), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pg_db_prepare(db, "INSERT INTO t_kv(k, i) VALUES(?, ?)", &s), 0);
		assert_int_equal(pg_db_bind_text(s, 1, "same", -1), 0);
		assert_int_equal(pg_db_bind_int64(s, 2, i), 0);
		assert_int_equal(pg_db_step(s), i == 0 ? 0 : PG_EUNIQUE);
	}
	assert_int_equal(pg_db_prepare(db, "SELEKT 1", &s), PG_ESTORE);
	assert_int_equal(pg_db_exec(db, "INSERT INTO no_such_table VALUES(1)"), PG_ESTORE);
	/* the connection is still usable after errors */
	assert_int_equal(pg_db_prepare(db, "SELECT count(*) FROM t_kv", &s), 0);
	assert_int_equal(pg_db_step(s), 1);
	assert_int_equal(pg_db_column_int64(s, 0), 1);
	pg_db_free(db);
	assert_int_equal(
	    pg_db_open(&bad, "postgresql:///x?host=/nonexistent-pg-dir&connect_timeout=2"),
	    PG_ECONNLOST);
	assert_null(bad);
	assert_int_equal(pg_db_open(&bad, ""), PG_EINVAL);
}

struct counter {
	int calls, fail_first;
};

static int
insert_row(struct pg_db *db, void *arg)
{
	struct counter *c = arg;
	struct pg_db_stmt *s;
	int rc;

	c->calls++;
	rc = pg_db_prepare(db, "INSERT INTO t_kv(k, i) VALUES('row', ?)", &s);
	if (rc < 0)
		return rc;
	pg_db_bind_int64(s, 1, c->calls);
	rc = pg_db_step(s);
	if (rc < 0)
		return rc;
	/* a busy answer after the insert: the retry must not see it */
	if (c->calls <= c->fail_first)
		return PG_EBUSY;
	return 7;
}

static void
test_transact_retry(void **state)
{
	struct pg_db *db = open_clean();
	struct counter c = {0, 2}, never = {0, 100};
	struct pg_db_stmt *s;

	(void)state;
	assert_int_equal(pg_db_exec(db, "CREATE TABLE t_kv(k TEXT PRIMARY KEY, i BIGINT)"), 0);
	assert_int_equal(pg_db_transact(db, insert_row, &c, 5), 7);
	assert_int_equal(c.calls, 3);
	assert_int_equal(pg_db_prepare(db, "SELECT i FROM t_kv", &s), 0);
	assert_int_equal(pg_db_step(s), 1);
	assert_int_equal(pg_db_column_int64(s, 0), 3);
	assert_int_equal(pg_db_step(s), 0);
	/* out of tries: the error comes back and nothing was kept */
	assert_int_equal(pg_db_exec(db, "DELETE FROM t_kv"), 0);
	assert_int_equal(pg_db_transact(db, insert_row, &never, 3), PG_EBUSY);
	assert_int_equal(never.calls, 3);
	assert_int_equal(pg_db_prepare(db, "SELECT count(*) FROM t_kv", &s), 0);
	assert_int_equal(pg_db_step(s), 1);
	assert_int_equal(pg_db_column_int64(s, 0), 0);
	pg_db_free(db);
}

static const struct pg_db_migration steps[] = {
    /* no IF NOT EXISTS: a second run of step 1 would fail */
    {1, "CREATE TABLE t_mig(id INTEGER PRIMARY KEY, v TEXT)", NULL, NULL},
    {2, NULL, "INSERT INTO t_mig(id, v) VALUES(1, 'sqlite')",
     "INSERT INTO t_mig(id, v) VALUES(1, 'postgres')"},
};

static void *
migrate_thread(void *arg)
{
	struct pg_db *db = NULL;
	int *rc = arg;

	*rc = pg_db_open(&db, url);
	if (*rc == 0)
		*rc = pg_db_migrate(db, "test_mig", steps, 2);
	pg_db_free(db);
	return NULL;
}

static void
test_migrations(void **state)
{
	struct pg_db *db = open_clean();
	struct pg_db_stmt *s;
	pthread_t th[4];
	int rc[4];

	(void)state;
	assert_int_equal(pg_db_version(db, "test_mig"), 0);
	/* four daemons starting at once: every step runs exactly once */
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, migrate_thread, &rc[i]), 0);
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(rc[i], 0);
	}
	assert_int_equal(pg_db_version(db, "test_mig"), 2);
	assert_int_equal(pg_db_migrate(db, "test_mig", steps, 2), 0);
	assert_int_equal(pg_db_prepare(db, "SELECT v FROM t_mig", &s), 0);
	assert_int_equal(pg_db_step(s), 1);
	assert_string_equal(pg_db_column_text(s, 0),
			    pg_db_engine_of(db) == PG_DB_POSTGRES ? "postgres" : "sqlite");
	assert_int_equal(pg_db_step(s), 0);
	pg_db_free(db);
}

static void
test_connection_lost(void **state)
{
	struct pg_db *db = open_clean(), *admin = NULL;
	struct pg_db_stmt *s, *k;
	int64_t pid;

	(void)state;
	if (pg_db_engine_of(db) != PG_DB_POSTGRES) {
		pg_db_free(db);
		return; /* a file has no connection to lose */
	}
	assert_int_equal(pg_db_prepare(db, "SELECT pg_backend_pid() + ?", &s), 0);
	assert_int_equal(pg_db_bind_int64(s, 1, 0), 0);
	assert_int_equal(pg_db_step(s), 1);
	pid = pg_db_column_int64(s, 0);
	assert_int_equal(pg_db_open(&admin, url), 0);
	assert_int_equal(pg_db_prepare(admin, "SELECT pg_terminate_backend(?)", &k), 0);
	assert_int_equal(pg_db_bind_int64(k, 1, pid), 0);
	assert_int_equal(pg_db_step(k), 1);
	assert_int_equal(pg_db_column_int64(k, 0), 1);
	pg_db_free(admin);
	usleep(100000);
	/* the first call sees the loss; the next one runs on a new session */
	assert_int_equal(pg_db_prepare(db, "SELECT pg_backend_pid() + ?", &s), 0);
	assert_int_equal(pg_db_bind_int64(s, 1, 0), 0);
	assert_int_equal(pg_db_step(s), PG_ECONNLOST);
	assert_int_equal(pg_db_prepare(db, "SELECT pg_backend_pid() + ?", &s), 0);
	assert_int_equal(pg_db_bind_int64(s, 1, 0), 0);
	assert_int_equal(pg_db_step(s), 1);
	assert_true(pg_db_column_int64(s, 0) != pid);
	pg_db_free(db);
}

static int
is_pg(struct pg_db *db)
{
	return pg_db_engine_of(db) == PG_DB_POSTGRES;
}

static int64_t
backend_pid(struct pg_db *db)
{
	struct pg_db_stmt *s;
	int64_t pid;

	assert_int_equal(pg_db_prepare(db, "SELECT pg_backend_pid()", &s), 0);
	assert_int_equal(pg_db_step(s), 1);
	pid = pg_db_column_int64(s, 0);
	pg_db_reset(s);
	return pid;
}

/* Ends another connection's session from a third one, as a crash would. */
static void
terminate(int64_t pid)
{
	struct pg_db *admin = NULL;
	struct pg_db_stmt *k;

	assert_int_equal(pg_db_open(&admin, url), 0);
	assert_int_equal(pg_db_prepare(admin, "SELECT pg_terminate_backend(?)", &k), 0);
	assert_int_equal(pg_db_bind_int64(k, 1, pid), 0);
	assert_int_equal(pg_db_step(k), 1);
	assert_int_equal(pg_db_column_int64(k, 0), 1);
	pg_db_free(admin);
	usleep(100000);
}

static void
test_lock_key_stable(void **state)
{
	(void)state;
	/* FNV-1a 64 test vectors: every node must compute the same key */
	assert_true(pgi_db_lock_key("") == (int64_t)0xcbf29ce484222325ULL);
	assert_true(pgi_db_lock_key("a") == (int64_t)0xaf63dc4c8601ec8cULL);
	assert_true(pgi_db_lock_key("foobar") == (int64_t)0x85944171f73967e8ULL);
	assert_true(pgi_db_lock_key("payguard.singleton.load") !=
		    pgi_db_lock_key("payguard.singleton.prune"));
}

static void
test_advisory_locks(void **state)
{
	struct pg_db *a = open_clean(), *b = NULL;

	(void)state;
	assert_int_equal(pg_db_open(&b, url), 0);
	assert_int_equal(pg_db_try_lock(a, ""), PG_EINVAL);
	assert_int_equal(pg_db_lock_held(a, "test.one"), 0);
	assert_int_equal(pg_db_try_lock(a, "test.one"), 1);
	/* the holder asks again: granted, and not stacked (one unlock frees it) */
	assert_int_equal(pg_db_try_lock(a, "test.one"), 1);
	assert_int_equal(pg_db_lock_held(a, "test.one"), 1);
	if (!is_pg(a)) {
		/* one node: every lock is granted to every connection */
		assert_int_equal(pg_db_try_lock(b, "test.one"), 1);
		assert_int_equal(pg_db_unlock(a, "test.one"), 0);
		assert_int_equal(pg_db_lock_held(a, "test.one"), 0);
		pg_db_free(b);
		pg_db_free(a);
		return;
	}
	assert_int_equal(pg_db_try_lock(b, "test.one"), 0);
	assert_int_equal(pg_db_lock_held(b, "test.one"), 0);
	/* another name is another lock */
	assert_int_equal(pg_db_try_lock(b, "test.two"), 1);
	assert_int_equal(pg_db_try_lock(a, "test.two"), 0);
	assert_int_equal(pg_db_unlock(a, "test.one"), 0);
	assert_int_equal(pg_db_lock_held(a, "test.one"), 0);
	/* unlocking what one does not hold is harmless */
	assert_int_equal(pg_db_unlock(a, "test.one"), 0);
	assert_int_equal(pg_db_try_lock(b, "test.one"), 1);
	assert_int_equal(pg_db_try_lock(a, "test.one"), 0);
	/* the holder's connection closes: its locks go with its session */
	pg_db_free(b);
	usleep(100000);
	assert_int_equal(pg_db_try_lock(a, "test.one"), 1);
	assert_int_equal(pg_db_try_lock(a, "test.two"), 1);
	pg_db_free(a);
}

static void
test_lock_lost_connection(void **state)
{
	struct pg_db *a = open_clean(), *b = NULL;
	int rc;

	(void)state;
	if (!is_pg(a)) {
		pg_db_free(a);
		return; /* a file has no session to lose */
	}
	assert_int_equal(pg_db_open(&b, url), 0);
	assert_int_equal(pg_db_try_lock(a, "test.lost"), 1);
	terminate(backend_pid(a));
	/* the other node can take it at once */
	assert_int_equal(pg_db_try_lock(b, "test.lost"), 1);
	/* the old holder learns it lost it: an error, then "not held" */
	rc = pg_db_lock_held(a, "test.lost");
	assert_true(rc == PG_ECONNLOST || rc == 0);
	assert_int_equal(pg_db_lock_held(a, "test.lost"), 0);
	assert_int_equal(pg_db_try_lock(a, "test.lost"), 0);
	pg_db_free(b);
	pg_db_free(a);
}

static void
test_notify(void **state)
{
	struct pg_db *a = open_clean(), *b = NULL;
	char ch[64], pay[64];

	(void)state;
	assert_int_equal(pg_db_open(&b, url), 0);
	assert_int_equal(pg_db_listen(a, "test chan"), 0);
	assert_int_equal(pg_db_listen(a, "test chan"), 0);
	assert_int_equal(pg_db_listen(a, ""), PG_EINVAL);
	if (!is_pg(a)) {
		struct timespec t0, t1;

		assert_int_equal(pg_db_notify(b, "test chan", "x"), 0);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		assert_int_equal(pg_db_wait_notify(a, 150, ch, sizeof(ch), pay, sizeof(pay)), 0);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 >=
			    140);
		pg_db_free(b);
		pg_db_free(a);
		return;
	}
	assert_int_equal(pg_db_wait_notify(a, 50, ch, sizeof(ch), pay, sizeof(pay)), 0);
	assert_int_equal(pg_db_notify(b, "test chan", "cells 7"), 0);
	assert_int_equal(pg_db_notify(b, "other", "not for a"), 0);
	assert_int_equal(pg_db_wait_notify(a, 5000, ch, sizeof(ch), pay, sizeof(pay)), 1);
	assert_string_equal(ch, "test chan");
	assert_string_equal(pay, "cells 7");
	assert_int_equal(pg_db_wait_notify(a, 50, ch, sizeof(ch), pay, sizeof(pay)), 0);
	/* inside a transaction it is delivered at commit, not before */
	assert_int_equal(pg_db_begin(b), 0);
	assert_int_equal(pg_db_notify(b, "test chan", "late"), 0);
	assert_int_equal(pg_db_wait_notify(a, 100, ch, sizeof(ch), pay, sizeof(pay)), 0);
	assert_int_equal(pg_db_commit(b), 0);
	assert_int_equal(pg_db_wait_notify(a, 5000, ch, sizeof(ch), pay, sizeof(pay)), 1);
	assert_string_equal(pay, "late");
	/* a notification that arrived while the listener ran a query is kept */
	assert_int_equal(pg_db_notify(b, "test chan", "queued"), 0);
	usleep(100000);
	(void)backend_pid(a);
	assert_int_equal(pg_db_wait_notify(a, 0, ch, sizeof(ch), pay, sizeof(pay)), 1);
	assert_string_equal(pay, "queued");
	/* truncated to the caller's sizes */
	assert_int_equal(pg_db_notify(b, "test chan", "0123456789"), 0);
	assert_int_equal(pg_db_wait_notify(a, 5000, ch, 3, pay, 5), 1);
	assert_string_equal(ch, "te");
	assert_string_equal(pay, "0123");
	/* a lost session is reported once; then it listens again by itself */
	terminate(backend_pid(a));
	assert_int_equal(pg_db_wait_notify(a, 1000, ch, sizeof(ch), pay, sizeof(pay)),
			 PG_ECONNLOST);
	assert_int_equal(pg_db_wait_notify(a, 50, ch, sizeof(ch), pay, sizeof(pay)), 0);
	assert_int_equal(pg_db_notify(b, "test chan", "after"), 0);
	assert_int_equal(pg_db_wait_notify(a, 5000, ch, sizeof(ch), pay, sizeof(pay)), 1);
	assert_string_equal(pay, "after");
	pg_db_free(b);
	pg_db_free(a);
}

/* pg_db_name's text: no password of any spelling reaches a log. */
static void
test_redact(void **state)
{
	static const char *const cases[][2] = {
	    {"postgresql://u:s3cret@h:5432/db", "postgresql://u@h:5432/db"},
	    {"postgres://u:s3cret@/db?host=/tmp", "postgres://u@/db?host=/tmp"},
	    {"postgresql:///db?host=/tmp&password=s3cret&user=u",
	     "postgresql:///db?host=/tmp&password=***&user=u"},
	    {"postgresql://u@h/db?sslmode=x", "postgresql://u@h/db?sslmode=x"},
	    {"postgresql://h/db?application_name=a@b", "postgresql://h/db?application_name=a@b"},
	    {"host=/tmp password=s3cret dbname=x", "host=/tmp password=*** dbname=x"},
	    {"host=/tmp password = 's3 cr\\'et' dbname=x", "host=/tmp password = *** dbname=x"},
	    {"PASSWORD=s3cret host=/tmp", "PASSWORD=*** host=/tmp"},
	    {"host=/tmp mypassword=kept", "host=/tmp mypassword=kept"},
	    {"/var/lib/payguard/payguard.db", "/var/lib/payguard/payguard.db"},
	    /* a "://" only in the masked value (found by fuzz/core_db_redact.c) */
	    {"host=/tmp password=s3://x@y:z", "host=/tmp password=***"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *r = pgi_db_redact(cases[i][0]);

		assert_non_null(r);
		assert_string_equal(r, cases[i][1]);
		assert_null(strstr(r, "s3"));
		free(r);
	}
}

static int64_t
count_bulk(struct pg_db *db)
{
	struct pg_db_stmt *s;
	int64_t n;

	assert_int_equal(pg_db_prepare(db, "SELECT count(*) FROM t_bulk", &s), 0);
	assert_int_equal(pg_db_step(s), 1);
	n = pg_db_column_int64(s, 0);
	pg_db_reset(s);
	return n;
}

/* Row r of the bulk test: key, a 64-bit and a 32-bit integer, a real, a text or NULL. */
static void
add_bulk_row(struct pg_db_bulk *b, int r)
{
	char key[16];

	snprintf(key, sizeof(key), "b%05d", r);
	assert_int_equal(pg_db_bulk_text(b, key, -1), 0);
	assert_int_equal(pg_db_bulk_int64(b, INT64_MIN + r), 0);
	assert_int_equal(pg_db_bulk_int64(b, r % 2 ? INT32_MAX - r : INT32_MIN + r), 0);
	assert_int_equal(pg_db_bulk_double(b, 0.1 * r + 1e300 * (r == 7)), 0);
	if (r % 3 == 0)
		assert_int_equal(pg_db_bulk_null(b), 0);
	else /* quotes, a backslash, UTF-8 and a length that cuts the text */
		assert_int_equal(pg_db_bulk_text(b, "it's \"q\" \\ \xc3\xa9t\xc3\xa9 cut", 16), 0);
}

static void
test_bulk_insert(void **state)
{
	struct pg_db *db = open_clean();
	struct pg_db_bulk *b, *again;
	struct pg_db_stmt *s;
	const int n = 3000;

	(void)state;
	assert_int_equal(pg_db_exec(db, "CREATE TABLE t_bulk(k TEXT PRIMARY KEY, i BIGINT,"
					" s INTEGER, d DOUBLE PRECISION, t TEXT,"
					" dflt TEXT DEFAULT 'x')"),
			 0);
	assert_int_equal(pg_db_bulk_open(db, "t_bulk", "k,i,s,d,t", &b), 0);
	assert_int_equal(pg_db_bulk_write(b), 0); /* nothing added: nothing written */
	for (int r = 0; r < n; r++)
		add_bulk_row(b, r);
	assert_int_equal(pg_db_bulk_rows(b), (size_t)n);
	assert_int_equal(pg_db_bulk_write(b), n);
	assert_int_equal(pg_db_bulk_rows(b), 0);
	assert_int_equal(count_bulk(db), n);
	/* every value back exactly, the column left out at its default */
	assert_int_equal(pg_db_prepare(db, "SELECT k, i, s, d, t, dflt FROM t_bulk ORDER BY k", &s),
			 0);
	for (int r = 0; r < n; r++) {
		char key[16];

		snprintf(key, sizeof(key), "b%05d", r);
		assert_int_equal(pg_db_step(s), 1);
		assert_string_equal(pg_db_column_text(s, 0), key);
		assert_int_equal(pg_db_column_int64(s, 1), INT64_MIN + r);
		assert_int_equal(pg_db_column_int64(s, 2), r % 2 ? INT32_MAX - r : INT32_MIN + r);
		assert_true(pg_db_column_double(s, 3) == 0.1 * r + 1e300 * (r == 7));
		assert_int_equal(pg_db_column_is_null(s, 4), r % 3 == 0);
		if (r % 3)
			assert_string_equal(pg_db_column_text(s, 4),
					    "it's \"q\" \\ \xc3\xa9t\xc3\xa9");
		assert_string_equal(pg_db_column_text(s, 5), "x");
	}
	assert_int_equal(pg_db_step(s), 0);
	/* one bulk per table and columns, like statements */
	assert_int_equal(pg_db_bulk_open(db, "t_bulk", "k,i,s,d,t", &again), 0);
	assert_ptr_equal(b, again);
	/* a row already there: the whole write refused, none of its rows stored */
	add_bulk_row(b, n);
	add_bulk_row(b, 5);
	assert_int_equal(pg_db_bulk_write(b), PG_EUNIQUE);
	assert_int_equal(count_bulk(db), n);
	/* the connection goes on; rows written in a transaction go with it */
	assert_int_equal(pg_db_begin(db), 0);
	add_bulk_row(b, n);
	assert_int_equal(pg_db_bulk_write(b), 1);
	assert_int_equal(pg_db_rollback(db), 0);
	assert_int_equal(count_bulk(db), n);
	assert_int_equal(pg_db_begin(db), 0);
	add_bulk_row(b, n);
	add_bulk_row(b, n + 1);
	assert_int_equal(pg_db_bulk_write(b), 2);
	assert_int_equal(pg_db_commit(db), 0);
	assert_int_equal(count_bulk(db), n + 2);
	/* an incomplete row is refused and the buffer emptied */
	add_bulk_row(b, n + 2);
	assert_int_equal(pg_db_bulk_text(b, "extra", -1), 0);
	assert_int_equal(pg_db_bulk_write(b), PG_EINVAL);
	assert_int_equal(pg_db_bulk_rows(b), 0);
	assert_int_equal(count_bulk(db), n + 2);
	/* PostgreSQL sends each value in its column's binary form: a 64-bit
	 * value that an INTEGER column cannot hold is refused before sending,
	 * text into a number column too (SQLite stores what it is given) */
	if (pg_db_engine_of(db) == PG_DB_POSTGRES) {
		assert_int_equal(pg_db_bulk_text(b, "big", -1), 0);
		assert_int_equal(pg_db_bulk_int64(b, 1), 0);
		assert_int_equal(pg_db_bulk_int64(b, (int64_t)1 << 40), 0);
		assert_int_equal(pg_db_bulk_double(b, 1), 0);
		assert_int_equal(pg_db_bulk_null(b), 0);
		assert_int_equal(pg_db_bulk_write(b), PG_ERANGE);
		assert_int_equal(pg_db_bulk_text(b, "txt", -1), 0);
		assert_int_equal(pg_db_bulk_text(b, "12", -1), 0);
		assert_int_equal(pg_db_bulk_int64(b, 1), 0);
		assert_int_equal(pg_db_bulk_double(b, 1), 0);
		assert_int_equal(pg_db_bulk_null(b), 0);
		assert_int_equal(pg_db_bulk_write(b), PG_EINVAL);
		assert_int_equal(count_bulk(db), n + 2);
	}
	/* a write larger than one COPY message (1 MiB): sent in pieces, stored whole */
	{
		size_t big = (3u << 20) + 7;
		char *txt = malloc(big);

		assert_non_null(txt);
		for (size_t k = 0; k < big; k++)
			txt[k] = (char)('a' + k % 26);
		assert_int_equal(pg_db_bulk_text(b, "big", -1), 0);
		assert_int_equal(pg_db_bulk_null(b), 0);
		assert_int_equal(pg_db_bulk_null(b), 0);
		assert_int_equal(pg_db_bulk_null(b), 0);
		assert_int_equal(pg_db_bulk_text(b, txt, (long)big), 0);
		assert_int_equal(pg_db_bulk_write(b), 1);
		assert_int_equal(pg_db_prepare(db, "SELECT t FROM t_bulk WHERE k = 'big'", &s), 0);
		assert_int_equal(pg_db_step(s), 1);
		assert_int_equal(strlen(pg_db_column_text(s, 0)), big);
		assert_memory_equal(pg_db_column_text(s, 0), txt, big);
		pg_db_reset(s);
		free(txt);
	}
	assert_int_equal(count_bulk(db), n + 3);
	/* names go into SQL: only plain identifiers; a table that is not there fails */
	assert_int_equal(pg_db_bulk_open(db, "t_bulk; DROP TABLE t_bulk", "k", &again), PG_EINVAL);
	assert_int_equal(pg_db_bulk_open(db, "t_bulk", "k) --", &again), PG_EINVAL);
	assert_int_equal(pg_db_bulk_open(db, "t_none", "k", &again), 0);
	assert_int_equal(pg_db_bulk_text(again, "a", -1), 0);
	assert_true(pg_db_bulk_write(again) < 0);
	assert_int_equal(count_bulk(db), n + 3);
	pg_db_free(db);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_types_round_trip),
	    cmocka_unit_test(test_placeholders_and_cache),
	    cmocka_unit_test(test_unique_and_errors),
	    cmocka_unit_test(test_transact_retry),
	    cmocka_unit_test(test_migrations),
	    cmocka_unit_test(test_connection_lost),
	    cmocka_unit_test(test_lock_key_stable),
	    cmocka_unit_test(test_advisory_locks),
	    cmocka_unit_test(test_lock_lost_connection),
	    cmocka_unit_test(test_notify),
	    cmocka_unit_test(test_redact),
	    cmocka_unit_test(test_bulk_insert),
	};
	char dir[] = "/tmp/pg-test-db-XXXXXX";
	int rc;

	if (argc == 3 && strcmp(argv[1], "--postgres-url-file") == 0) {
		FILE *f = fopen(argv[2], "r");

		if (!f || !fgets(url, sizeof(url), f)) {
			fprintf(stderr, "test_db: cannot read the PostgreSQL URL from %s\n",
				argv[2]);
			return 1;
		}
		fclose(f);
		url[strcspn(url, "\n")] = 0;
		cmocka_set_test_filter(NULL);
		return cmocka_run_group_tests_name("db_postgres", tests, NULL, NULL);
	}
	if (!mkdtemp(dir))
		return 1;
	snprintf(url, sizeof(url), "sqlite:%s/t.db", dir);
	rc = cmocka_run_group_tests_name("db_sqlite", tests, NULL, NULL);
	snprintf(url, sizeof(url), "rm -rf '%s'", dir);
	if (system(url) != 0)
		rc = 1;
	return rc;
}
