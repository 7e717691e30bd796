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
#include <linux/in.h>
#include <linux/net.h>
#include <linux/uio.h>
#include <linux/scatterlist.h>
#include <scsi/scsi_host.h>
#include <scsi/scsi_cmnd.h>
#include <scsi/scsi_device.h>

struct crypto_shash;
struct sk_buff;

/* The item type of a channel directory. */
extern const struct config_item_type core_iscsi_channel_type;

/* Names the root group "core_iscsi" with its item type, and initialises the subsystem mutex. */
void core_iscsi_c_subsys_init(struct configfs_subsystem *subsys);

/* alloc_workqueue() is variadic: this passes `name` as its only format argument. */
struct workqueue_struct *core_iscsi_c_alloc_workqueue(const char *name, unsigned int flags);

/* cancel_work_sync(): true if a pending run was removed (kernel/sys/workqueue.rs). */
bool core_iscsi_c_cancel_work_sync(struct work_struct *work);

/*
 * A self-rearming delayed work item (kernel/sys/ticker.rs). While queued, `data` is a reference
 * to the owner that the run takes over; `closed` (under `lock`) refuses every later arming, so
 * that after core_iscsi_c_ticker_close() nothing is queued or running.
 */
struct core_iscsi_ticker {
	struct delayed_work dw;
	spinlock_t lock;
	bool closed;
	void *data;
	void (*run)(void *data);
};
void core_iscsi_c_ticker_init(struct core_iscsi_ticker *t, void (*run)(void *data));
/*
 * Queues a run after delay_ms (now: at once, also pulling in a run already queued for later)
 * unless closed. Returns true if it took `data` (a new run), false if a run was already queued
 * or the ticker is closed: the caller keeps `data`.
 */
bool core_iscsi_c_ticker_arm(struct core_iscsi_ticker *t, struct workqueue_struct *wq,
			     void *data, unsigned int delay_ms, bool now);
/* Closes the ticker, waits for a running run; returns the data of a cancelled run, or NULL. */
void *core_iscsi_c_ticker_close(struct core_iscsi_ticker *t);

/* memalloc_noio_save() / memalloc_noio_restore() (include/linux/sched/mm.h). */
unsigned int core_iscsi_c_memalloc_noio_save(void);
void core_iscsi_c_memalloc_noio_restore(unsigned int flags);
/* fatal_signal_pending(current), signal_pending(current). */
bool core_iscsi_c_fatal_signal_pending(void);
bool core_iscsi_c_signal_pending(void);

/* spin_lock_bh / spin_unlock_bh (kernel/sys/bh_lock.rs). */
void core_iscsi_c_spin_lock_bh(spinlock_t *lock);
void core_iscsi_c_spin_unlock_bh(spinlock_t *lock);

/* --- kernel TCP socket (kernel/sys/socket.rs) --------------------------------------------- */

/* The initial network namespace, where the module's sockets live. */
struct net *core_iscsi_c_init_net(void);

/*
 * Prepares a freshly created kernel socket for a block-device data path, as iscsi_tcp and
 * nvme-tcp do: atomic allocations (no reclaim recursing into our own I/O), no use of the
 * current task's page fragment, access to memory reserves.
 */
void core_iscsi_c_sock_prepare(struct socket *sock);

/* sk_rcvtimeo / sk_sndtimeo in milliseconds; 0 means block forever. */
void core_iscsi_c_sock_set_timeouts(struct socket *sock, unsigned int rcv_ms, unsigned int snd_ms);
/*
 * sk_sndtimeo / sk_rcvtimeo alone, without the socket lock: the bound of one call toward an
 * absolute deadline. Only the thread about to send (the tx lock's holder, or the one login or
 * connect thread) or receive on the socket sets them, so no call reads them concurrently.
 */
void core_iscsi_c_sock_set_sndtimeo(struct socket *sock, unsigned int ms);
void core_iscsi_c_sock_set_rcvtimeo(struct socket *sock, unsigned int ms);

/* Sends what MSG_MORE held back (tcp_sock_set_cork(sk, false)). */
void core_iscsi_c_sock_push(struct socket *sock);

/* Whether blk-mq flagged the command as the last of a batch (SCMD_LAST). */
bool core_iscsi_c_cmd_is_last(struct scsi_cmnd *cmd);

/* tcp_sock_set_nodelay(sock->sk). */
void core_iscsi_c_sock_set_nodelay(struct socket *sock);
/* sock_bindtoindex(sock->sk, ifindex, true): SO_BINDTOIFINDEX for a kernel socket. */
int core_iscsi_c_sock_bind_to_index(struct socket *sock, int ifindex);
/*
 * The socket's local address (kernel_getsockname): returns AF_INET or AF_INET6 with the
 * address's 4 or 16 bytes in addr, the port in host order and the IPv6 scope, or a negative
 * errno.
 */
int core_iscsi_c_sock_local(struct socket *sock, unsigned char addr[16], unsigned short *port,
			    unsigned int *scope);
/* num_online_cpus() (a macro). */
unsigned int core_iscsi_c_online_cpus(void);

/* sendpages_ok(): may these pages be spliced into an skb (MSG_SPLICE_PAGES)? */
bool core_iscsi_c_sendpages_ok(struct page *page, size_t len, size_t offset);

/* Socket events delivered to core_iscsi_sock_event_fn (the `event` argument). */
#define CORE_ISCSI_SOCK_DATA_READY 0
#define CORE_ISCSI_SOCK_STATE_CHANGE 1
#define CORE_ISCSI_SOCK_WRITE_SPACE 2

