/*
 * Test kit shared by test_t0.c and test_t1.c (their card is sd_tcard() and
 * their socketpair runner sd_open_socket() of tests/common/se_double.h): a
 * trace that renders every frame and drops or corrupts chosen ones (the
 * hook of se_double's sd_tap), and the wiring of host and card roles over a
 * memory pair.
 */
#ifndef T01_TESTKIT_H
#define T01_TESTKIT_H

#include "payguard/apdu.h"
#include "payguard/buf.h"
#include "payguard/error.h"
#include "payguard/link.h"
#include "payguard/stream.h"
#include "se_double.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- tracing / fault stream ---- */

#define TR_MAX_LINES 256

struct trace {
	char lines[TR_MAX_LINES][48];
	int n;
	int reset_seen;	 /* next card packet is the ATR */
	int t0;		 /* render T=0 bytes in hex instead of T=1 blocks */
	int crc;	 /* T=1 epilogue */
	int drop[2][16]; /* per direction (0 host->card, 1 card->host): packet numbers */
	int corrupt[2][16];
	int count[2];
	struct tr_side {
		struct trace *t;
		int dir;
	} side[2]; /* the taps' hook contexts */
};

static void
tr_render(struct trace *t, int dir, const uint8_t *p, size_t n, const char *note)
{
	char *l;
	const char *arrow = dir ? "<" : ">";

	if (t->n >= TR_MAX_LINES)
		return;
	l = t->lines[t->n++];
	if (dir && t->reset_seen) {
		t->reset_seen = 0;
		snprintf(l, 48, "< ATR%s", note);
		return;
	}
	if (t->t0 || n < 3) {
		int o = snprintf(l, 48, "%s ", arrow);

		for (size_t i = 0; i < n && o < 40; i++)
			o += snprintf(l + o, (size_t)(48 - o), "%02X", p[i]);
		if (n * 2 > 38)
			snprintf(l + 40, 8, "..");
		if (*note)
			snprintf(l + (o < 40 ? o : 42), 6, "%s", note);
		return;
	}
	{
		uint8_t pcb = p[1];

		if (!(pcb & 0x80))
			snprintf(l, 48, "%s I(%d,%d)%s", arrow, (pcb >> 6) & 1, (pcb >> 5) & 1,
				 note);
		else if ((pcb & 0xC0) == 0x80)
			snprintf(l, 48, "%s R(%d%s)%s", arrow, (pcb >> 4) & 1,
				 (pcb & 3) == 1	  ? ",EDC"
				 : (pcb & 3) == 2 ? ",ERR"
						  : "",
				 note);
		else {
			static const char *names[] = {"RESYNCH", "IFS", "ABORT", "WTX", "VPP"};
			int ty = pcb & 0x1F;

			if (n > 3 && p[2] == 1)
				snprintf(l, 48, "%s S(%s %s %d)%s", arrow, ty < 5 ? names[ty] : "?",
					 (pcb & 0x20) ? "rsp" : "req", p[3], note);
			else
				snprintf(l, 48, "%s S(%s %s)%s", arrow, ty < 5 ? names[ty] : "?",
					 (pcb & 0x20) ? "rsp" : "req", note);
		}
	}
}

/* The taps' hook: counts packets per direction (from 1), renders each, drops or corrupts the
 * chosen. */
static enum sd_fate
tr_hook(void *ctx, int type, const uint8_t *p, size_t n, size_t index)
{
	struct tr_side *sd = ctx;
	struct trace *t = sd->t;
	int k;

	(void)index;
	if (type != PG_PKT_DATA) {
		if (type == PG_PKT_RESET)
			t->reset_seen = 1;
		return SD_PASS;
	}
	k = ++t->count[sd->dir];
	for (int i = 0; i < 16 && t->drop[sd->dir][i]; i++)
		if (t->drop[sd->dir][i] == k) {
			tr_render(t, sd->dir, p, n, " lost");
			return SD_DROP;
		}
	for (int i = 0; i < 16 && t->corrupt[sd->dir][i]; i++)
		if (t->corrupt[sd->dir][i] == k) {
			tr_render(t, sd->dir, p, n, " bad");
			return SD_CORRUPT;
		}
	tr_render(t, sd->dir, p, n, "");
	return SD_PASS;
}

/* A traced stream: se_double's tap with the trace as its hook. */
static struct pg_stream *
tr_wrap(struct pg_stream *inner, int owns, int dir, struct trace *t)
{
	struct sd_tap *tap = sd_tap_new(inner, owns, NULL);

	t->side[dir].t = t;
	t->side[dir].dir = dir;
	tap->hook = tr_hook;
	tap->ctx = &t->side[dir];
	return &tap->base;
}

/* Prints the trace (for failures and the test log). */
static void
tr_dump(const struct trace *t, const char *title)
{
	printf("--- %s\n", title);
	for (int i = 0; i < t->n; i++)
		printf("    %s\n", t->lines[i]);
}

/* 1 when the trace from line `from` equals the NULL-terminated list. */
static int
tr_match(const struct trace *t, int from, const char *const *want)
{
	int i = 0;

	for (; want[i]; i++)
		if (from + i >= t->n || strcmp(t->lines[from + i], want[i]) != 0)
			return 0;
	return from + i == t->n;
}

/* ---- wiring ---- */

static void
kit_card_free(void *ctx)
{
	pg_link_card_close(ctx);
}

/*
 * Host and card roles over a memory pair; with a trace (may be NULL) both
 * directions are traced; with drop/corrupt ppm > 0 both directions go
 * through pg_stream_faulty (seeded).
 */
static int
kit_open_memory(struct pg_link **out, const struct pg_link_ops *ops, const struct pg_card *card,
		const struct pg_link_params *p, struct trace *t, uint32_t drop_ppm,
		uint32_t corrupt_ppm, uint64_t seed, struct pg_stream **hf, struct pg_stream **cf)
{
	struct pg_link_card *c = NULL;
	struct pg_stream *s = NULL, *w;
	int rc;

	rc = ops->card_open(&c, card, p);
	if (rc < 0)
		return rc;
	rc = pg_stream_memory_pair(&s, pg_link_card_packet, c, kit_card_free);
	if (rc < 0) {
		pg_link_card_close(c);
		return rc;
	}
	if (t) {
		pg_stream_memory_set_card_out(s, tr_wrap(pg_stream_memory_card_end(s), 0, 1, t));
		s = tr_wrap(s, 1, 0, t);
	}
	if ((drop_ppm || corrupt_ppm) && !t) {
		/* Faults or a trace, not both: keeps the kit simple. */
		struct pg_stream *card_out = pg_stream_memory_card_end(s);

		pg_stream_faulty_borrow(&w, card_out, drop_ppm, corrupt_ppm, seed ^ 0x5555);
		pg_stream_memory_set_card_out(s, w);
		*cf = w;
		pg_stream_faulty(&w, s, drop_ppm, corrupt_ppm, seed);
		*hf = w;
		s = w;
	}
	return ops->host_open(out, s, NULL, p);
}

#endif
