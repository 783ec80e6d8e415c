/*
 * The worker processes `payguard serve` supervises: "pos" (the POS
 * relocation server of seed 4 on the shared store), "pos-traffic" (demo:
 * terminals of which some move) and "load" (periodic two-level k-means
 * estimation over a generated VM fleet, seed 3). Each runs until SIGTERM.
 */
#include "payguard/json.h"
#include "payguard/clock.h"
#include "payguard/db_json.h"
#include "payguard/db.h"
#include "payguard/error.h"
#include "payguard/events.h"
#include "payguard/fs.h"
#include "payguard/hex.h"
#include "payguard/image.h"
#include "payguard/link.h"
#include "payguard/load.h"
#include "payguard/log.h"
#include "payguard/mem.h"
#include "payguard/pos.h"
#include "payguard/serve.h"
#include "payguard/vse.h"
#include "serve_int.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t w_stop;

static void
on_term(int sig)
{
	(void)sig;
	w_stop = 1;
}

static void
install_term(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* a peer that went away (the pos worker restarting) is an error, not death */
	signal(SIGPIPE, SIG_IGN);
}

/* Sleeps up to ms, waking early on SIGTERM. */
static void
nap(int ms)
{
	for (int i = 0; i < ms / 50 && !w_stop; i++)
		usleep(50 * 1000);
}

/* ---- demo POS data: eight Berlin merchants, cells at each, some cells far away ---- */

struct demo_merchant {
	const char *name;
	double lat, lon;
};
static const struct demo_merchant merchants[] = {
    {"Cafe Mitte", 52.5200, 13.4050},	    {"Taxi 17", 52.5163, 13.3777},
    {"Food truck", 52.5076, 13.3904},	    {"Market stall", 52.4990, 13.4180},
    {"Courier", 52.5300, 13.4150},	    {"Kiosk Wedding", 52.5500, 13.3600},
    {"Bakery Neukoelln", 52.4810, 13.4350}, {"Flower shop", 52.5450, 13.4130},
};
#define NMERCH (sizeof(merchants) / sizeof(merchants[0]))

int
pgi_serve_demo_pos_data(struct pg_store *st, const char *dir)
{
	char cpath[600], mpath[600];
	struct pg_import_stats is;
	FILE *f;
	int rc;

	snprintf(cpath, sizeof(cpath), "%s/demo-cells.csv", dir);
	snprintf(mpath, sizeof(mpath), "%s/demo-merchants.csv", dir);
	f = fopen(cpath, "w");
	if (!f)
		return pg_error(PG_EIO, "serve", "cannot write '%s'", cpath);
	fprintf(f, "radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,"
		   "updated,averageSignal\n");
	for (size_t i = 0; i < NMERCH; i++)
		fprintf(f, "LTE,262,1,1001,%zu,,%.4f,%.4f,400,30,1,1459692000,1700000000,-80\n",
			20001 + i, merchants[i].lon, merchants[i].lat);
	/* Potsdam (about 25 km), Frankfurt (Oder) (about 80 km), Szczecin (Poland) */
	fprintf(f, "LTE,262,1,1201,30001,,13.0645,52.3906,800,30,1,1459692000,1700000000,-85\n"
		   "LTE,262,1,1301,30002,,14.5506,52.3471,1000,30,1,1459692000,1700000000,-85\n"
		   "LTE,260,2,5001,77001,,14.5528,53.4285,1000,50,1,1459692000,1700000000,-80\n");
	if (fclose(f) != 0)
		return pg_error(PG_EIO, "serve", "cannot write '%s'", cpath);
	f = fopen(mpath, "w");
	if (!f)
		return pg_error(PG_EIO, "serve", "cannot write '%s'", mpath);
	fprintf(f, "terminal_id,merchant_id,lat,lon,uncertainty_m,limit_m,mcc,name\n");
	for (size_t i = 0; i < NMERCH; i++)
		fprintf(f, "T%07zu,M%014zu,%.4f,%.4f,50,1500,262,%s\n", i + 1, i + 1,
			merchants[i].lat, merchants[i].lon, merchants[i].name);
	if (fclose(f) != 0)
		return pg_error(PG_EIO, "serve", "cannot write '%s'", mpath);
	rc = pg_cells_import(st, cpath, &is);
	if (rc == 0)
		rc = pg_merchants_import(st, mpath, &is);
	unlink(cpath);
	unlink(mpath);
	return rc;
}

