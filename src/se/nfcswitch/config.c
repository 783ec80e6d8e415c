/*
 * The NFC switch's routing configuration (issue 8): a line format parser
 * (policy, default route, SEs with their link and address, applications
 * with AID, priority, label, payment flag) and its application to a switch.
 * Outside bytes: every field is bounded, errors name the line.
 */
#include "payguard/converter.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/nfcswitch.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE   512
#define MAX_TOKENS 12

static int
copy_name(char *dst, size_t cap, const char *src, int line, const char *what)
{
	size_t n = strlen(src);

	if (n == 0 || n >= cap)
		return pg_error(PG_EFORMAT, "nfcswitch", "line %d: %s must be 1..%zu characters",
				line, what, cap - 1);
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)src[i]) && !strchr("-_.:/@+", src[i]))
			return pg_error(PG_EFORMAT, "nfcswitch", "line %d: bad character in %s",
					line, what);
	memcpy(dst, src, n + 1);
	return 0;
}

static int
parse_prio(const char *v, int line)
{
	char *end;
	long p = strtol(v, &end, 10);

	if (!*v || *end || p < 0 || p > 15)
		return pg_error(PG_EFORMAT, "nfcswitch", "line %d: priority '%s' (0..15)", line, v);
	return (int)p;
}

/* policy <priority|first|refuse> */
static int
dir_policy(struct pg_nfcsw_conf *c, char **tok, int nt, int line)
{
	if (nt != 2)
		return pg_error(PG_EFORMAT, "nfcswitch", "line %d: policy <name>", line);
	if (pg_nfcsw_policy_parse(tok[1], &c->policy) < 0)
		return pg_error(PG_EFORMAT, "nfcswitch",
				"line %d: policy '%s' (priority, first or refuse)", line, tok[1]);
	return 0;
}

/* default <se> */
static int
dir_default(struct pg_nfcsw_conf *c, char **tok, int nt, int line)
{
	if (nt != 2)
		return pg_error(PG_EFORMAT, "nfcswitch", "line %d: default <se>", line);
	return copy_name(c->default_se, sizeof(c->default_se), tok[1], line, "SE name");
}

/* One option of an se line: link=, addr= or priority=. */
static int
se_option(struct pg_nfcsw_conf_se *s, const char *t, int line)
{
	if (!strncmp(t, "link=", 5))
		return copy_name(s->link, sizeof(s->link), t + 5, line, "link");
	if (!strncmp(t, "addr=", 5))
		return copy_name(s->addr, sizeof(s->addr), t + 5, line, "address");
	if (!strncmp(t, "priority=", 9))
		return (s->priority = parse_prio(t + 9, line));
	return pg_error(PG_EFORMAT, "nfcswitch", "line %d: unknown '%s'", line, t);
}

/* se <name> link=<driver> addr=<address> [priority=N] */
static int
dir_se(struct pg_nfcsw_conf *c, char **tok, int nt, int line)
{
	struct pg_nfcsw_conf_se *s;
	int rc;

	if (nt < 2)
		return pg_error(PG_EFORMAT, "nfcswitch", "line %d: se <name> link=.. addr=..",
				line);
	if (c->n_se == PG_NFCSW_MAX_SES)
		return pg_error(PG_EFORMAT, "nfcswitch", "line %d: more than %d SEs", line,
				PG_NFCSW_MAX_SES);
	s = &c->se[c->n_se];
	memset(s, 0, sizeof(*s));
	if ((rc = copy_name(s->name, sizeof(s->name), tok[1], line, "SE name")) < 0)
		return rc;
	for (size_t i = 0; i < c->n_se; i++)
		if (!strcmp(c->se[i].name, s->name))
			return pg_error(PG_EFORMAT, "nfcswitch", "line %d: SE '%s' twice", line,
					s->name);
	for (int i = 2; i < nt; i++)
		if ((rc = se_option(s, tok[i], line)) < 0)
			return rc;
	if (!s->link[0] || !s->addr[0])
		return pg_error(PG_EFORMAT, "nfcswitch", "line %d: se needs link= and addr=", line);
	c->n_se++;
	return 0;
}

/* One option of an app line: priority=, label= or payment. */
static int
app_option(struct pg_nfcsw_conf_app *a, const char *t, int line)
{
	if (!strncmp(t, "priority=", 9))
		return (a->priority = parse_prio(t + 9, line));
	if (!strncmp(t, "label=", 6)) {
		size_t l = strlen(t + 6);

		if (l == 0 || l > PG_NFCSW_LABEL_MAX)
			return pg_error(PG_EFORMAT, "nfcswitch",
					"line %d: label of 1..%d characters", line,
					PG_NFCSW_LABEL_MAX);
		memcpy(a->label, t + 6, l + 1);
		return 0;
	}
	if (!strcmp(t, "payment")) {
		a->flags |= PG_NFCSW_APP_PAYMENT;
		return 0;
	}
	return pg_error(PG_EFORMAT, "nfcswitch", "line %d: unknown '%s'", line, t);
}

