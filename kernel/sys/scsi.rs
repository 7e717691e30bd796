// SPDX-License-Identifier: GPL-2.0

//! The SCSI midlayer (include/scsi/scsi_host.h, scsi_cmnd.h, scsi_device.h, scsi_status.h,
//! include/linux/scatterlist.h): one [`Host`] per iSCSI session, its commands as owned
//! [`Command`]s, and the [`HostOps`] trait the session implements.
//!
//! The host template is static C data (`core_iscsi_sht` in kernel/tables.c); its callbacks are
//! the `core_iscsi_*` trampolines at the end of this file, which find the session's
//! `Arc<dyn HostOps>` in `shost->hostdata`. Every field of `Scsi_Host`, `scsi_cmnd` and
//! `scsi_device` is read or written by a small C helper (`core_iscsi_c_*`), so these structures
//! stay opaque to Rust.
//!
//! # Rules for the session (the implementor of [`HostOps`])
//!
//! - A [`Command`] handed to [`HostOps::queue_command`] belongs to the session until it calls
//!   [`Command::complete`] (the midlayer then owns it again) or, on the EH paths below,
//!   [`Command::forget`]. Dropping a `Command` is the same as forgetting it: the midlayer only
//!   gets it back through its timeout and error handling.
//! - [`HostOps::abort`] returning [`EhOutcome::Success`] means the session has forgotten the
//!   command and will never touch or complete it again; likewise [`HostOps::device_reset`]
//!   for every command of that LUN and [`HostOps::target_reset`] for every command. After a
//!   `Failed` the midlayer escalates; if every step fails it takes the commands back anyway
//!   (offlining the device), so a session that answers `Failed` to a target reset must still
//!   drop its commands before it next touches them.
//! - [`Host::remove`]: see its documentation for the required order.

use super::bindings;
use super::page::PageRange;
use core::cell::Cell;
use core::marker::PhantomData;
use core::mem::size_of;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::error::{code::EINVAL, code::ENOMEM, Error, Result};
use kernel::ffi::{c_int, c_uint, c_ulong};
use kernel::page::{PAGE_SHIFT, PAGE_SIZE};
use kernel::str::CStr;
use kernel::sync::Arc;
use kernel::{pr_info, pr_warn};

/// Length of the sense buffer of a command (`SCSI_SENSE_BUFFERSIZE`); longer sense is cut.
pub(crate) const SENSE_BUFFER_SIZE: usize = bindings::SCSI_SENSE_BUFFERSIZE as usize;

/// What a session implements; the midlayer calls it through the C host template.
pub(crate) trait HostOps: Send + Sync + 'static {
    /// `queuecommand`. The template sets `queuecommand_may_block`, so this may sleep (send on a
    /// socket). `Err(QueueBusy)` makes the midlayer retry later (`SCSI_MLQUEUE_HOST_BUSY`; the
    /// command given up is then the midlayer's again); otherwise the session owns `cmd` until
    /// it calls [`Command::complete`] (which it may do before returning).
    fn queue_command(&self, cmd: Command) -> core::result::Result<(), QueueBusy>;
    /// `eh_abort_handler`: on `Success` the session has forgotten the command (never completes
    /// it afterwards). Runs in the host's error-handler thread, may sleep.
    fn abort(&self, cmd: &CommandRef<'_>) -> EhOutcome;
    /// `eh_device_reset_handler` (LUN RESET): on `Success`, every command of `lun` is forgotten.
    fn device_reset(&self, lun: u64) -> EhOutcome;
    /// `eh_target_reset_handler` (TARGET WARM RESET): on `Success`, every command is forgotten.
    fn target_reset(&self) -> EhOutcome;
    /// `eh_timed_out`: a command's timer expired. During a re-login, answering
    /// [`TimeoutAction::ResetTimer`] keeps the command waiting (as libiscsi does) instead of
    /// starting error handling; the default starts it.
    fn timed_out(&self, _cmd: &CommandRef<'_>) -> TimeoutAction {
        TimeoutAction::NotHandled
    }
    /// `commit_rqs` for hardware queue `queue`: blk-mq dispatched commands not flagged last
    /// and will send no more for now: whatever was held back for batching must go out.
    fn commit(&self, _queue: u16) {}
}

/// Result of an error-handling callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EhOutcome {
    /// Done: the commands concerned are forgotten by the session.
    Success,
    /// Not done: the midlayer escalates.
    Failed,
}

/// Answer of [`HostOps::timed_out`] (`enum scsi_timeout_action`).
// The session keeps the default (it holds no command while recovering: they are requeued), so
// `ResetTimer` is not built today; it stays for a session that would hold commands.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimeoutAction {
    /// Restart the command's timer and keep waiting.
    ResetTimer,
    /// Start error handling (abort, then resets).
    NotHandled,
}

/// `queue_command` cannot take the command now: the midlayer will retry it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueueBusy;

/// Limits of a host, fixed at registration (negotiated by login: `can_queue` from the
/// session's command window, `max_sectors` from MaxBurstLength, ...).
#[derive(Clone, Copy, Debug)]
pub(crate) struct HostParams {
    /// Commands in flight per hardware queue (the blk-mq tag space).
    pub(crate) can_queue: u16,
    /// Initial queue depth of each LUN (adjusted by `track_queue_depth` on TASK SET FULL).
    pub(crate) cmd_per_lun: u16,
    /// Largest command, in 512-byte sectors.
    pub(crate) max_sectors: u32,
    /// Most scatterlist entries per command.
    pub(crate) sg_tablesize: u16,
    /// Highest Linux LUN the scan may add (REPORT LUNS entries above it are skipped).
    pub(crate) max_lun: u64,
    /// blk-mq hardware queues.
    pub(crate) nr_hw_queues: u16,
    /// The hardware queues share one tag space of `can_queue` tags (`host_tagset`): the
    /// session's command window and task set are session-wide.
    pub(crate) host_tagset: bool,
}

