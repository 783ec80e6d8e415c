/*
 * The VSE's card (seed 6): the card runtime's GlobalPlatform card
 * (include/payguard/card_gp.h: ISD, SCP03, INSTALL/DELETE of catalogue
 * applets, STORE DATA, tear-safe persistent image) with every object it
 * allocates taken from the VSE's arena — when the arena is full a command
 * gets 6A84, never a crash — and its persistent memory on the file
 * descriptor the VSE opened before its seccomp filter. The ATR carries
 * "PGVSE" and the VSE's serial. Test builds add three hidden instructions.
 * INITIALIZE UPDATEs are rate-limited here (issue 13 item 5, GP Amd D's
 * 24-bit sequence counter; docs/se-scp03.md, Threat model).
 */
#include "vse_int.h"

#include "payguard/apdu.h"
#include "payguard/arena.h"
#include "payguard/buf.h"
#include "payguard/card.h"
#include "payguard/card_gp.h"
#include "payguard/clock.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NVM_HDR 64u /* pg_nvm's slot header (card/nvm.c): the file is 2 x (64 + capacity) */

struct pg_vse_card {
	struct pg_card card; /* what the link drivers serve */
	const struct pg_card *inner;
	struct pg_gp_card *gp;
	struct pg_nvm *nvm;
	struct pg_arena *arena;
	int hooks;
	/* INITIALIZE UPDATE token bucket, in thousandths of a token; rate 0: no limit. */
	uint32_t iu_rate, iu_burst;
	uint64_t iu_milli, iu_last_ms;
};

/*
 * Every INITIALIZE UPDATE advances the card's persistent 24-bit sequence
 * counter (GP Amd D 6.2.2.1), keys or not; at FFFFFF the card refuses
 * sessions for good. Each one (CLA 8x/Cx, INS 50) takes a token; a
 * successful EXTERNAL AUTHENTICATE gives it back, so only unauthenticated
 * ones are limited. Without a token the command is not executed: 6985
 * (conditions of use not satisfied, one of GP's general error conditions),
 * counter untouched.
 */
static int
iu_take(struct pg_vse_card *c)
{
	uint64_t now = pg_mono_ms(), cap = (uint64_t)c->iu_burst * 1000u;

	c->iu_milli += (now - c->iu_last_ms) * c->iu_rate; /* ms x tokens/s = milli-tokens */
	if (c->iu_milli > cap)
		c->iu_milli = cap;
	c->iu_last_ms = now;
	if (c->iu_milli < 1000)
		return 0;
	c->iu_milli -= 1000;
	return 1;
}

static void
iu_refund(struct pg_vse_card *c)
{
	uint64_t cap = (uint64_t)c->iu_burst * 1000u;

	c->iu_milli = c->iu_milli + 1000 > cap ? cap : c->iu_milli + 1000;
}

static void *
arena_alloc(void *actx, size_t n)
{
	return pg_arena_calloc(actx, 1, n); /* the runtime expects zeroed memory */
}

static void
arena_dealloc(void *actx, void *p)
{
	pg_arena_dealloc(actx, p);
}

int
pg_vse_pmem_create(const char *path, uint64_t pmem_size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	int rc = 0;

	if (fd < 0)
		return pg_error(PG_EIO, "vse", "open '%s': %s", path, strerror(errno));
	if (ftruncate(fd, (off_t)(2 * (NVM_HDR + pmem_size))) != 0 || fsync(fd) != 0)
		rc = pg_error(PG_EIO, "vse", "size '%s': %s", path, strerror(errno));
	close(fd);
	return rc;
}

#ifdef PG_VSE_TEST_HOOKS
static int
sw_only(uint8_t *r, size_t *rlen, size_t n, uint16_t sw)
{
	r[n] = (uint8_t)(sw >> 8);
	r[n + 1] = (uint8_t)sw;
	*rlen = n + 2;
	return 0;
}

/*
 * Test-only instructions (CLA 80 INS EE), compiled only into test builds
 * (BUILD_TESTING) and honoured only when PAYGUARD_VSE_TEST_HOOKS=1 was set
 * when the VSE started: P1=01 open the path in the data (answers 9000 if it
 * opened, errno + 6982 if not); P1=02 a system call outside the seccomp
 * allow-list (socket); P1=03 a write into the guard page before the arena.
 */
static int
test_hook(struct pg_vse_card *c, const uint8_t *capdu, size_t clen, uint8_t *r, size_t *rlen)
{
	char path[256];
	size_t lc = clen > 5 ? capdu[4] : 0;
	int fd;

	if (lc > clen - 5 || lc >= sizeof(path))
		return sw_only(r, rlen, 0, 0x6700);
	switch (capdu[2]) {
	case 0x01:
		memcpy(path, capdu + 5, lc);
		path[lc] = '\0';
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			close(fd);
			return sw_only(r, rlen, 0, 0x9000);
		}
		r[0] = (uint8_t)errno;
		return sw_only(r, rlen, 1, 0x6982);
	case 0x02:
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd >= 0)
			close(fd);
		return sw_only(r, rlen, 0, 0x9000);
	case 0x03:
		((volatile uint8_t *)pg_arena_base(c->arena))[-1] = 1;
		return sw_only(r, rlen, 0, 0x9000);
	default:
		return sw_only(r, rlen, 0, 0x6A86);
	}
}
#endif

