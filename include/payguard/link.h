/*
 * SE link drivers: one ops table per bottom-level protocol (seed 7's
 * "communication interfaces"). Every protocol has two roles:
 *  - host (the terminal/device side): open over a stream, power on (ATR),
 *    transmit one command APDU and receive its response APDU, close;
 *  - card (the SE side): a packet handler that reassembles the protocol's
 *    frames, hands each complete C-APDU to a pg_card (the card's application
 *    logic) and frames the R-APDU back. Card roles let every link type run
 *    with no hardware (in process, or on a socket: `payguard se sim`).
 * PC/SC is host-only (the card is behind pcscd); vpcd is card-only (it plugs
 * a pg_card into pcscd through vsmartcard's virtual reader).
 * The drivers are listed in one const table, pg_link_drivers[].
 */
#ifndef PAYGUARD_LINK_H
#define PAYGUARD_LINK_H

#include "payguard/apdu.h"
#include "payguard/stream.h"

#include <stddef.h>
#include <stdint.h>

enum pg_link_type {
	PG_LINK_T0 = 0, /* ISO/IEC 7816-3 character protocol */
	PG_LINK_T1,	/* ISO/IEC 7816-3 block protocol */
	PG_LINK_SWP,	/* ETSI TS 102 613 SHDLC + ETSI TS 102 622 HCI, APDU gate */
	PG_LINK_SPI,	/* GlobalPlatform APDU transport over SPI (eSE) */
	PG_LINK_I2C,	/* GlobalPlatform APDU transport over I2C (eSE) */
	PG_LINK_CCID,	/* USB CCID bulk messages */
	PG_LINK_PCSC,	/* PC/SC through libpcsclite (host only) */
	PG_LINK_VPCD,	/* vsmartcard virtual reader protocol (card only) */
	PG_LINK_COUNT
};

#define PG_ATR_MAX 33u

/*
 * The card's application logic, independent of the link: what a simulated
 * or virtual SE does. `process` gets one whole C-APDU and writes one whole
 * R-APDU (data + SW) into rapdu (capacity *rlen in, length out); it returns 0
 * or a negative code (a code means "card mute", not a status word).
 */
struct pg_card {
	void *ctx;
	/* Writes the ATR (at most PG_ATR_MAX bytes); called on every reset. */
	int (*atr)(void *ctx, uint8_t *atr, size_t *len);
	int (*process)(void *ctx, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t *rlen);
	/* Power off / reset: drop volatile state (selected applets, channels). May be NULL. */
	void (*reset)(void *ctx);
};

/* Per-link parameters; zero means the protocol's default. */
struct pg_link_params {
	int timeout_ms;	    /* per frame wait (default 1000) */
	int retries;	    /* error-recovery attempts before failing (default 3) */
	uint16_t ifsc;	    /* T=1: card's max information field (default 32; ATR may say) */
	uint16_t ifsd;	    /* T=1: host's max information field (default 254) */
	int crc;	    /* T=1: 1 = CRC, 0 = LRC (default LRC) */
	int window;	    /* SWP SHDLC: sliding window size 1..4 (default 4) */
	uint32_t max_frame; /* SPI/I2C, CCID: max frame/message size (default per spec) */
};

struct pg_link;
struct pg_link_card;

struct pg_link_ops {
	const char *name; /* "t0", "t1", "swp", "spi", "i2c", "ccid", "pcsc", "vpcd" */
	enum pg_link_type type;
	/* Longest C-APDU / R-APDU this link carries (extended length where it can). */
	size_t max_capdu, max_rapdu;

	/* --- host role; all NULL for a card-only driver --- */
	/*
	 * Creates the host side over `s` (owned by the driver from this call on,
	 * even when it fails) or,
	 * for PC/SC, from `addr` (a reader name; s is NULL).
	 */
	int (*host_open)(struct pg_link **out, struct pg_stream *s, const char *addr,
			 const struct pg_link_params *p);
	/* Resets the card and returns its ATR (or the link's equivalent identity bytes). */
	int (*power_on)(struct pg_link *l, uint8_t *atr, size_t *atrlen);
	/*
	 * Sends one C-APDU, returns the whole R-APDU (for T=0 after GET RESPONSE
	 * / re-send handling). rapdu capacity is *rlen in, length out.
	 */
	int (*transmit)(struct pg_link *l, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
			size_t *rlen);
	/* Closes and frees (NULL ok). */
	void (*host_close)(struct pg_link *l);

	/* --- card role; all NULL for a host-only driver --- */
	/*
	 * Creates the card side: packets from the host are given to
	 * pg_link_card_packet(), answers go to `out` (not owned).
	 */
	int (*card_open)(struct pg_link_card **out, const struct pg_card *card,
			 const struct pg_link_params *p);
	int (*card_packet)(struct pg_link_card *c, int type, const uint8_t *data, size_t n,
			   struct pg_stream *out);
	void (*card_close)(struct pg_link_card *c);
};

extern const struct pg_link_ops *const pg_link_drivers[];
/* Looks a driver up by name ("t1"); NULL if unknown. */
const struct pg_link_ops *pg_link_find(const char *name);

/*
 * Every host-side link starts with this header so generic code can reach
 * the ops table and count traffic.
 */
struct pg_link {
	const struct pg_link_ops *ops;
	uint64_t apdus, bytes_out, bytes_in;
};
struct pg_link_card {
	const struct pg_link_ops *ops;
	uint64_t apdus;
};

/* Generic packet handler for pg_stream_memory_pair()/pg_stream_serve_fd(): ctx is a pg_link_card.
 */
int pg_link_card_packet(void *ctx, int type, const uint8_t *p, size_t n, struct pg_stream *out);

static inline int
pg_link_power_on(struct pg_link *l, uint8_t *atr, size_t *atrlen)
{
	return l->ops->power_on(l, atr, atrlen);
}
int pg_link_transmit(struct pg_link *l, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
		     size_t *rlen);
void pg_link_close(struct pg_link *l);
void pg_link_card_close(struct pg_link_card *c);

/*
 * Convenience for tests, the converter and benchmarks: a host link of the
 * given driver connected in process to a card role of the same driver that
 * serves `card`. Frees with pg_link_close() (which also frees the card role).
 */
int pg_link_open_memory(struct pg_link **out, const struct pg_link_ops *ops,
			const struct pg_card *card, const struct pg_link_params *p);

#endif
