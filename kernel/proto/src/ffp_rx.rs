//! The receive decoder of one connection: the byte stream from the target cut into PDUs, as an
//! explicit state that says what the next bytes are.
//!
//! - **a header**: the BHS, then the AHS and header digest it announces. The decoder keeps these
//!   bytes itself (at most [`HEADER_MAX`]), refuses a data segment longer than our
//!   MaxRecvDataSegmentLength as soon as the BHS is in, and checks the header digest before
//!   anything of the header is believed.
//! - **a data segment**, routed by whoever read the header ([`RxDecoder::route`]): kept (the
//!   decoder hands each piece back to be copied into a small buffer), **placed** (the caller
//!   moves the bytes itself, e.g. from socket buffers straight into a command's pages, and
//!   reports how many with [`RxDecoder::placed`]), or discarded.
//! - **a trailer**: the segment's padding and data digest.
//!
//! Data digests: for kept and discarded segments the decoder runs the CRC over the bytes it is
//! handed. For placed segments it never sees the bytes, so **the caller owns the CRC**: it keeps
//! a [`DigestState`] over the bytes it moves (starting from `DigestState::new()` at the segment's
//! first byte) and passes the running value with every [`RxDecoder::placed`]; the decoder adds
//! the padding and compares with the digest on the wire. A placed segment's bytes are thus in
//! the caller's buffer before its digest is checked: the PDU only counts (its completion is only
//! reported) once the trailer checked out, and a digest error ends the connection.
//!
//! Every length here comes from the target: arithmetic is checked and every slice is taken with
//! `get`.

use super::crc::{Crc32c, DigestState};
use super::pdu::{self, Digests, PduError, RxLayout, BHS_LEN, DIGEST_LEN, MAX_AHS_LEN};

/// The most header bytes a PDU can carry: BHS, the longest AHS and a header digest.
pub const HEADER_MAX: usize = BHS_LEN + MAX_AHS_LEN + DIGEST_LEN;

/// Where a PDU's data segment goes; chosen once its header is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Handed back piece by piece by [`RxDecoder::segment`] for the reader to keep.
    Keep,
    /// Moved by the caller itself (reported with [`RxDecoder::placed`]).
    Place,
    /// Read and dropped (the data digest is still checked).
    Discard,
}

/// What the next bytes of the stream are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Header bytes (BHS, AHS, header digest): `need` more before the header is whole.
    Header {
        /// Bytes still missing.
        need: usize,
    },
    /// The header is whole: the reader must look at it and call [`RxDecoder::route`].
    Route,
    /// Data segment bytes, `left` more of them, going where `route` says.
    Segment {
        /// Where they go.
        route: Route,
        /// Offset within the segment of the next byte.
        offset: usize,
        /// Bytes of the segment still to come.
        left: usize,
    },
    /// Padding and data digest: `need` more bytes.
    Trailer {
        /// Bytes still missing.
        need: usize,
    },
    /// The PDU is whole; [`RxDecoder::next_pdu`] starts the next one.
    Done,
}

/// Why the stream cannot be decoded further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxError {
    /// The header is malformed or announces a segment above our limit.
    Pdu(PduError),
    /// The header digest does not match.
    HeaderDigest {
        /// The digest on the wire.
        got: u32,
        /// The digest of what arrived.
        want: u32,
    },
    /// The data digest does not match.
    DataDigest {
        /// The digest on the wire.
        got: u32,
        /// The digest of what arrived.
        want: u32,
    },
    /// A call that does not fit the decoder's state (a caller bug, refused, not trusted).
    OutOfTurn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Route,
    Segment(Route),
    Trailer,
    Done,
}

/// The receive decoder of one connection (see the module documentation).
#[derive(Debug, Clone)]
pub struct RxDecoder {
    digests: Digests,
    max_recv: u32,
    state: State,
    head: [u8; HEADER_MAX],
    /// Header bytes in so far (BHS first, then the rest).
    head_got: usize,
    layout: RxLayout,
    /// Segment bytes consumed so far.
    seg_got: usize,
    /// The data digest over the segment so far.
    crc: DigestState,
    /// Padding and digest bytes in so far.
    trailer: [u8; 3 + DIGEST_LEN],
    trailer_got: usize,
}

