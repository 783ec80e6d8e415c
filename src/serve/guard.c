/*
 * The HTTP API's request guard (issue 13, item 1): what stops a web page on
 * another origin, or a DNS-rebound name, from using the daemon through the
 * operator's browser. Runs before a request is authenticated or routed:
 *  - a Host header that is not a name the daemon answers to (loopback names
 *    and addresses with its port, the address the connection came to, and
 *    the --allow-host names) gets 421: DNS rebinding;
 *  - a state-changing request (any method but GET and HEAD) must come from
 *    the daemon's own origin (Origin, else Sec-Fetch-Site) (403) and carry
 *    Content-Type: application/json (415), which no form and no no-cors
 *    fetch can send: cross-site request forgery;
 *  - with a token, GET /...?token=T logs a browser in: a random session id
 *    (RAND_bytes) in an HttpOnly, SameSite=Strict cookie, then a redirect to
 *    the same path without the token;
 *  - every answer carries a Content-Security-Policy without 'unsafe-inline',
 *    frame-ancestors 'none', X-Frame-Options DENY and Referrer-Policy
 *    no-referrer (the pages keep their scripts in src/serve/www/PAGE.js).
 * The security model is in docs/serve.md; the answers in docs/api.md.
 */
#include "payguard/clock.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/json.h"
#include "payguard/log.h"
#include "payguard/mem.h"
#include "payguard/serve.h"
#include "serve_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define CSP                                                                                        \
	"default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "           \
	"form-action 'self'; frame-ancestors 'none'"
#define COOKIE "pg_session"

/* ---- the pure checks (fuzz/serve_guard.c) ---- */

/* A DNS label character; a name is 1..253 of them and dots. */
static int
name_char(int ch)
{
	return isalnum(ch) || ch == '-' || ch == '.' || ch == '_';
}

