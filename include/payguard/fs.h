/*
 * File helpers that never leave half-written data: a file is written to a
 * temporary name beside its target, synced, and renamed over it.
 */
#ifndef PAYGUARD_FS_H
#define PAYGUARD_FS_H

#include <stddef.h>
#include <stdint.h>

/* mkdir -p; existing directories are fine. */
int pg_mkdir_p(const char *path, unsigned mode);
/* Atomically replaces path with data (tmp + fsync + rename + fsync dir). */
int pg_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode);
/* Reads a whole file of at most max bytes into a malloc'd buffer. */
int pg_read_file(const char *path, size_t max, uint8_t **data, size_t *len);

#endif
