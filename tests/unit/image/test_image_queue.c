/*
 * The image job queue on both engines (issue 14): pg_image_job_claim_next
 * takes the oldest queued job once; on PostgreSQL (given
 * --postgres-url-file FILE, written by tests/fixtures/postgres.sh) a second
 * runner whose first choice is held by another runner's open transaction
 * takes the next job at once (FOR UPDATE SKIP LOCKED) instead of waiting; a
 * job this process claimed runs through pg_image_upgrade, one claimed by
 * another process is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/db.h"
#include "payguard/error.h"
#include "payguard/image.h"
#include "payguard/store.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* from src/image (imagedb.h) */
int pg_image_save(struct pg_store *st, json_t *inv, int64_t *id);
int pg_image_run(struct pg_store *st, const char *sql, json_t *args, int64_t *changes);

static char url[4096];
static int is_pg;

static void
open_store(struct pg_store *st)
{
	memset(st, 0, sizeof(*st));
	assert_int_equal(pg_store_open(st, url), 0);
	assert_int_equal(pg_image_db_open(st), 0);
}

/* An image row as a scan stores it, with no partitions. */
static int64_t
add_image(struct pg_store *st, const char *path)
{
	json_t *inv =
	    json_pack("{s:s, s:s, s:i, s:I, s:I, s:I, s:I, s:[], s:[], s:[]}", "path", path,
		      "format", "raw", "format_version", 0, "virtual_size", (json_int_t)1048576,
		      "file_size", (json_int_t)1048576, "mtime_ns", (json_int_t)0, "file_ino",
		      (json_int_t)0, "chain", "partitions", "packages");
	int64_t id = 0;

	assert_int_equal(pg_image_save(st, inv, &id), 0);
	json_decref(inv);
	assert_true(id > 0);
	return id;
}

static void
test_claim_next(void **state)
{
	struct pg_store a, b;
	int64_t img, j1, j2, j3, got, gimg = 0, other;
	struct pg_upgrade_opts o;
	json_t *res = NULL;

	(void)state;
	open_store(&a);
	open_store(&b);
	assert_int_equal(pg_image_run(&a, "DELETE FROM image_job", NULL, NULL), 0);
	img = add_image(&a, "/nonexistent/queue-test.img");
	assert_int_equal(pg_image_job_queue(&a, "/nonexistent/queue-test.img", &j1), 0);
	assert_int_equal(pg_image_job_queue(&a, "/nonexistent/queue-test.img", &j2), 0);
	assert_int_equal(pg_image_job_queue(&a, "/nonexistent/queue-test.img", &j3), 0);
	assert_true(j1 < j2 && j2 < j3);

	if (is_pg) {
		/* a holds j1 in an open transaction; without SKIP LOCKED b would
		 * wait for it: the timeout turns a wait into a failure */
		assert_int_equal(pg_db_exec(b.pdb, "SET statement_timeout = 3000"), 0);
		assert_int_equal(pg_db_begin(a.pdb), 0);
		assert_int_equal(pg_image_job_claim_next(&a, &got, &gimg), 0);
		assert_int_equal(got, j1);
		assert_int_equal(gimg, img);
		assert_int_equal(pg_image_job_claim_next(&b, &got, NULL), 0);
		assert_int_equal(got, j2);
		assert_int_equal(pg_db_commit(a.pdb), 0);
	} else {
		assert_int_equal(pg_image_job_claim_next(&a, &got, &gimg), 0);
		assert_int_equal(got, j1);
		assert_int_equal(gimg, img);
		assert_int_equal(pg_image_job_claim_next(&b, &got, NULL), 0);
		assert_int_equal(got, j2);
	}
	/* a claimed job is not claimed again; j3 is the last one */
	assert_int_equal(pg_image_job_claim_next(&b, &got, NULL), 0);
	assert_int_equal(got, j3);
	assert_int_equal(pg_image_job_claim_next(&a, &got, NULL), PG_ENOENT);

	/* j1 is this process's: pg_image_upgrade takes it up and gets as far
	 * as the missing packages; a job running under another pid is refused */
	memset(&o, 0, sizeof(o));
	o.job = j1;
	assert_int_equal(pg_image_upgrade(&a, &o, &res), PG_EUSAGE);
	json_decref(res);
	res = NULL;
	other = (int64_t)getpid() + 1;
	assert_int_equal(pg_image_run(&a, "UPDATE image_job SET pid = ? WHERE id = ?",
				      json_pack("[I,I]", (json_int_t)other, (json_int_t)j2), NULL),
			 0);
	o.job = j2;
	assert_int_equal(pg_image_upgrade(&a, &o, &res), PG_ESTATE);
	json_decref(res);
	pg_store_close(&b);
	pg_store_close(&a);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_claim_next)};
	char dir[] = "/tmp/pg-test-imgq-XXXXXX";
	int rc;

	if (argc == 3 && strcmp(argv[1], "--postgres-url-file") == 0) {
		FILE *f = fopen(argv[2], "r");

		if (!f || !fgets(url, sizeof(url), f)) {
			fprintf(stderr,
				"test_image_queue: cannot read the PostgreSQL URL from %s\n",
				argv[2]);
			return 1;
		}
		fclose(f);
		url[strcspn(url, "\n")] = 0;
		is_pg = 1;
		return cmocka_run_group_tests_name("image_queue_postgres", tests, NULL, NULL);
	}
	if (!mkdtemp(dir))
		return 1;
	snprintf(url, sizeof(url), "%s/t.db", dir);
	rc = cmocka_run_group_tests_name("image_queue_sqlite", tests, NULL, NULL);
	snprintf(url, sizeof(url), "rm -rf '%s'", dir);
	if (system(url) != 0)
		rc = 1;
	return rc;
}
