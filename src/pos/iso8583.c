/*
 * ISO 8583 codec: built-in ISO 8583:1987 and ISO 8583:1993 field tables, the
 * binary (BCD) and ASCII dialects of each, strict unpack and validating pack.
 * Seed 4: the terminal's transaction message carries its identity (fields
 * 41/42) and cell data (62). The 1993 table follows ISO 8583:1993's data
 * elements as jPOS's ISO93A/ISO93B packagers lay them out.
 */
#include "payguard/pos_iso8583.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N  PG_ISO_N
#define A  PG_ISO_A
#define AN PG_ISO_AN
#define S  PG_ISO_ANS
#define B  PG_ISO_B
#define Z  PG_ISO_Z
#define FX PG_ISO_FIXED
#define L2 PG_ISO_LL
#define L3 PG_ISO_LLL
#define XN PG_ISO_XN
#define NP PG_ISO_ANP

/* A data element: its type, length kind, maximum length and name. */
struct iso_de {
	uint8_t type, lenkind;
	uint16_t max;
	const char *name;
};

/* clang-format off */
/* A data element ISO 8583:1987 and ISO 8583:1993 define alike. */
#define BOTH(t, l, m, name) {{t, l, m, name}, {t, l, m, name}}
#define NONE {0}

/*
 * The data elements of both versions, one row each: [i][0] as ISO 8583:1987
 * defines element i (x+n fields are kept as ans: sign letter + digits),
 * [i][1] as ISO 8583:1993 does (jPOS's ISO93A/ISO93B layout); BOTH where
 * they agree, NONE where a version leaves the element to fill_iso's
 * reserved ranges.
 */
