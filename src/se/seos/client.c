/*
 * The SE OS client library: one request, one response, matched by id, over
 * the daemon's UNIX socket (protocol in proto.h). Server errors come back as
 * their PG_E code with the daemon's message as the detail.
 */
#include "payguard/seos_client.h"

#include "payguard/buf.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "seos/proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define SUBSYS "seos-client"

struct pg_seos_client {
	int fd;
	uint32_t next_id;
	uint8_t buf[PG_SEOS_FRAME_MAX];
	const uint8_t *resp; /* payload of the last response */
	size_t resp_len;
};

/* Sends a request and waits for its response; returns the server's status. */
static int
call(struct pg_seos_client *c, uint8_t op, const void *p1, size_t n1, const void *p2, size_t n2)
{
	uint32_t id = ++c->next_id;
	int32_t st;
	int n, rc;

	rc = pgi_seos_frame_write(c->fd, op, id, 0, 0, p1, n1, p2, n2);
	if (rc < 0)
		return rc;
	n = pgi_seos_frame_read(c->fd, c->buf, sizeof(c->buf));
	if (n < 0)
		return n == PG_ECLOSED ? pg_error(PG_ECLOSED, SUBSYS,
						  "the SE OS daemon closed the "
						  "connection")
				       : n;
	if (n < 9 || c->buf[0] != (op | 0x80) || pg_be32(c->buf + 1) != id)
		return pg_error(PG_EPROTO, SUBSYS, "response does not match the request");
	st = (int32_t)pg_be32(c->buf + 5);
	c->resp = c->buf + 9;
	c->resp_len = (size_t)n - 9;
	if (st < 0) {
		int m = c->resp_len > 400 ? 400 : (int)c->resp_len;

		return pg_error(st, SUBSYS, "%.*s", m, (const char *)c->resp);
	}
	return 0;
}

int
pg_seos_client_connect(struct pg_seos_client **out, const char *sock_path, const char *app_name)
{
	struct sockaddr_un sa;
	struct pg_seos_client *c;
	int rc;

	*out = NULL;
	if (strlen(sock_path) >= sizeof(sa.sun_path))
		return pg_error(PG_EINVAL, SUBSYS, "socket path too long");
	c = calloc(1, sizeof(*c));
	if (!c)
		return PG_ENOMEM;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, sock_path, strlen(sock_path));
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = pg_error(PG_ECLOSED, SUBSYS, "cannot connect to the SE OS at '%s'", sock_path);
		goto fail;
	}
	rc = call(c, PG_SEOS_OP_HELLO, app_name, app_name ? strlen(app_name) : 0, NULL, 0);
	if (rc < 0)
		goto fail;
	*out = c;
	return 0;
fail:
	pg_seos_client_close(c);
	return rc;
}

void
pg_seos_client_close(struct pg_seos_client *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

int
pg_seos_client_whoami(struct pg_seos_client *c, char sha256_hex[65], char sha1_hex[41], char *text,
		      size_t text_cap)
{
	int rc = call(c, PG_SEOS_OP_WHOAMI, NULL, 0, NULL, 0);

	if (rc < 0)
		return rc;
	if (c->resp_len < 52)
		return pg_error(PG_EPROTO, SUBSYS, "short whoami response");
	pg_hex_encode(sha1_hex, c->resp, 20);
	pg_hex_encode(sha256_hex, c->resp + 20, 32);
	if (text && text_cap)
		snprintf(text, text_cap, "%.*s", (int)(c->resp_len - 52), c->resp + 52);
	return 0;
}

int
pg_seos_client_readers(struct pg_seos_client *c, struct pg_seos_reader *out, size_t cap, size_t *n)
{
	const uint8_t *p;
	size_t left, cnt;
	int rc = call(c, PG_SEOS_OP_READERS, NULL, 0, NULL, 0);

	*n = 0;
	if (rc < 0)
		return rc;
	if (c->resp_len < 2)
		return pg_error(PG_EPROTO, SUBSYS, "short readers response");
	cnt = pg_be16(c->resp);
	p = c->resp + 2;
	left = c->resp_len - 2;
	for (size_t i = 0; i < cnt; i++) {
		size_t l;

		if (left < 2 || (l = p[1]) > left - 2 || l >= sizeof(out->name))
			return pg_error(PG_EPROTO, SUBSYS, "bad readers response");
		if (*n < cap) {
			out[*n].state = p[0];
			memcpy(out[*n].name, p + 2, l);
			out[*n].name[l] = '\0';
			(*n)++;
		}
		p += 2 + l;
		left -= 2 + l;
	}
	return 0;
}

static int
handle_resp(struct pg_seos_client *c, uint32_t *h)
{
	if (c->resp_len < 4)
		return pg_error(PG_EPROTO, SUBSYS, "response without a handle");
	*h = pg_be32(c->resp);
	return 0;
}

int
pg_seos_client_open_session(struct pg_seos_client *c, const char *reader, uint32_t *session)
{
	int rc = call(c, PG_SEOS_OP_OPEN_SESSION, reader, strlen(reader), NULL, 0);

	return rc < 0 ? rc : handle_resp(c, session);
}

int
pg_seos_client_open_channel(struct pg_seos_client *c, uint32_t session, int logical,
			    const uint8_t *aid, size_t aid_len, uint8_t p2, uint32_t *channel,
			    uint8_t *sel, size_t *sel_len)
{
	uint8_t h[7];
	int rc;

	if (aid_len > 16)
		return pg_error(PG_EINVAL, SUBSYS, "AID longer than 16 bytes");
	pg_put_be32(h, session);
	h[4] = logical ? 1 : 0;
	h[5] = p2;
	h[6] = (uint8_t)aid_len;
	rc = call(c, PG_SEOS_OP_OPEN_CHANNEL, h, 7, aid, aid_len);
	if (rc < 0)
		return rc;
	rc = handle_resp(c, channel);
	if (rc < 0)
		return rc;
	if (sel && sel_len) {
		size_t n = c->resp_len - 4;

		if (n > *sel_len)
			return pg_error(PG_ETOOBIG, SUBSYS,
					"SELECT response larger than the buffer");
		memcpy(sel, c->resp + 4, n);
		*sel_len = n;
	}
	return 0;
}

int
pg_seos_client_transmit(struct pg_seos_client *c, uint32_t channel, const uint8_t *capdu, size_t n,
			uint8_t *rapdu, size_t *rlen)
{
	uint8_t h[4];
	int rc;

	pg_put_be32(h, channel);
	rc = call(c, PG_SEOS_OP_TRANSMIT, h, 4, capdu, n);
	if (rc < 0)
		return rc;
	if (c->resp_len > *rlen)
		return pg_error(PG_ETOOBIG, SUBSYS, "R-APDU larger than the buffer");
	memcpy(rapdu, c->resp, c->resp_len);
	*rlen = c->resp_len;
	return 0;
}

int
pg_seos_client_close_channel(struct pg_seos_client *c, uint32_t channel)
{
	uint8_t h[4];

	pg_put_be32(h, channel);
	return call(c, PG_SEOS_OP_CLOSE_CHANNEL, h, 4, NULL, 0);
}

int
pg_seos_client_close_session(struct pg_seos_client *c, uint32_t session)
{
	uint8_t h[4];

	pg_put_be32(h, session);
	return call(c, PG_SEOS_OP_CLOSE_SESSION, h, 4, NULL, 0);
}
