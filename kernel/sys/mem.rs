// SPDX-License-Identifier: GPL-2.0

//! Memory that must not outlive its use: secrets zeroed when dropped (the same guarantee as
//! include/linux/string.h's memzero_explicit(), in Rust).

use core::sync::atomic::{compiler_fence, Ordering};
use kernel::error::Result;
use kernel::init::Init;

/// Overwrites `buf` with zeros in a way the compiler may not elide, even right before the
/// memory is freed.
pub(crate) fn zero_explicit(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        // SAFETY: `b` is a valid, exclusive reference to one byte.
        unsafe { core::ptr::write_volatile(b, 0) };
    }
    compiler_fence(Ordering::SeqCst);
}

/// An initialiser that copies `src` byte for byte straight into the memory being initialised.
/// A field written by `<-` in `init!` is built in place; one written with `:` is built on the
/// initialising function's stack first, which for the 2 KiB settings made 3 KiB frames.
/// (`Secret::clone_init` does the same for a secret, which is not `Copy`.)
pub(crate) fn copy_init<T: Copy>(src: &T) -> impl Init<T> + '_ {
    // SAFETY: a bitwise copy of a `Copy` value is a valid, independent value.
    unsafe { bitwise_init(src) }
}

/// An initialiser that copies `src` byte for byte into the memory being initialised.
///
/// # Safety
///
/// A bitwise copy of `src` must be a valid value independent of `src`: `T` owns nothing (no
/// pointer, no reference count) and its `Drop`, if any, relies neither on its address nor on
/// being the only copy.
unsafe fn bitwise_init<T>(src: &T) -> impl Init<T> + '_ {
    // SAFETY: by `Init::__init`'s contract `slot` is valid and aligned for writes of one `T`,
    // and uninitialised, so it cannot be the initialised `T` that `src`, a reference (valid and
    // aligned for reads), points to: the two do not overlap. The copy is a valid value (the
    // caller's promise), so the closure initialises all of `slot` and never fails.
    unsafe {
        kernel::init::init_from_closure(move |slot: *mut T| {
            core::ptr::copy_nonoverlapping(src, slot, 1);
            Ok(())
        })
    }
}

/// A secret of at most `N` bytes, stored inline: never printed (no Debug/Display), zeroed on
/// drop and when replaced. It is copied only in place (`clone_init`): a copy on the stack is
/// one nothing zeroes.
pub(crate) struct Secret<const N: usize> {
    len: usize,
    buf: [u8; N],
}

impl<const N: usize> Secret<N> {
    /// An empty secret.
    pub(crate) const fn new() -> Self {
        Self {
            len: 0,
            buf: [0; N],
        }
    }

    /// Replaces the secret; ENAMETOOLONG (and nothing changed) when `value` is over `N` bytes.
    pub(crate) fn set(&mut self, value: &[u8]) -> Result {
        if value.len() > N {
            return Err(super::errno::nametoolong());
        }
        zero_explicit(&mut self.buf);
        if let Some(dst) = self.buf.get_mut(..value.len()) {
            dst.copy_from_slice(value);
        }
        self.len = value.len();
        Ok(())
    }

    /// The secret's bytes, for the one place that needs them (the CHAP computation).
    pub(crate) fn expose(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// Whether no secret is set.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A second copy of this secret, written straight into its place (see `copy_init`).
    pub(crate) fn clone_init(&self) -> impl Init<Self> + '_ {
        // SAFETY: a `Secret` is a length and inline bytes and owns nothing; its `Drop` only
        // zeroes its own bytes and relies neither on its address nor on being the only copy.
        unsafe { bitwise_init(self) }
    }
}

impl<const N: usize> Drop for Secret<N> {
    fn drop(&mut self) {
        zero_explicit(&mut self.buf);
    }
}

/// Fills `buf` with random bytes from the kernel's CSPRNG (include/linux/random.h): ISIDs and
/// mutual CHAP challenges.
pub(crate) fn random_bytes(buf: &mut [u8]) {
    // SAFETY: `buf` is valid for writes of its length.
    unsafe { kernel::bindings::get_random_bytes(buf.as_mut_ptr().cast(), buf.len()) };
}

/// CPUs online now (`num_online_cpus`).
pub(crate) fn online_cpus() -> u32 {
    // SAFETY: reads a counter; no precondition.
    unsafe { super::bindings::core_iscsi_c_online_cpus() }
}

/// Milliseconds of the monotonic clock (the session's timers, a connection's idle time).
pub(crate) fn now_ms() -> u64 {
    // Monotonic and non-negative.
    kernel::time::Ktime::ktime_get().to_ms().max(0) as u64
}

/// Sleeps for `ms` milliseconds (include/linux/delay.h). Process context only.
pub(crate) fn sleep_ms(ms: u32) {
    // SAFETY: msleep may be called from any sleepable context, which every caller is.
    unsafe { kernel::bindings::msleep(ms) };
}

/// A point in time (monotonic ms) by which something must be done: every step toward it is
/// bounded by what is left, so a peer that makes slow progress cannot extend it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Deadline(u64);

impl Deadline {
    /// `ms` milliseconds from now.
    pub(crate) fn after_ms(ms: u64) -> Self {
        Self(now_ms().saturating_add(ms))
    }

    /// A deadline that never passes.
    pub(crate) fn never() -> Self {
        Self(u64::MAX)
    }

    /// The earlier of two deadlines.
    pub(crate) fn min(self, other: Self) -> Self {
        Self(self.0.min(other.0))
    }

    /// Milliseconds left (at least 1), or `None` once it has passed.
    pub(crate) fn left_ms(self) -> Option<u32> {
        let left = self.0.saturating_sub(now_ms());
        (left > 0).then(|| u32::try_from(left).unwrap_or(u32::MAX))
    }

    /// Whether it has passed.
    pub(crate) fn passed(self) -> bool {
        self.left_ms().is_none()
    }
}

/// While alive, allocations of this task do not start I/O to reclaim memory
/// (`memalloc_noio_save`, include/linux/sched/mm.h): recovery allocates (a socket, buffers)
/// while the disks it serves are blocked, and reclaim must not wait on their writeback.
#[must_use = "the scope ends when this is dropped"]
pub(crate) struct NoIoScope {
    flags: kernel::ffi::c_uint,
    /// Tied to the task that opened it.
    _not_send: core::marker::PhantomData<*mut ()>,
}

impl NoIoScope {
    /// Opens the scope for the current task.
    pub(crate) fn new() -> Self {
        // SAFETY: always callable from process context; the flags go back in `drop`, in the
        // same task (the type is not `Send`).
        let flags = unsafe { super::bindings::core_iscsi_c_memalloc_noio_save() };
        Self {
            flags,
            _not_send: core::marker::PhantomData,
        }
    }
}

impl Drop for NoIoScope {
    fn drop(&mut self) {
        // SAFETY: restores what `new` saved, in the same task.
        unsafe { super::bindings::core_iscsi_c_memalloc_noio_restore(self.flags) };
    }
}

/// Whether the current task has been sent a fatal signal (a writer killed while it waits).
pub(crate) fn fatal_signal_pending() -> bool {
    // SAFETY: reads the current task's signal state; callable from any process context.
    unsafe { super::bindings::core_iscsi_c_fatal_signal_pending() }
}

/// Whether the current task has any signal pending (an interruptible wait would return at once).
pub(crate) fn signal_pending() -> bool {
    // SAFETY: reads the current task's signal state; callable from any process context.
    unsafe { super::bindings::core_iscsi_c_signal_pending() }
}
