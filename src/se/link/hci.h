/*
 * ETSI TS 102 622 HCI: HCP packets (CB + pipe id), HCP messages (type +
 * instruction), fragmentation into the data link's payload and reassembly,
 * the administration gate and the APDU gate (clause 12) identifiers.
 */
#ifndef PG_SE_HCI_H
#define PG_SE_HCI_H

#include <stddef.h>
#include <stdint.h>

#define HCP_CB	      0x80 /* chaining bit: 1 = last (or only) fragment */
#define HCP_PIPE_MASK 0x7F
#define HCP_TYPE_CMD  0
#define HCP_TYPE_EVT  1
#define HCP_TYPE_RSP  2
#define HCP_HDR(t, i) ((uint8_t)((t) << 6 | ((i)&0x3F)))

/* Host identifiers (102 622 4.4) */
#define HCI_HOST_CONTROLLER 0x00
#define HCI_HOST_TERMINAL   0x01
#define HCI_HOST_UICC	    0x02
/* Static pipes (4.6) */
#define HCI_PIPE_LINK_MGMT 0x00
#define HCI_PIPE_ADMIN	   0x01
#define HCI_PIPE_DYN_FIRST 0x02
#define HCI_PIPE_DYN_LAST  0x6F
/* Gates */
#define HCI_GATE_ADMIN	  0x00
#define HCI_GATE_APDU	  0x30 /* 102 622 clause 12.2 (server APDU host) */
#define HCI_GATE_APDU_APP 0x31 /* APDU application gate: GID chosen by the client host */

/* Generic commands (6.1.2) and administration commands (6.1.3) */
#define ANY_SET_PARAMETER	    0x01
#define ANY_GET_PARAMETER	    0x02
#define ANY_OPEN_PIPE		    0x03
#define ANY_CLOSE_PIPE		    0x04
#define ADM_CREATE_PIPE		    0x10
#define ADM_DELETE_PIPE		    0x11
#define ADM_NOTIFY_PIPE_CREATED	    0x12
#define ADM_NOTIFY_PIPE_DELETED	    0x13
#define ADM_CLEAR_ALL_PIPE	    0x14
#define ADM_NOTIFY_ALL_PIPE_CLEARED 0x15
/* Responses (6.1.1) */
#define ANY_OK			 0x00
#define ANY_E_NOT_CONNECTED	 0x01
#define ANY_E_CMD_PAR_UNKNOWN	 0x02
#define ANY_E_NOK		 0x03
#define ADM_E_NO_PIPES_AVAILABLE 0x04
#define ANY_E_REG_PAR_UNKNOWN	 0x05
#define ANY_E_PIPE_NOT_OPENED	 0x06
#define ANY_E_CMD_NOT_SUPPORTED	 0x07
#define ANY_E_INHIBITED		 0x08
#define ANY_E_TIMEOUT		 0x09
#define ANY_E_REG_ACCESS_DENIED	 0x0A
#define ANY_E_PIPE_ACCESS_DENIED 0x0B
/* APDU gate events (12.2.2) and APDU application gate events (12.3.2) */
#define EVT_C_APDU		    0x10
#define EVT_ABORT		    0x11
#define EVT_END_OF_APDU_TRANSACTION 0x21
#define EVT_R_APDU		    0x10
#define EVT_WTX			    0x11
#define EVT_ATR			    0x12
/* APDU gate registry (12.2.3) */
#define APDU_REG_MAX_C_APDU_SIZE 0x01
#define APDU_REG_MAX_WAIT_TIME	 0x02

/* Outgoing message being cut into HCP packets of at most `mtu` bytes. */
struct hcp_tx {
	const uint8_t *data;
	size_t len, off;
	uint8_t pipe, hdr;
	int first, active;
	size_t mtu;
};

/* Queues one message; PG_EBUSY if the previous one is not fully cut yet. data must stay valid. */
int pgi_hcp_tx_start(struct hcp_tx *t, uint8_t pipe, uint8_t hdr, const uint8_t *data, size_t len);
/* Writes the next HCP packet into pkt (>= mtu bytes); returns its length, 0 when done. */
int pgi_hcp_tx_next(struct hcp_tx *t, uint8_t *pkt);

/* Reassembly of one message from HCP packets; buf holds [message header][data]. */
struct hcp_rx {
	uint8_t *buf;
	size_t len, max;
	uint8_t pipe;
	int active;
};

struct hcp_msg {
	uint8_t pipe, type, instr;
	const uint8_t *data; /* valid until the next pgi_hcp_rx_feed */
	size_t len;
};

/*
 * Feeds one HCP packet. Returns 1 and fills *m when a message is complete,
 * 0 when more fragments are needed, PG_EFORMAT/PG_ETOOBIG on a bad packet
 * (the partial message is dropped).
 */
int pgi_hcp_rx_feed(struct hcp_rx *r, const uint8_t *pkt, size_t n, struct hcp_msg *m);
void pgi_hcp_rx_reset(struct hcp_rx *r);

#endif
