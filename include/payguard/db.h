/*
 * One store API over two engines: SQLite (the embedded default, a file) and
 * PostgreSQL (through libpq, what several daemons share). Callers write SQL
 * with `?` placeholders that both engines accept; the PostgreSQL driver turns
 * them into $1..$n. Statements are prepared once per connection and cached by
 * their text, so a caller may call pg_db_prepare() on every use.
 *
 * Error mapping (both engines): unique or primary-key violation ->
 * PG_EUNIQUE; busy, locked, serialization failure or deadlock -> PG_EBUSY;
 * connection lost -> PG_ECONNLOST (the next call reconnects and prepares its
 * statements again); anything else -> PG_ESTORE. The engine's own message is
 * in pg_last_error().
 *
 * A connection is used by one thread at a time.
 */
#ifndef PAYGUARD_DB_H
#define PAYGUARD_DB_H

#include <stddef.h>
#include <stdint.h>

struct pg_db;
struct pg_db_stmt;

enum pg_db_engine { PG_DB_SQLITE, PG_DB_POSTGRES };

/*
 * Opens a store by URL: a path or "sqlite:PATH" (created if missing, WAL),
 * "postgresql://..." / "postgres://..." or a libpq keyword string
 * ("host=/tmp dbname=x"). Creates the `pg_schema` table.
 */
int pg_db_open(struct pg_db **out, const char *url);
/* Whether a store URL names PostgreSQL (else it is a SQLite path). */
int pg_db_url_is_postgres(const char *url);
/* Closes the connection and every statement prepared on it; NULL is fine. */
void pg_db_free(struct pg_db *db);
enum pg_db_engine pg_db_engine_of(const struct pg_db *db);
/* The URL without any password, for logs. */
const char *pg_db_name(const struct pg_db *db);

/* Runs SQL that returns no rows; may hold several statements, no parameters. */
int pg_db_exec(struct pg_db *db, const char *sql);

/*
 * Returns the connection's statement for this SQL text, preparing it on
 * first use; its bindings are cleared and any previous result dropped. The
 * statement belongs to the connection (never freed by the caller).
 */
int pg_db_prepare(struct pg_db *db, const char *sql, struct pg_db_stmt **out);
/* Parameters are numbered from 1, as in SQLite. */
int pg_db_bind_int64(struct pg_db_stmt *s, int i, int64_t v);
int pg_db_bind_double(struct pg_db_stmt *s, int i, double v);
/* len < 0: NUL-terminated. The text is copied. */
int pg_db_bind_text(struct pg_db_stmt *s, int i, const char *v, long len);
int pg_db_bind_blob(struct pg_db_stmt *s, int i, const void *v, size_t len);
int pg_db_bind_null(struct pg_db_stmt *s, int i);

/* Runs (first call) and moves to the next row: 1 = a row, 0 = done, < 0 error. */
int pg_db_step(struct pg_db_stmt *s);
/* Drops the result and keeps the bindings, ready to run again. */
void pg_db_reset(struct pg_db_stmt *s);
/* Rows changed by the last INSERT/UPDATE/DELETE run through this statement. */
int64_t pg_db_changes(const struct pg_db_stmt *s);

/* Columns of the current row, numbered from 0. NULL reads as 0 / "" / empty. */
int pg_db_column_count(const struct pg_db_stmt *s);
int pg_db_column_is_null(const struct pg_db_stmt *s, int i);
int64_t pg_db_column_int64(const struct pg_db_stmt *s, int i);
double pg_db_column_double(const struct pg_db_stmt *s, int i);
/* Valid until the next step or reset; never NULL. */
const char *pg_db_column_text(const struct pg_db_stmt *s, int i);
const void *pg_db_column_blob(const struct pg_db_stmt *s, int i, size_t *len);
/* The storage class of a column in the current row, for callers that turn
 * rows into JSON: PostgreSQL integer and boolean types read as INT64,
 * real and numeric as DOUBLE, bytea as BLOB, anything else as TEXT. */
enum pg_db_col {
	PG_DB_COL_NULL,
	PG_DB_COL_INT64,
	PG_DB_COL_DOUBLE,
	PG_DB_COL_TEXT,
	PG_DB_COL_BLOB
};
enum pg_db_col pg_db_column_type(const struct pg_db_stmt *s, int i);
/* The column's name (its AS alias if any); "" when out of range. */
const char *pg_db_column_name(const struct pg_db_stmt *s, int i);

/*
 * SQLite's WAL checkpoints off the writer's thread (the POS server): a second
 * connection to an existing store file (never created, its schema not
 * touched; 1 s busy timeout), and one passive checkpoint on it, which never
 * waits for nor blocks a writer. PostgreSQL has none: the open is
 * PG_ENOTSUP, a checkpoint on its connection 0.
 */
int pg_db_checkpointer_open(struct pg_db **out, const char *url);
int pg_db_checkpoint(struct pg_db *db);

