// SPDX-License-Identifier: GPL-2.0

//! Logging in on a kernel socket: proto's login state machine driven over a blocking
//! [`TcpStream`], every step bounded by one absolute deadline per attempt (a target that
//! drip-feeds its answers cannot stretch it) and cancellable within `RECV_SLICE_MS`; and the
//! reasons a start can fail.

use crate::proto::chap::ChapDigest;
use crate::proto::login::{
    InitiatorError, Login, LoginComplete, LoginConfig, LoginError, LoginEvent,
};
use crate::proto::pdu::{self, Digests, BHS_LEN};
use crate::sys::errno;
use crate::sys::mem::Deadline;
use crate::sys::socket::{SendWait, TcpStream};
use core::fmt;
use kernel::error::code;
use kernel::prelude::*;

/// Why a session could not start or came to an end: what `state` says after `failed: `.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Failure {
    /// Nothing listens at the portal.
    ConnectionRefused,
    /// No route to the portal.
    Unreachable,
    /// Connect or login took longer than login_timeout.
    Timeout,
    /// The target closed or reset the connection.
    ConnectionReset,
    /// Another network error (errno).
    Network(i32),
    /// CHAP failed, one way or mutual, or the target would not authenticate.
    AuthenticationFailed,
    /// The target knows us but does not let us in.
    AuthorizationFailed,
    /// No such target name at the portal.
    TargetNotFound,
    /// The target moved elsewhere (login redirect).
    Redirected,
    /// The target is out of resources or unavailable.
    TargetUnavailable,
    /// The target broke the protocol.
    Protocol,
    /// The session was lost and did not come back within replacement_timeout.
    ReplacementTimeout,
    /// The target did not answer a target reset, or refused it: the error handler dropped
    /// the connection to reinstate the session.
    ResetFailed,
    /// Out of memory.
    NoMemory,
    /// `stop` was written, or the writer of `start` was killed, while logging in.
    Interrupted,
    /// The target kept its command window (MaxCmdSN) closed with commands waiting, past the
    /// bound a stalled send has (see `Session::attach`).
    WindowClosed,
}

impl Failure {
    /// The errno a writer of `control` gets.
    pub(crate) fn errno(self) -> Error {
        match self {
            Failure::ConnectionRefused => errno::connrefused(),
            Failure::Unreachable => errno::hostunreach(),
            Failure::Timeout | Failure::ReplacementTimeout | Failure::ResetFailed => {
                errno::timedout()
            }
            Failure::ConnectionReset => errno::connreset(),
            Failure::Network(e) => Error::from_errno(e),
            Failure::AuthenticationFailed | Failure::AuthorizationFailed => code::EACCES,
            Failure::TargetNotFound => code::ENOENT,
            Failure::Redirected => errno::remchg(),
            Failure::TargetUnavailable => code::EAGAIN,
            Failure::Protocol => errno::proto(),
            Failure::NoMemory => code::ENOMEM,
            Failure::Interrupted => code::EINTR,
            Failure::WindowClosed => errno::timedout(),
        }
    }

    /// The failure a socket error stands for.
    pub(crate) fn from_socket(e: Error) -> Self {
        match e {
            e if e == errno::connrefused() => Failure::ConnectionRefused,
            e if e == errno::hostunreach() || e == errno::netunreach() => Failure::Unreachable,
            e if e == errno::timedout() || e == code::EAGAIN || e == errno::inprogress() => {
                Failure::Timeout
            }
            e if e == errno::connreset() || e == code::EPIPE => Failure::ConnectionReset,
            e if e == code::ENOMEM => Failure::NoMemory,
            e if e == code::EINTR => Failure::Interrupted,
            e => Failure::Network(e.to_errno()),
        }
    }