/// Data direction of a command (`enum dma_data_direction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// No data.
    None,
    /// Write: Data-Out.
    ToDevice,
    /// Read: Data-In.
    FromDevice,
    /// Both (bidirectional commands).
    Bidirectional,
}

/// The host byte of a failed command (`enum scsi_host_status`), telling the midlayer how to
/// retry it.
// The midlayer's whole set; the session and the selftest use some of them.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum HostByte {
    /// The target cannot be reached: fail without retry.
    NoConnect = bindings::scsi_host_status_DID_NO_CONNECT as u8,
    /// Bus busy: retry.
    BusBusy = bindings::scsi_host_status_DID_BUS_BUSY as u8,
    /// Timed out.
    TimeOut = bindings::scsi_host_status_DID_TIME_OUT as u8,
    /// Bad target.
    BadTarget = bindings::scsi_host_status_DID_BAD_TARGET as u8,
    /// Aborted.
    Abort = bindings::scsi_host_status_DID_ABORT as u8,
    /// Internal error (protocol violation by the target, ...): retried a few times.
    Error = bindings::scsi_host_status_DID_ERROR as u8,
    /// Reset by a task management function: retried.
    Reset = bindings::scsi_host_status_DID_RESET as u8,
    /// Retried, counting against the command's retries.
    SoftError = bindings::scsi_host_status_DID_SOFT_ERROR as u8,
    /// Retried at once, not counting.
    ImmRetry = bindings::scsi_host_status_DID_IMM_RETRY as u8,
    /// Requeued, not counting.
    Requeue = bindings::scsi_host_status_DID_REQUEUE as u8,
    /// Connection lost, recovery under way: requeued until the transport says otherwise.
    TransportDisrupted = bindings::scsi_host_status_DID_TRANSPORT_DISRUPTED as u8,
    /// Recovery gave up (replacement timeout): failed fast.
    TransportFailfast = bindings::scsi_host_status_DID_TRANSPORT_FAILFAST as u8,
}

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CommandResult {
    /// The target answered with this SAM status byte (GOOD, CHECK CONDITION, BUSY, ...);
    /// host byte `DID_OK`.
    Status(u8),
    /// No status from the target; the host byte says why.
    HostError(HostByte),
}

/// What [`Host::for_each_device`] reports about one SCSI device.
#[derive(Debug)]
pub(crate) struct DeviceInfo<'a> {
    /// Linux LUN (`scsi_device->lun`).
    pub(crate) lun: u64,
    /// Block device name (`"sda"`) when a disk driver is bound.
    pub(crate) disk: Option<&'a str>,
    /// INQUIRY vendor, product and revision, trailing blanks removed.
    pub(crate) vendor: &'a [u8],
    /// See `vendor`.
    pub(crate) model: &'a [u8],
    /// See `vendor`.
    pub(crate) revision: &'a [u8],
}

/// The content of `shost->hostdata`.
type HostData = Arc<dyn HostOps>;

// `hostdata` is an array of unsigned long: `HostData` must not need more alignment.
const _: () = assert!(core::mem::align_of::<HostData>() <= core::mem::align_of::<c_ulong>());

/// A registered `Scsi_Host` (`scsi_host_alloc` + `scsi_add_host`); removed on drop.
pub(crate) struct Host {
    shost: NonNull<bindings::Scsi_Host>,
    /// Whether `block` is in force (so that `remove` can lift it).
    blocked: AtomicBool,
}

// SAFETY: the midlayer functions called through `Host` may be called from any thread; the
// host lives until `Host` is dropped (we hold the reference of `scsi_host_alloc`).
unsafe impl Send for Host {}
// SAFETY: every `&self` method calls midlayer functions that do their own locking
// (`scan_mutex`, `state_mutex`, `host_lock`).
unsafe impl Sync for Host {}