impl RxDecoder {
    /// A decoder for a connection with these digests, accepting data segments up to
    /// `max_recv` bytes (our MaxRecvDataSegmentLength).
    pub fn new(digests: Digests, max_recv: u32) -> Self {
        RxDecoder {
            digests,
            max_recv,
            state: State::Header,
            head: [0; HEADER_MAX],
            head_got: 0,
            layout: RxLayout::default(),
            seg_got: 0,
            crc: DigestState::new(),
            trailer: [0; 3 + DIGEST_LEN],
            trailer_got: 0,
        }
    }

    /// The digests in force.
    pub fn digests(&self) -> Digests {
        self.digests
    }

    /// What the next bytes are.
    pub fn next(&self) -> Next {
        match self.state {
            State::Header => Next::Header {
                need: self.header_len().saturating_sub(self.head_got),
            },
            State::Route => Next::Route,
            State::Segment(route) => Next::Segment {
                route,
                offset: self.seg_got,
                left: self.layout.data_len.saturating_sub(self.seg_got),
            },
            State::Trailer => Next::Trailer {
                need: self.trailer_len().saturating_sub(self.trailer_got),
            },
            State::Done => Next::Done,
        }
    }

    /// Header length once the BHS is in (before, just the BHS).
    fn header_len(&self) -> usize {
        if self.head_got < BHS_LEN {
            BHS_LEN
        } else {
            BHS_LEN + self.layout.ahs_len + self.layout.header_digest_len
        }
    }

    fn trailer_len(&self) -> usize {
        self.layout.pad_len + self.layout.data_digest_len
    }

    /// The BHS of the current PDU (meaningful from [`Next::Route`] on).
    pub fn bhs(&self) -> &[u8; BHS_LEN] {
        match self.head.first_chunk::<BHS_LEN>() {
            Some(b) => b,
            None => &[0; BHS_LEN],
        }
    }

    /// The AHS of the current PDU (meaningful from [`Next::Route`] on).
    pub fn ahs(&self) -> &[u8] {
        self.head
            .get(BHS_LEN..BHS_LEN + self.layout.ahs_len)
            .unwrap_or(&[])
    }

    /// The layout of the current PDU (meaningful from [`Next::Route`] on).
    pub fn layout(&self) -> RxLayout {
        self.layout
    }

    /// Takes header bytes from `bytes`; returns how many were used. Once the header is whole
    /// (and its digest checked) the state is [`Next::Route`].
    pub fn header<C: Crc32c + ?Sized>(&mut self, crc: &C, bytes: &[u8]) -> Result<usize, RxError> {
        if self.state != State::Header {
            return Err(RxError::OutOfTurn);
        }
        let mut used = 0;
        loop {
            let want = self.header_len();
            let need = want.saturating_sub(self.head_got);
            if need == 0 {
                break;
            }
            let src = bytes.get(used..).unwrap_or(&[]);
            let n = need.min(src.len());
            if n == 0 {
                return Ok(used);
            }
            let dst = self
                .head
                .get_mut(self.head_got..self.head_got + n)
                .ok_or(RxError::OutOfTurn)?;
            dst.copy_from_slice(src.get(..n).ok_or(RxError::OutOfTurn)?);
            self.head_got += n;
            used += n;
            if self.head_got == BHS_LEN {
                // The BHS says how much follows: refuse an oversized segment before reading it.
                self.layout = pdu::rx_layout(self.bhs(), self.digests, self.max_recv)
                    .map_err(RxError::Pdu)?;
            }
        }
        if self.layout.header_digest_len > 0 {
            let ahs_end = BHS_LEN + self.layout.ahs_len;
            let wire: &[u8; DIGEST_LEN] = self
                .head
                .get(ahs_end..ahs_end + DIGEST_LEN)
                .and_then(|w| w.try_into().ok())
                .ok_or(RxError::OutOfTurn)?;
            let mut d = DigestState::new();
            d.update(crc, self.head.get(..ahs_end).unwrap_or(&[]));
            if d.finish_wire() != *wire {
                return Err(RxError::HeaderDigest {
                    got: u32::from_le_bytes(*wire),
                    want: d.finish(),
                });
            }
        }
        self.state = State::Route;
        Ok(used)
    }

