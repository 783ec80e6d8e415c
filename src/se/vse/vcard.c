/*
 * The VSE's card (seed 6): a GlobalPlatform issuer security domain (SELECT,
 * GET DATA CPLC 9F7F / CIN 45 / IIN 42 / card recognition data 66, STORE DATA
 * personalisation kept in persistent memory, SCP03 INITIALIZE UPDATE and
 * EXTERNAL AUTHENTICATE with the request's key set) plus catalogue applets.
 * Every object the card keeps lives in the VSE's arena: when the arena is
 * full a command gets 6A84 ("not enough memory space"), never a crash.
 * Persistent memory is one file with two slots; a commit writes the older
 * slot and syncs it, so a power cut leaves the old or the new image.
 */
#include "vse_int.h"

#include "payguard/apdu.h"
#include "payguard/arena.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PM_MAGIC    0x31504d4553564750ull /* "PGVSEMP1" little-endian */
#define PM_HDR	    32u
#define IMG_VERSION 1u

const uint8_t pg_vse_isd_aid[8] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
const uint8_t pg_vse_test_aid[10] = {0xF0, 'p', 'a', 'y', 'g', 'u', 'a', 'r', 'd', 0x01};

struct obj {
	struct obj *next;
	uint16_t tag, len;
	uint8_t val[];
};

enum { SEL_NONE = 0, SEL_ISD, SEL_TEST };

struct pg_vse_card {
	struct pg_card card;
	struct pg_arena *arena;
	int pmem_fd;
	uint64_t pmem_size, gen;
	int slot; /* slot holding the current image (-1: none yet) */
	uint32_t serial;
	uint8_t cin[8];
	int has_test;
	int selected;
	uint64_t counter;
	struct obj *objs;
	size_t img_len; /* serialised size of the current image */
	struct pg_scp03 sc;
	struct pg_scp03_card scc;
	int hooks;
};

