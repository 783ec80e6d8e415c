/*
 * The hypervisor (seed 6's virtual machine monitor): `payguard vse serve`.
 * It takes the SEM's requests on a UNIX socket (mode 0600) in the data
 * directory, keeps every VSE's configuration and state in the store's VSE
 * registry (area "vse", registry.c: SQLite or PostgreSQL), and gives each
 * VSE its own address space: a process exec'd as `payguard vse run-one`
 * (runone.c) holding one arena of the requested size. It supervises them: a
 * VSE that dies for any reason while it should run is restarted with
 * exponential back-off, its persistent memory untouched, the others
 * undisturbed. One thread, one poll loop; SIGCHLD arrives via a pipe. Keys
 * in the stored configuration are wrapped (RFC 3394) under the data
 * directory's key-encryption key (DIR/kek, include/payguard/keywrap.h). On a
 * store shared by several nodes, it runs only the rows of its own node
 * (persistent memory is local) and lists the others as they are stored.
 */
#include "vse_int.h"

#include "payguard/json.h"
#include "payguard/clock.h"
#include "payguard/db.h"
#include "payguard/error.h"
#include "payguard/events.h"
#include "payguard/fs.h"
#include "payguard/hex.h"
#include "payguard/keywrap.h"
#include "payguard/log.h"
#include "payguard/mem.h"
#include "payguard/store.h"
#include "payguard/stream.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define READY_MS    5000
#define BACKOFF_MIN 100
#define BACKOFF_MAX 5000
#define STABLE_MS   10000 /* a VSE that ran this long starts its back-off again */
/*
 * A vpcd card stays out of its reader this long before it comes back (new
 * connection or restart). pcscd's event thread polls presence every 400 ms
 * and only acts on changes it sees itself: a card back within one poll is
 * never seen leaving, and if a client's SCardDisconnect failed to power it
 * down meanwhile (SCARD_W_REMOVED_CARD), pcscd had already marked the reader
 * empty — and it stayed "card not present" until the next real removal.
 */
#define VPCD_OUT_MS 1200

#define NODE_MAX 63 /* a node name: [A-Za-z0-9._-], at most this long */

struct vse {
	int id;
	struct pg_vse_request req;
	int want_run;
	pid_t pid;
	int link_fd;   /* listening socket kept across restarts */
	int ctl_fd;    /* vpcd: the running VSE's control socket (asks for a new connection) */
	int reconnect; /* vpcd: the VSE waits for a new connection to vpcd */
	uint64_t vpcd_back_ms; /* vpcd: no new connection before this (pg_mono_ms) */
	char link_addr[PG_VSE_ADDR_MAX + 16];
	int restarts, fails;
	uint64_t next_start_ms, started_ms;
	char last_exit[64];
	int crashed; /* died while it should run: its next start is a restart (an event) */
};

struct hv {
	char dir[PATH_MAX], vdir[PATH_MAX], sock[PATH_MAX], exe[PATH_MAX];
	char vse_exe[PATH_MAX]; /* payguard-vse beside exe or in libexec ("" if neither) */
	struct pg_store st;
	struct vse *v[PG_VSE_MAX_VSES];
	int nv;
	int lfd;
	char announce[PATH_MAX]; /* "" : no announcements to an SE OS */
	uint8_t kek[PG_KEK_LEN]; /* wraps the keys kept in vse_instance.config */
	char node[NODE_MAX + 1]; /* the registry rows this hypervisor runs ("" = local) */
};

/*
 * The SE OS contract (docs/se-seos.md, Detection): NAME.se in its watched
 * directory attaches the SE, removing it detaches. Only for socket links; a
 * vpcd VSE reaches the SE OS through pcscd's reader events.
 */
static void
announce(struct hv *h, const struct vse *v, int on)
{
	char path[PATH_MAX + 80], text[PG_VSE_ADDR_MAX + 96];
	int n;

	if (!h->announce[0] || strcmp(v->req.expose.link, "vpcd") == 0)
		return;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s.se", h->announce, v->req.name) >=
	    sizeof(path))
		return;
	if (!on) {
		if (unlink(path) != 0 && errno != ENOENT)
			pg_warn("vse", "cannot remove announcement '%s': %s", path,
				strerror(errno));
		return;
	}
	n = snprintf(text, sizeof(text), "link=%s\naddr=%s\nkind=vse\n", v->req.expose.link,
		     v->link_addr);
	if (n < 0 || (size_t)n >= sizeof(text) ||
	    pg_write_file_atomic(path, text, (size_t)n, 0600) < 0)
		pg_warn("vse", "cannot announce VSE '%s' in '%s': %s", v->req.name, h->announce,
			pg_last_error());
}

/* The node name: "" (local) or [A-Za-z0-9._-]{1,NODE_MAX}. */
static int
node_name(struct hv *h, const char *node)
{
	size_t n = node ? strlen(node) : 0;

	if (n > NODE_MAX)
		return pg_error(PG_EINVAL, "vse", "node name longer than %d characters", NODE_MAX);
	for (size_t i = 0; i < n; i++)
		if (!(isalnum((unsigned char)node[i]) || strchr("._-", node[i])))
			return pg_error(PG_EINVAL, "vse",
					"node name '%s': only letters, digits, '.', '_' and '-'",
					node);
	memcpy(h->node, node ? node : "", n);
	h->node[n] = '\0';
	return 0;
}

static int sig_pipe[2] = {-1, -1};
static volatile sig_atomic_t got_term;

static void
on_signal(int sig)
{
	int e = errno;
	char c = (char)sig;

	if (sig != SIGCHLD)
		got_term = 1;
	if (write(sig_pipe[1], &c, 1) < 0) {
		/* full pipe: a wake-up is already pending */
	}
	errno = e;
}

static struct vse *
find(struct hv *h, const char *name)
{
	for (int i = 0; i < h->nv; i++)
		if (strcmp(h->v[i]->req.name, name) == 0)
			return h->v[i];
	return NULL;
}

static int
vse_dir(struct hv *h, const struct vse *v, char *out, size_t n)
{
	if ((size_t)snprintf(out, n, "%s/%s", h->vdir, v->req.name) >= n)
		return pg_error(PG_ETOOBIG, "vse", "path too long");
	return 0;
}

/* Records a VSE's wanted state, restarts and last exit; a failure is logged. */
static void
db_update(struct hv *h, const struct vse *v)
{
	int rc = pgi_vse__reg_update(h->st.pdb, v->id, v->want_run, v->restarts, v->last_exit,
				     (int64_t)pg_wall_ms());

	if (rc < 0)
		pg_warn("vse", "VSE '%s': state not stored: %s", v->req.name,
			pg_last_error()[0] ? pg_last_error() : pg_strerror(rc));
}

/*
 * An event of the VSE area (issue 15: payguard.vse.created / crashed /
 * restarted / destroyed), subject the VSE's name; call inside the store
 * transaction of the registry change it reports. Data: the VSE's id, name,
 * node and link, its restart count, and for a crash its pid and exit.
 */
