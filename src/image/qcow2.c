/*
 * qcow2 (QEMU's docs/interop/qcow2.txt), versions 2 and 3: the reader
 * (L1/L2 tables, zero clusters, deflate-compressed clusters, backing chains)
 * and the overlay writer used by the offline upgrade (a new v3 image whose
 * backing file is the original; tables and refcounts written on finish).
 */
#include "image_int.h"

#include "payguard/buf.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define QCOW2_OFLAG_COPIED     (1ULL << 63)
#define QCOW2_OFLAG_COMPRESSED (1ULL << 62)
#define QCOW2_OFLAG_ZERO       1ULL
#define QCOW2_OFF_MASK	       0x00fffffffffffe00ULL
#define L2_CACHE	       32
#define MAX_L1_ENTRIES	       (32u << 20) / 8

struct l2c {
	uint64_t off;
	uint64_t *tab;
	unsigned age;
};

struct qcow2 {
	int fd;
	uint64_t filesize;
	struct pg_qcow2_hdr h;
	uint32_t cs;
	uint32_t l2n; /* entries per L2 table */
	uint64_t *l1;
	struct pg_bdev *backing;
	struct l2c cache[L2_CACHE];
	unsigned tick;
	uint64_t zoff; /* host offset of the cluster in zbuf, 0 if none */
	uint8_t *zbuf, *zin;
	/* writer only */
	int writer;
	uint64_t **l2w; /* in-memory L2 tables: host offsets, 0 = not here */
	uint8_t *cow;	/* one cluster for copy-on-write, kept for the next write */
	uint64_t next_free;
	char *backing_path;
	char backing_fmt[16];
};

static void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void
put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

static int
pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return pg_error(PG_EIO, "qcow2", "read at %llu: %s",
					(unsigned long long)off, strerror(errno));
		if (n == 0)
			return pg_error(PG_ETRUNC, "qcow2", "file ends before offset %llu",
					(unsigned long long)off);
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int
pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return pg_error(PG_EIO, "qcow2", "write at %llu: %s",
					(unsigned long long)off, strerror(errno));
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

/* The fixed fields of a version 2 or 3 header (crypt: the encryption
 * method, checked later with the features). */
static int
qcow2_read_fields(const uint8_t *b, size_t n, uint64_t filesize, struct pg_qcow2_hdr *h,
		  uint32_t *crypt)
{
	if (memcmp(b, "QFI\xfb", 4) != 0)
		return pg_error(PG_EFORMAT, "qcow2", "no qcow2 magic");
	h->version = pg_be32(b + 4);
	if (h->version != 2 && h->version != 3)
		return pg_error(PG_ENOTSUP, "qcow2", "qcow2 version %u is not supported (2 or 3)",
				h->version);
	h->backing_off = pg_be64(b + 8);
	h->backing_len = pg_be32(b + 16);
	h->cluster_bits = pg_be32(b + 20);
	h->size = pg_be64(b + 24);
	*crypt = pg_be32(b + 32);
	h->l1_size = pg_be32(b + 36);
	h->l1_off = pg_be64(b + 40);
	h->rt_off = pg_be64(b + 48);
	h->rt_clusters = pg_be32(b + 56);
	h->refcount_order = 4;
	h->header_len = 72;
	if (h->version == 3) {
		if (n < 104 || filesize < 104)
			return pg_error(PG_ETRUNC, "qcow2", "truncated qcow2 v3 header");
		h->incompat = pg_be64(b + 72);
		h->refcount_order = pg_be32(b + 96);
		h->header_len = pg_be32(b + 100);
		if (h->header_len < 104)
			return pg_error(PG_ECORRUPT, "qcow2", "header length %u < 104",
					h->header_len);
	}
	return 0;
}

/* Cluster size, refcount width, encryption and the incompatible feature
 * bits a reader must understand. */
