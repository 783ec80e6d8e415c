/*
 * Converter acceptance test (issue 2, seed 7): at least five interfaces of
 * different link types (every driver in the table with a host and a card
 * role), each SE a separate process serving its link's card role on a UNIX
 * socket; a channel for every ordered pair (20 for five), APDUs over each
 * from both sides concurrently; then one SE is killed mid-channel (SIGKILL)
 * and some channels are closed while the others run: only the killed SE's
 * channels end, with PG_ELINK naming it, and every other channel completes.
 * Fails, not skips, when fewer than five link types are present.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/card.h"
#include "payguard/converter.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_IF 16
#define PHASE  200 /* APDUs per channel before and after the kill */

static struct pg_conv *conv;
static pid_t pids[MAX_IF];
static const struct pg_link_ops *ifops[MAX_IF];
static int nif;
static pthread_barrier_t barrier;

/* Child process: one simulated SE on the link's card role, one host. */
static void
run_sim(const struct pg_link_ops *ops, const char *addr, int fd, uint32_t serial)
{
	struct pg_card_rt *rt = NULL;

	(void)addr;
	if (pg_card_sim_new(&rt, serial, NULL, 0) < 0)
		_exit(2);
	pg_card_serve_listener(fd, ops, pg_card_rt_card(rt), NULL, 1);
	_exit(0); /* no atexit handlers: the parent's sanitizer state is not ours */
}

struct worker {
	int ch, a, b; /* channel and its interfaces' indexes */
	int victim;   /* involves the killed SE */
	int ok1, ok2, err2, bad;
	int last_rc;
	char detail[256];
};

static int
exchange(struct worker *w, int i)
{
	static const uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x0A, 0xF0, 'p',	'a',
				      'y',  'g',  'u',	'a',  'r',  'd',  0x01, 0x00};
	enum pg_conv_side side = (i & 1) ? PG_CONV_B : PG_CONV_A;
	uint8_t c[22], r[64];
	size_t rl = sizeof(r);
	int rc;

	if (i < 2) {
		rc = pg_conv_transmit(conv, w->ch, side, sel, sizeof(sel), r, &rl);
		if (rc < 0)
			snprintf(w->detail, sizeof(w->detail), "SELECT: %s", pg_last_error());
		else if (pg_rapdu_sw(r, rl) != 0x9000)
			snprintf(w->detail, sizeof(w->detail), "SELECT: SW %04X",
				 pg_rapdu_sw(r, rl));
		return rc < 0 ? -1 : (pg_rapdu_sw(r, rl) == 0x9000 ? 0 : 1);
	}
	/* A 16-byte ECHO (the benchmark's command), data unique per channel and step. */
	memcpy(c, "\x80\x10\x00\x00\x10", 5);
	for (int k = 0; k < 16; k++)
		c[5 + k] = (uint8_t)(w->ch * 31 + i * 7 + k);
	c[21] = 0;
	rc = pg_conv_transmit(conv, w->ch, side, c, sizeof(c), r, &rl);
	if (rc < 0) {
		w->last_rc = rc;
		snprintf(w->detail, sizeof(w->detail), "%s", pg_last_error());
		return -1;
	}
	if (rl == 18 && memcmp(r, c + 5, 16) == 0 && pg_rapdu_sw(r, rl) == 0x9000)
		return 0;
	snprintf(w->detail, sizeof(w->detail), "ECHO %d: %zu bytes, SW %04X", i, rl,
		 pg_rapdu_sw(r, rl));
	return 1;
}

static void *
work(void *arg)
{
	struct worker *w = arg;
	int i, rc;

	for (i = 0; i < PHASE; i++) {
		rc = exchange(w, i);
		if (rc != 0) {
			w->bad++;
			break;
		}
		w->ok1++;
	}
	pthread_barrier_wait(&barrier); /* main kills one SE here */
	pthread_barrier_wait(&barrier);
	for (; i < 2 * PHASE; i++) {
		rc = exchange(w, i);
		if (rc < 0) {
			w->err2++;
			break;
		}
		if (rc > 0)
			w->bad++;
		w->ok2++;
	}
	return NULL;
}

