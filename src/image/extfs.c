/*
 * libext2fs on top of payguard block devices: an io_manager whose channel
 * reads and writes a window (a partition) of a pg_bdev, so ext2/3/4 inside
 * raw, qcow2 and overlay images is read and written without a loop device,
 * a mount or a temporary copy. Also filesystem sniffing and file helpers.
 */
#include "image_int.h"

#include "payguard/error.h"
#include "payguard/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct window {
	struct pg_bdev *d;
	uint64_t off, len;
};

#define MAX_WINDOWS 64
static struct window windows[MAX_WINDOWS];
static pthread_mutex_t windows_lock = PTHREAD_MUTEX_INITIALIZER;

static pthread_once_t err_once = PTHREAD_ONCE_INIT;

/* com_err needs libext2fs's message table registered once. */
static void
init_errors(void)
{
	initialize_ext2_error_table();
}

int
pgi_extfs_fail(errcode_t err, const char *what)
{
	pthread_once(&err_once, init_errors);
	int code = PG_EIO;

	switch (err) {
	case EXT2_ET_BAD_MAGIC:
	case EXT2_ET_SB_CSUM_INVALID:
	case EXT2_ET_CORRUPT_SUPERBLOCK:
	case EXT2_ET_BAD_DESC_SIZE:
	case EXT2_ET_UNSUPP_FEATURE:
	case EXT2_ET_RO_UNSUPP_FEATURE:
	case EXT2_ET_GDESC_BAD_BLOCK_MAP:
	case EXT2_ET_GDESC_BAD_INODE_MAP:
	case EXT2_ET_GDESC_BAD_INODE_TABLE:
	case EXT2_ET_BAD_BLOCK_NUM:
	case EXT2_ET_DIR_CORRUPTED:
	case EXT2_ET_DIR_CSUM_INVALID:
	case EXT2_ET_INODE_CSUM_INVALID:
	case EXT2_ET_EXTENT_HEADER_BAD:
	case EXT2_ET_BLOCK_BITMAP_CSUM_INVALID:
	case EXT2_ET_INODE_BITMAP_CSUM_INVALID:
	case EXT2_ET_BAD_INODE_NUM:
		code = PG_ECORRUPT;
		break;
	case EXT2_ET_FILE_NOT_FOUND:
		code = PG_ENOENT;
		break;
	case EXT2_ET_NO_MEMORY:
		code = PG_ENOMEM;
		break;
	case EXT2_ET_DIR_NO_SPACE:
	case EXT2_ET_BLOCK_ALLOC_FAIL:
	case EXT2_ET_INODE_ALLOC_FAIL:
		code = PG_ERANGE;
		break;
	default:
		break;
	}
	return pg_error(code, "extfs", "%s: %s (libext2fs %ld)", what, error_message(err),
			(long)err);
}

static errcode_t
io_open(const char *name, int flags, io_channel *channel)
{
	io_channel io = NULL;
	unsigned idx;
	errcode_t e;

	if (sscanf(name, "pgbdev:%u", &idx) != 1 || idx >= MAX_WINDOWS || !windows[idx].d)
		return EXT2_ET_BAD_DEVICE_NAME;
	if ((flags & IO_FLAG_RW) && !windows[idx].d->ops->write)
		return EXT2_ET_RO_FILSYS;
	e = ext2fs_get_memzero(sizeof(struct struct_io_channel), &io);
	if (e)
		return e;
	io->magic = EXT2_ET_MAGIC_IO_CHANNEL;
	io->manager = pgi_bdev_io_manager;
	e = ext2fs_get_mem(strlen(name) + 1, &io->name);
	if (e) {
		ext2fs_free_mem(&io);
		return e;
	}
	strcpy(io->name, name);
	io->block_size = 1024;
	io->refcount = 1;
	io->private_data = &windows[idx];
	*channel = io;
	return 0;
}

static errcode_t
io_close(io_channel io)
{
	if (--io->refcount > 0)
		return 0;
	ext2fs_free_mem(&io->name);
	ext2fs_free_mem(&io);
	return 0;
}

static errcode_t
io_set_blksize(io_channel io, int blksize)
{
	io->block_size = blksize;
	return 0;
}

