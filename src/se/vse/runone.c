/*
 * One VSE process (seed 6: the address space the VMM allocates for a VSE):
 * `payguard vse run-one`, exec'd by the hypervisor with its configuration on
 * fd 3, its link (a listening socket) on fd 4 and a status pipe on fd 5.
 * Set-up maps the arena of the requested size (guard pages around it), opens
 * the persistent-memory file, builds the card in the arena, sets resource
 * limits, drops privileges and loads a seccomp filter; from then on the
 * process can only serve APDUs on what it already holds.
 */
#include "vse_int.h"

#include "payguard/arena.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/mem.h"
#include "payguard/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define PG_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PG_ASAN 1
#endif
#endif

#define CFG_FD	  3
#define LINK_FD	  4
#define STATUS_FD 5

static int
read_config(json_t **out)
{
	char *buf = malloc(PG_VSE_API_MAX + 1);
	size_t n = 0;
	json_error_t err;

	*out = NULL;
	if (!buf)
		return PG_ENOMEM;
	for (;;) {
		ssize_t k = read(CFG_FD, buf + n, PG_VSE_API_MAX - n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			free(buf);
			return pg_error(PG_EIO, "vse", "config pipe: %s", strerror(errno));
		}
		if (k == 0)
			break;
		n += (size_t)k;
		if (n == PG_VSE_API_MAX) {
			free(buf);
			return pg_error(PG_ETOOBIG, "vse", "config too large");
		}
	}
	close(CFG_FD);
	*out = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &err);
	pg_memzero(buf, n);
	free(buf);
	return *out ? 0 : pg_error(PG_EFORMAT, "vse", "config: %s", err.text);
}

#ifndef PG_ASAN
/* Address space in use now (bytes), from /proc/self/statm, before the limit is set. */
static uint64_t
vm_size(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long pages = 0;

	if (f) {
		if (fscanf(f, "%lu", &pages) != 1)
			pages = 0;
		fclose(f);
	}
	return (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
}
#endif

static int
set_limits(uint64_t pmem_size)
{
	struct rlimit core = {0, 0}, nofile = {16, 16};
	struct rlimit fsize = {2 * (pmem_size + 64), 2 * (pmem_size + 64)};

	if (setrlimit(RLIMIT_CORE, &core) != 0 || setrlimit(RLIMIT_NOFILE, &nofile) != 0 ||
	    setrlimit(RLIMIT_FSIZE, &fsize) != 0)
		return pg_error(PG_ESYS, "vse", "setrlimit: %s", strerror(errno));
#ifndef PG_ASAN
	{
		/*
		 * Everything the VSE will ever map is mapped now (the arena
		 * included); 8 MiB covers the link buffers and libc's arenas.
		 * Under ASan (the test build) the shadow reservation is terabytes,
		 * so RLIMIT_AS is left alone there.
		 */
		uint64_t as = vm_size() + 8u * 1024u * 1024u;
		struct rlimit r = {as, as};

		if (setrlimit(RLIMIT_AS, &r) != 0)
			return pg_error(PG_ESYS, "vse", "RLIMIT_AS: %s", strerror(errno));
	}
#endif
	return 0;
}

/* As root, each VSE runs under its own uid (100000 + serial): no ptrace, no /proc/<pid>/mem. */
static int
drop_privileges(uint32_t serial)
{
	uid_t id = (uid_t)(100000u + serial);

	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		return pg_error(PG_ESYS, "vse", "PR_SET_DUMPABLE: %s", strerror(errno));
	if (geteuid() != 0)
		return 0;
	if (setgroups(0, NULL) != 0 || setresgid(id, id, id) != 0 || setresuid(id, id, id) != 0)
		return pg_error(PG_ESYS, "vse", "drop to uid %u: %s", (unsigned)id,
				strerror(errno));
	return 0;
}

/*
 * The persistent memory belongs to one process: a POSIX write lock on the
 * whole file, held until this process ends (it never opens the file again,
 * so no close releases it early). A second copy of this VSE fails here; the
 * hypervisor reads the owner's pid with F_GETLK to stop a copy left from
 * before.
 */
static int
lock_pmem(int fd, const char *path)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};

	if (fcntl(fd, F_SETLK, &fl) == 0)
		return 0;
	if (errno == EACCES || errno == EAGAIN) {
		struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET};

		if (fcntl(fd, F_GETLK, &q) != 0)
			q.l_pid = 0;
		return pg_error(PG_EBUSY, "vse", "'%s' is in use by another VSE process (pid %d)",
				path, (int)q.l_pid);
	}
	return pg_error(PG_EIO, "vse", "lock '%s': %s", path, strerror(errno));
}

