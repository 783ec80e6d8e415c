/*
 * The supervisor's pos_txn retention (pgi_serve_retention in
 * src/serve/state.c, issue 14): on PostgreSQL it drops whole day partitions
 * older than the days kept (and deletes stray old rows of the default
 * partition), never row by row in the day being written; on SQLite it keeps
 * the newest 100,000 rows and those an alert cites. Either way what goes is
 * counted in serve_pos_pruned first, so the /metrics totals stay the same.
 * Given --postgres-url-file FILE (the CTest fixture) it runs on a database
 * of its own in that server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/clock.h"
#include "payguard/db.h"
#include "pg_testdb.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/pos.h"
#include "payguard/store.h"
#include "serve_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DAY_MS 86400000LL

static char url[4096];
static int on_postgres;

static int64_t
count(struct pg_db *db, const char *sql)
{
	struct pg_db_stmt *q = NULL;
	int64_t n = -1;

	assert_int_equal(pg_db_prepare(db, sql, &q), 0);
	if (pg_db_step(q) == 1)
		n = pg_db_column_int64(q, 0);
	pg_db_reset(q);
	return n;
}

/* What /metrics reports: stored rows plus those retention counted away. */
static int64_t
total(struct pg_db *db, const char *decision)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
		 "SELECT (SELECT count(*) FROM pos_txn WHERE decision='%s') +"
		 " (SELECT coalesce(sum(n), 0) FROM serve_pos_pruned WHERE decision='%s')",
		 decision, decision);
	return count(db, sql);
}

static void
add_rows(struct pg_db *db, int64_t ts, const char *decision, int n, int64_t alert)
{
	struct pg_db_stmt *q = NULL;
	static int stan;

	assert_int_equal(
	    pg_db_prepare(db,
			  "INSERT INTO pos_txn(ts, tid, stan, f7, mti, decision, rc, "
			  "alert_id) VALUES(?, 'T0000001', ?, '1125120000', '0200', ?, "
			  "'00', ?)",
			  &q),
	    0);
	for (int i = 0; i < n; i++) {
		char s[16];

		snprintf(s, sizeof(s), "%06d", ++stan % 1000000);
		pg_db_bind_int64(q, 1, ts + i);
		pg_db_bind_text(q, 2, s, -1);
		pg_db_bind_text(q, 3, decision, -1);
		if (alert)
			pg_db_bind_int64(q, 4, alert);
		else
			pg_db_bind_null(q, 4);
		assert_int_equal(pg_db_step(q), 0);
		pg_db_reset(q);
	}
}

static void
open_store(struct pg_store *st)
{
	assert_int_equal(pg_store_open(st, url), 0);
	assert_int_equal(pg_pos_migrate(st), 0);
	assert_int_equal(pgi_serve_migrate(st), 0);
	assert_int_equal(pg_db_exec(st->pdb, "DELETE FROM pos_txn"), 0);
	assert_int_equal(pg_db_exec(st->pdb, "DELETE FROM serve_pos_pruned"), 0);
}