static errcode_t
io_rw(io_channel io, unsigned long long block, int count, void *data, int wr)
{
	struct window *w = io->private_data;
	uint64_t size = count < 0 ? (uint64_t)(-(int64_t)count) : (uint64_t)count * io->block_size;
	uint64_t off = block * (uint64_t)io->block_size;
	int rc;

	if (off > w->len || size > w->len - off)
		return wr ? EXT2_ET_SHORT_WRITE : EXT2_ET_SHORT_READ;
	rc = wr ? pgi_bdev_write(w->d, w->off + off, data, (size_t)size)
		: pgi_bdev_read(w->d, w->off + off, data, (size_t)size);
	if (rc < 0)
		return wr ? EXT2_ET_SHORT_WRITE : EXT2_ET_SHORT_READ;
	return 0;
}

static errcode_t
io_read_blk64(io_channel io, unsigned long long block, int count, void *data)
{
	return io_rw(io, block, count, data, 0);
}

static errcode_t
io_write_blk64(io_channel io, unsigned long long block, int count, const void *data)
{
	return io_rw(io, block, count, (void *)data, 1);
}

static errcode_t
io_read_blk(io_channel io, unsigned long block, int count, void *data)
{
	return io_rw(io, block, count, data, 0);
}

static errcode_t
io_write_blk(io_channel io, unsigned long block, int count, const void *data)
{
	return io_rw(io, block, count, (void *)data, 1);
}

static errcode_t
io_write_byte(io_channel io, unsigned long offset, int size, const void *data)
{
	struct window *w = io->private_data;

	if (size < 0 || offset > w->len || (uint64_t)size > w->len - offset)
		return EXT2_ET_SHORT_WRITE;
	return pgi_bdev_write(w->d, w->off + offset, data, (size_t)size) < 0 ? EXT2_ET_SHORT_WRITE
									     : 0;
}

static errcode_t
io_flush(io_channel io)
{
	return 0;
}

static errcode_t
io_set_option(io_channel io, const char *option, const char *arg)
{
	return EXT2_ET_INVALID_ARGUMENT;
}

static struct struct_io_manager pg_io_manager = {
    .magic = EXT2_ET_MAGIC_IO_MANAGER,
    .name = "payguard block device",
    .open = io_open,
    .close = io_close,
    .set_blksize = io_set_blksize,
    .read_blk = io_read_blk,
    .write_blk = io_write_blk,
    .flush = io_flush,
    .write_byte = io_write_byte,
    .set_option = io_set_option,
    .read_blk64 = io_read_blk64,
    .write_blk64 = io_write_blk64,
};

io_manager pgi_bdev_io_manager = &pg_io_manager;

int
pgi_extfs_open(struct pg_bdev *d, uint64_t off, uint64_t len, int rw, ext2_filsys *out)
{
	char name[32];
	int idx = -1;
	errcode_t e;

	*out = NULL;
	pthread_once(&err_once, init_errors);
	pthread_mutex_lock(&windows_lock);
	for (int i = 0; i < MAX_WINDOWS; i++) {
		if (!windows[i].d) {
			idx = i;
			windows[i].d = d;
			windows[i].off = off;
			windows[i].len = len;
			break;
		}
	}
	pthread_mutex_unlock(&windows_lock);
	if (idx < 0)
		return pg_error(PG_EBUSY, "extfs", "too many open filesystems");
	snprintf(name, sizeof(name), "pgbdev:%d", idx);
	e = ext2fs_open2(name, NULL, (rw ? EXT2_FLAG_RW : 0) | EXT2_FLAG_64BITS, 0, 0,
			 pgi_bdev_io_manager, out);
	if (e) {
		windows[idx].d = NULL;
		*out = NULL;
		return pgi_extfs_fail(e, "cannot open the ext2/3/4 filesystem");
	}
	/* The window slot stays taken until pgi_extfs_close. */
	(*out)->priv_data = &windows[idx];
	return 0;
}

int
pgi_extfs_close(ext2_filsys fs)
{
	struct window *w;
	errcode_t e;

	if (!fs)
		return 0;
	w = fs->priv_data;
	/* Writes back superblock, group descriptors and bitmaps if dirty. */
	e = ext2fs_close_free(&fs);
	if (w) {
		pthread_mutex_lock(&windows_lock);
		w->d = NULL;
		pthread_mutex_unlock(&windows_lock);
	}
	return e ? pgi_extfs_fail(e, "close filesystem") : 0;
}

