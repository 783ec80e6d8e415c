/*
 * Tear safety of the GP card's persistent memory (src/se/card/nvm.c, the
 * per-command commit in gp.c). Unit checks of the two-slot store (a cut at
 * EVERY byte of a commit leaves the old or the new image; a corrupt slot is
 * ignored), then the power-cut test of issue 3: >= 1,000 seeded trials, each
 * a child process that runs one step of state-changing card commands on a
 * file-backed card and is SIGKILLed at a random point — at a random byte of
 * its writes (kill-at-Nth-byte hook, the write torn there) or by the parent
 * after a random delay — after which the parent restarts the card from the
 * file and requires its persistent image to be exactly the state before or
 * after one of the step's commands.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gp_test.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CAP    8192
#define TRIALS 1200

static void
test_store_basics(void **st)
{
	struct pg_nvm *n = NULL;
	uint8_t a[100], b[3000], out[CAP];
	size_t len = 1;

	(void)st;
	memset(a, 0xA5, sizeof(a));
	memset(b, 0x5B, sizeof(b));
	assert_int_equal(pg_nvm_open_memory(&n, CAP), 0);
	assert_int_equal(pg_nvm_load(n, out, sizeof(out), &len), 0);
	assert_int_equal(len, 0); /* blank */
	assert_int_equal(pg_nvm_commit(n, a, sizeof(a)), 0);
	assert_int_equal(pg_nvm_generation(n), 1);
	assert_int_equal(pg_nvm_commit(n, b, sizeof(b)), 0);
	assert_int_equal(pg_nvm_load(n, out, sizeof(out), &len), 0);
	assert_int_equal(len, sizeof(b));
	assert_memory_equal(out, b, sizeof(b));
	assert_int_equal(pg_nvm_generation(n), 2);
	assert_int_equal(pg_nvm_commit(n, out, CAP + 1), PG_ERANGE);
	assert_int_equal(pg_nvm_load(n, out, 10, &len), PG_ETOOBIG);
	pg_nvm_close(n);
	assert_int_equal(pg_nvm_open_memory(&n, 0), PG_ERANGE);
	assert_int_equal(pg_nvm_open_fd(&n, -1, 100), PG_EINVAL);
}

/* A cut at every byte of a commit: the store reopens with the old or the new image. */
static void
test_store_tear_every_byte(void **st)
{
	static uint8_t snap[2 * (64 + 1024)], torn[2 * (64 + 1024)];
	struct pg_nvm *n = NULL, *m = NULL;
	uint8_t img[3][700], out[1024];
	size_t sl, tl, len;
	int olds = 0, news = 0;

	(void)st;
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 700; j++)
			img[i][j] = (uint8_t)(i * 37 + j);
	assert_int_equal(pg_nvm_open_memory(&n, 1024), 0);
	assert_int_equal(pg_nvm_open_memory(&m, 1024), 0);
	/* Old image in slot 0 (gen 1) then slot 1 (gen 2): cuts overwrite either slot. */
	for (int round = 0; round < 2; round++) {
		assert_int_equal(pg_nvm_commit(n, img[round], 600 + (size_t)round * 50), 0);
		assert_int_equal(pg_nvm_memory_snapshot(n, snap, sizeof(snap), &sl), 0);
		for (long cut = 0; cut <= 700 + 64; cut++) {
			int rc;

			assert_int_equal(pg_nvm_memory_restore(m, snap, sl), 0);
			assert_int_equal(pg_nvm_load(m, out, sizeof(out), &len), 0);
			pg_nvm_tear_after(m, cut);
			rc = pg_nvm_commit(m, img[2], 700);
			assert_int_equal(pg_nvm_memory_snapshot(m, torn, sizeof(torn), &tl), 0);
			assert_int_equal(pg_nvm_memory_restore(m, torn, tl), 0);
			assert_int_equal(pg_nvm_load(m, out, sizeof(out), &len), 0);
			if (rc == 0 || (len == 700 && memcmp(out, img[2], 700) == 0)) {
				assert_int_equal(len, 700);
				assert_memory_equal(out, img[2], 700);
				news++;
			} else {
				assert_int_equal(len, 600 + (size_t)round * 50);
				assert_memory_equal(out, img[round], len);
				olds++;
			}
		}
	}
	assert_true(olds > 1000 && news >= 2);
	/* A flipped byte in the newest slot: the older image is taken. */
	assert_int_equal(pg_nvm_memory_snapshot(n, snap, sizeof(snap), &sl), 0);
	snap[64 + 1024 + 64 + 5] ^= 1; /* slot 1 holds generation 2 */
	assert_int_equal(pg_nvm_memory_restore(m, snap, sl), 0);
	assert_int_equal(pg_nvm_load(m, out, sizeof(out), &len), 0);
	assert_int_equal(len, 600);
	assert_memory_equal(out, img[0], 600);
	pg_nvm_close(n);
	pg_nvm_close(m);
}

