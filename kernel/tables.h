/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C half of core_iscsi.ko: static tables that bindgen cannot express (configfs attribute
 * arrays, item types) and wrappers for the macros that initialise them. Everything with logic
 * is in Rust; these tables point at its `extern "C"` entry points (kernel/sys/).
 */
#ifndef CORE_ISCSI_TABLES_H
#define CORE_ISCSI_TABLES_H

#include <linux/configfs.h>

/* The configfs subsystem: /sys/kernel/config/core_iscsi */
extern struct configfs_subsystem core_iscsi_subsys;

/* config_group_init() and mutex_init() of core_iscsi_subsys (macros with static lock keys). */
void core_iscsi_c_subsys_init(void);

#endif
