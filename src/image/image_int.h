/*
 * Private header of the image area (seed 1, offline updating of VM images):
 * block devices (raw, qcow2 read and overlay write), partition tables,
 * the libext2fs adapter, dpkg/deb/OSV parsers and Debian version ordering.
 */
#ifndef PG_IMAGE_INT_H
#define PG_IMAGE_INT_H

#include "payguard/image.h"

#include <ext2fs/ext2fs.h>
#include <stddef.h>
#include <stdint.h>

/* ---- block devices: one ops table per format ---- */
struct pg_bdev;
struct pg_bdev_ops {
	/* Reads len bytes at off (off + len <= size); short reads are errors. */
	int (*read)(struct pg_bdev *d, uint64_t off, void *buf, size_t len);
	/* Writes; NULL for read-only devices. */
	int (*write)(struct pg_bdev *d, uint64_t off, const void *buf, size_t len);
	/* Frees everything, including the backing device. */
	void (*close)(struct pg_bdev *d);
};

struct pg_bdev {
	const struct pg_bdev_ops *ops;
	uint64_t size;	       /* virtual size in bytes */
	char fmt[8];	       /* "raw" or "qcow2" */
	int version;	       /* qcow2 version, 0 for raw */
	int depth;	       /* backing chain length below this device */
	char *path;	       /* resolved file name, may be NULL */
	struct pg_bdev *below; /* backing device, NULL for none */
	void *priv;
};

#define PG_BDEV_MAX_CHAIN 16
#define PG_QCOW2_MAX_SIZE (1ULL << 50)

/* Names what the first bytes of a file are; "raw" and "qcow2" are the
 * accepted ones, anything else is a description for the refusal. */
const char *pgi_image_sniff(const uint8_t *head, size_t n, uint64_t filesize);
/* Opens path (format detected by content) with its backing chain. */
int pgi_bdev_open(const char *path, struct pg_bdev **out);
int pgi_bdev_open_depth(const char *path, int depth, char chain[][4096], const char *force_fmt,
			struct pg_bdev **out);
/* Opens the backing file `name` of the image chain[depth] at depth + 1:
 * relative to the image's folder; refused (PG_EFORMAT) when it has a ".."
 * component or resolves (symlinks followed) outside the image's folder,
 * the folders of pg_image_set_backing_dirs and pgi_bdev_open_allow's one. */
int pgi_bdev_open_backing(const char *name, int depth, char chain[][4096], const char *force_fmt,
			  struct pg_bdev **out);
/* pgi_bdev_open that also accepts backing files in `folder` (an overlay we
 * wrote, whose backing file is the original image elsewhere). */
int pgi_bdev_open_allow(const char *path, const char *folder, struct pg_bdev **out);
int pgi_raw_from_fd(int fd, uint64_t size, struct pg_bdev **out);
int pgi_bdev_read(struct pg_bdev *d, uint64_t off, void *buf, size_t len);
int pgi_bdev_write(struct pg_bdev *d, uint64_t off, const void *buf, size_t len);
void pgi_bdev_close(struct pg_bdev *d);

/* qcow2 reader from an open fd (takes ownership of fd). */
int pgi_qcow2_open_fd(int fd, const char *path, int depth, char chain[][4096],
		      struct pg_bdev **out);
/* Parses and validates a qcow2 header in memory (fuzz entry point too). */
struct pg_qcow2_hdr {
	uint32_t version;
	uint64_t backing_off;
	uint32_t backing_len;
	uint32_t cluster_bits;
	uint64_t size;
	uint32_t l1_size;
	uint64_t l1_off;
	uint64_t rt_off;
	uint32_t rt_clusters;
	uint64_t incompat;
	uint32_t refcount_order;
	uint32_t header_len;
	char backing_fmt[16];
};
int pgi_qcow2_parse_header(const uint8_t *buf, size_t n, uint64_t filesize, struct pg_qcow2_hdr *h);
/* Reads a whole qcow2 image held in memory (fuzzing): opens, reads every
 * cluster's first bytes, returns 0 or an error. */
int pgi_qcow2_check_mem(const uint8_t *data, size_t n);

/* Overlay writer: a new qcow2 v3 file at path whose backing file is
 * backing_path (absolute) of format backing_fmt; `base` is the opened
 * backing device (owned by the overlay from now on). */
int pgi_qcow2_overlay_create(const char *path, const char *backing_path, const char *backing_fmt,
			     struct pg_bdev *base, struct pg_bdev **out);
/* Writes L2/L1/refcount tables and the header, then fsyncs. */
int pgi_qcow2_overlay_finish(struct pg_bdev *d);

/* ---- partition tables ---- */
#define PG_MAX_PARTS 128
struct pg_part {
	int index;	/* 1-based as Linux numbers them */
	uint64_t start; /* bytes */
	uint64_t size;	/* bytes */
	char type[40];	/* MBR "0x83" or GPT type GUID */
	char uuid[40];	/* GPT partition GUID */
	char name[72];	/* GPT name (UTF-8) */
	int logical;	/* MBR logical partition */
};
struct pg_ptable {
	char scheme[8]; /* "gpt", "mbr", "none" */
	char disk_guid[40];
	int nparts;
	struct pg_part parts[PG_MAX_PARTS];
};
/* Reads the partition table; GPT CRCs are checked. "none" is not an error. */
int pgi_ptable_read(struct pg_bdev *d, struct pg_ptable *pt);

/* ---- libext2fs adapter ---- */
/* Registers a window [off, off+len) of d and returns a name for
 * ext2fs_open2() with pgi_bdev_io_manager. */