static int
qcow2_check_features(const uint8_t *b, size_t n, const struct pg_qcow2_hdr *h, uint32_t crypt)
{
	if (h->cluster_bits < 9 || h->cluster_bits > 21)
		return pg_error(PG_ECORRUPT, "qcow2", "cluster_bits %u out of range 9..21",
				h->cluster_bits);
	if (h->header_len > 1ULL << h->cluster_bits)
		return pg_error(PG_ECORRUPT, "qcow2", "header longer than a cluster");
	if (h->refcount_order > 6)
		return pg_error(PG_ECORRUPT, "qcow2", "refcount_order %u > 6", h->refcount_order);
	if (crypt != 0)
		return pg_error(PG_ENOTSUP, "qcow2", "encrypted qcow2 (method %u) is not supported",
				crypt);
	if (h->incompat & 2)
		return pg_error(PG_ECORRUPT, "qcow2", "image is marked corrupt by QEMU");
	if (h->incompat & 4)
		return pg_error(PG_ENOTSUP, "qcow2", "external data files are not supported");
	if (h->incompat & 8) {
		if (h->header_len < 105 || n < 105)
			return pg_error(PG_ECORRUPT, "qcow2",
					"compression type bit without the field");
		if (b[104] != 0)
			return pg_error(PG_ENOTSUP, "qcow2",
					"compression type %u (zstd) is not supported, only deflate",
					b[104]);
	}
	if (h->incompat & 16)
		return pg_error(PG_ENOTSUP, "qcow2", "extended L2 entries are not supported");
	if (h->incompat & ~0x1fULL)
		return pg_error(PG_ENOTSUP, "qcow2", "unknown incompatible features 0x%llx",
				(unsigned long long)h->incompat);
	return 0;
}

/* The virtual size and the L1 table: big enough for the size, within the
 * limit, cluster aligned and inside the file. */
static int
qcow2_check_l1(const struct pg_qcow2_hdr *h, uint64_t filesize)
{
	uint64_t cs = 1ULL << h->cluster_bits, l2n = cs / 8, need;

	if (h->size > PG_QCOW2_MAX_SIZE)
		return pg_error(PG_ERANGE, "qcow2", "virtual size %llu is over the limit",
				(unsigned long long)h->size);
	need = (h->size + cs * l2n - 1) / (cs * l2n);
	if (h->l1_size < need)
		return pg_error(PG_ECORRUPT, "qcow2",
				"L1 table of %u entries is too small for %llu bytes", h->l1_size,
				(unsigned long long)h->size);
	if (h->l1_size > MAX_L1_ENTRIES)
		return pg_error(PG_ETOOBIG, "qcow2", "L1 table of %u entries is over the limit",
				h->l1_size);
	if (h->l1_size && (h->l1_off % cs || h->l1_off == 0))
		return pg_error(PG_ECORRUPT, "qcow2", "L1 table offset %llu is not cluster aligned",
				(unsigned long long)h->l1_off);
	if (h->l1_size && (h->l1_off > filesize || (uint64_t)h->l1_size * 8 > filesize - h->l1_off))
		return pg_error(
		    PG_ECORRUPT, "qcow2",
		    "L1 table at %llu (%u entries) is past the end of the file (%llu bytes)",
		    (unsigned long long)h->l1_off, h->l1_size, (unsigned long long)filesize);
	return 0;
}

/* The header extensions after the header (n bytes of it read): only the
 * backing format matters to a reader. */
static int
qcow2_read_extensions(const uint8_t *b, size_t n, struct pg_qcow2_hdr *h)
{
	uint64_t cs = 1ULL << h->cluster_bits, ext = h->header_len;

	while (ext + 8 <= n && ext + 8 <= cs) {
		uint32_t type = pg_be32(b + ext), len = pg_be32(b + ext + 4);

		if (type == 0)
			break;
		if (len > n - ext - 8)
			return pg_error(PG_ECORRUPT, "qcow2", "header extension 0x%x overruns",
					type);
		if (type == 0xE2792ACA && len < sizeof(h->backing_fmt)) {
			memcpy(h->backing_fmt, b + ext + 8, len);
			h->backing_fmt[len] = 0;
		}
		ext += 8 + ((len + 7ULL) & ~7ULL);
	}
	return 0;
}