impl Host {
    /// Allocates and adds a SCSI host whose commands go to `ops`. `name` only labels the
    /// kernel log line.
    pub(crate) fn register(
        ops: Arc<dyn HostOps>,
        params: &HostParams,
        name: &CStr,
    ) -> Result<Self> {
        if params.can_queue == 0
            || params.cmd_per_lun == 0
            || params.cmd_per_lun > params.can_queue
            || params.sg_tablesize == 0
            || params.nr_hw_queues == 0
            || params.max_sectors < 8
        {
            return Err(EINVAL);
        }
        let p = bindings::core_iscsi_host_params {
            can_queue: params.can_queue.into(),
            cmd_per_lun: params.cmd_per_lun.into(),
            max_sectors: params.max_sectors,
            sg_tablesize: params.sg_tablesize.into(),
            max_lun: params.max_lun,
            nr_hw_queues: params.nr_hw_queues.into(),
            host_tagset: params.host_tagset,
        };
        // `HostData` is two pointers: the cast cannot truncate.
        let privsize = size_of::<HostData>() as c_uint;
        // SAFETY: `p` is a valid parameter block for the duration of the call.
        let shost = unsafe { bindings::core_iscsi_c_host_alloc(&p, privsize) };
        let shost = NonNull::new(shost).ok_or(ENOMEM)?;
        // SAFETY: `shost` was just allocated with `privsize` bytes of suitably aligned
        // (see the assertion above) hostdata, uninitialised and not read by anyone yet; the
        // trampolines read it only once the host is added below.
        unsafe {
            bindings::core_iscsi_c_host_priv(shost.as_ptr())
                .cast::<HostData>()
                .write(ops)
        };
        // SAFETY: `shost` is an allocated, not yet added host.
        let ret = unsafe { bindings::core_iscsi_c_host_add(shost.as_ptr()) };
        if ret != 0 {
            // SAFETY: adding failed, so no callback ever ran or will run: the `HostData`
            // written above is read back once and the reference of `scsi_host_alloc` dropped.
            unsafe {
                drop(
                    bindings::core_iscsi_c_host_priv(shost.as_ptr())
                        .cast::<HostData>()
                        .read(),
                );
                bindings::scsi_host_put(shost.as_ptr());
            }
            return Err(Error::from_errno(ret));
        }
        let host = Self {
            shost,
            blocked: AtomicBool::new(false),
        };
        pr_info!("{}: SCSI host {}\n", name, host.host_no());
        Ok(host)
    }

    /// The host number (`hostN` in sysfs, `N:0:0:L` of its devices).
    pub(crate) fn host_no(&self) -> u32 {
        // SAFETY: `self.shost` is a live host (see the type invariant).
        unsafe { bindings::core_iscsi_c_host_no(self.shost.as_ptr()) }
    }

    /// A reference for scanning without whatever guards this `Host` (see [`HostRef`]); `None`
    /// once the host is being removed.
    pub(crate) fn get_ref(&self) -> Option<HostRef> {
        // SAFETY: `self.shost` is a live, added host; scsi_host_get takes a reference on its
        // device unless it is being deleted.
        let shost = unsafe { bindings::core_iscsi_c_host_get(self.shost.as_ptr()) };
        NonNull::new(shost).map(|shost| HostRef { shost })
    }

    /// Holds I/O (connection loss, re-login, pause): every device goes to `SDEV_BLOCK`, new
    /// commands wait in the block layer, and when this returns no `queue_command` is running
    /// or will start until [`Host::unblock`]. `scsi_host_block` rather than
    /// `scsi_block_requests` for that guarantee (the latter only sets a flag tested before
    /// dispatch) and because the midlayer's timeout and EH code treat `SDEV_BLOCK` devices as
    /// the transport classes (iSCSI, FC) use them. Sleeps; not from `queue_command`.
    pub(crate) fn block(&self) {
        if self.blocked.swap(true, Ordering::AcqRel) {
            return;
        }
        // SAFETY: `self.shost` is a live, added host; called from process context.
        let ret = unsafe { bindings::scsi_host_block(self.shost.as_ptr()) };
        if ret != 0 {
            // A device being removed cannot be blocked; the others are.
            pr_warn!("SCSI host {}: block: error {}\n", self.host_no(), ret);
        }
    }

    /// Lets held I/O go again (the session is logged in again).
    pub(crate) fn unblock(&self) {
        if !self.blocked.swap(false, Ordering::AcqRel) {
            return;
        }
        self.unblock_devices();
    }

    fn unblock_devices(&self) {
        // SAFETY: `self.shost` is a live, added host; `SDEV_RUNNING` is a valid new state.
        let ret = unsafe {
            bindings::scsi_host_unblock(
                self.shost.as_ptr(),
                bindings::scsi_device_state_SDEV_RUNNING as c_int,
            )
        };
        if ret != 0 {
            pr_warn!("SCSI host {}: unblock: error {}\n", self.host_no(), ret);
        }
    }

    /// Removes every device and the host (`scsi_remove_host` + `scsi_host_put`).
    ///
    /// Order the session must follow: (1) decide whether the target is still reachable; while
    /// this runs, the disks' shutdown sends commands (SYNCHRONIZE CACHE), so `queue_command`
    /// must keep answering them: serve them if logged in, else complete them at once with
    /// [`HostByte::NoConnect`] or [`HostByte::TransportFailfast`], never hold them; (2) call
    /// `remove` (a block in force is lifted first: devices cannot be removed while blocked
    /// commands wait); (3) only after it returns, drop the session state. When it returns, no
    /// `HostOps` method is running or will be called again: the midlayer has waited for every
    /// request of every device and freed the tag set, and the `Arc<dyn HostOps>` in hostdata
    /// is dropped here. Commands the session still holds past step (2) would make it wait for
    /// their timeout and error handling: complete them first.
    pub(crate) fn remove(self) {
        drop(self);
    }

