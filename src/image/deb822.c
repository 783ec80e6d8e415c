/*
 * deb822 paragraphs as dpkg writes them (/var/lib/dpkg/status, DEBIAN/control):
 * "Field: value" lines, continuation lines starting with a space or tab,
 * paragraphs separated by empty lines. Parsing keeps every field so a status
 * file can be rewritten with one paragraph changed and the rest untouched.
 */
#include "image_int.h"

#include "payguard/buf.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_FIELDS 256

void
pgi_para_release(struct pg_para *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++) {
		free(p->kv[i].key);
		free(p->kv[i].val);
	}
	free(p->kv);
	p->kv = NULL;
	p->n = 0;
}

void
pgi_deb822_release(struct pg_deb822 *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		pgi_para_release(&d->p[i]);
	free(d->p);
	d->p = NULL;
	d->n = 0;
}

const char *
pgi_para_get(const struct pg_para *p, const char *key)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcasecmp(p->kv[i].key, key) == 0)
			return p->kv[i].val;
	return NULL;
}

void
pgi_para_del(struct pg_para *p, const char *key)
{
	for (size_t i = 0; i < p->n; i++) {
		if (strcasecmp(p->kv[i].key, key) == 0) {
			free(p->kv[i].key);
			free(p->kv[i].val);
			memmove(&p->kv[i], &p->kv[i + 1], (p->n - i - 1) * sizeof(p->kv[0]));
			p->n--;
			return;
		}
	}
}

static int
para_add(struct pg_para *p, const char *key, size_t klen, const char *val, size_t vlen)
{
	struct pg_kv *kv;

	if (p->n >= MAX_FIELDS)
		return pg_error(PG_ETOOBIG, "deb822", "more than %d fields in a paragraph",
				MAX_FIELDS);
	kv = realloc(p->kv, (p->n + 1) * sizeof(*kv));
	if (!kv)
		return PG_ENOMEM;
	p->kv = kv;
	kv[p->n].key = strndup(key, klen);
	kv[p->n].val = strndup(val, vlen);
	if (!kv[p->n].key || !kv[p->n].val) {
		free(kv[p->n].key);
		free(kv[p->n].val);
		return PG_ENOMEM;
	}
	p->n++;
	return 0;
}

int
pgi_para_set(struct pg_para *p, const char *key, const char *val)
{
	for (size_t i = 0; i < p->n; i++) {
		if (strcasecmp(p->kv[i].key, key) == 0) {
			char *v = strdup(val);

			if (!v)
				return PG_ENOMEM;
			free(p->kv[i].val);
			p->kv[i].val = v;
			return 0;
		}
	}
	return para_add(p, key, strlen(key), val, strlen(val));
}

int
pgi_para_dup(const struct pg_para *src, struct pg_para *dst)
{
	dst->kv = NULL;
	dst->n = 0;
	for (size_t i = 0; i < src->n; i++) {
		int rc = para_add(dst, src->kv[i].key, strlen(src->kv[i].key), src->kv[i].val,
				  strlen(src->kv[i].val));
		if (rc < 0) {
			pgi_para_release(dst);
			return rc;
		}
	}
	return 0;
}

static int
deb822_push(struct pg_deb822 *d, struct pg_para *cur)
{
	struct pg_para *np;

	if (cur->n == 0)
		return 0;
	np = realloc(d->p, (d->n + 1) * sizeof(*np));
	if (!np)
		return PG_ENOMEM;
	d->p = np;
	d->p[d->n++] = *cur;
	cur->kv = NULL;
	cur->n = 0;
	return 0;
}

/* A parse in progress: the paragraph being read and its open field (key
 * points into the text; val holds the value read so far). */
struct d822 {
	struct pg_deb822 *out;
	struct pg_para cur;
	struct pg_buf val;
	const char *key;
	size_t klen, lineno;
};

/* rc, logged (as PG_TRY_GOTO does) when it is an error. */
static int
d822_try(int rc, const char *what)
{
	if (rc < 0)
		pg_debug("deb822", "%s: %s (%d)", what, pg_strerror(rc), rc);
	return rc;
}

/* Ends the open field, if any: it joins the paragraph. */
static int
d822_end_field(struct d822 *st)
{
	int rc = 0;

	if (st->key)
		rc = d822_try(para_add(&st->cur, st->key, st->klen,
				       st->val.data ? (char *)st->val.data : "", st->val.len),
			      "field");
	st->key = NULL;
	return rc;
}

