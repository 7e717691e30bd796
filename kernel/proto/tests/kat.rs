//! Known-answer tests: CRC32C (RFC 3720 appendix B.4), the hash functions behind CHAP (published
//! test vectors), and CHAP responses computed by hand.
mod common;
use common::*;
use iscsi_proto::chap::{self, ChapAlgorithm, ChapDigest, MAX_DIGEST_LEN};
use iscsi_proto::crc::{self, DigestState};

#[test]
fn rfc3720_b4_crc32c() {
    let zeros = [0u8; 32];
    let ones = [0xffu8; 32];
    let inc: Vec<u8> = (0..32).collect();
    let dec: Vec<u8> = (0..32).rev().collect();
    assert_eq!(crc::crc32c(&SwCrc, &zeros), 0x8a91_36aa);
    assert_eq!(crc::crc32c(&SwCrc, &ones), 0x62a8_ab43);
    assert_eq!(crc::crc32c(&SwCrc, &inc), 0x46dd_794e);
    assert_eq!(crc::crc32c(&SwCrc, &dec), 0x113f_db5c);
    // The wire form is least significant byte first, as the RFC lists it.
    let mut d = DigestState::new();
    d.update(&SwCrc, &zeros);
    assert_eq!(d.finish_wire(), [0xaa, 0x36, 0x91, 0x8a]);
    // The iSCSI Read (10) command PDU of B.4.
    let pdu = hex(
        "01c00000 00000000 00000000 00000000 14000000 00000400 00000014 00000018
         28000000 00000000 02000000 00000000",
    );
    let bhs: [u8; 48] = pdu.try_into().unwrap();
    assert_eq!(crc::crc32c(&SwCrc, &bhs), 0xd996_3a56);
    assert_eq!(
        crc::header_digest(&SwCrc, &bhs, &[]),
        [0x56, 0x3a, 0x96, 0xd9]
    );
    assert!(crc::verify_header_digest(
        &SwCrc,
        &bhs,
        &[],
        &[0x56, 0x3a, 0x96, 0xd9]
    ));
    assert!(!crc::verify_header_digest(
        &SwCrc,
        &bhs,
        &[],
        &[0x56, 0x3a, 0x96, 0xd8]
    ));
}

#[test]
fn crc_incremental_equals_whole_and_padding() {
    let data: Vec<u8> = (0..1001u32).map(|i| (i * 7) as u8).collect();
    let mut d = DigestState::new();
    for c in data.chunks(13) {
        d.update(&SwCrc, c);
    }
    assert_eq!(d.finish(), crc::crc32c(&SwCrc, &data));
    // The data digest covers the zero padding.
    let mut padded = data.clone();
    padded.extend_from_slice(&[0, 0, 0]);
    assert_eq!(
        crc::data_digest(&SwCrc, &data),
        crc::crc32c(&SwCrc, &padded).to_le_bytes()
    );
    assert!(crc::verify_data_digest(
        &SwCrc,
        &padded,
        &crc::data_digest(&SwCrc, &data)
    ));
    // "123456789" is the standard CRC-32C check value.
    assert_eq!(crc::crc32c(&SwCrc, b"123456789"), 0xe306_9283);
}

fn h(alg: ChapAlgorithm, parts: &[&[u8]]) -> Vec<u8> {
    let mut out = [0u8; MAX_DIGEST_LEN];
    assert!(SwHash.digest(alg, parts, &mut out));
    out[..alg.digest_len()].to_vec()
}

