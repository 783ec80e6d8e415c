/*
 * SE link benchmark (issue 2): for each link type, a 16-byte ECHO command
 * (case 4: 80 10 00 00 10 <16 bytes> 00) to the simulated SE, timed
 *  - in process: pg_link_open_memory(), host and card role in one thread;
 *  - over a UNIX socketpair: the card role served by pg_stream_serve_fd() in
 *    a second thread (one syscall round trip per frame);
 *  - through pcscd + vpcd: payguard's PC/SC host driver to a simulated card
 *    plugged into vpcd (--pcsc READER; run.sh starts pcscd and the card).
 * Each figure is the median of 5 runs. Target: >= 200,000 APDUs/s in process
 * on T=1 and SWP.
 */
#include "payguard/card.h"
#include "payguard/clock.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RUNS 5

static const uint8_t echo16[22] = {0x80, 0x10, 0x00, 0x00, 0x10, 0x00, 0x01, 0x02,
				   0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A,
				   0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x00};
static const uint8_t sel[16] = {0x00, 0xA4, 0x04, 0x00, 0x0A, 0xF0, 'p',  'a',
				'y',  'g',  'u',  'a',	'r',  'd',  0x01, 0x00};

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Median microseconds per APDU over RUNS runs of n APDUs; negative code on failure. */
static int
measure(struct pg_link *l, long n, double *us)
{
	uint8_t atr[PG_ATR_MAX], r[64];
	size_t al = sizeof(atr), rl = sizeof(r);
	double t[RUNS];
	int rc;

	rc = pg_link_power_on(l, atr, &al);
	if (rc < 0)
		return rc;
	rc = pg_link_transmit(l, sel, sizeof(sel), r, &rl);
	if (rc < 0)
		return rc;
	for (int k = 0; k < RUNS; k++) {
		uint64_t t0 = pg_mono_ns();

		for (long i = 0; i < n; i++) {
			rl = sizeof(r);
			rc = pg_link_transmit(l, echo16, sizeof(echo16), r, &rl);
			if (rc < 0)
				return rc;
		}
		t[k] = (double)(pg_mono_ns() - t0) / 1000.0 / (double)n;
		if (rl != 18 || memcmp(r, echo16 + 5, 16) != 0)
			return pg_error(PG_EPROTO, "bench", "%s: wrong echo", l->ops->name);
	}
	qsort(t, RUNS, sizeof(t[0]), cmp_double);
	*us = t[RUNS / 2];
	return 0;
}

struct served {
	int fd;
	struct pg_link_card *lc;
};

static void *
serve_main(void *arg)
{
	struct served *s = arg;

	pg_stream_serve_fd(s->fd, pg_link_card_packet, s->lc);
	return NULL;
}

static int
socket_link(const struct pg_link_ops *ops, const struct pg_card *card, long n, double *us)
{
	int sv[2], rc;
	struct served s = {0};
	struct pg_stream *st = NULL;
	struct pg_link *l = NULL;
	pthread_t t;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return PG_ESYS;
	rc = ops->card_open(&s.lc, card, NULL);
	if (rc < 0)
		return rc;
	s.fd = sv[1];
	pthread_create(&t, NULL, serve_main, &s);
	rc = pg_stream_fd(&st, sv[0], sv[0]);
	if (rc == 0)
		rc = ops->host_open(&l, st, NULL, NULL);
	if (rc == 0)
		rc = measure(l, n, us);
	pg_link_close(l); /* closes sv[0]: the server sees EOF */
	pthread_join(t, NULL);
	pg_link_card_close(s.lc);
	return rc;
}

static void
row(const char *name, const char *path, double us)
{
	printf("%-6s %-22s %10.2f %12.0f\n", name, path, us, 1e6 / us);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"pcsc", required_argument, NULL, 'p'},
	    {"n", required_argument, NULL, 'n'},
	    {"pcsc-n", required_argument, NULL, 'm'},
	    {NULL, 0, NULL, 0},
	};
	const char *reader = NULL;
	long n = 200000, pn = 2000;
	struct pg_card_rt *rt = NULL;
	int o, rc, failed = 0;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'p')
			reader = optarg;
		else if (o == 'n')
			n = atol(optarg);
		else if (o == 'm')
			pn = atol(optarg);
		else
			return 2;
	}
	pg_log_set_level(PG_LOG_ERROR);
	if (pg_card_sim_new(&rt, 0xBE4C0001u, NULL, 0) < 0)
		return 1;
	if (n > 0) {
		printf("16-byte ECHO (case 4), median of %d runs\n", RUNS);
		printf("%-6s %-22s %10s %12s\n", "link", "path", "us/APDU", "APDUs/s");
	}
	for (int i = 0; i < PG_LINK_COUNT; i++) {
		const struct pg_link_ops *ops = pg_link_drivers[i];
		struct pg_link *l = NULL;
		double us;

		if (!ops || !ops->host_open || !ops->card_open || n <= 0)
			continue; /* --n 0: PC/SC only */
		rc = pg_link_open_memory(&l, ops, pg_card_rt_card(rt), NULL);
		if (rc == 0)
			rc = measure(l, n, &us);
		pg_link_close(l);
		if (rc < 0) {
			printf("%-6s %-22s FAILED: %s\n", ops->name, "in-process", pg_last_error());
			failed++;
		} else {
			row(ops->name, "in-process", us);
		}
		rc = socket_link(ops, pg_card_rt_card(rt), n / 10, &us);
		if (rc < 0) {
			printf("%-6s %-22s FAILED: %s\n", ops->name, "socketpair+thread",
			       pg_last_error());
			failed++;
		} else {
			row(ops->name, "socketpair+thread", us);
		}
	}
	if (reader) {
		const struct pg_link_ops *ops = pg_link_find("pcsc");
		struct pg_link *l = NULL;
		double us;

		rc = ops ? ops->host_open(&l, NULL, reader, NULL) : PG_ENOTSUP;
		if (rc == 0)
			rc = measure(l, pn, &us);
		pg_link_close(l);
		if (rc < 0) {
			printf("%-6s %-22s FAILED: %s\n", "pcsc", "pcscd+vpcd", pg_last_error());
			failed++;
		} else {
			row("pcsc", "pcscd+vpcd", us);
		}
	}
	pg_card_rt_free(rt);
	return failed ? 1 : 0;
}
