/*
 * Relocation monitoring of mobile POS terminals (seed 4, "monitoring for
 * out-of-bounds mobile POS terminals"): the terminal reports its serving and
 * neighbouring cells with each transaction (TLV in field 62); the server
 * locates those cells (OpenCellID data), compares with the merchant's
 * registered location and flags terminals that moved. Layout: docs/pos.md.
 */
#ifndef PAYGUARD_POS_H
#define PAYGUARD_POS_H

#include "payguard/buf.h"
#include "payguard/pos_iso8583.h"
#include "payguard/store.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- cell TLV (field 62) ---- */

enum pg_radio { PG_RADIO_GSM, PG_RADIO_UMTS, PG_RADIO_LTE, PG_RADIO_NR, PG_RADIO_CDMA, PG_RADIO_N };
#define PG_CELL_MAX_NEIGH 6
#define PG_SIGNAL_NONE	  0	 /* signal strength not reported */
#define PG_TA_NONE	  0xffff /* timing advance not reported */

struct pg_cell_obs {
	uint8_t radio;
	uint16_t mcc, mnc;
	uint32_t area; /* LAC or TAC */
	uint64_t cid;
	int8_t signal; /* dBm, PG_SIGNAL_NONE when absent */
	uint16_t ta;   /* serving cell only */
};

struct pg_cell_report {
	struct pg_cell_obs serving;
	int nneigh;
	struct pg_cell_obs neigh[PG_CELL_MAX_NEIGH];
};

const char *pg_radio_name(int radio);
int pg_radio_parse(const char *s, size_t n);
int pg_celltlv_decode(const uint8_t *p, size_t n, struct pg_cell_report *r);
int pg_celltlv_encode(const struct pg_cell_report *r, struct pg_buf *out);
json_t *pg_celltlv_to_json(const struct pg_cell_report *r);
int pg_celltlv_from_json(json_t *o, struct pg_cell_report *r);

/* A message from/to JSON with the cell TLV as a "cell" object (see docs/pos.md). */
int pg_pos_msg_from_json(const struct pg_iso_dialect *d, json_t *o, int cell_field,
			 struct pg_iso_msg *m);
json_t *pg_pos_msg_to_json(const struct pg_iso_dialect *d, const struct pg_iso_msg *m,
			   int cell_field);

/* ---- cell database (OpenCellID CSV) ---- */

struct pg_cell_rec {
	struct pg_cell_obs id;
	double lat, lon;
	uint32_t range; /* metres */
	uint32_t samples;
	int32_t avg_signal; /* dBm; 0 when unknown */
	int64_t created, updated;
	int32_t unit;
	uint8_t changeable;
};

/* Parses one data row (no line end). PG_EFORMAT with a detail on a bad row. */
int pg_cells_parse_row(const char *line, size_t len, struct pg_cell_rec *rec);

struct pg_import_stats {
	uint64_t rows, imported, bad;
	uint64_t first_bad_line[5];
	char first_bad_reason[5][96];
};
/* Imports an OpenCellID CSV file into the store (rows replace equal keys). */
int pg_cells_import(struct pg_store *st, const char *path, struct pg_import_stats *stats);

struct pg_cells; /* in-memory index of cells and location areas */
int pg_cells_load(struct pg_store *st, struct pg_cells **out);
int pg_cells_count(const struct pg_cells *c);
void pg_cells_free(struct pg_cells *c);
/* Looks up one cell; NULL when unknown. */
const struct pg_cell_rec *pg_cells_find(const struct pg_cells *c, const struct pg_cell_obs *id);

enum pg_confidence { PG_CONF_NONE, PG_CONF_LOW, PG_CONF_MEDIUM, PG_CONF_HIGH };
struct pg_estimate {
	double lat, lon, acc_m;
	int confidence; /* HIGH: serving cell known; MEDIUM: neighbours only; LOW: area */
	int cells_used;
};
const char *pg_confidence_name(int c);
/* Starts loading the index entries a report will need (a hint; no effect on results). */
void pg_cells_prefetch(const struct pg_cells *c, const struct pg_cell_report *r);
/* Signal-weighted position from the known cells; LOW-confidence area fallback. */
int pg_cells_estimate(const struct pg_cells *c, const struct pg_cell_report *r,
		      struct pg_estimate *e);

/* Great-circle distance in metres (haversine, mean Earth radius). */
double pg_geo_distance_m(double lat1, double lon1, double lat2, double lon2);

/* ---- merchant registry ---- */

