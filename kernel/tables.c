// SPDX-License-Identifier: GPL-2.0
/*
 * Static tables of core_iscsi.ko (see tables.h). The functions named here without a body are
 * implemented in Rust (#[no_mangle] in kernel/sys/).
 */
#include <linux/module.h>
#include "tables.h"

/* --- configfs root: /sys/kernel/config/core_iscsi ------------------------------------------ */

ssize_t core_iscsi_root_version_show(struct config_item *item, char *page);
ssize_t core_iscsi_root_scsi_selftest_store(struct config_item *item, const char *page, size_t count);

CONFIGFS_ATTR_RO(core_iscsi_root_, version);
/* Write-only: "scsi" / "scsi-nolun0" registers the in-memory test host, "stop" removes it. */
CONFIGFS_ATTR_WO(core_iscsi_root_, scsi_selftest);

static struct configfs_attribute *core_iscsi_root_attrs[] = {
	&core_iscsi_root_attr_version,
	&core_iscsi_root_attr_scsi_selftest,
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

/* --- SCSI host template (kernel/sys/scsi.rs) ----------------------------------------------- */

#include <linux/blkdev.h>
#include <linux/blk-mq.h>
#include <linux/highmem.h>
#include <scsi/scsi.h>

int core_iscsi_queuecommand(struct Scsi_Host *shost, struct scsi_cmnd *cmd);
int core_iscsi_eh_abort(struct scsi_cmnd *cmd);
int core_iscsi_eh_device_reset(struct scsi_cmnd *cmd);
int core_iscsi_eh_target_reset(struct scsi_cmnd *cmd);
enum scsi_timeout_action core_iscsi_eh_timed_out(struct scsi_cmnd *cmd);

/*
 * One template for every session. The per-host limits (can_queue, max_sectors, ...) are set
 * on each Scsi_Host by core_iscsi_c_host_alloc(); the values here are only the defaults the
 * midlayer copies first.
 */
static struct scsi_host_template core_iscsi_sht = {
	.module = THIS_MODULE,
	.name = "core-iscsi initiator",
	.proc_name = "core_iscsi",
	.queuecommand = core_iscsi_queuecommand,
	.eh_timed_out = core_iscsi_eh_timed_out,
	.eh_abort_handler = core_iscsi_eh_abort,
	.eh_device_reset_handler = core_iscsi_eh_device_reset,
	.eh_target_reset_handler = core_iscsi_eh_target_reset,
	/* No DMA: data moves by CPU copy or socket page references, one page per range. */
	.dma_boundary = PAGE_SIZE - 1,
	.max_segment_size = PAGE_SIZE,
	.this_id = -1,
	.can_queue = 128,
	.cmd_per_lun = 32,
	.sg_tablesize = SG_ALL,
	.max_sectors = 0xffff,
	.track_queue_depth = 1,
	/* queuecommand sends on a TCP socket, which may sleep (BLK_MQ_F_BLOCKING). */
	.queuecommand_may_block = 1,
};

struct Scsi_Host *core_iscsi_c_host_alloc(const struct core_iscsi_host_params *p, unsigned int privsize)
{
	struct Scsi_Host *shost = scsi_host_alloc(&core_iscsi_sht, privsize);

