/*
 * Inspection of one image (seed 1, "extract the information of the
 * collected images"): hash, format and chain, partition table, each
 * filesystem, and inside ext2/3/4 roots the OS release, kernels in /boot
 * and the dpkg package database. The result is one JSON inventory.
 */
#include "image_int.h"
#include "inspect.h"

#include "payguard/error.h"
#include "payguard/log.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define OS_RELEASE_MAX (64u << 10)
#define STATUS_MAX     (64u << 20)

/* SHA-256 of the file's bytes; holes are fed as zeros without reading. */
int
pgi_hash_file(const char *path, char out[65])
{
	static const uint8_t zero[1 << 16];
	EVP_MD_CTX *ctx = NULL;
	uint8_t *buf = NULL, md[32];
	unsigned mdlen = 0;
	struct stat sb;
	off_t pos = 0;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pg_error(PG_EIO, "image", "open '%s': %s", path, strerror(errno));
	if (fstat(fd, &sb) < 0) {
		rc = PG_EIO;
		goto out;
	}
	ctx = EVP_MD_CTX_new();
	buf = malloc(1 << 20);
	if (!ctx || !buf || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		rc = PG_ENOMEM;
		goto out;
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	while (pos < sb.st_size) {
		off_t data = lseek(fd, pos, SEEK_DATA);
		off_t end;

		if (data < 0)
			data = sb.st_size; /* only a hole is left */
		while (pos < data) {
			size_t n = (size_t)(data - pos) < sizeof(zero) ? (size_t)(data - pos)
								       : sizeof(zero);

			EVP_DigestUpdate(ctx, zero, n);
			pos += (off_t)n;
		}
		if (pos >= sb.st_size)
			break;
		end = lseek(fd, pos, SEEK_HOLE);
		if (end < 0 || end > sb.st_size)
			end = sb.st_size;
		while (pos < end) {
			size_t want =
			    (size_t)(end - pos) < (1u << 20) ? (size_t)(end - pos) : (1u << 20);
			ssize_t n = pread(fd, buf, want, pos);

			if (n <= 0) {
				rc = pg_error(PG_EIO, "image", "read '%s': %s", path,
					      n < 0 ? strerror(errno) : "unexpected end");
				goto out;
			}
			EVP_DigestUpdate(ctx, buf, (size_t)n);
			pos += n;
		}
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
out:
	EVP_MD_CTX_free(ctx);
	free(buf);
	close(fd);
	return rc;
}

/* KEY=value lines with shell-style quoting (os-release(5)). */
static json_t *
parse_os_release(const char *text, size_t len)
{
	json_t *o = json_object();
	const char *p = text, *end = text + len;

	while (o && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		const char *eq = memchr(p, '=', (size_t)(le - p));

		if (eq && p[0] != '#' && eq > p && eq - p < 64) {
			char key[64], val[512];
			const char *v = eq + 1;
			size_t o2 = 0;
			char q = 0;

			memcpy(key, p, (size_t)(eq - p));
			key[eq - p] = 0;
			if (v < le && (*v == '"' || *v == '\''))
				q = *v++;
			for (; v < le && o2 + 1 < sizeof(val); v++) {
				if (q && *v == q)
					break;
				if (q == '"' && *v == '\\' && v + 1 < le)
					v++;
				val[o2++] = *v;
			}
			val[o2] = 0;
			if (json_is_object(o) &&
			    (!strcmp(key, "ID") || !strcmp(key, "VERSION_ID") ||
			     !strcmp(key, "PRETTY_NAME") || !strcmp(key, "VERSION_CODENAME") ||
			     !strcmp(key, "NAME") || !strcmp(key, "ID_LIKE")))
				json_object_set_new(o, key, json_string(val));
		}
		p = nl ? nl + 1 : end;
	}
	return o;
}

/* "name (version)" -> name, version */
static void
split_source(const char *src, char *name, size_t nlen, char *ver, size_t vlen)
{
	const char *paren = strchr(src, '(');
	size_t n = paren ? (size_t)(paren - src) : strlen(src);

	while (n && (src[n - 1] == ' ' || src[n - 1] == '\t'))
		n--;
	if (n >= nlen)
		n = nlen - 1;
	memcpy(name, src, n);
	name[n] = 0;
	ver[0] = 0;
	if (paren) {
		const char *close = strchr(paren, ')');
		size_t m = close ? (size_t)(close - paren - 1) : strlen(paren + 1);

		if (m >= vlen)
			m = vlen - 1;
		memcpy(ver, paren + 1, m);
		ver[m] = 0;
	}
}

int
pgi_dpkg_packages_json(const char *text, size_t len, json_t **out)
{
	struct pg_deb822 st;
	json_t *arr;
	int rc;

	*out = NULL;
	rc = pgi_deb822_parse(text, len, &st);
	if (rc < 0)
		return rc;
	arr = json_array();
	if (!arr) {
		pgi_deb822_release(&st);
		return PG_ENOMEM;
	}
	for (size_t i = 0; i < st.n; i++) {
		const struct pg_para *p = &st.p[i];
		const char *name = pgi_para_get(p, "Package");
		const char *ver = pgi_para_get(p, "Version");
		const char *arch = pgi_para_get(p, "Architecture");
		const char *src = pgi_para_get(p, "Source");
		const char *status = pgi_para_get(p, "Status");
		char sname[256], sver[256];

		if (!name) {
			pgi_deb822_release(&st);
			json_decref(arr);
			return pg_error(PG_EFORMAT, "dpkg",
					"status paragraph %zu has no Package field", i + 1);
		}
		if (src)
			split_source(src, sname, sizeof(sname), sver, sizeof(sver));
		else
			snprintf(sname, sizeof(sname), "%s", name);
		if (!src || !sver[0])
			snprintf(sver, sizeof(sver), "%s", ver ? ver : "");
		json_array_append_new(arr,
				      json_pack("{s:s, s:s?, s:s?, s:s, s:s, s:s?}", "name", name,
						"version", ver, "arch", arch, "source", sname,
						"source_version", sver, "status", status));
	}
	pgi_deb822_release(&st);
	*out = arr;
	return 0;
}

struct boot_ctx {
	ext2_filsys fs;
	const char *dir;
	json_t *arr;
};

/* Linux x86 boot protocol: the version string sits at 0x200 + le16(0x20E). */
static void
kernel_banner(ext2_filsys fs, const char *path, char *out, size_t outlen)
{
	uint8_t *data = NULL;
	size_t len = 0;

	out[0] = 0;
	if (pgi_extfs_read(fs, path, 128u << 20, &data, &len) < 0)
		return;
	if (len > 0x210 && memcmp(data + 0x202, "HdrS", 4) == 0) {
		size_t vo = 0x200 + (size_t)(data[0x20E] | (data[0x20F] << 8));

		if (vo < len) {
			size_t n = 0;

			while (vo + n < len && n + 1 < outlen && data[vo + n] >= 0x20 &&
			       data[vo + n] < 0x7f)
				n++;
			memcpy(out, data + vo, n);
			out[n] = 0;
		}
	}
	free(data);
}

static int
boot_entry(ext2_ino_t dir, int entry, struct ext2_dir_entry *de, int offset, int blocksize,
	   char *buf, void *priv)
{
	struct boot_ctx *c = priv;
	int nl = ext2fs_dirent_name_len(de);
	char name[256], path[512], banner[256];

	memcpy(name, de->name, (size_t)nl);
	name[nl] = 0;
	if ((strncmp(name, "vmlinuz-", 8) == 0 || strncmp(name, "vmlinux-", 8) == 0) && nl > 8) {
		snprintf(path, sizeof(path), "%s/%s", c->dir, name);
		kernel_banner(c->fs, path, banner, sizeof(banner));
		json_array_append_new(c->arr,
				      json_pack("{s:s, s:s, s:s?}", "path", path, "version",
						name + 8, "banner", banner[0] ? banner : NULL));
	}
	return 0;
}

static json_t *
list_kernels(ext2_filsys fs, const char *dir)
{
	struct boot_ctx c = {fs, dir, json_array()};
	ext2_ino_t ino;

	if (pgi_extfs_lookup(fs, dir, 1, &ino) == 0)
		ext2fs_dir_iterate2(fs, ino, 0, NULL, boot_entry, &c);
	return c.arr;
}

static void
inspect_ext(ext2_filsys fs, json_t *part, json_t *inv)
{
	uint8_t *data = NULL;
	size_t len = 0;
	json_t *os = NULL, *kernels;
	int rc;
	char uuid[40];

	{
		const uint8_t *u = fs->super->s_uuid;

		snprintf(uuid, sizeof(uuid),
			 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
			 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11],
			 u[12], u[13], u[14], u[15]);
	}
	json_object_set_new(part, "fs_uuid", json_string(uuid));
	{
		char label[17];

		memcpy(label, fs->super->s_volume_name, 16);
		label[16] = 0;
		json_object_set_new(part, "fs_label", json_string(label));
	}
	json_object_set_new(part, "needs_recovery",
			    json_boolean(ext2fs_has_feature_journal_needs_recovery(fs->super)));
	rc = pgi_extfs_read(fs, "/etc/os-release", OS_RELEASE_MAX, &data, &len);
	if (rc == PG_ENOENT)
		rc = pgi_extfs_read(fs, "/usr/lib/os-release", OS_RELEASE_MAX, &data, &len);
	if (rc == 0) {
		os = parse_os_release((char *)data, len);
		free(data);
		data = NULL;
		json_object_set(part, "os", os);
		json_object_set_new(part, "root", json_true());
		if (!json_object_get(inv, "os"))
			json_object_set(inv, "os", os);
		kernels = list_kernels(fs, "/boot");
	} else {
		/* a separate /boot filesystem holds the kernels at its top */
		kernels = list_kernels(fs, "/");
	}
	if (json_array_size(kernels))
		json_object_set(part, "kernels", kernels);
	json_decref(kernels);
	json_decref(os);
	if (!json_object_get(part, "root"))
		return;
	rc = pgi_extfs_read(fs, "/var/lib/dpkg/status", STATUS_MAX, &data, &len);
	if (rc == 0) {
		json_t *pk = NULL;

		rc = pgi_dpkg_packages_json((char *)data, len, &pk);
		free(data);
		if (rc == 0) {
			json_object_set_new(part, "package_manager", json_string("dpkg"));
			if (!json_object_get(inv, "packages"))
				json_object_set(inv, "packages", pk);
			json_object_set_new(part, "packages",
					    json_integer((json_int_t)json_array_size(pk)));
			json_decref(pk);
		} else {
			json_object_set_new(part, "error", json_string(pg_last_error()));
		}
	}
}

/* Partition types that hold a Linux filesystem: MBR 0x83 and the GPT
 * "Linux filesystem data" and Discoverable Partitions (root, /usr, /home,
 * /srv, /var, /tmp) type GUIDs. */
static int
is_linux_type(const char *type)
{
	static const char *const guids[] = {
	    "0FC63DAF-8483-4772-8E79-3D69D8477DE4", /* Linux filesystem data */
	    "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", /* root x86-64 */
	    "44479540-F297-41B2-9AF7-D131D5F0458A", /* root x86 */
	    "B921B045-1DF0-41C3-AF44-4C6F280D3FAE", /* root arm64 */
	    "69DAD710-2CE4-4E3C-B16C-21A1D49ABED3", /* root arm */
	    "8484680C-9521-48C6-9C11-B0720656F69E", /* /usr x86-64 */
	    "933AC7E1-2EB4-4F13-B844-0E14E2AEF915", /* /home */
	    "3B8F8425-20E0-4F3B-907F-1A25A76F98E8", /* /srv */
	    "4D21B016-B534-45C2-A9FB-5C16E091FD2D", /* /var */
	    "7EC6F557-3BC5-4ACA-B293-16EF5DF639D1", /* /tmp */
	};

	if (!strcmp(type, "0x83"))
		return 1;
	for (size_t i = 0; i < sizeof(guids) / sizeof(guids[0]); i++)
		if (!strcasecmp(type, guids[i]))
			return 1;
	return 0;
}

/* The first 64 KiB of a partition are all zeros: never formatted, not a
 * damaged filesystem (whose superblock fields around the magic remain). */
static int
part_blank(struct pg_bdev *d, const struct pg_part *p)
{
	uint8_t buf[4096];
	uint64_t n = p->size < 65536 ? p->size : 65536;

	for (uint64_t off = 0; off < n; off += sizeof(buf)) {
		size_t len = n - off < sizeof(buf) ? (size_t)(n - off) : sizeof(buf);

		if (p->start + off + len > d->size ||
		    pgi_bdev_read(d, p->start + off, buf, len) < 0)
			return 0;
		for (size_t i = 0; i < len; i++)
			if (buf[i])
				return 0;
	}
	return 1;
}

int
pgi_inspect_bdev(struct pg_bdev *d, json_t *inv)
{
	struct pg_ptable *pt = calloc(1, sizeof(*pt));
	json_t *parts = json_array();
	int rc, unreadable = 0;
	char unreadable_type[40] = "";

	if (!pt || !parts) {
		free(pt);
		json_decref(parts);
		return PG_ENOMEM;
	}
	rc = pgi_ptable_read(d, pt);
	if (rc < 0)
		goto out;
	json_object_set_new(inv, "ptable",
			    json_pack("{s:s, s:s?}", "scheme", pt->scheme, "disk_guid",
				      pt->disk_guid[0] ? pt->disk_guid : NULL));
	if (pt->nparts == 0) {
		/* No table: a filesystem may start at byte 0 ("superfloppy"). */
		pt->nparts = 1;
		pt->parts[0].index = 0;
		pt->parts[0].start = 0;
		pt->parts[0].size = d->size;
		strcpy(pt->parts[0].type, "whole-disk");
	}
	for (int i = 0; i < pt->nparts; i++) {
		struct pg_part *p = &pt->parts[i];
		const char *fst = NULL;
		json_t *jp;

		if (p->logical == 0 &&
		    (strcmp(p->type, "0x05") == 0 || strcmp(p->type, "0x0f") == 0 ||
		     strcmp(p->type, "0x85") == 0))
			fst = "extended";
		else
			fst = pgi_fs_sniff(d, p->start, p->size);
		jp = json_pack("{s:i, s:I, s:I, s:s, s:s?, s:s?, s:b, s:s?}", "index", p->index,
			       "start", (json_int_t)p->start, "size", (json_int_t)p->size, "type",
			       p->type, "uuid", p->uuid[0] ? p->uuid : NULL, "name",
			       p->name[0] ? p->name : NULL, "logical", p->logical, "fs", fst);
		if (!jp) {
			rc = PG_ENOMEM;
			goto out;
		}
		json_array_append_new(parts, jp);
		/* A Linux partition with content but no filesystem we know: a
		 * damaged superblock must not pass as "nothing here". */
		if (!fst && is_linux_type(p->type) && !part_blank(d, p)) {
			json_object_set_new(jp, "fs", json_string("unreadable"));
			json_object_set_new(jp, "supported", json_false());
			json_object_set_new(
			    jp, "note",
			    json_string(
				"Linux partition with no readable filesystem "
				"(superblock damaged or a filesystem payguard does not know)"));
			if (!unreadable) {
				unreadable = p->index;
				snprintf(unreadable_type, sizeof(unreadable_type), "%s", p->type);
			}
			continue;
		}
		if (fst && (!strcmp(fst, "ext2") || !strcmp(fst, "ext3") || !strcmp(fst, "ext4"))) {
			ext2_filsys fs = NULL;

			rc = pgi_extfs_open(d, p->start, p->size, 0, &fs);
			if (rc < 0) {
				/* A corrupt filesystem is recorded and fails the scan:
				 * an inventory must not silently miss its root. */
				pg_error_ctx(rc, "image", "partition %d", p->index);
				goto out;
			}
			json_object_set_new(jp, "supported", json_true());
			inspect_ext(fs, jp, inv);
			pgi_extfs_close(fs);
		} else {
			json_object_set_new(jp, "supported", json_false());
			if (fst && strcmp(fst, "extended") && strcmp(fst, "swap"))
				json_object_set_new(
				    jp, "note",
				    json_sprintf("%s filesystems are not supported", fst));
		}
	}
	if (unreadable && !json_object_get(inv, "os")) {
		/* as the same damage on a disk without a partition table is */
		rc = pg_error(PG_ECORRUPT, "image",
			      "partition %d is a Linux partition (type %s) but holds no readable "
			      "filesystem (superblock damaged?), and no other partition holds a "
			      "readable root: refused",
			      unreadable, unreadable_type);
		goto out;
	}
	if (unreadable)
		pg_warn("image",
			"partition %d is a Linux partition with no readable filesystem; "
			"inventoried from the readable root",
			unreadable);
	json_object_set(inv, "partitions", parts);
	rc = 0;
out:
	json_decref(parts);
	free(pt);
	return rc;
}

int
pgi_inspect_path(const char *path, int with_hash, json_t **out)
{
	struct pg_bdev *d = NULL;
	char real[4096], hash[65] = "";
	json_t *inv = NULL, *chain;
	struct stat sb;
	int rc;

	*out = NULL;
	if (!realpath(path, real))
		return pg_error(PG_ENOENT, "image", "'%s': %s", path, strerror(errno));
	if (stat(real, &sb) < 0 || !S_ISREG(sb.st_mode))
		return pg_error(PG_EINVAL, "image", "'%s' is not a regular file", path);
	rc = pgi_bdev_open(real, &d);
	if (rc < 0)
		return rc;
	inv = json_pack("{s:s, s:s, s:i, s:I, s:I, s:i}", "path", real, "format", d->fmt,
			"format_version", d->version, "virtual_size", (json_int_t)d->size,
			"file_size", (json_int_t)sb.st_size, "chain_depth", d->depth);
	if (!inv) {
		rc = PG_ENOMEM;
		goto out;
	}
	json_object_set_new(inv, "file_ino", json_integer((json_int_t)sb.st_ino));
	json_object_set_new(
	    inv, "mtime_ns",
	    json_integer((json_int_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec));
	chain = json_array();
	for (struct pg_bdev *b = d->below; b; b = b->below)
		json_array_append_new(chain,
				      json_pack("{s:s?, s:s}", "path", b->path, "format", b->fmt));
	json_object_set_new(inv, "chain", chain);
	PG_TRY_GOTO(pgi_inspect_bdev(d, inv), out, "image", "inspect");
	if (with_hash) {
		PG_TRY_GOTO(pgi_hash_file(real, hash), out, "image", "hash");
		json_object_set_new(inv, "sha256", json_string(hash));
	}
	if (!json_object_get(inv, "packages"))
		json_object_set_new(inv, "packages", json_array());
	*out = inv;
	inv = NULL;
out:
	json_decref(inv);
	pgi_bdev_close(d);
	return rc;
}