/* ---- the power-cut test over the card ---- */

/* A step: state-changing commands. "IU" opens an SCP03 session (IU + EA) and
 * "S:" sends the rest through it. No step verifies a correct PIN: that
 * command commits twice by design (the counter goes down before the
 * comparison), which test_verify_correct_pin covers. */
static const char *const steps[][8] = {
    {"00A4040007F0504750494E01", "0020008008249999FFFFFFFFFF", NULL},
    {"00A4040007F050475041590100",
     "80A80000128310000000000000000010001122334409780"
     "0",
     NULL},
    {"00A4040008A00000015100000000", "IU",
     "S:80E60C001C06F050474C460306F050474D440307F0504750494E020100"
     "02C9000000",
     "S:80E2880006004203010203", NULL},
    {"00A4040008A00000015100000000", "IU", "S:80E620000D000007F050475041590100000000",
     "S:80E288000802010570035A0112", "S:80E40000094F07F0504750494E0200", NULL},
    {"00A4040007F0504750494E01", "0024008010249999FFFFFFFFFF26975310FFFFFFFF", NULL},
    {"00A4040008A00000015100000000", "IU", "S:80F0408007F050475041590100",
     "S:80F0400007F050475041590100", "S:80E2880006004203AABBCC", NULL},
};
#define NSTEPS	  ((int)(sizeof(steps) / sizeof(steps[0])))
#define MAXSTATES 8

struct golden {
	uint8_t *file;
	size_t file_len;
	uint8_t img[MAXSTATES][CAP]; /* image before the step, then after each command */
	int nimg[MAXSTATES];
	int nstates;
	long bytes; /* bytes the step's commits write */
};

static struct golden gold[NSTEPS + 1];

/* Runs one command of a step without cmocka (also in the child): 0 or -1. */
static int
run_cmd(const struct pg_card *card, struct pg_scp03 *s, const char *cmd)
{
	uint8_t c[600], r[700];
	size_t rn = sizeof(r);
	int n;
	struct pg_scp03_keys k;

	if (strcmp(cmd, "IU") == 0) {
		sd_default_keys(&k);
		return sd_scp03_open(card, s, &k, 0x03, NULL) == 0 ? 0 : -1;
	}
	if (strncmp(cmd, "S:", 2) == 0) {
		n = pg_hex_decode(c, sizeof(c), cmd + 2);
		if (n < 4)
			return -1;
		return sd_scp03_tx(card, s, c, (size_t)n, r, sizeof(r)) >= 2 ? 0 : -1;
	}
	n = pg_hex_decode(c, sizeof(c), cmd);
	if (n < 4 || card->process(card->ctx, c, (size_t)n, r, &rn) < 0)
		return -1;
	return 0;
}

