/*
 * Byte streams for the SE link drivers: the in-process memory pair, packets
 * over file descriptors, and the seeded fault injector (see payguard/stream.h).
 */
#include "payguard/stream.h"
#include "payguard/buf.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int
pg_stream_read_full(struct pg_stream *s, uint8_t *p, size_t n, int timeout_ms)
{
	size_t got = 0;

	while (got < n) {
		int r = s->ops->read(s, p + got, n - got, timeout_ms);

		if (r < 0)
			return r;
		got += (size_t)r;
	}
	return 0;
}

void
pg_stream_flush(struct pg_stream *s)
{
	if (s && s->ops->flush)
		s->ops->flush(s);
}

void
pg_stream_free(struct pg_stream *s)
{
	if (s)
		s->ops->destroy(s);
}

/* ---- memory pair ---- */

struct mem_host;

/* The card end: its writes land in the host's queue. */
struct mem_card_end {
	struct pg_stream base;
	struct mem_host *host;
};

struct mem_host {
	struct pg_stream base;
	struct mem_card_end card_end;
	struct pg_stream *card_out; /* what the handler writes to (card_end or a wrapper) */
	pg_packet_fn card;
	void *card_ctx;
	void (*card_free)(void *);
	struct pg_buf inq; /* bytes for the host to read */
	size_t inq_off;
	int depth; /* guards against a handler that writes back into the host */
	/*
	 * Virtual time (ms): a read that times out advances it by its timeout;
	 * bytes the card delayed (pg_stream_memory_delay) are readable from
	 * ready_at on, so a host that waits long enough advances to it.
	 */
	uint64_t now, ready_at;
};

static int
mem_host_write(struct pg_stream *s, int type, const uint8_t *p, size_t n)
{
	struct mem_host *h = (struct mem_host *)s;
	int rc;

	if (n > PG_STREAM_MAX_PACKET)
		return PG_ETOOBIG;
	if (h->depth)
		return pg_error(PG_ESTATE, "stream", "re-entrant write on a memory pair");
	h->depth++;
	rc = h->card(h->card_ctx, type, p, n, h->card_out);
	h->depth--;
	/* A card that fails to answer is mute, as on a wire: the host times out. */
	if (rc < 0)
		pg_trace("stream", "card handler: %s", pg_strerror(rc));
	return 0;
}

static int
mem_host_read(struct pg_stream *s, uint8_t *p, size_t n, int timeout_ms)
{
	struct mem_host *h = (struct mem_host *)s;
	size_t avail = h->inq.len - h->inq_off;

	if (avail == 0 || (timeout_ms >= 0 && h->ready_at > h->now + (uint64_t)timeout_ms)) {
		if (timeout_ms > 0)
			h->now += (uint64_t)timeout_ms;
		return PG_ETIMEDOUT;
	}
	if (h->ready_at > h->now)
		h->now = h->ready_at;
	if (n > avail)
		n = avail;
	memcpy(p, h->inq.data + h->inq_off, n);
	h->inq_off += n;
	if (h->inq_off == h->inq.len) {
		h->inq.len = 0;
		h->inq_off = 0;
	}
	return (int)n;
}

static void
mem_host_flush(struct pg_stream *s)
{
	struct mem_host *h = (struct mem_host *)s;

	h->inq.len = 0;
	h->inq_off = 0;
	h->ready_at = 0;
}

static void
mem_host_destroy(struct pg_stream *s)
{
	struct mem_host *h = (struct mem_host *)s;

	if (h->card_out && h->card_out != &h->card_end.base)
		pg_stream_free(h->card_out);
	if (h->card_free)
		h->card_free(h->card_ctx);
	pg_buf_release(&h->inq);
	free(h);
}

static int
mem_card_write(struct pg_stream *s, int type, const uint8_t *p, size_t n)
{
	struct mem_host *h = ((struct mem_card_end *)s)->host;

	if (type != PG_PKT_DATA)
		return 0; /* line events only flow host -> card */
	if (h->inq_off && h->inq_off == h->inq.len) {
		h->inq.len = 0;
		h->inq_off = 0;
	}
	return pg_buf_append(&h->inq, p, n);
}

