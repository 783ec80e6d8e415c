/*
 * AES key wrap (RFC 3394; RFC 5649 with padding) over OpenSSL EVP
 * (EVP_aes_256_wrap / EVP_aes_256_wrap_pad), and the data directory's
 * key-encryption key file. See include/payguard/keywrap.h.
 */
#include "payguard/keywrap.h"
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/log.h"
#include "payguard/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int
kw(const uint8_t kek[PG_KEK_LEN], int pad, int enc, const uint8_t *in, size_t n, uint8_t *out,
   size_t *outlen)
{
	EVP_CIPHER_CTX *ctx = NULL;
	uint8_t buf[PG_KW_MAX_OUT + 16];
	int l1 = 0, l2 = 0, rc = PG_ECRYPTO;

	*outlen = 0;
	if (enc ? (n == 0 || n > PG_KW_MAX_KEY || (!pad && (n % 8 || n < 16)))
		: (n < 16 || n % 8 || n > PG_KW_MAX_OUT))
		return pg_error(PG_EINVAL, "keywrap", "%s: %zu bytes is not a wrappable length",
				enc ? "wrap" : "unwrap", n);
	ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		return PG_ENOMEM;
	/* OpenSSL refuses the wrap modes unless the caller says it knows them */
	EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	if (EVP_CipherInit_ex(ctx, pad ? EVP_aes_256_wrap_pad() : EVP_aes_256_wrap(), NULL, kek,
			      NULL, enc) != 1 ||
	    EVP_CipherUpdate(ctx, buf, &l1, in, (int)n) != 1 ||
	    EVP_CipherFinal_ex(ctx, buf + l1, &l2) != 1 || l1 + l2 > PG_KW_MAX_OUT) {
		rc = enc ? pg_error(PG_ECRYPTO, "keywrap", "AES key wrap failed")
			 : pg_error(PG_ECRYPTO, "keywrap",
				    "wrapped key fails its integrity check (altered, or "
				    "wrapped under another key-encryption key)");
		goto out;
	}
	memcpy(out, buf, (size_t)(l1 + l2));
	*outlen = (size_t)(l1 + l2);
	rc = 0;
out:
	pg_memzero(buf, sizeof(buf));
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}

int
pg_kw_wrap(const uint8_t kek[PG_KEK_LEN], int pad, const uint8_t *in, size_t n, uint8_t *out,
	   size_t *outlen)
{
	return kw(kek, pad, 1, in, n, out, outlen);
}

int
pg_kw_unwrap(const uint8_t kek[PG_KEK_LEN], int pad, const uint8_t *in, size_t n, uint8_t *out,
	     size_t *outlen)
{
	return kw(kek, pad, 0, in, n, out, outlen);
}

/* Reads an existing KEK through fd (opened O_NOFOLLOW), checking what it is first. */
static int
kek_read(int fd, const char *path, uint8_t kek[PG_KEK_LEN])
{
	char q[4200];
	struct stat sb;
	ssize_t r;

	if (fstat(fd, &sb) < 0)
		return pg_error(PG_ESYS, "keywrap", "unable to stat '%s': %s", path,
				strerror(errno));
	if (!S_ISREG(sb.st_mode))
		return pg_error(PG_EPERM, "keywrap",
				"key-encryption key '%s' is not a regular file: refusing it", path);
	if (sb.st_mode & 077) {
		if (pg_fs_shell_quote(q, sizeof(q), path) < 0)
			q[0] = '\0';
		return pg_error(PG_EPERM, "keywrap",
				"permissions %04o for '%s' are too open; run: chmod 600 %s",
				(unsigned)(sb.st_mode & 07777), path, q);
	}
	if (sb.st_size != PG_KEK_LEN)
		return pg_error(PG_ECORRUPT, "keywrap",
				"key-encryption key '%s' holds %lld bytes, not %d", path,
				(long long)sb.st_size, PG_KEK_LEN);
	r = pread(fd, kek, PG_KEK_LEN, 0);
	if (r != PG_KEK_LEN) {
		pg_memzero(kek, PG_KEK_LEN);
		return pg_error(PG_EIO, "keywrap", "unable to read '%s'", path);
	}
	return 0;
}

/* Makes DIR/kek: a new temporary (O_EXCL) written and synced, then link()ed
 * into place; EEXIST from link means another process made it first. */
static int
kek_create(const char *dir, const char *path, uint8_t kek[PG_KEK_LEN])
{
	char tmp[4200];
	int fd, rc = 0, dfd;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/.kek.tmp.%ld", dir, (long)getpid()) >=
	    sizeof(tmp))
		return pg_error(PG_ETOOBIG, "keywrap", "path too long");
	if (RAND_bytes(kek, PG_KEK_LEN) != 1)
		return pg_error(PG_ECRYPTO, "keywrap",
				"no random bytes for the key-encryption key");
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return pg_error(PG_ESYS, "keywrap", "unable to create '%s': %s", tmp,
				strerror(errno));
	if (fchmod(fd, 0600) < 0 || write(fd, kek, PG_KEK_LEN) != PG_KEK_LEN || fsync(fd) < 0)
		rc = pg_error(PG_EIO, "keywrap", "unable to write '%s': %s", tmp, strerror(errno));
	close(fd);
	if (rc == 0 && link(tmp, path) < 0)
		rc = errno == EEXIST ? PG_EEXIST
				     : pg_error(PG_ESYS, "keywrap", "unable to create '%s': %s",
						path, strerror(errno));
	unlink(tmp);
	if (rc == 0) {
		dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
		pg_info("keywrap", "created key-encryption key %s (mode 0600)", path);
	}
	if (rc < 0)
		pg_memzero(kek, PG_KEK_LEN);
	return rc;
}

int
pg_kek_load(const char *dir, uint8_t kek[PG_KEK_LEN])
{
	char path[4200];
	int rc;

	if ((size_t)snprintf(path, sizeof(path), "%s/kek", dir) >= sizeof(path))
		return pg_error(PG_ETOOBIG, "keywrap", "path too long");
	for (int tries = 0; tries < 3; tries++) {
		int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

		if (fd >= 0) {
			rc = kek_read(fd, path, kek);
			close(fd);
			return rc;
		}
		if (errno == ELOOP)
			return pg_error(PG_EPERM, "keywrap",
					"key-encryption key '%s' is a symbolic link: refusing it",
					path);
		if (errno != ENOENT)
			return pg_error(PG_ESYS, "keywrap", "unable to open '%s': %s", path,
					strerror(errno));
		rc = kek_create(dir, path, kek);
		if (rc != PG_EEXIST)
			return rc;
	}
	return pg_error(PG_EBUSY, "keywrap", "'%s' keeps changing", path);
}
