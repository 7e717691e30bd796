// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers over the C interfaces that the 6.12 `kernel` crate does not cover.
//!
//! Every `unsafe` block of the module is in this directory, each with its `// SAFETY:`
//! argument; the code above it is safe Rust. Each file names the C header it wraps.

pub(crate) mod bh_lock;
pub(crate) mod bindings;
pub(crate) mod configfs;
pub(crate) mod crypto;
pub(crate) mod errno;
pub(crate) mod mem;
pub(crate) mod page;
pub(crate) mod scsi;
pub(crate) mod slot;
pub(crate) mod socket;
pub(crate) mod ticker;
pub(crate) mod try_mutex;
pub(crate) mod workqueue;