static const struct iso_de iso_des[129][2] = {
    [2] = BOTH(N, L2, 19, "Primary account number"),
    [3] = BOTH(N, FX, 6, "Processing code"),
    [4] = BOTH(N, FX, 12, "Amount, transaction"),
    [5] = {{N, FX, 12, "Amount, settlement"}, {N, FX, 12, "Amount, reconciliation"}},
    [6] = BOTH(N, FX, 12, "Amount, cardholder billing"),
    [7] = {{N, FX, 10, "Transmission date and time"}, {N, FX, 10, "Date and time, transmission"}},
    [8] = BOTH(N, FX, 8, "Amount, cardholder billing fee"),
    [9] = {{N, FX, 8, "Conversion rate, settlement"},
	   {N, FX, 8, "Conversion rate, reconciliation"}},
    [10] = BOTH(N, FX, 8, "Conversion rate, cardholder billing"),
    [11] = {{N, FX, 6, "System trace audit number"}, {N, FX, 6, "Systems trace audit number"}},
    [12] = {{N, FX, 6, "Time, local transaction"}, {N, FX, 12, "Date and time, local transaction"}},
    [13] = {{N, FX, 4, "Date, local transaction"}, {N, FX, 4, "Date, effective"}},
    [14] = BOTH(N, FX, 4, "Date, expiration"),
    [15] = {{N, FX, 4, "Date, settlement"}, {N, FX, 6, "Date, settlement"}},
    [16] = BOTH(N, FX, 4, "Date, conversion"),
    [17] = BOTH(N, FX, 4, "Date, capture"),
    [18] = BOTH(N, FX, 4, "Merchant type"),
    [19] = {{N, FX, 3, "Acquiring institution country code"},
	   {N, FX, 3, "Country code, acquiring institution"}},
    [20] = {{N, FX, 3, "PAN extended, country code"},
	   {N, FX, 3, "Country code, primary account number"}},
    [21] = {{N, FX, 3, "Forwarding institution country code"},
	   {N, FX, 3, "Country code, forwarding institution"}},
    [22] = {{N, FX, 3, "Point of service entry mode"}, {AN, FX, 12, "Point of service data code"}},
    [23] = BOTH(N, FX, 3, "Card sequence number"),
    [24] = {{N, FX, 3, "Network international identifier"}, {N, FX, 3, "Function code"}},
    [25] = {{N, FX, 2, "Point of service condition code"}, {N, FX, 4, "Message reason code"}},
    [26] = {{N, FX, 2, "Point of service capture code"}, {N, FX, 4, "Card acceptor business code"}},
    [27] = {{N, FX, 1, "Authorizing identification response length"},
	   {N, FX, 1, "Approval code length"}},
    [28] = {{S, FX, 9, "Amount, transaction fee"}, {N, FX, 6, "Date, reconciliation"}},
    [29] = {{S, FX, 9, "Amount, settlement fee"}, {N, FX, 3, "Reconciliation indicator"}},
    [30] = {{S, FX, 9, "Amount, transaction processing fee"}, {N, FX, 24, "Amounts, original"}},
    [31] = {{S, FX, 9, "Amount, settlement processing fee"},
	   {S, L2, 99, "Acquirer reference data"}},
    [32] = BOTH(N, L2, 11, "Acquiring institution identification code"),
    [33] = BOTH(N, L2, 11, "Forwarding institution identification code"),
    [34] = BOTH(S, L2, 28, "Primary account number, extended"),
    [35] = BOTH(Z, L2, 37, "Track 2 data"),
    [36] = {{N, L3, 104, "Track 3 data"}, {Z, L3, 104, "Track 3 data"}},
    [37] = {{AN, FX, 12, "Retrieval reference number"}, {NP, FX, 12, "Retrieval reference number"}},
    [38] = {{AN, FX, 6, "Authorization identification response"}, {NP, FX, 6, "Approval code"}},
    [39] = {{AN, FX, 2, "Response code"}, {N, FX, 3, "Action code"}},
    [40] = {{AN, FX, 3, "Service restriction code"}, {N, FX, 3, "Service code"}},
    [41] = BOTH(S, FX, 8, "Card acceptor terminal identification"),
    [42] = BOTH(S, FX, 15, "Card acceptor identification code"),
    [43] = {{S, FX, 40, "Card acceptor name/location"}, {S, L2, 99, "Card acceptor name/location"}},
    [44] = {{S, L2, 25, "Additional response data"}, {S, L2, 99, "Additional response data"}},
    [45] = BOTH(S, L2, 76, "Track 1 data"),
    [46] = {{S, L3, 999, "Additional data - ISO"}, {S, L3, 204, "Amounts, fees"}},
    [47] = BOTH(S, L3, 999, "Additional data - national"),
    [48] = BOTH(S, L3, 999, "Additional data - private"),
    [49] = BOTH(AN, FX, 3, "Currency code, transaction"),
    [50] = {{AN, FX, 3, "Currency code, settlement"}, {AN, FX, 3, "Currency code, reconciliation"}},
    [51] = BOTH(AN, FX, 3, "Currency code, cardholder billing"),
    [52] = BOTH(B, FX, 8, "Personal identification number data"),
    [53] = {{N, FX, 16, "Security related control information"},
	   {B, L2, 48, "Security related control information"}},
    [54] = {{AN, L3, 120, "Additional amounts"}, {S, L3, 120, "Amounts, additional"}},
    [55] = {{S, L3, 999, "Reserved ISO"},
	   {B, L3, 255, "Integrated circuit card system related data"}},
    [56] = {{S, L3, 999, "Reserved ISO"}, {N, L2, 35, "Original data elements"}},
    [57] = {{S, L3, 999, "Reserved national"}, {N, FX, 3, "Authorization life cycle code"}},
    [58] = {{S, L3, 999, "Reserved national"},
	   {N, L2, 11, "Authorizing agent institution id code"}},
    [59] = {{S, L3, 999, "Reserved national"}, {S, L3, 999, "Transport data"}},
    [60] = BOTH(S, L3, 999, "Reserved national"),
    [61] = {{S, L3, 999, "Reserved private"}, {S, L3, 999, "Reserved national"}},
    [62] = {{B, L3, 999, "Reserved private: cell information TLV"},
	   {S, L3, 999, "Reserved private"}},
    [63] = BOTH(S, L3, 999, "Reserved private"),
    [64] = BOTH(B, FX, 8, "Message authentication code"),
    [65] = {{B, FX, 1, "Bitmap, extended"}, {B, FX, 8, "Reserved ISO"}},
    [66] = {{N, FX, 1, "Settlement code"}, {S, L3, 204, "Amounts, original fees"}},
    [67] = {{N, FX, 2, "Extended payment code"}, {N, FX, 2, "Extended payment data"}},
    [68] = {{N, FX, 3, "Receiving institution country code"},
	   {N, FX, 3, "Country code, receiving institution"}},
    [69] = {{N, FX, 3, "Settlement institution country code"},
	   {N, FX, 3, "Country code, settlement institution"}},
    [70] = {{N, FX, 3, "Network management information code"},
	   {N, FX, 3, "Country code, authorizing agent institution"}},
    [71] = {{N, FX, 4, "Message number"}, {N, FX, 8, "Message number"}},
    [72] = {{N, FX, 4, "Message number, last"}, {S, L3, 999, "Data record"}},
    [73] = BOTH(N, FX, 6, "Date, action"),
    [74] = BOTH(N, FX, 10, "Credits, number"),
    [75] = BOTH(N, FX, 10, "Credits, reversal number"),
    [76] = BOTH(N, FX, 10, "Debits, number"),
    [77] = BOTH(N, FX, 10, "Debits, reversal number"),
    [78] = BOTH(N, FX, 10, "Transfer, number"),
    [79] = BOTH(N, FX, 10, "Transfer, reversal number"),
    [80] = BOTH(N, FX, 10, "Inquiries, number"),
    [81] = BOTH(N, FX, 10, "Authorizations, number"),
    [82] = {{N, FX, 12, "Credits, processing fee amount"},
	   {N, FX, 10, "Inquiries, reversal number"}},
    [83] = {{N, FX, 12, "Credits, transaction fee amount"}, {N, FX, 10, "Payments, number"}},
    [84] = {{N, FX, 12, "Debits, processing fee amount"}, {N, FX, 10, "Payments, reversal number"}},
    [85] = {{N, FX, 12, "Debits, transaction fee amount"}, {N, FX, 10, "Fee collections, number"}},
    [86] = BOTH(N, FX, 16, "Credits, amount"),
    [87] = BOTH(N, FX, 16, "Credits, reversal amount"),
    [88] = BOTH(N, FX, 16, "Debits, amount"),
    [89] = BOTH(N, FX, 16, "Debits, reversal amount"),
    [90] = {{N, FX, 42, "Original data elements"}, {N, FX, 10, "Authorizations, reversal number"}},
    [91] = {{AN, FX, 1, "File update code"}, {N, FX, 3, "Country code, transaction destination"}},
    [92] = {{AN, FX, 2, "File security code"}, {N, FX, 3, "Country code, transaction originator"}},
    [93] = {{AN, FX, 5, "Response indicator"},
	   {N, L2, 11, "Transaction destination institution id"}},
    [94] = {{AN, FX, 7, "Service indicator"}, {N, L2, 11, "Transaction originator institution id"}},
    [95] = {{AN, FX, 42, "Replacement amounts"}, {S, L2, 99, "Card issuer reference data"}},
    [96] = {{B, FX, 8, "Message security code"}, {B, L3, 999, "Key management data"}},
    [97] = {{S, FX, 17, "Amount, net settlement"}, {XN, FX, 17, "Amount, net reconciliation"}},
    [98] = BOTH(S, FX, 25, "Payee"),
    [99] = {{N, L2, 11, "Settlement institution identification code"},
	   {AN, L2, 11, "Settlement institution id code"}},
    [100] = {{N, L2, 11, "Receiving institution identification code"},
	   {N, L2, 11, "Receiving institution id code"}},
    [101] = BOTH(S, L2, 17, "File name"),
    [102] = BOTH(S, L2, 28, "Account identification 1"),
    [103] = BOTH(S, L2, 28, "Account identification 2"),
    [104] = BOTH(S, L3, 100, "Transaction description"),
    [105] = {NONE,
	   {N, FX, 16, "Credits, chargeback amount"}},
    [106] = {NONE,
	   {N, FX, 16, "Debits, chargeback amount"}},
    [107] = {NONE,
	   {N, FX, 10, "Credits, chargeback number"}},
    [108] = {NONE,
	   {N, FX, 10, "Debits, chargeback number"}},
    [109] = {NONE,
	   {S, L2, 84, "Credits, fee amounts"}},
    [110] = {NONE,
	   {S, L2, 84, "Debits, fee amounts"}},
    [128] = BOTH(B, FX, 8, "Message authentication code"),
};
/* clang-format on */
#undef BOTH
#undef NONE

