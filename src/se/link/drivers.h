/*
 * The link drivers' ops tables (one file each in src/se/link/). Declared
 * weak while the drivers land one by one on parallel branches: a missing
 * driver is a NULL row that pg_link_find() skips.
 */
#ifndef PG_SE_LINK_DRIVERS_H
#define PG_SE_LINK_DRIVERS_H

#include "payguard/link.h"

#define PG_LINK_WEAK __attribute__((weak))

extern const struct pg_link_ops pg_link_t0_ops PG_LINK_WEAK;
extern const struct pg_link_ops pg_link_t1_ops PG_LINK_WEAK;
extern const struct pg_link_ops pg_link_swp_ops PG_LINK_WEAK;
extern const struct pg_link_ops pg_link_spi_ops PG_LINK_WEAK;
extern const struct pg_link_ops pg_link_i2c_ops PG_LINK_WEAK;
extern const struct pg_link_ops pg_link_ccid_ops PG_LINK_WEAK;
extern const struct pg_link_ops pg_link_pcsc_ops PG_LINK_WEAK;
extern const struct pg_link_ops pg_link_vpcd_ops PG_LINK_WEAK;

#endif
