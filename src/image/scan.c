/*
 * Collection (seed 1, "collect virtual machine images"): scan one image or
 * every file of a directory store (a libvirt pool or an image store), and
 * watch a directory with inotify so new and changed images are picked up.
 */
#include "image_int.h"
#include "imagedb.h"
#include "inspect.h"

#include "payguard/error.h"
#include "payguard/log.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

int
pg_image_scan(struct pg_store *st, const char *path, json_t **summary)
{
	json_t *inv = NULL;
	int rc;

	if (summary)
		*summary = NULL;
	rc = pgi_inspect_path(path, 0, &inv);
	if (rc < 0)
		return rc;
	/* Hashing a large image costs more than inspecting it: an image whose
	 * size, inode and mtime (ns) are unchanged keeps its stored hash. */
	{
		json_t *rows = NULL;
		char hash[65];

		rc = pgi_image_query(st,
				     "SELECT sha256 FROM image WHERE path = ? AND file_size = ?"
				     " AND mtime_ns = ? AND file_ino = ? AND sha256 IS NOT NULL",
				     json_pack("[O,O,O,O]", json_object_get(inv, "path"),
					       json_object_get(inv, "file_size"),
					       json_object_get(inv, "mtime_ns"),
					       json_object_get(inv, "file_ino")),
				     &rows);
		if (rc == 0 && json_array_size(rows) == 1) {
			json_object_set(inv, "sha256",
					json_object_get(json_array_get(rows, 0), "sha256"));
			json_object_set_new(inv, "hash_cached", json_true());
		} else {
			rc = pgi_hash_file(json_string_value(json_object_get(inv, "path")), hash);
			if (rc == 0)
				json_object_set_new(inv, "sha256", json_string(hash));
		}
		json_decref(rows);
		if (rc < 0) {
			json_decref(inv);
			return rc;
		}
	}
	rc = pgi_image_save(st, inv, NULL);
	if (rc < 0) {
		json_decref(inv);
		return rc;
	}
	if (summary) {
		json_t *os = json_object_get(inv, "os");

		*summary = json_pack(
		    "{s:O, s:O, s:O, s:O, s:O, s:s?, s:I, s:I}", "id", json_object_get(inv, "id"),
		    "path", json_object_get(inv, "path"), "format", json_object_get(inv, "format"),
		    "virtual_size", json_object_get(inv, "virtual_size"), "sha256",
		    json_object_get(inv, "sha256"), "os",
		    json_string_value(json_object_get(os, "PRETTY_NAME")), "partitions",
		    (json_int_t)json_array_size(json_object_get(inv, "partitions")), "packages",
		    (json_int_t)json_array_size(json_object_get(inv, "packages")));
	}
	json_decref(inv);
	return 0;
}

static int
skip_name(const char *n)
{
	size_t l = strlen(n);

	/* our own temporary and partial files, and hidden files */
	return n[0] == '.' || (l > 8 && strcmp(n + l - 8, ".partial") == 0);
}

int
pg_image_scan_dir(struct pg_store *st, const char *dir, json_t **out)
{
	DIR *dh = opendir(dir);
	struct dirent *de;
	json_t *res = json_array();
	int rc = 0;

	*out = NULL;
	if (!dh) {
		json_decref(res);
		return pg_error(errno == ENOENT ? PG_ENOENT : PG_EIO, "image", "'%s': %s", dir,
				strerror(errno));
	}
	while ((de = readdir(dh))) {
		char path[4096];
		struct stat sb;
		json_t *sum = NULL;
		int r;

		if (skip_name(de->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &sb) < 0 || !S_ISREG(sb.st_mode))
			continue;
		r = pg_image_scan(st, path, &sum);
		if (r < 0)
			sum = json_pack("{s:s, s:s}", "path", path, "error", pg_last_error());
		json_array_append_new(res, sum);
	}
	closedir(dh);
	*out = res;
	return rc;
}

int
pg_image_watch(struct pg_store *st, const char *dir, unsigned max_events, volatile int *stop)
{
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	unsigned done = 0;
	json_t *first = NULL;
	int fd, rc = 0;

	fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (fd < 0)
		return pg_error(PG_ESYS, "image", "inotify_init1: %s", strerror(errno));
	/* IN_CLOSE_WRITE: a copy is complete; IN_MOVED_TO: atomic renames. */
	if (inotify_add_watch(fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
		rc = pg_error(errno == ENOENT ? PG_ENOENT : PG_ESYS, "image", "watch '%s': %s", dir,
			      strerror(errno));
		goto out;
	}
	/* Existing images first, so the store matches the folder. */
	rc = pg_image_scan_dir(st, dir, &first);
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < json_array_size(first); i++) {
		json_t *e = json_array_get(first, i);

		fprintf(stderr, "%s: %s\n", json_string_value(json_object_get(e, "path")),
			json_object_get(e, "error") ? json_string_value(json_object_get(e, "error"))
						    : "scanned");
	}
	json_decref(first);
	while (!(stop && *stop) && (!max_events || done < max_events)) {
		struct pollfd pfd = {fd, POLLIN, 0};
		ssize_t n;

		if (poll(&pfd, 1, 500) <= 0)
			continue;
		n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			continue;
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;

			p += sizeof(*ev) + ev->len;
			if (ev->len && !skip_name(ev->name)) {
				char path[4096];
				json_t *sum = NULL;

				snprintf(path, sizeof(path), "%s/%s", dir, ev->name);
				if (pg_image_scan(st, path, &sum) < 0) {
					fprintf(stderr, "%s: refused: %s\n", path, pg_last_error());
				} else {
					printf("%s: scanned, id %lld, %lld packages\n", path,
					       (long long)json_integer_value(
						   json_object_get(sum, "id")),
					       (long long)json_integer_value(
						   json_object_get(sum, "packages")));
					fflush(stdout);
				}
				json_decref(sum);
				done++;
			}
		}
	}
out:
	close(fd);
	return rc;
}
