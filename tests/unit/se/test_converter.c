/*
 * Converter logic (seed 7's management module) over a test-local loopback
 * link, so the mapping, failure and concurrency rules are checked apart from
 * any wire protocol: logical channel mapping (ISO/IEC 7816-4 5.4.1 CLA
 * coding, MANAGE CHANNEL 11.1.2), MANAGE CHANNEL issued through a channel,
 * closing, a failed SE and a removed SE ending only their channels, and
 * channels running concurrently from many threads.
 * The acceptance test over the real link drivers is test_converter_accept.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/card.h"
#include "payguard/converter.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/log.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- a loopback link: the host's transmit calls the card directly ---- */

struct loop_link {
	struct pg_link base;
	const struct pg_card *card;
	int *dead;
};

static const struct pg_link_ops loop_ops;

static int
loop_power_on(struct pg_link *l, uint8_t *atr, size_t *n)
{
	struct loop_link *k = (struct loop_link *)l;

	if (k->card->reset)
		k->card->reset(k->card->ctx);
	return k->card->atr(k->card->ctx, atr, n);
}

static int
loop_transmit(struct pg_link *l, const uint8_t *c, size_t cl, uint8_t *r, size_t *rl)
{
	struct loop_link *k = (struct loop_link *)l;

	if (__atomic_load_n(k->dead, __ATOMIC_ACQUIRE) == 2) {
		__atomic_store_n(k->dead, 0, __ATOMIC_RELEASE); /* one lost command, then fine */
		return pg_error(PG_ERESYNC, "loop", "link resynchronised");
	}
	if (__atomic_load_n(k->dead, __ATOMIC_ACQUIRE))
		return pg_error(PG_ECLOSED, "loop", "peer closed the connection");
	return k->card->process(k->card->ctx, c, cl, r, rl);
}

static void
loop_close(struct pg_link *l)
{
	free(l);
}

static const struct pg_link_ops loop_ops = {
    .name = "loop",
    .max_capdu = PG_APDU_MAX_C,
    .max_rapdu = PG_APDU_MAX_R,
    .power_on = loop_power_on,
    .transmit = loop_transmit,
    .host_close = loop_close,
};

#define NSE 6

static struct pg_card_rt *cards[NSE];
static int dead[NSE];
static const char *names[NSE] = {"a", "b", "c", "d", "e", "f"};
static struct pg_conv *conv;

/* The last APDU event the trace saw (single-threaded tests only). */
static uint8_t last_sent[300];
static size_t last_slen;
static char last_end[300];
static int ends;

static void
trace(void *arg, const struct pg_conv_event *ev)
{
	(void)arg;
	if (ev->kind == PG_CONV_EV_APDU && ev->sent) {
		last_slen = ev->slen < sizeof(last_sent) ? ev->slen : sizeof(last_sent);
		memcpy(last_sent, ev->sent, last_slen);
	}
	if (ev->kind == PG_CONV_EV_END) {
		snprintf(last_end, sizeof(last_end), "%s", ev->detail);
		__atomic_add_fetch(&ends, 1, __ATOMIC_RELAXED);
	}
}

static int
setup(void **state)
{
	(void)state;
	assert_int_equal(pg_conv_new(&conv), 0);
	pg_conv_set_trace(conv, trace, NULL);
	ends = 0;
	for (int i = 0; i < NSE; i++) {
		struct loop_link *l = calloc(1, sizeof(*l));

		assert_non_null(l);
		dead[i] = 0;
		assert_int_equal(pg_card_sim_new(&cards[i], 0x100 + (uint32_t)i, NULL, 0), 0);
		l->base.ops = &loop_ops;
		l->card = pg_card_rt_card(cards[i]);
		l->dead = &dead[i];
		assert_int_equal(pg_conv_attach(conv, names[i], &l->base), 0);
	}
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	pg_conv_free(conv);
	conv = NULL;
	for (int i = 0; i < NSE; i++)
		pg_card_rt_free(cards[i]);
	return 0;
}

static uint16_t
tx(int ch, enum pg_conv_side side, const char *hex, int *rc)
{
	uint8_t c[300], r[300];
	size_t rl = sizeof(r);
	int n = pg_hex_decode(c, sizeof(c), hex);

	assert_true(n > 0);
	*rc = pg_conv_transmit(conv, ch, side, c, (size_t)n, r, &rl);
	return *rc < 0 ? 0 : pg_rapdu_sw(r, rl);
}

#define SELECT_TEST "00A404000AF0706179677561726401 00"

