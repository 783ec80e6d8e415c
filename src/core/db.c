/*
 * The store API shared by both engines (include/payguard/db.h): URL
 * dispatch, the per-connection statement cache, typed bindings, retried
 * transactions and per-area migrations. The engines are db_sqlite.c and
 * db_pg.c behind the ops table of db_int.h.
 */
#include "db_int.h"

#include "payguard/error.h"
#include "payguard/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* a libpq keyword string starts with "keyword =" ("host=/run/pg dbname=x") */
static int
is_postgres_url(const char *url)
{
	const char *p = url, *k;

	if (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0)
		return 1;
	while (*p == ' ')
		p++;
	for (k = p; (*p >= 'a' && *p <= 'z') || *p == '_'; p++)
		;
	if (p == k)
		return 0;
	while (*p == ' ')
		p++;
	return *p == '=';
}

int
pg_db_url_is_postgres(const char *url)
{
	return url && is_postgres_url(url);
}

/* The end of a password value at v: a quoted keyword value, or up to a
 * space (keyword strings) or '&' (a URL's query). */
static const char *
value_end(const char *v)
{
	if (*v == '\'') {
		for (v++; *v && *v != '\''; v++)
			if (*v == '\\' && v[1])
				v++;
		return *v ? v + 1 : v;
	}
	while (*v && *v != ' ' && *v != '\t' && *v != '&')
		v++;
	return v;
}

/* Copies s to out with every password=VALUE (a keyword string or a URL's
 * query) written password=***; out has room for 2 * strlen(s) + 1. */
static void
mask_passwords(const char *s, char *out)
{
	const char *p = s;

	while (*p) {
		const char *q = p + 8;
		int key = strncasecmp(p, "password", 8) == 0 &&
			  (p == s || strchr(" \t?&", p[-1]) != NULL);

		while (key && (*q == ' ' || *q == '\t'))
			q++;
		if (!key || *q != '=') {
			*out++ = *p++;
			continue;
		}
		for (q++; *q == ' ' || *q == '\t'; q++)
			;
		memcpy(out, p, (size_t)(q - p));
		out += q - p;
		memcpy(out, "***", 3);
		out += 3;
		p = value_end(q);
	}
	*out = 0;
}

/* "postgresql://user:secret@host/db?password=x" -> "postgresql://user@host/db?password=***";
 * "host=/tmp password=x" -> "host=/tmp password=***" */
char *
pgi_db_redact(const char *url)
{
	const char *scheme, *at, *colon, *end;
	char *out = malloc(2 * strlen(url) + 1);

	if (!out)
		return NULL;
	mask_passwords(url, out);
	/* looked for in the masked text: a password may hold "://" itself */
	scheme = strstr(out, "://");
	if (!scheme)
		return out;
	/* the authority (user:password@host:port) ends at the path or query */
	scheme += 3;
	end = scheme + strcspn(scheme, "/?#");
	at = memchr(scheme, '@', (size_t)(end - scheme));
	colon = at ? memchr(scheme, ':', (size_t)(at - scheme)) : NULL;
	if (colon) /* the user's password: dropped with its colon */
		memmove(out + (colon - out), at, strlen(at) + 1);
	return out;
}

int
pg_db_open(struct pg_db **out, const char *url)
{
	struct pg_db *db;
	const char *conninfo = url;
	int rc;

	*out = NULL;
	if (!url || !*url)
		return pg_error(PG_EINVAL, "db", "empty store URL");
	db = calloc(1, sizeof(*db));
	if (!db)
		return PG_ENOMEM;
	if (strncmp(url, "sqlite:", 7) == 0) {
		db->ops = &pgi_db_sqlite_ops;
		conninfo = url + 7;
	} else if (is_postgres_url(url)) {
		db->ops = &pgi_db_postgres_ops;
	} else {
		db->ops = &pgi_db_sqlite_ops;
	}
	db->name = pgi_db_redact(url);
	if (!db->name) {
		free(db);
		return PG_ENOMEM;
	}
	rc = db->ops->open(db, conninfo);
	if (rc < 0) {
		free(db->name);
		free(db);
		return rc;
	}
	*out = db;
	return 0;
}

static void
param_release(struct pg_db_param *p)
{
	if (p->p != p->small)
		free(p->p);
	p->p = NULL;
	p->type = PG_DB_T_NULL;
	p->len = 0;
}

