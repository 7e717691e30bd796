//! One iSCSI TCP connection: whole PDUs in and out, with digests and length bounds.
//!
//! The framing here is the only part of the wire format the driver handles itself; every field
//! beyond "how long is this PDU" is decoded by the protocol core.

use super::digest::Platform;
use super::error::{NetError, Result};
use super::portal::Portal;
use iscsi_proto::crc;
use iscsi_proto::pdu::{self, Digests, PduError};
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
    /// Scratch for outgoing PDUs, reused.
    out: Vec<u8>,
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
            out: Vec::new(),
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

    /// Send one PDU. `bhs` must already hold the right TotalAHSLength and DataSegmentLength.
    pub fn send(&mut self, bhs: &[u8; BHS_LEN], ahs: &[u8], data: &[u8]) -> Result<()> {
        if ahs.len() != pdu::ahs_len_of(bhs) {
            return Err(NetError::Protocol(
                "outgoing AHS length does not match its BHS".into(),
            ));
        }
        if data.len() as u64 != u64::from(pdu::data_segment_len_of(bhs)) {
            return Err(NetError::Protocol(
                "outgoing data length does not match its BHS".into(),
            ));
        }
        if data.len() > self.max_xmit as usize {
            return Err(NetError::Protocol(format!(
                "refusing to send {} data bytes in one PDU, the target accepts {}",
                data.len(),
                self.max_xmit
            )));
        }
        let pad = pdu::pad_len(data.len());
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        out.extend_from_slice(bhs);
        out.extend_from_slice(ahs);
        if self.header_digest {
            let d = crc::header_digest(&Platform, bhs, ahs);
            out.extend_from_slice(&d);
        }
        if !data.is_empty() {
            let start = out.len();
            out.extend_from_slice(data);
            out.extend_from_slice(&[0u8; 3][..pad]);
            if self.data_digest {
                let d = crc::data_digest(&Platform, &out[start..start + data.len()]);
                out.extend_from_slice(&d);
            }
        }
        let r = self
            .stream
            .write_all(&out)
            .map_err(|e| NetError::io(format!("send to {}", self.peer), e));
        if out.capacity() <= 1 << 20 {
            self.out = out;
        }
        r
    }

    /// Receive one whole PDU, verifying digests and refusing a data segment longer than our
    /// MaxRecvDataSegmentLength (nothing is allocated beyond that bound).
    pub fn recv(&mut self) -> Result<RawPdu> {
        let mut bhs = [0u8; BHS_LEN];
        self.read_exact(&mut bhs)?;
        let mut ahs = vec![0u8; pdu::ahs_len_of(&bhs)];
        self.read_exact(&mut ahs)?;
        if self.header_digest {
            let mut d = [0u8; 4];
            self.read_exact(&mut d)?;
            if !crc::verify_header_digest(&Platform, &bhs, &ahs, &d) {
                let want = crc::header_digest(&Platform, &bhs, &ahs);
                return Err(NetError::Digest {
                    what: "header",
                    got: u32::from_le_bytes(d),
                    want: u32::from_le_bytes(want),
                });
            }
        }
        // Only a header we trust says how much follows; proto refuses more than we declared.
        let digests = Digests {
            header: self.header_digest,
            data: self.data_digest,
        };
        let lay = pdu::rx_layout(&bhs, digests, self.max_recv).map_err(|e| match e {
            PduError::DataSegmentTooLarge { len, max } => NetError::Oversize { len, max },
            e => NetError::Protocol(format!("PDU framing: {e:?}")),
        })?;
        let len = lay.data_len;
        let mut data = vec![0u8; len + lay.pad_len];
        self.read_exact(&mut data)?;
        if lay.data_digest_len > 0 {
            let mut d = [0u8; 4];
            self.read_exact(&mut d)?;
            if !crc::verify_data_digest(&Platform, &data, &d) {
                let want = crc::data_digest(&Platform, &data[..len]);
                return Err(NetError::Digest {
                    what: "data",
                    got: u32::from_le_bytes(d),
                    want: u32::from_le_bytes(want),
                });
            }
        }
        data.truncate(len);
        Ok(RawPdu { bhs, ahs, data })
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.stream
            .read_exact(buf)
            .map_err(|e| NetError::io(format!("receive from {}", self.peer), e))
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

    #[test]
    fn round_trip_with_digests_and_padding() {
        let (mut c, mut s) = pair();
        c.set_digests(true, true);
        let bhs = bhs_with(5, 1);
        c.send(&bhs, &[1, 2, 3, 4], b"hello").unwrap();
        let mut wire = vec![0u8; 48 + 4 + 4 + 8 + 4];
        s.read_exact(&mut wire).unwrap();
        // Feed it back: the same framing must decode.
        s.write_all(&wire).unwrap();
        let p = c.recv().unwrap();
        assert_eq!(p.bhs, bhs);
        assert_eq!(p.ahs, vec![1, 2, 3, 4]);
        assert_eq!(p.data, b"hello");
        // Corrupt one data byte: data digest error.
        wire[48 + 4 + 4] ^= 1;
        s.write_all(&wire).unwrap();
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
    fn refuses_to_send_over_target_limit() {
        let (mut c, _s) = pair();
        c.set_limits(512, 4);
        assert!(c.send(&bhs_with(5, 0), &[], b"hello").is_err());
    }

    #[test]
    fn eof_is_closed() {
        let (mut c, s) = pair();
        drop(s);
        assert!(matches!(c.recv(), Err(NetError::Closed(_))));
    }
}
