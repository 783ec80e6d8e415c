/*
 * Debian Security Tracker JSON (the feed debsecan reads, served as
 * /tracker/data/json): {source package: {CVE id: {description, scope,
 * debianbug, releases: {codename: {status, fixed_version, urgency,
 * repositories: {...}, nodsa...}}}}}. Mapped onto the same advisories as OSV
 * (osv.c): one advisory per CVE id, one range per (package, release) that
 * needs it, ecosystem "Debian:<major>" from the release codename:
 *   resolved + fixed_version V   -> [0, V)      (fixed in V)
 *   resolved + fixed_version "0" -> no range    (the release was never affected)
 *   open                         -> [0, none)   (affected, no fix yet)
 *   undetermined                 -> no range    (the tracker has not decided)
 * Releases without a version number (sid, experimental) are skipped. Also the
 * format switch of `image advisories import` (--format auto|osv|debian-tracker).
 */
#include "image_int.h"

#include "payguard/error.h"
#include "payguard/log.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define TRACKER_MAX_ADVISORIES 2000000

static const struct {
	const char *codename, *major;
} releases[] = {
    {"jessie", "8"},	{"stretch", "9"}, {"buster", "10"}, {"bullseye", "11"},
    {"bookworm", "12"}, {"trixie", "13"}, {"forky", "14"},  {"duke", "15"},
};

static const char *
release_major(const char *codename)
{
	for (size_t i = 0; i < sizeof(releases) / sizeof(releases[0]); i++)
		if (strcmp(releases[i].codename, codename) == 0)
			return releases[i].major;
	return NULL;
}