static struct pg_gp_card *
open_card(int fd, struct pg_nvm **nvm, int blank)
{
	static const char *const apps[] = {"ppse", "payment", "pin"};
	struct pg_gp_config cfg = {
	    .serial = 77, .applets = apps, .n_applets = blank ? 3 : 0, .nvm_capacity = CAP};
	struct pg_gp_card *g = NULL;

	if (pg_nvm_open_fd(nvm, fd, CAP) < 0)
		return NULL;
	cfg.nvm = *nvm;
	if (pg_gp_card_new(&g, &cfg) < 0) {
		pg_nvm_close(*nvm);
		return NULL;
	}
	return g;
}

static uint8_t *
read_all(int fd, size_t *len)
{
	off_t end = lseek(fd, 0, SEEK_END);
	uint8_t *p = malloc((size_t)end);

	assert_non_null(p);
	assert_int_equal(pread(fd, p, (size_t)end, 0), end);
	*len = (size_t)end;
	return p;
}

static void
write_all(int fd, const uint8_t *p, size_t len)
{
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(pwrite(fd, p, len, 0), (ssize_t)len);
}

static void
test_power_cut(void **st)
{
	char path[] = "/tmp/pg_tearXXXXXX";
	int fd = mkstemp(path), outcome[MAXSTATES] = {0}, torn = 0, delayed = 0;
	struct pg_nvm *nvm = NULL;
	struct pg_gp_card *g;
	struct pg_scp03 s;
	unsigned seed = 20261125;
	uint8_t img[CAP];

	(void)st;
	assert_true(fd >= 0);
	unlink(path);
	/* Phase 1: the golden run, recording the file before each step and the image after
	 * every command. */
	g = open_card(fd, &nvm, 1);
	assert_non_null(g);
	for (int k = 0; k < NSTEPS; k++) {
		struct golden *gd = &gold[k];

		gd->file = read_all(fd, &gd->file_len);
		gd->nimg[0] = pg_gp_card_image(g, gd->img[0], CAP);
		gd->nstates = 1;
		for (int j = 0; steps[k][j]; j++) {
			uint64_t gen = pg_nvm_generation(nvm);

			assert_int_equal(run_cmd(pg_gp_card_card(g), &s, steps[k][j]), 0);
			assert_true(gd->nstates < MAXSTATES);
			gd->nimg[gd->nstates] = pg_gp_card_image(g, gd->img[gd->nstates], CAP);
			gd->bytes +=
			    (long)(pg_nvm_generation(nvm) - gen) * (gd->nimg[gd->nstates] + 64);
			gd->nstates++;
		}
		assert_true(gd->bytes > 0);
		/* Each step changes the persistent state. */
		assert_true(gd->nimg[0] != gd->nimg[gd->nstates - 1] ||
			    memcmp(gd->img[0], gd->img[gd->nstates - 1], (size_t)gd->nimg[0]) != 0);
	}
	pg_gp_card_free(g);
	pg_nvm_close(nvm);
	/* Phase 2: seeded trials, each killed somewhere in one step. */
	for (int t = 0; t < TRIALS; t++) {
		int k = rand_r(&seed) % NSTEPS, by_parent = rand_r(&seed) % 4 == 0, status, n,
		    hit = -1;
		long cut = rand_r(&seed) % gold[k].bytes;
		long delay_us = rand_r(&seed) % 4000;
		pid_t pid;

		write_all(fd, gold[k].file, gold[k].file_len);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			struct pg_nvm *cn = NULL;
			struct pg_gp_card *cg = open_card(fd, &cn, 0);
			struct pg_scp03 cs;

			if (!cg)
				_exit(2);
			if (!by_parent)
				pg_nvm_tear_after(cn, cut);
			for (int j = 0; steps[k][j]; j++)
				if (run_cmd(pg_gp_card_card(cg), &cs, steps[k][j]) < 0)
					_exit(3);
			_exit(0);
		}
		if (by_parent) {
			struct timespec ts = {0, delay_us * 1000};

			nanosleep(&ts, NULL);
			kill(pid, SIGKILL);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (WIFSIGNALED(status))
			by_parent ? delayed++ : torn++;
		else
			assert_int_equal(WEXITSTATUS(status), 0);
		/* Restart from the file: exactly one of the step's states. */
		g = open_card(fd, &nvm, 0);
		assert_non_null(g);
		n = pg_gp_card_image(g, img, CAP);
		for (int j = 0; j < gold[k].nstates && hit < 0; j++)
			if (n == gold[k].nimg[j] && memcmp(img, gold[k].img[j], (size_t)n) == 0)
				hit = j;
		if (hit < 0)
			fprintf(stderr,
				"trial %d step %d: state after restart is not one of its %d\n", t,
				k, gold[k].nstates);
		assert_true(hit >= 0);
		outcome[hit]++;
		pg_gp_card_free(g);
		pg_nvm_close(nvm);
	}
	fprintf(stderr,
		"power cut: %d trials, %d torn at a random byte, %d killed after a delay;"
		" states reached:",
		TRIALS, torn, delayed);
	for (int j = 0; j < MAXSTATES; j++)
		fprintf(stderr, " %d", outcome[j]);
	fprintf(stderr, "\n");
	assert_true(torn >= 500);    /* the cuts really happened */
	assert_true(outcome[0] > 0); /* both "old" and later states were seen */
	assert_true(outcome[1] + outcome[2] + outcome[3] + outcome[4] > 0);
	for (int k = 0; k < NSTEPS; k++)
		free(gold[k].file);
	close(fd);
}

