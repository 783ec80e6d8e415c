/*
 * A simulated SE on a socket: any link driver's card role, served to one
 * host at a time over payguard's packet streams (`payguard se sim --listen`).
 */
#include "payguard/card.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int
pg_card_serve_listener(int listen_fd, const struct pg_link_ops *ops, const struct pg_card *card,
		       const struct pg_link_params *p, int max_conns)
{
	if (!ops->card_open)
		return pg_error(PG_ENOTSUP, "sim", "link %s has no card role", ops->name);
	for (int n = 0; max_conns == 0 || n < max_conns; n++) {
		struct pg_link_card *lc = NULL;
		int fd, rc;

		do
			fd = accept(listen_fd, NULL, NULL);
		while (fd < 0 && errno == EINTR);
		if (fd < 0)
			return pg_error(PG_ESYS, "sim", "accept: %s", strerror(errno));
		rc = ops->card_open(&lc, card, p);
		if (rc < 0) {
			close(fd);
			return rc;
		}
		pg_info("sim", "%s host connected", ops->name);
		/* Power is off between hosts: each one starts from a reset card. */
		if (card->reset)
			card->reset(card->ctx);
		rc = pg_stream_serve_fd(fd, pg_link_card_packet, lc); /* closes fd */
		pg_link_card_close(lc);
		pg_info("sim", "%s host disconnected (%s)", ops->name,
			rc < 0 ? pg_strerror(rc) : "ok");
	}
	return 0;
}