static void
stmt_free(struct pg_db_stmt *s)
{
	if (s->drv)
		s->db->ops->finalize(s);
	for (int i = 0; s->par && i <= s->nparams; i++)
		param_release(&s->par[i]);
	free(s->par);
	free(s->sql);
	free(s);
}

static void bulk_free(struct pg_db_bulk *b);

void
pg_db_free(struct pg_db *db)
{
	struct pg_db_stmt *s, *next;

	if (!db)
		return;
	for (s = db->stmts; s; s = next) {
		next = s->next;
		stmt_free(s);
	}
	while (db->bulks) {
		struct pg_db_bulk *b = db->bulks;

		db->bulks = b->next;
		bulk_free(b);
	}
	db->ops->close(db);
	while (db->locks) {
		struct pg_db_lock *l = db->locks;

		db->locks = l->next;
		free(l->name);
		free(l);
	}
	free(db->name);
	free(db);
}

enum pg_db_engine
pg_db_engine_of(const struct pg_db *db)
{
	return db->ops->engine;
}

const char *
pg_db_name(const struct pg_db *db)
{
	return db->name;
}

int
pg_db_exec(struct pg_db *db, const char *sql)
{
	return db->ops->exec(db, sql);
}

int
pgi_db_count_params(const char *sql)
{
	int n = 0;

	for (const char *p = sql; *p; p++) {
		if (*p == '\'' || *p == '"') {
			char q = *p;
			/* '' inside a literal is an escaped quote: the loop re-enters */
			while (p[1] && p[1] != q)
				p++;
			if (p[1])
				p++;
		} else if (p[0] == '-' && p[1] == '-') {
			while (p[1] && p[1] != '\n')
				p++;
		} else if (p[0] == '/' && p[1] == '*') {
			p += 2;
			while (*p && !(p[0] == '*' && p[1] == '/'))
				p++;
			if (!*p)
				break;
			p++;
		} else if (*p == '?') {
			n++;
		}
	}
	return n;
}