/* FNV-1a 64: a torn-write detector for the slots, not a security check. */
static uint64_t
fnv(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
	p[3] = (uint8_t)v;
}
static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void
put64le(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t
get64le(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* Image: version(1) seq(4) count(2) then per object tag(2) len(2) value. */
static size_t
image_size(const struct pg_vse_card *c)
{
	size_t n = 7;

	for (const struct obj *o = c->objs; o; o = o->next)
		n += 4u + o->len;
	return n;
}

/* Writes the image into the older slot in 4 KiB pieces, then its header, then syncs. */
static int
pmem_commit(struct pg_vse_card *c)
{
	uint8_t buf[4096], hdr[PM_HDR] = {0};
	int slot = c->slot == 0 ? 1 : 0;
	off_t base = (off_t)slot * (off_t)(PM_HDR + c->pmem_size), off = base + PM_HDR;
	uint64_t h = 0xcbf29ce484222325ull, gen = c->gen + 1;
	size_t used = 0, total = 0;
	uint16_t count = 0;

	if (image_size(c) > c->pmem_size)
		return pg_error(PG_ERANGE, "vse", "image larger than persistent memory");
	for (const struct obj *o = c->objs; o; o = o->next)
		count++;
#define FLUSH_IF(need)                                                                             \
	do {                                                                                       \
		if (used + (need) > sizeof(buf)) {                                                 \
			if (pwrite(c->pmem_fd, buf, used, off) != (ssize_t)used)                   \
				return pg_error(PG_EIO, "vse", "pmem write: %s", strerror(errno)); \
			h = fnv(h, buf, used);                                                     \
			off += (off_t)used;                                                        \
			total += used;                                                             \
			used = 0;                                                                  \
		}                                                                                  \
	} while (0)
	buf[0] = IMG_VERSION;
	put32(buf + 1, c->scc.seq);
	buf[5] = (uint8_t)(count >> 8), buf[6] = (uint8_t)count;
	used = 7;
	for (const struct obj *o = c->objs; o; o = o->next) {
		size_t done = 0;

		FLUSH_IF(4u);
		buf[used++] = (uint8_t)(o->tag >> 8), buf[used++] = (uint8_t)o->tag;
		buf[used++] = (uint8_t)(o->len >> 8), buf[used++] = (uint8_t)o->len;
		while (done < o->len) {
			size_t k = o->len - done;

			FLUSH_IF(1u);
			if (k > sizeof(buf) - used)
				k = sizeof(buf) - used;
			memcpy(buf + used, o->val + done, k);
			used += k, done += k;
		}
	}
	FLUSH_IF(sizeof(buf));
#undef FLUSH_IF
	if (total > c->pmem_size)
		return pg_error(PG_ERANGE, "vse", "image larger than persistent memory");
	put64le(hdr, PM_MAGIC);
	put64le(hdr + 8, gen);
	put64le(hdr + 16, total);
	put64le(hdr + 24, fnv(h, hdr + 8, 16));
	/* Data before header, and one sync: a torn slot fails its hash; the other one stands. */
	if (pwrite(c->pmem_fd, hdr, PM_HDR, base) != (ssize_t)PM_HDR || fdatasync(c->pmem_fd) != 0)
		return pg_error(PG_EIO, "vse", "pmem commit: %s", strerror(errno));
	c->slot = slot;
	c->gen = gen;
	c->img_len = total;
	return 0;
}

static int
obj_put(struct pg_vse_card *c, uint16_t tag, const uint8_t *v, size_t len)
{
	struct obj **pp, *o, *n = NULL;

	for (pp = &c->objs; (o = *pp) && o->tag != tag; pp = &o->next)
		;
	if (len) {
		n = pg_arena_alloc(c->arena, sizeof(*n) + len);
		if (!n)
			return PG_ENOMEM;
		n->tag = tag;
		n->len = (uint16_t)len;
		memcpy(n->val, v, len);
	}
	if (o) {
		*pp = o->next;
		pg_arena_release(c->arena, o);
	}
	if (n) {
		n->next = c->objs;
		c->objs = n;
	}
	return 0;
}

/* Loads the newest slot whose hash holds; an empty file is a blank card. */
static int
pmem_load(struct pg_vse_card *c)
{
	uint8_t hdr[PM_HDR], buf[4096];
	uint64_t best_gen = 0;
	int best = -1;

	for (int s = 0; s < 2; s++) {
		off_t base = (off_t)s * (off_t)(PM_HDR + c->pmem_size);
		uint64_t len, h = 0xcbf29ce484222325ull;
		off_t off = base + PM_HDR;

		if (pread(c->pmem_fd, hdr, PM_HDR, base) != (ssize_t)PM_HDR ||
		    get64le(hdr) != PM_MAGIC)
			continue;
		len = get64le(hdr + 16);
		if (len < 7 || len > c->pmem_size)
			continue;
		for (uint64_t done = 0; done < len;) {
			size_t k = len - done > sizeof(buf) ? sizeof(buf) : (size_t)(len - done);

			if (pread(c->pmem_fd, buf, k, off) != (ssize_t)k)
				break;
			h = fnv(h, buf, k);
			done += k, off += (off_t)k;
		}
		if (fnv(h, hdr + 8, 16) != get64le(hdr + 24))
			continue;
		if (best < 0 || get64le(hdr + 8) > best_gen)
			best = s, best_gen = get64le(hdr + 8);
	}
	if (best < 0)
		return 0;
	{
		off_t off = (off_t)best * (off_t)(PM_HDR + c->pmem_size) + PM_HDR;
		uint8_t *img;
		uint64_t len;
		size_t p = 7;
		uint16_t count;

		if (pread(c->pmem_fd, hdr, PM_HDR, off - PM_HDR) != (ssize_t)PM_HDR)
			return PG_EIO;
		len = get64le(hdr + 16);
		img = pg_arena_alloc(c->arena, (size_t)len);
		if (!img)
			return pg_error(PG_ENOMEM, "vse", "arena cannot hold the card image");
		if (pread(c->pmem_fd, img, (size_t)len, off) != (ssize_t)len ||
		    img[0] != IMG_VERSION) {
			pg_arena_release(c->arena, img);
			return pg_error(PG_ECORRUPT, "vse", "card image unreadable");
		}
		c->scc.seq = get32(img + 1);
		count = (uint16_t)(img[5] << 8 | img[6]);
		for (uint16_t i = 0; i < count && p + 4 <= len; i++) {
			uint16_t tag = (uint16_t)(img[p] << 8 | img[p + 1]);
			uint16_t l = (uint16_t)(img[p + 2] << 8 | img[p + 3]);

			if (p + 4 + l > len || obj_put(c, tag, img + p + 4, l) < 0)
				break;
			p += 4u + l;
		}
		pg_arena_release(c->arena, img);
		c->slot = best;
		c->gen = best_gen;
		c->img_len = (size_t)len;
	}
	return 0;
}

int
pg_vse_pmem_create(const char *path, uint64_t pmem_size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	int rc = 0;

	if (fd < 0)
		return pg_error(PG_EIO, "vse", "open '%s': %s", path, strerror(errno));
	if (ftruncate(fd, (off_t)(2 * (PM_HDR + pmem_size))) != 0 || fsync(fd) != 0)
		rc = pg_error(PG_EIO, "vse", "size '%s': %s", path, strerror(errno));
	close(fd);
	return rc;
}

static int
sw(uint8_t *r, size_t *rlen, size_t n, uint16_t s)
{
	r[n] = (uint8_t)(s >> 8);
	r[n + 1] = (uint8_t)s;
	*rlen = n + 2;
	return 0;
}

static int
card_atr(void *ctx, uint8_t *atr, size_t *len)
{
	struct pg_vse_card *c = ctx;
	/* TS T0 TD1 TD2: T=0 and T=1 offered; 10 historical bytes "PGVSE" + serial + version. */
	uint8_t a[] = {0x3B, 0x8A, 0x80, 0x01, 'P', 'G', 'V', 'S', 'E', 0, 0, 0, 0, 0x01, 0};
	uint8_t tck = 0;

	put32(a + 9, c->serial);
	for (size_t i = 1; i < sizeof(a) - 1; i++)
		tck ^= a[i];
	a[sizeof(a) - 1] = tck;
	memcpy(atr, a, sizeof(a));
	*len = sizeof(a);
	return 0;
}

static void
card_reset(void *ctx)
{
	struct pg_vse_card *c = ctx;

	c->selected = SEL_NONE;
	pg_scp03_close(&c->sc);
}

static size_t
cplc(const struct pg_vse_card *c, uint8_t *o)
{
	/* GP 2.3 Table H-5 order; fabricator 5047 ("PG"), the VSE's serial as IC serial. */
	static const uint8_t head[] = {0x9F, 0x7F, 0x2A, 0x50, 0x47, 0x00, 0x06,
				       0x50, 0x47, 0x56, 0x53, 0x00, 0x01};
	memset(o, 0, 45);
	memcpy(o, head, sizeof(head));
	/* IC serial number (4 bytes) at offset 3 + 12 */
	put32(o + 3 + 12, c->serial);
	o[3 + 16] = 0x00, o[3 + 17] = 0x01; /* IC batch identifier */
	return 45;
}

static int
select_aid(struct pg_vse_card *c, const struct pg_capdu *a, uint8_t *r, size_t *rlen)
{
	struct {
		const uint8_t *aid;
		size_t len;
		int sel;
	} table[2] = {{pg_vse_isd_aid, sizeof(pg_vse_isd_aid), SEL_ISD},
		      {pg_vse_test_aid, sizeof(pg_vse_test_aid), SEL_TEST}};
	int nt = c->has_test ? 2 : 1;

	if (a->p1 != 0x04 || (a->p2 & 0xF3) != 0x00)
		return sw(r, rlen, 0, 0x6A86);
	if (a->lc > 16)
		return sw(r, rlen, 0, 0x6A82);
	for (int i = 0; i < nt; i++) {
		size_t n = 0;

		/* Full or partial AID (ISO 7816-4 first occurrence). */
		/* No AID at all selects the ISD (GP 2.3 11.9.2.2: the default selection). */
		if (a->lc > table[i].len || (a->lc && memcmp(a->data, table[i].aid, a->lc) != 0))
			continue;
		c->selected = table[i].sel;
		if (c->selected != SEL_ISD)
			pg_scp03_close(&c->sc);
		r[n++] = 0x6F;
		r[n++] = (uint8_t)(2 + table[i].len + (table[i].sel == SEL_ISD ? 6 : 0));
		r[n++] = 0x84;
		r[n++] = (uint8_t)table[i].len;
		memcpy(r + n, table[i].aid, table[i].len);
		n += table[i].len;
		if (table[i].sel == SEL_ISD) {
			/* A5 proprietary data: 9F65 maximum command data length. */
			static const uint8_t a5[] = {0xA5, 0x04, 0x9F, 0x65, 0x01, 0xFF};

			memcpy(r + n, a5, sizeof(a5));
			n += sizeof(a5);
		}
		return sw(r, rlen, n, 0x9000);
	}
	return sw(r, rlen, 0, 0x6A82);
}

static int
get_data(struct pg_vse_card *c, const struct pg_capdu *a, uint8_t *r, size_t *rlen)
{
	uint16_t tag = (uint16_t)(a->p1 << 8 | a->p2);
	/* GP 2.3 H.2 card recognition data: GP 2.3, SCP03 i=70. */
	static const uint8_t crd[] = {
	    0x66, 0x31, 0x73, 0x2F, 0x06, 0x07, 0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B, 0x01,
	    0x60, 0x0C, 0x06, 0x0A, 0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B, 0x02, 0x02, 0x03,
	    0x00, 0x63, 0x09, 0x06, 0x07, 0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B, 0x03, 0x64,
	    0x0B, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B, 0x04, 0x03, 0x70};

	if (c->selected != SEL_ISD)
		return sw(r, rlen, 0, 0x6985);
	switch (tag) {
	case 0x9F7F:
		return sw(r, rlen, cplc(c, r), 0x9000);
	case 0x0045:
		r[0] = 0x45, r[1] = 8;
		memcpy(r + 2, c->cin, 8);
		return sw(r, rlen, 10, 0x9000);
	case 0x0042:
		r[0] = 0x42, r[1] = 3, r[2] = 0x50, r[3] = 0x47, r[4] = 0x01;
		return sw(r, rlen, 5, 0x9000);
	case 0x0066:
		memcpy(r, crd, sizeof(crd));
		return sw(r, rlen, sizeof(crd), 0x9000);
	default:
		for (const struct obj *o = c->objs; o; o = o->next)
			if (o->tag == tag) {
				memcpy(r, o->val, o->len);
				return sw(r, rlen, o->len, 0x9000);
			}
		return sw(r, rlen, 0, 0x6A88);
	}
}

/*
 * STORE DATA (GP 2.3 11.11): DGI-formatted data, DGI(2) length(1, or FF + 2)
 * value, one or more per command. Each DGI is kept as an object in the arena
 * and the whole image is committed before 9000. An empty value deletes it.
 */
static int
store_data(struct pg_vse_card *c, const struct pg_capdu *a, uint8_t *r, size_t *rlen)
{
	size_t p = 0;

	if (c->selected != SEL_ISD)
		return sw(r, rlen, 0, 0x6985);
	if ((a->p1 & 0x60) == 0x40 || (a->p1 & 0x06) != 0)
		return sw(r, rlen, 0, 0x6A86); /* only DGI format, no encryption indicator */
	while (p < a->lc) {
		size_t len, hl = 3, img;
		uint16_t tag;
		const struct obj *o;

		if (a->lc - p < 3)
			return sw(r, rlen, 0, 0x6A80);
		tag = (uint16_t)(a->data[p] << 8 | a->data[p + 1]);
		len = a->data[p + 2];
		if (len == 0xFF) {
			if (a->lc - p < 5)
				return sw(r, rlen, 0, 0x6A80);
			len = (size_t)(a->data[p + 3] << 8 | a->data[p + 4]);
			hl = 5;
		}
		if (a->lc - p - hl < len)
			return sw(r, rlen, 0, 0x6A80);
		/* The persistent image must still fit: 6A84 before any change. */
		img = c->img_len ? c->img_len : image_size(c);
		for (o = c->objs; o && o->tag != tag; o = o->next)
			;
		if (o)
			img -= 4u + o->len;
		if (len && img + 4 + len > c->pmem_size)
			return sw(r, rlen, 0, 0x6A84);
		if (obj_put(c, tag, a->data + p + hl, len) < 0)
			return sw(r, rlen, 0, 0x6A84);
		c->img_len = image_size(c);
		p += hl + len;
	}
	if (pmem_commit(c) < 0)
		return sw(r, rlen, 0, 0x6581); /* memory failure */
	return sw(r, rlen, 0, 0x9000);
}

#ifdef PG_VSE_TEST_HOOKS
/*
 * Test-only instructions (CLA 80 INS EE), compiled only into test builds
 * (BUILD_TESTING) and honoured only when PAYGUARD_VSE_TEST_HOOKS=1 was set
 * when the VSE started: P1=01 open the path in the data (expect EACCES under
 * seccomp; answers 9000 if it opened, 6982 + errno byte if not); P1=02 a
 * syscall outside the allow-list (socket); P1=03 a write to the guard page.
 */
static int
test_hook(struct pg_vse_card *c, const struct pg_capdu *a, uint8_t *r, size_t *rlen)
{
	char path[256];
	int fd;

	switch (a->p1) {
	case 0x01:
		if (a->lc >= sizeof(path))
			return sw(r, rlen, 0, 0x6700);
		memcpy(path, a->data, a->lc);
		path[a->lc] = '\0';
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			close(fd);
			return sw(r, rlen, 0, 0x9000);
		}
		r[0] = (uint8_t)errno;
		return sw(r, rlen, 1, 0x6982);
	case 0x02:
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd >= 0)
			close(fd);
		return sw(r, rlen, 0, 0x9000);
	case 0x03:
		((volatile uint8_t *)pg_arena_base(c->arena))[-1] = 1;
		return sw(r, rlen, 0, 0x9000);
	default:
		return sw(r, rlen, 0, 0x6A86);
	}
}
#endif