static int
worker_pos(const char *dir, const char *store, int demo)
{
	struct pg_store st = {0};
	struct pg_pos_engine *e = NULL;
	struct pg_pos_policy pol;
	struct pg_pos_server_cfg cfg;
	char portfile[600];
	int rc;

	rc = pg_store_open(&st, store);
	if (rc < 0)
		return rc;
	rc = pg_pos_migrate(&st);
	if (rc == 0 && demo)
		rc = pgi_serve_demo_pos_data(&st, dir);
	if (rc < 0)
		goto out;
	pg_pos_policy_default(&pol);
	rc = pg_pos_report_parse(getenv(PG_SERVE_POS_REPORT_ENV), &pol.report);
	if (rc == 0)
		rc = pg_pos_engine_open(&e, &st, &pol);
	if (rc < 0)
		goto out;
	snprintf(portfile, sizeof(portfile), "%s/run/pos.port", dir);
	memset(&cfg, 0, sizeof(cfg));
	cfg.host = "127.0.0.1";
	cfg.port = 0;
	cfg.port_file = portfile;
	cfg.dialect = pg_iso_dialect_builtin("binary");
	cfg.framing.kind = PG_FRAME_BIN2;
	cfg.commit_us = 2000;
	/* JetStream intake (`serve --intake jetstream`): answered once the stream
	 * has a batch; this node's sink writes the stream into the store */
	if (getenv(PG_SERVE_INTAKE_ENV) && strcmp(getenv(PG_SERVE_INTAKE_ENV), "jetstream") == 0) {
		cfg.nats = getenv(PG_SERVE_NATS_ENV);
		cfg.node = getenv(PG_SERVE_NODE_ENV);
		cfg.sink_store = store;
		if (!cfg.nats || !cfg.nats[0]) {
			rc = pg_error(PG_EINVAL, "pos", "JetStream intake without NATS servers");
			goto out;
		}
		pg_info("pos", "intake through JetStream (%s)", cfg.node ? cfg.node : "host name");
	}
	rc = pg_pos_serve(&cfg, e); /* stops on SIGTERM and commits what is queued */
out:
	pg_pos_engine_free(e);
	pg_store_close(&st);
	return rc;
}

/* Reads the POS port the pos worker published; 0 if not (yet) there. */
static int
read_pos_port(const char *dir)
{
	char path[600];
	uint8_t *data = NULL;
	size_t len = 0;
	int port = 0;

	snprintf(path, sizeof(path), "%s/run/pos.port", dir);
	if (pg_read_file(path, 32, &data, &len) == 0) {
		char tmp[33];

		memcpy(tmp, data, len);
		tmp[len] = 0;
		port = atoi(tmp);
	}
	free(data);
	return port > 0 && port < 65536 ? port : 0;
}

static int
build_txn(struct pg_iso_msg *m, size_t term, uint32_t n, uint64_t serving, int foreign)
{
	struct pg_cell_report r;
	struct pg_buf b = PG_BUF_INIT(256);
	char stan[8], f7[16], tid[16], mid[24];
	int rc;

	memset(&r, 0, sizeof(r));
	if (foreign)
		r.serving =
		    (struct pg_cell_obs){PG_RADIO_LTE, 260, 2, 5001, 77001, -75, PG_TA_NONE};
	else
		r.serving =
		    (struct pg_cell_obs){PG_RADIO_LTE,
					 262,
					 1,
					 serving >= 30001 ? (serving == 30001 ? 1201 : 1301) : 1001,
					 serving,
					 -72,
					 PG_TA_NONE};
	snprintf(stan, sizeof(stan), "%06u", n % 1000000u);
	snprintf(f7, sizeof(f7), "1125%06u", n % 1000000u);
	snprintf(tid, sizeof(tid), "T%07zu", term + 1);
	snprintf(mid, sizeof(mid), "M%014zu", term + 1);
	pg_iso_msg_init(m);
	pg_iso_set_mti(m, "0200");
	pg_iso_set_str(m, 2, "4761739001010119");
	pg_iso_set_str(m, 3, "000000");
	pg_iso_set_str(m, 4, "000000001250");
	pg_iso_set_str(m, 7, f7);
	pg_iso_set_str(m, 11, stan);
	pg_iso_set_str(m, 22, "071");
	pg_iso_set_str(m, 41, tid);
	pg_iso_set_str(m, 42, mid);
	pg_iso_set_str(m, 49, "978");
	rc = pg_celltlv_encode(&r, &b);
	if (rc == 0)
		rc = pg_iso_set(m, 62, b.data, b.len);
	pg_buf_release(&b);
	return rc;
}