/*
 * Changing uid clears the parent-death signal the hypervisor set before exec
 * (prctl(2)); set it again, then make sure the hypervisor did not die before
 * that: its death would then never be signalled.
 */
static int
watch_parent(pid_t hv_pid)
{
	if (hv_pid <= 0)
		return 0; /* started by hand, not by a hypervisor */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
		return pg_error(PG_ESYS, "vse", "PR_SET_PDEATHSIG: %s", strerror(errno));
	if (getppid() != hv_pid)
		return pg_error(PG_ESTATE, "vse", "the hypervisor (pid %d) is gone", (int)hv_pid);
	return 0;
}

/*
 * The allow-list: I/O on descriptors already held, memory without PROT_EXEC,
 * clocks, and exit. open/openat fail with EACCES (so a VSE asking for a path,
 * another VSE's file included, gets a refusal it can report); any other
 * system call kills the process (SCMP_ACT_KILL_PROCESS).
 */
static int
load_seccomp(void)
{
	static const int allow[] = {
	    SCMP_SYS(read),	    SCMP_SYS(write),	      SCMP_SYS(readv),
	    SCMP_SYS(writev),	    SCMP_SYS(pread64),	      SCMP_SYS(pwrite64),
	    SCMP_SYS(lseek),	    SCMP_SYS(fsync),	      SCMP_SYS(fdatasync),
	    SCMP_SYS(close),	    SCMP_SYS(poll),	      SCMP_SYS(ppoll),
	    SCMP_SYS(accept),	    SCMP_SYS(accept4),	      SCMP_SYS(recvfrom),
	    SCMP_SYS(sendto),	    SCMP_SYS(recvmsg),	      SCMP_SYS(sendmsg),
	    SCMP_SYS(shutdown),	    SCMP_SYS(clock_gettime),  SCMP_SYS(clock_nanosleep),
	    SCMP_SYS(nanosleep),    SCMP_SYS(gettimeofday),   SCMP_SYS(brk),
	    SCMP_SYS(munmap),	    SCMP_SYS(mremap),	      SCMP_SYS(madvise),
	    SCMP_SYS(futex),	    SCMP_SYS(exit),	      SCMP_SYS(exit_group),
	    SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask), SCMP_SYS(getpid),
	    SCMP_SYS(gettid),	    SCMP_SYS(getrandom),      SCMP_SYS(fstat),
	    SCMP_SYS(newfstatat),   SCMP_SYS(sched_yield),    SCMP_SYS(restart_syscall),
	    SCMP_SYS(fcntl),
	};
	scmp_filter_ctx f = seccomp_init(SCMP_ACT_KILL_PROCESS);
	int rc = 0;

	if (!f)
		return pg_error(PG_ESYS, "vse", "seccomp_init failed");
	for (size_t i = 0; i < sizeof(allow) / sizeof(allow[0]) && rc == 0; i++)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, allow[i], 0);
	/* mmap/mprotect only without PROT_EXEC: no new code, ever. */
	if (rc == 0)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
				      SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (rc == 0)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
				      SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	/* abort() signals the process itself; nothing else may be signalled. */
	if (rc == 0) {
		/* Spelled out: clang's -Wextra flags SCMP_A0's omitted datum_b. */
		struct scmp_arg_cmp self = {
		    .arg = 0, .op = SCMP_CMP_EQ, .datum_a = (scmp_datum_t)getpid(), .datum_b = 0};

		rc = seccomp_rule_add_array(f, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1, &self);
	}
	if (rc == 0) {
		/* setsockopt only for TCP_QUICKACK (the vpcd loop re-arms it per message). */
		struct scmp_arg_cmp quick[2] = {
		    {.arg = 1, .op = SCMP_CMP_EQ, .datum_a = IPPROTO_TCP, .datum_b = 0},
		    {.arg = 2, .op = SCMP_CMP_EQ, .datum_a = TCP_QUICKACK, .datum_b = 0}};

		rc = seccomp_rule_add_array(f, SCMP_ACT_ALLOW, SCMP_SYS(setsockopt), 2, quick);
	}
	if (rc == 0)
		rc = seccomp_rule_add(f, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(openat), 0);
	if (rc == 0)
		rc = seccomp_rule_add(f, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(open), 0);
	if (rc == 0)
		rc = seccomp_load(f); /* sets no_new_privs itself */
	seccomp_release(f);
	return rc == 0 ? 0 : pg_error(PG_ESYS, "vse", "seccomp: %s", strerror(-rc));
}

