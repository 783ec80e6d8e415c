/*
 * Image security server (seed 1, "method for offline updating virtual machine
 * images"): collect raw/qcow2 images, store their inventory, match OSV
 * advisories with Debian version ordering, and upgrade images offline into
 * a qcow2 overlay. Library entry points used by `payguard image ...`.
 */
#ifndef PAYGUARD_IMAGE_H
#define PAYGUARD_IMAGE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct pg_store;

/* Debian version ordering (deb-version(7)): <0, 0, >0 like strcmp. */
int pg_debver_cmp(const char *a, const char *b);
/* 0 when v is a syntactically valid Debian version, else PG_EFORMAT. */
int pg_debver_check(const char *v);

/* Folders, besides each image's own, where a qcow2 backing file may lie
 * (`--backing-dir`). A backing name with a ".." component, or one that
 * resolves (symlinks followed) anywhere else, is refused with PG_EFORMAT.
 * Process-wide; set before opening images; n = 0 clears. */
int pg_image_set_backing_dirs(const char *const *dirs, size_t n);

/* Applies the image area's migrations (on st->pdb: SQLite or PostgreSQL). */
int pg_image_db_open(struct pg_store *st);

/* Inspects one image file and stores (replaces) its inventory. *summary gets
 * {id, path, format, packages, ...}; may be NULL. */
int pg_image_scan(struct pg_store *st, const char *path, json_t **summary);
/* Scans every regular file in dir; files refused are reported in *out. */
int pg_image_scan_dir(struct pg_store *st, const char *dir, json_t **out);
/* Watches dir with inotify and scans new/changed images until *stop or
 * max_events (0: unbounded) scans have been done. */
int pg_image_watch(struct pg_store *st, const char *dir, unsigned max_events, volatile int *stop);

int pg_image_list(struct pg_store *st, json_t **out);
/* ref: numeric id, path or sha256 prefix. */
int pg_image_show(struct pg_store *st, const char *ref, json_t **out);
int pg_image_advisories_import(struct pg_store *st, const char *path, size_t *count);
/*
 * The same with the file's format named: "auto" (NULL: OSV when the JSON is an
 * array or has "id", else the Debian Security Tracker's), "osv",
 * "debian-tracker".
 */
int pg_image_advisories_import_fmt(struct pg_store *st, const char *path, const char *format,
				   size_t *count);
/* ref NULL: every image. */
int pg_image_findings(struct pg_store *st, const char *ref, json_t **out);

/* The installed packages of one image as stored by the last scan: an array
 * of {name, version, arch, source, source_version, status} ordered by name
 * then arch. PG_ENOENT for an unknown image. */
int pg_image_packages(struct pg_store *st, const char *ref, json_t **out);

struct pg_upgrade_opts {
	const char *image;	 /* ref as for show, or a path; NULL with job: its image */
	const char *const *debs; /* .deb files */
	size_t ndebs;
	const char *repo;   /* with fix: folder of .deb files */
	int fix;	    /* pick debs from repo that fix findings */
	const char *output; /* overlay path; default under data dir */
	/* > 0: run this job made by pg_image_job_queue (it must be 'queued',
	 * or 'running' taken by this process with pg_image_job_claim_next,
	 * and, when image is set, for that image; else PG_ESTATE) instead of
	 * recording a new one. */
	int64_t job;
	/* Called with 0.0 once the job runs, then with the fraction of bytes
	 * unpacked at most every ~200 ms (kept below 1.0), and 1.0 when done;
	 * never decreasing. The same value is stored in the job's progress.
	 * Runs in the caller's thread; may set *stop. NULL: none. */
	void (*progress)(void *arg, double frac);
	void *progress_arg;
	/* Checked between packages, between files and every MiB of a file:
	 * once *stop is non-zero the upgrade drops its partial overlay, records
	 * the job 'interrupted' and returns PG_EINTR. The original image is
	 * never written in any case. NULL: not stoppable. */
	const volatile int *stop;
	/* Cluster runners (issue 14): the node running the job (letters,
	 * digits, '.', '_', '-'; at most 63) and its lease in ms (0: the
	 * default PG_IMAGE_LEASE_MS). With a node, a job claimed by
	 * pg_image_job_claim for this node runs, a queued job or one whose
	 * lease expired is claimed with a lease, the lease is renewed as the
	 * upgrade progresses, and the upgrade stops with PG_ESTATE (leaving the
	 * job to its new runner) if another node took the job over meanwhile.
	 * NULL: a job of this process, recovered by pid (no lease). */
	const char *node;
	int64_t lease_ms;
};
/* Upgrades an image offline into a new qcow2 overlay (see docs/image.md).
 * *result: {job, image_id, image, overlay, packages: [...], first_boot}. */