    /// Calls `f` for each SCSI device of the host (with a reference held on it during the call).
    pub(crate) fn for_each_device(&self, mut f: impl FnMut(&DeviceInfo<'_>)) {
        let mut sdev: *mut bindings::scsi_device = core::ptr::null_mut();
        loop {
            // SAFETY: `self.shost` is live; `sdev` is null or the device the previous call
            // returned with a reference, which this call drops.
            sdev = unsafe { bindings::core_iscsi_c_next_device(self.shost.as_ptr(), sdev) };
            let Some(dev) = NonNull::new(sdev) else {
                break;
            };
            let mut name = [0u8; 32];
            // SAFETY: `dev` is held by the iteration's reference; `name` is writable for its
            // length (a u32 cast of 32).
            let name_len = unsafe {
                bindings::core_iscsi_c_sdev_disk_name(
                    dev.as_ptr(),
                    name.as_mut_ptr().cast(),
                    name.len() as c_uint,
                )
            };
            let disk = name
                .get(..name_len as usize)
                .filter(|n| !n.is_empty())
                .and_then(|n| core::str::from_utf8(n).ok());
            // SAFETY: `dev` is held; the midlayer points `vendor`, `model` and `rev` at
            // INQUIRY data of at least 36 bytes (or a 16-byte placeholder), so 8, 16 and 4
            // bytes are readable and stay so while the device is held.
            let (vendor, model, revision) = unsafe {
                (
                    inquiry_str(bindings::core_iscsi_c_sdev_vendor(dev.as_ptr()), 8),
                    inquiry_str(bindings::core_iscsi_c_sdev_model(dev.as_ptr()), 16),
                    inquiry_str(bindings::core_iscsi_c_sdev_rev(dev.as_ptr()), 4),
                )
            };
            let info = DeviceInfo {
                // SAFETY: `dev` is held.
                lun: unsafe { bindings::core_iscsi_c_sdev_lun(dev.as_ptr()) },
                disk,
                vendor,
                model,
                revision,
            };
            f(&info);
        }
    }
}

/// A counted reference to a host's memory (`scsi_host_get` / `scsi_host_put`), for a scan that
/// must not hold the lock guarding the [`Host`] (the scan waits for commands, and the paths
/// that end them need that lock). The host may be removed meanwhile: the midlayer serialises
/// scans with removal (`scan_mutex`) and scans nothing once the host is being deleted, and the
/// reference keeps the memory valid. Dropped before the module goes (the host's release calls
/// into its template).
///
/// # Invariants
///
/// `shost` holds a reference taken with `scsi_host_get`, put on drop.
pub(crate) struct HostRef {
    shost: NonNull<bindings::Scsi_Host>,
}

// SAFETY: the reference may be used and put from any process context.
unsafe impl Send for HostRef {}
// SAFETY: the scan functions take the midlayer's own locks.
unsafe impl Sync for HostRef {}

impl HostRef {
    /// Scans the target (channel 0, id 0, every LUN): INQUIRY of LUN 0, then REPORT LUNS (the
    /// midlayer uses it when LUN 0 answers as SPC-2 or later, also when LUN 0 itself is absent,
    /// peripheral qualifier 3), adding every LUN up to `max_lun`. Synchronous: it sends
    /// commands through [`HostOps::queue_command`] and waits for them, so call it from a work
    /// item or process context that the command path does not wait for, holding no lock that
    /// path needs, and not while the host is blocked. Does nothing once the host is removed.
    pub(crate) fn scan(&self) {
        // SAFETY: `self.shost` is referenced (type invariant); scsi_scan_target checks under
        // scan_mutex that the host still allows scanning.
        unsafe { bindings::core_iscsi_c_host_scan(self.shost.as_ptr(), false) };
    }

    /// Scans again after the target reported that its LUN inventory changed (REPORTED LUNS
    /// DATA HAS CHANGED): LUNs that appeared are added. Same rules as [`HostRef::scan`].
    pub(crate) fn rescan(&self) {
        // SAFETY: as in `scan`.
        unsafe { bindings::core_iscsi_c_host_scan(self.shost.as_ptr(), true) };
    }
}

impl Drop for HostRef {
    fn drop(&mut self) {
        // SAFETY: puts the reference taken in `Host::get_ref` (type invariant).
        unsafe { bindings::scsi_host_put(self.shost.as_ptr()) };
    }
}

/// An INQUIRY string field without its trailing blanks.
///
/// # Safety
///
/// `p` must be valid for reads of `len` bytes for `'a`.
unsafe fn inquiry_str<'a>(p: *const kernel::ffi::c_char, len: usize) -> &'a [u8] {
    if p.is_null() {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    let s = unsafe { core::slice::from_raw_parts(p.cast::<u8>(), len) };
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != 0)
        .map_or(0, |i| i.saturating_add(1));
    s.get(..end).unwrap_or(&[])
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.blocked.swap(false, Ordering::AcqRel) {
            self.unblock_devices();
        }
        let shost = self.shost.as_ptr();
        // SAFETY: `shost` is a live, added host, removed once (here). `scsi_remove_host`
        // returns after every device is gone and the tag set is freed, so no callback can run
        // any more: the `HostData` written by `register` can be read back and dropped. The
        // hostdata memory itself stays until the last reference goes, which may be later
        // (an open sysfs file), but nothing reads it after this point.
        unsafe {
            bindings::scsi_remove_host(shost);
            drop(
                bindings::core_iscsi_c_host_priv(shost)
                    .cast::<HostData>()
                    .read(),
            );
            bindings::scsi_host_put(shost);
        }
    }
}

/// A command handed to [`HostOps::queue_command`]: owned by the session until completed
/// (or forgotten). Not `Sync`: one thread at a time works on a command.
#[must_use = "a command neither completed nor forgotten waits for the midlayer's timeout"]
pub(crate) struct Command {
    cmd: NonNull<bindings::scsi_cmnd>,
    /// Where the last [`Command::page_ranges`] walk left off.
    cursor: Cell<SgCursor>,
}

// SAFETY: the midlayer lets the LLD complete and access a command from any thread; the cursor
// points into the command's own scatterlist, which is as reachable from any thread.
unsafe impl Send for Command {}

