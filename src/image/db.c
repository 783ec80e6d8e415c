/*
 * The image area's tables in the shared SQLite store (schema documented in
 * docs/image.md): images and their partitions, kernels and packages; OSV
 * advisories; upgrade jobs. SQL function debver_cmp() gives queries the
 * exact Debian version ordering.
 */
#include "image_int.h"
#include "imagedb.h"
#include "inspect.h"

#include "payguard/json.h"
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/log.h"
#include "payguard/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct pg_migration migrations[] = {
    {1, "CREATE TABLE image("
	" id INTEGER PRIMARY KEY,"
	" path TEXT NOT NULL UNIQUE,"
	" format TEXT NOT NULL,"
	" format_version INTEGER NOT NULL DEFAULT 0,"
	" virtual_size INTEGER NOT NULL,"
	" file_size INTEGER NOT NULL,"
	" sha256 TEXT,"
	" chain TEXT,"
	" ptable TEXT,"
	" disk_guid TEXT,"
	" os_id TEXT, os_version_id TEXT, os_pretty TEXT,"
	" mtime_ns INTEGER,"
	" scanned_at TEXT NOT NULL);"
	"CREATE TABLE image_partition("
	" image_id INTEGER NOT NULL REFERENCES image(id) ON DELETE CASCADE,"
	" idx INTEGER NOT NULL, start INTEGER NOT NULL, size INTEGER NOT NULL,"
	" type TEXT, uuid TEXT, name TEXT, logical INTEGER NOT NULL DEFAULT 0,"
	" fs TEXT, supported INTEGER NOT NULL DEFAULT 0, fs_uuid TEXT, fs_label TEXT,"
	" is_root INTEGER NOT NULL DEFAULT 0, needs_recovery INTEGER NOT NULL DEFAULT 0,"
	" PRIMARY KEY(image_id, idx));"
	"CREATE TABLE image_kernel("
	" image_id INTEGER NOT NULL REFERENCES image(id) ON DELETE CASCADE,"
	" part_idx INTEGER NOT NULL, path TEXT NOT NULL, version TEXT NOT NULL, banner TEXT);"
	"CREATE TABLE image_package("
	" image_id INTEGER NOT NULL REFERENCES image(id) ON DELETE CASCADE,"
	" name TEXT NOT NULL, version TEXT, arch TEXT, source TEXT NOT NULL,"
	" source_version TEXT NOT NULL, status TEXT,"
	" PRIMARY KEY(image_id, name, arch));"
	"CREATE TABLE advisory("
	" id TEXT PRIMARY KEY, summary TEXT, modified TEXT, imported_at TEXT NOT NULL);"
	"CREATE TABLE advisory_range("
	" advisory_id TEXT NOT NULL REFERENCES advisory(id) ON DELETE CASCADE,"
	" ecosystem TEXT NOT NULL, package TEXT NOT NULL,"
	" introduced TEXT NOT NULL DEFAULT '0', fixed TEXT);"
	"CREATE INDEX advisory_range_pkg ON advisory_range(package);"
	"CREATE TABLE image_job("
	" id INTEGER PRIMARY KEY,"
	" image_id INTEGER REFERENCES image(id) ON DELETE SET NULL,"
	" image_path TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL,"
	" overlay TEXT, pid INTEGER, started_at TEXT NOT NULL, finished_at TEXT,"
	" log TEXT NOT NULL DEFAULT '', result TEXT);"},
    /* v2: findings join on source names; keep that lookup indexed. */
    {2, "CREATE INDEX image_package_source ON image_package(source);"},
    /* v3: the inode joins size and mtime in deciding whether a stored
     * hash still describes the file. */
    {3, "ALTER TABLE image ADD COLUMN file_ino INTEGER;"},
    /* v4: upgrade jobs report how far they are (0..1 of the bytes to
     * unpack), for a daemon's job list; NULL for jobs from before. */
    {4, "ALTER TABLE image_job ADD COLUMN progress REAL;"},
};

static void
sql_debver_cmp(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	const char *a = (const char *)sqlite3_value_text(argv[0]);
	const char *b = (const char *)sqlite3_value_text(argv[1]);

	if (!a || !b) {
		sqlite3_result_null(ctx);
		return;
	}
	sqlite3_result_int(ctx, pg_debver_cmp(a, b));
}

int
pg_image_db_open(struct pg_store *st)
{
	int rc =
	    sqlite3_create_function(st->db, "debver_cmp", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC,
				    NULL, sql_debver_cmp, NULL, NULL);

	if (rc != SQLITE_OK)
		return pg_store_fail(st, rc, "debver_cmp");
	return pg_store_migrate(st, "image", migrations,
				sizeof(migrations) / sizeof(migrations[0]));
}

