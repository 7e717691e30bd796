// SPDX-License-Identifier: GPL-2.0

//! A kernel TCP socket: include/linux/net.h (sock_create_kern, kernel_connect, sock_sendmsg,
//! sock_recvmsg, kernel_sock_shutdown, sock_release), include/net/sock.h (timeouts, the
//! data_ready / state_change / write_space callbacks, through kernel/tables.c) and
//! include/linux/tcp.h (TCP_NODELAY).
//!
//! One [`TcpStream`] is one iSCSI connection. It sends byte buffers (a PDU's header, digests,
//! immediate data) and page ranges (Data-Out straight from a command's scatterlist, spliced
//! into the skbs without a copy). The login phase receives with blocking `recv`/`recv_exact`;
//! the full feature phase reads the receive queue in place ([`TcpStream::read`], tcp_read_sock)
//! and copies each piece where it belongs: headers into a buffer, Data-In straight into a
//! command's scatterlist. Socket callbacks report readiness to a
//! [`SocketEvents`] implementation, which runs where the network stack delivers (usually
//! softirq) or in the socket owner's `release_sock`, and must not sleep.

use super::bindings;
pub(crate) use super::page::PageRange;
use core::ffi::c_void;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use kernel::error::{code::*, Error, Result};
use kernel::ffi::{c_int, c_long, c_uint};
use kernel::sync::Arc;

/// The iSCSI well-known port (RFC 7143 section 13.13), used when an address has none.
pub(crate) const DEFAULT_PORT: u16 = 3260;

/// IPPROTO_TCP (include/uapi/linux/in.h): an anonymous enum bindgen does not name.
const IPPROTO_TCP: c_int = 6;

/// Buffers handed to one `sock_sendmsg` / `sock_recvmsg`: a PDU is at most six pieces (BHS,
/// AHS, header digest, data, pad, data digest); longer lists go out in several calls, with
/// MSG_MORE between them so TCP still builds full segments.
const MAX_VECS: usize = 16;

pub(crate) use super::errno;
use super::mem::Deadline;
use errno::{connreset, timedout};

/// The longest a receive toward a deadline waits before it looks again at whether it was
/// cancelled: the bound on how long `stop` waits for a login in progress to notice it.
pub(crate) const RECV_SLICE_MS: u32 = 200;

/// How long a send may wait for room in the socket's send buffer.
#[derive(Clone, Copy)]
pub(crate) enum SendWait {
    /// Not at all (MSG_DONTWAIT): what fits goes, and the caller learns how much. For a sender
    /// that must never wait for a peer (queuecommand).
    No,
    /// Until the deadline, or without one up to the socket's send timeout at each call.
    Until(Option<Deadline>),
}

/// A target portal: an IPv4 or IPv6 address and a TCP port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SocketAddr {
    /// IPv4 address (network order bytes) and port.
    V4 {
        /// The address, most significant byte first.
        addr: [u8; 4],
        /// The TCP port.
        port: u16,
    },
    /// IPv6 address (network order bytes), port and scope (interface index, 0 for none).
    V6 {
        /// The address, most significant byte first.
        addr: [u8; 16],
        /// The TCP port.
        port: u16,
        /// Interface index for link-local addresses (`%N`), 0 for none.
        scope_id: u32,
    },
}

impl SocketAddr {
    /// Parses `1.2.3.4`, `1.2.3.4:3260`, `[::1]`, `[::1]:3260`, `[fe80::1%2]:3260` and a bare
    /// IPv6 address `::1` (no port); the port defaults to 3260. Surrounding ASCII whitespace
    /// (a configfs write's newline) is ignored. A scope is an interface index; interface names
    /// are not resolved. Anything else is `EINVAL`.
    pub(crate) fn parse(s: &[u8]) -> Result<Self> {
        let s = s.trim_ascii();
        if let Some(rest) = s.strip_prefix(b"[") {
            let close = rest.iter().position(|&c| c == b']').ok_or(EINVAL)?;
            let inside = rest.get(..close).ok_or(EINVAL)?;
            let after = rest.get(close + 1..).ok_or(EINVAL)?;
            let port = match after {
                [] => DEFAULT_PORT,
                [b':', p @ ..] => parse_port(p)?,
                _ => return Err(EINVAL),
            };
            let (addr, scope_id) = parse_v6_scoped(inside)?;
            return Ok(SocketAddr::V6 {
                addr,
                port,
                scope_id,
            });
        }
        let colons = s.iter().filter(|&&c| c == b':').count();
        if colons > 1 {
            // Without brackets a colon cannot separate a port from an IPv6 address.
            let (addr, scope_id) = parse_v6_scoped(s)?;
            return Ok(SocketAddr::V6 {
                addr,
                port: DEFAULT_PORT,
                scope_id,
            });
        }
        let (host, port) = match s.iter().position(|&c| c == b':') {
            Some(i) => (
                s.get(..i).ok_or(EINVAL)?,
                parse_port(s.get(i + 1..).ok_or(EINVAL)?)?,
            ),
            None => (s, DEFAULT_PORT),
        };
        Ok(SocketAddr::V4 {
            addr: parse_v4(host)?,
            port,
        })
    }

    /// The TCP port.
    pub(crate) fn port(&self) -> u16 {
        match *self {
            SocketAddr::V4 { port, .. } | SocketAddr::V6 { port, .. } => port,
        }
    }
}

