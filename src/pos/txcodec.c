/*
 * The codec of a decided POS transaction on its way through the JetStream
 * intake stream (issue 15, docs/pos.md "JetStream intake"): the node that
 * decided it encodes it, a sink on any node decodes it and stores it. The
 * bytes come from the stream, i.e. from outside the sink's process, so the
 * decoder checks every length, range and character (fuzz/pos_txcodec.c).
 *
 * Layout, big-endian, version 1:
 *   "PGT" 0x01 | ts i64 | window_start i64 | tid, mid, stan, f7 (u8 length +
 *   printable ASCII) | mti 4 digits | decision, reason, alert, confidence,
 *   cells_used u8 | rc 2 digits | distance, excess, lat, lon, acc f64 |
 *   flags u8 (1 cell, 2 merchant) | [cell: radio u8, mcc u16, mnc u16,
 *   area u32, cid u64, signal i8, ta u16] | [merchant: lat, lon, unc,
 *   limit f64, mcc u16]
 */
#include "pos_internal.h"

#include "payguard/error.h"
#include "payguard/log.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const uint8_t MAGIC[4] = {'P', 'G', 'T', 1};

static void
put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static void
put_f64(uint8_t **p, double d)
{
	uint64_t v;

	memcpy(&v, &d, sizeof(v));
	put64(*p, v);
	*p += 8;
}

static void
put_str(uint8_t **p, const char *s)
{
	size_t n = strlen(s);

	*(*p)++ = (uint8_t)n;
	memcpy(*p, s, n);
	*p += n;
}

int
pgi_pos_rec_encode(const struct pos_record *r, struct pg_buf *out)
{
	uint8_t b[PG_POS_REC_MAX], *p = b;

	memcpy(p, MAGIC, 4);
	p += 4;
	put64(p, (uint64_t)r->ts);
	put64(p + 8, (uint64_t)r->window_start);
	p += 16;
	put_str(&p, r->tid);
	put_str(&p, r->mid);
	put_str(&p, r->stan);
	put_str(&p, r->f7);
	memcpy(p, r->mti, 4);
	p += 4;
	*p++ = (uint8_t)r->res.decision;
	*p++ = (uint8_t)r->res.reason;
	*p++ = (uint8_t)(r->res.alert != 0);
	*p++ = (uint8_t)r->res.est.confidence;
	*p++ = (uint8_t)r->res.est.cells_used;
	memcpy(p, r->res.rc, 2);
	p += 2;
	put_f64(&p, r->res.distance_m);
	put_f64(&p, r->res.excess_m);
	put_f64(&p, r->res.est.lat);
	put_f64(&p, r->res.est.lon);
	put_f64(&p, r->res.est.acc_m);
	*p++ = (uint8_t)((r->have_cell ? 1 : 0) | (r->merchant.known ? 2 : 0));
	if (r->have_cell) {
		*p++ = r->cell.radio;
		*p++ = (uint8_t)(r->cell.mcc >> 8);
		*p++ = (uint8_t)r->cell.mcc;
		*p++ = (uint8_t)(r->cell.mnc >> 8);
		*p++ = (uint8_t)r->cell.mnc;
		for (int i = 3; i >= 0; i--)
			*p++ = (uint8_t)(r->cell.area >> (8 * i));
		put64(p, r->cell.cid);
		p += 8;
		*p++ = (uint8_t)r->cell.signal;
		*p++ = (uint8_t)(r->cell.ta >> 8);
		*p++ = (uint8_t)r->cell.ta;
	}
	if (r->merchant.known) {
		put_f64(&p, r->merchant.lat);
		put_f64(&p, r->merchant.lon);
		put_f64(&p, r->merchant.unc_m);
		put_f64(&p, r->merchant.limit_m);
		*p++ = (uint8_t)(r->merchant.mcc >> 8);
		*p++ = (uint8_t)r->merchant.mcc;
	}
	return pg_buf_append(out, b, (size_t)(p - b));
}

/* A cursor over the bytes: every read checks what is left. */
struct rd {
	const uint8_t *p;
	size_t left;
	const char *bad; /* the first problem */
};

static const uint8_t *
take(struct rd *d, size_t n, const char *what)
{
	const uint8_t *p = d->p;

	if (d->bad)
		return NULL;
	if (d->left < n) {
		d->bad = what;
		return NULL;
	}
	d->p += n;
	d->left -= n;
	return p;
}

static unsigned
get_u8(struct rd *d, const char *what)
{
	const uint8_t *p = take(d, 1, what);

	return p ? *p : 0;
}

static uint64_t
get_u64(struct rd *d, const char *what)
{
	const uint8_t *p = take(d, 8, what);

	return p ? pg_be64(p) : 0;
}

/* A finite double (a NaN or infinity would not survive the evidence's JSON). */
static double
get_f64(struct rd *d, const char *what)
{
	uint64_t v = get_u64(d, what);
	double x;

	memcpy(&x, &v, sizeof(x));
	if (!d->bad && !isfinite(x))
		d->bad = what;
	return d->bad ? 0 : x;
}

/*
 * At most max bytes without a NUL, copied NUL-terminated. Fields are not
 * narrowed to ASCII here: the record carries what the terminal sent, as the
 * store intake records it.
 */