#[test]
fn hash_known_answers() {
    // RFC 1321, FIPS 180 and FIPS 202 published answers for "abc" and "".
    assert_eq!(
        h(ChapAlgorithm::Md5, &[b"abc"]),
        hex("900150983cd24fb0d6963f7d28e17f72")
    );
    assert_eq!(
        h(ChapAlgorithm::Md5, &[b""]),
        hex("d41d8cd98f00b204e9800998ecf8427e")
    );
    assert_eq!(
        h(ChapAlgorithm::Sha1, &[b"abc"]),
        hex("a9993e364706816aba3e25717850c26c9cd0d89d")
    );
    assert_eq!(
        h(ChapAlgorithm::Sha256, &[b"abc"]),
        hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    assert_eq!(
        h(ChapAlgorithm::Sha3_256, &[b"abc"]),
        hex("3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532")
    );
    // Splitting the input must not matter.
    assert_eq!(
        h(ChapAlgorithm::Md5, &[b"a", b"", b"bc"]),
        h(ChapAlgorithm::Md5, &[b"abc"])
    );
}

#[test]
fn chap_response_by_hand() {
    // MD5(0x01 || "secret" || 0x00 01 02 03): the id byte, then the secret, then the challenge.
    let mut msg = vec![1u8];
    msg.extend_from_slice(b"secret");
    msg.extend_from_slice(&[0, 1, 2, 3]);
    let expect = h(ChapAlgorithm::Md5, &[&msg]);
    let mut out = [0u8; MAX_DIGEST_LEN];
    let n = chap::response(
        &SwHash,
        ChapAlgorithm::Md5,
        1,
        b"secret",
        &[0, 1, 2, 3],
        &mut out,
    )
    .unwrap();
    assert_eq!(&out[..n], &expect[..]);
    // Fixed vectors, computed independently (Python hashlib) over "\x01secret\x00\x01\x02\x03".
    assert_eq!(expect, hex("e82cb2ed1efe04893c9cf73d4dd12e2d"));
    assert_eq!(
        h(ChapAlgorithm::Sha256, &[&msg]),
        hex("60ad105214396c736e4569759380672905396143713449e104a2be1e885b5d06")
    );
    let cfg = chap::ChapConfig {
        user: "u",
        secret: b"secret",
        algorithms: &[],
        mutual: None,
    };
    let a = chap::answer_challenge(&cfg, &SwHash, b"5", b"1", b"0x00010203").unwrap();
    assert_eq!(a.bytes(), &expect[..]);
    // Base64 form of the same challenge gives the same answer.
    let b = chap::answer_challenge(&cfg, &SwHash, b"5", b"1", b"0bAAECAw==").unwrap();
    assert_eq!(a, b);
    // SHA-256 when offered.
    let cfg256 = chap::ChapConfig {
        algorithms: &[ChapAlgorithm::Sha256, ChapAlgorithm::Md5],
        ..cfg
    };
    let c = chap::answer_challenge(&cfg256, &SwHash, b"7", b"0x01", b"0x00010203").unwrap();
    assert_eq!(c.bytes(), &h(ChapAlgorithm::Sha256, &[&msg])[..]);
    // Not offered: refused.
    assert_eq!(
        chap::answer_challenge(&cfg, &SwHash, b"7", b"1", b"0x00"),
        Err(chap::ChapError::AlgorithmNotOffered)
    );
    assert_eq!(
        chap::answer_challenge(&cfg, &NoHash, b"5", b"1", b"0x00"),
        Err(chap::ChapError::DigestUnavailable)
    );
}

#[test]
fn binary_encodings() {
    let mut out = [0u8; 16];
    assert_eq!(chap::decode_binary(b"0xABcd01", &mut out), Ok(3));
    assert_eq!(&out[..3], &[0xab, 0xcd, 0x01]);
    assert_eq!(chap::decode_binary(b"0x123", &mut out), Ok(2));
    assert_eq!(&out[..2], &[0x01, 0x23]);
    assert_eq!(chap::decode_binary(b"0bTWFu", &mut out), Ok(3));
    assert_eq!(&out[..3], b"Man");
    assert_eq!(chap::decode_binary(b"0bTWE=", &mut out), Ok(2));
    assert_eq!(chap::decode_binary(b"0BTQ==", &mut out), Ok(1));
    assert_eq!(&out[..1], b"M");
    for bad in [
        &b"0x"[..],
        b"0xzz",
        b"1234",
        b"0bT",
        b"0b====",
        b"0bTQ=",
        b"",
    ] {
        assert!(chap::decode_binary(bad, &mut out).is_err(), "{:?}", bad);
    }
    // Too long for the buffer is an error, not a panic.
    assert!(chap::decode_binary(
        &[b'0', b'x']
            .iter()
            .chain([b'a'; 40].iter())
            .copied()
            .collect::<Vec<_>>(),
        &mut out
    )
    .is_err());
    assert!(chap::ct_eq(b"abc", b"abc"));
    assert!(!chap::ct_eq(b"abc", b"abd"));
    assert!(!chap::ct_eq(b"abc", b"ab"));
}
