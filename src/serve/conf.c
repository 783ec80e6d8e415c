/*
 * The serve configuration file: one JSON object, every key optional with the
 * default of docs/serve.md; unknown keys and wrong types are refused so a
 * typo never silently falls back to a default.
 */
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/load.h"
#include "payguard/log.h"
#include "payguard/pos.h"
#include "payguard/serve.h"
#include "serve_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <jansson.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

void
pg_serve_conf_default(struct pg_serve_conf *c)
{
	memset(c, 0, sizeof(*c));
	strcpy(c->listen, "127.0.0.1");
	c->port = PG_SERVE_DEFAULT_PORT;
	c->load_period_ms = 5000;
	c->pos_keep_days = PG_SERVE_POS_KEEP_DAYS;
	c->log_level = -1;
}

static int
get_int(json_t *v, const char *key, long lo, long hi, int *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return pg_error(PG_EINVAL, "serve", "config key '%s' must be an integer %ld..%ld",
				key, lo, hi);
	*out = (int)json_integer_value(v);
	return 0;
}

static int
get_str(json_t *v, const char *key, char *out, size_t cap)
{
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= cap ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return pg_error(PG_EINVAL, "serve",
				"config key '%s' must be a string of 1..%zu bytes", key, cap - 1);
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

/* image_backing_dirs: an array of absolute paths of existing folders. */
static int
get_dirs(json_t *v, const char *key, char *out, size_t cap)
{
	size_t i, used = 0;
	json_t *e;

	if (!json_is_array(v) || json_array_size(v) > 16)
		return pg_error(PG_EINVAL, "serve",
				"config key '%s' must be an array of at most 16 folder paths", key);
	out[0] = 0;
	json_array_foreach(v, i, e)
	{
		const char *p = json_string_value(e);
		struct stat sb;
		size_t n = p ? strlen(p) : 0;

		if (!p || n != json_string_length(e) || p[0] != '/' || strchr(p, '\n'))
			return pg_error(PG_EINVAL, "serve",
					"config key '%s': entry %zu must be an absolute path", key,
					i + 1);
		if (stat(p, &sb) < 0 || !S_ISDIR(sb.st_mode))
			return pg_error(PG_EINVAL, "serve",
					"config key '%s': '%.200s' is not a folder", key, p);
		if (used + n + 2 > cap)
			return pg_error(PG_EINVAL, "serve", "config key '%s' is too long", key);
		if (used)
			out[used++] = '\n';
		memcpy(out + used, p, n + 1);
		used += n;
	}
	return 0;
}

int
pg_serve_check_webhook(const char *url)
{
	size_t n = url ? strlen(url) : 0;

	if ((strncmp(url ? url : "", "http://", 7) != 0 &&
	     strncmp(url ? url : "", "https://", 8) != 0) ||
	    n < 9 || n >= 512 || strpbrk(url, " \t\r\n"))
		return pg_error(PG_EINVAL, "serve",
				"webhook '%.100s': an http:// or https:// URL of at most 511 bytes",
				url ? url : "");
	return 0;
}

/* webhooks: an array of at most PG_SERVE_MAX_WEBHOOKS http(s) URLs. */
static int
get_webhooks(json_t *v, struct pg_serve_conf *n)
{
	size_t i;
	json_t *e;
	int rc = 0;

	if (!json_is_array(v) || json_array_size(v) > PG_SERVE_MAX_WEBHOOKS)
		return pg_error(PG_EINVAL, "serve",
				"config key 'webhooks' must be an array of at most %d URLs",
				PG_SERVE_MAX_WEBHOOKS);
	n->nwebhooks = 0;
	json_array_foreach(v, i, e)
	{
		rc = get_str(e, "webhooks", n->webhooks[i], sizeof(n->webhooks[i]));
		if (rc == 0)
			rc = pg_serve_check_webhook(n->webhooks[i]);
		if (rc < 0)
			return rc;
		n->nwebhooks = (int)i + 1;
	}
	return 0;
}

/* The events keys (issue 15, docs/events.md); any other key is unknown. */
static int
events_key(const char *key, json_t *v, struct pg_serve_conf *n)
{
	char in[16];
	int rc;

	if (strcmp(key, "nats") == 0) {
		/* NATS server URLs, comma-separated */
		n->keys |= PG_SERVE_KEY_NATS;
		return get_str(v, key, n->nats, sizeof(n->nats));
	}
	if (strcmp(key, "webhooks") == 0) {
		n->keys |= PG_SERVE_KEY_WEBHOOKS;
		return get_webhooks(v, n);
	}
	if (strcmp(key, "webhook_secret_file") == 0) {
		n->keys |= PG_SERVE_KEY_WEBHOOK_SECRET;
		return get_str(v, key, n->webhook_secret_file, sizeof(n->webhook_secret_file));
	}
	if (strcmp(key, "pos_report") == 0) {
		unsigned mask;

		n->keys |= PG_SERVE_KEY_POS_REPORT;
		rc = get_str(v, key, n->pos_report, sizeof(n->pos_report));
		if (rc == 0 && pg_pos_report_parse(n->pos_report, &mask) < 0)
			rc = pg_error(PG_EINVAL, "serve", "config 'pos_report': %s",
				      pg_last_error());
		return rc;
	}
	if (strcmp(key, "intake") != 0)
		return pg_error(PG_EINVAL, "serve", "config: unknown key '%.40s'", key);
	rc = get_str(v, key, in, sizeof(in));
	if (rc == 0 && strcmp(in, "store") && strcmp(in, "jetstream"))
		rc = pg_error(PG_EINVAL, "serve",
			      "config 'intake' must be \"store\" or \"jetstream\"");
	n->intake_jetstream = rc == 0 && strcmp(in, "jetstream") == 0;
	n->keys |= PG_SERVE_KEY_INTAKE;
	return rc;
}

int
pg_serve_conf_parse(const char *text, size_t len, struct pg_serve_conf *c)
{
	struct pg_serve_conf n = *c;
	json_error_t jerr;
	json_t *o, *v;
	const char *key;
	int rc = 0;

	if (len > PG_SERVE_MAX_CONF)
		return pg_error(PG_ETOOBIG, "serve", "config of %zu bytes (limit %d)", len,
				PG_SERVE_MAX_CONF);
	o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o)
		return pg_error(PG_EFORMAT, "serve",
				"config: malformed JSON at line %d column %d: %s", jerr.line,
				jerr.column, jerr.text);
	if (!json_is_object(o)) {
		rc = pg_error(PG_EFORMAT, "serve", "config must be a JSON object");
		goto out;
	}
	n.keys = 0;
	json_object_foreach(o, key, v)
	{
		if (strcmp(key, "listen") == 0) {
			struct sockaddr_storage ss;
			unsigned sl;
			int lo;

			rc = get_str(v, key, n.listen, sizeof(n.listen));
			if (rc == 0 && pgi_serve_parse_listen(n.listen, &ss, &sl, &lo) < 0)
				rc = pg_error(
				    PG_EINVAL, "serve",
				    "config 'listen' must be localhost, an IPv4 or an IPv6 "
				    "address");
			n.keys |= PG_SERVE_KEY_LISTEN;
		} else if (strcmp(key, "port") == 0) {
			rc = get_int(v, key, 0, 65535, &n.port);
			n.keys |= PG_SERVE_KEY_PORT;
		} else if (strcmp(key, "token_file") == 0) {
			rc = get_str(v, key, n.token_file, sizeof(n.token_file));
			n.keys |= PG_SERVE_KEY_TOKEN_FILE;
		} else if (strcmp(key, "allowed_hosts") == 0) {
			size_t i;
			json_t *h;

			if (!json_is_array(v) || json_array_size(v) > PG_SERVE_MAX_ALLOW_HOSTS)
				rc = pg_error(PG_EINVAL, "serve",
					      "config key 'allowed_hosts' must be an array of at "
					      "most %d host names",
					      PG_SERVE_MAX_ALLOW_HOSTS);
			n.nallowed_hosts = 0;
			json_array_foreach(v, i, h)
			{
				if (rc < 0)
					break;
				rc = get_str(h, key, n.allowed_hosts[i], PG_SERVE_HOST_NAME);
				if (rc == 0)
					rc = pg_serve_check_host_name(n.allowed_hosts[i]);
				n.nallowed_hosts = (int)i + 1;
			}
			n.keys |= PG_SERVE_KEY_ALLOWED_HOSTS;
		} else if (strcmp(key, "demo") == 0) {
			if (!json_is_boolean(v))
				rc = pg_error(PG_EINVAL, "serve",
					      "config key 'demo' must be true or false");
			n.demo = json_is_true(v);
			n.keys |= PG_SERVE_KEY_DEMO;
		} else if (strcmp(key, "load_period_ms") == 0) {
			rc = get_int(v, key, 100, 3600000, &n.load_period_ms);
			n.keys |= PG_SERVE_KEY_LOAD_PERIOD;
		} else if (strcmp(key, "pos_keep_days") == 0) {
			rc = get_int(v, key, 1, 3660, &n.pos_keep_days);
			n.keys |= PG_SERVE_KEY_POS_KEEP_DAYS;
		} else if (strcmp(key, "load_source") == 0) {
			rc = get_str(v, key, n.load_source, sizeof(n.load_source));
			if (rc == 0)
				rc = pg_serve_check_load_source(n.load_source);
			n.keys |= PG_SERVE_KEY_LOAD_SOURCE;
		} else if (strcmp(key, "node") == 0) {
			rc = get_str(v, key, n.node, sizeof(n.node));
			if (rc == 0)
				rc = pg_serve_check_node_name(n.node);
			n.keys |= PG_SERVE_KEY_NODE;
		} else if (strcmp(key, "store") == 0) {
			/* a SQLite path or a PostgreSQL URL (db.h); opened at the start */
			rc = get_str(v, key, n.store, sizeof(n.store));
			n.keys |= PG_SERVE_KEY_STORE;
		} else if (strcmp(key, "image_backing_dirs") == 0) {
			rc = get_dirs(v, key, n.image_backing_dirs, sizeof(n.image_backing_dirs));
			n.keys |= PG_SERVE_KEY_IMAGE_BACKING_DIRS;
		} else if (strcmp(key, "log_level") == 0) {
			char lv[16];

			rc = get_str(v, key, lv, sizeof(lv));
			if (rc == 0 && (n.log_level = pg_log_parse_level(lv)) < 0)
				rc = pg_error(
				    PG_EINVAL, "serve",
				    "config 'log_level': error, warn, info, debug or trace");
			n.keys |= PG_SERVE_KEY_LOG_LEVEL;
		} else {
			rc = events_key(key, v, &n); /* or an unknown key */
		}
		if (rc < 0)
			goto out;
	}
	*c = n;
out:
	json_decref(o);
	return rc;
}

