/*
 * VSE request validation (seed 6, the SEM's virtualization configuration)
 * and the socket API decoder: every field is checked before anything acts.
 */
#include "payguard/error.h"
#include "payguard/vse.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define KEY16 "404142434445464748494A4B4C4D4E4F"

static int
parse(const char *json, struct pg_vse_request *r)
{
	json_error_t e;
	json_t *j = json_loads(json, 0, &e);
	int rc;

	assert_non_null(j);
	rc = pg_vse_request_from_json(r, j);
	json_decref(j);
	return rc;
}

static void
test_good(void **state)
{
	struct pg_vse_request r;

	(void)state;
	assert_int_equal(parse("{\"name\":\"pay-1\",\"arena\":\"1M\",\"pmem\":65536,"
			       "\"applets\":[\"test\"],\"keys\":{\"master\":\"" KEY16 "\"},"
			       "\"expose\":{\"link\":\"t1\"}}",
			       &r),
			 0);
	assert_string_equal(r.name, "pay-1");
	assert_int_equal(r.arena_size, 1024 * 1024);
	assert_int_equal(r.pmem_size, 65536);
	assert_int_equal(r.n_applets, 1);
	assert_true(r.diversified);
	assert_int_equal(r.master_len, 16);
	assert_int_equal(r.keys.kvn, 0x30);
	assert_string_equal(r.expose.link, "t1");
	assert_string_equal(r.expose.listen, "");

	assert_int_equal(parse("{\"name\":\"v2\",\"arena\":\"64K\",\"pmem\":\"4K\","
			       "\"keys\":{\"enc\":\"" KEY16 "\",\"mac\":\"" KEY16
			       "\",\"dek\":\"" KEY16 "\",\"kvn\":1},\"cin\":\"0102030405060708\","
			       "\"expose\":{\"link\":\"vpcd\",\"slot\":3}}",
			       &r),
			 0);
	assert_false(r.diversified);
	assert_int_equal(r.keys.len, 16);
	assert_int_equal(r.keys.kvn, 1);
	assert_true(r.has_cin);
	assert_int_equal(r.expose.vpcd_slot, 3);

	assert_int_equal(parse("{\"name\":\"v3\",\"arena\":65536,\"pmem\":4096,"
			       "\"keys\":{\"master\":\"" KEY16 "\"},"
			       "\"expose\":{\"link\":\"ccid\",\"listen\":\"tcp:127.0.0.1:40001\"}}",
			       &r),
			 0);
	assert_string_equal(r.expose.listen, "tcp:127.0.0.1:40001");
}

