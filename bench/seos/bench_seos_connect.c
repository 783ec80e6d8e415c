/*
 * Connection establishment (seed "Establishment of communication connection
 * between mobile device and secure element"): the time from power-on to a
 * usable configuration, with the configuration read from the SE (cache
 * miss: GET DATA, GET STATUS, ARA-M) and from the MACed cache (hit), through
 * the same link: a test SE served by the link's card role on a UNIX socket
 * in another thread. Prints medians of N runs each, interleaved, and the ratio.
 *   bench_seos_connect [N] [link...]   (default 200; t1 swp spi)
 * The link "pcsc:READER" uses a test SE already served behind pcscd (run.sh
 * starts pcscd and `payguard seos sim --link vpcd`, serial 0x4242).
 */
#include "payguard/card.h"
#include "payguard/card_gp.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/seos.h"
#include "payguard/stream.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct sim {
	const struct pg_link_ops *ops;
	struct pg_gp_card *tc;
	int fd;
};

static void *
serve(void *arg)
{
	struct sim *s = arg;

	(void)pg_card_serve_listener(s->fd, s->ops, pg_gp_card_card(s->tc), NULL, 0);
	return NULL;
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

/* One establishment; miss forces a fresh read by deleting the cache record first. */
static int
once(struct pg_seos *os, struct sim *s, const char *addr, int miss, double *us, uint64_t *apdus)
{
	struct pg_stream *st;
	struct pg_link *l;
	struct pg_seos_conn c;
	double t0;
	int rc;

	if (miss && pg_store_exec(pg_seos_store(os), "DELETE FROM seos_cache") < 0)
		return -1;
	st = NULL;
	if (s->ops->type != PG_LINK_PCSC && (rc = pg_stream_connect(&st, addr, 2000)) < 0)
		return rc;
	if ((rc = s->ops->host_open(&l, st, addr, NULL)) < 0)
		return rc;
	t0 = now_us();
	rc = pg_seos_connect(os, "bench", addr, l, &c);
	*us = now_us() - t0;
	*apdus = c.apdus;
	if (rc == 0 && c.cache != !miss)
		rc = pg_error(PG_ESTATE, "bench", "expected a cache %s", miss ? "miss" : "hit");
	pg_seos_config_release(&c.cfg);
	pg_link_close(l);
	return rc;
}

int
main(int argc, char **argv)
{
	static const char *def[] = {"t1", "swp", "spi"};
	const char **links = def;
	int nlinks = 3, n = argc > 1 ? atoi(argv[1]) : 200, rc = 0;
	char dir[] = "/tmp/pg-seos-bench-XXXXXX", path[256], addr[300];
	struct pg_seos_keystore *ks;
	struct pg_seos *os;
	uint8_t m[16];

	if (argc > 2) {
		links = (const char **)argv + 2;
		nlinks = argc - 2;
	}
	if (n < 1 || !mkdtemp(dir))
		return 2;
	pg_hex_decode(m, sizeof(m), "404142434445464748494A4B4C4D4E4F");
	if (pg_seos_keystore_parse(&ks, "master 30 404142434445464748494A4B4C4D4E4F\n") < 0)
		return 1;
	snprintf(path, sizeof(path), "%s/pg.db", dir);
	snprintf(addr, sizeof(addr), "%s/device.key", dir);
	if (pg_seos_open(&os, path, addr, ks) < 0) {
		fprintf(stderr, "%s\n", pg_last_error());
		return 1;
	}
	printf("connection establishment, median of %d each (interleaved), test SE on a UNIX "
	       "socket (pcsc: behind pcscd + vpcd)\n",
	       n);
	printf("%-5s %12s %6s %12s %6s %8s\n", "link", "miss (us)", "APDUs", "hit (us)", "APDUs",
	       "miss/hit");
	for (int li = 0; li < nlinks && rc == 0; li++) {
		struct pg_seos_sim_card_cfg cfg = {
		    .serial = 0x4242, .master = m, .master_len = 16, .version = 3};
		int pcsc = strncmp(links[li], "pcsc:", 5) == 0;
		struct sim s = {.ops = pg_link_find(pcsc ? "pcsc" : links[li]), .fd = -1};
		double *miss = calloc((size_t)n, sizeof(double)),
		       *hit = calloc((size_t)n, sizeof(double));
		uint64_t am = 0, ah = 0;
		pthread_t t;

		if (!s.ops || (!pcsc && !s.ops->card_open) || !miss || !hit) {
			fprintf(stderr, "link %s unavailable\n", links[li]);
			rc = 1;
			break;
		}
		if (pcsc) {
			snprintf(addr, sizeof(addr), "%s", links[li] + 5);
		} else {
			if (pg_seos_sim_card_new(&s.tc, &cfg) < 0) {
				fprintf(stderr, "test SE: %s\n", pg_last_error());
				free(miss);
				free(hit);
				rc = 1;
				break;
			}
			snprintf(addr, sizeof(addr), "unix:%s/%s.sock", dir, links[li]);
			s.fd = pg_stream_listen(addr);
			pthread_create(&t, NULL, serve, &s);
		}
		for (int i = 0; i < n && rc == 0; i++) {
			rc = once(os, &s, addr, 1, &miss[i], &am);
			if (rc == 0)
				rc = once(os, &s, addr, 0, &hit[i], &ah);
		}
		if (!pcsc) {
			shutdown(s.fd, SHUT_RDWR);
			close(s.fd);
			pthread_join(t, NULL);
			pg_gp_card_free(s.tc);
		}
		if (rc == 0) {
			qsort(miss, (size_t)n, sizeof(double), cmp);
			qsort(hit, (size_t)n, sizeof(double), cmp);
			printf("%-5s %12.1f %6llu %12.1f %6llu %7.2fx\n", pcsc ? "pcsc" : links[li],
			       miss[n / 2], (unsigned long long)am, hit[n / 2],
			       (unsigned long long)ah, miss[n / 2] / hit[n / 2]);
		} else {
			fprintf(stderr, "%s: %s\n", links[li], pg_last_error());
		}
		free(miss);
		free(hit);
	}
	pg_seos_close(os);
	pg_seos_keystore_free(ks);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	if (system(path) != 0)
		return 1;
	return rc ? 1 : 0;
}
