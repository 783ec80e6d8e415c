/*
 * `payguard pos demo`: seed 4 end to end in a few seconds. Writes a small
 * OpenCellID-format cell file and a merchant file, imports both, runs the
 * server on loopback in a thread and drives five terminals through it.
 */
#include "payguard/clock.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/pos.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Berlin (MCC 262) around the merchants; one Polish cell (MCC 260) for the foreign case. */
static const char cells_csv[] =
    "radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,"
    "averageSignal\n"
    "LTE,262,1,1001,11001,101,13.4045,52.5205,500,40,1,1459692000,1700000000,-85\n"
    "LTE,262,1,1001,11002,102,13.4100,52.5230,800,25,1,1459692000,1700000000,\n"
    "LTE,262,1,1001,11003,,13.4050,52.5380,300,12,1,1459692000,1700000000,0\r\n"
    "LTE,262,1,1001,11004,,13.4080,52.5390,300,9,1,1459692000,1700000000,0\n"
    "LTE,262,1,1201,12001,,13.4050,52.9700,1000,30,1,1459692000,1700000000,0\n"
    "GSM,262,1,1201,12002,,13.4200,52.9650,1200,30,1,1459692000,1700000000,0\n"
    "LTE,260,2,5001,77001,,14.5528,53.4285,1000,50,1,1459692000,1700000000,0\n"
    "LTE,262,1,,11009,,13.40,52.52,500,1,1,1459692000,1700000000,0\n"
    "this line is not a cell\n";

static const char merchants_csv[] =
    "terminal_id,merchant_id,lat,lon,uncertainty_m,limit_m,mcc,name\n"
    "T0000001,M00000000000001,52.5200,13.4050,50,1000,262,Cafe Mitte\n"
    "T0000002,M00000000000002,52.5200,13.4050,50,1000,262,Taxi 17\n"
    "T0000003,M00000000000003,52.5200,13.4050,50,1000,262,Food truck\n"
    "T0000004,M00000000000004,52.5200,13.4050,50,1000,262,Market stall\n"
    "T0000005,M00000000000005,52.5200,13.4050,50,1000,262,Courier\n";

struct scenario {
	const char *tid, *what;
	struct pg_cell_obs serving;
	int nneigh;
	struct pg_cell_obs neigh[2];
};

#define CELL(r, mcc, mnc, area, cid, sig)                                                          \
	{                                                                                          \
		r, mcc, mnc, area, cid, sig, PG_TA_NONE                                            \
	}

static const struct scenario scenarios[] = {
    {"T0000001",
     "stays at the merchant",
     CELL(PG_RADIO_LTE, 262, 1, 1001, 11001, -70),
     1,
     {CELL(PG_RADIO_LTE, 262, 1, 1001, 11002, -90)}},
    {"T0000002",
     "moved 2 km",
     CELL(PG_RADIO_LTE, 262, 1, 1001, 11003, -75),
     1,
     {CELL(PG_RADIO_LTE, 262, 1, 1001, 11004, -80)}},
    {"T0000003",
     "moved 50 km",
     CELL(PG_RADIO_LTE, 262, 1, 1201, 12001, -80),
     1,
     {CELL(PG_RADIO_GSM, 262, 1, 1201, 12002, -95)}},
    {"T0000004", "unknown cell", CELL(PG_RADIO_LTE, 262, 1, 1001, 99999, -80), 0, {{0}}},
    {"T0000005", "foreign MCC (Poland)", CELL(PG_RADIO_LTE, 260, 2, 5001, 77001, -70), 0, {{0}}},
};

struct srv {
	struct pg_pos_server_cfg cfg;
	struct pg_pos_engine *e;
	int rc;
};

static void *
srv_main(void *p)
{
	struct srv *s = p;

	s->rc = pg_pos_serve(&s->cfg, s->e);
	return NULL;
}

static int
write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return pg_error(PG_EIO, "demo", "cannot write '%s'", path);
	fputs(text, f);
	return fclose(f) == 0 ? 0 : PG_EIO;
}

