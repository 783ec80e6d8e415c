/*
 * ISO/IEC 7816-3:2006 clause 11 T=1 block helpers shared by the T=1 driver,
 * its tests and its fuzzers: the epilogue codes (LRC, CRC) and the block
 * decoder. Private to src/se/link.
 */
#ifndef PG_SE_LINK_T1_PROTO_H
#define PG_SE_LINK_T1_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define T1_MAX_INF   254u	      /* LEN 255 is reserved (11.3.2.3) */
#define T1_MAX_BLOCK (3u + 255u + 2u) /* prologue + largest LEN + CRC */

enum t1_kind { T1_I, T1_R, T1_S };
enum t1_stype { T1_S_RESYNCH = 0, T1_S_IFS = 1, T1_S_ABORT = 2, T1_S_WTX = 3 };

/* One decoded block; inf points into the frame. */
struct t1_block {
	enum t1_kind kind;
	uint8_t nad, pcb;
	int ns, m;	    /* I-block */
	int nr, err;	    /* R-block: N(R), 0 ok / 1 EDC-parity / 2 other */
	int stype, resp;    /* S-block */
	const uint8_t *inf; /* LEN bytes */
	size_t len;
};

/* LRC: exclusive-or of every prologue and information byte (11.4.4). */
uint8_t pg_t1_lrc(const uint8_t *p, size_t n);
/*
 * CRC: generator x^16 + x^12 + x^5 + 1 (ISO/IEC 13239, formerly 3309), bits
 * taken least significant first, preset FFFF, no final complement; sent most
 * significant byte first. Check value over "123456789" is 6F91.
 */
uint16_t pg_t1_crc(const uint8_t *p, size_t n);

/*
 * Decodes exactly n bytes as one block with the given epilogue (crc 0/1).
 * Returns 0, PG_ECORRUPT (EDC mismatch) or PG_EFORMAT (anything else: bad
 * length, reserved PCB coding, wrong LEN for the block type).
 */
int pg_t1_decode(struct t1_block *b, const uint8_t *f, size_t n, int crc);
/* Encodes NAD PCB LEN INF EDC into out (>= T1_MAX_BLOCK); returns the length. */
size_t pg_t1_encode(uint8_t *out, uint8_t nad, uint8_t pcb, const uint8_t *inf, size_t len,
		    int crc);

#endif
