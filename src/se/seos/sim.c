/*
 * A test SE served for the SE OS (issue 7; used by `payguard seos demo` and
 * the daemon's seos service, issue 9): the test card keyed by
 * pg_scp03_diversify(master, its SE id), served on a UNIX socket in the
 * card role of one link driver, in its own thread, and announced to the
 * daemon with an endpoint file.
 */
#include "payguard/card.h"
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/log.h"
#include "payguard/mem.h"
#include "payguard/seos.h"
#include "payguard/stream.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct pg_seos_sim {
	char name[64], link[16], addr[600];
	struct pg_seos_testcard *tc;
	int fd, running;
	pthread_t t;
};

static void *
sim_thread(void *arg)
{
	struct pg_seos_sim *m = arg;

	(void)pg_card_serve_listener(m->fd, pg_link_find(m->link), pg_seos_testcard_card(m->tc),
				     NULL, 0);
	return NULL;
}

int
pg_seos_sim_start(struct pg_seos_sim **out, const char *name, const char *link, uint32_t serial,
		  const uint8_t master[16], const char *sock_path)
{
	struct pg_seos_testcard_cfg cfg = {.serial = serial, .version = 1};
	struct pg_seos_sim *s;
	uint8_t id[PG_SEOS_ID_LEN];
	int rc;

	*out = NULL;
	if (!pg_link_find(link))
		return pg_error(PG_EINVAL, "seos", "no link driver '%s'", link);
	s = calloc(1, sizeof(*s));
	if (!s)
		return PG_ENOMEM;
	s->fd = -1;
	snprintf(s->name, sizeof(s->name), "%s", name);
	snprintf(s->link, sizeof(s->link), "%s", link);
	snprintf(s->addr, sizeof(s->addr), "unix:%s", sock_path);
	rc = pg_seos_testcard_new(&s->tc, &cfg);
	if (rc < 0)
		goto fail;
	pg_seos_testcard_id(s->tc, id);
	rc = pg_scp03_diversify(master, 16, id, sizeof(id), 0x30, &cfg.keys);
	if (rc < 0)
		goto fail;
	pg_seos_testcard_set_keys(s->tc, &cfg.keys);
	pg_memzero(&cfg.keys, sizeof(cfg.keys));
	unlink(sock_path); /* a leftover of an earlier run */
	s->fd = pg_stream_listen(s->addr);
	if (s->fd < 0) {
		rc = s->fd;
		goto fail;
	}
	if (pthread_create(&s->t, NULL, sim_thread, s) != 0) {
		rc = pg_error(PG_ESYS, "seos", "cannot start the thread of SE '%s'", name);
		goto fail;
	}
	s->running = 1;
	*out = s;
	return 0;
fail:
	pg_memzero(&cfg.keys, sizeof(cfg.keys));
	pg_seos_sim_stop(s);
	return rc;
}

const char *
pg_seos_sim_addr(const struct pg_seos_sim *s)
{
	return s->addr;
}

int
pg_seos_sim_announce(const struct pg_seos_sim *s, const char *watch)
{
	char path[700], body[800];
	int n;

	snprintf(path, sizeof(path), "%s/%s.se", watch, s->name);
	n = snprintf(body, sizeof(body), "link=%s\naddr=%s\nkind=sim\n", s->link, s->addr);
	return pg_write_file_atomic(path, body, (size_t)n, 0600);
}

void
pg_seos_sim_stop(struct pg_seos_sim *s)
{
	if (!s)
		return;
	if (s->running) {
		shutdown(s->fd, SHUT_RDWR);
		close(s->fd);
		pthread_join(s->t, NULL);
	} else if (s->fd >= 0) {
		close(s->fd);
	}
	pg_seos_testcard_free(s->tc);
	free(s);
}
