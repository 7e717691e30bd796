//! A driver of the full-feature-phase engine for the tests (tests/ffp.rs) and the `ffp` fuzz
//! target: it owns the command buffers, places Data-In where the engine says (keeping the CRC
//! over placed bytes, as the kernel will), drains the transmit queue, and checks the engine's
//! promises on every event: a command ends at most once, only commands that were started end,
//! and no placement reaches outside its buffer. It also encodes target PDUs.
#![allow(dead_code)]

use iscsi_proto::crc::{Crc32c, DigestState};
use iscsi_proto::dataout::WriteParams;
use iscsi_proto::ffp_conn::{Conn, ConnConfig, Want, TX_HEADER_MAX};
use iscsi_proto::ffp_event::{Event, Lost};
use iscsi_proto::ffp_session::Session;
use iscsi_proto::ffp_tasks::{CommandSpec, StartError, TaskSlot, OWN_ITT};
use iscsi_proto::ffp_tx::{tx_capacity, TxData, TxSlot};
use iscsi_proto::pdu::{self, Bhs, Digests, Pdu, BHS_LEN};
use std::collections::{HashMap, HashSet};

/// CRC32C from a table (the raw register update the trait asks for; no dependency, so the
/// cargo-fuzz crate can use it too).
pub struct BitCrc;

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut k = 0;
        while k < 8 {
            crc = (crc >> 1) ^ (0x82f6_3b78 & (crc & 1).wrapping_neg());
            k += 1;
        }
        t[i] = crc;
        i += 1;
    }
    t
}

const CRC_TABLE: [u32; 256] = crc_table();

impl Crc32c for BitCrc {
    fn crc32c_update(&self, mut crc: u32, data: &[u8]) -> u32 {
        for &b in data {
            crc = CRC_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
        }
        crc
    }
}

/// A target PDU on the wire: header (digest), data, padding (digest).
pub fn wire(p: Pdu, data: &[u8], digests: Digests) -> Vec<u8> {
    let mut bhs = [0u8; BHS_LEN];
    Bhs {
        total_ahs_words: 0,
        data_segment_len: data.len() as u32,
        pdu: p,
    }
    .encode(&mut bhs)
    .expect("encode");
    let mut out = bhs.to_vec();
    if digests.header {
        let mut d = DigestState::new();
        d.update(&BitCrc, &bhs);
        out.extend_from_slice(&d.finish_wire());
    }
    if !data.is_empty() {
        let start = out.len();
        out.extend_from_slice(data);
        out.extend(std::iter::repeat_n(0, pdu::pad_len(data.len())));
        if digests.data {
            let mut d = DigestState::new();
            d.update(&BitCrc, &out[start..]);
            out.extend_from_slice(&d.finish_wire());
        }
    }
    out
}

/// How a command ended, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Status, residual, response, sense.
    Completed {
        response: u8,
        status: u8,
        residual: u32,
        sense: Vec<u8>,
    },
}

/// A PDU the engine sent, with its data as the driver would send it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub bhs: Bhs,
    pub data: Vec<u8>,
}

/// The engine and everything a driver keeps around it.
pub struct Harness {
    pub sess: Session<Vec<u16>>,
    pub conn: Conn<Vec<TxSlot>, Vec<TaskSlot>>,
    pub digests: Digests,
    /// Command buffers by ITT (reads fill them; writes are sent from them).
    pub bufs: HashMap<u32, Vec<u8>>,
    pub started: HashSet<u32>,
    pub ended: HashMap<u32, Ended>,
    pub events: Vec<String>,
    pub sent: Vec<Sent>,
    /// The answer data of text exchanges.
    pub text: Vec<u8>,
    crc: DigestState,
    pub now: u64,
    /// Offer `receive` exactly what `Want::Bytes` needs (else everything at hand).
    pub exact: bool,
}

pub const DEPTH: usize = 8;

impl Harness {
    pub fn new(digests: Digests, params: WriteParams, nop_interval_ms: u64) -> Harness {
        let capacity = tx_capacity(DEPTH, params.max_outstanding_r2t);
        Harness::with_tx_capacity(digests, params, nop_interval_ms, capacity)
    }

    /// A harness whose transmit queue holds `capacity` entries (fewer than a connection is
    /// given, to reach a full queue).
    pub fn with_tx_capacity(
        digests: Digests,
        params: WriteParams,
        nop_interval_ms: u64,
        capacity: usize,
    ) -> Harness {
        let slots = vec![TaskSlot::default(); DEPTH];
        let tx = vec![TxSlot::default(); capacity];
        Harness {
            sess: Session::new(vec![0; DEPTH], params, 1, DEPTH as u32),
            conn: Conn::new(
                ConnConfig {
                    cid: 0,
                    digests,
                    max_recv: 8192,
                    max_xmit: params.max_xmit_data_segment_length,
                    exp_stat_sn: 1,
                    nop_interval_ms,
                    nop_timeout_ms: 1000,
                    pdu_timeout_ms: 20_000,
                    ping_holds_commands: false,
                },
                tx,
                slots,
                0,
            ),
            digests,
            bufs: HashMap::new(),
            started: HashSet::new(),
            ended: HashMap::new(),
            events: Vec::new(),
            sent: Vec::new(),
            text: Vec::new(),
            crc: DigestState::new(),
            now: 0,
            exact: false,
        }
    }

