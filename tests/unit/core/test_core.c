/* Unit tests for src/core: errors, buffers with limits, hex, atomic files, store,
 * private-file permission checks, AES key wrap (RFC 3394 vectors) and the KEK file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/buf.h"
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/hex.h"
#include "payguard/json.h"
#include "payguard/keywrap.h"
#include "payguard/log.h"
#include "payguard/mem.h"
#include "payguard/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static void
test_errors(void **state)
{
	(void)state;
	assert_string_equal(pg_strerror(PG_EFORMAT), "malformed input");
	assert_string_equal(pg_errname(PG_ETOOBIG), "PG_ETOOBIG");
	assert_string_equal(pg_strerror(-9999), "unknown error");
	assert_int_equal(pg_error(PG_EPROTO, "t", "frame %d bad", 7), PG_EPROTO);
	assert_string_equal(pg_last_error(), "frame 7 bad");
}

static void
test_buf_limit(void **state)
{
	struct pg_buf b = PG_BUF_INIT(10);

	(void)state;
	assert_int_equal(pg_buf_append(&b, "0123456789", 10), 0);
	assert_int_equal(pg_buf_append_byte(&b, 'x'), PG_ETOOBIG);
	assert_int_equal(b.len, 10);
	pg_buf_consume(&b, 4);
	assert_memory_equal(b.data, "456789", 6);
	assert_int_equal(pg_buf_append_be16(&b, 0x1234), 0);
	assert_int_equal(b.data[6], 0x12);
	assert_int_equal(pg_buf_append_be32(&b, 1), PG_ETOOBIG);
	pg_buf_release(&b);
	assert_null(b.data);
	pg_buf_release(NULL);
}

static void
test_buf_printf(void **state)
{
	struct pg_buf b = PG_BUF_INIT(64);

	(void)state;
	assert_int_equal(pg_buf_printf(&b, "%s-%d", "ab", 12), 0);
	assert_int_equal(b.len, 5);
	assert_memory_equal(b.data, "ab-12", 5);
	pg_buf_release_secure(&b);
}

static void
test_hex(void **state)
{
	uint8_t out[8];
	char s[32];

	(void)state;
	assert_int_equal(pg_hex_decode(out, sizeof(out), "00 A4 04:00\n0a"), 5);
	assert_int_equal(out[1], 0xa4);
	assert_int_equal(out[4], 0x0a);
	assert_int_equal(pg_hex_decode(out, sizeof(out), "0"), PG_EFORMAT);
	assert_int_equal(pg_hex_decode(out, sizeof(out), "zz"), PG_EFORMAT);
	assert_int_equal(pg_hex_decode(out, 2, "010203"), PG_ETOOBIG);
	pg_hex_encode(s, (const uint8_t *)"\x90\x00", 2);
	assert_string_equal(s, "9000");
	pg_hex_encode_upper(s, (const uint8_t *)"\x6a\x82\x01", 3, 1);
	assert_string_equal(s, "6A 82 01");
}

static void
test_ct_equal(void **state)
{
	(void)state;
	assert_true(pg_ct_equal("abcd", "abcd", 4));
	assert_false(pg_ct_equal("abcd", "abce", 4));
}

static void
test_files_and_store(void **state)
{
	char dir[] = "/tmp/pgcoreXXXXXX", path[256], sub[256];
	struct pg_store st;
	uint8_t *data;
	size_t len;
	static const struct pg_migration m[] = {
	    {1, "CREATE TABLE t(a INTEGER);"},
	    {2, "ALTER TABLE t ADD COLUMN b TEXT;"},
	};

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/a/b/c", dir);
	assert_int_equal(pg_mkdir_p(sub, 0700), 0);
	snprintf(path, sizeof(path), "%s/f", sub);
	assert_int_equal(pg_write_file_atomic(path, "hello", 5, 0600), 0);
	assert_int_equal(pg_read_file(path, 100, &data, &len), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(data, "hello", 5);
	free(data);
	assert_int_equal(pg_read_file(path, 4, &data, &len), PG_ETOOBIG);
	snprintf(path, sizeof(path), "%s/none", sub);
	assert_int_equal(pg_read_file(path, 4, &data, &len), PG_ENOENT);

	snprintf(path, sizeof(path), "%s/s.db", dir);
	assert_int_equal(pg_store_open(&st, path), 0);
	assert_int_equal(pg_store_migrate(&st, "test", m, 1), 0);
	assert_int_equal(pg_store_version(&st, "test"), 1);
	assert_int_equal(pg_store_migrate(&st, "test", m, 2), 0);
	assert_int_equal(pg_store_version(&st, "test"), 2);
	assert_int_equal(pg_store_exec(&st, "INSERT INTO t(a,b) VALUES(1,'x')"), 0);
	assert_int_equal(pg_store_exec(&st, "INSERT INTO nope VALUES(1)"), PG_ESTORE);
	/* A failing migration leaves the version where it was. */
	static const struct pg_migration bad[] = {{3, "CREATE TABLE u(a); SELECT * FROM nope;"}};
	assert_int_equal(pg_store_migrate(&st, "test", bad, 1), PG_ESTORE);
	assert_int_equal(pg_store_version(&st, "test"), 2);
	pg_store_close(&st);
	pg_store_close(NULL);
}

