/*
 * .deb reader (deb(5)): an ar archive holding debian-binary, control.tar.*
 * and data.tar.{gz,xz,zst,bz2,}; the tar members are read with libarchive.
 * Every member path is normalised and refused if it is absolute or climbs
 * out with "..", so nothing in a package can name a place outside the root.
 */
#include "image_int.h"

#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/log.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MEMBERS 16
#define MAX_FILES   200000
#define CONTROL_MAX (16u << 20)

int
pg_path_clean(const char *in, char *out, size_t outlen)
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
pg_deb_free(struct pg_deb *d)
{
	if (!d)
		return;
	pg_para_free(&d->control);
	free(d->conffiles);
	free(d->md5sums);
	for (int i = 0; i < d->nscripts; i++)
		free(d->scripts[i].data);
	for (size_t i = 0; i < d->nfiles; i++) {
		free(d->files[i].path);
		free(d->files[i].target);
		free(d->files[i].data);
	}
	free(d->files);
	memset(d, 0, sizeof(*d));
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

static struct archive *
tar_open(const uint8_t *data, size_t n)
{
	struct archive *a = archive_read_new();

	if (!a)
		return NULL;
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_xz(a);
	archive_read_support_filter_zstd(a);
	archive_read_support_filter_bzip2(a);
	archive_read_support_filter_lzma(a);
	archive_read_support_format_tar(a);
	archive_read_support_format_gnutar(a);
	if (archive_read_open_memory(a, data, n) != ARCHIVE_OK) {
		pg_error(PG_EFORMAT, "deb", "tar member: %s",
			 archive_error_string(a) ? archive_error_string(a) : "unreadable");
		archive_read_free(a);
		return NULL;
	}
	return a;
}

static int
read_control(const uint8_t *data, size_t n, struct pg_deb *d)
{
	struct archive *a = tar_open(data, n);
	struct archive_entry *e;
	int r, rc = 0;

	if (!a)
		return PG_EFORMAT;
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		char name[256];
		uint8_t *buf = NULL;
		size_t len = 0;

		if (archive_entry_filetype(e) != AE_IFREG)
			continue;
		rc = pg_path_clean(archive_entry_pathname(e), name, sizeof(name));
		if (rc < 0)
			goto out;
		PG_TRY_GOTO(read_entry_data(a, e, CONTROL_MAX, &buf, &len), out, "deb", "control");
		if (strcmp(name, "control") == 0) {
			struct pg_deb822 c;

			rc = pg_deb822_parse((char *)buf, len, &c);
			free(buf);
			if (rc < 0)
				goto out;
			if (c.n != 1) {
				pg_deb822_free(&c);
				rc = pg_error(PG_EFORMAT, "deb", "control has %zu paragraphs", c.n);
				goto out;
			}
			pg_para_free(&d->control);
			d->control = c.p[0];
			c.p[0].kv = NULL;
			c.p[0].n = 0;
			pg_deb822_free(&c);
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
		rc = pg_error(PG_EFORMAT, "deb", "control.tar: %s",
			      archive_error_string(a) ? archive_error_string(a) : "bad archive");
out:
	archive_read_free(a);
	return rc;
}

static int
read_data(const uint8_t *data, size_t n, struct pg_deb *d)
{
	struct archive *a = tar_open(data, n);
	struct archive_entry *e;
	size_t total = 0;
	int r, rc = 0;

	if (!a)
		return PG_EFORMAT;
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		char path[4096];
		struct pg_deb_file *f, *nf;
		unsigned ft = archive_entry_filetype(e);

		rc = pg_path_clean(archive_entry_pathname(e), path, sizeof(path));
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

			PG_TRY_GOTO(pg_path_clean(archive_entry_hardlink(e), tgt, sizeof(tgt)), out,
				    "deb", "hard link");
			f->type = 'h';
			f->target = strdup(tgt);
		} else if (ft == AE_IFDIR) {
			f->type = 'd';
		} else if (ft == AE_IFLNK) {
			const char *t = archive_entry_symlink(e);

			if (!t || !*t || strlen(t) > 4095) {
				rc = pg_error(PG_EFORMAT, "deb", "symlink '%s' without a target",
					      path);
				goto out;
			}
			/* Symlink targets stay as written: they are resolved inside
			 * the image's filesystem only, never on the host. */
			f->type = 'l';
			f->target = strdup(t);
		} else if (ft == AE_IFREG) {
			f->type = 'f';
			PG_TRY_GOTO(read_entry_data(a, e, PG_DEB_MAX - total, &f->data, &f->size),
				    out, "deb", "data");
			total += f->size;
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
		rc = pg_error(PG_EFORMAT, "deb", "data.tar: %s",
			      archive_error_string(a) ? archive_error_string(a) : "bad archive");
out:
	archive_read_free(a);
	return rc;
}

int
pg_deb_read_mem(const uint8_t *data, size_t n, struct pg_deb *d)
{
	size_t off = 8;
	int have_control = 0, have_data = 0, members = 0, rc = 0;

	memset(d, 0, sizeof(*d));
	if (n < 8 || memcmp(data, "!<arch>\n", 8) != 0)
		return pg_error(PG_EFORMAT, "deb", "not a Debian package: no ar archive signature");
	while (off + 60 <= n) {
		const uint8_t *h = data + off;
		char name[17], szs[11], *end;
		unsigned long long sz;
		size_t nl;

		if (h[58] != '`' || h[59] != '\n') {
			rc = pg_error(PG_EFORMAT, "deb", "bad ar member header at %zu", off);
			goto fail;
		}
		memcpy(name, h, 16);
		name[16] = 0;
		for (nl = 16; nl && (name[nl - 1] == ' ' || name[nl - 1] == '/'); nl--)
			name[nl - 1] = 0;
		memcpy(szs, h + 48, 10);
		szs[10] = 0;
		sz = strtoull(szs, &end, 10);
		if (end == szs || sz > n - off - 60) {
			rc = pg_error(PG_ETRUNC, "deb", "ar member '%s' runs past the end", name);
			goto fail;
		}
		if (++members > MAX_MEMBERS) {
			rc = pg_error(PG_EFORMAT, "deb", "too many ar members");
			goto fail;
		}
		if (members == 1 && strcmp(name, "debian-binary") != 0) {
			rc = pg_error(PG_EFORMAT, "deb", "first member is '%s', not debian-binary",
				      name);
			goto fail;
		}
		if (members == 1 && (sz < 4 || memcmp(h + 60, "2.", 2) != 0)) {
			rc = pg_error(PG_ENOTSUP, "deb", "unsupported deb format version");
			goto fail;
		}
		if (strncmp(name, "control.tar", 11) == 0) {
			PG_TRY_GOTO(read_control(h + 60, (size_t)sz, d), fail, "deb",
				    "control.tar");
			have_control = 1;
		} else if (strncmp(name, "data.tar", 8) == 0) {
			PG_TRY_GOTO(read_data(h + 60, (size_t)sz, d), fail, "deb", "data.tar");
			have_data = 1;
		}
		off += 60 + (size_t)sz + (sz & 1);
	}
	if (!have_control || !have_data) {
		rc = pg_error(PG_EFORMAT, "deb", "package lacks %s",
			      have_control ? "data.tar" : "control.tar");
		goto fail;
	}
	if (!pg_para_get(&d->control, "Package") || !pg_para_get(&d->control, "Version") ||
	    !pg_para_get(&d->control, "Architecture")) {
		rc = pg_error(PG_EFORMAT, "deb", "control lacks Package, Version or Architecture");
		goto fail;
	}
	if (pg_debver_check(pg_para_get(&d->control, "Version")) < 0) {
		rc = pg_error(PG_EFORMAT, "deb", "bad version '%s'",
			      pg_para_get(&d->control, "Version"));
		goto fail;
	}
	for (const char *p = pg_para_get(&d->control, "Package"); *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("+-.", *p))) {
			rc = pg_error(PG_EFORMAT, "deb", "bad package name");
			goto fail;
		}
	return 0;
fail:
	pg_deb_free(d);
	return rc;
}

int
pg_deb_read(const char *path, struct pg_deb *d)
{
	uint8_t *data = NULL;
	size_t len = 0;
	int rc;

	memset(d, 0, sizeof(*d));
	rc = pg_read_file(path, PG_DEB_MAX, &data, &len);
	if (rc < 0)
		return pg_error(rc, "deb", "cannot read '%s'", path);
	rc = pg_deb_read_mem(data, len, d);
	free(data);
	if (rc < 0)
		return pg_error_ctx(rc, "deb", "'%s'", path);
	return 0;
}
