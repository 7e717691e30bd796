//! The few SCSI pieces the initiator itself needs: CDB builders for probing and I/O, and parsers
//! for REPORT LUNS, READ CAPACITY and sense data (SPC-4 / SBC-3).

use super::pdu::Lun;

/// SCSI status GOOD.
pub const STATUS_GOOD: u8 = 0x00;
/// SCSI status CHECK CONDITION.
pub const STATUS_CHECK_CONDITION: u8 = 0x02;
/// SCSI status BUSY.
pub const STATUS_BUSY: u8 = 0x08;
/// SCSI status RESERVATION CONFLICT.
pub const STATUS_RESERVATION_CONFLICT: u8 = 0x18;
/// SCSI status TASK SET FULL.
pub const STATUS_TASK_SET_FULL: u8 = 0x28;

/// SCSI parse errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScsiError {
    /// The data is shorter than its header says or than the format needs.
    Truncated,
    /// Unknown format (e.g. a sense response code that is neither fixed nor descriptor).
    BadFormat,
}

/// TEST UNIT READY.
pub fn test_unit_ready() -> [u8; 6] {
    [0; 6]
}

/// INQUIRY (standard data when `page` is `None`, else the VPD page).
pub fn inquiry(page: Option<u8>, alloc_len: u16) -> [u8; 6] {
    let [h, l] = alloc_len.to_be_bytes();
    match page {
        None => [0x12, 0, 0, h, l, 0],
        Some(p) => [0x12, 1, p, h, l, 0],
    }
}

/// REPORT LUNS (select report 0: all LUNs).
pub fn report_luns(alloc_len: u32) -> [u8; 12] {
    let a = alloc_len.to_be_bytes();
    [0xa0, 0, 0, 0, 0, 0, a[0], a[1], a[2], a[3], 0, 0]
}

/// READ CAPACITY(10).
pub fn read_capacity10() -> [u8; 10] {
    [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// READ CAPACITY(16) (SERVICE ACTION IN(16), action 0x10).
pub fn read_capacity16(alloc_len: u32) -> [u8; 16] {
    let a = alloc_len.to_be_bytes();
    [
        0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, a[0], a[1], a[2], a[3], 0, 0,
    ]
}

fn rw10(op: u8, lba: u32, blocks: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let b = blocks.to_be_bytes();
    [op, 0, l[0], l[1], l[2], l[3], 0, b[0], b[1], 0]
}

fn rw16(op: u8, lba: u64, blocks: u32) -> [u8; 16] {
    let l = lba.to_be_bytes();
    let b = blocks.to_be_bytes();
    [
        op, 0, l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7], b[0], b[1], b[2], b[3], 0, 0,
    ]
}

/// READ(10).
pub fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    rw10(0x28, lba, blocks)
}

/// WRITE(10).
pub fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    rw10(0x2a, lba, blocks)
}

/// READ(16).
pub fn read16(lba: u64, blocks: u32) -> [u8; 16] {
    rw16(0x88, lba, blocks)
}

/// WRITE(16).
pub fn write16(lba: u64, blocks: u32) -> [u8; 16] {
    rw16(0x8a, lba, blocks)
}

fn be32(d: &[u8], at: usize) -> Option<u32> {
    let b = d.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([
        *b.first()?,
        *b.get(1)?,
        *b.get(2)?,
        *b.get(3)?,
    ]))
}

fn be64(d: &[u8], at: usize) -> Option<u64> {
    let hi = be32(d, at)?;
    let lo = be32(d, at.checked_add(4)?)?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

/// READ CAPACITY result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Last logical block address.
    pub last_lba: u64,
    /// Block length in bytes.
    pub block_len: u32,
}

impl Capacity {
    /// Number of blocks (`None` if last_lba is u64::MAX).
    pub fn blocks(&self) -> Option<u64> {
        self.last_lba.checked_add(1)
    }
}

/// Parse READ CAPACITY(10) data. A last LBA of 0xffffffff means: use READ CAPACITY(16).
pub fn parse_read_capacity10(d: &[u8]) -> Result<Capacity, ScsiError> {
    let lba = be32(d, 0).ok_or(ScsiError::Truncated)?;
    let bl = be32(d, 4).ok_or(ScsiError::Truncated)?;
    Ok(Capacity {
        last_lba: lba.into(),
        block_len: bl,
    })
}

