/*
 * ISO/IEC 7816-3:2006 clause 8 Answer-to-Reset: TS, T0, the interface bytes
 * TAi/TBi/TCi/TDi level by level (8.2.3), historical bytes, TCK (8.2.5), and
 * the T=1 parameters of 11.4 (IFSC in TA3, BWI/CWI in TB3, redundancy code in
 * TC3). Input is outside bytes: every index is checked against n and 33.
 */
#include "atr.h"

#include "payguard/error.h"
#include "payguard/link.h"
#include "payguard/log.h"

#include <string.h>

/* Number of set bits among the TA/TB/TC/TD presence bits (high nibble). */
static size_t
ybits(uint8_t y)
{
	return (size_t)(((y >> 4) & 1) + ((y >> 5) & 1) + ((y >> 6) & 1) + ((y >> 7) & 1));
}

int
pgi_atr_length(const uint8_t *p, size_t n)
{
	size_t i = 1, k;
	int tck = 0;
	uint8_t y;

	if (n < 1)
		return 2;
	if (p[0] != 0x3B && p[0] != 0x3F)
		return pg_error(PG_EFORMAT, "atr", "TS %02X is neither 3B nor 3F", p[0]);
	if (n < 2)
		return 2;
	y = p[1];
	k = p[1] & 0x0F;
	i = 2;
	/* Walk the levels: each Y nibble says which interface bytes follow. */
	for (;;) {
		size_t cnt = ybits(y);

		if (i + cnt > PG_ATR_MAX)
			return pg_error(PG_EFORMAT, "atr", "interface bytes run past 33 bytes");
		if (!(y & 0x80)) {
			i += cnt;
			break;
		}
		/* TD is the last of this level's bytes. */
		if (i + cnt > n)
			return (int)(i + cnt);
		{
			uint8_t td = p[i + cnt - 1];

			if ((td & 0x0F) != 0)
				tck = 1;
			y = td;
		}
		i += cnt;
	}
	i += k + (size_t)tck;
	if (i > PG_ATR_MAX)
		return pg_error(PG_EFORMAT, "atr", "ATR of %zu bytes exceeds 33", i);
	return (int)i;
}

int
pgi_atr_parse(struct pg_atr *a, const uint8_t *p, size_t n)
{
	int len;
	size_t i, level = 0;
	uint8_t y;
	int t1_level_seen = 0, prev_t = -1;

	memset(a, 0, sizeof(*a));
	a->ifsc = 32;
	a->bwi = 4;
	a->cwi = 13;
	a->wi = 10;
	if (n > PG_ATR_MAX)
		return pg_error(PG_EFORMAT, "atr", "ATR of %zu bytes exceeds 33", n);
	len = pgi_atr_length(p, n);
	if (len < 0)
		return len;
	if ((size_t)len > n)
		return pg_error(PG_ETRUNC, "atr", "ATR needs %d bytes, got %zu", len, n);
	if ((size_t)len < n)
		return pg_error(PG_EFORMAT, "atr", "%zu bytes after a %d-byte ATR", n - (size_t)len,
				len);
	a->ts = p[0];
	a->t0 = p[1];
	a->len = n;
	a->hist_len = p[1] & 0x0F;
	y = p[1];
	i = 2;
	/* pgi_atr_length() has bounded every index below by n. */
	for (level = 0; level < PG_ATR_LEVELS; level++) {
		a->present[level] = y & 0xF0;
		if (y & 0x10)
			a->ta[level] = p[i++];
		if (y & 0x20)
			a->tb[level] = p[i++];
		if (y & 0x40)
			a->tc[level] = p[i++];
		/*
		 * T=1 specific bytes: the first TAi/TBi/TCi (i >= 3) following a
		 * TD(i-1) that indicates T=1 (7816-3 11.4).
		 */
		if (level >= 2 && prev_t == 1 && !t1_level_seen) {
			t1_level_seen = 1;
			if (y & 0x10) {
				if (a->ta[level] == 0x00 || a->ta[level] == 0xFF)
					return pg_error(PG_EFORMAT, "atr",
							"IFSC %02X in TA%zu is RFU", a->ta[level],
							level + 1);
				a->ifsc = a->ta[level];
			}
			if (y & 0x20) {
				a->bwi = a->tb[level] >> 4;
				a->cwi = a->tb[level] & 0x0F;
				if (a->bwi > 9)
					return pg_error(PG_EFORMAT, "atr", "BWI %d in TB%zu is RFU",
							a->bwi, level + 1);
			}
			if (y & 0x40)
				a->crc = a->tc[level] & 1;
		}
		if (level == 1 && (y & 0x40))
			a->wi = a->tc[1] ? a->tc[1] : 10;
		if (!(y & 0x80))
			break;
		a->td[level] = p[i++];
		y = a->td[level];
		prev_t = y & 0x0F;
		if (level == 0)
			a->first_proto = prev_t;
		/* T=15 is not a protocol but global interface bytes. */
		if (prev_t != 15)
			a->protocols |= 1u << prev_t;
	}
	if (level == PG_ATR_LEVELS)
		return pg_error(PG_EFORMAT, "atr", "more than %d levels of interface bytes",
				PG_ATR_LEVELS);
	if (!(a->present[0] & 0x80))
		a->protocols = 1u; /* no TD1: T=0 only */
	memcpy(a->hist, p + i, a->hist_len);
	i += a->hist_len;
	if (i < n) {
		uint8_t x = 0;

		a->has_tck = 1;
		for (size_t j = 1; j < n; j++)
			x ^= p[j];
		if (x != 0)
			return pg_error(PG_ECORRUPT, "atr", "TCK check fails (XOR %02X)", x);
	}
	return 0;
}

