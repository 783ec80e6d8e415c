/*
 * Upgrade jobs as a daemon drives them (issue 9): queued jobs run by id,
 * progress through the callback and the store, and the stop flag set from
 * the progress callback mid-unpack. Run by jobs.sh, which builds the image
 * and the packages with mkfs.ext4/sfdisk/dpkg-deb and checks the results
 * with qemu-img, e2fsck and debugfs afterwards.
 * usage: image_jobs_test WORKDIR DISK.img DISK2.img BIG.deb
 */
#include "payguard/error.h"
#include "payguard/image.h"
#include "payguard/log.h"
#include "payguard/store.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fprintf(stderr, " (last error: %s)\n", pg_last_error());                   \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

struct rec {
	double v[4096];
	size_t n;
	double stop_above; /* > 0: set stop once a value passes this */
	volatile int stop;
};

static void
on_progress(void *arg, double frac)
{
	struct rec *r = arg;

	if (r->n < sizeof(r->v) / sizeof(r->v[0]))
		r->v[r->n++] = frac;
	if (r->stop_above > 0 && frac > r->stop_above)
		r->stop = 1;
}

/* The job row with this id from pg_image_jobs (new reference). */
static json_t *
job_row(struct pg_store *st, int64_t id)
{
	json_t *rows = NULL, *r, *out = NULL;
	size_t i;

	if (pg_image_jobs(st, &rows) < 0)
		return NULL;
	json_array_foreach(rows, i, r) if (json_integer_value(json_object_get(r, "id")) == id) out =
	    json_incref(r);
	json_decref(rows);
	return out;
}

static const char *
state_of(json_t *row)
{
	const char *s = json_string_value(json_object_get(row, "state"));

	return s ? s : "(none)";
}

static void
check_monotonic(const struct rec *r, const char *what)
{
	for (size_t i = 1; i < r->n; i++)
		CHECK(r->v[i] >= r->v[i - 1], "%s: progress went from %f to %f", what, r->v[i - 1],
		      r->v[i]);
	for (size_t i = 0; i < r->n; i++)
		CHECK(r->v[i] >= 0.0 && r->v[i] <= 1.0, "%s: progress %f out of range", what,
		      r->v[i]);
}

