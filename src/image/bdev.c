/*
 * Block devices: format detection by content and the raw driver. A device
 * is an ops table (read, write, close) so the partition reader, the
 * libext2fs adapter and the overlay writer do not care what is underneath.
 */
#include "image_int.h"

#include "payguard/error.h"
#include "payguard/log.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct raw {
	int fd;
};

static int
raw_read(struct pg_bdev *d, uint64_t off, void *buf, size_t len)
{
	struct raw *r = d->priv;
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(r->fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return pg_error(PG_EIO, "image", "read at %llu: %s",
					(unsigned long long)off, strerror(errno));
		if (n == 0) {
			/* A raw file shorter than its stat size cannot happen; past
			 * the end reads as zeros like a sparse tail. */
			memset(p, 0, len);
			return 0;
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static void
raw_close(struct pg_bdev *d)
{
	struct raw *r = d->priv;

	if (r)
		close(r->fd);
	free(r);
	free(d->path);
	free(d);
}

static const struct pg_bdev_ops raw_ops = {
    .read = raw_read,
    .write = NULL,
    .close = raw_close,
};

/* Bytes at an offset that name what a file is. */
struct magic {
	size_t off, len;
	const char *bytes;
	const char *what;
};

/* Formats that are not a raw disk, tried in this order (qcow2 before
 * qcow version 1, whose magic is a prefix of it). */
static const struct magic other_formats[] = {
    {0, 4, "QFI\xfb", "qcow2"},
    {0, 4, "KDMV", "VMDK sparse image"},
    {0, 21, "# Disk DescriptorFile", "VMDK descriptor"},
    {0x40, 4, "\x7f\x10\xda\xbe", "VirtualBox VDI image"},
    {0, 8, "vhdxfile", "VHDX image"},
    {0, 8, "conectix", "VHD image"},
    {0, 4, "QED\0", "QED image"},
    {0, 3, "QFI", "qcow version 1 image"},
    {0, 2, "\x1f\x8b", "gzip-compressed data"},
    {0, 6, "\xfd\x37zXZ\0", "xz-compressed data"}, /* \x37: '7' */
    {0, 4, "\x28\xb5\x2f\xfd", "zstd-compressed data"},
    {0, 3, "BZh", "bzip2-compressed data"},
    {0, 4, "PK\x03\x04", "zip archive"},
    {0, 8, "!<arch>\n", "ar archive (a .deb?)"},
    {257, 5, "ustar", "tar archive"},
    {0x8001, 5, "CD001", "ISO 9660 image"},
    {0, 4, "\x7f\x45LF", "ELF executable"}, /* \x45: 'E' */
};

/* What starts a raw disk: an MBR, a GPT, or a filesystem (ext2/3/4, XFS,
 * btrfs). */
static const struct magic raw_starts[] = {
    {510, 2, "\x55\xaa", "MBR"},
    {512, 8, "EFI PART", "GPT"},
    {1024 + 56, 2, "\x53\xef", "ext2/3/4"},
    {0, 4, "XFSB", "XFS"},
    {0x10040, 8, "_BHRfS_M", "btrfs"},
};

/* The first of the n magics m found in the header h (nh bytes), or NULL. */
static const struct magic *
magic_find(const struct magic *m, size_t n, const uint8_t *h, size_t nh)
{
	for (size_t i = 0; i < n; i++)
		if (nh >= m[i].off + m[i].len && memcmp(h + m[i].off, m[i].bytes, m[i].len) == 0)
			return &m[i];
	return NULL;
}

const char *
pgi_image_sniff(const uint8_t *h, size_t n, uint64_t filesize)
{
	const struct magic *m =
	    magic_find(other_formats, sizeof(other_formats) / sizeof(other_formats[0]), h, n);

	if (m)
		return m->what;
	if (filesize < 512)
		return "a file too small to be a disk image";
	/* Raw: a partition table or a filesystem starts the disk. */
	if (magic_find(raw_starts, sizeof(raw_starts) / sizeof(raw_starts[0]), h, n))
		return "raw";
	return "unrecognised content (no qcow2 header, partition table or filesystem)";
}

int
pgi_bdev_read(struct pg_bdev *d, uint64_t off, void *buf, size_t len)
{
	if (off > d->size || len > d->size - off)
		return pg_error(PG_ERANGE, "image", "read of %zu bytes at %llu past the end (%llu)",
				len, (unsigned long long)off, (unsigned long long)d->size);
	return d->ops->read(d, off, buf, len);
}

int
pgi_bdev_write(struct pg_bdev *d, uint64_t off, const void *buf, size_t len)
{
	if (!d->ops->write)
		return pg_error(PG_EPERM, "image", "device is read-only");
	if (off > d->size || len > d->size - off)
		return pg_error(PG_ERANGE, "image", "write past the end of the device");
	return d->ops->write(d, off, buf, len);
}

void
pgi_bdev_close(struct pg_bdev *d)
{
	if (d)
		d->ops->close(d);
}

#define SNIFF_LEN (0x10048 + 8)

int
pgi_raw_from_fd(int fd, uint64_t size, struct pg_bdev **out)
{
	struct pg_bdev *d = calloc(1, sizeof(*d));
	struct raw *r = calloc(1, sizeof(*r));

	if (!d || !r) {
		free(d);
		free(r);
		return PG_ENOMEM;
	}
	r->fd = fd;
	d->ops = &raw_ops;
	d->priv = r;
	d->size = size;
	strcpy(d->fmt, "raw");
	*out = d;
	return 0;
}

/* Format detection and the driver for an open fd (owned from now on);
 * chain[depth] is the file's resolved name. */
static int
bdev_from_fd(int fd, const char *path, int depth, char chain[][4096], const char *force_fmt,
	     struct pg_bdev **out)
{
	uint8_t *head = NULL;
	struct stat sb;
	const char *what;
	ssize_t n;
	int rc = 0;

	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		rc = pg_error(PG_EINVAL, "image", "'%s' is not a regular file", path);
		goto fail;
	}
	head = calloc(1, SNIFF_LEN);
	if (!head) {
		rc = PG_ENOMEM;
		goto fail;
	}
	n = pread(fd, head, SNIFF_LEN, 0);
	if (n < 0) {
		rc = pg_error(PG_EIO, "image", "read '%s': %s", path, strerror(errno));
		goto fail;
	}
	what = pgi_image_sniff(head, (size_t)n, (uint64_t)sb.st_size);
	/* A qcow2 backing-format extension saying "raw" wins over sniffing:
	 * a blank raw disk has no signature to find. */
	if (force_fmt && strcmp(force_fmt, "raw") == 0 && strcmp(what, "qcow2") != 0)
		what = "raw";
	free(head);
	head = NULL;
	if (strcmp(what, "qcow2") == 0) {
		rc = pgi_qcow2_open_fd(fd, path, depth, chain, out);
		if (rc == 0)
			(*out)->path = strdup(chain[depth]);
		return rc;
	}
	if (strcmp(what, "raw") == 0) {
		rc = pgi_raw_from_fd(fd, (uint64_t)sb.st_size, out);
		if (rc < 0)
			goto fail;
		(*out)->path = strdup(chain[depth]);
		return 0;
	}
	rc =
	    pg_error(PG_EFORMAT, "image", "'%s' is not a raw or qcow2 image: found %s", path, what);
fail:
	free(head);
	close(fd);
	return rc;
}

static int
chain_check(int depth, char chain[][4096])
{
	for (int i = 0; i < depth; i++)
		if (strcmp(chain[i], chain[depth]) == 0)
			return pg_error(PG_EFORMAT, "image",
					"backing chain loop: '%s' is its own backing file",
					chain[depth]);
	return 0;
}

int
pgi_bdev_open_depth(const char *path, int depth, char chain[][4096], const char *force_fmt,
		    struct pg_bdev **out)
{
	int fd, rc;

	*out = NULL;
	if (depth >= PG_BDEV_MAX_CHAIN)
		return pg_error(PG_EFORMAT, "image", "backing chain deeper than %d at '%s'",
				PG_BDEV_MAX_CHAIN, path);
	if (!realpath(path, chain[depth]))
		return pg_error(errno == ENOENT ? PG_ENOENT : PG_EIO, "image", "'%s': %s", path,
				strerror(errno));
	rc = chain_check(depth, chain);
	if (rc < 0)
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pg_error(errno == ENOENT ? PG_ENOENT : PG_EIO, "image",
				"cannot open '%s': %s", path, strerror(errno));
	return bdev_from_fd(fd, path, depth, chain, force_fmt, out);
}

/* ---- where backing files may be (issue 13: a qcow2 naming /etc/shadow) ---- */

static char **backing_dirs; /* resolved; set once by the CLI before any open */
static size_t nbacking_dirs;
static _Thread_local const char *extra_dir; /* pgi_bdev_open_allow's folder */

int
pg_image_set_backing_dirs(const char *const *dirs, size_t n)
{
	char **v = NULL, real[PATH_MAX];
	struct stat sb;
	int rc = 0;

	if (n && !(v = calloc(n, sizeof(*v))))
		return PG_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (!realpath(dirs[i], real) || stat(real, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
			rc = pg_error(PG_EINVAL, "image", "backing folder '%s': %s", dirs[i],
				      errno ? strerror(errno) : "not a directory");
			goto fail;
		}
		if (!(v[i] = strdup(real))) {
			rc = PG_ENOMEM;
			goto fail;
		}
	}
	for (size_t i = 0; i < nbacking_dirs; i++)
		free(backing_dirs[i]);
	free(backing_dirs);
	backing_dirs = v;
	nbacking_dirs = n;
	return 0;
fail:
	for (size_t i = 0; i < n && v; i++)
		free(v[i]);
	free(v);
	return rc;
}

/* real (resolved) lies strictly inside dir (resolved). */
static int
path_under(const char *real, const char *dir)
{
	size_t n = strlen(dir);

	if (n == 1 && dir[0] == '/')
		return real[1] != 0;
	return strncmp(real, dir, n) == 0 && real[n] == '/';
}

static int
has_dotdot(const char *name)
{
	for (const char *p = name; (p = strstr(p, "..")); p += 2)
		if ((p == name || p[-1] == '/') && (p[2] == 0 || p[2] == '/'))
			return 1;
	return 0;
}

/* Opens a resolved name refusing any symlink on the way: the name was
 * checked symlink-free, so one there now is a swap after the check.
 * openat2(RESOLVE_NO_SYMLINKS) where the kernel has it, O_NOFOLLOW on the
 * last component otherwise. */
static int
open_resolved(const char *real)
{
	struct open_how how = {.flags = O_RDONLY | O_CLOEXEC, .resolve = RESOLVE_NO_SYMLINKS};
	long fd = syscall(SYS_openat2, AT_FDCWD, real, &how, sizeof(how));

	if (fd < 0 && (errno == ENOSYS || errno == EPERM || errno == E2BIG))
		fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	return (int)fd;
}

int
pgi_bdev_open_backing(const char *name, int depth, char chain[][4096], const char *force_fmt,
		      struct pg_bdev **out)
{
	char dir[4096], full[4096 + 1100];
	const char *img = chain[depth];
	int allowed, fd, rc;

	*out = NULL;
	if (depth + 1 >= PG_BDEV_MAX_CHAIN)
		return pg_error(PG_EFORMAT, "image", "backing chain deeper than %d at '%s'",
				PG_BDEV_MAX_CHAIN, name);
	{
		char tmp[4096];

		snprintf(tmp, sizeof(tmp), "%s", img);
		snprintf(dir, sizeof(dir), "%s", dirname(tmp));
	}
	/* Relative names are relative to the image's folder (as QEMU reads them). */
	if (name[0] == '/')
		snprintf(full, sizeof(full), "%s", name);
	else
		snprintf(full, sizeof(full), "%s/%s", dir, name);
	if (has_dotdot(name) && !nbacking_dirs && !extra_dir)
		goto dotdot; /* refused without asking the filesystem */
	if (!realpath(full, chain[depth + 1]))
		return pg_error(errno == ENOENT ? PG_ENOENT : PG_EIO, "image",
				"backing file '%s': %s", name, strerror(errno));
	/* The image's own folder, with no ".." on the way (even one that comes
	 * back); a folder named by the operator, however it is reached. */
	allowed = !has_dotdot(name) && path_under(chain[depth + 1], dir);
	if (!allowed && extra_dir)
		allowed = path_under(chain[depth + 1], extra_dir);
	for (size_t i = 0; !allowed && i < nbacking_dirs; i++)
		allowed = path_under(chain[depth + 1], backing_dirs[i]);
	if (!allowed && has_dotdot(name))
		goto dotdot;
	if (!allowed)
		return pg_error(PG_EFORMAT, "image",
				"backing file '%s' is '%s', outside the image's folder '%s': "
				"refused (name a folder with --backing-dir to allow it)",
				name, chain[depth + 1], dir);
	rc = chain_check(depth + 1, chain);
	if (rc < 0)
		return rc;
	fd = open_resolved(chain[depth + 1]);
	if (fd < 0)
		return pg_error(errno == ENOENT	 ? PG_ENOENT
				: errno == ELOOP ? PG_EFORMAT
						 : PG_EIO,
				"image", "cannot open backing file '%s': %s", chain[depth + 1],
				errno == ELOOP ? "a symlink appeared after the check"
					       : strerror(errno));
	return bdev_from_fd(fd, chain[depth + 1], depth + 1, chain, force_fmt, out);
dotdot:
	return pg_error(PG_EFORMAT, "image",
			"backing file name '%s' climbs out with '..': refused "
			"(backing files must be in the image's folder or a --backing-dir)",
			name);
}

int
pgi_bdev_open_allow(const char *path, const char *folder, struct pg_bdev **out)
{
	char real[PATH_MAX];
	int rc;

	if (!realpath(folder, real))
		return pg_error(errno == ENOENT ? PG_ENOENT : PG_EIO, "image", "'%s': %s", folder,
				strerror(errno));
	extra_dir = real;
	rc = pgi_bdev_open(path, out);
	extra_dir = NULL;
	return rc;
}

int
pgi_bdev_open(const char *path, struct pg_bdev **out)
{
	char(*chain)[4096] = calloc(PG_BDEV_MAX_CHAIN, 4096);
	int rc;

	if (!chain)
		return PG_ENOMEM;
	rc = pgi_bdev_open_depth(path, 0, chain, NULL, out);
	free(chain);
	return rc;
}