static int
vse_event(struct hv *h, const struct vse *v, const char *event, pid_t pid)
{
	json_t *d = json_pack("{s:i, s:s, s:s, s:s, s:i}", "id", v->id, "name", v->req.name, "node",
			      h->node, "link", v->req.expose.link, "restarts", v->restarts);
	int rc;

	if (!d)
		return PG_ENOMEM;
	if (pid > 0)
		json_object_set_new(d, "pid", json_integer(pid));
	if (strcmp(event, "crashed") == 0)
		json_object_set_new(d, "last_exit", json_string(v->last_exit));
	rc = pg_event_emit(h->st.pdb, "vse", event, v->req.name, d, NULL);
	json_decref(d);
	return rc;
}

/*
 * A crash or a restart: the registry row (restart count, last exit) and its
 * event in one transaction. A store failure is logged; the hypervisor goes on.
 */
static void
db_update_event(struct hv *h, const struct vse *v, const char *event, pid_t pid)
{
	int rc = pg_db_begin(h->st.pdb);

	if (rc == 0)
		rc = pgi_vse__reg_update(h->st.pdb, v->id, v->want_run, v->restarts, v->last_exit,
					 (int64_t)pg_wall_ms());
	if (rc == 0)
		rc = vse_event(h, v, event, pid);
	if (rc == 0)
		rc = pg_db_commit(h->st.pdb);
	else
		pg_db_rollback(h->st.pdb);
	if (rc < 0)
		pg_warn("vse", "VSE '%s': %s not stored: %s", v->req.name, event,
			pg_last_error()[0] ? pg_last_error() : pg_strerror(rc));
}

/* The link's listening socket: a UNIX socket in the VSE's directory, or loopback TCP. */
static int
open_link(struct hv *h, struct vse *v)
{
	char d[PATH_MAX];
	mode_t old;
	int rc;

	if (v->link_fd >= 0 || strcmp(v->req.expose.link, "vpcd") == 0)
		return 0;
	if (v->req.expose.listen[0]) {
		snprintf(v->link_addr, sizeof(v->link_addr), "%s", v->req.expose.listen);
	} else {
		if ((rc = vse_dir(h, v, d, sizeof(d))) < 0)
			return rc;
		if ((size_t)snprintf(v->link_addr, sizeof(v->link_addr), "unix:%s/link.sock", d) >=
		    sizeof(v->link_addr))
			return pg_error(
			    PG_ETOOBIG, "vse",
			    "'%s/link.sock' is too long for a UNIX socket; use a shorter "
			    "data directory or tcp",
			    d);
	}
	old = umask(077); /* socket file 0600: only this user may talk to the card */
	v->link_fd = pg_stream_listen(v->link_addr);
	umask(old);
	return v->link_fd < 0 ? v->link_fd : 0;
}

/*
 * vpcd exposure: vsmartcard's vpcd (inside pcscd) listens on 35963 + slot; the
 * card side connects. The hypervisor connects and hands the socket to the VSE,
 * which therefore never needs socket() or connect() under its filter.
 */
static int
vpcd_connect(struct vse *v)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return pg_error(PG_ESYS, "vse", "socket: %s", strerror(errno));
	sa.sin_port = htons((uint16_t)(35963 + v->req.expose.vpcd_slot));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;

		close(fd);
		return pg_error(PG_ELINK, "vse",
				"vpcd slot %d (127.0.0.1:%d): %s; is pcscd with vsmartcard-vpcd "
				"running?",
				v->req.expose.vpcd_slot, 35963 + v->req.expose.vpcd_slot,
				strerror(e));
	}
	{
		int one = 1; /* small request/answer messages: no Nagle delay */

		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	v->link_fd = fd;
	snprintf(v->link_addr, sizeof(v->link_addr), "vpcd:127.0.0.1:%d",
		 35963 + v->req.expose.vpcd_slot);
	return 0;
}

/*
 * Each VSE process holds a POSIX write lock on its persistent-memory file for
 * its whole life (runone.c), so a second copy can never open it. A VSE left
 * from before (its hypervisor was killed before it could stop it) still holds
 * that lock: F_GETLK names its pid. If /proc/<pid>/cmdline says it is this
 * VSE's process image, it is killed and the lock awaited; a lock held by
 * anything else is reported and the VSE not started.
 */
