/*
 * AES-CMAC (NIST SP 800-38B) over OpenSSL's EVP_MAC "CMAC", and the adapter
 * that turns OpenSSL's error queue into the project's error detail
 * (include/payguard/cmac.h). The MAC algorithm is fetched once: a fetch per
 * call would dominate the cost of a short SCP03 command.
 */
#include "payguard/cmac.h"

#include "payguard/error.h"
#include "payguard/log.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>

static EVP_MAC *cmac_alg;
static pthread_once_t cmac_once = PTHREAD_ONCE_INIT;

static void
cmac_fetch(void)
{
	cmac_alg = EVP_MAC_fetch(NULL, "CMAC", NULL);
}

int
pg_openssl_error(const char *subsys, const char *what)
{
	unsigned long e = ERR_get_error();
	char msg[256];

	if (!e) {
		pg_error(PG_ECRYPTO, subsys, "%s", what);
	} else {
		ERR_error_string_n(e, msg, sizeof(msg));
		pg_error(PG_ECRYPTO, subsys, "%s: %s", what, msg);
	}
	ERR_clear_error();
	return PG_ECRYPTO;
}

static const char *
cbc_name(size_t key_len)
{
	switch (key_len) {
	case 16:
		return "AES-128-CBC";
	case 24:
		return "AES-192-CBC";
	case 32:
		return "AES-256-CBC";
	}
	return NULL;
}

int
pg_aes_cmac_parts(const uint8_t *key, size_t key_len, const struct pg_cmac_part *parts, int nparts,
		  uint8_t out[16])
{
	const char *cipher = cbc_name(key_len);
	EVP_MAC_CTX *ctx;
	OSSL_PARAM params[2];
	size_t outl = 0;
	int ok;

	if (!cipher)
		return pg_error(PG_EINVAL, "crypto", "AES-CMAC: a key of %zu bytes (16, 24 or 32)",
				key_len);
	pthread_once(&cmac_once, cmac_fetch);
	if (!cmac_alg)
		return pg_openssl_error("crypto", "AES-CMAC not available");
	ctx = EVP_MAC_CTX_new(cmac_alg);
	if (!ctx)
		return pg_openssl_error("crypto", "AES-CMAC");
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, (char *)cipher, 0);
	params[1] = OSSL_PARAM_construct_end();
	ok = EVP_MAC_init(ctx, key, key_len, params) == 1;
	for (int i = 0; ok && i < nparts; i++)
		if (parts[i].n)
			ok = EVP_MAC_update(ctx, parts[i].p, parts[i].n) == 1;
	ok = ok && EVP_MAC_final(ctx, out, &outl, 16) == 1 && outl == 16;
	EVP_MAC_CTX_free(ctx);
	return ok ? 0 : pg_openssl_error("crypto", "AES-CMAC");
}

int
pg_aes_cmac(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t n, uint8_t out[16])
{
	struct pg_cmac_part p = {msg, n};

	return pg_aes_cmac_parts(key, key_len, &p, 1, out);
}
