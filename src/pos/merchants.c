/*
 * Merchant registry: terminal ID (field 41) -> merchant ID (field 42) ->
 * registered location, its uncertainty and the merchant's distance limit
 * (seed 4: "the registered location of the merchant behind the terminal").
 */
#include "pos_internal.h"
#include "payguard/db.h"

#include "payguard/error.h"
#include "payguard/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char header[] = "terminal_id,merchant_id,lat,lon,uncertainty_m,limit_m,mcc,name";

/* Copies an ans identifier right-padded with spaces to width (fields 41/42 are fixed). */
static int
ident(const char *s, size_t n, char *out, size_t width)
{
	if (n == 0 || n > width)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return -1;
	memcpy(out, s, n);
	memset(out + n, ' ', width - n);
	out[width] = 0;
	return 0;
}

static int
num(const char *s, size_t n, double lo, double hi, double *out)
{
	char tmp[40];
	char *end;

	if (n == 0 || n >= sizeof(tmp))
		return -1;
	memcpy(tmp, s, n);
	tmp[n] = 0;
	if (strspn(tmp, "0123456789.-+eE") != n)
		return -1;
	errno = 0;
	*out = strtod(tmp, &end);
	if (*end || errno || !(*out >= lo && *out <= hi))
		return -1;
	return 0;
}

int
pg_merchants_parse_row(const char *line, size_t len, struct pg_merchant_rec *rec)
{
	const char *f[8];
	size_t fl[8], nf = 0, start = 0;
	double mcc;
	static const char *const names[] = {"terminal_id",   "merchant_id", "lat", "lon",
					    "uncertainty_m", "limit_m",	    "mcc", "name"};

	/* the name is last and may contain commas */
	for (size_t i = 0; i <= len && nf < 8; i++) {
		if (i == len || (line[i] == ',' && nf < 7)) {
			f[nf] = line + start;
			fl[nf++] = i - start;
			start = i + 1;
		}
	}
	if (nf != 8)
		return pg_error(PG_EFORMAT, "merchants", "%zu fields, expected 8", nf);
	memset(rec, 0, sizeof(*rec));
	if (ident(f[0], fl[0], rec->tid, 8) < 0)
		return pg_error(PG_EFORMAT, "merchants", "field '%s' must be 1-8 printable chars",
				names[0]);
	if (ident(f[1], fl[1], rec->mid, 15) < 0)
		return pg_error(PG_EFORMAT, "merchants", "field '%s' must be 1-15 printable chars",
				names[1]);
	if (num(f[2], fl[2], -90, 90, &rec->lat) < 0 || num(f[3], fl[3], -180, 180, &rec->lon) < 0)
		return pg_error(PG_EFORMAT, "merchants", "lat/lon invalid");
	if (num(f[4], fl[4], 0, 1e6, &rec->unc_m) < 0)
		return pg_error(PG_EFORMAT, "merchants", "field '%s' invalid", names[4]);
	if (num(f[5], fl[5], 1, 2e7, &rec->limit_m) < 0)
		return pg_error(PG_EFORMAT, "merchants", "field '%s' invalid", names[5]);
	if (num(f[6], fl[6], 1, 999, &mcc) < 0 || mcc != (int)mcc)
		return pg_error(PG_EFORMAT, "merchants", "field '%s' invalid", names[6]);
	rec->mcc = (uint16_t)mcc;
	if (fl[7] >= sizeof(rec->name))
		return pg_error(PG_EFORMAT, "merchants", "name longer than %zu",
				sizeof(rec->name) - 1);
	for (size_t i = 0; i < fl[7]; i++)
		if ((unsigned char)f[7][i] < 0x20)
			return pg_error(PG_EFORMAT, "merchants", "control character in name");
	memcpy(rec->name, f[7], fl[7]);
	return 0;
}

static int
merch_row(void *ctx, const char *line, size_t len)
{
	struct pg_db *db = ctx;
	struct pg_merchant_rec r;
	struct pg_db_stmt *q;
	int rc = pg_merchants_parse_row(line, len, &r);

	if (rc < 0)
		return rc;
	rc = pg_db_prepare(db,
			   "INSERT INTO pos_merchants(mid,lat,lon,unc_m,limit_m,mcc,name) "
			   "VALUES(?,?,?,?,?,?,?) ON CONFLICT(mid) DO UPDATE SET lat=excluded.lat,"
			   "lon=excluded.lon,unc_m=excluded.unc_m,limit_m=excluded.limit_m,"
			   "mcc=excluded.mcc,name=excluded.name",
			   &q);
	if (rc < 0)
		return rc;
	pg_db_bind_text(q, 1, r.mid, -1);
	pg_db_bind_double(q, 2, r.lat);
	pg_db_bind_double(q, 3, r.lon);
	pg_db_bind_double(q, 4, r.unc_m);
	pg_db_bind_double(q, 5, r.limit_m);
	pg_db_bind_int64(q, 6, r.mcc);
	pg_db_bind_text(q, 7, r.name, -1);
	rc = pg_db_step(q);
	pg_db_reset(q);
	if (rc < 0)
		return rc;
	rc = pg_db_prepare(db,
			   "INSERT INTO pos_terminals(tid,mid) VALUES(?,?)"
			   " ON CONFLICT(tid) DO UPDATE SET mid=excluded.mid",
			   &q);
	if (rc < 0)
		return rc;
	pg_db_bind_text(q, 1, r.tid, -1);
	pg_db_bind_text(q, 2, r.mid, -1);
	rc = pg_db_step(q);
	pg_db_reset(q);
	return rc < 0 ? rc : 0;
}