struct pg_merchant_rec {
	char tid[9];  /* field 41 */
	char mid[16]; /* field 42 */
	double lat, lon;
	double unc_m, limit_m;
	uint16_t mcc; /* country the merchant trades in */
	char name[41];
};
/* CSV: terminal_id,merchant_id,lat,lon,uncertainty_m,limit_m,mcc,name */
int pg_merchants_parse_row(const char *line, size_t len, struct pg_merchant_rec *rec);
int pg_merchants_import(struct pg_store *st, const char *path, struct pg_import_stats *stats);

/* ---- engine: policy, per-terminal windows, recorded decisions, alerts ---- */

enum pg_decision {
	PG_DEC_IN_PLACE,
	PG_DEC_MOVED,
	PG_DEC_UNDETERMINED,
	PG_DEC_UNREGISTERED,
	PG_DEC_FORMAT,
};
enum pg_reason { PG_RSN_NONE, PG_RSN_DISTANCE, PG_RSN_COUNTRY, PG_RSN_NO_CELL, PG_RSN_NO_TLV };
const char *pg_decision_name(int d);
const char *pg_reason_name(int r);

struct pg_pos_policy {
	unsigned alert_n;     /* moved transactions within the window that raise an alert */
	int64_t window_ms;    /* the window */
	unsigned mcc_strikes; /* a country mismatch counts this many (default alert_n) */
	int decline_moved;    /* 0: approve and flag; 1: decline with decline_code */
	char decline_code[3];
	int cell_field; /* the private field that carries the TLV (62) */
	/* decisions reported as events (bit 1u << enum pg_decision; 0 none):
	 * payguard.pos.decision_reported, in the batch's transaction (issue 15) */
	unsigned report;
};
void pg_pos_policy_default(struct pg_pos_policy *p);
/* Parses "none" or a comma-separated list of decision names (moved,
 * undetermined, ...) into a report mask; PG_EINVAL naming the bad word. */
int pg_pos_report_parse(const char *list, unsigned *mask);

struct pg_pos_result {
	int decision, reason, alert;
	double distance_m, excess_m;
	struct pg_estimate est;
	char rc[3]; /* response code (field 39) */
};

struct pg_pos_engine;
/* st may be NULL (dry run: nothing recorded). Loads cells and merchants from st. */
int pg_pos_engine_open(struct pg_pos_engine **out, struct pg_store *st,
		       const struct pg_pos_policy *pol);
/* Same, with indexes already loaded (the engine takes ownership of cells). */
int pg_pos_engine_open_with(struct pg_pos_engine **out, struct pg_store *st,
			    const struct pg_pos_policy *pol, struct pg_cells *cells);
void pg_pos_engine_free(struct pg_pos_engine *e);
struct pg_merchants;
/*
 * Decides with new cells and merchants from now on (cluster reload, issue
 * 14: loaded on another connection after an import elsewhere); the engine
 * takes ownership of both, frees the old ones, and keeps each terminal's
 * moved-transaction window by terminal id. Records already queued keep what
 * they were decided with. PG_ENOMEM leaves the engine as it was (and frees
 * the new ones).
 */
int pg_pos_engine_swap_ref(struct pg_pos_engine *e, struct pg_cells *cells,
			   struct pg_merchants *merchants);
/* Decides one 0100/0200 request and queues its record for the next commit. */
int pg_pos_engine_check(struct pg_pos_engine *e, const struct pg_iso_msg *req, int64_t now_ms,
			struct pg_pos_result *res);
/* Builds the response to any request (0100/0200/0800 and others). */
int pg_pos_engine_respond(struct pg_pos_engine *e, const struct pg_iso_msg *req,
			  const struct pg_pos_result *res, struct pg_iso_msg *resp);
/* Group commit: writes every queued record and alert in one transaction. */
int pg_pos_engine_commit(struct pg_pos_engine *e);
size_t pg_pos_engine_pending(const struct pg_pos_engine *e);
/*
 * A batch taken out of the engine's queue, so the event loop can decide the
 * next requests while a committer thread writes this one (PostgreSQL store
 * faults, docs/pos.md). Only the committer uses the store meanwhile.
 */
struct pg_pos_batch;
struct pg_pos_batch *pg_pos_batch_new(void);
void pg_pos_batch_free(struct pg_pos_batch *b);
size_t pg_pos_batch_n(const struct pg_pos_batch *b);
/* Moves the queued records into b (b's previous records are dropped). */
void pg_pos_engine_take(struct pg_pos_engine *e, struct pg_pos_batch *b);
/* Drops the queued records unwritten (their terminals were answered 96). */
void pg_pos_engine_drop(struct pg_pos_engine *e);
/*
 * Writes b in one transaction, one try; PG_EBUSY / PG_ECONNLOST: try again.
 * When *abort (read atomically, may be NULL) is set by the time the rows are
 * written, the transaction is rolled back and PG_ETIMEDOUT returned.
 */
