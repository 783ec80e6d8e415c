/*
 * BER-TLV per ISO/IEC 7816-4:2020 clause 6.3 (tags of up to 4 bytes, lengths
 * in 1-5 bytes) with a depth limit for constructed objects. Only '00' is
 * skipped as padding: 7816-4 also allows 'FF', but GlobalPlatform uses FF as
 * the first byte of real tags (FF40 access rules, FF60...), which matter more.
 */
#include "payguard/tlv.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <string.h>

int
pg_tlv_next(struct pg_tlv *t, const uint8_t *p, size_t n)
{
	size_t i = 0, len;
	uint32_t tag;

	memset(t, 0, sizeof(*t));
	while (i < n && p[i] == 0x00)
		i++;
	if (i == n)
		return 0;
	tag = p[i];
	t->constructed = (p[i] & 0x20) != 0;
	if ((p[i++] & 0x1F) == 0x1F) {
		/* Subsequent tag bytes: b8 set means another follows; at most 3 more. */
		int k = 0;

		do {
			if (i >= n)
				return pg_error(PG_ETRUNC, "tlv", "tag truncated");
			if (++k > 3)
				return pg_error(PG_EFORMAT, "tlv", "tag longer than 4 bytes");
			tag = tag << 8 | p[i];
		} while (p[i++] & 0x80);
	}
	if (i >= n)
		return pg_error(PG_ETRUNC, "tlv", "length missing after tag %X", tag);
	len = p[i++];
	if (len == 0x80)
		return pg_error(PG_EFORMAT, "tlv", "indefinite length is not allowed (tag %X)",
				tag);
	if (len > 0x80) {
		size_t nb = len & 0x7F;

		if (nb > 4)
			return pg_error(PG_EFORMAT, "tlv", "length of %zu bytes (tag %X)", nb, tag);
		if (i + nb > n)
			return pg_error(PG_ETRUNC, "tlv", "length truncated (tag %X)", tag);
		len = 0;
		while (nb--)
			len = len << 8 | p[i++];
	}
	if (len > n - i)
		return pg_error(PG_ETRUNC, "tlv", "value of tag %X needs %zu bytes, %zu left", tag,
				len, n - i);
	t->tag = tag;
	t->val = p + i;
	t->len = len;
	t->hdr_len = i;
	return (int)(i + len);
}

static int
find(struct pg_tlv *out, const uint8_t *p, size_t n, uint32_t tag, int recursive, int depth)
{
	if (depth > PG_TLV_MAX_DEPTH)
		return pg_error(PG_EFORMAT, "tlv", "nesting deeper than %d", PG_TLV_MAX_DEPTH);
	while (n) {
		struct pg_tlv t;
		int r = pg_tlv_next(&t, p, n);

		if (r <= 0)
			return r;
		if (t.tag == tag) {
			*out = t;
			return 1;
		}
		if (recursive && t.constructed) {
			int f = find(out, t.val, t.len, tag, recursive, depth + 1);

			if (f != 0)
				return f;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

int
pg_tlv_find(struct pg_tlv *out, const uint8_t *p, size_t n, uint32_t tag, int recursive)
{
	return find(out, p, n, tag, recursive, 0);
}

static int
validate(const uint8_t *p, size_t n, int depth)
{
	if (depth > PG_TLV_MAX_DEPTH)
		return pg_error(PG_EFORMAT, "tlv", "nesting deeper than %d", PG_TLV_MAX_DEPTH);
	while (n) {
		struct pg_tlv t;
		int r = pg_tlv_next(&t, p, n);

		if (r < 0)
			return r;
		if (r == 0)
			break;
		if (t.constructed) {
			int v = validate(t.val, t.len, depth + 1);

			if (v < 0)
				return v;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

int
pg_tlv_validate(const uint8_t *p, size_t n)
{
	return validate(p, n, 0);
}

size_t
pg_tlv_tag_size(uint32_t tag)
{
	if (tag > 0xFFFFFF)
		return 4;
	if (tag > 0xFFFF)
		return 3;
	if (tag > 0xFF)
		return 2;
	return 1;
}

static size_t
len_size(size_t len)
{
	if (len < 0x80)
		return 1;
	if (len <= 0xFF)
		return 2;
	if (len <= 0xFFFF)
		return 3;
	if (len <= 0xFFFFFF)
		return 4;
	return 5;
}

static void
put_len(uint8_t *o, size_t len)
{
	size_t ls = len_size(len);

	if (ls == 1) {
		o[0] = (uint8_t)len;
		return;
	}
	o[0] = (uint8_t)(0x80 | (ls - 1));
	for (size_t i = 1; i < ls; i++)
		o[i] = (uint8_t)(len >> (8 * (ls - 1 - i)));
}

static int
put_tag(struct pg_buf *b, uint32_t tag)
{
	size_t ts = pg_tlv_tag_size(tag);
	uint8_t t[4];

	for (size_t i = 0; i < ts; i++)
		t[i] = (uint8_t)(tag >> (8 * (ts - 1 - i)));
	return pg_buf_append(b, t, ts);
}

int
pg_tlv_append(struct pg_buf *b, uint32_t tag, const void *val, size_t len)
{
	uint8_t l[5];
	int rc;

	if (len > 0xFFFFFFFFu)
		return PG_ERANGE;
	rc = put_tag(b, tag);
	if (rc < 0)
		return rc;
	put_len(l, len);
	rc = pg_buf_append(b, l, len_size(len));
	if (rc < 0)
		return rc;
	return pg_buf_append(b, val, len);
}

int
pg_tlv_open(struct pg_buf *b, uint32_t tag, size_t *mark)
{
	int rc = put_tag(b, tag);

	if (rc < 0)
		return rc;
	*mark = b->len;
	/* One length byte reserved; pg_tlv_close() widens it if needed. */
	return pg_buf_append_byte(b, 0);
}

int
pg_tlv_close(struct pg_buf *b, size_t mark)
{
	size_t len = b->len - mark - 1;
	size_t ls = len_size(len);
	int rc;

	if (ls > 1) {
		rc = pg_buf_reserve(b, ls - 1);
		if (rc < 0)
			return rc;
		memmove(b->data + mark + ls, b->data + mark + 1, len);
		b->len += ls - 1;
	}
	put_len(b->data + mark, len);
	return 0;
}