/*
 * Called from the socket's callbacks (softirq or process context) with sk_callback_lock held
 * for read: `closed` is set for a state change out of TCP_ESTABLISHED. For DATA_READY the
 * socket is locked by the caller (bh_lock_sock, or owned while release_sock processes the
 * backlog), so `sk`'s receive queue may be read with core_iscsi_c_sk_read_locked.
 */
typedef void (*core_iscsi_sock_event_fn)(void *user, int event, bool closed, struct sock *sk);
/* Releases `user` once the callbacks are removed (process context). */
typedef void (*core_iscsi_sock_release_fn)(void *user);

/*
 * Installs our data_ready / state_change / write_space callbacks on `sock`, which call
 * `event(user, ...)` and then the socket's original callback. -EBUSY if the socket already
 * has user data, -ENOMEM. On success `release(user)` is called exactly once, by
 * core_iscsi_c_sock_clear_callbacks.
 */
int core_iscsi_c_sock_set_callbacks(struct socket *sock, void *user,
				    core_iscsi_sock_event_fn event,
				    core_iscsi_sock_release_fn release);

/*
 * Restores the original callbacks under write_lock_bh(&sk->sk_callback_lock), then releases
 * the user data. Returns whether callbacks were installed. After it returns, `event` is never
 * called again for this socket.
 */
bool core_iscsi_c_sock_clear_callbacks(struct socket *sock);
/*
 * Whether the peer has closed its side of the connection (its FIN or a reset came): the TCP
 * state is CLOSE_WAIT, LAST_ACK, CLOSING, TIME_WAIT or CLOSE.
 */
bool core_iscsi_c_sock_peer_closed(struct socket *sock);
/* Makes the socket's release abortive (SO_LINGER 0): what is queued is dropped with a reset. */
void core_iscsi_c_sock_no_linger(struct socket *sock);

/*
 * Receives by walking the socket's receive queue under lock_sock (tcp_read_sock), as nvme-tcp
 * and iscsi_tcp do: one pass hands every queued byte to `actor(user, skb, offset, len)`, where
 * a recvmsg per piece of a PDU would lock the socket, set up an iterator and consider an ACK
 * each time. The actor returns how many of the `len` bytes at `offset` of `skb` it consumed
 * (with skb_copy_bits or core_iscsi_c_skb_copy_to_pages); 0 stops the pass. The actor runs
 * with the socket owned: it must not send on, shut down or release this socket.
 *
 * Returns the bytes consumed; once the queue is empty, the socket's pending error, or
 * -ECONNRESET if the peer closed its side.
 */
typedef long (*core_iscsi_read_fn)(void *user, const struct sk_buff *skb, unsigned int offset,
				   size_t len);
long core_iscsi_c_sock_read(struct socket *sock, core_iscsi_read_fn actor, void *user);

/* The same from the data-ready callback, where the socket is already locked. */
long core_iscsi_c_sk_read_locked(struct sock *sk, core_iscsi_read_fn actor, void *user);

/* Bytes waiting in `sk`'s receive queue (tcp_inq); the socket is locked by the caller. */
int core_iscsi_c_sk_unread(struct sock *sk);

/*
 * skb_copy_bits() into `len` bytes at `page_off` of `page` and the physically contiguous
 * pages after it (a scatterlist entry), each mapped with kmap_local_page for its part.
 */
int core_iscsi_c_skb_copy_to_pages(const struct sk_buff *skb, unsigned int offset,
				   struct page *page, size_t page_off, size_t len);

/* --- crypto (kernel/sys/crypto.rs) ---------------------------------------------------------- */

/* crypto_alloc_shash(name, 0, 0): 0 and *tfm set, or a negative errno. */
int core_iscsi_c_shash_alloc(const char *name, struct crypto_shash **tfm);
void core_iscsi_c_shash_free(struct crypto_shash *tfm);
unsigned int core_iscsi_c_shash_digestsize(struct crypto_shash *tfm);

/*
 * Hashes the concatenation of `nparts` buffers into `out` (which must hold the digest size),
 * with a descriptor on the stack: init, one update per part, final.
 */
int core_iscsi_c_shash_digest(struct crypto_shash *tfm, const struct kvec *parts,
			      unsigned int nparts, u8 *out);

/* --- self-test hook (kernel/selftest.rs) ---------------------------------------------------- */

/* core_iscsi/selftest (write-only): runs a self-test; the write returns 0 or its errno. */
ssize_t core_iscsi_root_selftest_store(struct config_item *item, const char *page, size_t count);

/* --- SCSI host (kernel/sys/scsi.rs) ------------------------------------------------------- */

/* What scsi_host_alloc() needs besides the template; copied into the Scsi_Host before it is added. */
struct core_iscsi_host_params {
	unsigned int can_queue;
	unsigned int cmd_per_lun;
	unsigned int max_sectors;
	unsigned int sg_tablesize;
	unsigned long long max_lun;
	unsigned int nr_hw_queues;
	/* One tag space shared by every hardware queue (shost->host_tagset). */
	bool host_tagset;
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

/* scsi_host_get(): a reference that keeps the host's memory (not its registration) alive. */
struct Scsi_Host *core_iscsi_c_host_get(struct Scsi_Host *shost);

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
/*
 * cmd->result = host_byte << 16 | status; then scsi_done(cmd), or scsi_done_direct(cmd) if
 * here (the block layer's completion runs in this call) unless the queue's rq_affinity=2
 * wants it on another CPU.
 */
void core_iscsi_c_cmd_done(struct scsi_cmnd *cmd, unsigned int host_byte, unsigned int status,
			   bool here);
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
