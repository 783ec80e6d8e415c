/*
 * The SE OS client protocol decoder (src/se/seos/proto.h): every op's
 * accepted shape and the refusals (unknown op, bad lengths, AIDs of 1..4 or
 * 17 bytes, non-printable names, payload where none belongs), and a frame
 * round trip over a socketpair.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/error.h"
#include "se/seos/proto.h"

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static size_t
req(uint8_t *b, uint8_t op, const void *p, size_t n)
{
	b[0] = op;
	b[1] = 0;
	b[2] = 0;
	b[3] = 0x12;
	b[4] = 0x34;
	memcpy(b + 5, p, n);
	return 5 + n;
}

static void
test_decode(void **state)
{
	struct pg_seos_req r;
	uint8_t b[128];
	const uint8_t oc[] = {0, 0, 0, 1, 1, 0x0C, 7, 0xA0, 0, 0, 0, 4, 0x10, 0x10};
	const uint8_t tx[] = {0, 0, 0, 2, 0x80, 0x01, 0x00, 0x00};
	size_t n;

	(void)state;
	n = req(b, PG_SEOS_OP_HELLO, "wallet", 6);
	assert_int_equal(pgi_seos_req_decode(&r, b, n), 0);
	assert_string_equal(r.name, "wallet");
	assert_int_equal(r.id, 0x1234);
	n = req(b, PG_SEOS_OP_OPEN_CHANNEL, oc, sizeof(oc));
	assert_int_equal(pgi_seos_req_decode(&r, b, n), 0);
	assert_int_equal(r.handle, 1);
	assert_int_equal(r.logical, 1);
	assert_int_equal(r.p2, 0x0C);
	assert_int_equal(r.aid_len, 7);
	n = req(b, PG_SEOS_OP_TRANSMIT, tx, sizeof(tx));
	assert_int_equal(pgi_seos_req_decode(&r, b, n), 0);
	assert_int_equal(r.apdu_len, 4);
	assert_ptr_equal(r.apdu, b + 9);

	/* Refusals. */
	n = req(b, 99, "", 0);
	assert_int_equal(pgi_seos_req_decode(&r, b, n), PG_EFORMAT);
	n = req(b, PG_SEOS_OP_OPEN_SESSION, "", 0);
	assert_int_equal(pgi_seos_req_decode(&r, b, n), PG_EFORMAT);
	n = req(b, PG_SEOS_OP_HELLO, "a\nb", 3);
	assert_int_equal(pgi_seos_req_decode(&r, b, n), PG_EFORMAT);
	n = req(b, PG_SEOS_OP_READERS, "x", 1);
	assert_int_equal(pgi_seos_req_decode(&r, b, n), PG_EFORMAT);
	n = req(b, PG_SEOS_OP_TRANSMIT, tx, 7); /* header incomplete */
	assert_int_equal(pgi_seos_req_decode(&r, b, n), PG_ETRUNC);
	uint8_t bad[sizeof(oc)];
	memcpy(bad, oc, sizeof(oc));
	bad[6] = 3; /* AID of 3 bytes */
	n = req(b, PG_SEOS_OP_OPEN_CHANNEL, bad, 10);
	assert_int_equal(pgi_seos_req_decode(&r, b, n), PG_EFORMAT);
	bad[6] = 7;
	n = req(b, PG_SEOS_OP_OPEN_CHANNEL, bad, sizeof(bad) - 1); /* length mismatch */
	assert_int_equal(pgi_seos_req_decode(&r, b, n), PG_EFORMAT);
	bad[4] = 2; /* channel kind */
	n = req(b, PG_SEOS_OP_OPEN_CHANNEL, bad, sizeof(bad));
	assert_int_equal(pgi_seos_req_decode(&r, b, n), PG_EFORMAT);
	n = req(b, PG_SEOS_OP_CLOSE_CHANNEL, "\0\0\0", 3);
	assert_int_equal(pgi_seos_req_decode(&r, b, n), PG_EFORMAT);
	assert_int_equal(pgi_seos_req_decode(&r, b, 4), PG_ETRUNC);
}

static void
test_frames(void **state)
{
	int sv[2];
	uint8_t buf[PG_SEOS_FRAME_MAX], big[8];
	int n;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(pgi_seos_frame_write(sv[0], 5, 77, 1, PG_EPERM, "no", 2, "!", 1), 0);
	n = pgi_seos_frame_read(sv[1], buf, sizeof(buf));
	assert_int_equal(n, 9 + 3);
	assert_int_equal(buf[0], 0x85);
	assert_memory_equal(buf + 9, "no!", 3);
	/* A frame announcing more than the limit is refused before reading it. */
	big[0] = 0x7F;
	big[1] = big[2] = big[3] = 0xFF;
	assert_int_equal(write(sv[0], big, 4), 4);
	assert_int_equal(pgi_seos_frame_read(sv[1], buf, sizeof(buf)), PG_ETOOBIG);
	close(sv[0]);
	assert_int_equal(pgi_seos_frame_read(sv[1], buf, sizeof(buf)), PG_ECLOSED);
	close(sv[1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_decode),
	    cmocka_unit_test(test_frames),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
