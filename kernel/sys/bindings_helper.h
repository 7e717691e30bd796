/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Headers bindgen reads for kernel/sys/generated/bindings.rs; bindgen_parameters says which of
 * their items are kept.
 */
#include <linux/configfs.h>
#include <linux/crc32c.h>
#include <linux/in.h>
#include "tables.h"
