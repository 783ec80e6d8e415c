/*
 * The secure-element test double (se_double.h): scripted card stream, echo
 * card, packet feeders, socketpair runner and SCP03 host session shared by
 * the se unit tests and the se/vse fuzz harnesses (issue 16, Build item 1).
 */
#include "se_double.h"

#include "payguard/apdu.h"
#include "payguard/buf.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- scripted card stream ---- */

static int
sd_write(struct pg_stream *s, int type, const uint8_t *p, size_t n)
{
	struct sd_stream *k = (struct sd_stream *)s;

	if (type != PG_PKT_DATA)
		return 0;
	k->writes++;
	k->lastn = n < sizeof(k->last) ? n : sizeof(k->last);
	if (k->lastn)
		memcpy(k->last, p, k->lastn);
	return 0;
}

/* Hands the host up to n of the len queued bytes from *off; a mute card when none are left. */
static int
sd_take(const uint8_t *q, size_t len, size_t *off, uint8_t *p, size_t n)
{
	if (*off == len)
		return PG_ETIMEDOUT;
	if (n > len - *off)
		n = len - *off;
	memcpy(p, q + *off, n);
	*off += n;
	return (int)n;
}

static int
sd_read(struct pg_stream *s, uint8_t *p, size_t n, int timeout_ms)
{
	struct sd_stream *k = (struct sd_stream *)s;

	(void)timeout_ms;
	return sd_take(k->p, k->n, &k->off, p, n);
}

static void
sd_destroy(struct pg_stream *s)
{
	if (((struct sd_stream *)s)->heap)
		free(s);
}

static const struct pg_stream_ops sd_ops = {
    .write = sd_write, .read = sd_read, .destroy = sd_destroy};

void
sd_script_init(struct sd_stream *s, const uint8_t *p, size_t n)
{
	memset(s, 0, sizeof(*s));
	s->base.ops = &sd_ops;
	s->p = p;
	s->n = p ? n : 0;
}

struct pg_stream *
sd_script_new(const uint8_t *p, size_t n)
{
	struct sd_stream *s = malloc(sizeof(*s));

	if (!s)
		abort();
	sd_script_init(s, p, n);
	s->heap = 1;
	return &s->base;
}

/* ---- a card that follows a script of steps ---- */

static void
sd_steps_push(struct sd_steps *k, const char *hex)
{
	int n = pg_hex_decode(k->q, sizeof(k->q), hex);

	k->qn = n > 0 ? (size_t)n : 0;
	k->qoff = 0;
}

static int
sd_steps_write(struct pg_stream *s, int type, const uint8_t *p, size_t n)
{
	struct sd_steps *k = (struct sd_steps *)s;
	uint8_t want[512];
	int wn;

	if (type == PG_PKT_RESET) {
		sd_steps_push(k, k->atr);
		return 0;
	}
	if (type != PG_PKT_DATA)
		return 0;
	if (k->i >= k->nsteps) {
		if (!k->mismatch[0])
			snprintf(k->mismatch, sizeof(k->mismatch), "extra packet after step %d",
				 k->i);
		return 0;
	}
	wn = pg_hex_decode(want, sizeof(want), k->steps[k->i].host);
	if (!k->mismatch[0] && (wn < 0 || (size_t)wn != n || memcmp(want, p, n) != 0)) {
		int o = snprintf(k->mismatch, sizeof(k->mismatch), "step %d: host sent ", k->i);

		for (size_t j = 0; j < n && o < 180; j++)
			o += snprintf(k->mismatch + o, sizeof(k->mismatch) - (size_t)o, "%02X",
				      p[j]);
	}
	sd_steps_push(k, k->steps[k->i].card);
	k->i++;
	return 0;
}

static int
sd_steps_read(struct pg_stream *s, uint8_t *p, size_t n, int timeout_ms)
{
	struct sd_steps *k = (struct sd_steps *)s;

	(void)timeout_ms;
	return sd_take(k->q, k->qn, &k->qoff, p, n);
}

