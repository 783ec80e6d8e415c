/*
 * vpcd card driver (card role only): answers vsmartcard's virtual reader
 * protocol so a pg_card appears as a card in pcscd's "Virtual PCD" reader.
 * Messages are [length:2 BE][payload]; 1-byte payloads are controls
 * (00 power off, 01 power on, 02 reset, 04 get ATR), others are C-APDUs.
 * Over payguard's own fd streams (`se sim --link vpcd --listen`) each stream
 * packet carries one vpcd message payload.
 */
#include "drivers.h"
#include "payguard/buf.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/se_pcsc.h"
#include "vpcd_msg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

void
pgi_vpcd_rx_init(struct pg_vpcd_rx *rx)
{
	rx->hdr_got = 0;
	rx->need = 0;
	rx->got = 0;
}

int
pgi_vpcd_rx_feed(struct pg_vpcd_rx *rx, const uint8_t *p, size_t n, int *done, size_t *msglen)
{
	size_t used = 0;

	*done = 0;
	while (used < n) {
		if (rx->hdr_got < 2) {
			rx->hdr[rx->hdr_got++] = p[used++];
			if (rx->hdr_got == 2) {
				rx->need = pg_be16(rx->hdr);
				rx->got = 0;
				if (rx->need == 0 || rx->need > PG_VPCD_MAX_MSG) {
					pgi_vpcd_rx_init(rx);
					return pg_error(PG_EPROTO, "vpcd",
							"message length %u not allowed",
							(unsigned)pg_be16(rx->hdr));
				}
			}
			continue;
		}
		size_t take = rx->need - rx->got;

		if (take > n - used)
			take = n - used;
		memcpy(rx->msg + rx->got, p + used, take);
		rx->got += take;
		used += take;
		if (rx->got == rx->need) {
			*done = 1;
			*msglen = rx->need;
			rx->hdr_got = 0;
			break;
		}
	}
	return (int)used;
}

struct vpcd_card {
	struct pg_link_card base;
	const struct pg_card *card;
	int powered;
	uint8_t r[PG_APDU_MAX_R];
};

static int
vpcd_card_open(struct pg_link_card **out, const struct pg_card *card,
	       const struct pg_link_params *p)
{
	struct vpcd_card *c = calloc(1, sizeof(*c));

	(void)p;
	*out = NULL;
	if (!c)
		return PG_ENOMEM;
	c->base.ops = &pgi_link_vpcd_ops;
	c->card = card;
	*out = &c->base;
	return 0;
}

static int
send_atr(struct vpcd_card *c, struct pg_stream *out)
{
	uint8_t atr[PG_ATR_MAX];
	size_t n = sizeof(atr);
	int rc = c->card->atr(c->card->ctx, atr, &n);

	return rc < 0 ? rc : pg_stream_write(out, atr, n);
}

static void
card_reset(struct vpcd_card *c)
{
	if (c->card->reset)
		c->card->reset(c->card->ctx);
}

static int
vpcd_card_packet(struct pg_link_card *lc, int type, const uint8_t *data, size_t n,
		 struct pg_stream *out)
{
	struct vpcd_card *c = (struct vpcd_card *)lc;
	/* vpcd's 2-byte length caps an answer at 65535 bytes: a card asked for more says 6700. */
	size_t rlen = PG_VPCD_MAX_ANSWER;
	int rc;