static void
test_accept(void **state)
{
	char dir[] = "/tmp/pg-conv-accept-XXXXXX", addr[MAX_IF][128];
	char names[MAX_IF][16];
	struct worker *w;
	pthread_t *t;
	int nch = 0, victim, closed = 0;

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < PG_LINK_COUNT && nif < MAX_IF; i++) {
		const struct pg_link_ops *o = pg_link_drivers[i];

		if (o && o->host_open && o->card_open)
			ifops[nif++] = o;
	}
	if (nif < 5) {
		fprintf(stderr,
			"converter acceptance needs >= 5 link types with host and card "
			"roles; this build has %d:",
			nif);
		for (int i = 0; i < nif; i++)
			fprintf(stderr, " %s", ifops[i]->name);
		fputc('\n', stderr);
		fail_msg("only %d link types available (t0 t1 swp spi i2c ccid expected)", nif);
	}
	assert_non_null(mkdtemp(dir));
	assert_int_equal(pg_conv_new(&conv), 0);
	for (int i = 0; i < nif; i++) {
		int fd;

		snprintf(addr[i], sizeof(addr[i]), "unix:%s/%s.sock", dir, ifops[i]->name);
		snprintf(names[i], sizeof(names[i]), "%s", ifops[i]->name);
		fd = pg_stream_listen(addr[i]);
		assert_true(fd >= 0);
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0)
			run_sim(ifops[i], addr[i], fd, 0xACC00000u + (uint32_t)i);
		close(fd);
		assert_int_equal(pg_conv_attach_addr(conv, names[i], ifops[i], addr[i], NULL), 0);
	}
	w = calloc((size_t)(nif * nif), sizeof(*w));
	t = calloc((size_t)(nif * nif), sizeof(*t));
	assert_non_null(w);
	assert_non_null(t);
	/* Every ordered pair gets its own channel. */
	victim = 2;
	for (int a = 0; a < nif; a++)
		for (int b = 0; b < nif; b++) {
			if (a == b)
				continue;
			w[nch].ch = pg_conv_open(conv, names[a], names[b]);
			assert_true(w[nch].ch > 0);
			w[nch].a = a;
			w[nch].b = b;
			w[nch].victim = a == victim || b == victim;
			nch++;
		}
	assert_true(nch >= 20);
	assert_int_equal(pthread_barrier_init(&barrier, NULL, (unsigned)nch + 1), 0);
	for (int i = 0; i < nch; i++)
		assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
	/* Phase 1 runs on every channel concurrently. */
	pthread_barrier_wait(&barrier);
	for (int i = 0; i < nch; i++) {
		if (w[i].ok1 != PHASE)
			fprintf(stderr, "channel %d %s -> %s: %d of %d, %s\n", w[i].ch,
				names[w[i].a], names[w[i].b], w[i].ok1, PHASE, w[i].detail);
	}
	for (int i = 0; i < nch; i++)
		assert_int_equal(w[i].ok1, PHASE);
	/* Kill one SE mid-channel; the management module's probe notices at once. */
	assert_int_equal(kill(pids[victim], SIGKILL), 0);
	waitpid(pids[victim], NULL, 0);
	pids[victim] = 0;
	assert_int_equal(pg_conv_probe(conv), 1);
	pthread_barrier_wait(&barrier);
	/* Phase 2: close every fourth unaffected channel while the others run. */
	for (int i = 0; i < nch; i += 4) {
		if (w[i].victim)
			continue;
		assert_int_equal(pg_conv_close(conv, w[i].ch), 0);
		w[i].victim = -1; /* closed by management */
		closed++;
	}
	for (int i = 0; i < nch; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].bad, 0);
		if (w[i].victim == 1) {
			/* The killed SE's channels end with a clear error naming it. */
			assert_int_equal(w[i].err2, 1);
			assert_int_equal(w[i].ok2, 0);
			assert_int_equal(w[i].last_rc, PG_ELINK);
			assert_non_null(strstr(w[i].detail, names[victim]));
			assert_int_equal(pg_conv_channel_state(conv, w[i].ch), PG_ELINK);
		} else if (w[i].victim == 0) {
			assert_int_equal(w[i].err2, 0);
			assert_int_equal(w[i].ok2, PHASE);
			assert_int_equal(pg_conv_channel_state(conv, w[i].ch), 0);
		} else {
			assert_true(w[i].err2 == 0 || w[i].last_rc == PG_ECLOSED);
			assert_int_equal(pg_conv_channel_state(conv, w[i].ch), PG_ECLOSED);
		}
	}
	assert_true(closed >= 2);
	/* The survivors still open new channels after all this. */
	{
		int a = victim == 0 ? 1 : 0, b = victim == nif - 1 ? nif - 2 : nif - 1;
		struct worker x = {.ch = pg_conv_open(conv, names[a], names[b])};

		assert_true(x.ch > 0);
		for (int i = 0; i < 6; i++) /* SELECT on both sides, then ECHOes both ways */
			assert_int_equal(exchange(&x, i), 0);
	}
	fprintf(stderr,
		"converter acceptance: %d interfaces, %d channels, SE '%s' killed, %d closed\n",
		nif, nch, names[victim], closed);
	pg_conv_free(conv); /* the sims see their host leave and exit */
	for (int i = 0; i < nif; i++) {
		int st = 0;

		if (pids[i] > 0) {
			assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
			assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		}
		unlink(addr[i] + 5);
	}
	rmdir(dir);
	pthread_barrier_destroy(&barrier);
	free(w);
	free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_accept),
	};
	pg_log_set_level(PG_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
