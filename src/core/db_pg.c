/*
 * The store API's PostgreSQL driver (db_int.h) over libpq: `?` placeholders
 * become $1..$n, each statement is prepared once per session under its own
 * name, parameters travel as text (blobs as binary), results come back as
 * text (bytea in hex). SQLSTATEs map onto PG_E codes: 23505 unique
 * violation, 40001/40P01/55P03 busy, class 08 and 57P0x connection lost.
 * After a lost connection the next call reconnects and statements are
 * prepared again. The only file that calls PQ*.
 */
#include "db_int.h"

#include "payguard/error.h"
#include "payguard/log.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct pq_stmt {
	char name[32];
	/* the parameters as libpq takes them, sized once at prepare */
	const char **values;
	int *lengths, *formats;
	char (*nums)[32];
	PGresult *res;
	int row, nrows;
	int64_t changes;
	unsigned char **blobs; /* decoded bytea per column of the current row */
	int nblobs;
};

struct pq_conn {
	PGconn *conn;
	unsigned long next_name;
	/* channels LISTENed to, issued again on a new session */
	char **channels;
	size_t nchannels;
	int need_listen; /* a new session does not listen yet */
	int lost;	 /* notifications may have been missed: tell wait_notify's caller */
};

static PGconn *
conn_of(struct pg_db *db)
{
	return ((struct pq_conn *)db->drv)->conn;
}

/* Forgets every server-side statement: the session they lived in is gone. */
static void
drop_prepared(struct pg_db *db)
{
	for (struct pg_db_stmt *s = db->stmts; s; s = s->next) {
		if (s->drv)
			db->ops->finalize(s);
		s->running = 0;
	}
}

/* A new session: prepared statements, advisory locks and LISTENs are gone. */
static void
reconnect(struct pg_db *db)
{
	struct pq_conn *pc = db->drv;

	drop_prepared(db);
	PQreset(pc->conn);
	pc->need_listen = pc->nchannels > 0;
	pc->lost = 1;
}

static int
fail(struct pg_db *db, PGresult *res, const char *what)
{
	PGconn *c = conn_of(db);
	const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res ? PQresultErrorMessage(res) : "";
	int code = PG_ESTORE;
	char line[512], statebuf[8] = "", *state = NULL;
	size_t n;

	/* copied: a reconnect below frees the result they point into */
	if (st) {
		snprintf(statebuf, sizeof(statebuf), "%s", st);
		state = statebuf;
	}

	if (!msg || !*msg)
		msg = PQerrorMessage(c);
	snprintf(line, sizeof(line), "%s", msg ? msg : "");
	n = strlen(line);
	while (n && (line[n - 1] == '\n' || line[n - 1] == ' '))
		line[--n] = 0;
	if (state && strcmp(state, "23505") == 0)
		code = PG_EUNIQUE;
	else if (state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
			   strcmp(state, "55P03") == 0))
		code = PG_EBUSY;
	else if ((state && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P0", 4) == 0)) ||
		 PQstatus(c) == CONNECTION_BAD)
		code = PG_ECONNLOST;
	if (code == PG_ECONNLOST)
		reconnect(db); /* now, so the caller's retry finds a live session */
	return pg_error(code, "db", "%s: %s (sqlstate %s)", what, line, state ? state : "none");
}

static int
check(struct pg_db *db, PGresult *res, const char *what)
{
	ExecStatusType st = PQresultStatus(res);

	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return 0;
	return fail(db, res, what);
}

static void
notice_quiet(void *arg, const char *msg)
{
	(void)arg;
	pg_debug("db", "postgres: %s", msg);
}

static int
pq_exec(struct pg_db *db, const char *sql)
{
	PGresult *res;
	int rc;

	if (PQstatus(conn_of(db)) == CONNECTION_BAD) {
		reconnect(db);
		if (PQstatus(conn_of(db)) == CONNECTION_BAD)
			return fail(db, NULL, "reconnect");
	}
	res = PQexec(conn_of(db), sql);
	rc = check(db, res, "exec");
	PQclear(res);
	return rc;
}

