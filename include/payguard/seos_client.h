/*
 * The SE OS client library (issue 7): the Open Mobile API's shape over the
 * daemon's UNIX socket (`payguard seos serve`): readers, sessions, basic and
 * logical channels opened by AID with SELECT's P2, transmit, close. The
 * daemon identifies the client by its socket peer (uid + executable, from
 * the kernel) and the application name declared here; ARA-M rules decide.
 * One client handle is used by one thread at a time.
 */
#ifndef PAYGUARD_SEOS_CLIENT_H
#define PAYGUARD_SEOS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

struct pg_seos_client;

struct pg_seos_reader {
	char name[64];
	int state; /* enum pg_seos_state */
};

/* Connects to the daemon at sock_path and declares app_name (may be ""). */
int pg_seos_client_connect(struct pg_seos_client **out, const char *sock_path,
			   const char *app_name);
void pg_seos_client_close(struct pg_seos_client *c);
/* The identity the daemon derived: hex SHA-256 (65 bytes) and SHA-1 (41), and its text. */
int pg_seos_client_whoami(struct pg_seos_client *c, char sha256_hex[65], char sha1_hex[41],
			  char *text, size_t text_cap);
int pg_seos_client_readers(struct pg_seos_client *c, struct pg_seos_reader *out, size_t cap,
			   size_t *n);
int pg_seos_client_open_session(struct pg_seos_client *c, const char *reader, uint32_t *session);
/*
 * Opens the basic (logical 0) or a logical channel (1) and selects aid with
 * p2 (aid_len 0: the default application). The SELECT response (data + SW)
 * goes to sel (capacity *sel_len in, length out; sel may be NULL).
 */
int pg_seos_client_open_channel(struct pg_seos_client *c, uint32_t session, int logical,
				const uint8_t *aid, size_t aid_len, uint8_t p2, uint32_t *channel,
				uint8_t *sel, size_t *sel_len);
/* Sends a C-APDU on the channel (its CLA channel bits are set by the daemon). */
int pg_seos_client_transmit(struct pg_seos_client *c, uint32_t channel, const uint8_t *capdu,
			    size_t n, uint8_t *rapdu, size_t *rlen);
int pg_seos_client_close_channel(struct pg_seos_client *c, uint32_t channel);
int pg_seos_client_close_session(struct pg_seos_client *c, uint32_t session);

#endif