static void
test_mapping(void **state)
{
	int rc, ab, ac, ca;

	(void)state;
	ab = pg_conv_open(conv, "a", "b");
	assert_int_equal(ab, 1);
	/* Each side's basic channel maps to a channel opened on the other SE. */
	assert_int_equal(pg_card_rt_open_channels(cards[0]), 2);
	assert_int_equal(pg_card_rt_open_channels(cards[1]), 2);
	assert_int_equal(tx(ab, PG_CONV_A, SELECT_TEST, &rc), 0x9000);
	assert_int_equal(last_sent[0], 0x01); /* b's channel 1 */
	ac = pg_conv_open(conv, "a", "c");
	ca = pg_conv_open(conv, "c", "a");
	assert_true(ac > 0 && ca > 0);
	/* a now hosts channels for b (1), c (2) and c again (3). */
	assert_int_equal(pg_card_rt_open_channels(cards[0]), 4);
	assert_int_equal(tx(ca, PG_CONV_A, SELECT_TEST, &rc), 0x9000);
	assert_int_equal(last_sent[0], 0x03);
	/* Proprietary class keeps bit 8: GET COUNTER 80 -> 83. */
	assert_int_equal(tx(ca, PG_CONV_A, "8012000008", &rc), 0x9000);
	assert_int_equal(last_sent[0], 0x83);
	/* Selections are separate per channel: a-b's B side still sees the ISD on a. */
	assert_int_equal(tx(ab, PG_CONV_B, "80CA9F7F00", &rc), 0x9000);
	assert_int_equal(last_sent[0], 0x81);
	/* The issuer's unopened channel 2 is refused by the converter itself. */
	assert_int_equal(tx(ab, PG_CONV_A, "02A4040000", &rc), 0x6881);
	/* A malformed command (CLA FF is PPS, Lc past the end) is the issuer's error. */
	tx(ab, PG_CONV_A, "FFA4040000", &rc);
	assert_int_equal(rc, PG_EFORMAT);
	tx(ab, PG_CONV_A, "00A4040005A0", &rc);
	assert_true(rc < 0);
	/* A link that recovers loses one command; the channel and the SE stay. */
	__atomic_store_n(&dead[1], 2, __ATOMIC_RELEASE);
	tx(ab, PG_CONV_A, "8012000008", &rc);
	assert_int_equal(rc, PG_ERESYNC);
	assert_int_equal(pg_conv_channel_state(conv, ab), 0);
	assert_int_equal(tx(ab, PG_CONV_A, "8012000008", &rc), 0x9000);
	assert_int_equal(pg_conv_open(conv, "a", "a"), PG_EINVAL);
	assert_int_equal(pg_conv_open(conv, "a", "zz"), PG_ENOENT);
}

static void
test_manage_through(void **state)
{
	int rc, ch, before;

	(void)state;
	ch = pg_conv_open(conv, "a", "b");
	assert_true(ch > 0);
	before = pg_card_rt_open_channels(cards[1]);
	/* MANAGE CHANNEL open from A: A sees channel 1, b really opens its next one. */
	assert_int_equal(tx(ch, PG_CONV_A, "0070000001", &rc), 0x9000);
	assert_int_equal(pg_card_rt_open_channels(cards[1]), before + 1);
	assert_int_equal(tx(ch, PG_CONV_A, "01A404000AF0706179677561726401 00", &rc), 0x9000);
	assert_int_equal(last_sent[0], 0x02);
	assert_int_equal(tx(ch, PG_CONV_A, "8110000002BEEF00", &rc), 0x9000);
	/* Opening a chosen number (7) and using it with the further class (CLA 43). */
	assert_int_equal(tx(ch, PG_CONV_A, "00700007", &rc), 0x9000);
	assert_int_equal(tx(ch, PG_CONV_A, "43CA9F7F00", &rc), 0x9000);
	assert_int_equal(last_sent[0], 0x03);
	assert_int_equal(tx(ch, PG_CONV_A, "00700007", &rc), 0x6985);
	/* Close both; the SE's channels are released. */
	assert_int_equal(tx(ch, PG_CONV_A, "00708001", &rc), 0x9000);
	assert_int_equal(tx(ch, PG_CONV_A, "43708000", &rc), 0x9000);
	assert_int_equal(pg_card_rt_open_channels(cards[1]), before);
	assert_int_equal(tx(ch, PG_CONV_A, "01A4040000", &rc), 0x6881);
	assert_int_equal(tx(ch, PG_CONV_A, "00708000", &rc), 0x6A86);
	/* Closing the channel releases the mapped channels on both SEs. */
	assert_int_equal(pg_conv_close(conv, ch), 0);
	assert_int_equal(pg_card_rt_open_channels(cards[0]), 1);
	assert_int_equal(pg_card_rt_open_channels(cards[1]), 1);
	tx(ch, PG_CONV_A, SELECT_TEST, &rc);
	assert_int_equal(rc, PG_ECLOSED);
	assert_int_equal(pg_conv_channel_state(conv, ch), PG_ECLOSED);
	assert_int_equal(pg_conv_close(conv, ch), PG_ECLOSED);
	assert_int_equal(pg_conv_close(conv, 99), PG_ENOCHAN);
}