static int
pq_open(struct pg_db *db, const char *conninfo)
{
	struct pq_conn *pc = calloc(1, sizeof(*pc));
	int rc;

	if (!pc)
		return PG_ENOMEM;
	pc->conn = PQconnectdb(conninfo);
	db->drv = pc;
	if (!pc->conn || PQstatus(pc->conn) != CONNECTION_OK) {
		rc = pg_error(PG_ECONNLOST, "db", "cannot connect to %s: %s", db->name,
			      pc->conn ? PQerrorMessage(pc->conn) : "out of memory");
		PQfinish(pc->conn);
		free(pc);
		db->drv = NULL;
		return rc;
	}
	PQsetNoticeProcessor(pc->conn, notice_quiet, NULL);
	/* two daemons starting on an empty store must not both create pg_schema */
	rc = pq_exec(db, "BEGIN; SELECT pg_advisory_xact_lock(7236485);"
			 "CREATE TABLE IF NOT EXISTS pg_schema(area TEXT PRIMARY KEY,"
			 " version INTEGER NOT NULL); COMMIT");
	if (rc < 0) {
		PQfinish(pc->conn);
		free(pc);
		db->drv = NULL;
	}
	return rc;
}

static void
pq_close(struct pg_db *db)
{
	struct pq_conn *pc = db->drv;

	if (!pc)
		return;
	PQfinish(pc->conn);
	for (size_t i = 0; i < pc->nchannels; i++)
		free(pc->channels[i]);
	free(pc->channels);
	free(pc);
	db->drv = NULL;
}

/* `?` outside literals, quoted names and comments -> $1, $2, ... */
static char *
rewrite(const char *sql)
{
	size_t n = strlen(sql);
	/* "?" becomes at most "$32766" */
	char *out = malloc(n * 6 + 1), *o = out;
	int k = 0;

	if (!out)
		return NULL;
	for (const char *p = sql; *p; p++) {
		if (*p == '\'' || *p == '"') {
			char q = *p;

			*o++ = *p;
			while (p[1] && p[1] != q)
				*o++ = *++p;
			if (p[1])
				*o++ = *++p;
		} else if (p[0] == '-' && p[1] == '-') {
			while (*p && *p != '\n')
				*o++ = *p++;
			if (!*p)
				break;
			*o++ = *p;
		} else if (p[0] == '/' && p[1] == '*') {
			*o++ = *p++;
			*o++ = *p++;
			while (*p && !(p[0] == '*' && p[1] == '/'))
				*o++ = *p++;
			if (!*p)
				break;
			*o++ = *p++;
			*o++ = *p;
		} else if (*p == '?') {
			o += sprintf(o, "$%d", ++k);
		} else {
			*o++ = *p;
		}
	}
	*o = 0;
	return out;
}

static void
free_stmt(struct pq_stmt *ps)
{
	if (!ps)
		return;
	free(ps->values);
	free(ps->lengths);
	free(ps->formats);
	free(ps->nums);
	free(ps);
}

static int
pq_prepare(struct pg_db *db, struct pg_db_stmt *s)
{
	struct pq_conn *pc = db->drv;
	struct pq_stmt *ps;
	PGresult *res;
	char *sql;
	int rc;

	if (PQstatus(pc->conn) == CONNECTION_BAD) {
		reconnect(db);
		if (PQstatus(pc->conn) == CONNECTION_BAD)
			return fail(db, NULL, "reconnect");
	}
	ps = calloc(1, sizeof(*ps));
	sql = rewrite(s->sql);
	if (!ps || !sql) {
		free(ps);
		free(sql);
		return PG_ENOMEM;
	}
	ps->values = calloc((size_t)s->nparams + 1, sizeof(*ps->values));
	ps->lengths = calloc((size_t)s->nparams + 1, sizeof(*ps->lengths));
	ps->formats = calloc((size_t)s->nparams + 1, sizeof(*ps->formats));
	ps->nums = calloc((size_t)s->nparams + 1, sizeof(*ps->nums));
	if (!ps->values || !ps->lengths || !ps->formats || !ps->nums) {
		free_stmt(ps);
		free(sql);
		return PG_ENOMEM;
	}
	snprintf(ps->name, sizeof(ps->name), "pg_s%lu", ++pc->next_name);
	res = PQprepare(pc->conn, ps->name, sql, 0, NULL);
	free(sql);
	rc = check(db, res, "prepare");
	PQclear(res);
	if (rc < 0) {
		free_stmt(ps);
		return rc;
	}
	s->drv = ps;
	return 0;
}