static int
is_vse_process(pid_t pid, const char *name)
{
	char path[64], buf[512];
	size_t n = 0;
	ssize_t k;
	int fd;
	const char *a[4] = {0};
	int na = 0;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	while (n < sizeof(buf) - 1 && (k = read(fd, buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)k;
	close(fd);
	buf[n] = '\0';
	for (size_t i = 0; i < n && na < 4; i += strlen(buf + i) + 1)
		a[na++] = buf + i;
	if (na >= 2) {
		const char *base = strrchr(a[0], '/') ? strrchr(a[0], '/') + 1 : a[0];

		if (strcmp(base, "payguard-vse") == 0 && strcmp(a[1], name) == 0)
			return 1;
	}
	return na >= 4 && strcmp(a[1], "vse") == 0 && strcmp(a[2], "run-one") == 0 &&
	       strcmp(a[3], name) == 0;
}

/* The pid holding the VSE's pmem lock (0: none or no file yet; <0: error). */
static pid_t
pmem_lock_owner(struct hv *h, const struct vse *v)
{
	char d[PATH_MAX], path[PATH_MAX + 8];
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	int fd, rc;

	if ((rc = vse_dir(h, v, d, sizeof(d))) < 0)
		return rc;
	snprintf(path, sizeof(path), "%s/pmem", d);
	fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT
			   ? 0
			   : pg_error(PG_EIO, "vse", "open '%s': %s", path, strerror(errno));
	/* This process holds no lock on it, so closing fd releases nothing of ours. */
	rc = fcntl(fd, F_GETLK, &fl);
	close(fd);
	if (rc != 0)
		return pg_error(PG_EIO, "vse", "F_GETLK '%s': %s", path, strerror(errno));
	return fl.l_type == F_UNLCK ? 0 : fl.l_pid;
}

static int
reclaim(struct hv *h, const struct vse *v)
{
	pid_t pid = pmem_lock_owner(h, v), killed = 0;

	for (int i = 0; pid != 0 && i < 300; i++) {
		if (pid < 0)
			return pid;
		if (pid != killed) {
			if (pid == v->pid || !is_vse_process(pid, v->req.name))
				return pg_error(
				    PG_EBUSY, "vse",
				    "persistent memory of VSE '%s' is locked by pid %d, "
				    "which is not a VSE left from before",
				    v->req.name, (int)pid);
			pg_warn("vse", "VSE '%s': stopping pid %d, left from a previous hypervisor",
				v->req.name, (int)pid);
			kill(pid, SIGKILL);
			killed = pid;
		}
		usleep(10000);
		pid = pmem_lock_owner(h, v);
	}
	return pid == 0 ? 0
			: pg_error(PG_EBUSY, "vse", "VSE '%s': pid %d keeps its persistent memory",
				   v->req.name, (int)pid);
}

/* The VSE's outside end: a fresh vpcd connection, or the listening socket of its link. */
static int
prepare_endpoint(struct hv *h, struct vse *v)
{
	const struct pg_link_ops *ops;

	if (strcmp(v->req.expose.link, "vpcd") != 0)
		return open_link(h, v);
	ops = pg_link_find("vpcd");
	if (!ops || !ops->card_open)
		return pg_error(PG_ENOTSUP, "vse", "this build has no vpcd card driver");
	if (pg_mono_ms() < v->vpcd_back_ms) /* a `stop` + `start`: out a while first */
		usleep((useconds_t)(v->vpcd_back_ms - pg_mono_ms()) * 1000u);
	return vpcd_connect(v);
}

/* The configuration run-one reads on fd 3 (keys included); NULL if out of memory. */
static char *
config_text(struct vse *v, const char *dir)
{
	json_t *c = json_pack("{s:o, s:i, s:s, s:I}", "vse", pg_vse_request_to_json(&v->req, 1),
			      "serial", v->id, "dir", dir, "hv_pid", (json_int_t)getpid());
	char *s = c ? pg_json_dumps(c, JSON_COMPACT) : NULL;

	json_decref(c);
	return s;
}

/*
 * The status channel: a pipe, or for vpcd a SEQPACKET socket pair that
 * stays open as the VSE's control channel (it asks for a new connection
 * to vpcd there, and receives it with SCM_RIGHTS).
 */
static int
open_channels(const struct vse *v, int cfg[2], int st[2])
{
	if (pipe2(cfg, O_CLOEXEC) != 0 ||
	    (strcmp(v->req.expose.link, "vpcd") == 0
		 ? socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, st)
		 : pipe2(st, O_CLOEXEC)) != 0)
		return pg_error(PG_ESYS, "vse", "pipe: %s", strerror(errno));
	return 0;
}

/* In the child: fds 3 (config), 4 (link), 5 (status) as run-one expects, then exec. */
static _Noreturn void
exec_vse(struct hv *h, struct vse *v, int cfg_rd, int st_wr, pid_t parent)
{
	/* Moved high first so dup2 never aliases. */
	int a = fcntl(cfg_rd, F_DUPFD_CLOEXEC, 100), b = fcntl(v->link_fd, F_DUPFD_CLOEXEC, 100),
	    cc = fcntl(st_wr, F_DUPFD_CLOEXEC, 100);
	char *argv[] = {"payguard", "vse", "run-one", v->req.name, NULL};
	char *argv_small[] = {"payguard-vse", v->req.name, NULL};

	if (a < 0 || b < 0 || cc < 0 || dup2(a, 3) < 0 || dup2(b, 4) < 0 || dup2(cc, 5) < 0)
		_exit(126);
	/* Nothing else of the hypervisor's (store, other VSEs' sockets) crosses exec. */
	if (close_range(6, ~0u, 0) != 0)
		for (int fd = 6; fd < 65536; fd++)
			close(fd);
	/*
	 * No VSE outlives its hypervisor. Set again by the VSE after it
	 * changes uid (which clears it); if the hypervisor died before
	 * this line, the signal will never come: leave now.
	 */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(125);
	setpgid(0, 0); /* a terminal's ^C or a group kill reaches the hypervisor, not each VSE */
	signal(SIGPIPE, SIG_DFL);
	if (h->vse_exe[0])
		execv(h->vse_exe, argv_small);
	execv(h->exe, argv);
	_exit(127);
}

/* Waits for "ready\n" or "error ...\n" on the status channel (EOF: it died during set-up). */
static int
await_ready(const struct vse *v, int fd)
{
	char buf[320];
	size_t got = 0;
	char *nl;

	buf[0] = '\0';
	for (uint64_t end = pg_mono_ms() + READY_MS; got < sizeof(buf) - 1;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		uint64_t now = pg_mono_ms();
		ssize_t k;

		if (now >= end)
			return pg_error(PG_ETIMEDOUT, "vse", "VSE '%s' not ready within %d ms",
					v->req.name, READY_MS);
		if (poll(&p, 1, (int)(end - now)) <= 0)
			continue;
		k = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return pg_error(PG_ESTATE, "vse", "VSE '%s' died during set-up",
					v->req.name);
		got += (size_t)k;
		buf[got] = '\0';
		if (strchr(buf, '\n'))
			break;
	}
	if (strncmp(buf, "ready", 5) == 0)
		return 0;
	if ((nl = strchr(buf, '\n')))
		*nl = '\0';
	return pg_error(PG_ESTATE, "vse", "VSE '%s' set-up failed: %s", v->req.name,
			strncmp(buf, "error ", 6) == 0 ? buf + 6 : buf);
}

/*
 * fork + exec of `payguard vse run-one`: the configuration (keys included)
 * goes through a pipe, never argv or the environment; the child says "ready"
 * once its seccomp filter is loaded, or "error <why>".
 */
static int
spawn(struct hv *h, struct vse *v, int wait_ready)
{
	int cfg[2] = {-1, -1}, st[2] = {-1, -1}, rc = 0;
	char *s = NULL, d[PATH_MAX];
	pid_t pid, self = getpid();

	PG_TRY_GOTO(reclaim(h, v), out, "vse", "previous VSE process");
	PG_TRY_GOTO(prepare_endpoint(h, v), out, "vse", "endpoint");
	PG_TRY_GOTO(vse_dir(h, v, d, sizeof(d)), out, "vse", "dir");
	s = config_text(v, d);
	if (!s) {
		rc = PG_ENOMEM;
		goto out;
	}
	PG_TRY_GOTO(open_channels(v, cfg, st), out, "vse", "channels");
	pid = fork();
	if (pid < 0) {
		rc = pg_error(PG_ESYS, "vse", "fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0)
		exec_vse(h, v, cfg[0], st[1], self);
	close(cfg[0]), cfg[0] = -1;
	close(st[1]), st[1] = -1;
	if (write(cfg[1], s, strlen(s)) != (ssize_t)strlen(s))
		pg_warn("vse", "config pipe to %s: %s", v->req.name, strerror(errno));
	close(cfg[1]), cfg[1] = -1;
	v->pid = pid;
	v->started_ms = pg_mono_ms();
	if (!wait_ready)
		goto out;
	rc = await_ready(v, st[0]);
	if (rc == 0 && strcmp(v->req.expose.link, "vpcd") == 0) {
		v->ctl_fd = st[0];
		st[0] = -1;
	}
out:
	if (strcmp(v->req.expose.link, "vpcd") == 0 && v->link_fd >= 0) {
		close(v->link_fd); /* the connection belongs to the VSE; a new one per start */
		v->link_fd = -1;
	}
	if (s) {
		pg_memzero(s, strlen(s));
		free(s);
	}
	for (int i = 0; i < 2; i++) {
		if (cfg[i] >= 0)
			close(cfg[i]);
		if (st[i] >= 0)
			close(st[i]);
	}
	return rc;
}

static void
close_ctl(struct vse *v)
{
	if (v->ctl_fd >= 0)
		close(v->ctl_fd);
	v->ctl_fd = -1;
	v->reconnect = 0;
}

/*
 * A vpcd VSE whose connection ended (vpcd closed it, or it broke the
 * protocol) asks for a new one instead of exiting: the hypervisor connects
 * (the VSE may not) and passes the socket over the control channel.
 */
static void
give_vpcd(struct vse *v)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} u;
	struct iovec iov = {.iov_base = "L", .iov_len = 1};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof(u.b)};
	struct cmsghdr *c;

	memset(&u, 0, sizeof(u));
	if (pg_mono_ms() < v->vpcd_back_ms)
		return; /* still pending: the card is out of the reader a while first */
	if (vpcd_connect(v) < 0) {
		pg_debug("vse", "VSE '%s': %s; trying again", v->req.name, pg_last_error());
		return; /* still pending: retried from the loop */
	}
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &v->link_fd, sizeof(int));
	if (sendmsg(v->ctl_fd, &mh, MSG_NOSIGNAL) != 1)
		pg_warn("vse", "VSE '%s': new vpcd connection not passed: %s", v->req.name,
			strerror(errno));
	else
		pg_info("vse", "VSE '%s': reconnected to vpcd", v->req.name);
	close(v->link_fd);
	v->link_fd = -1;
	v->reconnect = 0;
}