int pg_pos_batch_write(struct pg_pos_engine *e, struct pg_pos_batch *b, int *abort);
/* 1 when b's transaction was committed, 0 when not, < 0 on error. */
int pg_pos_batch_stored(struct pg_pos_engine *e, const struct pg_pos_batch *b);
/* Removes b's transactions (a batch that was answered 96 but committed late). */
int pg_pos_batch_unwrite(struct pg_pos_engine *e, const struct pg_pos_batch *b);
/*
 * An engine that only writes batches (JetStream intake's sink, docs/pos.md):
 * no cells, merchants or windows are loaded; it decides nothing but the
 * alerts, which every batch write decides from the store with pol's
 * alert_n and mcc_strikes (the deciding nodes' policy; NULL: the default).
 */
int pg_pos_engine_open_writer(struct pg_pos_engine **out, struct pg_store *st,
			      const struct pg_pos_policy *pol);
/* The store the engine records into (NULL after detach). */
struct pg_store *pg_pos_engine_store(struct pg_pos_engine *e);
/* From now on decide without recording (dry runs, benchmarks). */
void pg_pos_engine_detach_store(struct pg_pos_engine *e);

/* ---- batch check (`payguard pos check`, src/pos/check.c) ---- */

struct pg_pos_check_input {
	const struct pg_iso_dialect *dialect;
	const struct pg_iso_framing *framing; /* frames of data (unused when hex) */
	int hex;			      /* data is one hex message per line */
	const uint8_t *data;
	size_t len;
	/* called for each message in order, n from 1: m and res, or both NULL
	 * for a message rejected (pg_last_error says why); may be NULL */
	void (*each)(void *arg, uint64_t n, const struct pg_iso_msg *m,
		     const struct pg_pos_result *res);
	void *arg;
};
enum {
	PG_POS_CHECK_FRAME = 1,
	PG_POS_CHECK_CHECK,
	PG_POS_CHECK_COMMIT,
	PG_POS_CHECK_READ,   /* pg_pos_check_file: reading the file */
	PG_POS_CHECK_STORE,  /* opening (and migrating) the store */
	PG_POS_CHECK_ENGINE, /* opening the engine */
};
struct pg_pos_check_stats {
	uint64_t messages, rejected, alerts;
	uint64_t decisions[PG_DEC_FORMAT + 1]; /* by enum pg_decision */
	double seconds;
	int stage;     /* on failure: one of PG_POS_CHECK_* */
	size_t offset; /* PG_POS_CHECK_FRAME: where the bad frame starts */
};
/* Decides every message of b through e, committing in groups and at the
 * end; a message that does not unpack is counted rejected, not fatal. 0, or
 * a negative PG_E code with st->stage (a framing error stops the batch: no
 * later message can be found). */
int pg_pos_check_batch(struct pg_pos_engine *e, const struct pg_pos_check_input *b,
		       struct pg_pos_check_stats *st);
/* `payguard pos check FILE`: the file's messages (b's data and len are
 * set here) through a fresh engine over the store db (NULL: the default
 * store), recorded unless dry (then windows live in memory only). 0, or a
 * negative PG_E code with st->stage; st->offset as pg_pos_check_batch. */
int pg_pos_check_file(const char *db, const struct pg_pos_policy *pol, const char *path, int dry,
		      struct pg_pos_check_input *b, struct pg_pos_check_stats *st);

/* Alerts life cycle: open -> acknowledged -> closed (or open -> closed). */
int pg_pos_alert_set_state(struct pg_store *st, int64_t id, const char *state, const char *note);
json_t *pg_pos_alerts_list(struct pg_store *st, const char *state_or_null, int limit);
int pg_pos_migrate(struct pg_store *st);
/*
 * PostgreSQL: creates pos_txn's day partitions (UTC) from today to
 * days_ahead days on, moving rows of those days out of the default
 * partition; SQLite: nothing to do.
 */
int pg_pos_partitions_ensure(struct pg_store *st, int64_t now_ms, int days_ahead);
/*
 * Removes transactions of days before the last keep_days (UTC): on
 * PostgreSQL whole day partitions are dropped, and rows left in the default
 * partition deleted; on SQLite the rows are deleted.
 */
int pg_pos_retention(struct pg_store *st, int64_t now_ms, int keep_days, int64_t *dropped_days,
		     int64_t *deleted_rows);