/// An entry of a command's scatterlist and the byte of the data buffer it starts at, where a
/// [`Command::page_ranges`] walk left off, so that the next walk for a later offset resumes
/// there rather than at the head. A Data-In segment is placed, and a Data-Out burst sent, a few
/// pages per walk: from the head every time, the walks of a 1 MiB read (256 entries) took
/// 4.9 % of its CPU samples (Documentation/benchmarks.md, "Profiles of 1780eb1 and eb536da").
///
/// # Invariants
///
/// `sg` is null, or the entry of the owning command's scatterlist reached from its head
/// (`head`, the list the walk began on) by following `walked` entries (fewer than its
/// `nents`), and it starts at byte `start` of the data buffer. The scatterlist does not change
/// while a [`HostOps`] implementation holds the command (the midlayer frees or swaps it only
/// once the command is completed or forgotten, which consumes the [`Command`]), and the cursor
/// lives in the `Command`: that is what soundness rests on. Comparing `head` is a cheap second
/// line, should the midlayer ever swap the list under a held command.
#[derive(Clone, Copy)]
struct SgCursor {
    head: *mut bindings::scatterlist,
    sg: *mut bindings::scatterlist,
    start: u32,
    walked: u32,
}

impl SgCursor {
    /// No walk yet: the next starts at the head.
    const HEAD: Self = Self {
        head: core::ptr::null_mut(),
        sg: core::ptr::null_mut(),
        start: 0,
        walked: 0,
    };
}

/// The most scatterlist entries a walk follows; `sg_tablesize` is a u16, chained lists included.
const MAX_SG_WALK: u32 = 1 << 16;

impl Command {
    fn ptr(&self) -> *mut bindings::scsi_cmnd {
        self.cmd.as_ptr()
    }

    /// The CDB.
    pub(crate) fn cdb(&self) -> &[u8] {
        cdb_of(self.cmd)
    }

    /// Linux LUN (`scsi_device->lun`).
    pub(crate) fn lun(&self) -> u64 {
        lun_of(self.cmd)
    }

    /// Data direction.
    pub(crate) fn direction(&self) -> Direction {
        // SAFETY: the command is owned by us and valid (type invariant).
        match unsafe { bindings::core_iscsi_c_cmd_direction(self.ptr()) } {
            bindings::CORE_ISCSI_DIR_TO_DEVICE => Direction::ToDevice,
            bindings::CORE_ISCSI_DIR_FROM_DEVICE => Direction::FromDevice,
            bindings::CORE_ISCSI_DIR_BIDIRECTIONAL => Direction::Bidirectional,
            _ => Direction::None,
        }
    }

    /// Bytes of the data buffer (`scsi_bufflen`).
    pub(crate) fn transfer_len(&self) -> u32 {
        // SAFETY: the command is valid.
        unsafe { bindings::core_iscsi_c_cmd_bufflen(self.ptr()) }
    }

    /// `blk_mq_unique_tag`: hardware queue in the high 16 bits, tag in the low ones; unique
    /// among the host's commands in flight (the Initiator Task Tag can be derived from it).
    pub(crate) fn tag(&self) -> u32 {
        tag_of(self.cmd)
    }

    /// Whether blk-mq flagged this as the last command of a batch: more follow at once when
    /// not (and `HostOps::commit` ends the batch otherwise).
    pub(crate) fn is_last(&self) -> bool {
        // SAFETY: the command is valid while we own it.
        unsafe { bindings::core_iscsi_c_cmd_is_last(self.ptr()) }
    }

    /// The blk-mq hardware queue the command came from (the connection to send it on).
    pub(crate) fn hw_queue(&self) -> u16 {
        hwq_of_tag(self.tag())
    }

    /// The tag within its queue (`blk_mq_unique_tag_to_tag`): with the host's queues sharing
    /// one tag space (`host_tagset`), unique among the host's commands, below `can_queue`.
    pub(crate) fn slot(&self) -> u16 {
        slot_of_tag(self.tag())
    }

    /// Checks that `[offset, offset + len)` lies in the data buffer.
    fn check_range(&self, offset: u32, len: usize) -> Result {
        let len = u32::try_from(len).map_err(|_| EINVAL)?;
        let end = offset.checked_add(len).ok_or(EINVAL)?;
        if end > self.transfer_len() {
            return Err(EINVAL);
        }
        Ok(())
    }

    fn sglist(&self) -> (*mut bindings::scatterlist, c_uint) {
        let mut nents: c_uint = 0;
        // SAFETY: the command is valid; `nents` is writable.
        let sgl = unsafe { bindings::core_iscsi_c_cmd_sglist(self.ptr(), &mut nents) };
        (sgl, nents)
    }

