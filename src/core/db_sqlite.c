/*
 * The store API's SQLite driver (db_int.h): one file, WAL, foreign keys, a
 * busy timeout. The only file that calls sqlite3_*: store.c's SQLite
 * connection is opened here too (pgi_db_sqlite_open_store).
 */
#include "db_int.h"

#include "payguard/error.h"
#include "payguard/log.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

static int
fail(sqlite3 *h, int rc, const char *what)
{
	const char *msg = h ? sqlite3_errmsg(h) : sqlite3_errstr(rc);
	int ext = h ? sqlite3_extended_errcode(h) : rc;
	int code = PG_ESTORE;

	if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
		code = PG_EUNIQUE;
	else if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
		code = PG_EBUSY;
	return pg_error(code, "db", "%s: %s (sqlite %d)", what, msg, ext);
}

static int
sq_exec(struct pg_db *db, const char *sql)
{
	char *err = NULL;
	int rc = sqlite3_exec(db->drv, sql, NULL, NULL, &err);

	if (rc != SQLITE_OK) {
		rc = fail(db->drv, rc, "exec");
		sqlite3_free(err);
		return rc;
	}
	return 0;
}

static int
sq_open(struct pg_db *db, const char *path)
{
	sqlite3 *h = NULL;
	int rc;

	rc = pgi_store_check_path(path);
	if (rc < 0)
		return rc;
	rc = sqlite3_open_v2(
	    path, &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		rc = fail(h, rc, path);
		sqlite3_close_v2(h);
		return rc;
	}
	sqlite3_extended_result_codes(h, 1);
	sqlite3_busy_timeout(h, 10000);
	db->drv = h;
	rc = sq_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
			 "PRAGMA foreign_keys=ON;"
			 "CREATE TABLE IF NOT EXISTS pg_schema(area TEXT PRIMARY KEY,"
			 " version INTEGER NOT NULL);");
	if (rc < 0) {
		sqlite3_close_v2(h);
		db->drv = NULL;
	}
	return rc;
}

static void
sq_close(struct pg_db *db)
{
	if (!db->borrowed)
		sqlite3_close_v2(db->drv);
	db->drv = NULL;
}

static int
sq_prepare(struct pg_db *db, struct pg_db_stmt *s)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v3(db->drv, s->sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);

	if (rc != SQLITE_OK)
		return fail(db->drv, rc, "prepare");
	s->drv = st;
	return 0;
}

static void
sq_finalize(struct pg_db_stmt *s)
{
	sqlite3_finalize(s->drv);
	s->drv = NULL;
}

static int
bind_all(struct pg_db_stmt *s)
{
	sqlite3_stmt *st = s->drv;
	int rc = SQLITE_OK;

	for (int i = 1; i <= s->nparams && rc == SQLITE_OK; i++) {
		const struct pg_db_param *p = &s->par[i];

		switch (p->type) {
		case PG_DB_T_NULL:
			rc = sqlite3_bind_null(st, i);
			break;
		case PG_DB_T_INT64:
			rc = sqlite3_bind_int64(st, i, p->i);
			break;
		case PG_DB_T_DOUBLE:
			rc = sqlite3_bind_double(st, i, p->d);
			break;
		case PG_DB_T_TEXT:
			rc = sqlite3_bind_text(st, i, p->p, (int)p->len, SQLITE_STATIC);
			break;
		case PG_DB_T_BLOB:
			rc = sqlite3_bind_blob(st, i, p->len ? p->p : "", (int)p->len,
					       SQLITE_STATIC);
			break;
		}
	}
	return rc == SQLITE_OK ? 0 : fail(s->db->drv, rc, "bind");
}

static int
sq_step(struct pg_db_stmt *s)
{
	int rc;

	if (s->running == 1) {
		/* first step since the reset: hand over the bindings */
		rc = bind_all(s);
		if (rc < 0)
			return rc;
		s->running = 2;
	}
	rc = sqlite3_step(s->drv);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	rc = fail(s->db->drv, rc, "step");
	sqlite3_reset(s->drv);
	return rc;
}

static void
sq_reset(struct pg_db_stmt *s)
{
	sqlite3_reset(s->drv);
	sqlite3_clear_bindings(s->drv);
}

static int64_t
sq_changes(const struct pg_db_stmt *s)
{
	return sqlite3_changes64(s->db->drv);
}

static int
sq_column_count(const struct pg_db_stmt *s)
{
	return sqlite3_data_count(s->drv);
}

static int
sq_column_is_null(const struct pg_db_stmt *s, int i)
{
	return sqlite3_column_type(s->drv, i) == SQLITE_NULL;
}

static int64_t
sq_column_int64(const struct pg_db_stmt *s, int i)
{
	return sqlite3_column_int64(s->drv, i);
}

static double
sq_column_double(const struct pg_db_stmt *s, int i)
{
	return sqlite3_column_double(s->drv, i);
}

static const char *
sq_column_text(const struct pg_db_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s->drv, i);

	return t ? (const char *)t : "";
}

