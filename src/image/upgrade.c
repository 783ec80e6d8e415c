/*
 * Offline upgrade (seed 1, "upgrade the images offline based on the stored
 * information"): a qcow2 overlay whose backing file is the untouched
 * original; .deb contents unpacked into its ext4 through libext2fs; the dpkg
 * database (status, info/<pkg>.list/.md5sums/.conffiles, scripts) updated
 * as dpkg would; packages with maintainer scripts left "unpacked" for a
 * first-boot `dpkg --configure -a`. Every upgrade is a job in the store,
 * with its progress (bytes unpacked of the total) and a stop flag checked
 * between files and every MiB, so a daemon can watch and interrupt it.
 */
#include "image_int.h"
#include "imagedb.h"
#include "inspect.h"

#include "payguard/json.h"
#include "payguard/buf.h"
#include "payguard/clock.h"
#include "payguard/db.h"
#include "payguard/error.h"
#include "payguard/events.h"
#include "payguard/fs.h"
#include "payguard/log.h"
#include "payguard/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define INFO	    "var/lib/dpkg/info"
#define STATUS_PATH "var/lib/dpkg/status"
#define MAX_STATUS  (64u << 20)
#define MAX_LIST    (16u << 20)
#define MAX_READ    (64u << 20) /* files read back from the image (conffiles, lists) */
#define CHUNK	    (1u << 20)	/* bytes written between stop checks */
#define TICK_MS	    200		/* progress stored at most this often */
#define QUEUE_GRACE 60		/* seconds a queued job may wait for its runner */

struct up {
	ext2_filsys fs;
	struct pg_buf log;
	uint32_t now;
	int unpacked; /* packages left for first boot */
	/* progress and stop */
	struct pg_store *st;
	int64_t job;
	const struct pg_upgrade_opts *o;
	uint64_t total, done;
	uint64_t last_ms;
	double last_frac;
	/* cluster lease (issue 14): NULL node, no lease */
	const char *node;
	int64_t lease_ms;
	uint64_t last_renew_ms;
	int lost;		  /* another node took the job over */
	uint8_t *chunk;		  /* CHUNK bytes */
	struct pg_deb_data *data; /* the package being unpacked */
};

static void ulog(struct up *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
ulog(struct up *u, const char *fmt, ...)
{
	va_list ap;
	char line[1024];

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "upgrade: %s\n", line);
	pg_buf_printf(&u->log, "%s\n", line);
}

/* The store's clock in ms since the epoch, per engine: leases of nodes on
 * several machines are compared on one clock, the store's. */
#define NOW_PG "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
#define NOW_SQ "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"

static const char *
by_engine(struct pg_store *st, const char *pgsql, const char *sqlite)
{
	return pg_db_engine_of(st->pdb) == PG_DB_POSTGRES ? pgsql : sqlite;
}

#define KEEP_SQL(NOW)                                                                              \
	"UPDATE image_job SET lease_until_ms = " NOW " + ?"                                        \
	" WHERE id = ? AND node = ? AND state = 'running'"

/*
 * Renews this runner's lease on its job, at most every third of the lease
 * (force: now). A store that cannot be reached does not stop the upgrade
 * (the lease has time left for the next try); a job that is no longer this
 * node's (its lease ran out and another node took it over) does: u->lost.
 */
static void
lease_keep(struct up *u, int force)
{
	uint64_t now = pg_mono_ms();
	int64_t changed = 0;

	if (!u->job || !u->node || u->lost)
		return;
	if (!force && now - u->last_renew_ms < (uint64_t)u->lease_ms / 3)
		return;
	if (pgi_image_run(
		u->st, by_engine(u->st, KEEP_SQL(NOW_PG), KEEP_SQL(NOW_SQ)),
		json_pack("[I,I,s]", (json_int_t)u->lease_ms, (json_int_t)u->job, u->node),
		&changed) < 0) {
		pg_debug("upgrade", "lease not renewed: %s", pg_last_error());
		return;
	}
	u->last_renew_ms = now;
	if (changed != 1)
		u->lost = 1;
}

/* Stores and reports progress: forced at 0, then at most every TICK_MS.
 * 1.0 is kept for "done" (job_finish), so unpacking tops out below it. */
static void
tick(struct up *u, int force)
{
	uint64_t now = pg_mono_ms();
	double frac;

	if (!force && now - u->last_ms < TICK_MS)
		return;
	frac = u->total ? (double)u->done / (double)u->total : 0.0;
	if (frac > 0.99)
		frac = 0.99;
	if (frac < u->last_frac)
		frac = u->last_frac;
	u->last_ms = now;
	u->last_frac = frac;
	/* A progress row that cannot be written (store busy) does not fail
	 * the upgrade; the next tick tries again. */
	if (u->job &&
	    pgi_image_run(u->st,
			  "UPDATE image_job SET progress = ? WHERE id = ?"
			  " AND coalesce(node, '') = ?",
			  json_pack("[f,I,s]", frac, (json_int_t)u->job, u->node ? u->node : ""),
			  NULL) < 0)
		pg_debug("upgrade", "progress not stored: %s", pg_last_error());
	if (u->o && u->o->progress)
		u->o->progress(u->o->progress_arg, frac);
	lease_keep(u, 0);
}

static int
check_stop(struct up *u)
{
	lease_keep(u, 0);
	if (u->lost)
		return pg_error(PG_ESTATE, "upgrade",
				"job %lld was taken over by another node after node %s's lease "
				"expired; this runner's partial overlay is dropped",
				(long long)u->job, u->node);
	if (!u->o || !u->o->stop || !*u->o->stop)
		return 0;
	return pg_error(PG_EINTR, "upgrade",
			"stopped on request after %llu of %llu bytes; the overlay is dropped and "
			"the original image is untouched",
			(unsigned long long)u->done, (unsigned long long)u->total);
}

static void
md5_hex(const uint8_t *data, size_t len, char out[33])
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned n = 0;

	EVP_Digest(data, len, md, &n, EVP_md5(), NULL);
	for (unsigned i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void
split_path(const char *path, char *dir, size_t dl, char *base, size_t bl)
{
	const char *s = strrchr(path, '/');

	if (!s) {
		snprintf(dir, dl, "%s", "");
		snprintf(base, bl, "%s", path);
	} else {
		snprintf(dir, dl, "%.*s", (int)(s - path), path);
		snprintf(base, bl, "%s", s + 1);
	}
}

static void
set_owner(struct ext2_inode *in, unsigned uid, unsigned gid)
{
	in->i_uid = (uint16_t)uid;
	in->osd2.linux2.l_i_uid_high = (uint16_t)(uid >> 16);
	in->i_gid = (uint16_t)gid;
	in->osd2.linux2.l_i_gid_high = (uint16_t)(gid >> 16);
}

/* Retries a directory-entry insert after growing a full directory. */
#define WITH_DIR_SPACE(fs, dir, call)                                                              \
	({                                                                                         \
		errcode_t e_ = (call);                                                             \
		if (e_ == EXT2_ET_DIR_NO_SPACE) {                                                  \
			e_ = ext2fs_expand_dir((fs), (dir));                                       \
			if (!e_)                                                                   \
				e_ = (call);                                                       \
		}                                                                                  \
		e_;                                                                                \
	})

static int
do_mkdir(struct up *u, ext2_ino_t parent, const char *name, unsigned mode, unsigned uid,
	 unsigned gid, uint32_t mtime, ext2_ino_t *out)
{
	struct ext2_inode in;
	errcode_t e;

	e = WITH_DIR_SPACE(u->fs, parent, ext2fs_mkdir(u->fs, parent, 0, name));
	if (e)
		return pgi_extfs_fail(e, name);
	e = ext2fs_lookup(u->fs, parent, name, (int)strlen(name), NULL, out);
	if (!e)
		e = ext2fs_read_inode(u->fs, *out, &in);
	if (e)
		return pgi_extfs_fail(e, name);
	in.i_mode = (uint16_t)(LINUX_S_IFDIR | (mode & 07777));
	set_owner(&in, uid, gid);
	in.i_mtime = in.i_atime = mtime;
	in.i_ctime = u->now;
	e = ext2fs_write_inode(u->fs, *out, &in);
	return e ? pgi_extfs_fail(e, name) : 0;
}

/* Walks dir components inside the image, following symlinks (absolute ones
 * from the image root) as dpkg does for parent directories; creates missing
 * ones when create is set. */
static int
walk_dir(struct up *u, const char *path, int create, ext2_ino_t *out)
{
	ext2_ino_t cur = EXT2_ROOT_INO;
	const char *p = path;
	char comp[256];
	int rc;

	while (*p) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		struct ext2_inode in;
		ext2_ino_t ino;
		errcode_t err;

		if (n == 0 || n >= sizeof(comp)) {
			if (n)
				return pg_error(PG_EINVAL, "upgrade",
						"path component too long in '%s'", path);
			p++;
			continue;
		}
		memcpy(comp, p, n);
		comp[n] = 0;
		if (!strcmp(comp, ".") || !strcmp(comp, ".."))
			return pg_error(PG_EINVAL, "upgrade", "'%s' is not a clean path", path);
		err = ext2fs_lookup(u->fs, cur, comp, (int)n, NULL, &ino);
		if (err == EXT2_ET_FILE_NOT_FOUND) {
			if (!create)
				return PG_ENOENT;
			rc = do_mkdir(u, cur, comp, 0755, 0, 0, u->now, &ino);
			if (rc < 0)
				return rc;
		} else if (err) {
			return pgi_extfs_fail(err, path);
		}
		err = ext2fs_read_inode(u->fs, ino, &in);
		if (err)
			return pgi_extfs_fail(err, path);
		if (LINUX_S_ISLNK(in.i_mode)) {
			ext2_ino_t res;

			err = ext2fs_follow_link(u->fs, EXT2_ROOT_INO, cur, ino, &res);
			if (err == EXT2_ET_FILE_NOT_FOUND)
				return pg_error(PG_ENOENT, "upgrade",
						"dangling symlink '%s' in '%s'", comp, path);
			if (err)
				return pgi_extfs_fail(err, path);
			ino = res;
			err = ext2fs_read_inode(u->fs, ino, &in);
			if (err)
				return pgi_extfs_fail(err, path);
		}
		if (!LINUX_S_ISDIR(in.i_mode))
			return pg_error(PG_EEXIST, "upgrade", "'%s' in '%s' is not a directory",
					comp, path);
		cur = ino;
		p += n;
	}
	*out = cur;
	return 0;
}