/* Demo terminals: 2 ("Taxi 17") drives to Potsdam and back, 5 ("Courier")
 * sometimes to Frankfurt (Oder), 8 now and then reports a Polish cell. */
static int
worker_pos_traffic(const char *dir)
{
	const struct pg_iso_dialect *d = pg_iso_dialect_builtin("binary");
	struct pg_iso_framing fr = {.kind = PG_FRAME_BIN2};
	struct pg_pos_client cl = {.fd = -1};
	struct pg_iso_msg *req = malloc(sizeof(*req)), *resp = malloc(sizeof(*resp));
	uint32_t n = (uint32_t)(pg_wall_ms() % 100000), rnd = (uint32_t)getpid() * 2654435761u;
	int connected = 0;

	if (!req || !resp) {
		free(req);
		free(resp);
		return PG_ENOMEM;
	}
	while (!w_stop) {
		size_t term = n % NMERCH;
		uint64_t cell = 20001 + term;
		int foreign = 0, port;

		if (!connected) {
			port = read_pos_port(dir);
			if (!port || pg_pos_client_connect(&cl, "127.0.0.1", port, d, &fr) < 0) {
				nap(500);
				continue;
			}
			connected = 1;
		}
		rnd = rnd * 1103515245u + 12345u;
		if (term == 1 && (rnd >> 16) % 100 < 40)
			cell = 30001;
		else if (term == 4 && (rnd >> 16) % 100 < 15)
			cell = 30002;
		else if (term == 7 && (rnd >> 16) % 100 < 3)
			foreign = 1;
		if (build_txn(req, term, ++n, cell, foreign) < 0 ||
		    pg_pos_client_exchange(&cl, req, resp, 5000) < 0) {
			pg_pos_client_close(&cl);
			cl.fd = -1;
			connected = 0;
			nap(500);
			continue;
		}
		nap(100);
	}
	pg_pos_client_close(&cl);
	free(req);
	free(resp);
	return 0;
}

/* ---- load: a generated fleet, a sliding window of a day, estimated every period ---- */

#define FLEET_N	      48
#define FLEET_SAMPLES 1440 /* one day at one per minute */
#define FLEET_WINDOW  240  /* four hours per estimate */

static json_t *
est_to_json(const struct pg_load_est *e, json_t **types_out)
{
	json_t *vms = json_array(), *types = json_array();

	for (size_t i = 0; i < pg_load_est_count(e); i++) {
		const struct pg_load_vm *v = pg_load_est_vm(e, i);

		json_array_append_new(
		    vms, json_pack("{s:s,s:i,s:f,s:I,s:[f,f,f,f]}", "name", v->name, "type",
				   v->type, "load", v->load, "samples", (json_int_t)v->nsamples,
				   "features", v->feat[0], v->feat[1], v->feat[2], v->feat[3]));
	}
	for (size_t i = 0; i < pg_load_est_ntypes(e); i++) {
		const struct pg_load_type *t = pg_load_est_type(e, i);

		json_array_append_new(types,
				      json_pack("{s:i,s:s,s:I,s:f,s:[f,f,f,f]}", "id", (int)i,
						"name", t->name, "count", (json_int_t)t->count,
						"mean_load", t->mean_load, "center", t->center[0],
						t->center[1], t->center[2], t->center[3]));
	}
	*types_out = types;
	return vms;
}

/* The event of a finished estimate (issue 15): its types and their loads,
 * the VM count and the silhouette; the types without their centres. */
static int
estimate_event(struct pg_db *db, const struct pg_load_est *e, int64_t at_ms)
{
	json_t *types = json_array(), *d;
	int rc;

	for (size_t i = 0; types && i < pg_load_est_ntypes(e); i++) {
		const struct pg_load_type *t = pg_load_est_type(e, i);

		json_array_append_new(types, json_pack("{s:i,s:s,s:I,s:f}", "id", (int)i, "name",
						       t->name, "count", (json_int_t)t->count,
						       "mean_load", t->mean_load));
	}
	d = json_pack("{s:I,s:I,s:f,s:o}", "at_ms", (json_int_t)at_ms, "vms",
		      (json_int_t)pg_load_est_count(e), "silhouette", pg_load_est_silhouette(e),
		      "types", types);
	if (!d)
		return PG_ENOMEM;
	rc = pg_event_emit(db, "load", "estimate_finished", NULL, d, NULL);
	json_decref(d);
	return rc;
}