int
pg_serve_conf_load(const char *path, struct pg_serve_conf *c)
{
	uint8_t *data = NULL;
	size_t len = 0;
	int rc;

	rc = pg_read_file(path, PG_SERVE_MAX_CONF, &data, &len);
	if (rc < 0)
		return rc;
	rc = pg_serve_conf_parse((const char *)data, len, c);
	if (rc < 0) {
		char why[256];

		snprintf(why, sizeof(why), "%s", pg_last_error()); /* pg_error writes over it */
		pg_error(rc, "serve", "%s: %s", path, why);
	}
	free(data);
	return rc;
}

int
pg_serve_check_node_name(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n >= PG_SERVE_NODE_NAME)
		return pg_error(PG_EINVAL, "serve", "a node name has 1..%d characters",
				PG_SERVE_NODE_NAME - 1);
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return pg_error(PG_EINVAL, "serve",
					"node name '%.63s': only letters, digits, '.', '_' and '-'",
					name);
	}
	return 0;
}

int
pg_serve_check_load_source(const char *spec)
{
	const struct pg_load_ops *ops = NULL;
	const char *arg = NULL;

	if (pg_load_source_lookup(spec, &ops, &arg) < 0 || !ops)
		return pg_error(PG_EINVAL, "serve",
				"load_source '%.100s': unknown collector (want KIND:ARG, e.g. "
				"cgroup:/sys/fs/cgroup/machine.slice, libvirt:qemu:///system or "
				"prometheus:http://127.0.0.1:9090)",
				spec);
	if (!ops->poll)
		return pg_error(PG_EINVAL, "serve",
				"load_source '%.100s': '%s' is a trace, not a live collector "
				"(import traces with 'payguard load import')",
				spec, ops->name);
	if (ops->open_live) {
		/* Such a source (prometheus) opens without I/O: check its spec now. */
		void *st = NULL;
		char why[256];

		if (ops->open_live(arg, &st) < 0) {
			snprintf(why, sizeof(why), "%s", pg_last_error());
			return pg_error(PG_EINVAL, "serve", "load_source '%.100s': %s", spec, why);
		}
		ops->close(st);
	}
	return 0;
}

