// SPDX-License-Identifier: GPL-2.0
/*
 * Static tables of core_iscsi.ko (see tables.h). The functions named here without a body are
 * implemented in Rust (#[no_mangle] in kernel/sys/).
 */
#include <linux/module.h>
#include "tables.h"

/* --- configfs root: /sys/kernel/config/core_iscsi ------------------------------------------ */

ssize_t core_iscsi_root_version_show(struct config_item *item, char *page);

CONFIGFS_ATTR_RO(core_iscsi_root_, version);

static struct configfs_attribute *core_iscsi_root_attrs[] = {
	&core_iscsi_root_attr_version,
	NULL,
};

static const struct config_item_type core_iscsi_root_type = {
	.ct_attrs = core_iscsi_root_attrs,
	.ct_owner = THIS_MODULE,
};

struct configfs_subsystem core_iscsi_subsys = {
	.su_group = {
		.cg_item = {
			.ci_namebuf = "core_iscsi",
			.ci_type = &core_iscsi_root_type,
		},
	},
};

void core_iscsi_c_subsys_init(void)
{
	config_group_init(&core_iscsi_subsys.su_group);
	mutex_init(&core_iscsi_subsys.su_mutex);
}
