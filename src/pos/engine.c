/*
 * The relocation policy of seed 4 and its records: distance between the
 * estimated terminal position and the merchant, less both uncertainties,
 * against the merchant's limit; country (MCC) mismatch; N moved transactions
 * in a window raise an alert. Decisions are queued and written by a group
 * commit so a response is only sent once its record is in the store.
 */
#include "pos_internal.h"

#include "payguard/clock.h"
#include "payguard/db.h"
#include "payguard/error.h"
#include "payguard/events.h"
#include "payguard/log.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RING 32

/*
 * A batch is written with multi-row INSERTs of these sizes (largest first),
 * so a PostgreSQL store sees a few round trips per group commit, not one per
 * transaction; SQLite saves the per-statement work too.
 */
static const int CHUNK_ROWS[4] = {64, 16, 4, 1};
#define TXN_COLS 20

void
pg_pos_policy_default(struct pg_pos_policy *p)
{
	memset(p, 0, sizeof(*p));
	p->alert_n = 3;
	p->window_ms = 3600 * 1000;
	p->mcc_strikes = 0; /* 0 = same as alert_n: one country mismatch alerts at once */
	p->decline_moved = 0;
	memcpy(p->decline_code, "59", 3);
	p->cell_field = 62;
}

const char *
pg_decision_name(int d)
{
	static const char *const n[] = {"in_place", "moved", "undetermined", "unregistered",
					"format_error"};
	return d >= 0 && d <= PG_DEC_FORMAT ? n[d] : "?";
}

int
pg_pos_report_parse(const char *list, unsigned *mask)
{
	unsigned m = 0;
	const char *p = list;

	*mask = 0;
	if (!list || strcmp(list, "none") == 0)
		return 0;
	for (;;) {
		size_t n = strcspn(p, ",");
		int d = PG_DEC_FORMAT + 1;

		for (int i = 0; i <= PG_DEC_FORMAT; i++)
			if (strlen(pg_decision_name(i)) == n &&
			    strncmp(p, pg_decision_name(i), n) == 0)
				d = i;
		if (d > PG_DEC_FORMAT)
			return pg_error(PG_EINVAL, "policy",
					"'%.*s' is no decision (in_place, moved, undetermined, "
					"unregistered, format_error, or none)",
					(int)(n > 40 ? 40 : n), p);
		m |= 1u << d;
		if (!p[n])
			break;
		p += n + 1;
	}
	*mask = m;
	return 0;
}

const char *
pg_reason_name(int r)
{
	static const char *const n[] = {"", "distance", "country", "unknown_cell", "no_cell_data"};
	return r >= 0 && r <= PG_RSN_NO_TLV ? n[r] : "?";
}

struct term_state {
	int64_t strikes[RING];
	uint8_t head, count;
};

struct pg_pos_engine {
	struct pg_store *st;
	struct pg_pos_policy pol;
	struct pg_cells *cells;
	struct pg_merchants *merchants;
	struct term_state *terms; /* parallel to the merchant records */
	struct pos_record *q;
	size_t nq, capq;
	/* SQLite: ins_txn without ON CONFLICT and RETURNING, tried first */
	struct pg_db_stmt *ins_plain[4];
	/* the connection's statements, prepared once (db.h) */
	struct pg_db_stmt *find_alert, *upd_alert, *ins_alert, *link_txns;
	/* the store's strike count (recent moved rows of a terminal) and, on
	 * PostgreSQL, the lock that makes two servers count one after the other */
	struct pg_db_stmt *recent_moved, *lock_term;
	/* multi-row inserts of CHUNK_ROWS[i] transactions: one round trip each */
	struct pg_db_stmt *ins_txn[4];
	/* PostgreSQL, when a batch's COPY met a row already stored: the batch
	 * again as one statement of column arrays skipping such rows, the new
	 * rows returned (alerts count them) or not (nothing depends on them) */
	struct pg_db_stmt *ins_arr, *ins_arr_dedup;
	struct pg_buf cols[TXN_COLS]; /* the array literals being built */
	/* PostgreSQL: a batch as one binary COPY (db.h bulk insert), the first
	 * try of every batch of BULK_MIN_ROWS or more; the arrays when it met a
	 * row already stored, or for a smaller batch */
	struct pg_db_bulk *bulk;
};

static struct term_state *
term_of(struct pg_pos_engine *e, const struct pg_merchant_rec *m)
{
	return &e->terms[pgi_merchants_index(e->merchants, m)];
}

/*
 * Adds k strikes at time t and says whether the n-th most recent strike is
 * still inside the window ending at t (n <= RING), i.e. whether n strikes fall
 * in the window. O(1): this runs for every moved transaction.
 */
static int
strike(struct term_state *s, int64_t t, unsigned k, unsigned n, int64_t window)
{
	for (unsigned i = 0; i < k && i < RING; i++) {
		s->strikes[s->head] = t;
		s->head = (uint8_t)((s->head + 1) % RING);
		if (s->count < RING)
			s->count++;
	}
	if (s->count < n)
		return 0;
	return s->strikes[(s->head + RING - n) % RING] > t - window;
}

/* The SQL types of the TXN_COLS columns, in bind_txn's order. */
static const char *const txn_types[TXN_COLS] = {
    "bigint", "text",	"text",	  "text", "text", "text", "text", "text",   "float8", "float8",
    "float8", "float8", "float8", "text", "int",  "int",  "int",  "bigint", "bigint", "text"};

/*
 * PostgreSQL: the binary COPY that writes a batch (write_records), and for
 * a batch it refused (a row stored already) or a batch of a few rows one
 * INSERT ... SELECT FROM unnest() ... ON CONFLICT DO NOTHING, each column
 * one array parameter: 20 parameters per batch whatever its size, one round
 * trip.
 */
static int
prepare_arrays(struct pg_pos_engine *e)
{
	static const char head[] =
	    "INSERT INTO pos_txn(ts,tid,mid,mti,stan,f7,decision,reason,distance_m,"
	    "excess_m,est_lat,est_lon,acc_m,confidence,radio,mcc,mnc,area,cell,rc)"
	    " SELECT * FROM unnest(";
	char sql[1024], *p = sql;
	int rc;

	p += sprintf(p, "%s", head);
	for (int c = 0; c < TXN_COLS; c++)
		p += sprintf(p, "%s?::%s[]", c ? "," : "", txn_types[c]);
	p += sprintf(p, ") ON CONFLICT DO NOTHING");
	rc = pg_db_prepare(e->st->pdb, sql, &e->ins_arr_dedup);
	if (rc < 0)
		return rc;
	strcpy(p, " RETURNING ts,tid,stan,f7");
	rc = pg_db_prepare(e->st->pdb, sql, &e->ins_arr);
	for (int c = 0; rc >= 0 && c < TXN_COLS; c++)
		pg_buf_init(&e->cols[c], (size_t)-1);
	if (rc >= 0)
		rc = pg_db_bulk_open(e->st->pdb, "pos_txn",
				     "ts,tid,mid,mti,stan,f7,decision,reason,distance_m,excess_m,"
				     "est_lat,est_lon,acc_m,confidence,radio,mcc,mnc,area,cell,rc",
				     &e->bulk);
	return rc;
}