static int
store_estimate(struct pg_store *st, const struct pg_load_est *e)
{
	json_t *types = NULL, *vms = est_to_json(e, &types);
	char *vs = pg_json_dumps(vms, JSON_COMPACT), *ts = pg_json_dumps(types, JSON_COMPACT);
	int64_t now = pg_wall_ms();
	int rc = PG_ENOMEM;

	/* the row and its event in one transaction (issue 15: never one without the other) */
	if (vs && ts)
		rc = pg_db_begin(st->pdb);
	if (rc == 0)
		rc = pg_db_run_json(
		    st->pdb,
		    "INSERT INTO serve_load(at_ms, silhouette, vms, types) VALUES(?,?,?,?)",
		    json_pack("[I,f,s,s]", (json_int_t)now, pg_load_est_silhouette(e), vs, ts),
		    NULL);
	if (rc == 0)
		rc = estimate_event(st->pdb, e, now);
	/* keep the last 200 estimates: enough for each VM's load over time */
	if (rc == 0)
		rc = pg_db_exec(st->pdb, "DELETE FROM serve_load WHERE id <= (SELECT max(id) FROM "
					 "serve_load) - 200");
	if (rc == 0)
		rc = pg_db_commit(st->pdb);
	else if (vs && ts)
		pg_db_rollback(st->pdb);
	free(vs);
	free(ts);
	json_decref(vms);
	json_decref(types);
	return rc;
}

static int
worker_load(const char *store, int period_ms)
{
	struct pg_load_series *fleet = calloc(FLEET_N, sizeof(*fleet));
	struct pg_store st = {0};
	struct pg_load_params p;
	size_t off = 0;
	int rc;

	if (!fleet)
		return PG_ENOMEM;
	rc = pg_store_open(&st, store);
	if (rc == 0)
		rc = pgi_serve_migrate(&st);
	if (rc == 0)
		rc = pg_events_migrate(st.pdb);
	for (size_t i = 0; rc == 0 && i < FLEET_N; i++) {
		int type;
		double heavy;

		pg_load_series_init(&fleet[i], FLEET_SAMPLES);
		rc = pg_load_gen_vm(42, i, FLEET_SAMPLES, &fleet[i], &type, &heavy);
	}
	pg_load_params_init(&p);
	p.n_threads = 1;
	while (rc == 0 && !w_stop) {
		struct pg_load_est *e = NULL;

		rc = pg_load_est_new(&e, &p);
		for (size_t i = 0; rc == 0 && i < FLEET_N; i++) {
			struct pg_load_series view = fleet[i];

			/* the window slides through the day: each estimate sees new samples */
			view.s = fleet[i].s + off;
			view.n = FLEET_WINDOW;
			view.cap = view.max = FLEET_WINDOW;
			rc = pg_load_est_add(e, &view);
		}
		if (rc == 0)
			rc = pg_load_est_finish(e);
		if (rc == 0)
			rc = store_estimate(&st, e);
		pg_load_est_free(e);
		off = (off + 20) % (FLEET_SAMPLES - FLEET_WINDOW);
		nap(period_ms);
	}
	for (size_t i = 0; i < FLEET_N; i++)
		pg_load_series_release(&fleet[i]);
	free(fleet);
	pg_store_close(&st);
	return rc;
}

/* ---- vse: the VSE hypervisor (socket DIR/vse/hv.sock), driven through the API ---- */

/* --demo: two VSEs on different links, created through the hypervisor's own
 * socket API once it listens (kept across restarts: created only if absent). */
struct vse_demo {
	char dir[600];
	pthread_t t;
};