/* A message on a VSE's control channel; EOF: it is gone (reap restarts it). */
static void
on_ctl(struct vse *v)
{
	char buf[64];
	ssize_t k = recv(v->ctl_fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);

	if (k < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (k <= 0) {
		close_ctl(v);
		return;
	}
	buf[k] = '\0';
	if (strncmp(buf, "reconnect", 9) == 0) {
		v->reconnect = 1;
		v->vpcd_back_ms = pg_mono_ms() + VPCD_OUT_MS;
	}
}

static void
stop_child(struct vse *v)
{
	int status;

	close_ctl(v);
	if (v->pid <= 0)
		return;
	v->vpcd_back_ms = pg_mono_ms() + VPCD_OUT_MS;
	kill(v->pid, SIGTERM);
	for (int i = 0; i < 200; i++) {
		if (waitpid(v->pid, &status, WNOHANG) == v->pid) {
			v->pid = 0;
			return;
		}
		usleep(10000);
	}
	kill(v->pid, SIGKILL);
	waitpid(v->pid, &status, 0);
	v->pid = 0;
}

static void
reap(struct hv *h)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (int i = 0; i < h->nv; i++) {
			struct vse *v = h->v[i];
			uint64_t ran;
			int delay;

			if (v->pid != pid)
				continue;
			v->pid = 0;
			close_ctl(v);
			v->vpcd_back_ms = pg_mono_ms() + VPCD_OUT_MS;
			if (WIFSIGNALED(status))
				snprintf(v->last_exit, sizeof(v->last_exit), "signal %d (%s)",
					 WTERMSIG(status), strsignal(WTERMSIG(status)));
			else
				snprintf(v->last_exit, sizeof(v->last_exit), "exit %d",
					 WEXITSTATUS(status));
			if (!v->want_run)
				break;
			ran = pg_mono_ms() - v->started_ms;
			if (ran > STABLE_MS)
				v->fails = 0;
			delay = BACKOFF_MIN << (v->fails < 6 ? v->fails : 6);
			if (delay > BACKOFF_MAX)
				delay = BACKOFF_MAX;
			v->fails++;
			v->restarts++;
			v->next_start_ms = pg_mono_ms() + (uint64_t)delay;
			if (strcmp(v->req.expose.link, "vpcd") == 0 && delay < VPCD_OUT_MS)
				v->next_start_ms = pg_mono_ms() + VPCD_OUT_MS;
			pg_warn("vse", "VSE '%s' (pid %d) ended: %s; restart %d in %d ms",
				v->req.name, (int)pid, v->last_exit, v->restarts, delay);
			v->crashed = 1;
			db_update_event(h, v, "crashed", pid);
			break;
		}
	}
}

static json_t *
vse_json(struct hv *h, const struct vse *v)
{
	json_t *j = json_object();
	char path[64];
	FILE *f;

	json_object_set_new(j, "id", json_integer(v->id));
	json_object_set_new(j, "name", json_string(v->req.name));
	json_object_set_new(j, "node", json_string(h->node));
	json_object_set_new(
	    j, "state",
	    json_string(v->want_run ? (v->pid > 0 ? "running" : "restarting") : "stopped"));
	json_object_set_new(j, "pid", v->pid > 0 ? json_integer(v->pid) : json_null());
	json_object_set_new(j, "restarts", json_integer(v->restarts));
	json_object_set_new(j, "last_exit",
			    v->last_exit[0] ? json_string(v->last_exit) : json_null());
	if (strcmp(v->req.expose.link, "vpcd") == 0)
		json_object_set_new(j, "address",
				    json_sprintf("vpcd slot %d", v->req.expose.vpcd_slot));
	else
		json_object_set_new(j, "address",
				    v->link_addr[0] ? json_string(v->link_addr) : json_null());
	json_object_set_new(j, "request", pg_vse_request_to_json(&v->req, 0));
	/* Resident memory of the VSE process (pages from statm). */
	snprintf(path, sizeof(path), "/proc/%d/statm", (int)v->pid);
	if (v->pid > 0 && (f = fopen(path, "r"))) {
		unsigned long size, res;

		if (fscanf(f, "%lu %lu", &size, &res) == 2)
			json_object_set_new(
			    j, "rss_kib",
			    json_integer((json_int_t)res * (sysconf(_SC_PAGESIZE) / 1024)));
		fclose(f);
	}
	return j;
}

/* VSEs of other nodes, as stored: listed (all, or the one named), never run here. */
struct others {
	const struct hv *h;
	const char *name; /* NULL: every one into a */
	json_t *a, *found;
	char node[NODE_MAX + 1];
};

static int
other_row(void *arg, const struct pg_vse_entry *e)
{
	struct others *o = arg;
	json_t *j;

	if (strcmp(e->node, o->h->node) == 0 || (o->name && strcmp(o->name, e->name) != 0))
		return 0;
	j = pg_vse_entry_json(e);
	if (!j)
		return PG_ENOMEM;
	if (o->a)
		return json_array_append_new(o->a, j) == 0 ? 0 : PG_ENOMEM;
	json_decref(o->found);
	o->found = j;
	snprintf(o->node, sizeof(o->node), "%s", e->node);
	return 0;
}

/* Answers show/start/stop/destroy for a name this node does not run. */
static int
op_other(struct hv *h, int op, const char *name, json_t **resp)
{
	struct others o = {.h = h, .name = name};
	int rc = pg_vse_registry_list(h->st.pdb, NULL, other_row, &o);

	if (rc < 0) {
		json_decref(o.found);
		return rc;
	}
	if (!o.found)
		return pg_error(PG_ENOENT, "vse", "no VSE named '%s'", name);
	if (op != PG_VSE_OP_SHOW) {
		json_decref(o.found);
		/* its persistent memory is on its own node: only that hypervisor acts */
		return pg_error(PG_EPERM, "vse", "VSE '%s' runs on node '%s': ask that node", name,
				o.node);
	}
	*resp = json_pack("{s:b, s:o}", "ok", 1, "vse", o.found);
	return 0;
}

/*
 * Keys at rest. In a request the "keys" object holds clear hex ("master",
 * or "enc"/"mac"/"dek"); in the store each becomes "<name>_kw": the hex of
 * the key wrapped under h->kek (RFC 3394, 8 bytes longer than the key).
 */
