// SPDX-License-Identifier: GPL-2.0

//! Errnos the 6.12 kernel crate's `error::code` lacks (include/uapi/asm-generic/errno.h):
//! the network ones a connection reports and the few the control interface returns.

use super::bindings;
use kernel::error::Error;
use kernel::ffi::c_int;

fn err(e: u32) -> Error {
    // errno constants are small positive numbers.
    Error::from_errno(-(e as c_int))
}

/// ECONNRESET: the peer closed or reset the connection.
pub(crate) fn connreset() -> Error {
    err(bindings::ECONNRESET)
}

/// ETIMEDOUT: not done in time.
pub(crate) fn timedout() -> Error {
    err(bindings::ETIMEDOUT)
}

/// ECONNREFUSED: nothing listens at the address.
pub(crate) fn connrefused() -> Error {
    err(bindings::ECONNREFUSED)
}

/// EHOSTUNREACH: no route to the host.
pub(crate) fn hostunreach() -> Error {
    err(bindings::EHOSTUNREACH)
}

/// ENETUNREACH: no route to the network.
pub(crate) fn netunreach() -> Error {
    err(bindings::ENETUNREACH)
}

/// EINPROGRESS: a non-blocking connect still under way.
pub(crate) fn inprogress() -> Error {
    err(bindings::EINPROGRESS)
}

/// EREMCHG: the target moved (login redirect).
pub(crate) fn remchg() -> Error {
    err(bindings::EREMCHG)
}

/// EPROTO: the peer broke the protocol.
pub(crate) fn proto() -> Error {
    err(bindings::EPROTO)
}

/// ENAMETOOLONG: a name or value longer than allowed.
pub(crate) fn nametoolong() -> Error {
    err(bindings::ENAMETOOLONG)
}
