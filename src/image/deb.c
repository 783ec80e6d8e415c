/*
 * .deb reader (deb(5)): an ar archive holding debian-binary, control.tar.*
 * and data.tar.{gz,xz,zst,bz2,}; the tar members are read with libarchive.
 * Every member path is normalised and refused if it is absolute or climbs
 * out with "..", so nothing in a package can name a place outside the root.
 * Packages are read from their file with pread and streamed: the first pass
 * keeps metadata and MD5s only, unpacking streams data.tar a second time,
 * so memory stays bounded whatever the size of the files inside.
 */
#include "image_int.h"

#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/log.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_MEMBERS 16
#define MAX_FILES   200000
#define CONTROL_MAX (16u << 20)
#define TAR_CHUNK   (256u << 10) /* bytes pread per libarchive callback */
#define DATA_CHUNK  (1u << 20)	 /* bytes hashed per step */

int
pgi_path_clean(const char *in, char *out, size_t outlen)
{
	size_t o = 0;
	const char *p = in;

	if (in[0] == '/')
		return pg_error(PG_EFORMAT, "deb", "absolute path '%s' in package", in);
	while (*p) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);

		if (n == 0 || (n == 1 && p[0] == '.')) {
			/* "", "." components vanish */
		} else if (n == 2 && p[0] == '.' && p[1] == '.') {
			return pg_error(PG_EFORMAT, "deb", "path '%s' climbs out with '..'", in);
		} else {
			if (o + n + 2 > outlen)
				return pg_error(PG_ETOOBIG, "deb", "path '%s' too long", in);
			if (o)
				out[o++] = '/';
			memcpy(out + o, p, n);
			o += n;
		}
		p += n;
		if (*p == '/')
			p++;
	}
	out[o] = 0;
	return 0;
}

void
pgi_deb_release(struct pg_deb *d)
{
	if (!d)
		return;
	pgi_para_release(&d->control);
	free(d->conffiles);
	free(d->md5sums);
	for (int i = 0; i < d->nscripts; i++)
		free(d->scripts[i].data);
	for (size_t i = 0; i < d->nfiles; i++) {
		free(d->files[i].path);
		free(d->files[i].target);
	}
	free(d->files);
	if (d->own_fd)
		close(d->fd);
	memset(d, 0, sizeof(*d));
}

/* Where a package's bytes are: caller memory (fuzzing, tests) or an open
 * file read with pread, so a package is never loaded whole. */
struct src {
	const uint8_t *mem;
	int fd;
	uint64_t size;
};

static int
src_read(const struct src *s, uint64_t off, void *buf, size_t n)
{
	size_t have = 0;

	if (off > s->size || n > s->size - off)
		return PG_ETRUNC;
	if (s->mem) {
		memcpy(buf, s->mem + off, n);
		return 0;
	}
	while (have < n) {
		ssize_t r = pread(s->fd, (uint8_t *)buf + have, n - have, (off_t)(off + have));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return pg_error(PG_EIO, "deb", "read: %s", r < 0 ? strerror(errno) : "EOF");
		have += (size_t)r;
	}
	return 0;
}

/* One tar member of the ar archive, read by libarchive through callbacks
 * that pread a window of the package file. */
struct tar_cb {
	struct src s;
	uint64_t off, end;
	uint8_t buf[TAR_CHUNK];
};

static la_ssize_t
tar_read_cb(struct archive *a, void *ud, const void **out)
{
	struct tar_cb *c = ud;
	size_t n = c->end - c->off < TAR_CHUNK ? (size_t)(c->end - c->off) : TAR_CHUNK;
	ssize_t r;

	if (n == 0)
		return 0;
	do
		r = pread(c->s.fd, c->buf, n, (off_t)c->off);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		archive_set_error(a, errno, "read: %s", strerror(errno));
		return -1;
	}
	if (r == 0) {
		archive_set_error(a, EIO, "package file shrank while being read");
		return -1;
	}
	c->off += (uint64_t)r;
	*out = c->buf;
	return r;
}

