/*
 * The daemon's secure-element side (issue 9 over seeds "SE operating system"
 * and "virtual secure elements"): the "seos" worker runs the device-side SE
 * OS (`payguard seos serve`'s library) on DIR/seos with, under --demo,
 * three simulated SEs on T=1, SWP and SPI sockets; VSEs the hypervisor
 * announces reach it too. A wallet-like client exchanges APDUs through it
 * every few seconds; those, like the NFC switch's, go to the live APDU log.
 */
#include "payguard/card.h"
#include "payguard/clock.h"
#include "payguard/converter.h"
#include "payguard/db_json.h"
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/mem.h"
#include "payguard/nfcswitch.h"
#include "payguard/seos.h"
#include "payguard/seos_client.h"
#include "payguard/vse.h"
#include "serve_int.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define APDU_LOG_KEEP 500

/*
 * Commands whose data is a secret or an authentication value (GP INITIALIZE
 * UPDATE / EXTERNAL AUTHENTICATE / PUT KEY / STORE DATA, ISO VERIFY and
 * CHANGE REFERENCE DATA): the log keeps their header only.
 */
static int
secret_ins(uint8_t ins)
{
	return ins == 0x50 || ins == 0x82 || ins == 0xD8 || ins == 0xE2 || ins == 0x20 ||
	       ins == 0x24;
}

int
pgi_serve_log_apdu(struct pg_store *st, const char *source, const char *se, const char *link,
		   const uint8_t *c, size_t cn, const uint8_t *r, size_t rn, int64_t us)
{
	static unsigned since_trim;
	char ch[2 * 300 + 1], rh[2 * 300 + 1], sw[5] = "";
	int rc;

	/* The status word ends the whole response: read it before the log clips the bytes. */
	if (rn >= 2) {
		pg_hex_encode_upper(sw, r + rn - 2, 2, 0);
		if (cn >= 5 && secret_ins(c[1])) {
			/* the cryptogram in the answer too: only the status word stays */
			r += rn - 2;
			rn = 2;
		}
	}
	if (cn > 300)
		cn = 300;
	if (rn > 300)
		rn = 300;
	if (cn >= 5 && secret_ins(c[1])) {
		pg_hex_encode_upper(ch, c, 5, 0);
		strcat(ch, "..");
	} else {
		pg_hex_encode_upper(ch, c, cn, 0);
	}
	pg_hex_encode_upper(rh, r, rn, 0);
	rc = pg_db_run_json(st->pdb,
			    "INSERT INTO serve_apdu(at_ms, source, se, link, capdu, rapdu, sw, us)"
			    " VALUES(?,?,?,?,?,?,?,?)",
			    json_pack("[I,s,s,s,s,s,s,I]", (json_int_t)pg_wall_ms(), source, se,
				      link ? link : "", ch, rh, sw, (json_int_t)us),
			    NULL);
	/* a ring of the last APDU_LOG_KEEP: trimmed now and then, not per row */
	if (rc == 0 && ++since_trim >= 50) {
		since_trim = 0;
		rc = pg_db_exec(st->pdb, "DELETE FROM serve_apdu WHERE id <= (SELECT max(id) FROM "
					 "serve_apdu) - 500");
	}
	return rc;
}

static uint64_t
now_us(void)
{
	return pg_mono_ns() / 1000u;
}

/* ---- seos ---- */

struct srv_run {
	struct pg_seos_server *srv;
	pthread_t t;
	int rc;
};

static void *
srv_thread(void *arg)
{
	struct srv_run *r = arg;

	r->rc = pg_seos_serve_run(r->srv);
	return NULL;
}

/* Wallet exchanges per SE (issue 17: a failed exchange is attributed to its
 * SE on the dashboard), with the last failure's message. */
struct xstat {
	char name[64];
	uint64_t n, failed;
	char last_error[160];
};
struct xstats {
	struct xstat se[32];
	int n;
};

static struct xstat *
xstat_get(struct xstats *x, const char *name)
{
	for (int i = 0; i < x->n; i++)
		if (strcmp(x->se[i].name, name) == 0)
			return &x->se[i];
	if (x->n == 32)
		return NULL;
	snprintf(x->se[x->n].name, sizeof(x->se[0].name), "%s", name);
	return &x->se[x->n++];
}

