// SPDX-License-Identifier: GPL-2.0

//! An in-memory SCSI target behind a real SCSI host, to test kernel/sys/scsi.rs without a
//! network (tests/e2e/scsi-host.sh): RAM-backed LUNs answering the commands the midlayer's
//! scan and the sd driver send (INQUIRY, REPORT LUNS, READ CAPACITY(10/16), READ/WRITE(10/16),
//! TEST UNIT READY, MODE SENSE, SYNCHRONIZE CACHE); anything else gets CHECK CONDITION,
//! ILLEGAL REQUEST. Started and stopped through `core_iscsi/scsi_selftest` (kernel/control.rs).
//!
//! Commands complete inside `queue_command`, which the midlayer allows. Writes go through
//! `Command::copy_out_by_pages` (the zero-copy path: `page_ranges`, the second half of the
//! buffer first) on most LUNs and `copy_out` on LUN 300, reads through `copy_in`, so a
//! dd/mkfs/mount run checks all three.

use crate::sys::scsi::{
    Command, CommandRef, CommandResult, Direction, EhOutcome, Host, HostByte, HostOps, HostParams,
    QueueBusy,
};
use crate::sys::slot::Slot;
use kernel::alloc::{KBox, KVec, VVec};
use kernel::c_str;
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::str::BStr;
use kernel::sync::{Arc, Mutex};

const BLOCK: u64 = 512;
const GOOD: u8 = 0x00;
const CHECK_CONDITION: u8 = 0x02;
const ILLEGAL_REQUEST: u8 = 0x05;

/// The running selftest host, if any.
static RUNNING: Slot<Selftest> = Slot::new();

struct Selftest {
    host: Host,
    target: Arc<Target>,
}

/// Stops the selftest when dropped (held by the module: unload removes a running host).
pub(crate) struct StopOnDrop;

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = stop();
    }
}

/// Registers the test host and scans it; `lun0` says whether LUN 0 exists (without it the
/// scan must go through REPORT LUNS after LUN 0 answers "no device here").
pub(crate) fn start(lun0: bool) -> Result {
    let luns: &[(u64, u64)] = if lun0 {
        &[(0, 64 << 20), (300, 8 << 20)]
    } else {
        &[(7, 8 << 20), (300, 8 << 20)]
    };
    let mut store = KVec::new();
    for &(lun, bytes) in luns {
        let data = VVec::from_elem(0u8, usize::try_from(bytes)?, GFP_KERNEL)?;
        store.push(LunData { lun, data }, GFP_KERNEL)?;
    }
    let target = Arc::pin_init(
        pin_init!(Target {
            luns <- new_mutex!(store, "core_iscsi_selftest_luns"),
        }),
        GFP_KERNEL,
    )?;
    let params = HostParams {
        can_queue: 64,
        cmd_per_lun: 16,
        max_sectors: 1024,
        sg_tablesize: 128,
        max_lun: 16384,
        nr_hw_queues: 1,
        host_tagset: false,
    };
    let host = Host::register(target.clone(), &params, c_str!("scsi-selftest"))?;
    if let Some(r) = host.get_ref() {
        r.scan();
    }
    log_devices(&host);
    let running = KBox::new(Selftest { host, target }, GFP_KERNEL)?;
    // One at a time: a second start removes what it just made.
    RUNNING.put(running).map_err(|_| EBUSY)
}

/// Removes the test host (its disks first); `ENOENT` if none is running.
pub(crate) fn stop() -> Result {
    let running = RUNNING.take().ok_or(ENOENT)?;
    let Selftest { host, .. } = KBox::into_inner(running);
    host.remove();
    Ok(())
}

/// Runs `f` on the running selftest (taken out of the slot meanwhile, so that a concurrent
/// `stop` gets `ENOENT` rather than removing the host under `f`).
fn with_running(f: impl FnOnce(&Selftest) -> Result) -> Result {
    let running = RUNNING.take().ok_or(ENOENT)?;
    let r = f(&running);
    // A `start` meanwhile found the slot empty and filled it: that newer host stays, ours is
    // removed (never leaked).
    if let Err(extra) = RUNNING.put(running) {
        let Selftest { host, .. } = KBox::into_inner(extra);
        host.remove();
    }
    r
}

/// `block`: holds I/O (what a session does while it logs in again).
pub(crate) fn block() -> Result {
    with_running(|t| {
        t.host.block();
        Ok(())
    })
}