static void
test_bad(void **state)
{
	static const struct {
		const char *json;
		int rc;
	} cases[] = {
#define BASE_KEYS "\"keys\":{\"master\":\"" KEY16 "\"}"
#define BASE_EX	  "\"expose\":{\"link\":\"t1\"}"
	    /* names with path characters, empty, too long, upper case */
	    {"{\"name\":\"../x\",\"arena\":\"1M\",\"pmem\":4096," BASE_KEYS "," BASE_EX "}",
	     PG_EINVAL},
	    {"{\"name\":\"a/b\",\"arena\":\"1M\",\"pmem\":4096," BASE_KEYS "," BASE_EX "}",
	     PG_EINVAL},
	    {"{\"name\":\"\",\"arena\":\"1M\",\"pmem\":4096," BASE_KEYS "," BASE_EX "}", PG_EINVAL},
	    {"{\"name\":\"Abc\",\"arena\":\"1M\",\"pmem\":4096," BASE_KEYS "," BASE_EX "}",
	     PG_EINVAL},
	    {"{\"name\":\"-abc\",\"arena\":\"1M\",\"pmem\":4096," BASE_KEYS "," BASE_EX "}",
	     PG_EINVAL},
	    {"{\"name\":\"abcdefghijabcdefghijabcdefghijabc\",\"arena\":\"1M\",\"pmem\":"
	     "4096," BASE_KEYS "," BASE_EX "}",
	     PG_ETOOBIG},
	    /* sizes */
	    {"{\"name\":\"a\",\"arena\":\"1K\",\"pmem\":4096," BASE_KEYS "," BASE_EX "}",
	     PG_ERANGE},
	    {"{\"name\":\"a\",\"arena\":\"1G\",\"pmem\":4096," BASE_KEYS "," BASE_EX "}",
	     PG_ERANGE},
	    {"{\"name\":\"a\",\"arena\":-5,\"pmem\":4096," BASE_KEYS "," BASE_EX "}", PG_ERANGE},
	    {"{\"name\":\"a\",\"arena\":\"12Q\",\"pmem\":4096," BASE_KEYS "," BASE_EX "}",
	     PG_EFORMAT},
	    {"{\"name\":\"a\",\"arena\":\"99999999999999999999\",\"pmem\":4096," BASE_KEYS
	     "," BASE_EX "}",
	     PG_ERANGE},
	    {"{\"name\":\"a\",\"arena\":\"1M\",\"pmem\":\"32M\"," BASE_KEYS "," BASE_EX "}",
	     PG_ERANGE},
	    {"{\"name\":\"a\",\"arena\":\"1M\"," BASE_KEYS "," BASE_EX "}", PG_EINVAL},
	    /* applets */
	    {"{\"name\":\"a\",\"arena\":\"1M\",\"pmem\":4096,\"applets\":[\"rootkit\"]," BASE_KEYS
	     "," BASE_EX "}",
	     PG_EINVAL},
	    {"{\"name\":\"a\",\"arena\":\"1M\",\"pmem\":4096,\"applets\":[\"test\",\"test\"]"
	     "," BASE_KEYS "," BASE_EX "}",
	     PG_EINVAL},
	    {"{\"name\":\"a\",\"arena\":\"1M\",\"pmem\":4096,\"applets\":\"test\"," BASE_KEYS
	     "," BASE_EX "}",
	     PG_EINVAL},
	    /* keys */
	    {"{\"name\":\"a\",\"arena\":\"1M\",\"pmem\":4096,\"keys\":{\"master\":\"0102\"}"
	     "," BASE_EX "}",
	     PG_EINVAL},
	    {"{\"name\":\"a\",\"arena\":\"1M\",\"pmem\":4096,\"keys\":{\"master\":\"zz\"}," BASE_EX
	     "}",
	     PG_EFORMAT},
	    {"{\"name\":\"a\",\"arena\":\"1M\",\"pmem\":4096,\"keys\":{\"enc\":\"" KEY16
	     "\"}," BASE_EX "}",
	     PG_EINVAL},
	    {"{\"name\":\"a\",\"arena\":\"1M\",\"pmem\":4096,\"keys\":{\"master\":\"" KEY16
	     "\",\"enc\":\"" KEY16 "\"}," BASE_EX "}",
	     PG_EINVAL},
	    {"{\"name\":\"a\",\"arena\":\"1M\",\"pmem\":4096,\"keys\":{\"master\":\"" KEY16
	     "\",\"kvn\":300}," BASE_EX "}",
	     PG_ERANGE},
	    {"{\"name\":\"a\",\"arena\":\"1M\",\"pmem\":4096," BASE_EX "}", PG_EINVAL},
	    /* exposure */
	    {"{\"name\":\"a\",\"arena\":\"1M\",\"pmem\":4096," BASE_KEYS
	     ",\"expose\":{\"link\":\"usb\"}}",
	     PG_EINVAL},
	    {"{\"name\":\"a\",\"arena\":\"1M\",\"pmem\":4096," BASE_KEYS
	     ",\"expose\":{\"link\":\"t0\",\"listen\":\"unix:/etc/passwd\"}}",
	     PG_EINVAL},
	    {"{\"name\":\"a\",\"arena\":\"1M\",\"pmem\":4096," BASE_KEYS
	     ",\"expose\":{\"link\":\"t0\",\"listen\":\"tcp:0.0.0.0:4000\"}}",
	     PG_EINVAL},
	    {"{\"name\":\"a\",\"arena\":\"1M\",\"pmem\":4096," BASE_KEYS
	     ",\"expose\":{\"link\":\"t0\",\"listen\":\"tcp:127.0.0.1:80\"}}",
	     PG_EINVAL},
	    {"{\"name\":\"a\",\"arena\":\"1M\",\"pmem\":4096," BASE_KEYS
	     ",\"expose\":{\"link\":\"vpcd\",\"slot\":16}}",
	     PG_ERANGE},
	    {"{\"name\":\"a\",\"arena\":\"1M\",\"pmem\":4096," BASE_KEYS
	     ",\"expose\":{\"link\":\"vpcd\"}}",
	     PG_ERANGE},
	    /* unknown fields, wrong types */
	    {"{\"name\":\"a\",\"arena\":\"1M\",\"pmem\":4096,\"path\":\"/x\"," BASE_KEYS "," BASE_EX
	     "}",
	     PG_EINVAL},
	    {"[1,2]", PG_EFORMAT},
	};
	struct pg_vse_request r;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = parse(cases[i].json, &r);

		if (rc != cases[i].rc)
			fail_msg("case %zu: got %d want %d (%s)", i, rc, cases[i].rc,
				 cases[i].json);
		assert_string_equal(r.name, ""); /* wiped on failure */
	}
}