int
pgi_qcow2_parse_header(const uint8_t *b, size_t n, uint64_t filesize, struct pg_qcow2_hdr *h)
{
	uint32_t crypt = 0;
	int rc;

	memset(h, 0, sizeof(*h));
	if (n < 72 || filesize < 72)
		return pg_error(PG_ETRUNC, "qcow2", "truncated qcow2 header (%llu bytes)",
				(unsigned long long)(filesize < n ? filesize : n));
	rc = qcow2_read_fields(b, n, filesize, h, &crypt);
	if (rc == 0)
		rc = qcow2_check_features(b, n, h, crypt);
	if (rc == 0)
		rc = qcow2_check_l1(h, filesize);
	if (rc < 0)
		return rc;
	if (h->backing_off) {
		if (h->backing_len == 0 || h->backing_len > 1023)
			return pg_error(PG_ECORRUPT, "qcow2", "backing file name length %u",
					h->backing_len);
		if (h->backing_off > n || h->backing_len > n - h->backing_off)
			return pg_error(PG_ECORRUPT, "qcow2",
					"backing file name outside the first cluster");
	}
	return qcow2_read_extensions(b, n, h);
}

/* ---- reader ---- */

static int
l2_get(struct qcow2 *q, uint64_t l2off, uint64_t **tab)
{
	struct l2c *victim = &q->cache[0];
	int rc;

	for (int i = 0; i < L2_CACHE; i++) {
		if (q->cache[i].tab && q->cache[i].off == l2off) {
			q->cache[i].age = ++q->tick;
			*tab = q->cache[i].tab;
			return 0;
		}
		if (!q->cache[i].tab || q->cache[i].age < victim->age)
			victim = &q->cache[i];
	}
	if (l2off % q->cs || l2off > q->filesize || q->cs > q->filesize - l2off)
		return pg_error(PG_ECORRUPT, "qcow2",
				"L2 table at %llu is past the end of the file",
				(unsigned long long)l2off);
	if (!victim->tab) {
		victim->tab = malloc(q->cs);
		if (!victim->tab)
			return PG_ENOMEM;
	}
	victim->off = 0;
	rc = pread_all(q->fd, victim->tab, q->cs, l2off);
	if (rc < 0)
		return rc;
	for (uint32_t i = 0; i < q->l2n; i++)
		victim->tab[i] = pg_be64((uint8_t *)&victim->tab[i]);
	victim->off = l2off;
	victim->age = ++q->tick;
	*tab = victim->tab;
	return 0;
}

static int
read_compressed(struct qcow2 *q, uint64_t entry, uint8_t **cluster)
{
	uint32_t x = 62 - (q->h.cluster_bits - 8);
	uint64_t off = entry & ((1ULL << x) - 1);
	uint64_t sectors = ((entry >> x) & ((1ULL << (q->h.cluster_bits - 8)) - 1)) + 1;
	uint64_t clen = sectors * 512 - (off & 511);
	z_stream zs;
	int rc, zr;

	if (q->zoff == off + 1) {
		*cluster = q->zbuf;
		return 0;
	}
	if (off >= q->filesize)
		return pg_error(PG_ECORRUPT, "qcow2", "compressed cluster at %llu past the end",
				(unsigned long long)off);
	if (clen > q->filesize - off)
		clen = q->filesize - off;
	if (clen > 2ULL * q->cs)
		clen = 2ULL * q->cs;
	if (!q->zbuf)
		q->zbuf = malloc(q->cs);
	if (!q->zin)
		q->zin = malloc(2ULL * q->cs);
	if (!q->zbuf || !q->zin)
		return PG_ENOMEM;
	q->zoff = 0;
	rc = pread_all(q->fd, q->zin, clen, off);
	if (rc < 0)
		return rc;
	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, -12) != Z_OK)
		return pg_error(PG_ENOMEM, "qcow2", "inflateInit2 failed");
	zs.next_in = q->zin;
	zs.avail_in = (uInt)clen;
	zs.next_out = q->zbuf;
	zs.avail_out = q->cs;
	zr = inflate(&zs, Z_FINISH);
	inflateEnd(&zs);
	if (!((zr == Z_STREAM_END || zr == Z_BUF_ERROR) && zs.avail_out == 0))
		return pg_error(PG_ECORRUPT, "qcow2",
				"compressed cluster at %llu does not inflate (%d)",
				(unsigned long long)off, zr);
	q->zoff = off + 1;
	*cluster = q->zbuf;
	return 0;
}