static void *
vse_demo_thread(void *arg)
{
	/* each with its own payment-kind applet, so the NFC switch routes to each */
	static const struct {
		const char *name, *link, *applet;
	} demo[] = {{"demo-pay", "t1", "payment"}, {"demo-transit", "swp", "transit"}};
	struct vse_demo *d = arg;
	char sock[640], mhex[33];
	uint8_t master[16];

	snprintf(sock, sizeof(sock), "%s/vse/hv.sock", d->dir);
	if (pgi_serve_master_key(d->dir, master) < 0)
		return NULL;
	pg_hex_encode_upper(mhex, master, 16, 0);
	pg_memzero(master, sizeof(master));
	for (size_t i = 0; i < sizeof(demo) / sizeof(demo[0]) && !w_stop; i++) {
		for (int tries = 0; tries < 100 && !w_stop; tries++) {
			json_t *resp = NULL;
			json_t *req = json_pack(
			    "{s:s,s:{s:s,s:s,s:s,s:[s,s,s,s],s:{s:s,s:i},s:{s:s}}}", "op", "create",
			    "vse", "name", demo[i].name, "arena", "256K", "pmem", "64K", "applets",
			    "ppse", demo[i].applet, "test", "aram", "keys", "master", mhex, "kvn",
			    0x30, "expose", "link", demo[i].link);
			/* the call owns req */
			int rc = pg_vse_api_call(sock, req, &resp, 5000);

			json_decref(resp);
			if (rc == 0 || rc == PG_EEXIST || rc == PG_EINVAL)
				break;
			pg_clear_error();
			nap(200);
		}
	}
	pg_memzero(mhex, sizeof(mhex));
	return NULL;
}

static int
worker_vse(const char *dir, const char *store, int demo)
{
	struct pg_vse_hv_opts o = {.data_dir = dir, .exe = NULL, .ready_fd = -1};
	const char *node = getenv(PG_SERVE_NODE_ENV);
	struct vse_demo d;
	char announce[600];
	int rc, started = 0;

	/* socket-exposed VSEs are announced to the SE OS worker's endpoint folder */
	snprintf(announce, sizeof(announce), "%s/seos/endpoints", dir);
	rc = pg_mkdir_p(announce, 0700);
	if (rc < 0)
		return rc;
	o.announce_dir = announce;
	o.stop = (const volatile int *)&w_stop;
	/* a cluster node: the registry is the shared store's, and this
	 * hypervisor runs the VSEs of its node (their memory is on its disk) */
	if (node && node[0] && store && pg_db_url_is_postgres(store)) {
		o.store = store;
		o.node = node;
	}
	if (demo) {
		snprintf(d.dir, sizeof(d.dir), "%s", dir);
		started = pthread_create(&d.t, NULL, vse_demo_thread, &d) == 0;
	}
	rc = pg_vse_serve(&o);
	if (started) {
		w_stop = 1;
		pthread_join(d.t, NULL);
	}
	return rc;
}

/* ---- image: watch DIR/images; with --demo first two generated disks and an advisory ---- */

/* One demo disk of the image area's demo in DIR/<sub>, scanned into the store;
 * its fixed .deb is linked into DIR/repo, the folder upgrades take packages from. */
static int
image_demo_disk(struct pg_store *st, const char *dir, const char *sub)
{
	char demodir[600], path[700], repo[700];
	json_t *sum = NULL;
	size_t nadv = 0;
	int rc = 0;

	snprintf(demodir, sizeof(demodir), "%s/%s", dir, sub);
	snprintf(path, sizeof(path), "%s/demo-disk.img", demodir);
	if (access(path, F_OK) != 0) {
		/* its chatter goes to /dev/null, the results to our store */
		fflush(stdout);
		if (!freopen("/dev/null", "w", stdout))
			return pg_error(PG_EIO, "serve", "cannot silence the image demo");
		rc = pg_image_demo(demodir, 1);
	}
	if (rc == 0) {
		snprintf(path, sizeof(path), "%s/DEBIAN-DEMO-2026-0001.json", demodir);
		rc = pg_image_advisories_import(st, path, &nadv);
	}
	if (rc == 0) {
		snprintf(path, sizeof(path), "%s/demo-tool_1.0-2_amd64.deb", demodir);
		snprintf(repo, sizeof(repo), "%s/repo/demo-tool_1.0-2_amd64.deb", dir);
		if (link(path, repo) < 0 && errno != EEXIST)
			rc = pg_error(PG_EIO, "serve", "cannot link %s into the repo: %s", path,
				      strerror(errno));
	}
	if (rc == 0) {
		snprintf(path, sizeof(path), "%s/demo-disk.img", demodir);
		rc = pg_image_scan(st, path, &sum);
		json_decref(sum);
	}
	return rc;
}