    /// The failure a login error stands for.
    pub(crate) fn from_login(e: LoginError) -> Self {
        match e {
            LoginError::Initiator(InitiatorError::AuthenticationFailure)
            | LoginError::Chap(_)
            | LoginError::MutualAuthSkipped
            | LoginError::AuthMethodRejected => Failure::AuthenticationFailed,
            LoginError::Initiator(InitiatorError::AuthorizationFailure) => {
                Failure::AuthorizationFailed
            }
            LoginError::Initiator(InitiatorError::NotFound | InitiatorError::TargetRemoved) => {
                Failure::TargetNotFound
            }
            LoginError::Redirect { .. } => Failure::Redirected,
            LoginError::Target(_) => Failure::TargetUnavailable,
            _ => Failure::Protocol,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::ConnectionRefused => f.write_str("connection refused"),
            Failure::Unreachable => f.write_str("portal unreachable"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::ConnectionReset => f.write_str("connection reset by target"),
            Failure::Network(e) => write!(f, "network error {}", e),
            Failure::AuthenticationFailed => f.write_str("authentication failed"),
            Failure::AuthorizationFailed => f.write_str("authorization failed"),
            Failure::TargetNotFound => f.write_str("target not found"),
            Failure::Redirected => f.write_str("target redirected the login"),
            Failure::TargetUnavailable => f.write_str("target unavailable"),
            Failure::Protocol => f.write_str("protocol error"),
            Failure::ReplacementTimeout => f.write_str("session lost (replacement timeout)"),
            Failure::ResetFailed => f.write_str("target reset not answered or refused"),
            Failure::NoMemory => f.write_str("out of memory"),
            Failure::Interrupted => f.write_str("interrupted"),
            Failure::WindowClosed => f.write_str("target kept the command window closed"),
        }
    }
}

/// Largest login PDU we accept: login text is small (RFC 7143 suggests 8 KiB per PDU).
const LOGIN_MAX_DSL: u32 = 8192;

/// Buffers of one login, allocated once per attempt.
pub(crate) struct LoginBuffers {
    tx: KVec<u8>,
    rx: KVec<u8>,
    text: KVec<u8>,
}

impl LoginBuffers {
    /// Allocates the buffers.
    pub(crate) fn new() -> Result<Self> {
        let zeroed = |n: usize| -> Result<KVec<u8>> { Ok(KVec::from_elem(0, n, GFP_KERNEL)?) };
        // A PDU (header, data, padding) either way; the text buffer holds a whole response
        // split over several PDUs.
        let pdu = BHS_LEN + LOGIN_MAX_DSL as usize + 4;
        Ok(Self {
            tx: zeroed(pdu)?,
            rx: zeroed(pdu)?,
            text: zeroed(4 * LOGIN_MAX_DSL as usize)?,
        })
    }
}

/// Logs in over `stream` (connected): sends each Login Request proto builds and feeds it each
/// Login Response, until the full feature phase or a failure. The whole exchange ends by
/// `deadline` (`Failure::Timeout`), and within `RECV_SLICE_MS` of `cancelled` saying so
/// (`Failure::Interrupted`).
///
/// Not inlined (the kernel's `noinline_for_stack`): its state machine, about 1 KiB, would sit
/// in the caller's frame, under `TcpStream::connect` too, which runs before it.
#[inline(never)]
pub(crate) fn login(
    stream: &TcpStream,
    cfg: &LoginConfig<'_>,
    chap: &dyn ChapDigest,
    bufs: &mut LoginBuffers,
    deadline: Deadline,
    cancelled: &dyn Fn() -> bool,
) -> core::result::Result<LoginComplete, Failure> {
    let mut machine = Login::new(cfg, chap, &mut bufs.text);
    loop {
        while let Some(n) = machine
            .poll_transmit(&mut bufs.tx)
            .map_err(Failure::from_login)?
        {
            let pdu = bufs.tx.get(..n).ok_or(Failure::Protocol)?;
            stream
                .send_all(&[pdu], false, SendWait::Until(Some(deadline)))
                .map_err(Failure::from_socket)?;
        }
        let mut bhs = [0u8; BHS_LEN];
        stream
            .recv_exact_until(&mut bhs, Some(deadline), cancelled)
            .map_err(Failure::from_socket)?;
        // No digests during login (RFC 7143 section 6.2: they start after it).
        let layout = pdu::rx_layout(
            &bhs,
            Digests {
                header: false,
                data: false,
            },
            LOGIN_MAX_DSL,
        )
        .map_err(|_| Failure::Protocol)?;
        let rest = bufs
            .rx
            .get_mut(..layout.remaining())
            .ok_or(Failure::Protocol)?;
        stream
            .recv_exact_until(rest, Some(deadline), cancelled)
            .map_err(Failure::from_socket)?;
        let data_start = layout.ahs_len;
        let data_end = data_start
            .checked_add(layout.data_len)
            .ok_or(Failure::Protocol)?;
        let data = bufs.rx.get(data_start..data_end).ok_or(Failure::Protocol)?;
        match machine
            .handle_pdu(&bhs, data)
            .map_err(Failure::from_login)?
        {
            LoginEvent::Continue => continue,
            LoginEvent::Complete(done) => return Ok(done),
        }
    }
}