/* app <se> <aid> [priority=N] [label=..] [payment] */
static int
dir_app(struct pg_nfcsw_conf *c, char **tok, int nt, int line)
{
	struct pg_nfcsw_conf_app *a;
	uint8_t aid[PG_NFCSW_AID_MAX];
	int n, rc;

	if (nt < 3)
		return pg_error(PG_EFORMAT, "nfcswitch", "line %d: app <se> <aid> [...]", line);
	if (c->n_apps == PG_NFCSW_CONF_MAX_APPS)
		return pg_error(PG_EFORMAT, "nfcswitch", "line %d: more than %d applications", line,
				PG_NFCSW_CONF_MAX_APPS);
	if (strlen(tok[2]) > 2 * PG_NFCSW_AID_MAX ||
	    (n = pg_hex_decode(aid, sizeof(aid), tok[2])) < 5)
		return pg_error(PG_EFORMAT, "nfcswitch", "line %d: AID '%s' (5..16 bytes hex)",
				line, tok[2]);
	if (!c->apps) {
		c->apps = calloc(PG_NFCSW_CONF_MAX_APPS, sizeof(*c->apps));
		if (!c->apps)
			return PG_ENOMEM;
	}
	a = &c->apps[c->n_apps];
	memset(a, 0, sizeof(*a));
	if ((rc = copy_name(a->se, sizeof(a->se), tok[1], line, "SE name")) < 0)
		return rc;
	memcpy(a->aid, aid, (size_t)n);
	a->aid_len = (uint8_t)n;
	for (int i = 3; i < nt; i++)
		if ((rc = app_option(a, tok[i], line)) < 0)
			return rc;
	c->n_apps++;
	return 0;
}

/* The directives of the format, one line each. */
static const struct {
	const char *name;
	int (*parse)(struct pg_nfcsw_conf *c, char **tok, int nt, int line);
} directives[] = {
    {"policy", dir_policy},
    {"default", dir_default},
    {"se", dir_se},
    {"app", dir_app},
};

static int
parse_line(struct pg_nfcsw_conf *c, char **tok, int nt, int line)
{
	for (size_t i = 0; i < sizeof(directives) / sizeof(directives[0]); i++)
		if (!strcmp(tok[0], directives[i].name))
			return directives[i].parse(c, tok, nt, line);
	return pg_error(PG_EFORMAT, "nfcswitch", "line %d: unknown directive '%s'", line, tok[0]);
}

int
pg_nfcsw_conf_parse(struct pg_nfcsw_conf *c, const char *text, size_t len)
{
	size_t pos = 0;
	int line = 0, rc = 0;

	memset(c, 0, sizeof(*c));
	if (len > PG_NFCSW_CONF_MAX_BYTES)
		return pg_error(PG_ETOOBIG, "nfcswitch", "configuration of %zu bytes (max %u)", len,
				PG_NFCSW_CONF_MAX_BYTES);
	while (pos < len) {
		char buf[MAX_LINE + 1], *tok[MAX_TOKENS], *p;
		size_t end = pos, n;
		int nt = 0;

		line++;
		while (end < len && text[end] != '\n')
			end++;
		n = end - pos;
		if (n > MAX_LINE) {
			rc = pg_error(PG_EFORMAT, "nfcswitch", "line %d longer than %d bytes", line,
				      MAX_LINE);
			goto fail;
		}
		memcpy(buf, text + pos, n);
		buf[n] = 0;
		pos = end + 1;
		if (memchr(buf, 0, n)) {
			rc = pg_error(PG_EFORMAT, "nfcswitch", "line %d: NUL byte", line);
			goto fail;
		}
		if ((p = strchr(buf, '#')))
			*p = 0;
		for (p = strtok(buf, " \t\r"); p; p = strtok(NULL, " \t\r")) {
			if (nt == MAX_TOKENS) {
				rc = pg_error(PG_EFORMAT, "nfcswitch", "line %d: too many fields",
					      line);
				goto fail;
			}
			tok[nt++] = p;
		}
		if (nt == 0)
			continue;
		if ((rc = parse_line(c, tok, nt, line)) < 0)
			goto fail;
	}
	/* References must name declared SEs (apps may name SEs attached later only via the API). */
	if (c->default_se[0]) {
		int ok = 0;

		for (size_t i = 0; i < c->n_se; i++)
			ok |= !strcmp(c->se[i].name, c->default_se);
		if (!ok) {
			rc = pg_error(PG_EFORMAT, "nfcswitch", "default route: no SE '%s' declared",
				      c->default_se);
			goto fail;
		}
	}
	return 0;
fail:
	pg_nfcsw_conf_release(c);
	return rc;
}

void
pg_nfcsw_conf_release(struct pg_nfcsw_conf *c)
{
	if (!c)
		return;
	free(c->apps);
	c->apps = NULL;
	c->n_apps = 0;
	c->n_se = 0;
}

int
pg_nfcsw_apply(struct pg_nfcsw *sw, const struct pg_nfcsw_conf *c, int timeout_ms)
{
	struct pg_link_params lp = {.timeout_ms = timeout_ms};
	int rc;

	pg_nfcsw_set_policy(sw, c->policy);
	for (size_t i = 0; i < c->n_apps; i++) {
		const struct pg_nfcsw_conf_app *a = &c->apps[i];

		rc = pg_nfcsw_expect(sw, a->se, a->aid, a->aid_len, a->priority,
				     a->label[0] ? a->label : NULL, a->flags);
		if (rc < 0)
			return rc;
	}
	for (size_t i = 0; i < c->n_se; i++) {
		const struct pg_nfcsw_conf_se *s = &c->se[i];
		struct pg_link *l = NULL;

		/* a master port opens its SE by link address through the converter */
		rc = pg_conv_link_open(&l, s->link, s->addr, &lp);
		if (rc < 0)
			return pg_error(rc, "nfcswitch", "SE '%s': %s", s->name, pg_last_error());
		rc = pg_nfcsw_attach(sw, s->name, l, s->addr, s->priority);
		if (rc < 0)
			return rc;
	}
	if (c->default_se[0])
		return pg_nfcsw_set_default(sw, c->default_se);
	return 0;
}