/* Reals print in their shortest round-trip form (issue 13): 52.52, not %.17g. */
static void
test_json_reals(void **state)
{
	static const double vals[] = {
	    52.52,	  13.405, 0.1,	   1.0 / 3.0, 100.0,
	    1e16,	  1e300,  -2.5e-7, 5e-324,    1.7976931348623157e308,
	    123456789.125};
	json_t *v;
	char *t, buf[40];

	(void)state;
	v = json_pack("{s:f,s:f,s:[f,f],s:s,s:i}", "lat", 52.52, "lon", 13.405, "xs", 0.1, 100.0,
		      "s", "1.10000000000000001 \"52.520000000000003", "n", 7);
	t = pg_json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(t, "{\"lat\":52.52,\"lon\":13.405,\"n\":7,"
			       "\"s\":\"1.10000000000000001 \\\"52.520000000000003\","
			       "\"xs\":[0.1,100.0]}");
	free(t);
	json_decref(v);
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		json_t *back;

		assert_true(pg_json_real_text(vals[i], buf, sizeof(buf)) > 0);
		assert_true(strtod(buf, NULL) == vals[i]);
		assert_non_null(strpbrk(buf, ".e"));
		/* what we print reads back as the same real through jansson too */
		v = json_pack("[f]", vals[i]);
		t = pg_json_dumps(v, JSON_COMPACT);
		back = json_loads(t, 0, NULL);
		assert_non_null(back);
		assert_true(json_is_real(json_array_get(back, 0)));
		assert_true(json_real_value(json_array_get(back, 0)) == vals[i]);
		json_decref(back);
		json_decref(v);
		free(t);
	}
	assert_true(pg_json_real_text(1.0 / 3.0, buf, sizeof(buf)) == 18); /* 0.3333333333333333 */
	pg_json_real_text(1e17, buf, sizeof(buf));
	assert_string_equal(buf, "1e+17");
	pg_json_real_text(1e16, buf, sizeof(buf));
	assert_string_equal(buf, "10000000000000000.0");
}

static void
unhex(const char *h, uint8_t *out, size_t n)
{
	assert_int_equal(pg_hex_decode(out, n, h), (int)n);
}

