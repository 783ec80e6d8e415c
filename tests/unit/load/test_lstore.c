/*
 * Load samples through the store API on both engines: written with
 * pg_load_db_put (bounded window per VM), read back through the "store:"
 * trace source by URL. Given --postgres-url-file FILE it runs on the
 * PostgreSQL fixture's server, else on a SQLite file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/db.h"
#include "payguard/error.h"
#include "payguard/load.h"
#include "payguard/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char url[4096];

static void
test_put_window_and_read(void **state)
{
	struct pg_load_sample s[10];
	struct pg_load_series ser = {0};
	const struct pg_load_ops *ops;
	const char *arg;
	char spec[4200];
	struct pg_db *db = NULL;
	void *src = NULL;
	int rc;

	(void)state;
	assert_int_equal(pg_db_open(&db, url), 0);
	assert_int_equal(pg_db_exec(db, "DROP TABLE IF EXISTS load_samples;"
					"DELETE FROM pg_schema WHERE area = 'load'"),
			 0);
	assert_int_equal(pg_load_db_migrate(db), 0);
	for (int i = 0; i < 10; i++) {
		s[i].ts_ms = 1700000000000LL + i * 60000LL; /* past 2^31: needs 64 bits */
		for (int j = 0; j < PG_LOAD_NMETRICS; j++)
			s[i].v[j] = 0.1 * i + j;
	}
	assert_int_equal(pg_load_db_put(db, "vm-b", s, 10, 4), 0);
	assert_int_equal(pg_load_db_put(db, "vm-a", s, 3, 0), 0);
	/* the same sample again replaces, it does not add */
	s[2].v[0] = 99.5;
	assert_int_equal(pg_load_db_put(db, "vm-a", &s[2], 1, 0), 0);
	pg_db_free(db);

	snprintf(spec, sizeof(spec), "store:%s", url);
	assert_int_equal(pg_load_source_lookup(spec, &ops, &arg), 0);
	rc = ops->open(arg, &src);
	if (rc < 0)
		print_message("open %s: %s\n", arg, pg_last_error());
	assert_int_equal(rc, 0);
	ser.max = 1000;
	assert_int_equal(ops->next(src, &ser), 1);
	assert_string_equal(ser.vm, "vm-a");
	assert_int_equal(ser.n, 3);
	assert_true(ser.s[2].v[0] == 99.5);
	assert_true(ser.s[1].v[3] == 0.1 * 1 + 3);
	assert_int_equal(ops->next(src, &ser), 1);
	assert_string_equal(ser.vm, "vm-b");
	/* the window kept the newest four */
	assert_int_equal(ser.n, 4);
	assert_int_equal(ser.s[0].ts_ms, 1700000000000LL + 6 * 60000LL);
	assert_int_equal(ops->next(src, &ser), 0);
	ops->close(src);
	pg_load_series_release(&ser);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_put_window_and_read)};
	char dir[] = "/tmp/pg-test-lstore-XXXXXX";
	int rc;

	if (argc == 3 && strcmp(argv[1], "--postgres-url-file") == 0) {
		FILE *f = fopen(argv[2], "r");

		if (!f || !fgets(url, sizeof(url), f)) {
			fprintf(stderr, "test_lstore: cannot read the PostgreSQL URL from %s\n",
				argv[2]);
			return 1;
		}
		fclose(f);
		url[strcspn(url, "\n")] = 0;
		return cmocka_run_group_tests_name("lstore_postgres", tests, NULL, NULL);
	}
	if (!mkdtemp(dir))
		return 1;
	snprintf(url, sizeof(url), "sqlite:%s/t.db", dir);
	rc = cmocka_run_group_tests_name("lstore_sqlite", tests, NULL, NULL);
	snprintf(url, sizeof(url), "rm -rf '%s'", dir);
	if (system(url) != 0)
		rc = 1;
	return rc;
}
