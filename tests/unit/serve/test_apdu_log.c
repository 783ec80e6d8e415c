/*
 * The daemon's live APDU log (pgi_serve_log_apdu, table serve_apdu; issue 13
 * item 10): the status word is that of the whole response, even when the
 * logged bytes are clipped to 300, and a secret-bearing command keeps only
 * its header and the status word.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "serve_int.h"

#include "payguard/log.h"

#include <sqlite3.h>
#include <string.h>

static void
open_log(struct pg_store *st)
{
	assert_int_equal(pg_store_open(st, ":memory:"), 0);
	assert_int_equal(pgi_serve_migrate(st), 0);
}

/* The last row's capdu, rapdu and sw columns. */
static void
last_row(struct pg_store *st, char *capdu, char *rapdu, char *sw, size_t cap)
{
	sqlite3_stmt *q = NULL;

	assert_int_equal(sqlite3_prepare_v2(st->db,
					    "SELECT capdu, rapdu, sw FROM serve_apdu ORDER BY id "
					    "DESC LIMIT 1",
					    -1, &q, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	snprintf(capdu, cap, "%s", (const char *)sqlite3_column_text(q, 0));
	snprintf(rapdu, cap, "%s", (const char *)sqlite3_column_text(q, 1));
	snprintf(sw, cap, "%s", (const char *)sqlite3_column_text(q, 2));
	sqlite3_finalize(q);
}

static void
test_sw_of_long_response(void **state)
{
	static const uint8_t c[] = {0x00, 0xB0, 0x00, 0x00, 0x00};
	struct pg_store st;
	uint8_t r[402];
	char ch[1024], rh[1024], sw[1024];

	(void)state;
	open_log(&st);
	/* 400 data bytes of 0x11, then SW 6A82: the 299th/300th bytes are 1111. */
	memset(r, 0x11, sizeof(r));
	r[400] = 0x6A;
	r[401] = 0x82;
	assert_int_equal(
	    pgi_serve_log_apdu(&st, "seos", "se1", "t1", c, sizeof(c), r, sizeof(r), 5), 0);
	last_row(&st, ch, rh, sw, sizeof(ch));
	assert_string_equal(sw, "6A82");
	assert_int_equal(strlen(rh), 600); /* the bytes are still clipped to 300 */
	assert_string_equal(ch, "00B0000000");
	/* A short response: unchanged. */
	assert_int_equal(pgi_serve_log_apdu(&st, "seos", "se1", "t1", c, sizeof(c),
					    (const uint8_t *)"\x01\x02\x90\x00", 4, 5),
			 0);
	last_row(&st, ch, rh, sw, sizeof(ch));
	assert_string_equal(sw, "9000");
	assert_string_equal(rh, "01029000");
	pg_store_close(&st);
}

static void
test_secret_command_keeps_sw_only(void **state)
{
	/* INITIALIZE UPDATE: host challenge in, card cryptogram out. */
	static const uint8_t c[] = {0x80, 0x50, 0x00, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 0x00};
	struct pg_store st;
	uint8_t r[31];
	char ch[1024], rh[1024], sw[1024];

	(void)state;
	open_log(&st);
	memset(r, 0xAB, sizeof(r));
	r[29] = 0x90;
	r[30] = 0x00;
	assert_int_equal(
	    pgi_serve_log_apdu(&st, "seos", "se1", "t1", c, sizeof(c), r, sizeof(r), 5), 0);
	last_row(&st, ch, rh, sw, sizeof(ch));
	assert_string_equal(ch, "8050000008..");
	assert_string_equal(rh, "9000");
	assert_string_equal(sw, "9000");
	pg_store_close(&st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sw_of_long_response),
	    cmocka_unit_test(test_secret_command_keeps_sw_only),
	};

	pg_log_set_level(PG_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