    /// Copies `data` into the data buffer at byte `offset` (Data-In); `EINVAL` if it does not
    /// fit (a target's offsets are never trusted).
    pub(crate) fn copy_in(&self, offset: u32, data: &[u8]) -> Result {
        self.check_range(offset, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        let skip = isize::try_from(offset).map_err(|_| EINVAL)?;
        let (sgl, nents) = self.sglist();
        // SAFETY: the range was checked against the buffer the scatterlist describes; the
        // command is ours, so its pages are not freed during the copy.
        let n = unsafe {
            bindings::sg_pcopy_from_buffer(sgl, nents, data.as_ptr().cast(), data.len(), skip)
        };
        if n != data.len() {
            return Err(EINVAL);
        }
        Ok(())
    }

    /// Copies the bytes at `offset` of the data buffer into `out` (immediate data, or Data-Out
    /// when zero-copy is not possible); `EINVAL` if the range does not fit.
    pub(crate) fn copy_out(&self, offset: u32, out: &mut [u8]) -> Result {
        self.check_range(offset, out.len())?;
        if out.is_empty() {
            return Ok(());
        }
        let skip = isize::try_from(offset).map_err(|_| EINVAL)?;
        let (sgl, nents) = self.sglist();
        // SAFETY: as in `copy_in`; `out` is writable for its length.
        let n = unsafe {
            bindings::sg_pcopy_to_buffer(sgl, nents, out.as_mut_ptr().cast(), out.len(), skip)
        };
        if n != out.len() {
            return Err(EINVAL);
        }
        Ok(())
    }

    /// Like [`Command::copy_out`] but through [`Command::page_ranges`] and the pages
    /// themselves: the path a zero-copy send takes, which the SCSI selftest uses to check
    /// `page_ranges` against real block-layer buffers.
    pub(crate) fn copy_out_by_pages(&self, offset: u32, out: &mut [u8]) -> Result {
        self.check_range(offset, out.len())?;
        let mut ranges: [Option<PageRange<'_>>; 8] = [None; 8];
        let mut done: usize = 0;
        while done < out.len() {
            let pos = offset
                .checked_add(u32::try_from(done).map_err(|_| EINVAL)?)
                .ok_or(EINVAL)?;
            let left =
                u32::try_from(out.len().checked_sub(done).ok_or(EINVAL)?).map_err(|_| EINVAL)?;
            let (n, bytes) = self.page_ranges(pos, left, &mut ranges)?;
            if bytes == 0 {
                return Err(EINVAL);
            }
            for r in ranges.iter().take(n).flatten() {
                let len = r.len();
                let end = done.checked_add(len).ok_or(EINVAL)?;
                let dst = out.get_mut(done..end).ok_or(EINVAL)?;
                // SAFETY: `page_ranges` produced `r` from this command's scatterlist, whose
                // pages stay valid while we own the command; `r` lies within one page and
                // `dst` is writable for `r.len()` bytes.
                unsafe {
                    bindings::core_iscsi_c_memcpy_from_page(
                        dst.as_mut_ptr().cast(),
                        r.page(),
                        r.offset(),
                        len as u32,
                    )
                };
                done = end;
            }
        }
        Ok(())
    }

    /// The page ranges covering `[offset, offset + len)` of the data buffer, each within one
    /// page, in order, written into `out` (no allocation): returns how many were written and
    /// the bytes they cover, which is less than `len` when `out` is full (call again from
    /// `offset + bytes`). `EINVAL` if the range does not fit in the buffer. The pages stay
    /// valid while the session owns the command (until `complete`/`forget`).
    ///
    /// A walk starts where the last one left off (the command's [`SgCursor`]) when that is at
    /// or before `offset`, as it is when a buffer is sent or filled in order, and at the head
    /// otherwise: in order, a whole buffer costs one pass over its entries.
    pub(crate) fn page_ranges<'a>(
        &'a self,
        offset: u32,
        len: u32,
        out: &mut [Option<PageRange<'a>>],
    ) -> Result<(usize, u32)> {
        self.check_range(offset, len as usize)?;
        let (head, nents) = self.sglist();
        let limit = nents.min(MAX_SG_WALK);
        let saved = self.cursor.get();
        let resume = !saved.sg.is_null() && saved.head == head && saved.start <= offset;
        let (mut sg, mut start, mut walked) = if resume {
            (saved.sg, saved.start, saved.walked)
        } else {
            (head, 0, 0)
        };
        let mut at = offset; // the next byte of the range to describe
        let mut left = len; // bytes of the range still to describe
        let mut count: usize = 0;
        while left > 0 && count < out.len() {
            if sg.is_null() || walked >= limit {
                // The scatterlist is shorter than scsi_bufflen says.
                return Err(EINVAL);
            }
            let entry = sg;
            let mut page: *mut bindings::page = core::ptr::null_mut();
            let mut pg_off: c_uint = 0;
            let mut sg_len: c_uint = 0;
            // SAFETY: `entry` is a non-null entry of this command's scatterlist, fewer than
            // `nents` followed from its head (the cursor's invariant, or the walk from the
            // head); the outputs are writable.
            sg = unsafe {
                bindings::core_iscsi_c_sg_entry(entry, &mut page, &mut pg_off, &mut sg_len)
            };
            let end = start.checked_add(sg_len).ok_or(EINVAL)?;
            if at >= end {
                start = end;
                walked = walked.saturating_add(1);
                continue;
            }
            // INVARIANT: `entry` is `walked` entries from the head and starts at `start`.
            self.cursor.set(SgCursor {
                head,
                sg: entry,
                start,
                walked,
            });
            // Position inside this entry: `start <= at < end`, as the walk began at or
            // before `offset` and passed only entries that end at or before `at`.
            let mut pos = at.checked_sub(start).ok_or(EINVAL)?;
            while pos < sg_len && left > 0 && count < out.len() {
                // Absolute offset from the entry's first page, split into page and in-page.
                let abs = (pg_off as usize).checked_add(pos as usize).ok_or(EINVAL)?;
                let nth = abs >> PAGE_SHIFT;
                let in_page = abs & (PAGE_SIZE - 1);
                // PAGE_SIZE - in_page is at most PAGE_SIZE, far below u32::MAX.
                let room = (PAGE_SIZE - in_page) as u32;
                let chunk = room.min(sg_len - pos).min(left);
                // SAFETY: `page` heads the entry's physically contiguous pages, of which
                // `nth` lies within the entry (abs < pg_off + sg_len).
                let p = unsafe { bindings::core_iscsi_c_nth_page(page, nth as c_ulong) };
                let slot = out.get_mut(count).ok_or(EINVAL)?;
                // SAFETY: `p` is a valid page of the command's buffer; `in_page + chunk` is at
                // most PAGE_SIZE by construction of `room`.
                *slot = Some(unsafe { PageRange::from_raw(p, in_page as u32, chunk) });
                count = count.checked_add(1).ok_or(EINVAL)?;
                pos = pos.checked_add(chunk).ok_or(EINVAL)?;
                at = at.checked_add(chunk).ok_or(EINVAL)?;
                left -= chunk; // chunk <= left
            }
            start = end;
            walked = walked.saturating_add(1);
        }
        Ok((count, len - left))
    }

    /// Sets the residual count (bytes of the buffer not transferred).
    pub(crate) fn set_resid(&self, resid: u32) {
        // SAFETY: the command is valid.
        unsafe { bindings::core_iscsi_c_cmd_set_resid(self.ptr(), resid) };
    }

    /// Stores sense data (cut to [`SENSE_BUFFER_SIZE`] bytes).
    pub(crate) fn set_sense(&self, sense: &[u8]) {
        let len = sense.len().min(SENSE_BUFFER_SIZE);
        // SAFETY: the command is valid; `sense` is readable for `len` bytes (at most 96, so
        // the cast is exact); the helper copies at most SCSI_SENSE_BUFFERSIZE bytes.
        unsafe { bindings::core_iscsi_c_cmd_set_sense(self.ptr(), sense.as_ptr(), len as c_uint) };
    }

    /// Sets `cmd->result` and hands the command back to the midlayer (`scsi_done`). The block
    /// layer mostly finishes the request later (in its softirq, or on the submitting CPU), but
    /// on the submitting CPU of a one-CPU queue context it does so within this call.
    pub(crate) fn complete(self, result: CommandResult) {
        self.done(result, false);
    }

    /// As [`Command::complete`], but the block layer finishes the request within this call
    /// (`scsi_done_direct`): whoever waits for it is woken before the caller goes on. The bio's
    /// completion runs here, in the caller's context (see `tasks::Finished::complete`).
    pub(crate) fn complete_here(self, result: CommandResult) {
        self.done(result, true);
    }

    fn done(self, result: CommandResult, here: bool) {
        let (host, status) = match result {
            CommandResult::Status(s) => (bindings::scsi_host_status_DID_OK, s),
            CommandResult::HostError(h) => (h as u8 as bindings::scsi_host_status, 0),
        };
        // SAFETY: the command is ours; `self` is consumed, so it is not touched again.
        unsafe { bindings::core_iscsi_c_cmd_done(self.ptr(), host as c_uint, status.into(), here) };
    }

    /// Gives the command up without completing it: after the error handler's abort or reset
    /// succeeded, the midlayer owns it again.
    pub(crate) fn forget(self) {}
}

/// A command the midlayer lends to an error-handling callback, for that call only.
pub(crate) struct CommandRef<'a> {
    cmd: NonNull<bindings::scsi_cmnd>,
    _lent: PhantomData<&'a bindings::scsi_cmnd>,
}

impl CommandRef<'_> {
    /// As [`Command::tag`]: find the session's task by it.
    pub(crate) fn tag(&self) -> u32 {
        tag_of(self.cmd)
    }