/* Reads from the device below (backing file) or zeros past its end. */
static int
read_below(struct qcow2 *q, uint64_t off, uint8_t *buf, size_t len)
{
	size_t have = 0;

	if (q->backing && off < q->backing->size) {
		have = len;
		if (have > q->backing->size - off)
			have = (size_t)(q->backing->size - off);
		int rc = q->backing->ops->read(q->backing, off, buf, have);
		if (rc < 0)
			return rc;
	}
	memset(buf + have, 0, len - have);
	return 0;
}

static int
qcow2_read(struct pg_bdev *d, uint64_t off, void *vbuf, size_t len)
{
	struct qcow2 *q = d->priv;
	uint8_t *buf = vbuf;
	int rc;

	while (len) {
		uint64_t vc = off >> q->h.cluster_bits;
		uint32_t in = (uint32_t)(off & (q->cs - 1));
		size_t chunk = q->cs - in;
		uint64_t l1i = vc / q->l2n, l2i = vc % q->l2n, entry = 0;

		if (chunk > len)
			chunk = len;
		if (q->writer) {
			if (q->l2w[l1i] && q->l2w[l1i][l2i])
				rc = pread_all(q->fd, buf, chunk, q->l2w[l1i][l2i] + in);
			else
				rc = read_below(q, off, buf, chunk);
			if (rc < 0)
				return rc;
			goto next;
		}
		if (l1i >= q->h.l1_size)
			return pg_error(PG_ECORRUPT, "qcow2", "offset beyond the L1 table");
		if (q->l1[l1i] & QCOW2_OFF_MASK) {
			uint64_t *tab;

			rc = l2_get(q, q->l1[l1i] & QCOW2_OFF_MASK, &tab);
			if (rc < 0)
				return rc;
			entry = tab[l2i];
		}
		if (entry & QCOW2_OFLAG_COMPRESSED) {
			uint8_t *cl = NULL;

			rc = read_compressed(
			    q, entry & ~(QCOW2_OFLAG_COPIED | QCOW2_OFLAG_COMPRESSED), &cl);
			if (rc < 0)
				return rc;
			memcpy(buf, cl + in, chunk);
		} else if (q->h.version >= 3 && (entry & QCOW2_OFLAG_ZERO)) {
			memset(buf, 0, chunk);
		} else if (entry & QCOW2_OFF_MASK) {
			uint64_t host = entry & QCOW2_OFF_MASK;

			if (host % q->cs)
				return pg_error(PG_ECORRUPT, "qcow2",
						"data cluster %llu not aligned",
						(unsigned long long)host);
			if (host + in > q->filesize || chunk > q->filesize - host - in)
				return pg_error(PG_ECORRUPT, "qcow2",
						"data cluster at %llu past the end of the file",
						(unsigned long long)host);
			rc = pread_all(q->fd, buf, chunk, host + in);
			if (rc < 0)
				return rc;
		} else {
			rc = read_below(q, off, buf, chunk);
			if (rc < 0)
				return rc;
		}
	next:
		buf += chunk;
		off += chunk;
		len -= chunk;
	}
	return 0;
}

/* Every allocated L2 table and data cluster must lie inside the file: a
 * truncated copy is refused at open, not discovered halfway through a read. */
