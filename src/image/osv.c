/*
 * OSV advisories (ossf.github.io/osv-schema, JSON) for Debian ecosystems:
 * one object or an array of them per file; each affected package's
 * ECOSYSTEM ranges become [introduced, fixed) intervals.
 */
#include "image_int.h"

#include "payguard/error.h"
#include "payguard/log.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define OSV_MAX_RANGES 100000

void
pgi_osv_free(struct pg_osv *v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++) {
		free(v[i].id);
		free(v[i].summary);
		free(v[i].modified);
		for (size_t j = 0; j < v[i].nr; j++) {
			free(v[i].r[j].ecosystem);
			free(v[i].r[j].package);
			free(v[i].r[j].introduced);
			free(v[i].r[j].fixed);
		}
		free(v[i].r);
	}
	free(v);
}

static char *
dupstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? strdup(s) : NULL;
}

static int
add_range(struct pg_osv *v, const char *eco, const char *pkg, const char *intro, const char *fixed)
{
	struct pg_osv_range *r;

	if (v->nr >= OSV_MAX_RANGES)
		return pg_error(PG_ETOOBIG, "osv", "too many ranges in '%s'", v->id);
	r = realloc(v->r, (v->nr + 1) * sizeof(*r));
	if (!r)
		return PG_ENOMEM;
	v->r = r;
	r = &v->r[v->nr];
	r->ecosystem = strdup(eco);
	r->package = strdup(pkg);
	r->introduced = strdup(intro ? intro : "0");
	r->fixed = fixed ? strdup(fixed) : NULL;
	if (!r->ecosystem || !r->package || !r->introduced || (fixed && !r->fixed)) {
		free(r->ecosystem);
		free(r->package);
		free(r->introduced);
		free(r->fixed);
		return PG_ENOMEM;
	}
	v->nr++;
	return 0;
}

static int
parse_one(json_t *o, struct pg_osv *v)
{
	json_t *aff, *a;
	size_t i;
	int rc;

	memset(v, 0, sizeof(*v));
	if (!json_is_object(o))
		return pg_error(PG_EFORMAT, "osv", "advisory is not a JSON object");
	if (!json_is_string(json_object_get(o, "id")) ||
	    !json_string_length(json_object_get(o, "id")))
		return pg_error(PG_EFORMAT, "osv", "advisory without an \"id\" string");
	v->id = dupstr(o, "id");
	v->summary = dupstr(o, "summary");
	if (!v->summary)
		v->summary = dupstr(o, "details");
	if (v->summary && strlen(v->summary) > 200)
		v->summary[200] = 0;
	v->modified = dupstr(o, "modified");
	aff = json_object_get(o, "affected");
	if (aff && !json_is_array(aff))
		return pg_error(PG_EFORMAT, "osv", "%s: \"affected\" is not an array", v->id);
	json_array_foreach(aff, i, a)
	{
		json_t *pkg = json_object_get(a, "package"), *ranges = json_object_get(a, "ranges"),
		       *r;
		const char *eco = json_string_value(json_object_get(pkg, "ecosystem"));
		const char *name = json_string_value(json_object_get(pkg, "name"));
		size_t j;

		if (!eco || !name)
			return pg_error(PG_EFORMAT, "osv",
					"%s: affected[%zu] without package ecosystem/name", v->id,
					i);
		if (strncmp(eco, "Debian", 6) != 0)
			continue; /* other ecosystems do not apply to dpkg images */
		if (ranges && !json_is_array(ranges))
			return pg_error(PG_EFORMAT, "osv", "%s: \"ranges\" is not an array", v->id);
		json_array_foreach(ranges, j, r)
		{
			json_t *ev = json_object_get(r, "events"), *e;
			const char *type = json_string_value(json_object_get(r, "type"));
			const char *intro = NULL;
			size_t k;
			int open = 0;

			if (!type || strcmp(type, "ECOSYSTEM") != 0)
				continue;
			if (!json_is_array(ev))
				return pg_error(PG_EFORMAT, "osv", "%s: range without events",
						v->id);
			/* Events come in order: introduced, fixed, introduced, ... */
			json_array_foreach(ev, k, e)
			{
				const char *in =
				    json_string_value(json_object_get(e, "introduced"));
				const char *fx = json_string_value(json_object_get(e, "fixed"));

				if (in) {
					if (open && (rc = add_range(v, eco, name, intro, NULL)) < 0)
						return rc;
					if (strcmp(in, "0") && pg_debver_check(in) < 0)
						return pg_error(PG_EFORMAT, "osv",
								"%s: bad version '%s'", v->id, in);
					intro = in;
					open = 1;
				} else if (fx) {
					if (pg_debver_check(fx) < 0)
						return pg_error(PG_EFORMAT, "osv",
								"%s: bad version '%s'", v->id, fx);
					if ((rc = add_range(v, eco, name, open ? intro : "0", fx)) <
					    0)
						return rc;
					open = 0;
				}
			}
			if (open && (rc = add_range(v, eco, name, intro, NULL)) < 0)
				return rc;
		}
	}
	return 0;
}

int
pgi_osv_parse(const char *text, size_t len, struct pg_osv **out, size_t *n)
{
	json_error_t err;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err), *it;
	struct pg_osv *v = NULL;
	size_t cnt, i, done = 0;
	int rc = 0;

	*out = NULL;
	*n = 0;
	if (!root)
		return pg_error(PG_EFORMAT, "osv", "not JSON: %s at line %d", err.text, err.line);
	cnt = json_is_array(root) ? json_array_size(root) : 1;
	v = calloc(cnt ? cnt : 1, sizeof(*v));
	if (!v) {
		json_decref(root);
		return PG_ENOMEM;
	}
	if (json_is_array(root)) {
		json_array_foreach(root, i, it)
		{
			rc = parse_one(it, &v[done]);
			done++;
			if (rc < 0)
				break;
		}
	} else {
		rc = parse_one(root, &v[0]);
		done = 1;
	}
	json_decref(root);
	if (rc < 0) {
		pgi_osv_free(v, done);
		return rc;
	}
	*out = v;
	*n = done;
	return 0;
}