/// A decimal number of at most `max_digits` digits, no sign, no empty string.
fn parse_decimal(s: &[u8], max_digits: usize) -> Result<u32> {
    if s.is_empty() || s.len() > max_digits {
        return Err(EINVAL);
    }
    let mut v: u32 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return Err(EINVAL);
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u32::from(c - b'0')))
            .ok_or(EINVAL)?;
    }
    Ok(v)
}

/// A TCP port, 1..=65535.
fn parse_port(s: &[u8]) -> Result<u16> {
    match u16::try_from(parse_decimal(s, 5)?) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(EINVAL),
    }
}

/// Dotted-quad IPv4, four decimal octets.
fn parse_v4(s: &[u8]) -> Result<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut n = 0usize;
    for part in s.split(|&c| c == b'.') {
        let slot = out.get_mut(n).ok_or(EINVAL)?;
        *slot = u8::try_from(parse_decimal(part, 3)?).map_err(|_| EINVAL)?;
        n += 1;
    }
    if n != 4 {
        return Err(EINVAL);
    }
    Ok(out)
}

/// IPv6 with an optional `%scope` (numeric interface index).
fn parse_v6_scoped(s: &[u8]) -> Result<([u8; 16], u32)> {
    match s.iter().position(|&c| c == b'%') {
        Some(i) => Ok((
            parse_v6(s.get(..i).ok_or(EINVAL)?)?,
            parse_decimal(s.get(i + 1..).ok_or(EINVAL)?, 10)?,
        )),
        None => Ok((parse_v6(s)?, 0)),
    }
}

/// The groups of one side of `::` into `out`; returns how many. A dotted IPv4 address is
/// allowed as the last piece when `v4_tail` (it is two groups).
fn parse_v6_groups(s: &[u8], out: &mut [u16; 8], v4_tail: bool) -> Result<usize> {
    if s.is_empty() {
        return Ok(0);
    }
    let mut n = 0usize;
    let pieces = s.split(|&c| c == b':').count();
    for (i, piece) in s.split(|&c| c == b':').enumerate() {
        if v4_tail && i + 1 == pieces && piece.contains(&b'.') {
            let v4 = parse_v4(piece)?;
            *out.get_mut(n).ok_or(EINVAL)? = u16::from_be_bytes([v4[0], v4[1]]);
            *out.get_mut(n + 1).ok_or(EINVAL)? = u16::from_be_bytes([v4[2], v4[3]]);
            n += 2;
            continue;
        }
        if piece.is_empty() || piece.len() > 4 {
            return Err(EINVAL);
        }
        let mut g: u16 = 0;
        for &c in piece {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(EINVAL),
            };
            // At most four hex digits: never overflows.
            g = (g << 4) | u16::from(d);
        }
        *out.get_mut(n).ok_or(EINVAL)? = g;
        n += 1;
    }
    Ok(n)
}

/// An IPv6 address in RFC 4291 section 2.2 text form.
fn parse_v6(s: &[u8]) -> Result<[u8; 16]> {
    let mut groups = [0u16; 8];
    let double = s.windows(2).position(|w| w == b"::");
    match double {
        None => {
            if parse_v6_groups(s, &mut groups, true)? != 8 {
                return Err(EINVAL);
            }
        }
        Some(i) => {
            let head = s.get(..i).ok_or(EINVAL)?;
            let tail = s.get(i + 2..).ok_or(EINVAL)?;
            let mut h = [0u16; 8];
            let mut t = [0u16; 8];
            let nh = parse_v6_groups(head, &mut h, false)?;
            let nt = parse_v6_groups(tail, &mut t, true)?;
            // "::" stands for at least one zero group.
            if nh + nt > 7 {
                return Err(EINVAL);
            }
            for (dst, src) in groups.iter_mut().zip(h.iter().take(nh)) {
                *dst = *src;
            }
            for (dst, src) in groups.iter_mut().skip(8 - nt).zip(t.iter().take(nt)) {
                *dst = *src;
            }
        }
    }
    let mut out = [0u8; 16];
    for (i, g) in groups.iter().enumerate() {
        let [hi, lo] = g.to_be_bytes();
        // i < 8: both indices are within the 16 bytes.
        if let Some(b) = out.get_mut(2 * i) {
            *b = hi;
        }
        if let Some(b) = out.get_mut(2 * i + 1) {
            *b = lo;
        }
    }
    Ok(out)
}

