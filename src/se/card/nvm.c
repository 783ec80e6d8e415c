/*
 * Tear-safe persistent memory for the card runtime (issue 3): two slots, each
 * holding a whole image with a generation number and a SHA-256 over
 * generation, length and data. A commit writes the slot NOT holding the
 * current image and syncs it, so a cut at any byte leaves the old image
 * intact; load takes the newest slot whose hash holds. docs/se-card.md.
 */
#include "payguard/card_gp.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/mem.h"

#include <errno.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HDR   64u
#define CHUNK 256u /* commit writes in pieces, so a tear can fall anywhere */
static const uint8_t magic[8] = {'P', 'G', 'N', 'V', 'M', '0', '0', '1'};

struct pg_nvm {
	int fd;	      /* -1: memory */
	uint8_t *mem; /* memory store: 2 * (HDR + cap) */
	size_t cap;
	int slot; /* slot of the current image, -1: blank */
	uint64_t gen;
	long tear; /* bytes left before the cut, -1 off */
	int dead;  /* memory store after a simulated cut */
};

static int
hash(uint64_t gen, const uint8_t *data, uint32_t len, uint8_t out[32])
{
	uint8_t h[12];
	unsigned int olen = 0;
	int ok;

	for (int i = 0; i < 8; i++)
		h[i] = (uint8_t)(gen >> (8 * i));
	for (int i = 0; i < 4; i++)
		h[8 + i] = (uint8_t)(len >> (8 * i));
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!md)
		return PG_ENOMEM;
	ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) && EVP_DigestUpdate(md, h, sizeof(h)) &&
	     EVP_DigestUpdate(md, data, len) && EVP_DigestFinal_ex(md, out, &olen);
	EVP_MD_CTX_free(md);
	return ok ? 0 : PG_ECRYPTO;
}

