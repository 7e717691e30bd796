//! One SCSI task as the initiator sees it: every Data-In, R2T and SCSI Response a target sends
//! for the task is checked here, and the driver is told what to do (where the data goes, which
//! Data-Out to send, how the command completes). The driver keeps only the I/O: copying bytes
//! in and out of the command's buffer and completing it.
//!
//! A target is untrusted: a PDU that does not fit the task (data past the buffer, DataSN out
//! of order, data for a write, a second completion) is an error the caller turns into a
//! connection drop (ErrorRecoveryLevel 0), never into memory written out of bounds.

use super::dataout::{DataOutError, DataOutSeq, WriteParams, WritePlan};
use super::pdu::{DataIn, R2t, ScsiResponse};

/// SAM status CHECK CONDITION: the response's data segment carries sense data.
pub const STATUS_CHECK_CONDITION: u8 = 0x02;

/// Why a target's PDU was refused for this task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskError {
    /// The task is already complete (a duplicate or late PDU).
    Completed,
    /// Data-In for a task that reads nothing.
    NotARead,
    /// R2T for a task that writes nothing.
    NotAWrite,
    /// Data-In outside `[0, expected length)`, or not at the next in-order offset.
    BadOffset,
    /// Data-In DataSN is not the next one.
    BadDataSn,
    /// A Data-In carrying status without the F bit, or status with the F bit missing.
    BadFinal,
    /// Both overflow and underflow, or a residual larger than the transfer.
    BadResidual,
    /// The response's sense length runs past its data segment.
    BadSense,
    /// A read completed with fewer bytes than the target said it sent.
    DataMissing,
    /// The R2T does not fit the write (see [`DataOutError`]).
    R2t(DataOutError),
}

impl core::fmt::Display for TaskError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TaskError::Completed => f.write_str("PDU for a completed task"),
            TaskError::NotARead => f.write_str("Data-In for a task that reads nothing"),
            TaskError::NotAWrite => f.write_str("R2T for a task that writes nothing"),
            TaskError::BadOffset => f.write_str("Data-In offset out of order or out of range"),
            TaskError::BadDataSn => f.write_str("Data-In DataSN out of order"),
            TaskError::BadFinal => f.write_str("status without the final bit"),
            TaskError::BadResidual => f.write_str("inconsistent residual"),
            TaskError::BadSense => f.write_str("sense length past the data segment"),
            TaskError::DataMissing => f.write_str("read completed with data missing"),
            TaskError::R2t(e) => write!(f, "bad R2T: {:?}", e),
        }
    }
}

/// How a task ends, for the SCSI midlayer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// The iSCSI response code (0: command completed at target; else a target failure, in
    /// which case `status` means nothing).
    pub response: u8,
    /// SAM status byte.
    pub status: u8,
    /// Bytes of the buffer not transferred (the SCSI residual).
    pub residual: u32,
}

impl Completion {
    /// Whether the target executed the command (whatever its SCSI status).
    pub fn completed_at_target(&self) -> bool {
        self.response == 0
    }
}

/// What to do with a Data-In's data segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataInStep {
    /// Byte offset in the command's buffer where the segment goes; it fits by construction.
    pub offset: u32,
    /// The task completes with this PDU (it carried status).
    pub completion: Option<Completion>,
}

/// A SCSI Response, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseStep<'a> {
    /// How the task completes.
    pub completion: Completion,
    /// Sense data (empty unless CHECK CONDITION with sense).
    pub sense: &'a [u8],
}

/// The initiator's view of one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Task {
    read_len: u32,
    write_len: u32,
    received: u32,
    next_data_sn: u32,
    write: Option<WritePlan>,
    done: bool,
}

/// Residual from a response's U/O flags, checked against the transfer length.
fn residual(underflow: bool, overflow: bool, count: u32, len: u32) -> Result<u32, TaskError> {
    match (underflow, overflow) {
        (true, true) => Err(TaskError::BadResidual),
        (true, false) if count > len => Err(TaskError::BadResidual),
        (true, false) => Ok(count),
        // Overflow: the target had more than the buffer holds; the buffer is full.
        (false, _) => Ok(0),
    }
}

impl Task {
    /// A task reading `read_len` bytes and/or writing `write_len` bytes (both may be zero; both
    /// non-zero for a bidirectional command), with the session's negotiated write parameters.
    pub fn new(read_len: u32, write_len: u32, params: &WriteParams) -> Self {
        Task {
            read_len,
            write_len,
            received: 0,
            next_data_sn: 0,
            write: (write_len > 0).then(|| WritePlan::new(params, write_len)),
            done: false,
        }
    }

