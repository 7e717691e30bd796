//! Fuzz target bodies, shared by `tests/fuzz.rs` (seeded random inputs and corpus replay under
//! `cargo test`) and the cargo-fuzz crate in `fuzz/`. Each must never panic on any input.
#![allow(dead_code)]

use iscsi_proto::chap::{self, ChapAlgorithm, ChapConfig, ChapDigest, MutualChap, MAX_DIGEST_LEN};
use iscsi_proto::dataout::WriteParams;
use iscsi_proto::login::{Login, LoginConfig, LoginEvent, SessionType};
use iscsi_proto::pdu::Pdu;
use iscsi_proto::pdu::{self, Bhs, Digests};
use iscsi_proto::task::Task;
use iscsi_proto::text::{self, Limits, Negotiation, OfferScope, TextWriter};
use iscsi_proto::{scsi, sendtargets};

#[path = "../ffp_sim/mod.rs"]
pub mod ffp_sim;

/// xorshift64*: the seeded randomness of the bounded fuzz loop and the property tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A fuzz target: corpus directory name and body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target the harness knows, with its corpus directory name.
pub const TARGETS: &[Target] = &[
    ("pdu", pdu_decode),
    ("text", text_parse),
    ("sendtargets", sendtargets_parse),
    ("sense", sense_parse),
    ("report_luns", report_luns_parse),
    ("login", login_machine),
    ("task", task_machine),
    ("ffp", ffp_stream),
];

pub fn pdu_decode(data: &[u8]) {
    let mut b = [0u8; 48];
    let n = data.len().min(48);
    b[..n].copy_from_slice(&data[..n]);
    if let Ok(d) = Bhs::decode(&b) {
        // What decodes re-encodes to a header that decodes to the same thing.
        let mut out = [0u8; 48];
        if d.encode(&mut out).is_ok() {
            assert_eq!(Bhs::decode(&out), Ok(d));
        }
    }
    let _ = pdu::rx_layout(
        &b,
        Digests {
            header: true,
            data: true,
        },
        262_144,
    );
    for a in pdu::parse_ahs(data.get(48..).unwrap_or(&[])) {
        let _ = a;
    }
    let _ = pdu::Lun(b[..8].try_into().unwrap()).number();
}

pub fn text_parse(data: &[u8]) {
    for p in text::pairs(data) {
        let _ = p;
    }
    let mut n = Negotiation::new(&Limits::default(), OfferScope::Leading);
    let _ = n.handle_all(data);
    let p = n.params();
    assert!(p.session.first_burst_length <= p.session.max_burst_length);
    let mut buf = [0u8; 256];
    let _ = n.write_replies(&mut TextWriter::new(&mut buf));
    let mut out = [0u8; 64];
    let _ = chap::decode_binary(data, &mut out);
    let _ = text::parse_number(data);
}

pub fn sendtargets_parse(data: &[u8]) {
    for t in sendtargets::targets(data).flatten() {
        for p in t.portals() {
            let _ = p;
        }
    }
    let _ = sendtargets::parse_address(data);
}

pub fn sense_parse(data: &[u8]) {
    let _ = scsi::parse_sense(data);
    let _ = scsi::sense_from_response(data);
}

pub fn report_luns_parse(data: &[u8]) {
    if let Ok(r) = scsi::parse_report_luns(data) {
        for l in r {
            let _ = l.number();
        }
    }
    let _ = scsi::parse_read_capacity10(data);
    let _ = scsi::parse_read_capacity16(data);
}

struct Hash;

impl ChapDigest for Hash {
    // Cheap and deterministic: the fuzzer explores the state machine, not the hash.
    fn digest(&self, alg: ChapAlgorithm, parts: &[&[u8]], out: &mut [u8; MAX_DIGEST_LEN]) -> bool {
        let mut x = 0u8;
        for p in parts {
            for b in *p {
                x = x.wrapping_mul(31).wrapping_add(*b);
            }
        }
        out[..alg.digest_len()].fill(x);
        true
    }
}