static int
prepare(struct pg_pos_engine *e)
{
	struct {
		struct pg_db_stmt **s;
		const char *sql;
	} q[] = {
	    {&e->find_alert, "SELECT id FROM pos_alerts WHERE tid=? AND state!='closed' "
			     "ORDER BY id DESC LIMIT 1"},
	    {&e->upd_alert, "UPDATE pos_alerts SET strikes=strikes+?, updated_ms=?, evidence=?"
			    " WHERE id=?"},
	    {&e->ins_alert,
	     "INSERT INTO pos_alerts(tid,mid,state,reason,opened_ms,updated_ms,"
	     "strikes,evidence) VALUES(?,?,'open',?,?,?,0,?)"
	     " ON CONFLICT(tid, reason) WHERE state != 'closed' DO NOTHING RETURNING id"},
	    {&e->link_txns, "UPDATE pos_txn SET alert_id=? WHERE tid=? AND decision='moved' "
			    "AND ts>? AND alert_id IS NULL"},
	    /* the newest first, as many as decide (pos_txn_moved: per day partition) */
	    {&e->recent_moved, "SELECT ts, reason, stan, f7 FROM pos_txn WHERE tid=? AND "
			       "decision='moved' AND ts>? ORDER BY ts DESC LIMIT ?"},
	};

	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		int rc = pg_db_prepare(e->st->pdb, q[i].sql, q[i].s);

		if (rc < 0)
			return rc;
	}
	/*
	 * A transaction-level advisory lock per terminal (two-key form: its own
	 * key space, apart from the one-key locks of migrations and partitions).
	 * SQLite writes one transaction at a time (BEGIN IMMEDIATE): no lock.
	 */
	if (pg_db_engine_of(e->st->pdb) == PG_DB_POSTGRES) {
		int rc =
		    pg_db_prepare(e->st->pdb, "SELECT pg_advisory_xact_lock(7236487, hashtext(?))",
				  &e->lock_term);

		if (rc < 0)
			return rc;
	}
	for (size_t i = 0; i < sizeof(CHUNK_ROWS) / sizeof(CHUNK_ROWS[0]); i++) {
		static const char head[] =
		    "INSERT INTO pos_txn(ts,tid,mid,mti,stan,f7,decision,reason,distance_m,"
		    "excess_m,est_lat,est_lon,acc_m,confidence,radio,mcc,mnc,area,cell,rc) VALUES";
		/* the same transaction again (a stream's redelivery) is stored once;
		 * the rows that are new come back, so only they strike an alert */
		static const char tail[] = " ON CONFLICT DO NOTHING RETURNING ts,tid,stan,f7";
		static const char row[] = "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
		size_t n = (size_t)CHUNK_ROWS[i];
		char *sql = malloc(sizeof(head) + n * sizeof(row) + sizeof(tail));
		char *p = sql;
		int rc;

		if (!sql)
			return PG_ENOMEM;
		p += sprintf(p, "%s", head);
		for (size_t k = 0; k < n; k++)
			p += sprintf(p, "%s%s", k ? "," : "", row);
		if (pg_db_engine_of(e->st->pdb) == PG_DB_SQLITE)
			rc = pg_db_prepare(e->st->pdb, sql, &e->ins_plain[i]);
		else
			rc = 0;
		strcpy(p, tail);
		if (rc == 0)
			rc = pg_db_prepare(e->st->pdb, sql, &e->ins_txn[i]);
		free(sql);
		if (rc < 0)
			return rc;
	}
	return pg_db_engine_of(e->st->pdb) == PG_DB_POSTGRES ? prepare_arrays(e) : 0;
}

/* Rebuilds the per-terminal windows from the moved transactions still inside them. */
static int
reload_windows(struct pg_pos_engine *e, int64_t now)
{
	struct pg_db_stmt *q;
	int rc = pg_db_prepare(e->st->pdb,
			       "SELECT tid, ts, reason FROM pos_txn WHERE decision='moved' "
			       "AND ts>? ORDER BY ts",
			       &q);

	if (rc < 0)
		return rc;
	pg_db_bind_int64(q, 1, now - e->pol.window_ms);
	while ((rc = pg_db_step(q)) == 1) {
		const char *tid = pg_db_column_text(q, 0);
		const struct pg_merchant_rec *m =
		    pgi_merchants_find(e->merchants, tid, strlen(tid));
		const char *why = pg_db_column_text(q, 2);

		if (m)
			strike(term_of(e, m), pg_db_column_int64(q, 1),
			       strcmp(why, "country") == 0 ? e->pol.mcc_strikes : 1, e->pol.alert_n,
			       e->pol.window_ms);
	}
	pg_db_reset(q);
	return rc;
}

int
pg_pos_engine_open_with(struct pg_pos_engine **out, struct pg_store *st,
			const struct pg_pos_policy *pol, struct pg_cells *cells)
{
	struct pg_pos_engine *e = calloc(1, sizeof(*e));
	int rc;

	*out = NULL;
	if (!e) {
		pg_cells_free(cells);
		return PG_ENOMEM;
	}
	e->st = st;
	e->pol = *pol;
	e->cells = cells;
	if (e->pol.alert_n < 1 || e->pol.alert_n > RING) {
		rc = pg_error(PG_EINVAL, "policy", "alert count %u not in 1..%d", e->pol.alert_n,
			      RING);
		goto fail;
	}
	if (!e->pol.mcc_strikes)
		e->pol.mcc_strikes = e->pol.alert_n;
	if (e->pol.cell_field < 2 || e->pol.cell_field > 128) {
		rc = pg_error(PG_EINVAL, "policy", "cell field %d not 2..128", e->pol.cell_field);
		goto fail;
	}
	rc = pgi_merchants_load(st, &e->merchants);
	if (rc < 0)
		goto fail;
	e->terms = calloc(pgi_merchants_n(e->merchants) + 1, sizeof(*e->terms));
	if (!e->terms) {
		rc = PG_ENOMEM;
		goto fail;
	}
	rc = prepare(e);
	if (rc < 0)
		goto fail;
	rc = reload_windows(e, pg_wall_ms());
	if (rc < 0)
		goto fail;
	*out = e;
	return 0;
fail:
	pg_pos_engine_free(e);
	return rc;
}

int
pg_pos_engine_open(struct pg_pos_engine **out, struct pg_store *st, const struct pg_pos_policy *pol)
{
	struct pg_cells *cells = NULL;
	int rc = pg_cells_load(st, &cells);

	if (rc < 0)
		return rc;
	return pg_pos_engine_open_with(out, st, pol, cells);
}

int
pg_pos_engine_swap_ref(struct pg_pos_engine *e, struct pg_cells *cells,
		       struct pg_merchants *merchants)
{
	size_t n = pgi_merchants_n(merchants);
	struct term_state *terms = calloc(n + 1, sizeof(*terms));

	if (!terms) {
		pg_cells_free(cells);
		pgi_merchants_free(merchants);
		return PG_ENOMEM;
	}
	/* a terminal's strikes follow its id into the new index */
	for (size_t i = 0; i < n; i++) {
		const struct pg_merchant_rec *r = pgi_merchants_at(merchants, i);
		const struct pg_merchant_rec *old =
		    pgi_merchants_find(e->merchants, r->tid, strlen(r->tid));

		if (old)
			terms[i] = *term_of(e, old);
	}
	pg_cells_free(e->cells);
	pgi_merchants_free(e->merchants);
	free(e->terms);
	e->cells = cells;
	e->merchants = merchants;
	e->terms = terms;
	return 0;
}

void
pg_pos_engine_free(struct pg_pos_engine *e)
{
	if (!e)
		return;
	/* the statements belong to the store's connection */
	pg_cells_free(e->cells);
	pgi_merchants_free(e->merchants);
	free(e->terms);
	free(e->q);
	for (int c = 0; c < TXN_COLS; c++)
		pg_buf_release(&e->cols[c]);
	free(e);
}

struct pg_store *
pg_pos_engine_store(struct pg_pos_engine *e)
{
	return e->st;
}

void
pg_pos_engine_detach_store(struct pg_pos_engine *e)
{
	e->nq = 0;
	e->st = NULL;
}

size_t
pg_pos_engine_pending(const struct pg_pos_engine *e)
{
	return e->nq;
}

static void
copy_field(const struct pg_iso_msg *m, int f, char *out, size_t outlen)
{
	size_t n = 0;
	const uint8_t *v;

	out[0] = 0;
	if (!pg_iso_has(m, f))
		return;
	v = pg_iso_get(m, f, &n);
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, v, n);
	out[n] = 0;
}

int
pg_pos_engine_check(struct pg_pos_engine *e, const struct pg_iso_msg *req, int64_t now_ms,
		    struct pg_pos_result *res)
{
	const struct pg_merchant_rec *m = NULL;
	struct pg_cell_report cr;
	struct pos_record *r = NULL;
	size_t tl = 0, ml = 0, cl = 0;
	const uint8_t *tid = NULL, *mid, *cell;
	int have_cell = 0, tlv_rc = PG_ENOENT;