static int
build(const struct pg_iso_dialect *d, const struct scenario *sc, int n, struct pg_iso_msg *m)
{
	struct pg_cell_report r = {.serving = sc->serving, .nneigh = sc->nneigh};
	struct pg_buf b = PG_BUF_INIT(256);
	char stan[8], f7[16];
	int rc;

	(void)d;
	for (int i = 0; i < sc->nneigh; i++)
		r.neigh[i] = sc->neigh[i];
	snprintf(stan, sizeof(stan), "%06d", n);
	snprintf(f7, sizeof(f7), "1125%06d", n);
	pg_iso_msg_init(m);
	pg_iso_set_mti(m, "0200");
	pg_iso_set_str(m, 2, "4761739001010119");
	pg_iso_set_str(m, 3, "000000");
	pg_iso_set_str(m, 4, "000000001250");
	pg_iso_set_str(m, 7, f7);
	pg_iso_set_str(m, 11, stan);
	pg_iso_set_str(m, 22, "071");
	pg_iso_set_str(m, 41, sc->tid);
	{
		char mid[16];

		snprintf(mid, sizeof(mid), "M0000000000000%c", sc->tid[7]);
		pg_iso_set_str(m, 42, mid);
	}
	pg_iso_set_str(m, 49, "978");
	rc = pg_celltlv_encode(&r, &b);
	if (rc == 0)
		rc = pg_iso_set(m, 62, b.data, b.len);
	pg_buf_release(&b);
	return rc;
}

/* Imports the sample cells and merchants, printing what was imported. */
static int
demo_import(struct pg_store *st, const char *cpath, const char *mpath, FILE *out)
{
	struct pg_import_stats is;
	int rc = pg_cells_import(st, cpath, &is);

	if (rc < 0)
		return rc;
	fprintf(out, "cells: %llu rows, %llu imported, %llu bad (", (unsigned long long)is.rows,
		(unsigned long long)is.imported, (unsigned long long)is.bad);
	for (uint64_t i = 0; i < is.bad && i < 5; i++)
		fprintf(out, "%sline %llu: %s", i ? "; " : "",
			(unsigned long long)is.first_bad_line[i], is.first_bad_reason[i]);
	fprintf(out, ")\n");
	rc = pg_merchants_import(st, mpath, &is);
	if (rc < 0)
		return rc;
	fprintf(out, "merchants: %llu terminals imported\n", (unsigned long long)is.imported);
	return 0;
}

/* The terminals' side: an echo test, then each scenario twice. */
static int
demo_traffic(struct pg_pos_client *cl, const struct pg_iso_dialect *d, struct pg_iso_msg *req,
	     struct pg_iso_msg *resp, FILE *out)
{
	int rc, n = 0;

	/* network management first: 0800 echo test -> 0810 */
	pg_iso_msg_init(req);
	pg_iso_set_mti(req, "0800");
	pg_iso_set_str(req, 7, "1125120000");
	pg_iso_set_str(req, 11, "000001");
	pg_iso_set_str(req, 70, "301");
	rc = pg_pos_client_exchange(cl, req, resp, 5000);
	if (rc < 0)
		return rc;
	fprintf(out, "echo test: 0800 -> %s, response code %.2s\n\n", resp->mti,
		pg_iso_has(resp, 39) ? (const char *)resp->arena + resp->off[39] : "--");
	fprintf(out, "%-9s %-22s %-4s %-4s %-3s %s\n", "terminal", "scenario", "txn", "resp", "rc",
		"decision");
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		for (int k = 0; k < 2; k++) {
			char rcode[4] = "--", dec[32] = "";

			rc = build(d, &scenarios[i], ++n + 1, req);
			if (rc == 0)
				rc = pg_pos_client_exchange(cl, req, resp, 5000);
			if (rc < 0)
				return rc;
			pg_iso_get_str(d, resp, 39, rcode, sizeof(rcode));
			pg_iso_get_str(d, resp, 44, dec, sizeof(dec));
			fprintf(out, "%-9s %-22s %-4s %-4s %-3s %s\n", scenarios[i].tid,
				k ? "" : scenarios[i].what, req->mti, resp->mti, rcode, dec);
		}
	}
	return 0;
}

static void
print_alerts(json_t *alerts, FILE *out)
{
	fprintf(out, "\nalerts stored:\n");
	for (size_t i = 0; i < json_array_size(alerts); i++) {
		json_t *a = json_array_get(alerts, i), *ev = json_object_get(a, "evidence");

		fprintf(
		    out,
		    "  #%lld %s %s reason=%s transactions=%lld distance=%.0f m "
		    "(estimate acc %.0f m, %s confidence)\n",
		    (long long)json_integer_value(json_object_get(a, "id")),
		    json_string_value(json_object_get(a, "terminal")),
		    json_string_value(json_object_get(a, "state")),
		    json_string_value(json_object_get(a, "reason")),
		    (long long)json_integer_value(json_object_get(a, "transactions")),
		    json_number_value(json_object_get(ev, "distance_m")),
		    json_number_value(json_object_get(json_object_get(ev, "estimate"), "acc_m")),
		    json_string_value(
			json_object_get(json_object_get(ev, "estimate"), "confidence")));
	}
}