impl fmt::Display for SocketAddr {
    /// `1.2.3.4:3260` or `[fe80::1%2]:3260` (RFC 5952: lowercase, longest zero run as `::`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SocketAddr::V4 { addr, port } => {
                write!(
                    f,
                    "{}.{}.{}.{}:{}",
                    addr[0], addr[1], addr[2], addr[3], port
                )
            }
            SocketAddr::V6 {
                addr,
                port,
                scope_id,
            } => {
                let mut g = [0u16; 8];
                // (Index arithmetic rather than chunks_exact: i < 8.)
                for (i, dst) in g.iter_mut().enumerate() {
                    let hi = addr.get(2 * i).copied().unwrap_or(0);
                    let lo = addr.get(2 * i + 1).copied().unwrap_or(0);
                    *dst = u16::from_be_bytes([hi, lo]);
                }
                // The longest run of two or more zero groups (the first of equal runs).
                let (mut best, mut best_len, mut run, mut run_len) = (0usize, 0usize, 0usize, 0);
                for (i, &v) in g.iter().enumerate() {
                    if v == 0 {
                        if run_len == 0 {
                            run = i;
                        }
                        run_len += 1;
                        if run_len > best_len {
                            best = run;
                            best_len = run_len;
                        }
                    } else {
                        run_len = 0;
                    }
                }
                f.write_str("[")?;
                let mut i = 0;
                while i < 8 {
                    if best_len >= 2 && i == best {
                        f.write_str("::")?;
                        i += best_len;
                        continue;
                    }
                    if i > 0 && !(best_len >= 2 && i == best + best_len) {
                        f.write_str(":")?;
                    }
                    write!(f, "{:x}", g.get(i).copied().unwrap_or(0))?;
                    i += 1;
                }
                if scope_id != 0 {
                    write!(f, "%{}", scope_id)?;
                }
                write!(f, "]:{}", port)
            }
        }
    }
}

/// What a socket's callbacks report. The methods run in softirq (or process) context with
/// `sk_callback_lock` held for read: they must not sleep and must not call back into the
/// socket, except to read what `data_ready` is handed.
pub(crate) trait SocketEvents: Send + Sync + 'static {
    /// Data arrived (or the peer closed). `queue` reads the socket's receive queue right here,
    /// as iscsi_tcp does in its data-ready callback; leaving it alone leaves the data queued.
    fn data_ready(&self, queue: &mut ReadyQueue<'_>);
    /// The TCP state changed; `closed` once it has left ESTABLISHED (peer FIN, reset, our
    /// shutdown).
    fn state_change(&self, closed: bool);
    /// A send found the buffer full (MSG_DONTWAIT's EAGAIN sets SOCK_NOSPACE), and enough of
    /// it is free again for a sender to make progress (`sk_stream_is_writeable`).
    fn write_space(&self) {}
}

/// A connected kernel TCP socket in the initial network namespace; released on drop.
pub(crate) struct TcpStream {
    sock: NonNull<bindings::socket>,
}

// SAFETY: a kernel socket may be used from any thread; the socket layer serialises
// concurrent calls with its own socket lock (lock_sock), and `TcpStream` only ever hands
// `sock` to those calls.
unsafe impl Send for TcpStream {}
// SAFETY: as above: every method takes `&self` and goes through the locking socket calls.
unsafe impl Sync for TcpStream {}

/// A socket call's `int` result: a byte count or a negative errno.
fn to_len(ret: c_int) -> Result<usize> {
    if ret < 0 {
        Err(Error::from_errno(ret))
    } else {
        // Non-negative c_int always fits in usize.
        Ok(ret as usize)
    }
}

fn msg_flags(flags: u32) -> c_int {
    // The MSG_* flags used here are all below bit 31.
    flags as c_int
}

