//! Data-Out planning for a WRITE (RFC 7143 sections 4.2.5.2 and 13.x): immediate data,
//! unsolicited Data-Out up to FirstBurstLength, then R2T-driven bursts, each PDU at most the
//! target's MaxRecvDataSegmentLength. Plans are plain iterators over (offset, length); the
//! caller sends the bytes from its own buffers.

use super::pdu::{R2t, RESERVED_TAG};
use super::text::Params;

/// The negotiated values a write plan depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteParams {
    /// ImmediateData.
    pub immediate_data: bool,
    /// InitialR2T.
    pub initial_r2t: bool,
    /// FirstBurstLength.
    pub first_burst_length: u32,
    /// MaxBurstLength.
    pub max_burst_length: u32,
    /// The target's MaxRecvDataSegmentLength (our transmit limit).
    pub max_xmit_data_segment_length: u32,
    /// MaxOutstandingR2T.
    pub max_outstanding_r2t: u16,
    /// DataSequenceInOrder: each R2T's offset at or after the end of the one before.
    pub data_sequence_in_order: bool,
}

impl From<&Params> for WriteParams {
    fn from(p: &Params) -> Self {
        WriteParams {
            immediate_data: p.session.immediate_data,
            initial_r2t: p.session.initial_r2t,
            first_burst_length: p.session.first_burst_length,
            max_burst_length: p.session.max_burst_length,
            max_xmit_data_segment_length: p.conn.max_xmit_data_segment_length,
            max_outstanding_r2t: p.session.max_outstanding_r2t,
            data_sequence_in_order: p.session.data_sequence_in_order,
        }
    }
}

/// Data-Out errors (all caused by the target's R2Ts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataOutError {
    /// The R2T asks for bytes beyond the command's transfer length, or for none.
    OutOfRange,
    /// The R2T asks for more than MaxBurstLength.
    BurstTooLong,
    /// More R2Ts outstanding than MaxOutstandingR2T.
    TooManyR2ts,
    /// R2TSN is not the next one expected.
    BadR2tSn,
    /// The R2T asks for data already sent or already asked for: only a recovery R2T may, and
    /// there is none at ErrorRecoveryLevel 0.
    AskedAgain,
}

/// One Data-Out PDU to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataOutPdu {
    /// Buffer offset.
    pub offset: u32,
    /// Data segment length.
    pub len: u32,
    /// DataSN (restarts at 0 in each sequence).
    pub data_sn: u32,
    /// Final bit: last PDU of the sequence.
    pub final_: bool,
    /// Target Transfer Tag (`RESERVED_TAG` for unsolicited data).
    pub ttt: u32,
}

/// The PDUs of one sequence (unsolicited, or one R2T's burst).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataOutSeq {
    offset: u32,
    end: u32,
    max_pdu: u32,
    data_sn: u32,
    ttt: u32,
}

impl DataOutSeq {
    /// A sequence covering `offset..offset+len` in PDUs of at most `max_pdu` bytes.
    pub fn new(offset: u32, len: u32, max_pdu: u32, ttt: u32) -> Self {
        DataOutSeq {
            offset,
            end: offset.saturating_add(len),
            max_pdu: max_pdu.max(1),
            data_sn: 0,
            ttt,
        }
    }

    /// Bytes not yet handed out.
    pub fn remaining(&self) -> u32 {
        self.end.saturating_sub(self.offset)
    }
}

impl Iterator for DataOutSeq {
    type Item = DataOutPdu;

    fn next(&mut self) -> Option<DataOutPdu> {
        let left = self.remaining();
        if left == 0 {
            return None;
        }
        let len = left.min(self.max_pdu);
        let pdu = DataOutPdu {
            offset: self.offset,
            len,
            data_sn: self.data_sn,
            final_: len == left,
            ttt: self.ttt,
        };
        self.offset = self.offset.saturating_add(len);
        self.data_sn = self.data_sn.wrapping_add(1);
        Some(pdu)
    }
}