int
pg_db_prepare(struct pg_db *db, const char *sql, struct pg_db_stmt **out)
{
	struct pg_db_stmt *s, **pp;
	int rc;

	*out = NULL;
	for (pp = &db->stmts; (s = *pp); pp = &s->next) {
		if (strcmp(s->sql, sql) == 0) {
			/* most recently used first: hot statements are found at once */
			*pp = s->next;
			s->next = db->stmts;
			db->stmts = s;
			pg_db_reset(s);
			for (int i = 1; i <= s->nparams; i++)
				param_release(&s->par[i]);
			*out = s;
			return 0;
		}
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return PG_ENOMEM;
	s->db = db;
	s->sql = strdup(sql);
	s->nparams = pgi_db_count_params(sql);
	if (!s->sql) {
		free(s);
		return PG_ENOMEM;
	}
	if (s->nparams > PG_DB_MAX_PARAMS) {
		s->nparams = 0;
		stmt_free(s);
		return pg_error(PG_ETOOBIG, "db", "statement has more than %d parameters",
				PG_DB_MAX_PARAMS);
	}
	s->par = calloc((size_t)s->nparams + 1, sizeof(*s->par));
	if (!s->par) {
		stmt_free(s);
		return PG_ENOMEM;
	}
	rc = db->ops->prepare(db, s);
	if (rc < 0) {
		stmt_free(s);
		return rc;
	}
	s->next = db->stmts;
	db->stmts = s;
	*out = s;
	return 0;
}

static struct pg_db_param *
param(struct pg_db_stmt *s, int i)
{
	if (i < 1 || i > s->nparams) {
		pg_error(PG_ERANGE, "db", "parameter %d of %d", i, s->nparams);
		return NULL;
	}
	if (s->running)
		pg_db_reset(s);
	param_release(&s->par[i]);
	return &s->par[i];
}

int
pg_db_bind_int64(struct pg_db_stmt *s, int i, int64_t v)
{
	struct pg_db_param *p = param(s, i);

	if (!p)
		return PG_ERANGE;
	p->type = PG_DB_T_INT64;
	p->i = v;
	return 0;
}

int
pg_db_bind_double(struct pg_db_stmt *s, int i, double v)
{
	struct pg_db_param *p = param(s, i);

	if (!p)
		return PG_ERANGE;
	p->type = PG_DB_T_DOUBLE;
	p->d = v;
	return 0;
}

static int
bind_bytes(struct pg_db_stmt *s, int i, enum pg_db_type t, const void *v, size_t len)
{
	struct pg_db_param *p = param(s, i);

	if (!p)
		return PG_ERANGE;
	p->p = len < sizeof(p->small) ? p->small : malloc(len + 1);
	if (!p->p)
		return PG_ENOMEM;
	if (len)
		memcpy(p->p, v, len);
	p->p[len] = 0;
	p->len = len;
	p->type = t;
	return 0;
}

int
pg_db_bind_text(struct pg_db_stmt *s, int i, const char *v, long len)
{
	if (!v)
		return pg_db_bind_null(s, i);
	return bind_bytes(s, i, PG_DB_T_TEXT, v, len < 0 ? strlen(v) : (size_t)len);
}

int
pg_db_bind_blob(struct pg_db_stmt *s, int i, const void *v, size_t len)
{
	return bind_bytes(s, i, PG_DB_T_BLOB, v, len);
}

int
pg_db_bind_null(struct pg_db_stmt *s, int i)
{
	return param(s, i) ? 0 : PG_ERANGE;
}

int
pg_db_step(struct pg_db_stmt *s)
{
	int rc;

	if (!s->drv) {
		/* the connection was re-established since this was prepared */
		rc = s->db->ops->prepare(s->db, s);
		if (rc < 0)
			return rc;
	}
	if (!s->running)
		s->running = 1; /* the driver hands over the bindings and sets 2 */
	return s->db->ops->step(s);
}

void
pg_db_reset(struct pg_db_stmt *s)
{
	if (s->drv)
		s->db->ops->reset(s);
	s->running = 0;
}

int64_t
pg_db_changes(const struct pg_db_stmt *s)
{
	return s->drv ? s->db->ops->changes(s) : 0;
}

int
pg_db_column_count(const struct pg_db_stmt *s)
{
	return s->db->ops->column_count(s);
}

int
pg_db_column_is_null(const struct pg_db_stmt *s, int i)
{
	return s->db->ops->column_is_null(s, i);
}

int64_t
pg_db_column_int64(const struct pg_db_stmt *s, int i)
{
	return s->db->ops->column_int64(s, i);
}

double
pg_db_column_double(const struct pg_db_stmt *s, int i)
{
	return s->db->ops->column_double(s, i);
}

const char *
pg_db_column_text(const struct pg_db_stmt *s, int i)
{
	return s->db->ops->column_text(s, i);
}

const void *
pg_db_column_blob(const struct pg_db_stmt *s, int i, size_t *len)
{
	return s->db->ops->column_blob(s, i, len);
}

enum pg_db_col
pg_db_column_type(const struct pg_db_stmt *s, int i)
{
	return s->db->ops->column_type(s, i);
}

const char *
pg_db_column_name(const struct pg_db_stmt *s, int i)
{
	return s->db->ops->column_name(s, i);
}

int
pg_db_begin(struct pg_db *db)
{
	return db->ops->exec(db, db->ops->begin_sql);
}

int
pg_db_commit(struct pg_db *db)
{
	return db->ops->exec(db, "COMMIT");
}

int
pg_db_rollback(struct pg_db *db)
{
	int rc = db->ops->exec(db, "ROLLBACK");

	/* after a lost connection there is nothing to roll back */
	return rc == PG_ECONNLOST ? 0 : rc;
}

static void
pause_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

int
pg_db_transact(struct pg_db *db, int (*fn)(struct pg_db *db, void *arg), void *arg, int tries)
{
	long wait_ms = 5;
	int rc, result;

	for (int t = 1;; t++) {
		result = 0;
		rc = pg_db_begin(db);
		if (rc >= 0)
			rc = result = fn(db, arg);
		if (rc >= 0)
			rc = pg_db_commit(db);
		if (rc >= 0)
			return result;
		pg_db_rollback(db);
		if ((rc != PG_EBUSY && rc != PG_ECONNLOST) || t >= tries)
			return rc;
		pg_debug("db", "transaction try %d: %s; retrying", t, pg_strerror(rc));
		pause_ms(wait_ms);
		if (wait_ms < 500)
			wait_ms *= 2;
	}
}

static int
read_version(struct pg_db *db, const char *area)
{
	struct pg_db_stmt *s;
	int rc;

	rc = pg_db_prepare(db, "SELECT version FROM pg_schema WHERE area = ?", &s);
	if (rc < 0)
		return rc;
	rc = pg_db_bind_text(s, 1, area, -1);
	if (rc < 0)
		return rc;
	rc = pg_db_step(s);
	if (rc == 1)
		rc = (int)pg_db_column_int64(s, 0);
	pg_db_reset(s);
	return rc;
}

int
pg_db_version(struct pg_db *db, const char *area)
{
	return read_version(db, area);
}

struct migrate_step {
	const char *area;
	const struct pg_db_migration *m;
};

static int
migrate_one(struct pg_db *db, void *arg)
{
	struct migrate_step *ms = arg;
	const struct pg_db_migration *m = ms->m;
	const char *sql = m->sql;
	struct pg_db_stmt *s;
	int rc;

	if (db->ops->migrate_lock_sql) {
		rc = pg_db_exec(db, db->ops->migrate_lock_sql);
		if (rc < 0)
			return rc;
	}
	/* another daemon may have applied it while this one waited */
	rc = read_version(db, ms->area);
	if (rc < 0 || rc >= m->version)
		return rc < 0 ? rc : 0;
	if (db->ops->engine == PG_DB_SQLITE && m->sql_sqlite)
		sql = m->sql_sqlite;
	if (db->ops->engine == PG_DB_POSTGRES && m->sql_postgres)
		sql = m->sql_postgres;
	if (sql && *sql) {
		rc = pg_db_exec(db, sql);
		if (rc < 0)
			return rc;
	}
	rc = pg_db_prepare(db,
			   "INSERT INTO pg_schema(area, version) VALUES(?, ?)"
			   " ON CONFLICT(area) DO UPDATE SET version = excluded.version",
			   &s);
	if (rc < 0)
		return rc;
	rc = pg_db_bind_text(s, 1, ms->area, -1);
	if (rc >= 0)
		rc = pg_db_bind_int64(s, 2, m->version);
	if (rc >= 0)
		rc = pg_db_step(s);
	pg_db_reset(s);
	return rc < 0 ? rc : 0;
}

int
pg_db_migrate(struct pg_db *db, const char *area, const struct pg_db_migration *m, size_t n)
{
	int have = read_version(db, area), rc;

	if (have < 0)
		return have;
	for (size_t i = 0; i < n; i++) {
		struct migrate_step ms = {area, &m[i]};

		if (i > 0 && m[i].version <= m[i - 1].version)
			return pg_error(PG_EINVAL, "db", "area %s: migration %d out of order", area,
					m[i].version);
		if (m[i].version <= have)
			continue;
		rc = pg_db_transact(db, migrate_one, &ms, 5);
		if (rc < 0)
			return pg_error(rc, "db", "area %s: migration %d: %s", area, m[i].version,
					pg_last_error());
	}
	return 0;
}

int64_t
pgi_db_lock_key(const char *name)
{
	uint64_t h = 14695981039346656037ULL; /* FNV-1a 64, offset basis */

	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		h ^= *p;
		h *= 1099511628211ULL;
	}
	/* two's complement reinterpretation, the same bits on every node */
	return (int64_t)h;
}

