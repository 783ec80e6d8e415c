/*
 * The core's AES-CMAC adapter (include/payguard/cmac.h, issue 16 item 5):
 * RFC 4493 (AES-128) and NIST SP 800-38B appendix D (AES-192, AES-256)
 * examples, one message split in parts, and the error adapter carrying
 * OpenSSL's own message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "payguard/cmac.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/log.h"

static const char msg_hex[] = "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
			      "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710";

static void
check(const char *key_hex, size_t mlen, const char *want_hex)
{
	uint8_t key[32], msg[64], mac[16], want[16];
	int kl = pg_hex_decode(key, sizeof(key), key_hex);

	assert_true(kl > 0);
	assert_int_equal(pg_hex_decode(msg, sizeof(msg), msg_hex), 64);
	assert_int_equal(pg_hex_decode(want, sizeof(want), want_hex), 16);
	assert_int_equal(pg_aes_cmac(key, (size_t)kl, msg, mlen, mac), 0);
	assert_memory_equal(mac, want, 16);
	/* the same message in uneven parts, an empty one among them */
	if (mlen >= 21) {
		struct pg_cmac_part p[4] = {
		    {msg, 3}, {msg + 3, 0}, {msg + 3, 17}, {msg + 20, mlen - 20}};

		memset(mac, 0, sizeof(mac));
		assert_int_equal(pg_aes_cmac_parts(key, (size_t)kl, p, 4, mac), 0);
		assert_memory_equal(mac, want, 16);
	}
}

static void
test_rfc4493_aes128(void **state)
{
	static const char k[] = "2b7e151628aed2a6abf7158809cf4f3c";

	(void)state;
	check(k, 0, "bb1d6929e95937287fa37d129b756746");
	check(k, 16, "070a16b46b4d4144f79bdd9dd04a287c");
	check(k, 40, "dfa66747de9ae63030ca32611497c827");
	check(k, 64, "51f0bebf7e3b9d92fc49741779363cfe");
}

static void
test_sp800_38b_aes192_aes256(void **state)
{
	static const char k192[] = "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b";
	static const char k256[] =
	    "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4";

	(void)state;
	check(k192, 0, "d17ddf46adaacde531cac483de7a9367");
	check(k192, 64, "a1d5df0eed790f794d77589659f39a11");
	check(k256, 0, "028962f61b7bf89efc6b551f4667d983");
	check(k256, 16, "28a7023f452e8f82bd4bf28d8c37c35c");
	check(k256, 64, "e1992190549f6ed5696a2c056c315410");
}

static void
test_errors(void **state)
{
	uint8_t key[20] = {0}, mac[16];
	EVP_MAC *m;

	(void)state;
	/* a key AES does not take: refused with its length, nothing computed */
	assert_int_equal(pg_aes_cmac(key, sizeof(key), key, 4, mac), PG_EINVAL);
	assert_non_null(strstr(pg_last_error(), "20 bytes"));
	/* the adapter reports what OpenSSL itself queued, then empties the queue */
	m = EVP_MAC_fetch(NULL, "NO-SUCH-MAC", NULL);
	assert_null(m);
	assert_int_equal(pg_openssl_error("test", "fetch"), PG_ECRYPTO);
	assert_non_null(strstr(pg_last_error(), "fetch: error:"));
	assert_int_equal(pg_openssl_error("test", "nothing queued"), PG_ECRYPTO);
	assert_string_equal(pg_last_error(), "nothing queued");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rfc4493_aes128),
	    cmocka_unit_test(test_sp800_38b_aes192_aes256),
	    cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