static void
test_api_decode(void **state)
{
	struct pg_vse_api_req q;
	const char *m;

	(void)state;
	m = "{\"op\":\"list\"}";
	assert_int_equal(pg_vse_api_decode(&q, (const uint8_t *)m, strlen(m)), 0);
	assert_int_equal(q.op, PG_VSE_OP_LIST);
	m = "{\"op\":\"destroy\",\"name\":\"x1\"}";
	assert_int_equal(pg_vse_api_decode(&q, (const uint8_t *)m, strlen(m)), 0);
	assert_int_equal(q.op, PG_VSE_OP_DESTROY);
	assert_string_equal(q.name, "x1");
	m = "{\"op\":\"destroy\",\"name\":\"../x1\"}";
	assert_int_equal(pg_vse_api_decode(&q, (const uint8_t *)m, strlen(m)), PG_EINVAL);
	m = "{\"op\":\"reboot\"}";
	assert_int_equal(pg_vse_api_decode(&q, (const uint8_t *)m, strlen(m)), PG_EINVAL);
	m = "{\"op\":\"list\",\"op\":\"create\"}";
	assert_int_equal(pg_vse_api_decode(&q, (const uint8_t *)m, strlen(m)), PG_EFORMAT);
	m = "{\"op\":\"create\"}";
	assert_int_equal(pg_vse_api_decode(&q, (const uint8_t *)m, strlen(m)), PG_EFORMAT);
	m = "{\"op\":\"show\",\"name\":\"a\\u0000b\"}"; /* NUL inside a name: refused by the parser
							 */
	assert_int_equal(pg_vse_api_decode(&q, (const uint8_t *)m, strlen(m)), PG_EFORMAT);
	m = "not json";
	assert_int_equal(pg_vse_api_decode(&q, (const uint8_t *)m, strlen(m)), PG_EFORMAT);
}

static void
test_sizes_and_keys(void **state)
{
	struct pg_vse_request r;
	uint64_t v;
	json_t *j;

	(void)state;
	assert_int_equal(pg_vse_parse_size("64KiB", &v), 0);
	assert_int_equal(v, 65536);
	assert_int_equal(pg_vse_parse_size("2M", &v), 0);
	assert_int_equal(v, 2 * 1024 * 1024);
	assert_int_equal(pg_vse_parse_size("", &v), PG_EFORMAT);
	assert_int_equal(pg_vse_parse_size("1KK", &v), PG_EFORMAT);
	/* Diversified keys need the CIN; two CINs give two key sets. */
	assert_int_equal(
	    parse("{\"name\":\"d\",\"arena\":\"1M\",\"pmem\":4096," BASE_KEYS "," BASE_EX "}", &r),
	    0);
	assert_int_equal(pg_vse_request_resolve_keys(&r), PG_ESTATE);
	memcpy(r.cin, "PGVS\0\0\0\1", 8);
	r.has_cin = 1;
	assert_int_equal(pg_vse_request_resolve_keys(&r), 0);
	{
		struct pg_scp03_keys k1 = r.keys;

		r.cin[7] = 2;
		assert_int_equal(pg_vse_request_resolve_keys(&r), 0);
		assert_int_equal(r.keys.len, 16);
		assert_memory_not_equal(k1.enc, r.keys.enc, 16);
	}
	/* Display JSON never carries keys; storage JSON round-trips. */
	j = pg_vse_request_to_json(&r, 0);
	assert_null(json_object_get(json_object_get(j, "keys"), "master"));
	assert_non_null(json_object_get(json_object_get(j, "keys"), "kcv_enc"));
	json_decref(j);
	j = pg_vse_request_to_json(&r, 1);
	{
		struct pg_vse_request r2;

		assert_int_equal(pg_vse_request_from_json(&r2, j), 0);
		assert_memory_equal(r2.master, r.master, 16);
		assert_memory_equal(r2.cin, r.cin, 8);
	}
	json_decref(j);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good),
	    cmocka_unit_test(test_bad),
	    cmocka_unit_test(test_api_decode),
	    cmocka_unit_test(test_sizes_and_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
