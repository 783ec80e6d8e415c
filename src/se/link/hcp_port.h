/*
 * The host controller's end of ETSI TS 102 622 HCP over TS 102 613 SHDLC on
 * a packet stream: the message being cut into packets, the one being joined,
 * and reading one SHDLC frame. Shared by the SWP link driver's host role
 * (swp.c) and the NFC switch's simulated controller (nfcswitch/slave.c).
 */
#ifndef PG_SE_HCP_PORT_H
#define PG_SE_HCP_PORT_H

#include "hci.h"
#include "shdlc.h"

#include "payguard/stream.h"

struct hcp_port {
	struct pg_stream *s;
	int timeout_ms; /* for each frame read */
	struct hcp_tx tx;
	struct hcp_rx rx; /* rx.buf and rx.max: set by the owner */
	int have_msg;	  /* msg holds a message not yet looked at */
	struct hcp_msg msg;
	uint8_t frame[SHDLC_MAX_FRAME];
};

/* Wires the SHDLC endpoint e to port p: its output stream and the HCP callbacks. */
void pgi_hcp_port_bind(struct hcp_port *p, struct shdlc *e);
/*
 * Reads one frame. Returns 0, PG_ETIMEDOUT (nothing came), PG_EFORMAT or
 * PG_ECORRUPT (a damaged frame: the stream is flushed so the next read starts
 * on a frame boundary), or the stream's fatal error.
 */
int pgi_hcp_port_read_frame(struct hcp_port *p, struct shdlc_frame *f);

#endif