/// Drive a login whose target responses come from the input: a one-byte selector chooses the
/// configuration, then records of [2-byte length][48-byte BHS][data] are fed as responses.
pub fn login_machine(data: &[u8]) {
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let mutual = MutualChap {
        target_user: "t",
        secret: b"target-secret-1",
        challenge: &[1; 16],
        identifier: 3,
    };
    let chap = match sel % 3 {
        0 => None,
        1 => Some(ChapConfig {
            user: "u",
            secret: b"secret-12345678",
            algorithms: &[],
            mutual: None,
        }),
        _ => Some(ChapConfig {
            user: "u",
            secret: b"secret-12345678",
            algorithms: &[ChapAlgorithm::Sha256, ChapAlgorithm::Md5],
            mutual: Some(mutual),
        }),
    };
    let cfg = LoginConfig {
        initiator_name: "iqn.i",
        initiator_alias: None,
        target_name: "iqn.t",
        session_type: if sel & 4 != 0 {
            SessionType::Discovery
        } else {
            SessionType::Normal
        },
        isid: [0; 6],
        tsih: if sel & 8 != 0 { 5 } else { 0 },
        cid: 0,
        itt: 0,
        cmd_sn: 0,
        exp_stat_sn: 0,
        chap,
        limits: Limits::default(),
    };
    let mut rx = [0u8; 2048];
    let mut l = Login::new(&cfg, &Hash, &mut rx);
    let mut out = [0u8; 8192 + 48];
    for _ in 0..64 {
        match l.poll_transmit(&mut out) {
            Ok(_) => {}
            Err(_) => return,
        }
        let Some((len, r)) = rest.split_first_chunk::<2>() else {
            return;
        };
        let len = usize::from(u16::from_be_bytes(*len)) % 4096;
        let Some((bhs, r)) = r.split_first_chunk::<48>() else {
            return;
        };
        let mut bhs = *bhs;
        // Mostly well-formed headers, so the fuzzer gets past the first checks.
        if sel & 16 == 0 {
            bhs[0] = 0x23;
            bhs[8..14].fill(0);
            bhs[16..20].fill(0);
            bhs[3] = 0;
            bhs[36] &= 0x03;
            let dl = (len as u32).min(r.len() as u32);
            bhs[5..8].copy_from_slice(&dl.to_be_bytes()[1..]);
        }
        let dlen = pdu::data_segment_len_of(&bhs) as usize;
        let take = dlen.min(r.len());
        let (d, r) = r.split_at(take);
        rest = r;
        match l.handle_pdu(&bhs, d) {
            Ok(LoginEvent::Complete(c)) => {
                assert!(c.params.session.first_burst_length <= c.params.session.max_burst_length);
                return;
            }
            Ok(LoginEvent::Continue) => {}
            Err(_) => {
                let _ = l.redirect_address();
                return;
            }
        }
    }
}