struct snap_ctx {
	json_t *arr;
	struct xstats *x;
};

static int
snap_row(void *arg, const struct pg_seos_entry *e)
{
	struct snap_ctx *c = arg;
	struct xstat *xs = NULL;

	for (int i = 0; i < c->x->n && !xs; i++)
		if (strcmp(c->x->se[i].name, e->name) == 0)
			xs = &c->x->se[i];
	json_array_append_new(
	    c->arr,
	    json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s}", "name", e->name, "id",
		      e->id_hex, "link", e->link, "addr", e->addr, "state",
		      pg_seos_state_name(e->state), "reason", e->reason, "config_version",
		      (json_int_t)e->version, "apps", (json_int_t)e->napps, "exchanges",
		      (json_int_t)(xs ? xs->n : 0), "exchanges_failed",
		      (json_int_t)(xs ? xs->failed : 0), "last_error", xs ? xs->last_error : ""));
	return 0;
}

static int
store_seos(struct pg_store *st, struct pg_seos *os, struct xstats *x, uint64_t exchanges,
	   uint64_t ok)
{
	struct snap_ctx c = {json_array(), x};
	json_t *snap;
	int rc;

	rc = pg_seos_list(os, snap_row, &c);
	snap = json_pack("{s:o,s:I,s:I}", "ses", c.arr, "exchanges", (json_int_t)exchanges,
			 "exchanges_ok", (json_int_t)ok);
	if (rc == 0)
		rc = snap ? pgi_serve_put_snapshot(st, "serve_seos", snap) : PG_ENOMEM;
	json_decref(snap);
	return rc;
}

/* The seos test card's echo applet, and the GP card's "test" applet (VSEs). */
static const uint8_t echo_aid[] = {0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x10};
static const uint8_t vse_test_aid[] = {0xF0, 'p', 'a', 'y', 'g', 'u', 'a', 'r', 'd', 0x01};

/* One wallet round on one authenticated SE: SELECT on a logical channel, ECHO. */
static int
wallet_round(struct pg_store *st, struct pg_seos_client *c, const char *reader, const char *link,
	     unsigned n)
{
	const uint8_t *aid = echo_aid;
	size_t aid_len = sizeof(echo_aid);
	uint8_t sel[300], capdu[32], rapdu[300];
	size_t sl = sizeof(sel), rl = sizeof(rapdu), clen;
	uint32_t sess = 0, ch = 0;
	uint64_t t0;
	int rc, vse = 0;

	rc = pg_seos_client_open_session(c, reader, &sess);
	if (rc < 0)
		return rc;
	t0 = now_us();
	rc = pg_seos_client_open_channel(c, sess, 1, aid, aid_len, 0, &ch, sel, &sl);
	if (rc < 0) {
		pg_clear_error();
		/* not the test card: a VSE carries the GP card's test applet */
		aid = vse_test_aid;
		aid_len = sizeof(vse_test_aid);
		vse = 1;
		sl = sizeof(sel);
		t0 = now_us();
		rc = pg_seos_client_open_channel(c, sess, 1, aid, aid_len, 0, &ch, sel, &sl);
	}
	/* the SELECT as the SE OS sent it (logical channel 1 in the CLA) */
	capdu[0] = 0x01;
	capdu[1] = 0xA4;
	capdu[2] = 0x04;
	capdu[3] = 0x00;
	capdu[4] = (uint8_t)aid_len;
	memcpy(capdu + 5, aid, aid_len);
	capdu[5 + aid_len] = 0x00;
	if (rc < 0) {
		/* refused by access control or by the SE: the daemon says why, but
		 * hands back no R-APDU, so the log gets no row */
		(void)pg_seos_client_close_session(c, sess);
		return rc;
	}
	(void)pgi_serve_log_apdu(st, "seos", reader, link, capdu, 6 + aid_len, sel, sl,
				 (int64_t)(now_us() - t0));
	/* ECHO: the GP card's test applet and the test card's echo applet differ in INS */
	clen = 5;
	capdu[0] = 0x80;
	capdu[1] = vse ? PG_TEST_INS_ECHO : 0x01;
	capdu[2] = 0x00;
	capdu[3] = 0x00;
	capdu[4] = 8;
	clen += (size_t)snprintf((char *)capdu + 5, 9, "tap%05u", n % 100000u);
	capdu[clen++] = 0x00;
	t0 = now_us();
	rc = pg_seos_client_transmit(c, ch, capdu, clen, rapdu, &rl);
	if (rc == 0)
		(void)pgi_serve_log_apdu(st, "seos", reader, link, capdu, clen, rapdu, rl,
					 (int64_t)(now_us() - t0));
	(void)pg_seos_client_close_channel(c, ch);
	(void)pg_seos_client_close_session(c, sess);
	return rc;
}

