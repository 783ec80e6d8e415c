/*
 * VSE scale benchmark (seed 6, issue 3's scale acceptance): starts a
 * hypervisor (`payguard vse serve`, the binary given), creates N VSEs through
 * the socket API and times each create, drives APDUs to every VSE over its
 * link socket, reads each VSE process's memory beyond its arena from
 * /proc/<pid>/smaps, and measures the same card in process for comparison.
 * Prints medians. Usage: vse_bench PAYGUARD_BINARY [COUNT] [APDUS_PER_VSE]
 */
#include "payguard/arena.h"
#include "payguard/clock.h"
#include "payguard/error.h"
#include "payguard/link.h"
#include "payguard/log.h"
#include "payguard/stream.h"
#include "payguard/vse.h"

#include <PCSC/winscard.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define ARENA (256u * 1024u)

static const char *const links[] = {"t1", "swp", "spi", "i2c", "ccid", "t0"};
static const uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0x00,
			      0x00, 0x01, 0x51, 0x00, 0x00, 0x00, 0x00};
static const uint8_t cplc[] = {0x80, 0xCA, 0x9F, 0x7F, 0x00};

static int
cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_d);
	return n ? v[n / 2] : 0;
}

/* Private (USS) KiB of a process outside its arena mapping, and the arena's resident KiB. */
static int
private_beyond_arena(int pid, double *beyond_kib, double *arena_kib)
{
	char path[64], line[512];
	FILE *f;
	unsigned long s = 0, e = 0, prev_e = 0, cur_priv = 0, total = 0, arena_priv = 0;
	char perms[8] = "", prev_perms[8] = "";
	int is_arena = 0;

	snprintf(path, sizeof(path), "/proc/%d/smaps", pid);
	if (!(f = fopen(path, "r")))
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long a, b, kb;
		char p[8];

		if (sscanf(line, "%lx-%lx %7s", &a, &b, p) == 3 && strchr(line, ' ')) {
			prev_e = e;
			memcpy(prev_perms, perms, sizeof(perms));
			s = a, e = b;
			memcpy(perms, p, sizeof(perms));
			/* The arena: rw-p of exactly its size right after a ---p guard page. */
			is_arena = e - s == ARENA && strcmp(perms, "rw-p") == 0 && prev_e == s &&
				   strcmp(prev_perms, "---p") == 0;
			cur_priv = 0;
			continue;
		}
		if (sscanf(line, "Private_Clean: %lu kB", &kb) == 1 ||
		    sscanf(line, "Private_Dirty: %lu kB", &kb) == 1) {
			total += kb;
			cur_priv += kb;
			if (is_arena)
				arena_priv += kb;
		}
	}
	fclose(f);
	*beyond_kib = (double)(total - arena_priv);
	*arena_kib = (double)arena_priv;
	return 0;
}

static double
inprocess_rate(const char *link, int n)
{
	struct pg_vse_request r;
	struct pg_arena *a = NULL;
	struct pg_vse_card *c = NULL;
	struct pg_link *l = NULL;
	uint8_t atr[PG_ATR_MAX], rapdu[300];
	size_t al = sizeof(atr);
	int fd = memfd_create("pmem", 0);
	double rate = 0;
	uint64_t t0;

	memset(&r, 0, sizeof(r));
	strcpy(r.name, "b");
	r.arena_size = ARENA;
	r.pmem_size = 16384;
	r.keys.len = 16;
	if (fd < 0 || ftruncate(fd, 2 * (64 + 16384)) != 0 || pg_arena_new(&a, ARENA) != 0 ||
	    pg_vse_card_new(&c, &r, 1, a, fd) != 0)
		goto out;
	if (link) {
		if (pg_link_open_memory(&l, pg_link_find(link), pg_vse_card_card(c), NULL) != 0 ||
		    pg_link_power_on(l, atr, &al) != 0)
			goto out;
	}
	{
		const struct pg_card *card = pg_vse_card_card(c);
		size_t rl = sizeof(rapdu);

		card->process(card->ctx, sel, sizeof(sel), rapdu, &rl);
		if (l)
			pg_link_transmit(l, sel, sizeof(sel), rapdu, &rl);
		t0 = pg_mono_ns();
		for (int i = 0; i < n; i++) {
			rl = sizeof(rapdu);
			if (l)
				pg_link_transmit(l, cplc, sizeof(cplc), rapdu, &rl);
			else
				card->process(card->ctx, cplc, sizeof(cplc), rapdu, &rl);
		}
		rate = n / ((double)(pg_mono_ns() - t0) / 1e9);
		if (rl != 47)
			rate = -1;
	}
out:
	if (l)
		pg_link_close(l);
	pg_vse_card_free(c);
	pg_arena_free(a);
	if (fd >= 0)
		close(fd);
	return rate;
}