/* The configured image_backing_dirs (serve.json), exported by `serve run`. */
static int
image_backing_from_env(void)
{
	const char *env = getenv(PG_SERVE_BACKING_ENV);
	char buf[2048], *save = NULL;
	const char *dirs[16];
	size_t n = 0;

	if (!env || !env[0])
		return 0;
	snprintf(buf, sizeof(buf), "%s", env);
	for (char *t = strtok_r(buf, "\n", &save); t && n < 16; t = strtok_r(NULL, "\n", &save))
		dirs[n++] = t;
	return pg_image_set_backing_dirs(dirs, n);
}

static int
worker_image(const char *dir, const char *store, int demo)
{
	char imgdir[600], repo[600];
	struct pg_store st = {0};
	int rc;

	snprintf(imgdir, sizeof(imgdir), "%s/images", dir);
	snprintf(repo, sizeof(repo), "%s/repo", dir);
	rc = pg_mkdir_p(imgdir, 0700);
	if (rc == 0)
		rc = pg_mkdir_p(repo, 0700);
	if (rc == 0)
		rc = image_backing_from_env();
	if (rc == 0)
		rc = pg_store_open(&st, store);
	if (rc == 0)
		rc = pg_image_db_open(&st);
	/* the image area's own demo builds a tiny ext4 disk with a dpkg database
	 * (mkfs.ext4 -d), an OSV advisory and a fixed .deb, no download */
	if (rc == 0 && demo)
		rc = image_demo_disk(&st, dir, "image-demo");
	if (rc == 0 && demo)
		rc = image_demo_disk(&st, dir, "image-demo-2");
	if (rc == 0) /* scans what is there, then each image copied or moved in */
		rc = pg_image_watch(&st, imgdir, 0, (volatile int *)&w_stop);
	pg_store_close(&st);
	return rc;
}

/* ---- load from a live collector: every period one poll, then an estimate ---- */

#define LIVE_MAX_VMS 4096
#define LIVE_WINDOW  FLEET_WINDOW /* samples per VM the estimate sees */

struct live {
	struct pg_store *st;
	struct pg_load_series *vm;
	size_t n;
	size_t next; /* collectors list VMs in the same order each poll: try here first */
};

static int
live_sample(void *ctx, const char *name, const struct pg_load_sample *x)
{
	struct live *l = ctx;
	struct pg_load_series *v = NULL;
	int rc;

	if (l->next < l->n && strcmp(l->vm[l->next].vm, name) == 0)
		v = &l->vm[l->next];
	for (size_t i = 0; i < l->n && !v; i++)
		if (strcmp(l->vm[i].vm, name) == 0)
			v = &l->vm[i];
	if (!v) {
		if (l->n == LIVE_MAX_VMS)
			return 0; /* beyond the bound: not estimated (the store still has it) */
		v = &l->vm[l->n++];
		pg_load_series_init(v, 2 * LIVE_WINDOW);
		snprintf(v->vm, sizeof(v->vm), "%s", name);
	}
	/* a sliding window: past 2 windows, the older half goes */
	if (v->n == 2 * LIVE_WINDOW) {
		memmove(v->s, v->s + LIVE_WINDOW, LIVE_WINDOW * sizeof(*v->s));
		v->n = LIVE_WINDOW;
	}
	l->next = (size_t)(v - l->vm) + 1;
	rc = pg_load_series_push(v, x);
	if (rc == 0) /* a week at one sample a minute stays in the store */
		rc = pg_load_store_put(l->st, name, x, 1, 10080);
	return rc;
}