static void
drop_blobs(struct pq_stmt *ps)
{
	for (int i = 0; i < ps->nblobs; i++)
		PQfreemem(ps->blobs[i]);
	free(ps->blobs);
	ps->blobs = NULL;
	ps->nblobs = 0;
}

static void
pq_reset(struct pg_db_stmt *s)
{
	struct pq_stmt *ps = s->drv;

	drop_blobs(ps);
	PQclear(ps->res);
	ps->res = NULL;
	ps->row = ps->nrows = 0;
}

static void
pq_finalize(struct pg_db_stmt *s)
{
	/* the server-side statement lives as long as the session */
	pq_reset(s);
	free_stmt(s->drv);
	s->drv = NULL;
}

static int
run(struct pg_db_stmt *s)
{
	struct pq_stmt *ps = s->drv;
	const char **values = ps->values;
	int *lengths = ps->lengths, *formats = ps->formats;
	char(*nums)[32] = ps->nums;
	int rc;

	for (int i = 1; i <= s->nparams; i++) {
		const struct pg_db_param *p = &s->par[i];
		int k = i - 1;

		values[k] = NULL;
		lengths[k] = 0;
		formats[k] = 0;
		switch (p->type) {
		case PG_DB_T_NULL:
			break;
		case PG_DB_T_INT64:
			snprintf(nums[k], sizeof(nums[k]), "%lld", (long long)p->i);
			values[k] = nums[k];
			break;
		case PG_DB_T_DOUBLE:
			/* 17 significant digits read back to the same double */
			snprintf(nums[k], sizeof(nums[k]), "%.17g", p->d);
			values[k] = nums[k];
			break;
		case PG_DB_T_TEXT:
			values[k] = p->p;
			break;
		case PG_DB_T_BLOB:
			values[k] = p->p;
			lengths[k] = (int)p->len;
			formats[k] = 1;
			break;
		}
	}
	ps->res = PQexecPrepared(conn_of(s->db), ps->name, s->nparams, values, lengths, formats, 0);
	rc = check(s->db, ps->res, "step");
	if (rc < 0) {
		/* after a reconnect s->drv is gone with its result */
		if (s->drv) {
			PQclear(ps->res);
			ps->res = NULL;
		}
		return rc;
	}
	ps->nrows = PQntuples(ps->res);
	ps->row = -1;
	ps->changes = strtoll(PQcmdTuples(ps->res), NULL, 10);
	return 0;
}

static int
pq_step(struct pg_db_stmt *s)
{
	struct pq_stmt *ps = s->drv;
	int rc;

	if (s->running == 1) {
		rc = run(s);
		if (rc < 0)
			return rc;
		s->running = 2;
	}
	drop_blobs(ps);
	if (ps->row + 1 >= ps->nrows) {
		ps->row = ps->nrows;
		return 0;
	}
	ps->row++;
	return 1;
}

static int64_t
pq_changes(const struct pg_db_stmt *s)
{
	return ((const struct pq_stmt *)s->drv)->changes;
}

static int
has_row(const struct pq_stmt *ps, int i)
{
	return ps && ps->res && ps->row >= 0 && ps->row < ps->nrows && i >= 0 &&
	       i < PQnfields(ps->res);
}

static int
pq_column_count(const struct pg_db_stmt *s)
{
	const struct pq_stmt *ps = s->drv;

	return has_row(ps, 0) ? PQnfields(ps->res) : 0;
}

