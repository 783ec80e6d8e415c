/*
 * Benchmark driver for seed 4's relocation check: builds N terminal messages
 * (binary dialect, cell TLV in field 62) for the merchants in a store, then
 * times parse + cell lookup + distance + policy on one core, and times the
 * decoder alone on the same messages in the npm iso_8583 layout, which it
 * also writes out (hex frames) for the peer to decode.
 */
#include "payguard/clock.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/pos.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct blob {
	uint8_t *data;
	size_t *off, *len, n, used, cap;
};

static int
blob_add(struct blob *b, const uint8_t *p, size_t n)
{
	if (b->used + n > b->cap) {
		size_t nc = b->cap ? 2 * b->cap : 1 << 20;
		uint8_t *nd;

		while (nc < b->used + n)
			nc *= 2;
		nd = realloc(b->data, nc);
		if (!nd)
			return PG_ENOMEM;
		b->data = nd;
		b->cap = nc;
	}
	memcpy(b->data + b->used, p, n);
	b->off[b->n] = b->used;
	b->len[b->n++] = n;
	b->used += n;
	return 0;
}

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint32_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)rng;
}

/* CPU time of this thread: on a shared machine the wall clock also counts
 * other people's work; "per core" is messages per CPU-second. */
static uint64_t
cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int
cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	const char *db = NULL, *peer_out = NULL;
	size_t n = 1000000;
	int runs = 5, rc;
	struct pg_store st = {0};
	struct pg_pos_policy pol;
	struct pg_pos_engine *e = NULL;
	struct pg_iso_dialect npm;
	const struct pg_iso_dialect *bin = pg_iso_dialect_builtin("binary");
	static const char npmdef[] = "dialect npm\nbase ascii\nbitmap binary\n";
	struct blob bm = {0}, am = {0};
	struct pg_iso_msg *m = malloc(sizeof(*m));
	struct pg_buf out = PG_BUF_INIT(PG_ISO_ARENA), tlv = PG_BUF_INIT(512);
	sqlite3_stmt *q;
	double *lat = NULL, *lon = NULL;
	char(*tids)[9] = NULL, (*mids)[16] = NULL;
	int *cmcc = NULL, *cmnc = NULL, *carea = NULL;
	long long *ccid = NULL;
	int ncells = 0, nterm = 0;
	double rates[16], drates[16], wrates[16];
	uint64_t counts[5] = {0};

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--db") && i + 1 < argc)
			db = argv[++i];
		else if (!strcmp(argv[i], "--messages") && i + 1 < argc)
			n = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
			runs = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--peer-out") && i + 1 < argc)
			peer_out = argv[++i];
	}
	if (!db || !m || runs < 1 || runs > 16) {
		fprintf(stderr,
			"usage: pos_bench --db PATH [--messages N] [--runs R] [--peer-out F]\n");
		return 2;
	}
	pg_iso_dialect_parse(&npm, npmdef, strlen(npmdef));
	bm.off = malloc(n * sizeof(size_t));
	bm.len = malloc(n * sizeof(size_t));
	am.off = malloc(n * sizeof(size_t));
	am.len = malloc(n * sizeof(size_t));
	if ((rc = pg_store_open(&st, db)) < 0 || (rc = pg_pos_migrate(&st)) < 0)
		goto fail;
	/* the cells and terminals to draw messages from */
	sqlite3_prepare_v2(st.db, "SELECT count(*) FROM pos_cells", -1, &q, NULL);
	sqlite3_step(q);
	ncells = sqlite3_column_int(q, 0);
	sqlite3_finalize(q);
	sqlite3_prepare_v2(st.db, "SELECT count(*) FROM pos_terminals", -1, &q, NULL);
	sqlite3_step(q);
	nterm = sqlite3_column_int(q, 0);
	sqlite3_finalize(q);
	if (ncells < 10 || nterm < 1) {
		fprintf(stderr, "pos_bench: the store needs cells and merchants\n");
		return 1;
	}
	lat = malloc(ncells * sizeof(double));
	lon = malloc(ncells * sizeof(double));
	cmcc = malloc(ncells * sizeof(int));
	cmnc = malloc(ncells * sizeof(int));
	carea = malloc(ncells * sizeof(int));
	ccid = malloc(ncells * sizeof(long long));
	tids = malloc(nterm * sizeof(*tids));
	mids = malloc(nterm * sizeof(*mids));
	sqlite3_prepare_v2(
	    st.db, "SELECT mcc,net,area,cell,lat,lon FROM pos_cells WHERE radio=2 ORDER BY cell",
	    -1, &q, NULL);
	ncells = 0;
	while (sqlite3_step(q) == SQLITE_ROW) {
		cmcc[ncells] = sqlite3_column_int(q, 0);
		cmnc[ncells] = sqlite3_column_int(q, 1);
		carea[ncells] = sqlite3_column_int(q, 2);
		ccid[ncells] = sqlite3_column_int64(q, 3);
		lat[ncells] = sqlite3_column_double(q, 4);
		lon[ncells++] = sqlite3_column_double(q, 5);
	}
	sqlite3_finalize(q);
	sqlite3_prepare_v2(st.db, "SELECT tid, mid FROM pos_terminals ORDER BY tid", -1, &q, NULL);
	nterm = 0;
	while (sqlite3_step(q) == SQLITE_ROW) {
		snprintf(tids[nterm], 9, "%s", (const char *)sqlite3_column_text(q, 0));
		snprintf(mids[nterm++], 16, "%s", (const char *)sqlite3_column_text(q, 1));
	}
	sqlite3_finalize(q);
	/* terminal t is registered at site t, whose cells are 3t..3t+2 (see run.sh);
	 * 70% at the site, 20% at another site, 7% unknown cell, 3% foreign network */
	for (size_t i = 0; i < n; i++) {
		int t = (int)(rnd() % (uint32_t)nterm), c = 3 * t + (int)(rnd() % 3),
		    kind = (int)(rnd() % 100);
		struct pg_cell_report r = {0};
		char stan[8];

		if (kind >= 70 && kind < 90)
			c = (int)(rnd() % (uint32_t)ncells); /* at another site */
		r.serving = (struct pg_cell_obs){2,
						 (uint16_t)cmcc[c],
						 (uint16_t)cmnc[c],
						 (uint32_t)carea[c],
						 (uint64_t)ccid[c],
						 (int8_t)-70,
						 PG_TA_NONE};
		if (kind >= 90 && kind < 97)
			r.serving.cid += 100000000; /* unknown cell */
		if (kind >= 97)
			r.serving.mcc = 260; /* foreign network */
		r.nneigh = 2;
		for (int k = 0; k < 2; k++) {
			int c2 = 3 * (c / 3) + (c % 3 + 1 + k) % 3; /* the site's other sectors */

			r.neigh[k] = (struct pg_cell_obs){2,
							  (uint16_t)cmcc[c2],
							  (uint16_t)cmnc[c2],
							  (uint32_t)carea[c2],
							  (uint64_t)ccid[c2],
							  (int8_t)(-85 - 5 * k),
							  PG_TA_NONE};
		}
		pg_buf_reset(&tlv);
		pg_celltlv_encode(&r, &tlv);
		snprintf(stan, sizeof(stan), "%06zu", i % 1000000);
		pg_iso_msg_init(m);
		pg_iso_set_mti(m, "0200");
		pg_iso_set_str(m, 2, "4761739001010119");
		pg_iso_set_str(m, 3, "000000");
		pg_iso_set_str(m, 4, "000000001250");
		pg_iso_set_str(m, 7, "1125120000");
		pg_iso_set_str(m, 11, stan);
		pg_iso_set_str(m, 22, "071");
		pg_iso_set_str(m, 41, tids[t]);
		pg_iso_set_str(m, 42, mids[t]);
		pg_iso_set_str(m, 49, "978");
		pg_iso_set(m, 62, tlv.data, tlv.len);
		pg_buf_reset(&out);
		if ((rc = pg_iso_pack(bin, m, &out)) < 0 ||
		    (rc = blob_add(&bm, out.data, out.len)) < 0)
			goto fail;
		/* the peer layout: the same fields, field 62 left out (binary; the peer
		 * holds it as text) and 102 added so both carry a secondary bitmap */
		pg_iso_unset(m, 62);
		pg_iso_set_str(m, 102, "ACCOUNT-1");
		pg_buf_reset(&out);
		if ((rc = pg_iso_pack(&npm, m, &out)) < 0 ||
		    (rc = blob_add(&am, out.data, out.len)) < 0)
			goto fail;
	}
	pg_pos_policy_default(&pol);
	if ((rc = pg_pos_engine_open(&e, &st, &pol)) < 0)
		goto fail;
	pg_pos_engine_detach_store(e); /* the batch path: decide, record nothing */
	for (int r = 0; r < runs; r++) {
		uint64_t t0 = pg_mono_ns(), c0 = cpu_ns();
		int64_t now = pg_wall_ms();

		for (size_t i = 0; i < n; i++) {
			struct pg_pos_result res;

			if (pg_iso_unpack(bin, bm.data + bm.off[i], bm.len[i], m) < 0 ||
			    pg_pos_engine_check(e, m, now, &res) < 0) {
				fprintf(stderr, "pos_bench: message %zu: %s\n", i, pg_last_error());
				return 1;
			}
			if (r == 0)
				counts[res.decision]++;
		}
		rates[r] = (double)n / ((double)(cpu_ns() - c0) / 1e9);
		wrates[r] = (double)n / ((double)(pg_mono_ns() - t0) / 1e9);
	}
	for (int r = 0; r < runs; r++) {
		uint64_t t0 = cpu_ns();

		for (size_t i = 0; i < n; i++)
			if (pg_iso_unpack(&npm, am.data + am.off[i], am.len[i], m) < 0) {
				fprintf(stderr, "pos_bench: decode %zu: %s\n", i, pg_last_error());
				return 1;
			}
		drates[r] = (double)n / ((double)(cpu_ns() - t0) / 1e9);
	}
	qsort(rates, (size_t)runs, sizeof(double), cmp_d);
	qsort(drates, (size_t)runs, sizeof(double), cmp_d);
	qsort(wrates, (size_t)runs, sizeof(double), cmp_d);
	if (peer_out) {
		FILE *f = fopen(peer_out, "w");
		size_t k = n < 200000 ? n : 200000;

		if (!f)
			return 1;
		for (size_t i = 0; i < k; i++) {
			char *hex = malloc(2 * am.len[i] + 5);
			uint8_t pfx[2] = {(uint8_t)(am.len[i] >> 8), (uint8_t)am.len[i]};

			pg_hex_encode_upper(hex, pfx, 2, 0);
			pg_hex_encode_upper(hex + 4, am.data + am.off[i], am.len[i], 0);
			fprintf(f, "%s\n", hex);
			free(hex);
		}
		fclose(f);
	}
	printf("{\"messages\":%zu,\"cells\":%d,\"terminals\":%d,\"runs\":%d,"
	       "\"checks_per_s_median\":%.0f,\"checks_per_s_min\":%.0f,\"checks_per_s_max\":%.0f,"
	       "\"checks_per_wall_s_median\":%.0f,\"decode_per_s_median\":%.0f,\"in_place\":%llu,"
	       "\"moved\":%llu,"
	       "\"undetermined\":%llu,\"unregistered\":%llu,\"avg_msg_bytes\":%.1f,"
	       "\"avg_peer_msg_bytes\":%.1f}\n",
	       n, ncells, nterm, runs, rates[runs / 2], rates[0], rates[runs - 1], wrates[runs / 2],
	       drates[runs / 2], (unsigned long long)counts[0], (unsigned long long)counts[1],
	       (unsigned long long)counts[2], (unsigned long long)counts[3],
	       (double)bm.used / (double)n, (double)am.used / (double)n);
	return 0;
fail:
	fprintf(stderr, "pos_bench: %s (%s)\n", pg_strerror(rc), pg_last_error());
	return 1;
}