	/* Line events of payguard's own streams map onto vpcd's controls. */
	if (type == PG_PKT_RESET) {
		card_reset(c);
		c->powered = 1;
		return send_atr(c, out);
	}
	if (type == PG_PKT_POWER_OFF) {
		card_reset(c);
		c->powered = 0;
		return 0;
	}
	if (type != PG_PKT_DATA || n == 0)
		return pg_error(PG_EPROTO, "vpcd", "unexpected packet type %d (%zu bytes)", type,
				n);
	if (n == 1) {
		switch (data[0]) {
		case PG_VPCD_CTRL_OFF:
			card_reset(c);
			c->powered = 0;
			return 0;
		case PG_VPCD_CTRL_ON:
		case PG_VPCD_CTRL_RESET:
			/* No answer: vpcd asks for the ATR separately. */
			card_reset(c);
			c->powered = 1;
			return 0;
		case PG_VPCD_CTRL_ATR:
			return send_atr(c, out);
		default:
			return pg_error(PG_EPROTO, "vpcd", "unknown control byte 0x%02x", data[0]);
		}
	}
	/* vpcd only sends APDUs to a powered card; answer anyway, as a card would after ATR. */
	rc = c->card->process(c->card->ctx, data, n, c->r, &rlen);
	if (rc < 0)
		return rc; /* mute card: vpcd times out */
	c->base.apdus++;
	return pg_stream_write(out, c->r, rlen);
}

static void
vpcd_card_close(struct pg_link_card *lc)
{
	free(lc);
}

const struct pg_link_ops pgi_link_vpcd_ops = {
    .name = "vpcd",
    .type = PG_LINK_VPCD,
    .max_capdu = PG_VPCD_MAX_MSG,
    .max_rapdu = PG_VPCD_MAX_ANSWER,
    .card_open = vpcd_card_open,
    .card_packet = vpcd_card_packet,
    .card_close = vpcd_card_close,
};

/* ---- the TCP client towards vpcd: raw [len][payload] framing ---- */

/* A write-only stream that frames each packet the vpcd way on a socket. */
struct vpcd_out {
	struct pg_stream base;
	int fd;
};

static int
send_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno == EPIPE || errno == ECONNRESET
				   ? PG_ECLOSED
				   : pg_error(PG_EIO, "vpcd", "send: %s", strerror(errno));
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
vpcd_out_write(struct pg_stream *s, int type, const uint8_t *p, size_t n)
{
	struct vpcd_out *o = (struct vpcd_out *)s;
	uint8_t hdr[2];
	struct iovec iov[2];
	struct msghdr mh;
	ssize_t w;

	if (type != PG_PKT_DATA)
		return 0;
	if (n == 0 || n > 0xFFFF)
		return pg_error(PG_ETOOBIG, "vpcd", "answer of %zu bytes", n);
	hdr[0] = (uint8_t)(n >> 8);
	hdr[1] = (uint8_t)n;
	/* Length and payload in one segment: two small writes would meet Nagle on the way. */
	iov[0].iov_base = hdr;
	iov[0].iov_len = 2;
	iov[1].iov_base = (void *)p;
	iov[1].iov_len = n;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = iov;
	mh.msg_iovlen = 2;
	do
		w = sendmsg(o->fd, &mh, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		return errno == EPIPE || errno == ECONNRESET
			   ? PG_ECLOSED
			   : pg_error(PG_EIO, "vpcd", "send: %s", strerror(errno));
	if ((size_t)w < 2) {
		int rc = send_all(o->fd, hdr + w, 2 - (size_t)w);

		return rc < 0 ? rc : send_all(o->fd, p, n);
	}
	return (size_t)w < 2 + n ? send_all(o->fd, p + (w - 2), n - (size_t)(w - 2)) : 0;
}

static int
vpcd_out_read(struct pg_stream *s, uint8_t *p, size_t n, int timeout_ms)
{
	(void)s, (void)p, (void)n, (void)timeout_ms;
	return PG_ENOTSUP;
}

static void
vpcd_out_destroy(struct pg_stream *s)
{
	(void)s;
}

static const struct pg_stream_ops vpcd_out_ops = {
    .write = vpcd_out_write,
    .read = vpcd_out_read,
    .destroy = vpcd_out_destroy,
};

/* TCP connect to "tcp:HOST:PORT" (or "HOST:PORT"), retrying while refused. Returns the fd. */
static int
vpcd_connect(const char *addr, int timeout_ms)
{
	char host[256];
	const char *a = strncmp(addr, "tcp:", 4) == 0 ? addr + 4 : addr;
	const char *colon = strrchr(a, ':');
	struct addrinfo hints = {0}, *res = NULL;
	int fd = -1, rc, waited = 0, one = 1;

	if (!colon || colon == a || (size_t)(colon - a) >= sizeof(host))
		return pg_error(PG_EINVAL, "vpcd", "expected tcp:HOST:PORT, got '%s'", addr);
	memcpy(host, a, (size_t)(colon - a));
	host[colon - a] = '\0';
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc != 0 || !res)
		return pg_error(PG_EINVAL, "vpcd", "cannot resolve '%s': %s", addr,
				gai_strerror(rc));
	for (;;) {
		fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			rc = pg_error(PG_ESYS, "vpcd", "socket: %s", strerror(errno));
			break;
		}
		if (connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			rc = fd;
			break;
		}
		rc = errno;
		close(fd);
		fd = -1;
		/* pcscd loads the vpcd driver when it starts: wait for its port to open. */
		if (rc != ECONNREFUSED || waited >= timeout_ms) {
			rc = pg_error(PG_ELINK, "vpcd", "cannot connect to vpcd at '%s': %s", addr,
				      strerror(rc));
			break;
		}
		usleep(50000);
		waited += 50;
	}
	freeaddrinfo(res);
	return rc;
}