static struct pg_iso_dialect builtin_binary, builtin_ascii, builtin_93a, builtin_93b;
static pthread_once_t builtin_once = PTHREAD_ONCE_INIT;

/* Where each version's reserved elements start and where its national
 * and private ones start (ISO 8583:1987 and :1993 differ). */
static const struct {
	int iso, national, private;
} iso_reserved[2] = {{105, 112, 120}, {111, 116, 123}};

/* Fills d's field table with version v of iso_des (0: 1987, 1: 1993);
 * binary: jPOS's ISO93BPackager's padding of LLNUM fields (1993 only). */
static void
fill_iso(struct pg_iso_dialect *d, int v, int binary)
{
	for (int i = 0; i <= 128; i++) {
		struct pg_iso_fdef *f = &d->f[i];
		const struct iso_de *de = &iso_des[i][v];

		if (i >= 2 && de->name) {
			f->type = de->type;
			f->lenkind = de->lenkind;
			f->max = de->max;
			snprintf(f->name, sizeof(f->name), "%s", de->name);
			/* jPOS's ISO93BPackager: LLNUM digits left-justified, 0 pad at the end */
			if (binary && f->type == N && f->lenkind == L2)
				f->pad = PG_ISO_PAD_RIGHT0;
		} else if (i >= iso_reserved[v].iso && i <= 127) {
			f->type = S;
			f->lenkind = L3;
			f->max = 999;
			snprintf(f->name, sizeof(f->name), "%s",
				 i < iso_reserved[v].national  ? "Reserved ISO"
				 : i < iso_reserved[v].private ? "Reserved national"
							       : "Reserved private");
		} else {
			f->lenkind = PG_ISO_UNUSED;
		}
	}
	if (v == 1)
		d->mti_version = '1';
}

