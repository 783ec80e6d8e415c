/*
 * The SE OS client protocol (private to src/se/seos and its fuzz harness):
 * frames on a UNIX stream socket, modelled on the Open Mobile API's
 * SEService / Reader / Session / Channel calls.
 *   request:  u32 len | u8 op | u32 id | payload          (len counts op..end)
 *   response: u32 len | u8 op|0x80 | u32 id | i32 status | payload
 * status is 0 or a negative PG_E code; an error's payload is its message.
 */
#ifndef PG_SE_SEOS_PROTO_H
#define PG_SE_SEOS_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PG_SEOS_FRAME_MAX (9 + 4 + 65544u) /* header + handle + the longest C-APDU */
#define PG_SEOS_NAME_MAX  63

enum {
	PG_SEOS_OP_HELLO = 1,	     /* name: the client's declared application name */
	PG_SEOS_OP_READERS = 2,	     /* -> u16 n, n x { u8 state, u8 len, name } */
	PG_SEOS_OP_OPEN_SESSION = 3, /* name -> u32 session */
	PG_SEOS_OP_OPEN_CHANNEL =
	    4, /* u32 session, u8 logical, u8 p2, u8 aid_len, aid -> u32 ch, select response */
	PG_SEOS_OP_TRANSMIT = 5,      /* u32 channel, C-APDU -> R-APDU */
	PG_SEOS_OP_CLOSE_CHANNEL = 6, /* u32 channel */
	PG_SEOS_OP_CLOSE_SESSION = 7, /* u32 session */
	PG_SEOS_OP_WHOAMI = 8,	      /* -> sha1 (20) | sha256 (32) | identity text */
	PG_SEOS_OP_MAX = 8,
};

struct pg_seos_req {
	uint8_t op;
	uint32_t id;
	char name[PG_SEOS_NAME_MAX + 1];
	uint32_t handle;
	uint8_t logical, p2;
	uint8_t aid[16];
	size_t aid_len;
	const uint8_t *apdu;
	size_t apdu_len;
};

/* Decodes one request frame body (after the u32 length). PG_EFORMAT with a detail. */
int pgi_seos_req_decode(struct pg_seos_req *r, const uint8_t *p, size_t n);
/* Reads one frame (length + body) into buf (cap >= PG_SEOS_FRAME_MAX); returns the body length. */
int pgi_seos_frame_read(int fd, uint8_t *buf, size_t cap);
/* Writes one frame: hdr (op, id, [status]) then payload parts. */
int pgi_seos_frame_write(int fd, uint8_t op, uint32_t id, int response, int32_t status,
			 const void *p1, size_t n1, const void *p2, size_t n2);

#endif
