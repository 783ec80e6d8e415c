/* SQLite store helper: open (refusing a store others can read or replace),
 * per-area migrations, transactions, error mapping. */
#include "payguard/store.h"
#include "db_int.h"
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/log.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int
pg_store_fail(struct pg_store *st, int sqlite_rc, const char *what)
{
	const char *msg = st && st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(sqlite_rc);
	int code = (sqlite_rc == SQLITE_BUSY || sqlite_rc == SQLITE_LOCKED) ? PG_EBUSY : PG_ESTORE;

	return pg_error(code, "store", "%s: %s (sqlite %d)", what, msg, sqlite_rc);
}

static int open_path(struct pg_store *st, const char *path, int mutex_flags);

int
pg_store_open(struct pg_store *st, const char *path)
{
	return open_path(st, path, SQLITE_OPEN_FULLMUTEX);
}

int
pg_store_open_flags(struct pg_store *st, const char *path, int mutex_flags)
{
	char db[4200];
	int rc;

	if (path && *path)
		return open_path(st, path, mutex_flags);
	rc = pg_store_default_url(db, sizeof(db));
	return rc < 0 ? rc : open_path(st, db, mutex_flags);
}

/*
 * The store holds keys (wrapped) and everything else payguard knows: refuse
 * one that group or others can read or write, or whose directory they can
 * write (they could swap the file, or plant its -wal or -shm beside it).
 * The data directory itself is held to 0700 by pg_data_dir() and the daemon;
 * this is the check for any path, including an explicit --db FILE.
 */
int
pg_store_check_path(const char *path)
{
	static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
	char tmp[4200], dir[4200], q[4200], bad[8400] = "", f[4300];
	struct stat sb;
	size_t o = 0;
	unsigned worst = 0;
	int fd;

	snprintf(tmp, sizeof(tmp), "%s", path);
	snprintf(dir, sizeof(dir), "%s", dirname(tmp));
	if (stat(dir, &sb) < 0)
		return pg_error(PG_ESYS, "store", "unable to stat '%s': %s", dir, strerror(errno));
	if (sb.st_mode & 022) {
		if (pg_fs_shell_quote(q, sizeof(q), dir) < 0)
			q[0] = '\0';
		if (sb.st_uid == geteuid() && !(sb.st_mode & S_ISVTX))
			return pg_error(PG_EPERM, "store",
					"permissions %04o for '%s' (the store's directory) are too "
					"open; run: chmod go-w %s",
					(unsigned)(sb.st_mode & 07777), dir, q);
		return pg_error(PG_EPERM, "store",
				"'%s' (the store's directory, mode %04o) is writable by group or "
				"others; keep the store in a directory only you can write",
				dir, (unsigned)(sb.st_mode & 07777));
	}
	/* a new store is created 0600 here, whatever the umask; SQLite gives its
	 * -wal and -shm files the database file's mode */
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		snprintf(f, sizeof(f), "%s%s", path, sfx[i]);
		if (stat(f, &sb) < 0) {
			if (errno == ENOENT && i > 0)
				continue;
			return pg_error(PG_ESYS, "store", "unable to stat '%s': %s", f,
					strerror(errno));
		}
		if (!S_ISREG(sb.st_mode))
			return pg_error(PG_EINVAL, "store", "'%s' is not a regular file", f);
		if (!(sb.st_mode & 077) || pg_fs_shell_quote(q, sizeof(q), f) < 0)
			continue;
		if (!worst)
			worst = (unsigned)(sb.st_mode & 07777);
		if (o + strlen(q) + 2 < sizeof(bad))
			o += (size_t)snprintf(bad + o, sizeof(bad) - o, " %s", q);
	}
	if (worst)
		return pg_error(PG_EPERM, "store",
				"permissions %04o for '%s' are too open; run: chmod 600%s", worst,
				path, bad);
	return 0;
}

static int
open_path(struct pg_store *st, const char *path, int mutex_flags)
{
	int rc;

	st->db = NULL;
	st->pdb = NULL;
	st->path = NULL;
	if (strncmp(path, "sqlite:", 7) == 0) /* the store API's spelling of a path */
		path += 7;
	/* a PostgreSQL store has no file here: its server guards its own */
	if (!pg_db_url_is_postgres(path)) {
		rc = pg_store_check_path(path);
		if (rc < 0)
			return rc;
	}
	st->path = strdup(path);
	if (!st->path)
		return PG_ENOMEM;
	if (pg_db_url_is_postgres(path)) {
		/* only areas moved to the store API (st->pdb) run on PostgreSQL */
		rc = pg_db_open(&st->pdb, path);
		if (rc < 0)
			pg_store_close(st);
		return rc;
	}
	rc = sqlite3_open_v2(path, &st->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | mutex_flags, NULL);
	if (rc != SQLITE_OK) {
		rc = pg_store_fail(st, rc, path);
		pg_store_close(st);
		return rc;
	}
	sqlite3_busy_timeout(st->db, 10000);
	rc = pg_db_sqlite_borrow(&st->pdb, st->db, path);
	if (rc < 0) {
		pg_store_close(st);
		return rc;
	}
	rc = pg_store_exec(st, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
			       "PRAGMA foreign_keys=ON;"
			       "CREATE TABLE IF NOT EXISTS pg_schema(area TEXT PRIMARY KEY,"
			       " version INTEGER NOT NULL);");
	if (rc < 0)
		pg_store_close(st);
	return rc;
}

