/*
 * ISO/IEC 7816-4 APDUs: command APDUs of cases 1-4 in short and extended
 * length, logical channels 0-19 in CLA (first and further interindustry
 * classes, clause 5.4.1), response APDUs and status words with meanings.
 */
#ifndef PAYGUARD_APDU_H
#define PAYGUARD_APDU_H

#include <stddef.h>
#include <stdint.h>

/* Largest APDUs anything in payguard handles (extended length). */
#define PG_APDU_MAX_C 65544u /* 4 header + 3 Lc + 65535 data + 2 Le */
#define PG_APDU_MAX_R 65538u /* 65536 data + SW1 SW2 */

enum pg_apdu_case {
	PG_APDU_CASE1 = 1, /* no data, no Le */
	PG_APDU_CASE2S,	   /* Le only, short */
	PG_APDU_CASE3S,	   /* Lc + data, short */
	PG_APDU_CASE4S,	   /* Lc + data + Le, short */
	PG_APDU_CASE2E,	   /* Le only, extended */
	PG_APDU_CASE3E,	   /* Lc + data, extended */
	PG_APDU_CASE4E,	   /* Lc + data + Le, extended */
};

/* A parsed command APDU; `data` points into the parsed buffer. */
struct pg_capdu {
	uint8_t cla, ins, p1, p2;
	const uint8_t *data;
	size_t lc;  /* data length (Nc) */
	size_t le;  /* Ne: expected response bytes (0 = none; 256/65536 for "00"/"0000") */
	int has_le; /* Le field present */
	enum pg_apdu_case apdu_case;
};

/* Parses a C-APDU strictly per ISO 7816-4 5.1; PG_EFORMAT/PG_ETRUNC with a detail on error. */
int pg_capdu_parse(struct pg_capdu *c, const uint8_t *p, size_t n);
/*
 * Encodes; chooses short form when Nc <= 255 and Ne <= 256, extended
 * otherwise (or always when force_extended). Returns the length or PG_ETOOBIG.
 */
int pg_capdu_encode(const struct pg_capdu *c, int force_extended, uint8_t *out, size_t outlen);

/* Logical channel from CLA (0-19), or PG_EINVAL for a proprietary class. */
int pg_cla_channel(uint8_t cla);
/* CLA with the channel set (keeps secure-messaging and chaining bits); PG_ERANGE past 19. */
int pg_cla_set_channel(uint8_t cla, int channel);
/* 1 if CLA is interindustry (bit 8 clear), 0 if proprietary (bit 8 set). */
int pg_cla_is_interindustry(uint8_t cla);

static inline uint16_t
pg_rapdu_sw(const uint8_t *r, size_t n)
{
	return n >= 2 ? (uint16_t)(r[n - 2] << 8 | r[n - 1]) : 0;
}

/* Meaning of a status word ("6A82: file or application not found"); never NULL. */
const char *pg_sw_meaning(uint16_t sw);

#define PG_SW_OK		    0x9000
#define PG_SW_BYTES_REMAINING(n)    (0x6100 | ((n)&0xff))
#define PG_SW_WRONG_LENGTH	    0x6700
#define PG_SW_SECURITY_STATUS	    0x6982
#define PG_SW_AUTH_BLOCKED	    0x6983
#define PG_SW_CONDITIONS	    0x6985
#define PG_SW_WRONG_DATA	    0x6A80
#define PG_SW_FUNC_NOT_SUPPORTED    0x6A81
#define PG_SW_NOT_FOUND		    0x6A82
#define PG_SW_RECORD_NOT_FOUND	    0x6A83
#define PG_SW_NOT_ENOUGH_MEMORY	    0x6A84
#define PG_SW_INCORRECT_P1P2	    0x6A86
#define PG_SW_REF_DATA_NOT_FOUND    0x6A88
#define PG_SW_WRONG_LE(n)	    (0x6C00 | ((n)&0xff))
#define PG_SW_INS_NOT_SUPPORTED	    0x6D00
#define PG_SW_CLA_NOT_SUPPORTED	    0x6E00
#define PG_SW_UNKNOWN		    0x6F00
#define PG_SW_CHANNEL_NOT_SUPPORTED 0x6881
#define PG_SW_SM_NOT_SUPPORTED	    0x6882

#endif
