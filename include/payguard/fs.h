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
/*
 * Atomically replaces path with data (tmp + fsync + rename + fsync dir).
 * Only a regular file or nothing may be at path: a device, FIFO, socket,
 * directory or symbolic link there (the link itself, never followed) is left
 * alone and PG_EINVAL returned.
 */
int pg_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode);
/* 0 if path does not exist or is a regular file (lstat); else PG_EINVAL saying what it is. */
int pg_fs_check_replaceable(const char *path);
/*
 * Refuses (PG_EPERM) a directory (is_dir) or file that group or others may
 * read, write or enter, with the chmod to run, as ssh does with keys:
 * "permissions 0644 for '/x/kek' are too open; run: chmod 600 '/x/kek'".
 * PG_ENOENT if it does not exist, PG_EINVAL if it is of the other kind.
 */
int pg_fs_check_private(const char *path, int is_dir);
/* path in single quotes for a shell command line ('\'' for a quote). */
int pg_fs_shell_quote(char *out, size_t outlen, const char *path);
/* Reads a whole file of at most max bytes into a malloc'd buffer. */
int pg_read_file(const char *path, size_t max, uint8_t **data, size_t *len);

#endif