void
pg_now_iso(char *buf, size_t n)
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Binds json values (string, integer, bool, null) to ?1..?n and steps. */
int
pg_db_run(struct pg_store *st, const char *sql, json_t *args, sqlite3_int64 *rowid)
{
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);

	if (rc != SQLITE_OK) {
		json_decref(args);
		return pg_store_fail(st, rc, "prepare");
	}
	for (size_t i = 0; args && i < json_array_size(args); i++) {
		json_t *v = json_array_get(args, i);
		int col = (int)i + 1;

		if (json_is_string(v))
			sqlite3_bind_text(s, col, json_string_value(v), -1, SQLITE_TRANSIENT);
		else if (json_is_integer(v))
			sqlite3_bind_int64(s, col, json_integer_value(v));
		else if (json_is_boolean(v))
			sqlite3_bind_int(s, col, json_is_true(v));
		else if (json_is_real(v))
			sqlite3_bind_double(s, col, json_real_value(v));
		else
			sqlite3_bind_null(s, col);
	}
	json_decref(args);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return pg_store_fail(st, rc, "step");
	if (rowid)
		*rowid = sqlite3_last_insert_rowid(st->db);
	return 0;
}

/* Runs a query and returns rows as an array of objects keyed by column. */
int
pg_db_query(struct pg_store *st, const char *sql, json_t *args, json_t **out)
{
	sqlite3_stmt *s = NULL;
	json_t *arr = json_array();
	int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);

	*out = NULL;
	if (rc != SQLITE_OK) {
		json_decref(arr);
		json_decref(args);
		return pg_store_fail(st, rc, "prepare");
	}
	for (size_t i = 0; args && i < json_array_size(args); i++) {
		json_t *v = json_array_get(args, i);

		if (json_is_string(v))
			sqlite3_bind_text(s, (int)i + 1, json_string_value(v), -1,
					  SQLITE_TRANSIENT);
		else if (json_is_integer(v))
			sqlite3_bind_int64(s, (int)i + 1, json_integer_value(v));
		else
			sqlite3_bind_null(s, (int)i + 1);
	}
	json_decref(args);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		json_t *row = json_object();

		for (int c = 0; c < sqlite3_column_count(s); c++) {
			const char *name = sqlite3_column_name(s, c);

			switch (sqlite3_column_type(s, c)) {
			case SQLITE_INTEGER:
				json_object_set_new(row, name,
						    json_integer(sqlite3_column_int64(s, c)));
				break;
			case SQLITE_NULL:
				json_object_set_new(row, name, json_null());
				break;
			case SQLITE_FLOAT:
				json_object_set_new(row, name,
						    json_real(sqlite3_column_double(s, c)));
				break;
			default:
				json_object_set_new(
				    row, name,
				    json_string((const char *)sqlite3_column_text(s, c)));
			}
		}
		json_array_append_new(arr, row);
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		json_decref(arr);
		return pg_store_fail(st, rc, "query");
	}
	*out = arr;
	return 0;
}

