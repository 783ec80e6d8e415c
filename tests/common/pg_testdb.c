/* A unit test's own database on the PostgreSQL fixture (pg_testdb.h). */
#include "pg_testdb.h"

#include "payguard/db.h"
#include "payguard/log.h"

#include <stdio.h>
#include <string.h>

int
pg_testdb_make(const char *url_file, const char *name, char *out, size_t outlen)
{
	char base[4000], sql[160], *q;
	struct pg_db *db = NULL;
	FILE *f = fopen(url_file, "r");

	if (!f || !fgets(base, sizeof(base), f)) {
		fprintf(stderr, "%s: no PostgreSQL URL in %s\n", name, url_file);
		if (f)
			fclose(f);
		return -1;
	}
	fclose(f);
	base[strcspn(base, "\n")] = 0;
	q = strstr(base, "/payguard?");
	if (!q || pg_db_open(&db, base) < 0 ||
	    (snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", name), pg_db_exec(db, sql)) <
		0 ||
	    (snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name), pg_db_exec(db, sql)) < 0) {
		fprintf(stderr, "%s: cannot make a database: %s\n", name, pg_last_error());
		pg_db_free(db);
		return -1;
	}
	pg_db_free(db);
	*q = '\0';
	snprintf(out, outlen, "%s/%s?%s", base, name, q + strlen("/payguard?"));
	return 0;
}