void
pg_store_close(struct pg_store *st)
{
	if (!st)
		return;
	/* statements first: SQLite closes a handle only when they are gone */
	pg_db_free(st->pdb);
	st->pdb = NULL;
	if (st->db)
		sqlite3_close_v2(st->db);
	st->db = NULL;
	free(st->path);
	st->path = NULL;
}

int
pg_store_exec(struct pg_store *st, const char *sql)
{
	char *err = NULL;
	int rc;

	if (!st->db)
		return pg_db_exec(st->pdb, sql);
	rc = sqlite3_exec(st->db, sql, NULL, NULL, &err);

	if (rc != SQLITE_OK) {
		int code = (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) ? PG_EBUSY : PG_ESTORE;

		pg_error(code, "store", "%s (sqlite %d)", err ? err : sqlite3_errstr(rc), rc);
		sqlite3_free(err);
		return code;
	}
	return 0;
}

int
pg_store_begin(struct pg_store *st)
{
	return st->db ? pg_store_exec(st, "BEGIN IMMEDIATE") : pg_db_begin(st->pdb);
}

static int
not_moved(const char *area)
{
	return pg_error(PG_ENOTSUP, "store",
			"area '%s' does not run on PostgreSQL yet: give it a SQLite store", area);
}

int
pg_store_commit(struct pg_store *st)
{
	return pg_store_exec(st, "COMMIT");
}

int
pg_store_rollback(struct pg_store *st)
{
	return pg_store_exec(st, "ROLLBACK");
}

int
pg_store_version(struct pg_store *st, const char *area)
{
	sqlite3_stmt *s = NULL;
	int rc, v = 0;

	if (!st->db)
		return pg_db_version(st->pdb, area);
	rc = sqlite3_prepare_v2(st->db, "SELECT version FROM pg_schema WHERE area=?", -1, &s, NULL);
	if (rc != SQLITE_OK)
		return pg_store_fail(st, rc, "schema version");
	sqlite3_bind_text(s, 1, area, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		v = sqlite3_column_int(s, 0);
	else if (rc != SQLITE_DONE)
		v = pg_store_fail(st, rc, "schema version");
	sqlite3_finalize(s);
	return v;
}

int
pg_store_migrate(struct pg_store *st, const char *area, const struct pg_migration *m, size_t n)
{
	sqlite3_stmt *s = NULL;
	int rc, have;

	if (!st->db)
		return not_moved(area);
	rc = pg_store_begin(st);
	if (rc < 0)
		return rc;
	have = pg_store_version(st, area);
	if (have < 0) {
		rc = have;
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		if (m[i].version <= have)
			continue;
		rc = pg_store_exec(st, m[i].sql);
		if (rc < 0) {
			pg_err("store", "migration %s/%d failed: %s", area, m[i].version,
			       pg_last_error());
			goto fail;
		}
		have = m[i].version;
	}
	rc = sqlite3_prepare_v2(st->db,
				"INSERT INTO pg_schema(area,version) VALUES(?,?)"
				" ON CONFLICT(area) DO UPDATE SET version=excluded.version",
				-1, &s, NULL);
	if (rc != SQLITE_OK) {
		rc = pg_store_fail(st, rc, "record schema version");
		goto fail;
	}
	sqlite3_bind_text(s, 1, area, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, have);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		rc = pg_store_fail(st, rc, "record schema version");
		goto fail;
	}
	return pg_store_commit(st);
fail:
	pg_store_rollback(st);
	return rc;
}

int
pg_data_dir(char *out, size_t outlen)
{
	const char *d = getenv("PAYGUARD_DATA_DIR");
	const char *x = getenv("XDG_DATA_HOME");
	const char *h = getenv("HOME");
	int n;

	if (d && *d)
		n = snprintf(out, outlen, "%s", d);
	else if (x && *x)
		n = snprintf(out, outlen, "%s/payguard", x);
	else if (h && *h)
		n = snprintf(out, outlen, "%s/.local/share/payguard", h);
	else
		n = snprintf(out, outlen, "./payguard-data");
	if (n < 0 || (size_t)n >= outlen)
		return pg_error(PG_ETOOBIG, "store", "data directory path too long");
	return pg_data_dir_prepare(out);
}

int
pg_data_dir_prepare(const char *dir)
{
	int rc = pg_mkdir_p(dir, 0700);

	return rc < 0 ? rc : pg_fs_check_private(dir, 1);
}

int
pg_store_default_url(char *out, size_t outlen)
{
	const char *env = getenv("PAYGUARD_STORE");
	char dir[4096];
	int n, rc;

	if (env && *env) {
		n = snprintf(out, outlen, "%s", env);
		if (n < 0 || (size_t)n >= outlen)
			return pg_error(PG_ETOOBIG, "store", "PAYGUARD_STORE is too long");
		return 0;
	}
	rc = pg_data_dir(dir, sizeof(dir));
	if (rc < 0)
		return rc;
	n = snprintf(out, outlen, "%s/payguard.db", dir);
	if (n < 0 || (size_t)n >= outlen)
		return pg_error(PG_ETOOBIG, "store", "store path too long");
	return 0;
}

int
pg_store_open_default(struct pg_store *st, const char *path)
{
	return pg_store_open_flags(st, path, SQLITE_OPEN_FULLMUTEX);
}
