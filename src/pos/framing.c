/*
 * ISO 8583 transport framings (length prefix in binary, BCD or ASCII, with an
 * optional 5-byte TPDU) and the field-definition file reader. Seed 4: the
 * terminal's messages reach the monitoring server over these framings.
 */
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/log.h"
#include "payguard/pos_iso8583.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const frame_names[] = {"none", "bin2", "bcd2", "ascii4", "bin4"};

int
pg_iso_framing_parse(struct pg_iso_framing *fr, const char *s)
{
	size_t n = strcspn(s, "+");

	fr->tpdu = 0;
	if (s[n]) {
		if (strcmp(s + n, "+tpdu") != 0)
			return pg_error(PG_EINVAL, "framing", "unknown framing option '%s'", s + n);
		fr->tpdu = 1;
	}
	for (size_t i = 0; i < sizeof(frame_names) / sizeof(frame_names[0]); i++)
		if (strlen(frame_names[i]) == n && strncmp(s, frame_names[i], n) == 0) {
			fr->kind = (uint8_t)i;
			if (fr->kind == PG_FRAME_NONE && fr->tpdu)
				return pg_error(PG_EINVAL, "framing",
						"a TPDU needs a length prefix");
			return 0;
		}
	return pg_error(PG_EINVAL, "framing",
			"unknown framing '%s' (bin2, bcd2, ascii4, bin4, none; +tpdu)", s);
}

const char *
pg_iso_framing_name(const struct pg_iso_framing *fr, char out[24])
{
	snprintf(out, 24, "%s%s", fr->kind <= PG_FRAME_BIN4 ? frame_names[fr->kind] : "?",
		 fr->tpdu ? "+tpdu" : "");
	return out;
}

static size_t
prefix_len(int kind)
{
	switch (kind) {
	case PG_FRAME_BIN2:
	case PG_FRAME_BCD2:
		return 2;
	case PG_FRAME_ASCII4:
	case PG_FRAME_BIN4:
		return 4;
	default:
		return 0;
	}
}

int
pg_iso_frame_find(const struct pg_iso_framing *fr, const uint8_t *p, size_t n, size_t max,
		  size_t *hdr, size_t *body)
{
	size_t pl = prefix_len(fr->kind), len = 0, tp = fr->tpdu ? 5 : 0;

	if (fr->kind == PG_FRAME_NONE) {
		if (n > max)
			return pg_error(PG_ETOOBIG, "framing", "message of %zu bytes exceeds %zu",
					n, max);
		*hdr = 0;
		*body = n;
		return 1;
	}
	if (n < pl)
		return 0;
	switch (fr->kind) {
	case PG_FRAME_BIN2:
		len = pg_be16(p);
		break;
	case PG_FRAME_BIN4:
		len = pg_be32(p);
		break;
	case PG_FRAME_BCD2:
		for (int i = 0; i < 2; i++) {
			if ((p[i] >> 4) > 9 || (p[i] & 15) > 9)
				return pg_error(PG_EFORMAT, "framing",
						"length prefix %02X%02X is not BCD", p[0], p[1]);
			len = len * 100 + (p[i] >> 4) * 10 + (p[i] & 15);
		}
		break;
	case PG_FRAME_ASCII4:
		for (int i = 0; i < 4; i++) {
			if (p[i] < '0' || p[i] > '9')
				return pg_error(PG_EFORMAT, "framing",
						"length prefix has non-digit 0x%02X", p[i]);
			len = len * 10 + (p[i] - '0');
		}
		break;
	}
	if (len > max + tp)
		return pg_error(PG_ETOOBIG, "framing", "announced length %zu exceeds %zu", len,
				max + tp);
	if (len <= tp)
		return pg_error(PG_EFORMAT, "framing", "announced length %zu leaves no message",
				len);
	if (n < pl + len)
		return 0;
	if (tp && p[pl] != 0x60)
		return pg_error(PG_EFORMAT, "framing", "TPDU id 0x%02X is not 0x60", p[pl]);
	*hdr = pl + tp;
	*body = len - tp;
	return 1;
}

