//! The handful of SCSI commands `initiator-ctl probe` and the interop tests need: INQUIRY,
//! REPORT LUNS, READ CAPACITY (10 and 16), READ(16), WRITE(16), TEST UNIT READY.

use super::error::{NetError, Result};
use super::session::{DataDir, Session};

/// Standard INQUIRY data, the parts we print.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Inquiry {
    /// Peripheral device type (0 = disk, 0x0c = storage controller, 5 = CD/DVD).
    pub peripheral_type: u8,
    /// Vendor identification (trimmed).
    pub vendor: String,
    /// Product identification (trimmed).
    pub product: String,
    /// Product revision (trimmed).
    pub revision: String,
}

/// READ CAPACITY result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Capacity {
    /// Logical block length in bytes.
    pub block_size: u32,
    /// Number of logical blocks.
    pub blocks: u64,
}

impl Capacity {
    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.blocks.saturating_mul(u64::from(self.block_size))
    }
}

fn ascii(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

/// INQUIRY (standard data, 96 bytes allocated).
pub fn inquiry(s: &mut Session, lun: u16) -> Result<Inquiry> {
    let mut buf = [0u8; 96];
    let cdb = [0x12, 0, 0, 0, buf.len() as u8, 0];
    let o = s.scsi_ok(lun, &cdb, DataDir::Read(&mut buf))?;
    if o.data_len < 36 {
        return Err(NetError::Protocol(format!("INQUIRY returned {} bytes, fewer than 36", o.data_len)));
    }
    Ok(Inquiry {
        peripheral_type: buf[0] & 0x1f,
        vendor: ascii(&buf[8..16]),
        product: ascii(&buf[16..32]),
        revision: ascii(&buf[32..36]),
    })
}

/// REPORT LUNS: the LUN numbers (Linux `scsilun_to_int` form).
pub fn report_luns(s: &mut Session) -> Result<Vec<u64>> {
    let mut alloc = 4096usize;
    loop {
        let mut buf = vec![0u8; alloc];
        let mut cdb = [0u8; 12];
        cdb[0] = 0xa0;
        cdb[6..10].copy_from_slice(&(alloc as u32).to_be_bytes());
        let o = s.scsi_ok(0, &cdb, DataDir::Read(&mut buf))?;
        if o.data_len < 8 {
            return Err(NetError::Protocol("REPORT LUNS returned fewer than 8 bytes".into()));
        }
        let list_len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if list_len + 8 > alloc && alloc < (1 << 20) {
            alloc = (list_len + 8).min(1 << 20);
            continue;
        }
        let end = (8 + list_len).min(o.data_len);
        let luns = buf[8..end]
            .chunks_exact(8)
            .map(|c| {
                let mut v = 0u64;
                for i in 0..4 {
                    v |= ((u64::from(c[2 * i]) << 8) | u64::from(c[2 * i + 1])) << (16 * i);
                }
                v
            })
            .collect();
        return Ok(luns);
    }
}

/// READ CAPACITY(16), falling back to READ CAPACITY(10) if the target rejects it.
pub fn read_capacity(s: &mut Session, lun: u16) -> Result<Capacity> {
    let mut buf = [0u8; 32];
    let mut cdb = [0u8; 16];
    cdb[0] = 0x9e;
    cdb[1] = 0x10;
    cdb[13] = buf.len() as u8;
    let o = s.scsi(lun, &cdb, DataDir::Read(&mut buf))?;
    if o.status == 0 && o.data_len >= 12 {
        let last = u64::from_be_bytes(buf[0..8].try_into().unwrap_or([0; 8]));
        let bs = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        return Ok(Capacity { block_size: bs, blocks: last.saturating_add(1) });
    }
    let mut buf = [0u8; 8];
    let cdb = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let o = s.scsi_ok(lun, &cdb, DataDir::Read(&mut buf))?;
    if o.data_len < 8 {
        return Err(NetError::Protocol("READ CAPACITY(10) returned fewer than 8 bytes".into()));
    }
    let last = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let bs = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    Ok(Capacity { block_size: bs, blocks: u64::from(last) + 1 })
}

fn rw16(op: u8, lba: u64, blocks: u32) -> [u8; 16] {
    let mut cdb = [0u8; 16];
    cdb[0] = op;
    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
    cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
    cdb
}

fn block_count(len: usize, block_size: u32) -> Result<u32> {
    if block_size == 0 || !len.is_multiple_of(block_size as usize) {
        return Err(NetError::Protocol(format!("{len} bytes is not a whole number of {block_size}-byte blocks")));
    }
    u32::try_from(len / block_size as usize).map_err(|_| NetError::Protocol("transfer too long".into()))
}

/// READ(16) `buf.len()` bytes from `lba`.
pub fn read(s: &mut Session, lun: u16, lba: u64, block_size: u32, buf: &mut [u8]) -> Result<()> {
    let n = block_count(buf.len(), block_size)?;
    let want = buf.len();
    let o = s.scsi_ok(lun, &rw16(0x88, lba, n), DataDir::Read(buf))?;
    if o.data_len != want || o.residual != 0 {
        return Err(NetError::Protocol(format!("READ returned {} of {want} bytes (residual {})", o.data_len, o.residual)));
    }
    Ok(())
}

/// WRITE(16) `data` at `lba`.
pub fn write(s: &mut Session, lun: u16, lba: u64, block_size: u32, data: &[u8]) -> Result<()> {
    let n = block_count(data.len(), block_size)?;
    let o = s.scsi_ok(lun, &rw16(0x8a, lba, n), DataDir::Write(data))?;
    if o.residual != 0 {
        return Err(NetError::Protocol(format!("WRITE left a residual of {}", o.residual)));
    }
    Ok(())
}

/// TEST UNIT READY; true when GOOD.
pub fn test_unit_ready(s: &mut Session, lun: u16) -> Result<bool> {
    Ok(s.scsi(lun, &[0u8; 6], DataDir::None)?.status == 0)
}
