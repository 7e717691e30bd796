//! One iSCSI TCP connection: the socket, a receive buffer, and whole login PDUs.
//!
//! The framing is proto's: login responses are cut by its receive decoder
//! (`iscsi_proto::ffp_rx`), the same one the full-feature-phase engine runs, and in the full
//! feature phase the session hands the buffered bytes to that engine ([`Connection::buffered`],
//! [`Connection::consume`]) and writes what it produces ([`Connection::write_all`]).

use super::digest::Platform;
use super::error::{NetError, Result};
use super::portal::Portal;
use iscsi_proto::ffp_rx::{Next, Route, RxDecoder, RxError};
use iscsi_proto::pdu::{Digests, PduError};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub use iscsi_proto::pdu::BHS_LEN;

/// The MaxRecvDataSegmentLength that applies before negotiation (RFC 7143 §13.12) and to login
/// and text PDUs.
pub const DEFAULT_MRDSL: u32 = 8192;

/// Timeouts for a connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// Each read and each write.
    pub io: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            io: Duration::from_secs(30),
        }
    }
}

/// A received PDU: header, additional header segments and data (without padding or digests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPdu {
    /// The 48-byte Basic Header Segment.
    pub bhs: [u8; BHS_LEN],
    /// The AHS bytes (TotalAHSLength * 4).
    pub ahs: Vec<u8>,
    /// The data segment, exactly DataSegmentLength bytes.
    pub data: Vec<u8>,
}

impl RawPdu {
    /// The opcode (low six bits of byte 0).
    pub fn opcode(&self) -> u8 {
        self.bhs[0] & 0x3f
    }
}

/// One TCP connection to a target.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    header_digest: bool,
    data_digest: bool,
    /// The most data we accept in one PDU (our MaxRecvDataSegmentLength).
    max_recv: u32,
    /// The most data we may send in one PDU (the target's MaxRecvDataSegmentLength).
    max_xmit: u32,
    /// Bytes read from the socket; `rx[rx_at..rx_end]` are not consumed yet.
    rx: Vec<u8>,
    rx_at: usize,
    rx_end: usize,
}

/// Bytes read from the socket at once.
const RX_BUF: usize = 64 * 1024;

/// A framing error as the driver reports it.
pub fn rx_error(e: RxError) -> NetError {
    match e {
        RxError::Pdu(PduError::DataSegmentTooLarge { len, max }) => NetError::Oversize { len, max },
        RxError::Pdu(e) => NetError::Protocol(format!("PDU framing: {e:?}")),
        RxError::HeaderDigest { got, want } => NetError::Digest {
            what: "header",
            got,
            want,
        },
        RxError::DataDigest { got, want } => NetError::Digest {
            what: "data",
            got,
            want,
        },
        RxError::OutOfTurn => NetError::Protocol("receive decoder called out of turn".into()),
    }
}