static int
validate_tables(struct qcow2 *q)
{
	uint32_t x = 62 - (q->h.cluster_bits - 8);

	for (uint32_t i = 0; i < q->h.l1_size; i++) {
		uint64_t l2off = q->l1[i] & QCOW2_OFF_MASK, *tab;
		int rc;

		if (!l2off)
			continue;
		rc = l2_get(q, l2off, &tab);
		if (rc < 0)
			return rc;
		for (uint32_t j = 0; j < q->l2n; j++) {
			uint64_t e = tab[j], host;

			if (e & QCOW2_OFLAG_COMPRESSED) {
				host = e & ((1ULL << x) - 1);
				if (host >= q->filesize)
					return pg_error(PG_ECORRUPT, "qcow2",
							"compressed cluster at %llu is past the "
							"end of the file "
							"(%llu bytes): truncated image?",
							(unsigned long long)host,
							(unsigned long long)q->filesize);
				continue;
			}
			host = e & QCOW2_OFF_MASK;
			if (!host)
				continue;
			if (host % q->cs || host > q->filesize || q->cs > q->filesize - host)
				return pg_error(PG_ECORRUPT, "qcow2",
						"data cluster at %llu is past the end of the file "
						"(%llu bytes): "
						"truncated image?",
						(unsigned long long)host,
						(unsigned long long)q->filesize);
		}
	}
	return 0;
}

static void
qcow2_close(struct pg_bdev *d)
{
	struct qcow2 *q;

	if (!d)
		return;
	q = d->priv;
	if (q) {
		for (int i = 0; i < L2_CACHE; i++)
			free(q->cache[i].tab);
		if (q->l2w) {
			for (uint32_t i = 0; i < q->h.l1_size; i++)
				free(q->l2w[i]);
			free(q->l2w);
		}
		free(q->l1);
		free(q->zbuf);
		free(q->cow);
		free(q->zin);
		free(q->backing_path);
		pgi_bdev_close(q->backing);
		if (q->fd >= 0)
			close(q->fd);
		free(q);
	}
	free(d->path);
	free(d);
}

static int qcow2_write(struct pg_bdev *d, uint64_t off, const void *buf, size_t len);

static const struct pg_bdev_ops qcow2_ops = {
    .read = qcow2_read,
    .write = NULL,
    .close = qcow2_close,
};

static const struct pg_bdev_ops overlay_ops = {
    .read = qcow2_read,
    .write = qcow2_write,
    .close = qcow2_close,
};

int
pgi_qcow2_open_fd(int fd, const char *path, int depth, char chain[][4096], struct pg_bdev **out)
{
	struct pg_bdev *d = NULL;
	struct qcow2 *q = NULL;
	uint8_t *hdr = NULL;
	struct stat sb;
	size_t hn;
	int rc = 0;

	*out = NULL;
	d = calloc(1, sizeof(*d));
	q = calloc(1, sizeof(*q));
	if (!d || !q) {
		free(d);
		free(q);
		close(fd);
		return PG_ENOMEM;
	}
	q->fd = fd;
	d->priv = q;
	d->ops = &qcow2_ops;
	if (fstat(fd, &sb) < 0) {
		rc = pg_error(PG_EIO, "qcow2", "stat: %s", strerror(errno));
		goto fail;
	}
	q->filesize = (uint64_t)sb.st_size;
	hn = q->filesize < 65536 ? (size_t)q->filesize : 65536;
	hdr = malloc(hn ? hn : 1);
	if (!hdr) {
		rc = PG_ENOMEM;
		goto fail;
	}
	PG_TRY_GOTO(pread_all(fd, hdr, hn, 0), fail, "qcow2", "header");
	rc = pgi_qcow2_parse_header(hdr, hn, q->filesize, &q->h);
	if (rc < 0) {
		if (depth > 0)
			pg_error_ctx(rc, "qcow2", "'%s'", path);
		goto fail;
	}
	q->cs = 1u << q->h.cluster_bits;
	q->l2n = q->cs / 8;
	d->size = q->h.size;
	d->version = (int)q->h.version;
	strcpy(d->fmt, "qcow2");
	q->l1 = calloc(q->h.l1_size ? q->h.l1_size : 1, 8);
	if (!q->l1) {
		rc = PG_ENOMEM;
		goto fail;
	}
	if (q->h.l1_size) {
		PG_TRY_GOTO(pread_all(fd, q->l1, (size_t)q->h.l1_size * 8, q->h.l1_off), fail,
			    "qcow2", "L1");
		for (uint32_t i = 0; i < q->h.l1_size; i++)
			q->l1[i] = pg_be64((uint8_t *)&q->l1[i]);
		rc = validate_tables(q);
		if (rc < 0) {
			if (depth > 0)
				pg_error_ctx(rc, "qcow2", "'%s'", path);
			goto fail;
		}
	}
	if (q->h.backing_off && chain) {
		char name[1024];

		memcpy(name, hdr + q->h.backing_off, q->h.backing_len);
		name[q->h.backing_len] = 0;
		if (memchr(name, 0, q->h.backing_len)) {
			rc = pg_error(PG_ECORRUPT, "qcow2", "NUL in backing file name");
			goto fail;
		}
		/* confined to the image's folder or a --backing-dir */
		rc = pgi_bdev_open_backing(
		    name, depth, chain, q->h.backing_fmt[0] ? q->h.backing_fmt : NULL, &q->backing);
		if (rc < 0) {
			pg_error_ctx(rc, "qcow2", "backing file of '%s'", path);
			goto fail;
		}
		d->depth = q->backing->depth + 1;
		d->below = q->backing;
	}
	free(hdr);
	*out = d;
	return 0;
fail:
	free(hdr);
	qcow2_close(d);
	return rc;
}

