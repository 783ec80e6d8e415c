/*
 * The `payguard serve` supervisor: starts each service as a worker process
 * (the payguard binary re-executed as `serve worker --name N`), restarts one
 * that dies with exponential back-off, serves the API, and on SIGTERM stops
 * the API, then the workers (SIGTERM, SIGKILL after 5 s).
 */
#include "payguard/clock.h"
#include "payguard/db_json.h"
#include "payguard/error.h"
#include "payguard/events.h"
#include "payguard/fs.h"
#include "payguard/image.h"
#include "payguard/log.h"
#include "payguard/mem.h"
#include "payguard/pos.h"
#include "payguard/serve.h"
#include "cluster.h"
#include "serve_int.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define STABLE_MS      30000 /* a worker up this long gets its back-off reset */

static volatile sig_atomic_t d_stop, d_reload;

static void
on_hup(int sig)
{
	(void)sig;
	d_reload = 1;
}

static void
on_term(int sig)
{
	(void)sig;
	d_stop = 1;
}

static void
record_event(struct pg_serve_state *s, const char *svc, const char *event, const char *detail)
{
	if (pg_db_run_json(
		s->st.pdb,
		"INSERT INTO serve_events(at_ms, service, event, detail) VALUES(?,?,?,?)",
		json_pack("[I,s,s,s?]", (json_int_t)pg_wall_ms(), svc, event, detail), NULL) < 0)
		pg_warn("serve", "cannot record event: %s", pg_last_error());
}

static void
prune_pos(struct pg_serve_state *s)
{
	if (pgi_serve_retention(&s->st, pg_wall_ms(), s->pos_keep_days) < 0)
		pg_warn("serve", "pos_txn retention: %s", pg_last_error());
}

struct run_opts {
	const char *exe;
	int demo, load_period_ms;
	char load_source[512]; /* "" none */
};

static int
start_worker(struct pg_serve_state *s, struct pg_serve_svc *w, const struct run_opts *o)
{
	char period[16];
	pid_t pid;

	snprintf(period, sizeof(period), "%d", o->load_period_ms);
	pid = fork();
	if (pid < 0)
		return pg_error(PG_ESYS, "serve", "fork: %s", strerror(errno));
	if (pid == 0) {
		char *argv[] = {
		    (char *)o->exe,	"serve", "worker", "--name", w->name, "--data", s->data_dir,
		    "--load-period-ms", period,	 NULL,	   NULL,     NULL,    NULL};
		int k = 9;
		sigset_t none;

		if (o->load_source[0]) {
			argv[k++] = "--load-source";
			argv[k++] = (char *)o->load_source;
		}
		if (o->demo)
			argv[k++] = "--demo";
		/* the worker goes when the supervisor goes, even on SIGKILL */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execv(o->exe, argv);
		_exit(127);
	}
	pthread_mutex_lock(&s->mu);
	w->pid = pid;
	w->state = "running";
	w->started_ms = pg_wall_ms();
	w->started_mono = pg_mono_ms();
	pthread_mutex_unlock(&s->mu);
	pg_info("serve", "started %s (pid %d)", w->name, (int)pid);
	return 0;
}

/* A one-shot task that ended: its slot is free again. 1 if pid was one. */
static int
reap_task(struct pg_serve_state *s, pid_t pid, int status)
{
	for (int i = 0; i < PG_SERVE_MAX_TASKS; i++) {
		if (s->task[i] != pid)
			continue;
		pthread_mutex_lock(&s->mu);
		s->task[i] = 0;
		pthread_mutex_unlock(&s->mu);
		pg_info("serve", "upgrade job %lld %s", (long long)s->task_job[i],
			WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "finished"
								      : "ended with an error");
		return 1;
	}
	return 0;
}

