/*
 * The image area's tables in the store, SQLite or PostgreSQL through the
 * store API (include/payguard/db.h; schema documented in docs/image.md):
 * images and their partitions, kernels and packages; OSV advisories; upgrade
 * jobs. Findings compare Debian versions in C (debver.c) after the store has
 * given the candidate rows, so both engines order versions exactly as dpkg.
 */
#include "image_int.h"
#include "imagedb.h"
#include "inspect.h"

#include "payguard/json.h"
#include "payguard/error.h"
#include "payguard/events.h"
#include "payguard/fs.h"
#include "payguard/log.h"
#include "payguard/db.h"
#include "payguard/db_json.h"
#include "payguard/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The v1 schema with the engine's id and 64-bit integer types. */
#define IMAGE_V1(ID, INT, PKG_KEY)                                                                 \
	"CREATE TABLE image("                                                                      \
	" id " ID ","                                                                              \
	" path TEXT NOT NULL UNIQUE,"                                                              \
	" format TEXT NOT NULL,"                                                                   \
	" format_version " INT " NOT NULL DEFAULT 0,"                                              \
	" virtual_size " INT " NOT NULL,"                                                          \
	" file_size " INT " NOT NULL,"                                                             \
	" sha256 TEXT,"                                                                            \
	" chain TEXT,"                                                                             \
	" ptable TEXT,"                                                                            \
	" disk_guid TEXT,"                                                                         \
	" os_id TEXT, os_version_id TEXT, os_pretty TEXT,"                                         \
	" mtime_ns " INT ","                                                                       \
	" scanned_at TEXT NOT NULL);"                                                              \
	"CREATE TABLE image_partition("                                                            \
	" image_id " INT " NOT NULL REFERENCES image(id) ON DELETE CASCADE,"                       \
	" idx " INT " NOT NULL, start " INT " NOT NULL, size " INT " NOT NULL,"                    \
	" type TEXT, uuid TEXT, name TEXT, logical " INT " NOT NULL DEFAULT 0,"                    \
	" fs TEXT, supported " INT " NOT NULL DEFAULT 0, fs_uuid TEXT, fs_label TEXT,"             \
	" is_root " INT " NOT NULL DEFAULT 0, needs_recovery " INT " NOT NULL DEFAULT 0,"          \
	" PRIMARY KEY(image_id, idx));"                                                            \
	"CREATE TABLE image_kernel("                                                               \
	" image_id " INT " NOT NULL REFERENCES image(id) ON DELETE CASCADE,"                       \
	" part_idx " INT " NOT NULL, path TEXT NOT NULL, version TEXT NOT NULL, banner TEXT);"     \
	"CREATE TABLE image_package("                                                              \
	" image_id " INT " NOT NULL REFERENCES image(id) ON DELETE CASCADE,"                       \
	" name TEXT NOT NULL, version TEXT, arch TEXT, source TEXT NOT NULL,"                      \
	" source_version TEXT NOT NULL, status TEXT,"                                              \
	" " PKG_KEY "(image_id, name, arch));"                                                     \
	"CREATE TABLE advisory("                                                                   \
	" id TEXT PRIMARY KEY, summary TEXT, modified TEXT, imported_at TEXT NOT NULL);"           \
	"CREATE TABLE advisory_range("                                                             \
	" advisory_id TEXT NOT NULL REFERENCES advisory(id) ON DELETE CASCADE,"                    \
	" ecosystem TEXT NOT NULL, package TEXT NOT NULL,"                                         \
	" introduced TEXT NOT NULL DEFAULT '0', fixed TEXT);"                                      \
	"CREATE INDEX advisory_range_pkg ON advisory_range(package);"                              \
	"CREATE TABLE image_job("                                                                  \
	" id " ID ","                                                                              \
	" image_id " INT " REFERENCES image(id) ON DELETE SET NULL,"                               \
	" image_path TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL,"                      \
	" overlay TEXT, pid " INT ", started_at TEXT NOT NULL, finished_at TEXT,"                  \
	" log TEXT NOT NULL DEFAULT '', result TEXT);"