static void
rm_rf(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* RFC 3394 section 4: the vectors with a 256-bit KEK (4.3, 4.5, 4.6). */
static void
test_keywrap_rfc3394(void **state)
{
	static const struct {
		const char *data, *wrapped;
	} v[] = {
	    /* 4.3: 128 bits of key data with a 256-bit KEK */
	    {"00112233445566778899AABBCCDDEEFF",
	     "64E8C3F9CE0F5BA263E9777905818A2A93C8191E7D6E8AE7"},
	    /* 4.5: 192 bits */
	    {"00112233445566778899AABBCCDDEEFF0001020304050607",
	     "A8F9BC1612C68B3FF6E6F4FBE30E71E4769C8B80A32CB8958CD5D17D6B254DA1"},
	    /* 4.6: 256 bits of key data with a 256-bit KEK */
	    {"00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
	     "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"},
	};
	uint8_t kek[32], key[32], want[40], out[PG_KW_MAX_OUT], back[PG_KW_MAX_OUT];
	size_t n, outlen, backlen;

	(void)state;
	unhex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F", kek, 32);
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		n = strlen(v[i].data) / 2;
		unhex(v[i].data, key, n);
		unhex(v[i].wrapped, want, n + 8);
		assert_int_equal(pg_kw_wrap(kek, 0, key, n, out, &outlen), 0);
		assert_int_equal(outlen, n + 8);
		assert_memory_equal(out, want, n + 8);
		assert_int_equal(pg_kw_unwrap(kek, 0, want, n + 8, back, &backlen), 0);
		assert_int_equal(backlen, n);
		assert_memory_equal(back, key, n);
	}
	/* one bit changed, or another KEK: the integrity check fails */
	want[5] ^= 0x01;
	assert_int_equal(pg_kw_unwrap(kek, 0, want, 40, back, &backlen), PG_ECRYPTO);
	want[5] ^= 0x01;
	kek[0] ^= 0x80;
	assert_int_equal(pg_kw_unwrap(kek, 0, want, 40, back, &backlen), PG_ECRYPTO);
	/* RFC 3394 takes whole 64-bit blocks, at least two */
	assert_int_equal(pg_kw_wrap(kek, 0, key, 12, out, &outlen), PG_EINVAL);
	assert_int_equal(pg_kw_wrap(kek, 0, key, 8, out, &outlen), PG_EINVAL);
	/* RFC 5649 pads any length; its output is a multiple of 8, 8 more than padded */
	assert_int_equal(pg_kw_wrap(kek, 1, key, 13, out, &outlen), 0);
	assert_int_equal(outlen, 24);
	assert_int_equal(pg_kw_unwrap(kek, 1, out, outlen, back, &backlen), 0);
	assert_int_equal(backlen, 13);
	assert_memory_equal(back, key, 13);
	assert_int_equal(pg_kw_unwrap(kek, 0, out, outlen, back, &backlen), PG_ECRYPTO);
}

static void
test_kek_file(void **state)
{
	char dir[] = "/tmp/pgkekXXXXXX", path[256], other[256];
	uint8_t k1[PG_KEK_LEN], k2[PG_KEK_LEN], zero[PG_KEK_LEN] = {0};
	struct stat sb;
	mode_t old;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/kek", dir);
	/* made 0600 whatever the umask, 32 bytes, and the same when read again */
	old = umask(0);
	assert_int_equal(pg_kek_load(dir, k1), 0);
	umask(old);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
	assert_int_equal(sb.st_size, PG_KEK_LEN);
	assert_memory_not_equal(k1, zero, PG_KEK_LEN);
	assert_int_equal(pg_kek_load(dir, k2), 0);
	assert_memory_equal(k1, k2, PG_KEK_LEN);
	/* readable by group: refused, with the chmod to run */
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(pg_kek_load(dir, k2), PG_EPERM);
	assert_non_null(strstr(pg_last_error(), "permissions 0640"));
	assert_non_null(strstr(pg_last_error(), "run: chmod 600 '"));
	assert_int_equal(chmod(path, 0600), 0);
	/* a symbolic link is refused, even to a good key file */
	snprintf(other, sizeof(other), "%s/real", dir);
	assert_int_equal(rename(path, other), 0);
	assert_int_equal(symlink(other, path), 0);
	assert_int_equal(pg_kek_load(dir, k2), PG_EPERM);
	assert_non_null(strstr(pg_last_error(), "symbolic link"));
	assert_int_equal(unlink(path), 0);
	/* a short file is corrupt, not silently replaced */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, k1, 16), 16);
	close(fd);
	assert_int_equal(pg_kek_load(dir, k2), PG_ECORRUPT);
	rm_rf(dir);
}