static const char *const key_members[] = {"master", "enc", "mac", "dek"};

/* Wraps every clear key member of cfg in place; *changed counts them. */
static int
config_wrap(const struct hv *h, json_t *cfg, int *changed)
{
	json_t *keys = json_object_get(cfg, "keys");
	uint8_t raw[PG_KW_MAX_OUT], w[PG_KW_MAX_OUT];
	char hex[2 * PG_KW_MAX_OUT + 1], name[16];
	size_t wl;
	int n, rc = 0;

	if (!json_is_object(keys))
		return 0;
	for (size_t i = 0; i < sizeof(key_members) / sizeof(key_members[0]) && rc == 0; i++) {
		const json_t *v = json_object_get(keys, key_members[i]);

		if (!v)
			continue;
		n = json_is_string(v) ? pg_hex_decode(raw, 32, json_string_value(v)) : -1;
		if (n < 0) {
			rc = pg_error(PG_EFORMAT, "vse", "stored keys.%s is not hex of a key",
				      key_members[i]);
			break;
		}
		rc = pg_kw_wrap(h->kek, 0, raw, (size_t)n, w, &wl);
		if (rc == 0) {
			pg_hex_encode(hex, w, wl);
			snprintf(name, sizeof(name), "%s_kw", key_members[i]);
			if (json_object_set_new(keys, name, json_string(hex)) != 0 ||
			    json_object_del(keys, key_members[i]) != 0)
				rc = PG_ENOMEM;
			(*changed)++;
		}
	}
	pg_memzero(raw, sizeof(raw));
	return rc;
}

/* The reverse, in place: "<name>_kw" members back to clear hex (in memory only). */
static int
config_unwrap(const struct hv *h, json_t *cfg)
{
	json_t *keys = json_object_get(cfg, "keys");
	uint8_t raw[PG_KW_MAX_OUT], w[PG_KW_MAX_OUT];
	char hex[2 * PG_KW_MAX_OUT + 1], name[16];
	size_t rl = 0;
	int n, rc = 0;

	if (!json_is_object(keys))
		return 0;
	for (size_t i = 0; i < sizeof(key_members) / sizeof(key_members[0]) && rc == 0; i++) {
		const json_t *v;

		snprintf(name, sizeof(name), "%s_kw", key_members[i]);
		if (!(v = json_object_get(keys, name)))
			continue;
		n = json_is_string(v) ? pg_hex_decode(w, sizeof(w), json_string_value(v)) : -1;
		rc = n < 0 ? pg_error(PG_EFORMAT, "vse", "stored keys.%s is not hex", name)
			   : pg_kw_unwrap(h->kek, 0, w, (size_t)n, raw, &rl);
		if (rc == 0 && rl > 32)
			rc = pg_error(PG_ECORRUPT, "vse", "stored keys.%s: %zu bytes", name, rl);
		if (rc == 0) {
			pg_hex_encode(hex, raw, rl);
			if (json_object_set_new(keys, key_members[i], json_string(hex)) != 0 ||
			    json_object_del(keys, name) != 0)
				rc = PG_ENOMEM;
			pg_memzero(hex, sizeof(hex));
		}
	}
	pg_memzero(raw, sizeof(raw));
	return rc;
}

/* The request as the store keeps it: compact JSON, keys wrapped (free with config_free). */
static char *
config_sealed(const struct hv *h, const struct pg_vse_request *r)
{
	json_t *cj = pg_vse_request_to_json(r, 1);
	char *cs = NULL;
	int changed = 0;

	if (cj && config_wrap(h, cj, &changed) == 0)
		cs = pg_json_dumps(cj, JSON_COMPACT);
	json_decref(cj);
	return cs;
}

static void
config_free(char *cs)
{
	if (cs) {
		pg_memzero(cs, strlen(cs));
		free(cs);
	}
}

/* The rows of this node, read before any is rewritten. */
struct stored_rows {
	struct {
		int64_t id;
		char *config;
	} * r;
	size_t n, cap;
};

static int
collect_row(void *arg, const struct pg_vse_entry *e)
{
	struct stored_rows *sr = arg;

	if (sr->n == sr->cap) {
		size_t cap = sr->cap ? 2 * sr->cap : 16;
		void *p = realloc(sr->r, cap * sizeof(*sr->r));

		if (!p)
			return PG_ENOMEM;
		sr->r = p;
		sr->cap = cap;
	}
	sr->r[sr->n].id = e->id;
	sr->r[sr->n].config = strdup(e->config);
	if (!sr->r[sr->n].config)
		return PG_ENOMEM;
	sr->n++;
	return 0;
}

static void
stored_rows_release(struct stored_rows *sr)
{
	if (!sr)
		return;
	for (size_t i = 0; i < sr->n; i++)
		config_free(sr->r[i].config);
	free(sr->r);
	memset(sr, 0, sizeof(*sr));
}

struct wrap_job {
	struct hv *h;
	int n; /* rows rewritten */
};

/* One transaction: wraps the clear keys of this node's rows in place. */
static int
wrap_rows_tx(struct pg_db *db, void *arg)
{
	struct wrap_job *wj = arg;
	struct stored_rows sr = {0};
	int rc = pg_vse_registry_list(db, wj->h->node, collect_row, &sr);

	wj->n = 0;
	for (size_t i = 0; rc == 0 && i < sr.n; i++) {
		json_t *j = json_loads(sr.r[i].config, 0, NULL);
		char *cs = NULL;
		int changed = 0;

		rc = j ? config_wrap(wj->h, j, &changed) : 0; /* unreadable: load_all says so */
		if (rc < 0 && rc != PG_ENOMEM) {
			/* a malformed row is left as it is: load_all reports it */
			pg_warn("vse", "stored VSE %lld: keys not wrapped: %s",
				(long long)sr.r[i].id, pg_last_error());
			rc = 0;
			changed = 0;
		}
		if (rc == 0 && changed && !(cs = pg_json_dumps(j, JSON_COMPACT)))
			rc = PG_ENOMEM;
		json_decref(j);
		if (rc == 0 && cs) {
			rc = pgi_vse__reg_set_config(db, sr.r[i].id, cs);
			wj->n++;
		}
		config_free(cs);
	}
	stored_rows_release(&sr);
	return rc;
}

/*
 * Stores written before keys were wrapped hold them in clear: wrapped in
 * place, in one transaction. On SQLite secure_delete is on so the freed
 * pages are zeroed, then a truncating checkpoint leaves no clear copy in
 * the WAL. (payguard never wrote clear keys to PostgreSQL.)
 */
static int
wrap_clear_rows(struct hv *h)
{
	struct wrap_job wj = {h, 0};
	int lite = pg_db_engine_of(h->st.pdb) == PG_DB_SQLITE;
	int rc = lite ? pg_db_exec(h->st.pdb, "PRAGMA secure_delete=ON") : 0;

	if (rc == 0)
		rc = pg_db_transact(h->st.pdb, wrap_rows_tx, &wj, 5);
	if (rc < 0)
		return rc;
	if (wj.n > 0) {
		pg_info("vse",
			"wrapped the keys of %d stored VSE(s) under the data directory's kek",
			wj.n);
		if (lite)
			rc = pg_db_exec(h->st.pdb, "PRAGMA wal_checkpoint(TRUNCATE)");
	}
	return rc;
}