int
pg_pos_demo(const char *db, FILE *out)
{
	char dir[] = "/tmp/payguard-pos-demo-XXXXXX", path[512], cpath[512], mpath[512];
	const struct pg_iso_dialect *d = pg_iso_dialect_builtin("binary");
	struct pg_store st = {0};
	struct pg_pos_policy pol;
	struct srv s;
	struct pg_pos_client cl = {.fd = -1};
	struct pg_iso_msg *req = malloc(sizeof(*req)), *resp = malloc(sizeof(*resp));
	volatile int stop = 0;
	pthread_t th;
	int rc, started = 0;
	uint64_t t0 = pg_mono_ms();
	json_t *alerts = NULL;

	memset(&s, 0, sizeof(s));
	if (!req || !resp || !mkdtemp(dir)) {
		rc = pg_error(PG_EIO, "demo", "cannot create a temporary directory");
		goto out;
	}
	snprintf(cpath, sizeof(cpath), "%s/cells.csv", dir);
	snprintf(mpath, sizeof(mpath), "%s/merchants.csv", dir);
	snprintf(path, sizeof(path), "%s/payguard.db", dir);
	rc = write_text(cpath, cells_csv);
	if (rc == 0)
		rc = write_text(mpath, merchants_csv);
	if (rc == 0)
		rc = pg_store_open(&st, db ? db : path);
	if (rc < 0)
		goto out;
	fprintf(out, "== POS relocation monitoring (seed 4) ==\nstore: %s\n", db ? db : path);
	rc = demo_import(&st, cpath, mpath, out);
	if (rc < 0)
		goto out;
	pg_pos_policy_default(&pol);
	pol.alert_n = 2;
	pol.decline_moved = 1;
	memcpy(pol.decline_code, "59", 3);
	rc = pg_pos_engine_open(&s.e, &st, &pol);
	if (rc < 0)
		goto out;
	s.cfg.host = "127.0.0.1";
	s.cfg.dialect = d;
	s.cfg.framing.kind = PG_FRAME_BIN2;
	s.cfg.stop = &stop;
	if (pthread_create(&th, NULL, srv_main, &s) != 0) {
		rc = pg_error(PG_ESYS, "demo", "cannot start the server thread");
		goto out;
	}
	started = 1;
	while (!s.cfg.ready && !s.rc && pg_mono_ms() - t0 < 5000)
		usleep(1000);
	if (!s.cfg.ready) {
		rc = s.rc ? s.rc : pg_error(PG_ETIMEDOUT, "demo", "server did not start");
		goto out;
	}
	fprintf(out,
		"server: 127.0.0.1:%d, binary dialect, 2-byte length framing; policy: 2 moved "
		"transactions in 1 h raise an alert, a foreign MCC at once; moved terminals are "
		"declined with 59\n\n",
		s.cfg.bound_port);
	rc = pg_pos_client_connect(&cl, "127.0.0.1", s.cfg.bound_port, d, &s.cfg.framing);
	if (rc < 0)
		goto out;
	rc = demo_traffic(&cl, d, req, resp, out);
	if (rc < 0)
		goto out;
	pg_pos_client_close(&cl);
	stop = 1;
	pthread_join(th, NULL);
	started = 0;
	if (s.rc < 0) {
		rc = s.rc;
		goto out;
	}
	alerts = pg_pos_alerts_list(&st, NULL, 100);
	print_alerts(alerts, out);
	fprintf(out, "\ndone in %.1f s\n", (double)(pg_mono_ms() - t0) / 1000.0);
out:
	if (started) {
		stop = 1;
		pthread_join(th, NULL);
	}
	pg_pos_client_close(&cl);
	pg_pos_engine_free(s.e);
	pg_store_close(&st);
	json_decref(alerts);
	if (dir[strlen(dir) - 1] != 'X') {
		unlink(cpath);
		unlink(mpath);
		if (!db) {
			char p2[600];

			unlink(path);
			snprintf(p2, sizeof(p2), "%s-wal", path);
			unlink(p2);
			snprintf(p2, sizeof(p2), "%s-shm", path);
			unlink(p2);
		}
		rmdir(dir);
	}
	free(req);
	free(resp);
	return rc;
}
