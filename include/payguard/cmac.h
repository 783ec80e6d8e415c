/*
 * AES-CMAC (NIST SP 800-38B; RFC 4493 for AES-128): the project's one
 * implementation, a small adapter over OpenSSL's EVP_MAC "CMAC" (fetched
 * once per process). SCP03 (key derivation and C-MAC/R-MAC, GP 2.3
 * Amendment D) and the card runtime's applets use it. A failure returns
 * PG_ECRYPTO with OpenSSL's own message (ERR_get_error) in pg_last_error().
 */
#ifndef PAYGUARD_CMAC_H
#define PAYGUARD_CMAC_H

#include <stddef.h>
#include <stdint.h>

/* One piece of the message; the MAC is over the pieces in order. */
struct pg_cmac_part {
	const uint8_t *p;
	size_t n;
};

/* AES-CMAC under a 16-, 24- or 32-byte key over the concatenated parts. */
int pg_aes_cmac_parts(const uint8_t *key, size_t key_len, const struct pg_cmac_part *parts,
		      int nparts, uint8_t out[16]);
/* The same over one message. */
int pg_aes_cmac(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t n, uint8_t out[16]);

/*
 * The OpenSSL error adapter: records "<what>: <OpenSSL's first queued error>"
 * (or `what` alone when the queue is empty) as the thread's last error,
 * empties OpenSSL's queue and returns PG_ECRYPTO.
 */
int pg_openssl_error(const char *subsys, const char *what);

#endif