/* Reaps dead workers and schedules their restart. */
static void
reap(struct pg_serve_state *s)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (reap_task(s, pid, status))
			continue;
		for (int i = 0; i < s->nsvc; i++) {
			struct pg_serve_svc *w = &s->svc[i];
			char how[48];
			uint64_t now = pg_mono_ms();

			if (w->pid != pid)
				continue;
			if (WIFSIGNALED(status))
				snprintf(how, sizeof(how), "killed by signal %d", WTERMSIG(status));
			else
				snprintf(how, sizeof(how), "exited with status %d",
					 WEXITSTATUS(status));
			pthread_mutex_lock(&s->mu);
			if (w->standby) {
				/* another node leads it (cluster.c): no restart until we do */
				w->standby = 0;
				w->pid = 0;
				w->state = "standby";
				pthread_mutex_unlock(&s->mu);
				pg_info("serve", "%s stopped: another node leads it", w->name);
				record_event(s, w->name, "standby", how);
				continue;
			}
			if (w->reloading) {
				/* stopped by us to take a new configuration: no back-off, no count
				 */
				w->reloading = 0;
				w->pid = 0;
				w->state = "backoff";
				w->next_start_mono = now;
				w->reload_start = 1;
				pthread_mutex_unlock(&s->mu);
				pg_info("serve", "%s stopped for a reload", w->name);
				continue;
			}
			if (now - w->started_mono >= STABLE_MS)
				w->backoff_ms = BACKOFF_MIN_MS;
			w->pid = 0;
			w->state = "backoff";
			w->next_start_mono = now + w->backoff_ms;
			snprintf(w->last_exit, sizeof(w->last_exit), "%s", how);
			pthread_mutex_unlock(&s->mu);
			pg_warn("serve", "%s (pid %d) %s; restart in %u ms", w->name, (int)pid, how,
				w->backoff_ms);
			record_event(s, w->name, "exit", how);
			w->backoff_ms =
			    w->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : w->backoff_ms * 2;
		}
	}
}

/* Whether worker w stops in this phase: the rows of the worker table
 * marked stop_last (the events relay, so it publishes what the others
 * committed while stopping) in the last. */
static int
in_phase(const struct pg_serve_svc *w, int last)
{
	const struct pg_serve_worker_def *d = pg_serve_worker_find(w->name);

	return (d && d->stop_last) == last;
}

/* SIGTERM to the workers of one phase (and, in the first, the upgrade
 * tasks), SIGKILL to those still running after 5 s. */
static void
stop_phase(struct pg_serve_state *s, int last)
{
	uint64_t t0 = pg_mono_ms();
	int left;

	for (int i = 0; i < s->nsvc; i++)
		if (s->svc[i].pid > 0 && in_phase(&s->svc[i], last))
			kill(s->svc[i].pid, SIGTERM);
	/* a running upgrade marks its job interrupted and drops its partial overlay */
	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < PG_SERVE_MAX_TASKS && !last; i++)
		if (s->task[i] > 0)
			kill(s->task[i], SIGTERM);
	pthread_mutex_unlock(&s->mu);
	do {
		int status;

		left = 0;
		for (int i = 0; i < s->nsvc; i++) {
			struct pg_serve_svc *w = &s->svc[i];

			if (!in_phase(w, last))
				continue;
			if (w->pid > 0 && waitpid(w->pid, &status, WNOHANG) == w->pid) {
				pthread_mutex_lock(&s->mu);
				w->pid = 0;
				w->state = "stopped";
				pthread_mutex_unlock(&s->mu);
			}
			left += w->pid > 0;
		}
		for (int i = 0; i < PG_SERVE_MAX_TASKS && !last; i++) {
			if (s->task[i] > 0 && waitpid(s->task[i], &status, WNOHANG) == s->task[i])
				s->task[i] = 0;
			left += s->task[i] > 0;
		}
		if (left)
			usleep(20 * 1000);
	} while (left && pg_mono_ms() - t0 < 5000);
	for (int i = 0; i < s->nsvc; i++) {
		if (s->svc[i].pid > 0 && in_phase(&s->svc[i], last)) {
			pg_warn("serve", "%s did not stop in 5 s: SIGKILL", s->svc[i].name);
			kill(s->svc[i].pid, SIGKILL);
			waitpid(s->svc[i].pid, NULL, 0);
			s->svc[i].pid = 0;
			s->svc[i].state = "stopped";
		}
	}
	for (int i = 0; i < PG_SERVE_MAX_TASKS && !last; i++) {
		if (s->task[i] > 0) {
			pg_warn("serve", "upgrade job %lld did not stop in 5 s: SIGKILL",
				(long long)s->task_job[i]);
			kill(s->task[i], SIGKILL);
			waitpid(s->task[i], NULL, 0);
			s->task[i] = 0;
		}
	}
}