	memset(res, 0, sizeof(*res));
	memcpy(res->rc, "00", 3);
	if (!pg_iso_has(req, 41)) {
		res->decision = PG_DEC_FORMAT;
		memcpy(res->rc, "30", 3);
		goto record;
	}
	/* decode the cells first so their cache misses overlap the merchant lookup */
	if (pg_iso_has(req, e->pol.cell_field)) {
		cell = pg_iso_get(req, e->pol.cell_field, &cl);
		tlv_rc = pg_celltlv_decode(cell, cl, &cr);
		if (tlv_rc == 0)
			pg_cells_prefetch(e->cells, &cr);
	}
	tid = pg_iso_get(req, 41, &tl);
	m = pgi_merchants_find(e->merchants, (const char *)tid, tl);
	if (m && pg_iso_has(req, 42)) {
		mid = pg_iso_get(req, 42, &ml);
		if (ml != 15 || memcmp(mid, m->mid, 15) != 0)
			m = NULL; /* the terminal is registered to another merchant */
	}
	if (!m) {
		res->decision = PG_DEC_UNREGISTERED;
		memcpy(res->rc, "03", 3);
		goto record;
	}
	if (!pg_iso_has(req, e->pol.cell_field)) {
		res->decision = PG_DEC_UNDETERMINED;
		res->reason = PG_RSN_NO_TLV;
		goto record;
	}
	if (tlv_rc < 0) {
		res->decision = PG_DEC_FORMAT;
		memcpy(res->rc, "30", 3);
		goto record;
	}
	have_cell = 1;
	pg_cells_estimate(e->cells, &cr, &res->est);
	if (res->est.confidence >= PG_CONF_LOW) {
		res->distance_m = pg_geo_distance_m(res->est.lat, res->est.lon, m->lat, m->lon);
		res->excess_m = res->distance_m - res->est.acc_m - m->unc_m;
	}
	if (cr.serving.mcc != m->mcc) {
		res->decision = PG_DEC_MOVED;
		res->reason = PG_RSN_COUNTRY;
	} else if (res->est.confidence < PG_CONF_MEDIUM) {
		/* an unknown cell never accuses a terminal: the area guess is evidence only */
		res->decision = PG_DEC_UNDETERMINED;
		res->reason = PG_RSN_NO_CELL;
	} else if (res->excess_m > m->limit_m) {
		res->decision = PG_DEC_MOVED;
		res->reason = PG_RSN_DISTANCE;
	} else {
		res->decision = PG_DEC_IN_PLACE;
	}
	if (res->decision == PG_DEC_MOVED) {
		res->alert = strike(term_of(e, m), now_ms,
				    res->reason == PG_RSN_COUNTRY ? e->pol.mcc_strikes : 1,
				    e->pol.alert_n, e->pol.window_ms);
		if (e->pol.decline_moved)
			memcpy(res->rc, e->pol.decline_code, 3);
	}
record:
	if (!e->st)
		return 0;
	if (e->nq == e->capq) {
		size_t nc = e->capq ? 2 * e->capq : 256;
		struct pos_record *nq = realloc(e->q, nc * sizeof(*nq));

		if (!nq)
			return PG_ENOMEM;
		e->q = nq;
		e->capq = nc;
	}
	r = &e->q[e->nq++];
	r->ts = now_ms;
	r->window_start = now_ms - e->pol.window_ms;
	r->res = *res;
	memset(&r->merchant, 0, sizeof(r->merchant));
	if (m)
		r->merchant =
		    (struct pos_merchant_copy){m->lat, m->lon, m->unc_m, m->limit_m, m->mcc, 1};
	r->have_cell = have_cell;
	if (have_cell)
		r->cell = cr.serving;
	copy_field(req, 41, r->tid, sizeof(r->tid));
	copy_field(req, 42, r->mid, sizeof(r->mid));
	copy_field(req, 11, r->stan, sizeof(r->stan));
	copy_field(req, 7, r->f7, sizeof(r->f7));
	memcpy(r->mti, req->mti, 5);
	return 0;
}

static const int echo_fields[] = {3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 70};

int
pg_pos_engine_respond(struct pg_pos_engine *e, const struct pg_iso_msg *req,
		      const struct pg_pos_result *res, struct pg_iso_msg *resp)
{
	char mti[5], text[26];
	int rc = 0;

	(void)e;
	pg_iso_msg_init(resp);
	if (req->mti[2] < '0' || (req->mti[2] - '0') % 2)
		return pg_error(PG_EFORMAT, "pos", "MTI %s is not a request", req->mti);
	memcpy(mti, req->mti, 5);
	mti[2] = (char)(mti[2] + 1);
	pg_iso_set_mti(resp, mti);
	for (size_t i = 0; rc == 0 && i < sizeof(echo_fields) / sizeof(echo_fields[0]); i++)
		if (pg_iso_has(req, echo_fields[i])) {
			size_t n;
			const uint8_t *v = pg_iso_get(req, echo_fields[i], &n);

			rc = pg_iso_set(resp, echo_fields[i], v, n);
		}
	if (rc < 0)
		return rc;
	if (!res)
		return pg_iso_set_str(resp, 39, "00");
	rc = pg_iso_set(resp, 39, res->rc, 2);
	if (rc == 0) {
		const char *dn = pg_decision_name(res->decision);
		size_t dl = strlen(dn);

		/* no snprintf: this runs for every answer */
		if (dl > sizeof(text) - 7)
			dl = sizeof(text) - 7;
		memcpy(text, dn, dl);
		memcpy(text + dl, res->alert ? " alert" : "", res->alert ? 7 : 1);
		for (char *p = text; *p; p++)
			if (*p >= 'a' && *p <= 'z')
				*p = (char)(*p - 32);
		rc = pg_iso_set_str(resp, 44, text);
	}
	return rc;
}

static void
evidence(const struct pos_record *r, char *out, size_t n)
{
	const struct pos_merchant_copy *m = &r->merchant;

	snprintf(out, n,
		 "{\"reason\":\"%s\",\"distance_m\":%.1f,\"excess_m\":%.1f,"
		 "\"estimate\":{\"lat\":%.6f,\"lon\":%.6f,\"acc_m\":%.1f,\"confidence\":\"%s\","
		 "\"cells\":%d},\"merchant\":{\"lat\":%.6f,\"lon\":%.6f,\"uncertainty_m\":%.1f,"
		 "\"limit_m\":%.1f,\"mcc\":%u},\"cell\":{\"radio\":\"%s\",\"mcc\":%u,\"mnc\":%u,"
		 "\"area\":%u,\"cid\":%llu},\"stan\":\"%s\"}",
		 pg_reason_name(r->res.reason), r->res.distance_m, r->res.excess_m, r->res.est.lat,
		 r->res.est.lon, r->res.est.acc_m, pg_confidence_name(r->res.est.confidence),
		 r->res.est.cells_used, m->lat, m->lon, m->unc_m, m->limit_m, m->mcc,
		 pg_radio_name(r->cell.radio), r->cell.mcc, r->cell.mnc, r->cell.area,
		 (unsigned long long)r->cell.cid, r->stan);
}

static int
step_done(struct pg_db_stmt *s)
{
	int rc = pg_db_step(s);

	pg_db_reset(s);
	return rc < 0 ? rc : 0;
}

static int
find_alert(struct pg_pos_engine *e, const struct pos_record *r, int64_t *id)
{
	int rc;

	pg_db_bind_text(e->find_alert, 1, r->tid, -1);
	rc = pg_db_step(e->find_alert);
	if (rc == 1)
		*id = pg_db_column_int64(e->find_alert, 0);
	pg_db_reset(e->find_alert);
	return rc < 0 ? rc : 0;
}

/* The event of an alert's change, in the transaction that makes it (issue 15). */
static int
alert_event(struct pg_db *db, const char *event, int64_t id, const char *tid, const char *mid,
	    const char *reason, const char *evidence_json)
{
	json_t *d = json_pack("{s:I, s:s, s:s*, s:s*}", "alert", (json_int_t)id, "terminal", tid,
			      "merchant", mid, "reason", reason);
	json_t *ev = evidence_json ? json_loads(evidence_json, 0, NULL) : NULL;
	int rc;

	if (!d) {
		json_decref(ev);
		return PG_ENOMEM;
	}
	if (ev)
		json_object_set_new(d, "evidence", ev);
	rc = pg_event_emit(db, "pos", event, tid, d, NULL);
	json_decref(d);
	return rc;
}

/*
 * A decision the policy marks as reportable (issue 15), in the transaction
 * that stores its transaction: an acquirer's risk system hears of every
 * unregistered terminal or undetermined position as it is stored, once
 * (a redelivered transaction is not fresh, so it is not reported again).
 */
