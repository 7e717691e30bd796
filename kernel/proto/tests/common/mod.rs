//! Userspace implementations of proto's platform traits, as tools/ would write them.
#![allow(dead_code)]

use iscsi_proto::chap::{ChapAlgorithm, ChapDigest, MAX_DIGEST_LEN};
use iscsi_proto::crc::Crc32c;

/// CRC32C from the `crc32c` crate, adapted to the kernel's raw-register convention.
pub struct SwCrc;

impl Crc32c for SwCrc {
    fn crc32c_update(&self, crc: u32, data: &[u8]) -> u32 {
        // crc32c_append inverts on entry and exit; the trait works on the raw register.
        !crc32c::crc32c_append(!crc, data)
    }
}

/// CHAP hashes from the RustCrypto crates.
pub struct SwHash;

fn run<D: sha2::Digest>(parts: &[&[u8]], out: &mut [u8; MAX_DIGEST_LEN]) {
    let mut h = D::new();
    for p in parts {
        h.update(p);
    }
    let r = h.finalize();
    out[..r.len()].copy_from_slice(&r);
}

impl ChapDigest for SwHash {
    fn digest(&self, alg: ChapAlgorithm, parts: &[&[u8]], out: &mut [u8; MAX_DIGEST_LEN]) -> bool {
        match alg {
            ChapAlgorithm::Md5 => run::<md5::Md5>(parts, out),
            ChapAlgorithm::Sha1 => run::<sha1::Sha1>(parts, out),
            ChapAlgorithm::Sha256 => run::<sha2::Sha256>(parts, out),
            ChapAlgorithm::Sha3_256 => run::<sha3::Sha3_256>(parts, out),
        }
        true
    }
}

/// A platform without any hash (to test DigestUnavailable).
pub struct NoHash;

impl ChapDigest for NoHash {
    fn digest(&self, _: ChapAlgorithm, _: &[&[u8]], _: &mut [u8; MAX_DIGEST_LEN]) -> bool {
        false
    }
}

pub fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