/// `unblock`: lets held I/O go.
pub(crate) fn unblock() -> Result {
    with_running(|t| {
        t.host.unblock();
        Ok(())
    })
}

/// `rescan`: the target grows LUN 301 (as after "REPORTED LUNS DATA HAS CHANGED") and the
/// host rescans.
pub(crate) fn rescan() -> Result {
    with_running(|t| {
        {
            let mut luns = t.target.luns.lock();
            if !luns.iter().any(|l| l.lun == 301) {
                let data = VVec::from_elem(0u8, 4 << 20, GFP_KERNEL)?;
                luns.push(LunData { lun: 301, data }, GFP_KERNEL)?;
            }
        }
        if let Some(r) = t.host.get_ref() {
            r.rescan();
        }
        log_devices(&t.host);
        Ok(())
    })
}

/// Logs what `for_each_device` reports, one line per device (the test reads them back).
fn log_devices(host: &Host) {
    let host_no = host.host_no();
    host.for_each_device(|d| {
        pr_info!(
            "scsi-selftest: host {} lun {} disk {} vendor '{}' model '{}' rev '{}'\n",
            host_no,
            d.lun,
            d.disk.unwrap_or("-"),
            BStr::from_bytes(d.vendor),
            BStr::from_bytes(d.model),
            BStr::from_bytes(d.revision),
        );
    });
}

struct LunData {
    lun: u64,
    data: VVec<u8>,
}

#[pin_data]
struct Target {
    #[pin]
    luns: Mutex<KVec<LunData>>,
}

/// How a command ended before completion: status plus, for CHECK CONDITION, the sense key,
/// ASC and ASCQ.
enum Outcome {
    Good,
    Check(u8, u8, u8),
}

/// ASC/ASCQ pairs used here (SPC-4 annex D).
const INVALID_OPCODE: (u8, u8) = (0x20, 0x00);
const LBA_OUT_OF_RANGE: (u8, u8) = (0x21, 0x00);
const INVALID_FIELD_IN_CDB: (u8, u8) = (0x24, 0x00);
const LUN_NOT_SUPPORTED: (u8, u8) = (0x25, 0x00);

fn illegal(code: (u8, u8)) -> Outcome {
    Outcome::Check(ILLEGAL_REQUEST, code.0, code.1)
}

