/*
 * The cell-information TLV carried in a private-use ISO 8583 field (62 by
 * default): the serving base station and up to six neighbours, as the seed's
 * terminal reports them. Layout (docs/pos.md): tag(1) length(1) value.
 */
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/pos.h"

#include <string.h>
#include <strings.h>

#define TAG_SERVING   0x01
#define TAG_NEIGHBOUR 0x02
#define LEN_SERVING   20
#define LEN_NEIGHBOUR 18

static const char *const radio_names[PG_RADIO_N] = {"GSM", "UMTS", "LTE", "NR", "CDMA"};

const char *
pg_radio_name(int radio)
{
	return radio >= 0 && radio < PG_RADIO_N ? radio_names[radio] : "?";
}

int
pg_radio_parse(const char *s, size_t n)
{
	for (int i = 0; i < PG_RADIO_N; i++)
		if (strlen(radio_names[i]) == n && strncasecmp(s, radio_names[i], n) == 0)
			return i;
	return PG_EFORMAT;
}

static int
get_cell(const uint8_t *v, struct pg_cell_obs *c, const char *what)
{
	c->radio = v[0];
	c->mcc = pg_be16(v + 1);
	c->mnc = pg_be16(v + 3);
	c->area = pg_be32(v + 5);
	c->cid = pg_be64(v + 9);
	c->signal = (int8_t)v[17];
	c->ta = PG_TA_NONE;
	if (c->radio >= PG_RADIO_N)
		return pg_error(PG_EFORMAT, "celltlv", "%s: radio type %u unknown", what, v[0]);
	if (c->mcc < 1 || c->mcc > 999 || c->mnc > 999)
		return pg_error(PG_EFORMAT, "celltlv", "%s: MCC %u / MNC %u out of range", what,
				c->mcc, c->mnc);
	if (c->cid >= 1ULL << 40) /* NR cell identities are 36 bits */
		return pg_error(PG_EFORMAT, "celltlv", "%s: cell id out of range", what);
	if (c->signal > 0)
		return pg_error(PG_EFORMAT, "celltlv", "%s: signal %d dBm is positive", what,
				c->signal);
	return 0;
}

int
pg_celltlv_decode(const uint8_t *p, size_t n, struct pg_cell_report *r)
{
	size_t pos = 0;
	int have_serving = 0, rc;

	r->nneigh = 0;
	while (pos < n) {
		uint8_t tag, len;

		if (n - pos < 2)
			return pg_error(PG_ETRUNC, "celltlv", "TLV header truncated at offset %zu",
					pos);
		tag = p[pos];
		len = p[pos + 1];
		pos += 2;
		if (n - pos < len)
			return pg_error(PG_ETRUNC, "celltlv", "tag 0x%02X: length %u past the end",
					tag, len);
		switch (tag) {
		case TAG_SERVING:
			if (len != LEN_SERVING)
				return pg_error(PG_EFORMAT, "celltlv",
						"serving cell: length %u, not %d", len,
						LEN_SERVING);
			if (have_serving)
				return pg_error(PG_EFORMAT, "celltlv", "serving cell given twice");
			rc = get_cell(p + pos, &r->serving, "serving cell");
			if (rc < 0)
				return rc;
			r->serving.ta = pg_be16(p + pos + 18);
			have_serving = 1;
			break;
		case TAG_NEIGHBOUR:
			if (len != LEN_NEIGHBOUR)
				return pg_error(PG_EFORMAT, "celltlv",
						"neighbour: length %u, not %d", len, LEN_NEIGHBOUR);
			if (r->nneigh == PG_CELL_MAX_NEIGH)
				return pg_error(PG_EFORMAT, "celltlv", "more than %d neighbours",
						PG_CELL_MAX_NEIGH);
			rc = get_cell(p + pos, &r->neigh[r->nneigh], "neighbour");
			if (rc < 0)
				return rc;
			r->nneigh++;
			break;
		case 0x00:
			return pg_error(PG_EFORMAT, "celltlv", "tag 0x00 is reserved");
		default:
			break; /* tags from newer terminals are skipped, still length-checked */
		}
		pos += len;
	}
	if (!have_serving)
		return pg_error(PG_EFORMAT, "celltlv", "no serving cell (tag 0x01)");
	return 0;
}

static void
put_cell(uint8_t *v, const struct pg_cell_obs *c)
{
	v[0] = c->radio;
	pg_put_be16(v + 1, c->mcc);
	pg_put_be16(v + 3, c->mnc);
	pg_put_be32(v + 5, c->area);
	pg_put_be64(v + 9, c->cid);
	v[17] = (uint8_t)c->signal;
}

int
pg_celltlv_encode(const struct pg_cell_report *r, struct pg_buf *out)
{
	uint8_t v[2 + LEN_SERVING];
	int rc;

	if (r->nneigh < 0 || r->nneigh > PG_CELL_MAX_NEIGH)
		return pg_error(PG_EINVAL, "celltlv", "%d neighbours (at most %d)", r->nneigh,
				PG_CELL_MAX_NEIGH);
	v[0] = TAG_SERVING;
	v[1] = LEN_SERVING;
	put_cell(v + 2, &r->serving);
	pg_put_be16(v + 2 + 18, r->serving.ta);
	rc = pg_buf_append(out, v, sizeof(v));
	for (int i = 0; rc == 0 && i < r->nneigh; i++) {
		v[0] = TAG_NEIGHBOUR;
		v[1] = LEN_NEIGHBOUR;
		put_cell(v + 2, &r->neigh[i]);
		rc = pg_buf_append(out, v, 2 + LEN_NEIGHBOUR);
	}
	return rc;
}