extern io_manager pgi_bdev_io_manager;
int pgi_extfs_open(struct pg_bdev *d, uint64_t off, uint64_t len, int rw, ext2_filsys *out);
int pgi_extfs_close(ext2_filsys fs);
/* Maps an errcode_t to a PG_E code with a detail. */
int pgi_extfs_fail(errcode_t err, const char *what);
/* Filesystem type at a window by its magic: "ext2", "ext3", "ext4", "xfs",
 * "btrfs", "vfat", "swap", "ntfs", "iso9660", "LVM2", "crypto_LUKS", or NULL. */
const char *pgi_fs_sniff(struct pg_bdev *d, uint64_t off, uint64_t len);
/* Resolves path inside fs (symlinks followed inside the image). */
int pgi_extfs_lookup(ext2_filsys fs, const char *path, int follow, ext2_ino_t *ino);
/* Reads a regular file of at most max bytes. */
int pgi_extfs_read(ext2_filsys fs, const char *path, size_t max, uint8_t **data, size_t *len);

/* ---- dpkg ---- */
struct pg_kv {
	char *key;
	char *val; /* continuation lines joined with '\n', leading space kept */
};
struct pg_para {
	struct pg_kv *kv;
	size_t n;
};
struct pg_deb822 {
	struct pg_para *p;
	size_t n;
};
#define PG_DEB822_MAX (64u << 20)
/* Parses deb822 paragraphs (dpkg status, control files). */
int pgi_deb822_parse(const char *text, size_t len, struct pg_deb822 *out);
void pgi_deb822_release(struct pg_deb822 *d);
const char *pgi_para_get(const struct pg_para *p, const char *key);
int pgi_para_set(struct pg_para *p, const char *key, const char *val);
void pgi_para_del(struct pg_para *p, const char *key);
void pgi_para_release(struct pg_para *p);
int pgi_para_dup(const struct pg_para *src, struct pg_para *dst);
int pgi_deb822_write(const struct pg_deb822 *d, char **out, size_t *len);

/* ---- .deb ---- */
struct pg_deb_file {
	char *path; /* normalised, no leading "./" or "/", never ".." */
	int type;   /* 'f' file, 'd' dir, 'l' symlink, 'h' hard link */
	unsigned mode;
	unsigned uid, gid;
	int64_t mtime;
	char *target; /* symlink target or hard-link source path */
	size_t size;  /* regular files: bytes (streamed, see pg_deb_data_*) */
	char md5[33]; /* regular files: MD5 of the contents, hex */
};
struct pg_deb {
	struct pg_para control;
	char *conffiles; /* contents of control.tar conffiles, may be NULL */
	char *md5sums;	 /* may be NULL */
	struct {
		char name[16];
		uint8_t *data;
		size_t len;
	} scripts[8];
	int nscripts;
	struct pg_deb_file *files;
	size_t nfiles;
	uint64_t unpacked; /* sum of regular file sizes */
	/* where data.tar is, for the streaming second pass */
	int fd, own_fd;	    /* pgi_deb_read: the package file, kept open */
	const uint8_t *mem; /* pgi_deb_read_mem: borrowed, must outlive this */
	size_t memlen;
	uint64_t data_off, data_len;
};
/* Sum of the regular files of one package; the image's free space is the
 * practical limit, this one only refuses absurd headers. */
#define PG_DEB_MAX_UNPACKED (64ULL << 30)
/* Reads control.tar fully and data.tar's metadata, sizes and MD5s; the
 * bytes of data.tar are streamed again with pg_deb_data_*. */
int pgi_deb_read_mem(const uint8_t *data, size_t n, struct pg_deb *out);
int pgi_deb_read(const char *path, struct pg_deb *out);
void pgi_deb_release(struct pg_deb *d);
/* Second pass over data.tar: select a regular file of d->files (in archive
 * order) and read its bytes in chunks; the MD5 of what was read is checked
 * against the first pass (PG_ECORRUPT if the package changed). */
struct pg_deb_data;
int pgi_deb_data_open(const struct pg_deb *d, struct pg_deb_data **out);
int pgi_deb_data_file(struct pg_deb_data *s, const struct pg_deb_file *f);
/* *got 0: the file is complete. */
int pgi_deb_data_read(struct pg_deb_data *s, uint8_t *buf, size_t n, size_t *got);
void pgi_deb_data_close(struct pg_deb_data *s);
/* Normalises an archive member path; PG_EFORMAT if it escapes. */
int pgi_path_clean(const char *in, char *out, size_t outlen);

/* ---- OSV ---- */
struct pg_osv_range {
	char *ecosystem;
	char *package;
	char *introduced; /* "0" when from the start */
	char *fixed;	  /* NULL when no fix */
};
struct pg_osv {
	char *id;
	char *summary;
	char *modified;
	struct pg_osv_range *r;
	size_t nr;
};
int pgi_osv_parse(const char *text, size_t len, struct pg_osv **out, size_t *n);
void pgi_osv_free(struct pg_osv *v, size_t n);
/* Debian Security Tracker JSON (dsa_tracker.c) as the same advisories. */
int pgi_debtracker_parse(const char *text, size_t len, struct pg_osv **out, size_t *n);
int pgi_debtracker_parse_json(json_t *root, struct pg_osv **out, size_t *n);
/* format "auto" (or NULL), "osv" or "debian-tracker"; *found names what was read. */
int pgi_advisories_parse(const char *text, size_t len, const char *format, struct pg_osv **out,
			 size_t *n, const char **found);

#endif