int
pg_vpcd_serve(const char *addr, const struct pg_card *card, int connect_timeout_ms, const int *stop)
{
	struct pg_link_card *lc = NULL;
	struct pg_vpcd_rx *rx = NULL;
	struct vpcd_out out = {.base.ops = &vpcd_out_ops, .fd = -1};
	uint8_t buf[4096];
	int rc, fd = -1, one = 1;

	rx = malloc(sizeof(*rx));
	if (!rx)
		return PG_ENOMEM;
	pgi_vpcd_rx_init(rx);
	PG_TRY_GOTO(vpcd_card_open(&lc, card, NULL), out, "vpcd", "card role");
	PG_TRY_GOTO(vpcd_connect(addr, connect_timeout_ms), out, "vpcd", "connect");
	fd = rc;
	out.fd = fd;
	pg_info("vpcd", "card connected to vpcd at %s", addr);
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t r;
		size_t off = 0;

		if (stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE)) {
			rc = 0;
			goto out;
		}
		if (poll(&pfd, 1, 100) == 0)
			continue;
		r = recv(fd, buf, sizeof(buf), 0);
		/*
		 * vpcd writes a message's length and its payload in two sends; with
		 * Nagle on its side the payload waits for our ACK of the length, and
		 * a delayed ACK costs 40 ms per APDU. Acknowledge at once instead.
		 */
		setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = errno == ECONNRESET
				 ? 0
				 : pg_error(PG_EIO, "vpcd", "recv: %s", strerror(errno));
			goto out;
		}
		if (r == 0) {
			pg_info("vpcd", "vpcd closed the connection");
			rc = 0;
			goto out;
		}
		while (off < (size_t)r) {
			int done;
			size_t mlen;
			int used = pgi_vpcd_rx_feed(rx, buf + off, (size_t)r - off, &done, &mlen);

			if (used < 0) {
				rc = used;
				goto out;
			}
			off += (size_t)used;
			if (!done)
				continue;
			rc = vpcd_card_packet(lc, PG_PKT_DATA, rx->msg, mlen, &out.base);
			if (rc == PG_ECLOSED)
				goto out;
			if (rc < 0)
				pg_warn("vpcd", "message of %zu bytes: %s", mlen,
					pg_last_error()[0] ? pg_last_error() : pg_strerror(rc));
		}
	}
out:
	if (fd >= 0)
		close(fd);
	vpcd_card_close(lc);
	free(rx);
	return rc == PG_ECLOSED ? 0 : rc;
}