int
pg_iso_frame_wrap(const struct pg_iso_framing *fr, const uint8_t tpdu[5], const uint8_t *body,
		  size_t len, struct pg_buf *out)
{
	size_t total = len + (fr->tpdu ? 5 : 0);
	uint8_t pfx[4];
	int rc = 0;

	switch (fr->kind) {
	case PG_FRAME_NONE:
		break;
	case PG_FRAME_BIN2:
		if (total > 0xffff)
			return pg_error(PG_ETOOBIG, "framing", "%zu bytes do not fit bin2", total);
		pg_put_be16(pfx, (uint16_t)total);
		rc = pg_buf_append(out, pfx, 2);
		break;
	case PG_FRAME_BIN4:
		pg_put_be32(pfx, (uint32_t)total);
		rc = pg_buf_append(out, pfx, 4);
		break;
	case PG_FRAME_BCD2:
	case PG_FRAME_ASCII4: {
		char d[8];

		if (total > 9999)
			return pg_error(PG_ETOOBIG, "framing", "%zu bytes do not fit 4 digits",
					total);
		snprintf(d, sizeof(d), "%04zu", total);
		if (fr->kind == PG_FRAME_ASCII4) {
			rc = pg_buf_append(out, d, 4);
		} else {
			pfx[0] = (uint8_t)((d[0] - '0') << 4 | (d[1] - '0'));
			pfx[1] = (uint8_t)((d[2] - '0') << 4 | (d[3] - '0'));
			rc = pg_buf_append(out, pfx, 2);
		}
		break;
	}
	default:
		return PG_EINVAL;
	}
	if (rc == 0 && fr->tpdu) {
		static const uint8_t zero[5] = {0x60, 0, 0, 0, 0};

		rc = pg_buf_append(out, tpdu ? tpdu : zero, 5);
	}
	if (rc == 0)
		rc = pg_buf_append(out, body, len);
	return rc;
}

/* ---- field-definition files ---- */

static int
parse_type(const char *s, uint8_t *t)
{
	for (int i = 0; i < PG_ISO_NTYPES; i++)
		if (strcmp(s, pg_iso_type_name(i)) == 0) {
			*t = (uint8_t)i;
			return 0;
		}
	return -1;
}

static int
parse_lenkind(const char *s, uint8_t *k)
{
	if (strcmp(s, "fixed") == 0)
		*k = PG_ISO_FIXED;
	else if (strcmp(s, "llvar") == 0)
		*k = PG_ISO_LL;
	else if (strcmp(s, "lllvar") == 0)
		*k = PG_ISO_LLL;
	else
		return -1;
	return 0;
}

static int
parse_pad(const char *s, uint8_t *pad)
{
	static const char *const names[] = {"default", "left0", "right0", "rightF"};

	for (int i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0) {
			*pad = (uint8_t)i;
			return 0;
		}
	return -1;
}

/* Splits a line into at most max tokens; a double-quoted token may hold spaces. */
static int
tokenize(char *line, char **tok, int max)
{
	int n = 0;
	char *p = line;

	while (*p && n < max) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p || *p == '#')
			break;
		if (*p == '"') {
			tok[n++] = ++p;
			while (*p && *p != '"')
				p++;
			if (*p != '"')
				return -1;
			*p++ = 0;
		} else {
			tok[n++] = p;
			while (*p && *p != ' ' && *p != '\t')
				p++;
			if (*p)
				*p++ = 0;
		}
	}
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p && *p != '#')
		return -1;
	return n;
}