/* name -> link of the SE list's rows, for the APDU log */
struct links {
	char name[32][64], link[32][16];
	int n;
};

static int
links_row(void *arg, const struct pg_seos_entry *e)
{
	struct links *l = arg;

	if (l->n < 32) {
		snprintf(l->name[l->n], sizeof(l->name[0]), "%s", e->name);
		snprintf(l->link[l->n], sizeof(l->link[0]), "%s", e->link);
		l->n++;
	}
	return 0;
}

/* The wallet's round: a tap on each SE the SE OS has authenticated. */
struct wallet {
	struct pg_store *st;
	struct pg_seos *os;
	const char *sock;
	struct xstats *x;
	uint64_t exchanges, ok;
	const volatile int *stop;
};

static void
wallet_tap(struct wallet *w, struct pg_seos_client *c, const char *name, const char *link,
	   unsigned n)
{
	struct xstat *xs = xstat_get(w->x, name);

	w->exchanges++;
	if (xs)
		xs->n++;
	if (wallet_round(w->st, c, name, link, n) == 0) {
		w->ok++;
		return;
	}
	if (xs) {
		xs->failed++;
		snprintf(xs->last_error, sizeof(xs->last_error), "%s", pg_last_error());
	}
	pg_clear_error();
}

static void
wallet_tick(struct wallet *w, unsigned n)
{
	struct pg_seos_client *c = NULL;
	struct pg_seos_reader r[16];
	struct links lk = {.n = 0};
	size_t nr = 0;

	if (pg_seos_client_connect(&c, w->sock, "payguard-wallet") < 0 ||
	    pg_seos_client_readers(c, r, 16, &nr) < 0) {
		pg_seos_client_close(c);
		return;
	}
	(void)pg_seos_list(w->os, links_row, &lk);
	for (size_t i = 0; i < nr && !*w->stop; i++) {
		const char *link = "";

		if (r[i].state != PG_SEOS_AUTHENTICATED)
			continue;
		for (int k = 0; k < lk.n; k++)
			if (strcmp(lk.name[k], r[i].name) == 0)
				link = lk.link[k];
		wallet_tap(w, c, r[i].name, link, n);
	}
	pg_seos_client_close(c);
}