static la_int64_t
tar_skip_cb(struct archive *a, void *ud, la_int64_t req)
{
	struct tar_cb *c = ud;
	uint64_t left = c->end - c->off;

	(void)a;
	if (req <= 0)
		return 0;
	if ((uint64_t)req > left)
		req = (la_int64_t)left;
	c->off += (uint64_t)req;
	return req;
}

struct tar {
	struct archive *a;
	struct tar_cb *cb;
};

static void
tar_close(struct tar *t)
{
	if (t->a)
		archive_read_free(t->a);
	free(t->cb);
	t->a = NULL;
	t->cb = NULL;
}

static int
tar_open(const struct src *s, uint64_t off, uint64_t n, struct tar *t)
{
	int r;

	t->cb = NULL;
	t->a = archive_read_new();
	if (!t->a)
		return PG_ENOMEM;
	archive_read_support_filter_gzip(t->a);
	archive_read_support_filter_xz(t->a);
	archive_read_support_filter_zstd(t->a);
	archive_read_support_filter_bzip2(t->a);
	archive_read_support_filter_lzma(t->a);
	archive_read_support_format_tar(t->a);
	archive_read_support_format_gnutar(t->a);
	if (s->mem) {
		r = archive_read_open_memory(t->a, s->mem + off, (size_t)n);
	} else {
		t->cb = malloc(sizeof(*t->cb));
		if (!t->cb) {
			tar_close(t);
			return PG_ENOMEM;
		}
		t->cb->s = *s;
		t->cb->off = off;
		t->cb->end = off + n;
		archive_read_set_read_callback(t->a, tar_read_cb);
		archive_read_set_skip_callback(t->a, tar_skip_cb);
		archive_read_set_callback_data(t->a, t->cb);
		r = archive_read_open1(t->a);
	}
	if (r != ARCHIVE_OK) {
		pg_error(PG_EFORMAT, "deb", "tar member: %s",
			 archive_error_string(t->a) ? archive_error_string(t->a) : "unreadable");
		tar_close(t);
		return PG_EFORMAT;
	}
	return 0;
}

static int
read_entry_data(struct archive *a, struct archive_entry *e, size_t max, uint8_t **out, size_t *len)
{
	int64_t sz = archive_entry_size(e);
	uint8_t *buf;
	la_ssize_t n;
	size_t have = 0;

	*out = NULL;
	*len = 0;
	if (sz < 0 || (uint64_t)sz > max)
		return pg_error(PG_ETOOBIG, "deb", "member '%s' of %lld bytes is over the limit",
				archive_entry_pathname(e), (long long)sz);
	buf = malloc((size_t)sz + 1);
	if (!buf)
		return PG_ENOMEM;
	while (have < (size_t)sz && (n = archive_read_data(a, buf + have, (size_t)sz - have)) > 0)
		have += (size_t)n;
	if (have != (size_t)sz) {
		free(buf);
		return pg_error(PG_ETRUNC, "deb", "member '%s' truncated: %s",
				archive_entry_pathname(e),
				archive_error_string(a) ? archive_error_string(a) : "short read");
	}
	buf[have] = 0;
	*out = buf;
	*len = have;
	return 0;
}

