/*
 * NumPy .npy matrices for `payguard load kmeans` (issue 18 item 3): the
 * format of numpy.lib.format, versions 1.0, 2.0 and 3.0 — the magic
 * "\x93NUMPY", a version, a little-endian header length (2 bytes in 1.0, 4
 * in 2.0/3.0), then a Python dict literal
 *     {'descr': '<f8', 'fortran_order': False, 'shape': (1000, 4), }
 * and the raw data. Read here: 2-D, C order, '<f4' or '<f8' (little-endian
 * float32/float64, what numpy.save writes on x86 and ARM), exactly rows ×
 * columns values after the header, all finite; anything else is refused with
 * a message saying what.
 */
#include "load_int.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c copies little-endian '<f4'/'<f8' data as it is: add a byte swap for this host"
#endif

struct npy_hdr {
	int have_descr, have_order, have_shape;
	int f4, fortran;
	size_t shape[2], ndim;
};

static const char *
ws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* A quoted Python string at p: its body in [*s, *s + *l). */
static const char *
pystr(const char *p, const char *e, const char **s, size_t *l)
{
	char q;
	const char *b;

	if (p >= e || (*p != '\'' && *p != '"'))
		return NULL;
	q = *p++;
	b = p;
	while (p < e && *p != q && *p != '\\')
		p++;
	if (p >= e || *p != q)
		return NULL;
	*s = b;
	*l = (size_t)(p - b);
	return p + 1;
}

/* The shape tuple: (n,), (n, d), (n, d,) ... up to 2 entries kept, ndim counted. */
static const char *
pyshape(const char *p, const char *e, struct npy_hdr *h)
{
	if (p >= e || *p != '(')
		return NULL;
	p = ws(p + 1, e);
	h->ndim = 0;
	while (p < e && *p != ')') {
		size_t v = 0;
		const char *s = p;

		for (; p < e && *p >= '0' && *p <= '9'; p++) {
			if (v > (SIZE_MAX - 9) / 10)
				return NULL;
			v = v * 10 + (size_t)(*p - '0');
		}
		if (p == s)
			return NULL;
		if (h->ndim < 2)
			h->shape[h->ndim] = v;
		h->ndim++;
		p = ws(p, e);
		if (p < e && *p == ',')
			p = ws(p + 1, e);
		else if (p < e && *p != ')')
			return NULL;
	}
	return p < e ? p + 1 : NULL;
}

/* The value of key k at p into h: past it, or NULL (the error set). */
static const char *
npy_value(const char *p, const char *e, const char *k, size_t kl, struct npy_hdr *h,
	  const char *name)
{
	const char *v;
	size_t vl;

	if (kl == 5 && memcmp(k, "descr", 5) == 0) {
		if (!(p = pystr(p, e, &v, &vl))) {
			pg_error(PG_EFORMAT, "load", "%s: .npy header: descr is not a string",
				 name);
			return NULL;
		}
		if (vl != 3 || (memcmp(v, "<f8", 3) != 0 && memcmp(v, "<f4", 3) != 0)) {
			pg_error(PG_EFORMAT, "load",
				 "%s: .npy dtype '%.*s': only '<f4' and '<f8' (little-endian "
				 "float32/float64) are read",
				 name, (int)(vl < 32 ? vl : 32), v);
			return NULL;
		}
		h->f4 = v[2] == '4';
		h->have_descr = 1;
	} else if (kl == 13 && memcmp(k, "fortran_order", 13) == 0) {
		if ((size_t)(e - p) >= 4 && memcmp(p, "True", 4) == 0) {
			h->fortran = 1;
			p += 4;
		} else if ((size_t)(e - p) >= 5 && memcmp(p, "False", 5) == 0) {
			p += 5;
		} else {
			pg_error(PG_EFORMAT, "load",
				 "%s: .npy header: fortran_order is not True/False", name);
			return NULL;
		}
		h->have_order = 1;
	} else if (kl == 5 && memcmp(k, "shape", 5) == 0) {
		if (!(p = pyshape(p, e, h))) {
			pg_error(PG_EFORMAT, "load",
				 "%s: .npy header: shape is not a tuple of integers", name);
			return NULL;
		}
		h->have_shape = 1;
	} else {
		pg_error(PG_EFORMAT, "load", "%s: .npy header: unknown key '%.*s'", name,
			 (int)(kl < 32 ? kl : 32), k);
		return NULL;
	}
	return p;
}