/* "Field: value": opens a field (ending the one before), its value
 * stripped of blanks at both ends. */
static int
d822_field(struct d822 *st, const char *p, size_t ll)
{
	const char *colon = memchr(p, ':', ll), *le = p + ll, *v;
	int rc = d822_end_field(st);

	if (rc < 0)
		return rc;
	if (!colon || colon == p)
		return pg_error(PG_EFORMAT, "deb822", "line %zu is not 'Field: value'", st->lineno);
	st->key = p;
	st->klen = (size_t)(colon - p);
	v = colon + 1;
	while (v < le && (*v == ' ' || *v == '\t'))
		v++;
	pg_buf_reset(&st->val);
	rc = d822_try(pg_buf_append(&st->val, v, (size_t)(le - v)), "value");
	if (rc < 0)
		return rc;
	while (st->val.len &&
	       (st->val.data[st->val.len - 1] == ' ' || st->val.data[st->val.len - 1] == '\t' ||
		st->val.data[st->val.len - 1] == '\r'))
		st->val.len--;
	return 0;
}

/* One line of ll bytes at p: a blank line ends the paragraph, a line
 * starting with a blank continues the open field, '#' is a comment. */
static int
d822_line(struct d822 *st, const char *p, size_t ll)
{
	int blank = 1, rc;

	if (memchr(p, '\0', ll))
		return pg_error(PG_EFORMAT, "deb822", "NUL byte on line %zu", st->lineno);
	for (size_t i = 0; i < ll; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
			blank = 0;
	if (blank) {
		rc = d822_end_field(st);
		return rc < 0 ? rc : d822_try(deb822_push(st->out, &st->cur), "paragraph");
	}
	if (p[0] == ' ' || p[0] == '\t') {
		if (!st->key)
			return pg_error(PG_EFORMAT, "deb822",
					"continuation line %zu outside a field", st->lineno);
		rc = d822_try(pg_buf_append_byte(&st->val, '\n'), "value");
		return rc < 0 ? rc : d822_try(pg_buf_append(&st->val, p, ll), "value");
	}
	if (p[0] == '#')
		return 0; /* comment lines are allowed in control files */
	return d822_field(st, p, ll);
}

int
pgi_deb822_parse(const char *text, size_t len, struct pg_deb822 *out)
{
	struct d822 st = {.out = out, .cur = {NULL, 0}, .val = PG_BUF_INIT(PG_DEB822_MAX)};
	const char *p = text, *end = text + len;
	int rc = 0;

	out->p = NULL;
	out->n = 0;
	if (len > PG_DEB822_MAX)
		return pg_error(PG_ETOOBIG, "deb822", "input of %zu bytes is over the limit", len);
	while (p < end && rc == 0) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;

		st.lineno++;
		rc = d822_line(&st, p, (size_t)(le - p));
		p = nl ? nl + 1 : end;
	}
	if (rc == 0)
		rc = d822_end_field(&st);
	if (rc == 0)
		rc = d822_try(deb822_push(out, &st.cur), "paragraph");
	pgi_para_release(&st.cur);
	pg_buf_release(&st.val);
	if (rc < 0)
		pgi_deb822_release(out);
	return rc;
}

int
pgi_deb822_write(const struct pg_deb822 *d, char **out, size_t *len)
{
	struct pg_buf b = PG_BUF_INIT(PG_DEB822_MAX * 2);
	int rc = 0;

	for (size_t i = 0; i < d->n; i++) {
		for (size_t j = 0; j < d->p[i].n; j++) {
			const struct pg_kv *kv = &d->p[i].kv[j];

			PG_TRY_GOTO(pg_buf_printf(&b, "%s:%s%s\n", kv->key,
						  kv->val[0] == '\n' || !kv->val[0] ? "" : " ",
						  kv->val),
				    fail, "deb822", "write");
		}
		PG_TRY_GOTO(pg_buf_append_byte(&b, '\n'), fail, "deb822", "write");
	}
	PG_TRY_GOTO(pg_buf_append_byte(&b, '\0'), fail, "deb822", "write");
	*out = (char *)b.data;
	*len = b.len - 1;
	return 0;
fail:
	pg_buf_release(&b);
	return rc;
}