/*
 * v1 is written per engine: PostgreSQL wants BIGINT for 64-bit sizes and
 * identity ids, and a package key that admits a NULL architecture (dpkg
 * keeps config-files entries without one), which a PostgreSQL primary key
 * refuses and SQLite's accepts; UNIQUE keeps NULLs distinct on both. The
 * columns are the same on both engines.
 */
static const struct pg_db_migration migrations[] = {
    {1, NULL, IMAGE_V1("INTEGER PRIMARY KEY", "INTEGER", "PRIMARY KEY"),
     IMAGE_V1("BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", "BIGINT", "UNIQUE")},
    /* v2: findings join on source names; keep that lookup indexed. */
    {2, "CREATE INDEX image_package_source ON image_package(source);", NULL, NULL},
    /* v3: the inode joins size and mtime in deciding whether a stored
     * hash still describes the file. */
    {3, NULL, "ALTER TABLE image ADD COLUMN file_ino INTEGER;",
     "ALTER TABLE image ADD COLUMN file_ino BIGINT;"},
    /* v4: upgrade jobs report how far they are (0..1 of the bytes to
     * unpack), for a daemon's job list; NULL for jobs from before. */
    {4, NULL, "ALTER TABLE image_job ADD COLUMN progress REAL;",
     "ALTER TABLE image_job ADD COLUMN progress DOUBLE PRECISION;"},
    /* v5 (cluster, issue 14): a job taken by a named node holds a lease
     * until lease_until_ms (milliseconds since the epoch on the store's
     * clock), renewed by the node's heartbeat and by the upgrade's own
     * progress; another node takes a running job over once it expired.
     * partial is the half-written overlay of the job's current runner,
     * removed by whoever takes the job over. NULL: a job of one machine,
     * recovered by pid as before. */
    {5,
     "ALTER TABLE image_job ADD COLUMN node TEXT;"
     "ALTER TABLE image_job ADD COLUMN lease_until_ms BIGINT;"
     "ALTER TABLE image_job ADD COLUMN partial TEXT;"
     "CREATE INDEX image_job_state ON image_job(state, lease_until_ms);",
     NULL, NULL},
    /* v6 (events, issue 15): the findings of each image as last computed,
     * kept so that a change of them (a scan, an advisory import, an
     * upgrade rescanned) emits finding_found / finding_fixed. One row per
     * (image, advisory, binary package); since: when it was first found. */
    {6,
     "CREATE TABLE image_finding_state("
     " image_id BIGINT NOT NULL REFERENCES image(id) ON DELETE CASCADE,"
     " advisory TEXT NOT NULL, package TEXT NOT NULL, version TEXT, fixed TEXT,"
     " since TEXT NOT NULL, PRIMARY KEY(image_id, advisory, package));",
     NULL, NULL},
};

int
pg_image_db_open(struct pg_store *st)
{
	int rc =
	    pg_db_migrate(st->pdb, "image", migrations, sizeof(migrations) / sizeof(migrations[0]));

	/* jobs and findings report through the event outbox (issue 15) */
	return rc < 0 ? rc : pg_events_migrate(st->pdb);
}

void
pgi_now_iso(char *buf, size_t n)
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int
pgi_image_run(struct pg_store *st, const char *sql, json_t *args, int64_t *changes)
{
	return pg_db_run_json(st->pdb, sql, args, changes);
}

int
pgi_image_query(struct pg_store *st, const char *sql, json_t *args, json_t **out)
{
	return pg_db_query_json(st->pdb, sql, args, out);
}