static int
mem_card_read(struct pg_stream *s, uint8_t *p, size_t n, int timeout_ms)
{
	(void)s, (void)p, (void)n, (void)timeout_ms;
	return pg_error(PG_ENOTSUP, "stream", "the card end of a memory pair is push-driven");
}

static void
mem_card_destroy(struct pg_stream *s)
{
	(void)s; /* owned by the pair */
}

static const struct pg_stream_ops mem_host_ops = {
    .write = mem_host_write,
    .read = mem_host_read,
    .flush = mem_host_flush,
    .destroy = mem_host_destroy,
};
static const struct pg_stream_ops mem_card_ops = {
    .write = mem_card_write,
    .read = mem_card_read,
    .destroy = mem_card_destroy,
};

int
pg_stream_memory_pair(struct pg_stream **host, pg_packet_fn card, void *card_ctx,
		      void (*card_free)(void *))
{
	struct mem_host *h = calloc(1, sizeof(*h));

	*host = NULL;
	if (!h)
		return PG_ENOMEM;
	h->base.ops = &mem_host_ops;
	h->card_end.base.ops = &mem_card_ops;
	h->card_end.host = h;
	h->card_out = &h->card_end.base;
	h->card = card;
	h->card_ctx = card_ctx;
	h->card_free = card_free;
	/* Up to a few responses queued; generous for extended-length APDUs. */
	pg_buf_init(&h->inq, 4u * 1024 * 1024);
	*host = &h->base;
	return 0;
}

void
pg_stream_memory_set_card_out(struct pg_stream *host, struct pg_stream *card_out)
{
	struct mem_host *h = (struct mem_host *)host;

	if (h->card_out && h->card_out != &h->card_end.base)
		pg_stream_free(h->card_out);
	h->card_out = card_out ? card_out : &h->card_end.base;
}

struct pg_stream *
pg_stream_memory_card_end(struct pg_stream *host)
{
	return &((struct mem_host *)host)->card_end.base;
}

static struct mem_host *
mem_of(struct pg_stream *s)
{
	if (s && s->ops == &mem_host_ops)
		return (struct mem_host *)s;
	if (s && s->ops == &mem_card_ops)
		return ((struct mem_card_end *)s)->host;
	return NULL;
}

int
pg_stream_memory_delay(struct pg_stream *s, uint32_t ms)
{
	struct mem_host *h = mem_of(s);

	if (!h)
		return pg_error(PG_EINVAL, "stream", "virtual time needs a memory pair");
	h->ready_at = h->now + ms;
	return 0;
}

uint64_t
pg_stream_memory_now(struct pg_stream *s)
{
	struct mem_host *h = mem_of(s);

	return h ? h->now : 0;
}

/* ---- packets over file descriptors ---- */

struct fd_stream {
	struct pg_stream base;
	int rfd, wfd;
	uint8_t hdr[3];
	size_t hdr_got;	  /* bytes of the current packet header read */
	size_t remaining; /* payload bytes of the current DATA packet not yet read */
	size_t skip;	  /* payload bytes of a non-DATA packet to discard */
};

