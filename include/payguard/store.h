/*
 * The embedded SQLite store: one database file under the data directory,
 * shared by every area. Each area owns its tables and migrates them with its
 * own numbered list; the versions are kept in table `pg_schema`.
 * SQLite result codes are translated here only; the original code is kept
 * in the log line and in pg_last_error().
 */
#ifndef PAYGUARD_STORE_H
#define PAYGUARD_STORE_H

#include <sqlite3.h>
#include <stddef.h>

struct pg_db;

struct pg_store {
	sqlite3 *db;
	char *path;
	/*
	 * The same connection through the store API (db.h): areas moved to it
	 * use this and share transactions with the ones not moved yet.
	 */
	struct pg_db *pdb;
};

struct pg_migration {
	int version;	 /* 1, 2, 3 ... in order */
	const char *sql; /* one or more statements, run in one transaction */
};

/*
 * Opens (creating if needed, mode 0600) with WAL, foreign keys and a busy
 * timeout. Refuses (PG_EPERM, with the chmod to run) a store file, -wal or
 * -shm that group or others may read or write, and one whose directory
 * group or others may write.
 */
int pg_store_open(struct pg_store *st, const char *path);
/*
 * The same with another SQLite threading mode (SQLITE_OPEN_NOMUTEX for a
 * connection only ever used by one thread); an empty path opens the default
 * database as pg_store_open_default does.
 */
int pg_store_open_flags(struct pg_store *st, const char *path_or_null, int mutex_flags);
void pg_store_close(struct pg_store *st);
/* Applies the area's migrations above its recorded version, atomically. */
int pg_store_migrate(struct pg_store *st, const char *area, const struct pg_migration *m, size_t n);
/* Current schema version of an area (0 when none). */
int pg_store_version(struct pg_store *st, const char *area);
/* Runs SQL with no result rows. */
int pg_store_exec(struct pg_store *st, const char *sql);
int pg_store_begin(struct pg_store *st);
int pg_store_commit(struct pg_store *st);
int pg_store_rollback(struct pg_store *st);
/* Translates a SQLite result code into PG_ESTORE/PG_EBUSY with a detail. */
int pg_store_fail(struct pg_store *st, int sqlite_rc, const char *what);

/*
 * Default data directory: $PAYGUARD_DATA_DIR, else $XDG_DATA_HOME/payguard,
 * else $HOME/.local/share/payguard. Created (mode 0700) if missing, and
 * checked as pg_data_dir_prepare() does.
 */
int pg_data_dir(char *out, size_t outlen);
/* Creates a data directory (0700) if missing; refuses (PG_EPERM, with the
 * chmod to run) one that group or others may read, write or enter. */
int pg_data_dir_prepare(const char *dir);
/*
 * The store a verb uses when it is given none: $PAYGUARD_STORE when set and
 * not empty (a path, sqlite:PATH or a PostgreSQL URL, as --db takes), else
 * "<data dir>/payguard.db" (the data directory is created as pg_data_dir
 * does).
 */
int pg_store_default_url(char *out, size_t outlen);
/* Opens path, or pg_store_default_url() when path is NULL or empty. */
int pg_store_open_default(struct pg_store *st, const char *path_or_null);

#endif
