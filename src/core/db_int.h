/*
 * The store API's driver interface (include/payguard/db.h): one ops table
 * per engine. Only db_sqlite.c calls sqlite3_* and only db_pg.c calls PQ*;
 * db.c holds what both share (URL dispatch, the statement cache, retries,
 * migrations).
 */
#ifndef PG_CORE_DB_INT_H
#define PG_CORE_DB_INT_H

#include "payguard/buf.h"
#include "payguard/db.h"

#include <stddef.h>
#include <stdint.h>

enum pg_db_type { PG_DB_T_NULL, PG_DB_T_INT64, PG_DB_T_DOUBLE, PG_DB_T_TEXT, PG_DB_T_BLOB };

struct pg_db_ops {
	enum pg_db_engine engine;
	/* Connects; stores the driver's handle in db->drv. */
	int (*open)(struct pg_db *db, const char *conninfo);
	void (*close)(struct pg_db *db);
	int (*exec)(struct pg_db *db, const char *sql);
	/* Prepares s->sql (the caller's text, `?` placeholders) into s->drv. */
	int (*prepare)(struct pg_db *db, struct pg_db_stmt *s);
	void (*finalize)(struct pg_db_stmt *s);
	/* Bindings are handed over at run time from s->par (1-based). */
	int (*step)(struct pg_db_stmt *s);
	void (*reset)(struct pg_db_stmt *s);
	int64_t (*changes)(const struct pg_db_stmt *s);
	int (*column_count)(const struct pg_db_stmt *s);
	int (*column_is_null)(const struct pg_db_stmt *s, int i);
	int64_t (*column_int64)(const struct pg_db_stmt *s, int i);
	double (*column_double)(const struct pg_db_stmt *s, int i);
	const char *(*column_text)(const struct pg_db_stmt *s, int i);
	const void *(*column_blob)(const struct pg_db_stmt *s, int i, size_t *len);
	enum pg_db_col (*column_type)(const struct pg_db_stmt *s, int i);
	const char *(*column_name)(const struct pg_db_stmt *s, int i);
	/* "BEGIN" as the engine wants it for a writing transaction. */
	const char *begin_sql;
	/* SQL that serialises migrations between connections, inside a transaction. */
	const char *migrate_lock_sql;
	/* Session advisory locks on a 64-bit key and LISTEN/NOTIFY; NULL for an
	 * engine with one node (db.c answers for it). */
	int (*try_lock)(struct pg_db *db, int64_t key);
	int (*unlock)(struct pg_db *db, int64_t key);
	int (*lock_held)(struct pg_db *db, int64_t key);
	int (*listen)(struct pg_db *db, const char *channel);
	int (*notify)(struct pg_db *db, const char *channel, const char *payload);
	int (*wait_notify)(struct pg_db *db, int timeout_ms, char *channel, size_t clen,
			   char *payload, size_t plen);
	/* Writes b's complete rows in one step (PostgreSQL: a binary COPY);
	 * returns the rows written. NULL: db.c inserts them row by row with a
	 * prepared statement inside a savepoint. */
	int64_t (*bulk_write)(struct pg_db_bulk *b);
	void (*bulk_free)(struct pg_db_bulk *b); /* b->drv; may be NULL */
};

struct pg_db_param {
	enum pg_db_type type;
	int64_t i;
	double d;
	char *p; /* text (NUL-terminated) or blob: small[] or owned */
	size_t len;
	/* short texts (names, ids) need no allocation on hot paths */
	char small[56];
};

/* PostgreSQL's protocol limit; SQLite's default is 32766 */
#define PG_DB_MAX_PARAMS 32766

struct pg_db_stmt {
	struct pg_db *db;
	char *sql;
	void *drv;
	int nparams;		 /* highest placeholder number */
	struct pg_db_param *par; /* [nparams + 1], 1-based */
	int running;		 /* step has run the statement since the last reset */
	struct pg_db_stmt *next;
};

/* One value of a bulk row: the number, or text/blob at off, len in b->text. */
struct pg_db_bulk_val {
	enum pg_db_type type;
	union {
		int64_t i;
		double d;
		struct {
			size_t off, len;
		} t;
	} v;
};

struct pg_db_bulk {
	struct pg_db *db;
	char *table, *cols;
	int ncols;
	struct pg_db_bulk_val *val; /* row after row */
	size_t nval, capval;
	struct pg_buf text; /* the texts' bytes */
	void *drv;	    /* the driver's cache (PostgreSQL: column types) */
	struct pg_db_bulk *next;
};

struct pg_db {
	const struct pg_db_ops *ops;
	void *drv;
	char *name;
	struct pg_db_stmt *stmts;
	struct pg_db_bulk *bulks;
	/* a SQLite handle lent by store.c: closed by its owner, not here */
	int borrowed;
	/* lock names taken on an engine without advisory locks (SQLite) */
	struct pg_db_lock *locks;
};

struct pg_db_lock {
	char *name;
	struct pg_db_lock *next;
};

extern const struct pg_db_ops pgi_db_sqlite_ops;
extern const struct pg_db_ops pgi_db_postgres_ops;

/*
 * Wraps a SQLite handle that a struct pg_store owns, so an area moved to the
 * store API shares the connection (and its transactions) with areas that are
 * not moved yet.
 */
int pgi_db_sqlite_borrow(struct pg_db **out, void *sqlite_handle, const char *name);

/*
 * store.c's SQLite connection (struct pg_store): opened with the given
 * threading flag (SQLITE_OPEN_FULLMUTEX, _NOMUTEX), a 10 s busy timeout, WAL
 * and table pg_schema. *out owns the handle (pg_db_free closes it); *handle
 * is the same sqlite3 * for areas not on the store API yet.
 */
int pgi_db_sqlite_open_store(struct pg_db **out, const char *path, int mutex_flags, void **handle);
/* pg_store_fail: a SQLite result code (and the handle's message, if any) as
 * PG_EBUSY or PG_ESTORE with a detail. */
int pgi_db_sqlite_fail(void *handle, int rc, const char *what);

/*
 * store.c's check of a SQLite store path (private file, private directory;
 * creates a new one 0600): both ways of opening a SQLite store use it.
 */
int pgi_store_check_path(const char *path);

/* The stable 64-bit key of an advisory lock name (FNV-1a): the same on every node. */
int64_t pgi_db_lock_key(const char *name);

/* The store URL for logs (pg_db_name): a URL's user password and every
 * password=VALUE of a keyword string or a URL's query masked. malloc'd. */
char *pgi_db_redact(const char *url);

/* Counts `?` placeholders outside string literals, quoted names and comments. */
int pgi_db_count_params(const char *sql);

#endif