static void
stop_workers(struct pg_serve_state *s)
{
	stop_phase(s, 0);
	stop_phase(s, 1);
}

/* SIGHUP: re-reads the configuration file; what a running daemon can take
 * (load_period_ms, log_level) applies now, the rest at the next start. */
static void
reload(struct pg_serve_state *s, const struct pg_serve_cfg *cfg, struct run_opts *o)
{
	struct pg_serve_conf c;
	int rc;

	if (!cfg->config_path) {
		pg_warn("serve", "SIGHUP: no configuration file to reload");
		return;
	}
	pg_serve_conf_default(&c);
	rc = pg_serve_conf_load(cfg->config_path, &c);
	if (rc < 0) {
		pg_err("serve", "SIGHUP: configuration kept: %s", pg_last_error());
		record_event(s, "serve", "reload-failed", pg_last_error());
		return;
	}
	if ((c.keys & PG_SERVE_KEY_LOG_LEVEL) && !(cfg->cli_keys & PG_SERVE_KEY_LOG_LEVEL))
		pg_log_set_level(c.log_level);
	if ((c.keys & (PG_SERVE_KEY_LISTEN | PG_SERVE_KEY_PORT | PG_SERVE_KEY_TOKEN_FILE |
		       PG_SERVE_KEY_DEMO | PG_SERVE_KEY_ALLOWED_HOSTS | PG_SERVE_KEY_STORE)) &&
	    !(cfg->cli_keys & PG_SERVE_KEY_LISTEN))
		pg_warn("serve", "SIGHUP: listen, port, token_file, allowed_hosts, demo and store "
				 "take effect at the next start");
	{
		int period = (c.keys & PG_SERVE_KEY_LOAD_PERIOD) ? c.load_period_ms : 5000;
		const char *src = (c.keys & PG_SERVE_KEY_LOAD_SOURCE) ? c.load_source : "";
		int change = 0;

		if (cfg->cli_keys & PG_SERVE_KEY_LOAD_PERIOD)
			period = o->load_period_ms;
		if (cfg->cli_keys & PG_SERVE_KEY_LOAD_SOURCE)
			src = o->load_source;
		change = period != o->load_period_ms || strcmp(src, o->load_source) != 0;
		if (change) {
			/* the load worker restarts on purpose to take them */
			o->load_period_ms = period;
			if (src != o->load_source)
				snprintf(o->load_source, sizeof(o->load_source), "%s", src);
			pthread_mutex_lock(&s->mu);
			s->load_period_ms = period;
			for (int i = 0; i < s->nsvc; i++) {
				if (strcmp(s->svc[i].name, "load") == 0 && s->svc[i].pid > 0) {
					s->svc[i].reloading = 1;
					kill(s->svc[i].pid, SIGTERM);
				}
			}
			pthread_mutex_unlock(&s->mu);
		}
	}
	pthread_mutex_lock(&s->mu);
	s->reloads++;
	pthread_mutex_unlock(&s->mu);
	pg_info("serve", "SIGHUP: configuration reloaded from %s", cfg->config_path);
	record_event(s, "serve", "reload", cfg->config_path);
}

/* Takes the data directory's run/serve.lock (one daemon per directory: a
 * second would share the hypervisor's and the SE OS's sockets) and writes
 * our pid in it; *lockfd is the lock's descriptor. */