/// A task fed the PDUs a hostile target makes of the input: whatever they say, the offsets the
/// task hands out stay inside the buffer and the received count never passes the read length.
pub fn task_machine(data: &[u8]) {
    let (head, rest) = data.split_at(data.len().min(8));
    let mut h = [0u8; 8];
    h[..head.len()].copy_from_slice(head);
    let read_len = u32::from_le_bytes([h[0], h[1], h[2], 0]);
    let write_len = u32::from_le_bytes([h[3], h[4], h[5], 0]);
    let params = WriteParams {
        immediate_data: h[6] & 1 != 0,
        initial_r2t: h[6] & 2 != 0,
        first_burst_length: 512 << (h[7] % 8),
        max_burst_length: 512 << (h[7] % 12),
        max_xmit_data_segment_length: 512 << (h[6] % 8),
        max_outstanding_r2t: 1 + u16::from(h[7] % 4),
        data_sequence_in_order: h[6] & 0x80 == 0,
    };
    let mut task = Task::new(read_len, write_len, &params);
    for chunk in rest.chunks(52) {
        let mut b = [0u8; 48];
        let n = chunk.len().min(48);
        b[..n].copy_from_slice(&chunk[..n]);
        let seg = u32::from_le_bytes([
            chunk.get(48).copied().unwrap_or(0),
            chunk.get(49).copied().unwrap_or(0),
            chunk.get(50).copied().unwrap_or(0),
            0,
        ]);
        let Ok(bhs) = Bhs::decode(&b) else { continue };
        match bhs.pdu {
            Pdu::DataIn(d) => {
                if let Ok(step) = task.on_data_in(&d, seg) {
                    let end = u64::from(step.offset) + u64::from(seg);
                    assert!(end <= u64::from(read_len));
                    assert!(task.received() <= read_len);
                }
            }
            Pdu::ScsiResponse(r) => {
                let data = chunk.get(48..).unwrap_or(&[]);
                if let Ok(step) = task.on_response(&r, data) {
                    assert!(step.completion.residual <= read_len.max(write_len));
                }
            }
            Pdu::R2t(r) => {
                if let Ok(burst) = task.on_r2t(&r) {
                    for pdu in burst {
                        assert!(u64::from(pdu.offset) + u64::from(pdu.len) <= u64::from(write_len));
                        assert!(pdu.len <= params.max_xmit_data_segment_length);
                    }
                    task.burst_done();
                }
            }
            _ => {}
        }
    }
}

/// The full-feature-phase engine's receive decoder and connection, as the module will run
/// them: four commands in flight (tag 0 reads 4096 bytes, tag 1 writes 10000, tag 2 reads 600,
/// tag 3 moves nothing; their ITTs are 0x0001_0000, 0x0401_0001, 0x0801_0002, 0x0001_0003),
/// then the input as the target's byte stream, cut into pieces of pseudo-random length, with
/// transmits and timers in between. Byte 0: bit 0 header digest, bit 1 data digest, bit 2
/// InitialR2T, bit 3 no ImmediateData, bit 4 offer `receive` only what `Want::Bytes` needs
/// (as the module will from socket buffers); byte 1 seeds the cuts. The harness asserts the engine's
/// promises (a command ends once, only started commands end, placements stay in their
/// buffers, headers it writes decode); any `Lost` is a fine answer to hostile input.
pub fn ffp_stream(data: &[u8]) {
    let _ = ffp_stream_run(data);
}

/// [`ffp_stream`], telling how many commands ended and why the connection was lost, if it was.
pub fn ffp_stream_run(data: &[u8]) -> (usize, Option<iscsi_proto::ffp_event::Lost>) {
    use iscsi_proto::pdu::Digests;
    let flags = data.first().copied().unwrap_or(0);
    let mut seed = usize::from(data.get(1).copied().unwrap_or(0)) | 1;
    let rest = data.get(2..).unwrap_or(&[]);
    let digests = Digests {
        header: flags & 1 != 0,
        data: flags & 2 != 0,
    };
    let params = WriteParams {
        immediate_data: flags & 8 == 0,
        initial_r2t: flags & 4 != 0,
        first_burst_length: 4096,
        max_burst_length: 8192,
        max_xmit_data_segment_length: 2048,
        max_outstanding_r2t: 2,
        data_sequence_in_order: flags & 32 == 0,
    };
    let mut h = ffp_sim::Harness::new(digests, params, 1000);
    h.exact = flags & 16 != 0;
    for (tag, read, write) in [(0, 4096, 0), (1, 0, 10_000), (2, 600, 0), (3, 0, 0)] {
        h.start(tag, read, write).expect("start");
    }
    let mut at = 0;
    let result = (|| {
        h.transmit()?;
        while at < rest.len() {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let end = (at + 1 + (seed >> 8) % 700).min(rest.len());
            h.now += 300;
            h.feed(&rest[at..end])?;
            h.conn.handle_timeout(&mut h.sess, h.now)?;
            h.transmit()?;
            at = end;
        }
        Ok(())
    })();
    (h.ended.len(), result.err())
}
