/*
 * The relocation policy of seed 4 and its records: distance between the
 * estimated terminal position and the merchant, less both uncertainties,
 * against the merchant's limit; country (MCC) mismatch; N moved transactions
 * in a window raise an alert. Decisions are queued and written by a group
 * commit so a response is only sent once its record is in the store.
 */
#include "pos_internal.h"

#include "payguard/clock.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING 32

static const struct pg_migration migrations[] = {
    {1, "CREATE TABLE pos_cells(radio INTEGER NOT NULL, mcc INTEGER NOT NULL,"
	" net INTEGER NOT NULL, area INTEGER NOT NULL, cell INTEGER NOT NULL, unit INTEGER,"
	" lon REAL NOT NULL, lat REAL NOT NULL, range INTEGER, samples INTEGER,"
	" changeable INTEGER, created INTEGER, updated INTEGER, avg_signal INTEGER,"
	" PRIMARY KEY(radio, mcc, net, area, cell)) WITHOUT ROWID;"
	"CREATE TABLE pos_merchants(mid TEXT PRIMARY KEY, lat REAL NOT NULL, lon REAL NOT NULL,"
	" unc_m REAL NOT NULL, limit_m REAL NOT NULL, mcc INTEGER NOT NULL, name TEXT);"
	"CREATE TABLE pos_terminals(tid TEXT PRIMARY KEY,"
	" mid TEXT NOT NULL REFERENCES pos_merchants(mid));"
	"CREATE TABLE pos_alerts(id INTEGER PRIMARY KEY, tid TEXT NOT NULL, mid TEXT,"
	" state TEXT NOT NULL CHECK(state IN ('open','acknowledged','closed')),"
	" reason TEXT, opened_ms INTEGER, updated_ms INTEGER, strikes INTEGER,"
	" evidence TEXT, note TEXT);"
	"CREATE INDEX pos_alerts_tid ON pos_alerts(tid, state);"
	"CREATE TABLE pos_txn(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, tid TEXT, mid TEXT,"
	" mti TEXT, stan TEXT, f7 TEXT, decision TEXT NOT NULL, reason TEXT, distance_m REAL,"
	" excess_m REAL, est_lat REAL, est_lon REAL, acc_m REAL, confidence TEXT,"
	" radio INTEGER, mcc INTEGER, mnc INTEGER, area INTEGER, cell INTEGER, rc TEXT,"
	" alert_id INTEGER REFERENCES pos_alerts(id));"
	/* only moved rows are ever looked up by terminal (windows, alert links):
	 * a partial index keeps the common in-place insert to one B-tree */
	"CREATE INDEX pos_txn_moved ON pos_txn(tid, ts) WHERE decision='moved';"},
};

int
pg_pos_migrate(struct pg_store *st)
{
	return pg_store_migrate(st, "pos", migrations, sizeof(migrations) / sizeof(migrations[0]));
}

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

struct record {
	int64_t ts, window_start;
	char tid[9], mid[16], mti[5], stan[7], f7[11];
	struct pg_pos_result res;
	struct pg_cell_obs cell;
	const struct pg_merchant_rec *merchant;
	int have_cell;
};

struct pg_pos_engine {
	struct pg_store *st;
	struct pg_pos_policy pol;
	struct pg_cells *cells;
	struct pg_merchants *merchants;
	struct term_state *terms; /* parallel to the merchant records */
	struct record *q;
	size_t nq, capq;
	sqlite3_stmt *ins_txn, *find_alert, *upd_alert, *ins_alert, *link_txns;
};

static struct term_state *
term_of(struct pg_pos_engine *e, const struct pg_merchant_rec *m)
{
	return &e->terms[pg_merchants_index(e->merchants, m)];
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

static int
prepare(struct pg_pos_engine *e)
{
	struct {
		sqlite3_stmt **s;
		const char *sql;
	} q[] = {
	    {&e->ins_txn, "INSERT INTO pos_txn(ts,tid,mid,mti,stan,f7,decision,reason,distance_m,"
			  "excess_m,est_lat,est_lon,acc_m,confidence,radio,mcc,mnc,area,cell,rc)"
			  " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"},
	    {&e->find_alert, "SELECT id FROM pos_alerts WHERE tid=? AND state!='closed' "
			     "ORDER BY id DESC LIMIT 1"},
	    {&e->upd_alert, "UPDATE pos_alerts SET strikes=strikes+1, updated_ms=?, evidence=?"
			    " WHERE id=?"},
	    {&e->ins_alert, "INSERT INTO pos_alerts(tid,mid,state,reason,opened_ms,updated_ms,"
			    "strikes,evidence) VALUES(?,?,'open',?,?,?,0,?)"},
	    {&e->link_txns, "UPDATE pos_txn SET alert_id=?1 WHERE tid=?2 AND decision='moved' "
			    "AND ts>?3 AND alert_id IS NULL"},
	};

	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		int rc = sqlite3_prepare_v2(e->st->db, q[i].sql, -1, q[i].s, NULL);

		if (rc != SQLITE_OK)
			return pg_store_fail(e->st, rc, "prepare");
	}
	return 0;
}