static int
write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == ENOTSOCK)
			w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EPIPE || errno == ECONNRESET)
				return PG_ECLOSED;
			return pg_error(PG_EIO, "stream", "write: %s", strerror(errno));
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
fd_write(struct pg_stream *s, int type, const uint8_t *p, size_t n)
{
	struct fd_stream *f = (struct fd_stream *)s;
	uint8_t hdr[3];
	struct iovec iov[2];
	struct msghdr mh;
	ssize_t w;

	if (n > PG_STREAM_MAX_PACKET)
		return PG_ETOOBIG;
	hdr[0] = (uint8_t)type;
	pg_put_be16(hdr + 1, (uint16_t)n);
	/* One sendmsg per packet keeps packets whole on stream sockets under load. */
	iov[0].iov_base = hdr;
	iov[0].iov_len = 3;
	iov[1].iov_base = (void *)p;
	iov[1].iov_len = n;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = iov;
	mh.msg_iovlen = n ? 2 : 1;
	do
		w = sendmsg(f->wfd, &mh, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	if (w < 0 && errno == ENOTSOCK) {
		int rc = write_all(f->wfd, hdr, 3);

		return rc < 0 ? rc : write_all(f->wfd, p, n);
	}
	if (w < 0)
		return (errno == EPIPE || errno == ECONNRESET)
			   ? PG_ECLOSED
			   : pg_error(PG_EIO, "stream", "send: %s", strerror(errno));
	if ((size_t)w < 3 + n) {
		size_t done = (size_t)w;

		if (done < 3) {
			int rc = write_all(f->wfd, hdr + done, 3 - done);

			if (rc < 0)
				return rc;
			done = 3;
		}
		return write_all(f->wfd, p + (done - 3), n - (done - 3));
	}
	return 0;
}

/* Waits for readability; 0 ready, PG_ETIMEDOUT, PG_EIO. */
static int
wait_readable(int fd, int timeout_ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	int r;

	do
		r = poll(&pfd, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return pg_error(PG_EIO, "stream", "poll: %s", strerror(errno));
	return r == 0 ? PG_ETIMEDOUT : 0;
}

static int
raw_read(int fd, uint8_t *p, size_t n, int timeout_ms)
{
	ssize_t r;
	int rc = wait_readable(fd, timeout_ms);

	if (rc < 0)
		return rc;
	do
		r = read(fd, p, n);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno == ECONNRESET
			   ? PG_ECLOSED
			   : pg_error(PG_EIO, "stream", "read: %s", strerror(errno));
	if (r == 0)
		return PG_ECLOSED;
	return (int)r;
}

static int
fd_read(struct pg_stream *s, uint8_t *p, size_t n, int timeout_ms)
{
	struct fd_stream *f = (struct fd_stream *)s;

	for (;;) {
		int r;

		if (f->remaining) {
			r = raw_read(f->rfd, p, n < f->remaining ? n : f->remaining, timeout_ms);
			if (r > 0)
				f->remaining -= (size_t)r;
			return r;
		}
		if (f->skip) {
			uint8_t junk[256];

			r = raw_read(f->rfd, junk, f->skip < sizeof(junk) ? f->skip : sizeof(junk),
				     timeout_ms);
			if (r < 0)
				return r;
			f->skip -= (size_t)r;
			continue;
		}
		r = raw_read(f->rfd, f->hdr + f->hdr_got, 3 - f->hdr_got, timeout_ms);
		if (r < 0)
			return r;
		f->hdr_got += (size_t)r;
		if (f->hdr_got < 3)
			continue;
		f->hdr_got = 0;
		if (f->hdr[0] == PG_PKT_DATA)
			f->remaining = pg_be16(f->hdr + 1);
		else
			f->skip = pg_be16(f->hdr + 1);
	}
}

static void
fd_flush(struct pg_stream *s)
{
	struct fd_stream *f = (struct fd_stream *)s;
	uint8_t junk[4096];

	/* Drain what has already arrived without waiting for more. */
	while (f->remaining || f->skip || wait_readable(f->rfd, 0) == 0) {
		int r = fd_read(s, junk, sizeof(junk), 0);

		if (r < 0)
			break;
	}
}

static void
fd_destroy(struct pg_stream *s)
{
	struct fd_stream *f = (struct fd_stream *)s;

	if (f->rfd >= 0)
		close(f->rfd);
	if (f->wfd >= 0 && f->wfd != f->rfd)
		close(f->wfd);
	free(f);
}

static const struct pg_stream_ops fd_ops = {
    .write = fd_write,
    .read = fd_read,
    .flush = fd_flush,
    .destroy = fd_destroy,
};

int
pg_stream_fd(struct pg_stream **out, int rfd, int wfd)
{
	struct fd_stream *f = calloc(1, sizeof(*f));

	*out = NULL;
	if (!f)
		return PG_ENOMEM;
	f->base.ops = &fd_ops;
	f->rfd = rfd;
	f->wfd = wfd;
	*out = &f->base;
	return 0;
}

/* Parses "unix:/p", "/p", "tcp:host:port" into a sockaddr. */
static int
parse_addr(const char *addr, struct sockaddr_storage *ss, socklen_t *len, int *family)
{
	memset(ss, 0, sizeof(*ss));
	if (strncmp(addr, "unix:", 5) == 0 || addr[0] == '/' || addr[0] == '.') {
		struct sockaddr_un *un = (struct sockaddr_un *)ss;
		const char *path = strncmp(addr, "unix:", 5) == 0 ? addr + 5 : addr;

		if (strlen(path) >= sizeof(un->sun_path))
			return pg_error(PG_EINVAL, "stream", "socket path too long: '%s'", path);
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, path);
		*len = sizeof(*un);
		*family = AF_UNIX;
		return 0;
	}
	if (strncmp(addr, "tcp:", 4) == 0) {
		char host[256];
		const char *colon = strrchr(addr + 4, ':');
		struct addrinfo hints = {0}, *res = NULL;
		size_t hl;
		int rc;

		if (!colon)
			return pg_error(PG_EINVAL, "stream", "expected tcp:HOST:PORT, got '%s'",
					addr);
		hl = (size_t)(colon - (addr + 4));
		if (hl == 0 || hl >= sizeof(host))
			return pg_error(PG_EINVAL, "stream", "bad host in '%s'", addr);
		memcpy(host, addr + 4, hl);
		host[hl] = '\0';
		hints.ai_socktype = SOCK_STREAM;
		rc = getaddrinfo(host, colon + 1, &hints, &res);
		if (rc != 0 || !res)
			return pg_error(PG_EINVAL, "stream", "cannot resolve '%s': %s", addr,
					gai_strerror(rc));
		memcpy(ss, res->ai_addr, res->ai_addrlen);
		*len = res->ai_addrlen;
		*family = res->ai_family;
		freeaddrinfo(res);
		return 0;
	}
	return pg_error(PG_EINVAL, "stream",
			"unknown address '%s' (want unix:PATH or tcp:HOST:PORT)", addr);
}

int
pg_stream_connect(struct pg_stream **out, const char *addr, int timeout_ms)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int family, fd, rc, one = 1;
	uint64_t waited = 0;

	*out = NULL;
	rc = parse_addr(addr, &ss, &len, &family);
	if (rc < 0)
		return rc;
	for (;;) {
		fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return pg_error(PG_ESYS, "stream", "socket: %s", strerror(errno));
		if (connect(fd, (struct sockaddr *)&ss, len) == 0)
			break;
		rc = errno;
		close(fd);
		/* The server may still be starting: retry refused connects until the timeout. */
		if ((rc != ECONNREFUSED && rc != ENOENT) || (int)waited >= timeout_ms)
			return pg_error(PG_ECLOSED, "stream", "cannot connect to '%s': %s", addr,
					strerror(rc));
		usleep(20000);
		waited += 20;
	}
	if (family != AF_UNIX)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	rc = pg_stream_fd(out, fd, fd);
	if (rc < 0)
		close(fd);
	return rc;
}