static int
pq_column_is_null(const struct pg_db_stmt *s, int i)
{
	const struct pq_stmt *ps = s->drv;

	return !has_row(ps, i) || PQgetisnull(ps->res, ps->row, i);
}

static const char *
pq_column_text(const struct pg_db_stmt *s, int i)
{
	const struct pq_stmt *ps = s->drv;

	return has_row(ps, i) ? PQgetvalue(ps->res, ps->row, i) : "";
}

static int64_t
pq_column_int64(const struct pg_db_stmt *s, int i)
{
	const char *t = pq_column_text(s, i);

	if (t[0] == 't' && t[1] == 0) /* boolean */
		return 1;
	return strtoll(t, NULL, 10);
}

static double
pq_column_double(const struct pg_db_stmt *s, int i)
{
	return strtod(pq_column_text(s, i), NULL);
}

static const void *
pq_column_blob(const struct pg_db_stmt *s, int i, size_t *len)
{
	struct pq_stmt *ps = s->drv;
	unsigned char *b;

	*len = 0;
	if (!has_row(ps, i) || PQgetisnull(ps->res, ps->row, i))
		return "";
	if (PQftype(ps->res, i) != 17 /* bytea */) {
		*len = (size_t)PQgetlength(ps->res, ps->row, i);
		return PQgetvalue(ps->res, ps->row, i);
	}
	if (ps->nblobs <= i) {
		unsigned char **nb = realloc(ps->blobs, sizeof(*nb) * (size_t)(i + 1));

		if (!nb)
			return "";
		memset(nb + ps->nblobs, 0, sizeof(*nb) * (size_t)(i + 1 - ps->nblobs));
		ps->blobs = nb;
		ps->nblobs = i + 1;
	}
	if (ps->blobs[i])
		PQfreemem(ps->blobs[i]);
	b = PQunescapeBytea((const unsigned char *)PQgetvalue(ps->res, ps->row, i), len);
	ps->blobs[i] = b;
	return b ? (const void *)b : "";
}

static enum pg_db_col
pq_column_type(const struct pg_db_stmt *s, int i)
{
	const struct pq_stmt *ps = s->drv;

	if (!has_row(ps, i) || PQgetisnull(ps->res, ps->row, i))
		return PG_DB_COL_NULL;
	switch (PQftype(ps->res, i)) { /* OIDs of src/include/catalog/pg_type.dat */
	case 16:		       /* bool */
	case 20:		       /* int8 */
	case 21:		       /* int2 */
	case 23:		       /* int4 */
	case 26:		       /* oid */
		return PG_DB_COL_INT64;
	case 700:  /* float4 */
	case 701:  /* float8 */
	case 1700: /* numeric */
		return PG_DB_COL_DOUBLE;
	case 17: /* bytea */
		return PG_DB_COL_BLOB;
	default:
		return PG_DB_COL_TEXT;
	}
}

static const char *
pq_column_name(const struct pg_db_stmt *s, int i)
{
	const struct pq_stmt *ps = s->drv;
	const char *n;

	if (!ps || !ps->res || i < 0 || i >= PQnfields(ps->res))
		return "";
	n = PQfname(ps->res, i);
	return n ? n : "";
}

/*
 * Advisory locks. pg_locks shows a bigint key's high half as classid and its
 * low half as objid, with objsubid 1; asking it first keeps a second
 * try_lock by the holder from stacking (pg_try_advisory_lock would count it
 * and then need two unlocks).
 */
#define HELD_BY_ME                                                                                 \
	"EXISTS(SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"                                \
	" AND pid = pg_backend_pid() AND classid::bigint = ? AND objid::bigint = ?"                \
	" AND objsubid = 1 AND granted)"