    /// The Data-Out plan of a write (immediate and unsolicited data are sent with the command).
    pub fn write_plan(&self) -> Option<&WritePlan> {
        self.write.as_ref()
    }

    /// Whether the task has completed.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Bytes of Data-In accepted so far.
    pub fn received(&self) -> u32 {
        self.received
    }

    /// Checks a Data-In header whose data segment is `data_len` bytes, before the data is
    /// read: the data then goes at the returned offset (DataPDUInOrder and
    /// DataSequenceInOrder are Yes, as we offer them, so Data-In arrives in order).
    pub fn on_data_in(&mut self, pdu: &DataIn, data_len: u32) -> Result<DataInStep, TaskError> {
        if self.done {
            return Err(TaskError::Completed);
        }
        if self.read_len == 0 && data_len > 0 {
            return Err(TaskError::NotARead);
        }
        if pdu.data_sn != self.next_data_sn {
            return Err(TaskError::BadDataSn);
        }
        let end = pdu
            .offset
            .checked_add(data_len)
            .ok_or(TaskError::BadOffset)?;
        if pdu.offset != self.received || end > self.read_len {
            return Err(TaskError::BadOffset);
        }
        if pdu.status_present && !pdu.final_ {
            return Err(TaskError::BadFinal);
        }
        let completion = if pdu.status_present {
            let residual = residual(pdu.underflow, pdu.overflow, pdu.residual, self.read_len)?;
            // What the target says it sent must be what arrived.
            if self.read_len.checked_sub(residual) != Some(end) {
                return Err(TaskError::DataMissing);
            }
            Some(Completion {
                response: 0,
                status: pdu.status,
                residual,
            })
        } else {
            None
        };
        self.received = end;
        self.next_data_sn = self.next_data_sn.wrapping_add(1);
        self.done = completion.is_some();
        Ok(DataInStep {
            offset: pdu.offset,
            completion,
        })
    }

    /// Checks a SCSI Response and its data segment.
    pub fn on_response<'a>(
        &mut self,
        rsp: &ScsiResponse,
        data: &'a [u8],
    ) -> Result<ResponseStep<'a>, TaskError> {
        if self.done {
            return Err(TaskError::Completed);
        }
        self.done = true;
        if rsp.response != 0 {
            return Ok(ResponseStep {
                completion: Completion {
                    response: rsp.response,
                    status: 0,
                    residual: 0,
                },
                sense: &[],
            });
        }
        let len = self.read_len.max(self.write_len);
        let mut residual = residual(rsp.underflow, rsp.overflow, rsp.residual, len)?;
        // A bidirectional command's residual is the write's: nothing to compare.
        if self.write_len == 0 && self.read_len > 0 {
            let unreceived = self.read_len.saturating_sub(self.received);
            if rsp.status == 0 {
                // For a read that succeeded, the data the target says it sent must have
                // arrived.
                if residual != unreceived {
                    return Err(TaskError::DataMissing);
                }
            } else {
                // With any other status a target may send part of the data, or none, without
                // a residual (RFC 7143 section 11.4.5: it is valid only with U or O). What
                // did not arrive is never counted as read: the midlayer takes the residual
                // off what the sense says was good (sd's RECOVERED ERROR, MEDIUM ERROR).
                residual = residual.max(unreceived);
            }
        }
        // RFC 7143 section 11.4.7: SenseLength (2 bytes) then the sense data.
        let sense = match data {
            [] => &[][..],
            [hi, lo, rest @ ..] => {
                let n = usize::from(u16::from_be_bytes([*hi, *lo]));
                rest.get(..n).ok_or(TaskError::BadSense)?
            }
            [_] => return Err(TaskError::BadSense),
        };
        Ok(ResponseStep {
            completion: Completion {
                response: 0,
                status: rsp.status,
                residual,
            },
            sense,
        })
    }

    /// Checks an R2T and returns the Data-Out burst to send; call [`Task::burst_done`] after
    /// its last PDU went out.
    pub fn on_r2t(&mut self, r2t: &R2t) -> Result<DataOutSeq, TaskError> {
        if self.done {
            return Err(TaskError::Completed);
        }
        let plan = self.write.as_mut().ok_or(TaskError::NotAWrite)?;
        plan.on_r2t(r2t).map_err(TaskError::R2t)
    }

    /// The last Data-Out of an R2T's burst has been sent.
    pub fn burst_done(&mut self) {
        if let Some(plan) = self.write.as_mut() {
            plan.burst_done();
        }
    }
}
