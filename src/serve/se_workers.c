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
#include "payguard/db_json.h"
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/mem.h"
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
pg_serve_log_apdu(struct pg_store *st, const char *source, const char *se, const char *link,
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
		rc = snap ? pg_serve_put_snapshot(st, "serve_seos", snap) : PG_ENOMEM;
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
	(void)pg_serve_log_apdu(st, "seos", reader, link, capdu, 6 + aid_len, sel, sl,
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
		(void)pg_serve_log_apdu(st, "seos", reader, link, capdu, clen, rapdu, rl,
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

int
pg_serve_worker_seos(const char *dir, const char *store, int demo, const volatile int *stop)
{
	static const struct {
		const char *name, *link;
	} sims[3] = {{"ese-t1", "t1"}, {"uicc-swp", "swp"}, {"ese-spi", "spi"}};
	struct pg_seos_sim *sim[3] = {0};
	char sdir[600], watch[640], sock[640], kp[640], kstext[256], mhex[33];
	struct pg_seos_keystore *ks = NULL;
	struct pg_seos *os = NULL;
	struct pg_store st = {0};
	struct srv_run run = {0};
	struct pg_seos_serve_opts so = {0};
	volatile int srv_stop = 0;
	uint64_t exchanges = 0, ok = 0;
	struct xstats xst = {.n = 0};
	uint8_t master[16];
	int rc, srv_started = 0;

	snprintf(sdir, sizeof(sdir), "%s/seos", dir);
	snprintf(watch, sizeof(watch), "%s/endpoints", sdir);
	snprintf(sock, sizeof(sock), "%s/seos.sock", sdir);
	snprintf(kp, sizeof(kp), "%s/device.key", sdir);
	rc = pg_mkdir_p(watch, 0700);
	if (rc == 0)
		rc = pg_serve_master_key(dir, master);
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
		rc = pg_serve_migrate(&st);
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
	/* every 2 s: the SE list to the store, and a wallet tap on each authenticated SE */
	for (unsigned n = 0; !*stop; n++) {
		struct pg_seos_client *c = NULL;
		struct pg_seos_reader r[16];
		size_t nr = 0;

		if (pg_seos_client_connect(&c, sock, "payguard-wallet") == 0 &&
		    pg_seos_client_readers(c, r, 16, &nr) == 0) {
			struct links lk = {.n = 0};

			(void)pg_seos_list(os, links_row, &lk);
			for (size_t i = 0; i < nr && !*stop; i++) {
				const char *link = "";

				if (r[i].state != PG_SEOS_AUTHENTICATED)
					continue;
				for (int k = 0; k < lk.n; k++)
					if (strcmp(lk.name[k], r[i].name) == 0)
						link = lk.link[k];
				struct xstat *xs = xstat_get(&xst, r[i].name);

				exchanges++;
				if (xs)
					xs->n++;
				if (wallet_round(&st, c, r[i].name, link, n) == 0) {
					ok++;
				} else {
					if (xs) {
						xs->failed++;
						snprintf(xs->last_error, sizeof(xs->last_error),
							 "%s", pg_last_error());
					}
					pg_clear_error();
				}
			}
		}
		pg_seos_client_close(c);
		if ((rc = store_seos(&st, os, &xst, exchanges, ok)) < 0)
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
