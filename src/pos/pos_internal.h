/* Private helpers shared by the pos sources (not part of the public API). */
#ifndef PAYGUARD_POS_INTERNAL_H
#define PAYGUARD_POS_INTERNAL_H

#include "payguard/pos.h"

/* Calls row() for each data line of a CSV file ("-" = stdin); the header line,
 * when present, must equal hdr. Rows that return PG_EFORMAT are counted bad. */
int pg_pos_csv_foreach(const char *path, const char *hdr, struct pg_import_stats *stats,
		       int (*row)(void *ctx, const char *line, size_t len), void *ctx);
void pg_pos_stats_bad(struct pg_import_stats *s, uint64_t line, const char *why);

/* Merchant index (terminal id -> merchant). */
struct pg_merchants;
int pg_merchants_load(struct pg_store *st, struct pg_merchants **out);
void pg_merchants_free(struct pg_merchants *m);
const struct pg_merchant_rec *pg_merchants_find(const struct pg_merchants *m, const char *tid,
						size_t len);
size_t pg_merchants_n(const struct pg_merchants *m);
/* The i-th record (0 <= i < n), NULL past the end. */
const struct pg_merchant_rec *pg_merchants_at(const struct pg_merchants *m, size_t i);
size_t pg_merchants_index(const struct pg_merchants *m, const struct pg_merchant_rec *r);
uint64_t pg_pos_tid_key(const char *tid, size_t len);

/* The channel an import of cells or merchants notifies (payload "cells" or
 * "merchants") when it commits: every POS server on the store reloads. */
#define PG_POS_REF_CHANNEL "payguard_pos_ref"

#endif