impl Connection {
    /// Connect to the first address of `portal` that answers, within `t.connect` each.
    pub fn connect(portal: &Portal, t: Timeouts) -> Result<Connection> {
        let addrs = portal.resolve()?;
        let mut last = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, t.connect) {
                Ok(s) => return Connection::from_stream(s, t),
                Err(e) => last = Some(NetError::io(format!("connect to {a}"), e)),
            }
        }
        Err(last.unwrap_or_else(|| NetError::Portal {
            portal: portal.to_string(),
            reason: "no address".into(),
        }))
    }

    /// Wrap an already connected stream.
    pub fn from_stream(stream: TcpStream, t: Timeouts) -> Result<Connection> {
        let peer = stream
            .peer_addr()
            .map_err(|e| NetError::io("peer address", e))?;
        stream
            .set_read_timeout(Some(t.io))
            .map_err(|e| NetError::io("set read timeout", e))?;
        stream
            .set_write_timeout(Some(t.io))
            .map_err(|e| NetError::io("set write timeout", e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| NetError::io("set TCP_NODELAY", e))?;
        Ok(Connection {
            stream,
            peer,
            header_digest: false,
            data_digest: false,
            max_recv: DEFAULT_MRDSL,
            max_xmit: DEFAULT_MRDSL,
            rx: vec![0; RX_BUF],
            rx_at: 0,
            rx_end: 0,
        })
    }

    /// The target's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Our own address.
    pub fn local(&self) -> Option<SocketAddr> {
        self.stream.local_addr().ok()
    }

    /// Turn digests on or off (after the login's final response).
    pub fn set_digests(&mut self, header: bool, data: bool) {
        self.header_digest = header;
        self.data_digest = data;
    }

    /// Whether header / data digests are on.
    pub fn digests(&self) -> (bool, bool) {
        (self.header_digest, self.data_digest)
    }

    /// Set the data segment bounds: what we accept, and what the target accepts.
    pub fn set_limits(&mut self, max_recv: u32, max_xmit: u32) {
        self.max_recv = max_recv;
        self.max_xmit = max_xmit;
    }

    /// The most data we may put in one outgoing PDU.
    pub fn max_xmit(&self) -> u32 {
        self.max_xmit
    }

    /// The most data we accept in one incoming PDU.
    pub fn max_recv(&self) -> u32 {
        self.max_recv
    }

    /// Write `bytes` (whole PDUs, or a PDU's parts in order).
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream
            .write_all(bytes)
            .map_err(|e| NetError::io(format!("send to {}", self.peer), e))
    }

    /// The received bytes not consumed yet (none read here).
    pub fn buffered(&self) -> &[u8] {
        &self.rx[self.rx_at..self.rx_end]
    }

    /// Reads from the socket (blocking, within the I/O timeout) if nothing is buffered; the
    /// end of the stream is [`NetError::Closed`].
    pub fn fill(&mut self) -> Result<()> {
        if self.rx_at < self.rx_end {
            return Ok(());
        }
        self.rx_at = 0;
        self.rx_end = 0;
        let n = self
            .stream
            .read(&mut self.rx)
            .map_err(|e| NetError::io(format!("receive from {}", self.peer), e))?;
        if n == 0 {
            return Err(NetError::Closed(format!("receive from {}", self.peer)));
        }
        self.rx_end = n;
        Ok(())
    }

    /// `n` bytes of [`Connection::buffered`] were used.
    pub fn consume(&mut self, n: usize) {
        self.rx_at = (self.rx_at + n).min(self.rx_end);
    }

    /// Receive one whole PDU (login: no engine yet), through proto's receive decoder: digests
    /// verified, a data segment longer than our MaxRecvDataSegmentLength refused before
    /// anything of it is read or allocated.
    pub fn recv(&mut self) -> Result<RawPdu> {
        let digests = Digests {
            header: self.header_digest,
            data: self.data_digest,
        };
        let mut dec = RxDecoder::new(digests, self.max_recv);
        let mut data = Vec::new();
        loop {
            match dec.next() {
                Next::Route => {
                    data = vec![0; dec.layout().data_len];
                    dec.route(Route::Keep).map_err(rx_error)?;
                }
                Next::Done => {
                    return Ok(RawPdu {
                        bhs: *dec.bhs(),
                        ahs: dec.ahs().to_vec(),
                        data,
                    });
                }
                // A trailer of nothing (no padding, no digest) ends without reading.
                Next::Trailer { need: 0 } => {
                    dec.trailer(&Platform, &[]).map_err(rx_error)?;
                }
                next => {
                    self.fill()?;
                    let bytes = &self.rx[self.rx_at..self.rx_end];
                    let used = match next {
                        Next::Header { .. } => dec.header(&Platform, bytes).map_err(rx_error)?,
                        Next::Trailer { .. } => dec.trailer(&Platform, bytes).map_err(rx_error)?,
                        _ => {
                            let (at, piece) = dec.segment(&Platform, bytes).map_err(rx_error)?;
                            if let Some(dst) = data.get_mut(at..at + piece.len()) {
                                dst.copy_from_slice(piece);
                            }
                            piece.len()
                        }
                    };
                    self.consume(used);
                }
            }
        }
    }

    /// Close the TCP connection (both directions).
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (Connection, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        let c = Connection::connect(
            &Portal {
                host: "127.0.0.1".into(),
                port: a.port(),
            },
            Timeouts {
                connect: Duration::from_secs(2),
                io: Duration::from_secs(2),
            },
        )
        .unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    fn bhs_with(len: u32, ahs_words: u8) -> [u8; BHS_LEN] {
        let mut b = [0u8; BHS_LEN];
        b[0] = 0x25;
        b[4] = ahs_words;
        b[5..8].copy_from_slice(&len.to_be_bytes()[1..]);
        b
    }

    /// A PDU on the wire with the digests computed here, independently of the decoder.
    fn wire(bhs: &[u8; BHS_LEN], ahs: &[u8], data: &[u8], hd: bool, dd: bool) -> Vec<u8> {
        use iscsi_proto::crc;
        let mut w = bhs.to_vec();
        w.extend_from_slice(ahs);
        if hd {
            w.extend_from_slice(&crc::header_digest(&Platform, bhs, ahs));
        }
        if !data.is_empty() {
            w.extend_from_slice(data);
            w.extend_from_slice(&[0u8; 3][..iscsi_proto::pdu::pad_len(data.len())]);
            if dd {
                w.extend_from_slice(&crc::data_digest(&Platform, data));
            }
        }
        w
    }

    #[test]
    fn receives_with_digests_and_padding() {
        let (mut c, mut s) = pair();
        c.set_digests(true, true);
        let bhs = bhs_with(5, 1);
        let mut w = wire(&bhs, &[1, 2, 3, 4], b"hello", true, true);
        // Two PDUs in one write: the second comes from the buffer.
        let both = [w.clone(), w.clone()].concat();
        s.write_all(&both).unwrap();
        for _ in 0..2 {
            let p = c.recv().unwrap();
            assert_eq!(p.bhs, bhs);
            assert_eq!(p.ahs, vec![1, 2, 3, 4]);
            assert_eq!(p.data, b"hello");
        }
        // Corrupt one data byte: data digest error.
        w[48 + 4 + 4] ^= 1;
        s.write_all(&w).unwrap();
        assert!(matches!(
            c.recv(),
            Err(NetError::Digest { what: "data", .. })
        ));
    }

    #[test]
    fn header_digest_mismatch() {
        let (mut c, mut s) = pair();
        c.set_digests(true, false);
        let mut wire = bhs_with(0, 0).to_vec();
        wire.extend_from_slice(&[0, 0, 0, 0]);
        s.write_all(&wire).unwrap();
        assert!(matches!(
            c.recv(),
            Err(NetError::Digest { what: "header", .. })
        ));
    }

    #[test]
    fn refuses_oversized_segment_without_allocating() {
        let (mut c, mut s) = pair();
        c.set_limits(512, 512);
        s.write_all(&bhs_with(0xff_ffff, 0)).unwrap();
        match c.recv() {
            Err(NetError::Oversize { len, max }) => assert_eq!((len, max), (0xff_ffff, 512)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn eof_is_closed() {
        let (mut c, s) = pair();
        drop(s);
        assert!(matches!(c.recv(), Err(NetError::Closed(_))));
    }
}
