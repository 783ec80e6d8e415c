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
};