static void
test_channel_exhaustion(void **state)
{
	int ch[20], n = 0, rc;

	(void)state;
	/* a can host 19 mapped channels; the 20th open is refused with a clear error. */
	for (int i = 0; i < 19; i++) {
		ch[n] = pg_conv_open(conv, names[1 + i % 5], "a");
		assert_true(ch[n] > 0);
		n++;
	}
	rc = pg_conv_open(conv, "b", "a");
	assert_int_equal(rc, PG_ENOCHAN);
	assert_non_null(strstr(pg_last_error(), "'a' refused"));
	/* ... and the refused attempt left no channel open on b. */
	assert_int_equal(pg_card_rt_open_channels(cards[1]), 1 + 4);
	assert_int_equal(pg_conv_close(conv, ch[0]), 0);
	assert_true(pg_conv_open(conv, "b", "a") > 0);
}

static void
test_failure_and_removal(void **state)
{
	int rc, ab, ac, ca, bd, cd;
	int ce;

	(void)state;
	ab = pg_conv_open(conv, "a", "b");
	ac = pg_conv_open(conv, "a", "c");
	ca = pg_conv_open(conv, "c", "a");
	bd = pg_conv_open(conv, "b", "d");
	cd = pg_conv_open(conv, "c", "d");
	ce = pg_conv_open(conv, "c", "e");
	assert_true(ab > 0 && ac > 0 && ca > 0 && bd > 0 && cd > 0 && ce > 0);
	assert_int_equal(tx(ac, PG_CONV_A, SELECT_TEST, &rc), 0x9000);
	/* c dies mid-channel: the next command towards it fails with a clear error. */
	__atomic_store_n(&dead[2], 1, __ATOMIC_RELEASE);
	tx(ac, PG_CONV_A, "8012000008", &rc);
	assert_int_equal(rc, PG_ELINK);
	assert_non_null(strstr(pg_last_error(), "SE 'c' on link loop failed"));
	assert_int_equal(pg_conv_channel_state(conv, ac), PG_ELINK);
	/* Every channel with c ends, in either direction, even where c only issued. */
	tx(ca, PG_CONV_B, "8012000008", &rc);
	assert_int_equal(rc, PG_ELINK);
	tx(ce, PG_CONV_A, "8012000008", &rc); /* c issues towards live e: still ended */
	assert_int_equal(rc, PG_ELINK);
	assert_int_equal(pg_conv_channel_state(conv, cd), PG_ELINK);
	assert_non_null(strstr(last_end, "ended"));
	/* e's channel to c was released on e when the channel ended. */
	assert_int_equal(pg_card_rt_open_channels(cards[4]), 1);
	/* The others go on. */
	assert_int_equal(tx(ab, PG_CONV_A, SELECT_TEST, &rc), 0x9000);
	assert_int_equal(tx(bd, PG_CONV_B, SELECT_TEST, &rc), 0x9000);
	/* Removal of b: its channels end with PG_ENOCARD, d's channel to b is released. */
	assert_int_equal(pg_conv_detach(conv, "b"), 0);
	tx(ab, PG_CONV_A, SELECT_TEST, &rc);
	assert_int_equal(rc, PG_ENOCARD);
	assert_non_null(strstr(pg_last_error(), "SE 'b' on link loop was removed"));
	assert_int_equal(pg_conv_channel_state(conv, bd), PG_ENOCARD);
	assert_int_equal(pg_card_rt_open_channels(cards[3]), 1);
	assert_int_equal(pg_conv_detach(conv, "b"), PG_ENOENT);
	assert_int_equal(pg_conv_open(conv, "a", "b"), PG_ENOCARD);
	/* A probe finds no further failures; new channels between live SEs work. */
	assert_int_equal(pg_conv_probe(conv), 0);
	rc = pg_conv_open(conv, "d", "e");
	assert_true(rc > 0);
	assert_int_equal(tx(rc, PG_CONV_A, SELECT_TEST, &ce), 0x9000);
}