static int
read_control(const struct src *s, uint64_t off, uint64_t n, struct pg_deb *d)
{
	struct tar t;
	struct archive_entry *e;
	int r, rc;

	rc = tar_open(s, off, n, &t);
	if (rc < 0)
		return rc;
	while ((r = archive_read_next_header(t.a, &e)) == ARCHIVE_OK) {
		char name[256];
		uint8_t *buf = NULL;
		size_t len = 0;

		if (archive_entry_filetype(e) != AE_IFREG)
			continue;
		rc = pgi_path_clean(archive_entry_pathname(e), name, sizeof(name));
		if (rc < 0)
			goto out;
		PG_TRY_GOTO(read_entry_data(t.a, e, CONTROL_MAX, &buf, &len), out, "deb",
			    "control");
		if (strcmp(name, "control") == 0) {
			struct pg_deb822 c;

			rc = pgi_deb822_parse((char *)buf, len, &c);
			free(buf);
			if (rc < 0)
				goto out;
			if (c.n != 1) {
				pgi_deb822_release(&c);
				rc = pg_error(PG_EFORMAT, "deb", "control has %zu paragraphs", c.n);
				goto out;
			}
			pgi_para_release(&d->control);
			d->control = c.p[0];
			c.p[0].kv = NULL;
			c.p[0].n = 0;
			pgi_deb822_release(&c);
		} else if (strcmp(name, "conffiles") == 0) {
			free(d->conffiles);
			d->conffiles = (char *)buf;
		} else if (strcmp(name, "md5sums") == 0) {
			free(d->md5sums);
			d->md5sums = (char *)buf;
		} else if (!strcmp(name, "preinst") || !strcmp(name, "postinst") ||
			   !strcmp(name, "prerm") || !strcmp(name, "postrm") ||
			   !strcmp(name, "config") || !strcmp(name, "templates") ||
			   !strcmp(name, "triggers") || !strcmp(name, "shlibs")) {
			if (d->nscripts >= 8) {
				free(buf);
				continue;
			}
			snprintf(d->scripts[d->nscripts].name, sizeof(d->scripts[0].name), "%s",
				 name);
			d->scripts[d->nscripts].data = buf;
			d->scripts[d->nscripts].len = len;
			d->nscripts++;
		} else {
			free(buf);
		}
	}
	if (r != ARCHIVE_EOF)
		rc =
		    pg_error(PG_EFORMAT, "deb", "control.tar: %s",
			     archive_error_string(t.a) ? archive_error_string(t.a) : "bad archive");
out:
	tar_close(&t);
	return rc;
}