static void
builtin_init(void)
{
	fill_iso(&builtin_binary, 0, 0);
	snprintf(builtin_binary.name, sizeof(builtin_binary.name), "binary");
	builtin_binary.mti_enc = builtin_binary.num_enc = builtin_binary.len_enc = PG_ISO_ENC_BCD;
	builtin_binary.bitmap_enc = PG_ISO_BM_BINARY;
	fill_iso(&builtin_ascii, 0, 0);
	snprintf(builtin_ascii.name, sizeof(builtin_ascii.name), "ascii");
	builtin_ascii.mti_enc = builtin_ascii.num_enc = builtin_ascii.len_enc = PG_ISO_ENC_ASCII;
	builtin_ascii.bitmap_enc = PG_ISO_BM_HEX;
	fill_iso(&builtin_93a, 1, 0);
	snprintf(builtin_93a.name, sizeof(builtin_93a.name), "iso93");
	builtin_93a.mti_enc = builtin_93a.num_enc = builtin_93a.len_enc = PG_ISO_ENC_ASCII;
	builtin_93a.bitmap_enc = PG_ISO_BM_HEX;
	fill_iso(&builtin_93b, 1, 1);
	snprintf(builtin_93b.name, sizeof(builtin_93b.name), "iso93-binary");
	builtin_93b.mti_enc = builtin_93b.num_enc = builtin_93b.len_enc = PG_ISO_ENC_BCD;
	builtin_93b.bitmap_enc = PG_ISO_BM_BINARY;
}

const struct pg_iso_dialect *
pg_iso_dialect_builtin(const char *name)
{
	pthread_once(&builtin_once, builtin_init);
	if (strcmp(name, "binary") == 0)
		return &builtin_binary;
	if (strcmp(name, "ascii") == 0)
		return &builtin_ascii;
	if (strcmp(name, "iso93") == 0)
		return &builtin_93a;
	if (strcmp(name, "iso93-binary") == 0)
		return &builtin_93b;
	return NULL;
}

/* ---- messages ---- */

void
pg_iso_msg_init(struct pg_iso_msg *m)
{
	memset(m->mti, 0, sizeof(m->mti));
	memset(m->present, 0, sizeof(m->present));
	m->used = 0;
}

int
pg_iso_set(struct pg_iso_msg *m, int f, const void *v, size_t len)
{
	if (f < 2 || f > 128)
		return pg_error(PG_EINVAL, "iso8583", "field %d: no such data element", f);
	if (len > 0xffff || m->used + len > sizeof(m->arena))
		return pg_error(PG_ETOOBIG, "iso8583", "field %d: message too large", f);
	memcpy(m->arena + m->used, v, len);
	m->off[f] = (uint16_t)m->used;
	m->len[f] = (uint16_t)len;
	m->used += len;
	m->present[f >> 3] |= (uint8_t)(1u << (f & 7));
	return 0;
}

int
pg_iso_set_str(struct pg_iso_msg *m, int f, const char *s)
{
	return pg_iso_set(m, f, s, strlen(s));
}

void
pg_iso_unset(struct pg_iso_msg *m, int f)
{
	if (f >= 1 && f <= 128)
		m->present[f >> 3] &= (uint8_t) ~(1u << (f & 7));
}

int
pg_iso_set_mti(struct pg_iso_msg *m, const char *mti)
{
	if (strlen(mti) != 4 || strspn(mti, "0123456789") != 4)
		return pg_error(PG_EFORMAT, "iso8583", "MTI '%s' is not 4 digits", mti);
	memcpy(m->mti, mti, 5);
	return 0;
}

int
pg_iso_get_str(const struct pg_iso_dialect *d, const struct pg_iso_msg *m, int f, char *out,
	       size_t outlen)
{
	size_t n;
	const uint8_t *v;

	if (!pg_iso_has(m, f))
		return PG_ENOENT;
	v = pg_iso_get(m, f, &n);
	if (d->f[f].type == B) {
		if (outlen < 2 * n + 1)
			return PG_ETOOBIG;
		pg_hex_encode_upper(out, v, n, 0);
		return 0;
	}
	if (outlen < n + 1)
		return PG_ETOOBIG;
	memcpy(out, v, n);
	out[n] = 0;
	return 0;
}

/* ---- character classes ---- */

static int
char_ok(int type, uint8_t c)
{
	switch (type) {
	case N:
		return c >= '0' && c <= '9';
	case Z:
		return (c >= '0' && c <= '9') || c == '=' || c == 'D';
	case A:
		return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == ' ';
	case AN:
		return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		       c == ' ';
	case S:
		return c >= 0x20 && c <= 0x7e;
	case NP:
		return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		       c == ' ' || c == '*' || c == '#';
	default:
		return 1;
	}
}

/* x+n: C or D, then digits only */
static size_t
first_bad_xn(const uint8_t *v, size_t n)
{
	size_t i = 1;

	if (n == 0)
		return 0;
	if (v[0] != 'C' && v[0] != 'D')
		return 0;
	while (i < n && v[i] >= '0' && v[i] <= '9')
		i++;
	return i;
}