    /// Says where the data segment goes (after [`Next::Route`]). A PDU without data skips to
    /// its end.
    pub fn route(&mut self, route: Route) -> Result<(), RxError> {
        if self.state != State::Route {
            return Err(RxError::OutOfTurn);
        }
        self.seg_got = 0;
        self.crc = DigestState::new();
        self.trailer_got = 0;
        self.state = if self.layout.data_len > 0 {
            State::Segment(route)
        } else {
            State::Done
        };
        Ok(())
    }

    /// Takes segment bytes of a kept or discarded segment from `bytes`: returns the piece used
    /// and its offset in the segment (the reader copies a kept piece where it wants it).
    pub fn segment<'b, C: Crc32c + ?Sized>(
        &mut self,
        crc: &C,
        bytes: &'b [u8],
    ) -> Result<(usize, &'b [u8]), RxError> {
        match self.state {
            State::Segment(Route::Keep) | State::Segment(Route::Discard) => {}
            _ => return Err(RxError::OutOfTurn),
        }
        let at = self.seg_got;
        let n = self.layout.data_len.saturating_sub(at).min(bytes.len());
        let piece = bytes.get(..n).ok_or(RxError::OutOfTurn)?;
        if self.digests.data {
            self.crc.update(crc, piece);
        }
        self.advance_segment(n)?;
        Ok((at, piece))
    }

    /// `n` more bytes of a placed segment were moved by the caller; `running` is its CRC over
    /// the segment so far (ignored without data digests; see the module documentation).
    pub fn placed(&mut self, n: usize, running: DigestState) -> Result<(), RxError> {
        if self.state != State::Segment(Route::Place) {
            return Err(RxError::OutOfTurn);
        }
        if n > self.layout.data_len.saturating_sub(self.seg_got) {
            return Err(RxError::OutOfTurn);
        }
        self.crc = running;
        self.advance_segment(n)
    }

    fn advance_segment(&mut self, n: usize) -> Result<(), RxError> {
        self.seg_got = self.seg_got.checked_add(n).ok_or(RxError::OutOfTurn)?;
        if self.seg_got >= self.layout.data_len {
            self.state = State::Trailer;
        }
        Ok(())
    }

    /// Takes padding and data digest bytes; returns how many were used. Once they are all in,
    /// the digest is checked and the state is [`Next::Done`].
    pub fn trailer<C: Crc32c + ?Sized>(&mut self, crc: &C, bytes: &[u8]) -> Result<usize, RxError> {
        if self.state != State::Trailer {
            return Err(RxError::OutOfTurn);
        }
        let total = self.trailer_len();
        let n = total.saturating_sub(self.trailer_got).min(bytes.len());
        let dst = self
            .trailer
            .get_mut(self.trailer_got..self.trailer_got + n)
            .ok_or(RxError::OutOfTurn)?;
        dst.copy_from_slice(bytes.get(..n).ok_or(RxError::OutOfTurn)?);
        self.trailer_got += n;
        if self.trailer_got < total {
            return Ok(n);
        }
        if self.layout.data_digest_len > 0 {
            let pad = self.layout.pad_len;
            let mut d = self.crc;
            // The digest covers the padding as sent.
            d.update(crc, self.trailer.get(..pad).unwrap_or(&[]));
            let wire: [u8; DIGEST_LEN] = self
                .trailer
                .get(pad..pad + DIGEST_LEN)
                .and_then(|w| w.try_into().ok())
                .ok_or(RxError::OutOfTurn)?;
            if d.finish_wire() != wire {
                return Err(RxError::DataDigest {
                    got: u32::from_le_bytes(wire),
                    want: d.finish(),
                });
            }
        }
        self.state = State::Done;
        Ok(n)
    }

    /// Starts the next PDU (after [`Next::Done`]).
    pub fn next_pdu(&mut self) -> Result<(), RxError> {
        if self.state != State::Done {
            return Err(RxError::OutOfTurn);
        }
        self.state = State::Header;
        self.head_got = 0;
        self.layout = RxLayout::default();
        Ok(())
    }

    /// Bytes of the current PDU on the wire (meaningful at [`Next::Done`]).
    pub fn wire_len(&self) -> usize {
        BHS_LEN.saturating_add(self.layout.remaining())
    }
}