/// Big-endian integer of the CDB bytes `[start, start + len)`; `None` if the CDB is short.
fn be(cdb: &[u8], start: usize, len: usize) -> Option<u64> {
    let bytes = cdb.get(start..start.checked_add(len)?)?;
    Some(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// `int_to_scsilun`: the 8-byte LUN field for a Linux LUN.
fn scsilun(lun: u64) -> [u8; 8] {
    let mut out = [0u8; 8];
    for (i, pair) in out.chunks_exact_mut(2).enumerate() {
        let shift = i * 16;
        pair[0] = (lun >> (shift + 8)) as u8;
        pair[1] = (lun >> shift) as u8;
    }
    out
}

/// Sends `data` cut to `alloc` and to the buffer; the rest of the buffer is residual.
fn respond(cmd: &Command, data: &[u8], alloc: u64) -> Result<Outcome> {
    let room = u64::from(cmd.transfer_len()).min(alloc);
    let n = usize::try_from(room)?.min(data.len());
    let part = data.get(..n).ok_or(EINVAL)?;
    cmd.copy_in(0, part)?;
    cmd.set_resid(cmd.transfer_len().saturating_sub(u32::try_from(n)?));
    Ok(Outcome::Good)
}

impl Target {
    fn execute(&self, cmd: &Command) -> Result<Outcome> {
        let cdb = cmd.cdb();
        let op = *cdb.first().ok_or(EINVAL)?;
        let lun = cmd.lun();
        let mut luns = self.luns.lock();
        match op {
            // INQUIRY: answered for absent LUNs too, with peripheral qualifier 3.
            0x12 => {
                let present = luns.iter().any(|l| l.lun == lun);
                let pdt: u8 = if present { 0x00 } else { 0x7f };
                let evpd = be(cdb, 1, 1).ok_or(EINVAL)? & 1 != 0;
                let page = be(cdb, 2, 1).ok_or(EINVAL)?;
                let alloc = be(cdb, 3, 2).ok_or(EINVAL)?;
                if evpd {
                    if page != 0 {
                        return Ok(illegal(INVALID_FIELD_IN_CDB));
                    }
                    // Supported VPD pages: only this list.
                    return respond(cmd, &[pdt, 0x00, 0x00, 0x01, 0x00], alloc);
                }
                let mut inq = [0u8; 36];
                inq[0] = pdt;
                inq[2] = 0x06; // SPC-4: the midlayer then uses REPORT LUNS
                inq[3] = 0x12; // HiSup, response data format 2
                inq[4] = 31; // additional length
                inq[7] = 0x02; // CmdQue
                inq[8..16].copy_from_slice(b"CORE-ISC");
                let mut model = *b"SELFTEST LUN    ";
                let mut digits = [b' '; 4];
                let mut v = lun;
                // Right-aligned decimal, blank-padded.
                for d in digits.iter_mut().rev() {
                    *d = b'0' + (v % 10) as u8;
                    v /= 10;
                    if v == 0 {
                        break;
                    }
                }
                model[12..16].copy_from_slice(&digits);
                inq[16..32].copy_from_slice(&model);
                inq[32..36].copy_from_slice(b"0001");
                respond(cmd, &inq, alloc)
            }
            // REPORT LUNS: addressed to any LUN (usually LUN 0, present or not).
            0xa0 => {
                let alloc = be(cdb, 6, 4).ok_or(EINVAL)?;
                let mut data = KVec::new();
                let list_len = u32::try_from(luns.len().checked_mul(8).ok_or(EINVAL)?)?;
                data.extend_from_slice(&list_len.to_be_bytes(), GFP_KERNEL)?;
                data.extend_from_slice(&[0u8; 4], GFP_KERNEL)?;
                for l in luns.iter() {
                    data.extend_from_slice(&scsilun(l.lun), GFP_KERNEL)?;
                }
                respond(cmd, &data, alloc)
            }
            _ => {
                let Some(l) = luns.iter_mut().find(|l| l.lun == lun) else {
                    return Ok(illegal(LUN_NOT_SUPPORTED));
                };
                execute_on_lun(cmd, cdb, op, l)
            }
        }
    }
}

fn execute_on_lun(cmd: &Command, cdb: &[u8], op: u8, l: &mut LunData) -> Result<Outcome> {
    let blocks = u64::try_from(l.data.len())? / BLOCK;
    let last = blocks.checked_sub(1).ok_or(EINVAL)?;
    match op {
        // TEST UNIT READY, START STOP UNIT, SYNCHRONIZE CACHE(10/16): nothing to do in RAM.
        0x00 | 0x1b | 0x35 | 0x91 => Ok(Outcome::Good),
        // READ CAPACITY(10)
        0x25 => {
            let mut d = [0u8; 8];
            d[0..4].copy_from_slice(&u32::try_from(last).unwrap_or(u32::MAX).to_be_bytes());
            d[4..8].copy_from_slice(&(BLOCK as u32).to_be_bytes());
            respond(cmd, &d, 8)
        }
        // SERVICE ACTION IN(16) / READ CAPACITY(16)
        0x9e if be(cdb, 1, 1).ok_or(EINVAL)? & 0x1f == 0x10 => {
            let alloc = be(cdb, 10, 4).ok_or(EINVAL)?;
            let mut d = [0u8; 32];
            d[0..8].copy_from_slice(&last.to_be_bytes());
            d[8..12].copy_from_slice(&(BLOCK as u32).to_be_bytes());
            respond(cmd, &d, alloc)
        }
        // MODE SENSE(6) / (10): no block descriptor, the caching page (write cache off).
        0x1a | 0x5a => {
            let page = be(cdb, 2, 1).ok_or(EINVAL)? & 0x3f;
            if page != 0x08 && page != 0x3f {
                return Ok(illegal(INVALID_FIELD_IN_CDB));
            }
            let mut caching = [0u8; 20];
            caching[0] = 0x08;
            caching[1] = 0x12;
            let mut d = KVec::new();
            if op == 0x1a {
                d.extend_from_slice(&[(3 + caching.len()) as u8, 0, 0, 0], GFP_KERNEL)?;
            } else {
                let len = (6 + caching.len()) as u16;
                d.extend_from_slice(&len.to_be_bytes(), GFP_KERNEL)?;
                d.extend_from_slice(&[0u8; 6], GFP_KERNEL)?;
            }
            d.extend_from_slice(&caching, GFP_KERNEL)?;
            let alloc = if op == 0x1a {
                be(cdb, 4, 1)
            } else {
                be(cdb, 7, 2)
            }
            .ok_or(EINVAL)?;
            respond(cmd, &d, alloc)
        }
        // READ(10) / WRITE(10) / READ(16) / WRITE(16)
        0x28 | 0x2a | 0x88 | 0x8a => {
            let (lba, count) = if op == 0x28 || op == 0x2a {
                (be(cdb, 2, 4), be(cdb, 7, 2))
            } else {
                (be(cdb, 2, 8), be(cdb, 10, 4))
            };
            let (lba, count) = (lba.ok_or(EINVAL)?, count.ok_or(EINVAL)?);
            if lba.checked_add(count).map_or(true, |end| end > blocks) {
                return Ok(illegal(LBA_OUT_OF_RANGE));
            }
            let start = usize::try_from(lba.checked_mul(BLOCK).ok_or(EINVAL)?)?;
            let bytes = u64::from(cmd.transfer_len()).min(count.checked_mul(BLOCK).ok_or(EINVAL)?);
            let end = start.checked_add(usize::try_from(bytes)?).ok_or(EINVAL)?;
            let range = l.data.get_mut(start..end).ok_or(EINVAL)?;
            let write = op == 0x2a || op == 0x8a;
            match (write, cmd.direction()) {
                (true, Direction::ToDevice) if l.lun == 300 => cmd.copy_out(0, range)?,
                (true, Direction::ToDevice) => {
                    // The second half first, then the first: each walk of `page_ranges` goes
                    // forward from where the last left off, and for a buffer of more than one
                    // scatterlist entry (mkfs's and dd's) the second must start over at the
                    // head.
                    let half = range.len() / 2;
                    let (first, second) = range.split_at_mut(half);
                    cmd.copy_out_by_pages(u32::try_from(half)?, second)?;
                    cmd.copy_out_by_pages(0, first)?;
                }
                (false, Direction::FromDevice) => cmd.copy_in(0, range)?,
                _ if bytes == 0 => {}
                _ => return Ok(illegal(INVALID_FIELD_IN_CDB)),
            }
            cmd.set_resid(cmd.transfer_len().saturating_sub(u32::try_from(bytes)?));
            Ok(Outcome::Good)
        }
        _ => Ok(illegal(INVALID_OPCODE)),
    }
}

impl HostOps for Target {
    fn queue_command(&self, cmd: Command) -> core::result::Result<(), QueueBusy> {
        // The host has one hardware queue: a tag naming another would be a wrapper bug.
        if cmd.hw_queue() != 0 {
            pr_err!(
                "scsi-selftest: tag {:#x} names hw queue {}\n",
                cmd.tag(),
                cmd.hw_queue()
            );
            cmd.complete(CommandResult::HostError(HostByte::Error));
            return Ok(());
        }
        let result = match self.execute(&cmd) {
            Ok(Outcome::Good) => CommandResult::Status(GOOD),
            Ok(Outcome::Check(key, asc, ascq)) => {
                // Fixed-format sense data (SPC-4 4.5.3).
                let sense = [
                    0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0,
                ];
                cmd.set_sense(&sense);
                CommandResult::Status(CHECK_CONDITION)
            }
            // A CDB shorter than its opcode needs, or an allocation failure.
            Err(_) => {
                cmd.set_sense(&[
                    0x70,
                    0,
                    ILLEGAL_REQUEST,
                    0,
                    0,
                    0,
                    0,
                    10,
                    0,
                    0,
                    0,
                    0,
                    0x24,
                    0,
                ]);
                CommandResult::Status(CHECK_CONDITION)
            }
        };
        cmd.complete(result);
        Ok(())
    }

    // Every command completes inside queue_command, so none is ever outstanding here.
    fn abort(&self, cmd: &CommandRef<'_>) -> EhOutcome {
        pr_warn!(
            "scsi-selftest: abort of tag {:#x} lun {}\n",
            cmd.tag(),
            cmd.lun()
        );
        EhOutcome::Success
    }

    fn device_reset(&self, _lun: u64) -> EhOutcome {
        EhOutcome::Success
    }

    fn target_reset(&self) -> EhOutcome {
        EhOutcome::Success
    }
}
