/*
 * Cell-tower database: OpenCellID CSV import into SQLite, an in-memory hash
 * index of cells and location areas, and the signal-weighted position
 * estimate with its accuracy radius (seed 4: "find the base station's actual
 * location"). Great-circle distance lives here too.
 */
#include "pos_internal.h"
#include "payguard/db.h"

#include "payguard/error.h"
#include "payguard/log.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EARTH_R_M 6371008.8 /* IUGG mean Earth radius */
#define DEG	  (M_PI / 180.0)

double
pg_geo_distance_m(double lat1, double lon1, double lat2, double lon2)
{
	double dlat = (lat2 - lat1) * DEG, dlon = (lon2 - lon1) * DEG;
	double a = sin(dlat / 2) * sin(dlat / 2) +
		   cos(lat1 * DEG) * cos(lat2 * DEG) * sin(dlon / 2) * sin(dlon / 2);

	if (a > 1)
		a = 1;
	return 2 * EARTH_R_M * asin(sqrt(a));
}

/* ---- CSV rows ---- */

static const char header[] =
    "radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,"
    "averageSignal";

/* Parses an integer field; empty gives def when allowed. */
static int
int_field(const char *s, size_t n, int64_t lo, int64_t hi, int64_t *out, int empty_ok, int64_t def)
{
	int64_t v = 0;
	size_t i = 0;
	int neg = 0;

	if (n == 0) {
		*out = def;
		return empty_ok ? 0 : -1;
	}
	if (s[0] == '-') {
		neg = 1;
		i = 1;
	}
	if (i == n || n - i > 18)
		return -1;
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (neg)
		v = -v;
	if (v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int
real_field(const char *s, size_t n, double lo, double hi, double *out)
{
	char tmp[40];
	char *end;

	if (n == 0 || n >= sizeof(tmp))
		return -1;
	memcpy(tmp, s, n);
	tmp[n] = 0;
	for (size_t i = 0; i < n; i++)
		if (!strchr("0123456789.-+eE", tmp[i]))
			return -1;
	errno = 0;
	*out = strtod(tmp, &end);
	if (*end || errno || !(*out >= lo && *out <= hi))
		return -1;
	return 0;
}

int
pg_cells_parse_row(const char *line, size_t len, struct pg_cell_rec *rec)
{
	const char *f[14];
	size_t fl[14];
	size_t nf = 0, start = 0;
	int64_t v;
	static const char *const names[14] = {
	    "radio", "mcc",   "net",	 "area",       "cell",	  "unit",    "lon",
	    "lat",   "range", "samples", "changeable", "created", "updated", "averageSignal"};
	int i;

	for (size_t i2 = 0; i2 <= len; i2++) {
		if (i2 == len || line[i2] == ',') {
			if (nf == 14)
				return pg_error(PG_EFORMAT, "cells", "more than 14 fields");
			f[nf] = line + start;
			fl[nf++] = i2 - start;
			start = i2 + 1;
		}
	}
	if (nf != 14)
		return pg_error(PG_EFORMAT, "cells", "%zu fields, expected 14", nf);
	memset(rec, 0, sizeof(*rec));
	i = pg_radio_parse(f[0], fl[0]);
	if (i < 0)
		return pg_error(PG_EFORMAT, "cells", "radio '%.*s' unknown",
				(int)(fl[0] > 8 ? 8 : fl[0]), f[0]);
	rec->id.radio = (uint8_t)i;
#define INTF(idx, lo, hi, eok, def, dst)                                                           \
	do {                                                                                       \
		if (int_field(f[idx], fl[idx], lo, hi, &v, eok, def) < 0)                          \
			return pg_error(PG_EFORMAT, "cells", "field '%s' invalid", names[idx]);    \
		dst = v;                                                                           \
	} while (0)
	INTF(1, 1, 999, 0, 0, rec->id.mcc);
	INTF(2, 0, 999, 0, 0, rec->id.mnc);
	INTF(3, 0, 0xffffffffLL, 0, 0, rec->id.area);
	INTF(4, 0, (1LL << 40) - 1, 0, 0, rec->id.cid);
	INTF(5, -1, 0xffffff, 1, -1, rec->unit);
	INTF(8, 0, 1000000, 1, 0, rec->range);
	INTF(9, 0, 0xffffffffLL, 1, 0, rec->samples);
	INTF(10, 0, 1, 1, 1, rec->changeable);
	INTF(11, 0, 1LL << 40, 1, 0, rec->created);
	INTF(12, 0, 1LL << 40, 1, 0, rec->updated);
	INTF(13, -200, 0, 1, 0, rec->avg_signal);
#undef INTF
	if (real_field(f[6], fl[6], -180, 180, &rec->lon) < 0)
		return pg_error(PG_EFORMAT, "cells", "field 'lon' invalid");
	if (real_field(f[7], fl[7], -90, 90, &rec->lat) < 0)
		return pg_error(PG_EFORMAT, "cells", "field 'lat' invalid");
	rec->id.signal = PG_SIGNAL_NONE;
	rec->id.ta = PG_TA_NONE;
	return 0;
}

static int
cell_row(void *ctx, const char *line, size_t len)
{
	struct pg_db *db = ctx;
	struct pg_cell_rec r;
	struct pg_db_stmt *q;
	int rc = pg_cells_parse_row(line, len, &r);

	if (rc < 0)
		return rc;
	rc = pg_db_prepare(
	    db,
	    "INSERT INTO pos_cells(radio,mcc,net,area,cell,unit,lon,lat,range,samples,"
	    "changeable,created,updated,avg_signal) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
	    " ON CONFLICT(radio,mcc,net,area,cell) DO UPDATE SET unit=excluded.unit,"
	    "lon=excluded.lon,lat=excluded.lat,range=excluded.range,"
	    "samples=excluded.samples,changeable=excluded.changeable,"
	    "created=excluded.created,updated=excluded.updated,"
	    "avg_signal=excluded.avg_signal",
	    &q);
	if (rc < 0)
		return rc;
	pg_db_bind_int64(q, 1, r.id.radio);
	pg_db_bind_int64(q, 2, r.id.mcc);
	pg_db_bind_int64(q, 3, r.id.mnc);
	pg_db_bind_int64(q, 4, r.id.area);
	pg_db_bind_int64(q, 5, (int64_t)r.id.cid);
	if (r.unit >= 0)
		pg_db_bind_int64(q, 6, r.unit);
	else
		pg_db_bind_null(q, 6);
	pg_db_bind_double(q, 7, r.lon);
	pg_db_bind_double(q, 8, r.lat);
	pg_db_bind_int64(q, 9, r.range);
	pg_db_bind_int64(q, 10, r.samples);
	pg_db_bind_int64(q, 11, r.changeable);
	pg_db_bind_int64(q, 12, r.created);
	pg_db_bind_int64(q, 13, r.updated);
	pg_db_bind_int64(q, 14, r.avg_signal);
	rc = pg_db_step(q);
	pg_db_reset(q);
	return rc < 0 ? rc : 0;
}

int
pg_cells_import(struct pg_store *st, const char *path, struct pg_import_stats *stats)
{
	return pgi_pos_import_csv(st, path, header, "cells", cell_row, stats);
}

/* ---- in-memory index ---- */

/* The position sits in the slot so a lookup touches one cache line. */
struct cell_slot {
	uint64_t k1, k2;
	double lat, lon;
	float range;
	uint32_t idx; /* into recs, +1; 0 = empty */
};

struct area_slot {
	uint64_t k1;
	double lat, lon, radius;
	double sum_lat, sum_lon;
	uint32_t n; /* 0 = empty */
};

struct pg_cells {
	struct pg_cell_rec *recs;
	size_t n;
	struct cell_slot *slots;
	size_t mask;
	struct area_slot *areas;
	size_t amask;
};

static inline uint64_t
mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static inline uint64_t
key_area(const struct pg_cell_obs *c)
{
	return (uint64_t)c->radio << 56 | (uint64_t)c->mcc << 46 | (uint64_t)c->mnc << 36 |
	       (uint64_t)c->area;
}

static size_t
pow2_above(size_t n)
{
	size_t c = 16;

	while (c < 2 * n)
		c <<= 1;
	return c;
}

static struct area_slot *
area_slot(struct pg_cells *c, uint64_t k, int create)
{
	size_t i = mix64(k) & c->amask;

	for (;; i = (i + 1) & c->amask) {
		struct area_slot *s = &c->areas[i];

		if (s->n && s->k1 == k)
			return s;
		if (!s->n) {
			if (!create)
				return NULL;
			s->k1 = k;
			return s;
		}
	}
}

static const struct area_slot *
area_find(const struct pg_cells *c, uint64_t k)
{
	return area_slot((struct pg_cells *)c, k, 0);
}

static const struct cell_slot *
slot_find(const struct pg_cells *c, const struct pg_cell_obs *id)
{
	uint64_t k1 = key_area(id), k2 = id->cid;
	size_t i = mix64(k1 ^ mix64(k2)) & c->mask;

	for (;; i = (i + 1) & c->mask) {
		const struct cell_slot *s = &c->slots[i];

		if (!s->idx)
			return NULL;
		if (s->k1 == k1 && s->k2 == k2)
			return s;
	}
}

const struct pg_cell_rec *
pg_cells_find(const struct pg_cells *c, const struct pg_cell_obs *id)
{
	const struct cell_slot *s = slot_find(c, id);

	return s ? &c->recs[s->idx - 1] : NULL;
}

int
pg_cells_count(const struct pg_cells *c)
{
	return c ? (int)c->n : 0;
}

void
pg_cells_free(struct pg_cells *c)
{
	if (!c)
		return;
	free(c->recs);
	free(c->slots);
	free(c->areas);
	free(c);
}

int
pgi_pos_import_csv(struct pg_store *st, const char *path, const char *hdr, const char *what,
		   int (*row)(void *db, const char *line, size_t len),
		   struct pg_import_stats *stats)
{
	struct pg_db *db = st->pdb;
	int rc;

	memset(stats, 0, sizeof(*stats));
	rc = pg_pos_migrate(st);
	if (rc < 0)
		return rc;
	rc = pg_db_begin(db);
	if (rc < 0)
		return rc;
	rc = pgi_pos_csv_foreach(path, hdr, stats, row, db);
	/* the POS servers of every node reload once this commits (sent with
	 * the commit, never without it; SQLite: one node, nothing to tell) */
	if (rc >= 0)
		rc = pg_db_notify(db, PG_POS_REF_CHANNEL, what);
	if (rc < 0) {
		pg_db_rollback(db);
		return rc;
	}
	return pg_db_commit(db);
}

int
pgi_pos_load_rows(struct pg_store *st, const char *sql, size_t size, size_t cap, void **recs,
		  size_t *n, void (*row)(struct pg_db_stmt *q, void *rec))
{
	struct pg_db_stmt *q = NULL;
	unsigned char *a = malloc(cap * size);
	int rc;

	*recs = a;
	*n = 0;
	if (!a)
		return PG_ENOMEM;
	rc = pg_pos_migrate(st);
	if (rc < 0)
		return rc;
	rc = pg_db_prepare(st->pdb, sql, &q);
	if (rc < 0)
		return rc;
	while ((rc = pg_db_step(q)) == 1) {
		if (*n == cap) {
			unsigned char *na = realloc(a, 2 * cap * size);

			if (!na) {
				rc = PG_ENOMEM;
				break;
			}
			*recs = a = na;
			cap *= 2;
		}
		memset(a + *n * size, 0, size);
		row(q, a + *n * size);
		(*n)++;
	}
	pg_db_reset(q);
	return rc < 0 ? rc : 0;
}

/* One pos_cells row into a record. */
static void
cell_from_row(struct pg_db_stmt *q, void *rec)
{
	struct pg_cell_rec *r = rec;

	r->id.radio = (uint8_t)pg_db_column_int64(q, 0);
	r->id.mcc = (uint16_t)pg_db_column_int64(q, 1);
	r->id.mnc = (uint16_t)pg_db_column_int64(q, 2);
	r->id.area = (uint32_t)pg_db_column_int64(q, 3);
	r->id.cid = (uint64_t)pg_db_column_int64(q, 4);
	r->lon = pg_db_column_double(q, 5);
	r->lat = pg_db_column_double(q, 6);
	r->range = (uint32_t)pg_db_column_int64(q, 7);
	r->samples = (uint32_t)pg_db_column_int64(q, 8);
	r->avg_signal = (int)pg_db_column_int64(q, 9);
}

int
pg_cells_load(struct pg_store *st, struct pg_cells **out)
{
	struct pg_cells *c = calloc(1, sizeof(*c));
	void *recs = NULL;
	size_t nareas = 0;
	int rc;

	*out = NULL;
	if (!c)
		return PG_ENOMEM;
	rc = pgi_pos_load_rows(st,
			       "SELECT radio,mcc,net,area,cell,lon,lat,range,samples,avg_signal "
			       "FROM pos_cells",
			       sizeof(*c->recs), 1024, &recs, &c->n, cell_from_row);
	c->recs = recs;
	if (rc < 0)
		goto fail;
	c->mask = pow2_above(c->n) - 1;
	c->slots = calloc(c->mask + 1, sizeof(*c->slots));
	c->amask = c->mask;
	c->areas = calloc(c->amask + 1, sizeof(*c->areas));
	if (!c->slots || !c->areas) {
		rc = PG_ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < c->n; i++) {
		struct pg_cell_rec *r = &c->recs[i];
		uint64_t k1 = key_area(&r->id), k2 = r->id.cid;
		size_t j = mix64(k1 ^ mix64(k2)) & c->mask;
		struct area_slot *a;

		while (c->slots[j].idx)
			j = (j + 1) & c->mask;
		c->slots[j] =
		    (struct cell_slot){k1, k2, r->lat, r->lon, (float)r->range, (uint32_t)i + 1};
		a = area_slot(c, k1, 1);
		if (!a->n)
			nareas++;
		a->n++;
		a->sum_lat += r->lat;
		a->sum_lon += r->lon;
	}
	/* second pass: area centroid, then radius = farthest cell edge from it */
	for (size_t i = 0; i <= c->amask; i++)
		if (c->areas[i].n) {
			c->areas[i].lat = c->areas[i].sum_lat / c->areas[i].n;
			c->areas[i].lon = c->areas[i].sum_lon / c->areas[i].n;
		}
	for (size_t i = 0; i < c->n; i++) {
		struct pg_cell_rec *r = &c->recs[i];
		struct area_slot *a = area_slot(c, key_area(&r->id), 0);
		double d = pg_geo_distance_m(a->lat, a->lon, r->lat, r->lon) + r->range;

		if (d > a->radius)
			a->radius = d;
	}
	pg_info("cells", "%zu cells in %zu location areas loaded", c->n, nareas);
	*out = c;
	return 0;
fail:
	pg_cells_free(c);
	return rc;
}

const char *
pg_confidence_name(int c)
{
	static const char *const n[] = {"none", "low", "medium", "high"};
	return c >= 0 && c <= PG_CONF_HIGH ? n[c] : "?";
}

/* Linear received power relative to -140 dBm; an unreported signal counts as -95 dBm.
 * A table of the 129 possible values, since this runs for every reported cell. */
static double weights[129];
static pthread_once_t weights_once = PTHREAD_ONCE_INIT;

static void
weights_init(void)
{
	for (int i = 0; i <= 128; i++)
		weights[i] = pow(10.0, ((i == 0 ? -95.0 : -(double)i) + 140.0) / 10.0);
}

static inline double
weight(int8_t dbm)
{
	return weights[dbm > 0 ? 0 : -(int)dbm];
}

/*
 * Distance for the accuracy spread: cells seen together are a few km apart, so
 * the equirectangular form (error far below a metre there) replaces haversine;
 * past 1 degree apart it falls back to haversine.
 */
static inline double
near_distance_m(double lat1, double lon1, double lat2, double lon2, double coslat)
{
	double dlat = lat2 - lat1, dlon = lon2 - lon1;

	if (fabs(dlat) > 1 || fabs(dlon) > 1)
		return pg_geo_distance_m(lat1, lon1, lat2, lon2);
	dlon *= coslat;
	return EARTH_R_M * DEG * sqrt(dlat * dlat + dlon * dlon);
}

/* Radius implied by the timing advance: one step is 553.5 m in GSM, 78.12 m in LTE/NR. */
static double
ta_radius(const struct pg_cell_obs *c)
{
	if (c->ta == PG_TA_NONE)
		return -1;
	if (c->radio == PG_RADIO_GSM && c->ta <= 63)
		return (c->ta + 1) * 553.5;
	if ((c->radio == PG_RADIO_LTE || c->radio == PG_RADIO_NR) && c->ta <= 1282)
		return (c->ta + 1) * 78.12;
	return -1;
}

void
pg_cells_prefetch(const struct pg_cells *c, const struct pg_cell_report *r)
{
	if (!c)
		return;
	__builtin_prefetch(
	    &c->slots[mix64(key_area(&r->serving) ^ mix64(r->serving.cid)) & c->mask]);
	for (int i = 0; i < r->nneigh; i++)
		__builtin_prefetch(
		    &c->slots[mix64(key_area(&r->neigh[i]) ^ mix64(r->neigh[i].cid)) & c->mask]);
}

int
pg_cells_estimate(const struct pg_cells *c, const struct pg_cell_report *r, struct pg_estimate *e)
{
	const struct cell_slot *known[1 + PG_CELL_MAX_NEIGH], *serving;
	double w[1 + PG_CELL_MAX_NEIGH], sw = 0, slat = 0, slon = 0, acc = 0, lon0, coslat;
	int n = 0;

	memset(e, 0, sizeof(*e));
	if (!c)
		return 0;
	pthread_once(&weights_once, weights_init);
	serving = slot_find(c, &r->serving);
	if (serving) {
		known[n] = serving;
		w[n++] = weight(r->serving.signal);
		e->confidence = PG_CONF_HIGH;
	}
	for (int i = 0; i < r->nneigh; i++) {
		const struct cell_slot *k = slot_find(c, &r->neigh[i]);

		if (k) {
			known[n] = k;
			w[n++] = weight(r->neigh[i].signal);
		}
	}
	if (n == 0) {
		const struct area_slot *a = area_find(c, key_area(&r->serving));

		if (!a)
			return 0;
		e->lat = a->lat;
		e->lon = a->lon;
		e->acc_m = a->radius;
		e->confidence = PG_CONF_LOW;
		return 0;
	}
	if (!e->confidence)
		e->confidence = PG_CONF_MEDIUM;
	lon0 = known[0]->lon;
	for (int i = 0; i < n; i++) {
		double lon = known[i]->lon;

		/* keep cells either side of the antimeridian together */
		if (lon - lon0 > 180)
			lon -= 360;
		else if (lon0 - lon > 180)
			lon += 360;
		sw += w[i];
		slat += w[i] * known[i]->lat;
		slon += w[i] * lon;
	}
	e->lat = slat / sw;
	e->lon = slon / sw;
	if (e->lon > 180)
		e->lon -= 360;
	else if (e->lon < -180)
		e->lon += 360;
	coslat = cos(e->lat * DEG);
	for (int i = 0; i < n; i++)
		acc += w[i] * (known[i]->range + near_distance_m(e->lat, e->lon, known[i]->lat,
								 known[i]->lon, coslat));
	e->acc_m = acc / sw;
	if (serving) {
		double tr = ta_radius(&r->serving);

		if (tr >= 0) {
			double lim = tr + near_distance_m(e->lat, e->lon, serving->lat,
							  serving->lon, coslat);
			if (lim < e->acc_m)
				e->acc_m = lim;
		}
	}
	e->cells_used = n;
	return 0;
}
