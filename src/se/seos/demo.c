/*
 * `payguard seos demo`: the SE OS end to end in one process (issue 7): three
 * test SEs on different links (T=1, SWP, SPI) served on UNIX sockets, each
 * authenticated with SCP03 twice (cache miss, then hit), then the daemon
 * attaches them from endpoint files and a client transmits through it.
 */
#include "payguard/converter.h"
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/seos.h"
#include "payguard/seos_client.h"
#include "payguard/stream.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char master_hex[] = "404142434445464748494A4B4C4D4E4F";

struct srv_run {
	struct pg_seos_server *srv;
	pthread_t t;
};

static void *
srv_thread(void *arg)
{
	struct srv_run *r = arg;

	(void)pg_seos_serve_run(r->srv);
	return NULL;
}

static int
print_row(void *arg, const struct pg_seos_entry *e)
{
	fprintf(arg, "  %-10s %-5s %s  %-13s v%u  %zu apps\n", e->name, e->link, e->id_hex,
		pg_seos_state_name(e->state), e->version, e->napps);
	return 0;
}

static const struct {
	const char *name, *link;
} sims[3] = {{"ese-t1", "t1"}, {"uicc-swp", "swp"}, {"ese-spi", "spi"}};

/* Step 2: each SE authenticated twice by its link address, through the
 * converter as `seos serve` does: a cache miss, then a hit. */
static int
demo_connect(FILE *out, struct pg_seos *os, struct pg_seos_sim *const *sim)
{
	for (int i = 0; i < 3; i++) {
		for (int round = 0; round < 2; round++) {
			struct pg_link *l;
			struct pg_seos_conn c;
			struct timespec a, b;
			int rc;

			if ((rc = pg_conv_link_open(&l, sims[i].link, pg_seos_sim_addr(sim[i]),
						    NULL)) < 0)
				return rc;
			clock_gettime(CLOCK_MONOTONIC, &a);
			rc = pg_seos_connect(os, sims[i].name, pg_seos_sim_addr(sim[i]), l, &c);
			clock_gettime(CLOCK_MONOTONIC, &b);
			pg_link_close(l);
			if (rc < 0)
				return rc;
			fprintf(out, "  %-10s id %s  %-13s cache %-4s %2llu APDUs  %.2f ms\n",
				sims[i].name, c.id_hex, pg_seos_state_name(c.state),
				c.cache ? "hit" : "miss", (unsigned long long)c.apdus,
				(double)(b.tv_sec - a.tv_sec) * 1e3 +
				    (double)(b.tv_nsec - a.tv_nsec) / 1e6);
			pg_seos_config_release(&c.cfg);
		}
	}
	return 0;
}

/* A client of the daemon once it has authenticated all three SEs (5 s at most). */
static int
demo_wait_client(const char *sock, struct pg_seos_client **out)
{
	struct pg_seos_client *c = NULL;
	struct pg_seos_reader r[8];
	size_t n = 0, auth = 0;

	for (int tries = 0; tries < 100 && auth < 3; tries++) {
		usleep(50000);
		pg_seos_client_close(c);
		c = NULL;
		if (pg_seos_client_connect(&c, sock, "demo-wallet") < 0 ||
		    pg_seos_client_readers(c, r, 8, &n) < 0)
			continue;
		auth = 0;
		for (size_t i = 0; i < n; i++)
			auth += r[i].state == PG_SEOS_AUTHENTICATED;
	}
	if (!c || auth < 3) {
		pg_seos_client_close(c);
		return pg_error(PG_ETIMEDOUT, "seos", "the daemon did not attach the 3 SEs");
	}
	*out = c;
	return 0;
}