int
pg_serve_check_host_name(const char *name)
{
	size_t n = strlen(name);
	struct in6_addr a6;
	char in[64];

	if (n == 0 || n >= PG_SERVE_HOST_NAME)
		return pg_error(PG_EINVAL, "serve", "allowed host: 1..%d bytes",
				PG_SERVE_HOST_NAME - 1);
	if (name[0] == '[') {
		if (n < 3 || n - 2 >= sizeof(in) || name[n - 1] != ']')
			return pg_error(PG_EINVAL, "serve",
					"allowed host '%.80s': an IPv6 address is [ADDR]", name);
		memcpy(in, name + 1, n - 2);
		in[n - 2] = 0;
		if (inet_pton(AF_INET6, in, &a6) != 1)
			return pg_error(PG_EINVAL, "serve",
					"allowed host '%.80s': not an IPv6 address", name);
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		if (!name_char((unsigned char)name[i]))
			return pg_error(PG_EINVAL, "serve",
					"allowed host '%.80s': a host name (letters, digits, '-', "
					"'.'), no port, no scheme",
					name);
	if (name[0] == '.' || name[0] == '-')
		return pg_error(PG_EINVAL, "serve", "allowed host '%.80s': not a host name", name);
	return 0;
}

/* Splits "name[:port]" or "[v6][:port]" into name (brackets kept) and port
 * (80 when absent); 0, or -1 when it is not of that form. */
static int
split_host(const char *host, char *name, size_t cap, int *port)
{
	const char *colon;
	size_t n;

	if (host[0] == '[') {
		const char *end = strchr(host, ']');

		if (!end)
			return -1;
		colon = end[1] ? end + 1 : NULL;
		if (colon && *colon != ':')
			return -1;
		n = (size_t)(end - host) + 1;
	} else {
		colon = strchr(host, ':');
		if (colon && strchr(colon + 1, ':'))
			return -1;
		n = colon ? (size_t)(colon - host) : strlen(host);
	}
	if (n == 0 || n >= cap)
		return -1;
	memcpy(name, host, n);
	name[n] = 0;
	*port = 80;
	if (colon) {
		long v = 0;
		size_t k = 1;

		for (; colon[k]; k++) {
			if (!isdigit((unsigned char)colon[k]) || k > 5)
				return -1;
			v = v * 10 + (colon[k] - '0');
		}
		if (k == 1 || v < 1 || v > 65535)
			return -1;
		*port = (int)v;
	}
	return 0;
}

static int
loopback_name(const char *name)
{
	struct in_addr a4;
	struct in6_addr a6;
	char in[64];
	size_t n = strlen(name);

	if (strcasecmp(name, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, name, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (name[0] == '[' && n > 2 && n - 2 < sizeof(in)) {
		memcpy(in, name + 1, n - 2);
		in[n - 2] = 0;
		return inet_pton(AF_INET6, in, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
	}
	return 0;
}

int
pg_serve_host_ok(const char *host, int port, const char *local_ip,
		 const char (*allow)[PG_SERVE_HOST_NAME], int nallow)
{
	char name[PG_SERVE_HOST_NAME];
	int hport;

	if (!host || split_host(host, name, sizeof(name), &hport) < 0)
		return 0;
	for (int i = 0; i < nallow; i++)
		if (strcasecmp(name, allow[i]) == 0)
			return 1;
	if (hport != port)
		return 0;
	if (loopback_name(name))
		return 1;
	return local_ip && local_ip[0] && strcmp(name, local_ip) == 0;
}

int
pg_serve_origin_ok(const char *origin, const char *host)
{
	if (!origin || !host || !host[0])
		return 0;
	if (strncmp(origin, "http://", 7) == 0)
		origin += 7;
	else if (strncmp(origin, "https://", 8) == 0)
		origin += 8;
	else
		return 0; /* "null" (sandboxed frames, data: pages), file:, ... */
	return strcasecmp(origin, host) == 0;
}

int
pg_serve_ctype_json(const char *ctype)
{
	size_t n = strlen("application/json");

	if (!ctype || strncasecmp(ctype, "application/json", n) != 0)
		return 0;
	ctype += n;
	while (*ctype == ' ' || *ctype == '\t')
		ctype++;
	return *ctype == 0 || *ctype == ';';
}

/* ---- state ---- */

int
pgi_serve_guard_init(struct pg_serve_state *s, const char (*allow)[PG_SERVE_HOST_NAME], int nallow)
{
	struct pgi_serve_guard *g = &s->guard;

	if (nallow < 0 || nallow > PG_SERVE_MAX_ALLOW_HOSTS)
		return pg_error(PG_EINVAL, "serve", "at most %d allowed hosts",
				PG_SERVE_MAX_ALLOW_HOSTS);
	for (int i = 0; i < nallow; i++) {
		int rc = pg_serve_check_host_name(allow[i]);

		if (rc < 0)
			return rc;
		memcpy(g->allow[i], allow[i], strlen(allow[i]) + 1);
	}
	g->nallow = nallow;
	memset(g->sess, 0, sizeof(g->sess));
	pthread_mutex_init(&g->mu, NULL);
	g->inited = 1;
	return 0;
}

void
pgi_serve_guard_release(struct pg_serve_state *s)
{
	struct pgi_serve_guard *g = s ? &s->guard : NULL;

	if (!g || !g->inited)
		return;
	pg_memzero(g->sess, sizeof(g->sess));
	pthread_mutex_destroy(&g->mu);
	g->inited = 0;
}

int
pgi_serve_token_equal(const char *token, const char *got)
{
	unsigned char want[SHA256_DIGEST_LENGTH], have[SHA256_DIGEST_LENGTH];
	int eq;

	if (!token || !got)
		return 0;
	/* hash both sides so the comparison takes the same time whatever the lengths */
	SHA256((const unsigned char *)token, strlen(token), want);
	SHA256((const unsigned char *)got, strlen(got), have);
	eq = pg_ct_equal(want, have, sizeof(want));
	pg_memzero(want, sizeof(want));
	return eq;
}

/* A new session: its id in hex (65 bytes) or -1 (no randomness). */
static int
session_new(struct pgi_serve_guard *g, char hex[65])
{
	unsigned char id[32];
	int64_t now = pg_wall_ms();
	int slot = 0;

	if (RAND_bytes(id, sizeof(id)) != 1)
		return -1;
	pthread_mutex_lock(&g->mu);
	/* a free or expired slot, else the one that expires first */
	for (int i = 0; i < PG_SERVE_SESSIONS; i++) {
		if (g->sess[i].expires_ms <= now) {
			slot = i;
			break;
		}
		if (g->sess[i].expires_ms < g->sess[slot].expires_ms)
			slot = i;
	}
	memcpy(g->sess[slot].id, id, sizeof(id));
	g->sess[slot].expires_ms = now + PG_SERVE_SESSION_MS;
	pthread_mutex_unlock(&g->mu);
	pg_hex_encode(hex, id, sizeof(id));
	pg_memzero(id, sizeof(id));
	return 0;
}

int
pgi_serve_guard_session(struct pg_serve_state *s, struct MHD_Connection *c)
{
	struct pgi_serve_guard *g = &s->guard;
	const char *v = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, COOKIE);
	unsigned char id[32];
	int64_t now = pg_wall_ms();
	int hit = 0;

	if (!g->inited || !v || strlen(v) != 64 ||
	    pg_hex_decode(id, sizeof(id), v) != (int)sizeof(id))
		return 0;
	pthread_mutex_lock(&g->mu);
	for (int i = 0; i < PG_SERVE_SESSIONS; i++)
		hit |= pg_ct_equal(g->sess[i].id, id, sizeof(id)) & (g->sess[i].expires_ms > now);
	pthread_mutex_unlock(&g->mu);
	pg_memzero(id, sizeof(id));
	return hit;
}

/* ---- the hook ---- */

void
pgi_serve_guard_headers(struct MHD_Response *resp)
{
	MHD_add_response_header(resp, "Content-Security-Policy", CSP);
	MHD_add_response_header(resp, "X-Frame-Options", "DENY");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(resp, "Cross-Origin-Resource-Policy", "same-origin");
}

/* Queues an answer of the guard: a JSON error (msg) or, with location, a 303. */
static int
answer(struct pg_serve_state *s, struct MHD_Connection *c, int status, const char *msg,
       const char *location, const char *cookie)
{
	struct MHD_Response *resp;
	char *text = NULL;
	json_t *v;
	int ret;

	v = msg ? json_pack("{s:{s:i,s:s}}", "error", "status", status, "message", msg)
		: json_pack("{s:s}", "location", location);
	if (v)
		text = pg_json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(v);
	if (!text)
		return MHD_NO;
	resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/json");
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	pgi_serve_guard_headers(resp);
	if (location)
		MHD_add_response_header(resp, "Location", location);
	if (cookie)
		MHD_add_response_header(resp, "Set-Cookie", cookie);
	if (status == 401)
		MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
	ret = MHD_queue_response(c, (unsigned)status, resp);
	MHD_destroy_response(resp);
	s->req[status / 100]++;
	s->req_total++;
	return ret;
}

/* The address and port the connection came to ("" and 0 when unknown). */
static void
local_addr(struct MHD_Connection *c, char *ip, size_t cap, int *port)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	ip[0] = 0;
	*port = 0;
	if (!ci || getsockname(ci->connect_fd, (struct sockaddr *)&ss, &sl) < 0)
		return;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &a->sin_addr, ip, (socklen_t)cap);
		*port = ntohs(a->sin_port);
	} else if (ss.ss_family == AF_INET6 && cap > 2) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;

		ip[0] = '[';
		if (inet_ntop(AF_INET6, &a->sin6_addr, ip + 1, (socklen_t)cap - 2))
			strcat(ip, "]");
		else
			ip[0] = 0;
		*port = ntohs(a->sin6_port);
	}
}