/* COMPACT-TLV objects (7816-4 5.2.2: tag in the high nibble, length in the low) filling n bytes. */
static int
compact_tlv_check(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t len = p[i] & 0x0F;

		if (len > n - i - 1)
			return pg_error(
			    PG_EFORMAT, "atr",
			    "historical byte %zu: COMPACT-TLV object %02X needs %zu bytes, "
			    "%zu left",
			    i + 1, p[i], len, n - i - 1);
		i += 1 + len;
	}
	return 0;
}

int
pgi_atr_hist_check(const uint8_t *h, size_t n)
{
	if (n == 0)
		return 0;
	switch (h[0]) {
	case 0x00:
		if (n < 4)
			return pg_error(PG_EFORMAT, "atr",
					"category 00 historical bytes need a 3-byte status "
					"indicator, have %zu bytes",
					n - 1);
		return compact_tlv_check(h + 1, n - 4);
	case 0x80:
		return compact_tlv_check(h + 1, n - 1);
	case 0x10:
		return n == 2 ? 0
			      : pg_error(PG_EFORMAT, "atr",
					 "category 10 takes one DIR data reference byte, not %zu",
					 n - 1);
	default:
		if (h[0] > 0x80 && h[0] <= 0x8F)
			return pg_error(PG_EFORMAT, "atr",
					"historical bytes category %02X is reserved", h[0]);
		return 0; /* proprietary */
	}
}

int
pgi_atr_check(const uint8_t *p, size_t n)
{
	struct pg_atr a;
	int rc, need = pgi_atr_length(p, n);

	if (need < 0)
		return need;
	if ((size_t)need != n)
		return pg_error((size_t)need > n ? PG_ETRUNC : PG_EFORMAT, "atr",
				"ATR of %zu bytes: its T0 and TD bytes announce %d", n, need);
	rc = pgi_atr_parse(&a, p, n);
	if (rc < 0)
		return rc;
	if ((a.protocols & ~1u) && !a.has_tck)
		return pg_error(PG_EFORMAT, "atr",
				"no TCK, but a protocol other than T=0 is offered");
	return pgi_atr_hist_check(a.hist, a.hist_len);
}

int
pgi_atr_build(uint8_t *out, size_t cap, int proto, uint16_t ifsc, int bwi, int cwi, int crc,
	      const uint8_t *hist, size_t hist_len)
{
	size_t i = 0;
	uint8_t x = 0;

	if (hist_len > 15 || cap < PG_ATR_MAX || (proto != 0 && proto != 1) || ifsc < 1 ||
	    ifsc > 254 || bwi < 0 || bwi > 9 || cwi < 0 || cwi > 15)
		return pg_error(PG_EINVAL, "atr", "cannot build an ATR from these parameters");
	out[i++] = 0x3B;
	if (proto == 0) {
		out[i++] = (uint8_t)hist_len;
		memcpy(out + i, hist, hist_len);
		return (int)(i + hist_len);
	}
	out[i++] = (uint8_t)(0x80 | hist_len);	 /* TD1 present */
	out[i++] = 0x81;			 /* TD2 present, T=1 */
	out[i++] = (uint8_t)(crc ? 0x71 : 0x31); /* TA3, TB3 (, TC3) present, T=1 */
	out[i++] = (uint8_t)ifsc;
	out[i++] = (uint8_t)(bwi << 4 | cwi);
	if (crc)
		out[i++] = 0x01;
	memcpy(out + i, hist, hist_len);
	i += hist_len;
	for (size_t j = 1; j < i; j++)
		x ^= out[j];
	out[i++] = x;
	return (int)i;
}

int
pgi_atr_build_for_card(uint8_t *out, size_t cap, const struct pg_card *card, int proto,
		       uint16_t ifsc, int bwi, int cwi, int crc)
{
	/* Category 80, card issuer's data (COMPACT-TLV tag 5): "payguard". */
	static const uint8_t dflt_hist[] = {0x80, 0x58, 'p', 'a', 'y', 'g', 'u', 'a', 'r', 'd'};
	uint8_t catr[PG_ATR_MAX];
	size_t catrlen = sizeof(catr);
	const uint8_t *hist = dflt_hist;
	size_t hlen = sizeof(dflt_hist);
	struct pg_atr a;

	if (card->atr && card->atr(card->ctx, catr, &catrlen) == 0 &&
	    pgi_atr_parse(&a, catr, catrlen) == 0) {
		hist = a.hist;
		hlen = a.hist_len;
	}
	return pgi_atr_build(out, cap, proto, ifsc, bwi, cwi, crc, hist, hlen);
}
