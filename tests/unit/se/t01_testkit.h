/*
 * Test kit shared by test_t0.c and test_t1.c (their card is sd_tcard() and
 * their socketpair runner sd_open_socket() of tests/common/se_double.h): a
 * tracing stream wrapper that logs every frame and can drop or corrupt
 * chosen ones, and the wiring of host and card roles over a memory pair.
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
};

struct trstream {
	struct pg_stream base;
	struct pg_stream *inner;
	int owns, dir;
	struct trace *t;
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

static int
tr_write(struct pg_stream *s, int type, const uint8_t *p, size_t n)
{
	struct trstream *w = (struct trstream *)s;
	struct trace *t = w->t;
	int k;

	if (type != PG_PKT_DATA) {
		if (type == PG_PKT_RESET)
			t->reset_seen = 1;
		return w->inner->ops->write(w->inner, type, p, n);
	}
	k = ++t->count[w->dir];
	for (int i = 0; i < 16 && t->drop[w->dir][i]; i++)
		if (t->drop[w->dir][i] == k) {
			tr_render(t, w->dir, p, n, " lost");
			return 0;
		}
	for (int i = 0; i < 16 && t->corrupt[w->dir][i]; i++)
		if (t->corrupt[w->dir][i] == k) {
			uint8_t buf[70000];
			size_t m = n < sizeof(buf) ? n : sizeof(buf);

			memcpy(buf, p, m);
			buf[m - 1] ^= 0x01; /* a bit of the epilogue / last byte */
			tr_render(t, w->dir, p, n, " bad");
			return w->inner->ops->write(w->inner, type, buf, m);
		}
	tr_render(t, w->dir, p, n, "");
	return w->inner->ops->write(w->inner, type, p, n);
}

static int
tr_read(struct pg_stream *s, uint8_t *p, size_t n, int timeout_ms)
{
	struct trstream *w = (struct trstream *)s;

	return w->inner->ops->read(w->inner, p, n, timeout_ms);
}

static void
tr_flush(struct pg_stream *s)
{
	pg_stream_flush(((struct trstream *)s)->inner);
}

static void
tr_destroy(struct pg_stream *s)
{
	struct trstream *w = (struct trstream *)s;

	if (w->owns)
		pg_stream_free(w->inner);
	free(w);
}

static const struct pg_stream_ops tr_ops = {tr_write, tr_read, tr_flush, tr_destroy};

static struct pg_stream *
tr_wrap(struct pg_stream *inner, int owns, int dir, struct trace *t)
{
	struct trstream *w = calloc(1, sizeof(*w));

	w->base.ops = &tr_ops;
	w->inner = inner;
	w->owns = owns;
	w->dir = dir;
	w->t = t;
	return &w->base;
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
