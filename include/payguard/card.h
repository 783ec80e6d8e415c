/*
 * The card runtime shared by simulated and virtual SEs (issues 2 and 3):
 * ISO/IEC 7816-4 logical channels (MANAGE CHANNEL), SELECT by AID over an
 * applet table, a GlobalPlatform issuer security domain answering GET DATA
 * for the CPLC (GP Card Specification 2.3, tag 9F7F), and a counter of the
 * commands the card executed. The runtime exposes itself as a struct
 * pg_card, so any link driver's card role can serve it.
 */
#ifndef PAYGUARD_CARD_H
#define PAYGUARD_CARD_H

#include "payguard/apdu.h"
#include "payguard/link.h"

#include <stddef.h>
#include <stdint.h>

#define PG_CARD_MAX_CHANNELS 20 /* basic channel + 19 supplementary (ISO 7816-4 5.4.1) */
#define PG_CARD_MAX_APPLETS  16
#define PG_AID_MAX	     16

/* The GP issuer security domain's AID (GP 2.3 Amendment, A000000151000000). */
extern const uint8_t pg_card_isd_aid[8];
/* The test applet's AID: F0 "payguard" 01 (proprietary RID, category F). */
extern const uint8_t pg_card_test_aid[10];

/* Test applet instructions (any class byte; channel taken from CLA). */
#define PG_TEST_INS_ECHO    0x10 /* returns the data (cases 3/4); case 2: Ne pattern bytes */
#define PG_TEST_INS_COUNTER 0x12 /* returns the 8-byte big-endian command counter */

struct pg_card_rt;

/*
 * An applet class in the runtime's table. process() gets a parsed command for
 * the channel it is selected on and writes response data into resp (capacity
 * *rlen in, length out) and the status word into *sw. It returns 0, or a
 * negative code meaning "card fault" (the runtime answers 6F00).
 */
struct pg_applet {
	const char *name;
	uint8_t aid[PG_AID_MAX];
	size_t aid_len;
	/* Called when selected on a channel; may be NULL. Returns a status word. */
	uint16_t (*select)(struct pg_card_rt *rt, void *state, int channel);
	int (*process)(struct pg_card_rt *rt, void *state, int channel, const struct pg_capdu *c,
		       uint8_t *resp, size_t *rlen, uint16_t *sw);
	void *state;
};

struct pg_card_config {
	const uint8_t *atr; /* NULL: the default ATR (T=0 and T=1 offered); else checked */
	size_t atr_len;
	uint32_t serial;  /* IC serial number in the CPLC */
	int max_channels; /* 1..20 (0: 20) */
	/* Issue 3 hooks (card_gp.h); all optional. */
	const struct pg_applet *isd; /* the issuer security domain (NULL: built-in CPLC-only ISD) */
	void *(*alloc)(void *actx, size_t n); /* zeroed memory for the runtime; NULL: calloc */
	void (*dealloc)(void *actx, void *p);
	void *actx;
};

int pg_card_rt_new(struct pg_card_rt **out, const struct pg_card_config *cfg);
void pg_card_rt_free(struct pg_card_rt *rt);
/* Adds an applet (copied) to the table; PG_EEXIST for a duplicate AID, PG_ERANGE if full. */
int pg_card_rt_add_applet(struct pg_card_rt *rt, const struct pg_applet *a);
/* Removes the applet with this AID (deselected on every channel); PG_ENOENT if absent. */
int pg_card_rt_remove_applet(struct pg_card_rt *rt, const uint8_t *aid, size_t aid_len);
/* The applet selected on an open channel, or NULL (no selection / channel closed). */
const struct pg_applet *pg_card_rt_selected(const struct pg_card_rt *rt, int channel);
/* The struct pg_card view for link drivers (valid while rt lives). */
const struct pg_card *pg_card_rt_card(struct pg_card_rt *rt);
/* Commands executed since creation (every C-APDU the runtime answered). */
uint64_t pg_card_rt_counter(const struct pg_card_rt *rt);
/* Number of logical channels currently open (the basic channel included). */
int pg_card_rt_open_channels(const struct pg_card_rt *rt);
/* Builds the CPLC data object (9F7F 2A ...) into out (>= 45 bytes); returns its length. */
int pg_card_rt_cplc(const struct pg_card_rt *rt, uint8_t *out, size_t outlen);

/*
 * The ATR of a card the project simulates: direct convention, T=0 and T=1
 * offered (TD1, TD2), historical bytes of category 80 holding one COMPACT-TLV
 * object, the card issuer's data (tag 5) = id (1..13 bytes), and TCK (ISO/IEC
 * 7816-3 8.2, 7816-4 8.1.1). pcsc-tools' ATR_analysis parses it without
 * complaint. Returns the length (at most PG_ATR_MAX) or PG_EINVAL.
 * Default ATR (no cfg->atr): id "payguard".
 */
int pg_card_atr_build(uint8_t *out, size_t cap, const uint8_t *id, size_t idlen);

/* The default simulated SE: runtime + ISD + test applet. */
int pg_card_sim_new(struct pg_card_rt **out, uint32_t serial, const uint8_t *atr, size_t atr_len);

/*
 * Serves `card` through link driver `ops`'s card role on a listening socket:
 * accepts a host, serves it until it disconnects (pg_stream_serve_fd), and
 * repeats max_conns times (0: forever). Used by `payguard se sim --listen`.
 */
int pg_card_serve_listener(int listen_fd, const struct pg_link_ops *ops, const struct pg_card *card,
			   const struct pg_link_params *p, int max_conns);

#endif