static int
dispatch(struct pg_vse_card *c, const struct pg_capdu *a, uint8_t *r, size_t *rlen)
{
	if (a->cla == 0x00 && a->ins == 0xA4)
		return select_aid(c, a, r, rlen);
#ifdef PG_VSE_TEST_HOOKS
	if (c->hooks && a->cla == 0x80 && a->ins == 0xEE)
		return test_hook(c, a, r, rlen);
#endif
	if (c->selected == SEL_TEST) {
		if (a->ins == 0x10) {
			if (a->lc)
				memcpy(r, a->data, a->lc);
			return sw(r, rlen, a->lc, 0x9000);
		}
		if (a->ins == 0x12) {
			for (int i = 0; i < 8; i++)
				r[i] = (uint8_t)(c->counter >> (56 - 8 * i));
			return sw(r, rlen, 8, 0x9000);
		}
		return sw(r, rlen, 0, 0x6D00);
	}
	if (a->ins == 0xCA && (a->cla == 0x00 || a->cla == 0x80))
		return get_data(c, a, r, rlen);
	if (a->ins == 0xE2 && a->cla == 0x80)
		return store_data(c, a, r, rlen);
	if (c->selected == SEL_NONE)
		return sw(r, rlen, 0, 0x6985);
	return sw(r, rlen, 0, 0x6D00);
}