static int
db_insert(struct hv *h, struct vse *v)
{
	char *cs = config_sealed(h, &v->req);
	int64_t id = 0;
	int rc;

	if (!cs)
		return PG_ENOMEM;
	rc = pgi_vse__reg_insert(h->st.pdb, v->req.name, h->node, cs, (int64_t)pg_wall_ms(), &id);
	config_free(cs);
	if (rc < 0)
		return rc;
	if (id <= 0 || id > INT32_MAX)
		return pg_error(PG_ERANGE, "vse", "VSE id %lld out of range", (long long)id);
	v->id = (int)id;
	return 0;
}

static int
rm_tree_one(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[PATH_MAX];

	if (!d)
		return errno == ENOENT ? 0 : PG_EIO;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	return rmdir(dir) == 0 ? 0
			       : pg_error(PG_EIO, "vse", "rmdir '%s': %s", dir, strerror(errno));
}

static void
vse_free(struct vse *v)
{
	if (!v)
		return;
	if (v->link_fd >= 0)
		close(v->link_fd);
	close_ctl(v);
	pg_memzero(v, sizeof(*v));
	free(v);
}

static int
op_create(struct hv *h, struct pg_vse_request *req, json_t **resp)
{
	struct vse *v = NULL;
	char d[PATH_MAX], pm[PATH_MAX + 8];
	int rc;

	if (find(h, req->name))
		return pg_error(PG_EEXIST, "vse", "a VSE named '%s' exists", req->name);
	if (h->nv >= PG_VSE_MAX_VSES)
		return pg_error(PG_ERANGE, "vse", "at most %d VSEs", PG_VSE_MAX_VSES);
	for (int i = 0; i < h->nv; i++) {
		const struct pg_vse_expose *a = &h->v[i]->req.expose, *b = &req->expose;

		if ((strcmp(a->link, "vpcd") == 0 && strcmp(b->link, "vpcd") == 0 &&
		     a->vpcd_slot == b->vpcd_slot) ||
		    (a->listen[0] && strcmp(a->listen, b->listen) == 0))
			return pg_error(PG_EBUSY, "vse", "exposure already used by VSE '%s'",
					h->v[i]->req.name);
	}
	v = calloc(1, sizeof(*v));
	if (!v)
		return PG_ENOMEM;
	v->req = *req;
	v->link_fd = -1;
	v->ctl_fd = -1;
	v->want_run = 1;
	PG_TRY_GOTO(pg_db_begin(h->st.pdb), fail, "vse", "begin");
	rc = db_insert(h, v);
	if (rc == 0 && !v->req.has_cin) {
		/* CIN "PGVS" || id: unique per VSE, and what diversified keys derive from. */
		memcpy(v->req.cin, "PGVS", 4);
		v->req.cin[4] = (uint8_t)(v->id >> 24), v->req.cin[5] = (uint8_t)(v->id >> 16);
		v->req.cin[6] = (uint8_t)(v->id >> 8), v->req.cin[7] = (uint8_t)v->id;
		v->req.has_cin = 1;
	}
	if (rc == 0)
		rc = pg_vse_request_resolve_keys(&v->req); /* in memory only, for the KCVs */
	if (rc == 0)
		rc = vse_event(h, v, "created", 0);
	if (rc == 0) {
		char *cs = config_sealed(h, &v->req);

		rc = cs ? pgi_vse__reg_set_config(h->st.pdb, v->id, cs) : PG_ENOMEM;
		config_free(cs);
	}
	if (rc < 0) {
		pg_db_rollback(h->st.pdb);
		goto fail;
	}
	/* Keys are resolved only in memory and in the VSE; the store keeps the master. */
	PG_TRY_GOTO(vse_dir(h, v, d, sizeof(d)), rollback, "vse", "dir");
	if (mkdir(d, 0700) != 0 && errno != EEXIST) {
		rc = pg_error(PG_EIO, "vse", "mkdir '%s': %s", d, strerror(errno));
		goto rollback;
	}
	snprintf(pm, sizeof(pm), "%s/pmem", d);
	PG_TRY_GOTO(pg_vse_pmem_create(pm, v->req.pmem_size), rollback, "vse", "pmem");
	PG_TRY_GOTO(spawn(h, v, 1), rollback, "vse", "spawn");
	PG_TRY_GOTO(pg_db_commit(h->st.pdb), rollback, "vse", "commit");
	h->v[h->nv++] = v;
	announce(h, v, 1);
	*resp = json_pack("{s:b, s:o}", "ok", 1, "vse", vse_json(h, v));
	pg_info("vse", "created VSE '%s' (pid %d, %s)", v->req.name, (int)v->pid, v->link_addr);
	return 0;
rollback:
	stop_child(v);
	pg_db_rollback(h->st.pdb);
	if (vse_dir(h, v, d, sizeof(d)) == 0)
		rm_tree_one(d);
fail:
	vse_free(v);
	return rc;
}

static int
op_named(struct hv *h, int op, const char *name, json_t **resp)
{
	struct vse *v = find(h, name);
	char d[PATH_MAX];
	int rc = 0;

	if (!v)
		return op_other(h, op, name, resp);
	switch (op) {
	case PG_VSE_OP_SHOW:
		break;
	case PG_VSE_OP_START:
		if (!v->want_run) {
			v->want_run = 1;
			v->fails = 0;
			rc = spawn(h, v, 1);
			if (rc < 0) {
				v->want_run = 0;
				stop_child(v);
				return rc;
			}
			announce(h, v, 1);
			db_update(h, v);
		}
		break;
	case PG_VSE_OP_STOP:
		v->want_run = 0;
		v->crashed = 0; /* stopped while waiting to restart: no restart follows */
		announce(h, v, 0);
		stop_child(v);
		db_update(h, v);
		break;
	case PG_VSE_OP_DESTROY: {
		v->want_run = 0;
		announce(h, v, 0);
		stop_child(v);
		rc = pg_db_begin(h->st.pdb);
		if (rc == 0) {
			rc = pgi_vse__reg_delete(h->st.pdb, v->id);
			if (rc == 0)
				rc = vse_event(h, v, "destroyed", 0);
			if (rc == 0 || rc == PG_ENOENT) /* a row already gone: no event */
				rc = pg_db_commit(h->st.pdb);
			else
				pg_db_rollback(h->st.pdb);
		}
		if (rc < 0)
			return rc; /* the store's message is the detail */
		if (vse_dir(h, v, d, sizeof(d)) == 0)
			rm_tree_one(d);
		for (int i = 0; i < h->nv; i++)
			if (h->v[i] == v) {
				h->v[i] = h->v[--h->nv];
				break;
			}
		*resp = json_pack("{s:b, s:s}", "ok", 1, "destroyed", name);
		vse_free(v);
		return 0;
	}
	}
	*resp = json_pack("{s:b, s:o}", "ok", 1, "vse", vse_json(h, v));
	return 0;
}