static int
lock_query(struct pg_db *db, const char *sql, int64_t key, int with_key)
{
	struct pg_db_stmt *s;
	uint64_t u = (uint64_t)key;
	int rc;

	rc = pg_db_prepare(db, sql, &s);
	if (rc < 0)
		return rc;
	rc = pg_db_bind_int64(s, 1, (int64_t)(u >> 32));
	if (rc >= 0)
		rc = pg_db_bind_int64(s, 2, (int64_t)(u & 0xffffffffu));
	if (rc >= 0 && with_key)
		rc = pg_db_bind_int64(s, 3, key);
	if (rc >= 0)
		rc = pg_db_step(s);
	if (rc == 1)
		rc = pg_db_column_int64(s, 0) ? 1 : 0;
	else if (rc == 0)
		rc = pg_error(PG_ESTORE, "db", "advisory lock query returned no row");
	pg_db_reset(s);
	return rc;
}

static int
pq_try_lock(struct pg_db *db, int64_t key)
{
	return lock_query(db,
			  "SELECT CASE WHEN " HELD_BY_ME " THEN true"
			  " ELSE pg_try_advisory_lock(?) END",
			  key, 1);
}

static int
pq_unlock(struct pg_db *db, int64_t key)
{
	int rc = lock_query(db,
			    "SELECT CASE WHEN " HELD_BY_ME " THEN pg_advisory_unlock(?)"
			    " ELSE false END",
			    key, 1);

	return rc < 0 ? rc : 0;
}

static int
pq_lock_held(struct pg_db *db, int64_t key)
{
	return lock_query(db, "SELECT " HELD_BY_ME, key, 0);
}

static int
listen_one(struct pg_db *db, const char *channel)
{
	PGconn *c = conn_of(db);
	char *id = PQescapeIdentifier(c, channel, strlen(channel)), *sql;
	int rc;

	if (!id)
		return pg_error(PG_EINVAL, "db", "bad channel name: %s", PQerrorMessage(c));
	sql = malloc(strlen(id) + 8);
	if (!sql) {
		PQfreemem(id);
		return PG_ENOMEM;
	}
	sprintf(sql, "LISTEN %s", id);
	PQfreemem(id);
	rc = pq_exec(db, sql);
	free(sql);
	return rc;
}

/* On a new session: LISTEN again on every channel. */
static int
relisten(struct pg_db *db)
{
	struct pq_conn *pc = db->drv;
	int rc = 0;

	for (size_t i = 0; i < pc->nchannels && rc >= 0; i++)
		rc = listen_one(db, pc->channels[i]);
	if (rc >= 0)
		pc->need_listen = 0;
	return rc;
}

static int
pq_listen(struct pg_db *db, const char *channel)
{
	struct pq_conn *pc = db->drv;
	char **nc;
	int rc;

	for (size_t i = 0; i < pc->nchannels; i++)
		if (strcmp(pc->channels[i], channel) == 0)
			return 0;
	rc = listen_one(db, channel);
	if (rc < 0)
		return rc;
	nc = realloc(pc->channels, sizeof(*nc) * (pc->nchannels + 1));
	if (!nc)
		return PG_ENOMEM;
	pc->channels = nc;
	if (!(nc[pc->nchannels] = strdup(channel)))
		return PG_ENOMEM;
	pc->nchannels++;
	return 0;
}

static int
pq_notify(struct pg_db *db, const char *channel, const char *payload)
{
	struct pg_db_stmt *s;
	int rc;

	rc = pg_db_prepare(db, "SELECT pg_notify(?, ?)", &s);
	if (rc < 0)
		return rc;
	rc = pg_db_bind_text(s, 1, channel, -1);
	if (rc >= 0)
		rc = pg_db_bind_text(s, 2, payload, -1);
	if (rc >= 0)
		rc = pg_db_step(s);
	pg_db_reset(s);
	return rc < 0 ? rc : 0;
}

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
pq_wait_notify(struct pg_db *db, int timeout_ms, char *channel, size_t clen, char *payload,
	       size_t plen)
{
	struct pq_conn *pc = db->drv;
	int64_t deadline = mono_ms() + timeout_ms;
	PGnotify *n;
	int rc;

	if (PQstatus(pc->conn) == CONNECTION_BAD) {
		reconnect(db);
		if (PQstatus(pc->conn) == CONNECTION_BAD)
			return fail(db, NULL, "reconnect");
	}
	if (pc->need_listen && (rc = relisten(db)) < 0)
		return rc;
	if (pc->lost) {
		pc->lost = 0;
		return pg_error(PG_ECONNLOST, "db",
				"the connection was re-established; notifications may be lost");
	}
	for (;;) {
		struct pollfd pfd = {PQsocket(pc->conn), POLLIN, 0};
		int64_t left;

		if (!PQconsumeInput(pc->conn)) {
			rc = fail(db, NULL, "wait for notification");
			pc->lost = 0; /* told now */
			return rc;
		}
		n = PQnotifies(pc->conn);
		if (n) {
			if (clen)
				snprintf(channel, clen, "%s", n->relname);
			if (plen)
				snprintf(payload, plen, "%s", n->extra ? n->extra : "");
			PQfreemem(n);
			return 1;
		}
		left = deadline - mono_ms();
		if (left <= 0)
			return 0;
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
			return pg_error(PG_EIO, "db", "poll: %s", strerror(errno));
	}
}