/* Drops one link; frees blocks, xattr block and inode at zero links. */
static int
drop_link(struct up *u, ext2_ino_t ino)
{
	struct ext2_inode in;
	errcode_t e;
	blk64_t acl;

	e = ext2fs_read_inode(u->fs, ino, &in);
	if (e)
		return pgi_extfs_fail(e, "inode");
	if (in.i_links_count > 1) {
		in.i_links_count--;
		in.i_ctime = u->now;
		e = ext2fs_write_inode(u->fs, ino, &in);
		return e ? pgi_extfs_fail(e, "inode") : 0;
	}
	if ((in.i_flags & EXT4_INLINE_DATA_FL) || ext2fs_inode_has_valid_blocks2(u->fs, &in)) {
		e = ext2fs_punch(u->fs, ino, &in, NULL, 0, ~0ULL);
		if (e)
			return pgi_extfs_fail(e, "free blocks");
	}
	acl = ext2fs_file_acl_block(u->fs, &in);
	if (acl) {
		__u32 cnt = 0;

		e = ext2fs_adjust_ea_refcount3(u->fs, acl, NULL, -1, &cnt, ino);
		if (e)
			return pgi_extfs_fail(e, "xattr block");
		if (cnt == 0)
			ext2fs_block_alloc_stats2(u->fs, acl, -1);
		ext2fs_file_acl_block_set(u->fs, &in, 0);
	}
	in.i_links_count = 0;
	in.i_dtime = u->now;
	e = ext2fs_write_inode(u->fs, ino, &in);
	if (e)
		return pgi_extfs_fail(e, "inode");
	ext2fs_inode_alloc_stats2(u->fs, ino, -1, LINUX_S_ISDIR(in.i_mode));
	return 0;
}

/* Removes a non-directory entry if present; 1 if something was removed. */
static int
remove_name(struct up *u, ext2_ino_t dir, const char *name)
{
	struct ext2_inode in;
	ext2_ino_t ino;
	errcode_t e;

	e = ext2fs_lookup(u->fs, dir, name, (int)strlen(name), NULL, &ino);
	if (e == EXT2_ET_FILE_NOT_FOUND)
		return 0;
	if (e)
		return pgi_extfs_fail(e, name);
	e = ext2fs_read_inode(u->fs, ino, &in);
	if (e)
		return pgi_extfs_fail(e, name);
	if (LINUX_S_ISDIR(in.i_mode))
		return pg_error(PG_EEXIST, "upgrade", "'%s' is a directory in the image", name);
	e = ext2fs_unlink(u->fs, dir, name, ino, 0);
	if (e)
		return pgi_extfs_fail(e, name);
	int rc = drop_link(u, ino);
	return rc < 0 ? rc : 1;
}

/* A new regular file's inode, linked as name in dir: mode, owner and
 * times set, empty inline data or an empty extent tree as the filesystem
 * has them. */
static int
new_file_inode(struct up *u, ext2_ino_t dir, const char *name, unsigned mode, unsigned uid,
	       unsigned gid, uint32_t mtime, ext2_ino_t *ino, struct ext2_inode *in)
{
	errcode_t e;

	e = ext2fs_new_inode(u->fs, dir, LINUX_S_IFREG | 0644, NULL, ino);
	if (e)
		return pgi_extfs_fail(e, name);
	e = WITH_DIR_SPACE(u->fs, dir, ext2fs_link(u->fs, dir, name, *ino, EXT2_FT_REG_FILE));
	if (e)
		return pgi_extfs_fail(e, name);
	ext2fs_inode_alloc_stats2(u->fs, *ino, +1, 0);
	memset(in, 0, sizeof(*in));
	in->i_mode = (uint16_t)(LINUX_S_IFREG | (mode & 07777));
	set_owner(in, uid, gid);
	in->i_atime = in->i_mtime = mtime;
	in->i_ctime = u->now;
	in->i_links_count = 1;
	if (ext2fs_has_feature_inline_data(u->fs->super)) {
		in->i_flags |= EXT4_INLINE_DATA_FL;
	} else if (ext2fs_has_feature_extents(u->fs->super)) {
		ext2_extent_handle_t h;

		/* Opening an extent handle on an inode without extents puts an
		 * empty extent header in i_block and sets EXT4_EXTENTS_FL. */
		e = ext2fs_extent_open2(u->fs, *ino, in, &h);
		if (e)
			return pgi_extfs_fail(e, name);
		ext2fs_extent_free(h);
	}
	e = ext2fs_write_new_inode(u->fs, *ino, in);
	if (e)
		return pgi_extfs_fail(e, name);
	if (in->i_flags & EXT4_INLINE_DATA_FL) {
		e = ext2fs_inline_data_init(u->fs, *ino);
		if (e)
			return pgi_extfs_fail(e, name);
	}
	return 0;
}

/* Package files get their blocks in one go: block-by-block allocation in
 * ext2fs_file_write scans the bitmaps for every block. Initialized extents
 * without zeroing are safe here because every block is then written (a
 * failure drops the whole overlay). */
static int
preallocate(struct up *u, ext2_ino_t ino, const char *name, size_t size)
{
	blk64_t nblk = (size + u->fs->blocksize - 1) / u->fs->blocksize;
	errcode_t e = ext2fs_fallocate(u->fs, EXT2_FALLOCATE_FORCE_INIT, ino, NULL, ~0ULL, 0, nblk);

	if (e == EXT2_ET_BLOCK_ALLOC_FAIL)
		return pg_error(PG_ERANGE, "upgrade",
				"'%s' needs %llu MiB: the image's filesystem has %llu MiB "
				"free",
				name, (unsigned long long)(size >> 20),
				(unsigned long long)((ext2fs_free_blocks_count(u->fs->super) *
						      u->fs->blocksize) >>
						     20));
	if (e)
		return pgi_extfs_fail(e, name);
	return 0;
}

/* The next n bytes (at most CHUNK) of the package stream into u->chunk,
 * stop checked first; *n: how many came. */
static int
read_chunk(struct up *u, const char *name, size_t *n)
{
	int rc = check_stop(u);

	if (rc == 0)
		rc = pgi_deb_data_read(u->data, u->chunk, *n, n);
	if (rc == 0 && *n == 0)
		rc = pg_error(PG_ETRUNC, "upgrade", "'%s': package data ended early", name);
	return rc;
}

/* Writes size bytes of data (NULL: of the package stream, counted as
 * progress) to the open file f; a negative PG_E code, or 0 with *e the
 * first libext2fs error. */
static int
write_contents(struct up *u, ext2_file_t f, const char *name, const uint8_t *data, size_t size,
	       errcode_t *e)
{
	size_t done = 0;
	int rc = 0;

	*e = 0;
	while (done < size && !*e && rc == 0) {
		const uint8_t *p = data ? data + done : u->chunk;
		size_t n = size - done > CHUNK ? CHUNK : size - done, w = 0;

		if (!data && (rc = read_chunk(u, name, &n)) < 0)
			break;
		while (w < n) {
			unsigned got = 0;

			*e = ext2fs_file_write(f, p + w, (unsigned)(n - w), &got);
			if (*e || got == 0)
				break;
			w += got;
		}
		if (w < n && !*e)
			*e = EXT2_ET_SHORT_WRITE;
		done += w;
		if (!data) {
			u->done += w;
			tick(u, 0);
		}
	}
	return rc;
}

/* Creates a regular file from data (dpkg records) or, when data is NULL,
 * from the package stream u->data (counted as progress, stop checked every
 * CHUNK bytes). */
static int
create_file(struct up *u, ext2_ino_t dir, const char *name, const uint8_t *data, size_t size,
	    unsigned mode, unsigned uid, unsigned gid, uint32_t mtime)
{
	struct ext2_inode in;
	ext2_file_t f = NULL;
	ext2_ino_t ino;
	errcode_t e;
	int rc;

	rc = new_file_inode(u, dir, name, mode, uid, gid, mtime, &ino, &in);
	if (rc < 0)
		return rc;
	if (!data && size > CHUNK && (in.i_flags & EXT4_EXTENTS_FL)) {
		rc = preallocate(u, ino, name, size);
		if (rc < 0)
			return rc;
	}
	e = ext2fs_file_open(u->fs, ino, EXT2_FILE_WRITE, &f);
	if (e)
		return pgi_extfs_fail(e, name);
	rc = write_contents(u, f, name, data, size, &e);
	if (!e && rc == 0)
		e = ext2fs_file_close(f);
	else
		ext2fs_file_close(f);
	if (rc < 0)
		return rc;
	if (e)
		return pgi_extfs_fail(e, name);
	/* ext2fs_file_close wrote size and blocks; put our times back. */
	e = ext2fs_read_inode(u->fs, ino, &in);
	if (!e) {
		in.i_atime = in.i_mtime = mtime;
		e = ext2fs_write_inode(u->fs, ino, &in);
	}
	return e ? pgi_extfs_fail(e, name) : 0;
}

static int
write_path(struct up *u, const char *path, const uint8_t *data, size_t len, unsigned mode)
{
	char dir[4096], base[256];
	ext2_ino_t d;
	int rc;

	split_path(path, dir, sizeof(dir), base, sizeof(base));
	rc = walk_dir(u, dir, 1, &d);
	if (rc < 0)
		return rc;
	rc = remove_name(u, d, base);
	if (rc < 0)
		return rc;
	return create_file(u, d, base, data, len, mode, 0, 0, u->now);
}

