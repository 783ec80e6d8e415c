/*
 * GlobalPlatform Secure Channel Protocol '03' (GP Card Specification v2.3,
 * Amendment D): AES key derivation (NIST SP 800-108 counter mode with
 * AES-CMAC), mutual authentication, command and response protection, and
 * PUT KEY key blocks, for BOTH the host (off-card entity) and the card
 * (security domain). Crypto through OpenSSL; keys compared in constant time
 * and wiped when a session ends.
 *
 * Host flow:  init_update -> [card] -> host_auth -> [card] -> host_auth_done,
 *             then host_wrap -> [card] -> host_unwrap per command.
 * Card flow:  card_process for INITIALIZE UPDATE / EXTERNAL AUTHENTICATE,
 *             card_unwrap -> (the command's own handler) -> card_wrap for the rest.
 * One struct pg_scp03 per logical channel and role; memset 0 is the idle state.
 */
#ifndef PAYGUARD_SCP03_H
#define PAYGUARD_SCP03_H

#include <stddef.h>
#include <stdint.h>

/* Security levels (P1 of EXTERNAL AUTHENTICATE, Amd D table 5-3). */
#define PG_SCP03_SL_CMAC 0x01
#define PG_SCP03_SL_CDEC 0x02 /* only with C-MAC: level 0x03 */
#define PG_SCP03_SL_RMAC 0x10
#define PG_SCP03_SL_RENC 0x20 /* only with R-MAC and C-DECRYPTION: level 0x33 */

/* "i" implementation parameter bits (Amd D table 5-1). */
#define PG_SCP03_I_S16	  0x01 /* S16 mode: 16-byte challenges, cryptograms and MACs */
#define PG_SCP03_I_PSEUDO 0x10 /* pseudo-random card challenge from the sequence counter */
#define PG_SCP03_I_RMAC	  0x20 /* R-MAC supported */
#define PG_SCP03_I_RENC	  0x40 /* R-ENCRYPTION supported */

/* A static key set: K-ENC, K-MAC, K-DEK of len 16, 24 or 32 bytes (AES-128/192/256). */
struct pg_scp03_keys {
	uint8_t enc[32], mac[32], dek[32];
	size_t len;
	uint8_t kvn; /* key version number (P1 of INITIALIZE UPDATE) */
};

/* Session state of one channel; opaque in use, zero-initialised = no session. */
struct pg_scp03 {
	uint8_t s_enc[32], s_mac[32], s_rmac[32];
	uint8_t chain[16]; /* MAC chaining value */
	uint8_t host_ch[16], card_ch[16];
	uint8_t kvn, i_param, sl;
	uint8_t ch_len;	      /* 8 (S8) or 16 (S16) */
	uint8_t state;	      /* enum in scp03.c */
	uint8_t last_wrapped; /* card: the current command came in secure messaging */
	size_t key_len;
	uint32_t enc_counter; /* Amd D 6.2.6 encryption counter */
};

/* The card side's configuration and persistent values (one key set). */
struct pg_scp03_card {
	struct pg_scp03_keys keys;
	uint8_t div_data[10]; /* key diversification data returned by INITIALIZE UPDATE */
	uint8_t i_param;      /* e.g. 0x70; PG_SCP03_I_S16 adds S16 support */
	uint32_t seq;	      /* 24-bit sequence counter: last value used; persist after IU */
	uint8_t aid[16];      /* AID of the security domain (pseudo-random challenge context) */
	size_t aid_len;
};

/* Parsed INITIALIZE UPDATE response data (without SW); pointers into the input. */
struct pg_scp03_iu_resp {
	const uint8_t *div_data; /* 10 bytes */
	uint8_t kvn, scp, i_param;
	const uint8_t *card_challenge, *card_cryptogram; /* ch_len bytes each */
	size_t ch_len;
	int has_seq;
	uint32_t seq;
};

/* ---- primitives (exposed for test vectors and the diversification helper) ---- */

/*
 * Amd D 4.1.5 data derivation: AES-CMAC PRF in SP 800-108 counter mode with
 * 11 zero bytes || constant || 00 || L (bits, 2 bytes) || i || context.
 * out_len (bytes) <= 64, ctx_len <= 64.
 */
int pg_scp03_kdf(const uint8_t *key, size_t key_len, uint8_t constant, const uint8_t *ctx,
		 size_t ctx_len, uint8_t *out, size_t out_len);
/* Key check value: the first 3 bytes of AES-ECB(key, 16 x 01) (GP 2.3 B.6). */
int pg_scp03_kcv(const uint8_t *key, size_t key_len, uint8_t kcv[3]);

/*
 * payguard's own diversification (not a GlobalPlatform-standard scheme): each
 * static key of `master` is K = pg_scp03_kdf(master, C, |master|, "PGDIV" ||
 * div) with C = 0x01 (ENC), 0x02 (MAC), 0x03 (DEK). div: the card's CIN or its
 * 10-byte key diversification data (1..48 bytes). See docs/se-scp03.md.
 */
int pg_scp03_diversify(const uint8_t *master, size_t len, const uint8_t *div, size_t div_len,
		       uint8_t kvn, struct pg_scp03_keys *out);

/* Parses INITIALIZE UPDATE response data (SW removed); PG_EFORMAT on a bad layout. */
int pg_scp03_parse_iu_response(struct pg_scp03_iu_resp *r, const uint8_t *p, size_t n);

