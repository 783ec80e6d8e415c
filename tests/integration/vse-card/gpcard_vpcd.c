/*
 * Test helper: a GP card (ISD + PPSE, payment and PIN applets, include/
 * payguard/card_gp.h) dialing vpcd (vsmartcard's virtual reader in pcscd),
 * served until vpcd hangs up. Its persistent memory is a file given by path.
 * usage: pg_gpcard_vpcd tcp:127.0.0.1:PORT SERIAL_HEX NVM_FILE
 */
#include "payguard/card_gp.h"
#include "payguard/error.h"
#include "payguard/se_pcsc.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
	static const char *const apps[] = {"ppse", "payment", "pin"};
	struct pg_gp_config cfg = {.applets = apps, .n_applets = 3};
	struct pg_gp_card *g = NULL;
	struct pg_nvm *nvm = NULL;
	int fd, rc;

	if (argc != 4) {
		fprintf(stderr, "usage: %s tcp:127.0.0.1:PORT SERIAL_HEX NVM_FILE\n", argv[0]);
		return 2;
	}
	cfg.serial = (uint32_t)strtoul(argv[2], NULL, 16);
	fd = open(argv[3], O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || pg_nvm_open_fd(&nvm, fd, 16384) < 0)
		return 1;
	cfg.nvm = nvm;
	if ((rc = pg_gp_card_new(&g, &cfg)) < 0) {
		fprintf(stderr, "card: %s\n", pg_strerror(rc));
		return 1;
	}
	rc = pg_vpcd_serve(argv[1], pg_gp_card_card(g), 10000, NULL);
	pg_gp_card_free(g);
	pg_nvm_close(nvm);
	close(fd);
	if (rc < 0)
		fprintf(stderr, "vpcd: %s\n", pg_strerror(rc));
	return rc < 0 ? 1 : 0;
}