/* Index of the first character not allowed in type, or n when all are fine. */
static size_t
first_bad_char(int type, const uint8_t *v, size_t n)
{
	size_t i = 0;

	switch (type) { /* one loop per type: the check runs on every byte received */
	case N:
		while (i < n && v[i] >= '0' && v[i] <= '9')
			i++;
		return i;
	case S:
		while (i < n && v[i] >= 0x20 && v[i] <= 0x7e)
			i++;
		return i;
	case B:
		return n;
	case XN:
		return first_bad_xn(v, n);
	default:
		while (i < n && char_ok(type, v[i]))
			i++;
		return i;
	}
}

const char *
pg_iso_type_name(int type)
{
	static const char *const names[] = {"n", "a", "an", "ans", "b", "z", "x+n", "anp"};
	return type >= 0 && type < PG_ISO_NTYPES ? names[type] : "?";
}
#define type_name pg_iso_type_name

/* ---- unpack ---- */

struct rd {
	const uint8_t *p;
	size_t n, pos;
};

static int
need(struct rd *r, size_t k, int f, const char *what)
{
	if (r->n - r->pos < k)
		return pg_error(PG_ETRUNC, "iso8583", "field %d: %s truncated (need %zu, have %zu)",
				f, what, k, r->n - r->pos);
	return 0;
}

/* Reads `digits` BCD or ASCII decimal digits as a number. */
static int
read_number(struct rd *r, int enc, int digits, int f, const char *what, unsigned *val)
{
	unsigned v = 0;
	size_t bytes = enc == PG_ISO_ENC_BCD ? (size_t)(digits + 1) / 2 : (size_t)digits;
	int rc = need(r, bytes, f, what);

	if (rc < 0)
		return rc;
	for (size_t i = 0; i < bytes; i++) {
		uint8_t c = r->p[r->pos + i];

		if (enc == PG_ISO_ENC_BCD) {
			unsigned hi = c >> 4, lo = c & 15;

			if (hi > 9 || lo > 9)
				return pg_error(PG_EFORMAT, "iso8583",
						"field %d: %s byte 0x%02X is not BCD", f, what, c);
			if ((digits & 1) && i == 0 && hi != 0)
				return pg_error(PG_EFORMAT, "iso8583",
						"field %d: %s pad nibble not 0", f, what);
			v = v * 100 + hi * 10 + lo;
		} else {
			if (c < '0' || c > '9')
				return pg_error(PG_EFORMAT, "iso8583",
						"field %d: %s has non-digit 0x%02X", f, what, c);
			v = v * 10 + (c - '0');
		}
	}
	r->pos += bytes;
	*val = v;
	return 0;
}

/*
 * Where an odd digit count puts its pad nibble, and which value the pad has:
 * *lj = 1 when the digits are left-justified (pad nibble last).
 */
static unsigned
bcd_pad(int type, int pad, int *lj)
{
	switch (pad) {
	case PG_ISO_PAD_LEFT0:
		*lj = 0;
		return 0;
	case PG_ISO_PAD_RIGHT0:
		*lj = 1;
		return 0;
	case PG_ISO_PAD_RIGHTF:
		*lj = 1;
		return 0xF;
	default:
		*lj = type == Z; /* n: right-justified after a 0 nibble; z: trailing F */
		return type == Z ? 0xF : 0;
	}
}

/* len BCD digits at s (type n or z) to ASCII digits at dst. */
static int
bcd_unpack(const uint8_t *s, size_t len, int type, int pad, uint8_t *dst, int f)
{
	int lj;
	unsigned padv = bcd_pad(type, pad, &lj);
	size_t skip = (len & 1) && !lj ? 1 : 0, bytes = (len + 1) / 2, i = 0;

	/* fast path: whole bytes of two decimal digits */
	if (type == N && !lj) {
		if (skip) {
			unsigned v = s[0] & 15;

			if (v > 9)
				goto slow;
			dst[i++] = (uint8_t)('0' + v);
		}
		for (size_t k = skip; i < len; k++) {
			unsigned hi = s[k] >> 4, lo = s[k] & 15;

			if (hi > 9 || lo > 9)
				goto slow;
			dst[i++] = (uint8_t)('0' + hi);
			dst[i++] = (uint8_t)('0' + lo);
		}
	}
slow:
	for (; i < len; i++) {
		size_t nib = i + skip;
		unsigned v = (s[nib / 2] >> ((nib & 1) ? 0 : 4)) & 15;

		if (v <= 9)
			dst[i] = (uint8_t)('0' + v);
		else if (v == 0xD && type == Z)
			dst[i] = 'D';
		else
			return pg_error(PG_EFORMAT, "iso8583",
					"field %d: nibble 0x%X at digit %zu is not a digit", f, v,
					i + 1);
	}
	if (len & 1) {
		unsigned got = lj ? s[bytes - 1] & 15 : s[0] >> 4;

		if (got != padv)
			return pg_error(PG_EFORMAT, "iso8583", "field %d: bad pad nibble 0x%X", f,
					got);
	}
	return 0;
}