/* A "field NUM TYPE LENKIND MAX [pad=P] [NAME]" line into d. */
static int
parse_field_line(struct pg_iso_dialect *d, char **tok, int nt, int lineno)
{
	char *end;
	long f, max;
	struct pg_iso_fdef fd = {0};

	if (nt < 5)
		return pg_error(PG_EFORMAT, "fielddef",
				"line %d: field NUM TYPE LENKIND MAX [pad=P] "
				"[\"NAME\"]",
				lineno);
	f = strtol(tok[1], &end, 10);
	if (*end || f < 2 || f > 128)
		return pg_error(PG_EFORMAT, "fielddef", "line %d: field '%s' not 2..128", lineno,
				tok[1]);
	if (parse_type(tok[2], &fd.type) < 0)
		return pg_error(PG_EFORMAT, "fielddef",
				"line %d: type '%s' (n, a, an, ans, b, z, x+n, anp)", lineno,
				tok[2]);
	if (parse_lenkind(tok[3], &fd.lenkind) < 0)
		return pg_error(PG_EFORMAT, "fielddef",
				"line %d: length '%s' (fixed, llvar, lllvar)", lineno, tok[3]);
	max = strtol(tok[4], &end, 10);
	if (*end || max < 1 || max > (fd.lenkind == PG_ISO_LL ? 99 : 999))
		return pg_error(PG_EFORMAT, "fielddef", "line %d: maximum '%s' out of range",
				lineno, tok[4]);
	fd.max = (uint16_t)max;
	for (int t = 5; t < nt; t++) {
		if (strncmp(tok[t], "pad=", 4) == 0) {
			if (parse_pad(tok[t] + 4, &fd.pad) < 0)
				return pg_error(PG_EFORMAT, "fielddef",
						"line %d: pad '%s' (default, "
						"left0, right0, rightF)",
						lineno, tok[t] + 4);
		} else if (t == nt - 1) {
			snprintf(fd.name, sizeof(fd.name), "%s", tok[t]);
		} else {
			return pg_error(PG_EFORMAT, "fielddef", "line %d: '%s' before the name",
					lineno, tok[t]);
		}
	}
	d->f[f] = fd;
	return 0;
}

/* A "KEYWORD VALUE" line (dialect, drop, version, base, mti, numeric,
 * length, bitmap) into d; *based: a setting came before (base must be first). */
static int
parse_setting_line(struct pg_iso_dialect *d, char **tok, int nt, int lineno, int *based)
{
	if (nt != 2)
		return pg_error(PG_EFORMAT, "fielddef", "line %d: '%s' takes one value", lineno,
				tok[0]);
	if (strcmp(tok[0], "dialect") == 0) {
		snprintf(d->name, sizeof(d->name), "%s", tok[1]);
		return 0; /* a name does not count as the first setting */
	} else if (strcmp(tok[0], "drop") == 0) {
		char *end;
		long f = strtol(tok[1], &end, 10);

		if (*end || f < 2 || f > 128)
			return pg_error(PG_EFORMAT, "fielddef", "line %d: drop '%s' not 2..128",
					lineno, tok[1]);
		memset(&d->f[f], 0, sizeof(d->f[f]));
		d->f[f].lenkind = PG_ISO_UNUSED;
	} else if (strcmp(tok[0], "version") == 0) {
		if (strcmp(tok[1], "any") == 0)
			d->mti_version = 0;
		else if (strlen(tok[1]) == 1 && tok[1][0] >= '0' && tok[1][0] <= '9')
			d->mti_version = tok[1][0];
		else
			return pg_error(PG_EFORMAT, "fielddef",
					"line %d: version is a digit or any", lineno);
	} else if (strcmp(tok[0], "base") == 0) {
		const struct pg_iso_dialect *b = pg_iso_dialect_builtin(tok[1]);
		char name[32];

		if (!b || *based)
			return pg_error(PG_EFORMAT, "fielddef",
					"line %d: base must be binary, ascii, iso93 or "
					"iso93-binary, once, "
					"first",
					lineno);
		memcpy(name, d->name, sizeof(name));
		*d = *b;
		memcpy(d->name, name, sizeof(name));
	} else if (strcmp(tok[0], "mti") == 0 || strcmp(tok[0], "numeric") == 0 ||
		   strcmp(tok[0], "length") == 0) {
		uint8_t enc;

		if (strcmp(tok[1], "bcd") == 0)
			enc = PG_ISO_ENC_BCD;
		else if (strcmp(tok[1], "ascii") == 0)
			enc = PG_ISO_ENC_ASCII;
		else
			return pg_error(PG_EFORMAT, "fielddef", "line %d: '%s' is bcd or ascii",
					lineno, tok[0]);
		if (tok[0][0] == 'm')
			d->mti_enc = enc;
		else if (tok[0][0] == 'n')
			d->num_enc = enc;
		else
			d->len_enc = enc;
	} else if (strcmp(tok[0], "bitmap") == 0) {
		if (strcmp(tok[1], "binary") == 0)
			d->bitmap_enc = PG_ISO_BM_BINARY;
		else if (strcmp(tok[1], "hex") == 0)
			d->bitmap_enc = PG_ISO_BM_HEX;
		else
			return pg_error(PG_EFORMAT, "fielddef", "line %d: bitmap is binary or hex",
					lineno);
	} else {
		return pg_error(PG_EFORMAT, "fielddef", "line %d: unknown keyword '%s'", lineno,
				tok[0]);
	}
	*based = 1;
	return 0;
}