static void
status(const char *msg)
{
	size_t n = strlen(msg);

	if (write(STATUS_FD, msg, n) != (ssize_t)n)
		pg_debug("vse", "status pipe: %s", strerror(errno));
}

/*
 * vpcd exposure: the hypervisor connected to vsmartcard's vpcd (pcscd's
 * virtual reader) and handed the socket over as fd 4. vpcd frames every
 * message as a 2-byte big-endian length and the payload; the vpcd driver's
 * card role (src/se/link/vpcd.c) interprets them, this loop only frames.
 */
struct vpcd_out {
	struct pg_stream base;
	int fd;
};

static int
send_full(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return PG_ECLOSED;
		p += w, n -= (size_t)w;
	}
	return 0;
}

static int
recv_full(int fd, uint8_t *p, size_t n)
{
	while (n) {
		ssize_t r = recv(fd, p, n, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return PG_ECLOSED;
		p += r, n -= (size_t)r;
	}
	return 0;
}

static int
vpcd_out_write(struct pg_stream *s, int type, const uint8_t *p, size_t n)
{
	struct vpcd_out *o = (struct vpcd_out *)s;
	uint8_t hdr[2] = {(uint8_t)(n >> 8), (uint8_t)n};
	struct iovec iov[2] = {{hdr, 2}, {(void *)p, n}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
	ssize_t w;

	if (type != PG_PKT_DATA)
		return 0;
	if (n > 0xFFFF)
		return PG_ETOOBIG;
	/* Header and payload in one segment: vpcd reads them as one message. */
	do
		w = sendmsg(o->fd, &mh, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		return PG_ECLOSED;
	/* A short send (rare): the rest in order, header first. */
	if ((size_t)w < 2) {
		if (send_full(o->fd, hdr + w, 2 - (size_t)w) < 0)
			return PG_ECLOSED;
		w = 2;
	}
	if (send_full(o->fd, p + (w - 2), n - (size_t)(w - 2)) < 0)
		return PG_ECLOSED;
	return 0;
}
static int
vpcd_out_read(struct pg_stream *s, uint8_t *p, size_t n, int timeout_ms)
{
	(void)s, (void)p, (void)n, (void)timeout_ms;
	return PG_ENOTSUP;
}
static void
vpcd_out_destroy(struct pg_stream *s)
{
	(void)s;
}
static const struct pg_stream_ops vpcd_out_ops = {
    .write = vpcd_out_write, .read = vpcd_out_read, .destroy = vpcd_out_destroy};

/*
 * The connection ended (vpcd closed it, or it broke the framing): ask the
 * hypervisor for a new one on the control channel (fd 5) and wait for it
 * (SCM_RIGHTS). A VSE never exits for what its link sends; only its
 * hypervisor's end (EOF here, or the parent-death signal) ends it.
 */
static int
new_vpcd_link(void)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} u;
	char byte;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof(u.b)};
	struct cmsghdr *c;
	ssize_t k;
	int fd = -1;

	status("reconnect\n");
	do
		k = recvmsg(STATUS_FD, &mh, MSG_CMSG_CLOEXEC);
	while (k < 0 && errno == EINTR);
	if (k <= 0)
		return pg_error(PG_ECLOSED, "vse", "the hypervisor closed the control channel");
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd >= 0 ? fd : pg_error(PG_EPROTO, "vse", "no connection from the hypervisor");
}

