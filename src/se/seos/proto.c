/*
 * The SE OS client protocol's framing and request decoder (see proto.h):
 * strict lengths, bounded frames, names of printable ASCII only.
 */
#include "seos/proto.h"

#include "payguard/buf.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SUBSYS "seos-proto"

static int
get_name(char *dst, const uint8_t *p, size_t n)
{
	if (n > PG_SEOS_NAME_MAX)
		return pg_error(PG_EFORMAT, SUBSYS, "name of %zu bytes (max %d)", n,
				PG_SEOS_NAME_MAX);
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] > 0x7E)
			return pg_error(PG_EFORMAT, SUBSYS, "name with a non-printable byte");
	memcpy(dst, p, n);
	dst[n] = '\0';
	return 0;
}

int
pgi_seos_req_decode(struct pg_seos_req *r, const uint8_t *p, size_t n)
{
	memset(r, 0, sizeof(*r));
	if (n < 5)
		return pg_error(PG_ETRUNC, SUBSYS, "request of %zu bytes", n);
	r->op = p[0];
	r->id = pg_be32(p + 1);
	p += 5;
	n -= 5;
	switch (r->op) {
	case PG_SEOS_OP_HELLO:
	case PG_SEOS_OP_OPEN_SESSION:
		if (r->op == PG_SEOS_OP_OPEN_SESSION && n == 0)
			return pg_error(PG_EFORMAT, SUBSYS, "open-session without a reader name");
		return get_name(r->name, p, n);
	case PG_SEOS_OP_READERS:
	case PG_SEOS_OP_WHOAMI:
		if (n)
			return pg_error(PG_EFORMAT, SUBSYS, "op %u takes no payload", r->op);
		return 0;
	case PG_SEOS_OP_OPEN_CHANNEL:
		if (n < 7)
			return pg_error(PG_ETRUNC, SUBSYS, "open-channel of %zu bytes", n);
		r->handle = pg_be32(p);
		r->logical = p[4];
		r->p2 = p[5];
		r->aid_len = p[6];
		if (r->logical > 1)
			return pg_error(PG_EFORMAT, SUBSYS, "channel kind %u (0 basic, 1 logical)",
					r->logical);
		if (r->aid_len > 16 || (r->aid_len && r->aid_len < 5))
			return pg_error(PG_EFORMAT, SUBSYS, "AID of %zu bytes (0 or 5..16)",
					r->aid_len);
		if (n != 7 + r->aid_len)
			return pg_error(PG_EFORMAT, SUBSYS, "open-channel length mismatch");
		memcpy(r->aid, p + 7, r->aid_len);
		return 0;
	case PG_SEOS_OP_TRANSMIT:
		if (n < 4 + 4)
			return pg_error(PG_ETRUNC, SUBSYS, "transmit without a C-APDU header");
		if (n > 4 + 65544u)
			return pg_error(PG_ETOOBIG, SUBSYS, "C-APDU of %zu bytes", n - 4);
		r->handle = pg_be32(p);
		r->apdu = p + 4;
		r->apdu_len = n - 4;
		return 0;
	case PG_SEOS_OP_CLOSE_CHANNEL:
	case PG_SEOS_OP_CLOSE_SESSION:
		if (n != 4)
			return pg_error(PG_EFORMAT, SUBSYS, "close takes a 4-byte handle");
		r->handle = pg_be32(p);
		return 0;
	default:
		return pg_error(PG_EFORMAT, SUBSYS, "unknown op %u", r->op);
	}
}

static int
read_all(int fd, uint8_t *p, size_t n)
{
	while (n) {
		ssize_t k = read(fd, p, n);

		if (k == 0)
			return PG_ECLOSED;
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return pg_error(PG_EIO, SUBSYS, "read: %s", strerror(errno));
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

int
pgi_seos_frame_read(int fd, uint8_t *buf, size_t cap)
{
	uint8_t h[4];
	uint32_t len;
	int rc = read_all(fd, h, 4);

	if (rc < 0)
		return rc;
	len = pg_be32(h);
	if (len > cap || len > PG_SEOS_FRAME_MAX)
		return pg_error(PG_ETOOBIG, SUBSYS, "frame of %u bytes", len);
	rc = read_all(fd, buf, len);
	return rc < 0 ? rc : (int)len;
}

int
pgi_seos_frame_write(int fd, uint8_t op, uint32_t id, int response, int32_t status, const void *p1,
		     size_t n1, const void *p2, size_t n2)
{
	uint8_t h[13];
	size_t hl = response ? 13 : 9;
	struct part {
		const void *b;
		size_t n;
	} v[3] = {{h, hl}, {p1, n1}, {p2, n2}};

	pg_put_be32(h, (uint32_t)(hl - 4 + n1 + n2));
	h[4] = response ? (uint8_t)(op | 0x80) : op;
	pg_put_be32(h + 5, id);
	if (response)
		pg_put_be32(h + 9, (uint32_t)status);
	for (int i = 0; i < 3; i++) {
		const uint8_t *b = v[i].b;
		size_t n = v[i].n;

		while (n) {
			ssize_t k = send(fd, b, n, MSG_NOSIGNAL);

			if (k < 0) {
				if (errno == EINTR)
					continue;
				return pg_error(PG_EIO, SUBSYS, "write: %s", strerror(errno));
			}
			b += k;
			n -= (size_t)k;
		}
	}
	return 0;
}
