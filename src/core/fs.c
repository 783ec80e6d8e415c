/* Crash-safe file writing (tmp + fsync + rename) and bounded whole-file reads. */
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

int
pg_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
	char tmp[4200], dirbuf[4200];
	int fd, dfd, rc = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
		return pg_error(PG_EINVAL, "fs", "path too long");
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
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