/* Step 5: an Open Mobile API session, a logical channel to the echo app, one APDU. */
static int
demo_client(FILE *out, struct pg_seos_client *c)
{
	static const uint8_t echo_aid[] = {0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x10};
	uint8_t apdu[] = {0x80, 0x01, 0x00, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o', 0x00};
	uint8_t resp[64];
	size_t rl = sizeof(resp);
	uint32_t sess, ch;
	char hex[140];
	int rc = pg_seos_client_open_session(c, "uicc-swp", &sess);

	if (rc == 0)
		rc = pg_seos_client_open_channel(c, sess, 1, echo_aid, sizeof(echo_aid), 0, &ch,
						 NULL, NULL);
	if (rc == 0)
		rc = pg_seos_client_transmit(c, ch, apdu, sizeof(apdu), resp, &rl);
	if (rc == 0) {
		pg_hex_encode_upper(hex, apdu, sizeof(apdu), 1);
		fprintf(out, "  uicc-swp logical channel, app A0000000041010\n  > %s\n", hex);
		pg_hex_encode_upper(hex, resp, rl, 1);
		fprintf(out, "  < %s\n", hex);
		(void)pg_seos_client_close_channel(c, ch);
	}
	return rc;
}

int
pg_seos_demo(FILE *out)
{
	struct pg_seos_sim *sim[3] = {0};
	char dir[64], path[256], sock[200], db[200], kp[200], watch[200];
	struct pg_seos_keystore *ks = NULL;
	struct pg_seos *os = NULL;
	struct pg_seos_client *c = NULL;
	struct srv_run run = {0};
	struct pg_seos_serve_opts so = {0};
	volatile int stop = 0;
	uint8_t m[16];
	int rc = 0;

	snprintf(dir, sizeof(dir), "/tmp/pg-seos-demo-XXXXXX");
	if (!mkdtemp(dir))
		return pg_error(PG_ESYS, "seos", "mkdtemp failed");
	snprintf(db, sizeof(db), "%s/payguard.db", dir);
	snprintf(kp, sizeof(kp), "%s/device.key", dir);
	snprintf(sock, sizeof(sock), "%s/seos.sock", dir);
	snprintf(watch, sizeof(watch), "%s/endpoints", dir);
	snprintf(path, sizeof(path), "master 30 %s\n", master_hex);
	if ((rc = pg_seos_keystore_parse(&ks, path)) < 0)
		goto out;
	pg_hex_decode(m, sizeof(m), master_hex);

	fprintf(out, "== 1. three simulated SEs, each on its own link and UNIX socket\n");
	for (int i = 0; i < 3; i++) {
		char sp[300];

		snprintf(sp, sizeof(sp), "%s/%s.sock", dir, sims[i].name);
		if ((rc = pg_seos_sim_start(&sim[i], sims[i].name, sims[i].link,
					    0x1001u + (uint32_t)i, m, sp)) < 0)
			goto out;
		fprintf(out, "  %-10s link %-4s at %s\n", sims[i].name, sims[i].link,
			pg_seos_sim_addr(sim[i]));
	}

	fprintf(out, "\n== 2. connection establishment: SCP03 authentication, then the cache\n");
	if ((rc = pg_seos_open(&os, db, kp, ks)) < 0 || (rc = demo_connect(out, os, sim)) < 0)
		goto out;
	pg_seos_close(os);
	os = NULL;

	fprintf(out, "\n== 3. the daemon attaches them from endpoint files in %s\n", watch);
	if ((rc = pg_mkdir_p(watch, 0700)) < 0)
		goto out;
	so.sock = sock;
	so.watch = watch;
	so.db = db;
	so.devkey = kp;
	so.ks = ks;
	so.stop = (volatile int *)&stop;
	if ((rc = pg_seos_serve_new(&run.srv, &so)) < 0)
		goto out;
	pthread_create(&run.t, NULL, srv_thread, &run);
	for (int i = 0; i < 3 && rc == 0; i++)
		rc = pg_seos_sim_announce(sim[i], watch);
	if (rc == 0)
		rc = demo_wait_client(sock, &c);
	if (rc == 0)
		rc = pg_seos_open(&os, db, kp, ks);
	if (rc == 0) {
		fprintf(out, "\n== 4. the SE list in the store\n");
		(void)pg_seos_list(os, print_row, out);
		fprintf(out, "\n== 5. a client (Open Mobile API calls over %s)\n", sock);
		rc = demo_client(out, c);
	}
	pg_seos_client_close(c);
	stop = 1;
	pthread_join(run.t, NULL);
	pg_seos_serve_free(run.srv);
out:
	for (int i = 0; i < 3; i++)
		pg_seos_sim_stop(sim[i]);
	pg_seos_close(os);
	pg_seos_keystore_free(ks);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	if (system(path) != 0)
		pg_warn("seos", "could not remove %s", dir);
	return rc;
}
