/*
 * The one T=1 block engine of src/se/link (ISO/IEC 7816-3:2006 clause 11)
 * and the framing descriptions it runs with: ISO T=1 (t1.c) and the
 * GlobalPlatform "APDU transport over SPI/I2C" variant (spi.c, a thin ops
 * table over this engine). Epilogue codes, the block codec and the host and
 * card roles are here once, so the error recovery, the WTX cap and the wait
 * extension are the same on every T=1-style link. Private to src/se/link,
 * its tests and its fuzzers.
 */
#ifndef PG_SE_LINK_T1_PROTO_H
#define PG_SE_LINK_T1_PROTO_H

#include "payguard/link.h"

#include <stddef.h>
#include <stdint.h>

#define T1_MAX_INF   254u	      /* LEN 255 is reserved (11.3.2.3) */
#define T1_MAX_BLOCK (3u + 255u + 2u) /* prologue + largest LEN + CRC */
/* A card asking for more time forever is a dead card: WTX requests granted per exchange. */
#define T1_MAX_WTX 1000
#define T1_CIP_MAX 64 /* GP variant: longest CIP */

enum t1_kind { T1_I, T1_R, T1_S };
enum t1_stype {
	T1_S_RESYNCH = 0,
	T1_S_IFS = 1,
	T1_S_ABORT = 2,
	T1_S_WTX = 3,
	T1_S_CIP = 4,	  /* GP variant: communication interface parameters */
	T1_S_RELEASE = 6, /* GP variant: end of APDU session */
	T1_S_SWR = 15,	  /* GP variant: soft reset */
};

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

/* What a GP card says about itself in its CIP (the ATR of the GP variant). */
struct t1_ident {
	const uint8_t *hb; /* historical bytes (points into the CIP) */
	size_t hblen;
	size_t ifsc;
};

/*
 * How a link frames T=1 blocks. The engine's rules (11.6 error recovery,
 * chaining, exactly-once execution, WTX cap and wait extension) do not
 * change with the framing.
 */
struct t1_framing {
	const char *name; /* in errors and logs: "t1", "spi", "i2c" */
	const struct pg_link_ops *ops;
	uint8_t nad_host, nad_card; /* NAD byte the host / the card sends */
	uint8_t check_nad;	    /* 1: a block with the other NAD is invalid */
	uint8_t len_bytes;	    /* 1: LEN (255 reserved); 2: big-endian LEN */
	uint8_t crc_only;	    /* 1: always CRC; 0: LRC or CRC as the ATR/params say */
	/* The CRC: ISO/IEC 13239 as 7816-3 sends it (pgi_t1_crc) or CRC-16/X.25 (GP). */
	uint16_t (*crc16)(const uint8_t *p, size_t n);
	uint16_t default_ifs; /* IFSC and IFSD until negotiated */
	size_t max_ifs;	      /* largest IFSC / IFSD */
	uint16_t max_filler;  /* idle bytes a host skips before the card's NAD (SPI polling) */
	/*
	 * GP rules: the card gives no ATR but its CIP (S(CIP)) after a soft
	 * reset (S(SWR)); S(IFS) carries 1 or 2 bytes; S(RELEASE) ends the
	 * session on close; S(RESYNCH) resets the sequence numbers only (the
	 * IFS stand); the CIP's PLID must match.
	 */
	uint8_t gp;
	uint8_t plid;
	int (*cip_build)(const struct t1_framing *f, const struct pg_card *card, size_t ifsc,
			 uint8_t *out, size_t cap, size_t *n);
	int (*cip_parse)(const struct t1_framing *f, const uint8_t *p, size_t n,
			 struct t1_ident *id);
};

extern const struct t1_framing pgi_t1_framing_iso;
extern const struct t1_framing pgi_t1_framing_spi;
extern const struct t1_framing pgi_t1_framing_i2c;

/* LRC: exclusive-or of every prologue and information byte (11.4.4). */
uint8_t pgi_t1_lrc(const uint8_t *p, size_t n);
/*
 * CRC: generator x^16 + x^12 + x^5 + 1 (ISO/IEC 13239, formerly 3309), bits
 * taken least significant first, preset FFFF, no final complement; sent most
 * significant byte first. Check value over "123456789" is 6F91.
 */
uint16_t pgi_t1_crc(const uint8_t *p, size_t n);

/*
 * Decodes exactly n bytes as one block of the framing with the given
 * epilogue (crc 0/1). Returns 0, PG_ECORRUPT (EDC mismatch) or PG_EFORMAT
 * (anything else: bad length, reserved PCB coding, wrong LEN for the block
 * type, an S-block the framing does not have).
 */
int pgi_t1_decode_framed(const struct t1_framing *f, struct t1_block *b, const uint8_t *p, size_t n,
			 int crc);
/* Encodes NAD PCB LEN INF EDC into out (room for the largest block); returns the length. */
size_t pgi_t1_encode_framed(const struct t1_framing *f, uint8_t *out, uint8_t nad, uint8_t pcb,
			    const uint8_t *inf, size_t len, int crc);
/* ISO T=1 framing (1-byte LEN). */
int pgi_t1_decode(struct t1_block *b, const uint8_t *f, size_t n, int crc);
size_t pgi_t1_encode(uint8_t *out, uint8_t nad, uint8_t pcb, const uint8_t *inf, size_t len,
		     int crc);

/* The engine's two roles; a link's ops table points at these. */
int pgi_t1_host_open(struct pg_link **out, struct pg_stream *s, const struct pg_link_params *p,
		     const struct t1_framing *f);
int pgi_t1_power_on(struct pg_link *l, uint8_t *atr, size_t *atrlen);
int pgi_t1_transmit(struct pg_link *l, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
		    size_t *rlen);
void pgi_t1_host_close(struct pg_link *l);
int pgi_t1_card_open(struct pg_link_card **out, const struct pg_card *card,
		     const struct pg_link_params *p, const struct t1_framing *f);
int pgi_t1_card_packet(struct pg_link_card *lc, int type, const uint8_t *data, size_t n,
		       struct pg_stream *out);
void pgi_t1_card_close(struct pg_link_card *lc);

#endif
