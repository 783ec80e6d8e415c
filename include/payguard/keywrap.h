/*
 * Keys at rest: AES key wrap (RFC 3394, and RFC 5649 with padding) through
 * OpenSSL's EVP wrap ciphers, and the data directory's key-encryption key
 * (DIR/kek: 32 random bytes, 0600) that every key kept in the store is
 * wrapped under, so a copy of the database alone holds no usable key.
 */
#ifndef PAYGUARD_KEYWRAP_H
#define PAYGUARD_KEYWRAP_H

#include <stddef.h>
#include <stdint.h>

#define PG_KEK_LEN    32 /* AES-256 key-encryption key */
#define PG_KW_MAX_KEY 64 /* largest key material wrapped */
#define PG_KW_MAX_OUT (PG_KW_MAX_KEY + 16)

/*
 * Wraps n bytes of key material under kek. pad = 0: RFC 3394 (n a multiple
 * of 8, at least 16; out is n + 8 bytes); pad = 1: RFC 5649 (1..PG_KW_MAX_KEY
 * bytes; out is n rounded up to 8, plus 8). out has room for PG_KW_MAX_OUT.
 */
int pg_kw_wrap(const uint8_t kek[PG_KEK_LEN], int pad, const uint8_t *in, size_t n, uint8_t *out,
	       size_t *outlen);
/*
 * Unwraps and checks the integrity value; PG_ECRYPTO (nothing written to
 * out that stays) if the wrapped key was altered or wrapped under another
 * KEK. out has room for PG_KW_MAX_OUT bytes.
 */
int pg_kw_unwrap(const uint8_t kek[PG_KEK_LEN], int pad, const uint8_t *in, size_t n, uint8_t *out,
		 size_t *outlen);

/*
 * The key-encryption key DIR/kek: read if it exists, else made (32 bytes
 * from RAND_bytes, written to a new file with O_EXCL and linked into place,
 * so a concurrent reader never sees it half-written). Refused (PG_EPERM)
 * when it is a symbolic link, not a regular file, or open to group or
 * others (with the chmod to run); PG_ECORRUPT when it is not 32 bytes.
 */
int pg_kek_load(const char *dir, uint8_t kek[PG_KEK_LEN]);

#endif