int pg_image_upgrade(struct pg_store *st, const struct pg_upgrade_opts *o, json_t **result);
/* Records an upgrade job in state 'queued' for an image (ref as for show;
 * PG_ENOENT if unknown) and returns its id, for a runner that calls
 * pg_image_upgrade with opts.job = *job. A queued job no runner took within
 * 60 s is shown 'interrupted' by pg_image_jobs. */
int pg_image_job_queue(struct pg_store *st, const char *ref, int64_t *job);
/*
 * Takes the oldest queued job for this process (state 'running', pid set)
 * and gives its id and image, for a runner that then calls pg_image_upgrade
 * with opts.job = *job; PG_ENOENT when none is queued. On PostgreSQL the row
 * is chosen with FOR UPDATE SKIP LOCKED: runners on several hosts each get
 * another job and never wait on one another's.
 */
int pg_image_job_claim_next(struct pg_store *st, int64_t *job, int64_t *image_id);
/* The lease of a node's job when none is given: its heartbeat (or the
 * upgrade's progress) renews it well before it runs out. */
#define PG_IMAGE_LEASE_MS 30000
/*
 * The same for a node of a cluster: takes the oldest job that is queued or
 * 'running' under a lease that expired (its node died), for `node` with a
 * lease of lease_ms (0: PG_IMAGE_LEASE_MS) on the store's clock. A job
 * taken over restarts from the beginning when pg_image_upgrade runs it: the
 * dead runner's half-written overlay is removed, the original image was
 * never written. A job under a live lease is never taken. PG_EINVAL for a
 * bad node name, PG_ENOENT when no job is free.
 */
int pg_image_job_claim(struct pg_store *st, const char *node, int64_t lease_ms, int64_t *job,
		       int64_t *image_id);
/*
 * Extends the lease of every running job of `node` to lease_ms from now
 * (0: PG_IMAGE_LEASE_MS): the node's heartbeat. Returns how many jobs it
 * renewed (a job another node took over is not this node's any more).
 */
int pg_image_job_renew(struct pg_store *st, const char *node, int64_t lease_ms);
/*
 * The daemon's heartbeat (issue 14): extends to lease_ms from now (0:
 * PG_IMAGE_LEASE_MS) the lease of each of jobs[0..n) that is running on
 * `node`. The daemon passes only the jobs whose upgrade task process is
 * alive on this node, so a task stuck in a long step keeps its job while
 * one that died stops being renewed and its job is taken over once the
 * lease expires. Returns how many it renewed; PG_EINVAL for a bad node.
 */
int pg_image_job_renew_jobs(struct pg_store *st, const char *node, const int64_t *jobs, size_t n,
			    int64_t lease_ms);
/* Marks a queued job that will never run (its runner could not start)
 * 'failed' with why in its log; a job no longer queued is left as it is. */
int pg_image_job_abandon(struct pg_store *st, int64_t job, const char *why);
/* Every job: {id, image_id, image_path, kind, state, progress, overlay,
 * started_at, finished_at, result, log, node, lease_until_ms}. state is
 * queued, running, done, failed, interrupted, committed or rolledback;
 * running jobs without a lease whose process is gone and stale queued jobs
 * are marked interrupted first (a leased job waits for a node to take it
 * over). */
int pg_image_jobs(struct pg_store *st, json_t **out);
/* Merges a finished job's overlay into a new standalone raw image. */
int pg_image_commit(struct pg_store *st, int64_t job, const char *output, json_t **result);
/* Drops a job's overlay. */
int pg_image_rollback(struct pg_store *st, int64_t job);

/* The seed-1 flow end to end (`payguard image demo`): builds a tiny
 * Debian-like image with a dpkg database (mkfs.ext4 -d, no network), scans
 * it into a store in workdir, imports a generated OSV advisory, builds the
 * fixing .deb with dpkg-deb and upgrades the image into an overlay; prints
 * each step on stdout. workdir NULL: a temporary folder. keep 0: workdir
 * is removed at the end. Needs mkfs.ext4 and dpkg-deb on PATH. */
int pg_image_demo(const char *workdir, int keep);

#endif