impl TcpStream {
    /// Connects (sock_create_kern in init_net, kernel_connect) by `deadline` (`ETIMEDOUT`),
    /// looking at `cancelled` at least every [`RECV_SLICE_MS`] while the handshake is under
    /// way (`EINTR`, as when a signal interrupts it); `ECONNREFUSED`, `EHOSTUNREACH`,
    /// `ENETUNREACH` ... surface as the kernel `Error`. The socket is prepared for a
    /// block-device data path (atomic allocations, as iscsi_tcp and nvme-tcp do).
    /// With `ifindex` non-zero the socket is bound to that network interface first
    /// (SO_BINDTOIFINDEX): its packets leave through it whatever the routes say.
    pub(crate) fn connect(
        addr: &SocketAddr,
        ifindex: u32,
        deadline: Deadline,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Self> {
        let family = match addr {
            SocketAddr::V4 { .. } => bindings::AF_INET,
            SocketAddr::V6 { .. } => bindings::AF_INET6,
        };
        let mut sock: *mut bindings::socket = core::ptr::null_mut();
        // SAFETY: `init_net` lives for the kernel's lifetime; `sock` is a valid out-pointer.
        let ret = unsafe {
            bindings::sock_create_kern(
                bindings::core_iscsi_c_init_net(),
                // AF_INET(6) and SOCK_STREAM are small constants.
                family as c_int,
                bindings::sock_type_SOCK_STREAM as c_int,
                IPPROTO_TCP,
                &mut sock,
            )
        };
        kernel::error::to_result(ret)?;
        let stream = TcpStream {
            sock: NonNull::new(sock).ok_or(ENOMEM)?,
        };
        // SAFETY: `stream.sock` is a live socket that nothing else uses yet.
        unsafe { bindings::core_iscsi_c_sock_prepare(stream.raw()) };
        if ifindex != 0 {
            let index = c_int::try_from(ifindex).map_err(|_| EINVAL)?;
            // SAFETY: `stream.sock` is a live socket that nothing else uses yet; the helper
            // takes its lock.
            let ret = unsafe { bindings::core_iscsi_c_sock_bind_to_index(stream.raw(), index) };
            kernel::error::to_result(ret)?;
        }

        // inet_stream_connect waits for the handshake for sk_sndtimeo, then gives up with
        // EINPROGRESS; called again while the handshake is under way it waits again (EALREADY
        // until it is done), so the wait goes in slices.
        loop {
            if cancelled() {
                return Err(EINTR);
            }
            let left = deadline.left_ms().ok_or_else(timedout)?;
            // SAFETY: `stream.sock` is a live socket that only this thread uses.
            unsafe {
                bindings::core_iscsi_c_sock_set_sndtimeo(stream.raw(), left.min(RECV_SLICE_MS))
            };
            match stream.connect_once(addr) {
                0 => break,
                e if e == -(bindings::EINPROGRESS as c_int) || e == -(bindings::EALREADY as c_int) => {}
                e if e == EINTR.to_errno() || e == ERESTARTSYS.to_errno() => return Err(EINTR),
                e => return Err(Error::from_errno(e)),
            }
        }
        stream.set_timeouts(0, 0);
        Ok(stream)
    }

    /// One `kernel_connect` to `addr`: 0 or a negative errno.
    fn connect_once(&self, addr: &SocketAddr) -> c_int {
        match *addr {
            SocketAddr::V4 { addr, port } => {
                let mut sa = bindings::sockaddr_in::default();
                sa.sin_family = bindings::AF_INET as _;
                sa.sin_port = port.to_be();
                sa.sin_addr.s_addr = u32::from_ne_bytes(addr);
                // SAFETY: `sa` is a valid sockaddr_in of the length given, read during the call.
                unsafe {
                    bindings::kernel_connect(
                        self.raw(),
                        core::ptr::addr_of_mut!(sa).cast(),
                        core::mem::size_of::<bindings::sockaddr_in>() as c_int,
                        0,
                    )
                }
            }
            SocketAddr::V6 {
                addr,
                port,
                scope_id,
            } => {
                let mut sa = bindings::sockaddr_in6::default();
                sa.sin6_family = bindings::AF_INET6 as _;
                sa.sin6_port = port.to_be();
                sa.sin6_addr.in6_u.u6_addr8 = addr;
                sa.sin6_scope_id = scope_id;
                // SAFETY: `sa` is a valid sockaddr_in6 of the length given, read during the
                // call.
                unsafe {
                    bindings::kernel_connect(
                        self.raw(),
                        core::ptr::addr_of_mut!(sa).cast(),
                        core::mem::size_of::<bindings::sockaddr_in6>() as c_int,
                        0,
                    )
                }
            }
        }
    }

    fn raw(&self) -> *mut bindings::socket {
        self.sock.as_ptr()
    }

    /// Makes dropping the stream abortive: what is still queued to send is freed at once and
    /// the peer gets a reset, instead of the data waiting in an orphaned socket for a peer
    /// that may never read it.
    pub(crate) fn set_abortive_close(&self) {
        // SAFETY: `self.sock` is live; sock_no_linger takes the socket lock itself.
        unsafe { bindings::core_iscsi_c_sock_no_linger(self.raw()) }
    }

    /// Whether the peer has closed its side (its FIN or a reset came).
    pub(crate) fn peer_closed(&self) -> bool {
        // SAFETY: `self.sock` is a live socket; the helper only reads its state.
        unsafe { bindings::core_iscsi_c_sock_peer_closed(self.raw()) }
    }

    /// The local address and port the connection goes out from.
    pub(crate) fn local_addr(&self) -> Result<SocketAddr> {
        let mut addr = [0u8; 16];
        let mut port: u16 = 0;
        let mut scope: u32 = 0;
        // SAFETY: `self.sock` is a live socket; the outputs are writable (16 address bytes).
        let family = unsafe {
            bindings::core_iscsi_c_sock_local(self.raw(), addr.as_mut_ptr(), &mut port, &mut scope)
        };
        match family {
            f if f == bindings::AF_INET as c_int => Ok(SocketAddr::V4 {
                addr: [addr[0], addr[1], addr[2], addr[3]],
                port,
            }),
            f if f == bindings::AF_INET6 as c_int => Ok(SocketAddr::V6 {
                addr,
                port,
                scope_id: scope,
            }),
            f if f < 0 => Err(Error::from_errno(f)),
            _ => Err(EINVAL),
        }
    }

    /// Sends what earlier sends with `more` held back.
    pub(crate) fn push(&self) {
        // SAFETY: `self.sock` is a live TCP socket; the helper takes the socket lock.
        unsafe { bindings::core_iscsi_c_sock_push(self.raw()) };
    }

    /// Disables Nagle (TCP_NODELAY): a PDU goes out as soon as its last piece is sent without
    /// MSG_MORE.
    pub(crate) fn set_nodelay(&self) {
        // SAFETY: `self.sock` is a live TCP socket.
        unsafe { bindings::core_iscsi_c_sock_set_nodelay(self.raw()) };
    }

    /// Sets the receive and send timeouts (sk_rcvtimeo / sk_sndtimeo) in milliseconds; 0
    /// blocks forever. A blocking call that times out with nothing done fails with `EAGAIN`.
    pub(crate) fn set_timeouts(&self, recv_ms: u32, send_ms: u32) {
        // SAFETY: `self.sock` is a live socket; the helper takes the socket lock.
        unsafe { bindings::core_iscsi_c_sock_set_timeouts(self.raw(), recv_ms, send_ms) };
    }

    /// Sends what `msg`'s iterator holds (`len` bytes), calling sock_sendmsg until all is out
    /// or, with [`SendWait::No`], until the socket has no room for more; how much was sent.
    /// With a deadline, each call may wait only for what is left of it (a peer that takes one
    /// segment every few seconds would otherwise restart the send timeout at every call).
    fn sendmsg_all(&self, msg: &mut bindings::msghdr, len: usize, wait: SendWait) -> Result<usize> {
        let mut left = len;
        while left > 0 {
            match wait {
                SendWait::No => msg.msg_flags |= bindings::MSG_DONTWAIT,
                SendWait::Until(Some(d)) => {
                    let left = d.left_ms().ok_or_else(timedout)?;
                    // SAFETY: `self.sock` is a live socket.
                    unsafe { bindings::core_iscsi_c_sock_set_sndtimeo(self.raw(), left) };
                }
                SendWait::Until(None) => {}
            }
            // SAFETY: `self.sock` is live; `msg` is a valid msghdr whose iterator describes
            // memory the caller keeps valid for the call. sock_sendmsg advances the iterator
            // by what it sent, so the next call continues where this one stopped.
            let sent = match to_len(unsafe { bindings::sock_sendmsg(self.raw(), msg) }) {
                // MSG_DONTWAIT: no room for another byte (tcp_sendmsg returns what it sent
                // before it ran out, then EAGAIN at the next call).
                Err(e) if e == EAGAIN && matches!(wait, SendWait::No) => break,
                r => r?,
            };
            if sent == 0 {
                // TCP does not return 0 for a non-empty send; never spin on it.
                return Err(EPIPE);
            }
            left = left.checked_sub(sent).ok_or(EIO)?;
        }
        len.checked_sub(left).ok_or(EIO)
    }

    /// Sends every byte of every buffer in order (gathered: one sock_sendmsg per 16 buffers
    /// where TCP takes it all at once), with MSG_MORE when `more`, waiting for room as `wait`
    /// says: how many bytes went, all of them unless [`SendWait::No`] found the send buffer
    /// full. Once a deadline has passed `ETIMEDOUT`; `EPIPE`, `ECONNRESET`, `EAGAIN` (the
    /// socket's send timeout) ... otherwise, after which an unknown prefix has been sent.
    pub(crate) fn send_all(&self, bufs: &[&[u8]], more: bool, wait: SendWait) -> Result<usize> {
        let mut sent = 0usize;
        let mut chunks = bufs.chunks(MAX_VECS).peekable();
        while let Some(chunk) = chunks.next() {
            let mut vecs = [bindings::kvec {
                iov_base: core::ptr::null_mut(),
                iov_len: 0,
            }; MAX_VECS];
            let mut total = 0usize;
            for (v, b) in vecs.iter_mut().zip(chunk.iter()) {
                // The socket only reads through this pointer (ITER_SOURCE).
                v.iov_base = b.as_ptr().cast_mut().cast::<c_void>();
                v.iov_len = b.len();
                total = total.checked_add(b.len()).ok_or(EINVAL)?;
            }
            if total == 0 {
                continue;
            }
            let mut flags = bindings::MSG_NOSIGNAL;
            if more || chunks.peek().is_some() {
                flags |= bindings::MSG_MORE;
            }
            let mut msg = bindings::msghdr {
                msg_flags: flags,
                ..Default::default()
            };
            // SAFETY: `vecs[..chunk.len()]` describe `total` readable bytes of `bufs`, which
            // outlive the sends below; `msg.msg_iter` is a valid iterator to initialise.
            unsafe {
                bindings::iov_iter_kvec(
                    &mut msg.msg_iter,
                    bindings::ITER_SOURCE,
                    vecs.as_ptr(),
                    chunk.len() as _,
                    total,
                )
            };
            let n = self.sendmsg_all(&mut msg, total, wait)?;
            sent = sent.checked_add(n).ok_or(EIO)?;
            if n < total {
                break;
            }
        }
        Ok(sent)
    }

    /// Sends page ranges in order without copying where the pages allow it (a bvec iterator
    /// with MSG_SPLICE_PAGES, as nvme-tcp and iscsi_tcp do in 6.12; slab or unreferenced pages
    /// are copied instead), with MSG_MORE when `more`. Waiting, the count and errors as
    /// [`TcpStream::send_all`].
    pub(crate) fn send_pages(
        &self,
        ranges: &[Option<PageRange<'_>>],
        more: bool,
        wait: SendWait,
    ) -> Result<usize> {
        let mut sent = 0usize;
        let mut chunks = ranges.chunks(MAX_VECS).peekable();
        while let Some(chunk) = chunks.next() {
            let mut vecs = [bindings::bio_vec {
                bv_page: core::ptr::null_mut(),
                bv_len: 0,
                bv_offset: 0,
            }; MAX_VECS];
            let mut total = 0usize;
            let mut count = 0usize;
            let mut splice = true;
            for (v, r) in vecs.iter_mut().zip(chunk.iter().flatten()) {
                *v = r.bio_vec();
                count += 1;
                total = total.checked_add(r.len()).ok_or(EINVAL)?;
                // SAFETY: `r.page` is a live page (PageRange's invariant).
                splice &= unsafe {
                    bindings::core_iscsi_c_sendpages_ok(r.page(), r.len(), r.offset() as usize)
                };
            }
            if total == 0 {
                continue;
            }
            let mut flags = bindings::MSG_NOSIGNAL;
            if splice {
                flags |= bindings::MSG_SPLICE_PAGES;
            }
            if more || chunks.peek().is_some() {
                flags |= bindings::MSG_MORE;
            }
            let mut msg = bindings::msghdr {
                msg_flags: flags,
                ..Default::default()
            };
            // SAFETY: `vecs[..count]` describe `total` bytes of live pages (PageRange's
            // invariant) that nothing writes during the send.
            unsafe {
                bindings::iov_iter_bvec(
                    &mut msg.msg_iter,
                    bindings::ITER_SOURCE,
                    vecs.as_ptr(),
                    count as _,
                    total,
                )
            };
            let n = self.sendmsg_all(&mut msg, total, wait)?;
            sent = sent.checked_add(n).ok_or(EIO)?;
            if n < total {
                break;
            }
        }
        Ok(sent)
    }

    /// One sock_recvmsg into what `msg`'s iterator describes.
    fn recvmsg(&self, msg: &mut bindings::msghdr, flags: u32) -> Result<usize> {
        // SAFETY: `self.sock` is live; the caller set up `msg.msg_iter` over memory it keeps
        // valid and exclusive for the call.
        to_len(unsafe { bindings::sock_recvmsg(self.raw(), msg, msg_flags(flags)) })
    }

    /// Receives into `buf`: `Ok(n)` with `n > 0` bytes, `Ok(0)` when the peer closed (or `buf`
    /// is empty), `Err(EAGAIN)` when `nonblocking` and nothing is there or when the receive
    /// timeout passed.
    pub(crate) fn recv(&self, buf: &mut [u8], nonblocking: bool) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let vec = bindings::kvec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut msg = bindings::msghdr::default();
        // SAFETY: `vec` describes `buf`, writable and exclusively ours for the call below.
        unsafe {
            bindings::iov_iter_kvec(&mut msg.msg_iter, bindings::ITER_DEST, &vec, 1, buf.len())
        };
        let flags = if nonblocking {
            bindings::MSG_DONTWAIT
        } else {
            0
        };
        let n = self.recvmsg(&mut msg, flags | bindings::MSG_NOSIGNAL)?;
        Ok(n.min(buf.len()))
    }

    /// Receives exactly `buf.len()` bytes (blocking, honouring the receive timeout):
    /// `Err(connreset())` if the peer closes first, `Err(EAGAIN)` on timeout; what was read
    /// before an error is lost (the connection is then unusable for framing anyway).
    pub(crate) fn recv_exact(&self, buf: &mut [u8]) -> Result {
        self.recv_exact_until(buf, None, &|| false)
    }

    /// As [`TcpStream::recv_exact`], but by an absolute `deadline` however the bytes trickle
    /// in (`ETIMEDOUT` once it has passed), waiting in slices of at most [`RECV_SLICE_MS`] and
    /// giving up with `EINTR` as soon as `cancelled` says so (or a signal interrupts a wait).
    pub(crate) fn recv_exact_until(
        &self,
        buf: &mut [u8],
        deadline: Option<Deadline>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result {
        let mut done = 0usize;
        while let Some(rest) = buf.get_mut(done..).filter(|r| !r.is_empty()) {
            if cancelled() {
                return Err(EINTR);
            }
            if let Some(d) = deadline {
                let left = d.left_ms().ok_or_else(timedout)?;
                // SAFETY: `self.sock` is a live socket.
                unsafe {
                    bindings::core_iscsi_c_sock_set_rcvtimeo(self.raw(), left.min(RECV_SLICE_MS))
                };
            }
            let vec = bindings::kvec {
                iov_base: rest.as_mut_ptr().cast(),
                iov_len: rest.len(),
            };
            let mut msg = bindings::msghdr::default();
            // SAFETY: `vec` describes `rest`, writable and exclusively ours for the call below.
            unsafe {
                bindings::iov_iter_kvec(&mut msg.msg_iter, bindings::ITER_DEST, &vec, 1, rest.len())
            };
            let n = match self.recvmsg(&mut msg, bindings::MSG_WAITALL | bindings::MSG_NOSIGNAL) {
                // One slice of a deadline passed with nothing: look at the clock and
                // `cancelled` again.
                Err(e) if e == EAGAIN && deadline.is_some() => continue,
                // A signal: the waiting writer is being interrupted.
                Err(e) if e == EINTR || e == ERESTARTSYS => {
                    return Err(EINTR)
                }
                other => other?,
            };
            if n == 0 {
                return Err(connreset());
            }
            done = done.checked_add(n).ok_or(EIO)?;
        }
        Ok(())
    }

    /// Reads what the socket has queued without blocking, handing it to `f` piece by piece
    /// (the unread bytes of one skb at a time) with the socket locked: `f` consumes what it
    /// wants with [`Incoming::read`] / [`Incoming::read_pages`] and returns whether to go on.
    /// Stopping, or leaving bytes unread, leaves the rest queued for the next call.
    ///
    /// `f` must not send on, shut down or drop this stream (the socket is locked): work for
    /// the sending side is queued instead. Returns the bytes consumed; once the queue is empty,
    /// the socket's error, or `ECONNRESET` when the peer closed.
    pub(crate) fn read<F: FnMut(&mut Incoming<'_>) -> bool>(&self, f: F) -> Result<usize> {
        walk(f, |actor, user| {
            // SAFETY: `self.sock` is live; `walk` keeps `user` valid for `actor` during the call.
            unsafe { bindings::core_iscsi_c_sock_read(self.raw(), actor, user) }
        })
    }

    /// Installs socket callbacks: on data ready, state change and write space the socket
    /// calls `events` (see [`SocketEvents`]) and then its original callback (which wakes
    /// blocked receivers and senders). The `Arc` is kept in sk_user_data until
    /// [`TcpStream::clear_callbacks`] or drop. `EBUSY` if callbacks are already installed.
    pub(crate) fn set_callbacks<T: SocketEvents>(&self, events: Arc<T>) -> Result {
        let user = Arc::into_raw(events).cast_mut().cast::<c_void>();
        // SAFETY: `self.sock` is live; `user` is an `Arc<T>` reference that the trampolines
        // borrow while installed and that `release_trampoline::<T>` gives back exactly once.
        let ret = unsafe {
            bindings::core_iscsi_c_sock_set_callbacks(
                self.raw(),
                user,
                Some(event_trampoline::<T>),
                Some(release_trampoline::<T>),
            )
        };
        if ret != 0 {
            // SAFETY: the helper failed, so it kept no copy of `user`, which came from
            // `Arc::into_raw` above.
            drop(unsafe { Arc::<T>::from_raw(user.cast::<T>()) });
            return Err(Error::from_errno(ret));
        }
        Ok(())
    }

    /// Restores the original callbacks under write_lock_bh(&sk->sk_callback_lock) and drops
    /// the `Arc`: when it returns, no callback runs or will run. Does nothing if none are set.
    pub(crate) fn clear_callbacks(&self) {
        // SAFETY: `self.sock` is live; the helper releases the user data it installed.
        unsafe { bindings::core_iscsi_c_sock_clear_callbacks(self.raw()) };
    }

    /// Shuts the connection down both ways (kernel_sock_shutdown(SHUT_RDWR)): wakes blocked
    /// senders and receivers (a receive then returns 0) and sends FIN.
    pub(crate) fn shutdown(&self) {
        // SAFETY: `self.sock` is live. The result (ENOTCONN if never connected) is of no use.
        let _ = unsafe {
            bindings::kernel_sock_shutdown(self.raw(), bindings::sock_shutdown_cmd_SHUT_RDWR)
        };
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        self.clear_callbacks();
        // SAFETY: `self.sock` came from sock_create_kern and is released exactly once, here;
        // callbacks are gone and nothing else holds the socket.
        unsafe { bindings::sock_release(self.raw()) };
    }
}

/// The C side's event callback for `T`.
///
/// # Safety
///
/// `user` must be the pointer `set_callbacks::<T>` installed, not yet released.
unsafe extern "C" fn event_trampoline<T: SocketEvents>(
    user: *mut c_void,
    event: c_int,
    closed: bool,
    sk: *mut bindings::sock,
) {
    // SAFETY: `user` is an `Arc<T>` reference held in sk_user_data; the C side calls this with
    // sk_callback_lock held for read, and the reference is released only after removal under
    // the write lock, so it is alive for the call.
    let events = unsafe { &*user.cast::<T>() };
    match event as u32 {
        bindings::CORE_ISCSI_SOCK_DATA_READY => {
            let Some(sk) = NonNull::new(sk) else { return };
            events.data_ready(&mut ReadyQueue {
                sk,
                _callback: PhantomData,
            })
        }
        bindings::CORE_ISCSI_SOCK_STATE_CHANGE => events.state_change(closed),
        bindings::CORE_ISCSI_SOCK_WRITE_SPACE => events.write_space(),
        _ => {}
    }
}

/// The C side's release callback for `T`: gives back the `Arc` reference.
///
/// # Safety
///
/// `user` must be the pointer `set_callbacks::<T>` installed, released this once.
unsafe extern "C" fn release_trampoline<T: SocketEvents>(user: *mut c_void) {
    // SAFETY: `user` came from `Arc::into_raw` in `set_callbacks::<T>`; the C side calls this
    // once, after the callbacks are removed.
    drop(unsafe { Arc::<T>::from_raw(user.cast::<T>()) });
}

/// Runs `f` over a receive queue: `call` hands the actor and its `user` pointer to one of the
/// C walkers, which calls the actor only during the call. Returns the walker's result: bytes
/// consumed, or an errno.
fn walk<F: FnMut(&mut Incoming<'_>) -> bool>(
    f: F,
    call: impl FnOnce(bindings::core_iscsi_read_fn, *mut c_void) -> c_long,
) -> Result<usize> {
    let mut state = ReadState { f, stopped: false };
    let ret = call(
        Some(read_trampoline::<F>),
        (&mut state as *mut ReadState<F>).cast(),
    );
    if ret < 0 {
        return Err(Error::from_errno(
            c_int::try_from(ret).unwrap_or(-(EIO.to_errno())),
        ));
    }
    usize::try_from(ret).map_err(|_| EIO)
}

/// The receive queue of a socket whose data-ready callback is running (the socket is locked
/// by the network stack for the callback), handed to [`SocketEvents::data_ready`].
pub(crate) struct ReadyQueue<'a> {
    sk: NonNull<bindings::sock>,
    _callback: PhantomData<&'a bindings::sock>,
}

impl ReadyQueue<'_> {
    /// Reads the queue like [`TcpStream::read`], without taking the socket lock (the callback's
    /// caller holds it), so from softirq context.
    pub(crate) fn read<F: FnMut(&mut Incoming<'_>) -> bool>(&mut self, f: F) -> Result<usize> {
        walk(f, |actor, user| {
            // SAFETY: `sk` is the socket whose data-ready callback is running, locked for the
            // callback's duration, which this borrow cannot outlive; `walk` keeps `user` valid.
            unsafe { bindings::core_iscsi_c_sk_read_locked(self.sk.as_ptr(), actor, user) }
        })
    }