int
pgi_qcow2_check_mem(const uint8_t *data, size_t n)
{
	struct pg_bdev *d = NULL;
	uint8_t buf[4096];
	int fd, rc;

	fd = memfd_create("pg-qcow2", MFD_CLOEXEC);
	if (fd < 0)
		return PG_ESYS;
	if (n && pwrite_all(fd, data, n, 0) < 0) {
		close(fd);
		return PG_EIO;
	}
	/* No chain: a fuzz input must not make us open host files. */
	rc = pgi_qcow2_open_fd(fd, "fuzz", 0, NULL, &d);
	if (rc < 0)
		return rc;
	for (uint64_t off = 0; off < d->size && off < (64ULL << 20); off += 65536 + 512) {
		size_t len = sizeof(buf);

		if (len > d->size - off)
			len = (size_t)(d->size - off);
		rc = pgi_bdev_read(d, off, buf, len);
		if (rc < 0)
			break;
	}
	pgi_bdev_close(d);
	return rc;
}

/* ---- overlay writer ---- */

static int
qcow2_write(struct pg_bdev *d, uint64_t off, const void *vbuf, size_t len)
{
	struct qcow2 *q = d->priv;
	const uint8_t *buf = vbuf;
	uint8_t *tmp;
	int rc = 0;

	while (len) {
		uint64_t vc = off >> q->h.cluster_bits;
		uint32_t in = (uint32_t)(off & (q->cs - 1));
		size_t chunk = q->cs - in;
		uint64_t l1i = vc / q->l2n, l2i = vc % q->l2n;

		if (chunk > len)
			chunk = len;
		if (!q->l2w[l1i]) {
			q->l2w[l1i] = calloc(q->l2n, 8);
			if (!q->l2w[l1i]) {
				rc = PG_ENOMEM;
				goto out;
			}
		}
		if (!q->l2w[l1i][l2i]) {
			/* Copy-on-write: a partial write fills the rest of the new
			 * cluster from the backing file. */
			uint64_t host = q->next_free;

			if (chunk != q->cs) {
				/* libext2fs writes block by block: this runs for
				 * most new clusters, so the buffer is kept */
				if (!q->cow && !(q->cow = malloc(q->cs))) {
					rc = PG_ENOMEM;
					goto out;
				}
				tmp = q->cow;
				PG_TRY_GOTO(read_below(q, off - in, tmp, q->cs), out, "qcow2",
					    "cow");
				memcpy(tmp + in, buf, chunk);
				PG_TRY_GOTO(pwrite_all(q->fd, tmp, q->cs, host), out, "qcow2",
					    "cow");
			} else {
				PG_TRY_GOTO(pwrite_all(q->fd, buf, q->cs, host), out, "qcow2",
					    "data");
			}
			q->next_free += q->cs;
			q->l2w[l1i][l2i] = host;
		} else {
			PG_TRY_GOTO(pwrite_all(q->fd, buf, chunk, q->l2w[l1i][l2i] + in), out,
				    "qcow2", "data");
		}
		buf += chunk;
		off += chunk;
		len -= chunk;
	}
out:
	return rc;
}

