// SPDX-License-Identifier: GPL-2.0
/*
 * Static tables of core_iscsi.ko (see tables.h). The functions named here without a body are
 * implemented in Rust (#[no_mangle] in kernel/sys/).
 */
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/tcp.h>
#include <net/net_namespace.h>
#include <net/sock.h>
#include <net/tcp_states.h>
#include <crypto/hash.h>
#include "tables.h"

/* --- configfs root: /sys/kernel/config/core_iscsi ------------------------------------------ */

ssize_t core_iscsi_root_version_show(struct config_item *item, char *page);

CONFIGFS_ATTR_RO(core_iscsi_root_, version);
CONFIGFS_ATTR_WO(core_iscsi_root_, selftest);

static struct configfs_attribute *core_iscsi_root_attrs[] = {
	&core_iscsi_root_attr_version,
	&core_iscsi_root_attr_selftest,
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

/* --- kernel TCP socket ---------------------------------------------------------------------- */

struct net *core_iscsi_c_init_net(void)
{
	return &init_net;
}

void core_iscsi_c_sock_prepare(struct socket *sock)
{
	struct sock *sk = sock->sk;

	sk->sk_allocation = GFP_ATOMIC;
	sk->sk_use_task_frag = false;
	sk_set_memalloc(sk);
}

static long core_iscsi_ms_to_timeo(unsigned int ms)
{
	return ms ? (long)msecs_to_jiffies(ms) : MAX_SCHEDULE_TIMEOUT;
}

void core_iscsi_c_sock_set_timeouts(struct socket *sock, unsigned int rcv_ms, unsigned int snd_ms)
{
	struct sock *sk = sock->sk;

	lock_sock(sk);
	WRITE_ONCE(sk->sk_rcvtimeo, core_iscsi_ms_to_timeo(rcv_ms));
	WRITE_ONCE(sk->sk_sndtimeo, core_iscsi_ms_to_timeo(snd_ms));
	release_sock(sk);
}

void core_iscsi_c_sock_set_nodelay(struct socket *sock)
{
	tcp_sock_set_nodelay(sock->sk);
}

bool core_iscsi_c_sendpages_ok(struct page *page, size_t len, size_t offset)
{
	return sendpages_ok(page, len, offset);
}

/* What sk_user_data points at while our callbacks are installed. */
struct core_iscsi_sock_cb {
	void (*old_data_ready)(struct sock *sk);
	void (*old_state_change)(struct sock *sk);
	void (*old_write_space)(struct sock *sk);
	void *user;
	core_iscsi_sock_event_fn event;
	core_iscsi_sock_release_fn release;
};

/*
 * The three callbacks follow iscsi_tcp: read sk_user_data under the read lock (clear_callbacks
 * takes the write lock, so the user data cannot go away under us), deliver the event, then chain
 * to the original callback outside the lock so that blocked readers and writers still wake up.
 * A callback that races with clear_callbacks finds no user data and does nothing.
 */
static void core_iscsi_sk_data_ready(struct sock *sk)
{
	struct core_iscsi_sock_cb *cb;
	void (*old)(struct sock *sk) = NULL;

	read_lock_bh(&sk->sk_callback_lock);
	cb = sk->sk_user_data;
	if (cb) {
		cb->event(cb->user, CORE_ISCSI_SOCK_DATA_READY, false);
		old = cb->old_data_ready;
	}
	read_unlock_bh(&sk->sk_callback_lock);
	if (old)
		old(sk);
}

static void core_iscsi_sk_state_change(struct sock *sk)
{
	struct core_iscsi_sock_cb *cb;
	void (*old)(struct sock *sk) = NULL;

	read_lock_bh(&sk->sk_callback_lock);
	cb = sk->sk_user_data;
	if (cb) {
		cb->event(cb->user, CORE_ISCSI_SOCK_STATE_CHANGE,
			  READ_ONCE(sk->sk_state) != TCP_ESTABLISHED);
		old = cb->old_state_change;
	}
	read_unlock_bh(&sk->sk_callback_lock);
	if (old)
		old(sk);
}

static void core_iscsi_sk_write_space(struct sock *sk)
{
	struct core_iscsi_sock_cb *cb;
	void (*old)(struct sock *sk) = NULL;

	read_lock_bh(&sk->sk_callback_lock);
	cb = sk->sk_user_data;
	if (cb) {
		cb->event(cb->user, CORE_ISCSI_SOCK_WRITE_SPACE, false);
		old = cb->old_write_space;
	}
	read_unlock_bh(&sk->sk_callback_lock);
	if (old)
		old(sk);
}

int core_iscsi_c_sock_set_callbacks(struct socket *sock, void *user,
				    core_iscsi_sock_event_fn event,
				    core_iscsi_sock_release_fn release)
{
	struct sock *sk = sock->sk;
	struct core_iscsi_sock_cb *cb;

	cb = kzalloc(sizeof(*cb), GFP_KERNEL);
	if (!cb)
		return -ENOMEM;
	cb->user = user;
	cb->event = event;
	cb->release = release;

	write_lock_bh(&sk->sk_callback_lock);
	if (sk->sk_user_data) {
		write_unlock_bh(&sk->sk_callback_lock);
		kfree(cb);
		return -EBUSY;
	}
	cb->old_data_ready = sk->sk_data_ready;
	cb->old_state_change = sk->sk_state_change;
	cb->old_write_space = sk->sk_write_space;
	sk->sk_user_data = cb;
	sk->sk_data_ready = core_iscsi_sk_data_ready;
	sk->sk_state_change = core_iscsi_sk_state_change;
	sk->sk_write_space = core_iscsi_sk_write_space;
	write_unlock_bh(&sk->sk_callback_lock);
	return 0;
}

bool core_iscsi_c_sock_clear_callbacks(struct socket *sock)
{
	struct sock *sk = sock->sk;
	struct core_iscsi_sock_cb *cb;

	write_lock_bh(&sk->sk_callback_lock);
	cb = sk->sk_user_data;
	if (cb && sk->sk_data_ready == core_iscsi_sk_data_ready) {
		sk->sk_data_ready = cb->old_data_ready;
		sk->sk_state_change = cb->old_state_change;
		sk->sk_write_space = cb->old_write_space;
		sk->sk_user_data = NULL;
	} else {
		cb = NULL;
	}
	write_unlock_bh(&sk->sk_callback_lock);
	if (!cb)
		return false;
	cb->release(cb->user);
	kfree(cb);
	return true;
}

/* --- crypto --------------------------------------------------------------------------------- */

int core_iscsi_c_shash_alloc(const char *name, struct crypto_shash **tfm)
{
	struct crypto_shash *t = crypto_alloc_shash(name, 0, 0);

	if (IS_ERR(t))
		return PTR_ERR(t);
	*tfm = t;
	return 0;
}

void core_iscsi_c_shash_free(struct crypto_shash *tfm)
{
	crypto_free_shash(tfm);
}

unsigned int core_iscsi_c_shash_digestsize(struct crypto_shash *tfm)
{
	return crypto_shash_digestsize(tfm);
}

int core_iscsi_c_shash_digest(struct crypto_shash *tfm, const struct kvec *parts,
			      unsigned int nparts, u8 *out)
{
	SHASH_DESC_ON_STACK(desc, tfm);
	unsigned int i;
	int err;

	desc->tfm = tfm;
	err = crypto_shash_init(desc);
	for (i = 0; !err && i < nparts; i++)
		err = crypto_shash_update(desc, parts[i].iov_base, parts[i].iov_len);
	if (!err)
		err = crypto_shash_final(desc, out);
	shash_desc_zero(desc);
	return err;
}