static struct pg_db_lock **
local_lock(struct pg_db *db, const char *name)
{
	struct pg_db_lock **pp;

	for (pp = &db->locks; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->name, name) == 0)
			break;
	return pp;
}

int
pg_db_try_lock(struct pg_db *db, const char *name)
{
	struct pg_db_lock **pp, *l;

	if (!name || !*name)
		return pg_error(PG_EINVAL, "db", "empty lock name");
	if (db->ops->try_lock)
		return db->ops->try_lock(db, pgi_db_lock_key(name));
	/* one node: granted, remembered so lock_held tells the truth */
	pp = local_lock(db, name);
	if (*pp)
		return 1;
	l = calloc(1, sizeof(*l));
	if (!l || !(l->name = strdup(name))) {
		free(l);
		return PG_ENOMEM;
	}
	*pp = l;
	return 1;
}

int
pg_db_unlock(struct pg_db *db, const char *name)
{
	struct pg_db_lock **pp, *l;

	if (!name || !*name)
		return pg_error(PG_EINVAL, "db", "empty lock name");
	if (db->ops->unlock)
		return db->ops->unlock(db, pgi_db_lock_key(name));
	pp = local_lock(db, name);
	if ((l = *pp)) {
		*pp = l->next;
		free(l->name);
		free(l);
	}
	return 0;
}

