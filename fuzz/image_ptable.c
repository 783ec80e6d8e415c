/* Fuzz target: MBR (with the EBR chain) and GPT (CRCs, backup header) on a
 * raw disk held in memory, plus filesystem sniffing of each partition. */
#include "image/image_int.h"

#include "payguard/log.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_ptable *pt;
	struct pg_bdev *d = NULL;
	int fd;

	pg_log_set_level(-1);
	if (size > (4u << 20))
		return 0;
	fd = memfd_create("pg-ptable", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	if (pgi_raw_from_fd(fd, size, &d) < 0) {
		close(fd);
		return 0;
	}
	pt = calloc(1, sizeof(*pt));
	if (pt && pgi_ptable_read(d, pt) == 0)
		for (int i = 0; i < pt->nparts; i++)
			pgi_fs_sniff(d, pt->parts[i].start, pt->parts[i].size);
	free(pt);
	pgi_bdev_close(d);
	return 0;
}
