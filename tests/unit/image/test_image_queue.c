/*
 * The image job queue on both engines (issue 14): pg_image_job_claim_next
 * takes the oldest queued job once; on PostgreSQL (given
 * --postgres-url-file FILE, written by tests/fixtures/postgres.sh) a second
 * runner whose first choice is held by another runner's open transaction
 * takes the next job at once (FOR UPDATE SKIP LOCKED) instead of waiting; a
 * job this process claimed runs through pg_image_upgrade, one claimed by
 * another process is refused.
 *
 * Leases (cluster runners): a job claimed by node A is never taken by node
 * B while A's lease is live (renewed by pg_image_job_renew), not even when
 * the pid recorded for it is gone on this host; once the lease expired B
 * takes it over, A's renewals no longer reach it, and B's run of the job
 * removes the partial overlay A left behind.
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* from src/image (imagedb.h) */
int pgi_image_save(struct pg_store *st, json_t *inv, int64_t *id);
int pgi_image_run(struct pg_store *st, const char *sql, json_t *args, int64_t *changes);

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

	assert_int_equal(pgi_image_save(st, inv, &id), 0);
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
	assert_int_equal(pgi_image_run(&a, "DELETE FROM image_job", NULL, NULL), 0);
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
	assert_int_equal(pgi_image_run(&a, "UPDATE image_job SET pid = ? WHERE id = ?",
				       json_pack("[I,I]", (json_int_t)other, (json_int_t)j2), NULL),
			 0);
	o.job = j2;
	assert_int_equal(pg_image_upgrade(&a, &o, &res), PG_ESTATE);
	json_decref(res);
	pg_store_close(&b);
	pg_store_close(&a);
}

static void
sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* The job's row from pg_image_jobs (new reference). */
static json_t *
job_row(struct pg_store *st, int64_t id)
{
	json_t *rows = NULL, *r, *out = NULL;
	size_t i;

	assert_int_equal(pg_image_jobs(st, &rows), 0);
	json_array_foreach(rows, i, r)
	{
		if (json_integer_value(json_object_get(r, "id")) == id)
			out = json_incref(r);
	}
	json_decref(rows);
	assert_non_null(out);
	return out;
}

static void
assert_job(struct pg_store *st, int64_t id, const char *state, const char *node)
{
	json_t *r = job_row(st, id);

	assert_string_equal(json_string_value(json_object_get(r, "state")), state);
	if (node)
		assert_string_equal(json_string_value(json_object_get(r, "node")), node);
	json_decref(r);
}

/* A pid that is certainly gone: a child that exited and was reaped. */
static pid_t
dead_pid(void)
{
	pid_t p = fork();

	assert_true(p >= 0);
	if (p == 0)
		_exit(0);
	assert_int_equal(waitpid(p, NULL, 0), p);
	return p;
}

