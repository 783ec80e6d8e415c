/*
 * NFC switch (issue 8; seed "switching device and method for automatically
 * connecting to NFC chip and switching security element"): one slave port
 * toward the NFC controller (an SWP secure element with the card RF gates of
 * ETSI TS 102 622), master ports to several SEs over any pg_link, a registry
 * of every SE's connection information and applications, and routing of the
 * reader's SELECT commands by AID (exact, partial with first/next occurrence,
 * priorities, default route, a configurable policy for one AID in two SEs).
 * The switch answers PPSE (2PAY.SYS.DDF01) itself with a combined directory.
 */
#ifndef PAYGUARD_NFCSWITCH_H
#define PAYGUARD_NFCSWITCH_H

#include "payguard/link.h"
#include "payguard/stream.h"

#include <stddef.h>
#include <stdint.h>

#define PG_NFCSW_MAX_SES   16
#define PG_NFCSW_AID_MAX   16
#define PG_NFCSW_LABEL_MAX 16
#define PG_NFCSW_NAME_MAX  32

/* What happens when the same AID is registered in two SEs. */
enum pg_nfcsw_policy {
	PG_NFCSW_POLICY_PRIORITY = 0, /* best priority wins; equal priority: first registered */
	PG_NFCSW_POLICY_FIRST,	      /* first registered wins, priorities ignored */
	PG_NFCSW_POLICY_REFUSE,	      /* a SELECT of a conflicting AID is refused with 6985 */
};

/* Application flags in the registry. */
#define PG_NFCSW_APP_PAYMENT 0x01 /* listed in the combined PPSE */

/* GlobalPlatform application life cycle (GP 2.3 11.1.1, table 11-4). */
#define PG_NFCSW_LC_INSTALLED  0x03
#define PG_NFCSW_LC_SELECTABLE 0x07
#define PG_NFCSW_LC_LOCKED     0x80

/* One application of the registry (as listed by pg_nfcsw_apps()). */
struct pg_nfcsw_app {
	uint8_t aid[PG_NFCSW_AID_MAX];
	uint8_t aid_len;
	uint8_t lifecycle;
	uint8_t flags;
	uint8_t priority; /* 1 (highest) .. 15, as EMV tag 87; 0: the SE's priority */
	char label[PG_NFCSW_LABEL_MAX + 1];
	int se;	      /* SE slot */
	uint32_t seq; /* registration order */
};

/* One SE slot (as listed by pg_nfcsw_ses()). */
struct pg_nfcsw_se_info {
	char name[PG_NFCSW_NAME_MAX];
	char link[16];	   /* driver name: "swp", "t1", "spi", ... */
	char addr[96];	   /* "memory", "unix:/path", "tcp:host:port" */
	const char *state; /* "up", "down", "detached" */
	int priority;	   /* default priority of its applications (1..15) */
	int apps;
	const char *source; /* how the registry was filled: "get-status", "probe", "config" */
	uint64_t apdus;
};

struct pg_nfcsw;

struct pg_nfcsw_options {
	enum pg_nfcsw_policy policy;
	int answer_ppse; /* 1 (default when the struct is zeroed: see pg_nfcsw_new) */
};

/* Creates an empty switch (policy PRIORITY, PPSE answered by the switch). */
int pg_nfcsw_new(struct pg_nfcsw **out);
void pg_nfcsw_free(struct pg_nfcsw *sw);
void pg_nfcsw_set_policy(struct pg_nfcsw *sw, enum pg_nfcsw_policy p);
enum pg_nfcsw_policy pg_nfcsw_policy(const struct pg_nfcsw *sw);
/* Parses "priority", "first", "refuse"; PG_EINVAL otherwise. */
int pg_nfcsw_policy_parse(const char *s, enum pg_nfcsw_policy *p);
const char *pg_nfcsw_policy_name(enum pg_nfcsw_policy p);

/*
 * Master port: attaches an SE reachable through `link` (owned by the switch
 * from this call on, even on failure), powers it on and fills its registry
 * entries: GET STATUS (GP, P1 40) first; if the SE does not answer it, by
 * SELECT probing of the AIDs configured for it (pg_nfcsw_expect). Its PPSE,
 * if it has one, marks payment applications with their labels/priorities.
 * Returns the slot (>= 0) or a negative code.
 */
int pg_nfcsw_attach(struct pg_nfcsw *sw, const char *name, struct pg_link *link, const char *addr,
		    int priority);
/* Detaches an SE: its routes go, a session on it ends (the next APDU gets 6F00). */
int pg_nfcsw_detach(struct pg_nfcsw *sw, const char *name);
/* Re-reads an SE's applications (after INSTALL/DELETE); NULL name: every SE. */
int pg_nfcsw_refresh(struct pg_nfcsw *sw, const char *name);
/*
 * Periodic refresh (GET STATUS again) of every SE in a background thread,
 * every period_ms (>= 100); picks up INSTALL/DELETE done behind the switch's
 * back. pg_nfcsw_free() stops it.
 */