    /// As [`Command::slot`].
    pub(crate) fn slot(&self) -> u16 {
        slot_of_tag(self.tag())
    }

    /// As [`Command::lun`].
    pub(crate) fn lun(&self) -> u64 {
        lun_of(self.cmd)
    }
}

/// `blk_mq_unique_tag_to_hwq`.
fn hwq_of_tag(tag: u32) -> u16 {
    (tag >> 16) as u16
}

/// The low half of a unique tag: the tag within its queue.
fn slot_of_tag(tag: u32) -> u16 {
    (tag & 0xffff) as u16
}

fn tag_of(cmd: NonNull<bindings::scsi_cmnd>) -> u32 {
    // SAFETY: callers hold a valid command (owned `Command` or lent `CommandRef`).
    unsafe { bindings::core_iscsi_c_cmd_tag(cmd.as_ptr()) }
}

fn lun_of(cmd: NonNull<bindings::scsi_cmnd>) -> u64 {
    // SAFETY: as in `tag_of`.
    unsafe { bindings::core_iscsi_c_cmd_lun(cmd.as_ptr()) }
}

fn cdb_of<'a>(cmd: NonNull<bindings::scsi_cmnd>) -> &'a [u8] {
    let mut len: c_uint = 0;
    // SAFETY: as in `tag_of`; `len` is writable.
    let p = unsafe { bindings::core_iscsi_c_cmd_cdb(cmd.as_ptr(), &mut len) };
    if p.is_null() {
        return &[];
    }
    // SAFETY: `cmd->cmnd` holds `cmd_len` valid bytes for as long as the command is held
    // (the lifetime is tied to the borrow of the `Command`/`CommandRef` by the callers).
    unsafe { core::slice::from_raw_parts(p, len as usize) }
}

