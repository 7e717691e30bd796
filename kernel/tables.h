/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C half of core_iscsi.ko: static tables that bindgen cannot express (configfs attribute
 * arrays, item types) and wrappers for the macros and static inline functions the Rust side
 * needs. Everything with logic is in Rust; these tables point at its `extern "C"` entry points
 * (kernel/sys/ and the macros there).
 */
#ifndef CORE_ISCSI_TABLES_H
#define CORE_ISCSI_TABLES_H

#include <linux/configfs.h>
#include <linux/workqueue.h>

/* The item type of a channel directory. */
extern const struct config_item_type core_iscsi_channel_type;

/* Names the root group "core_iscsi" with its item type, and initialises the subsystem mutex. */
void core_iscsi_c_subsys_init(struct configfs_subsystem *subsys);

/* alloc_workqueue() is variadic: this passes `name` as its only format argument. */
struct workqueue_struct *core_iscsi_c_alloc_workqueue(const char *name, unsigned int flags);

#endif