static int
worker_load_live(const char *store, const char *spec, int period_ms)
{
	const struct pg_load_ops *ops = NULL;
	const char *arg = NULL;
	struct pg_store st = {0};
	struct pg_load_params p;
	struct live l = {0};
	void *src = NULL;
	int rc, warned = 0;

	rc = pg_serve_check_load_source(spec);
	if (rc == 0)
		rc = pg_load_source_lookup(spec, &ops, &arg);
	if (rc == 0)
		rc = pg_store_open(&st, store);
	if (rc == 0)
		rc = pgi_serve_migrate(&st);
	if (rc == 0)
		rc = pg_load_store_migrate(&st);
	if (rc == 0)
		rc = pg_events_migrate(st.pdb);
	if (rc == 0)
		rc = (ops->open_live ? ops->open_live : ops->open)(arg, &src);
	l.st = &st;
	l.vm = calloc(LIVE_MAX_VMS, sizeof(*l.vm));
	if (rc == 0 && !l.vm)
		rc = PG_ENOMEM;
	pg_load_params_init(&p);
	p.n_threads = 1;
	p.k2 = 0; /* a real fleet's number of types is not known: by silhouette, 2..8 */
	while (rc == 0 && !w_stop) {
		struct pg_load_est *e = NULL;
		size_t used = 0;
		int prc = ops->poll(src, live_sample, &l);

		if (prc < 0) {
			/* a collector that cannot read now (a VM going away): next period */
			pg_warn("load", "%s: %s", spec, pg_last_error());
			pg_clear_error();
		}
		rc = pg_load_est_new(&e, &p);
		for (size_t i = 0; rc == 0 && i < l.n; i++) {
			struct pg_load_series view = l.vm[i];

			if (view.n < p.k1)
				continue; /* too few samples yet for its first level */
			if (view.n > LIVE_WINDOW) {
				view.s += view.n - LIVE_WINDOW;
				view.n = view.cap = view.max = LIVE_WINDOW;
			}
			if (pg_load_est_add(e, &view) == 0)
				used++;
			else
				pg_clear_error();
		}
		if (rc == 0 && used >= 2) {
			if (pg_load_est_finish(e) == 0) {
				rc = store_estimate(&st, e);
			} else if (!warned) {
				pg_warn("load", "no estimate yet from %zu VM(s): %s", used,
					pg_last_error());
				warned = 1;
			}
		}
		pg_load_est_free(e);
		nap(period_ms);
	}
	if (src)
		ops->close(src);
	for (size_t i = 0; l.vm && i < l.n; i++)
		pg_load_series_release(&l.vm[i]);
	free(l.vm);
	pg_store_close(&st);
	return rc;
}

/* The adapters of the worker table: each worker's own arguments. */
static int
run_pos(const struct pg_serve_wargs *a)
{
	return worker_pos(a->dir, a->store, a->demo);
}

static int
run_pos_traffic(const struct pg_serve_wargs *a)
{
	return worker_pos_traffic(a->dir);
}

static int
run_vse(const struct pg_serve_wargs *a)
{
	return worker_vse(a->dir, a->store, a->demo);
}

static int
run_seos(const struct pg_serve_wargs *a)
{
	return pgi_serve_worker_seos(a->dir, a->store, a->demo, (const volatile int *)&w_stop);
}

static int
run_image(const struct pg_serve_wargs *a)
{
	return worker_image(a->dir, a->store, a->demo);
}

static int
run_nfcswitch(const struct pg_serve_wargs *a)
{
	return pgi_serve_worker_nfcswitch(a->dir, a->store, (const volatile int *)&w_stop);
}

static int
run_load(const struct pg_serve_wargs *a)
{
	int period = a->load_period_ms > 0 ? a->load_period_ms : 5000;

	if (a->load_source && a->load_source[0])
		return worker_load_live(a->store, a->load_source, period);
	if (a->demo)
		return worker_load(a->store, period);
	/* nothing to collect: the service idles, /api/load says no estimate yet */
	pg_info("load", "no load_source configured and no --demo: idle");
	while (!w_stop)
		nap(1000);
	return 0;
}

/* ---- events: the outbox relay (issue 15), a singleton ---- */

/* The relay's sinks from the supervisor's environment (PG_SERVE_*_ENV):
 * NATS, webhooks and the secret's file, read here (checked private). With
 * none the relay only trims the outbox. */
