/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C half of core_iscsi.ko: static tables that bindgen cannot express (configfs attribute
 * arrays, item types) and wrappers for the macros that initialise them. Everything with logic
 * is in Rust; these tables point at its `extern "C"` entry points (kernel/sys/).
 */
#ifndef CORE_ISCSI_TABLES_H
#define CORE_ISCSI_TABLES_H

#include <linux/configfs.h>
#include <linux/scatterlist.h>
#include <scsi/scsi_host.h>
#include <scsi/scsi_cmnd.h>
#include <scsi/scsi_device.h>

/* The configfs subsystem: /sys/kernel/config/core_iscsi */
extern struct configfs_subsystem core_iscsi_subsys;

/* config_group_init() and mutex_init() of core_iscsi_subsys (macros with static lock keys). */
void core_iscsi_c_subsys_init(void);

/* --- SCSI host (kernel/sys/scsi.rs) ------------------------------------------------------- */

/* What scsi_host_alloc() needs besides the template; copied into the Scsi_Host before it is added. */
struct core_iscsi_host_params {
	unsigned int can_queue;
	unsigned int cmd_per_lun;
	unsigned int max_sectors;
	unsigned int sg_tablesize;
	unsigned long long max_lun;
	unsigned int nr_hw_queues;
};

/* Data direction of a command, as kernel/sys/scsi.rs's Direction (mapped from dma_data_direction). */
#define CORE_ISCSI_DIR_NONE 0
#define CORE_ISCSI_DIR_TO_DEVICE 1
#define CORE_ISCSI_DIR_FROM_DEVICE 2
#define CORE_ISCSI_DIR_BIDIRECTIONAL 3

/* scsi_host_alloc(&core_iscsi_sht, privsize) with the limits of *p applied; NULL on failure. */
struct Scsi_Host *core_iscsi_c_host_alloc(const struct core_iscsi_host_params *p, unsigned int privsize);
/* scsi_add_host(shost, NULL) (a static inline). */
int core_iscsi_c_host_add(struct Scsi_Host *shost);
void *core_iscsi_c_host_priv(struct Scsi_Host *shost);
unsigned int core_iscsi_c_host_no(struct Scsi_Host *shost);
/* scsi_scan_target(&shost->shost_gendev, 0, 0, SCAN_WILD_CARD, rescan ? RESCAN : INITIAL). */
void core_iscsi_c_host_scan(struct Scsi_Host *shost, bool rescan);
/*
 * Device iteration for status reporting: returns the next device after prev (NULL: the first)
 * with a reference held, dropping the reference on prev (shost_for_each_device unrolled).
 */
struct scsi_device *core_iscsi_c_next_device(struct Scsi_Host *shost, struct scsi_device *prev);
/* Facts of a device: its LUN, and pointers to the INQUIRY strings (not NUL terminated). */
unsigned long long core_iscsi_c_sdev_lun(struct scsi_device *sdev);
const char *core_iscsi_c_sdev_vendor(struct scsi_device *sdev);
const char *core_iscsi_c_sdev_model(struct scsi_device *sdev);
const char *core_iscsi_c_sdev_rev(struct scsi_device *sdev);
/*
 * Writes the name of sdev's block device ("sda") into buf (NUL terminated, at most len bytes)
 * and returns its length, or 0 when it has none (no disk driver bound).
 */
unsigned int core_iscsi_c_sdev_disk_name(struct scsi_device *sdev, char *buf, unsigned int len);

/* Accessors of a struct scsi_cmnd the midlayer handed to queuecommand or an eh handler. */
struct Scsi_Host *core_iscsi_c_cmd_host(struct scsi_cmnd *cmd);
const unsigned char *core_iscsi_c_cmd_cdb(struct scsi_cmnd *cmd, unsigned int *len);
unsigned long long core_iscsi_c_cmd_lun(struct scsi_cmnd *cmd);
unsigned int core_iscsi_c_cmd_direction(struct scsi_cmnd *cmd);
unsigned int core_iscsi_c_cmd_bufflen(struct scsi_cmnd *cmd);
unsigned int core_iscsi_c_cmd_tag(struct scsi_cmnd *cmd);
struct scatterlist *core_iscsi_c_cmd_sglist(struct scsi_cmnd *cmd, unsigned int *nents);
void core_iscsi_c_cmd_set_resid(struct scsi_cmnd *cmd, unsigned int resid);
/* Copies len (at most SCSI_SENSE_BUFFERSIZE) bytes into the sense buffer. */
void core_iscsi_c_cmd_set_sense(struct scsi_cmnd *cmd, const unsigned char *sense, unsigned int len);
/* cmd->result = host_byte << 16 | status; scsi_done(cmd). */
void core_iscsi_c_cmd_done(struct scsi_cmnd *cmd, unsigned int host_byte, unsigned int status);
/*
 * One scatterlist entry: its first page, offset and length; returns the next entry (sg_next).
 */
struct scatterlist *core_iscsi_c_sg_entry(struct scatterlist *sg, struct page **page,
					  unsigned int *offset, unsigned int *length);
/* nth_page(page, n) (a macro). */
struct page *core_iscsi_c_nth_page(struct page *page, unsigned long n);
/* memcpy_from_page(to, page, offset, len) (a static inline). */
void core_iscsi_c_memcpy_from_page(void *to, struct page *page, unsigned int offset, unsigned int len);

#endif