/// The plan of one WRITE command: what goes with the command, what follows unsolicited, and
/// checks on the R2Ts that ask for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WritePlan {
    params: WriteParams,
    total: u32,
    immediate: u32,
    unsolicited_end: u32,
    outstanding: u16,
    next_r2t_sn: u32,
    /// Bytes asked for by R2Ts so far, and where the last R2T's range ended.
    solicited: u32,
    solicited_end: u32,
}

impl WritePlan {
    /// Plan a write of `total` bytes.
    pub fn new(params: &WriteParams, total: u32) -> Self {
        let p = *params;
        let mrdsl = p.max_xmit_data_segment_length.max(1);
        let fb = p.first_burst_length.min(p.max_burst_length);
        let immediate = if p.immediate_data {
            fb.min(mrdsl).min(total)
        } else {
            0
        };
        let unsolicited_end = if p.initial_r2t {
            immediate
        } else {
            fb.min(total)
        };
        WritePlan {
            params: p,
            total,
            immediate,
            unsolicited_end,
            outstanding: 0,
            next_r2t_sn: 0,
            solicited: 0,
            solicited_end: unsolicited_end,
        }
    }

    /// Bytes that go as immediate data in the SCSI Command PDU (from offset 0).
    pub fn immediate_len(&self) -> u32 {
        self.immediate
    }

    /// Whether the SCSI Command carries the F bit (no unsolicited Data-Out follows).
    pub fn command_final(&self) -> bool {
        self.unsolicited_end == self.immediate
    }

    /// The unsolicited Data-Out PDUs following the command (empty when InitialR2T=Yes).
    pub fn unsolicited(&self) -> DataOutSeq {
        DataOutSeq::new(
            self.immediate,
            self.unsolicited_end.saturating_sub(self.immediate),
            self.params.max_xmit_data_segment_length,
            RESERVED_TAG,
        )
    }

    /// Bytes that the target has to ask for with R2Ts.
    pub fn solicited_len(&self) -> u32 {
        self.total.saturating_sub(self.unsolicited_end)
    }

    /// Check an R2T for this command and return the burst it asks for. Call
    /// [`WritePlan::burst_done`] once the burst's final PDU is sent.
    pub fn on_r2t(&mut self, r2t: &R2t) -> Result<DataOutSeq, DataOutError> {
        let end = r2t
            .offset
            .checked_add(r2t.desired_len)
            .ok_or(DataOutError::OutOfRange)?;
        if r2t.desired_len == 0 || end > self.total {
            return Err(DataOutError::OutOfRange);
        }
        if r2t.desired_len > self.params.max_burst_length {
            return Err(DataOutError::BurstTooLong);
        }
        // R2TSNs of a command count up from 0, each once: at ErrorRecoveryLevel 0 (all this
        // initiator negotiates) there is no recovery R2T repeating an older one.
        if r2t.r2t_sn != self.next_r2t_sn {
            return Err(DataOutError::BadR2tSn);
        }
        if self.outstanding >= self.params.max_outstanding_r2t.max(1) {
            return Err(DataOutError::TooManyR2ts);
        }
        // Each byte past the unsolicited ones is asked for once; in order, each range starts
        // where the last one ended or later. Out of order, overlaps are not tracked, but the
        // bytes asked for add up to at most the solicited length: either way a target cannot
        // ask for the same data for ever.
        let solicited = self
            .solicited
            .checked_add(r2t.desired_len)
            .filter(|&n| n <= self.solicited_len());
        let in_order = !self.params.data_sequence_in_order || r2t.offset >= self.solicited_end;
        let (Some(solicited), true, true) =
            (solicited, in_order, r2t.offset >= self.unsolicited_end)
        else {
            return Err(DataOutError::AskedAgain);
        };
        self.solicited = solicited;
        self.solicited_end = end;
        self.next_r2t_sn = self.next_r2t_sn.wrapping_add(1);
        self.outstanding += 1;
        Ok(DataOutSeq::new(
            r2t.offset,
            r2t.desired_len,
            self.params.max_xmit_data_segment_length,
            r2t.ttt,
        ))
    }

    /// An R2T's burst has been sent completely.
    pub fn burst_done(&mut self) {
        self.outstanding = self.outstanding.saturating_sub(1);
    }

    /// R2Ts whose bursts are not yet complete.
    pub fn outstanding(&self) -> u16 {
        self.outstanding
    }
}