/*
 * Bulk insert: many rows into one table in one call, all or none. Values
 * are added row after row, each row's in the order of `cols` (a
 * comma-separated list of plain lower-case names, no spaces; the table's
 * name is plain too), with the same types as binds; the other
 * columns take their defaults. pg_db_bulk_write writes the rows added since
 * the last write in one step and drops them from the buffer whatever the
 * outcome: on PostgreSQL one COPY ... FROM STDIN (FORMAT binary), each
 * value sent in its column's binary form (int64 into integer columns
 * checked for range), so the server neither parses text nor plans a
 * statement and inserts a page of rows at a time; on SQLite the prepared
 * single-row INSERT per row inside a savepoint. Errors map as for
 * statements; a row that breaks a unique key fails the whole write with
 * PG_EUNIQUE and nothing is stored (a COPY has no ON CONFLICT: the caller
 * falls back to an INSERT ... ON CONFLICT). Inside a transaction the rows
 * commit with it (on PostgreSQL a failed write aborts the transaction).
 * A bulk belongs to the connection, cached by table and columns, like
 * statements. pg_db_bulk_write returns the number of rows written.
 */
struct pg_db_bulk;
int pg_db_bulk_open(struct pg_db *db, const char *table, const char *cols, struct pg_db_bulk **out);
int pg_db_bulk_int64(struct pg_db_bulk *b, int64_t v);
int pg_db_bulk_double(struct pg_db_bulk *b, double v);
/* len < 0: NUL-terminated. The text is copied. */
int pg_db_bulk_text(struct pg_db_bulk *b, const char *v, long len);
int pg_db_bulk_null(struct pg_db_bulk *b);
/* Rows complete so far (values added / columns). */
size_t pg_db_bulk_rows(const struct pg_db_bulk *b);
/* Drops the rows added since the last write. */
void pg_db_bulk_clear(struct pg_db_bulk *b);
int64_t pg_db_bulk_write(struct pg_db_bulk *b);

int pg_db_begin(struct pg_db *db);
int pg_db_commit(struct pg_db *db);
int pg_db_rollback(struct pg_db *db);
/*
 * Runs fn in a transaction and commits; on PG_EBUSY (busy, serialization
 * failure, deadlock) or PG_ECONNLOST it rolls back and runs fn again, up to
 * `tries` times with a growing pause. Any other error rolls back and is
 * returned. fn must not commit itself and must be safe to run again.
 */
int pg_db_transact(struct pg_db *db, int (*fn)(struct pg_db *db, void *arg), void *arg, int tries);

/*
 * One numbered schema step of an area. `sql` is used on both engines unless
 * the engine's own variant is given (only where no common form exists).
 */
struct pg_db_migration {
	int version; /* 1, 2, 3 ... in order */
	const char *sql;
	const char *sql_sqlite;
	const char *sql_postgres;
};
/*
 * Applies the area's steps above its recorded version, each in one
 * transaction; several daemons migrating one PostgreSQL store at once take
 * turns on an advisory lock, so each step runs once.
 */
int pg_db_migrate(struct pg_db *db, const char *area, const struct pg_db_migration *m, size_t n);
/* Recorded schema version of an area (0 when none), or < 0 on error. */
int pg_db_version(struct pg_db *db, const char *area);

/*
 * Named session-level locks, for electing one node among several (cluster
 * singletons). On PostgreSQL an advisory lock on a 64-bit hash of the name
 * (FNV-1a, the same on every node); the server releases it when the session
 * ends, so a node that dies or loses its connection loses its locks. SQLite
 * has one node: every lock is granted.
 *
 * pg_db_try_lock: 1 = this session holds it now (a second call by the holder
 * returns 1 again without stacking), 0 = another session holds it, < 0 error.
 * pg_db_unlock: 0 (also when not held) or < 0.
 * pg_db_lock_held: 1 if this session still holds it, 0 if not (after a lost
 * connection it does not), < 0 error. Use a dedicated connection: a lost
 * connection silently drops every lock taken on it.
 */
int pg_db_try_lock(struct pg_db *db, const char *name);
int pg_db_unlock(struct pg_db *db, const char *name);
int pg_db_lock_held(struct pg_db *db, const char *name);

/*
 * LISTEN/NOTIFY between the nodes sharing a PostgreSQL store (SQLite: no-ops).
 * pg_db_listen subscribes this connection to a channel (any name; quoted).
 * pg_db_notify sends a payload (at most 7999 bytes) to every listener,
 * delivered when the sender's transaction commits (at once outside one).
 * pg_db_wait_notify waits up to timeout_ms for one notification: 1 = got one
 * (channel and payload copied, truncated to their sizes), 0 = timeout, < 0
 * error. After a lost connection it returns PG_ECONNLOST once (notifications
 * may have been missed: reload what they announce); the next call reconnects
 * and listens again on every channel. SQLite: sleeps timeout_ms, returns 0.
 */
int pg_db_listen(struct pg_db *db, const char *channel);
int pg_db_notify(struct pg_db *db, const char *channel, const char *payload);
int pg_db_wait_notify(struct pg_db *db, int timeout_ms, char *channel, size_t clen, char *payload,
		      size_t plen);

#endif