    /// Bytes waiting to be read.
    pub(crate) fn unread(&self) -> usize {
        // SAFETY: `sk` is the socket whose data-ready callback is running, locked for the
        // callback's duration.
        let n = unsafe { bindings::core_iscsi_c_sk_unread(self.sk.as_ptr()) };
        usize::try_from(n).unwrap_or(0)
    }
}

/// The unread bytes of one skb in the socket's receive queue, lent to a [`TcpStream::read`]
/// callback: reading consumes them from the front.
pub(crate) struct Incoming<'a> {
    skb: NonNull<bindings::sk_buff>,
    offset: u32,
    left: usize,
    _skb: PhantomData<&'a bindings::sk_buff>,
}

impl Incoming<'_> {
    /// Whether every byte has been consumed.
    pub(crate) fn is_empty(&self) -> bool {
        self.left == 0
    }

    /// The bytes of this skb not yet consumed (not the whole receive queue's).
    pub(crate) fn len(&self) -> usize {
        self.left
    }

    /// Marks `n` bytes (at most what is left) consumed.
    fn advance(&mut self, n: usize) -> Result {
        self.offset = self
            .offset
            .checked_add(u32::try_from(n).map_err(|_| EINVAL)?)
            .ok_or(EINVAL)?;
        self.left = self.left.checked_sub(n).ok_or(EINVAL)?;
        Ok(())
    }

    /// Copies as much as fits into `out`; returns how much.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> Result<usize> {
        let n = out.len().min(self.left);
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: the skb is live and locked for the callback (`'a`); `offset .. offset + n`
        // lies within its unread bytes, and `out` is writable for `n` bytes.
        let ret = unsafe {
            bindings::skb_copy_bits(
                self.skb.as_ptr(),
                c_int::try_from(self.offset).map_err(|_| EINVAL)?,
                out.as_mut_ptr().cast(),
                c_int::try_from(n).map_err(|_| EINVAL)?,
            )
        };
        if ret != 0 {
            return Err(Error::from_errno(ret));
        }
        self.advance(n)?;
        Ok(n)
    }

    /// Copies into `ranges` in order, as much as there is; returns how much.
    pub(crate) fn read_pages(&mut self, ranges: &[Option<PageRange<'_>>]) -> Result<usize> {
        let mut done = 0usize;
        for r in ranges.iter().flatten() {
            let n = r.len().min(self.left);
            if n == 0 {
                break;
            }
            // SAFETY: the skb is live and locked for the callback and `offset .. offset + n`
            // lies within its unread bytes; the range's first `n` bytes are live pages left
            // to us for the receive (PageRange's invariant).
            let ret = unsafe {
                bindings::core_iscsi_c_skb_copy_to_pages(
                    self.skb.as_ptr(),
                    self.offset,
                    r.page(),
                    r.offset() as usize,
                    n,
                )
            };
            if ret != 0 {
                return Err(Error::from_errno(ret));
            }
            self.advance(n)?;
            done = done.checked_add(n).ok_or(EINVAL)?;
            if n < r.len() {
                break;
            }
        }
        Ok(done)
    }
}

