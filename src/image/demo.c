/* placeholder replaced below */
#include "payguard/error.h"
int pg_image_demo(const char *workdir, int keep);
int
pg_image_demo(const char *workdir, int keep)
{
	return PG_ENOTSUP;
}