int
main(int argc, char **argv)
{
	struct pg_store st = {0};
	char db[4096], ov_stop[4096], ov_ok[4096], ov_x[4096], partial[4200];
	const char *work, *disk, *disk2, *big;
	const char *debs[1];
	json_t *res = NULL, *row = NULL, *pk = NULL;
	int64_t job = 0, stale = 0, fresh = 0;
	static struct rec r1, r2;
	int rc;

	if (argc != 5) {
		fprintf(stderr, "usage: %s WORKDIR DISK.img DISK2.img BIG.deb\n", argv[0]);
		return 2;
	}
	work = argv[1];
	disk = argv[2];
	disk2 = argv[3];
	big = argv[4];
	debs[0] = big;
	pg_log_set_level(-1);
	snprintf(db, sizeof(db), "%s/jobs.db", work);
	snprintf(ov_stop, sizeof(ov_stop), "%s/stopped.qcow2", work);
	snprintf(ov_ok, sizeof(ov_ok), "%s/ok.qcow2", work);
	snprintf(ov_x, sizeof(ov_x), "%s/never.qcow2", work);
	/* the PostgreSQL pass (with_pg_store.sh) names its store in PAYGUARD_STORE */
	if (getenv("PAYGUARD_STORE") && *getenv("PAYGUARD_STORE"))
		snprintf(db, sizeof(db), "%s", getenv("PAYGUARD_STORE"));
	if (pg_store_open(&st, db) < 0 || pg_image_db_open(&st) < 0) {
		fprintf(stderr, "FAIL: store: %s\n", pg_last_error());
		return 1;
	}
	rc = pg_image_scan(&st, disk, NULL);
	CHECK(rc == 0, "scan %s", disk);
	rc = pg_image_scan(&st, disk2, NULL);
	CHECK(rc == 0, "scan %s", disk2);

	/* packages of one image, and an unknown image */
	rc = pg_image_packages(&st, "1", &pk);
	CHECK(rc == 0 && json_array_size(pk) == 2, "packages: rc %d, %zu rows", rc,
	      json_array_size(pk));
	CHECK(!strcmp(json_string_value(json_object_get(json_array_get(pk, 0), "name")),
		      "base-files") &&
		  !strcmp(json_string_value(json_object_get(json_array_get(pk, 1), "name")),
			  "bigdata") &&
		  !strcmp(json_string_value(json_object_get(json_array_get(pk, 1), "version")),
			  "1.0") &&
		  json_object_get(json_array_get(pk, 1), "status") &&
		  json_object_get(json_array_get(pk, 1), "source_version"),
	      "packages content");
	json_decref(pk);
	pk = NULL;
	rc = pg_image_packages(&st, "/nonexistent/disk.img", &pk);
	CHECK(rc == PG_ENOENT && pk == NULL, "packages of an unknown image: rc %d", rc);

	/* queue for an unknown image */
	rc = pg_image_job_queue(&st, "99", &job);
	CHECK(rc == PG_ENOENT && job == 0, "queue unknown image: rc %d", rc);
	CHECK(strstr(pg_last_error(), "99") != NULL, "message names the image: %s",
	      pg_last_error());

	/* 1. stop from the progress callback once past 30 % */
	{
		struct pg_upgrade_opts o = {.image = "1",
					    .debs = debs,
					    .ndebs = 1,
					    .output = ov_stop,
					    .progress = on_progress,
					    .progress_arg = &r1,
					    .stop = &r1.stop};

		r1.stop_above = 0.3;
		rc = pg_image_upgrade(&st, &o, &res);
		CHECK(rc == PG_EINTR, "stopped upgrade returns PG_EINTR, got %d", rc);
		CHECK(res == NULL, "no result when stopped");
		CHECK(strstr(pg_last_error(), "stopped") != NULL, "clear message: %s",
		      pg_last_error());
		CHECK(r1.n >= 2, "progress updates before the stop (%zu)", r1.n);
		CHECK(r1.n > 0 && r1.v[0] == 0.0, "first progress is 0");
		CHECK(r1.n > 0 && r1.v[r1.n - 1] > 0.3 && r1.v[r1.n - 1] < 1.0,
		      "stopped between 30 %% and done (last %f)", r1.n ? r1.v[r1.n - 1] : -1);
		check_monotonic(&r1, "stopped run");
		snprintf(partial, sizeof(partial), "%s.partial", ov_stop);
		CHECK(access(ov_stop, F_OK) != 0, "no overlay left after a stop");
		CHECK(access(partial, F_OK) != 0, "no .partial left after a stop");
		row = job_row(&st, 1);
		CHECK(row && !strcmp(state_of(row), "interrupted"), "job 1 is %s", state_of(row));
		CHECK(row && strstr(json_string_value(json_object_get(row, "log")),
				    "interrupted: stopped on request"),
		      "log line for the stop");
		CHECK(row && json_real_value(json_object_get(row, "progress")) > 0.3 &&
			  json_real_value(json_object_get(row, "progress")) < 1.0,
		      "stored progress of the stopped job %f",
		      json_real_value(json_object_get(row, "progress")));
		json_decref(row);
		row = NULL;
	}

	/* 2. the queued path, on the same image after the stop */
	rc = pg_image_job_queue(&st, disk, &job);
	CHECK(rc == 0 && job == 2, "queue: rc %d job %lld", rc, (long long)job);
	row = job_row(&st, job);
	CHECK(row && !strcmp(state_of(row), "queued") &&
		  json_is_null(json_object_get(row, "overlay")),
	      "queued job is %s", state_of(row));
	json_decref(row);
	{
		/* a queued job run for another image is refused and stays queued */
		struct pg_upgrade_opts o = {
		    .image = "2", .debs = debs, .ndebs = 1, .output = ov_x, .job = job};

		rc = pg_image_upgrade(&st, &o, &res);
		CHECK(rc == PG_ESTATE, "job of another image: rc %d", rc);
		row = job_row(&st, job);
		CHECK(row && !strcmp(state_of(row), "queued"), "still queued: %s", state_of(row));
		json_decref(row);
		CHECK(access(ov_x, F_OK) != 0, "nothing written for a refused job");
	}
	{
		struct pg_upgrade_opts o = {.debs = debs,
					    .ndebs = 1,
					    .output = ov_ok,
					    .job = job,
					    .progress = on_progress,
					    .progress_arg = &r2};

		rc = pg_image_upgrade(&st, &o, &res);
		CHECK(rc == 0, "queued job runs: rc %d", rc);
		CHECK(json_integer_value(json_object_get(res, "job")) == job,
		      "result names job %lld", (long long)job);
		CHECK(r2.n >= 3, "several progress values (%zu)", r2.n);
		CHECK(r2.n && r2.v[0] == 0.0 && r2.v[r2.n - 1] == 1.0,
		      "progress starts at 0 and ends at 1.0");
		for (size_t i = 0; i + 1 < r2.n; i++)
			CHECK(r2.v[i] < 1.0, "1.0 only when done (value %zu of %zu)", i, r2.n);
		check_monotonic(&r2, "queued run");
		json_decref(res);
		res = NULL;
		row = job_row(&st, job);
		CHECK(row && !strcmp(state_of(row), "done"), "job %lld is %s", (long long)job,
		      state_of(row));
		CHECK(row && json_real_value(json_object_get(row, "progress")) == 1.0,
		      "stored progress 1.0");
		CHECK(row && !strcmp(json_string_value(json_object_get(row, "overlay")), ov_ok),
		      "overlay recorded");
		json_decref(row);
		row = NULL;
		/* running it again: it is done, not queued */
		rc = pg_image_upgrade(&st, &o, &res);
		CHECK(rc == PG_ESTATE, "rerun of a done job: rc %d", rc);
		CHECK(strstr(pg_last_error(), "not queued") != NULL, "message: %s",
		      pg_last_error());
		o.job = 999;
		rc = pg_image_upgrade(&st, &o, &res);
		CHECK(rc == PG_ENOENT, "unknown job: rc %d", rc);
		/* the interrupted job cannot be resumed either */
		o.job = 1;
		o.image = "1";
		rc = pg_image_upgrade(&st, &o, &res);
		CHECK(rc == PG_ESTATE, "interrupted job: rc %d", rc);
	}

	/* 3. queued jobs nobody runs: interrupted after 60 s, not before */
	rc = pg_image_job_queue(&st, "1", &stale);
	CHECK(rc == 0, "queue stale");
	rc = pg_image_job_queue(&st, "2", &fresh);
	CHECK(rc == 0, "queue fresh");
	{
		char sql[256], ts[32];
		time_t then = time(NULL) - 61;
		struct tm tm;

		/* the time in C: SQL date functions differ between the engines */
		gmtime_r(&then, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
		snprintf(sql, sizeof(sql), "UPDATE image_job SET started_at = '%s' WHERE id = %lld",
			 ts, (long long)stale);
		CHECK(pg_store_exec(&st, sql) == 0, "age the job");
	}
	row = job_row(&st, stale);
	CHECK(row && !strcmp(state_of(row), "interrupted"), "stale queued job is %s",
	      state_of(row));
	CHECK(row && strstr(json_string_value(json_object_get(row, "log")), "no runner"),
	      "stale job log");
	json_decref(row);
	row = job_row(&st, fresh);
	CHECK(row && !strcmp(state_of(row), "queued"), "fresh queued job is %s", state_of(row));
	json_decref(row);
	{
		struct pg_upgrade_opts o = {
		    .image = "1", .debs = debs, .ndebs = 1, .output = ov_x, .job = stale};

		rc = pg_image_upgrade(&st, &o, &res);
		CHECK(rc == PG_ESTATE, "a late runner cannot take a stale job: rc %d", rc);
	}

	/* 4. after the stop, a plain new upgrade of the same image succeeds
	 * (jobs.sh checks its overlay with qemu-img check and e2fsck -fn) */
	{
		char again[4200];
		struct pg_upgrade_opts o = {
		    .image = "1", .debs = debs, .ndebs = 1, .output = again};

		snprintf(again, sizeof(again), "%s/again.qcow2", work);
		rc = pg_image_upgrade(&st, &o, &res);
		CHECK(rc == 0, "upgrade after the stop: rc %d", rc);
		json_decref(res);
		res = NULL;
	}
	pg_store_close(&st);
	printf("jobs_test: stopped at %.0f%% after %zu progress values; queued run reported %zu "
	       "values; %d failure(s)\n",
	       r1.n ? r1.v[r1.n - 1] * 100 : -1.0, r1.n, r2.n, failures);
	return failures ? 1 : 0;
}