/* len ASCII digits (z: also D or =) at v to BCD at dst ((len + 1) / 2 bytes). */
static void
bcd_pack(const uint8_t *v, size_t len, int type, int pad, uint8_t *dst)
{
	int lj;
	unsigned padv = bcd_pad(type, pad, &lj);
	size_t bytes = (len + 1) / 2, skip = (len & 1) && !lj ? 1 : 0;

	memset(dst, 0, bytes);
	if (len & 1) {
		if (lj)
			dst[bytes - 1] = (uint8_t)padv;
		else
			dst[0] = (uint8_t)(padv << 4);
	}
	for (size_t i = 0; i < len; i++) {
		size_t nib = i + skip;
		unsigned c = v[i] == 'D' || v[i] == '=' ? 0xD : (unsigned)(v[i] - '0');

		dst[nib / 2] |= (uint8_t)(c << ((nib & 1) ? 0 : 4));
	}
}

static int
unpack_field(const struct pg_iso_dialect *d, struct rd *r, int f, struct pg_iso_msg *m)
{
	const struct pg_iso_fdef *fd = &d->f[f];
	unsigned len = fd->max;
	size_t bytes;
	int rc, bcd;
	uint8_t *dst;

	if (fd->lenkind == PG_ISO_UNUSED)
		return pg_error(PG_EFORMAT, "iso8583",
				"field %d: present in bitmap but not defined", f);
	if (fd->lenkind != PG_ISO_FIXED) {
		int ld = fd->lenkind == PG_ISO_LL ? 2 : 3;

		if (d->len_enc == PG_ISO_ENC_BCD && ld == 3)
			ld = 4; /* LLL in BCD takes two bytes, the first nibble 0 */
		rc = read_number(r, d->len_enc, ld, f, "length", &len);
		if (rc < 0)
			return rc;
		if (len > fd->max)
			return pg_error(PG_EFORMAT, "iso8583",
					"field %d: length %u exceeds maximum %u", f, len, fd->max);
	}
	bcd = (fd->type == N || fd->type == Z || fd->type == XN) && d->num_enc == PG_ISO_ENC_BCD;
	/* x+n in BCD: one ASCII sign byte, then the digits */
	bytes = !bcd ? len : fd->type == XN ? (len ? 1 + len / 2 : 0) : (len + 1) / 2;
	rc = need(r, bytes, f, "value");
	if (rc < 0)
		return rc;
	if (m->used + len > sizeof(m->arena))
		return pg_error(PG_ETOOBIG, "iso8583", "field %d: message too large", f);
	dst = m->arena + m->used;
	if (bcd && fd->type == XN && len) {
		uint8_t sign = r->p[r->pos];

		if (sign != 'C' && sign != 'D')
			return pg_error(PG_EFORMAT, "iso8583",
					"field %d: sign byte 0x%02X is not C or D", f, sign);
		dst[0] = sign;
		rc = bcd_unpack(r->p + r->pos + 1, len - 1, N, fd->pad, dst + 1, f);
		if (rc < 0)
			return rc;
	} else if (bcd) {
		rc = bcd_unpack(r->p + r->pos, len, fd->type, fd->pad, dst, f);
		if (rc < 0)
			return rc;
	} else {
		size_t bad;

		memcpy(dst, r->p + r->pos, len);
		bad = first_bad_char(fd->type, dst, len);
		if (bad < len)
			return pg_error(PG_EFORMAT, "iso8583",
					"field %d: byte 0x%02X at %zu not allowed in type %s", f,
					dst[bad], bad + 1, type_name(fd->type));
	}
	r->pos += bytes;
	m->off[f] = (uint16_t)m->used;
	m->len[f] = (uint16_t)len;
	m->used += len;
	return 0;
}