static int
npy_header(const char *p, const char *e, struct npy_hdr *h, const char *name)
{
	memset(h, 0, sizeof(*h));
	p = ws(p, e);
	if (p >= e || *p != '{')
		return pg_error(PG_EFORMAT, "load", "%s: .npy header is not a dict", name);
	p = ws(p + 1, e);
	while (p < e && *p != '}') {
		const char *k;
		size_t kl;

		if (!(p = pystr(p, e, &k, &kl)))
			return pg_error(PG_EFORMAT, "load",
					"%s: .npy header: a key is not a string", name);
		p = ws(p, e);
		if (p >= e || *p != ':')
			return pg_error(PG_EFORMAT, "load", "%s: .npy header: ':' missing", name);
		p = ws(p + 1, e);
		if (!(p = npy_value(p, e, k, kl, h, name)))
			return PG_EFORMAT;
		p = ws(p, e);
		if (p < e && *p == ',')
			p = ws(p + 1, e);
		else if (p < e && *p != '}')
			return pg_error(PG_EFORMAT, "load", "%s: .npy header: ',' or '}' expected",
					name);
	}
	if (p >= e)
		return pg_error(PG_EFORMAT, "load", "%s: .npy header: no closing '}'", name);
	if (!h->have_descr || !h->have_order || !h->have_shape)
		return pg_error(PG_EFORMAT, "load",
				"%s: .npy header lacks descr, fortran_order or shape", name);
	if (h->fortran)
		return pg_error(PG_EFORMAT, "load",
				"%s: .npy in Fortran order: save a C-order array "
				"(numpy.ascontiguousarray)",
				name);
	if (h->ndim != 2)
		return pg_error(
		    PG_EFORMAT, "load",
		    "%s: .npy array has %zu dimensions: a 2-D matrix (rows, columns) is "
		    "read",
		    name, h->ndim);
	return 0;
}

int
pg_load_parse_npy(const char *buf, size_t len, const char *name, double **x, size_t *n, size_t *d)
{
	const unsigned char *u = (const unsigned char *)buf;
	size_t hlen, off, cnt, isz;
	struct npy_hdr h;
	double *m;
	int rc;

	if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
		return pg_error(PG_EFORMAT, "load", "%s: not a .npy file", name);
	if (u[6] < 1 || u[6] > 3)
		return pg_error(PG_EFORMAT, "load", "%s: .npy format version %u.%u not read", name,
				u[6], u[7]);
	if (u[6] == 1) {
		hlen = (size_t)u[8] | (size_t)u[9] << 8;
		off = 10;
	} else {
		if (len < 12)
			return pg_error(PG_EFORMAT, "load", "%s: .npy file truncated", name);
		hlen = (size_t)u[8] | (size_t)u[9] << 8 | (size_t)u[10] << 16 | (size_t)u[11] << 24;
		off = 12;
	}
	if (hlen > len - off)
		return pg_error(PG_EFORMAT, "load", "%s: .npy header longer than the file", name);
	rc = npy_header(buf + off, buf + off + hlen, &h, name);
	if (rc < 0)
		return rc;
	off += hlen;
	isz = h.f4 ? 4 : 8;
	if (h.shape[0] == 0 || h.shape[1] == 0)
		return pg_error(PG_EFORMAT, "load", "%s: .npy array is empty (%zu x %zu)", name,
				h.shape[0], h.shape[1]);
	if (h.shape[1] > 1024)
		return pg_error(PG_ETOOBIG, "load",
				"%s: .npy matrix has %zu columns (at most 1024)", name, h.shape[1]);
	if (h.shape[0] > SIZE_MAX / h.shape[1] / 8)
		return pg_error(PG_ETOOBIG, "load", "%s: .npy shape too large", name);
	cnt = h.shape[0] * h.shape[1];
	if (len - off != cnt * isz)
		return pg_error(PG_EFORMAT, "load",
				"%s: .npy data is %zu bytes, shape (%zu, %zu) of %s needs %zu",
				name, len - off, h.shape[0], h.shape[1],
				h.f4 ? "float32" : "float64", cnt * isz);
	m = malloc(cnt * sizeof(double));
	if (!m)
		return pg_error(PG_ENOMEM, "load", "%s: matrix", name);
	if (h.f4) {
		for (size_t i = 0; i < cnt; i++) {
			float f;
			memcpy(&f, buf + off + 4 * i, 4);
			m[i] = f;
		}
	} else {
		memcpy(m, buf + off, cnt * 8);
	}
	for (size_t i = 0; i < cnt; i++)
		if (!isfinite(m[i])) {
			free(m);
			return pg_error(PG_EFORMAT, "load",
					"%s: .npy value at row %zu, column %zu is not finite", name,
					i / h.shape[1] + 1, i % h.shape[1] + 1);
		}
	*x = m;
	*n = h.shape[0];
	*d = h.shape[1];
	return 0;
}