const char *
pgi_fs_sniff(struct pg_bdev *d, uint64_t off, uint64_t len)
{
	/* per thread: scans may run in several threads of one server */
	static _Thread_local uint8_t b[0x10050];
	size_t n = sizeof(b);

	if (len < n)
		n = (size_t)len;
	memset(b, 0, sizeof(b));
	if (pgi_bdev_read(d, off, b, n) < 0)
		return NULL;
	if (b[1024 + 56] == 0x53 && b[1024 + 57] == 0xEF) {
		uint32_t compat = b[1024 + 92] | (b[1024 + 93] << 8) | (b[1024 + 94] << 16);
		uint32_t incompat = b[1024 + 96] | (b[1024 + 97] << 8);
		uint32_t rocompat = b[1024 + 100] | (b[1024 + 101] << 8);

		if ((incompat & (0x40 | 0x80 | 0x200 | 0x8000)) ||
		    (rocompat & (0x8 | 0x20 | 0x40 | 0x400)))
			return "ext4";
		if (compat & 0x4)
			return "ext3";
		return "ext2";
	}
	if (memcmp(b, "XFSB", 4) == 0)
		return "xfs";
	if (memcmp(b + 0x10040, "_BHRfS_M", 8) == 0)
		return "btrfs";
	if (memcmp(b, "LUKS\xba\xbe", 6) == 0)
		return "crypto_LUKS";
	if (memcmp(b + 536, "LVM2 001", 8) == 0)
		return "LVM2_member";
	if (memcmp(b + 4086, "SWAPSPACE2", 10) == 0 || memcmp(b + 4086, "SWAP-SPACE", 10) == 0)
		return "swap";
	if (memcmp(b + 3, "NTFS    ", 8) == 0)
		return "ntfs";
	if (memcmp(b + 0x8001, "CD001", 5) == 0)
		return "iso9660";
	if (b[510] == 0x55 && b[511] == 0xAA &&
	    (memcmp(b + 82, "FAT32   ", 8) == 0 || memcmp(b + 54, "FAT1", 4) == 0))
		return "vfat";
	return NULL;
}

int
pgi_extfs_lookup(ext2_filsys fs, const char *path, int follow, ext2_ino_t *ino)
{
	errcode_t e;

	while (*path == '/')
		path++;
	if (!*path) {
		*ino = EXT2_ROOT_INO;
		return 0;
	}
	/* namei resolves "..", and absolute symlinks against the root we pass:
	 * the filesystem's own root, so nothing leaves the image. */
	if (follow)
		e = ext2fs_namei_follow(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, path, ino);
	else
		e = ext2fs_namei(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, path, ino);
	if (e == EXT2_ET_FILE_NOT_FOUND || e == ENOENT)
		return PG_ENOENT;
	if (e)
		return pgi_extfs_fail(e, path);
	return 0;
}

int
pgi_extfs_read(ext2_filsys fs, const char *path, size_t max, uint8_t **data, size_t *len)
{
	struct ext2_inode inode;
	ext2_file_t f = NULL;
	ext2_ino_t ino;
	uint64_t size;
	uint8_t *buf = NULL;
	unsigned got;
	size_t have = 0;
	errcode_t e;
	int rc;

	*data = NULL;
	*len = 0;
	rc = pgi_extfs_lookup(fs, path, 1, &ino);
	if (rc < 0)
		return rc;
	e = ext2fs_read_inode(fs, ino, &inode);
	if (e)
		return pgi_extfs_fail(e, path);
	if (!LINUX_S_ISREG(inode.i_mode))
		return pg_error(PG_EINVAL, "extfs", "'%s' is not a regular file", path);
	size = EXT2_I_SIZE(&inode);
	if (size > max)
		return pg_error(PG_ETOOBIG, "extfs", "'%s' is %llu bytes, over the %zu limit", path,
				(unsigned long long)size, max);
	buf = malloc((size_t)size + 1);
	if (!buf)
		return PG_ENOMEM;
	e = ext2fs_file_open(fs, ino, 0, &f);
	if (e) {
		rc = pgi_extfs_fail(e, path);
		goto fail;
	}
	while (have < size) {
		e = ext2fs_file_read(f, buf + have, (unsigned)(size - have), &got);
		if (e) {
			rc = pgi_extfs_fail(e, path);
			goto fail;
		}
		if (got == 0)
			break;
		have += got;
	}
	ext2fs_file_close(f);
	buf[have] = 0;
	*data = buf;
	*len = have;
	return 0;
fail:
	if (f)
		ext2fs_file_close(f);
	free(buf);
	return rc;
}