static const char *
jstr(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

int
pg_image_save(struct pg_store *st, json_t *inv, sqlite3_int64 *id_out)
{
	json_t *os = json_object_get(inv, "os"), *parts = json_object_get(inv, "partitions");
	json_t *pk = json_object_get(inv, "packages"), *pt = json_object_get(inv, "ptable");
	sqlite3_int64 id = 0;
	char now[32], *chain = NULL;
	int rc;

	pg_now_iso(now, sizeof(now));
	chain = pg_json_dumps(json_object_get(inv, "chain"), JSON_COMPACT);
	PG_TRY_GOTO(pg_store_begin(st), out, "image", "begin");
	/* Upsert: an image keeps its id across rescans, so jobs stay linked. */
	PG_TRY_GOTO(
	    pg_db_run(
		st,
		"INSERT INTO image(path, format, format_version, virtual_size, file_size,"
		" sha256, chain, ptable, disk_guid, os_id, os_version_id, os_pretty,"
		" mtime_ns, scanned_at, file_ino)"
		" VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)"
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

		PG_TRY_GOTO(pg_db_query(st, "SELECT id FROM image WHERE path = ?1",
					json_pack("[s]", jstr(inv, "path")), &rows),
			    fail, "image", "image id");
		id = json_integer_value(json_object_get(json_array_get(rows, 0), "id"));
		json_decref(rows);
	}
	PG_TRY_GOTO(pg_db_run(st, "DELETE FROM image_partition WHERE image_id = ?1",
			      json_pack("[I]", (json_int_t)id), NULL),
		    fail, "image", "delete");
	PG_TRY_GOTO(pg_db_run(st, "DELETE FROM image_kernel WHERE image_id = ?1",
			      json_pack("[I]", (json_int_t)id), NULL),
		    fail, "image", "delete");
	PG_TRY_GOTO(pg_db_run(st, "DELETE FROM image_package WHERE image_id = ?1",
			      json_pack("[I]", (json_int_t)id), NULL),
		    fail, "image", "delete");
	for (size_t i = 0; i < json_array_size(parts); i++) {
		json_t *p = json_array_get(parts, i), *k = json_object_get(p, "kernels");

		PG_TRY_GOTO(
		    pg_db_run(
			st,
			"INSERT INTO image_partition(image_id, idx, start, size, type, uuid,"
			" name, logical, fs, supported, fs_uuid, fs_label, is_root,"
			" needs_recovery) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)",
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
			    pg_db_run(st,
				      "INSERT INTO image_kernel(image_id, part_idx, path, version,"
				      " banner) VALUES(?1,?2,?3,?4,?5)",
				      json_pack("[I,O,s,s,s?]", (json_int_t)id,
						json_object_get(p, "index"), jstr(kk, "path"),
						jstr(kk, "version"), jstr(kk, "banner")),
				      NULL),
			    fail, "image", "insert kernel");
		}
	}
	{
		sqlite3_stmt *s = NULL;

		rc = sqlite3_prepare_v2(
		    st->db,
		    "INSERT OR REPLACE INTO image_package(image_id, name, version, arch,"
		    " source, source_version, status) VALUES(?1,?2,?3,?4,?5,?6,?7)",
		    -1, &s, NULL);
		if (rc != SQLITE_OK) {
			rc = pg_store_fail(st, rc, "prepare package insert");
			goto fail;
		}
		for (size_t i = 0; i < json_array_size(pk); i++) {
			json_t *p = json_array_get(pk, i);

			sqlite3_bind_int64(s, 1, id);
			sqlite3_bind_text(s, 2, jstr(p, "name"), -1, SQLITE_TRANSIENT);
			sqlite3_bind_text(s, 3, jstr(p, "version"), -1, SQLITE_TRANSIENT);
			sqlite3_bind_text(s, 4, jstr(p, "arch"), -1, SQLITE_TRANSIENT);
			sqlite3_bind_text(s, 5, jstr(p, "source"), -1, SQLITE_TRANSIENT);
			sqlite3_bind_text(s, 6, jstr(p, "source_version"), -1, SQLITE_TRANSIENT);
			sqlite3_bind_text(s, 7, jstr(p, "status"), -1, SQLITE_TRANSIENT);
			rc = sqlite3_step(s);
			sqlite3_reset(s);
			if (rc != SQLITE_DONE) {
				rc = pg_store_fail(st, rc, "insert package");
				sqlite3_finalize(s);
				goto fail;
			}
		}
		sqlite3_finalize(s);
	}
	PG_TRY_GOTO(pg_store_commit(st), fail, "image", "commit");
	json_object_set_new(inv, "id", json_integer(id));
	if (id_out)
		*id_out = id;
	rc = 0;
	goto out;
fail:
	pg_store_rollback(st);
out:
	free(chain);
	return rc;
}

int
pg_image_resolve(struct pg_store *st, const char *ref, sqlite3_int64 *id, char **path)
{
	json_t *rows = NULL;
	char real[4096];
	int rc;

	if (!realpath(ref, real))
		snprintf(real, sizeof(real), "%s", ref);
	rc = pg_db_query(st,
			 "SELECT id, path FROM image WHERE CAST(id AS TEXT) = ?1 OR path = ?2"
			 " OR (length(?1) >= 8 AND sha256 LIKE ?1 || '%') ORDER BY id",
			 json_pack("[s,s]", ref, real), &rows);
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
	return pg_db_query(
	    st,
	    "SELECT i.id, i.path, i.format, i.virtual_size, i.sha256, i.os_pretty,"
	    " (SELECT count(*) FROM image_package p WHERE p.image_id = i.id) AS packages,"
	    " (SELECT count(*) FROM image_partition p WHERE p.image_id = i.id) AS partitions,"
	    " i.scanned_at FROM image i ORDER BY i.id",
	    NULL, out);
}

/* The dpkg packages stored for one image, by name then architecture. */
static int
packages_of(struct pg_store *st, sqlite3_int64 id, json_t **out)
{
	return pg_db_query(st,
			   "SELECT name, version, arch, source, source_version, status"
			   " FROM image_package WHERE image_id = ?1 ORDER BY name, arch",
			   json_pack("[I]", (json_int_t)id), out);
}

int
pg_image_packages(struct pg_store *st, const char *ref, json_t **out)
{
	sqlite3_int64 id;
	int rc;

	*out = NULL;
	rc = pg_image_resolve(st, ref, &id, NULL);
	if (rc < 0)
		return rc;
	return packages_of(st, id, out);
}

int
pg_image_show(struct pg_store *st, const char *ref, json_t **out)
{
	sqlite3_int64 id;
	json_t *img = NULL, *v = NULL;
	int rc;

	*out = NULL;
	rc = pg_image_resolve(st, ref, &id, NULL);
	if (rc < 0)
		return rc;
	rc = pg_db_query(st, "SELECT * FROM image WHERE id = ?1", json_pack("[I]", (json_int_t)id),
			 &v);
	if (rc < 0)
		return rc;
	img = json_incref(json_array_get(v, 0));
	json_decref(v);
	{
		const char *c = json_string_value(json_object_get(img, "chain"));
		json_t *cj = c ? json_loads(c, 0, NULL) : NULL;

		json_object_set_new(img, "chain", cj ? cj : json_array());
	}
	PG_TRY_GOTO(pg_db_query(st,
				"SELECT * FROM image_partition WHERE image_id = ?1 ORDER BY idx",
				json_pack("[I]", (json_int_t)id), &v),
		    fail, "image", "partitions");
	json_object_set_new(img, "partitions", v);
	PG_TRY_GOTO(pg_db_query(st,
				"SELECT part_idx, path, version, banner FROM image_kernel"
				" WHERE image_id = ?1 ORDER BY path",
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
	rc = pg_advisories_parse((const char *)data, len, format, &v, &n, &found);
	free(data);
	if (rc < 0)
		return pg_error_ctx(rc, found, "'%s'", path);
	pg_now_iso(now, sizeof(now));
	PG_TRY_GOTO(pg_store_begin(st), out, "osv", "begin");
	for (size_t i = 0; i < n; i++) {
		PG_TRY_GOTO(pg_db_run(st, "DELETE FROM advisory WHERE id = ?1",
				      json_pack("[s]", v[i].id), NULL),
			    fail, "osv", "delete");
		PG_TRY_GOTO(
		    pg_db_run(st,
			      "INSERT INTO advisory(id, summary, modified, imported_at)"
			      " VALUES(?1,?2,?3,?4)",
			      json_pack("[s,s?,s?,s]", v[i].id, v[i].summary, v[i].modified, now),
			      NULL),
		    fail, "osv", "insert");
		for (size_t j = 0; j < v[i].nr; j++) {
			struct pg_osv_range *r = &v[i].r[j];

			PG_TRY_GOTO(
			    pg_db_run(st,
				      "INSERT INTO advisory_range(advisory_id, ecosystem, package,"
				      " introduced, fixed) VALUES(?1,?2,?3,?4,?5)",
				      json_pack("[s,s,s,s,s?]", v[i].id, r->ecosystem, r->package,
						r->introduced, r->fixed),
				      NULL),
			    fail, "osv", "insert range");
		}
	}
	PG_TRY_GOTO(pg_store_commit(st), fail, "osv", "commit");
	*count = n;
	goto out;
fail:
	pg_store_rollback(st);
out:
	pg_osv_free(v, n);
	return rc;
}

int
pg_image_findings(struct pg_store *st, const char *ref, json_t **out)
{
	sqlite3_int64 id = -1;
	int rc;

	if (ref) {
		rc = pg_image_resolve(st, ref, &id, NULL);
		if (rc < 0)
			return rc;
	}
	/* Debian advisories name source packages and source versions; an
	 * ecosystem "Debian:N" applies to images whose VERSION_ID major is N. */
	return pg_db_query(st,
			   "SELECT DISTINCT i.id AS image_id, i.path AS image, p.name AS package,"
			   " p.version, p.source, p.source_version, a.id AS advisory, r.fixed,"
			   " a.summary"
			   " FROM image i JOIN image_package p ON p.image_id = i.id"
			   " JOIN advisory_range r ON r.package = p.source"
			   " JOIN advisory a ON a.id = r.advisory_id"
			   " WHERE (?1 < 0 OR i.id = ?1)"
			   "  AND (p.status LIKE '% installed' OR p.status LIKE '% unpacked'"
			   "       OR p.status LIKE '% half-configured')"
			   "  AND (r.ecosystem = 'Debian' OR r.ecosystem = 'Debian:' ||"
			   "       CAST(CAST(i.os_version_id AS INTEGER) AS TEXT))"
			   "  AND debver_cmp(p.source_version, r.introduced) >= 0"
			   "  AND (r.fixed IS NULL OR debver_cmp(p.source_version, r.fixed) < 0)"
			   " ORDER BY i.id, p.name, a.id",
			   json_pack("[I]", (json_int_t)id), out);
}