static int
add_range(struct pg_osv *v, const char *eco, const char *pkg, const char *fixed)
{
	struct pg_osv_range *r = realloc(v->r, (v->nr + 1) * sizeof(*r));

	if (!r)
		return PG_ENOMEM;
	v->r = r;
	r = &v->r[v->nr];
	r->ecosystem = strdup(eco);
	r->package = strdup(pkg);
	r->introduced = strdup("0");
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

/* The advisory for id, created on first sight; index kept in the map object. */
static int
advisory_for(json_t *map, struct pg_osv **all, size_t *n, size_t *cap, const char *id, json_t *cve,
	     struct pg_osv **out)
{
	json_t *ix = json_object_get(map, id);
	const char *desc;
	struct pg_osv *v;

	if (ix) {
		*out = &(*all)[json_integer_value(ix)];
		return 0;
	}
	if (*n >= TRACKER_MAX_ADVISORIES)
		return pg_error(PG_ETOOBIG, "debian-tracker", "more than %d CVEs",
				TRACKER_MAX_ADVISORIES);
	if (*n == *cap) {
		size_t nc = *cap ? 2 * *cap : 64;
		struct pg_osv *g = realloc(*all, nc * sizeof(*g));

		if (!g)
			return PG_ENOMEM;
		*all = g;
		*cap = nc;
	}
	v = &(*all)[*n];
	memset(v, 0, sizeof(*v));
	v->id = strdup(id);
	desc = json_string_value(json_object_get(cve, "description"));
	v->summary = desc ? strdup(desc) : NULL;
	if (!v->id || (desc && !v->summary)) {
		free(v->id);
		free(v->summary);
		return PG_ENOMEM;
	}
	if (v->summary && strlen(v->summary) > 200)
		v->summary[200] = 0;
	if (json_object_set_new(map, id, json_integer((json_int_t)*n)) < 0)
		return PG_ENOMEM;
	(*n)++;
	*out = v;
	return 0;
}

static int
one_release(struct pg_osv *v, const char *pkg, const char *cve, const char *rel, json_t *r)
{
	const char *status, *fixed, *major;
	char eco[32];

	if (!json_is_object(r))
		return pg_error(PG_EFORMAT, "debian-tracker", "%s %s %s: release is not an object",
				pkg, cve, rel);
	status = json_string_value(json_object_get(r, "status"));
	fixed = json_string_value(json_object_get(r, "fixed_version"));
	if (!status)
		return pg_error(PG_EFORMAT, "debian-tracker", "%s %s %s: no \"status\" string", pkg,
				cve, rel);
	major = release_major(rel);
	if (strcmp(status, "resolved") == 0) {
		if (!fixed || !*fixed)
			return pg_error(PG_EFORMAT, "debian-tracker",
					"%s %s %s: resolved without a \"fixed_version\"", pkg, cve,
					rel);
		if (strcmp(fixed, "0") == 0)
			return 0; /* never affected */
		if (pg_debver_check(fixed) < 0)
			return pg_error(PG_EFORMAT, "debian-tracker",
					"%s %s %s: bad fixed_version '%s'", pkg, cve, rel, fixed);
	} else if (strcmp(status, "open") == 0) {
		fixed = NULL;
	} else if (strcmp(status, "undetermined") == 0) {
		return 0;
	} else {
		return pg_error(PG_EFORMAT, "debian-tracker", "%s %s %s: unknown status '%s'", pkg,
				cve, rel, status);
	}
	if (!major)
		return 0; /* sid, experimental: no VERSION_ID to match */
	snprintf(eco, sizeof(eco), "Debian:%s", major);
	return add_range(v, eco, pkg, fixed);
}

int
pgi_debtracker_parse_json(json_t *root, struct pg_osv **out, size_t *count)
{
	json_t *map = json_object(), *cves, *cve;
	struct pg_osv *all = NULL, *v = NULL;
	size_t n = 0, cap = 0;
	const char *pkg, *id;
	int rc = 0;

	*out = NULL;
	*count = 0;
	if (!map)
		return PG_ENOMEM;
	if (!json_is_object(root)) {
		json_decref(map);
		return pg_error(PG_EFORMAT, "debian-tracker",
				"not the tracker's shape: the top level must be an object of "
				"source packages");
	}
	json_object_foreach(root, pkg, cves)
	{
		if (!json_is_object(cves)) {
			rc = pg_error(PG_EFORMAT, "debian-tracker",
				      "package '%s': not an object of CVEs", pkg);
			goto fail;
		}
		if (!*pkg) {
			rc = pg_error(PG_EFORMAT, "debian-tracker", "empty package name");
			goto fail;
		}
		json_object_foreach(cves, id, cve)
		{
			json_t *rels, *r;
			const char *rel;

			if (!json_is_object(cve) || !*id) {
				rc = pg_error(PG_EFORMAT, "debian-tracker",
					      "%s '%s': not a CVE object", pkg, id);
				goto fail;
			}
			rels = json_object_get(cve, "releases");
			if (rels && !json_is_object(rels)) {
				rc = pg_error(PG_EFORMAT, "debian-tracker",
					      "%s %s: \"releases\" is not an object", pkg, id);
				goto fail;
			}
			rc = advisory_for(map, &all, &n, &cap, id, cve, &v);
			if (rc < 0)
				goto fail;
			json_object_foreach(rels, rel, r)
			{
				rc = one_release(v, pkg, id, rel, r);
				if (rc < 0)
					goto fail;
			}
		}
	}
	json_decref(map);
	*out = all;
	*count = n;
	return 0;
fail:
	json_decref(map);
	pgi_osv_free(all, n);
	return rc;
}

int
pgi_debtracker_parse(const char *text, size_t len, struct pg_osv **out, size_t *n)
{
	json_error_t err;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
	int rc;

	*out = NULL;
	*n = 0;
	if (!root)
		return pg_error(PG_EFORMAT, "debian-tracker", "not JSON: %s at line %d", err.text,
				err.line);
	rc = pgi_debtracker_parse_json(root, out, n);
	json_decref(root);
	return rc;
}

int
pgi_advisories_parse(const char *text, size_t len, const char *format, struct pg_osv **out,
		     size_t *n, const char **found)
{
	json_error_t err;
	json_t *root;
	int rc;

	*out = NULL;
	*n = 0;
	if (!format || strcmp(format, "auto") == 0) {
		root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
		if (!root)
			return pg_error(PG_EFORMAT, "advisories", "not JSON: %s at line %d",
					err.text, err.line);
		/* OSV: one object with "id" or an array of them; the tracker: packages */
		if (json_is_array(root) || json_object_get(root, "id") ||
		    json_object_get(root, "affected") || json_object_get(root, "schema_version")) {
			json_decref(root);
			if (found)
				*found = "osv";
			return pgi_osv_parse(text, len, out, n);
		}
		if (found)
			*found = "debian-tracker";
		rc = pgi_debtracker_parse_json(root, out, n);
		json_decref(root);
		return rc;
	}
	if (found)
		*found = format;
	if (strcmp(format, "osv") == 0)
		return pgi_osv_parse(text, len, out, n);
	if (strcmp(format, "debian-tracker") == 0)
		return pgi_debtracker_parse(text, len, out, n);
	return pg_error(PG_EINVAL, "advisories", "format '%s' (auto, osv, debian-tracker)", format);
}
