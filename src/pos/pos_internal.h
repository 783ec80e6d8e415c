/* Private helpers shared by the pos sources (not part of the public API). */
#ifndef PAYGUARD_POS_INTERNAL_H
#define PAYGUARD_POS_INTERNAL_H

#include "payguard/pos.h"

/* Calls row() for each data line of a CSV file ("-" = stdin); the header line,
 * when present, must equal hdr. Rows that return PG_EFORMAT are counted bad. */
int pgi_pos_csv_foreach(const char *path, const char *hdr, struct pg_import_stats *stats,
			int (*row)(void *ctx, const char *line, size_t len), void *ctx);
void pgi_pos_stats_bad(struct pg_import_stats *s, uint64_t line, const char *why);
/* Imports a CSV file of reference data in one transaction: row() (given
 * the store's struct pg_db) writes each line; the commit notifies
 * PG_POS_REF_CHANNEL with payload what. 0 or a negative PG_E code. */
int pgi_pos_import_csv(struct pg_store *st, const char *path, const char *hdr, const char *what,
		       int (*row)(void *db, const char *line, size_t len),
		       struct pg_import_stats *stats);
/*
 * Reads every row of the query sql (after migrating the store) into a
 * growing array of records of size bytes, first room for cap of them: each
 * record is zeroed, then row() fills it from the statement's columns. *recs
 * is the caller's (also on failure, then freed by it); *n counts the
 * records. 0 or a negative PG_E code.
 */
struct pg_db_stmt;
int pgi_pos_load_rows(struct pg_store *st, const char *sql, size_t size, size_t cap, void **recs,
		      size_t *n, void (*row)(struct pg_db_stmt *q, void *rec));

/* Merchant index (terminal id -> merchant). */
struct pg_merchants;
int pgi_merchants_load(struct pg_store *st, struct pg_merchants **out);
void pgi_merchants_free(struct pg_merchants *m);
const struct pg_merchant_rec *pgi_merchants_find(const struct pg_merchants *m, const char *tid,
						 size_t len);
size_t pgi_merchants_n(const struct pg_merchants *m);
/* The i-th record (0 <= i < n), NULL past the end. */
const struct pg_merchant_rec *pgi_merchants_at(const struct pg_merchants *m, size_t i);
size_t pgi_merchants_index(const struct pg_merchants *m, const struct pg_merchant_rec *r);
uint64_t pgi_pos_tid_key(const char *tid, size_t len);

/* The channel an import of cells or merchants notifies (payload "cells" or
 * "merchants") when it commits: every POS server on the store reloads. */
#define PG_POS_REF_CHANNEL "payguard_pos_ref"

/*
 * One decided transaction as it is recorded (pos_txn) and, in JetStream
 * intake, as it travels through the stream (txcodec.c). The merchant's
 * figures are a copy, so a record decoded on another node carries the
 * evidence of the node that decided it (and a reload may free the index).
 */
struct pos_merchant_copy {
	double lat, lon, unc_m, limit_m;
	uint16_t mcc;
	uint8_t known;
};
struct pos_record {
	int64_t ts, window_start;
	char tid[9], mid[16], mti[5], stan[7], f7[11];
	struct pg_pos_result res;
	struct pg_cell_obs cell;
	struct pos_merchant_copy merchant;
	int have_cell;
};

/* The stream codec of a record (docs/pos.md, "JetStream intake"). */
#define PG_POS_REC_MAX 192 /* an encoded record is never longer */
int pgi_pos_rec_encode(const struct pos_record *r, struct pg_buf *out);
/* PG_EFORMAT with a detail unless p..n is exactly one valid record. */
int pgi_pos_rec_decode(const uint8_t *p, size_t n, struct pos_record *r);
/* The record's stable id (terminal, STAN, transmission time, decision time):
 * the stream's Nats-Msg-Id, so a publish tried again is stored once. */
void pgi_pos_rec_id(const struct pos_record *r, char *out, size_t outlen);

/* The records of a batch (engine.c), for the publisher and the sink. */
const struct pos_record *pgi_pos_batch_rec(const struct pg_pos_batch *b, size_t i);
/* Appends a copy of r; 0 or PG_ENOMEM. */
int pgi_pos_batch_push(struct pg_pos_batch *b, const struct pos_record *r);
void pgi_pos_batch_clear(struct pg_pos_batch *b);

/* ---- JetStream intake (jsintake.c) ---- */

#define PG_POS_INTAKE_PREFIX   "payguard-intake.pos."
#define PG_POS_INTAKE_SUBJECTS "payguard-intake.pos.>"

struct pg_pos_js_cfg {
	const char *nats;   /* comma-separated server URLs */
	const char *node;   /* the subject's last token */
	const char *stream; /* "PAYGUARD_POS" */
	int replicas;	    /* <= 0: 3, or 1 when the servers cannot replicate */
	int64_t max_bytes;  /* <= 0: 1 GiB */
	int64_t max_age_s;  /* <= 0: no age limit */
};
struct pg_pos_js;
/* Connects and creates the stream when it is missing. */
int pgi_pos_js_open(struct pg_pos_js **out, const struct pg_pos_js_cfg *cfg);
/* One try: publishes every record of b and waits up to wait_ms for all
 * acknowledgements; 0 once the stream holds them all. */
int pgi_pos_js_publish(struct pg_pos_js *j, const struct pg_pos_batch *b, int wait_ms);
void pgi_pos_js_close(struct pg_pos_js *j);

/* The engine's policy (the sink's writer decides alerts with it). */
const struct pg_pos_policy *pgi_pos_engine_policy(const struct pg_pos_engine *e);

struct pg_pos_sink_cfg {
	const char *nats, *stream, *durable;
	const char *store;	  /* the sink's own connection (NULL: the default store) */
	int batch;		  /* messages per fetch and transaction (<= 0: 512) */
	struct pg_pos_policy pol; /* the alert policy of the stored rows (alert_n 0: default) */
};
struct pg_pos_sink;
/* Starts the sink thread; it connects (and reconnects) on its own. */
int pgi_pos_sink_start(struct pg_pos_sink **out, const struct pg_pos_sink_cfg *cfg);
void pgi_pos_sink_stop(struct pg_pos_sink *k);

#endif