/* The listen address forms (docs/serve.md): also what pgi_serve_listen binds. */
int
pgi_serve_parse_listen(const char *host, struct sockaddr_storage *ss, unsigned *len, int *loopback)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)(void *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)ss;
	char h[64];
	size_t n = strlen(host);

	memset(ss, 0, sizeof(*ss));
	if (strcmp(host, "localhost") == 0)
		host = "127.0.0.1"; /* loopback, never a name service's answer */
	if (n >= 2 && n - 2 < sizeof(h) && host[0] == '[' && host[n - 1] == ']') {
		memcpy(h, host + 1, n - 2);
		h[n - 2] = 0;
	} else if (n < sizeof(h)) {
		memcpy(h, host, n + 1);
	} else {
		h[0] = 0;
	}
	if (h[0] && inet_pton(AF_INET, h, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		*len = sizeof(*sin);
		*loopback = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
		return 0;
	}
	if (h[0] && inet_pton(AF_INET6, h, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		*len = sizeof(*sin6);
		*loopback =
		    IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr) ||
		    (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) && sin6->sin6_addr.s6_addr[12] == 127);
		return 0;
	}
	return pg_error(PG_EINVAL, "serve",
			"listen address '%.64s': expected localhost, an IPv4 address or an IPv6 "
			"address (::1)",
			host);
}