static int
run_events(const struct pg_serve_wargs *a)
{
	const char *nats = getenv(PG_SERVE_NATS_ENV), *hooks = getenv(PG_SERVE_WEBHOOKS_ENV);
	const char *keyfile = getenv(PG_SERVE_WEBHOOK_KEY_ENV);
	const char *urls[PG_SERVE_MAX_WEBHOOKS];
	struct pg_events_relay_cfg c = {0};
	struct pg_store st = {0};
	char secret[256] = "", *copy = hooks && hooks[0] ? strdup(hooks) : NULL, *save = NULL;
	size_t n = 0;
	int rc = 0;

	for (char *t = copy ? strtok_r(copy, "\n", &save) : NULL; t && n < PG_SERVE_MAX_WEBHOOKS;
	     t = strtok_r(NULL, "\n", &save))
		urls[n++] = t;
	if (keyfile && keyfile[0])
		rc = pg_events_read_secret(keyfile, secret, sizeof(secret));
	if (rc == 0)
		rc = pg_store_open(&st, a->store);
	c.nats = nats && nats[0] ? nats : NULL;
	c.webhooks = urls;
	c.nwebhooks = n;
	c.webhook_secret = secret[0] ? secret : NULL;
	c.drain_on_stop = 1;
	if (rc == 0) {
		pg_info("events", "relay: %s%zu webhook(s)%s", c.nats ? "NATS JetStream, " : "", n,
			c.nats || n ? "" : " (no sink: the outbox is only trimmed)");
		rc = pg_events_relay(st.pdb, &c, (const volatile int *)&w_stop);
	}
	pg_memzero(secret, sizeof(secret));
	pg_store_close(&st);
	free(copy);
	return rc;
}

/* Every supervised worker, in the order the supervisor starts them and
 * /api/services lists them (docs/ARCHITECTURE.md, "Adding a worker"). */
const struct pg_serve_worker_def pgi_serve_workers[] = {
    /* name, function, --demo only, cluster singleton, stops last */
    {"pos", run_pos, 0, NULL, 0},
    {"load", run_load, 0, "load", 0},
    {"nfcswitch", run_nfcswitch, 0, NULL, 0},
    {"image", run_image, 0, "image-watch", 0},
    {"vse", run_vse, 0, NULL, 0},
    {"seos", run_seos, 0, NULL, 0},
    {"pos-traffic", run_pos_traffic, 1, "pos-traffic", 0},
    /* the outbox relay publishes what the others committed while stopping */
    {"events", run_events, 0, "events", 1},
    {NULL, NULL, 0, NULL, 0},
};

const struct pg_serve_worker_def *
pg_serve_worker_find(const char *name)
{
	for (const struct pg_serve_worker_def *w = pgi_serve_workers; w->name; w++)
		if (strcmp(w->name, name) == 0)
			return w;
	return NULL;
}

int
pg_serve_worker_names(char *out, size_t size, const char *sep)
{
	size_t n = 0;

	out[0] = '\0';
	for (const struct pg_serve_worker_def *w = pgi_serve_workers; w->name; w++) {
		int k = snprintf(out + n, size - n, "%s%s", n ? sep : "", w->name);

		if (k < 0 || (size_t)k >= size - n)
			return PG_ETOOBIG;
		n += (size_t)k;
	}
	return 0;
}

/* The supervisor's store URL (PG_SERVE_STORE_ENV), else DATA_DIR/payguard.db. */
static int
worker_store(const char *data_dir, char *out, size_t size)
{
	const char *env = getenv(PG_SERVE_STORE_ENV);
	int n = env && env[0] ? snprintf(out, size, "%s", env)
			      : snprintf(out, size, "%s/payguard.db", data_dir);

	if (n < 0 || (size_t)n >= size)
		return pg_error(PG_ETOOBIG, "serve", "the store URL is longer than %zu bytes",
				size - 1);
	return 0;
}

int
pg_serve_worker(const char *name, const char *data_dir, int demo, int load_period_ms,
		const char *load_source)
{
	const struct pg_serve_worker_def *w = pg_serve_worker_find(name);
	char store[1024];
	struct pg_serve_wargs a = {data_dir, store, demo, load_period_ms, load_source};

	if (!w)
		return pg_error(PG_ENOENT, "serve", "no worker named '%s'", name);
	install_term();
	pg_log_set_tag(name);
	if (worker_store(data_dir, store, sizeof(store)) < 0)
		return PG_ETOOBIG;
	if (getenv(PG_SERVE_NODE_ENV)) /* the events' source: /payguard/<node> */
		pg_events_set_node(getenv(PG_SERVE_NODE_ENV));
	return w->run(&a);
}

int
pg_serve_run_upgrade(const char *data_dir, int64_t job)
{
	char store[1024];

	install_term();
	pg_log_set_tag("upgrade");
	if (worker_store(data_dir, store, sizeof(store)) < 0)
		return PG_ETOOBIG;
	if (image_backing_from_env() < 0)
		return PG_EINVAL;
	return pgi_serve_worker_upgrade(data_dir, store, job, (const volatile int *)&w_stop);
}