static void
md5_final_hex(EVP_MD_CTX *m, char out[33])
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned n = 0;

	EVP_DigestFinal_ex(m, md, &n);
	for (unsigned i = 0; i < 16 && i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Streams one regular member's bytes through MD5 in fixed-size chunks, so
 * a file of any size costs one chunk of memory. */
static int
hash_entry(struct archive *a, struct archive_entry *e, uint8_t *chunk, EVP_MD_CTX *m, char out[33])
{
	uint64_t want = (uint64_t)archive_entry_size(e), have = 0;
	la_ssize_t n;

	if (EVP_DigestInit_ex(m, EVP_md5(), NULL) != 1)
		return pg_error(PG_EIO, "deb", "md5 init");
	while ((n = archive_read_data(a, chunk, DATA_CHUNK)) > 0) {
		EVP_DigestUpdate(m, chunk, (size_t)n);
		have += (uint64_t)n;
	}
	if (n < 0 || have != want)
		return pg_error(PG_ETRUNC, "deb", "member '%s' truncated: %s",
				archive_entry_pathname(e),
				archive_error_string(a) ? archive_error_string(a) : "short read");
	md5_final_hex(m, out);
	return 0;
}

/* First pass over data.tar: every entry's metadata, size and MD5 are
 * checked and kept; the bytes themselves are streamed again at unpack time
 * (pg_deb_data_*), so nothing the size of a file is held in memory. */
static int
read_data(const struct src *s, uint64_t off, uint64_t n, struct pg_deb *d)
{
	struct tar t;
	struct archive_entry *e;
	uint8_t *chunk = malloc(DATA_CHUNK);
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	int r, rc;

	if (!chunk || !m) {
		free(chunk);
		EVP_MD_CTX_free(m);
		return PG_ENOMEM;
	}
	rc = tar_open(s, off, n, &t);
	if (rc < 0)
		goto out;
	while ((r = archive_read_next_header(t.a, &e)) == ARCHIVE_OK) {
		char path[4096];
		struct pg_deb_file *f, *nf;
		unsigned ft = archive_entry_filetype(e);

		rc = pgi_path_clean(archive_entry_pathname(e), path, sizeof(path));
		if (rc < 0)
			goto out;
		if (!path[0])
			continue; /* "./" itself: the root */
		if (d->nfiles >= MAX_FILES) {
			rc = pg_error(PG_ETOOBIG, "deb", "more than %d files", MAX_FILES);
			goto out;
		}
		nf = realloc(d->files, (d->nfiles + 1) * sizeof(*nf));
		if (!nf) {
			rc = PG_ENOMEM;
			goto out;
		}
		d->files = nf;
		f = &d->files[d->nfiles];
		memset(f, 0, sizeof(*f));
		f->path = strdup(path);
		if (!f->path) {
			rc = PG_ENOMEM;
			goto out;
		}
		d->nfiles++;
		f->mode = archive_entry_perm(e) & 07777;
		f->uid = (unsigned)archive_entry_uid(e);
		f->gid = (unsigned)archive_entry_gid(e);
		f->mtime = archive_entry_mtime(e);
		if (archive_entry_hardlink(e)) {
			char tgt[4096];

			PG_TRY_GOTO(pgi_path_clean(archive_entry_hardlink(e), tgt, sizeof(tgt)),
				    out, "deb", "hard link");
			f->type = 'h';
			f->target = strdup(tgt);
		} else if (ft == AE_IFDIR) {
			f->type = 'd';
		} else if (ft == AE_IFLNK) {
			const char *tg = archive_entry_symlink(e);

			if (!tg || !*tg || strlen(tg) > 4095) {
				rc = pg_error(PG_EFORMAT, "deb", "symlink '%s' without a target",
					      path);
				goto out;
			}
			/* Symlink targets stay as written: they are resolved inside
			 * the image's filesystem only, never on the host. */
			f->type = 'l';
			f->target = strdup(tg);
		} else if (ft == AE_IFREG) {
			int64_t sz = archive_entry_size(e);

			f->type = 'f';
			if (sz < 0 || (uint64_t)sz > PG_DEB_MAX_UNPACKED - d->unpacked) {
				rc = pg_error(PG_ETOOBIG, "deb",
					      "'%s': package unpacks to more than %llu GiB", path,
					      (unsigned long long)(PG_DEB_MAX_UNPACKED >> 30));
				goto out;
			}
			f->size = (size_t)sz;
			PG_TRY_GOTO(hash_entry(t.a, e, chunk, m, f->md5), out, "deb", "data");
			d->unpacked += f->size;
		} else {
			rc = pg_error(PG_ENOTSUP, "deb", "'%s' is a device, fifo or socket", path);
			goto out;
		}
		if ((f->type == 'h' || f->type == 'l') && !f->target) {
			rc = PG_ENOMEM;
			goto out;
		}
	}
	if (r != ARCHIVE_EOF)
		rc =
		    pg_error(PG_EFORMAT, "deb", "data.tar: %s",
			     archive_error_string(t.a) ? archive_error_string(t.a) : "bad archive");
out:
	tar_close(&t);
	free(chunk);
	EVP_MD_CTX_free(m);
	return rc;
}

/* The ar member header at off (deb(5)): its name (trailing blanks and the
 * GNU '/' dropped) and size, which must fit in what follows. */
static int
ar_member(const struct src *s, uint64_t off, char name[17], uint64_t *size)
{
	char szs[11], *end;
	unsigned long long sz;
	uint8_t h[60];
	size_t nl;
	int rc;

	PG_TRY_GOTO(src_read(s, off, h, 60), fail, "deb", "ar header");
	if (h[58] != '`' || h[59] != '\n')
		return pg_error(PG_EFORMAT, "deb", "bad ar member header at %llu",
				(unsigned long long)off);
	memcpy(name, h, 16);
	name[16] = 0;
	for (nl = 16; nl && (name[nl - 1] == ' ' || name[nl - 1] == '/'); nl--)
		name[nl - 1] = 0;
	memcpy(szs, h + 48, 10);
	szs[10] = 0;
	sz = strtoull(szs, &end, 10);
	if (end == szs || sz > s->size - off - 60)
		return pg_error(PG_ETRUNC, "deb", "ar member '%s' runs past the end", name);
	*size = sz;
	return 0;
fail:
	return rc;
}

/* The first member must be debian-binary of format 2.x. */
static int
ar_check_first(const struct src *s, uint64_t off, const char *name, uint64_t sz)
{
	uint8_t h[2];

	if (strcmp(name, "debian-binary") != 0)
		return pg_error(PG_EFORMAT, "deb", "first member is '%s', not debian-binary", name);
	if (sz < 4 || src_read(s, off + 60, h, 2) < 0 || memcmp(h, "2.", 2) != 0)
		return pg_error(PG_ENOTSUP, "deb", "unsupported deb format version");
	return 0;
}

/* The control paragraph names the package (a valid name), its version
 * (valid) and its architecture. */
static int
check_control(const struct pg_deb *d)
{
	if (!pgi_para_get(&d->control, "Package") || !pgi_para_get(&d->control, "Version") ||
	    !pgi_para_get(&d->control, "Architecture"))
		return pg_error(PG_EFORMAT, "deb",
				"control lacks Package, Version or Architecture");
	if (pg_debver_check(pgi_para_get(&d->control, "Version")) < 0)
		return pg_error(PG_EFORMAT, "deb", "bad version '%s'",
				pgi_para_get(&d->control, "Version"));
	for (const char *p = pgi_para_get(&d->control, "Package"); *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("+-.", *p)))
			return pg_error(PG_EFORMAT, "deb", "bad package name");
	return 0;
}

