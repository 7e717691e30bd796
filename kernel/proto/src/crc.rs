//! CRC32C header and data digests (RFC 7143 sections 11.1 and 13.1; RFC 3720 appendix B.4).
//!
//! The CRC itself comes from the platform through [`Crc32c`], in the shape of the kernel's
//! `crc32c(seed, data, len)`: a raw register update with no inversion. The iSCSI digest is the
//! standard CRC32C (Castagnoli, reflected): start from `!0`, update, invert at the end. It goes on
//! the wire least significant byte first, so `32 bytes of zeros` gives `aa 36 91 8a`.

/// The platform's CRC32C register update.
pub trait Crc32c {
    /// Update `crc` (the raw register, no pre/post inversion) with `data`, as the kernel's
    /// `crc32c()` does: `crc32c(!0, d) ^ !0` is the CRC32C of `d`.
    fn crc32c_update(&self, crc: u32, data: &[u8]) -> u32;
}

/// An incremental digest over several pieces (BHS then AHS, or the pages of a scatterlist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestState(u32);

impl Default for DigestState {
    fn default() -> Self {
        Self::new()
    }
}

impl DigestState {
    /// A fresh digest.
    pub const fn new() -> Self {
        DigestState(!0)
    }

    /// Feed `data`.
    pub fn update<C: Crc32c + ?Sized>(&mut self, c: &C, data: &[u8]) {
        self.0 = c.crc32c_update(self.0, data);
    }

    /// Feed the zero padding that follows a data segment of `data_len` bytes.
    pub fn pad<C: Crc32c + ?Sized>(&mut self, c: &C, data_len: usize) {
        let zeros = [0u8; 3];
        let n = super::pdu::pad_len(data_len);
        self.update(c, zeros.get(..n).unwrap_or(&[]));
    }

    /// The digest value.
    pub fn finish(self) -> u32 {
        !self.0
    }

    /// The digest as it goes on the wire.
    pub fn finish_wire(self) -> [u8; 4] {
        self.finish().to_le_bytes()
    }
}

/// CRC32C of `data`.
pub fn crc32c<C: Crc32c + ?Sized>(c: &C, data: &[u8]) -> u32 {
    let mut d = DigestState::new();
    d.update(c, data);
    d.finish()
}

/// Header digest over the BHS and AHS, in wire byte order.
pub fn header_digest<C: Crc32c + ?Sized>(c: &C, bhs: &[u8; 48], ahs: &[u8]) -> [u8; 4] {
    let mut d = DigestState::new();
    d.update(c, bhs);
    d.update(c, ahs);
    d.finish_wire()
}

/// Data digest over the data segment and its zero padding, in wire byte order.
pub fn data_digest<C: Crc32c + ?Sized>(c: &C, data: &[u8]) -> [u8; 4] {
    let mut d = DigestState::new();
    d.update(c, data);
    d.pad(c, data.len());
    d.finish_wire()
}

/// Check a received header digest.
pub fn verify_header_digest<C: Crc32c + ?Sized>(
    c: &C,
    bhs: &[u8; 48],
    ahs: &[u8],
    wire: &[u8; 4],
) -> bool {
    header_digest(c, bhs, ahs) == *wire
}

/// Check a received data digest; `data_and_pad` is the data segment with the padding bytes as
/// received (the digest covers them as sent).
pub fn verify_data_digest<C: Crc32c + ?Sized>(c: &C, data_and_pad: &[u8], wire: &[u8; 4]) -> bool {
    let mut d = DigestState::new();
    d.update(c, data_and_pad);
    d.finish_wire() == *wire
}