static int
lock_data_dir(struct pg_serve_state *s, int *lockfd)
{
	char runpath[600], pid[24] = "";
	int rc, n;

	snprintf(runpath, sizeof(runpath), "%s/run", s->data_dir);
	rc = pg_mkdir_p(runpath, 0700);
	if (rc < 0)
		return rc;
	snprintf(runpath, sizeof(runpath), "%s/run/serve.lock", s->data_dir);
	*lockfd = open(runpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (*lockfd < 0)
		return pg_error(PG_EIO, "serve", "cannot open %s: %s", runpath, strerror(errno));
	if (flock(*lockfd, LOCK_EX | LOCK_NB) < 0) {
		ssize_t got = pread(*lockfd, pid, sizeof(pid) - 1, 0);

		pid[got > 0 ? got : 0] = 0;
		pid[strcspn(pid, "\n")] = 0;
		return pg_error(PG_EBUSY, "serve", "another payguard serve (pid %s) uses %s",
				pid[0] ? pid : "?", s->data_dir);
	}
	n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(*lockfd, 0) < 0 || pwrite(*lockfd, pid, (size_t)n, 0) != n)
		pg_warn("serve", "cannot write the pid to %s", runpath);
	return 0;
}

/* The data directory: the configured one (made private) or the default. */
static int
pick_data_dir(struct pg_serve_state *s, const struct pg_serve_cfg *cfg)
{
	int rc;

	if (!cfg->data_dir) {
		rc = pg_data_dir(s->data_dir, sizeof(s->data_dir));
		return rc < 0 ? rc : 0;
	}
	snprintf(s->data_dir, sizeof(s->data_dir), "%s", cfg->data_dir);
	/* keys, the store and the sockets live here: 0700, or we do not start */
	rc = pg_data_dir_prepare(s->data_dir);
	return rc < 0 ? rc : 0;
}

/*
 * The store: the configured URL, else DATA_DIR/payguard.db. Workers and
 * one-shot tasks get it through PG_SERVE_STORE_ENV (set here, before any
 * thread or child exists): never on their command line, which any user may
 * read in /proc, as a URL may carry a password.
 */
static int
pick_store(struct pg_serve_state *s, const struct pg_serve_cfg *cfg)
{
	int n;

	if (cfg->store && cfg->store[0])
		n = snprintf(s->store, sizeof(s->store), "%s", cfg->store);
	else
		n = snprintf(s->store, sizeof(s->store), "%s/payguard.db", s->data_dir);
	if (n < 0 || (size_t)n >= sizeof(s->store))
		return pg_error(PG_ETOOBIG, "serve", "the store URL is longer than %zu bytes",
				sizeof(s->store) - 1);
	if (setenv(PG_SERVE_STORE_ENV, s->store, 1) < 0)
		return pg_error(PG_ESYS, "serve", "setenv: %s", strerror(errno));
	return 0;
}

/*
 * The events configuration for the workers (the events worker, the pos
 * worker's JetStream intake), by environment like the store URL: NATS URLs
 * may carry a password; the webhook secret's file is named, never read here.
 * Unset when not configured, so nothing from the caller's environment leaks in.
 */