int pg_nfcsw_start_refresh(struct pg_nfcsw *sw, int period_ms);
/* The SE's link (to send it commands directly, e.g. in benchmarks); NULL if absent. */
struct pg_link *pg_nfcsw_link(struct pg_nfcsw *sw, const char *name);
/* Slot of an SE by name, or PG_ENOENT. */
int pg_nfcsw_find_se(const struct pg_nfcsw *sw, const char *name);

/*
 * Configured applications: an AID expected on an SE (used for probing when
 * the SE has no GET STATUS) with its routing attributes, which also apply
 * when GET STATUS finds it. priority 0: the SE's; label may be NULL.
 */
int pg_nfcsw_expect(struct pg_nfcsw *sw, const char *se, const uint8_t *aid, size_t len,
		    int priority, const char *label, int flags);
/* Default route: SELECTs matching nothing (and APDUs with no session) go to this SE. */
int pg_nfcsw_set_default(struct pg_nfcsw *sw, const char *se);

/*
 * Registry entries without a link (tests, benchmarks, config "app" lines
 * for SEs added later): adds directly. se must be an existing slot.
 */
int pg_nfcsw_register(struct pg_nfcsw *sw, int se, const uint8_t *aid, size_t len, int lifecycle,
		      int priority, const char *label, int flags);
/* Adds an SE slot without a link (registry-only: routing tests, benchmarks). */
int pg_nfcsw_add_slot(struct pg_nfcsw *sw, const char *name, int priority);

/*
 * Routing decision for SELECT by DF name: `aid` may be partial; next = 0 for
 * the first occurrence (P2 00), 1 for the next one after the current
 * session's application (P2 02). Returns the SE slot and fills *app, or
 * PG_ENOENT (no match: 6A82), PG_EEXIST (conflict refused: 6985).
 */
int pg_nfcsw_route(struct pg_nfcsw *sw, const uint8_t *aid, size_t len, int next,
		   struct pg_nfcsw_app *app);

/*
 * The card side: one C-APDU from the reader, one R-APDU back (always: a
 * status word of the switch when nothing answers). rapdu capacity is *rlen.
 */
int pg_nfcsw_process(struct pg_nfcsw *sw, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
		     size_t *rlen);
/* RF field off / card deactivated: the session ends. */
void pg_nfcsw_field_off(struct pg_nfcsw *sw);
/* The switch as a pg_card (for vpcd or any card-role link driver). */
const struct pg_card *pg_nfcsw_card(struct pg_nfcsw *sw);
/* Name of the SE of the current session ("" if none). */
const char *pg_nfcsw_session_se(struct pg_nfcsw *sw);

/* Snapshots for the CLI: caller frees *out with free(). Sorted by AID. */
int pg_nfcsw_apps(struct pg_nfcsw *sw, struct pg_nfcsw_app **out, size_t *n);
int pg_nfcsw_ses(struct pg_nfcsw *sw, struct pg_nfcsw_se_info *out, size_t max, size_t *n);
const char *pg_nfcsw_se_name(struct pg_nfcsw *sw, int slot);

/*
 * Routing configuration (docs/se-nfcswitch.md), one directive a line:
 *   policy priority|first|refuse
 *   default <se>
 *   se <name> link=<driver> addr=<unix:/path|tcp:host:port> [priority=N]
 *   app <se> <aid hex> [priority=N] [label=TEXT] [payment]
 * Parsed into a plain description; pg_nfcsw_apply() connects the SEs.
 */
struct pg_nfcsw_conf_se {
	char name[PG_NFCSW_NAME_MAX];
	char link[16];
	char addr[96];
	int priority;
};
struct pg_nfcsw_conf_app {
	char se[PG_NFCSW_NAME_MAX];
	uint8_t aid[PG_NFCSW_AID_MAX];
	uint8_t aid_len;
	int priority, flags;
	char label[PG_NFCSW_LABEL_MAX + 1];
};
#define PG_NFCSW_CONF_MAX_APPS 4096
struct pg_nfcsw_conf {
	enum pg_nfcsw_policy policy;
	char default_se[PG_NFCSW_NAME_MAX];
	struct pg_nfcsw_conf_se se[PG_NFCSW_MAX_SES];
	size_t n_se;
	struct pg_nfcsw_conf_app *apps; /* malloc'ed */
	size_t n_apps;
};
#define PG_NFCSW_CONF_MAX_BYTES (1u << 20)
/* Parses text (at most PG_NFCSW_CONF_MAX_BYTES); errors name the line. */
int pg_nfcsw_conf_parse(struct pg_nfcsw_conf *c, const char *text, size_t len);
void pg_nfcsw_conf_release(struct pg_nfcsw_conf *c);
/* Sets policy/default/expectations and connects every `se` line (host role over its address). */
int pg_nfcsw_apply(struct pg_nfcsw *sw, const struct pg_nfcsw_conf *c, int timeout_ms);