/* Walks the ar archive (deb(5)): debian-binary first, then control.tar.*
 * and data.tar.*, each read from s without copying the package. */
static int
read_ar(const struct src *s, struct pg_deb *d)
{
	uint64_t off = 8;
	int have_control = 0, have_data = 0, members = 0, rc = 0;
	uint8_t h[8];

	if (s->size < 8 || src_read(s, 0, h, 8) < 0 || memcmp(h, "!<arch>\n", 8) != 0)
		return pg_error(PG_EFORMAT, "deb", "not a Debian package: no ar archive signature");
	while (off + 60 <= s->size) {
		char name[17];
		uint64_t sz;

		rc = ar_member(s, off, name, &sz);
		if (rc < 0)
			return rc;
		if (++members > MAX_MEMBERS)
			return pg_error(PG_EFORMAT, "deb", "too many ar members");
		if (members == 1 && (rc = ar_check_first(s, off, name, sz)) < 0)
			return rc;
		if (strncmp(name, "control.tar", 11) == 0) {
			PG_TRY_GOTO(read_control(s, off + 60, sz, d), fail, "deb", "control.tar");
			have_control = 1;
		} else if (strncmp(name, "data.tar", 8) == 0 && !have_data) {
			PG_TRY_GOTO(read_data(s, off + 60, sz, d), fail, "deb", "data.tar");
			d->data_off = off + 60;
			d->data_len = sz;
			have_data = 1;
		}
		off += 60 + sz + (sz & 1);
	}
	if (!have_control || !have_data)
		return pg_error(PG_EFORMAT, "deb", "package lacks %s",
				have_control ? "data.tar" : "control.tar");
	return check_control(d);
fail:
	return rc;
}

int
pgi_deb_read_mem(const uint8_t *data, size_t n, struct pg_deb *d)
{
	struct src s = {data, -1, n};
	int rc;

	memset(d, 0, sizeof(*d));
	d->fd = -1;
	d->mem = data;
	d->memlen = n;
	rc = read_ar(&s, d);
	if (rc < 0)
		pgi_deb_release(d);
	return rc;
}

