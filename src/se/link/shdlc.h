/*
 * ETSI TS 102 613 clause 10 SHDLC (the SWP LLC layer): frame codec with the
 * ISO/IEC 13239 CRC-16, and one sliding-window endpoint (both roles use it).
 * Over a packet stream each frame is one packet [LEN][control][info][CRC],
 * LEN counting the bytes after it, as NFC controllers' UART/I2C links do.
 */
#ifndef PG_SE_SHDLC_H
#define PG_SE_SHDLC_H

#include "payguard/stream.h"

#include <stddef.h>
#include <stdint.h>

#define SHDLC_MAX_INFO	 29u				 /* SWP: 30-byte LLC frame incl. control */
#define SHDLC_MAX_FRAME	 (1u + 1u + SHDLC_MAX_INFO + 2u) /* LEN + control + info + CRC */
#define SHDLC_MIN_LEN	 3u				 /* control + CRC */
#define SHDLC_MAX_WINDOW 4

/* Control field (102 613 10.4): I 10sssrrr, S 110tt rrr, U 111mmmmm. */
#define SHDLC_S_RR     0
#define SHDLC_S_REJ    1
#define SHDLC_S_RNR    2
#define SHDLC_S_SREJ   3
#define SHDLC_U_RSET   0x19
#define SHDLC_U_UA     0x06
#define SHDLC_CAP_SREJ 0x01 /* RSET second payload byte, bit 1 */

enum shdlc_kind { SHDLC_I = 1, SHDLC_S, SHDLC_U };

struct shdlc_frame {
	enum shdlc_kind kind;
	uint8_t ctrl;
	int ns, nr; /* I: both; S: nr */
	int type;   /* S: SHDLC_S_*; U: modifier */
	const uint8_t *info;
	size_t len;
};

/* CRC-16/X.25 (ISO/IEC 13239): init FFFF, reflected 1021, complemented; sent low byte first. */
uint16_t pgi_shdlc_crc(const uint8_t *p, size_t n);
/* Writes one packet into out (>= SHDLC_MAX_FRAME); returns its length. */
size_t pgi_shdlc_encode(uint8_t *out, uint8_t ctrl, const uint8_t *info, size_t n);
/* Decodes one whole packet (LEN byte included); PG_EFORMAT/PG_ECORRUPT on bad input. */
int pgi_shdlc_decode(struct shdlc_frame *f, const uint8_t *p, size_t n);
/* One-line description for traces ("I(ns=1,nr=2) 12 bytes"). */
const char *pgi_shdlc_describe(const struct shdlc_frame *f, char *buf, size_t n);

/*
 * Sliding-window endpoint. Outgoing information comes from `next` (the HCP
 * fragmenter: fills at most SHDLC_MAX_INFO bytes, returns the count, 0 when
 * nothing is queued); received in-sequence information goes to `deliver`.
 */
struct shdlc {
	struct pg_stream *out;
	int window;
	uint8_t vs, va, vr; /* next to send, oldest unacknowledged, next expected */
	int unacked_rx;	    /* I-frames received since we last sent N(R) */
	int rej_sent;	    /* a REJ for the current gap is outstanding */
	int peer_busy;	    /* RNR received */
	uint8_t txinfo[8][SHDLC_MAX_INFO];
	uint8_t txlen[8];
	int (*next)(void *ctx, uint8_t *info);
	int (*deliver)(void *ctx, const uint8_t *info, size_t n);
	void *ctx;
	uint64_t frames_out, frames_in, retransmits;
};

/* Results of pgi_shdlc_input (bit set). */
#define SHDLC_RX_NEW  0x01 /* new in-sequence I-frame delivered */
#define SHDLC_RX_DUP  0x02 /* I-frame already received (the peer retransmitted) */
#define SHDLC_RX_GAP  0x04 /* I-frame ahead of sequence (one was lost) */
#define SHDLC_RX_ACK  0x08 /* N(R) acknowledged at least one of our frames */
#define SHDLC_RX_REJ  0x10 /* REJ: our frames from N(R) were resent */
#define SHDLC_RX_RSET 0x20
#define SHDLC_RX_UA   0x40
#define SHDLC_RX_S    0x80 /* any S-frame */

void pgi_shdlc_reset(struct shdlc *e, int window);
/* Sends queued information while the window allows. */
int pgi_shdlc_pump(struct shdlc *e);
/* Sends an S-frame carrying our N(R). */
int pgi_shdlc_send_s(struct shdlc *e, int type);
int pgi_shdlc_send_u(struct shdlc *e, int mod, const uint8_t *info, size_t n);
/* Resends every unacknowledged I-frame (go-back-N) with the current N(R). */
int pgi_shdlc_retransmit(struct shdlc *e);
/* Applies one received frame; returns SHDLC_RX_* bits or a negative code from deliver. */
int pgi_shdlc_input(struct shdlc *e, const struct shdlc_frame *f);
static inline int
shdlc_unacked(const struct shdlc *e)
{
	return (e->vs - e->va) & 7;
}

#endif