int
pg_merchants_import(struct pg_store *st, const char *path, struct pg_import_stats *stats)
{
	return pgi_pos_import_csv(st, path, header, "merchants", merch_row, stats);
}

/* ---- index ---- */

struct pg_merchants {
	struct pg_merchant_rec *recs;
	size_t n;
	uint64_t *keys;
	uint32_t *idx; /* +1; 0 = empty */
	size_t mask;
};

uint64_t
pgi_pos_tid_key(const char *tid, size_t len)
{
	uint64_t k = 0;

	for (size_t i = 0; i < 8; i++)
		k = k << 8 | (uint8_t)(i < len ? tid[i] : ' ');
	return k;
}

static inline size_t
hslot(uint64_t k, size_t mask)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	return (size_t)k & mask;
}

const struct pg_merchant_rec *
pgi_merchants_find(const struct pg_merchants *m, const char *tid, size_t len)
{
	uint64_t k;
	size_t i;

	if (!m || len > 8)
		return NULL;
	k = pgi_pos_tid_key(tid, len);
	for (i = hslot(k, m->mask);; i = (i + 1) & m->mask) {
		if (!m->idx[i])
			return NULL;
		if (m->keys[i] == k)
			return &m->recs[m->idx[i] - 1];
	}
}

void
pgi_merchants_free(struct pg_merchants *m)
{
	if (!m)
		return;
	free(m->recs);
	free(m->keys);
	free(m->idx);
	free(m);
}

/* One row of the terminals joined with their merchants into a record. */
static void
merchant_from_row(struct pg_db_stmt *q, void *rec)
{
	struct pg_merchant_rec *r = rec;

	snprintf(r->tid, sizeof(r->tid), "%s", pg_db_column_text(q, 0));
	snprintf(r->mid, sizeof(r->mid), "%s", pg_db_column_text(q, 1));
	r->lat = pg_db_column_double(q, 2);
	r->lon = pg_db_column_double(q, 3);
	r->unc_m = pg_db_column_double(q, 4);
	r->limit_m = pg_db_column_double(q, 5);
	r->mcc = (uint16_t)pg_db_column_int64(q, 6);
	snprintf(r->name, sizeof(r->name), "%s", pg_db_column_text(q, 7));
}

int
pgi_merchants_load(struct pg_store *st, struct pg_merchants **out)
{
	struct pg_merchants *m = calloc(1, sizeof(*m));
	void *recs = NULL;
	size_t size = 16;
	int rc;

	*out = NULL;
	if (!m)
		return PG_ENOMEM;
	rc = pgi_pos_load_rows(st,
			       "SELECT t.tid,m.mid,m.lat,m.lon,m.unc_m,m.limit_m,m.mcc,m.name FROM "
			       "pos_terminals t JOIN pos_merchants m ON m.mid=t.mid",
			       sizeof(*m->recs), 256, &recs, &m->n, merchant_from_row);
	m->recs = recs;
	if (rc < 0)
		goto fail;
	while (size < 2 * m->n)
		size <<= 1;
	m->mask = size - 1;
	m->keys = calloc(size, sizeof(*m->keys));
	m->idx = calloc(size, sizeof(*m->idx));
	if (!m->keys || !m->idx) {
		rc = PG_ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < m->n; i++) {
		uint64_t k = pgi_pos_tid_key(m->recs[i].tid, strlen(m->recs[i].tid));
		size_t j = hslot(k, m->mask);

		while (m->idx[j])
			j = (j + 1) & m->mask;
		m->keys[j] = k;
		m->idx[j] = (uint32_t)i + 1;
	}
	pg_info("merchants", "%zu terminals loaded", m->n);
	*out = m;
	return 0;
fail:
	pgi_merchants_free(m);
	return rc;
}

size_t
pgi_merchants_n(const struct pg_merchants *m)
{
	return m ? m->n : 0;
}

const struct pg_merchant_rec *
pgi_merchants_at(const struct pg_merchants *m, size_t i)
{
	return m && i < m->n ? &m->recs[i] : NULL;
}

size_t
pgi_merchants_index(const struct pg_merchants *m, const struct pg_merchant_rec *r)
{
	return (size_t)(r - m->recs);
}