static const char *
jstr(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

int
pgi_image_save(struct pg_store *st, json_t *inv, int64_t *id_out)
{
	json_t *os = json_object_get(inv, "os"), *parts = json_object_get(inv, "partitions");
	json_t *pk = json_object_get(inv, "packages"), *pt = json_object_get(inv, "ptable");
	int64_t id = 0;
	char now[32], *chain = NULL;
	int rc;

	pgi_now_iso(now, sizeof(now));
	chain = pg_json_dumps(json_object_get(inv, "chain"), JSON_COMPACT);
	PG_TRY_GOTO(pg_db_begin(st->pdb), out, "image", "begin");
	/* Upsert: an image keeps its id across rescans, so jobs stay linked. */
	PG_TRY_GOTO(
	    pgi_image_run(
		st,
		"INSERT INTO image(path, format, format_version, virtual_size, file_size,"
		" sha256, chain, ptable, disk_guid, os_id, os_version_id, os_pretty,"
		" mtime_ns, scanned_at, file_ino)"
		" VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
		" ON CONFLICT(path) DO UPDATE SET format = excluded.format,"
		" format_version = excluded.format_version, virtual_size = excluded.virtual_size,"
		" file_size = excluded.file_size, sha256 = excluded.sha256, chain = excluded.chain,"
		" ptable = excluded.ptable, disk_guid = excluded.disk_guid, os_id = excluded.os_id,"
		" os_version_id = excluded.os_version_id, os_pretty = excluded.os_pretty,"
		" mtime_ns = excluded.mtime_ns, scanned_at = excluded.scanned_at,"
		" file_ino = excluded.file_ino",
		json_pack("[s,s,O,O,O,s?,s?,s?,s?,s?,s?,s?,O,s,O]", jstr(inv, "path"),
			  jstr(inv, "format"), json_object_get(inv, "format_version"),
			  json_object_get(inv, "virtual_size"), json_object_get(inv, "file_size"),
			  jstr(inv, "sha256"), chain, jstr(pt, "scheme"), jstr(pt, "disk_guid"),
			  jstr(os, "ID"), jstr(os, "VERSION_ID"), jstr(os, "PRETTY_NAME"),
			  json_object_get(inv, "mtime_ns"), now, json_object_get(inv, "file_ino")),
		NULL),
	    fail, "image", "insert image");
	{
		json_t *rows = NULL;

		PG_TRY_GOTO(pgi_image_query(st, "SELECT id FROM image WHERE path = ?",
					    json_pack("[s]", jstr(inv, "path")), &rows),
			    fail, "image", "image id");
		id = json_integer_value(json_object_get(json_array_get(rows, 0), "id"));
		json_decref(rows);
	}
	PG_TRY_GOTO(pgi_image_run(st, "DELETE FROM image_partition WHERE image_id = ?",
				  json_pack("[I]", (json_int_t)id), NULL),
		    fail, "image", "delete");
	PG_TRY_GOTO(pgi_image_run(st, "DELETE FROM image_kernel WHERE image_id = ?",
				  json_pack("[I]", (json_int_t)id), NULL),
		    fail, "image", "delete");
	PG_TRY_GOTO(pgi_image_run(st, "DELETE FROM image_package WHERE image_id = ?",
				  json_pack("[I]", (json_int_t)id), NULL),
		    fail, "image", "delete");
	for (size_t i = 0; i < json_array_size(parts); i++) {
		json_t *p = json_array_get(parts, i), *k = json_object_get(p, "kernels");

		PG_TRY_GOTO(
		    pgi_image_run(
			st,
			"INSERT INTO image_partition(image_id, idx, start, size, type, uuid,"
			" name, logical, fs, supported, fs_uuid, fs_label, is_root,"
			" needs_recovery) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
			json_pack("[I,O,O,O,s?,s?,s?,O,s?,b,s?,s?,b,b]", (json_int_t)id,
				  json_object_get(p, "index"), json_object_get(p, "start"),
				  json_object_get(p, "size"), jstr(p, "type"), jstr(p, "uuid"),
				  jstr(p, "name"), json_object_get(p, "logical"), jstr(p, "fs"),
				  json_is_true(json_object_get(p, "supported")), jstr(p, "fs_uuid"),
				  jstr(p, "fs_label"), json_is_true(json_object_get(p, "root")),
				  json_is_true(json_object_get(p, "needs_recovery"))),
			NULL),
		    fail, "image", "insert partition");
		for (size_t j = 0; j < json_array_size(k); j++) {
			json_t *kk = json_array_get(k, j);

			PG_TRY_GOTO(
			    pgi_image_run(
				st,
				"INSERT INTO image_kernel(image_id, part_idx, path, version,"
				" banner) VALUES(?,?,?,?,?)",
				json_pack("[I,O,s,s,s?]", (json_int_t)id,
					  json_object_get(p, "index"), jstr(kk, "path"),
					  jstr(kk, "version"), jstr(kk, "banner")),
				NULL),
			    fail, "image", "insert kernel");
		}
	}
	for (size_t i = 0; i < json_array_size(pk); i++) {
		json_t *p = json_array_get(pk, i);

		/* a later duplicate (name, arch) replaces the earlier one */
		PG_TRY_GOTO(pgi_image_run(st,
					  "INSERT INTO image_package(image_id, name, version, arch,"
					  " source, source_version, status) VALUES(?,?,?,?,?,?,?)"
					  " ON CONFLICT(image_id, name, arch) DO UPDATE SET"
					  " version = excluded.version, source = excluded.source,"
					  " source_version = excluded.source_version,"
					  " status = excluded.status",
					  json_pack("[I,s?,s?,s?,s?,s?,s?]", (json_int_t)id,
						    jstr(p, "name"), jstr(p, "version"),
						    jstr(p, "arch"), jstr(p, "source"),
						    jstr(p, "source_version"), jstr(p, "status")),
					  NULL),
			    fail, "image", "insert package");
	}
	PG_TRY_GOTO(pgi_image__findings_sync(st, id), fail, "image", "findings");
	PG_TRY_GOTO(pg_db_commit(st->pdb), fail, "image", "commit");
	json_object_set_new(inv, "id", json_integer(id));
	if (id_out)
		*id_out = id;
	rc = 0;
	goto out;
fail:
	pg_db_rollback(st->pdb);
out:
	free(chain);
	return rc;
}

int
pgi_image_resolve(struct pg_store *st, const char *ref, int64_t *id, char **path)
{
	json_t *rows = NULL;
	char real[4096];
	int rc;

	if (!realpath(ref, real))
		snprintf(real, sizeof(real), "%s", ref);
	rc = pgi_image_query(
	    st,
	    "SELECT id, path FROM image WHERE CAST(id AS TEXT) = ? OR path = ?"
	    " OR (length(CAST(? AS TEXT)) >= 8 AND sha256 LIKE CAST(? AS TEXT) || '%')"
	    " ORDER BY id",
	    json_pack("[s,s,s,s]", ref, real, ref, ref), &rows);
	if (rc < 0)
		return rc;
	if (json_array_size(rows) == 0) {
		json_decref(rows);
		return pg_error(PG_ENOENT, "image", "no image '%s' in the store (scan it first)",
				ref);
	}
	if (json_array_size(rows) > 1) {
		json_decref(rows);
		return pg_error(PG_EINVAL, "image", "'%s' names more than one image", ref);
	}
	*id = json_integer_value(json_object_get(json_array_get(rows, 0), "id"));
	if (path)
		*path = strdup(json_string_value(json_object_get(json_array_get(rows, 0), "path")));
	json_decref(rows);
	return 0;
}

int
pg_image_list(struct pg_store *st, json_t **out)
{
	return pgi_image_query(
	    st,
	    "SELECT i.id, i.path, i.format, i.virtual_size, i.sha256, i.os_pretty,"
	    " (SELECT count(*) FROM image_package p WHERE p.image_id = i.id) AS packages,"
	    " (SELECT count(*) FROM image_partition p WHERE p.image_id = i.id) AS partitions,"
	    " i.scanned_at FROM image i ORDER BY i.id",
	    NULL, out);
}

/* The dpkg packages stored for one image, by name then architecture. */
static int
packages_of(struct pg_store *st, int64_t id, json_t **out)
{
	return pgi_image_query(st,
			       "SELECT name, version, arch, source, source_version, status"
			       " FROM image_package WHERE image_id = ? ORDER BY name, arch",
			       json_pack("[I]", (json_int_t)id), out);
}

int
pg_image_packages(struct pg_store *st, const char *ref, json_t **out)
{
	int64_t id;
	int rc;

	*out = NULL;
	rc = pgi_image_resolve(st, ref, &id, NULL);
	if (rc < 0)
		return rc;
	return packages_of(st, id, out);
}

int
pg_image_show(struct pg_store *st, const char *ref, json_t **out)
{
	int64_t id;
	json_t *img = NULL, *v = NULL;
	int rc;

	*out = NULL;
	rc = pgi_image_resolve(st, ref, &id, NULL);
	if (rc < 0)
		return rc;
	rc = pgi_image_query(st, "SELECT * FROM image WHERE id = ?",
			     json_pack("[I]", (json_int_t)id), &v);
	if (rc < 0)
		return rc;
	img = json_incref(json_array_get(v, 0));
	json_decref(v);
	{
		const char *c = json_string_value(json_object_get(img, "chain"));
		json_t *cj = c ? json_loads(c, 0, NULL) : NULL;

		json_object_set_new(img, "chain", cj ? cj : json_array());
	}
	PG_TRY_GOTO(pgi_image_query(st,
				    "SELECT * FROM image_partition WHERE image_id = ? ORDER BY idx",
				    json_pack("[I]", (json_int_t)id), &v),
		    fail, "image", "partitions");
	json_object_set_new(img, "partitions", v);
	PG_TRY_GOTO(pgi_image_query(st,
				    "SELECT part_idx, path, version, banner FROM image_kernel"
				    " WHERE image_id = ? ORDER BY path",
				    json_pack("[I]", (json_int_t)id), &v),
		    fail, "image", "kernels");
	json_object_set_new(img, "kernels", v);
	PG_TRY_GOTO(packages_of(st, id, &v), fail, "image", "packages");
	json_object_set_new(img, "packages", v);
	*out = img;
	return 0;
fail:
	json_decref(img);
	return rc;
}

int
pg_image_advisories_import(struct pg_store *st, const char *path, size_t *count)
{
	return pg_image_advisories_import_fmt(st, path, "auto", count);
}

int
pg_image_advisories_import_fmt(struct pg_store *st, const char *path, const char *format,
			       size_t *count)
{
	const char *found = "osv";
	struct pg_osv *v = NULL;
	size_t n = 0;
	uint8_t *data = NULL;
	size_t len = 0;
	char now[32];
	int rc;

	*count = 0;
	rc = pg_read_file(path, 256u << 20, &data, &len);
	if (rc < 0)
		return pg_error_ctx(rc, "osv", "cannot read '%s'", path);
	rc = pgi_advisories_parse((const char *)data, len, format, &v, &n, &found);
	free(data);
	if (rc < 0)
		return pg_error_ctx(rc, found, "'%s'", path);
	pgi_now_iso(now, sizeof(now));
	PG_TRY_GOTO(pg_db_begin(st->pdb), out, "osv", "begin");
	for (size_t i = 0; i < n; i++) {
		PG_TRY_GOTO(pgi_image_run(st, "DELETE FROM advisory WHERE id = ?",
					  json_pack("[s]", v[i].id), NULL),
			    fail, "osv", "delete");
		PG_TRY_GOTO(pgi_image_run(
				st,
				"INSERT INTO advisory(id, summary, modified, imported_at)"
				" VALUES(?,?,?,?)",
				json_pack("[s,s?,s?,s]", v[i].id, v[i].summary, v[i].modified, now),
				NULL),
			    fail, "osv", "insert");
		for (size_t j = 0; j < v[i].nr; j++) {
			struct pg_osv_range *r = &v[i].r[j];

			PG_TRY_GOTO(
			    pgi_image_run(
				st,
				"INSERT INTO advisory_range(advisory_id, ecosystem, package,"
				" introduced, fixed) VALUES(?,?,?,?,?)",
				json_pack("[s,s,s,s,s?]", v[i].id, r->ecosystem, r->package,
					  r->introduced, r->fixed),
				NULL),
			    fail, "osv", "insert range");
		}
	}
	PG_TRY_GOTO(pgi_image__findings_sync(st, -1), fail, "osv", "findings");
	PG_TRY_GOTO(pg_db_commit(st->pdb), fail, "osv", "commit");
	*count = n;
	goto out;
fail:
	pg_db_rollback(st->pdb);
out:
	pgi_osv_free(v, n);
	return rc;
}

/*
 * Whether an advisory range's ecosystem applies to an image: "Debian" to
 * every one, "Debian:N" to images whose VERSION_ID reads as N the way
 * SQLite's CAST(... AS INTEGER) reads it (leading integer, else 0).
 */
static int
ecosystem_applies(const char *eco, json_t *os_version_id)
{
	const char *v = json_string_value(os_version_id);
	char want[40];
	long long n = 0;
	int neg = 0;

	if (strcmp(eco, "Debian") == 0)
		return 1;
	if (!v)
		return 0;
	while (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r' || *v == '\f' || *v == '\v')
		v++;
	if (*v == '-' || *v == '+')
		neg = *v++ == '-';
	for (; *v >= '0' && *v <= '9' && n < 100000000000000000LL; v++)
		n = n * 10 + (*v - '0');
	snprintf(want, sizeof(want), "Debian:%lld", neg ? -n : n);
	return strcmp(eco, want) == 0;
}

/* Whether the installed source version lies in [introduced, fixed). */
static int
version_affected(json_t *r)
{
	const char *v = json_string_value(json_object_get(r, "source_version"));
	const char *intro = json_string_value(json_object_get(r, "introduced"));
	const char *fixed = json_string_value(json_object_get(r, "fixed"));

	if (!v || !intro || pg_debver_cmp(v, intro) < 0)
		return 0;
	return !fixed || pg_debver_cmp(v, fixed) < 0;
}

/* Same image, package and advisory: the rows a duplicate can be among. */
static int
same_group(json_t *a, json_t *b)
{
	static const char *const k[] = {"image_id", "package", "advisory"};

	for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++)
		if (!json_equal(json_object_get(a, k[i]), json_object_get(b, k[i])))
			return 0;
	return 1;
}

static int
already_kept(json_t *kept, json_t *row)
{
	for (size_t i = json_array_size(kept); i-- > 0;) {
		json_t *k = json_array_get(kept, i);

		if (!same_group(k, row))
			return 0;
		if (json_equal(k, row))
			return 1;
	}
	return 0;
}

/* The findings of image id (-1: of every image), computed from the store. */
static int
findings_of(struct pg_store *st, int64_t id, json_t **out)
{
	json_t *rows = NULL, *kept;
	size_t i;
	json_t *r;
	int rc;

	*out = NULL;
	/*
	 * Debian advisories name source packages and source versions; an
	 * ecosystem "Debian:N" applies to images whose VERSION_ID major is N.
	 * The store gives the candidate rows; the version range and the
	 * release are decided here with the Debian ordering of debver.c, the
	 * same on every engine (neither has dpkg's comparison built in).
	 */
	rc = pgi_image_query(st,
			     "SELECT i.id AS image_id, i.path AS image, p.name AS package,"
			     " p.version, p.source, p.source_version, a.id AS advisory, r.fixed,"
			     " a.summary, r.introduced, r.ecosystem, i.os_version_id"
			     " FROM image i JOIN image_package p ON p.image_id = i.id"
			     " JOIN advisory_range r ON r.package = p.source"
			     " JOIN advisory a ON a.id = r.advisory_id"
			     " WHERE (? < 0 OR i.id = ?)"
			     "  AND (p.status LIKE '% installed' OR p.status LIKE '% unpacked'"
			     "       OR p.status LIKE '% half-configured')"
			     "  AND (r.ecosystem = 'Debian' OR r.ecosystem LIKE 'Debian:%')"
			     " ORDER BY i.id, p.name, a.id, p.version, p.source_version,"
			     " coalesce(r.fixed, ''), r.fixed IS NULL, p.source, a.summary",
			     json_pack("[I,I]", (json_int_t)id, (json_int_t)id), &rows);
	if (rc < 0)
		return rc;
	kept = json_array();
	json_array_foreach(rows, i, r)
	{
		if (!ecosystem_applies(json_string_value(json_object_get(r, "ecosystem")),
				       json_object_get(r, "os_version_id")) ||
		    !version_affected(r))
			continue;
		json_object_del(r, "introduced");
		json_object_del(r, "ecosystem");
		json_object_del(r, "os_version_id");
		if (!already_kept(kept, r))
			json_array_append(kept, r);
	}
	json_decref(rows);
	*out = kept;
	return 0;
}

int
pg_image_findings(struct pg_store *st, const char *ref, json_t **out)
{
	int64_t id = -1;
	int rc;

	*out = NULL;
	if (ref) {
		rc = pgi_image_resolve(st, ref, &id, NULL);
		if (rc < 0)
			return rc;
	}
	return findings_of(st, id, out);
}

/* "image_id|advisory|package": a finding's key in the state table. */
static char *
finding_key(json_t *image_id, const char *advisory, const char *package)
{
	size_t n = 24 + (advisory ? strlen(advisory) : 0) + (package ? strlen(package) : 0);
	char *k = malloc(n);

	if (k)
		snprintf(k, n, "%lld|%s|%s", (long long)json_integer_value(image_id),
			 advisory ? advisory : "", package ? package : "");
	return k;
}

/* One finding_found / finding_fixed event, subject "image-<id>". */
static int
finding_event(struct pg_store *st, const char *event, json_t *row)
{
	char subj[40];
	int rc;

	snprintf(subj, sizeof(subj), "image-%lld",
		 (long long)json_integer_value(json_object_get(row, "image_id")));
	rc = pg_event_emit(st->pdb, "image", event, subj, row, NULL);
	return rc;
}

static int
finding_found(struct pg_store *st, json_t *f, const char *now)
{
	json_t *d;
	int rc = pgi_image_run(
	    st,
	    "INSERT INTO image_finding_state(image_id, advisory, package, version, fixed, since)"
	    " VALUES(?,?,?,?,?,?)",
	    json_pack("[O,O,O,O,O,s]", json_object_get(f, "image_id"),
		      json_object_get(f, "advisory"), json_object_get(f, "package"),
		      json_object_get(f, "version"), json_object_get(f, "fixed"), now),
	    NULL);

	if (rc < 0)
		return rc;
	d = json_pack("{s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O}", "image_id",
		      json_object_get(f, "image_id"), "image", json_object_get(f, "image"),
		      "advisory", json_object_get(f, "advisory"), "package",
		      json_object_get(f, "package"), "version", json_object_get(f, "version"),
		      "source", json_object_get(f, "source"), "source_version",
		      json_object_get(f, "source_version"), "fixed", json_object_get(f, "fixed"),
		      "summary", json_object_get(f, "summary"));
	if (!d)
		return PG_ENOMEM;
	rc = finding_event(st, "finding_found", d);
	json_decref(d);
	return rc;
}

/* A stored finding that is no longer computed: gone, with the package's version now. */
static int
finding_fixed(struct pg_store *st, json_t *old)
{
	json_t *rows = NULL, *d;
	int rc = pgi_image_run(
	    st,
	    "DELETE FROM image_finding_state WHERE image_id = ? AND advisory = ? AND package = ?",
	    json_pack("[O,O,O]", json_object_get(old, "image_id"), json_object_get(old, "advisory"),
		      json_object_get(old, "package")),
	    NULL);

	if (rc == 0)
		rc = pgi_image_query(
		    st,
		    "SELECT p.version, i.path FROM image i LEFT JOIN image_package p"
		    " ON p.image_id = i.id AND p.name = ? WHERE i.id = ?"
		    " ORDER BY p.version LIMIT 1",
		    json_pack("[O,O]", json_object_get(old, "package"),
			      json_object_get(old, "image_id")),
		    &rows);
	if (rc < 0)
		return rc;
	d = json_pack("{s:O, s:O, s:O, s:O, s:O, s:O, s:O}", "image_id",
		      json_object_get(old, "image_id"), "image",
		      json_object_get(json_array_get(rows, 0), "path")
			  ? json_object_get(json_array_get(rows, 0), "path")
			  : json_null(),
		      "advisory", json_object_get(old, "advisory"), "package",
		      json_object_get(old, "package"), "was_version",
		      json_object_get(old, "version"), "version",
		      json_object_get(json_array_get(rows, 0), "version")
			  ? json_object_get(json_array_get(rows, 0), "version")
			  : json_null(),
		      "since", json_object_get(old, "since"));
	json_decref(rows);
	if (!d)
		return PG_ENOMEM;
	rc = finding_event(st, "finding_fixed", d);
	json_decref(d);
	return rc;
}

int
pgi_image__findings_sync(struct pg_store *st, int64_t id)
{
	json_t *now_f = NULL, *old = NULL, *seen = NULL, *r;
	char now[32];
	size_t i;
	int rc;

	pgi_now_iso(now, sizeof(now));
	rc = findings_of(st, id, &now_f);
	if (rc == 0)
		rc = pgi_image_query(st,
				     "SELECT image_id, advisory, package, version, since"
				     " FROM image_finding_state WHERE (? < 0 OR image_id = ?)"
				     " ORDER BY image_id, advisory, package",
				     json_pack("[I,I]", (json_int_t)id, (json_int_t)id), &old);
	seen = json_object();
	if (rc < 0 || !seen)
		goto out;
	json_array_foreach(old, i, r)
	{
		char *k = finding_key(json_object_get(r, "image_id"),
				      json_string_value(json_object_get(r, "advisory")),
				      json_string_value(json_object_get(r, "package")));

		if (!k) {
			rc = PG_ENOMEM;
			goto out;
		}
		json_object_set(seen, k, r);
		free(k);
	}
	/* new ones, once per key (several ranges of one advisory give several rows) */
	json_array_foreach(now_f, i, r)
	{
		char *k = finding_key(json_object_get(r, "image_id"),
				      json_string_value(json_object_get(r, "advisory")),
				      json_string_value(json_object_get(r, "package")));
		json_t *was;

		if (!k) {
			rc = PG_ENOMEM;
			goto out;
		}
		was = json_object_get(seen, k);
		if (!was)
			rc = finding_found(st, r, now);
		if (rc == 0)
			rc = json_object_set_new(seen, k, json_false()) < 0 ? PG_ENOMEM : 0;
		free(k);
		if (rc < 0)
			goto out;
	}
	/* stored ones no longer computed */
	json_array_foreach(old, i, r)
	{
		char *k = finding_key(json_object_get(r, "image_id"),
				      json_string_value(json_object_get(r, "advisory")),
				      json_string_value(json_object_get(r, "package")));
		int gone = k && json_is_object(json_object_get(seen, k));

		free(k);
		if (gone && (rc = finding_fixed(st, r)) < 0)
			goto out;
	}
out:
	json_decref(now_f);
	json_decref(old);
	json_decref(seen);
	return rc;
}