/// The `Arc<dyn HostOps>` of a host.
///
/// # Safety
///
/// `shost` must be a host added by [`Host::register`] and not yet past `scsi_remove_host`
/// in [`Host`]'s drop: true in every midlayer callback.
unsafe fn host_ops<'a>(shost: *mut bindings::Scsi_Host) -> &'a HostData {
    // SAFETY: `register` wrote a `HostData` into hostdata before adding the host, and `drop`
    // reads it out only after `scsi_remove_host` (guaranteed by the caller).
    unsafe { &*bindings::core_iscsi_c_host_priv(shost).cast::<HostData>() }
}

/// The host of a command, from `cmd->device->host`.
///
/// # Safety
///
/// `cmd` must be a command the midlayer passed to a callback of our template.
unsafe fn cmd_ops<'a>(cmd: *mut bindings::scsi_cmnd) -> &'a HostData {
    // SAFETY: the command's device belongs to one of our hosts, which is alive while the
    // midlayer calls back about its commands.
    unsafe { host_ops(bindings::core_iscsi_c_cmd_host(cmd)) }
}

fn eh_result(outcome: EhOutcome) -> c_int {
    match outcome {
        EhOutcome::Success => bindings::scsi_disposition_SUCCESS as c_int,
        EhOutcome::Failed => bindings::scsi_disposition_FAILED as c_int,
    }
}

/// `queuecommand` of `core_iscsi_sht`.
///
/// # Safety
///
/// Called by the midlayer only, with one of our hosts and a command it hands over.
#[no_mangle]
unsafe extern "C" fn core_iscsi_queuecommand(
    shost: *mut bindings::Scsi_Host,
    cmd: *mut bindings::scsi_cmnd,
) -> c_int {
    let Some(cmd) = NonNull::new(cmd) else {
        return bindings::SCSI_MLQUEUE_HOST_BUSY as c_int;
    };
    // SAFETY: `shost` is one of our added hosts (this is its template's callback).
    let ops = unsafe { host_ops(shost) };
    let cmd = Command {
        cmd,
        cursor: Cell::new(SgCursor::HEAD),
    };
    match ops.queue_command(cmd) {
        Ok(()) => 0,
        Err(QueueBusy) => bindings::SCSI_MLQUEUE_HOST_BUSY as c_int,
    }
}

/// `commit_rqs` of `core_iscsi_sht`.
///
/// # Safety
///
/// Called by blk-mq (through the midlayer) for one of our added hosts.
#[no_mangle]
unsafe extern "C" fn core_iscsi_commit_rqs(shost: *mut bindings::Scsi_Host, hwq: u16) {
    // SAFETY: `shost` is one of our added hosts (this is its template's callback).
    let ops = unsafe { host_ops(shost) };
    ops.commit(hwq);
}

/// `eh_abort_handler` of `core_iscsi_sht`.
///
/// # Safety
///
/// Called by the midlayer's error handler only, with a command of one of our hosts.
#[no_mangle]
unsafe extern "C" fn core_iscsi_eh_abort(cmd: *mut bindings::scsi_cmnd) -> c_int {
    let Some(c) = NonNull::new(cmd) else {
        return eh_result(EhOutcome::Failed);
    };
    // SAFETY: see the function's contract.
    let ops = unsafe { cmd_ops(cmd) };
    eh_result(ops.abort(&CommandRef {
        cmd: c,
        _lent: PhantomData,
    }))
}

/// `eh_device_reset_handler` of `core_iscsi_sht`.
///
/// # Safety
///
/// As for [`core_iscsi_eh_abort`].
#[no_mangle]
unsafe extern "C" fn core_iscsi_eh_device_reset(cmd: *mut bindings::scsi_cmnd) -> c_int {
    let Some(c) = NonNull::new(cmd) else {
        return eh_result(EhOutcome::Failed);
    };
    // SAFETY: see the function's contract.
    let ops = unsafe { cmd_ops(cmd) };
    eh_result(ops.device_reset(lun_of(c)))
}

/// `eh_target_reset_handler` of `core_iscsi_sht`.
///
/// # Safety
///
/// As for [`core_iscsi_eh_abort`].
#[no_mangle]
unsafe extern "C" fn core_iscsi_eh_target_reset(cmd: *mut bindings::scsi_cmnd) -> c_int {
    if cmd.is_null() {
        return eh_result(EhOutcome::Failed);
    }
    // SAFETY: see the function's contract.
    let ops = unsafe { cmd_ops(cmd) };
    eh_result(ops.target_reset())
}

/// `eh_timed_out` of `core_iscsi_sht`.
///
/// # Safety
///
/// Called by the midlayer's timeout handler only, with a command of one of our hosts.
#[no_mangle]
unsafe extern "C" fn core_iscsi_eh_timed_out(
    cmd: *mut bindings::scsi_cmnd,
) -> bindings::scsi_timeout_action {
    let Some(c) = NonNull::new(cmd) else {
        return bindings::scsi_timeout_action_SCSI_EH_NOT_HANDLED;
    };
    // SAFETY: see the function's contract.
    let ops = unsafe { cmd_ops(cmd) };
    match ops.timed_out(&CommandRef {
        cmd: c,
        _lent: PhantomData,
    }) {
        TimeoutAction::ResetTimer => bindings::scsi_timeout_action_SCSI_EH_RESET_TIMER,
        TimeoutAction::NotHandled => bindings::scsi_timeout_action_SCSI_EH_NOT_HANDLED,
    }
}
