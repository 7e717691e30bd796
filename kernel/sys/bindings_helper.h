/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Headers bindgen reads for kernel/sys/generated/bindings.rs; bindgen_parameters says which of
 * their items are kept.
 */
#include <linux/configfs.h>
#include <linux/crc32c.h>
#include <linux/in.h>
#include "tables.h"
#include <linux/scatterlist.h>
#include <scsi/scsi.h>
#include <scsi/scsi_cmnd.h>
#include <scsi/scsi_device.h>
#include <scsi/scsi_host.h>
#include <scsi/scsi_status.h>