static json_t *
cell_json(const struct pg_cell_obs *c, int serving)
{
	json_t *o =
	    json_pack("{s:s,s:i,s:i,s:I,s:I}", "radio", pg_radio_name(c->radio), "mcc", c->mcc,
		      "mnc", c->mnc, "area", (json_int_t)c->area, "cid", (json_int_t)c->cid);

	if (o && c->signal != PG_SIGNAL_NONE)
		json_object_set_new(o, "signal", json_integer(c->signal));
	if (o && serving && c->ta != PG_TA_NONE)
		json_object_set_new(o, "ta", json_integer(c->ta));
	return o;
}

json_t *
pg_celltlv_to_json(const struct pg_cell_report *r)
{
	json_t *o = json_object(), *a = json_array();

	if (!o || !a) {
		json_decref(o);
		json_decref(a);
		return NULL;
	}
	json_object_set_new(o, "serving", cell_json(&r->serving, 1));
	for (int i = 0; i < r->nneigh; i++)
		json_array_append_new(a, cell_json(&r->neigh[i], 0));
	json_object_set_new(o, "neighbours", a);
	return o;
}

static int
cell_from_json(json_t *o, struct pg_cell_obs *c, int serving)
{
	const char *radio = NULL;
	json_int_t mcc = -1, mnc = -1, area = -1, cid = -1, signal = 0, ta = PG_TA_NONE;
	json_error_t err;

	if (json_unpack_ex(o, &err, 0, "{s:s,s:I,s:I,s:I,s:I,s?I,s?I}", "radio", &radio, "mcc",
			   &mcc, "mnc", &mnc, "area", &area, "cid", &cid, "signal", &signal, "ta",
			   &ta) < 0)
		return pg_error(PG_EFORMAT, "celltlv", "cell JSON: %s", err.text);
	if (pg_radio_parse(radio, strlen(radio)) < 0)
		return pg_error(PG_EFORMAT, "celltlv", "radio '%s' unknown", radio);
	if (mcc < 1 || mcc > 999 || mnc < 0 || mnc > 999 || area < 0 || area > 0xffffffffLL ||
	    cid < 0 || cid >= 1LL << 40 || signal > 0 || signal < -128 || ta < 0 || ta > 0xffff)
		return pg_error(PG_EFORMAT, "celltlv", "cell JSON: value out of range");
	c->radio = (uint8_t)pg_radio_parse(radio, strlen(radio));
	c->mcc = (uint16_t)mcc;
	c->mnc = (uint16_t)mnc;
	c->area = (uint32_t)area;
	c->cid = (uint64_t)cid;
	c->signal = (int8_t)signal;
	c->ta = serving ? (uint16_t)ta : PG_TA_NONE;
	return 0;
}

int
pg_celltlv_from_json(json_t *o, struct pg_cell_report *r)
{
	json_t *n = json_object_get(o, "neighbours");
	int rc;

	rc = cell_from_json(json_object_get(o, "serving"), &r->serving, 1);
	if (rc < 0)
		return rc;
	r->nneigh = 0;
	if (n && !json_is_array(n))
		return pg_error(PG_EFORMAT, "celltlv", "neighbours must be an array");
	if (json_array_size(n) > PG_CELL_MAX_NEIGH)
		return pg_error(PG_EFORMAT, "celltlv", "more than %d neighbours",
				PG_CELL_MAX_NEIGH);
	for (size_t i = 0; i < json_array_size(n); i++) {
		rc = cell_from_json(json_array_get(n, i), &r->neigh[i], 0);
		if (rc < 0)
			return rc;
		r->nneigh++;
	}
	return 0;
}

int
pg_pos_msg_from_json(const struct pg_iso_dialect *d, json_t *o, int cell_field,
		     struct pg_iso_msg *m)
{
	json_t *cell = json_object_get(o, "cell");
	struct pg_cell_report r;
	struct pg_buf b = PG_BUF_INIT(256);
	int rc = pg_iso_from_json(d, o, m);

	if (rc < 0 || !cell)
		return rc;
	rc = pg_celltlv_from_json(cell, &r);
	if (rc == 0)
		rc = pg_celltlv_encode(&r, &b);
	if (rc == 0)
		rc = pg_iso_set(m, cell_field, b.data, b.len);
	pg_buf_release(&b);
	return rc;
}

json_t *
pg_pos_msg_to_json(const struct pg_iso_dialect *d, const struct pg_iso_msg *m, int cell_field)
{
	json_t *o = pg_iso_to_json(d, m);
	struct pg_cell_report r;
	size_t n;
	const uint8_t *v;

	if (!o || !pg_iso_has(m, cell_field) || d->f[cell_field].type != PG_ISO_B)
		return o;
	v = pg_iso_get(m, cell_field, &n);
	if (pg_celltlv_decode(v, n, &r) == 0)
		json_object_set_new(o, "cell", pg_celltlv_to_json(&r));
	else
		json_object_set_new(o, "cell_error", json_string(pg_last_error()));
	return o;
}
