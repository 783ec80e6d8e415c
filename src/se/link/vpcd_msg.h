/*
 * vsmartcard vpcd wire format (private to the vpcd driver and its fuzzer):
 * every message is a 2-byte big-endian length and that many bytes; a 1-byte
 * message is a control code, any other length an APDU (C-APDU from vpcd,
 * R-APDU or ATR from the card).
 */
#ifndef PG_SE_LINK_VPCD_MSG_H
#define PG_SE_LINK_VPCD_MSG_H

#include <stddef.h>
#include <stdint.h>

enum {
	PG_VPCD_CTRL_OFF = 0x00,
	PG_VPCD_CTRL_ON = 0x01,
	PG_VPCD_CTRL_RESET = 0x02,
	PG_VPCD_CTRL_ATR = 0x04,
};

/* Largest message payload: the 2-byte length field's limit. */
#define PG_VPCD_MAX_MSG 65535u
/* Largest answer the 2-byte length can carry. */
#define PG_VPCD_MAX_ANSWER 65535u

/* Reassembles messages from a byte stream; fixed buffer, no allocation. */
struct pg_vpcd_rx {
	uint8_t hdr[2];
	size_t hdr_got;
	size_t need, got;
	uint8_t msg[PG_VPCD_MAX_MSG];
};

void pgi_vpcd_rx_init(struct pg_vpcd_rx *rx);
/*
 * Consumes bytes from p[0..n): returns the count used (> 0 or 0 for n == 0)
 * and sets *done when a whole message sits in rx->msg[0..*msglen).
 * A message longer than PG_VPCD_MAX_MSG or of length 0 is PG_EPROTO.
 */
int pgi_vpcd_rx_feed(struct pg_vpcd_rx *rx, const uint8_t *p, size_t n, int *done, size_t *msglen);

#endif