/* ---- concurrency: every ordered pair of 6 SEs, one thread each ---- */

struct worker {
	int ch;
	int ok, errors;
	uint32_t seed;
};

static void *
work(void *arg)
{
	struct worker *w = arg;
	uint8_t c[64], r[64];

	for (int i = 0; i < 300; i++) {
		size_t rl = sizeof(r);
		enum pg_conv_side side = (i & 1) ? PG_CONV_B : PG_CONV_A;
		int rc;

		memcpy(c, "\x80\x10\x00\x00\x10", 5);
		for (int k = 0; k < 16; k++) {
			w->seed = w->seed * 1103515245u + 12345u;
			c[5 + k] = (uint8_t)(w->seed >> 16);
		}
		c[21] = 0;
		/* SELECT first on each side, then echoes that must come back intact. */
		if (i < 2) {
			static const uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x0A, 0xF0,
						      'p',  'a',  'y',	'g',  'u',  'a',
						      'r',  'd',  0x01, 0x00};

			rc = pg_conv_transmit(conv, w->ch, side, sel, sizeof(sel), r, &rl);
		} else {
			rc = pg_conv_transmit(conv, w->ch, side, c, 22, r, &rl);
			if (rc == 0 && (rl != 18 || memcmp(r, c + 5, 16) != 0))
				w->errors++;
		}
		if (rc < 0)
			return NULL; /* closed under us by the main thread */
		w->ok++;
	}
	return NULL;
}

static void
test_concurrent(void **state)
{
	struct worker w[NSE * (NSE - 1)];
	pthread_t t[NSE * (NSE - 1)];
	int n = 0, ok = 0, closed = 0;
	uint64_t total = 0;

	(void)state;
	for (int i = 0; i < NSE; i++)
		for (int j = 0; j < NSE; j++) {
			if (i == j)
				continue;
			w[n].ch = pg_conv_open(conv, names[i], names[j]);
			assert_true(w[n].ch > 0);
			w[n].ok = w[n].errors = 0;
			w[n].seed = (uint32_t)n * 7919u + 1;
			n++;
		}
	for (int i = 0; i < n; i++)
		assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
	/* Close every fifth channel while the others run. */
	for (int i = 0; i < n; i += 5) {
		int rc = pg_conv_close(conv, w[i].ch);

		assert_true(rc == 0);
		closed++;
	}
	for (int i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].errors, 0);
		if (i % 5 != 0)
			assert_int_equal(w[i].ok, 300);
		ok += w[i].ok;
	}
	assert_true(closed == 6);
	/* Every exchange reached exactly one SE once: the counters add up. */
	for (int i = 0; i < NSE; i++)
		total += pg_card_rt_counter(cards[i]);
	/* 2 opens per channel + the APDUs + 2 closes per closed channel. */
	assert_int_equal(total, (uint64_t)(2 * n + ok + 2 * closed));
}

/* A trace sink that, inside channel `arg`'s exchange, asks about another channel. */
static void
trace_nested(void *arg, const struct pg_conv_event *ev)
{
	if (ev->kind == PG_CONV_EV_APDU)
		(void)pg_conv_channel_state(conv, *(int *)arg);
}

/*
 * The lock order is asserted: taking a second channel's lock while one is
 * held (here from a trace sink, called under the first) aborts at once
 * instead of waiting for two threads to deadlock on each other.
 */
static void
test_lock_order_asserted(void **state)
{
	int ab, ac, rc, status;
	pid_t pid;

	(void)state;
#ifdef NDEBUG
	skip(); /* the checks are assertions */
#endif
	ab = pg_conv_open(conv, "a", "b");
	ac = pg_conv_open(conv, "a", "c");
	assert_true(ab > 0 && ac > 0);
	/* In order (channel, then interface; one channel at a time) nothing fires. */
	assert_int_equal(tx(ab, PG_CONV_A, SELECT_TEST, &rc), 0x9000);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		signal(SIGABRT, SIG_DFL); /* not cmocka's handler: the child must die */
		pg_conv_set_trace(conv, trace_nested, &ac);
		tx(ab, PG_CONV_A, SELECT_TEST, &rc);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_mapping, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_manage_through, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_channel_exhaustion, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failure_and_removal, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lock_order_asserted, setup, teardown),
	};
	pg_log_set_level(PG_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