static int
card_process(void *ctx, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t *rlen)
{
	struct pg_vse_card *c = ctx;
	struct pg_capdu a;
	size_t cap = *rlen;
	int n;

	c->counter++;
	if (cap < 260)
		return PG_ETOOBIG;
	if (pg_capdu_parse(&a, capdu, clen) < 0)
		return sw(rapdu, rlen, 0, 0x6700);
	if ((a.cla & 0x03) != 0 && a.cla != 0xFF)
		return sw(rapdu, rlen, 0, 0x6881); /* one logical channel per VSE for now */
	if (c->selected == SEL_ISD && a.cla >= 0x80 && (a.ins == 0x50 || a.ins == 0x82)) {
		uint32_t seq = c->scc.seq;

		n = pg_scp03_card_process(&c->sc, &c->scc, capdu, clen, rapdu, cap);
		if (n < 0)
			return sw(rapdu, rlen, 0, 0x6F00);
		*rlen = (size_t)n;
		/* The sequence counter changed: persist it before the card answers. */
		if (c->scc.seq != seq && pmem_commit(c) < 0)
			return sw(rapdu, rlen, 0, 0x6581);
		return 0;
	}
	if (a.cla & 0x04) {
		/* Secure messaging: unwrap into a plain command, run it, wrap the answer. */
		uint8_t *plain = pg_arena_alloc(c->arena, clen), *resp;
		size_t rl = cap;
		uint16_t s = 0x6982;

		if (!plain)
			return sw(rapdu, rlen, 0, 0x6A84);
		n = pg_scp03_card_unwrap(&c->sc, capdu, clen, plain, clen, &s);
		if (n < 0 || pg_capdu_parse(&a, plain, (size_t)n) < 0) {
			pg_arena_release(c->arena, plain);
			return sw(rapdu, rlen, 0, n < 0 ? s : 0x6700);
		}
		resp = pg_arena_alloc(c->arena, cap);
		if (!resp) {
			pg_arena_release(c->arena, plain);
			return sw(rapdu, rlen, 0, 0x6A84);
		}
		dispatch(c, &a, resp, &rl);
		n = pg_scp03_card_wrap(&c->sc, resp, rl - 2,
				       (uint16_t)(resp[rl - 2] << 8 | resp[rl - 1]), rapdu, cap);
		pg_arena_release(c->arena, resp);
		pg_arena_release(c->arena, plain);
		if (n < 0)
			return sw(rapdu, rlen, 0, 0x6F00);
		*rlen = (size_t)n;
		return 0;
	}
	return dispatch(c, &a, rapdu, rlen);
}