/// Parse READ CAPACITY(16) data.
pub fn parse_read_capacity16(d: &[u8]) -> Result<Capacity, ScsiError> {
    let lba = be64(d, 0).ok_or(ScsiError::Truncated)?;
    let bl = be32(d, 8).ok_or(ScsiError::Truncated)?;
    Ok(Capacity {
        last_lba: lba,
        block_len: bl,
    })
}

/// LUNs of a REPORT LUNS response.
#[derive(Debug, Clone)]
pub struct ReportLuns<'a> {
    list: core::slice::ChunksExact<'a, u8>,
    /// LUN LIST LENGTH from the header: more than received means the allocation was too small.
    pub list_len: u32,
}

/// Parse REPORT LUNS data (possibly truncated by the allocation length: the LUNs received are
/// returned and `list_len` tells the full size).
pub fn parse_report_luns(d: &[u8]) -> Result<ReportLuns<'_>, ScsiError> {
    let list_len = be32(d, 0).ok_or(ScsiError::Truncated)?;
    let body = d.get(8..).ok_or(ScsiError::Truncated)?;
    let n = body.len().min(list_len as usize);
    let body = body.get(..n - n % 8).unwrap_or(&[]);
    Ok(ReportLuns {
        list: body.chunks_exact(8),
        list_len,
    })
}

impl Iterator for ReportLuns<'_> {
    type Item = Lun;

    fn next(&mut self) -> Option<Lun> {
        let c = self.list.next()?;
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        Some(Lun(b))
    }
}

/// Sense key, ASC, ASCQ and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    /// Response code (0x70/0x71 fixed, 0x72/0x73 descriptor).
    pub response_code: u8,
    /// Sense key.
    pub key: u8,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
    /// Information field, when valid.
    pub information: Option<u64>,
}

impl Sense {
    /// Whether this is deferred-error sense (0x71/0x73).
    pub fn deferred(&self) -> bool {
        self.response_code & 1 == 1
    }
}

/// Parse sense data in fixed or descriptor format.
pub fn parse_sense(d: &[u8]) -> Result<Sense, ScsiError> {
    let rc = d.first().ok_or(ScsiError::Truncated)? & 0x7f;
    match rc {
        0x70 | 0x71 => {
            let key = d.get(2).ok_or(ScsiError::Truncated)? & 0x0f;
            let valid = d.first().is_some_and(|b| b & 0x80 != 0);
            let info = be32(d, 3).filter(|_| valid).map(u64::from);
            // ASC/ASCQ live at 12/13 when the additional length covers them.
            let add_len = usize::from(d.get(7).copied().unwrap_or(0));
            let (asc, ascq) = if add_len >= 6 {
                (
                    d.get(12).copied().unwrap_or(0),
                    d.get(13).copied().unwrap_or(0),
                )
            } else {
                (0, 0)
            };
            Ok(Sense {
                response_code: rc,
                key,
                asc,
                ascq,
                information: info,
            })
        }
        0x72 | 0x73 => {
            let key = d.get(1).ok_or(ScsiError::Truncated)? & 0x0f;
            let asc = d.get(2).copied().ok_or(ScsiError::Truncated)?;
            let ascq = d.get(3).copied().ok_or(ScsiError::Truncated)?;
            let add_len = usize::from(d.get(7).copied().unwrap_or(0));
            let descs = d.get(8..).unwrap_or(&[]);
            let descs = descs.get(..add_len.min(descs.len())).unwrap_or(&[]);
            let mut information = None;
            let mut rest = descs;
            while let [ty, len, ..] = rest {
                let total = usize::from(*len) + 2;
                let Some(desc) = rest.get(..total) else { break };
                // Information descriptor: type 0, VALID bit in byte 2, 8-byte field at 4.
                if *ty == 0 && desc.get(2).is_some_and(|b| b & 0x80 != 0) {
                    information = be64(desc, 4);
                }
                rest = rest.get(total..).unwrap_or(&[]);
            }
            Ok(Sense {
                response_code: rc,
                key,
                asc,
                ascq,
                information,
            })
        }
        _ => Err(ScsiError::BadFormat),
    }
}

/// The sense data inside a SCSI Response data segment (2-byte SenseLength, then sense).
pub fn sense_from_response(data: &[u8]) -> Option<&[u8]> {
    let (&[h, l], rest) = data.split_first_chunk::<2>()?;
    let n = usize::from(u16::from_be_bytes([h, l]));
    if n == 0 {
        return None;
    }
    rest.get(..n)
}