/* ---- bulk insert: COPY ... FROM STDIN (FORMAT binary) ---- */

/* PostgreSQL's built-in type oids (pg_type.dat) a bulk value may go into */
enum {
	OID_BOOL = 16,
	OID_BYTEA = 17,
	OID_INT8 = 20,
	OID_INT2 = 21,
	OID_INT4 = 23,
	OID_TEXT = 25,
	OID_FLOAT4 = 700,
	OID_FLOAT8 = 701,
	OID_BPCHAR = 1042,
	OID_VARCHAR = 1043
};

/* The column types of b's table, read once per bulk (they outlive sessions). */
static int
bulk_types(struct pg_db_bulk *b)
{
	struct pg_db *db = b->db;
	size_t n = strlen(b->table) + strlen(b->cols) + 32;
	char *sql = malloc(n);
	unsigned *oid = calloc((size_t)b->ncols, sizeof(*oid));
	PGresult *res;
	int rc;

	if (!sql || !oid) {
		free(sql);
		free(oid);
		return PG_ENOMEM;
	}
	snprintf(sql, n, "SELECT %s FROM %s LIMIT 0", b->cols, b->table);
	res = PQexec(conn_of(db), sql);
	free(sql);
	rc = check(db, res, "bulk columns");
	if (rc == 0 && PQnfields(res) != b->ncols)
		rc = pg_error(PG_ESTORE, "db", "bulk insert into %s: %d columns, %d expected",
			      b->table, PQnfields(res), b->ncols);
	for (int c = 0; rc == 0 && c < b->ncols; c++) {
		oid[c] = (unsigned)PQftype(res, c);
		switch (oid[c]) {
		case OID_BOOL:
		case OID_BYTEA:
		case OID_INT8:
		case OID_INT2:
		case OID_INT4:
		case OID_TEXT:
		case OID_FLOAT4:
		case OID_FLOAT8:
		case OID_BPCHAR:
		case OID_VARCHAR:
			break;
		default:
			rc =
			    pg_error(PG_ENOTSUP, "db", "bulk insert into %s: column %s has type %u",
				     b->table, PQfname(res, c), oid[c]);
		}
	}
	PQclear(res);
	if (rc < 0) {
		free(oid);
		return rc;
	}
	b->drv = oid;
	return 0;
}

static int
put_be64(struct pg_buf *o, uint64_t v)
{
	uint8_t x[8];

	for (int k = 0; k < 8; k++)
		x[k] = (uint8_t)(v >> (56 - 8 * k));
	return pg_buf_append(o, x, 8);
}