static int
rd(struct pg_nvm *n, uint8_t *p, size_t len, size_t off)
{
	if (n->fd < 0) {
		memcpy(p, n->mem + off, len);
		return 0;
	}
	while (len) {
		ssize_t r = pread(n->fd, p, len, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return pg_error(PG_EIO, "nvm", "read: %s", strerror(errno));
		if (r == 0) { /* short file: the rest reads as zero (blank) */
			memset(p, 0, len);
			return 0;
		}
		p += r, len -= (size_t)r, off += (size_t)r;
	}
	return 0;
}

/* Writes through the tear hook; a cut writes the bytes before it only. */
static int
wr(struct pg_nvm *n, const uint8_t *p, size_t len, size_t off)
{
	size_t now = len;
	int cut = 0;

	if (n->tear >= 0 && (size_t)n->tear < len) {
		now = (size_t)n->tear;
		cut = 1;
	}
	if (n->tear >= 0)
		n->tear -= (long)now;
	if (n->fd < 0) {
		memcpy(n->mem + off, p, now);
	} else {
		size_t done = 0;

		while (done < now) {
			ssize_t r = pwrite(n->fd, p + done, now - done, (off_t)(off + done));

			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return pg_error(PG_EIO, "nvm", "write: %s", strerror(errno));
			done += (size_t)r;
		}
	}
	if (cut) {
		if (n->fd >= 0)
			raise(SIGKILL); /* the power cut: nothing after this byte happens */
		n->dead = 1;
		return pg_error(PG_EIO, "nvm", "simulated power cut");
	}
	return 0;
}

/* Reads slot s's header; 1 and its generation/length if the slot is intact. */
static int
slot_check(struct pg_nvm *n, int s, uint8_t *buf, uint64_t *gen, uint32_t *len)
{
	uint8_t h[HDR], want[32];
	size_t base = (size_t)s * (HDR + n->cap);
	int rc;

	if ((rc = rd(n, h, HDR, base)) < 0)
		return rc;
	if (memcmp(h, magic, 8) != 0)
		return 0;
	*gen = 0;
	for (int i = 0; i < 8; i++)
		*gen |= (uint64_t)h[8 + i] << (8 * i);
	*len =
	    (uint32_t)h[16] | (uint32_t)h[17] << 8 | (uint32_t)h[18] << 16 | (uint32_t)h[19] << 24;
	if (*len > n->cap || *gen == 0)
		return 0;
	if ((rc = rd(n, buf, *len, base + HDR)) < 0)
		return rc;
	if ((rc = hash(*gen, buf, *len, want)) < 0)
		return rc;
	return pg_ct_equal(want, h + 32, 32) ? 1 : 0;
}

static int
nvm_new(struct pg_nvm **out, int fd, size_t capacity)
{
	struct pg_nvm *n;

	*out = NULL;
	if (capacity == 0 || capacity > PG_NVM_MAX)
		return pg_error(PG_ERANGE, "nvm", "capacity must be 1..%u bytes", PG_NVM_MAX);
	n = calloc(1, sizeof(*n));
	if (!n)
		return PG_ENOMEM;
	n->fd = fd;
	n->cap = capacity;
	n->slot = -1;
	n->tear = -1;
	if (fd < 0) {
		n->mem = calloc(2, HDR + capacity);
		if (!n->mem) {
			free(n);
			return PG_ENOMEM;
		}
	}
	*out = n;
	return 0;
}

int
pg_nvm_open_fd(struct pg_nvm **out, int fd, size_t capacity)
{
	if (fd < 0)
		return pg_error(PG_EINVAL, "nvm", "no file descriptor");
	return nvm_new(out, fd, capacity);
}

int
pg_nvm_open_memory(struct pg_nvm **out, size_t capacity)
{
	return nvm_new(out, -1, capacity);
}

void
pg_nvm_close(struct pg_nvm *n)
{
	if (!n)
		return;
	if (n->mem) {
		pg_memzero(n->mem, 2 * (HDR + n->cap));
		free(n->mem);
	}
	free(n);
}

int
pg_nvm_load(struct pg_nvm *n, uint8_t *buf, size_t cap, size_t *len)
{
	uint64_t g[2] = {0, 0};
	uint32_t l[2] = {0, 0};
	int ok[2], best, rc;
	uint8_t *tmp;

	*len = 0;
	if (n->dead)
		return pg_error(PG_EIO, "nvm", "store lost power");
	tmp = malloc(n->cap ? n->cap : 1);
	if (!tmp)
		return PG_ENOMEM;
	for (int s = 0; s < 2; s++) {
		rc = slot_check(n, s, tmp, &g[s], &l[s]);
		if (rc < 0)
			goto out;
		ok[s] = rc;
	}
	best = ok[0] && (!ok[1] || g[0] > g[1]) ? 0 : ok[1] ? 1 : -1;
	n->slot = best;
	n->gen = best < 0 ? 0 : g[best];
	rc = 0;
	if (best < 0)
		goto out;
	if (l[best] > cap) {
		rc = pg_error(PG_ETOOBIG, "nvm", "image of %u bytes", l[best]);
		goto out;
	}
	/* Re-read the chosen slot (tmp holds slot 1's data). */
	if ((rc = slot_check(n, best, tmp, &g[best], &l[best])) < 0)
		goto out;
	memcpy(buf, tmp, l[best]);
	*len = l[best];
	rc = 0;
out:
	pg_memzero(tmp, n->cap);
	free(tmp);
	return rc;
}

int
pg_nvm_commit(struct pg_nvm *n, const uint8_t *img, size_t len)
{
	uint8_t h[HDR] = {0};
	int s = n->slot == 0 ? 1 : 0, rc;
	size_t base = (size_t)s * (HDR + n->cap);
	uint64_t gen = n->gen + 1;

	if (n->dead)
		return pg_error(PG_EIO, "nvm", "store lost power");
	if (len > n->cap)
		return pg_error(PG_ERANGE, "nvm", "image of %zu bytes exceeds %zu", len, n->cap);
	for (size_t off = 0; off < len; off += CHUNK) {
		size_t k = len - off < CHUNK ? len - off : CHUNK;

		if ((rc = wr(n, img + off, k, base + HDR + off)) < 0)
			return rc;
	}
	memcpy(h, magic, 8);
	for (int i = 0; i < 8; i++)
		h[8 + i] = (uint8_t)(gen >> (8 * i));
	for (int i = 0; i < 4; i++)
		h[16 + i] = (uint8_t)(len >> (8 * i));
	if ((rc = hash(gen, img, (uint32_t)len, h + 32)) < 0)
		return rc;
	if ((rc = wr(n, h, HDR, base)) < 0)
		return rc;
	/* Durable before the response leaves the card. */
	if (n->fd >= 0 && fdatasync(n->fd) != 0 && errno != EINVAL)
		return pg_error(PG_EIO, "nvm", "fdatasync: %s", strerror(errno));
	n->slot = s;
	n->gen = gen;
	return 0;
}

uint64_t
pg_nvm_generation(const struct pg_nvm *n)
{
	return n->gen;
}

void
pg_nvm_tear_after(struct pg_nvm *n, long bytes)
{
	n->tear = bytes < 0 ? -1 : bytes;
}

int
pg_nvm_memory_snapshot(const struct pg_nvm *n, uint8_t *buf, size_t cap, size_t *len)
{
	size_t all = 2 * (HDR + n->cap);

	if (!n->mem)
		return PG_EINVAL;
	if (cap < all)
		return PG_ETOOBIG;
	memcpy(buf, n->mem, all);
	*len = all;
	return 0;
}

int
pg_nvm_memory_restore(struct pg_nvm *n, const uint8_t *buf, size_t len)
{
	if (!n->mem || len != 2 * (HDR + n->cap))
		return PG_EINVAL;
	memcpy(n->mem, buf, len);
	n->dead = 0;
	n->tear = -1;
	n->slot = -1;
	n->gen = 0;
	return 0;
}