/// What `walk` lends the C side: the callback, and whether it asked to stop.
struct ReadState<F> {
    f: F,
    stopped: bool,
}

/// The C side's read actor for `F`: hands one skb's unread bytes to the callback and reports
/// how many it consumed (0 stops the walk).
///
/// # Safety
///
/// `user` must be the `ReadState<F>` that `TcpStream::read::<F>` passed, and `skb` an skb of
/// that socket's receive queue with at least `len` bytes after `offset`, locked for the call.
unsafe extern "C" fn read_trampoline<F: FnMut(&mut Incoming<'_>) -> bool>(
    user: *mut c_void,
    skb: *const bindings::sk_buff,
    offset: c_uint,
    len: usize,
) -> c_long {
    // SAFETY: `user` is the exclusive `ReadState<F>` of the running `read` (see above).
    let state = unsafe { &mut *user.cast::<ReadState<F>>() };
    let Some(skb) = NonNull::new(skb.cast_mut()) else {
        return 0;
    };
    if state.stopped {
        return 0;
    }
    let mut incoming = Incoming {
        skb,
        offset,
        left: len,
        _skb: PhantomData,
    };
    if !(state.f)(&mut incoming) {
        state.stopped = true;
    }
    c_long::try_from(len.saturating_sub(incoming.left)).unwrap_or(0)
}