int
pgi_deb_read(const char *path, struct pg_deb *d)
{
	struct stat sb;
	struct src s;
	int fd, rc;

	memset(d, 0, sizeof(*d));
	d->fd = -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pg_error(errno == ENOENT ? PG_ENOENT : PG_EIO, "deb", "cannot read '%s': %s",
				path, strerror(errno));
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return pg_error(PG_EINVAL, "deb", "'%s' is not a regular file", path);
	}
	/* The fd stays open: unpacking streams data.tar again from the same
	 * file, and checks each file's MD5 against this first pass. */
	d->fd = fd;
	d->own_fd = 1;
	s = (struct src){NULL, fd, (uint64_t)sb.st_size};
	rc = read_ar(&s, d);
	if (rc < 0) {
		pgi_deb_release(d);
		return pg_error_ctx(rc, "deb", "'%s'", path);
	}
	return 0;
}

/* ---- second pass: streaming one file's bytes at unpack time ---- */
struct pg_deb_data {
	const struct pg_deb *d;
	struct tar t;
	const struct pg_deb_file *cur;
	uint64_t left;
	EVP_MD_CTX *m;
};

int
pgi_deb_data_open(const struct pg_deb *d, struct pg_deb_data **out)
{
	struct pg_deb_data *s = calloc(1, sizeof(*s));
	struct src src = {d->mem, d->fd, d->mem ? d->memlen : d->data_off + d->data_len};
	int rc;

	*out = NULL;
	if (!s)
		return PG_ENOMEM;
	s->d = d;
	s->m = EVP_MD_CTX_new();
	if (!s->m) {
		free(s);
		return PG_ENOMEM;
	}
	rc = tar_open(&src, d->data_off, d->data_len, &s->t);
	if (rc < 0) {
		EVP_MD_CTX_free(s->m);
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

int
pgi_deb_data_file(struct pg_deb_data *s, const struct pg_deb_file *f)
{
	struct archive_entry *e;
	int r;

	/* Files come in archive order, so this only moves forward. */
	while ((r = archive_read_next_header(s->t.a, &e)) == ARCHIVE_OK) {
		char path[4096];

		if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e) ||
		    pgi_path_clean(archive_entry_pathname(e), path, sizeof(path)) < 0 ||
		    strcmp(path, f->path) != 0)
			continue;
		if (archive_entry_size(e) != (int64_t)f->size)
			break;
		s->cur = f;
		s->left = f->size;
		EVP_DigestInit_ex(s->m, EVP_md5(), NULL);
		return 0;
	}
	return pg_error(PG_ECORRUPT, "deb", "'%s' changed in the package since it was checked",
			f->path);
}

int
pgi_deb_data_read(struct pg_deb_data *s, uint8_t *buf, size_t n, size_t *got)
{
	la_ssize_t r;

	*got = 0;
	if (!s->cur)
		return pg_error(PG_EINVAL, "deb", "no file selected");
	if (s->left == 0)
		return 0;
	if (n > s->left)
		n = (size_t)s->left;
	r = archive_read_data(s->t.a, buf, n);
	if (r <= 0)
		return pg_error(PG_ETRUNC, "deb", "'%s' truncated: %s", s->cur->path,
				archive_error_string(s->t.a) ? archive_error_string(s->t.a)
							     : "short read");
	EVP_DigestUpdate(s->m, buf, (size_t)r);
	s->left -= (uint64_t)r;
	*got = (size_t)r;
	if (s->left == 0) {
		char md5[33];

		md5_final_hex(s->m, md5);
		if (strcmp(md5, s->cur->md5) != 0)
			return pg_error(PG_ECORRUPT, "deb",
					"'%s' changed in the package since it was checked",
					s->cur->path);
	}
	return 0;
}

void
pgi_deb_data_close(struct pg_deb_data *s)
{
	if (!s)
		return;
	tar_close(&s->t);
	EVP_MD_CTX_free(s->m);
	free(s);
}
