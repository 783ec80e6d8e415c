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

/* Applies the image area's migrations and registers SQL function debver_cmp. */
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
/* ref NULL: every image. */
int pg_image_findings(struct pg_store *st, const char *ref, json_t **out);

struct pg_upgrade_opts {
	const char *image;	 /* ref as for show, or a path */
	const char *const *debs; /* .deb files */
	size_t ndebs;
	const char *repo;   /* with fix: folder of .deb files */
	int fix;	    /* pick debs from repo that fix findings */
	const char *output; /* overlay path; default under data dir */
};
int pg_image_upgrade(struct pg_store *st, const struct pg_upgrade_opts *o, json_t **result);
int pg_image_jobs(struct pg_store *st, json_t **out);
/* Merges a finished job's overlay into a new standalone raw image. */
int pg_image_commit(struct pg_store *st, int64_t job, const char *output, json_t **result);
/* Drops a job's overlay. */
int pg_image_rollback(struct pg_store *st, int64_t job);

#endif
