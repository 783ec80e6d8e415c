/*
 * Terminal side of the seed-4 link: a blocking client for tools and the demo,
 * and an epoll load generator (many connections, one or several requests in
 * flight on each, as a concentrator multiplexes terminals) that measures
 * throughput and latency per request and can log every answer.
 */
#include "payguard/clock.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/pos.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static int
tcp_connect(const char *host, int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd, one = 1;

	if (inet_pton(AF_INET, host ? host : "127.0.0.1", &a.sin_addr) != 1)
		return pg_error(PG_EINVAL, "pos-client", "address '%s' is not IPv4", host);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return pg_error(PG_ESYS, "pos-client", "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;

		close(fd);
		return pg_error(PG_ECLOSED, "pos-client", "connect %s:%d: %s",
				host ? host : "127.0.0.1", port, strerror(e));
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

int
pg_pos_client_connect(struct pg_pos_client *c, const char *host, int port,
		      const struct pg_iso_dialect *d, const struct pg_iso_framing *fr)
{
	int fd = tcp_connect(host, port);

	if (fd < 0)
		return fd;
	c->fd = fd;
	c->d = d;
	c->fr = *fr;
	pg_buf_init(&c->in, PG_ISO_MAX_MSG + 16);
	pg_buf_init(&c->out, PG_ISO_MAX_MSG + 16);
	return 0;
}

void
pg_pos_client_close(struct pg_pos_client *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	pg_buf_release(&c->in);
	pg_buf_release(&c->out);
}

int
pg_pos_client_send_raw(struct pg_pos_client *c, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return pg_error(PG_ECLOSED, "pos-client", "send: %s", strerror(errno));
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int
pg_pos_client_recv(struct pg_pos_client *c, struct pg_iso_msg *resp, int timeout_ms)
{
	uint64_t deadline = pg_mono_ms() + (uint64_t)timeout_ms;

	for (;;) {
		size_t hdr, body;
		int rc = pg_iso_frame_find(&c->fr, c->in.data ? c->in.data : (const uint8_t *)"",
					   c->in.len, PG_ISO_MAX_MSG, &hdr, &body);
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		uint64_t now;
		ssize_t r;

		if (rc < 0)
			return rc;
		if (rc == 1 && c->fr.kind != PG_FRAME_NONE) {
			rc = pg_iso_unpack(c->d, c->in.data + hdr, body, resp);
			pg_buf_consume(&c->in, hdr + body);
			return rc;
		}
		now = pg_mono_ms();
		if (now >= deadline)
			return pg_error(PG_ETIMEDOUT, "pos-client", "no response in %d ms",
					timeout_ms);
		if (poll(&p, 1, (int)(deadline - now)) <= 0)
			continue;
		rc = pg_buf_reserve(&c->in, 4096);
		if (rc < 0)
			return rc;
		r = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
		if (r <= 0)
			return pg_error(PG_ECLOSED, "pos-client", "server closed the connection");
		c->in.len += (size_t)r;
	}
}

int
pg_pos_client_exchange(struct pg_pos_client *c, const struct pg_iso_msg *req,
		       struct pg_iso_msg *resp, int timeout_ms)
{
	struct pg_buf body = PG_BUF_INIT(PG_ISO_ARENA);
	int rc;

	pg_buf_reset(&c->out);
	rc = pg_iso_pack(c->d, req, &body);
	if (rc == 0)
		rc = pg_iso_frame_wrap(&c->fr, NULL, body.data, body.len, &c->out);
	pg_buf_release(&body);
	if (rc == 0)
		rc = pg_pos_client_send_raw(c, c->out.data, c->out.len);
	if (rc == 0)
		rc = pg_pos_client_recv(c, resp, timeout_ms);
	return rc;
}

/* ---- load generator ---- */

/*
 * One connection of the load: its request framed once (only field 11
 * patched per request), and the requests it has outstanding, oldest first,
 * in a ring of `inflight` slots: the server answers a connection's requests
 * in order, so each answer belongs to the oldest one, and its STAN says so.
 */
struct lconn {
	int fd;
	int stan_kind; /* 0: pack each request; 1: ASCII digits; 2: BCD, patched in place */
	struct pg_buf in;
	uint8_t *frame; /* this connection's request, framed once */
	size_t flen, stan_off;
	uint32_t *stan;	   /* the outstanding requests' STANs */
	uint64_t *sent_ns; /* and when each was sent */
	unsigned head, n;  /* ring: oldest slot, how many outstanding */
};

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void
stan_digits(char out[7], uint64_t v)
{
	v %= 1000000;
	for (int k = 5; k >= 0; k--, v /= 10)
		out[k] = (char)('0' + v % 10);
	out[6] = 0;
}

static int
pack_framed(const struct pg_pos_load_cfg *cfg, struct pg_iso_msg *m, const char *stan,
	    struct pg_buf *body, struct pg_buf *frame)
{
	int rc;

	if (!pg_iso_has(m, 11) || m->len[11] != 6)
		return PG_EINVAL;
	memcpy(m->arena + m->off[11], stan, 6);
	pg_buf_reset(body);
	pg_buf_reset(frame);
	rc = pg_iso_pack(cfg->dialect, m, body);
	if (rc == 0)
		rc = pg_iso_frame_wrap(&cfg->framing, NULL, body->data, body->len, frame);
	return rc;
}

/*
 * Packs the connection's template once and finds where field 11 lands in the
 * frame (by packing two different STANs and comparing), so each request costs
 * a 6-digit patch instead of a full pack: the bytes sent are the same. Any
 * layout where only field 11 does not change that way (a MAC, EBCDIC) keeps
 * the full pack per request.
 */
static int
load_prepare(const struct pg_pos_load_cfg *cfg, struct pg_iso_msg *m, struct lconn *c,
	     struct pg_buf *body, struct pg_buf *frame)
{
	static const uint8_t bcd[3] = {0x12, 0x34, 0x56};
	size_t lo, hi;
	int rc = pack_framed(cfg, m, "654321", body, frame);

	if (rc < 0)
		return rc;
	c->frame = malloc(frame->len);
	if (!c->frame)
		return PG_ENOMEM;
	memcpy(c->frame, frame->data, frame->len);
	c->flen = frame->len;
	rc = pack_framed(cfg, m, "123456", body, frame);
	if (rc < 0 || frame->len != c->flen)
		return rc;
	for (lo = 0; lo < c->flen && frame->data[lo] == c->frame[lo]; lo++)
		;
	for (hi = c->flen; hi > lo && frame->data[hi - 1] == c->frame[hi - 1]; hi--)
		;
	c->stan_off = lo;
	if (hi - lo == 6 && memcmp(frame->data + lo, "123456", 6) == 0)
		c->stan_kind = 1;
	else if (hi - lo == 3 && memcmp(frame->data + lo, bcd, 3) == 0)
		c->stan_kind = 2;
	return 0;
}

/* One load run: its connections, scratch buffers, latencies and counters. */
struct load_run {
	const struct pg_pos_load_cfg *cfg;
	struct pg_pos_load_stats *st;
	struct lconn *cs;
	struct pg_iso_msg *m; /* the last answer */
	struct pg_buf body, frame;
	struct pg_buf out; /* the requests of one write */
	uint32_t *lat;	   /* microseconds per answer, up to maxlat of them */
	size_t nlat, maxlat;
	uint64_t counter, end; /* the next STAN; when to stop sending (monotonic ns) */
	unsigned inflight;     /* requests outstanding per connection */
	int live;	       /* connections still open */
};

/* Closes connection c (counted an error when error is set). */
static void
load_drop(struct load_run *r, struct lconn *c, int error)
{
	if (error)
		r->st->errors++;
	close(c->fd);
	c->fd = -1;
	c->n = 0;
	r->live--;
}

/* Appends connection c's next request to r->out and notes it outstanding. */
static int
load_queue(struct load_run *r, struct lconn *c, struct pg_iso_msg *m, uint64_t now)
{
	unsigned slot = (c->head + c->n) % r->inflight;
	char stan[7];
	int rc;

	stan_digits(stan, r->counter);
	c->stan[slot] = (uint32_t)(r->counter % 1000000);
	c->sent_ns[slot] = now;
	r->counter++;
	if (c->stan_kind) {
		uint8_t *f = c->frame + c->stan_off;

		if (c->stan_kind == 1)
			memcpy(f, stan, 6);
		else
			for (int k = 0; k < 3; k++)
				f[k] =
				    (uint8_t)((stan[2 * k] - '0') << 4 | (stan[2 * k + 1] - '0'));
		rc = pg_buf_append(&r->out, c->frame, c->flen);
	} else {
		/* templates carry a 6-digit field 11; it is rewritten in place */
		rc = pack_framed(r->cfg, m, stan, &r->body, &r->frame);
		if (rc == 0)
			rc = pg_buf_append(&r->out, r->frame.data, r->frame.len);
	}
	if (rc == 0)
		c->n++;
	return rc;
}

/*
 * Tops connection i up to `inflight` outstanding requests, all in one
 * write; drops the connection when that fails.
 */
static void
load_fill(struct load_run *r, int i, uint64_t now)
{
	const struct pg_pos_load_cfg *cfg = r->cfg;
	struct lconn *c = &r->cs[i];
	unsigned before = c->n;
	const uint8_t *p;
	size_t left;

	pg_buf_reset(&r->out);
	while (c->n < r->inflight)
		if (load_queue(r, c, cfg->templates[i % cfg->ntemplates], now) < 0) {
			load_drop(r, c, 1);
			return;
		}
	p = r->out.data;
	left = r->out.len;
	while (left) { /* a blocking socket: send returns short only on a signal */
		ssize_t w = send(c->fd, p, left, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			load_drop(r, c, 1);
			return;
		}
		p += w;
		left -= (size_t)w;
	}
	r->st->sent += c->n - before;
}

/* One line per answer: terminal|STAN|response code|decision. */
static void
load_log(const struct pg_pos_load_cfg *cfg, const struct pg_iso_msg *m)
{
	char tid[16] = "-", stan[8] = "-", rcode[4] = "-", dec[32] = "-";

	pg_iso_get_str(cfg->dialect, m, 41, tid, sizeof(tid));
	pg_iso_get_str(cfg->dialect, m, 11, stan, sizeof(stan));
	pg_iso_get_str(cfg->dialect, m, 39, rcode, sizeof(rcode));
	pg_iso_get_str(cfg->dialect, m, 44, dec, sizeof(dec));
	fprintf(cfg->log, "%s|%s|%s|%s\n", tid, stan, rcode, dec);
}

/*
 * One answer of connection c (in r->m): it must carry the STAN of the
 * oldest outstanding request (an answer without field 11, a format error,
 * is matched by order). Returns 0, or -1 when it belongs to no request: the
 * server dropped, reordered or invented one, and the connection is dropped.
 */
static int
load_answer(struct load_run *r, struct lconn *c, uint64_t now)
{
	char stan[8], want[7];

	if (!c->n) {
		r->st->mismatched++;
		return -1;
	}
	stan_digits(want, c->stan[c->head]);
	if (pg_iso_has(r->m, 11) &&
	    (pg_iso_get_str(r->cfg->dialect, r->m, 11, stan, sizeof(stan)) < 0 ||
	     strcmp(stan, want) != 0)) {
		r->st->mismatched++;
		return -1;
	}
	if (r->nlat < r->maxlat)
		r->lat[r->nlat++] = (uint32_t)((now - c->sent_ns[c->head]) / 1000);
	c->head = (c->head + 1) % r->inflight;
	c->n--;
	r->st->answered++;
	if (r->cfg->log)
		load_log(r->cfg, r->m);
	return 0;
}

/*
 * Connection i is readable: one read takes every answer that arrived,
 * each is matched to its request, then the connection is topped up with
 * one write (or, past the end, closed once nothing is outstanding).
 */
static void
load_readable(struct load_run *r, int i)
{
	const struct pg_pos_load_cfg *cfg = r->cfg;
	struct lconn *c = &r->cs[i];
	size_t hdr, blen, pos = 0;
	uint64_t now;
	ssize_t n;
	int rc;

	if (c->fd < 0)
		return;
	if (pg_buf_reserve(&c->in, 16384) < 0)
		n = -1;
	else
		n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
	if (n <= 0) {
		if (!(n < 0 && errno == EINTR))
			load_drop(r, c, 1);
		return;
	}
	c->in.len += (size_t)n;
	now = pg_mono_ns();
	for (;;) {
		rc = pg_iso_frame_find(&cfg->framing, c->in.data + pos, c->in.len - pos,
				       PG_ISO_MAX_MSG, &hdr, &blen);
		if (rc == 0)
			break;
		if (rc == 1)
			rc = pg_iso_unpack(cfg->dialect, c->in.data + pos + hdr, blen, r->m);
		if (rc < 0 || load_answer(r, c, now) < 0) {
			load_drop(r, c, 1);
			return;
		}
		pos += hdr + blen;
	}
	pg_buf_consume(&c->in, pos);
	if (cfg->log && pos)
		fflush(cfg->log); /* the log grows as answers arrive (tests read it meanwhile) */
	if (now < r->end)
		load_fill(r, i, now);
	else if (!c->n)
		load_drop(r, c, 0);
}

/* Opens every connection and prepares its request; 0 or a negative PG_E code. */
static int
load_connect(struct load_run *r, int ep)
{
	const struct pg_pos_load_cfg *cfg = r->cfg;

	for (int i = 0; i < cfg->conns; i++) {
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
		struct lconn *c = &r->cs[i];
		int fd = tcp_connect(cfg->host, cfg->port), rc;

		if (fd < 0)
			return fd;
		c->fd = fd;
		r->live++;
		pg_buf_init(&c->in, (size_t)1 << 24);
		c->stan = malloc(r->inflight * sizeof(*c->stan));
		c->sent_ns = malloc(r->inflight * sizeof(*c->sent_ns));
		if (!c->stan || !c->sent_ns)
			return PG_ENOMEM;
		rc = load_prepare(cfg, cfg->templates[i % cfg->ntemplates], c, &r->body, &r->frame);
		if (rc < 0)
			return rc;
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	}
	return 0;
}

/* The run's rate and latency percentiles (sorts the latencies). */
static void
load_figures(struct load_run *r, uint64_t t0)
{
	struct pg_pos_load_stats *st = r->st;

	st->seconds = (double)(pg_mono_ns() - t0) / 1e9;
	st->tps = st->seconds > 0 ? (double)st->answered / st->seconds : 0;
	if (r->nlat) {
		qsort(r->lat, r->nlat, sizeof(*r->lat), cmp_u32);
		st->p50_us = r->lat[r->nlat / 2];
		st->p99_us = r->lat[(size_t)((double)r->nlat * 0.99)];
		st->max_us = r->lat[r->nlat - 1];
	}
}

static void
load_free(struct load_run *r)
{
	for (int i = 0; r->cs && i < r->cfg->conns; i++) {
		if (r->cs[i].fd > 0)
			close(r->cs[i].fd);
		pg_buf_release(&r->cs[i].in);
		free(r->cs[i].frame);
		free(r->cs[i].stan);
		free(r->cs[i].sent_ns);
	}
	pg_buf_release(&r->body);
	pg_buf_release(&r->frame);
	pg_buf_release(&r->out);
	free(r->cs);
	free(r->m);
	free(r->lat);
}

int
pg_pos_load(const struct pg_pos_load_cfg *cfg, struct pg_pos_load_stats *st)
{
	struct load_run r = {.cfg = cfg,
			     .st = st,
			     .cs = calloc((size_t)(cfg->conns > 0 ? cfg->conns : 1), sizeof(*r.cs)),
			     .m = malloc(sizeof(*r.m)),
			     .body = PG_BUF_INIT(PG_ISO_ARENA),
			     .frame = PG_BUF_INIT(PG_ISO_ARENA),
			     .out = PG_BUF_INIT((size_t)-1),
			     .maxlat = 1u << 23,
			     .counter = cfg->stan_base,
			     .inflight = cfg->inflight > 1 ? (unsigned)cfg->inflight : 1};
	uint64_t t0;
	int ep = epoll_create1(EPOLL_CLOEXEC), rc = 0;
	struct epoll_event evs[256];

	r.lat = malloc(r.maxlat * sizeof(*r.lat));
	memset(st, 0, sizeof(*st));
	for (int i = 0; r.cs && i < cfg->conns; i++)
		r.cs[i].fd = -1;
	if (!r.cs || !r.m || !r.lat || ep < 0 || cfg->ntemplates < 1) {
		rc = PG_ENOMEM;
		goto out;
	}
	rc = load_connect(&r, ep);
	if (rc < 0)
		goto out;
	t0 = pg_mono_ns();
	r.end = t0 + (uint64_t)cfg->duration_ms * 1000000ull;
	for (int i = 0; i < cfg->conns; i++)
		load_fill(&r, i, pg_mono_ns());
	while (r.live > 0) {
		int n = epoll_wait(ep, evs, 256, 1000);

		if (n == 0 && pg_mono_ns() > r.end + 5000000000ull)
			break; /* five seconds past the end with answers outstanding */
		for (int k = 0; k < n; k++)
			load_readable(&r, (int)evs[k].data.u32);
	}
	load_figures(&r, t0);
	if (cfg->log)
		fflush(cfg->log);
out:
	if (ep >= 0)
		close(ep);
	load_free(&r);
	return rc;
}
