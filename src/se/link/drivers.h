/*
 * The link drivers' ops tables (one file each in src/se/link/). The table in
 * link.c names each one strongly, which is also what pulls every driver's
 * object out of the static pg_se archive into any program that looks
 * drivers up by name.
 */
#ifndef PG_SE_LINK_DRIVERS_H
#define PG_SE_LINK_DRIVERS_H

#include "payguard/link.h"

extern const struct pg_link_ops pgi_link_t0_ops;
extern const struct pg_link_ops pgi_link_t1_ops;
extern const struct pg_link_ops pgi_link_swp_ops;
extern const struct pg_link_ops pgi_link_spi_ops;
extern const struct pg_link_ops pgi_link_i2c_ops;
extern const struct pg_link_ops pgi_link_ccid_ops;
extern const struct pg_link_ops pgi_link_pcsc_ops;
extern const struct pg_link_ops pgi_link_vpcd_ops;

#endif