static int
unlink_path(struct up *u, const char *path)
{
	char dir[4096], base[256];
	ext2_ino_t d;
	int rc;

	split_path(path, dir, sizeof(dir), base, sizeof(base));
	rc = walk_dir(u, dir, 0, &d);
	if (rc == PG_ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	return remove_name(u, d, base);
}

/* Reads a file inside the image without following its final symlink. */
static int
read_nofollow(struct up *u, ext2_ino_t dir, const char *name, uint8_t **data, size_t *len)
{
	struct ext2_inode in;
	ext2_ino_t ino;
	ext2_file_t f;
	errcode_t e;
	uint64_t size;
	unsigned got;

	*data = NULL;
	*len = 0;
	e = ext2fs_lookup(u->fs, dir, name, (int)strlen(name), NULL, &ino);
	if (e)
		return PG_ENOENT;
	e = ext2fs_read_inode(u->fs, ino, &in);
	if (e)
		return pgi_extfs_fail(e, name);
	if (!LINUX_S_ISREG(in.i_mode))
		return PG_EINVAL;
	size = EXT2_I_SIZE(&in);
	if (size > MAX_READ)
		return PG_ETOOBIG;
	*data = malloc((size_t)size + 1);
	if (!*data)
		return PG_ENOMEM;
	e = ext2fs_file_open(u->fs, ino, 0, &f);
	if (!e) {
		size_t have = 0;

		while (have < size &&
		       !(e = ext2fs_file_read(f, *data + have, (unsigned)(size - have), &got)) &&
		       got)
			have += got;
		ext2fs_file_close(f);
		*len = have;
	}
	if (e) {
		free(*data);
		*data = NULL;
		return pgi_extfs_fail(e, name);
	}
	return 0;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Value of "path md5" in a Conffiles field, or NULL. */
static const char *
conffile_md5(const char *field, const char *path, char out[64])
{
	const char *p = field;
	size_t pl = strlen(path);

	while (p && *p) {
		while (*p == '\n' || *p == ' ')
			p++;
		if (strncmp(p, path, pl) == 0 && p[pl] == ' ') {
			const char *m = p + pl + 1;
			size_t n = strcspn(m, " \n");

			if (n >= 64)
				return NULL;
			memcpy(out, m, n);
			out[n] = 0;
			return out;
		}
		p = strchr(p, '\n');
	}
	return NULL;
}

static int
is_new_conffile(const struct pg_deb *deb, const char *path)
{
	const char *p = deb->conffiles;
	size_t pl = strlen(path);

	while (p && *p) {
		while (*p == '\n' || *p == ' ')
			p++;
		if (strncmp(p, path, pl) == 0 && (p[pl] == '\n' || p[pl] == 0 || p[pl] == ' '))
			return 1;
		p = strchr(p, '\n');
	}
	return 0;
}

static int
has_scripts(const struct pg_deb *deb)
{
	for (int i = 0; i < deb->nscripts; i++)
		if (!strcmp(deb->scripts[i].name, "preinst") ||
		    !strcmp(deb->scripts[i].name, "postinst") ||
		    !strcmp(deb->scripts[i].name, "prerm") ||
		    !strcmp(deb->scripts[i].name, "postrm"))
			return 1;
	return 0;
}

struct owned {
	struct up *u;
	const char *self, *path;
	int found;
	ext2_ino_t dir;
};

static int
owned_cb(ext2_ino_t d, int entry, struct ext2_dir_entry *de, int off, int bs, char *buf, void *priv)
{
	struct owned *c = priv;
	int nl = ext2fs_dirent_name_len(de);
	char name[256], needle[4200];
	uint8_t *data = NULL;
	size_t len = 0;

	memcpy(name, de->name, (size_t)nl);
	name[nl] = 0;
	if (nl < 6 || strcmp(name + nl - 5, ".list") != 0)
		return 0;
	if ((size_t)(nl - 5) == strlen(c->self) && strncmp(name, c->self, (size_t)(nl - 5)) == 0)
		return 0;
	if (read_nofollow(c->u, c->dir, name, &data, &len) < 0)
		return 0;
	data[len] = 0;
	snprintf(needle, sizeof(needle), "%s\n", c->path);
	for (char *p = (char *)data; (p = strstr(p, needle)); p++) {
		if (p == (char *)data || p[-1] == '\n') {
			c->found = 1;
			break;
		}
	}
	free(data);
	return c->found ? DIRENT_ABORT : 0;
}

/* Is path listed by another package's info/<pkg>.list? Only asked for the
 * few files an upgrade drops, so a plain scan is fine. */
static int
owned_elsewhere(struct up *u, const char *self, const char *path)
{
	struct owned c = {u, self, path, 0, 0};

	if (walk_dir(u, INFO, 0, &c.dir) < 0)
		return 0;
	ext2fs_dir_iterate2(u->fs, c.dir, 0, NULL, owned_cb, &c);
	return c.found;
}

static const char *const script_names[] = {"preinst", "postinst",  "prerm",    "postrm",
					   "config",  "templates", "triggers", "shlibs"};

/* What apply_deb's steps share while one package goes in. */
struct pkg {
	struct up *u;
	const struct pg_deb *deb;
	const char *name, *ver, *arch;
	struct pg_para *old; /* its status paragraph before, or NULL */
	char *old_version;   /* copied: *old is replaced at the end */
	const char *oldconf; /* the old Conffiles field */
	char prefix[300];    /* info file names of the new version */
	char oldprefix[300]; /* where the old version's records are */
	uint8_t *oldlist;    /* the old version's info/<pkg>.list */
	size_t oldlen;
	struct pg_buf list, md5s, conf; /* the new .list, computed md5sums, Conffiles */
	size_t kept, removed;
	int scripts;
};

/* The status paragraph of the installed version dpkg would replace. */
static struct pg_para *
find_installed(struct pg_deb822 *st, const char *name, const char *arch)
{
	for (size_t i = 0; i < st->n; i++) {
		const char *pn = pgi_para_get(&st->p[i], "Package");
		const char *pa = pgi_para_get(&st->p[i], "Architecture");

		if (pn && !strcmp(pn, name) &&
		    (!pa || !strcmp(pa, arch) || !strcmp(pa, "all") || !strcmp(arch, "all")))
			return &st->p[i];
	}
	return NULL;
}

/*
 * dpkg's info file names (pkg_infodb_get_file): <name>:<arch>.* for a
 * Multi-Arch: same package once the database is in format 1 (the info/format
 * file), <name>.* otherwise. The old version's records may be under the other
 * name (Multi-Arch changed, or an older database): they are read there and
 * moved.
 */
static void
info_prefixes(struct pkg *c)
{
	struct up *u = c->u;
	const char *ma = pgi_para_get(&c->deb->control, "Multi-Arch");
	int same = ma && !strcasecmp(ma, "same"), fmt = 0;
	uint8_t *fdata = NULL;
	size_t flen = 0;
	ext2_ino_t idir;
	char ln[320];

	if (walk_dir(u, INFO, 0, &idir) == 0 &&
	    read_nofollow(u, idir, "format", &fdata, &flen) == 0) {
		fdata[flen] = 0;
		fmt = atoi((char *)fdata);
		free(fdata);
	}
	if (same && fmt >= 1)
		snprintf(c->prefix, sizeof(c->prefix), "%s:%s", c->name, c->arch);
	else
		snprintf(c->prefix, sizeof(c->prefix), "%s", c->name);
	snprintf(c->oldprefix, sizeof(c->oldprefix), "%s", c->prefix);
	if (walk_dir(u, INFO, 1, &idir) != 0)
		return;
	snprintf(ln, sizeof(ln), "%s.list", c->prefix);
	if (read_nofollow(u, idir, ln, &c->oldlist, &c->oldlen) == 0)
		return;
	if (strchr(c->prefix, ':'))
		snprintf(c->oldprefix, sizeof(c->oldprefix), "%s", c->name);
	else
		snprintf(c->oldprefix, sizeof(c->oldprefix), "%s:%s", c->name, c->arch);
	snprintf(ln, sizeof(ln), "%s.list", c->oldprefix);
	if (read_nofollow(u, idir, ln, &c->oldlist, &c->oldlen) < 0)
		snprintf(c->oldprefix, sizeof(c->oldprefix), "%s", c->prefix);
}

/*
 * A conffile already on disk: dpkg's rule (configure.c, conffoptcells):
 * edited by the user = differs from what the old package shipped; by the
 * distribution = the new package ships something else than the old. No old
 * record (a new conffile) counts as both. Sets *keep to leave the file alone,
 * or points *target at <base>.dpkg-dist (in dist_name) to put the new one
 * beside the user's (--force-confold).
 */
static void
conffile_decision(struct pkg *c, ext2_ino_t d, const char *base, const char *full,
		  const char *newmd5, int *keep, const char **target, char *dist_name, size_t dl)
{
	uint8_t *cur = NULL;
	size_t clen = 0;
	char curmd5[33], oldmd5[64];
	const char *om;
	int user, dist;

	if (read_nofollow(c->u, d, base, &cur, &clen) != 0)
		return;
	om = conffile_md5(c->oldconf, full, oldmd5);
	md5_hex(cur, clen, curmd5);
	free(cur);
	user = !om || strcmp(curmd5, om) != 0;
	dist = !om || strcmp(newmd5, om) != 0;
	if (strcmp(curmd5, newmd5) != 0 && user && !dist) {
		/* keep it silently: nothing beside it */
		*keep = 1;
		c->kept++;
		ulog(c->u, "  %s changed locally, unchanged by the package: kept", full);
	} else if (strcmp(curmd5, newmd5) != 0 && user) {
		snprintf(dist_name, dl, "%s.dpkg-dist", base);
		*target = dist_name;
		c->kept++;
		ulog(c->u, "  %s changed locally: kept, new version in %s.dpkg-dist", full, full);
	}
}

/* A regular file of the package, conffiles as dpkg treats them. */
static int
put_regular(struct pkg *c, const struct pg_deb_file *f, ext2_ino_t d, const char *base,
	    const char *full)
{
	struct up *u = c->u;
	char newmd5[33], dist_name[300];
	const char *target = base;
	int keep = 0, rc;

	snprintf(newmd5, sizeof(newmd5), "%s", f->md5);
	if (is_new_conffile(c->deb, full)) {
		PG_TRY_GOTO(pg_buf_printf(&c->conf, "\n %s %s", full, newmd5), fail, "upgrade",
			    "conffiles");
		conffile_decision(c, d, base, full, newmd5, &keep, &target, dist_name,
				  sizeof(dist_name));
	}
	/* used when the package has no md5sums member: dpkg then lists every
	 * regular file, conffiles included */
	PG_TRY_GOTO(pg_buf_printf(&c->md5s, "%s  %s\n", newmd5, f->path), fail, "upgrade",
		    "md5sums");
	if (keep) {
		u->done += f->size; /* skipped, still counted as done */
		return 0;
	}
	PG_TRY_GOTO(remove_name(u, d, target), fail, "upgrade", f->path);
	PG_TRY_GOTO(pgi_deb_data_file(u->data, f), fail, "upgrade", f->path);
	PG_TRY_GOTO(
	    create_file(u, d, target, NULL, f->size, f->mode, f->uid, f->gid, (uint32_t)f->mtime),
	    fail, "upgrade", f->path);
	return 0;
fail:
	return rc;
}

static int
put_symlink(struct pkg *c, const struct pg_deb_file *f, ext2_ino_t d, const char *base)
{
	struct up *u = c->u;
	errcode_t e;
	int rc;

	PG_TRY_GOTO(remove_name(u, d, base), fail, "upgrade", f->path);
	e = WITH_DIR_SPACE(u->fs, d, ext2fs_symlink(u->fs, d, 0, base, f->target));
	if (e)
		return pgi_extfs_fail(e, f->path);
	return 0;
fail:
	return rc;
}

/* A hard link to an earlier regular file of the same package (tar's rule). */
static int
put_hardlink(struct pkg *c, size_t i, ext2_ino_t d, const char *base)
{
	struct up *u = c->u;
	const struct pg_deb_file *f = &c->deb->files[i];
	char tdir[4096], tbase[256];
	struct ext2_inode in;
	ext2_ino_t td, ti;
	const char *m = NULL;
	errcode_t e;
	int rc;

	split_path(f->target, tdir, sizeof(tdir), tbase, sizeof(tbase));
	PG_TRY_GOTO(walk_dir(u, tdir, 0, &td), fail, "upgrade", f->target);
	e = ext2fs_lookup(u->fs, td, tbase, (int)strlen(tbase), NULL, &ti);
	if (!e)
		e = ext2fs_read_inode(u->fs, ti, &in);
	if (e)
		return pgi_extfs_fail(e, f->target);
	if (!LINUX_S_ISREG(in.i_mode))
		return pg_error(PG_EFORMAT, "upgrade", "hard link '%s' to a non-file", f->path);
	PG_TRY_GOTO(remove_name(u, d, base), fail, "upgrade", f->path);
	e = ext2fs_read_inode(u->fs, ti, &in);
	if (!e)
		e = WITH_DIR_SPACE(u->fs, d, ext2fs_link(u->fs, d, base, ti, EXT2_FT_REG_FILE));
	if (!e) {
		in.i_links_count++;
		e = ext2fs_write_inode(u->fs, ti, &in);
	}
	if (e)
		return pgi_extfs_fail(e, f->path);
	/* hard-linked regular files are in md5sums too; tar links name an
	 * earlier member of the same package */
	for (size_t j = 0; j < i && !m; j++)
		if (c->deb->files[j].type == 'f' && !strcmp(c->deb->files[j].path, f->target))
			m = c->deb->files[j].md5;
	if (m)
		pg_buf_printf(&c->md5s, "%s  %s\n", m, f->path);
	return 0;
fail:
	return rc;
}

/* Unpacks the data members in order; newpaths[i] gets each member's path. */
static int
unpack_files(struct pkg *c, char **newpaths)
{
	struct up *u = c->u;
	int rc;

	PG_TRY_GOTO(pg_buf_printf(&c->list, "/.\n"), fail, "upgrade", "list");
	for (size_t i = 0; i < c->deb->nfiles; i++) {
		const struct pg_deb_file *f = &c->deb->files[i];
		char dir[4096], base[256], full[4200];
		ext2_ino_t d;

		PG_TRY_GOTO(check_stop(u), fail, "upgrade", "stop");
		tick(u, 0);
		snprintf(full, sizeof(full), "/%s", f->path);
		newpaths[i] = f->path;
		PG_TRY_GOTO(pg_buf_printf(&c->list, "%s\n", full), fail, "upgrade", "list");
		if (f->type == 'd') {
			PG_TRY_GOTO(walk_dir(u, f->path, 1, &d), fail, "upgrade", f->path);
			continue;
		}
		split_path(f->path, dir, sizeof(dir), base, sizeof(base));
		PG_TRY_GOTO(walk_dir(u, dir, 1, &d), fail, "upgrade", f->path);
		if (f->type == 'f')
			rc = put_regular(c, f, d, base, full);
		else if (f->type == 'l')
			rc = put_symlink(c, f, d, base);
		else if (f->type == 'h')
			rc = put_hardlink(c, i, d, base);
		if (rc < 0)
			return rc;
	}
	return 0;
fail:
	return rc;
}

/* Removes one path of the old list if the new version, a conffile record
 * or another package does not keep it (directories stay). */
static int
remove_if_dropped(struct pkg *c, char *const *newpaths, const char *path)
{
	struct up *u = c->u;
	char clean[4096], tmp[64], dir[4096], base[256];
	const char *key = clean;
	struct ext2_inode in;
	ext2_ino_t d, ino;
	int rc;

	if (pgi_path_clean(path + (path[0] == '/'), clean, sizeof(clean)) != 0 || !clean[0] ||
	    bsearch(&key, newpaths, c->deb->nfiles, sizeof(char *), cmp_str) ||
	    conffile_md5(c->oldconf, path, tmp) || owned_elsewhere(u, c->oldprefix, path))
		return 0;
	split_path(clean, dir, sizeof(dir), base, sizeof(base));
	if (walk_dir(u, dir, 0, &d) == 0 &&
	    !ext2fs_lookup(u->fs, d, base, (int)strlen(base), NULL, &ino) &&
	    !ext2fs_read_inode(u->fs, ino, &in) && !LINUX_S_ISDIR(in.i_mode)) {
		PG_TRY_GOTO(remove_name(u, d, base), fail, "upgrade", path);
		c->removed++;
	}
	return 0;
fail:
	return rc;
}

/* Files the old version shipped and the new one does not (newpaths sorted). */
static int
remove_dropped(struct pkg *c, char *const *newpaths)
{
	char *end = (char *)c->oldlist + c->oldlen;

	for (char *p = (char *)c->oldlist; p && p < end;) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char path[4096];
		size_t n = nl ? (size_t)(nl - p) : strlen(p);

		if (n && n < sizeof(path)) {
			int rc;

			memcpy(path, p, n);
			path[n] = 0;
			rc = remove_if_dropped(c, newpaths, path);
			if (rc < 0)
				return rc;
		}
		p = nl ? nl + 1 : NULL;
	}
	return 0;
}

/* info/<pkg>.list, .md5sums, .conffiles and the maintainer scripts. */
static int
write_info_files(struct pkg *c)
{
	struct up *u = c->u;
	const struct pg_deb *deb = c->deb;
	char ipath[400];
	int rc;

	snprintf(ipath, sizeof(ipath), INFO "/%s.list", c->prefix);
	PG_TRY_GOTO(write_path(u, ipath, c->list.data, c->list.len, 0644), fail, "upgrade", "list");
	/* As dpkg: the package's own md5sums member as it is, else the sums
	 * computed while unpacking. */
	snprintf(ipath, sizeof(ipath), INFO "/%s.md5sums", c->prefix);
	if (deb->md5sums && deb->md5sums[0])
		PG_TRY_GOTO(
		    write_path(u, ipath, (const uint8_t *)deb->md5sums, strlen(deb->md5sums), 0644),
		    fail, "upgrade", "md5sums");
	else
		PG_TRY_GOTO(write_path(u, ipath, c->md5s.data ? c->md5s.data : (uint8_t *)"",
				       c->md5s.len, 0644),
			    fail, "upgrade", "md5sums");
	snprintf(ipath, sizeof(ipath), INFO "/%s.conffiles", c->prefix);
	if (deb->conffiles && deb->conffiles[0])
		PG_TRY_GOTO(write_path(u, ipath, (const uint8_t *)deb->conffiles,
				       strlen(deb->conffiles), 0644),
			    fail, "upgrade", "conffiles");
	else
		PG_TRY_GOTO(unlink_path(u, ipath), fail, "upgrade", "conffiles");
	for (size_t k = 0; k < sizeof(script_names) / sizeof(script_names[0]); k++) {
		int found = -1;

		for (int i = 0; i < deb->nscripts; i++)
			if (!strcmp(deb->scripts[i].name, script_names[k]))
				found = i;
		snprintf(ipath, sizeof(ipath), INFO "/%s.%s", c->prefix, script_names[k]);
		if (found >= 0)
			PG_TRY_GOTO(write_path(u, ipath, deb->scripts[found].data,
					       deb->scripts[found].len, k < 5 ? 0755 : 0644),
				    fail, "upgrade", "script");
		else
			PG_TRY_GOTO(unlink_path(u, ipath), fail, "upgrade", "script");
	}
	if (strcmp(c->oldprefix, c->prefix) != 0) {
		static const char *const exts[] = {"list",    "md5sums",  "conffiles", "symbols",
						   "shlibs",  "triggers", "templates", "config",
						   "preinst", "postinst", "prerm",     "postrm"};

		for (size_t k = 0; k < sizeof(exts) / sizeof(exts[0]); k++) {
			snprintf(ipath, sizeof(ipath), INFO "/%s.%s", c->oldprefix, exts[k]);
			PG_TRY_GOTO(unlink_path(u, ipath), fail, "upgrade", "old info file");
		}
	}
	return 0;
fail:
	return rc;
}

/* The status paragraph: control fields, our Status, Conffiles. */
static int
status_paragraph(struct pkg *c, struct pg_para *np)
{
	const struct pg_deb *deb = c->deb;
	const char *desc = pgi_para_get(&deb->control, "Description");
	int rc;

	PG_TRY_GOTO(pgi_para_set(np, "Package", c->name), fail, "upgrade", "status");
	PG_TRY_GOTO(
	    pgi_para_set(np, "Status", c->scripts ? "install ok unpacked" : "install ok installed"),
	    fail, "upgrade", "status");
	for (size_t i = 0; i < deb->control.n; i++) {
		const struct pg_kv *kv = &deb->control.kv[i];

		if (!strcasecmp(kv->key, "Package") || !strcasecmp(kv->key, "Description"))
			continue;
		PG_TRY_GOTO(pgi_para_set(np, kv->key, kv->val), fail, "upgrade", "status");
		if (!strcasecmp(kv->key, "Version") && c->scripts && c->old_version && c->old &&
		    pgi_para_get(c->old, "Status") &&
		    strstr(pgi_para_get(c->old, "Status"), " installed"))
			PG_TRY_GOTO(pgi_para_set(np, "Config-Version", c->old_version), fail,
				    "upgrade", "status");
	}
	if (c->conf.len) {
		PG_TRY_GOTO(pg_buf_append_byte(&c->conf, 0), fail, "upgrade", "conffiles");
		PG_TRY_GOTO(pgi_para_set(np, "Conffiles", (char *)c->conf.data), fail, "upgrade",
			    "status");
	}
	if (desc)
		PG_TRY_GOTO(pgi_para_set(np, "Description", desc), fail, "upgrade", "status");
	return 0;
fail:
	return rc;
}

/* The new paragraph replaces the old one, or is added; np is emptied. */
static int
store_paragraph(struct pg_deb822 *st, struct pg_para *old, struct pg_para *np)
{
	if (old) {
		pgi_para_release(old);
		*old = *np;
	} else {
		struct pg_para *nps = realloc(st->p, (st->n + 1) * sizeof(*nps));

		if (!nps)
			return PG_ENOMEM;
		st->p = nps;
		st->p[st->n++] = *np;
	}
	np->kv = NULL;
	np->n = 0;
	return 0;
}

/* Unpacks one package into the filesystem and updates its dpkg records. */
static int
apply_deb(struct up *u, struct pg_deb822 *st, const struct pg_deb *deb, json_t *report)
{
	struct pkg c = {.u = u,
			.deb = deb,
			.name = pgi_para_get(&deb->control, "Package"),
			.ver = pgi_para_get(&deb->control, "Version"),
			.arch = pgi_para_get(&deb->control, "Architecture"),
			.list = PG_BUF_INIT(MAX_LIST),
			.md5s = PG_BUF_INIT(MAX_LIST),
			.conf = PG_BUF_INIT(MAX_LIST),
			.scripts = has_scripts(deb)};
	struct pg_para np = {NULL, 0};
	char **newpaths = NULL;
	int rc = 0;

	c.old = find_installed(st, c.name, c.arch);
	if (c.old) {
		const char *ov = pgi_para_get(c.old, "Version");

		c.old_version = ov ? strdup(ov) : NULL;
		c.oldconf = pgi_para_get(c.old, "Conffiles");
	}
	info_prefixes(&c);
	ulog(u, "%s %s: %s -> %s (%zu files%s)", c.old ? "upgrading" : "installing", c.name,
	     c.old_version ? c.old_version : "none", c.ver, deb->nfiles,
	     c.scripts ? ", maintainer scripts: left unpacked for first boot" : "");
	newpaths = calloc(deb->nfiles + 1, sizeof(char *));
	if (!newpaths) {
		rc = PG_ENOMEM;
		goto out;
	}
	PG_TRY_GOTO(pgi_deb_data_open(deb, &u->data), out, "upgrade", "package data");
	PG_TRY_GOTO(unpack_files(&c, newpaths), out, "upgrade", "unpack");
	qsort(newpaths, deb->nfiles, sizeof(char *), cmp_str);
	PG_TRY_GOTO(remove_dropped(&c, newpaths), out, "upgrade", "old files");
	PG_TRY_GOTO(write_info_files(&c), out, "upgrade", "info");
	PG_TRY_GOTO(status_paragraph(&c, &np), out, "upgrade", "status");
	PG_TRY_GOTO(store_paragraph(st, c.old, &np), out, "upgrade", "status");
	if (c.scripts)
		u->unpacked++;
	json_array_append_new(report,
			      json_pack("{s:s, s:s?, s:s, s:s, s:I, s:I, s:I}", "package", c.name,
					"from", c.old_version, "to", c.ver, "state",
					c.scripts ? "unpacked" : "installed", "files",
					(json_int_t)deb->nfiles, "removed", (json_int_t)c.removed,
					"conffiles_kept", (json_int_t)c.kept));
out:
	pgi_deb_data_close(u->data);
	u->data = NULL;
	pgi_para_release(&np);
	pg_buf_release(&c.list);
	pg_buf_release(&c.md5s);
	pg_buf_release(&c.conf);
	free(newpaths);
	free(c.oldlist);
	free(c.old_version);
	return rc;
}

static const char firstboot_unit[] =
    "# Written by payguard's offline upgrade: finishes packages that were\n"
    "# unpacked into this image while it was switched off.\n"
    "[Unit]\n"
    "Description=Configure packages upgraded offline (dpkg --configure -a)\n"
    "ConditionPathExists=/var/lib/payguard/firstboot\n"
    "After=local-fs.target\n"
    "Before=multi-user.target\n"
    "\n"
    "[Service]\n"
    "Type=oneshot\n"
    "Environment=DEBIAN_FRONTEND=noninteractive\n"
    "ExecStart=/usr/bin/dpkg --configure -a\n"
    "ExecStartPost=/bin/rm -f /var/lib/payguard/firstboot\n"
    "\n"
    "[Install]\n"
    "WantedBy=multi-user.target\n";

static int
install_firstboot(struct up *u)
{
	ext2_ino_t d;
	errcode_t e;
	int rc;

	rc = write_path(u, "etc/systemd/system/payguard-firstboot.service",
			(const uint8_t *)firstboot_unit, strlen(firstboot_unit), 0644);
	if (rc < 0)
		return rc;
	rc = write_path(u, "var/lib/payguard/firstboot", (const uint8_t *)"", 0, 0644);
	if (rc < 0)
		return rc;
	rc = walk_dir(u, "etc/systemd/system/multi-user.target.wants", 1, &d);
	if (rc < 0)
		return rc;
	rc = remove_name(u, d, "payguard-firstboot.service");
	if (rc < 0)
		return rc;
	e = WITH_DIR_SPACE(u->fs, d,
			   ext2fs_symlink(u->fs, d, 0, "payguard-firstboot.service",
					  "/etc/systemd/system/payguard-firstboot.service"));
	if (e)
		return pgi_extfs_fail(e, "first-boot unit");
	ulog(u, "first-boot unit payguard-firstboot.service installed (dpkg --configure -a)");
	return 0;
}

/* Applies debs to the filesystem at [off, off+len) of the overlay. */
static int
upgrade_fs(struct up *u, struct pg_bdev *ov, uint64_t off, uint64_t len, struct pg_deb *debs,
	   size_t ndebs, json_t *report)
{
	struct pg_deb822 st = {NULL, 0};
	uint8_t *status = NULL;
	size_t slen = 0;
	char *out = NULL;
	size_t olen = 0;
	errcode_t e;
	int rc;

	rc = pgi_extfs_open(ov, off, len, 1, &u->fs);
	if (rc < 0)
		return rc;
	if (ext2fs_has_feature_journal_needs_recovery(u->fs->super)) {
		rc = pg_error(
		    PG_ESTATE, "upgrade",
		    "the ext4 journal needs recovery (image copied from a running machine): "
		    "refusing to write around it; boot it once or run e2fsck on a copy");
		goto out;
	}
	if (u->fs->super->s_state & EXT2_ERROR_FS) {
		rc = pg_error(PG_ECORRUPT, "upgrade",
			      "filesystem is marked as having errors; run e2fsck first");
		goto out;
	}
	e = ext2fs_read_bitmaps(u->fs);
	if (e) {
		rc = pgi_extfs_fail(e, "bitmaps");
		goto out;
	}
	rc = pgi_extfs_read(u->fs, STATUS_PATH, MAX_STATUS, &status, &slen);
	if (rc < 0) {
		pg_error_ctx(rc, "upgrade", "no dpkg database in the image");
		goto out;
	}
	PG_TRY_GOTO(pgi_deb822_parse((char *)status, slen, &st), out, "upgrade", "status");
	for (size_t i = 0; i < ndebs; i++)
		PG_TRY_GOTO(apply_deb(u, &st, &debs[i], report), out, "upgrade", "package");
	PG_TRY_GOTO(pgi_deb822_write(&st, &out, &olen), out, "upgrade", "status");
	PG_TRY_GOTO(write_path(u, "var/lib/dpkg/status-old", status, slen, 0644), out, "upgrade",
		    "status-old");
	PG_TRY_GOTO(write_path(u, STATUS_PATH, (uint8_t *)out, olen, 0644), out, "upgrade",
		    "status");
	if (u->unpacked)
		PG_TRY_GOTO(install_firstboot(u), out, "upgrade", "firstboot");
	rc = pgi_extfs_close(u->fs);
	u->fs = NULL;
out:
	if (u->fs)
		pgi_extfs_close(u->fs);
	u->fs = NULL;
	pgi_deb822_release(&st);
	free(status);
	free(out);
	return rc;
}

/* Records how the job ended; a node's runner only while the job is still
 * its own (a node that lost its lease leaves the job to its new runner):
 * PG_ESTATE then. */
/* The event of a job's end (issue 15): "done" is upgrade_finished, "failed" and
 * "interrupted" keep their names; written in the transaction of the state change. */
static int
job_event(struct pg_store *st, int64_t job, const char *state, const json_t *result)
{
	char ev[40], subj[32];
	json_t *d = json_pack("{s:I, s:s}", "job", (json_int_t)job, "state", state);
	int rc;

	if (!d)
		return PG_ENOMEM;
	if (result)
		json_object_set(d, "result", (json_t *)result);
	snprintf(ev, sizeof(ev), "upgrade_%s", strcmp(state, "done") == 0 ? "finished" : state);
	snprintf(subj, sizeof(subj), "job-%lld", (long long)job);
	rc = pg_event_emit(st->pdb, "image", ev, subj, d, NULL);
	json_decref(d);
	return rc;
}

/* Records how the job ended; a node's runner only while the job is still
 * its own (a node that lost its lease leaves the job to its new runner):
 * PG_ESTATE then. */
static int
job_finish(struct up *u, const char *state, json_t *result)
{
	char now[32], *res = result ? pg_json_dumps(result, JSON_COMPACT) : NULL;
	int64_t changed = 0;
	int rc;

	pgi_now_iso(now, sizeof(now));
	rc = pg_db_begin(u->st->pdb);
	if (rc == 0)
		rc = pgi_image_run(
		    u->st,
		    "UPDATE image_job SET state = ?, finished_at = ?, log = log || ?,"
		    " result = ?, progress = CASE WHEN CAST(? AS TEXT) = 'done' THEN 1.0"
		    " ELSE progress END WHERE id = ?"
		    " AND (CAST(? AS TEXT) IS NULL OR node = CAST(? AS TEXT))",
		    json_pack("[s,s,s#,s?,s,I,s?,s?]", state, now,
			      u->log.data ? (char *)u->log.data : "", (int)u->log.len, res, state,
			      (json_int_t)u->job, u->node, u->node),
		    &changed);
	free(res);
	if (rc == 0 && changed != 1)
		rc = pg_error(PG_ESTATE, "upgrade", "job %lld is no longer node %s's",
			      (long long)u->job, u->node ? u->node : "-");
	if (rc == 0)
		rc = job_event(u->st, u->job, state, result);
	if (rc == 0)
		rc = pg_db_commit(u->st->pdb);
	else
		pg_db_rollback(u->st->pdb);
	return rc;
}

static int
root_partition(struct pg_store *st, int64_t id, uint64_t *off, uint64_t *len)
{
	json_t *rows = NULL;
	int rc = pgi_image_query(
	    st,
	    "SELECT start, size FROM image_partition WHERE image_id = ? AND is_root = 1"
	    " AND supported = 1 ORDER BY idx LIMIT 1",
	    json_pack("[I]", (json_int_t)id), &rows);

	if (rc < 0)
		return rc;
	if (json_array_size(rows) != 1) {
		json_decref(rows);
		/* rejected input like any other image we cannot read (exit 3) */
		return pg_error(PG_EFORMAT, "upgrade",
				"image has no ext2/3/4 root filesystem with a dpkg database");
	}
	*off = (uint64_t)json_integer_value(json_object_get(json_array_get(rows, 0), "start"));
	*len = (uint64_t)json_integer_value(json_object_get(json_array_get(rows, 0), "size"));
	json_decref(rows);
	return 0;
}

/* --fix: the newest .deb in repo for each package with a finding, if it
 * reaches the fixed version. */
static int
pick_fixes(struct pg_store *st, const char *ref, const char *repo, char ***paths, size_t *n)
{
	json_t *f = NULL;
	DIR *dh = NULL;
	struct dirent *de;
	int rc;

	*paths = NULL;
	*n = 0;
	rc = pg_image_findings(st, ref, &f);
	if (rc < 0)
		return rc;
	dh = opendir(repo);
	if (!dh) {
		json_decref(f);
		return pg_error(PG_ENOENT, "upgrade", "repo '%s': %s", repo, strerror(errno));
	}
	while ((de = readdir(dh))) {
		size_t l = strlen(de->d_name);
		char path[4096];
		struct pg_deb deb;
		const char *name, *ver, *src;
		char sname[256], sver[256];

		if (l < 5 || strcmp(de->d_name + l - 4, ".deb") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", repo, de->d_name);
		if (pgi_deb_read(path, &deb) < 0) {
			pg_warn("upgrade", "skipping %s: %s", path, pg_last_error());
			continue;
		}
		name = pgi_para_get(&deb.control, "Package");
		ver = pgi_para_get(&deb.control, "Version");
		src = pgi_para_get(&deb.control, "Source");
		snprintf(sname, sizeof(sname), "%s", src ? src : name);
		sname[strcspn(sname, " (")] = 0;
		snprintf(sver, sizeof(sver), "%s", ver);
		if (src && strchr(src, '(')) {
			snprintf(sver, sizeof(sver), "%s", strchr(src, '(') + 1);
			sver[strcspn(sver, ")")] = 0;
		}
		for (size_t i = 0; i < json_array_size(f); i++) {
			json_t *r = json_array_get(f, i);
			const char *fixed = json_string_value(json_object_get(r, "fixed"));

			if (strcmp(json_string_value(json_object_get(r, "package")), name) == 0 &&
			    fixed && pg_debver_cmp(sver, fixed) >= 0) {
				char **np = realloc(*paths, (*n + 1) * sizeof(char *));

				if (np) {
					*paths = np;
					(*paths)[(*n)++] = strdup(path);
				}
				break;
			}
		}
		pgi_deb_release(&deb);
	}
	closedir(dh);
	json_decref(f);
	if (*n == 0)
		return pg_error(PG_ENOENT, "upgrade",
				"no package in '%s' fixes a finding of this image", repo);
	return 0;
}

/* Runs an INSERT ... RETURNING id of image_job and gives the new id. */
static int
insert_job(struct pg_store *st, const char *sql, json_t *args, int64_t *id)
{
	json_t *rows = NULL;
	int rc = pgi_image_query(st, sql, args, &rows);

	if (rc < 0)
		return rc;
	*id = json_integer_value(json_object_get(json_array_get(rows, 0), "id"));
	json_decref(rows);
	return *id > 0 ? 0 : pg_error(PG_ESTORE, "upgrade", "no job id returned");
}

int
pg_image_job_queue(struct pg_store *st, const char *ref, int64_t *job)
{
	int64_t id = 0, jid = 0;
	char *img = NULL, now[32];
	int rc;

	*job = 0;
	if (!ref || !*ref)
		return pg_error(PG_EINVAL, "upgrade", "no image given");
	rc = pgi_image_resolve(st, ref, &id, &img);
	if (rc < 0)
		return rc;
	pgi_now_iso(now, sizeof(now));
	rc = insert_job(st,
			"INSERT INTO image_job(image_id, image_path, kind, state, started_at,"
			" progress) VALUES(?, ?, 'upgrade', 'queued', ?, 0.0) RETURNING id",
			json_pack("[I,s,s]", (json_int_t)id, img, now), &jid);
	free(img);
	if (rc < 0)
		return rc;
	*job = jid;
	return 0;
}

int
pg_image_job_abandon(struct pg_store *st, int64_t job, const char *why)
{
	char now[32];

	pgi_now_iso(now, sizeof(now));
	return pgi_image_run(st,
			     "UPDATE image_job SET state = 'failed', finished_at = ?,"
			     " log = coalesce(log, '') || ? WHERE id = ? AND state = 'queued'",
			     json_pack("[s,s,I]", now, why, (json_int_t)job), NULL);
}

/* Which jobs a runner may take: queued, or running under a lease that
 * expired (its node died or stalled). */
#define FREE_JOB(NOW) "(state = 'queued' OR (state = 'running' AND lease_until_ms < " NOW "))"
/*
 * What taking a job sets: this runner's pid and node, a lease (none when
 * the lease parameter is 0) and a log line when it takes a job over. The
 * SET expressions read the row as it was (the previous node).
 */
#define CLAIM_SET(NOW)                                                                             \
	"UPDATE image_job SET state = 'running', pid = ?, node = ?, progress = 0.0,"               \
	" lease_until_ms = CASE WHEN CAST(? AS BIGINT) > 0 THEN " NOW " + ? ELSE NULL END,"        \
	" log = log || CASE WHEN state = 'running' THEN 'lease of node ' ||"                       \
	" coalesce(node, '-') || ? ELSE '' END"
/* The oldest free job, per engine: PostgreSQL skips rows another runner's
 * transaction holds; SQLite has one writer at a time anyway. */
static const char claim_next_pg[] =
    CLAIM_SET(NOW_PG) " WHERE id = (SELECT id FROM image_job"
		      " WHERE " FREE_JOB(NOW_PG) " ORDER BY id"
						 " LIMIT 1 FOR UPDATE SKIP LOCKED)"
						 " RETURNING id, image_id";
static const char claim_next_sqlite[] =
    CLAIM_SET(NOW_SQ) " WHERE id = (SELECT id FROM image_job"
		      " WHERE " FREE_JOB(NOW_SQ) " ORDER BY id LIMIT 1)"
						 " RETURNING id, image_id";
/* The same for one job by id. */
static const char claim_id_pg[] = CLAIM_SET(NOW_PG) " WHERE id = ? AND " FREE_JOB(NOW_PG);
static const char claim_id_sqlite[] = CLAIM_SET(NOW_SQ) " WHERE id = ? AND " FREE_JOB(NOW_SQ);

/* A node name as it may appear in file names and logs. */
static int
node_check(const char *node)
{
	size_t n = node ? strlen(node) : 0;

	if (!node)
		return 0;
	if (n == 0 || n > 63 ||
	    strspn(node, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			 "0123456789._-") != n ||
	    node[0] == '.' || node[0] == '-')
		return pg_error(PG_EINVAL, "upgrade",
				"node name '%.80s': use 1 to 63 letters, digits, '.', '_' or '-', "
				"not starting with '.' or '-'",
				node);
	return 0;
}

/* The claim's parameters after the statement's own: pid, node, lease (twice)
 * and the take-over log line. */
static json_t *
claim_args(const char *node, int64_t lease_ms)
{
	char line[160];

	if (node)
		snprintf(line, sizeof(line), " expired; taken over by node %s\n", node);
	else
		snprintf(line, sizeof(line), " expired; taken over by pid %d\n", (int)getpid());
	return json_pack("[i,s?,I,I,s]", (int)getpid(), node, (json_int_t)lease_ms,
			 (json_int_t)lease_ms, line);
}

int
pg_image_job_claim_next(struct pg_store *st, int64_t *job, int64_t *image_id)
{
	return pg_image_job_claim(st, NULL, 0, job, image_id);
}

int
pg_image_job_claim(struct pg_store *st, const char *node, int64_t lease_ms, int64_t *job,
		   int64_t *image_id)
{
	json_t *rows = NULL, *r;
	int rc;

	*job = 0;
	if (node_check(node) < 0)
		return PG_EINVAL;
	if (node && lease_ms <= 0)
		lease_ms = PG_IMAGE_LEASE_MS;
	if (!node)
		lease_ms = 0;
	rc = pgi_image_query(st, by_engine(st, claim_next_pg, claim_next_sqlite),
			     claim_args(node, lease_ms), &rows);
	if (rc < 0)
		return rc;
	r = json_array_get(rows, 0);
	if (!r) {
		json_decref(rows);
		return pg_error(PG_ENOENT, "upgrade",
				"no queued job (nor one whose lease expired)");
	}
	*job = json_integer_value(json_object_get(r, "id"));
	if (image_id)
		*image_id = json_integer_value(json_object_get(r, "image_id"));
	json_decref(rows);
	return 0;
}

#define RENEW_SQL(NOW)                                                                             \
	"UPDATE image_job SET lease_until_ms = " NOW " + ?"                                        \
	" WHERE node = ? AND state = 'running' AND lease_until_ms IS NOT NULL"

int
pg_image_job_renew(struct pg_store *st, const char *node, int64_t lease_ms)
{
	int64_t changed = 0;
	int rc;

	if (!node)
		return pg_error(PG_EINVAL, "upgrade", "renew: no node given");
	if (node_check(node) < 0)
		return PG_EINVAL;
	rc = pgi_image_run(
	    st, by_engine(st, RENEW_SQL(NOW_PG), RENEW_SQL(NOW_SQ)),
	    json_pack("[I,s]", (json_int_t)(lease_ms > 0 ? lease_ms : PG_IMAGE_LEASE_MS), node),
	    &changed);
	return rc < 0 ? rc : (int)changed;
}

int
pg_image_job_renew_jobs(struct pg_store *st, const char *node, const int64_t *jobs, size_t n,
			int64_t lease_ms)
{
	int renewed = 0;

	if (!node)
		return pg_error(PG_EINVAL, "upgrade", "renew: no node given");
	if (node_check(node) < 0)
		return PG_EINVAL;
	for (size_t i = 0; i < n; i++) {
		int64_t changed = 0;
		int rc = pgi_image_run(
		    st, by_engine(st, KEEP_SQL(NOW_PG), KEEP_SQL(NOW_SQ)),
		    json_pack("[I,I,s]", (json_int_t)(lease_ms > 0 ? lease_ms : PG_IMAGE_LEASE_MS),
			      (json_int_t)jobs[i], node),
		    &changed);

		if (rc < 0)
			return rc;
		renewed += changed == 1;
	}
	return renewed;
}

/* Whether a job row's node is this runner's (both none, or the same name). */
static int
same_node(json_t *row, const char *node)
{
	const char *n = json_string_value(json_object_get(row, "node"));

	return (!n && !node) || (n && node && !strcmp(n, node));
}

/*
 * Takes a job for this runner: a queued one, one whose lease expired, or one
 * it took already with pg_image_job_claim; a job in another state, under
 * another node's live lease or of another image is refused and left as it
 * is. *prev gets the overlay and partial paths a previous runner recorded
 * (a job taken over), for the caller to remove.
 */
static int
job_claim(struct up *u, int64_t job, int64_t *image_id, json_t **prev)
{
	struct pg_store *st = u->st;
	json_t *rows = NULL, *r;
	int64_t changed = 0;
	int mine, expired;
	const char *state;
	int rc =
	    pgi_image_query(st,
			    by_engine(st,
				      "SELECT state, image_id, pid, node, overlay, partial,"
				      " CASE WHEN state = 'running' AND lease_until_ms < " NOW_PG
				      " THEN 1 ELSE 0 END AS expired FROM image_job WHERE id = ?",
				      "SELECT state, image_id, pid, node, overlay, partial,"
				      " CASE WHEN state = 'running' AND lease_until_ms < " NOW_SQ
				      " THEN 1 ELSE 0 END AS expired FROM image_job WHERE id = ?"),
			    json_pack("[I]", (json_int_t)job), &rows);

	if (rc < 0)
		return rc;
	r = json_array_get(rows, 0);
	if (!r) {
		rc = pg_error(PG_ENOENT, "upgrade", "no job %lld", (long long)job);
		goto out;
	}
	state = json_string_value(json_object_get(r, "state"));
	mine = !strcmp(state, "running") &&
	       json_integer_value(json_object_get(r, "pid")) == (json_int_t)getpid() &&
	       same_node(r, u->node);
	expired = json_integer_value(json_object_get(r, "expired")) == 1;
	if (strcmp(state, "queued") != 0 && !mine && !expired) {
		if (!strcmp(state, "running") && json_string_value(json_object_get(r, "node")))
			rc =
			    pg_error(PG_ESTATE, "upgrade",
				     "job %lld is running on node %s under a live lease",
				     (long long)job, json_string_value(json_object_get(r, "node")));
		else
			rc = pg_error(PG_ESTATE, "upgrade", "job %lld is %s, not queued",
				      (long long)job, state);
		goto out;
	}
	if (*image_id > 0 && json_integer_value(json_object_get(r, "image_id")) != *image_id) {
		rc = pg_error(PG_ESTATE, "upgrade", "job %lld was queued for image %lld, not %lld",
			      (long long)job,
			      (long long)json_integer_value(json_object_get(r, "image_id")),
			      (long long)*image_id);
		goto out;
	}
	*image_id = json_integer_value(json_object_get(r, "image_id"));
	*prev = json_pack("{s:O?, s:O?}", "overlay", json_object_get(r, "overlay"), "partial",
			  json_object_get(r, "partial"));
	if (mine) {
		rc = 0;
		goto out;
	}
	/* one UPDATE decides between two runners: the second one's row no
	 * longer matches (PostgreSQL re-checks it after the first one's
	 * commit) */
	{
		json_t *args = claim_args(u->node, u->node ? u->lease_ms : 0);

		json_array_append_new(args, json_integer(job));
		rc = pgi_image_run(st, by_engine(st, claim_id_pg, claim_id_sqlite), args, &changed);
	}
	if (rc == 0 && changed != 1)
		rc = pg_error(PG_ESTATE, "upgrade", "job %lld was taken by another runner",
			      (long long)job);
out:
	json_decref(rows);
	return rc;
}

/* A job taken over restarts from the beginning: the files its previous
 * runner recorded go first (its half-written overlay, or a complete one it
 * renamed before it could record 'done'; both are that runner's, the
 * overlay path did not exist when it started). */
static int
drop_previous(struct up *u, json_t *prev)
{
	const char *ov = json_string_value(json_object_get(prev, "overlay"));
	const char *part = json_string_value(json_object_get(prev, "partial"));
	char legacy[4300];

	if (!ov && !part)
		return 0;
	if (part && unlink(part) == 0)
		ulog(u, "job %lld: removed the previous runner's partial overlay %s",
		     (long long)u->job, part);
	if (ov) {
		snprintf(legacy, sizeof(legacy), "%s.partial", ov);
		unlink(legacy);
		if (unlink(ov) == 0)
			ulog(u, "job %lld: removed the previous runner's unrecorded overlay %s",
			     (long long)u->job, ov);
	}
	return pgi_image_run(u->st,
			     "UPDATE image_job SET overlay = NULL, partial = NULL WHERE id = ?",
			     json_pack("[I]", (json_int_t)u->job), NULL);
}

/* One pg_image_upgrade: what it holds (freed by up_release) and where it
 * is. created/have_partial: the partial overlay is this run's to remove. */
struct up_run {
	struct up u;
	struct pg_store *st;
	const struct pg_upgrade_opts *o;
	struct pg_deb *debs;
	struct pg_bdev *base, *ov;
	int64_t id, job;
	char *img, out[4200], partial[4300], **fixes, ref[4096];
	const char *const *debpaths;
	size_t ndebs, nfix;
	uint64_t off, len; /* the root partition */
	json_t *report, *res, *prev;
	int created, have_partial;
};

/* Which image: the options' one, or the queued job's (claimed here, so a
 * node runs only a job it holds). A failure here is not the job's. */
static int
up_which(struct up_run *r)
{
	const struct pg_upgrade_opts *o = r->o;
	int rc;

	if (node_check(o->node) < 0)
		return PG_EINVAL;
	if (o->node && o->job <= 0)
		return pg_error(PG_EUSAGE, "upgrade", "a node runs queued jobs: give the job");
	if (o->job > 0 && !o->image) {
		/* the queued job names its image */
		PG_TRY_GOTO(job_claim(&r->u, o->job, &r->id, &r->prev), out, "upgrade", "job");
		r->job = o->job;
		snprintf(r->ref, sizeof(r->ref), "%lld", (long long)r->id);
	} else if (!o->image) {
		return pg_error(PG_EUSAGE, "upgrade", "no image given");
	} else {
		snprintf(r->ref, sizeof(r->ref), "%s", o->image);
	}
	return 0;
out:
	return rc;
}

/* The packages (given, or --fix's picks from the repository), every one
 * read and checked before anything is written, and the image's root
 * partition. */
static int
up_read_packages(struct up_run *r)
{
	const struct pg_upgrade_opts *o = r->o;
	int rc;

	if (o->fix) {
		if (!o->repo)
			return pg_error(PG_EUSAGE, "upgrade", "--fix needs --repo DIR");
		PG_TRY_GOTO(pick_fixes(r->st, r->ref, o->repo, &r->fixes, &r->nfix), fail,
			    "upgrade", "fix");
		r->debpaths = (const char *const *)r->fixes;
		r->ndebs = r->nfix;
	}
	if (r->ndebs == 0)
		return pg_error(PG_EUSAGE, "upgrade", "no packages given");
	r->debs = calloc(r->ndebs, sizeof(*r->debs));
	if (!r->debs)
		return PG_ENOMEM;
	for (size_t i = 0; i < r->ndebs; i++) {
		PG_TRY_GOTO(check_stop(&r->u), fail, "upgrade", "stop");
		PG_TRY_GOTO(pgi_deb_read(r->debpaths[i], &r->debs[i]), fail, "upgrade",
			    r->debpaths[i]);
		r->u.total += r->debs[i].unpacked;
	}
	PG_TRY_GOTO(check_stop(&r->u), fail, "upgrade", "stop");
	PG_TRY_GOTO(root_partition(r->st, r->id, &r->off, &r->len), fail, "upgrade", "root");
	r->u.chunk = malloc(CHUNK);
	if (!r->u.chunk)
		return PG_ENOMEM;
	return 0;
fail:
	return rc;
}

/* The overlay's final path (--output, else the data directory's
 * overlays/) and the partial it is written as, recorded in the job. */
static int
up_paths(struct up_run *r)
{
	int rc;

	if (r->o->output) {
		snprintf(r->out, sizeof(r->out), "%s", r->o->output);
	} else {
		char dd[4096], b[4096];

		PG_TRY_GOTO(pg_data_dir(dd, sizeof(dd)), fail, "upgrade", "data dir");
		snprintf(b, sizeof(b), "%s/overlays", dd);
		PG_TRY_GOTO(pg_mkdir_p(b, 0700), fail, "upgrade", "overlays dir");
		snprintf(r->out, sizeof(r->out), "%s/image%lld-job%lld.qcow2", b, (long long)r->id,
			 (long long)r->job);
	}
	if (access(r->out, F_OK) == 0)
		return pg_error(PG_EEXIST, "upgrade", "'%s' already exists", r->out);
	/* A node's runner writes a partial of its own: one that stalled past
	 * its lease and wakes up must not touch the new runner's file. */
	if (r->u.node)
		snprintf(r->partial, sizeof(r->partial), "%s.%s.partial", r->out, r->u.node);
	else
		snprintf(r->partial, sizeof(r->partial), "%s.partial", r->out);
	unlink(r->partial); /* a leftover of an interrupted run of this job id */
	r->have_partial = 1;
	/* (only while the job is this runner's: one taken over keeps the new
	 * runner's paths) */
	PG_TRY_GOTO(pgi_image_run(r->st,
				  "UPDATE image_job SET overlay = ?, partial = ? WHERE id = ?"
				  " AND coalesce(node, '') = ?",
				  json_pack("[s,s,I,s]", r->out, r->partial, (json_int_t)r->job,
					    r->u.node ? r->u.node : ""),
				  NULL),
		    fail, "upgrade", "job");
	return 0;
fail:
	return rc;
}

/* Writes the overlay: created over the image as the partial, the packages
 * unpacked into it, finished, then renamed to its final path (by the job's
 * runner only: a node checks its lease just before) and the rename synced. */
static int
up_write_overlay(struct up_run *r)
{
	char fmtc[8], dirc[4200];
	int rc, dfd;

	PG_TRY_GOTO(pgi_bdev_open(r->img, &r->base), fail, "upgrade", "open image");
	snprintf(fmtc, sizeof(fmtc), "%s", r->base->fmt);
	rc = pgi_qcow2_overlay_create(r->partial, r->img, fmtc, r->base, &r->ov);
	r->base = NULL; /* owned by the overlay now, even on failure */
	if (rc < 0)
		return rc;
	r->created = 1;
	PG_TRY_GOTO(upgrade_fs(&r->u, r->ov, r->off, r->len, r->debs, r->ndebs, r->report), fail,
		    "upgrade", "unpack");
	PG_TRY_GOTO(check_stop(&r->u), fail, "upgrade", "stop");
	PG_TRY_GOTO(pgi_qcow2_overlay_finish(r->ov), fail, "upgrade", "finish overlay");
	pgi_bdev_close(r->ov);
	r->ov = NULL;
	lease_keep(&r->u, 1);
	PG_TRY_GOTO(check_stop(&r->u), fail, "upgrade", "lease");
	if (rename(r->partial, r->out) < 0)
		return pg_error(PG_EIO, "upgrade", "rename: %s", strerror(errno));
	snprintf(dirc, sizeof(dirc), "%s", r->out);
	dfd = open(dirname(dirc), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	r->created = 0;
	r->have_partial = 0;
	return 0;
fail:
	return rc;
}

/* A failure once the image is known: the half-written overlay goes, then
 * the job (when there is one and it is still this runner's) records it. */
static void
up_fail(struct up_run *r, int rc)
{
	char msg[1024];

	snprintf(msg, sizeof(msg), "%s", pg_last_error()[0] ? pg_last_error() : pg_strerror(rc));
	/* The half-written overlay goes before the job says so. */
	pgi_bdev_close(r->ov);
	r->ov = NULL;
	/* (the final name is only ever written by the rename: nothing to drop
	 * there, and it may be a new runner's after a take-over) */
	if (r->created || r->have_partial)
		unlink(r->partial);
	r->created = r->have_partial = 0;
	if (r->job && !r->u.lost) {
		ulog(&r->u, "%s: %s", rc == PG_EINTR ? "interrupted" : "failed", msg);
		job_finish(&r->u, rc == PG_EINTR ? "interrupted" : "failed", NULL);
	}
	pg_error(rc, "upgrade", "%s", msg);
}

static void
up_release(struct up_run *r)
{
	pgi_bdev_close(r->ov);
	pgi_bdev_close(r->base);
	if (r->created || r->have_partial)
		unlink(r->partial);
	json_decref(r->prev);
	if (r->debs)
		for (size_t i = 0; i < r->ndebs; i++)
			pgi_deb_release(&r->debs[i]);
	free(r->debs);
	for (size_t i = 0; i < r->nfix; i++)
		free(r->fixes[i]);
	free(r->fixes);
	free(r->img);
	free(r->u.chunk);
	json_decref(r->report);
	json_decref(r->res);
	pg_buf_release(&r->u.log);
}

int
pg_image_upgrade(struct pg_store *st, const struct pg_upgrade_opts *o, json_t **result)
{
	struct up_run *r = calloc(1, sizeof(*r));
	struct up *u;
	char now[32];
	int rc;

	*result = NULL;
	if (!r)
		return PG_ENOMEM;
	u = &r->u;
	r->st = st;
	r->o = o;
	r->debpaths = o->debs;
	r->ndebs = o->ndebs;
	r->report = json_array();
	pg_buf_init(&u->log, 4u << 20);
	u->now = (uint32_t)time(NULL);
	u->st = st;
	u->o = o;
	u->node = o->node;
	u->lease_ms = o->lease_ms > 0 ? o->lease_ms : PG_IMAGE_LEASE_MS;
	rc = up_which(r);
	if (rc < 0)
		goto out;
	rc = pgi_image_resolve(st, r->ref, &r->id, &r->img);
	if (rc == PG_ENOENT && !r->job && o->job <= 0 && access(r->ref, R_OK) == 0) {
		/* not collected yet: collect it now */
		PG_TRY_GOTO(pg_image_scan(st, r->ref, NULL), out, "upgrade", "scan");
		rc = pgi_image_resolve(st, r->ref, &r->id, &r->img);
	}
	if (rc < 0)
		goto fail;
	if (o->job > 0 && !r->job) {
		/* From here on a failure is this job's: it is recorded. */
		PG_TRY_GOTO(job_claim(u, o->job, &r->id, &r->prev), out, "upgrade", "job");
		r->job = o->job;
	}
	u->job = r->job;
	if (r->job)
		PG_TRY_GOTO(drop_previous(u, r->prev), fail, "upgrade", "take over");
	PG_TRY_GOTO(up_read_packages(r), fail, "upgrade", "packages");
	if (!r->job) {
		pgi_now_iso(now, sizeof(now));
		PG_TRY_GOTO(
		    insert_job(
			st,
			"INSERT INTO image_job(image_id, image_path, kind, state, pid,"
			" started_at, progress) VALUES(?, ?, 'upgrade', 'running',"
			" ?, ?, 0.0) RETURNING id",
			json_pack("[I,s,i,s]", (json_int_t)r->id, r->img, (int)getpid(), now),
			&r->job),
		    out, "upgrade", "job");
		u->job = r->job;
	}
	tick(u, 1);
	PG_TRY_GOTO(up_paths(r), fail, "upgrade", "paths");
	ulog(u, "job %lld: image %s, overlay %s, %llu bytes to unpack", (long long)r->job, r->img,
	     r->out, (unsigned long long)u->total);
	PG_TRY_GOTO(up_write_overlay(r), fail, "upgrade", "overlay");
	ulog(u, "done: %zu package(s), %llu bytes, %d left for first boot", r->ndebs,
	     (unsigned long long)u->total, u->unpacked);
	r->res = json_pack("{s:I, s:I, s:s, s:s, s:O, s:i}", "job", (json_int_t)r->job, "image_id",
			   (json_int_t)r->id, "image", r->img, "overlay", r->out, "packages",
			   r->report, "first_boot", u->unpacked);
	rc = job_finish(u, "done", r->res);
	if (rc == PG_ESTATE)
		goto out; /* taken over meanwhile: the job is its new runner's */
	if (rc < 0)
		goto fail;
	if (o->progress)
		o->progress(o->progress_arg, 1.0);
	*result = r->res;
	r->res = NULL;
	rc = 0;
	goto out;
fail:
	up_fail(r, rc);
out:
	up_release(r);
	free(r);
	return rc;
}

/* t as ISO 8601 UTC, the form of started_at */
static void
iso_at(time_t t, char *buf, size_t n)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int
pg_image_jobs(struct pg_store *st, json_t **out)
{
	json_t *rows = NULL;
	size_t i;
	json_t *r;
	char now[32], cutoff[32];
	int rc;

	/* started_at is ISO 8601 UTC of one width: it orders as text */
	iso_at(time(NULL) - QUEUE_GRACE, cutoff, sizeof(cutoff));
	/* A job still "running" whose process is gone was interrupted: its
	 * half-written overlay never got its final name; drop the leftover.
	 * (Only a job of one machine, with no lease: a node's job may run on
	 * another host, and waits for a node to take it over when its lease
	 * expires.)
	 * A queued job nobody took within QUEUE_GRACE seconds never will. */
	rc = pgi_image_query(st,
			     "SELECT id, state, pid, overlay, partial FROM image_job"
			     " WHERE (state = 'running' AND lease_until_ms IS NULL)"
			     " OR (state = 'queued' AND pid IS NULL AND started_at < ?)",
			     json_pack("[s]", cutoff), &rows);
	if (rc < 0)
		return rc;
	pgi_now_iso(now, sizeof(now));
	json_array_foreach(rows, i, r)
	{
		pid_t pid = (pid_t)json_integer_value(json_object_get(r, "pid"));
		int queued = !strcmp(json_string_value(json_object_get(r, "state")), "queued");
		int64_t changed = 0;

		if (!queued && pid > 0 && (kill(pid, 0) == 0 || errno != ESRCH))
			continue;
		if (json_string_value(json_object_get(r, "partial"))) {
			unlink(json_string_value(json_object_get(r, "partial")));
		} else if (json_string_value(json_object_get(r, "overlay"))) {
			char partial[4300];

			snprintf(partial, sizeof(partial), "%s.partial",
				 json_string_value(json_object_get(r, "overlay")));
			unlink(partial);
		}
		if (pg_db_begin(st->pdb) < 0)
			continue;
		if (pgi_image_run(
			st,
			"UPDATE image_job SET state = 'interrupted', finished_at = ?,"
			" log = log || ? WHERE id = ? AND state = ?",
			json_pack("[s,s,O,O]", now,
				  queued ? "interrupted: queued, but no runner took it within "
					   "60 s\n"
					 : "interrupted: the process running the job is gone\n",
				  json_object_get(r, "id"), json_object_get(r, "state")),
			&changed) == 0 &&
		    (changed == 0 || job_event(st, json_integer_value(json_object_get(r, "id")),
					       "interrupted", NULL) == 0))
			pg_db_commit(st->pdb);
		else
			pg_db_rollback(st->pdb);
	}
	json_decref(rows);
	return pgi_image_query(st,
			       "SELECT id, image_id, image_path, kind, state, progress, overlay,"
			       " started_at, finished_at, result, log, node, lease_until_ms"
			       " FROM image_job ORDER BY id",
			       NULL, out);
}

static int
job_get(struct pg_store *st, int64_t job, json_t **row)
{
	json_t *rows = NULL;
	int rc = pgi_image_query(
	    st, "SELECT id, state, overlay, image_path, result FROM image_job WHERE id = ?",
	    json_pack("[I]", (json_int_t)job), &rows);

	if (rc < 0)
		return rc;
	if (json_array_size(rows) != 1) {
		json_decref(rows);
		return pg_error(PG_ENOENT, "image", "no job %lld", (long long)job);
	}
	*row = json_incref(json_array_get(rows, 0));
	json_decref(rows);
	return 0;
}

/* The job's result JSON gains "committed": the output written. */
static int
mark_committed(struct pg_store *st, int64_t job, json_t *result_text, const char *output)
{
	const char *t = json_string_value(result_text);
	json_t *res = t ? json_loads(t, 0, NULL) : NULL;
	char *s = NULL;
	int rc;

	if (json_is_object(res)) {
		json_object_set_new(res, "committed", json_string(output));
		s = pg_json_dumps(res, JSON_COMPACT);
	}
	rc = pgi_image_run(st, "UPDATE image_job SET state = 'committed', result = ? WHERE id = ?",
			   json_pack("[s?,I]", s ? s : t, (json_int_t)job), NULL);
	free(s);
	json_decref(res);
	return rc;
}

int
pg_image_commit(struct pg_store *st, int64_t job, const char *output, json_t **result)
{
	json_t *row = NULL;
	struct pg_bdev *d = NULL;
	uint8_t *buf = NULL;
	char partial[4300];
	int fd = -1, rc;
	uint64_t written = 0;

	*result = NULL;
	rc = job_get(st, job, &row);
	if (rc < 0)
		return rc;
	if (strcmp(json_string_value(json_object_get(row, "state")), "done") != 0) {
		rc = pg_error(PG_ESTATE, "image", "job %lld is %s, not done", (long long)job,
			      json_string_value(json_object_get(row, "state")));
		goto out;
	}
	{
		struct stat sb;

		/* lstat: a dangling symlink is something there too, never followed */
		if (lstat(output, &sb) == 0) {
			rc = pg_error(PG_EEXIST, "image", "'%s' already exists", output);
			goto out;
		}
	}
	{
		/* our overlay names the original by its path, in another folder */
		char odir[4096];
		const char *ip = json_string_value(json_object_get(row, "image_path"));

		snprintf(odir, sizeof(odir), "%s", ip ? ip : "/nonexistent/x");
		PG_TRY_GOTO(pgi_bdev_open_allow(json_string_value(json_object_get(row, "overlay")),
						dirname(odir), &d),
			    out, "image", "overlay");
	}
	snprintf(partial, sizeof(partial), "%s.partial", output);
	/* a leftover .partial goes; then the name must be new (nothing planted
	 * there, such as a symlink, is followed or truncated) */
	unlink(partial);
	fd = open(partial, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	buf = malloc(1 << 20);
	if (fd < 0 || !buf) {
		rc = pg_error(PG_EIO, "image", "create '%s': %s", partial, strerror(errno));
		goto out;
	}
	/* A standalone raw image: all-zero megabytes stay holes. */
	for (uint64_t off = 0; off < d->size; off += 1 << 20) {
		size_t n = d->size - off < (1u << 20) ? (size_t)(d->size - off) : (1u << 20);
		int zero = 1;

		PG_TRY_GOTO(pgi_bdev_read(d, off, buf, n), out, "image", "read overlay");
		for (size_t i = 0; i < n && zero; i += 8)
			zero = (i + 8 <= n) ? (*(uint64_t *)(void *)(buf + i) == 0) : !buf[i];
		if (zero)
			continue;
		if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n) {
			rc = pg_error(PG_EIO, "image", "write '%s': %s", partial, strerror(errno));
			goto out;
		}
		written += n;
	}
	if (ftruncate(fd, (off_t)d->size) < 0 || fsync(fd) < 0 || rename(partial, output) < 0) {
		rc = pg_error(PG_EIO, "image", "finish '%s': %s", output, strerror(errno));
		goto out;
	}
	close(fd);
	fd = -1;
	PG_TRY_GOTO(mark_committed(st, job, json_object_get(row, "result"), output), out, "image",
		    "job");
	*result =
	    json_pack("{s:I, s:s, s:I, s:I}", "job", (json_int_t)job, "output", output,
		      "virtual_size", (json_int_t)d->size, "bytes_written", (json_int_t)written);
out:
	if (fd >= 0) {
		close(fd);
		unlink(partial);
	}
	free(buf);
	pgi_bdev_close(d);
	json_decref(row);
	return rc;
}

int
pg_image_rollback(struct pg_store *st, int64_t job)
{
	json_t *row = NULL;
	const char *state, *ov;
	int rc = job_get(st, job, &row);

	if (rc < 0)
		return rc;
	state = json_string_value(json_object_get(row, "state"));
	ov = json_string_value(json_object_get(row, "overlay"));
	if (!strcmp(state, "running")) {
		rc = pg_error(PG_ESTATE, "image", "job %lld is still running", (long long)job);
		goto out;
	}
	if (ov) {
		char partial[4300];

		snprintf(partial, sizeof(partial), "%s.partial", ov);
		unlink(partial);
		if (unlink(ov) < 0 && errno != ENOENT) {
			rc = pg_error(PG_EIO, "image", "remove '%s': %s", ov, strerror(errno));
			goto out;
		}
	}
	rc = pgi_image_run(st, "UPDATE image_job SET state = 'rolledback' WHERE id = ?",
			   json_pack("[I]", (json_int_t)job), NULL);
out:
	json_decref(row);
	return rc;
}