/* An integer into an integer or boolean column, its length first. */
static int
put_int(struct pg_buf *o, const struct pg_db_bulk *b, int64_t i, unsigned oid, int col)
{
	int rc = 1; /* 1: out of range; else what appending gave */

	if (oid == OID_INT8 && (rc = pg_buf_append_be32(o, 8)) == 0)
		rc = put_be64(o, (uint64_t)i);
	else if (oid == OID_INT4 && i >= INT32_MIN && i <= INT32_MAX &&
		 (rc = pg_buf_append_be32(o, 4)) == 0)
		rc = pg_buf_append_be32(o, (uint32_t)i);
	else if (oid == OID_INT2 && i >= INT16_MIN && i <= INT16_MAX &&
		 (rc = pg_buf_append_be32(o, 2)) == 0)
		rc = pg_buf_append_be16(o, (uint16_t)i);
	else if (oid == OID_BOOL && (i == 0 || i == 1) && (rc = pg_buf_append_be32(o, 1)) == 0)
		rc = pg_buf_append_byte(o, (uint8_t)i);
	if (rc == 1)
		return pg_error(PG_ERANGE, "db",
				"bulk insert into %s: %lld out of column %d's range", b->table,
				(long long)i, col + 1);
	return rc;
}

/* A real number into a float8 or float4 column, its length first. */
static int
put_real(struct pg_buf *o, double d, unsigned oid)
{
	float f = (float)d;
	uint64_t u8;
	uint32_t u4;

	if (oid == OID_FLOAT4) {
		memcpy(&u4, &f, 4);
		return pg_buf_append_be32(o, 4) < 0 ? PG_ENOMEM : pg_buf_append_be32(o, u4);
	}
	memcpy(&u8, &d, 8);
	return pg_buf_append_be32(o, 8) < 0 ? PG_ENOMEM : put_be64(o, u8);
}

static int
is_int_oid(unsigned oid)
{
	return oid == OID_INT8 || oid == OID_INT4 || oid == OID_INT2 || oid == OID_BOOL;
}

/* One field of a binary COPY row: its length, then the value in the column's binary form. */
static int
put_field(struct pg_buf *o, const struct pg_db_bulk *b, const struct pg_db_bulk_val *v,
	  unsigned oid, int col)
{
	int rc;

	switch (v->type) {
	case PG_DB_T_NULL:
		return pg_buf_append_be32(o, 0xffffffffu);
	case PG_DB_T_TEXT:
		if (oid != OID_TEXT && oid != OID_VARCHAR && oid != OID_BPCHAR && oid != OID_BYTEA)
			break;
		if (v->v.t.len > 0x7fffffffu)
			return PG_ETOOBIG;
		rc = pg_buf_append_be32(o, (uint32_t)v->v.t.len);
		return rc < 0 ? rc : pg_buf_append(o, b->text.data + v->v.t.off, v->v.t.len);
	case PG_DB_T_INT64:
		if (is_int_oid(oid))
			return put_int(o, b, v->v.i, oid, col);
		if (oid == OID_FLOAT8 || oid == OID_FLOAT4)
			return put_real(o, (double)v->v.i, oid);
		break;
	case PG_DB_T_DOUBLE:
		if (oid == OID_FLOAT8 || oid == OID_FLOAT4)
			return put_real(o, v->v.d, oid);
		break;
	default:
		break;
	}
	return pg_error(PG_EINVAL, "db", "bulk insert into %s: column %d (type %u) takes no %s",
			b->table, col + 1, oid,
			v->type == PG_DB_T_TEXT	   ? "text"
			: v->type == PG_DB_T_INT64 ? "integer"
						   : "real number");
}

/* The rows of b as one binary COPY stream (header, rows, trailer). */
static int
copy_data(const struct pg_db_bulk *b, size_t nrows, struct pg_buf *o)
{
	static const uint8_t head[19] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0};
	const unsigned *oid = b->drv;
	int rc = pg_buf_reserve(o, 21 + nrows * ((size_t)b->ncols * 12 + 2) + b->text.len);

	if (rc == 0)
		rc = pg_buf_append(o, head, sizeof(head)); /* signature, flags 0, no extension */
	for (size_t r = 0; rc == 0 && r < nrows; r++) {
		const struct pg_db_bulk_val *row = &b->val[r * (size_t)b->ncols];

		rc = pg_buf_append_be16(o, (uint16_t)b->ncols);
		for (int c = 0; rc == 0 && c < b->ncols; c++)
			rc = put_field(o, b, &row[c], oid[c], c);
	}
	return rc < 0 ? rc : pg_buf_append_be16(o, 0xffff);
}