static const void *
sq_column_blob(const struct pg_db_stmt *s, int i, size_t *len)
{
	const void *b = sqlite3_column_blob(s->drv, i);

	*len = (size_t)sqlite3_column_bytes(s->drv, i);
	return b ? b : "";
}

static enum pg_db_col
sq_column_type(const struct pg_db_stmt *s, int i)
{
	switch (sqlite3_column_type(s->drv, i)) {
	case SQLITE_INTEGER:
		return PG_DB_COL_INT64;
	case SQLITE_FLOAT:
		return PG_DB_COL_DOUBLE;
	case SQLITE_BLOB:
		return PG_DB_COL_BLOB;
	case SQLITE_NULL:
		return PG_DB_COL_NULL;
	default:
		return PG_DB_COL_TEXT;
	}
}

static const char *
sq_column_name(const struct pg_db_stmt *s, int i)
{
	const char *n = sqlite3_column_name(s->drv, i);

	return n ? n : "";
}

const struct pg_db_ops pgi_db_sqlite_ops;

int
pgi_db_sqlite_borrow(struct pg_db **out, void *handle, const char *name)
{
	struct pg_db *db = calloc(1, sizeof(*db));

	*out = NULL;
	if (!db || !(db->name = strdup(name))) {
		free(db);
		return PG_ENOMEM;
	}
	db->ops = &pgi_db_sqlite_ops;
	db->drv = handle;
	db->borrowed = 1;
	*out = db;
	return 0;
}

int
pgi_db_sqlite_fail(void *handle, int rc, const char *what)
{
	sqlite3 *h = handle;
	const char *msg = h ? sqlite3_errmsg(h) : sqlite3_errstr(rc);
	int code =
	    ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) ? PG_EBUSY : PG_ESTORE;

	return pg_error(code, "store", "%s: %s (sqlite %d)", what, msg, rc);
}

int
pgi_db_sqlite_open_store(struct pg_db **out, const char *path, int mutex_flags, void **handle)
{
	sqlite3 *h = NULL;
	int rc;

	*out = NULL;
	*handle = NULL;
	rc = sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | mutex_flags,
			     NULL);
	if (rc != SQLITE_OK) {
		rc = pgi_db_sqlite_fail(h, rc, path);
		sqlite3_close_v2(h);
		return rc;
	}
	sqlite3_busy_timeout(h, 10000);
	rc = pgi_db_sqlite_borrow(out, h, path);
	if (rc < 0) {
		sqlite3_close_v2(h);
		return rc;
	}
	(*out)->borrowed = 0; /* pg_db_free closes it */
	rc = sq_exec(*out, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
			   "PRAGMA foreign_keys=ON;"
			   "CREATE TABLE IF NOT EXISTS pg_schema(area TEXT PRIMARY KEY,"
			   " version INTEGER NOT NULL);");
	if (rc < 0) {
		pg_db_free(*out);
		*out = NULL;
		return rc;
	}
	*handle = h;
	return 0;
}

int
pg_db_checkpointer_open(struct pg_db **out, const char *url)
{
	sqlite3 *h = NULL;
	int rc;

	*out = NULL;
	if (pg_db_url_is_postgres(url))
		return pg_error(PG_ENOTSUP, "db", "WAL checkpoints are SQLite's");
	if (strncmp(url, "sqlite:", 7) == 0)
		url += 7;
	/* no SQLITE_OPEN_CREATE: a store moved away is not made again, empty */
	rc = sqlite3_open_v2(url, &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		rc = fail(h, rc, url);
		sqlite3_close_v2(h);
		return rc;
	}
	sqlite3_busy_timeout(h, 1000);
	rc = pgi_db_sqlite_borrow(out, h, url);
	if (rc < 0) {
		sqlite3_close_v2(h);
		return rc;
	}
	(*out)->borrowed = 0; /* pg_db_free closes it */
	return 0;
}

int
pg_db_checkpoint(struct pg_db *db)
{
	int logn = 0, done = 0, rc;

	if (db->ops->engine != PG_DB_SQLITE)
		return 0;
	rc = sqlite3_wal_checkpoint_v2(db->drv, NULL, SQLITE_CHECKPOINT_PASSIVE, &logn, &done);
	return rc == SQLITE_OK ? 0 : fail(db->drv, rc, "checkpoint");
}

const struct pg_db_ops pgi_db_sqlite_ops = {
    .engine = PG_DB_SQLITE,
    .open = sq_open,
    .close = sq_close,
    .exec = sq_exec,
    .prepare = sq_prepare,
    .finalize = sq_finalize,
    .step = sq_step,
    .reset = sq_reset,
    .changes = sq_changes,
    .column_count = sq_column_count,
    .column_is_null = sq_column_is_null,
    .column_int64 = sq_column_int64,
    .column_double = sq_column_double,
    .column_text = sq_column_text,
    .column_blob = sq_column_blob,
    .column_type = sq_column_type,
    .column_name = sq_column_name,
    /* takes the write lock at once: no deadlock between two upgrading readers */
    .begin_sql = "BEGIN IMMEDIATE",
    .migrate_lock_sql = NULL,
};
