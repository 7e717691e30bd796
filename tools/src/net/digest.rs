//! Platform hashes for the protocol core: CRC32C (the `crc32c` crate, hardware accelerated
//! where the CPU has it) and the CHAP digests (RustCrypto `md-5`, `sha1`, `sha2`, `sha3`).

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

/// Fill `buf` with random bytes from the OS (getrandom(2)).
pub fn random(buf: &mut [u8]) -> std::io::Result<()> {
    getrandom::fill(buf).map_err(|e| std::io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use iscsi_proto::chap::{self, ChapAlgorithm, MAX_DIGEST_LEN};
    use iscsi_proto::crc;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn crc32c_rfc3720_b4() {
        // RFC 3720 appendix B.4, through proto's digest functions on this platform.
        assert_eq!(
            crc::data_digest(&Platform, &[0u8; 32]),
            [0xaa, 0x36, 0x91, 0x8a]
        );
        assert_eq!(
            crc::data_digest(&Platform, &[0xffu8; 32]),
            [0x43, 0xab, 0xa8, 0x62]
        );
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc::data_digest(&Platform, &inc), [0x4e, 0x79, 0xdd, 0x46]);
        let dec: Vec<u8> = (0u8..32).rev().collect();
        assert_eq!(crc::data_digest(&Platform, &dec), [0x5c, 0xdb, 0x3f, 0x11]);
        // The header digest is the same function over BHS and AHS.
        let z = [0u8; 48];
        assert_eq!(
            crc::header_digest(&Platform, &z, &[]),
            crc::crc32c(&Platform, &z).to_le_bytes()
        );
    }

    #[test]
    fn hash_known_answers() {
        // H("abc") split over id/secret/challenge: the published known answers of each hash.
        let mut o = [0u8; MAX_DIGEST_LEN];
        let kat = |alg, id, secret: &[u8], ch: &[u8], o: &mut [u8; MAX_DIGEST_LEN]| {
            let n = chap::response(&Platform, alg, id, secret, ch, o).unwrap();
            hex(&o[..n])
        };
        assert_eq!(
            kat(ChapAlgorithm::Md5, b'a', b"bc", b"", &mut o),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            kat(ChapAlgorithm::Sha1, b'a', b"b", b"c", &mut o),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            kat(ChapAlgorithm::Sha256, b'a', b"", b"bc", &mut o),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            kat(ChapAlgorithm::Sha3_256, b'a', b"bc", b"", &mut o),
            "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532"
        );
    }

    #[test]
    fn random_fills() {
        let mut a = [0u8; 16];
        random(&mut a).unwrap();
        assert_ne!(a, [0u8; 16]);
    }
}
