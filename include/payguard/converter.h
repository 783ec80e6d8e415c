/*
 * The protocol converter (seed 7, "device for supporting communication
 * between multiple types of safety carriers"): any number of interfaces, each
 * bound at run time to one SE over its own link driver (its bottom-level
 * protocol), and a management module speaking APDUs above all of them that
 * opens and closes channels between any two interfaces while the others run.
 *
 * A channel joins side A and side B. An APDU issued on one side reaches the
 * SE on the other side; its logical channel (CLA) is mapped from the issuing
 * side's numbering to a logical channel the converter opened on the target
 * SE with MANAGE CHANNEL, so several channels share one SE without clashing.
 * MANAGE CHANNEL issued through a channel opens/closes further mapped
 * channels. A failed or removed SE ends only the channels it is part of;
 * the peer gets PG_ELINK (failed) or PG_ENOCARD (removed) with a detail.
 *
 * Thread-safe: every function may be called from any thread; different
 * channels run concurrently, commands to one SE are serialised.
 * Interface and channel records live until pg_conv_free().
 */
#ifndef PAYGUARD_CONVERTER_H
#define PAYGUARD_CONVERTER_H

#include "payguard/link.h"

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#define PG_CONV_NAME_MAX 64

struct pg_conv;

enum pg_conv_side { PG_CONV_A = 0, PG_CONV_B = 1 };

enum pg_conv_event_kind {
	PG_CONV_EV_ATTACH,   /* iface bound (atr set) */
	PG_CONV_EV_DETACH,   /* iface removed */
	PG_CONV_EV_FAIL,     /* iface's SE failed (rc, detail) */
	PG_CONV_EV_OPEN,     /* channel opened (a, b) */
	PG_CONV_EV_CLOSE,    /* channel closed by management */
	PG_CONV_EV_END,	     /* channel ended by a failed/removed SE (rc, detail) */
	PG_CONV_EV_APDU,     /* one exchange: from -> to */
	PG_CONV_EV_INTERNAL, /* MANAGE CHANNEL the converter sent itself */
};

/* What the trace callback sees (pointers valid during the call only). */
struct pg_conv_event {
	enum pg_conv_event_kind kind;
	int chan;	       /* channel id, 0 for interface events */
	const char *from, *to; /* interface names (to may be NULL) */
	const char *link;      /* target's link driver name */
	const uint8_t *capdu;  /* as issued (issuer's channel numbering) */
	size_t clen;
	const uint8_t *sent; /* as sent to the target SE (mapped CLA) */
	size_t slen;
	const uint8_t *rapdu;
	size_t rlen;
	int rc;
	const char *detail;
};
/* Called with the channel's lock held: it must not call back into the converter. */
typedef void (*pg_conv_trace_fn)(void *arg, const struct pg_conv_event *ev);

int pg_conv_new(struct pg_conv **out);
/* Closes every channel and link. No other call may run concurrently. NULL ok. */
void pg_conv_free(struct pg_conv *c);
void pg_conv_set_trace(struct pg_conv *c, pg_conv_trace_fn fn, void *arg);

/*
 * Binds interface `name` to the SE behind host link l (taken, even on
 * failure), powers it on and keeps its ATR.
 */
int pg_conv_attach(struct pg_conv *c, const char *name, struct pg_link *l);
/*
 * Opens a host link of driver ops to addr ("unix:PATH", "tcp:HOST:PORT";
 * for pcsc a reader name or index) and attaches it.
 */
int pg_conv_attach_addr(struct pg_conv *c, const char *name, const struct pg_link_ops *ops,
			const char *addr, const struct pg_link_params *p);
/*
 * Opens a host link to the SE at a link address: driver `link` ("t1", "swp",
 * "spi", "i2c", "t0", "ccid" over "unix:PATH" or "tcp:HOST:PORT", a VSE's
 * endpoint among them; "pcsc" with a reader name or index). The one way the
 * SE OS, the NFC switch and the converter's own interfaces reach an SE by its
 * address. p may be NULL (timeout_ms 0: 2000 ms to connect).
 */
int pg_conv_link_open(struct pg_link **out, const char *link, const char *addr,
		      const struct pg_link_params *p);