static int
hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int
read_bitmap(const struct pg_iso_dialect *d, struct rd *r, uint8_t out[8], const char *which)
{
	int rc;

	if (d->bitmap_enc == PG_ISO_BM_BINARY) {
		rc = need(r, 8, 1, which);
		if (rc < 0)
			return rc;
		memcpy(out, r->p + r->pos, 8);
		r->pos += 8;
		return 0;
	}
	rc = need(r, 16, 1, which);
	if (rc < 0)
		return rc;
	for (int i = 0; i < 8; i++) {
		int hi = hexval(r->p[r->pos + 2 * i]), lo = hexval(r->p[r->pos + 2 * i + 1]);

		if (hi < 0 || lo < 0)
			return pg_error(PG_EFORMAT, "iso8583", "field 1: %s has a non-hex digit",
					which);
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	r->pos += 16;
	return 0;
}

int
pg_iso_unpack(const struct pg_iso_dialect *d, const uint8_t *p, size_t n, struct pg_iso_msg *m)
{
	struct rd r = {p, n, 0};
	uint8_t bm[16] = {0};
	unsigned mti = 0;
	int rc, nbits = 64;

	pg_iso_msg_init(m);
	if (d->mti_enc == PG_ISO_ENC_BCD) {
		rc = read_number(&r, PG_ISO_ENC_BCD, 4, 0, "MTI", &mti);
	} else {
		rc = read_number(&r, PG_ISO_ENC_ASCII, 4, 0, "MTI", &mti);
	}
	if (rc < 0)
		return rc;
	for (int i = 3; i >= 0; i--, mti /= 10) /* no snprintf: this runs per message */
		m->mti[i] = (char)('0' + mti % 10);
	m->mti[4] = 0;
	if (d->mti_version && m->mti[0] != d->mti_version)
		return pg_error(PG_EFORMAT, "iso8583",
				"MTI %s: dialect '%s' takes version %c messages (%cxxx)", m->mti,
				d->name, d->mti_version, d->mti_version);
	rc = read_bitmap(d, &r, bm, "primary bitmap");
	if (rc < 0)
		return rc;
	if (bm[0] & 0x80) {
		rc = read_bitmap(d, &r, bm + 8, "secondary bitmap");
		if (rc < 0)
			return rc;
		nbits = 128;
	}
	/* visit set bits only: bit 1 is the secondary-bitmap flag, not a field */
	for (int w = 0; w < nbits / 64; w++) {
		uint64_t word = pg_be64(bm + 8 * w);

		if (w == 0)
			word &= ~(1ULL << 63);
		while (word) {
			int f = 64 * w + __builtin_clzll(word) + 1;

			word &= ~(1ULL << (64 - (f - 64 * w)));
			m->present[f >> 3] |= (uint8_t)(1u << (f & 7));
			rc = unpack_field(d, &r, f, m);
			if (rc < 0)
				return rc;
		}
	}
	if (r.pos != n)
		return pg_error(PG_EFORMAT, "iso8583", "%zu bytes after the last field", n - r.pos);
	return 0;
}

/* ---- pack ---- */

static int
put_number(struct pg_buf *out, int enc, int digits, unsigned v)
{
	char tmp[8];
	uint8_t b[4];

	if (digits < 1 || digits > 7)
		return PG_EINVAL;
	/* no snprintf: this runs for every variable-length field of every message */
	tmp[digits] = 0;
	for (int i = digits - 1; i >= 0; i--, v /= 10)
		tmp[i] = (char)('0' + v % 10);
	if (enc == PG_ISO_ENC_ASCII)
		return pg_buf_append(out, tmp, (size_t)digits);
	for (int i = 0; i < (digits + 1) / 2; i++) {
		int a = digits & 1 ? (i == 0 ? 0 : tmp[2 * i - 1] - '0') : tmp[2 * i] - '0';
		int c = digits & 1 ? tmp[2 * i] - '0' : tmp[2 * i + 1] - '0';

		b[i] = (uint8_t)(a << 4 | c);
	}
	return pg_buf_append(out, b, (size_t)(digits + 1) / 2);
}

static int
pack_field(const struct pg_iso_dialect *d, const struct pg_iso_msg *m, int f, struct pg_buf *out)
{
	const struct pg_iso_fdef *fd = &d->f[f];
	size_t len;
	const uint8_t *v = pg_iso_get(m, f, &len);
	int rc, bcd;

	if (fd->lenkind == PG_ISO_UNUSED)
		return pg_error(PG_EINVAL, "iso8583", "field %d: not defined in dialect '%s'", f,
				d->name);
	if (fd->lenkind == PG_ISO_FIXED ? len != fd->max : len > fd->max)
		return pg_error(PG_EINVAL, "iso8583", "field %d: length %zu, %s %u", f, len,
				fd->lenkind == PG_ISO_FIXED ? "fixed length is" : "maximum is",
				fd->max);
	if (fd->type == XN && first_bad_xn(v, len) < len)
		return pg_error(PG_EINVAL, "iso8583",
				"field %d: x+n needs C or D then digits (character %zu)", f,
				first_bad_xn(v, len) + 1);
	if (fd->type != B && fd->type != XN) {
		size_t i = first_bad_char(fd->type, v, len); /* one loop per type, as unpack */

		if (i < len)
			return pg_error(PG_EINVAL, "iso8583",
					"field %d: character 0x%02X at %zu not allowed in type %s",
					f, v[i], i + 1, type_name(fd->type));
	}
	if (fd->lenkind != PG_ISO_FIXED) {
		int ld = fd->lenkind == PG_ISO_LL ? 2 : 3;

		if (d->len_enc == PG_ISO_ENC_BCD && ld == 3)
			ld = 4;
		rc = put_number(out, d->len_enc, ld, (unsigned)len);
		if (rc < 0)
			return rc;
	}
	bcd = (fd->type == N || fd->type == Z || fd->type == XN) && d->num_enc == PG_ISO_ENC_BCD;
	if (!bcd)
		return pg_buf_append(out, v, len);
	{
		int xn = fd->type == XN && len > 0;
		size_t nd = xn ? len - 1 : len, bytes = (nd + 1) / 2 + (size_t)xn;
		uint8_t *dst;

		rc = pg_buf_reserve(out, bytes);
		if (rc < 0)
			return rc;
		dst = out->data + out->len;
		if (xn)
			*dst++ = v[0];
		bcd_pack(v + xn, nd, xn ? N : fd->type, fd->pad, dst);
		out->len += bytes;
	}
	return 0;
}

int
pg_iso_pack(const struct pg_iso_dialect *d, const struct pg_iso_msg *m, struct pg_buf *out)
{
	uint8_t bm[16] = {0};
	uint8_t fl[128]; /* the present fields, ascending */
	int rc, nbits = 64, nf = 0;
	size_t start = out->len;

	if (strlen(m->mti) != 4 || strspn(m->mti, "0123456789") != 4)
		return pg_error(PG_EINVAL, "iso8583", "MTI missing or not 4 digits");
	if (d->mti_version && m->mti[0] != d->mti_version)
		return pg_error(PG_EINVAL, "iso8583",
				"MTI %s: dialect '%s' takes version %c messages (%cxxx)", m->mti,
				d->name, d->mti_version, d->mti_version);
	/* a byte of the presence map at a time: a response has a dozen fields of 128 */
	for (int b = 0; b < 17; b++)
		for (unsigned bits = m->present[b]; bits; bits &= bits - 1) {
			int f = 8 * b + __builtin_ctz(bits);

			if (f < 2 || f > 128)
				continue;
			fl[nf++] = (uint8_t)f;
			bm[(f - 1) >> 3] |= (uint8_t)(0x80 >> ((f - 1) & 7));
			if (f > 64)
				nbits = 128;
		}
	if (nbits == 128)
		bm[0] |= 0x80;
	rc = put_number(out, d->mti_enc, 4, (unsigned)strtoul(m->mti, NULL, 10));
	for (int i = 0; rc == 0 && i < nbits / 64; i++) {
		if (d->bitmap_enc == PG_ISO_BM_BINARY) {
			rc = pg_buf_append(out, bm + 8 * i, 8);
		} else {
			char hex[17];

			pg_hex_encode_upper(hex, bm + 8 * i, 8, 0);
			rc = pg_buf_append(out, hex, 16);
		}
	}
	for (int i = 0; rc == 0 && i < nf; i++)
		rc = pack_field(d, m, fl[i], out);
	if (rc < 0)
		out->len = start;
	return rc;
}

/* ---- JSON ---- */

json_t *
pg_iso_to_json(const struct pg_iso_dialect *d, const struct pg_iso_msg *m)
{
	json_t *o = json_object();
	char key[8];

	if (!o)
		return NULL;
	json_object_set_new(o, "0", json_string(m->mti));
	for (int f = 2; f <= 128; f++) {
		size_t n;
		const uint8_t *v;

		if (!pg_iso_has(m, f))
			continue;
		v = pg_iso_get(m, f, &n);
		snprintf(key, sizeof(key), "%d", f);
		if (d->f[f].type == B) {
			char *hex = malloc(2 * n + 1);

			if (!hex)
				goto fail;
			pg_hex_encode_upper(hex, v, n, 0);
			json_object_set_new(o, key, json_string(hex));
			free(hex);
		} else {
			json_object_set_new(o, key, json_stringn((const char *)v, n));
		}
	}
	return o;
fail:
	json_decref(o);
	return NULL;
}

int
pg_iso_from_json(const struct pg_iso_dialect *d, json_t *obj, struct pg_iso_msg *m)
{
	const char *key;
	json_t *val;
	int rc;

	if (!json_is_object(obj))
		return pg_error(PG_EFORMAT, "iso8583", "message JSON must be an object");
	pg_iso_msg_init(m);
	json_object_foreach(obj, key, val)
	{
		char *end;
		long f = strtol(key, &end, 10);
		const char *s;

		if (*end || end == key)
			continue;
		if (f < 0 || f > 128 || f == 1)
			return pg_error(PG_EFORMAT, "iso8583", "key '%s' is not a data element",
					key);
		if (!json_is_string(val))
			return pg_error(PG_EFORMAT, "iso8583", "field %ld: value must be a string",
					f);
		s = json_string_value(val);
		if (f == 0) {
			rc = pg_iso_set_mti(m, s);
		} else if (d->f[f].type == B) {
			size_t hl = strlen(s);
			uint8_t tmp[PG_ISO_MAX_MSG];

			if (hl / 2 > sizeof(tmp))
				return pg_error(PG_ETOOBIG, "iso8583", "field %ld: too long", f);
			rc = pg_hex_decode(tmp, sizeof(tmp), s);
			if (rc < 0)
				return pg_error(PG_EFORMAT, "iso8583", "field %ld: bad hex", f);
			rc = pg_iso_set(m, (int)f, tmp, (size_t)rc);
		} else {
			rc = pg_iso_set(m, (int)f, s, json_string_length(val));
		}
		if (rc < 0)
			return rc;
	}
	if (!m->mti[0])
		return pg_error(PG_EFORMAT, "iso8583", "message JSON lacks the MTI (key \"0\")");
	return 0;
}
