/*
 * Converter ports (seed 7, issue 16 item 3): one interface's SE served in the
 * card role of any link driver on a listening socket, each command going
 * through the interface (pg_conv_iface_link), so a second host reaches an SE
 * the converter already holds (a VSE or a reader serves one host at a time),
 * serialised with every other user. The SE OS serves its authenticated SEs
 * this way to the NFC switch's master ports.
 */
#include "payguard/converter.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct pg_conv_port {
	struct pg_link *view;
	const struct pg_link_ops *ops;
	struct pg_card card;
	char addr[300];
	int lfd;
	pthread_mutex_t mu;
	int conn; /* a duplicate of the connected host's socket (-1 none), to end it */
	int stop;
	pthread_t t;
	int running;
};

static int
port_atr(void *ctx, uint8_t *atr, size_t *len)
{
	struct pg_conv_port *p = ctx;

	return pg_link_power_on(p->view, atr, len);
}

/* Ends the connected host's session: its link sees the SE go. */
static void
port_hangup(struct pg_conv_port *p)
{
	pthread_mutex_lock(&p->mu);
	if (p->conn >= 0)
		shutdown(p->conn, SHUT_RDWR);
	pthread_mutex_unlock(&p->mu);
}

static int
port_process(void *ctx, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t *rlen)
{
	struct pg_conv_port *p = ctx;
	int rc = pg_link_transmit(p->view, capdu, clen, rapdu, rlen);

	if (rc == PG_EINVAL || rc == PG_ERESYNC) {
		/* the SE is still there; only this command did not reach it */
		rapdu[0] = 0x6F;
		rapdu[1] = 0x00;
		*rlen = 2;
		return 0;
	}
	if (rc < 0)
		port_hangup(p); /* failed or detached: the host's link fails too */
	return rc;
}

static void *
port_thread(void *arg)
{
	struct pg_conv_port *p = arg;

	for (;;) {
		struct pg_link_card *lc = NULL;
		int fd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC), dup_fd;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			break; /* shut down by pg_conv_port_stop */
		}
		if (p->ops->card_open(&lc, &p->card, NULL) < 0) {
			close(fd);
			continue;
		}
		dup_fd = dup(fd);
		pthread_mutex_lock(&p->mu);
		p->conn = dup_fd;
		if (p->stop && dup_fd >= 0)
			shutdown(dup_fd, SHUT_RDWR);
		pthread_mutex_unlock(&p->mu);
		(void)pg_stream_serve_fd(fd, pg_link_card_packet, lc); /* closes fd */
		pg_link_card_close(lc);
		pthread_mutex_lock(&p->mu);
		p->conn = -1;
		pthread_mutex_unlock(&p->mu);
		if (dup_fd >= 0)
			close(dup_fd);
	}
	return NULL;
}

int
pg_conv_port_start(struct pg_conv *c, const char *name, const char *link, const char *listen_addr,
		   struct pg_conv_port **out)
{
	struct pg_conv_port *p;
	int rc;

	*out = NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return PG_ENOMEM;
	pthread_mutex_init(&p->mu, NULL);
	p->lfd = -1;
	p->conn = -1;
	p->ops = link ? pg_link_find(link) : NULL;
	if (!p->ops || !p->ops->card_open) {
		rc = pg_error(PG_ENOTSUP, "converter", "no card role of link '%s' for a port",
			      link ? link : "");
		goto fail;
	}
	snprintf(p->addr, sizeof(p->addr), "%s", listen_addr);
	rc = pg_conv_iface_link(c, name, &p->view);
	if (rc < 0)
		goto fail;
	p->card = (struct pg_card){.ctx = p, .atr = port_atr, .process = port_process};
	if (strncmp(p->addr, "unix:", 5) == 0)
		(void)unlink(p->addr + 5); /* left by an earlier run */
	p->lfd = pg_stream_listen(p->addr);
	if (p->lfd < 0) {
		rc = p->lfd;
		goto fail;
	}
	if (pthread_create(&p->t, NULL, port_thread, p) != 0) {
		rc = pg_error(PG_ESYS, "converter", "cannot start the port of '%s'", name);
		goto fail;
	}
	p->running = 1;
	*out = p;
	return 0;
fail:
	pg_conv_port_stop(p);
	return rc;
}

void
pg_conv_port_stop(struct pg_conv_port *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_mutex_unlock(&p->mu);
	if (p->lfd >= 0)
		shutdown(p->lfd, SHUT_RDWR);
	port_hangup(p);
	if (p->running)
		pthread_join(p->t, NULL);
	if (p->lfd >= 0)
		close(p->lfd);
	if (p->lfd >= 0 && strncmp(p->addr, "unix:", 5) == 0)
		(void)unlink(p->addr + 5);
	pg_link_close(p->view);
	pthread_mutex_destroy(&p->mu);
	free(p);
}
