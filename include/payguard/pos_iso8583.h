/*
 * ISO 8583:1987 message codec for terminal traffic (seed 4: the terminal uploads
 * its information with each transaction). Table-driven: a dialect says how the
 * MTI, numerics, lengths and bitmap are encoded and holds the 128 field
 * definitions; two built-in dialects ("binary", "ascii") plus definition files.
 * Values are kept in canonical form: digits for n/z, text for a/an/ans, raw
 * bytes for b. Every decode error names the field it happened in.
 */
#ifndef PAYGUARD_POS_ISO8583_H
#define PAYGUARD_POS_ISO8583_H

#include "payguard/buf.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/*
 * XN is x+n: a sign letter (C credit, D debit) then digits; the digits are BCD
 * in a BCD dialect, the sign always one ASCII byte (jPOS IFB_AMOUNT). ANP is
 * an plus the pad characters '*' and '#' (npm iso_8583's fields 37 and 38).
 */
enum pg_iso_type {
	PG_ISO_N,
	PG_ISO_A,
	PG_ISO_AN,
	PG_ISO_ANS,
	PG_ISO_B,
	PG_ISO_Z,
	PG_ISO_XN,
	PG_ISO_ANP,
	PG_ISO_NTYPES
};
/*
 * Where an odd number of BCD digits puts its pad nibble: DEFAULT is the usual
 * one (n right-justified after a leading 0, z left-justified before a
 * trailing F); RIGHT0 / RIGHTF left-justify the digits and pad at the end
 * with 0 / F (jPOS IFB_LLNUM with pad=false is RIGHT0).
 */
enum pg_iso_pad { PG_ISO_PAD_DEFAULT, PG_ISO_PAD_LEFT0, PG_ISO_PAD_RIGHT0, PG_ISO_PAD_RIGHTF };
enum pg_iso_lenkind { PG_ISO_FIXED, PG_ISO_LL, PG_ISO_LLL, PG_ISO_UNUSED };
enum pg_iso_enc { PG_ISO_ENC_BCD, PG_ISO_ENC_ASCII };
enum pg_iso_bm { PG_ISO_BM_BINARY, PG_ISO_BM_HEX };

/* Largest message body (after framing) a decoder accepts by default. */
#define PG_ISO_MAX_MSG 8192

struct pg_iso_fdef {
	uint8_t type;	 /* enum pg_iso_type */
	uint8_t lenkind; /* enum pg_iso_lenkind; UNUSED = not defined */
	uint16_t max;	 /* fixed length or maximum: digits (n, z), chars, or bytes (b) */
	uint8_t pad;	 /* enum pg_iso_pad: BCD n/z/x+n with an odd digit count */
	char name[44];
};

struct pg_iso_dialect {
	char name[32];
	uint8_t mti_enc, num_enc, len_enc, bitmap_enc;
	char mti_version; /* '0' (1987), '1' (1993): the MTI's first digit must be it; 0 any */
	struct pg_iso_fdef f[129]; /* f[2..128]; f[0] and f[1] unused */
};

/*
 * Built-in dialects by name: "binary", "ascii" (ISO 8583:1987 table),
 * "iso93", "iso93-binary" (ISO 8583:1993 table, MTI 1xxx); NULL if unknown.
 */
const struct pg_iso_dialect *pg_iso_dialect_builtin(const char *name);
/*
 * The definition-file text of a dialect shipped with payguard (src/pos/dialects/
 * NAME.def, compiled in: "jpos-iso87b", "npm-iso8583"); NULL if unknown.
 */
const char *pg_iso_dialect_shipped(const char *name);
/* Every name --dialect takes, space-separated (built-in, then shipped). */
const char *pg_iso_dialect_names(void);
/* The definition-file name of a type ("n", "x+n", ...). */
const char *pg_iso_type_name(int type);
/*
 * Parses a field-definition file (format in docs/pos.md) into d.
 * PG_EFORMAT with a detail naming the line on any error.
 */
int pg_iso_dialect_parse(struct pg_iso_dialect *d, const char *text, size_t len);
/* A built-in name, a shipped name or, failing those, a definition file path. */
int pg_iso_dialect_load(struct pg_iso_dialect *d, const char *name_or_path);

/* A message: presence bitmap plus canonical values in an arena. */
#define PG_ISO_ARENA (2 * PG_ISO_MAX_MSG)
struct pg_iso_msg {
	char mti[5];
	uint8_t present[17]; /* bit i (1..128) set when field i is present */
	uint16_t off[129];
	uint16_t len[129];
	size_t used;
	uint8_t arena[PG_ISO_ARENA];
};

void pg_iso_msg_init(struct pg_iso_msg *m);
static inline int
pg_iso_has(const struct pg_iso_msg *m, int f)
{
	return f >= 1 && f <= 128 && (m->present[f >> 3] >> (f & 7)) & 1;
}
static inline const uint8_t *
pg_iso_get(const struct pg_iso_msg *m, int f, size_t *len)
{
	*len = m->len[f];
	return m->arena + m->off[f];
}
/* Copies a field as a NUL-terminated string (b fields as uppercase hex). */
int pg_iso_get_str(const struct pg_iso_dialect *d, const struct pg_iso_msg *m, int f, char *out,
		   size_t outlen);
/* Sets a field's canonical value (raw bytes for b). No validation until pack. */
int pg_iso_set(struct pg_iso_msg *m, int f, const void *v, size_t len);
int pg_iso_set_str(struct pg_iso_msg *m, int f, const char *s);
void pg_iso_unset(struct pg_iso_msg *m, int f);
int pg_iso_set_mti(struct pg_iso_msg *m, const char *mti);

/* Strict decode of one message body (no framing). */
int pg_iso_unpack(const struct pg_iso_dialect *d, const uint8_t *p, size_t n, struct pg_iso_msg *m);
/* Validates and appends the encoded message to out. */
int pg_iso_pack(const struct pg_iso_dialect *d, const struct pg_iso_msg *m, struct pg_buf *out);

/* {"0": mti, "<n>": value ...}; b fields as hex (the npm iso_8583 shape). */
json_t *pg_iso_to_json(const struct pg_iso_dialect *d, const struct pg_iso_msg *m);
/* The reverse; keys other than field numbers are ignored. */
int pg_iso_from_json(const struct pg_iso_dialect *d, json_t *obj, struct pg_iso_msg *m);

/* Framings: a length prefix, then an optional 5-byte TPDU, then the message. */
enum pg_iso_framing_kind {
	PG_FRAME_NONE,	 /* bare message (files, hex on the command line) */
	PG_FRAME_BIN2,	 /* 2-byte big-endian binary length */
	PG_FRAME_BCD2,	 /* 2-byte BCD length (0000..9999) */
	PG_FRAME_ASCII4, /* 4 ASCII digits */
	PG_FRAME_BIN4,	 /* 4-byte big-endian binary length */
};
struct pg_iso_framing {
	uint8_t kind;
	uint8_t tpdu; /* 1: a 5-byte TPDU follows the length and counts in it */
};
/* Parses "bin2", "bcd2", "ascii4", "bin4", "none", each with optional "+tpdu". */
int pg_iso_framing_parse(struct pg_iso_framing *fr, const char *s);
const char *pg_iso_framing_name(const struct pg_iso_framing *fr, char out[24]);
/*
 * Looks for one frame at p. Returns 1 and sets *hdr (prefix + TPDU bytes) and
 * *body when a whole frame is there; 0 when more bytes are needed; PG_ETOOBIG
 * when the announced length exceeds max; PG_EFORMAT for a bad prefix or TPDU.
 */
int pg_iso_frame_find(const struct pg_iso_framing *fr, const uint8_t *p, size_t n, size_t max,
		      size_t *hdr, size_t *body);
/* Appends prefix (+ TPDU, when the framing has one) + body to out. */
int pg_iso_frame_wrap(const struct pg_iso_framing *fr, const uint8_t tpdu[5], const uint8_t *body,
		      size_t len, struct pg_buf *out);

#endif