int
pgi_serve_worker_seos(const char *dir, const char *store, int demo, const volatile int *stop)
{
	static const struct {
		const char *name, *link;
	} sims[3] = {{"ese-t1", "t1"}, {"uicc-swp", "swp"}, {"ese-spi", "spi"}};
	struct pg_seos_sim *sim[3] = {0};
	char sdir[600], watch[640], sock[640], kp[640], ports[640], kstext[256], mhex[33];
	struct pg_seos_keystore *ks = NULL;
	struct pg_seos *os = NULL;
	struct pg_store st = {0};
	struct srv_run run = {0};
	struct pg_seos_serve_opts so = {0};
	volatile int srv_stop = 0;
	struct xstats xst = {.n = 0};
	struct wallet w;
	uint8_t master[16];
	int rc, srv_started = 0;

	snprintf(sdir, sizeof(sdir), "%s/seos", dir);
	snprintf(watch, sizeof(watch), "%s/endpoints", sdir);
	snprintf(sock, sizeof(sock), "%s/seos.sock", sdir);
	snprintf(kp, sizeof(kp), "%s/device.key", sdir);
	snprintf(ports, sizeof(ports), "%s/ports", sdir);
	rc = pg_mkdir_p(watch, 0700);
	if (rc == 0)
		rc = pg_mkdir_p(ports, 0700);
	if (rc == 0)
		rc = pgi_serve_master_key(dir, master);
	if (rc < 0)
		return rc;
	/* simulated SEs: diversified by their SE id; VSEs: by their CIN "PGVS..." */
	pg_hex_encode_upper(mhex, master, 16, 0);
	snprintf(kstext, sizeof(kstext), "master 30 %s\nmaster-cin 30 %s 50475653\n", mhex, mhex);
	rc = pg_seos_keystore_parse(&ks, kstext);
	pg_memzero(kstext, sizeof(kstext));
	pg_memzero(mhex, sizeof(mhex));
	if (rc < 0)
		goto out;
	rc = pg_store_open(&st, store);
	if (rc == 0)
		rc = pgi_serve_migrate(&st);
	if (rc < 0)
		goto out;
	for (int i = 0; demo && i < 3; i++) {
		char sp[700];

		snprintf(sp, sizeof(sp), "%s/sim-%s.sock", sdir, sims[i].name);
		if ((rc = pg_seos_sim_start(&sim[i], sims[i].name, sims[i].link,
					    0x5E05001u + (uint32_t)i, master, sp)) < 0)
			goto out;
	}
	unlink(sock);
	so.sock = sock;
	so.watch = watch;
	so.ports = ports; /* the NFC switch worker's way to the SE OS's SEs */
	so.db = store;
	so.devkey = kp;
	so.ks = ks;
	so.stop = (volatile int *)&srv_stop;
	if ((rc = pg_seos_serve_new(&run.srv, &so)) < 0)
		goto out;
	if (pthread_create(&run.t, NULL, srv_thread, &run) != 0) {
		rc = pg_error(PG_ESYS, "serve", "cannot start the SE OS thread");
		goto out;
	}
	srv_started = 1;
	for (int i = 0; demo && i < 3; i++)
		if ((rc = pg_seos_sim_announce(sim[i], watch)) < 0)
			goto out;
	rc = pg_seos_open(&os, store, kp, ks);
	if (rc < 0)
		goto out;
	w = (struct wallet){.st = &st, .os = os, .sock = sock, .x = &xst, .stop = stop};
	/* every 2 s: the SE list to the store, and a wallet tap on each authenticated SE */
	for (unsigned n = 0; !*stop; n++) {
		wallet_tick(&w, n);
		if ((rc = store_seos(&st, os, &xst, w.exchanges, w.ok)) < 0)
			goto out;
		for (int t = 0; t < 40 && !*stop; t++)
			usleep(50 * 1000);
	}
	rc = 0;
out:
	if (srv_started) {
		srv_stop = 1;
		pthread_join(run.t, NULL);
	}
	pg_seos_serve_free(run.srv);
	for (int i = 0; i < 3; i++)
		pg_seos_sim_stop(sim[i]);
	pg_seos_close(os);
	pg_seos_keystore_free(ks);
	pg_store_close(&st);
	pg_memzero(master, sizeof(master));
	return rc;
}

/* ---- nfcswitch: the NFC switch over the SE OS's SEs (issue 16 item 3) ---- */

/*
 * The switch takes its SE list from the SE OS: every second it reads the SE
 * list (table seos_se), attaches each authenticated SE whose port the SE OS
 * serves (unix:DIR/seos/ports/NAME.sock, T=1, through the SE OS's converter
 * interface) and detaches the SEs the SE OS no longer has authenticated, or
 * that failed behind the switch. Its master ports open the ports by link
 * address through the converter (pg_conv_link_open), as for any SE.
 */
struct sw_row {
	char name[64], link[16], addr[256];
	int state;
};
struct sw_rows {
	struct sw_row r[64];
	int n;
};

static int
sw_row_add(void *arg, const struct pg_seos_entry *e)
{
	struct sw_rows *rows = arg;
	struct sw_row *r;

	if (rows->n == (int)(sizeof(rows->r) / sizeof(rows->r[0])))
		return 0;
	r = &rows->r[rows->n++];
	snprintf(r->name, sizeof(r->name), "%s", e->name);
	snprintf(r->link, sizeof(r->link), "%s", e->link);
	snprintf(r->addr, sizeof(r->addr), "%s", e->addr);
	r->state = e->state;
	return 0;
}