/* Rebuilds the per-terminal windows from the moved transactions still inside them. */
static int
reload_windows(struct pg_pos_engine *e, int64_t now)
{
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_prepare_v2(e->st->db,
				    "SELECT tid, ts, reason FROM pos_txn WHERE decision='moved' "
				    "AND ts>? ORDER BY ts",
				    -1, &q, NULL);

	if (rc != SQLITE_OK)
		return pg_store_fail(e->st, rc, "select windows");
	sqlite3_bind_int64(q, 1, now - e->pol.window_ms);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		const char *tid = (const char *)sqlite3_column_text(q, 0);
		const struct pg_merchant_rec *m =
		    tid ? pg_merchants_find(e->merchants, tid, strlen(tid)) : NULL;
		const char *why = (const char *)sqlite3_column_text(q, 2);

		if (m)
			strike(term_of(e, m), sqlite3_column_int64(q, 1),
			       why && strcmp(why, "country") == 0 ? e->pol.mcc_strikes : 1,
			       e->pol.alert_n, e->pol.window_ms);
	}
	sqlite3_finalize(q);
	return rc == SQLITE_DONE ? 0 : pg_store_fail(e->st, rc, "read windows");
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
	rc = pg_merchants_load(st, &e->merchants);
	if (rc < 0)
		goto fail;
	e->terms = calloc(pg_merchants_n(e->merchants) + 1, sizeof(*e->terms));
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

void
pg_pos_engine_free(struct pg_pos_engine *e)
{
	if (!e)
		return;
	sqlite3_finalize(e->ins_txn);
	sqlite3_finalize(e->find_alert);
	sqlite3_finalize(e->upd_alert);
	sqlite3_finalize(e->ins_alert);
	sqlite3_finalize(e->link_txns);
	pg_cells_free(e->cells);
	pg_merchants_free(e->merchants);
	free(e->terms);
	free(e->q);
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
	struct record *r = NULL;
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
	m = pg_merchants_find(e->merchants, (const char *)tid, tl);
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
		struct record *nq = realloc(e->q, nc * sizeof(*nq));

		if (!nq)
			return PG_ENOMEM;
		e->q = nq;
		e->capq = nc;
	}
	r = &e->q[e->nq++];
	r->ts = now_ms;
	r->window_start = now_ms - e->pol.window_ms;
	r->res = *res;
	r->merchant = m;
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
evidence(const struct record *r, char *out, size_t n)
{
	const struct pg_merchant_rec *m = r->merchant;

	snprintf(out, n,
		 "{\"reason\":\"%s\",\"distance_m\":%.1f,\"excess_m\":%.1f,"
		 "\"estimate\":{\"lat\":%.6f,\"lon\":%.6f,\"acc_m\":%.1f,\"confidence\":\"%s\","
		 "\"cells\":%d},\"merchant\":{\"lat\":%.6f,\"lon\":%.6f,\"uncertainty_m\":%.1f,"
		 "\"limit_m\":%.1f,\"mcc\":%u},\"cell\":{\"radio\":\"%s\",\"mcc\":%u,\"mnc\":%u,"
		 "\"area\":%u,\"cid\":%llu},\"stan\":\"%s\"}",
		 pg_reason_name(r->res.reason), r->res.distance_m, r->res.excess_m, r->res.est.lat,
		 r->res.est.lon, r->res.est.acc_m, pg_confidence_name(r->res.est.confidence),
		 r->res.est.cells_used, m ? m->lat : 0, m ? m->lon : 0, m ? m->unc_m : 0,
		 m ? m->limit_m : 0, m ? m->mcc : 0, pg_radio_name(r->cell.radio), r->cell.mcc,
		 r->cell.mnc, r->cell.area, (unsigned long long)r->cell.cid, r->stan);
}