static void
handle_client(struct hv *h, int fd)
{
	struct pg_vse_api_req *r = calloc(1, sizeof(*r));
	json_t *resp = NULL;
	char *msg = NULL;
	size_t n;
	int rc;

	pg_clear_error();
	if (!r) {
		close(fd);
		return;
	}
	rc = pgi_vse__recv_msg(fd, &msg, &n, PG_VSE_API_MAX, 5000);
	if (rc == 0)
		rc = pg_vse_api_decode(r, (const uint8_t *)msg, n);
	if (rc == 0) {
		switch (r->op) {
		case PG_VSE_OP_CREATE:
			rc = op_create(h, &r->vse, &resp);
			break;
		case PG_VSE_OP_LIST: {
			struct others o = {.h = h, .a = json_array()};

			for (int i = 0; i < h->nv; i++)
				json_array_append_new(o.a, vse_json(h, h->v[i]));
			/* a store that does not answer leaves the local list */
			if (pg_vse_registry_list(h->st.pdb, NULL, other_row, &o) < 0)
				pg_warn("vse", "VSEs of other nodes not listed: %s",
					pg_last_error());
			resp = json_pack("{s:b, s:o}", "ok", 1, "vses", o.a);
			break;
		}
		default:
			rc = op_named(h, r->op, r->name, &resp);
		}
	}
	if (rc < 0) {
		json_decref(resp);
		resp = pgi_vse__error_json(rc);
	}
	if (resp && pgi_vse__send_json(fd, resp, PG_VSE_API_ANSWER_MAX, 5000) < 0)
		pg_debug("vse", "api: answer not delivered");
	json_decref(resp);
	if (msg) {
		pg_memzero(msg, n);
		free(msg);
	}
	pg_memzero(r, sizeof(*r));
	free(r);
	close(fd);
}

/* One stored VSE of this node back in memory (stopped or not, no process yet). */
static int
load_one(void *arg, const struct pg_vse_entry *e)
{
	struct hv *h = arg;
	struct vse *v;
	json_error_t err;
	json_t *j;

	if (h->nv >= PG_VSE_MAX_VSES)
		return 0;
	v = calloc(1, sizeof(*v));
	j = json_loads(e->config, 0, &err);
	if (!v || !j || config_unwrap(h, j) < 0 || pg_vse_request_from_json(&v->req, j) < 0 ||
	    e->id <= 0 || e->id > INT32_MAX) {
		pg_warn("vse", "stored VSE %lld unreadable: %s", (long long)e->id, pg_last_error());
		json_decref(j);
		free(v);
		return 0;
	}
	json_decref(j);
	if (pg_vse_request_resolve_keys(&v->req) < 0)
		pg_warn("vse", "stored VSE '%s': keys not resolved", v->req.name);
	v->id = (int)e->id;
	v->want_run = e->running;
	v->restarts = (int)e->restarts;
	if (e->last_exit)
		snprintf(v->last_exit, sizeof(v->last_exit), "%s", e->last_exit);
	v->link_fd = -1;
	v->ctl_fd = -1;
	v->next_start_ms = pg_mono_ms();
	if (strcmp(v->req.expose.link, "vpcd") == 0)
		v->next_start_ms += VPCD_OUT_MS; /* its previous run may just have ended */
	h->v[h->nv++] = v;
	/* Stopped or not, no process of it may survive a previous hypervisor. */
	if (reclaim(h, v) < 0)
		pg_warn("vse", "%s", pg_last_error());
	return 0;
}

/* Brings back this node's VSEs the store knows (a restarted hypervisor resumes them). */
static int
load_all(struct hv *h)
{
	return pg_vse_registry_list(h->st.pdb, h->node, load_one, h);
}

static int
hv_listen(struct hv *h)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	mode_t old;
	int fd;

	if (strlen(h->sock) >= sizeof(sa.sun_path))
		return pg_error(PG_ETOOBIG, "vse", "socket path '%s' too long", h->sock);
	strcpy(sa.sun_path, h->sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return pg_error(PG_ESYS, "vse", "socket: %s", strerror(errno));
	/* A live hypervisor answers on the socket; a stale file is replaced. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(fd);
		return pg_error(PG_EBUSY, "vse", "a hypervisor already serves '%s'", h->sock);
	}
	close(fd);
	unlink(h->sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return pg_error(PG_ESYS, "vse", "socket: %s", strerror(errno));
	old = umask(077);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || chmod(h->sock, 0600) != 0 ||
	    listen(fd, 64) != 0) {
		int e = errno;

		umask(old);
		close(fd);
		return pg_error(PG_ESYS, "vse", "listen on '%s': %s", h->sock, strerror(e));
	}
	umask(old);
	h->lfd = fd;
	return 0;
}

/* Where the hypervisor keeps its files, and the program its VSEs run. */
static int
hv_paths(struct hv *h, const struct pg_vse_hv_opts *o)
{
	int rc;

	if (o->announce_dir && (size_t)snprintf(h->announce, sizeof(h->announce), "%s",
						o->announce_dir) >= sizeof(h->announce))
		return pg_error(PG_ERANGE, "vse", "--announce: path too long");
	if ((rc = node_name(h, o->node)) < 0)
		return rc;
	if (o->data_dir)
		snprintf(h->dir, sizeof(h->dir), "%s", o->data_dir);
	else if ((rc = pg_data_dir(h->dir, sizeof(h->dir))) < 0)
		return rc;
	snprintf(h->vdir, sizeof(h->vdir), "%s/vse", h->dir);
	snprintf(h->sock, sizeof(h->sock), "%s/hv.sock", h->vdir);
	if (o->exe) {
		snprintf(h->exe, sizeof(h->exe), "%s", o->exe);
	} else {
		ssize_t k = readlink("/proc/self/exe", h->exe, sizeof(h->exe) - 1);

		if (k <= 0)
			return pg_error(PG_ESYS, "vse", "readlink /proc/self/exe: %s",
					strerror(errno));
		h->exe[k] = '\0';
	}
	return 0;
}

/* Prefers the small VSE image beside the binary; else `payguard vse run-one`. */
static void
find_vse_image(struct hv *h)
{
	char *slash = strrchr(h->exe, '/');

	if (slash && (size_t)(slash - h->exe) + sizeof("/payguard-vse") < sizeof(h->vse_exe)) {
		memcpy(h->vse_exe, h->exe, (size_t)(slash - h->exe));
		strcpy(h->vse_exe + (slash - h->exe), "/payguard-vse");
		if (access(h->vse_exe, X_OK) != 0)
			h->vse_exe[0] = '\0';
	}
#ifdef PG_VSE_LIBEXEC
	/* installed (Debian package): /usr/libexec/payguard/payguard-vse */
	if (!h->vse_exe[0] && access(PG_VSE_LIBEXEC, X_OK) == 0)
		snprintf(h->vse_exe, sizeof(h->vse_exe), "%s", PG_VSE_LIBEXEC);
#endif
	pg_info("vse", "VSE image: %s", h->vse_exe[0] ? h->vse_exe : h->exe);
}

/* The data directory, the key-encryption key and the store with its tables. */
static int
hv_open_store(struct hv *h, const struct pg_vse_hv_opts *o)
{
	char db[PATH_MAX + 16];
	int rc;

	if (o->data_dir && (rc = pg_data_dir_prepare(h->dir)) < 0)
		return rc;
	PG_TRY_GOTO(pg_mkdir_p(h->vdir, 0700), out, "vse", "mkdir");
	if ((rc = pg_kek_load(h->dir, h->kek)) < 0)
		return rc;
	snprintf(db, sizeof(db), "%s/payguard.db", h->dir);
	PG_TRY_GOTO(pg_store_open(&h->st, o->store && *o->store ? o->store : db), out, "vse",
		    "store");
	PG_TRY_GOTO(pg_vse_registry_migrate(h->st.pdb), out, "vse", "migrate");
	PG_TRY_GOTO(pg_events_migrate(h->st.pdb), out, "vse", "migrate events");
	PG_TRY_GOTO(wrap_clear_rows(h), out, "vse", "wrap stored keys");
out:
	return rc;
}

/* The signal dispositions the hypervisor replaces while it serves. */
struct hv_sigs {
	struct sigaction chld, term, intr, pipe;
};

/* SIGCHLD, SIGTERM and SIGINT wake the loop through sig_pipe; SIGPIPE is ignored. */
static int
install_signals(struct hv_sigs *old)
{
	struct sigaction sa = {0};

	if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		return pg_error(PG_ESYS, "vse", "pipe: %s", strerror(errno));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, &old->chld);
	sigaction(SIGTERM, &sa, &old->term);
	sigaction(SIGINT, &sa, &old->intr);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, &old->pipe);
	got_term = 0;
	return 0;
}