static void
sd_steps_flush(struct pg_stream *s)
{
	struct sd_steps *k = (struct sd_steps *)s;

	k->qoff = k->qn;
}

static void
sd_steps_destroy(struct pg_stream *s)
{
	(void)s; /* on the caller's storage */
}

static const struct pg_stream_ops sd_steps_ops = {.write = sd_steps_write,
						  .read = sd_steps_read,
						  .flush = sd_steps_flush,
						  .destroy = sd_steps_destroy};

void
sd_steps_init(struct sd_steps *k, const char *atr, const struct sd_step *steps, int nsteps)
{
	memset(k, 0, sizeof(*k));
	k->base.ops = &sd_steps_ops;
	k->atr = atr;
	k->steps = steps;
	k->nsteps = nsteps;
}

/* ---- echo card ---- */

static int
sd_echo_atr(void *ctx, uint8_t *atr, size_t *len)
{
	(void)ctx;
	if (*len < 4)
		return PG_ETOOBIG;
	memcpy(atr, "\x3B\x02\x14\x50", 4);
	*len = 4;
	return 0;
}

int
sd_echo_process(void *ctx, const uint8_t *c, size_t clen, uint8_t *r, size_t *rlen)
{
	(void)ctx;
	if (clen > 5 && clen - 5 + 2 <= *rlen) {
		memcpy(r, c + 5, clen - 5);
		r[clen - 5] = 0x90;
		r[clen - 4] = 0x00;
		*rlen = clen - 3;
		return 0;
	}
	if (clen >= 4 && (size_t)c[3] + 2 <= *rlen) {
		memset(r, 0xA5, c[3]);
		r[c[3]] = 0x90;
		r[c[3] + 1] = 0x00;
		*rlen = (size_t)c[3] + 2;
		return 0;
	}
	return PG_EINVAL;
}

const struct pg_card sd_echo_card = {.atr = sd_echo_atr, .process = sd_echo_process};

/* ---- test card ---- */

static int
sd_tcard_atr(void *ctx, uint8_t *atr, size_t *len)
{
	static const uint8_t t0[] = {0x3B, 0x0D, 'p', 'a', 'y', 'g', 'u', 'a',
				     'r',  'd',	 '-', 't', 'e', 's', 't'};
	struct sd_tcard *t = ctx;
	const uint8_t *a = t->atr ? t->atr : t0;
	size_t n = t->atr ? t->atrlen : sizeof(t0);

	if (t->absent)
		return PG_ENOCARD;
	if (n > *len)
		return PG_ETOOBIG;
	memcpy(atr, a, n);
	*len = n;
	return 0;
}

static void
sd_tcard_reset(void *ctx)
{
	((struct sd_tcard *)ctx)->resets++;
}

/* SD_INS_CASES: what ISO/IEC 7816-4 says each case carries back. */
static size_t
sd_tcard_cases(struct sd_tcard *t, const struct pg_capdu *a, uint8_t *r)
{
	size_t n = 0;

	switch (a->apdu_case) {
	case PG_APDU_CASE2S:
	case PG_APDU_CASE2E:
		n = a->le;
		for (size_t i = 0; i < n; i++)
			r[i] = (uint8_t)(i * 7 + 1);
		break;
	case PG_APDU_CASE3S:
	case PG_APDU_CASE3E:
		t->last_sum = 0;
		for (size_t i = 0; i < a->lc; i++)
			t->last_sum += a->data[i];
		break;
	case PG_APDU_CASE4S:
	case PG_APDU_CASE4E:
		n = a->lc < a->le ? a->lc : a->le;
		if (n)
			memcpy(r, a->data, n);
		break;
	default:
		break;
	}
	return n;
}