/* ---- host (off-card entity) ---- */

/*
 * Builds INITIALIZE UPDATE (80 50 kvn 00 Lc challenge 00). host_challenge may
 * be NULL (random); ch_len 8 (S8) or 16 (S16). Returns the APDU length.
 */
int pg_scp03_host_init_update(struct pg_scp03 *s, uint8_t kvn, const uint8_t *host_challenge,
			      size_t ch_len, uint8_t *apdu, size_t cap);
/*
 * Takes the card's INITIALIZE UPDATE response (data + SW), derives the session
 * keys, checks the card cryptogram (PG_EAUTH if wrong), and builds EXTERNAL
 * AUTHENTICATE at security level sl. Returns the APDU length.
 */
int pg_scp03_host_auth(struct pg_scp03 *s, const struct pg_scp03_keys *k, const uint8_t *resp,
		       size_t n, uint8_t sl, uint8_t *apdu, size_t cap);
/* Takes the EXTERNAL AUTHENTICATE response; 0 and the session is open on 9000. */
int pg_scp03_host_auth_done(struct pg_scp03 *s, const uint8_t *resp, size_t n);
/* Protects a plain C-APDU at the session's level. Returns the wrapped length. */
int pg_scp03_host_wrap(struct pg_scp03 *s, const uint8_t *capdu, size_t n, uint8_t *out,
		       size_t cap);
/*
 * Checks and strips R-MAC / R-ENCRYPTION of a response (data + SW). Returns
 * the plain length (data + SW). PG_EAUTH (session closed) on a bad R-MAC.
 * out may be rapdu itself.
 */
int pg_scp03_host_unwrap(struct pg_scp03 *s, const uint8_t *rapdu, size_t n, uint8_t *out,
			 size_t cap);

/* ---- card (security domain) ---- */

/*
 * Handles INITIALIZE UPDATE (INS 50) and EXTERNAL AUTHENTICATE (INS 82):
 * writes the whole response (data + SW) and returns its length. Refusals are
 * answered with a status word (6985 replayed/out-of-order EA, 6300 wrong host
 * cryptogram, 6982 bad C-MAC, 6A88 unknown key version, ...), never a crash.
 * card->seq changes on INITIALIZE UPDATE: the caller persists it.
 */
int pg_scp03_card_process(struct pg_scp03 *s, struct pg_scp03_card *card, const uint8_t *capdu,
			  size_t n, uint8_t *resp, size_t cap);
/*
 * Verifies and strips the C-MAC (and C-DECRYPTION) of a command received on
 * this channel; writes the plain C-APDU (CLA without the secure messaging bit)
 * and returns its length. On refusal returns a negative code and sets *sw to
 * the status word to answer (6982: bad or missing C-MAC; the session is closed).
 * capdu and out must not overlap.
 */
int pg_scp03_card_unwrap(struct pg_scp03 *s, const uint8_t *capdu, size_t n, uint8_t *out,
			 size_t cap, uint16_t *sw);
/*
 * Protects the response to the command last unwrapped (R-ENCRYPTION, R-MAC as
 * the level says; error status words go out bare). Returns the length.
 */
int pg_scp03_card_wrap(struct pg_scp03 *s, const uint8_t *data, size_t n, uint16_t sw, uint8_t *out,
		       size_t cap);
/*
 * Handles a PUT KEY for the SCP03 key set that pg_scp03_card_unwrap just
 * unwrapped on session s (6982 unless it came C-MACed in an open session):
 * checks P1 (current kvn or 0), decrypts the keys with the current K-DEK,
 * checks the KCVs, replaces card->keys (the caller persists them) and writes
 * the response (kvn || 3 KCVs || 9000, or a bare error SW). Returns its length.
 */
int pg_scp03_card_put_key(const struct pg_scp03 *s, struct pg_scp03_card *card,
			  const uint8_t *capdu, size_t n, uint8_t *resp, size_t cap);

/* True when mutual authentication completed on this channel. */
int pg_scp03_is_open(const struct pg_scp03 *s);
/* Ends the session and wipes its keys. */
void pg_scp03_close(struct pg_scp03 *s);

/* ---- PUT KEY key blocks (GP 2.3 11.8, Amd D 7.2) ---- */

/*
 * Builds a plain PUT KEY (80 D8 P1 81 Lc kvn' {88 L Lk E(key) 03 KCV}x3 00)
 * replacing key version old_kvn (0: new key set) by nk, keys encrypted with
 * AES-CBC (zero ICV) under dek. Wrap it with pg_scp03_host_wrap. Returns the length.
 */
int pg_scp03_put_key_build(const uint8_t *dek, size_t dek_len, uint8_t old_kvn,
			   const struct pg_scp03_keys *nk, uint8_t *apdu, size_t cap);
/* Parses and decrypts PUT KEY data (kvn' + three AES key blocks); checks the KCVs. */
int pg_scp03_put_key_parse(const uint8_t *dek, size_t dek_len, const uint8_t *data, size_t n,
			   struct pg_scp03_keys *nk);
/* Checks a PUT KEY response's data (kvn || KCV x3) against the keys sent. */
int pg_scp03_put_key_check(const struct pg_scp03_keys *nk, const uint8_t *data, size_t n);

#endif