/* Atomic writes replace a regular file, nothing else, and follow no symlink. */
static void
test_atomic_write_refuses(void **state)
{
	char dir[] = "/tmp/pgatomXXXXXX", p[256], target[256], q[256];
	uint8_t *data;
	size_t len;
	struct stat sb;

	(void)state;
	assert_non_null(mkdtemp(dir));
	/* a FIFO stays a FIFO */
	snprintf(p, sizeof(p), "%s/fifo", dir);
	assert_int_equal(mkfifo(p, 0600), 0);
	assert_int_equal(pg_write_file_atomic(p, "1\n", 2, 0644), PG_EINVAL);
	assert_non_null(strstr(pg_last_error(), "a FIFO, not a regular file"));
	assert_int_equal(lstat(p, &sb), 0);
	assert_true(S_ISFIFO(sb.st_mode));
	/* a directory stays a directory */
	snprintf(p, sizeof(p), "%s/dir", dir);
	assert_int_equal(mkdir(p, 0700), 0);
	assert_int_equal(pg_write_file_atomic(p, "1\n", 2, 0644), PG_EINVAL);
	assert_int_equal(lstat(p, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	/* a symlink is neither followed nor replaced: target and link unchanged */
	snprintf(target, sizeof(target), "%s/target", dir);
	assert_int_equal(pg_write_file_atomic(target, "keep", 4, 0600), 0);
	snprintf(p, sizeof(p), "%s/link", dir);
	assert_int_equal(symlink(target, p), 0);
	assert_int_equal(pg_write_file_atomic(p, "1\n", 2, 0644), PG_EINVAL);
	assert_non_null(strstr(pg_last_error(), "a symbolic link"));
	assert_int_equal(lstat(p, &sb), 0);
	assert_true(S_ISLNK(sb.st_mode));
	assert_int_equal(pg_read_file(target, 100, &data, &len), 0);
	assert_int_equal(len, 4);
	assert_memory_equal(data, "keep", 4);
	free(data);
	/* a dangling symlink is not followed to create its target */
	snprintf(q, sizeof(q), "%s/absent", dir);
	snprintf(p, sizeof(p), "%s/dangling", dir);
	assert_int_equal(symlink(q, p), 0);
	assert_int_equal(pg_write_file_atomic(p, "1\n", 2, 0644), PG_EINVAL);
	assert_int_equal(access(q, F_OK), -1);
	/* a character device (what /dev/null is), when we may make one */
	snprintf(p, sizeof(p), "%s/null", dir);
	if (mknod(p, S_IFCHR | 0666, makedev(1, 3)) == 0) {
		assert_int_equal(pg_write_file_atomic(p, "1\n", 2, 0644), PG_EINVAL);
		assert_non_null(strstr(pg_last_error(), "a character device"));
		assert_int_equal(lstat(p, &sb), 0);
		assert_true(S_ISCHR(sb.st_mode));
	} else {
		print_message("(no mknod here: %s; the char device case is covered by "
			      "cli_port_file under unshare)\n",
			      strerror(errno));
	}
	/* a regular file is replaced, as before */
	assert_int_equal(pg_write_file_atomic(target, "new", 3, 0600), 0);
	assert_int_equal(pg_read_file(target, 100, &data, &len), 0);
	assert_memory_equal(data, "new", 3);
	free(data);
	rm_rf(dir);
}

/* The store and the data directory: private, or refused with the chmod to run. */
static void
test_store_permissions(void **state)
{
	char dir[] = "/tmp/pgpermXXXXXX", db[256], sub[256], wal[270];
	struct pg_store st;
	struct stat sb;
	mode_t old;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(db, sizeof(db), "%s/s.db", dir);
	/* created 0600 (and its -wal) even under umask 0 */
	old = umask(0);
	assert_int_equal(pg_store_open(&st, db), 0);
	assert_int_equal(pg_store_exec(&st, "CREATE TABLE t(a)"), 0);
	umask(old);
	assert_int_equal(stat(db, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	snprintf(wal, sizeof(wal), "%s-wal", db);
	assert_int_equal(stat(wal, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	pg_store_close(&st);
	/* a store others can read is refused, naming the chmod */
	assert_int_equal(chmod(db, 0644), 0);
	assert_int_equal(pg_store_open(&st, db), PG_EPERM);
	assert_non_null(strstr(pg_last_error(), "permissions 0644 for '"));
	assert_non_null(strstr(pg_last_error(), "are too open; run: chmod 600 '"));
	assert_int_equal(chmod(db, 0600), 0);
	/* a -wal others can read (made by an older payguard) is named too */
	if (stat(wal, &sb) == 0) {
		assert_int_equal(chmod(wal, 0644), 0);
		assert_int_equal(pg_store_open(&st, db), PG_EPERM);
		assert_non_null(strstr(pg_last_error(), "s.db-wal'"));
		assert_int_equal(chmod(wal, 0600), 0);
	}
	/* a directory group can write is refused: they could swap the store */
	assert_int_equal(chmod(dir, 0770), 0);
	assert_int_equal(pg_store_open(&st, db), PG_EPERM);
	assert_non_null(strstr(pg_last_error(), "run: chmod go-w '"));
	/* readable only is fine for a store given by path (the file is 0600) */
	assert_int_equal(chmod(dir, 0755), 0);
	assert_int_equal(pg_store_open(&st, db), 0);
	pg_store_close(&st);
	/* ... but not for a data directory */
	assert_int_equal(pg_data_dir_prepare(dir), PG_EPERM);
	assert_non_null(strstr(pg_last_error(), "permissions 0755 for '"));
	assert_non_null(strstr(pg_last_error(), "run: chmod 700 '"));
	assert_int_equal(chmod(dir, 0700), 0);
	assert_int_equal(pg_data_dir_prepare(dir), 0);
	/* a new data directory is made 0700 */
	snprintf(sub, sizeof(sub), "%s/data", dir);
	old = umask(0);
	assert_int_equal(pg_data_dir_prepare(sub), 0);
	umask(old);
	assert_int_equal(stat(sub, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
	/* a shared sticky directory such as /tmp is no place for a store */
	snprintf(sub, sizeof(sub), "%s/shared", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(chmod(sub, 01777), 0);
	snprintf(db, sizeof(db), "%s/x.db", sub);
	assert_int_equal(pg_store_open(&st, db), PG_EPERM);
	assert_non_null(strstr(pg_last_error(), "writable by group or others"));
	assert_int_equal(access(db, F_OK), -1);
	/* a path with a quote gets a chmod line a shell can run */
	{
		char qd[300], q[400];

		snprintf(qd, sizeof(qd), "%s/it's", dir);
		assert_int_equal(pg_fs_shell_quote(q, sizeof(q), qd), 0);
		assert_non_null(strstr(q, "/it'\\''s'"));
	}
	rm_rf(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_buf_limit),
	    cmocka_unit_test(test_buf_printf),
	    cmocka_unit_test(test_hex),
	    cmocka_unit_test(test_ct_equal),
	    cmocka_unit_test(test_files_and_store),
	    cmocka_unit_test(test_json_reals),
	    cmocka_unit_test(test_keywrap_rfc3394),
	    cmocka_unit_test(test_kek_file),
	    cmocka_unit_test(test_atomic_write_refuses),
	    cmocka_unit_test(test_store_permissions),
	};
	pg_log_set_level(PG_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