static const struct sw_row *
sw_row_find(const struct sw_rows *rows, const char *name)
{
	for (int i = 0; i < rows->n; i++)
		if (strcmp(rows->r[i].name, name) == 0)
			return &rows->r[i];
	return NULL;
}

/* Detaches what the SE OS no longer has authenticated (or what went down), attaches the new. */
static void
sw_sync(struct pg_nfcsw *sw, const char *ports, const struct sw_rows *rows)
{
	struct pg_nfcsw_se_info info[PG_NFCSW_MAX_SES];
	struct pg_link_params lp = {.timeout_ms = 2000};
	size_t n = 0;

	if (pg_nfcsw_ses(sw, info, PG_NFCSW_MAX_SES, &n) == 0)
		for (size_t i = 0; i < n; i++) {
			const struct sw_row *r = sw_row_find(rows, info[i].name);

			if (!r || r->state != PG_SEOS_AUTHENTICATED || strcmp(info[i].state, "up"))
				(void)pg_nfcsw_detach(sw, info[i].name);
		}
	for (int i = 0; i < rows->n; i++) {
		const struct sw_row *r = &rows->r[i];
		struct pg_link *l = NULL;
		char addr[700];

		if (r->state != PG_SEOS_AUTHENTICATED || pg_nfcsw_find_se(sw, r->name) >= 0)
			continue;
		snprintf(addr, sizeof(addr), "unix:%s/%s.sock", ports, r->name);
		if (access(addr + 5, F_OK) != 0)
			continue; /* the SE OS has not opened its port (yet) */
		if (pg_conv_link_open(&l, "t1", addr, &lp) < 0 ||
		    pg_nfcsw_attach(sw, r->name, l, addr, 0) < 0)
			pg_warn("nfcswitch", "SE '%s' of the SE OS not attached: %s", r->name,
				pg_last_error());
		pg_clear_error();
	}
}

/* The switch's SEs (with the link and address the SE OS reaches each by) and routes as JSON. */
static json_t *
nfcsw_snapshot(struct pg_nfcsw *sw, const struct sw_rows *rows, uint64_t selects, uint64_t ok)
{
	struct pg_nfcsw_se_info info[PG_NFCSW_MAX_SES];
	struct pg_nfcsw_app *apps = NULL;
	size_t nse = 0, napps = 0;
	json_t *ses = json_array(), *routes = json_array();

	if (pg_nfcsw_ses(sw, info, PG_NFCSW_MAX_SES, &nse) == 0) {
		for (size_t i = 0; i < nse; i++) {
			const struct sw_row *r = sw_row_find(rows, info[i].name);

			json_array_append_new(
			    ses, json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:i,s:s,s:I}", "name",
					   info[i].name, "link", r ? r->link : info[i].link, "addr",
					   r ? r->addr : info[i].addr, "port", info[i].addr,
					   "state", info[i].state ? info[i].state : "", "priority",
					   info[i].priority, "apps", info[i].apps, "source",
					   info[i].source ? info[i].source : "", "apdus",
					   (json_int_t)info[i].apdus));
		}
	}
	if (pg_nfcsw_apps(sw, &apps, &napps) == 0) {
		for (size_t i = 0; i < napps; i++) {
			char h[2 * PG_NFCSW_AID_MAX + 1];

			pg_hex_encode_upper(h, apps[i].aid, apps[i].aid_len, 0);
			json_array_append_new(
			    routes, json_pack("{s:s,s:s,s:i,s:s,s:b,s:i}", "aid", h, "se",
					      pg_nfcsw_se_name(sw, apps[i].se), "priority",
					      apps[i].priority, "label", apps[i].label, "payment",
					      (apps[i].flags & PG_NFCSW_APP_PAYMENT) != 0,
					      "lifecycle", apps[i].lifecycle));
		}
	}
	free(apps);
	return json_pack("{s:s,s:o,s:o,s:I,s:I}", "policy",
			 pg_nfcsw_policy_name(pg_nfcsw_policy(sw)), "ses", ses, "routes", routes,
			 "selects", (json_int_t)selects, "selects_ok", (json_int_t)ok);
}

