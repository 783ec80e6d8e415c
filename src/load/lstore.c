/*
 * Samples in the shared SQLite store (seed 3's "monitored data"): one table
 * keyed by (vm, timestamp), a bounded window per VM, and the store as a trace
 * source ("store:[DB]") so `load estimate` can read what `load collect` and
 * `load import` wrote.
 */
#include "load_int.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/store.h"

#include <stdlib.h>
#include <string.h>

static const struct pg_migration load_migrations[] = {
    {1, "CREATE TABLE load_samples(vm TEXT NOT NULL, ts_ms INTEGER NOT NULL,"
	" cpu REAL NOT NULL, mem REAL NOT NULL, disk_rd REAL NOT NULL, disk_wr REAL NOT NULL,"
	" net_rx REAL NOT NULL, net_tx REAL NOT NULL, PRIMARY KEY(vm, ts_ms)) WITHOUT ROWID;"},
};

int
pg_load_store_migrate(struct pg_store *st)
{
	return pg_store_migrate(st, "load", load_migrations,
				sizeof(load_migrations) / sizeof(load_migrations[0]));
}

int
pg_load_store_put(struct pg_store *st, const char *vm, const struct pg_load_sample *s, size_t n,
		  size_t window)
{
	sqlite3_stmt *ins = NULL, *trim = NULL;
	int rc = 0, src;

	src = sqlite3_prepare_v2(
	    st->db, "INSERT OR REPLACE INTO load_samples VALUES(?,?,?,?,?,?,?,?)", -1, &ins, NULL);
	if (src != SQLITE_OK)
		return pg_store_fail(st, src, "prepare insert");
	for (size_t i = 0; i < n; i++) {
		sqlite3_bind_text(ins, 1, vm, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(ins, 2, s[i].ts_ms);
		for (int j = 0; j < PG_LOAD_NMETRICS; j++)
			sqlite3_bind_double(ins, 3 + j, s[i].v[j]);
		src = sqlite3_step(ins);
		sqlite3_reset(ins);
		if (src != SQLITE_DONE) {
			rc = pg_store_fail(st, src, "insert sample");
			goto out;
		}
	}
	if (window == 0)
		goto out;
	/* Bounded window: keep the newest `window` samples of this VM. */
	src = sqlite3_prepare_v2(st->db,
				 "DELETE FROM load_samples WHERE vm = ?1 AND ts_ms <= (SELECT ts_ms"
				 " FROM load_samples WHERE vm = ?1 ORDER BY ts_ms DESC LIMIT 1"
				 " OFFSET ?2)",
				 -1, &trim, NULL);
	if (src != SQLITE_OK) {
		rc = pg_store_fail(st, src, "prepare trim");
		goto out;
	}
	sqlite3_bind_text(trim, 1, vm, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(trim, 2, (sqlite3_int64)window);
	src = sqlite3_step(trim);
	if (src != SQLITE_DONE)
		rc = pg_store_fail(st, src, "trim window");
out:
	sqlite3_finalize(ins);
	sqlite3_finalize(trim);
	return rc;
}

/* ---- the store as a trace source ---- */

struct store_src {
	struct pg_store st;
	sqlite3_stmt *q;
	int done, have_row;
};

static int
store_open(const char *arg, void **state)
{
	struct store_src *s = calloc(1, sizeof(*s));
	int rc, src;

	if (!s)
		return pg_error(PG_ENOMEM, "load", "store source");
	rc = pg_store_open_default(&s->st, arg && *arg ? arg : NULL);
	if (rc < 0)
		goto fail;
	rc = pg_load_store_migrate(&s->st);
	if (rc < 0)
		goto fail;
	src =
	    sqlite3_prepare_v2(s->st.db,
			       "SELECT vm, ts_ms, cpu, mem, disk_rd, disk_wr, net_rx, net_tx FROM "
			       "load_samples ORDER BY vm, ts_ms",
			       -1, &s->q, NULL);
	if (src != SQLITE_OK) {
		rc = pg_store_fail(&s->st, src, "prepare select");
		goto fail;
	}
	*state = s;
	return 0;
fail:
	pg_store_close(&s->st);
	free(s);
	return rc;
}

static int
store_next(void *state, struct pg_load_series *out)
{
	struct store_src *s = state;
	int rc;

	pg_load_series_reset(out);
	for (;;) {
		struct pg_load_sample x;
		const char *vm;

		if (!s->have_row) {
			if (s->done)
				break;
			rc = sqlite3_step(s->q);
			if (rc == SQLITE_DONE) {
				s->done = 1;
				break;
			}
			if (rc != SQLITE_ROW)
				return pg_store_fail(&s->st, rc, "select samples");
			s->have_row = 1;
		}
		vm = (const char *)sqlite3_column_text(s->q, 0);
		if (!vm)
			vm = "";
		if (out->vm[0] && strcmp(vm, out->vm) != 0)
			break;
		if (!out->vm[0])
			load_set_name(out->vm, vm, strlen(vm));
		x.ts_ms = sqlite3_column_int64(s->q, 1);
		for (int j = 0; j < PG_LOAD_NMETRICS; j++)
			x.v[j] = sqlite3_column_double(s->q, 2 + j);
		s->have_row = 0;
		rc = pg_load_series_push(out, &x);
		if (rc < 0)
			return rc;
	}
	return out->vm[0] ? 1 : 0;
}

static void
store_close(void *state)
{
	struct store_src *s = state;

	if (!s)
		return;
	sqlite3_finalize(s->q);
	pg_store_close(&s->st);
	free(s);
}

const struct pg_load_ops pg_load_store_ops = {
    .name = "store",
    .help = "store:[DB]       samples in the store (default: the data directory's payguard.db)",
    .open = store_open,
    .next = store_next,
    .close = store_close,
};