/* Bytes already waiting after a whole message: vpcd never sends before it has its answer. */
static int
more_pending(int fd)
{
	uint8_t b;

	return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

/* One connection to pcscd's reader, until it ends or breaks vpcd's framing. */
static void
serve_vpcd_conn(const struct pg_link_ops *ops, const struct pg_card *card, uint8_t *buf, int fd)
{
	struct vpcd_out out = {.base.ops = &vpcd_out_ops, .fd = fd};
	struct pg_link_card *lc = NULL;
	int one = 1;

	if (ops->card_open(&lc, card, NULL) < 0)
		return;
	for (;;) {
		uint8_t hdr[2];
		size_t n;
		int rc;

		/*
		 * vpcd writes the length and the payload in two sends; unless the
		 * length is acknowledged at once, Nagle holds the payload for our
		 * delayed ACK (40 ms a message). Linux leaves quick-ACK mode by
		 * itself, so it is set again after every read.
		 */
		if (recv_full(fd, hdr, 2) < 0)
			break;
		setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
		n = (size_t)(hdr[0] << 8 | hdr[1]);
		if (n == 0) {
			pg_warn("vse", "vpcd sent an empty message; closing the connection");
			break;
		}
		if (recv_full(fd, buf, n) < 0)
			break;
		setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
		/*
		 * An APDU is answered before vpcd sends anything else; bytes
		 * beyond it mean the framing is lost (vpcd's 16-bit length
		 * wraps for an APDU over 65,535 bytes): answering would pair
		 * answers with the wrong commands, so the connection goes.
		 */
		if (n > 1 && more_pending(fd)) {
			pg_warn("vse",
				"vpcd framing lost after a %zu-byte message (an APDU over "
				"65,535 bytes?); closing the connection",
				n);
			break;
		}
		rc = ops->card_packet(lc, PG_PKT_DATA, buf, n, &out.base);
		if (rc == PG_ECLOSED)
			break;
	}
	ops->card_close(lc);
	card->reset(card->ctx); /* as a card pulled from its reader */
}

static int
serve_vpcd(const struct pg_link_ops *ops, const struct pg_card *card, uint8_t *buf)
{
	int fd = LINK_FD;

	for (;;) {
		serve_vpcd_conn(ops, card, buf, fd);
		close(fd);
		pg_info("vse", "vpcd connection ended; asking for a new one");
		fd = new_vpcd_link();
		if (fd < 0)
			return fd;
	}
}

int
pg_vse_run_one(void)
{
	struct pg_vse_request *req = NULL;
	const struct pg_link_ops *ops;
	struct pg_vse_card *card = NULL;
	struct pg_arena *arena = NULL;
	json_t *cfg = NULL;
	const char *dir;
	char path[4096], tag[64];
	uint8_t *vpcd_buf = NULL;
	uint32_t serial;
	pid_t hv_pid;
	int pmem = -1, rc;

	PG_TRY_GOTO(read_config(&cfg), fail, "vse", "config");
	req = calloc(1, sizeof(*req));
	if (!req) {
		rc = PG_ENOMEM;
		goto fail;
	}
	PG_TRY_GOTO(pg_vse_request_from_json(req, json_object_get(cfg, "vse")), fail, "vse",
		    "request");
	serial = (uint32_t)json_integer_value(json_object_get(cfg, "serial"));
	hv_pid = (pid_t)json_integer_value(json_object_get(cfg, "hv_pid"));
	dir = json_string_value(json_object_get(cfg, "dir"));
	if (!dir || !serial) {
		rc = pg_error(PG_EINVAL, "vse", "config without dir or serial");
		goto fail;
	}
	snprintf(tag, sizeof(tag), "vse[%s]", req->name);
	pg_log_set_tag(tag);
	ops = pg_link_find(req->expose.link);
	if (!ops || !ops->card_open) {
		rc = pg_error(PG_ENOTSUP, "vse", "link '%s' has no card role in this build",
			      req->expose.link);
		goto fail;
	}
	/* The address space: one arena of the requested size, guard pages on both sides. */
	PG_TRY_GOTO(pg_arena_new(&arena, (size_t)req->arena_size), fail, "vse", "arena");
	/*
	 * OpenSSL keeps its own heap (its provider tables alone outgrow a small
	 * arena); the keys are diversified here, before seccomp, so its
	 * one-time initialisation happens during set-up. RLIMIT_AS bounds it.
	 */
	PG_TRY_GOTO(pg_vse_request_resolve_keys(req), fail, "vse", "keys");
	snprintf(path, sizeof(path), "%s/pmem", dir);
	pmem = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (pmem < 0) {
		rc = pg_error(PG_EIO, "vse", "open '%s': %s", path, strerror(errno));
		goto fail;
	}
	PG_TRY_GOTO(lock_pmem(pmem, path), fail, "vse", "pmem lock");
	PG_TRY_GOTO(pg_vse_card_new(&card, req, serial, arena, pmem), fail, "vse", "card");
	if (strcmp(ops->name, "vpcd") == 0 && !(vpcd_buf = malloc(65536))) {
		rc = PG_ENOMEM;
		goto fail;
	}
	PG_TRY_GOTO(set_limits(req->pmem_size), fail, "vse", "limits");
	pg_memzero(req, sizeof(*req)); /* the card holds its own copy of the keys */
	json_decref(cfg);
	cfg = NULL;
	PG_TRY_GOTO(drop_privileges(serial), fail, "vse", "privileges");
	PG_TRY_GOTO(watch_parent(hv_pid), fail, "vse", "parent");
	PG_TRY_GOTO(load_seccomp(), fail, "vse", "seccomp");
	status("ready\n");
	if (strcmp(ops->name, "vpcd") == 0) {
		/* Connections to pcscd's reader, one after another; fd 5 asks for the next. */
		_exit(serve_vpcd(ops, pg_vse_card_card(card), vpcd_buf) < 0 ? 1 : 0);
	}
	close(STATUS_FD);
	/* Serve one host at a time, as a card in a reader does; the card's state persists. */
	for (;;) {
		struct pg_link_card *lc = NULL;
		int conn = accept4(LINK_FD, NULL, NULL, SOCK_CLOEXEC);

		if (conn < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			rc = pg_error(PG_ESYS, "vse", "accept: %s", strerror(errno));
			goto fail;
		}
		rc = ops->card_open(&lc, pg_vse_card_card(card), NULL);
		if (rc < 0) {
			close(conn);
			continue;
		}
		rc = pg_stream_serve_fd(conn, pg_link_card_packet, lc);
		if (rc < 0)
			pg_debug("vse", "host session ended: %s", pg_strerror(rc));
		pg_link_card_close(lc);
		pg_vse_card_card(card)->reset(pg_vse_card_card(card)->ctx);
	}
fail:
	pg_err("vse", "VSE set-up failed: %s",
	       pg_last_error()[0] ? pg_last_error() : pg_strerror(rc));
	{
		char msg[300];

		snprintf(msg, sizeof(msg), "error %s\n",
			 pg_last_error()[0] ? pg_last_error() : pg_strerror(rc));
		status(msg);
	}
	if (req)
		pg_memzero(req, sizeof(*req));
	free(req);
	json_decref(cfg);
	pg_vse_card_free(card);
	if (pmem >= 0)
		close(pmem);
	pg_arena_free(arena);
	free(vpcd_buf);
	return rc;
}
