//! The handful of SCSI commands `initiator-ctl probe` and the interop tests need: INQUIRY,
//! REPORT LUNS, READ CAPACITY (10 and 16), READ(16), WRITE(16), TEST UNIT READY. The CDBs and
//! the REPORT LUNS / READ CAPACITY parsing are proto's (`iscsi_proto::scsi`); this file runs
//! them on a [`Session`] and keeps the printable INQUIRY fields.

use super::error::{NetError, Result};
use super::session::{DataDir, Session};
use iscsi_proto::scsi as pscsi;

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

fn short(what: &str, e: pscsi::ScsiError) -> NetError {
    NetError::Protocol(format!("{what}: {e:?}"))
}

/// INQUIRY (standard data, 96 bytes allocated).
pub fn inquiry(s: &mut Session, lun: u16) -> Result<Inquiry> {
    let mut buf = [0u8; 96];
    let o = s.scsi_ok(
        lun,
        &pscsi::inquiry(None, buf.len() as u16),
        DataDir::Read(&mut buf),
    )?;
    if o.data_len < 36 {
        return Err(NetError::Protocol(format!(
            "INQUIRY returned {} bytes, fewer than 36",
            o.data_len
        )));
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
        let o = s.scsi_ok(
            0,
            &pscsi::report_luns(alloc as u32),
            DataDir::Read(&mut buf),
        )?;
        let list =
            pscsi::parse_report_luns(&buf[..o.data_len]).map_err(|e| short("REPORT LUNS", e))?;
        let full = list.list_len as usize + 8;
        if full > alloc && alloc < (1 << 20) {
            alloc = full.min(1 << 20);
            continue;
        }
        return Ok(list.map(|l| l.to_linux()).collect());
    }
}

/// READ CAPACITY(16), falling back to READ CAPACITY(10) if the target rejects it.
pub fn read_capacity(s: &mut Session, lun: u16) -> Result<Capacity> {
    let mut buf = [0u8; 32];
    let o = s.scsi(
        lun,
        &pscsi::read_capacity16(buf.len() as u32),
        DataDir::Read(&mut buf),
    )?;
    let c = match pscsi::parse_read_capacity16(&buf[..o.data_len]) {
        Ok(c) if o.status == pscsi::STATUS_GOOD => c,
        _ => {
            let mut buf = [0u8; 8];
            let o = s.scsi_ok(lun, &pscsi::read_capacity10(), DataDir::Read(&mut buf))?;
            pscsi::parse_read_capacity10(&buf[..o.data_len])
                .map_err(|e| short("READ CAPACITY(10)", e))?
        }
    };
    Ok(Capacity {
        block_size: c.block_len,
        blocks: c.blocks().unwrap_or(u64::MAX),
    })
}

fn block_count(len: usize, block_size: u32) -> Result<u32> {
    if block_size == 0 || !len.is_multiple_of(block_size as usize) {
        return Err(NetError::Input(format!(
            "{len} bytes is not a whole number of {block_size}-byte blocks"
        )));
    }
    u32::try_from(len / block_size as usize)
        .map_err(|_| NetError::Input("transfer too long".into()))
}

/// READ(16) `buf.len()` bytes from `lba`.
pub fn read(s: &mut Session, lun: u16, lba: u64, block_size: u32, buf: &mut [u8]) -> Result<()> {
    let n = block_count(buf.len(), block_size)?;
    let want = buf.len();
    let o = s.scsi_ok(lun, &pscsi::read16(lba, n), DataDir::Read(buf))?;
    if o.data_len != want || o.residual != 0 {
        return Err(NetError::Protocol(format!(
            "READ returned {} of {want} bytes (residual {})",
            o.data_len, o.residual
        )));
    }
    Ok(())
}

/// WRITE(16) `data` at `lba`.
pub fn write(s: &mut Session, lun: u16, lba: u64, block_size: u32, data: &[u8]) -> Result<()> {
    let n = block_count(data.len(), block_size)?;
    let o = s.scsi_ok(lun, &pscsi::write16(lba, n), DataDir::Write(data))?;
    if o.residual != 0 {
        return Err(NetError::Protocol(format!(
            "WRITE left a residual of {}",
            o.residual
        )));
    }
    Ok(())
}

/// TEST UNIT READY; true when GOOD.
pub fn test_unit_ready(s: &mut Session, lun: u16) -> Result<bool> {
    Ok(s.scsi(lun, &pscsi::test_unit_ready(), DataDir::None)?
        .status
        == pscsi::STATUS_GOOD)
}
