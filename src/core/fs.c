/* Crash-safe file writing (tmp + fsync + rename), bounded whole-file reads and the
 * permission checks for private files (data directory, store, keys, tokens). */
#include "payguard/fs.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int
pg_mkdir_p(const char *path, unsigned mode)
{
	char tmp[4096];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(tmp))
		return pg_error(PG_EINVAL, "fs", "bad directory path");
	memcpy(tmp, path, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return pg_error(PG_ESYS, "fs", "unable to create '%s': %s", tmp,
					strerror(errno));
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return pg_error(PG_ESYS, "fs", "unable to create '%s': %s", tmp, strerror(errno));
	return 0;
}

static int
write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* What a file that is not a regular one is, for messages. */
static const char *
file_kind(mode_t m)
{
	if (S_ISLNK(m))
		return "a symbolic link";
	if (S_ISDIR(m))
		return "a directory";
	if (S_ISCHR(m))
		return "a character device";
	if (S_ISBLK(m))
		return "a block device";
	if (S_ISFIFO(m))
		return "a FIFO";
	if (S_ISSOCK(m))
		return "a socket";
	return "not a regular file";
}

int
pg_fs_check_replaceable(const char *path)
{
	struct stat sb;

	if (lstat(path, &sb) < 0) {
		if (errno == ENOENT)
			return 0;
		return pg_error(PG_ESYS, "fs", "unable to stat '%s': %s", path, strerror(errno));
	}
	if (!S_ISREG(sb.st_mode))
		return pg_error(PG_EINVAL, "fs",
				"refusing to replace '%s': it is %s, not a regular file", path,
				file_kind(sb.st_mode));
	return 0;
}

int
pg_fs_shell_quote(char *out, size_t outlen, const char *s)
{
	size_t o = 0;

	if (outlen < 3)
		return pg_error(PG_ETOOBIG, "fs", "no room to quote a path");
	out[o++] = '\'';
	for (; *s; s++) {
		const char *piece = *s == '\'' ? "'\\''" : NULL;
		size_t n = piece ? 4 : 1;

		if (o + n + 2 > outlen)
			return pg_error(PG_ETOOBIG, "fs", "path too long to quote");
		if (piece)
			memcpy(out + o, piece, n);
		else
			out[o] = *s;
		o += n;
	}
	out[o++] = '\'';
	out[o] = '\0';
	return 0;
}

int
pg_fs_check_private(const char *path, int is_dir)
{
	char q[4200];
	struct stat sb;

	if (stat(path, &sb) < 0)
		return pg_error(errno == ENOENT ? PG_ENOENT : PG_ESYS, "fs",
				"unable to stat '%s': %s", path, strerror(errno));
	if (is_dir ? !S_ISDIR(sb.st_mode) : !S_ISREG(sb.st_mode))
		return pg_error(PG_EINVAL, "fs", "'%s' is %s, not a %s", path,
				S_ISREG(sb.st_mode) ? "a regular file" : file_kind(sb.st_mode),
				is_dir ? "directory" : "regular file");
	if (!(sb.st_mode & 077))
		return 0;
	if (pg_fs_shell_quote(q, sizeof(q), path) < 0)
		q[0] = '\0';
	return pg_error(PG_EPERM, "fs", "permissions %04o for '%s' are too open; run: chmod %s %s",
			(unsigned)(sb.st_mode & 07777), path, is_dir ? "700" : "600", q);
}

int
pg_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
	char tmp[4200], dirbuf[4200];
	int fd, dfd, rc = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
		return pg_error(PG_EINVAL, "fs", "path too long");
	/* rename() would replace a device, FIFO, directory entry or symlink just
	 * as well as a file: only a regular file (or nothing) may be replaced */
	rc = pg_fs_check_replaceable(path);
	if (rc < 0)
		return rc;
	/* a stale temporary of a crashed writer with our pid goes; then the
	 * name must be new, so nothing planted there is followed or reused */
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return pg_error(PG_ESYS, "fs", "unable to create '%s': %s", tmp, strerror(errno));
	if (write_all(fd, data, len) < 0 || fsync(fd) < 0) {
		rc = pg_error(PG_EIO, "fs", "unable to write '%s': %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		return rc;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		rc = pg_error(PG_ESYS, "fs", "unable to rename '%s': %s", tmp, strerror(errno));
		unlink(tmp);
		return rc;
	}
	snprintf(dirbuf, sizeof(dirbuf), "%s", path);
	dfd = open(dirname(dirbuf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

int
pg_read_file(const char *path, size_t max, uint8_t **data, size_t *len)
{
	struct stat sb;
	uint8_t *p = NULL;
	size_t n = 0, cap;
	int fd;

	*data = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pg_error(errno == ENOENT ? PG_ENOENT : PG_ESYS, "fs",
				"unable to open '%s': %s", path, strerror(errno));
	cap = (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && (size_t)sb.st_size < max)
		  ? (size_t)sb.st_size + 1
		  : 4096;
	for (;;) {
		ssize_t r;

		if (n == cap || !p) {
			uint8_t *q;

			if (p)
				cap = cap * 2;
			if (cap > max + 1)
				cap = max + 1;
			q = realloc(p, cap);
			if (!q) {
				free(p);
				close(fd);
				return PG_ENOMEM;
			}
			p = q;
		}
		r = read(fd, p + n, cap - n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			free(p);
			close(fd);
			return pg_error(PG_EIO, "fs", "unable to read '%s': %s", path,
					strerror(errno));
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > max) {
			free(p);
			close(fd);
			return pg_error(PG_ETOOBIG, "fs", "'%s' is larger than %zu bytes", path,
					max);
		}
	}
	close(fd);
	*data = p;
	*len = n;
	return 0;
}
