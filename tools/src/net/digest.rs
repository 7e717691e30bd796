//! Platform hashes for the protocol core: CRC32C (the `crc32c` crate, hardware accelerated
//! where the CPU has it) and the CHAP digests (RustCrypto `md-5`, `sha1`, `sha2`, `sha3`).


/// CRC32C (Castagnoli) as iSCSI uses it for header and data digests. The digest goes on the
/// wire least significant byte first (`to_le_bytes`), as in RFC 3720 appendix B.4.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// The userspace platform for the protocol core's hash traits.
#[derive(Debug, Clone, Copy, Default)]
pub struct Platform;

impl iscsi_proto::crc::Crc32c for Platform {
    fn crc32c_update(&self, crc: u32, data: &[u8]) -> u32 {
        // The crate works on the inverted (finished) value; proto wants the raw register.
        !crc32c::crc32c_append(!crc, data)
    }
}

impl iscsi_proto::chap::ChapDigest for Platform {
    fn digest(
        &self,
        alg: iscsi_proto::chap::ChapAlgorithm,
        parts: &[&[u8]],
        out: &mut [u8; iscsi_proto::chap::MAX_DIGEST_LEN],
    ) -> bool {
        use iscsi_proto::chap::ChapAlgorithm as A;
        fn run<D: md5::Digest>(parts: &[&[u8]], out: &mut [u8]) -> bool {
            let mut h = D::new();
            for p in parts {
                h.update(p);
            }
            let r = h.finalize();
            match out.get_mut(..r.len()) {
                Some(o) => {
                    o.copy_from_slice(&r);
                    true
                }
                None => false,
            }
        }
        match alg {
            A::Md5 => run::<md5::Md5>(parts, out),
            A::Sha1 => run::<sha1::Sha1>(parts, out),
            A::Sha256 => run::<sha2::Sha256>(parts, out),
            A::Sha3_256 => run::<sha3::Sha3_256>(parts, out),
        }
    }
}

/// CHAP_A algorithm numbers (RFC 7143 §12.1.3, IANA "PPP Authentication Algorithms").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChapAlg {
    /// 5: MD5.
    Md5,
    /// 6: SHA-1.
    Sha1,
    /// 7: SHA-256.
    Sha256,
    /// 8: SHA3-256.
    Sha3_256,
}

impl ChapAlg {
    /// From the CHAP_A number.
    pub fn from_code(code: u32) -> Option<ChapAlg> {
        Some(match code {
            5 => ChapAlg::Md5,
            6 => ChapAlg::Sha1,
            7 => ChapAlg::Sha256,
            8 => ChapAlg::Sha3_256,
            _ => return None,
        })
    }

    /// The CHAP_A number.
    pub fn code(self) -> u32 {
        match self {
            ChapAlg::Md5 => 5,
            ChapAlg::Sha1 => 6,
            ChapAlg::Sha256 => 7,
            ChapAlg::Sha3_256 => 8,
        }
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            ChapAlg::Md5 => 16,
            ChapAlg::Sha1 => 20,
            ChapAlg::Sha256 | ChapAlg::Sha3_256 => 32,
        }
    }
}

/// The CHAP response `H(id || secret || challenge)` (RFC 1994), written into `out`; returns the
/// number of bytes written, or None if `out` is too short.
pub fn chap_response(alg: ChapAlg, id: u8, secret: &[u8], challenge: &[u8], out: &mut [u8]) -> Option<usize> {
    fn run<D: md5::Digest>(id: u8, secret: &[u8], challenge: &[u8], out: &mut [u8]) -> Option<usize> {
        let mut h = D::new();
        h.update([id]);
        h.update(secret);
        h.update(challenge);
        let r = h.finalize();
        let o = out.get_mut(..r.len())?;
        o.copy_from_slice(&r);
        Some(r.len())
    }
    match alg {
        ChapAlg::Md5 => run::<md5::Md5>(id, secret, challenge, out),
        ChapAlg::Sha1 => run::<sha1::Sha1>(id, secret, challenge, out),
        ChapAlg::Sha256 => run::<sha2::Sha256>(id, secret, challenge, out),
        ChapAlg::Sha3_256 => run::<sha3::Sha3_256>(id, secret, challenge, out),
    }
}

/// Fill `buf` with random bytes from the OS (getrandom(2)).
pub fn random(buf: &mut [u8]) -> std::io::Result<()> {
    getrandom::fill(buf).map_err(|e| std::io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn crc32c_rfc3720_b4() {
        // RFC 3720 appendix B.4: 32 bytes of zeros -> aa 36 91 8a on the wire.
        assert_eq!(crc32c(&[0u8; 32]).to_le_bytes(), [0xaa, 0x36, 0x91, 0x8a]);
        assert_eq!(crc32c(&[0xffu8; 32]).to_le_bytes(), [0x43, 0xab, 0xa8, 0x62]);
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c(&inc).to_le_bytes(), [0x4e, 0x79, 0xdd, 0x46]);
        let dec: Vec<u8> = (0u8..32).rev().collect();
        assert_eq!(crc32c(&dec).to_le_bytes(), [0x5c, 0xdb, 0x3f, 0x11]);
    }

    #[test]
    fn hash_known_answers() {
        // H("abc") with id/secret empty: the published known answers of each hash.
        let mut o = [0u8; 32];
        let n = chap_response(ChapAlg::Md5, b'a', b"bc", b"", &mut o).unwrap();
        assert_eq!(hex(&o[..n]), "900150983cd24fb0d6963f7d28e17f72");
        let n = chap_response(ChapAlg::Sha1, b'a', b"b", b"c", &mut o).unwrap();
        assert_eq!(hex(&o[..n]), "a9993e364706816aba3e25717850c26c9cd0d89d");
        let n = chap_response(ChapAlg::Sha256, b'a', b"", b"bc", &mut o).unwrap();
        assert_eq!(hex(&o[..n]), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let n = chap_response(ChapAlg::Sha3_256, b'a', b"bc", b"", &mut o).unwrap();
        assert_eq!(hex(&o[..n]), "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532");
        assert!(chap_response(ChapAlg::Sha256, 0, b"", b"", &mut [0u8; 16]).is_none());
    }

    #[test]
    fn platform_traits_match_proto_known_answers() {
        use iscsi_proto::chap::{ChapAlgorithm, ChapDigest, MAX_DIGEST_LEN};
        let z = [0u8; 48];
        assert_eq!(iscsi_proto::crc::header_digest(&Platform, &z, &[0u8; 0])[..], crc32c(&z).to_le_bytes()[..]);
        assert_eq!(iscsi_proto::crc::data_digest(&Platform, &[0u8; 32]), [0xaa, 0x36, 0x91, 0x8a]);
        // The trait and the direct function agree on every algorithm.
        for (a, b) in [
            (ChapAlgorithm::Md5, ChapAlg::Md5),
            (ChapAlgorithm::Sha1, ChapAlg::Sha1),
            (ChapAlgorithm::Sha256, ChapAlg::Sha256),
            (ChapAlgorithm::Sha3_256, ChapAlg::Sha3_256),
        ] {
            let mut o1 = [0u8; MAX_DIGEST_LEN];
            assert!(Platform.digest(a, &[&[7], b"secret", b"challenge"], &mut o1));
            let mut o2 = [0u8; 32];
            let n = chap_response(b, 7, b"secret", b"challenge", &mut o2).unwrap();
            assert_eq!(o1[..n], o2[..n]);
        }
    }

    #[test]
    fn random_fills() {
        let mut a = [0u8; 16];
        random(&mut a).unwrap();
        assert_ne!(a, [0u8; 16]);
    }
}