int
pg_vse_card_new(struct pg_vse_card **out, const struct pg_vse_request *r, uint32_t serial,
		struct pg_arena *arena, int pmem_fd)
{
	struct pg_vse_card *c;
	int rc;

	*out = NULL;
	c = pg_arena_calloc(arena, 1, sizeof(*c));
	if (!c)
		return pg_error(PG_ENOMEM, "vse", "arena too small for the card");
	c->arena = arena;
	c->pmem_fd = pmem_fd;
	c->pmem_size = r->pmem_size;
	c->slot = -1;
	c->serial = serial;
	memcpy(c->cin, r->cin, sizeof(c->cin));
	for (int i = 0; i < r->n_applets; i++)
		c->has_test |= strcmp(r->applets[i], "test") == 0;
	c->scc.keys = r->keys;
	memcpy(c->scc.div_data, r->cin, 8);
	c->scc.div_data[8] = (uint8_t)(serial >> 8), c->scc.div_data[9] = (uint8_t)serial;
	c->scc.i_param = 0x70;
	memcpy(c->scc.aid, pg_vse_isd_aid, sizeof(pg_vse_isd_aid));
	c->scc.aid_len = sizeof(pg_vse_isd_aid);
#ifdef PG_VSE_TEST_HOOKS
	{
		const char *h = getenv("PAYGUARD_VSE_TEST_HOOKS");

		c->hooks = h && strcmp(h, "1") == 0;
	}
#endif
	c->card.ctx = c;
	c->card.atr = card_atr;
	c->card.process = card_process;
	c->card.reset = card_reset;
	rc = pmem_load(c);
	if (rc < 0) {
		pg_vse_card_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void
pg_vse_card_free(struct pg_vse_card *c)
{
	struct obj *o, *n;

	if (!c)
		return;
	for (o = c->objs; o; o = n) {
		n = o->next;
		pg_arena_release(c->arena, o);
	}
	pg_memzero(&c->scc, sizeof(c->scc));
	pg_memzero(&c->sc, sizeof(c->sc));
	pg_arena_release(c->arena, c);
}

const struct pg_card *
pg_vse_card_card(struct pg_vse_card *c)
{
	return &c->card;
}