static int
events_env(const struct pg_serve_cfg *cfg)
{
	char hooks[PG_SERVE_MAX_WEBHOOKS * 512 + 16];
	size_t used = 0;
	int rc = 0;

	hooks[0] = 0;
	for (int i = 0; i < cfg->nwebhooks && i < PG_SERVE_MAX_WEBHOOKS; i++) {
		int k = snprintf(hooks + used, sizeof(hooks) - used, "%s%s", i ? "\n" : "",
				 cfg->webhooks[i]);

		if (k < 0 || (size_t)k >= sizeof(hooks) - used)
			return pg_error(PG_ETOOBIG, "serve", "webhook URLs too long");
		used += (size_t)k;
	}
	rc |= cfg->nats && cfg->nats[0] ? setenv(PG_SERVE_NATS_ENV, cfg->nats, 1)
					: unsetenv(PG_SERVE_NATS_ENV);
	rc |= hooks[0] ? setenv(PG_SERVE_WEBHOOKS_ENV, hooks, 1) : unsetenv(PG_SERVE_WEBHOOKS_ENV);
	rc |= cfg->webhook_secret_file
		  ? setenv(PG_SERVE_WEBHOOK_KEY_ENV, cfg->webhook_secret_file, 1)
		  : unsetenv(PG_SERVE_WEBHOOK_KEY_ENV);
	rc |= cfg->intake_jetstream ? setenv(PG_SERVE_INTAKE_ENV, "jetstream", 1)
				    : unsetenv(PG_SERVE_INTAKE_ENV);
	rc |= cfg->pos_report && cfg->pos_report[0]
		  ? setenv(PG_SERVE_POS_REPORT_ENV, cfg->pos_report, 1)
		  : unsetenv(PG_SERVE_POS_REPORT_ENV);
	if (rc)
		return pg_error(PG_ESYS, "serve", "setenv: %s", strerror(errno));
	if (cfg->nats || cfg->nwebhooks)
		pg_info("serve", "events: %s%d webhook(s); POS intake %s",
			cfg->nats ? "NATS JetStream, " : "", cfg->nwebhooks,
			cfg->intake_jetstream ? "through JetStream" : "into the store");
	return 0;
}

/* The master key and the store, both made before any worker reads them. */
static int
open_state(struct pg_serve_state *s)
{
	uint8_t mk[16];
	int rc = pgi_serve_master_key(s->data_dir, mk); /* one writer: made here */

	pg_memzero(mk, sizeof(mk));
	if (rc < 0)
		return rc;
	rc = pg_store_open(&s->st, s->store);
	if (rc == 0)
		rc = pgi_serve_migrate(&s->st);
	if (rc == 0) /* the API reads these tables before the workers are up */
		rc = pg_pos_migrate(&s->st);
	if (rc == 0)
		rc = pg_image_db_open(&s->st);
	if (rc == 0) /* the outbox: every worker writes events into it */
		rc = pg_events_migrate(s->st.pdb);
	return rc;
}

struct old_signals {
	struct sigaction term, intr, hup;
	int set;
};

static void
signals_install(struct old_signals *old)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, &old->term);
	sigaction(SIGINT, &sa, &old->intr);
	sa.sa_handler = on_hup;
	sigaction(SIGHUP, &sa, &old->hup);
	signal(SIGPIPE, SIG_IGN); /* a client that hangs up must not kill the daemon */
	old->set = 1;
}

static void
signals_restore(const struct old_signals *old)
{
	if (!old->set)
		return;
	sigaction(SIGTERM, &old->term, NULL);
	sigaction(SIGINT, &old->intr, NULL);
	sigaction(SIGHUP, &old->hup, NULL);
}

/* One service per row of the worker table (workers.c); demo-only rows with --demo. */
static int
start_services(struct pg_serve_state *s, int demo, const struct run_opts *o)
{
	int rc;

	s->nsvc = 0;
	for (const struct pg_serve_worker_def *d = pgi_serve_workers; d->name; d++) {
		struct pg_serve_svc *w = &s->svc[s->nsvc];

		if (d->demo_only && !demo)
			continue;
		assert(s->nsvc < PG_SERVE_MAX_SVC);
		snprintf(w->name, sizeof(w->name), "%s", d->name);
		w->state = "stopped";
		w->backoff_ms = BACKOFF_MIN_MS;
		s->nsvc++;
	}
	for (int i = 0; i < s->nsvc; i++) {
		/* a singleton another node of the cluster leads waits (cluster.c) */
		if (!pgi_serve_cluster_runs(s->cluster, s->svc[i].name))
			s->svc[i].state = "standby";
		else if ((rc = start_worker(s, &s->svc[i], o)) < 0)
			return rc;
	}
	return 0;
}

/*
 * The line that says where the API listens, then the port file: whoever waits
 * for the port file finds the line printed.
 */