/*
 * As pg_pos_retention, and before rows go, gone(db, table, before_ms, arg)
 * runs in the same transaction: the rows of table (a day partition, or
 * pos_txn itself) whose ts < before_ms are removed when it returns >= 0, and
 * kept when it fails. So a caller can count what it removes (serve's
 * /metrics counters).
 */
typedef int (*pg_pos_gone_fn)(struct pg_db *db, const char *table, int64_t before_ms, void *arg);
int pg_pos_retention_counted(struct pg_store *st, int64_t now_ms, int keep_days,
			     pg_pos_gone_fn gone, void *arg, int64_t *dropped_days,
			     int64_t *deleted_rows);

/* ---- server ---- */

struct pg_pos_server_cfg {
	const char *host; /* "127.0.0.1" by default */
	int port;	  /* 0: any free port */
	const char *port_file;
	const struct pg_iso_dialect *dialect;
	struct pg_iso_framing framing;
	size_t max_msg;
	int idle_ms, frame_ms; /* idle connection cut; a frame must complete within frame_ms */
	int max_conns;
	int commit_us; /* how long a group-commit batch may stay open (0 = commit each pass) */
	/* PostgreSQL: a request not durable this long after arrival is answered 96 (<= 0: 2000) */
	int commit_timeout_ms;
	/*
	 * JetStream intake (issue 15, docs/pos.md): with nats set, a batch is
	 * published to the replicated stream instead of written to the store,
	 * and answered once the stream acknowledged it; commit_timeout_ms is
	 * then the stream's deadline. Unless no_sink, a sink thread with its
	 * own connection to sink_store (NULL: the default store) writes what
	 * every node published into the store.
	 */
	const char *nats;	  /* comma-separated NATS URLs; NULL: store intake */
	const char *node;	  /* subject suffix (NULL: the host name) */
	const char *sink_store;	  /* the sink's store */
	int no_sink;		  /* publish only */
	long long stream_max_mb;  /* the stream's byte limit (<= 0: 1024) */
	long long stream_max_age; /* seconds (<= 0: no limit) */
	volatile int *stop;	  /* set non-zero to stop */
	int bound_port;		  /* out: the port actually bound */
	volatile int ready;	  /* out: set once listening */
	/* called once the socket is bound and the port file written (may be NULL) */
	void (*on_listen)(const struct pg_pos_server_cfg *cfg);
	const void *on_listen_arg; /* for on_listen; unused by the server */
};
/* Runs the event loop until *stop (or SIGINT/SIGTERM when stop is NULL). */
int pg_pos_serve(struct pg_pos_server_cfg *cfg, struct pg_pos_engine *e);

/* The demonstration: sample cells and merchants, a server on loopback, five
 * terminals (stay, 2 km, 50 km, unknown cell, foreign MCC); db NULL = temp dir. */
int pg_pos_demo(const char *db, FILE *out);

/* ---- terminal side: a blocking client and a load generator ---- */

struct pg_pos_client {
	int fd;
	const struct pg_iso_dialect *d;
	struct pg_iso_framing fr;
	struct pg_buf in, out;
};
int pg_pos_client_connect(struct pg_pos_client *c, const char *host, int port,
			  const struct pg_iso_dialect *d, const struct pg_iso_framing *fr);
int pg_pos_client_send_raw(struct pg_pos_client *c, const uint8_t *p, size_t n);
int pg_pos_client_recv(struct pg_pos_client *c, struct pg_iso_msg *resp, int timeout_ms);
int pg_pos_client_exchange(struct pg_pos_client *c, const struct pg_iso_msg *req,
			   struct pg_iso_msg *resp, int timeout_ms);
void pg_pos_client_close(struct pg_pos_client *c);

struct pg_pos_load_cfg {
	const char *host;
	int port;
	const struct pg_iso_dialect *dialect;
	struct pg_iso_framing framing;
	int conns;
	int inflight; /* requests outstanding per connection (0 or 1: one at a time) */
	int duration_ms;
	struct pg_iso_msg **templates; /* each with a 6-digit field 11, rewritten per request */
	int ntemplates;
	uint64_t stan_base;
	FILE *log; /* "tid|stan|rc|decision" per answer, or NULL */
};
struct pg_pos_load_stats {
	uint64_t sent, answered, errors;
	uint64_t mismatched; /* answers whose STAN was not the oldest outstanding request's */
	double seconds, tps, p50_us, p99_us, max_us; /* max: the slowest answer */
};
int pg_pos_load(const struct pg_pos_load_cfg *cfg, struct pg_pos_load_stats *st);

#endif