static void
restore_signals(const struct hv_sigs *old)
{
	sigaction(SIGCHLD, &old->chld, NULL);
	sigaction(SIGTERM, &old->term, NULL);
	sigaction(SIGINT, &old->intr, NULL);
	sigaction(SIGPIPE, &old->pipe, NULL);
}

/* Starts a VSE that should run and whose back-off has passed; `now` is read again after. */
static void
start_due(struct hv *h, struct vse *v, uint64_t *now)
{
	if (spawn(h, v, 1) < 0) {
		pg_warn("vse", "restart of '%s' failed: %s", v->req.name, pg_last_error());
		stop_child(v);
		v->fails++;
		v->next_start_ms = *now + BACKOFF_MAX;
	} else {
		announce(h, v, 1); /* rewritten: the SE OS re-attaches */
		if (v->crashed)
			db_update_event(h, v, "restarted", v->pid);
		v->crashed = 0;
	}
	*now = pg_mono_ms();
}

/* What one turn of the loop polls: the API socket, sig_pipe, each VSE's control channel. */
struct hv_poll {
	struct pollfd p[2 + PG_VSE_MAX_VSES];
	struct vse *pv[PG_VSE_MAX_VSES]; /* the VSE of p[2 + i] */
	int np, timeout;
};

/*
 * One pass over the VSEs: hands vpcd connections to those that asked,
 * collects the control channels to poll, starts the VSEs that are due and
 * shortens the poll's timeout to the next start.
 */
static void
tend_vses(struct hv *h, struct hv_poll *q)
{
	uint64_t now = pg_mono_ms();

	q->p[0] = (struct pollfd){.fd = h->lfd, .events = POLLIN};
	q->p[1] = (struct pollfd){.fd = sig_pipe[0], .events = POLLIN};
	q->np = 2;
	q->timeout = 1000;
	for (int i = 0; i < h->nv; i++) {
		struct vse *v = h->v[i];

		if (v->pid > 0 && v->ctl_fd >= 0) {
			if (v->reconnect) {
				give_vpcd(v); /* after VPCD_OUT_MS, or vpcd was not listening */
				if (v->reconnect && q->timeout > 200)
					q->timeout = 200;
			}
			q->pv[q->np - 2] = v;
			q->p[q->np] = (struct pollfd){.fd = v->ctl_fd, .events = POLLIN};
			q->np++;
		}
		if (!v->want_run || v->pid > 0)
			continue;
		if (v->next_start_ms <= now)
			start_due(h, v, &now);
		else if ((int)(v->next_start_ms - now) < q->timeout)
			q->timeout = (int)(v->next_start_ms - now);
	}
}

/* Serves until SIGTERM/SIGINT or *o->stop: VSE restarts, control channels, API clients. */
static int
hv_loop(struct hv *h, const struct pg_vse_hv_opts *o)
{
	while (!got_term && !(o->stop && *o->stop)) {
		struct hv_poll q;

		tend_vses(h, &q);
		if (poll(q.p, (nfds_t)q.np, q.timeout) < 0 && errno != EINTR)
			return pg_error(PG_ESYS, "vse", "poll: %s", strerror(errno));
		if (q.p[1].revents & POLLIN) {
			char buf[64];

			while (read(sig_pipe[0], buf, sizeof(buf)) > 0)
				;
		}
		for (int i = 2; i < q.np; i++)
			if (q.p[i].revents && q.pv[i - 2]->ctl_fd == q.p[i].fd)
				on_ctl(q.pv[i - 2]);
		reap(h);
		if (q.p[0].revents & POLLIN) {
			int c = accept4(h->lfd, NULL, NULL, SOCK_CLOEXEC);

			if (c >= 0)
				handle_client(h, c);
		}
	}
	return 0;
}

int
pg_vse_serve(const struct pg_vse_hv_opts *o)
{
	struct hv *h = calloc(1, sizeof(*h));
	struct hv_sigs old_sigs;
	int rc, have_sigs = 0;

	if (!h)
		return PG_ENOMEM;
	h->lfd = -1;
	if ((rc = hv_paths(h, o)) < 0)
		goto out;
	find_vse_image(h);
	if ((rc = hv_open_store(h, o)) < 0)
		goto out;
	PG_TRY_GOTO(hv_listen(h), out, "vse", "listen");
	if ((rc = install_signals(&old_sigs)) < 0)
		goto out;
	have_sigs = 1;
	PG_TRY_GOTO(load_all(h), out, "vse", "load");
	pg_info("vse", "hypervisor listening on %s (%d VSEs known%s%s, store %s)", h->sock, h->nv,
		h->node[0] ? " on node " : "", h->node, pg_db_name(h->st.pdb));
	if (o->ready_fd >= 0 && write(o->ready_fd, "ready\n", 6) != 6)
		pg_debug("vse", "ready fd: %s", strerror(errno));
	rc = hv_loop(h, o);
out:
	if (h->lfd >= 0) {
		close(h->lfd);
		unlink(h->sock);
	}
	for (int i = 0; i < h->nv; i++) {
		announce(h, h->v[i], 0);
		stop_child(h->v[i]);
		vse_free(h->v[i]);
	}
	if (have_sigs)
		restore_signals(&old_sigs);
	for (int i = 0; i < 2; i++)
		if (sig_pipe[i] >= 0)
			close(sig_pipe[i]), sig_pipe[i] = -1;
	pg_store_close(&h->st);
	pg_memzero(h->kek, sizeof(h->kek));
	free(h);
	return rc;
}