static void
get_str(struct rd *d, char *out, size_t max, const char *what)
{
	unsigned n = get_u8(d, what);
	const uint8_t *p;

	out[0] = 0;
	if (!d->bad && n > max) {
		d->bad = what;
		return;
	}
	p = take(d, n, what);
	if (!p)
		return;
	for (unsigned i = 0; i < n; i++)
		if (p[i] == 0) {
			d->bad = what;
			return;
		}
	memcpy(out, p, n);
	out[n] = 0;
}

/* Exactly n characters, digits only (or printable ASCII when !digits). */
static void
get_fixed(struct rd *d, char *out, size_t n, int digits, const char *what)
{
	const uint8_t *p = take(d, n, what);

	out[0] = 0;
	if (!p)
		return;
	for (size_t i = 0; i < n; i++)
		if (digits ? p[i] < '0' || p[i] > '9' : p[i] < 0x20 || p[i] > 0x7e) {
			d->bad = what;
			return;
		}
	memcpy(out, p, n);
	out[n] = 0;
}

static void
get_cell(struct rd *d, struct pg_cell_obs *c)
{
	const uint8_t *p = take(d, 20, "cell");

	if (!p)
		return;
	c->radio = p[0];
	c->mcc = pg_be16(p + 1);
	c->mnc = pg_be16(p + 3);
	c->area = pg_be32(p + 5);
	c->cid = pg_be64(p + 9);
	c->signal = (int8_t)p[17];
	c->ta = pg_be16(p + 18);
	if (c->radio >= PG_RADIO_N || c->mcc > 999 || c->mnc > 999)
		d->bad = "cell";
}

int
pgi_pos_rec_decode(const uint8_t *p, size_t n, struct pos_record *r)
{
	struct rd d = {p, n, NULL};
	const uint8_t *m = take(&d, 4, "magic");
	unsigned flags;

	memset(r, 0, sizeof(*r));
	if (m && memcmp(m, MAGIC, 4) != 0)
		d.bad = "magic or version";
	r->ts = (int64_t)get_u64(&d, "ts");
	r->window_start = (int64_t)get_u64(&d, "window start");
	get_str(&d, r->tid, sizeof(r->tid) - 1, "terminal id");
	get_str(&d, r->mid, sizeof(r->mid) - 1, "merchant id");
	get_str(&d, r->stan, sizeof(r->stan) - 1, "STAN");
	get_str(&d, r->f7, sizeof(r->f7) - 1, "transmission time");
	get_fixed(&d, r->mti, 4, 1, "MTI");
	r->res.decision = (int)get_u8(&d, "decision");
	r->res.reason = (int)get_u8(&d, "reason");
	r->res.alert = (int)get_u8(&d, "alert");
	r->res.est.confidence = (int)get_u8(&d, "confidence");
	r->res.est.cells_used = (int)get_u8(&d, "cells used");
	get_fixed(&d, r->res.rc, 2, 0, "response code");
	r->res.distance_m = get_f64(&d, "distance");
	r->res.excess_m = get_f64(&d, "excess");
	r->res.est.lat = get_f64(&d, "latitude");
	r->res.est.lon = get_f64(&d, "longitude");
	r->res.est.acc_m = get_f64(&d, "accuracy");
	flags = get_u8(&d, "flags");
	if (!d.bad && (r->res.decision > PG_DEC_FORMAT || r->res.reason > PG_RSN_NO_TLV ||
		       r->res.alert > 1 || r->res.est.confidence > PG_CONF_HIGH ||
		       r->res.est.cells_used > 1 + PG_CELL_MAX_NEIGH || flags > 3))
		d.bad = "a value out of range";
	if (flags & 1) {
		r->have_cell = 1;
		get_cell(&d, &r->cell);
	}
	if (flags & 2) {
		r->merchant.known = 1;
		r->merchant.lat = get_f64(&d, "merchant");
		r->merchant.lon = get_f64(&d, "merchant");
		r->merchant.unc_m = get_f64(&d, "merchant");
		r->merchant.limit_m = get_f64(&d, "merchant");
		m = take(&d, 2, "merchant");
		if (m)
			r->merchant.mcc = pg_be16(m);
	}
	if (!d.bad && d.left)
		d.bad = "trailing bytes";
	if (d.bad)
		return pg_error(PG_EFORMAT, "pos-intake", "transaction record: bad %s", d.bad);
	return 0;
}

/* Appends s with every byte that is not plain printable ASCII (or is ':' or '%') as %XX. */
static size_t
put_escaped(char *out, size_t at, size_t outlen, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *)s; *p && at + 4 < outlen; p++) {
		if (*p > 0x20 && *p < 0x7f && *p != ':' && *p != '%') {
			out[at++] = (char)*p;
		} else {
			out[at++] = '%';
			out[at++] = hex[*p >> 4];
			out[at++] = hex[*p & 15];
		}
	}
	out[at] = 0;
	return at;
}

void
pgi_pos_rec_id(const struct pos_record *r, char *out, size_t outlen)
{
	size_t at = 0;
	const char *parts[3] = {r->tid, r->stan, r->f7};

	if (outlen < 64) {
		if (outlen)
			out[0] = 0;
		return;
	}
	at = (size_t)snprintf(out, outlen, "pos:");
	for (int i = 0; i < 3; i++) {
		at = put_escaped(out, at, outlen - 24, parts[i]);
		out[at++] = ':';
	}
	snprintf(out + at, outlen - at, "%lld", (long long)r->ts);
}