static void
test_lease(void **state)
{
	struct pg_store a, b;
	int64_t j1, j2, got = 0;
	struct pg_upgrade_opts o;
	json_t *res = NULL, *r;
	char dir[] = "/tmp/pg-test-lease-XXXXXX", ov[256], part[300];
	FILE *f;
	struct stat sb;

	(void)state;
	open_store(&a);
	open_store(&b);
	assert_int_equal(pgi_image_run(&a, "DELETE FROM image_job", NULL, NULL), 0);
	add_image(&a, "/nonexistent/lease-test.img");
	assert_int_equal(pg_image_job_queue(&a, "/nonexistent/lease-test.img", &j1), 0);
	assert_int_equal(pg_image_job_queue(&a, "/nonexistent/lease-test.img", &j2), 0);

	/* bad node names are refused before anything is written */
	assert_int_equal(pg_image_job_claim(&a, "../x", 1000, &got, NULL), PG_EINVAL);
	assert_int_equal(pg_image_job_claim(&a, "", 1000, &got, NULL), PG_EINVAL);
	assert_int_equal(pg_image_job_renew(&a, "a b", 1000), PG_EINVAL);

	/* node na takes j1, node nb the next one: never j1 again */
	assert_int_equal(pg_image_job_claim(&a, "na", 400, &got, NULL), 0);
	assert_int_equal(got, j1);
	assert_int_equal(pg_image_job_claim(&b, "nb", 60000, &got, NULL), 0);
	assert_int_equal(got, j2);
	assert_int_equal(pg_image_job_claim(&b, "nb", 400, &got, NULL), PG_ENOENT);
	/* a leased job's pid means nothing on this host (its node may be
	 * another machine): the pid recovery leaves it running */
	assert_int_equal(pgi_image_run(&a, "UPDATE image_job SET pid = ? WHERE id = ?",
				       json_pack("[i,I]", (int)dead_pid(), (json_int_t)j1), NULL),
			 0);
	assert_job(&b, j1, "running", "na");

	/* the dead runner's half-written overlay, as the upgrade records it */
	assert_non_null(mkdtemp(dir));
	snprintf(ov, sizeof(ov), "%s/image-job.qcow2", dir);
	snprintf(part, sizeof(part), "%s.na.partial", ov);
	f = fopen(part, "w");
	assert_non_null(f);
	fputs("half an overlay", f);
	fclose(f);
	assert_int_equal(pgi_image_run(&a,
				       "UPDATE image_job SET overlay = ?, partial = ? WHERE id = ?",
				       json_pack("[s,s,I]", ov, part, (json_int_t)j1), NULL),
			 0);

	/* na's heartbeat keeps j1 for 1.2 s, three times its lease */
	for (int i = 0; i < 12; i++) {
		assert_int_equal(pg_image_job_renew(&a, "na", 300), 1);
		sleep_ms(100);
		assert_int_equal(pg_image_job_claim(&b, "nb", 400, &got, NULL), PG_ENOENT);
	}
	/* and j1 cannot be run by id by another node meanwhile */
	memset(&o, 0, sizeof(o));
	o.job = j1;
	o.node = "nb";
	o.lease_ms = 400;
	assert_int_equal(pg_image_upgrade(&b, &o, &res), PG_ESTATE);
	assert_null(res);
	assert_job(&b, j1, "running", "na");

	/* na dies: no more renewals; once its lease ran out nb takes j1 over */
	sleep_ms(450);
	assert_int_equal(pg_image_job_claim(&b, "nb", 400, &got, NULL), 0);
	assert_int_equal(got, j1);
	assert_job(&a, j1, "running", "nb");
	r = job_row(&a, j1);
	assert_non_null(strstr(json_string_value(json_object_get(r, "log")),
			       "lease of node na expired; taken over by node nb"));
	assert_true(json_integer_value(json_object_get(r, "lease_until_ms")) > 0);
	json_decref(r);
	/* na's renewals reach nothing any more; nb's reach both its jobs */
	assert_int_equal(pg_image_job_renew(&a, "na", 400), 0);
	assert_int_equal(pg_image_job_renew(&b, "nb", 400), 2);
	/* na cannot run it either */
	o.node = "na";
	assert_int_equal(pg_image_upgrade(&a, &o, &res), PG_ESTATE);
	assert_int_equal(stat(part, &sb), 0);

	/* nb runs it: the job restarts from the start, na's partial goes
	 * first (the run then stops at the missing packages) */
	o.node = "nb";
	assert_int_equal(pg_image_upgrade(&b, &o, &res), PG_EUSAGE);
	json_decref(res);
	assert_int_equal(stat(part, &sb), -1);
	r = job_row(&a, j1);
	assert_string_equal(json_string_value(json_object_get(r, "state")), "failed");
	assert_non_null(strstr(json_string_value(json_object_get(r, "log")),
			       "removed the previous runner's partial overlay"));
	json_decref(r);
	assert_int_equal(rmdir(dir), 0);
	pg_store_close(&b);
	pg_store_close(&a);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_claim_next),
					   cmocka_unit_test(test_lease)};
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