	if (!shost)
		return NULL;
	shost->can_queue = p->can_queue;
	shost->cmd_per_lun = p->cmd_per_lun;
	shost->max_sectors = p->max_sectors;
	shost->sg_tablesize = p->sg_tablesize;
	shost->max_lun = p->max_lun;
	shost->nr_hw_queues = p->nr_hw_queues;
	/* One iSCSI session is one target, on channel 0, id 0. */
	shost->max_id = 1;
	shost->max_channel = 0;
	/* The BHS carries 16 CDB bytes; longer CDBs would need an AHS (not supported yet). */
	shost->max_cmd_len = 16;
	return shost;
}

int core_iscsi_c_host_add(struct Scsi_Host *shost)
{
	return scsi_add_host(shost, NULL);
}

void *core_iscsi_c_host_priv(struct Scsi_Host *shost)
{
	return shost_priv(shost);
}

unsigned int core_iscsi_c_host_no(struct Scsi_Host *shost)
{
	return shost->host_no;
}

void core_iscsi_c_host_scan(struct Scsi_Host *shost, bool rescan)
{
	scsi_scan_target(&shost->shost_gendev, 0, 0, SCAN_WILD_CARD,
			 rescan ? SCSI_SCAN_RESCAN : SCSI_SCAN_INITIAL);
}

struct scsi_device *core_iscsi_c_next_device(struct Scsi_Host *shost, struct scsi_device *prev)
{
	return __scsi_iterate_devices(shost, prev);
}

unsigned long long core_iscsi_c_sdev_lun(struct scsi_device *sdev)
{
	return sdev->lun;
}

const char *core_iscsi_c_sdev_vendor(struct scsi_device *sdev)
{
	return sdev->vendor;
}

const char *core_iscsi_c_sdev_model(struct scsi_device *sdev)
{
	return sdev->model;
}

const char *core_iscsi_c_sdev_rev(struct scsi_device *sdev)
{
	return sdev->rev;
}

struct core_iscsi_disk_name {
	char *buf;
	unsigned int len;
	unsigned int found;
};

/* The disk is the child of sdev_gendev in the "block" class (block_class is not exported). */
static int core_iscsi_find_disk(struct device *dev, void *data)
{
	struct core_iscsi_disk_name *d = data;

	if (!dev->class || strcmp(dev->class->name, "block"))
		return 0;
	d->found = strscpy(d->buf, dev_name(dev), d->len) < 0 ? 0 : strlen(d->buf);
	return 1;
}

unsigned int core_iscsi_c_sdev_disk_name(struct scsi_device *sdev, char *buf, unsigned int len)
{
	struct core_iscsi_disk_name d = { .buf = buf, .len = len, .found = 0 };

	device_for_each_child(&sdev->sdev_gendev, &d, core_iscsi_find_disk);
	return d.found;
}

struct Scsi_Host *core_iscsi_c_cmd_host(struct scsi_cmnd *cmd)
{
	return cmd->device->host;
}

const unsigned char *core_iscsi_c_cmd_cdb(struct scsi_cmnd *cmd, unsigned int *len)
{
	*len = cmd->cmd_len;
	return cmd->cmnd;
}

unsigned long long core_iscsi_c_cmd_lun(struct scsi_cmnd *cmd)
{
	return cmd->device->lun;
}

unsigned int core_iscsi_c_cmd_direction(struct scsi_cmnd *cmd)
{
	switch (cmd->sc_data_direction) {
	case DMA_TO_DEVICE:
		return CORE_ISCSI_DIR_TO_DEVICE;
	case DMA_FROM_DEVICE:
		return CORE_ISCSI_DIR_FROM_DEVICE;
	case DMA_BIDIRECTIONAL:
		return CORE_ISCSI_DIR_BIDIRECTIONAL;
	default:
		return CORE_ISCSI_DIR_NONE;
	}
}

unsigned int core_iscsi_c_cmd_bufflen(struct scsi_cmnd *cmd)
{
	return scsi_bufflen(cmd);
}

unsigned int core_iscsi_c_cmd_tag(struct scsi_cmnd *cmd)
{
	return blk_mq_unique_tag(scsi_cmd_to_rq(cmd));
}

struct scatterlist *core_iscsi_c_cmd_sglist(struct scsi_cmnd *cmd, unsigned int *nents)
{
	*nents = scsi_sg_count(cmd);
	return scsi_sglist(cmd);
}

void core_iscsi_c_cmd_set_resid(struct scsi_cmnd *cmd, unsigned int resid)
{
	scsi_set_resid(cmd, resid);
}

void core_iscsi_c_cmd_set_sense(struct scsi_cmnd *cmd, const unsigned char *sense, unsigned int len)
{
	len = min_t(unsigned int, len, SCSI_SENSE_BUFFERSIZE);
	memset(cmd->sense_buffer, 0, SCSI_SENSE_BUFFERSIZE);
	memcpy(cmd->sense_buffer, sense, len);
}

void core_iscsi_c_cmd_done(struct scsi_cmnd *cmd, unsigned int host_byte, unsigned int status)
{
	cmd->result = (host_byte & 0xff) << 16 | (status & 0xff);
	scsi_done(cmd);
}

struct scatterlist *core_iscsi_c_sg_entry(struct scatterlist *sg, struct page **page,
					  unsigned int *offset, unsigned int *length)
{
	*page = sg_page(sg);
	*offset = sg->offset;
	*length = sg->length;
	return sg_next(sg);
}

struct page *core_iscsi_c_nth_page(struct page *page, unsigned long n)
{
	return nth_page(page, n);
}

void core_iscsi_c_memcpy_from_page(void *to, struct page *page, unsigned int offset, unsigned int len)
{
	memcpy_from_page(to, page, offset, len);
}