static int
card_process(void *ctx, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t *rlen)
{
	struct pg_vse_card *c = ctx;
	int gp = clen >= 4 && (capdu[0] & 0x80), rc;

#ifdef PG_VSE_TEST_HOOKS
	if (c->hooks && clen >= 4 && capdu[0] == 0x80 && capdu[1] == 0xEE && *rlen >= 260)
		return test_hook(c, capdu, clen, rapdu, rlen);
#endif
	if (gp && capdu[1] == 0x50 && c->iu_rate && !iu_take(c)) {
		if (*rlen < 2)
			return PG_ETOOBIG;
		rapdu[0] = (uint8_t)(PG_SW_CONDITIONS >> 8), rapdu[1] = (uint8_t)PG_SW_CONDITIONS;
		*rlen = 2;
		return 0;
	}
	rc = c->inner->process(c->inner->ctx, capdu, clen, rapdu, rlen);
	if (rc == 0 && gp && capdu[1] == 0x82 && c->iu_rate && *rlen == 2 && rapdu[0] == 0x90 &&
	    rapdu[1] == 0x00)
		iu_refund(c); /* the session was authenticated: its INITIALIZE UPDATE is free */
	return rc;
}

static int
card_atr(void *ctx, uint8_t *atr, size_t *len)
{
	struct pg_vse_card *c = ctx;

	return c->inner->atr(c->inner->ctx, atr, len);
}

static void
card_reset(void *ctx)
{
	struct pg_vse_card *c = ctx;

	if (c->inner->reset)
		c->inner->reset(c->inner->ctx);
}

int
pg_vse_card_new(struct pg_vse_card **out, const struct pg_vse_request *r, uint32_t serial,
		struct pg_arena *arena, int pmem_fd)
{
	/* Card issuer's data in the ATR (pg_card_atr_build): "PGVSE" + serial + version. */
	uint8_t id[] = {'P', 'G', 'V', 'S', 'E', 0, 0, 0, 0, 0x01};
	uint8_t atr[PG_ATR_MAX];
	int atr_len;
	const char *apps[PG_VSE_MAX_APPLETS];
	struct pg_gp_config cfg = {0};
	struct pg_vse_card *c;
	int rc;

	*out = NULL;
	pg_put_be32(id + 5, serial);
	atr_len = pg_card_atr_build(atr, sizeof(atr), id, sizeof(id));
	if (atr_len < 0)
		return atr_len;
	c = pg_arena_calloc(arena, 1, sizeof(*c));
	if (!c)
		return pg_error(PG_ENOMEM, "vse", "arena too small for the card");
	c->arena = arena;
	c->iu_rate = r->iu_rate;
	c->iu_burst = r->iu_burst ? r->iu_burst : 1;
	c->iu_milli = (uint64_t)c->iu_burst * 1000u;
	c->iu_last_ms = pg_mono_ms();
	rc = pg_nvm_open_fd(&c->nvm, pmem_fd, (size_t)r->pmem_size);
	if (rc < 0)
		goto fail;
	for (int i = 0; i < r->n_applets; i++)
		apps[i] = r->applets[i];
	cfg.atr = atr;
	cfg.atr_len = (size_t)atr_len;
	cfg.serial = serial;
	cfg.keys = &r->keys;
	memcpy(cfg.cin, r->cin, sizeof(cfg.cin));
	cfg.nvm = c->nvm;
	cfg.nvm_capacity = (size_t)r->pmem_size;
	cfg.applets = apps;
	cfg.n_applets = r->n_applets;
	cfg.alloc = arena_alloc;
	cfg.dealloc = arena_dealloc;
	cfg.actx = arena;
	rc = pg_gp_card_new(&c->gp, &cfg);
	if (rc == PG_ENOMEM) {
		/* Its image buffers scale with pmem: ~50 KiB at 16 KiB, more beyond. */
		rc = pg_error(rc, "vse",
			      "the card does not fit a %zu-byte arena with %llu bytes of "
			      "persistent memory",
			      pg_arena_size(arena), (unsigned long long)r->pmem_size);
		goto fail;
	}
	if (rc < 0)
		goto fail;
	c->inner = pg_gp_card_card(c->gp);
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
	*out = c;
	return 0;
fail:
	pg_vse_card_free(c);
	return rc;
}

void
pg_vse_card_free(struct pg_vse_card *c)
{
	if (!c)
		return;
	pg_gp_card_free(c->gp);
	pg_nvm_close(c->nvm);
	pg_arena_dealloc(c->arena, c);
}

const struct pg_card *
pg_vse_card_card(struct pg_vse_card *c)
{
	return &c->card;
}