static int
decision_event(struct pg_db *db, const struct pos_record *r)
{
	json_t *d =
	    json_pack("{s:s, s:s*, s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "terminal", r->tid,
		      "merchant", r->mid[0] ? r->mid : NULL, "mti", r->mti, "stan", r->stan, "f7",
		      r->f7, "decision", pg_decision_name(r->res.decision), "reason",
		      pg_reason_name(r->res.reason), "rc", r->res.rc, "ts_ms", (json_int_t)r->ts);
	int rc;

	if (!d)
		return PG_ENOMEM;
	if (r->res.est.confidence) {
		json_object_set_new(d, "distance_m", json_real(r->res.distance_m));
		json_object_set_new(d, "excess_m", json_real(r->res.excess_m));
	}
	if (r->have_cell)
		json_object_set_new(d, "cell",
				    json_pack("{s:i, s:i, s:I, s:I}", "mcc", r->cell.mcc, "mnc",
					      r->cell.mnc, "area", (json_int_t)r->cell.area, "cid",
					      (json_int_t)r->cell.cid));
	rc = pg_event_emit(db, "pos", "decision_reported", r->tid, d, NULL);
	json_decref(d);
	return rc;
}

/*
 * The k alerting transactions of one terminal in a batch, first to last:
 * the alert is found or opened once (with the first's reason and time),
 * every moved transaction since the first's window start is linked once,
 * and the strikes grow by k with the last one's evidence, as k writes one
 * after the other would leave it, in four statements instead of 4k.
 */
static int
write_alert(struct pg_pos_engine *e, const struct pos_record *r, const struct pos_record *last,
	    int64_t k)
{
	char ev[1024];
	int64_t id = 0;
	int rc;

	evidence(r, ev, sizeof(ev));
	rc = find_alert(e, r, &id);
	if (rc < 0)
		return rc;
	if (!id) {
		pg_db_bind_text(e->ins_alert, 1, r->tid, -1);
		pg_db_bind_text(e->ins_alert, 2, r->mid, -1);
		pg_db_bind_text(e->ins_alert, 3, pg_reason_name(r->res.reason), -1);
		pg_db_bind_int64(e->ins_alert, 4, r->ts);
		pg_db_bind_int64(e->ins_alert, 5, r->ts);
		pg_db_bind_text(e->ins_alert, 6, ev, -1);
		rc = pg_db_step(e->ins_alert);
		if (rc == 1)
			id = pg_db_column_int64(e->ins_alert, 0);
		if (rc >= 0)
			rc = step_done(e->ins_alert); /* runs RETURNING to its end */
		if (rc < 0)
			return rc;
		if (id) {
			pg_info("pos", "alert %lld opened for terminal '%s' (%s)", (long long)id,
				r->tid, pg_reason_name(r->res.reason));
			rc = alert_event(e->st->pdb, "alert_opened", id, r->tid, r->mid,
					 pg_reason_name(r->res.reason), ev);
			if (rc < 0)
				return rc;
		}
		/* another server opened it first: this evidence joins that alert */
		else if ((rc = find_alert(e, r, &id)) < 0)
			return rc;
		if (!id)
			return pg_error(PG_ESTORE, "pos",
					"alert for terminal '%s' neither opened nor found", r->tid);
	}
	/* the alert's evidence: every moved transaction of the window, this one included */
	pg_db_bind_int64(e->link_txns, 1, id);
	pg_db_bind_text(e->link_txns, 2, r->tid, -1);
	pg_db_bind_int64(e->link_txns, 3, r->window_start);
	rc = step_done(e->link_txns);
	if (rc < 0)
		return rc;
	if (last != r)
		evidence(last, ev, sizeof(ev));
	pg_db_bind_int64(e->upd_alert, 1, k);
	pg_db_bind_int64(e->upd_alert, 2, last->ts);
	pg_db_bind_text(e->upd_alert, 3, ev, -1);
	pg_db_bind_int64(e->upd_alert, 4, id);
	return step_done(e->upd_alert);
}

/* Binds one transaction's columns as row `k` of a multi-row insert. */
static void
bind_txn(struct pg_db_stmt *s, int k, const struct pos_record *r)
{
	int o = k * TXN_COLS;

	pg_db_bind_int64(s, o + 1, r->ts);
	pg_db_bind_text(s, o + 2, r->tid, -1);
	pg_db_bind_text(s, o + 3, r->mid, -1);
	pg_db_bind_text(s, o + 4, r->mti, -1);
	pg_db_bind_text(s, o + 5, r->stan, -1);
	pg_db_bind_text(s, o + 6, r->f7, -1);
	pg_db_bind_text(s, o + 7, pg_decision_name(r->res.decision), -1);
	pg_db_bind_text(s, o + 8, pg_reason_name(r->res.reason), -1);
	if (r->res.est.confidence) {
		pg_db_bind_double(s, o + 9, r->res.distance_m);
		pg_db_bind_double(s, o + 10, r->res.excess_m);
		pg_db_bind_double(s, o + 11, r->res.est.lat);
		pg_db_bind_double(s, o + 12, r->res.est.lon);
		pg_db_bind_double(s, o + 13, r->res.est.acc_m);
	} else {
		for (int c = 9; c <= 13; c++)
			pg_db_bind_null(s, o + c);
	}
	pg_db_bind_text(s, o + 14, pg_confidence_name(r->res.est.confidence), -1);
	if (r->have_cell) {
		pg_db_bind_int64(s, o + 15, r->cell.radio);
		pg_db_bind_int64(s, o + 16, r->cell.mcc);
		pg_db_bind_int64(s, o + 17, r->cell.mnc);
		pg_db_bind_int64(s, o + 18, r->cell.area);
		pg_db_bind_int64(s, o + 19, (int64_t)r->cell.cid);
	} else {
		for (int c = 15; c <= 19; c++)
			pg_db_bind_null(s, o + c);
	}
	pg_db_bind_text(s, o + 20, r->res.rc, 2);
}

/*
 * Marks the record of [from, from + n) that a returned row (ts, tid, stan,
 * f7) is. Rows come back in the order they were inserted, so the search
 * starts after the last match (*cur) and a batch costs O(n), not O(n^2);
 * it wraps around if the store ever returns them in another order.
 */
static void
mark_fresh(struct pg_db_stmt *s, const struct pos_record *q, size_t from, size_t n, uint8_t *fresh,
	   size_t *cur)
{
	int64_t ts = pg_db_column_int64(s, 0);
	const char *c[3];

	for (int i = 0; i < 3; i++) {
		c[i] = pg_db_column_text(s, i + 1);
		if (!c[i])
			c[i] = "";
	}
	if (*cur < from || *cur >= from + n)
		*cur = from;
	for (size_t t = 0; t < n; t++) {
		size_t k = from + (*cur - from + t) % n;

		if (!fresh[k] && q[k].ts == ts && strcmp(q[k].tid, c[0]) == 0 &&
		    strcmp(q[k].stan, c[1]) == 0 && strcmp(q[k].f7, c[2]) == 0) {
			fresh[k] = 1;
			*cur = k + 1;
			return;
		}
	}
}

/*
 * SQLite: a chunk as a plain insert, every row new. RETURNING made SQLite
 * gather the new rows in a temporary table and hand each back with a step
 * of its own, about a third of the insert's cost (perf, issue 18). A row
 * already stored (a redelivery) makes the statement fail whole (PG_EUNIQUE;
 * SQLite backs out that statement only): the caller runs the chunk again
 * with ON CONFLICT DO NOTHING RETURNING, so the row is stored once either way.
 */
static int
insert_plain(struct pg_db_stmt *s, const struct pos_record *q, size_t from, size_t n,
	     uint8_t *fresh)
{
	int rc;

	for (size_t k = 0; k < n; k++)
		bind_txn(s, (int)k, &q[from + k]);
	rc = pg_db_step(s);
	pg_db_reset(s);
	if (rc < 0)
		return rc;
	memset(fresh + from, 1, n);
	return 0;
}

/*
 * Inserts records [from, to) with as few statements as the chunk sizes
 * allow; fresh[i] is set for each record whose row is new (not one the
 * store already had: a redelivery).
 */