int
pg_db_lock_held(struct pg_db *db, const char *name)
{
	if (!name || !*name)
		return pg_error(PG_EINVAL, "db", "empty lock name");
	if (db->ops->lock_held)
		return db->ops->lock_held(db, pgi_db_lock_key(name));
	return *local_lock(db, name) ? 1 : 0;
}

int
pg_db_listen(struct pg_db *db, const char *channel)
{
	if (!channel || !*channel)
		return pg_error(PG_EINVAL, "db", "empty channel name");
	return db->ops->listen ? db->ops->listen(db, channel) : 0;
}

int
pg_db_notify(struct pg_db *db, const char *channel, const char *payload)
{
	if (!channel || !*channel)
		return pg_error(PG_EINVAL, "db", "empty channel name");
	return db->ops->notify ? db->ops->notify(db, channel, payload ? payload : "") : 0;
}

int
pg_db_wait_notify(struct pg_db *db, int timeout_ms, char *channel, size_t clen, char *payload,
		  size_t plen)
{
	if (clen)
		channel[0] = 0;
	if (plen)
		payload[0] = 0;
	if (timeout_ms < 0)
		timeout_ms = 0;
	if (db->ops->wait_notify)
		return db->ops->wait_notify(db, timeout_ms, channel, clen, payload, plen);
	pause_ms(timeout_ms);
	return 0;
}

/* ---- bulk insert ---- */

static void
bulk_free(struct pg_db_bulk *b)
{
	if (b->db->ops->bulk_free)
		b->db->ops->bulk_free(b);
	pg_buf_release(&b->text);
	free(b->val);
	free(b->table);
	free(b->cols);
	free(b);
}

int
pg_db_bulk_open(struct pg_db *db, const char *table, const char *cols, struct pg_db_bulk **out)
{
	struct pg_db_bulk *b;

	*out = NULL;
	for (b = db->bulks; b; b = b->next)
		if (strcmp(b->table, table) == 0 && strcmp(b->cols, cols) == 0) {
			pg_db_bulk_clear(b);
			*out = b;
			return 0;
		}
	/* the names go into SQL text: plain identifiers only */
	for (const char *p = table; *p; p++)
		if (!(*p == '_' || *p == '.' || (*p >= 'a' && *p <= 'z') ||
		      (*p >= '0' && *p <= '9')))
			return pg_error(PG_EINVAL, "db", "bulk insert: table name '%s'", table);
	for (const char *p = cols; *p; p++)
		if (!(*p == '_' || *p == ',' || (*p >= 'a' && *p <= 'z') ||
		      (*p >= '0' && *p <= '9')))
			return pg_error(PG_EINVAL, "db", "bulk insert: column list '%s'", cols);
	if (!*table || !*cols)
		return pg_error(PG_EINVAL, "db", "bulk insert: no table or no columns");
	b = calloc(1, sizeof(*b));
	if (!b)
		return PG_ENOMEM;
	b->db = db;
	b->table = strdup(table);
	b->cols = strdup(cols);
	b->ncols = 1;
	for (const char *p = cols; *p; p++)
		b->ncols += *p == ',';
	pg_buf_init(&b->text, (size_t)-1);
	if (!b->table || !b->cols) {
		bulk_free(b);
		return PG_ENOMEM;
	}
	b->next = db->bulks;
	db->bulks = b;
	*out = b;
	return 0;
}

static struct pg_db_bulk_val *
bulk_add(struct pg_db_bulk *b, enum pg_db_type t)
{
	if (b->nval == b->capval) {
		size_t nc = b->capval ? 2 * b->capval : 1024;
		struct pg_db_bulk_val *nv = realloc(b->val, nc * sizeof(*nv));

		if (!nv)
			return NULL;
		b->val = nv;
		b->capval = nc;
	}
	b->val[b->nval].type = t;
	return &b->val[b->nval++];
}