int
pg_stream_listen(const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int family, fd, rc, one = 1;

	rc = parse_addr(addr, &ss, &len, &family);
	if (rc < 0)
		return rc;
	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return pg_error(PG_ESYS, "stream", "socket: %s", strerror(errno));
	if (family == AF_UNIX)
		unlink(((struct sockaddr_un *)&ss)->sun_path);
	else
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 64) < 0) {
		rc =
		    pg_error(PG_ESYS, "stream", "cannot listen on '%s': %s", addr, strerror(errno));
		close(fd);
		return rc;
	}
	return fd;
}

int
pg_stream_serve_fd(int fd, pg_packet_fn fn, void *ctx)
{
	struct pg_stream *s = NULL;
	uint8_t *buf;
	int rc;

	buf = malloc(PG_STREAM_MAX_PACKET);
	if (!buf)
		return PG_ENOMEM;
	rc = pg_stream_fd(&s, fd, fd);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	for (;;) {
		struct fd_stream *f = (struct fd_stream *)s;
		uint8_t hdr[3];
		size_t n;

		/* Read packet headers directly: the card side must see line events. */
		rc = 0;
		for (size_t got = 0; got < 3;) {
			int r = raw_read(f->rfd, hdr + got, 3 - got, -1);

			if (r < 0) {
				rc = r;
				break;
			}
			got += (size_t)r;
		}
		if (rc < 0)
			break;
		n = pg_be16(hdr + 1);
		for (size_t got = 0; got < n;) {
			int r = raw_read(f->rfd, buf + got, n - got, -1);

			if (r < 0) {
				rc = r;
				break;
			}
			got += (size_t)r;
		}
		if (rc < 0)
			break;
		rc = fn(ctx, hdr[0], buf, n, s);
		if (rc < 0)
			pg_debug("stream", "card handler: %s", pg_strerror(rc));
		rc = 0;
	}
	pg_stream_free(s);
	free(buf);
	return rc == PG_ECLOSED ? 0 : rc;
}