static int
step_done(struct pg_pos_engine *e, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : pg_store_fail(e->st, rc, what);
}

static int
write_alert(struct pg_pos_engine *e, const struct record *r, int64_t txn_id)
{
	char ev[1024];
	int64_t id = 0;
	int rc;

	evidence(r, ev, sizeof(ev));
	sqlite3_bind_text(e->find_alert, 1, r->tid, -1, SQLITE_STATIC);
	rc = sqlite3_step(e->find_alert);
	if (rc == SQLITE_ROW)
		id = sqlite3_column_int64(e->find_alert, 0);
	sqlite3_reset(e->find_alert);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return pg_store_fail(e->st, rc, "find alert");
	if (!id) {
		sqlite3_bind_text(e->ins_alert, 1, r->tid, -1, SQLITE_STATIC);
		sqlite3_bind_text(e->ins_alert, 2, r->mid, -1, SQLITE_STATIC);
		sqlite3_bind_text(e->ins_alert, 3, pg_reason_name(r->res.reason), -1,
				  SQLITE_STATIC);
		sqlite3_bind_int64(e->ins_alert, 4, r->ts);
		sqlite3_bind_int64(e->ins_alert, 5, r->ts);
		sqlite3_bind_text(e->ins_alert, 6, ev, -1, SQLITE_TRANSIENT);
		rc = step_done(e, e->ins_alert, "insert alert");
		if (rc < 0)
			return rc;
		id = sqlite3_last_insert_rowid(e->st->db);
		pg_info("pos", "alert %lld opened for terminal '%s' (%s)", (long long)id, r->tid,
			pg_reason_name(r->res.reason));
	}
	/* the alert's evidence: every moved transaction of the window, this one included */
	sqlite3_bind_int64(e->link_txns, 1, id);
	sqlite3_bind_text(e->link_txns, 2, r->tid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(e->link_txns, 3, r->window_start);
	rc = step_done(e, e->link_txns, "link alert");
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(e->upd_alert, 1, r->ts);
	sqlite3_bind_text(e->upd_alert, 2, ev, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(e->upd_alert, 3, id);
	(void)txn_id;
	return step_done(e, e->upd_alert, "update alert");
}

int
pg_pos_engine_commit(struct pg_pos_engine *e)
{
	int rc;

	if (!e->st || e->nq == 0) {
		e->nq = 0;
		return 0;
	}
	rc = pg_store_begin(e->st);
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < e->nq; i++) {
		const struct record *r = &e->q[i];
		sqlite3_stmt *s = e->ins_txn;

		sqlite3_bind_int64(s, 1, r->ts);
		sqlite3_bind_text(s, 2, r->tid, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 3, r->mid, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 4, r->mti, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 5, r->stan, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 6, r->f7, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 7, pg_decision_name(r->res.decision), -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 8, pg_reason_name(r->res.reason), -1, SQLITE_STATIC);
		if (r->res.est.confidence) {
			sqlite3_bind_double(s, 9, r->res.distance_m);
			sqlite3_bind_double(s, 10, r->res.excess_m);
			sqlite3_bind_double(s, 11, r->res.est.lat);
			sqlite3_bind_double(s, 12, r->res.est.lon);
			sqlite3_bind_double(s, 13, r->res.est.acc_m);
		} else {
			for (int k = 9; k <= 13; k++)
				sqlite3_bind_null(s, k);
		}
		sqlite3_bind_text(s, 14, pg_confidence_name(r->res.est.confidence), -1,
				  SQLITE_STATIC);
		if (r->have_cell) {
			sqlite3_bind_int(s, 15, r->cell.radio);
			sqlite3_bind_int(s, 16, r->cell.mcc);
			sqlite3_bind_int(s, 17, r->cell.mnc);
			sqlite3_bind_int64(s, 18, r->cell.area);
			sqlite3_bind_int64(s, 19, (sqlite3_int64)r->cell.cid);
		} else {
			for (int k = 15; k <= 19; k++)
				sqlite3_bind_null(s, k);
		}
		sqlite3_bind_text(s, 20, r->res.rc, 2, SQLITE_STATIC);
		rc = step_done(e, s, "insert transaction");
		if (rc == 0 && r->res.alert)
			rc = write_alert(e, r, sqlite3_last_insert_rowid(e->st->db));
		if (rc < 0) {
			pg_store_rollback(e->st);
			goto out;
		}
	}
	rc = pg_store_commit(e->st);
out:
	e->nq = 0;
	return rc;
}

/* ---- alert life cycle ---- */

int
pg_pos_alert_set_state(struct pg_store *st, int64_t id, const char *state, const char *note)
{
	sqlite3_stmt *q = NULL;
	const char *cur = NULL;
	char was[16] = "";
	int rc = pg_pos_migrate(st);

	if (rc < 0)
		return rc;
	if (strcmp(state, "acknowledged") != 0 && strcmp(state, "closed") != 0)
		return pg_error(PG_EINVAL, "alerts", "state '%s' (acknowledged or closed)", state);
	rc = pg_store_begin(st);
	if (rc < 0)
		return rc;
	rc = sqlite3_prepare_v2(st->db, "SELECT state FROM pos_alerts WHERE id=?", -1, &q, NULL);
	if (rc != SQLITE_OK) {
		rc = pg_store_fail(st, rc, "select alert");
		goto fail;
	}
	sqlite3_bind_int64(q, 1, id);
	if (sqlite3_step(q) == SQLITE_ROW)
		cur = (const char *)sqlite3_column_text(q, 0);
	if (!cur) {
		rc = pg_error(PG_ENOENT, "alerts", "no alert %lld", (long long)id);
		goto fail;
	}
	snprintf(was, sizeof(was), "%s", cur);
	sqlite3_finalize(q);
	q = NULL;
	if (strcmp(was, "closed") == 0 || strcmp(was, state) == 0) {
		rc = pg_error(PG_ESTATE, "alerts", "alert %lld is %s already", (long long)id, was);
		goto fail;
	}
	rc = sqlite3_prepare_v2(
	    st->db,
	    "UPDATE pos_alerts SET state=?, updated_ms=?, note=coalesce(?, note) "
	    "WHERE id=?",
	    -1, &q, NULL);
	if (rc != SQLITE_OK) {
		rc = pg_store_fail(st, rc, "update alert");
		goto fail;
	}
	sqlite3_bind_text(q, 1, state, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, pg_wall_ms());
	if (note)
		sqlite3_bind_text(q, 3, note, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 4, id);
	rc = sqlite3_step(q);
	if (rc != SQLITE_DONE) {
		rc = pg_store_fail(st, rc, "update alert");
		goto fail;
	}
	sqlite3_finalize(q);
	return pg_store_commit(st);
fail:
	sqlite3_finalize(q);
	pg_store_rollback(st);
	return rc;
}

json_t *
pg_pos_alerts_list(struct pg_store *st, const char *state, int limit)
{
	sqlite3_stmt *q = NULL;
	json_t *a;
	int rc;

	if (pg_pos_migrate(st) < 0)
		return NULL;
	rc = sqlite3_prepare_v2(st->db,
				"SELECT a.id,a.tid,a.mid,a.state,a.reason,a.opened_ms,a.updated_ms,"
				"(SELECT count(*) FROM pos_txn t WHERE t.alert_id=a.id),a.evidence,"
				"a.note FROM pos_alerts a WHERE ?1 IS NULL OR a.state=?1 "
				"ORDER BY a.id LIMIT ?2",
				-1, &q, NULL);
	if (rc != SQLITE_OK) {
		pg_store_fail(st, rc, "list alerts");
		return NULL;
	}
	if (state)
		sqlite3_bind_text(q, 1, state, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 2, limit > 0 ? limit : -1);
	a = json_array();
	while (a && sqlite3_step(q) == SQLITE_ROW) {
		const char *ev = (const char *)sqlite3_column_text(q, 8);
		json_t *evj = ev ? json_loads(ev, 0, NULL) : NULL;
		const char *note = (const char *)sqlite3_column_text(q, 9);

		json_array_append_new(
		    a, json_pack("{s:I,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:o,s:s?}", "id",
				 (json_int_t)sqlite3_column_int64(q, 0), "terminal",
				 (const char *)sqlite3_column_text(q, 1), "merchant",
				 sqlite3_column_text(q, 2) ? (const char *)sqlite3_column_text(q, 2)
							   : "",
				 "state", (const char *)sqlite3_column_text(q, 3), "reason",
				 (const char *)sqlite3_column_text(q, 4), "opened_ms",
				 (json_int_t)sqlite3_column_int64(q, 5), "updated_ms",
				 (json_int_t)sqlite3_column_int64(q, 6), "transactions",
				 (json_int_t)sqlite3_column_int64(q, 7), "evidence",
				 evj ? evj : json_null(), "note", note));
	}
	sqlite3_finalize(q);
	return a;
}