/*
 * A host link over interface `name` as it is now (for code written against
 * pg_link: the SE OS's connect flow and sessions, the NFC switch's master
 * ports). Its transmit goes through the interface, serialised with every
 * channel and other view of it, counted and traced (PG_CONV_EV_APDU with
 * chan 0); power_on returns the ATR of attach without resetting the SE (other
 * users keep their state); a link failure marks the interface failed; once
 * the interface is detached or failed the view answers PG_ENOCARD/PG_ELINK,
 * also after a new interface of the same name attached. pg_link_close()
 * frees only the view. Views must be closed before pg_conv_free().
 */
int pg_conv_iface_link(struct pg_conv *c, const char *name, struct pg_link **out);
/*
 * A port: interface `name`'s SE served in the card role of driver `link` on
 * a listening address ("unix:PATH"), one host at a time, each command going
 * through the interface as a view's does (seed 7: the SE on any link, seen
 * over another). The SE is not reset when a host connects. The port's
 * thread runs until pg_conv_port_stop(), which also ends a connected host.
 */
struct pg_conv_port;
int pg_conv_port_start(struct pg_conv *c, const char *name, const char *link,
		       const char *listen_addr, struct pg_conv_port **out);
/* Stops and frees (the socket file of a unix: address is removed). NULL ok. */
void pg_conv_port_stop(struct pg_conv_port *p);
/* Removes an interface: its channels end with PG_ENOCARD, its link closes. The
 * name may be attached again (a new interface; the old record stays until free). */
int pg_conv_detach(struct pg_conv *c, const char *name);
/*
 * Checks every live interface with a command that changes no card state
 * (MANAGE CHANNEL close of the basic channel, answered with an error SW);
 * an SE that does not answer is marked failed. Returns the number failed.
 */
int pg_conv_probe(struct pg_conv *c);

/* Opens a channel between interfaces a and b; returns its id (>= 1). */
int pg_conv_open(struct pg_conv *c, const char *a, const char *b);
/* Closes a channel (closing its logical channels on both SEs). */
int pg_conv_close(struct pg_conv *c, int chan);
/*
 * Sends a C-APDU issued on side `from` of channel `chan` to the SE on the
 * other side; returns its R-APDU (capacity *rlen in, length out). Status
 * words are data (0 return); a negative return means the command did not
 * reach the SE: the channel ended or was closed (PG_ELINK, PG_ENOCARD,
 * PG_ECLOSED), or the link refused or lost only this command (PG_EINVAL too
 * long for the link, PG_ERESYNC link recovered) and the channel stays open.
 */
int pg_conv_transmit(struct pg_conv *c, int chan, enum pg_conv_side from, const uint8_t *capdu,
		     size_t clen, uint8_t *rapdu, size_t *rlen);
/* 0 while open; else the code that ended it (PG_ECLOSED if closed by management). */
int pg_conv_channel_state(struct pg_conv *c, int chan);

struct pg_conv_iface_info {
	char name[PG_CONV_NAME_MAX];
	const char *link;
	uint8_t atr[PG_ATR_MAX];
	size_t atr_len;
	int state; /* 0 live, PG_ELINK failed, PG_ENOCARD removed */
	uint64_t apdus;
};
/* Interface number i (0-based, in attach order); PG_ENOENT past the end. */
int pg_conv_iface(struct pg_conv *c, int i, struct pg_conv_iface_info *info);
/* Number of channels ever opened (ids 1..n). */
int pg_conv_channel_count(struct pg_conv *c);

/* Prints one event as a line (or a few) of a readable transcript. */
void pg_conv_print_event(FILE *f, const struct pg_conv_event *ev);
/* A trace callback for pg_conv_set_trace(): arg is a FILE *; serialises lines. */
void pg_conv_trace_file(void *arg, const struct pg_conv_event *ev);

/*
 * The demonstration (`payguard se demo`): a simulated SE for every link type
 * in the driver table that has a card role, each served on its own UNIX
 * socket by a thread, plus PC/SC through pcscd and vpcd when a "Virtual PCD"
 * reader is present; all attached to one converter; channels between them
 * carry SELECT, ECHO, GET COUNTER and CPLC reads, printed as a transcript.
 */
struct pg_se_demo_opts {
	int pcsc;	       /* -1: when pcscd has a vpcd reader, 0: never, 1: required */
	const char *vpcd_addr; /* default tcp:127.0.0.1:35963 */
	const char *reader;    /* default "Virtual PCD 00 00" */
};
int pg_se_demo(FILE *out, const struct pg_se_demo_opts *o);

#endif