int
pgi_qcow2_overlay_create(const char *path, const char *backing_path, const char *backing_fmt,
			 struct pg_bdev *base, struct pg_bdev **out)
{
	struct pg_bdev *d = NULL;
	struct qcow2 *q = NULL;
	uint8_t *zero = NULL;
	int rc = 0;

	*out = NULL;
	if (strlen(backing_path) > 1023 || strlen(backing_fmt) >= sizeof(q->backing_fmt)) {
		pgi_bdev_close(base);
		return pg_error(PG_EINVAL, "qcow2", "backing file name too long");
	}
	d = calloc(1, sizeof(*d));
	q = calloc(1, sizeof(*q));
	if (!d || !q) {
		free(d);
		free(q);
		pgi_bdev_close(base);
		return PG_ENOMEM;
	}
	d->priv = q;
	d->ops = &overlay_ops;
	q->fd = -1;
	q->backing = base;
	q->writer = 1;
	q->h.version = 3;
	q->h.cluster_bits = 16;
	q->cs = 1u << 16;
	q->l2n = q->cs / 8;
	q->h.size = base->size;
	q->h.l1_size =
	    (uint32_t)((base->size + (uint64_t)q->cs * q->l2n - 1) / ((uint64_t)q->cs * q->l2n));
	if (q->h.l1_size == 0)
		q->h.l1_size = 1;
	d->size = base->size;
	d->version = 3;
	d->depth = base->depth + 1;
	d->below = base;
	d->path = strdup(path);
	strcpy(d->fmt, "qcow2");
	snprintf(q->backing_fmt, sizeof(q->backing_fmt), "%s", backing_fmt);
	q->backing_path = strdup(backing_path);
	q->l2w = calloc(q->h.l1_size, sizeof(*q->l2w));
	zero = calloc(1, q->cs);
	if (!q->backing_path || !q->l2w || !zero) {
		rc = PG_ENOMEM;
		goto fail;
	}
	q->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (q->fd < 0) {
		rc = pg_error(errno == EEXIST ? PG_EEXIST : PG_EIO, "qcow2", "create '%s': %s",
			      path, strerror(errno));
		goto fail;
	}
	/* Cluster 0 stays zero (no magic) until finish writes the header, so
	 * an interrupted overlay is not even a qcow2 file. */
	PG_TRY_GOTO(pwrite_all(q->fd, zero, q->cs, 0), fail, "qcow2", "header cluster");
	q->next_free = q->cs;
	free(zero);
	*out = d;
	return 0;
fail:
	free(zero);
	qcow2_close(d);
	return rc;
}

