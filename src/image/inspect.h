/* Inspection entry points shared by scan, upgrade and the fuzzers. */
#ifndef PG_IMAGE_INSPECT_H
#define PG_IMAGE_INSPECT_H

#include "image_int.h"

#include <jansson.h>

/* dpkg status text -> [{name, version, arch, source, source_version, status}] */
int pgi_dpkg_packages_json(const char *text, size_t len, json_t **out);
/* Fills inv with ptable, partitions, os, packages of an opened device. */
int pgi_inspect_bdev(struct pg_bdev *d, json_t *inv);
/* SHA-256 of a file's bytes (holes hashed without reading). */
int pgi_hash_file(const char *path, char out[65]);
/* Opens path and builds its full inventory. */
int pgi_inspect_path(const char *path, int with_hash, json_t **out);

#endif
