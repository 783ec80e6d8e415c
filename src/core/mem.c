/* Secret-safe memory helpers: wipe and constant-time compare (via OpenSSL). */
#include "payguard/mem.h"

#include <openssl/crypto.h>

void
pg_memzero(void *p, size_t n)
{
	if (p && n)
		OPENSSL_cleanse(p, n);
}

int
pg_ct_equal(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}