/* The next line of text at *pos into line (no CR LF); 0, or PG_EFORMAT. */
static int
next_def_line(const char *text, size_t len, size_t *pos, char *line, size_t size, int lineno)
{
	size_t e = *pos, ll;

	while (e < len && text[e] != '\n')
		e++;
	ll = e - *pos;
	if (ll && text[*pos + ll - 1] == '\r')
		ll--;
	if (ll >= size)
		return pg_error(PG_EFORMAT, "fielddef", "line %d: longer than %zu", lineno,
				size - 1);
	memcpy(line, text + *pos, ll);
	line[ll] = 0;
	*pos = e + 1;
	if (memchr(line, 0, ll))
		return pg_error(PG_EFORMAT, "fielddef", "line %d: NUL byte", lineno);
	return 0;
}

int
pg_iso_dialect_parse(struct pg_iso_dialect *d, const char *text, size_t len)
{
	char line[256];
	size_t pos = 0;
	int lineno = 0, based = 0;

	memset(d, 0, sizeof(*d));
	for (int i = 0; i <= 128; i++)
		d->f[i].lenkind = PG_ISO_UNUSED;
	snprintf(d->name, sizeof(d->name), "custom");
	while (pos < len) {
		char *tok[7];
		int nt, rc;

		rc = next_def_line(text, len, &pos, line, sizeof(line), ++lineno);
		if (rc < 0)
			return rc;
		nt = tokenize(line, tok, 7);
		if (nt < 0)
			return pg_error(PG_EFORMAT, "fielddef",
					"line %d: bad quoting or extra words", lineno);
		if (nt == 0)
			continue;
		if (strcmp(tok[0], "field") == 0) {
			rc = parse_field_line(d, tok, nt, lineno);
			based = 1;
		} else {
			rc = parse_setting_line(d, tok, nt, lineno, &based);
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

int
pg_iso_dialect_load(struct pg_iso_dialect *d, const char *name_or_path)
{
	const struct pg_iso_dialect *b = pg_iso_dialect_builtin(name_or_path);
	uint8_t *text = NULL;
	size_t len = 0;
	int rc;

	if (b) {
		*d = *b;
		return 0;
	}
	if (pg_iso_dialect_shipped(name_or_path)) {
		const char *t = pg_iso_dialect_shipped(name_or_path);

		return pg_iso_dialect_parse(d, t, strlen(t));
	}
	rc = pg_read_file(name_or_path, 1 << 20, &text, &len);
	if (rc < 0)
		return pg_error(rc, "fielddef", "dialect '%s' is not one of %s nor a readable file",
				name_or_path, pg_iso_dialect_names());
	rc = pg_iso_dialect_parse(d, (const char *)text, len);
	free(text);
	return rc;
}