/* Ends a COPY: its result, then the connection ready for the next command. */
static int
copy_result(struct pg_db *db, int64_t *rows)
{
	PGresult *res;
	int rc = 0, got = 0;

	while ((res = PQgetResult(conn_of(db)))) {
		if (!got) {
			got = 1;
			rc = check(db, res, "bulk insert");
			if (rc == 0)
				*rows = strtoll(PQcmdTuples(res), NULL, 10);
		}
		PQclear(res);
		if (rc == PG_ECONNLOST)
			break; /* reconnected: that session's results are gone */
	}
	return got || rc < 0 ? rc : fail(db, NULL, "bulk insert");
}

static int64_t
pq_bulk_write(struct pg_db_bulk *b)
{
	struct pg_db *db = b->db;
	struct pg_buf o = PG_BUF_INIT((size_t)-1);
	size_t n = strlen(b->table) + strlen(b->cols) + 48;
	char *sql = malloc(n);
	int64_t rows = 0;
	PGresult *res;
	int rc;

	if (!sql)
		return PG_ENOMEM;
	if (PQstatus(conn_of(db)) == CONNECTION_BAD) {
		reconnect(db);
		if (PQstatus(conn_of(db)) == CONNECTION_BAD) {
			free(sql);
			return fail(db, NULL, "reconnect");
		}
	}
	rc = b->drv ? 0 : bulk_types(b);
	if (rc == 0)
		rc = copy_data(b, pg_db_bulk_rows(b), &o);
	if (rc < 0) {
		free(sql);
		pg_buf_release(&o);
		return rc;
	}
	snprintf(sql, n, "COPY %s(%s) FROM STDIN (FORMAT binary)", b->table, b->cols);
	res = PQexec(conn_of(db), sql);
	free(sql);
	if (PQresultStatus(res) != PGRES_COPY_IN) {
		rc = fail(db, res, "bulk insert");
		PQclear(res);
		pg_buf_release(&o);
		return rc < 0 ? rc : PG_ESTORE;
	}
	PQclear(res);
	/* the stream in messages of at most 1 MiB; the server answers after CopyDone */
	for (size_t off = 0; rc == 0 && off < o.len; off += 1u << 20) {
		size_t k = o.len - off < (1u << 20) ? o.len - off : 1u << 20;

		rc = PQputCopyData(conn_of(db), (const char *)o.data + off, (int)k) == 1 ? 0 : -1;
	}
	pg_buf_release(&o);
	if (rc < 0 || PQputCopyEnd(conn_of(db), NULL) != 1) {
		rc = copy_result(db, &rows);
		return rc < 0 ? rc : fail(db, NULL, "bulk insert");
	}
	rc = copy_result(db, &rows);
	return rc < 0 ? rc : rows;
}

static void
pq_bulk_free(struct pg_db_bulk *b)
{
	free(b->drv);
	b->drv = NULL;
}

const struct pg_db_ops pgi_db_postgres_ops = {
    .engine = PG_DB_POSTGRES,
    .open = pq_open,
    .close = pq_close,
    .exec = pq_exec,
    .prepare = pq_prepare,
    .finalize = pq_finalize,
    .step = pq_step,
    .reset = pq_reset,
    .changes = pq_changes,
    .column_count = pq_column_count,
    .column_is_null = pq_column_is_null,
    .column_int64 = pq_column_int64,
    .column_double = pq_column_double,
    .column_text = pq_column_text,
    .column_blob = pq_column_blob,
    .column_type = pq_column_type,
    .column_name = pq_column_name,
    .begin_sql = "BEGIN",
    /* one key for every area: schema steps of all daemons take turns */
    .migrate_lock_sql = "SELECT pg_advisory_xact_lock(7236485)",
    .try_lock = pq_try_lock,
    .unlock = pq_unlock,
    .lock_held = pq_lock_held,
    .listen = pq_listen,
    .notify = pq_notify,
    .wait_notify = pq_wait_notify,
    .bulk_write = pq_bulk_write,
    .bulk_free = pq_bulk_free,
};