/*
 * Slave port: the switch as one SWP SE toward an NFC controller (card role
 * of ETSI TS 102 613 SHDLC + TS 102 622 HCI with the card application gates
 * type A and B). pg_nfcsw_slave_packet is a pg_packet_fn (memory pair or
 * pg_stream_serve_fd).
 */
struct pg_nfcsw_slave;
int pg_nfcsw_slave_new(struct pg_nfcsw_slave **out, struct pg_nfcsw *sw);
void pg_nfcsw_slave_free(struct pg_nfcsw_slave *s);
int pg_nfcsw_slave_packet(void *ctx, int type, const uint8_t *p, size_t n, struct pg_stream *out);
struct pg_nfcsw_slave_stats {
	uint64_t field_on, field_off, activated, deactivated, capdus, bad_msgs;
};
void pg_nfcsw_slave_stats(const struct pg_nfcsw_slave *s, struct pg_nfcsw_slave_stats *st);

/*
 * Simulated NFC controller (host controller side of SWP) with a contactless
 * reader in front: brings the SHDLC link up, creates the pipe from its card
 * RF gate type A to the SE's card application gate, and turns reader actions
 * into EVT_FIELD_ON / EVT_CARD_ACTIVATED / EVT_SEND_DATA / EVT_CARD_DEACTIVATED
 * / EVT_FIELD_OFF. The stream is owned by the controller.
 */
struct pg_nfcsw_clf;
int pg_nfcsw_clf_open(struct pg_nfcsw_clf **out, struct pg_stream *s, int timeout_ms);
void pg_nfcsw_clf_close(struct pg_nfcsw_clf *c);
int pg_nfcsw_clf_field_on(struct pg_nfcsw_clf *c);  /* field on + card activated */
int pg_nfcsw_clf_field_off(struct pg_nfcsw_clf *c); /* card deactivated + field off */
int pg_nfcsw_clf_transceive(struct pg_nfcsw_clf *c, const uint8_t *capdu, size_t clen,
			    uint8_t *rapdu, size_t *rlen);

/*
 * The switch's simulated SEs (issue 16 item 1): the GlobalPlatform card of
 * card_gp.h (ISD with SCP03: GET STATUS, INSTALL, DELETE; the catalogue's
 * PPSE, EMV payment and transit applets) configured by a card profile.
 * Install and delete at run time are the ISD's INSTALL / DELETE under SCP03
 * (the card's default test keys 40..4F, kvn 30).
 */
struct pg_gp_card;
enum pg_nfcsw_applet_kind { PG_NFCSW_APPLET_PAYMENT = 1, PG_NFCSW_APPLET_TRANSIT = 2 };
struct pg_nfcsw_sim_app {
	const char *se; /* the SE that holds it (tables of several SEs); NULL: any */
	enum pg_nfcsw_applet_kind kind;
	const char *aid_hex, *label; /* label: the FCI's and PPSE's application label */
	int priority;		     /* 1..15 (tag 87); 0: the card's default (1) */
};
/*
 * A card whose profile is: serial (CPLC), a PPSE if with_ppse, and the
 * applications of apps[0..n) whose se is NULL or equals `se` (NULL: all).
 */
int pg_nfcsw_sim_se_new(struct pg_gp_card **out, uint32_t serial, int with_ppse,
			const struct pg_nfcsw_sim_app *apps, size_t n, const char *se);

/* The demo's SEs: uicc over SWP, ese over SPI, sd over T=1 (no PPSE). */
struct pg_nfcsw_sim_se {
	const char *name, *link;
	int priority, with_ppse;
	uint32_t serial;
};
#define PG_NFCSW_DEMO_NSE 3
extern const struct pg_nfcsw_sim_se pg_nfcsw_demo_ses[PG_NFCSW_DEMO_NSE];
extern const struct pg_nfcsw_sim_app pg_nfcsw_demo_apps[];
extern const size_t pg_nfcsw_demo_napps;
/*
 * Makes the demo's three cards and attaches them to sw over in-process links
 * (sd's payment application configured, as it has no PPSE). The cards are
 * the caller's (pg_gp_card_free after pg_nfcsw_free), also on failure.
 */
int pg_nfcsw_demo_attach(struct pg_nfcsw *sw, struct pg_gp_card *cards[PG_NFCSW_DEMO_NSE]);

/*
 * The demo: three SEs on different links (SWP, T=1, SPI) with payment and
 * transit applets, the switch, the simulated controller and reader, and
 * full transactions printed as a transcript to `out` (NULL: silent).
 * Returns 0 when every transaction completed with 9000 at the right SE.
 */
#include <stdio.h>
int pg_nfcsw_demo_run(FILE *out, int json);

#endif