/* ---- fault injector ---- */

struct faulty {
	struct pg_stream base;
	struct pg_stream *inner;
	int owns;
	uint32_t drop_ppm, corrupt_ppm;
	uint64_t rng;
	struct pg_fault_stats st;
	uint8_t *scratch;
};

static uint64_t
xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static int
faulty_write(struct pg_stream *s, int type, const uint8_t *p, size_t n)
{
	struct faulty *f = (struct faulty *)s;
	uint32_t r;

	if (type != PG_PKT_DATA || n == 0)
		return f->inner->ops->write(f->inner, type, p, n);
	f->st.packets++;
	r = (uint32_t)(xorshift(&f->rng) % 1000000u);
	if (r < f->drop_ppm) {
		f->st.dropped++;
		return 0;
	}
	if (r < f->drop_ppm + f->corrupt_ppm) {
		uint64_t bit = xorshift(&f->rng) % (n * 8);

		f->st.corrupted++;
		memcpy(f->scratch, p, n);
		f->scratch[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		return f->inner->ops->write(f->inner, type, f->scratch, n);
	}
	return f->inner->ops->write(f->inner, type, p, n);
}

static int
faulty_read(struct pg_stream *s, uint8_t *p, size_t n, int timeout_ms)
{
	struct faulty *f = (struct faulty *)s;

	return f->inner->ops->read(f->inner, p, n, timeout_ms);
}

static void
faulty_flush(struct pg_stream *s)
{
	pg_stream_flush(((struct faulty *)s)->inner);
}

static void
faulty_destroy(struct pg_stream *s)
{
	struct faulty *f = (struct faulty *)s;

	if (f->owns)
		pg_stream_free(f->inner);
	free(f->scratch);
	free(f);
}

static const struct pg_stream_ops faulty_ops = {
    .write = faulty_write,
    .read = faulty_read,
    .flush = faulty_flush,
    .destroy = faulty_destroy,
};

static int
faulty_new(struct pg_stream **out, struct pg_stream *inner, uint32_t drop_ppm, uint32_t corrupt_ppm,
	   uint64_t seed, int owns)
{
	struct faulty *f = calloc(1, sizeof(*f));

	*out = NULL;
	if (!f || !(f->scratch = malloc(PG_STREAM_MAX_PACKET))) {
		free(f);
		return PG_ENOMEM;
	}
	f->base.ops = &faulty_ops;
	f->inner = inner;
	f->owns = owns;
	f->drop_ppm = drop_ppm;
	f->corrupt_ppm = corrupt_ppm;
	f->rng = seed ? seed : 0x9E3779B97F4A7C15ull;
	*out = &f->base;
	return 0;
}

int
pg_stream_faulty(struct pg_stream **out, struct pg_stream *inner, uint32_t drop_ppm,
		 uint32_t corrupt_ppm, uint64_t seed)
{
	return faulty_new(out, inner, drop_ppm, corrupt_ppm, seed, 1);
}

int
pg_stream_faulty_borrow(struct pg_stream **out, struct pg_stream *inner, uint32_t drop_ppm,
			uint32_t corrupt_ppm, uint64_t seed)
{
	return faulty_new(out, inner, drop_ppm, corrupt_ppm, seed, 0);
}

void
pg_stream_faulty_stats(struct pg_stream *s, struct pg_fault_stats *st)
{
	*st = ((struct faulty *)s)->st;
}