    /// Starts a command on `tag` reading or writing (a pattern) `len` bytes.
    pub fn start(&mut self, tag: u16, read_len: u32, write_len: u32) -> Result<u32, StartError> {
        let spec = CommandSpec {
            tag,
            queue: (tag % 3) as u8,
            lun: [0; 8],
            cdb: [0x28; 16],
            attr: pdu::task_attr::SIMPLE,
            read_len,
            write_len,
        };
        let itt = self.conn.start_command(&mut self.sess, &spec, self.now)?;
        assert!(itt & OWN_ITT == 0 && itt != pdu::RESERVED_TAG);
        assert!(self.started.insert(itt), "ITT {itt:#x} handed out twice");
        let buf = if write_len > 0 {
            (0..write_len).map(|i| (i % 251) as u8).collect()
        } else {
            vec![0; read_len as usize]
        };
        self.bufs.insert(itt, buf);
        Ok(itt)
    }

    /// Sends a task management request (on LUN 0); its ITT.
    pub fn tmf(&mut self, function: u8, ref_itt: u32) -> u32 {
        self.conn
            .task_mgmt(&mut self.sess, function, [0; 8], ref_itt)
            .expect("task management request")
    }

    /// Feeds received bytes, placing segments and checking every event.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Lost> {
        loop {
            if let Want::Place {
                itt,
                offset,
                len,
                digest,
            } = self.conn.want()
            {
                if bytes.is_empty() {
                    return Ok(());
                }
                let n = len.min(bytes.len());
                let piece = &bytes[..n];
                if itt & OWN_ITT != 0 {
                    assert_eq!(offset as usize, self.text.len(), "text placed out of order");
                    self.text.extend_from_slice(piece);
                } else {
                    let buf = self
                        .bufs
                        .get_mut(&itt)
                        .expect("placement for an unknown ITT");
                    let end = offset as usize + n;
                    assert!(end <= buf.len(), "placement past the buffer");
                    buf[offset as usize..end].copy_from_slice(piece);
                }
                if digest {
                    self.crc.update(&BitCrc, piece);
                }
                let running = self.crc;
                if n == len {
                    self.crc = DigestState::new();
                }
                self.conn.placed(n, running, self.now)?;
                bytes = &bytes[n..];
                continue;
            }
            // As the module will, taking bytes out of socket buffers it cannot put back: never
            // more than the engine says it needs.
            let before = self.conn.want();
            let offer = match (self.exact, before) {
                (true, Want::Bytes { need }) => &bytes[..need.min(bytes.len())],
                _ => bytes,
            };
            let r = self
                .conn
                .receive(&mut self.sess, &BitCrc, offer, self.now)?;
            let used = r.used;
            assert!(
                !self.exact || used == offer.len(),
                "took less than it needed"
            );
            let ev = r.event.map(own_event);
            bytes = &bytes[used..];
            match ev {
                Some(e) => self.on_event(e),
                // No progress: more bytes are needed.
                None if used == 0 && self.conn.want() == before => return Ok(()),
                None => {}
            }
        }
    }

    fn on_event(&mut self, e: OwnedEvent) {
        match e {
            OwnedEvent::Finished { itt, ended } => {
                assert!(
                    self.started.contains(&itt),
                    "{itt:#x} ended but never started"
                );
                assert!(
                    self.ended.insert(itt, ended).is_none(),
                    "{itt:#x} ended twice"
                );
                assert!(
                    self.conn.tasks().get(itt).is_none(),
                    "ended but still in the set"
                );
            }
            OwnedEvent::Other(s) => self.events.push(s),
        }
    }

    /// Sends everything queued; returns the PDUs sent.
    pub fn transmit(&mut self) -> Result<usize, Lost> {
        let mut n = 0;
        while self.transmit_one()? {
            n += 1;
        }
        Ok(n)
    }

    /// Sends the next PDU queued, if any (`Ok(true)`: it is the last of `sent`).
    pub fn transmit_one(&mut self) -> Result<bool, Lost> {
        let mut head = [0u8; TX_HEADER_MAX];
        let Some(p) = self
            .conn
            .poll_transmit(&mut self.sess, &BitCrc, &mut head)?
        else {
            return Ok(false);
        };
        let bhs_bytes: [u8; BHS_LEN] = head[..BHS_LEN].try_into().unwrap();
        let bhs = Bhs::decode(&bhs_bytes).expect("engine wrote a header it cannot decode");
        if self.digests.header {
            let mut d = DigestState::new();
            d.update(&BitCrc, &bhs_bytes);
            assert_eq!(&head[BHS_LEN..BHS_LEN + 4], &d.finish_wire());
        }
        assert_eq!(
            p.header_len,
            BHS_LEN + if self.digests.header { 4 } else { 0 }
        );
        let data = match p.data {
            TxData::None => Vec::new(),
            TxData::Bytes(b) => b.to_vec(),
            TxData::Task { itt, offset, len } => {
                let buf = self.bufs.get(&itt).expect("data of an unknown ITT");
                let end = offset as usize + len as usize;
                assert!(end <= buf.len(), "Data-Out past the buffer");
                buf[offset as usize..end].to_vec()
            }
        };
        assert_eq!(data.len() as u32, bhs.data_segment_len);
        assert_eq!(p.pad, pdu::pad_len(data.len()));
        self.sent.push(Sent { bhs, data });
        Ok(true)
    }
}

/// An event with its borrow dropped.
pub enum OwnedEvent {
    Finished { itt: u32, ended: Ended },
    Other(String),
}

fn own_event(e: Event<'_>) -> OwnedEvent {
    match e {
        Event::Finished(f) => OwnedEvent::Finished {
            itt: f.itt,
            ended: Ended::Completed {
                response: f.completion.response,
                status: f.completion.status,
                residual: f.completion.residual,
                sense: f.sense.to_vec(),
            },
        },
        other => OwnedEvent::Other(format!("{other:?}")),
    }
}