static int
insert_txns(struct pg_pos_engine *e, const struct pos_record *q, size_t from, size_t to,
	    uint8_t *fresh)
{
	while (from < to) {
		size_t i = 0, n;
		struct pg_db_stmt *s;
		int rc;

		while ((size_t)CHUNK_ROWS[i] > to - from)
			i++;
		n = (size_t)CHUNK_ROWS[i];
		if (e->ins_plain[i]) {
			rc = insert_plain(e->ins_plain[i], q, from, n, fresh);
			if (rc == 0) {
				from += n;
				continue;
			}
			if (rc != PG_EUNIQUE)
				return rc;
		}
		s = e->ins_txn[i];
		size_t cur = from;

		for (size_t k = 0; k < n; k++)
			bind_txn(s, (int)k, &q[from + k]);
		while ((rc = pg_db_step(s)) == 1)
			mark_fresh(s, q, from, n, fresh, &cur);
		pg_db_reset(s);
		if (rc < 0)
			return rc;
		from += n;
	}
	return 0;
}

/* Appends one array element: NULL, or the text double-quoted with " and \ escaped. */
static int
arr_elem(struct pg_buf *b, const char *v, size_t n)
{
	int rc = b->len > 1 ? pg_buf_append_byte(b, ',') : 0; /* "{" alone: the first */

	if (rc < 0)
		return rc;
	if (!v)
		return pg_buf_append(b, "NULL", 4);
	rc = pg_buf_append_byte(b, '"');
	for (size_t i = 0; rc == 0 && i < n && v[i]; i++) {
		if (v[i] == '"' || v[i] == '\\')
			rc = pg_buf_append_byte(b, '\\');
		if (rc == 0)
			rc = pg_buf_append_byte(b, (uint8_t)v[i]);
	}
	return rc < 0 ? rc : pg_buf_append_byte(b, '"');
}