static uint16_t
sd_tcard_seq(struct sd_tcard *t, const struct pg_capdu *a, uint8_t *r, size_t *n)
{
	uint64_t seq;

	if (a->ins == SD_INS_SEQ_NEXT) {
		if (a->lc < 4)
			return PG_SW_WRONG_LENGTH;
		seq = pg_be32(a->data);
		if (seq != t->last_seq + 1)
			t->seq_errors++;
		t->last_seq = seq;
		memcpy(r, a->data, a->lc);
		*n = a->lc;
		return PG_SW_OK;
	}
	if (a->lc != 8)
		return PG_SW_WRONG_LENGTH;
	seq = pg_be64(a->data);
	if (seq <= t->last_seq)
		t->dup_seq++; /* executed twice (or out of order) */
	t->last_seq = seq;
	pg_put_be64(r, seq);
	pg_put_be64(r + 8, t->executed);
	*n = 16;
	return PG_SW_OK;
}

static int
sd_tcard_process(void *ctx, const uint8_t *capdu, size_t clen, uint8_t *r, size_t *rlen)
{
	struct sd_tcard *t = ctx;
	struct pg_capdu c;
	size_t n = 0, cap = *rlen;
	uint16_t sw = PG_SW_OK;

	if (t->mute)
		return PG_EIO;
	t->executed++;
	t->last_clen = clen;
	if (t->sleep_ms) {
		struct timespec ts = {0, (long)t->sleep_ms * 1000000L};

		nanosleep(&ts, NULL);
	}
	if (pg_capdu_parse(&c, capdu, clen) < 0) {
		sw = PG_SW_WRONG_LENGTH;
		goto out;
	}
	switch (c.ins) {
	case SD_INS_ECHO:
		if (c.lc)
			memcpy(r, c.data, c.lc);
		n = c.lc;
		break;
	case SD_INS_CASES:
		n = sd_tcard_cases(t, &c, r);
		break;
	case SD_INS_SEQ:
	case SD_INS_SEQ_NEXT:
		sw = sd_tcard_seq(t, &c, r, &n);
		break;
	case SD_INS_SW:
		sw = (uint16_t)(c.p1 << 8 | c.p2);
		break;
	case SD_INS_STORE:
		break;
	case SD_INS_MANAGE_CHANNEL:
		if (c.p1 == 0x00) {
			r[0] = 0x01;
			n = 1;
		}
		break;
	case SD_INS_GETN:
		n = (size_t)(c.p1 << 8 | c.p2);
		if (n == 0)
			n = 65536;
		for (size_t i = 0; i < n; i++)
			r[i] = sd_pattern(i);
		break;
	default:
		sw = PG_SW_INS_NOT_SUPPORTED;
	}
out:
	if (n + 2 > cap)
		return PG_ETOOBIG;
	pg_put_be16(r + n, sw);
	*rlen = n + 2;
	return 0;
}

struct pg_card
sd_tcard(struct sd_tcard *t)
{
	struct pg_card c = {
	    .ctx = t, .atr = sd_tcard_atr, .process = sd_tcard_process, .reset = sd_tcard_reset};

	return c;
}

/* ---- feeders ---- */

void
sd_feed_card_role(const struct pg_link_ops *ops, struct pg_link_card *c, const uint8_t *d, size_t n,
		  enum sd_framing f)
{
	struct sd_stream out;
	size_t hdr = f == SD_LEN16 ? 2 : 1, o = 0;

	sd_script_init(&out, NULL, 0);
	while (n - o >= hdr) {
		size_t len = f == SD_LEN16 ? (size_t)(d[o] << 8 | d[o + 1]) : d[o];
		int reset = f == SD_LEN16 ? (len & 0x8000) != 0 : len == 0xFF;

		o += hdr;
		if (reset) {
			ops->card_packet(c, PG_PKT_RESET, NULL, 0, &out.base);
			continue;
		}
		if (len > n - o)
			len = n - o;
		ops->card_packet(c, PG_PKT_DATA, d + o, len, &out.base);
		o += len;
	}
}

void
sd_fuzz_card_role(const struct pg_link_ops *ops, const struct pg_link_params *p, const uint8_t *d,
		  size_t n)
{
	struct pg_link_card *c = NULL;

	pg_log_set_level(PG_LOG_ERROR);
	if (ops->card_open(&c, &sd_echo_card, p) < 0)
		return;
	sd_feed_card_role(ops, c, d, n, SD_LEN16);
	ops->card_close(c);
}

