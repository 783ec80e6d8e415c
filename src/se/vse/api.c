/*
 * The hypervisor's socket API (seed 6: the SEM's requests reach the VMM):
 * a UNIX stream socket in the data directory (mode 0600), one message per
 * request and one per answer, each a 4-byte big-endian length and JSON.
 * This file is the framing and the manager's client call.
 */
#include "vse_int.h"

#include "payguard/json.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/store.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int
io_full(int fd, uint8_t *p, size_t n, int timeout_ms, int wr)
{
	size_t done = 0;

	while (done < n) {
		struct pollfd pfd = {.fd = fd, .events = wr ? POLLOUT : POLLIN};
		ssize_t k;
		int pr = poll(&pfd, 1, timeout_ms);

		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0)
			return pg_error(PG_ESYS, "vse", "poll: %s", strerror(errno));
		if (pr == 0)
			return pg_error(PG_ETIMEDOUT, "vse", "api: no answer within %d ms",
					timeout_ms);
		k = wr ? send(fd, p + done, n - done, MSG_NOSIGNAL)
		       : recv(fd, p + done, n - done, 0);
		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k < 0)
			return pg_error(PG_EIO, "vse", "api: %s", strerror(errno));
		if (k == 0)
			return PG_ECLOSED;
		done += (size_t)k;
	}
	return 0;
}

int
pgi_vse__send_json(int fd, json_t *j, size_t max, int timeout_ms)
{
	char *s = pg_json_dumps(j, JSON_COMPACT);
	uint8_t hdr[4];
	size_t n;
	int rc;

	if (!s)
		return PG_ENOMEM;
	n = strlen(s);
	if (n > max) {
		free(s);
		return pg_error(PG_ETOOBIG, "vse", "api: message of %zu bytes", n);
	}
	hdr[0] = (uint8_t)(n >> 24), hdr[1] = (uint8_t)(n >> 16), hdr[2] = (uint8_t)(n >> 8),
	hdr[3] = (uint8_t)n;
	rc = io_full(fd, hdr, 4, timeout_ms, 1);
	if (rc == 0)
		rc = io_full(fd, (uint8_t *)s, n, timeout_ms, 1);
	free(s);
	return rc;
}

int
pgi_vse__recv_msg(int fd, char **out, size_t *len, size_t max, int timeout_ms)
{
	uint8_t hdr[4];
	size_t n;
	char *b;
	int rc;

	*out = NULL;
	rc = io_full(fd, hdr, 4, timeout_ms, 0);
	if (rc < 0)
		return rc;
	n = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
	if (n > max)
		return pg_error(PG_ETOOBIG, "vse", "api: message of %zu bytes (max %zu)", n, max);
	b = malloc(n + 1);
	if (!b)
		return PG_ENOMEM;
	rc = io_full(fd, (uint8_t *)b, n, timeout_ms, 0);
	if (rc < 0) {
		free(b);
		return rc == PG_ECLOSED ? pg_error(PG_ETRUNC, "vse", "api: message cut short") : rc;
	}
	b[n] = '\0';
	*out = b;
	*len = n;
	return 0;
}

json_t *
pgi_vse__error_json(int rc)
{
	const char *d = pg_last_error();

	return json_pack("{s:b, s:s, s:s}", "ok", 0, "error", pg_errname(rc), "message",
			 d[0] ? d : pg_strerror(rc));
}

int
pg_vse_socket_path(char *out, size_t outlen)
{
	char dir[4096];
	int rc = pg_data_dir(dir, sizeof(dir));

	if (rc < 0)
		return rc;
	if ((size_t)snprintf(out, outlen, "%s/vse/hv.sock", dir) >= outlen)
		return pg_error(PG_ETOOBIG, "vse", "data directory path too long");
	return 0;
}

/* The code an error name stands for (the daemon sends names, not numbers). */
static int
code_of(const char *name)
{
	static const int codes[] = {
#define PG_CODE(n, v, m) v,
	    PG_ERRORS(PG_CODE)
#undef PG_CODE
	};
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (name && strcmp(pg_errname(codes[i]), name) == 0)
			return codes[i];
	return PG_EPROTO;
}

int
pg_vse_api_call(const char *sock, json_t *req, json_t **resp, int timeout_ms)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char *msg = NULL, path[sizeof(sa.sun_path)];
	json_error_t err;
	json_t *j = NULL;
	size_t n;
	int fd, rc;

	*resp = NULL;
	if (!req)
		return PG_ENOMEM;
	if (!sock) {
		rc = pg_vse_socket_path(path, sizeof(path));
		if (rc < 0) {
			json_decref(req);
			return rc;
		}
		sock = path;
	}
	if (strlen(sock) >= sizeof(sa.sun_path)) {
		json_decref(req);
		return pg_error(PG_ETOOBIG, "vse", "socket path '%s' too long", sock);
	}
	strcpy(sa.sun_path, sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		json_decref(req);
		return pg_error(PG_ESYS, "vse", "socket: %s", strerror(errno));
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		rc = pg_error(PG_ECLOSED, "vse",
			      "cannot reach the hypervisor at '%s' (%s): is `payguard vse serve` "
			      "running?",
			      sock, strerror(errno));
		goto out;
	}
	PG_TRY_GOTO(pgi_vse__send_json(fd, req, PG_VSE_API_MAX, timeout_ms), out, "vse", "send");
	PG_TRY_GOTO(pgi_vse__recv_msg(fd, &msg, &n, PG_VSE_API_ANSWER_MAX, timeout_ms), out, "vse",
		    "receive");
	j = json_loadb(msg, n, 0, &err);
	if (!j || !json_is_object(j)) {
		rc = pg_error(PG_EPROTO, "vse", "hypervisor answer is not a JSON object");
		goto out;
	}
	if (!json_is_true(json_object_get(j, "ok"))) {
		const char *m = json_string_value(json_object_get(j, "message"));

		rc = pg_error(code_of(json_string_value(json_object_get(j, "error"))), "vse", "%s",
			      m ? m : "refused");
		goto out;
	}
	*resp = j;
	j = NULL;
	rc = 0;
out:
	json_decref(req);
	json_decref(j);
	free(msg);
	close(fd);
	return rc;
}