static int arr_num(struct pg_buf *b, int present, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends one number element (printf-formatted), or NULL when absent. */
static int
arr_num(struct pg_buf *b, int present, const char *fmt, ...)
{
	char t[40];
	va_list ap;
	int n;

	if (!present)
		return arr_elem(b, NULL, 0);
	va_start(ap, fmt);
	n = vsnprintf(t, sizeof(t), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(t))
		return PG_ERANGE;
	return arr_elem(b, t, (size_t)n);
}

/* Adds one transaction to the column arrays, in bind_txn's column order. */
static int
arr_txn(struct pg_buf *cols, const struct pos_record *r)
{
	const struct pg_pos_result *x = &r->res;
	int e = x->est.confidence != 0, c = r->have_cell, rc = 0;
	const char *txt[] = {r->tid,
			     r->mid,
			     r->mti,
			     r->stan,
			     r->f7,
			     pg_decision_name(x->decision),
			     pg_reason_name(x->reason)};

	rc |= arr_num(&cols[0], 1, "%lld", (long long)r->ts);
	for (int i = 0; i < 7; i++)
		rc |= arr_elem(&cols[1 + i], txt[i], strlen(txt[i]));
	rc |= arr_num(&cols[8], e, "%.17g", x->distance_m);
	rc |= arr_num(&cols[9], e, "%.17g", x->excess_m);
	rc |= arr_num(&cols[10], e, "%.17g", x->est.lat);
	rc |= arr_num(&cols[11], e, "%.17g", x->est.lon);
	rc |= arr_num(&cols[12], e, "%.17g", x->est.acc_m);
	rc |= arr_elem(&cols[13], pg_confidence_name(x->est.confidence),
		       strlen(pg_confidence_name(x->est.confidence)));
	rc |= arr_num(&cols[14], c, "%d", (int)r->cell.radio);
	rc |= arr_num(&cols[15], c, "%d", (int)r->cell.mcc);
	rc |= arr_num(&cols[16], c, "%d", (int)r->cell.mnc);
	rc |= arr_num(&cols[17], c, "%lld", (long long)r->cell.area);
	rc |= arr_num(&cols[18], c, "%lld", (long long)r->cell.cid);
	rc |= arr_elem(&cols[19], x->rc, 2);
	return rc ? PG_ENOMEM : 0;
}

/*
 * PostgreSQL: inserts records [0, n) as one statement s of column arrays
 * (prepare_arrays); with fresh, marks the rows that are new.
 */
static int
insert_arrays(struct pg_pos_engine *e, struct pg_db_stmt *s, const struct pos_record *q, size_t n,
	      uint8_t *fresh)
{
	size_t cur = 0;
	int rc = 0;

	for (int c = 0; rc == 0 && c < TXN_COLS; c++) {
		pg_buf_reset(&e->cols[c]);
		rc = pg_buf_append_byte(&e->cols[c], '{');
	}
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = arr_txn(e->cols, &q[i]);
	for (int c = 0; rc == 0 && c < TXN_COLS; c++)
		if ((rc = pg_buf_append_byte(&e->cols[c], '}')) == 0)
			rc = pg_db_bind_text(s, c + 1, (const char *)e->cols[c].data,
					     (long)e->cols[c].len);
	if (rc < 0)
		return rc;
	while ((rc = pg_db_step(s)) == 1)
		if (fresh)
			mark_fresh(s, q, 0, n, fresh, &cur);
	pg_db_reset(s);
	return rc < 0 ? rc : 0;
}

/* Adds one transaction to the bulk insert, in bind_txn's column order. */
static int
bulk_txn(struct pg_db_bulk *b, const struct pos_record *r)
{
	const struct pg_pos_result *x = &r->res;
	int rc = pg_db_bulk_int64(b, r->ts);
	const char *txt[] = {r->tid,
			     r->mid,
			     r->mti,
			     r->stan,
			     r->f7,
			     pg_decision_name(x->decision),
			     pg_reason_name(x->reason)};

	for (int i = 0; i < 7; i++)
		rc |= pg_db_bulk_text(b, txt[i], -1);
	if (x->est.confidence) {
		rc |= pg_db_bulk_double(b, x->distance_m);
		rc |= pg_db_bulk_double(b, x->excess_m);
		rc |= pg_db_bulk_double(b, x->est.lat);
		rc |= pg_db_bulk_double(b, x->est.lon);
		rc |= pg_db_bulk_double(b, x->est.acc_m);
	} else {
		for (int c = 0; c < 5; c++)
			rc |= pg_db_bulk_null(b);
	}
	rc |= pg_db_bulk_text(b, pg_confidence_name(x->est.confidence), -1);
	if (r->have_cell) {
		rc |= pg_db_bulk_int64(b, r->cell.radio);
		rc |= pg_db_bulk_int64(b, r->cell.mcc);
		rc |= pg_db_bulk_int64(b, r->cell.mnc);
		rc |= pg_db_bulk_int64(b, r->cell.area);
		rc |= pg_db_bulk_int64(b, (int64_t)r->cell.cid);
	} else {
		for (int c = 0; c < 5; c++)
			rc |= pg_db_bulk_null(b);
	}
	rc |= pg_db_bulk_text(b, x->rc, (long)strnlen(x->rc, 2));
	return rc ? PG_ENOMEM : 0;
}

/*
 * PostgreSQL: inserts records [0, n) as one binary COPY; all new when it
 * succeeds (fresh all set). PG_EUNIQUE when one was stored already: nothing
 * is, and the caller writes the batch again with ON CONFLICT DO NOTHING.
 */
static int
insert_bulk(struct pg_pos_engine *e, const struct pos_record *q, size_t n, uint8_t *fresh)
{
	int64_t rc = 0;

	pg_db_bulk_clear(e->bulk);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = bulk_txn(e->bulk, &q[i]);
	if (rc < 0) {
		pg_db_bulk_clear(e->bulk);
		return (int)rc;
	}
	rc = pg_db_bulk_write(e->bulk);
	if (rc >= 0 && fresh)
		memset(fresh, 1, n);
	return rc < 0 ? (int)rc : 0;
}

struct alert_ref {
	const char *tid;
	size_t i;
};

/* Alerts in terminal order (then arrival): two servers on one store lock alert rows in one order.
 */
static int
by_terminal(const void *a, const void *b)
{
	const struct alert_ref *x = a, *y = b;
	int c = strcmp(x->tid, y->tid);

	return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* Records to write in one transaction: the engine's queue or a batch taken from it. */
struct pg_pos_batch {
	struct pos_record *q;
	size_t nq, capq;
};

struct write_job {
	struct pg_pos_engine *e;
	const struct pos_record *q;
	size_t n;
	int *abort; /* set by another thread: roll back instead of committing */
	int dedup;  /* PostgreSQL: a row may be stored already (the COPY met one) */
};

/* The strikes a moved transaction of this reason counts. */
static int64_t
weight(const struct pg_pos_engine *e, const char *reason)
{
	return reason && strcmp(reason, "country") == 0 ? e->pol.mcc_strikes : 1;
}

/*
 * The alert decision of one terminal's m new moved transactions of a batch
 * (refs, in arrival order), taken from the store where every server's
 * transactions are, not from this process's memory (issue 14: decisions do
 * not depend on which node answered). The i-th one alerts when the moved
 * rows stored before it (by any server, in any earlier commit) plus the
 * batch's own up to it, inside its window, weigh alert_n or more: on one
 * server that is exactly the in-memory window's answer. On PostgreSQL the
 * terminal's advisory lock makes two servers' batches count one after the
 * other (each statement sees what committed before it), so the n-th strike
 * is seen by whichever batch comes second. The newest alert_n + m rows
 * decide: own rows are at most m of them, and if alert_n other rows fall
 * in a window, the newest alert_n do.
 */
static int
strike_alerts(struct pg_pos_engine *e, const struct pos_record *q, const struct alert_ref *refs,
	      size_t m)
{
	const struct pos_record *r0 = &q[refs[0].i], *first = NULL, *last = NULL;
	int64_t from = r0->window_start, k = 0;
	size_t nrow = 0, cap = e->pol.alert_n + m;
	struct row {
		int64_t ts, w;
		size_t own; /* position in refs + 1; 0: another commit's */
	} *rows = calloc(cap, sizeof(*rows));
	int rc = rows ? 0 : PG_ENOMEM;

	for (size_t p = 1; p < m; p++)
		if (q[refs[p].i].window_start < from)
			from = q[refs[p].i].window_start;
	if (rc == 0 && e->lock_term) {
		pg_db_bind_text(e->lock_term, 1, r0->tid, -1);
		rc = step_done(e->lock_term);
	}
	if (rc == 0) {
		pg_db_bind_text(e->recent_moved, 1, r0->tid, -1);
		pg_db_bind_int64(e->recent_moved, 2, from);
		pg_db_bind_int64(e->recent_moved, 3, (int64_t)cap);
		while ((rc = pg_db_step(e->recent_moved)) == 1 && nrow < cap) {
			struct row *w = &rows[nrow++];
			const char *stan = pg_db_column_text(e->recent_moved, 2);
			const char *f7 = pg_db_column_text(e->recent_moved, 3);

			w->ts = pg_db_column_int64(e->recent_moved, 0);
			w->w = weight(e, pg_db_column_text(e->recent_moved, 1));
			w->own = 0;
			for (size_t p = 0; p < m && !w->own; p++) {
				const struct pos_record *r = &q[refs[p].i];

				if (r->ts == w->ts && strcmp(r->stan, stan ? stan : "") == 0 &&
				    strcmp(r->f7, f7 ? f7 : "") == 0)
					w->own = p + 1;
			}
		}
		pg_db_reset(e->recent_moved);
		rc = rc < 0 ? rc : 0;
	}
	for (size_t p = 0; rc == 0 && p < m; p++) {
		const struct pos_record *r = &q[refs[p].i];
		int64_t sum = 0;

		for (size_t i = 0; i < nrow; i++)
			if (rows[i].ts > r->window_start && rows[i].own <= p + 1)
				sum += rows[i].w;
		if (sum >= (int64_t)e->pol.alert_n) {
			if (!first)
				first = r;
			last = r;
			k++;
		}
	}
	free(rows);
	if (rc == 0 && k)
		rc = write_alert(e, first, last, k);
	return rc;
}

static int
write_batch(struct pg_db *db, void *arg)
{
	struct write_job *j = arg;
	struct pg_pos_engine *e = j->e;
	struct alert_ref *order;
	uint8_t *fresh;
	size_t n = 0;
	int rc;

	(void)db;
	order = malloc(j->n * sizeof(*order));
	fresh = calloc(j->n, 1);
	rc = !order || !fresh ? PG_ENOMEM
	     : !e->bulk	      ? insert_txns(e, j->q, 0, j->n, fresh)
	     : j->dedup	      ? insert_arrays(e, e->ins_arr, j->q, j->n, fresh)
			      : insert_bulk(e, j->q, j->n, fresh);
	/* only a transaction stored now strikes or is reported: a redelivered one was */
	for (size_t i = 0; rc >= 0 && i < j->n; i++) {
		if (!fresh[i])
			continue;
		if (j->q[i].res.decision == PG_DEC_MOVED)
			order[n++] = (struct alert_ref){j->q[i].tid, i};
		if (e->pol.report >> j->q[i].res.decision & 1u)
			rc = decision_event(e->st->pdb, &j->q[i]);
	}
	if (rc >= 0)
		qsort(order, n, sizeof(*order), by_terminal);
	for (size_t k = 0, g; k < n && rc >= 0; k = g) {
		for (g = k + 1; g < n && strcmp(order[g].tid, order[k].tid) == 0; g++)
			;
		rc = strike_alerts(e, j->q, &order[k], g - k);
	}
	free(order);
	free(fresh);
	if (rc >= 0 && j->abort && __atomic_load_n(j->abort, __ATOMIC_ACQUIRE))
		return pg_error(PG_ETIMEDOUT, "pos", "batch past its deadline; rolled back");
	return rc < 0 ? rc : 0;
}

/* Whether anything beyond the rows themselves is written for records [0, n). */
static int
needs_more(const struct pg_pos_engine *e, const struct pos_record *q, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (q[i].res.decision == PG_DEC_MOVED || (e->pol.report >> q[i].res.decision & 1u))
			return 1;
	return 0;
}

/*
 * PostgreSQL: batches of fewer rows than this are written as the unnest()
 * insert with ON CONFLICT DO NOTHING at once: a COPY's set-up and its second
 * round trip cost more than it saves on a few rows (bench/cluster/pgwrite.sh:
 * even at 4 rows, cheaper from 16).
 */
#define BULK_MIN_ROWS 8

/*
 * Writes records [0, n) in one transaction, tried up to `tries` times on a
 * busy store or a lost connection. On PostgreSQL the rows go in as one
 * binary COPY (db.h bulk insert): no statement to parse or plan, no arrays
 * to take apart, and the server fills a page of rows at a time (less than
 * half the CPU and a tenth less WAL per row than an INSERT from unnest()
 * arrays; bench/cluster/pgwrite.sh). A batch with no moved and no reported
 * transaction is the COPY alone, its own transaction. A COPY has no ON
 * CONFLICT: rows already stored only come from a retry after a lost
 * connection or a stream's redelivery, pos_txn_once refuses them and the
 * whole batch, rolled back, is written again as an INSERT from arrays with
 * ON CONFLICT DO NOTHING (RETURNING the new rows where alerts need them),
 * so each row is stored once either way. A batch of a few rows is that
 * INSERT from the start (BULK_MIN_ROWS).
 */
static int
write_records(struct pg_pos_engine *e, const struct pos_record *q, size_t n, int *abort, int tries)
{
	int small = n < BULK_MIN_ROWS;
	struct write_job j = {e, q, n, abort, small};
	int rc;

	if (!e->bulk)
		return pg_db_transact(e->st->pdb, write_batch, &j, tries);
	if (needs_more(e, q, n)) {
		rc = pg_db_transact(e->st->pdb, write_batch, &j, tries);
		if (rc == PG_EUNIQUE && !small) {
			j.dedup = 1;
			rc = pg_db_transact(e->st->pdb, write_batch, &j, tries);
		}
		return rc;
	}
	for (int t = 1, wait_ms = 5;; t++) {
		rc = small ? PG_EUNIQUE : insert_bulk(e, q, n, NULL);
		if (rc == PG_EUNIQUE)
			rc = insert_arrays(e, e->ins_arr_dedup, q, n, NULL);
		if (rc >= 0 || (rc != PG_EBUSY && rc != PG_ECONNLOST) || t >= tries)
			return rc < 0 ? rc : 0;
		pg_debug("pos", "batch insert try %d: %s; retrying", t, pg_strerror(rc));
		usleep((useconds_t)wait_ms * 1000);
		if (wait_ms < 500)
			wait_ms *= 2;
	}
}

int
pg_pos_engine_commit(struct pg_pos_engine *e)
{
	int rc;

	if (!e->st || e->nq == 0) {
		e->nq = 0;
		return 0;
	}
	/*
	 * The whole batch is one transaction; a deadlock or serialization
	 * failure against another server, or a lost connection, runs it again
	 * (the records are still queued), so a terminal waits a little longer
	 * instead of losing its answer.
	 */
	rc = write_records(e, e->q, e->nq, NULL, 5);
	e->nq = 0;
	return rc;
}

struct pg_pos_batch *
pg_pos_batch_new(void)
{
	return calloc(1, sizeof(struct pg_pos_batch));
}

void
pg_pos_batch_free(struct pg_pos_batch *b)
{
	if (b)
		free(b->q);
	free(b);
}

size_t
pg_pos_batch_n(const struct pg_pos_batch *b)
{
	return b->nq;
}

const struct pos_record *
pgi_pos_batch_rec(const struct pg_pos_batch *b, size_t i)
{
	return &b->q[i];
}

int
pgi_pos_batch_push(struct pg_pos_batch *b, const struct pos_record *r)
{
	if (b->nq == b->capq) {
		size_t nc = b->capq ? 2 * b->capq : 256;
		struct pos_record *nq = realloc(b->q, nc * sizeof(*nq));

		if (!nq)
			return PG_ENOMEM;
		b->q = nq;
		b->capq = nc;
	}
	b->q[b->nq++] = *r;
	return 0;
}

void
pgi_pos_batch_clear(struct pg_pos_batch *b)
{
	b->nq = 0;
}

int
pg_pos_engine_open_writer(struct pg_pos_engine **out, struct pg_store *st,
			  const struct pg_pos_policy *pol)
{
	struct pg_pos_engine *e = calloc(1, sizeof(*e));
	int rc;

	*out = NULL;
	if (!e)
		return PG_ENOMEM;
	e->st = st;
	if (pol)
		e->pol = *pol;
	else
		pg_pos_policy_default(&e->pol);
	/* the sink decides the alerts of what it stores: the deciding nodes' policy */
	if (e->pol.alert_n < 1 || e->pol.alert_n > RING) {
		unsigned n = e->pol.alert_n;

		free(e);
		return pg_error(PG_EINVAL, "policy", "alert count %u not in 1..%d", n, RING);
	}
	if (!e->pol.mcc_strikes)
		e->pol.mcc_strikes = e->pol.alert_n;
	rc = prepare(e);
	if (rc < 0) {
		free(e);
		return rc;
	}
	*out = e;
	return 0;
}

const struct pg_pos_policy *
pgi_pos_engine_policy(const struct pg_pos_engine *e)
{
	return &e->pol;
}

void
pg_pos_engine_take(struct pg_pos_engine *e, struct pg_pos_batch *b)
{
	struct pos_record *q = b->q;
	size_t cap = b->capq;

	b->q = e->q;
	b->capq = e->capq;
	b->nq = e->nq;
	e->q = q;
	e->capq = cap;
	e->nq = 0;
}

void
pg_pos_engine_drop(struct pg_pos_engine *e)
{
	e->nq = 0;
}

int
pg_pos_batch_write(struct pg_pos_engine *e, struct pg_pos_batch *b, int *abort)
{
	if (!e->st || !b->nq)
		return 0;
	/* one try: the caller decides (it knows the deadline and the doubt) */
	return write_records(e, b->q, b->nq, abort, 1);
}

int
pg_pos_batch_stored(struct pg_pos_engine *e, const struct pg_pos_batch *b)
{
	const struct pos_record *r = b->q;
	struct pg_db_stmt *q;
	int rc;

	if (!e->st || !b->nq)
		return 0;
	/* the batch is one transaction: its first row is there iff all are */
	rc = pg_db_prepare(e->st->pdb,
			   "SELECT count(*) FROM pos_txn WHERE ts=? AND tid=? AND stan=? AND f7=?"
			   " AND mti=?",
			   &q);
	if (rc < 0)
		return rc;
	pg_db_bind_int64(q, 1, r->ts);
	pg_db_bind_text(q, 2, r->tid, -1);
	pg_db_bind_text(q, 3, r->stan, -1);
	pg_db_bind_text(q, 4, r->f7, -1);
	pg_db_bind_text(q, 5, r->mti, -1);
	rc = pg_db_step(q);
	if (rc == 1)
		rc = pg_db_column_int64(q, 0) > 0;
	pg_db_reset(q);
	return rc;
}

static int
unwrite_batch(struct pg_db *db, void *arg)
{
	const struct pg_pos_batch *b = arg;
	struct pg_db_stmt *q;
	int rc = pg_db_prepare(
	    db, "DELETE FROM pos_txn WHERE ts=? AND tid=? AND stan=? AND f7=? AND mti=?", &q);

	for (size_t i = 0; rc >= 0 && i < b->nq; i++) {
		const struct pos_record *r = &b->q[i];

		pg_db_bind_int64(q, 1, r->ts);
		pg_db_bind_text(q, 2, r->tid, -1);
		pg_db_bind_text(q, 3, r->stan, -1);
		pg_db_bind_text(q, 4, r->f7, -1);
		pg_db_bind_text(q, 5, r->mti, -1);
		rc = step_done(q);
	}
	return rc < 0 ? rc : 0;
}

int
pg_pos_batch_unwrite(struct pg_pos_engine *e, const struct pg_pos_batch *b)
{
	if (!e->st || !b->nq)
		return 0;
	return pg_db_transact(e->st->pdb, unwrite_batch, (void *)b, 1);
}

/* ---- day partitions (PostgreSQL) and retention ---- */

#define DAY_MS 86400000LL

static void
day_name(int64_t day, char out[24])
{
	time_t t = (time_t)(day * 86400);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(out, 24, "pos_txn_%04d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

int
pg_pos_partitions_ensure(struct pg_store *st, int64_t now_ms, int days_ahead)
{
	int64_t today = now_ms / DAY_MS;
	char *sql, *p;
	size_t cap;
	int rc;

	if (!st->pdb || pg_db_engine_of(st->pdb) != PG_DB_POSTGRES)
		return 0;
	if (days_ahead < 0 || days_ahead > 366)
		return pg_error(PG_EINVAL, "pos", "%d days ahead not in 0..366", days_ahead);
	cap = 256 + (size_t)(days_ahead + 1) * 640;
	sql = malloc(cap);
	if (!sql)
		return PG_ENOMEM;
	/*
	 * One transaction under an advisory lock, so several servers take turns.
	 * A day that has rows in the default partition (no partition existed
	 * when they came) gets them moved: the new table is filled, then
	 * attached, which is what PostgreSQL allows with a default partition.
	 */
	p = sql + sprintf(sql, "BEGIN; SELECT pg_advisory_xact_lock(7236486); DO $$BEGIN ");
	for (int64_t d = today; d <= today + days_ahead; d++) {
		char name[24];

		day_name(d, name);
		p += sprintf(
		    p,
		    "IF to_regclass('%s') IS NULL THEN "
		    "CREATE TABLE %s (LIKE pos_txn INCLUDING DEFAULTS INCLUDING CONSTRAINTS);"
		    "WITH m AS (DELETE FROM pos_txn_default WHERE ts >= %lld AND ts < %lld "
		    "RETURNING *) INSERT INTO %s SELECT * FROM m;"
		    "ALTER TABLE pos_txn ATTACH PARTITION %s FOR VALUES FROM (%lld) TO (%lld);"
		    "END IF;",
		    name, name, (long long)(d * DAY_MS), (long long)((d + 1) * DAY_MS), name, name,
		    (long long)(d * DAY_MS), (long long)((d + 1) * DAY_MS));
	}
	sprintf(p, "END$$; COMMIT");
	rc = pg_db_exec(st->pdb, sql);
	free(sql);
	if (rc < 0)
		(void)pg_db_exec(st->pdb, "ROLLBACK");
	return rc;
}

/* One step of retention: gone() and the removal in one transaction (a
 * statement with one ? for before and its changes counted, or DDL). */
static int
retire(struct pg_db *db, const char *sql, const char *table, int64_t before, pg_pos_gone_fn gone,
       void *arg, int64_t *changed)
{
	struct pg_db_stmt *q = NULL;
	int rc = gone ? pg_db_begin(db) : 0;

	if (rc >= 0 && gone)
		rc = gone(db, table, before, arg);
	if (rc >= 0 && !changed) {
		rc = pg_db_exec(db, sql); /* DDL: not kept as a prepared statement */
	} else if (rc >= 0) {
		rc = pg_db_prepare(db, sql, &q);
		if (rc >= 0)
			rc = pg_db_bind_int64(q, 1, before);
		if (rc >= 0)
			rc = pg_db_step(q);
		if (rc >= 0)
			*changed = pg_db_changes(q);
	}
	if (q)
		pg_db_reset(q);
	if (gone && rc >= 0)
		rc = pg_db_commit(db);
	else if (gone)
		(void)pg_db_rollback(db);
	return rc < 0 ? rc : 0;
}

/* The day partitions wholly before cut_day (names from the catalogue). */
static int
old_partitions(struct pg_db *db, int64_t cut_day, char ***out, size_t *nout)
{
	struct pg_db_stmt *q;
	char last[24], **names = NULL;
	size_t n = 0;
	int rc;

	day_name(cut_day, last);
	rc = pg_db_prepare(db,
			   "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON "
			   "c.oid = i.inhrelid WHERE i.inhparent = 'pos_txn'::regclass AND "
			   "c.relname LIKE 'pos\\_txn\\_________' AND c.relname < ? ORDER BY 1",
			   &q);
	if (rc < 0)
		return rc;
	pg_db_bind_text(q, 1, last, -1);
	while ((rc = pg_db_step(q)) == 1) {
		char **nn = realloc(names, (n + 1) * sizeof(*nn));

		if (!nn || !(nn[n] = strdup(pg_db_column_text(q, 0)))) {
			if (nn)
				names = nn;
			rc = PG_ENOMEM;
			break;
		}
		names = nn;
		n++;
	}
	pg_db_reset(q);
	*out = names;
	*nout = n;
	return rc < 0 ? rc : 0;
}

int
pg_pos_retention_counted(struct pg_store *st, int64_t now_ms, int keep_days, pg_pos_gone_fn gone,
			 void *arg, int64_t *dropped_days, int64_t *deleted_rows)
{
	int64_t cut_day = now_ms / DAY_MS - keep_days, cut = cut_day * DAY_MS;
	char **names = NULL;
	size_t n = 0;
	int rc;

	*dropped_days = *deleted_rows = 0;
	if (keep_days < 1)
		return pg_error(PG_EINVAL, "pos", "keep at least one day (%d)", keep_days);
	rc = pg_pos_migrate(st);
	if (rc < 0)
		return rc;
	if (pg_db_engine_of(st->pdb) == PG_DB_POSTGRES) {
		/* the day partitions wholly before the cut: dropped, not deleted row by row */
		rc = old_partitions(st->pdb, cut_day, &names, &n);
		for (size_t i = 0; rc >= 0 && i < n; i++) {
			char sql[64];

			/* names come from the catalogue and match pos_txn_YYYYMMDD */
			snprintf(sql, sizeof(sql), "DROP TABLE %s", names[i]);
			rc = retire(st->pdb, sql, names[i], INT64_MAX, gone, arg, NULL);
			if (rc >= 0) {
				pg_info("pos", "retention: dropped partition %s", names[i]);
				(*dropped_days)++;
			}
		}
		for (size_t i = 0; i < n; i++)
			free(names[i]);
		free(names);
		if (rc < 0)
			return rc;
	}
	/* SQLite, and stray old rows of the default partition: row by row */
	return retire(st->pdb, "DELETE FROM pos_txn WHERE ts < ?", "pos_txn", cut, gone, arg,
		      deleted_rows);
}

int
pg_pos_retention(struct pg_store *st, int64_t now_ms, int keep_days, int64_t *dropped_days,
		 int64_t *deleted_rows)
{
	return pg_pos_retention_counted(st, now_ms, keep_days, NULL, NULL, dropped_days,
					deleted_rows);
}

/* ---- alert life cycle ---- */

int
pg_pos_alert_set_state(struct pg_store *st, int64_t id, const char *state, const char *note)
{
	struct pg_db *db = st->pdb;
	struct pg_db_stmt *q;
	char was[16] = "", tid[16] = "", mid[24] = "", reason[32] = "";
	int rc = pg_pos_migrate(st);

	if (rc < 0)
		return rc;
	if (strcmp(state, "acknowledged") != 0 && strcmp(state, "closed") != 0)
		return pg_error(PG_EINVAL, "alerts", "state '%s' (acknowledged or closed)", state);
	rc = pg_db_begin(db);
	if (rc < 0)
		return rc;
	rc = pg_db_prepare(db, "SELECT state, tid, mid, reason FROM pos_alerts WHERE id=?", &q);
	if (rc < 0)
		goto fail;
	pg_db_bind_int64(q, 1, id);
	rc = pg_db_step(q);
	if (rc == 1) {
		snprintf(was, sizeof(was), "%s", pg_db_column_text(q, 0));
		snprintf(tid, sizeof(tid), "%s", pg_db_column_text(q, 1));
		snprintf(mid, sizeof(mid), "%s", pg_db_column_text(q, 2));
		snprintf(reason, sizeof(reason), "%s", pg_db_column_text(q, 3));
	}
	pg_db_reset(q);
	if (rc < 0)
		goto fail;
	if (!was[0]) {
		rc = pg_error(PG_ENOENT, "alerts", "no alert %lld", (long long)id);
		goto fail;
	}
	if (strcmp(was, "closed") == 0 || strcmp(was, state) == 0) {
		rc = pg_error(PG_ESTATE, "alerts", "alert %lld is %s already", (long long)id, was);
		goto fail;
	}
	rc = pg_db_prepare(db,
			   "UPDATE pos_alerts SET state=?, updated_ms=?, note=coalesce(?, note) "
			   "WHERE id=?",
			   &q);
	if (rc < 0)
		goto fail;
	pg_db_bind_text(q, 1, state, -1);
	pg_db_bind_int64(q, 2, pg_wall_ms());
	pg_db_bind_text(q, 3, note, -1); /* NULL keeps the note */
	pg_db_bind_int64(q, 4, id);
	rc = step_done(q);
	if (rc < 0)
		goto fail;
	rc = alert_event(db, strcmp(state, "closed") == 0 ? "alert_closed" : "alert_acknowledged",
			 id, tid, mid, reason, NULL);
	if (rc < 0)
		goto fail;
	return pg_db_commit(db);
fail:
	pg_db_rollback(db);
	return rc;
}

json_t *
pg_pos_alerts_list(struct pg_store *st, const char *state, int limit)
{
	struct pg_db_stmt *q;
	json_t *a;

	if (pg_pos_migrate(st) < 0)
		return NULL;
	/* CAST: PostgreSQL must know the parameter's type to test it for NULL */
	if (pg_db_prepare(st->pdb,
			  "SELECT a.id,a.tid,a.mid,a.state,a.reason,a.opened_ms,a.updated_ms,"
			  "(SELECT count(*) FROM pos_txn t WHERE t.alert_id=a.id),a.evidence,"
			  "a.note FROM pos_alerts a WHERE CAST(? AS TEXT) IS NULL OR a.state=? "
			  "ORDER BY a.id LIMIT ?",
			  &q) < 0)
		return NULL;
	pg_db_bind_text(q, 1, state, -1);
	pg_db_bind_text(q, 2, state, -1);
	pg_db_bind_int64(q, 3, limit > 0 ? limit : INT64_MAX);
	a = json_array();
	while (a && pg_db_step(q) == 1) {
		const char *ev = pg_db_column_is_null(q, 8) ? NULL : pg_db_column_text(q, 8);
		json_t *evj = ev ? json_loads(ev, 0, NULL) : NULL;
		const char *note = pg_db_column_is_null(q, 9) ? NULL : pg_db_column_text(q, 9);

		json_array_append_new(
		    a,
		    json_pack("{s:I,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:o,s:s?}", "id",
			      (json_int_t)pg_db_column_int64(q, 0), "terminal",
			      pg_db_column_text(q, 1), "merchant", pg_db_column_text(q, 2), "state",
			      pg_db_column_text(q, 3), "reason", pg_db_column_text(q, 4),
			      "opened_ms", (json_int_t)pg_db_column_int64(q, 5), "updated_ms",
			      (json_int_t)pg_db_column_int64(q, 6), "transactions",
			      (json_int_t)pg_db_column_int64(q, 7), "evidence",
			      evj ? evj : json_null(), "note", note));
	}
	pg_db_reset(q);
	return a;
}
