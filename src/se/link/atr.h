/*
 * ISO/IEC 7816-3:2006 clause 8 Answer-to-Reset: a strict parser (length
 * discovery while reading, interface bytes per level, historical bytes, TCK)
 * and a builder for the ATRs the T=0 / T=1 card roles send. Private to the
 * link drivers; any driver that carries an ATR may use it.
 */
#ifndef PG_SE_LINK_ATR_H
#define PG_SE_LINK_ATR_H

#include <stddef.h>
#include <stdint.h>

#define PG_ATR_LEVELS 8 /* interface-byte levels kept (33 bytes allow at most 8) */

struct pg_atr {
	uint8_t ts, t0;
	/* Interface bytes per level i = 1..PG_ATR_LEVELS at index i-1. */
	uint8_t ta[PG_ATR_LEVELS], tb[PG_ATR_LEVELS], tc[PG_ATR_LEVELS], td[PG_ATR_LEVELS];
	uint8_t present[PG_ATR_LEVELS]; /* bits 0x10 TA, 0x20 TB, 0x40 TC, 0x80 TD */
	unsigned protocols;		/* bit T set for every T offered (T=0 when no TD1) */
	int first_proto;		/* T of TD1, 0 when TD1 is absent */
	uint8_t hist[15];
	size_t hist_len;
	int has_tck;
	size_t len;
	/* T=1 specific bytes (first TA/TB/TC at level >= 3 after a TD saying T=1). */
	uint16_t ifsc; /* 1..254, default 32 */
	int bwi, cwi;  /* defaults 4 and 13 */
	int crc;       /* TC bit 1: 1 = CRC, 0 = LRC (default) */
	/* T=0 specific: WI from TC2 (default 10). */
	int wi;
};

/*
 * How long the ATR whose first n bytes are p is: returns L >= n when the bytes
 * seen so far give the whole length (L == n: complete), or L > n as the least
 * total to read before calling again. PG_EFORMAT for a bad TS or an ATR longer
 * than 33 bytes.
 */
int pgi_atr_length(const uint8_t *p, size_t n);

/* Parses exactly n bytes; PG_EFORMAT / PG_ETRUNC / PG_ECORRUPT (TCK) with a detail. */
int pgi_atr_parse(struct pg_atr *a, const uint8_t *p, size_t n);

/*
 * The historical bytes by their category indicator (ISO/IEC 7816-4 8.1.1):
 * 00 = COMPACT-TLV objects then a 3-byte status indicator (LCS, SW1 SW2),
 * 80 = COMPACT-TLV objects, 10 = one DIR data reference byte, 81..8F are
 * reserved, anything else is proprietary (accepted as is). Returns 0 or
 * PG_EFORMAT with a detail.
 */
int pgi_atr_hist_check(const uint8_t *h, size_t n);
/*
 * What an ATR the project produces or is given must be: it parses
 * (pgi_atr_parse), carries TCK when a protocol other than T=0 is offered
 * (7816-3 8.2.5) and its historical bytes pass pgi_atr_hist_check. Returns 0,
 * PG_EFORMAT / PG_ETRUNC / PG_ECORRUPT with a detail saying what is wrong.
 */
int pgi_atr_check(const uint8_t *p, size_t n);

/*
 * Builds an ATR: proto 0 gives "3B 0K hist" (T=0 only, no TCK); proto 1 gives
 * 3B 8K 81 (T=1) TD2 with TA3 = ifsc, TB3 = bwi/cwi, TC3 = crc when set, the
 * historical bytes and TCK. Returns the length or PG_EINVAL.
 */
int pgi_atr_build(uint8_t *out, size_t cap, int proto, uint16_t ifsc, int bwi, int cwi, int crc,
		  const uint8_t *hist, size_t hist_len);

struct pg_card;
/*
 * pgi_atr_build() for a card role: keeps the historical bytes of the card's
 * own ATR (or "payguard" when it has none that parses) and lets the link
 * announce its protocol in the interface bytes.
 */
int pgi_atr_build_for_card(uint8_t *out, size_t cap, const struct pg_card *card, int proto,
			   uint16_t ifsc, int bwi, int cwi, int crc);

#endif