void
sd_fuzz_host_role(const struct pg_link_ops *ops, const struct pg_link_params *p, const uint8_t *d,
		  size_t n)
{
	static uint8_t r[70000];
	static const uint8_t cmd[] = {0x00, 0x10, 0x00, 0x00, 0x04, 1, 2, 3, 4, 0x00};
	struct pg_link *l = NULL;
	uint8_t atr[PG_ATR_MAX];
	size_t atrlen = sizeof(atr), rlen;

	pg_log_set_level(PG_LOG_ERROR);
	if (ops->host_open(&l, sd_script_new(d, n), NULL, p) < 0)
		return; /* host_open frees the stream it was given on failure */
	if (ops->power_on(l, atr, &atrlen) == 0) {
		for (int i = 0; i < 2; i++) {
			rlen = sizeof(r);
			(void)ops->transmit(l, cmd, sizeof(cmd), r, &rlen);
		}
	}
	ops->host_close(l);
}

/* ---- socketpair with the card role in a thread ---- */

static int
sd_sock_packet(void *ctx, int type, const uint8_t *p, size_t n, struct pg_stream *out)
{
	struct sd_sock *k = ctx;

	if (k->drop_ppm || k->corrupt_ppm) {
		if (!k->faults && pg_stream_faulty_borrow(&k->faults, out, k->drop_ppm,
							  k->corrupt_ppm, k->seed) < 0)
			return PG_ENOMEM;
		out = k->faults;
	}
	return pg_link_card_packet(k->card, type, p, n, out);
}

static void *
sd_serve(void *arg)
{
	struct sd_sock *k = arg;

	k->rc = pg_stream_serve_fd(k->fd, sd_sock_packet, k);
	return NULL;
}

int
sd_serve_socket(struct sd_sock *k, const struct pg_link_ops *ops, const struct pg_card *card,
		const struct pg_link_params *p, struct pg_stream **host_end)
{
	struct sd_sock knobs = *k;
	int sv[2], rc;

	memset(k, 0, sizeof(*k));
	k->drop_ppm = knobs.drop_ppm;
	k->corrupt_ppm = knobs.corrupt_ppm;
	k->seed = knobs.seed;
	rc = ops->card_open(&k->card, card, p);
	if (rc < 0)
		return rc;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return PG_ESYS;
	k->fd = sv[1];
	if (pthread_create(&k->th, NULL, sd_serve, k) != 0)
		return PG_ESYS;
	return pg_stream_fd(host_end, sv[0], sv[0]);
}

int
sd_open_socket(struct pg_link **out, struct sd_sock *k, const struct pg_link_ops *ops,
	       const struct pg_card *card, const struct pg_link_params *p)
{
	struct pg_stream *s;
	int rc = sd_serve_socket(k, ops, card, p, &s);

	if (rc < 0)
		return rc;
	return ops->host_open(out, s, NULL, p);
}

int
sd_close_socket(struct pg_link *l, struct sd_sock *k)
{
	pg_link_close(l);
	pthread_join(k->th, NULL);
	pg_link_card_close(k->card);
	if (k->faults) {
		pg_stream_faulty_stats(k->faults, &k->card_stats);
		pg_stream_free(k->faults);
		k->faults = NULL;
	}
	return k->rc;
}

/* ---- SCP03 host session ---- */

void
sd_default_keys(struct pg_scp03_keys *k)
{
	memset(k, 0, sizeof(*k));
	for (int i = 0; i < 16; i++)
		k->enc[i] = k->mac[i] = k->dek[i] = (uint8_t)(0x40 + i);
	k->len = 16;
	k->kvn = 0x30;
}

size_t
sd_tx(const struct pg_card *c, const uint8_t *a, size_t n, uint8_t *r, size_t cap)
{
	size_t rl = cap;

	if (c->process(c->ctx, a, n, r, &rl) < 0)
		return 0;
	if (rl < 2 || rl > cap)
		abort();
	return rl;
}