/* VERIFY with the right PIN commits twice (counter down, then reset): a cut in between
 * leaves the counter decremented — never a free try. */
static void
test_verify_correct_pin(void **st)
{
	static const char *const apps[] = {"pin"};
	static uint8_t snap[2 * (64 + CAP)], torn[2 * (64 + CAP)];
	struct pg_nvm *n = NULL;
	struct pg_gp_config cfg = {.applets = apps, .n_applets = 1, .nvm_capacity = CAP};
	struct pg_gp_card *g;
	struct gt t;
	size_t sl, tl;
	int seen[4] = {0};

	(void)st;
	assert_int_equal(pg_nvm_open_memory(&n, CAP), 0);
	cfg.nvm = n;
	assert_int_equal(pg_gp_card_new(&g, &cfg), 0);
	pg_gp_card_free(g);
	assert_int_equal(pg_nvm_memory_snapshot(n, snap, sizeof(snap), &sl), 0);
	for (long cut = 0; cut < 1200; cut += 3) {
		assert_int_equal(pg_nvm_memory_restore(n, snap, sl), 0);
		assert_int_equal(pg_gp_card_new(&g, &cfg), 0);
		memset(&t, 0, sizeof(t));
		t.card = pg_gp_card_card(g);
		gt_expect(&t, "00A4040007F0504750494E01", PG_SW_OK);
		pg_nvm_tear_after(n, cut);
		gt_tx(&t, "0020008008241234FFFFFFFFFF");
		pg_gp_card_free(g);
		assert_int_equal(pg_nvm_memory_snapshot(n, torn, sizeof(torn), &tl), 0);
		assert_int_equal(pg_nvm_memory_restore(n, torn, tl), 0);
		assert_int_equal(pg_gp_card_new(&g, &cfg), 0);
		t.card = pg_gp_card_card(g);
		gt_expect(&t, "00A4040007F0504750494E01", PG_SW_OK);
		gt_tx(&t, "0020008000");
		assert_true(t.sw == 0x63C3 || t.sw == 0x63C2);
		seen[t.sw & 3]++;
		pg_gp_card_free(g);
	}
	assert_true(seen[3] > 0 && seen[2] > 0);
	pg_nvm_close(n);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_store_basics),
	    cmocka_unit_test(test_store_tear_every_byte),
	    cmocka_unit_test(test_verify_correct_pin),
	    cmocka_unit_test(test_power_cut),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
