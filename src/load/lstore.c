/*
 * Samples in the shared SQLite store (seed 3's "monitored data"): one table
 * keyed by (vm, timestamp), a bounded window per VM, and the store as a trace
 * source ("store:[DB]") so `load estimate` can read what `load collect` and
 * `load import` wrote.
 */
#include "load_int.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/db.h"
#include "payguard/store.h"

#include <stdlib.h>
#include <string.h>

/*
 * BIGINT and DOUBLE PRECISION are read the same by both engines (SQLite's
 * INTEGER and REAL affinities); WITHOUT ROWID is SQLite's own.
 */
static const struct pg_db_migration load_migrations[] = {
    {1, NULL,
     "CREATE TABLE load_samples(vm TEXT NOT NULL, ts_ms INTEGER NOT NULL,"
     " cpu REAL NOT NULL, mem REAL NOT NULL, disk_rd REAL NOT NULL, disk_wr REAL NOT NULL,"
     " net_rx REAL NOT NULL, net_tx REAL NOT NULL, PRIMARY KEY(vm, ts_ms)) WITHOUT ROWID;",
     "CREATE TABLE load_samples(vm TEXT NOT NULL, ts_ms BIGINT NOT NULL,"
     " cpu DOUBLE PRECISION NOT NULL, mem DOUBLE PRECISION NOT NULL,"
     " disk_rd DOUBLE PRECISION NOT NULL, disk_wr DOUBLE PRECISION NOT NULL,"
     " net_rx DOUBLE PRECISION NOT NULL, net_tx DOUBLE PRECISION NOT NULL,"
     " PRIMARY KEY(vm, ts_ms));"},
};

int
pg_load_db_migrate(struct pg_db *db)
{
	return pg_db_migrate(db, "load", load_migrations,
			     sizeof(load_migrations) / sizeof(load_migrations[0]));
}

int
pg_load_store_migrate(struct pg_store *st)
{
	return pg_load_db_migrate(st->pdb);
}

int
pg_load_db_put(struct pg_db *db, const char *vm, const struct pg_load_sample *s, size_t n,
	       size_t window)
{
	struct pg_db_stmt *q;
	int rc = 0;

	for (size_t i = 0; i < n && rc >= 0; i++) {
		rc = pg_db_prepare(db,
				   "INSERT INTO load_samples(vm, ts_ms, cpu, mem, disk_rd, disk_wr,"
				   " net_rx, net_tx) VALUES(?, ?, ?, ?, ?, ?, ?, ?)"
				   " ON CONFLICT(vm, ts_ms) DO UPDATE SET cpu = excluded.cpu,"
				   " mem = excluded.mem, disk_rd = excluded.disk_rd,"
				   " disk_wr = excluded.disk_wr, net_rx = excluded.net_rx,"
				   " net_tx = excluded.net_tx",
				   &q);
		if (rc < 0)
			return rc;
		pg_db_bind_text(q, 1, vm, -1);
		pg_db_bind_int64(q, 2, s[i].ts_ms);
		for (int j = 0; j < PG_LOAD_NMETRICS; j++)
			pg_db_bind_double(q, 3 + j, s[i].v[j]);
		rc = pg_db_step(q);
		pg_db_reset(q);
	}
	if (rc < 0 || window == 0)
		return rc < 0 ? rc : 0;
	/* Bounded window: keep the newest `window` samples of this VM. */
	rc = pg_db_prepare(db,
			   "DELETE FROM load_samples WHERE vm = ? AND ts_ms <= (SELECT ts_ms"
			   " FROM load_samples WHERE vm = ? ORDER BY ts_ms DESC LIMIT 1 OFFSET ?)",
			   &q);
	if (rc < 0)
		return rc;
	pg_db_bind_text(q, 1, vm, -1);
	pg_db_bind_text(q, 2, vm, -1);
	pg_db_bind_int64(q, 3, (int64_t)window);
	rc = pg_db_step(q);
	pg_db_reset(q);
	return rc < 0 ? rc : 0;
}

int
pg_load_store_put(struct pg_store *st, const char *vm, const struct pg_load_sample *s, size_t n,
		  size_t window)
{
	return pg_load_db_put(st->pdb, vm, s, n, window);
}

/* ---- the store as a trace source ---- */

struct store_src {
	struct pg_store st;
	struct pg_db *db; /* st's connection through the store API */
	struct pg_db_stmt *q;
	int done, have_row;
};

static int
store_open(const char *arg, void **state)
{
	struct store_src *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return pg_error(PG_ENOMEM, "load", "store source");
	/* a path, sqlite:PATH or PostgreSQL URL; without one, the data directory's */
	rc = pg_store_open_default(&s->st, arg && *arg ? arg : NULL);
	s->db = s->st.pdb;
	if (rc < 0)
		goto fail;
	rc = pg_load_db_migrate(s->db);
	if (rc < 0)
		goto fail;
	rc = pg_db_prepare(s->db,
			   "SELECT vm, ts_ms, cpu, mem, disk_rd, disk_wr, net_rx, net_tx FROM "
			   "load_samples ORDER BY vm, ts_ms",
			   &s->q);
	if (rc < 0)
		goto fail;
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
			rc = pg_db_step(s->q);
			if (rc == 0) {
				s->done = 1;
				break;
			}
			if (rc < 0)
				return rc;
			s->have_row = 1;
		}
		vm = pg_db_column_text(s->q, 0);
		if (out->vm[0] && strcmp(vm, out->vm) != 0)
			break;
		if (!out->vm[0])
			pgi_load_set_name(out->vm, vm, strlen(vm));
		x.ts_ms = pg_db_column_int64(s->q, 1);
		for (int j = 0; j < PG_LOAD_NMETRICS; j++)
			x.v[j] = pg_db_column_double(s->q, 2 + j);
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
	pg_db_reset(s->q);
	pg_store_close(&s->st);
	free(s);
}

const struct pg_load_ops pg_load_store_ops = {
    .name = "store",
    .help = "store:[DB|URL]   samples in a store: a SQLite path, sqlite:PATH or postgresql://..."
	    " (default: $PAYGUARD_STORE, else the data directory's payguard.db)",
    .open = store_open,
    .next = store_next,
    .close = store_close,
};