static void
test_postgres_drops_days(void **state)
{
	struct pg_store st = {0};
	int64_t now = pg_wall_ms(), today = now / DAY_MS, old = (today - 10) * DAY_MS;
	char name[32], sql[160];
	time_t t = (time_t)((today - 10) * 86400);
	struct tm tm;

	(void)state;
	if (!on_postgres)
		skip();
	open_store(&st);
	/* an old day with a partition of its own, today's, and a stray old row */
	assert_int_equal(pg_pos_partitions_ensure(&st, old, 0), 0);
	assert_int_equal(pg_pos_partitions_ensure(&st, now, 0), 0);
	add_rows(st.pdb, old + 1000, "in_place", 3, 0);
	add_rows(st.pdb, old + 5000, "moved", 2, 0);
	add_rows(st.pdb, (today - 20) * DAY_MS, "in_place", 1, 0);
	add_rows(st.pdb, now - 1000, "in_place", 4, 0);
	gmtime_r(&t, &tm);
	snprintf(name, sizeof(name), "pos_txn_%04d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", name);
	assert_int_equal(count(st.pdb, sql), 5);
	assert_int_equal(count(st.pdb, "SELECT count(*) FROM pos_txn_default"), 1);

	assert_int_equal(pgi_serve_retention(&st, now, 5), 0);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_class WHERE relname = '%s'", name);
	assert_int_equal(count(st.pdb, sql), 0); /* the old day went as a whole table */
	assert_int_equal(count(st.pdb, "SELECT count(*) FROM pos_txn"), 4);
	assert_int_equal(count(st.pdb, "SELECT count(*) FROM pos_txn_default"), 0);
	assert_int_equal(total(st.pdb, "in_place"), 8);
	assert_int_equal(total(st.pdb, "moved"), 2);
	assert_int_equal(count(st.pdb, "SELECT n FROM serve_pos_pruned WHERE decision='in_place'"),
			 4);

	/* nothing older left: a second pass changes nothing and counts nothing twice */
	assert_int_equal(pgi_serve_retention(&st, now, 5), 0);
	assert_int_equal(total(st.pdb, "in_place"), 8);
	assert_int_equal(total(st.pdb, "moved"), 2);
	assert_int_equal(count(st.pdb, "SELECT count(*) FROM pos_txn"), 4);
	pg_store_close(&st);
}

static void
test_sqlite_keeps_newest(void **state)
{
	struct pg_store st = {0};
	int64_t now = pg_wall_ms();

	(void)state;
	if (on_postgres)
		skip();
	open_store(&st);
	assert_int_equal(pg_db_begin(st.pdb), 0);
	assert_int_equal(pg_db_exec(st.pdb, "DELETE FROM pos_alerts"), 0);
	assert_int_equal(pg_db_exec(st.pdb, "INSERT INTO pos_alerts(id, tid, state, reason) VALUES"
					    "(7, 'T0000001', 'open', 'moved')"),
			 0);
	add_rows(st.pdb, now - 500000, "in_place", 2, 0);
	add_rows(st.pdb, now - 400000, "moved", 1, 7); /* cited by an alert: kept */
	add_rows(st.pdb, now - 300000, "moved", 1, 0);
	add_rows(st.pdb, now - 200000, "in_place", 100000, 0);
	assert_int_equal(pg_db_commit(st.pdb), 0);

	assert_int_equal(pgi_serve_retention(&st, now, 5), 0);
	assert_int_equal(count(st.pdb, "SELECT count(*) FROM pos_txn"), 100001);
	assert_int_equal(count(st.pdb, "SELECT count(*) FROM pos_txn WHERE decision='moved'"), 1);
	assert_int_equal(total(st.pdb, "in_place"), 100002);
	assert_int_equal(total(st.pdb, "moved"), 2);
	assert_int_equal(pgi_serve_retention(&st, now, 5), 0);
	assert_int_equal(total(st.pdb, "in_place"), 100002);
	pg_store_close(&st);
}

static int
postgres_db(const char *url_file)
{
	return pg_testdb_make(url_file, "serve_retention_unit", url, sizeof(url));
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest pg_tests[] = {cmocka_unit_test(test_postgres_drops_days)};
	const struct CMUnitTest lite_tests[] = {cmocka_unit_test(test_sqlite_keeps_newest)};
	char dir[] = "/tmp/pg-test-retention-XXXXXX", cmd[64];
	int rc;

	if (argc == 3 && strcmp(argv[1], "--postgres-url-file") == 0) {
		if (postgres_db(argv[2]) < 0)
			return 1;
		on_postgres = 1;
		return cmocka_run_group_tests_name("retention_postgres", pg_tests, NULL, NULL);
	}
	if (!mkdtemp(dir))
		return 1;
	snprintf(url, sizeof(url), "sqlite:%s/t.db", dir);
	rc = cmocka_run_group_tests_name("retention_sqlite", lite_tests, NULL, NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		rc = 1;
	return rc;
}