int
sd_scp03_open(const struct pg_card *c, struct pg_scp03 *s, const struct pg_scp03_keys *k,
	      uint8_t sl, const uint8_t *host_ch)
{
	uint8_t a[300], r[300];
	size_t rn;
	int n;

	memset(s, 0, sizeof(*s));
	n = pg_scp03_host_init_update(s, k->kvn, host_ch, 8, a, sizeof(a));
	if (n < 0 || !(rn = sd_tx(c, a, (size_t)n, r, sizeof(r))))
		return -1;
	if (pg_rapdu_sw(r, rn) != PG_SW_OK) {
		fprintf(stderr, "INITIALIZE UPDATE: SW %04X\n", pg_rapdu_sw(r, rn));
		return -1;
	}
	n = pg_scp03_host_auth(s, k, r, rn, sl, a, sizeof(a));
	if (n < 0)
		return -2;
	if (!(rn = sd_tx(c, a, (size_t)n, r, sizeof(r))))
		return -3;
	return pg_scp03_host_auth_done(s, r, rn) == 0 ? 0 : -3;
}

int
sd_scp03_tx(const struct pg_card *c, struct pg_scp03 *s, const uint8_t *p, size_t n, uint8_t *r,
	    size_t cap)
{
	static uint8_t w[PG_APDU_MAX_C + 64];
	int wn = pg_scp03_host_wrap(s, p, n, w, sizeof(w));
	size_t rn;

	if (wn < 0)
		return wn;
	rn = sd_tx(c, w, (size_t)wn, r, cap);
	if (!rn)
		return PG_EIO;
	return pg_scp03_host_unwrap(s, r, rn, r, cap);
}

/* ---- tap ---- */

static int
tap_write(struct pg_stream *s, int type, const uint8_t *p, size_t n)
{
	struct sd_tap *t = (struct sd_tap *)s;
	enum sd_fate fate = SD_PASS;
	size_t i = t->count;

	if (type == PG_PKT_DATA) {
		t->count++;
		memset(t->last, 0, 4);
		memcpy(t->last, p, n < 4 ? n : 4);
		if (i < SD_TAP_MAX) {
			memset(t->head[i], 0, 4);
			memcpy(t->head[i], p, n < 4 ? n : 4);
			t->len[i] = n;
		}
		for (const size_t *d = t->drop; d && *d != (size_t)-1; d++)
			if (*d == i)
				fate = SD_DROP;
	}
	if (t->hook)
		fate = t->hook(t->ctx, type, p, n, i);
	if (type != PG_PKT_DATA || fate == SD_PASS)
		return t->inner->ops->write(t->inner, type, p, n);
	if (fate == SD_DROP || n == 0)
		return 0;
	{
		uint8_t *bad = malloc(n);
		int rc;

		if (!bad)
			abort();
		memcpy(bad, p, n);
		bad[n - 1] ^= 0x01;
		rc = t->inner->ops->write(t->inner, type, bad, n);
		free(bad);
		return rc;
	}
}

static int
tap_read(struct pg_stream *s, uint8_t *p, size_t n, int timeout_ms)
{
	struct sd_tap *t = (struct sd_tap *)s;

	return t->inner->ops->read(t->inner, p, n, timeout_ms);
}

static void
tap_flush(struct pg_stream *s)
{
	pg_stream_flush(((struct sd_tap *)s)->inner);
}

static void
tap_destroy(struct pg_stream *s)
{
	struct sd_tap *t = (struct sd_tap *)s;

	if (t->owns)
		pg_stream_free(t->inner);
	t->inner = NULL;
	if (!t->keep)
		free(t);
}

static const struct pg_stream_ops tap_ops = {
    .write = tap_write, .read = tap_read, .flush = tap_flush, .destroy = tap_destroy};

struct sd_tap *
sd_tap_new(struct pg_stream *inner, int owns, const size_t *drop)
{
	struct sd_tap *t = calloc(1, sizeof(*t));

	if (!t)
		abort();
	t->base.ops = &tap_ops;
	t->inner = inner;
	t->owns = owns;
	t->drop = drop;
	return t;
}