int
pgi_serve_guard(struct pg_serve_state *s, struct MHD_Connection *c, const char *url,
		const char *method, int *ret)
{
	struct pgi_serve_guard *g = &s->guard;
	const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
	int safe = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	char ip[64];
	int port;

	local_addr(c, ip, sizeof(ip), &port);
	if (!pg_serve_host_ok(host, port, ip, (const char(*)[PG_SERVE_HOST_NAME])g->allow,
			      g->nallow)) {
		char msg[200];

		snprintf(msg, sizeof(msg),
			 "Host '%.64s' is not a name this daemon answers to (loopback with its "
			 "port, or --allow-host)",
			 host ? host : "");
		*ret = answer(s, c, 421, msg, NULL, NULL);
		return 1;
	}
	if (!safe) {
		const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
		const char *site =
		    MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-Fetch-Site");
		const char *ctype = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");

		if (origin ? !pg_serve_origin_ok(origin, host)
			   : site && (strcmp(site, "cross-site") == 0 ||
				      strcmp(site, "same-site") == 0)) {
			char msg[200];

			snprintf(msg, sizeof(msg),
				 "cross-origin %.8s refused (Origin '%.64s'); the API takes "
				 "changes from its own pages and from non-browser clients only",
				 method, origin ? origin : site);
			*ret = answer(s, c, 403, msg, NULL, NULL);
			return 1;
		}
		if (!pg_serve_ctype_json(ctype)) {
			*ret = answer(s, c, 415,
				      "a request that changes something must have Content-Type: "
				      "application/json",
				      NULL, NULL);
			return 1;
		}
		return 0;
	}
	if (s->token) {
		/* the browser login: /PATH?token=T sets the session cookie and sends
		 * the browser to /PATH, so the token leaves the address bar */
		const char *t = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token");
		char hex[65], cookie[160], loc[300];

		if (!t)
			return 0;
		if (!pgi_serve_token_equal(s->token, t)) {
			*ret =
			    answer(s, c, 401, "wrong token in the address (?token=)", NULL, NULL);
			return 1;
		}
		if (session_new(g, hex) < 0) {
			*ret = answer(s, c, 500, "no random bytes for a session", NULL, NULL);
			return 1;
		}
		snprintf(cookie, sizeof(cookie), COOKIE "=%s; HttpOnly; SameSite=Strict; Path=/",
			 hex);
		pg_memzero(hex, sizeof(hex));
		/* to one of the dashboard's pages only: never //host, a scheme or
		 * bytes of the (decoded) URL that could end the header */
		snprintf(loc, sizeof(loc), "%s",
			 pgi_serve_static(url, NULL, NULL, NULL) == 0 ? url : "/");
		pg_info("serve", "dashboard login: a new session (token in the address)");
		*ret = answer(s, c, 303, NULL, loc, cookie);
		pg_memzero(cookie, sizeof(cookie));
		return 1;
	}
	return 0;
}
