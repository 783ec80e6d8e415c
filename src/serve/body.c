/*
 * Request bodies of the serve API: bounded, parsed with jansson, validated
 * field by field before anything acts on them (docs/api.md lists the fields).
 */
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/serve.h"

#include <jansson.h>
#include <string.h>

/* The common first steps: size limit, parse (duplicate keys refused), an object. */
static int
load_object(const char *body, size_t len, json_t **out)
{
	json_error_t jerr;
	json_t *o;

	*out = NULL;
	if (len > PG_SERVE_MAX_BODY)
		return pg_error(PG_ETOOBIG, "serve", "body of %zu bytes (limit %d)", len,
				PG_SERVE_MAX_BODY);
	if (len == 0)
		return pg_error(PG_EFORMAT, "serve", "empty body, expected a JSON object");
	o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o)
		return pg_error(PG_EFORMAT, "serve", "malformed JSON at line %d column %d: %s",
				jerr.line, jerr.column, jerr.text);
	if (!json_is_object(o)) {
		json_decref(o);
		return pg_error(PG_EFORMAT, "serve", "body must be a JSON object");
	}
	*out = o;
	return 0;
}

int
pg_serve_parse_alert_action(const char *body, size_t len, struct pg_serve_alert_action *a)
{
	json_t *o = NULL, *v;
	const char *action, *note = "";
	const char *key;
	int rc;

	memset(a, 0, sizeof(*a));
	rc = load_object(body, len, &o);
	if (rc < 0)
		return rc;
	json_object_foreach(o, key, v)
	{
		if (strcmp(key, "action") != 0 && strcmp(key, "note") != 0) {
			rc = pg_error(PG_EINVAL, "serve", "unknown field '%.40s'", key);
			goto out;
		}
	}
	v = json_object_get(o, "action");
	if (!json_is_string(v)) {
		rc = pg_error(PG_EINVAL, "serve", "field 'action' (a string) is required");
		goto out;
	}
	action = json_string_value(v);
	if (strcmp(action, "acknowledge") == 0) {
		strcpy(a->state, "acknowledged");
	} else if (strcmp(action, "close") == 0) {
		strcpy(a->state, "closed");
	} else {
		rc = pg_error(PG_EINVAL, "serve", "action must be 'acknowledge' or 'close'");
		goto out;
	}
	v = json_object_get(o, "note");
	if (v) {
		if (!json_is_string(v)) {
			rc = pg_error(PG_EINVAL, "serve", "field 'note' must be a string");
			goto out;
		}
		note = json_string_value(v);
		if (json_string_length(v) >= sizeof(a->note) ||
		    strlen(note) != json_string_length(v)) {
			rc = pg_error(PG_EINVAL, "serve", "note longer than %zu bytes or with NUL",
				      sizeof(a->note) - 1);
			goto out;
		}
		memcpy(a->note, note, strlen(note) + 1);
	}
out:
	json_decref(o);
	return rc;
}

int
pg_serve_parse_vse_action(const char *body, size_t len, char action[16])
{
	json_t *o, *v;
	int rc;

	action[0] = 0;
	rc = load_object(body, len, &o);
	if (rc < 0)
		return rc;
	v = json_object_get(o, "action");
	if (json_object_size(o) != 1 || !json_is_string(v)) {
		rc = pg_error(PG_EINVAL, "serve",
			      "body must be {\"action\": \"start\"|\"stop\"|"
			      "\"destroy\"}");
	} else if (strcmp(json_string_value(v), "start") != 0 &&
		   strcmp(json_string_value(v), "stop") != 0 &&
		   strcmp(json_string_value(v), "destroy") != 0) {
		rc = pg_error(PG_EINVAL, "serve", "action must be 'start', 'stop' or 'destroy'");
	} else {
		strcpy(action, json_string_value(v));
	}
	json_decref(o);
	return rc;
}

/* A package file name in the data directory's repo/: a plain name ending in
 * .deb, never a path (no '/', no leading '.'), printable ASCII only. */
static int
deb_name_ok(const char *s, size_t n)
{
	if (n < 5 || n >= PG_SERVE_DEB_NAME || s[0] == '.' || strcmp(s + n - 4, ".deb") != 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] > '~' || s[i] == '/' || s[i] == '\\')
			return 0;
	return 1;
}

int
pg_serve_parse_upgrade(const char *body, size_t len, struct pg_serve_upgrade_req *u)
{
	json_t *o, *v;
	const char *key;
	int rc;

	memset(u, 0, sizeof(*u));
	rc = load_object(body, len, &o);
	if (rc < 0)
		return rc;
	json_object_foreach(o, key, v)
	{
		if (strcmp(key, "fix") == 0) {
			if (!json_is_boolean(v)) {
				rc = pg_error(PG_EINVAL, "serve",
					      "field 'fix' must be true or false");
				goto out;
			}
			u->fix = json_is_true(v);
		} else if (strcmp(key, "packages") == 0) {
			size_t i;
			json_t *p;

			if (!json_is_array(v) || json_array_size(v) == 0 ||
			    json_array_size(v) > PG_SERVE_MAX_DEBS) {
				rc = pg_error(PG_EINVAL, "serve",
					      "field 'packages' must be an array of 1..%d .deb "
					      "file names",
					      PG_SERVE_MAX_DEBS);
				goto out;
			}
			json_array_foreach(v, i, p)
			{
				if (!json_is_string(p) ||
				    strlen(json_string_value(p)) != json_string_length(p) ||
				    !deb_name_ok(json_string_value(p), json_string_length(p))) {
					rc = pg_error(
					    PG_EINVAL, "serve",
					    "packages[%zu] must be a .deb file name in the "
					    "repository (no path)",
					    i);
					goto out;
				}
				memcpy(u->debs[i], json_string_value(p), json_string_length(p) + 1);
			}
			u->ndebs = json_array_size(v);
		} else {
			rc = pg_error(PG_EINVAL, "serve", "unknown field '%.40s'", key);
			goto out;
		}
	}
	if (u->fix == (u->ndebs > 0))
		rc = pg_error(PG_EINVAL, "serve",
			      "give either {\"fix\": true} or {\"packages\": [...]}, not both or "
			      "neither");
out:
	if (rc < 0)
		memset(u, 0, sizeof(*u));
	json_decref(o);
	return rc;
}