static int
same_aid(const struct pg_nfcsw_app *a, const struct pg_nfcsw_app *b)
{
	return a->aid_len == b->aid_len && memcmp(a->aid, b->aid, a->aid_len) == 0;
}

/*
 * A reader's tap: SELECT the t-th application of the routing table through
 * the switch, logged with the SE that answered. 1 answered 9000, 0 otherwise
 * (nothing routed: -1).
 */
static int
nfcsw_tap(struct pg_store *st, struct pg_nfcsw *sw, const struct sw_rows *rows, unsigned t)
{
	struct pg_nfcsw_app *apps = NULL;
	uint8_t capdu[32] = {0x00, 0xA4, 0x04, 0x00}, rapdu[300];
	size_t napps = 0, rlen = sizeof(rapdu), clen, k = 0, ndist = 0;
	uint64_t t0;
	int rc;

	if (pg_nfcsw_apps(sw, &apps, &napps) < 0 || napps == 0) {
		free(apps);
		return -1;
	}
	/* the registry is sorted by AID: each AID once, however many SEs hold it */
	for (size_t i = 0; i < napps; i++)
		ndist += i == 0 || !same_aid(&apps[i], &apps[i - 1]);
	for (size_t i = 0, d = 0; i < napps; i++) {
		if (i > 0 && same_aid(&apps[i], &apps[i - 1]))
			continue;
		if (d++ == t % ndist) {
			k = i;
			break;
		}
	}
	capdu[4] = apps[k].aid_len;
	memcpy(capdu + 5, apps[k].aid, capdu[4]);
	clen = 5 + capdu[4];
	capdu[clen++] = 0x00;
	free(apps);
	t0 = now_us();
	rc = pg_nfcsw_process(sw, capdu, clen, rapdu, &rlen);
	if (rc == 0) {
		/* the SE the switch routed this SELECT to, as the log's row */
		const char *to = pg_nfcsw_session_se(sw);
		const struct sw_row *r = to && to[0] ? sw_row_find(rows, to) : NULL;

		(void)pgi_serve_log_apdu(st, "nfcswitch", to && to[0] ? to : "(none)",
					 r ? r->link : "", capdu, clen, rapdu, rlen,
					 (int64_t)(now_us() - t0));
	}
	pg_nfcsw_field_off(sw);
	return rc == 0 && rlen >= 2 && rapdu[rlen - 2] == 0x90 && rapdu[rlen - 1] == 0x00;
}

int
pgi_serve_worker_nfcswitch(const char *dir, const char *store, const volatile int *stop)
{
	struct pg_nfcsw *sw = NULL;
	struct pg_store st = {0};
	uint64_t selects = 0, ok = 0;
	char ports[600];
	int rc;

	snprintf(ports, sizeof(ports), "%s/seos/ports", dir);
	rc = pg_store_open(&st, store);
	if (rc == 0)
		rc = pgi_serve_migrate(&st);
	if (rc == 0)
		rc = pg_nfcsw_new(&sw);
	for (unsigned t = 0; rc == 0 && !*stop; t++) {
		struct sw_rows rows = {.n = 0};
		json_t *snap;
		int tap;

		/* before the SE OS made its tables the list is empty */
		if (pg_seos_list_store(&st, sw_row_add, &rows) < 0)
			pg_clear_error();
		sw_sync(sw, ports, &rows);
		tap = nfcsw_tap(&st, sw, &rows, t);
		if (tap >= 0) {
			selects++;
			ok += (uint64_t)tap;
		}
		snap = nfcsw_snapshot(sw, &rows, selects, ok);
		rc = snap ? pgi_serve_put_snapshot(&st, "serve_nfcsw", snap) : PG_ENOMEM;
		json_decref(snap);
		for (int i = 0; i < 20 && !*stop; i++)
			usleep(50 * 1000);
	}
	pg_nfcsw_free(sw);
	pg_store_close(&st);
	return rc;
}