int
pgi_qcow2_overlay_finish(struct pg_bdev *d)
{
	struct qcow2 *q = d->priv;
	uint64_t cs = q->cs, nl2 = 0, base, total, R = 0, T = 0, l2_start, l1_start, l1_cl;
	uint64_t rb_start, rt_start, off, per_rb = cs / 2;
	uint8_t *buf = NULL, *hdr = NULL;
	size_t blen = 0, ext;
	int rc = 0;

	if (!q->writer)
		return PG_EINVAL;
	for (uint32_t i = 0; i < q->h.l1_size; i++)
		if (q->l2w[i])
			nl2++;
	l2_start = q->next_free;
	l1_start = l2_start + nl2 * cs;
	l1_cl = ((uint64_t)q->h.l1_size * 8 + cs - 1) / cs;
	base = (l1_start + l1_cl * cs) / cs;
	/* Refcount blocks and table count themselves: iterate to a fixpoint. */
	for (;;) {
		uint64_t r2, t2;

		total = base + R + T;
		r2 = (total + per_rb - 1) / per_rb;
		t2 = (r2 * 8 + cs - 1) / cs;
		if (r2 == R && t2 == T)
			break;
		R = r2;
		T = t2;
	}
	rb_start = base * cs;
	rt_start = rb_start + R * cs;
	blen = (size_t)cs;
	buf = malloc(blen);
	hdr = calloc(1, blen);
	if (!buf || !hdr) {
		rc = PG_ENOMEM;
		goto out;
	}
	/* L2 tables */
	off = l2_start;
	{
		uint64_t *l1 = calloc(l1_cl * cs / 8, 8);

		if (!l1) {
			rc = PG_ENOMEM;
			goto out;
		}
		for (uint32_t i = 0; i < q->h.l1_size; i++) {
			if (!q->l2w[i])
				continue;
			for (uint32_t j = 0; j < q->l2n; j++)
				put_be64(buf + 8 * j,
					 q->l2w[i][j] ? (q->l2w[i][j] | QCOW2_OFLAG_COPIED) : 0);
			rc = pwrite_all(q->fd, buf, blen, off);
			if (rc < 0) {
				free(l1);
				goto out;
			}
			put_be64((uint8_t *)&l1[i], off | QCOW2_OFLAG_COPIED);
			off += cs;
		}
		rc = pwrite_all(q->fd, l1, l1_cl * cs, l1_start);
		free(l1);
		if (rc < 0)
			goto out;
	}
	/* Refcount blocks: every cluster up to the end is used exactly once. */
	for (uint64_t r = 0; r < R; r++) {
		memset(buf, 0, blen);
		for (uint64_t k = 0; k < per_rb; k++) {
			uint64_t c = r * per_rb + k;

			if (c >= total)
				break;
			buf[2 * k] = 0;
			buf[2 * k + 1] = 1;
		}
		PG_TRY_GOTO(pwrite_all(q->fd, buf, blen, rb_start + r * cs), out, "qcow2",
			    "refcount");
	}
	for (uint64_t t = 0; t < T; t++) {
		memset(buf, 0, blen);
		for (uint64_t k = 0; k < cs / 8; k++) {
			uint64_t r = t * (cs / 8) + k;

			if (r >= R)
				break;
			put_be64(buf + 8 * k, rb_start + r * cs);
		}
		PG_TRY_GOTO(pwrite_all(q->fd, buf, blen, rt_start + t * cs), out, "qcow2",
			    "refcount table");
	}
	/* Everything the header points at is on disk before the header is. */
	if (fsync(q->fd) < 0) {
		rc = pg_error(PG_EIO, "qcow2", "fsync: %s", strerror(errno));
		goto out;
	}
	memcpy(hdr, "QFI\xfb", 4);
	put_be32(hdr + 4, 3);
	put_be32(hdr + 20, q->h.cluster_bits);
	put_be64(hdr + 24, q->h.size);
	put_be32(hdr + 32, 0);
	put_be32(hdr + 36, q->h.l1_size);
	put_be64(hdr + 40, l1_start);
	put_be64(hdr + 48, rt_start);
	put_be32(hdr + 56, (uint32_t)T);
	put_be32(hdr + 60, 0);
	put_be64(hdr + 64, 0);
	put_be64(hdr + 72, 0);
	put_be64(hdr + 80, 0);
	put_be64(hdr + 88, 0);
	put_be32(hdr + 96, 4);
	put_be32(hdr + 100, 104);
	ext = 104;
	{
		size_t fl = strlen(q->backing_fmt), bl = strlen(q->backing_path);

		put_be32(hdr + ext, 0xE2792ACA);
		put_be32(hdr + ext + 4, (uint32_t)fl);
		memcpy(hdr + ext + 8, q->backing_fmt, fl);
		ext += 8 + ((fl + 7) & ~(size_t)7);
		put_be32(hdr + ext, 0);
		put_be32(hdr + ext + 4, 0);
		ext += 8;
		put_be64(hdr + 8, ext);
		put_be32(hdr + 16, (uint32_t)bl);
		memcpy(hdr + ext, q->backing_path, bl);
	}
	PG_TRY_GOTO(pwrite_all(q->fd, hdr, blen, 0), out, "qcow2", "header");
	if (ftruncate(q->fd, (off_t)(total * cs)) < 0 || fsync(q->fd) < 0) {
		rc = pg_error(PG_EIO, "qcow2", "finish: %s", strerror(errno));
		goto out;
	}
out:
	free(buf);
	free(hdr);
	return rc;
}