static int
announce(struct pg_serve_state *s, const struct pg_serve_cfg *cfg, const char *host, int bound)
{
	int brackets = strchr(host, ':') && host[0] != '['; /* an IPv6 address */

	/* the store by pg_db_name: a URL's password never reaches a log */
	printf("payguard serve: API and dashboard on http://%s%s%s:%d/ (data in %s, store %s)\n",
	       brackets ? "[" : "", host, brackets ? "]" : "", bound, s->data_dir,
	       pg_db_name(s->st.pdb));
	fflush(stdout);
	if (cfg->port_file) {
		char txt[16];
		int n = snprintf(txt, sizeof(txt), "%d\n", bound);
		int rc = pg_write_file_atomic(cfg->port_file, txt, (size_t)n, 0644);

		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Restarts service w if its back-off is over. */
static void
restart_due(struct pg_serve_state *s, struct pg_serve_svc *w, const struct run_opts *o,
	    uint64_t now)
{
	int planned = w->reload_start;

	if (w->pid != 0 || strcmp(w->state, "backoff") != 0 || now < w->next_start_mono)
		return;
	if (start_worker(s, w, o) != 0) {
		w->next_start_mono = now + w->backoff_ms;
		return;
	}
	w->reload_start = 0;
	if (!planned) {
		pthread_mutex_lock(&s->mu);
		w->restarts++;
		pthread_mutex_unlock(&s->mu);
	}
	record_event(s, w->name, planned ? "reload" : "restart",
		     planned ? "configuration" : w->last_exit);
}

/* The supervisor's loop, until SIGTERM or SIGINT. */
static void
supervise(struct pg_serve_state *s, const struct pg_serve_cfg *cfg, struct pg_serve_api *api,
	  struct run_opts *o)
{
	uint64_t last_prune = 0;

	while (!d_stop) {
		uint64_t now;

		if (d_reload) {
			d_reload = 0;
			reload(s, cfg, o);
		}
		reap(s);
		pgi_serve_api_tick(api);
		now = pg_mono_ms();
		pgi_serve_cluster_apply(s, now); /* singletons follow this node's leadership */
		pgi_serve_cluster_jobs(s, now);	 /* a cluster node takes queued image jobs */
		if (now - last_prune >= 60000 && pgi_serve_cluster_leads(s->cluster, "retention")) {
			last_prune = now;
			prune_pos(s);
		}
		for (int i = 0; i < s->nsvc && !d_stop; i++)
			restart_due(s, &s->svc[i], o, now);
		usleep(50 * 1000);
	}
}

/*
 * Cluster mode (cluster.c): the node's name (--node, else the host name) and
 * the address other nodes reach this API at. On SQLite it is alone.
 */
static int
join_cluster(struct pg_serve_state *s, const struct pg_serve_cfg *cfg, const char *host, int bound)
{
	char node[PG_SERVE_NODE_NAME], addr[300], hn[256];
	int v6 = strchr(host, ':') && host[0] != '[';

	if (cfg->node) {
		snprintf(node, sizeof(node), "%s", cfg->node);
	} else {
		if (gethostname(hn, sizeof(hn)) < 0)
			snprintf(hn, sizeof(hn), "localhost");
		hn[sizeof(hn) - 1] = 0;
		hn[strcspn(hn, ".")] = 0; /* the short name */
		snprintf(node, sizeof(node), "%s", hn);
		if (pg_serve_check_node_name(node) < 0)
			return pg_error(PG_EINVAL, "serve",
					"the host name '%.60s' is no node name; give --node NAME",
					hn);
	}
	/* a wildcard address is no address to call: the host name is */
	if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 || strcmp(host, "[::]") == 0) {
		if (gethostname(hn, sizeof(hn)) < 0)
			snprintf(hn, sizeof(hn), "localhost");
		hn[sizeof(hn) - 1] = 0;
		snprintf(addr, sizeof(addr), "%s:%d", hn, bound);
	} else {
		snprintf(addr, sizeof(addr), "%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "",
			 bound);
	}
	/* workers and tasks of a cluster node need its name (set before any forks) */
	if (pg_db_url_is_postgres(s->store) && setenv(PG_SERVE_NODE_ENV, node, 1) < 0)
		return pg_error(PG_ESYS, "serve", "setenv: %s", strerror(errno));
	return pgi_serve_cluster_open(s, s->store, node, addr, &s->cluster);
}

/* Binds the API's socket first (a port in use fails before anything is
 * made or started) and checks that a non-loopback address has a token. */
static int
bind_first(struct pg_serve_state *s, const struct pg_serve_cfg *cfg, const char *host,
	   int *listen_fd, int *bound)
{
	int loopback = 0;
	int rc = pgi_serve_listen(host, cfg->port, listen_fd, bound, &loopback);

	if (rc < 0)
		return rc;
	if (!loopback && (!cfg->token || !cfg->token[0]))
		return pg_error(PG_EPERM, "serve",
				"binding to %s (not loopback) requires a token (--token-file)",
				host);
	if (cfg->token && cfg->token[0])
		s->token = cfg->token;
	return pgi_serve_guard_init(s, cfg->allow_hosts, cfg->nallow_hosts);
}

int
pg_serve_run(const struct pg_serve_cfg *cfg)
{
	struct pg_serve_state *s = calloc(1, sizeof(*s));
	struct pg_serve_api *api = NULL;
	struct run_opts o = {cfg->self_exe, cfg->demo, cfg->load_period_ms, ""};
	const char *host = cfg->host ? cfg->host : "127.0.0.1";
	struct old_signals sigs = {0};
	int rc, bound = 0, lockfd = -1, listen_fd = -1;

	if (!s)
		return PG_ENOMEM;
	pthread_mutex_init(&s->mu, NULL);
	s->exe = cfg->self_exe;
	if (cfg->load_source)
		snprintf(o.load_source, sizeof(o.load_source), "%s", cfg->load_source);
	rc = bind_first(s, cfg, host, &listen_fd, &bound);
	if (rc >= 0)
		rc = pick_data_dir(s, cfg);
	if (rc >= 0)
		rc = pick_store(s, cfg);
	if (rc >= 0)
		rc = events_env(cfg);
	if (rc >= 0)
		rc = lock_data_dir(s, &lockfd);
	if (rc >= 0)
		rc = open_state(s);
	if (rc >= 0)
		rc = join_cluster(s, cfg, host, bound);
	if (rc < 0)
		goto out;
	s->started_ms = pg_wall_ms();
	s->load_period_ms = cfg->load_period_ms;
	s->pos_keep_days = cfg->pos_keep_days > 0 ? cfg->pos_keep_days : PG_SERVE_POS_KEEP_DAYS;
	signals_install(&sigs);
	rc = start_services(s, cfg->demo, &o);
	if (rc >= 0)
		rc = pgi_serve_cluster_start(s->cluster);
	if (rc < 0)
		goto out;
	rc = pgi_serve_api_start(s, listen_fd, &api);
	listen_fd = -1; /* the API's now, closed by it even on failure */
	if (rc == 0)
		rc = announce(s, cfg, host, bound);
	if (rc < 0)
		goto out;
	record_event(s, "serve", "start", host);
	supervise(s, cfg, api, &o);
	pg_info("serve", "stopping");
	rc = 0;
out:
	if (api)
		pgi_serve_api_stop(api);
	if (listen_fd >= 0)
		close(listen_fd);
	stop_workers(s);
	/* after the workers: its locks must not pass on while a singleton still runs */
	pgi_serve_cluster_close(s->cluster);
	s->cluster = NULL;
	if (s->st.pdb)
		record_event(s, "serve", "stop", rc ? pg_strerror(rc) : "clean");
	pg_store_close(&s->st);
	signals_restore(&sigs);
	if (lockfd >= 0)
		close(lockfd); /* releases the lock */
	pgi_serve_guard_release(s);
	pthread_mutex_destroy(&s->mu);
	free(s);
	return rc;
}