int
pg_db_bulk_int64(struct pg_db_bulk *b, int64_t v)
{
	struct pg_db_bulk_val *x = bulk_add(b, PG_DB_T_INT64);

	if (!x)
		return PG_ENOMEM;
	x->v.i = v;
	return 0;
}

int
pg_db_bulk_double(struct pg_db_bulk *b, double v)
{
	struct pg_db_bulk_val *x = bulk_add(b, PG_DB_T_DOUBLE);

	if (!x)
		return PG_ENOMEM;
	x->v.d = v;
	return 0;
}

int
pg_db_bulk_text(struct pg_db_bulk *b, const char *v, long len)
{
	size_t n = len < 0 ? strlen(v) : (size_t)len, off = b->text.len;
	struct pg_db_bulk_val *x;

	if (pg_buf_append(&b->text, v, n) < 0 || !(x = bulk_add(b, PG_DB_T_TEXT)))
		return PG_ENOMEM;
	x->v.t.off = off;
	x->v.t.len = n;
	return 0;
}

int
pg_db_bulk_null(struct pg_db_bulk *b)
{
	return bulk_add(b, PG_DB_T_NULL) ? 0 : PG_ENOMEM;
}

size_t
pg_db_bulk_rows(const struct pg_db_bulk *b)
{
	return b->nval / (size_t)b->ncols;
}

void
pg_db_bulk_clear(struct pg_db_bulk *b)
{
	b->nval = 0;
	pg_buf_reset(&b->text);
}

/* Binds value v as parameter i of s. */
static int
bind_val(struct pg_db_stmt *s, int i, const struct pg_db_bulk *b, const struct pg_db_bulk_val *v)
{
	switch (v->type) {
	case PG_DB_T_INT64:
		return pg_db_bind_int64(s, i, v->v.i);
	case PG_DB_T_DOUBLE:
		return pg_db_bind_double(s, i, v->v.d);
	case PG_DB_T_TEXT:
		return pg_db_bind_text(s, i, (const char *)b->text.data + v->v.t.off,
				       (long)v->v.t.len);
	default:
		return pg_db_bind_null(s, i);
	}
}

/* Without a driver's own way: one prepared INSERT per row in a savepoint. */
static int64_t
bulk_rows_one_by_one(struct pg_db_bulk *b, size_t nrows)
{
	struct pg_db_stmt *s;
	char *sql = malloc(strlen(b->table) + strlen(b->cols) + 32 + 2 * (size_t)b->ncols);
	char *p = sql;
	int rc;

	if (!sql)
		return PG_ENOMEM;
	p += sprintf(p, "INSERT INTO %s(%s) VALUES(", b->table, b->cols);
	for (int c = 0; c < b->ncols; c++)
		p += sprintf(p, "%s?", c ? "," : "");
	strcpy(p, ")");
	rc = pg_db_prepare(b->db, sql, &s);
	free(sql);
	if (rc < 0)
		return rc;
	rc = pg_db_exec(b->db, "SAVEPOINT pg_db_bulk");
	for (size_t r = 0; rc >= 0 && r < nrows; r++) {
		const struct pg_db_bulk_val *row = &b->val[r * (size_t)b->ncols];

		for (int c = 0; rc >= 0 && c < b->ncols; c++)
			rc = bind_val(s, c + 1, b, &row[c]);
		if (rc >= 0)
			rc = pg_db_step(s);
		pg_db_reset(s);
	}
	if (rc < 0) {
		(void)pg_db_exec(b->db, "ROLLBACK TO pg_db_bulk");
		(void)pg_db_exec(b->db, "RELEASE pg_db_bulk");
		return rc;
	}
	rc = pg_db_exec(b->db, "RELEASE pg_db_bulk");
	return rc < 0 ? rc : (int64_t)nrows;
}

int64_t
pg_db_bulk_write(struct pg_db_bulk *b)
{
	size_t nrows = pg_db_bulk_rows(b);
	int64_t rc;

	if (b->nval % (size_t)b->ncols) {
		pg_db_bulk_clear(b);
		return pg_error(PG_EINVAL, "db", "bulk insert into %s: %zu values for %d columns",
				b->table, b->nval, b->ncols);
	}
	if (!nrows)
		return 0;
	rc = b->db->ops->bulk_write ? b->db->ops->bulk_write(b) : bulk_rows_one_by_one(b, nrows);
	pg_db_bulk_clear(b);
	return rc;
}
