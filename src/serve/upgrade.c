/*
 * Image upgrades started from the API (issue 9 over seed 1, "offline updating
 * of virtual machine images"): the API queues an image job and starts a
 * one-shot worker process (`serve worker --name upgrade --job N`) that runs
 * it with the image library. The upgrade writes only to a qcow2 overlay; a
 * SIGTERM (the daemon stopping) ends it with the job marked interrupted and
 * the original image untouched.
 */
#include "payguard/db.h"
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/image.h"
#include "payguard/log.h"
#include "payguard/serve.h"
#include "serve_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <signal.h>
#include <pthread.h>
#include <sys/prctl.h>

/* Starts the one-shot worker of image job `job` in a free task slot of the
 * supervisor (PG_EBUSY when all are taken); called by the API and, in a
 * cluster, by the supervisor's job claim. */
int
pgi_serve_start_upgrade(struct pg_serve_state *s, int64_t job)
{
	char jobs[24];
	int slot = -1;
	pid_t pid;

	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < PG_SERVE_MAX_TASKS && slot < 0; i++)
		if (s->task[i] == 0)
			slot = i;
	if (slot >= 0)
		s->task[slot] = -1; /* taken while we fork */
	pthread_mutex_unlock(&s->mu);
	if (slot < 0)
		return pg_error(PG_EBUSY, "serve", "%d upgrades are running; try again later",
				PG_SERVE_MAX_TASKS);
	snprintf(jobs, sizeof(jobs), "%lld", (long long)job);
	pid = fork();
	if (pid == 0) {
		char *argv[] = {(char *)s->exe, "serve", "worker", "--name",	"upgrade",
				"--job",	jobs,	 "--data", s->data_dir, NULL};
		sigset_t none;

		prctl(PR_SET_PDEATHSIG, SIGTERM);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execv(s->exe, argv);
		_exit(127);
	}
	pthread_mutex_lock(&s->mu);
	s->task[slot] = pid > 0 ? pid : 0;
	s->task_job[slot] = job;
	pthread_mutex_unlock(&s->mu);
	if (pid < 0)
		return pg_error(PG_ESYS, "serve", "fork: %s", strerror(errno));
	pg_info("serve", "upgrade job %lld started (pid %d)", (long long)job, (int)pid);
	return 0;
}

/*
 * The request behind job `job` (serve_upgrade), as a row of *q. A cluster
 * node may take a job in the moment between the API queuing it and writing
 * its request (they are two statements): it waits up to 5 s for the row.
 */
static int
read_request(struct pg_store *st, int64_t job, struct pg_db_stmt **q)
{
	int rc = 0;

	for (int tries = 0; tries < 50; tries++) {
		if (tries)
			usleep(100 * 1000);
		rc = pg_db_prepare(
		    st->pdb, "SELECT image_id, fix, debs FROM serve_upgrade WHERE job = ?", q);
		if (rc >= 0)
			rc = pg_db_bind_int64(*q, 1, job);
		if (rc >= 0)
			rc = pg_db_step(*q);
		if (rc != 0)
			break;
		pg_db_reset(*q);
	}
	if (rc == 0) {
		*q = NULL;
		return pg_error(PG_ENOENT, "serve", "no upgrade request for job %lld",
				(long long)job);
	}
	if (rc < 0)
		*q = NULL;
	return rc < 0 ? rc : 0;
}

/*
 * A cluster node's supervisor took the job with pg_image_job_claim, which
 * records the claiming process; the task it started for the job takes the
 * claim over (the image library runs a claimed job only in the process that
 * holds it). Refused when the job is no longer this node's.
 */
static int
adopt_claim(struct pg_store *st, int64_t job, const char *node)
{
	struct pg_db_stmt *q;
	int rc = pg_db_prepare(st->pdb,
			       "UPDATE image_job SET pid = ? WHERE id = ? AND state = 'running'"
			       " AND node = ?",
			       &q);

	if (rc >= 0)
		rc = pg_db_bind_int64(q, 1, (int64_t)getpid());
	if (rc >= 0)
		rc = pg_db_bind_int64(q, 2, job);
	if (rc >= 0)
		rc = pg_db_bind_text(q, 3, node, -1);
	if (rc >= 0)
		rc = pg_db_step(q);
	if (rc >= 0 && pg_db_changes(q) != 1)
		rc = pg_error(PG_ESTATE, "serve", "image job %lld is not running on node %s",
			      (long long)job, node);
	pg_db_reset(q);
	return rc < 0 ? rc : 0;
}

int
pgi_serve_worker_upgrade(const char *dir, const char *store, int64_t job, const volatile int *stop)
{
	const char *node = getenv(PG_SERVE_NODE_ENV);
	char ref[32], repo[600], ovdir[600], out[700], debp[PG_SERVE_MAX_DEBS][760];
	const char *debv[PG_SERVE_MAX_DEBS];
	struct pg_upgrade_opts o;
	struct pg_store st = {0};
	struct pg_db_stmt *q = NULL;
	json_t *debs = NULL, *res = NULL;
	int64_t image_id = 0;
	int rc, fix = 0;
	size_t n = 0;

	if (!node || !node[0] || !pg_db_url_is_postgres(store))
		node = NULL;
	rc = pg_store_open(&st, store);
	if (rc == 0)
		rc = pgi_serve_migrate(&st);
	if (rc == 0)
		rc = pg_image_db_open(&st);
	if (rc < 0)
		goto out;
	if (rc == 0 && node)
		rc = adopt_claim(&st, job, node);
	if (rc < 0)
		goto out;
	rc = read_request(&st, job, &q);
	if (rc < 0)
		goto out;
	image_id = pg_db_column_int64(q, 0);
	fix = (int)pg_db_column_int64(q, 1);
	debs = json_loads(pg_db_column_text(q, 2), 0, NULL);
	pg_db_reset(q);
	q = NULL;
	snprintf(repo, sizeof(repo), "%s/repo", dir);
	/* a cluster node's overlay goes to the shared image folder, where the
	 * node that takes the job over finds (and removes) a partial one */
	snprintf(ovdir, sizeof(ovdir), node ? "%s/images/overlays" : "%s/overlays", dir);
	rc = pg_mkdir_p(ovdir, 0700);
	if (rc < 0)
		goto out;
	if (json_is_array(debs)) {
		json_t *d;
		size_t i;

		/* the names were checked by pg_serve_parse_upgrade before they were stored */
		json_array_foreach(debs, i, d)
		{
			if (n == PG_SERVE_MAX_DEBS || !json_is_string(d))
				break;
			snprintf(debp[n], sizeof(debp[n]), "%s/%s", repo, json_string_value(d));
			debv[n] = debp[n];
			n++;
		}
	}
	snprintf(ref, sizeof(ref), "%lld", (long long)image_id);
	snprintf(out, sizeof(out), "%s/image%lld-job%lld.qcow2", ovdir, (long long)image_id,
		 (long long)job);
	memset(&o, 0, sizeof(o));
	o.image = ref;
	o.debs = debv;
	o.ndebs = n;
	o.fix = fix;
	o.repo = repo;
	o.output = out;
	o.job = job;
	o.stop = stop;
	o.node = node; /* NULL on one machine: the job of this process */
	pg_info("serve", "upgrade job %lld of image %lld starts", (long long)job,
		(long long)image_id);
	rc = pg_image_upgrade(&st, &o, &res);
	if (rc == 0)
		pg_info("serve", "upgrade job %lld done: %s", (long long)job, out);
out:
	if (q)
		pg_db_reset(q);
	json_decref(debs);
	json_decref(res);
	pg_store_close(&st);
	return rc;
}