/*
 * PC/SC phase (PG_VSE_BENCH_PCSC=N, run.sh starts pcscd with Debian's vpcd entry):
 * N VSEs exposed on vpcd slots 0..N-1, SELECT ISD + `per` GET DATA CPLC to each
 * through pcscd (SCardTransmit), one reader at a time.
 */
static int
pcsc_phase(const char *sock, int n, int per, double *rate, int *readers_used)
{
	SCARDCONTEXT ctx;
	char *names = NULL, *r;
	DWORD len = SCARD_AUTOALLOCATE;
	uint64_t apdus = 0, t0;
	int ok = 0;

	for (int i = 0; i < n; i++) {
		char name[32];
		json_t *resp = NULL;

		snprintf(name, sizeof(name), "p%02d", i);
		if (pg_vse_api_call(sock,
				    json_pack("{s:s, s:{s:s, s:i, s:s, s:{s:s}, s:{s:s, s:i}}}",
					      "op", "create", "vse", "name", name, "arena",
					      (int)ARENA, "pmem", "16K", "keys", "master",
					      "000102030405060708090A0B0C0D0E0F", "expose", "link",
					      "vpcd", "slot", i),
				    &resp, 30000) < 0) {
			fprintf(stderr, "create %s on vpcd slot %d: %s\n", name, i,
				pg_last_error());
			return -1;
		}
		json_decref(resp);
	}
	if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx) != SCARD_S_SUCCESS)
		return -1;
	usleep(1500000); /* pcscd polls vpcd readers for card insertion */
	if (SCardListReaders(ctx, NULL, (LPSTR)&names, &len) != SCARD_S_SUCCESS) {
		SCardReleaseContext(ctx);
		return -1;
	}
	t0 = pg_mono_ns();
	for (r = names; *r; r += strlen(r) + 1) {
		SCARDHANDLE h;
		DWORD proto;
		uint8_t resp[300];
		DWORD rl;
		int good = 1;

		if (strncmp(r, "Virtual PCD", 11) != 0)
			continue;
		if (SCardConnect(ctx, r, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
				 &h, &proto) != SCARD_S_SUCCESS)
			continue;
		for (int k = 0; k <= per; k++) {
			const SCARD_IO_REQUEST *pci =
			    proto == SCARD_PROTOCOL_T1 ? SCARD_PCI_T1 : SCARD_PCI_T0;

			rl = sizeof(resp);
			if (SCardTransmit(h, pci, k ? cplc : sel, k ? sizeof(cplc) : sizeof(sel),
					  NULL, resp, &rl) != SCARD_S_SUCCESS ||
			    rl < 2 || resp[rl - 2] != 0x90) {
				good = 0;
				break;
			}
			apdus++;
		}
		ok += good;
		SCardDisconnect(h, SCARD_LEAVE_CARD);
	}
	*rate = apdus / ((double)(pg_mono_ns() - t0) / 1e9);
	*readers_used = ok;
	SCardFreeMemory(ctx, names);
	SCardReleaseContext(ctx);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *exe = argc > 1 ? argv[1] : NULL;
	int count = argc > 2 ? atoi(argv[2]) : 200, per = argc > 3 ? atoi(argv[3]) : 50;
	char dir[] = "/tmp/pg-vse-bench-XXXXXX", sock[128];
	double *ct = calloc((size_t)count, sizeof(double)),
	       *mem = calloc((size_t)count, sizeof(double));
	double *am = calloc((size_t)count, sizeof(double));
	int *pids = calloc((size_t)count, sizeof(int)), created = 0, memn = 0, fails = 0;
	uint64_t apdus = 0, t0;
	double secs;
	pid_t hv;

	if (!exe || !ct || !mem || !am || !pids || !mkdtemp(dir)) {
		fprintf(stderr, "usage: vse_bench PAYGUARD_BINARY [COUNT] [APDUS_PER_VSE]\n");
		return 2;
	}
	snprintf(sock, sizeof(sock), "%s/vse/hv.sock", dir);
	hv = fork();
	if (hv == 0) {
		execl(exe, "payguard", "vse", "serve", "--data-dir", dir, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100 && access(sock, F_OK) != 0; i++)
		usleep(50000);
	usleep(100000);
	fprintf(stderr, "creating %d VSEs (arena 256 KiB, pmem 16 KiB, links %s...)\n", count,
		"t1/swp/spi/i2c/ccid/t0");
	for (int i = 0; i < count; i++) {
		char name[32];
		json_t *resp = NULL;
		uint64_t s = pg_mono_ns();
		int rc;

		snprintf(name, sizeof(name), "b%03d", i);
		rc = pg_vse_api_call(sock,
				     json_pack("{s:s, s:{s:s, s:i, s:s, s:[s], s:{s:s}, s:{s:s}}}",
					       "op", "create", "vse", "name", name, "arena",
					       (int)ARENA, "pmem", "16K", "applets", "test", "keys",
					       "master", "000102030405060708090A0B0C0D0E0F",
					       "expose", "link", links[i % 6]),
				     &resp, 30000);
		ct[i] = (double)(pg_mono_ns() - s) / 1e6;
		if (rc < 0) {
			fprintf(stderr, "create %s: %s\n", name, pg_last_error());
			break;
		}
		pids[i] =
		    (int)json_integer_value(json_object_get(json_object_get(resp, "vse"), "pid"));
		json_decref(resp);
		created++;
	}
	{
		/* The manager's list of all of them (an answer far above the 64 KiB request cap).
		 */
		json_t *resp = NULL;

		if (pg_vse_api_call(sock, json_pack("{s:s}", "op", "list"), &resp, 30000) < 0 ||
		    (int)json_array_size(json_object_get(resp, "vses")) != created) {
			fprintf(stderr, "list: %s\n", pg_last_error());
			fails++;
		}
		json_decref(resp);
	}
	/* APDUs to every VSE over its link socket (SELECT ISD, then GET DATA CPLC). */
	t0 = pg_mono_ns();
	for (int i = 0; i < created; i++) {
		char addr[200];
		struct pg_stream *s = NULL;
		struct pg_link *l = NULL;
		uint8_t atr[PG_ATR_MAX], r[300];
		size_t al = sizeof(atr), rl;

		snprintf(addr, sizeof(addr), "unix:%s/vse/b%03d/link.sock", dir, i);
		if (pg_stream_connect(&s, addr, 5000) != 0 ||
		    pg_link_find(links[i % 6])->host_open(&l, s, NULL, NULL) != 0 ||
		    pg_link_power_on(l, atr, &al) != 0) {
			fails++;
			if (l)
				pg_link_close(l);
			continue;
		}
		rl = sizeof(r);
		if (pg_link_transmit(l, sel, sizeof(sel), r, &rl) != 0)
			fails++;
		apdus++;
		for (int k = 0; k < per; k++) {
			rl = sizeof(r);
			if (pg_link_transmit(l, cplc, sizeof(cplc), r, &rl) != 0 || rl != 47)
				fails++;
			apdus++;
		}
		pg_link_close(l);
	}
	secs = (double)(pg_mono_ns() - t0) / 1e9;
	for (int i = 0; i < created; i++)
		if (pids[i] > 0 && private_beyond_arena(pids[i], &mem[memn], &am[memn]) == 0)
			memn++;
	printf("VSEs created:                    %d of %d (APDU failures: %d)\n", created, count,
	       fails);
	printf("create time per VSE, median:     %.1f ms (target < 50 ms)\n", median(ct, created));
	printf("create time per VSE, max:        %.1f ms\n", created ? ct[created - 1] : 0.0);
	printf("private memory beyond the arena: %.0f KiB median (target < 1024 KiB); arena "
	       "resident %.0f KiB median of %u KiB\n",
	       median(mem, memn), median(am, memn), ARENA / 1024);
	printf("APDUs to all VSEs over sockets:  %.0f APDUs/s (%llu APDUs, one host at a time)\n",
	       apdus / secs, (unsigned long long)apdus);
	{
		double raw = inprocess_rate(NULL, 200000), t1 = inprocess_rate("t1", 200000);

		printf("same card in process:            %.0f APDUs/s direct, %.0f APDUs/s over "
		       "T=1 memory link\n",
		       raw, t1);
		printf("ratio in-process T=1 / VSE over socket: %.1fx\n", t1 / (apdus / secs));
	}
	if (getenv("PG_VSE_BENCH_PCSC")) {
		int n = atoi(getenv("PG_VSE_BENCH_PCSC")), used = 0;
		double rate = 0;

		if (pcsc_phase(sock, n, per, &rate, &used) == 0)
			printf("through pcscd + vpcd:            %.0f APDUs/s (%d VSEs exposed as "
			       "PC/SC readers, all answering 9000: %d)\n",
			       rate, n, used);
		else
			fails++;
	} else {
		printf("through pcscd + vpcd:            not run (bench/vse/run.sh sets "
		       "PG_VSE_BENCH_PCSC)\n");
	}
	kill(hv, SIGTERM);
	waitpid(hv, NULL, 0);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
	free(ct), free(mem), free(am), free(pids);
	return fails || created != count;
}
