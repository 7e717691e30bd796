//! Basic Header Segment (BHS) encode/decode for every RFC 7143 opcode, AHS, padding, LUNs and the
//! receive-length computation.
//!
//! Reserved fields are written as zero and ignored on receive (RFC 7143 section 11.2), so that a
//! sloppy but harmless target still interoperates; fields whose values would make us misbehave
//! (reserved opcodes and stages, contradictory flag pairs) are errors.

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;
/// Largest data segment length the 24-bit field can carry.
pub const MAX_DATA_SEGMENT_LEN: u32 = 0x00ff_ffff;
/// The reserved Initiator Task Tag / Target Transfer Tag value.
pub const RESERVED_TAG: u32 = 0xffff_ffff;
/// Length of a CRC32C digest on the wire.
pub const DIGEST_LEN: usize = 4;
/// Largest total AHS length in bytes (the field counts 4-byte words in one byte).
pub const MAX_AHS_LEN: usize = 255 * 4;

/// Errors from PDU encoding and decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PduError {
    /// The opcode is reserved, or not one the receiving side may get.
    InvalidOpcode(u8),
    /// A login stage field holds the reserved value 2.
    ReservedStage,
    /// Login or Text PDU with both the Transit/Final and the Continue bits set.
    TransitWithContinue,
    /// Flags that contradict each other (e.g. overflow and underflow together).
    BadFlags,
    /// The data segment is larger than what was negotiated or fits in 24 bits.
    DataSegmentTooLarge {
        /// Length announced or requested.
        len: u32,
        /// Largest length allowed.
        max: u32,
    },
    /// The output (or input) buffer is too small.
    BufferTooSmall,
    /// A CDB is longer than the AHS can carry, or shorter than the BHS needs.
    BadCdbLength,
    /// An AHS is malformed (truncated or longer than the total AHS length).
    BadAhs,
}

/// Login stages (CSG / NSG values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Security negotiation (0).
    Security = 0,
    /// Login operational negotiation (1).
    Operational = 1,
    /// Full feature phase (3).
    FullFeature = 3,
}

impl Stage {
    fn from_bits(b: u8) -> Result<Self, PduError> {
        match b & 3 {
            0 => Ok(Stage::Security),
            1 => Ok(Stage::Operational),
            3 => Ok(Stage::FullFeature),
            _ => Err(PduError::ReservedStage),
        }
    }
}

/// Opcode numbers (the low six bits of byte 0).
pub mod opcode {
    /// NOP-Out.
    pub const NOP_OUT: u8 = 0x00;
    /// SCSI Command.
    pub const SCSI_CMD: u8 = 0x01;
    /// Task Management Function Request.
    pub const TASK_MGMT_REQ: u8 = 0x02;
    /// Login Request.
    pub const LOGIN_REQ: u8 = 0x03;
    /// Text Request.
    pub const TEXT_REQ: u8 = 0x04;
    /// SCSI Data-Out.
    pub const DATA_OUT: u8 = 0x05;
    /// Logout Request.
    pub const LOGOUT_REQ: u8 = 0x06;
    /// SNACK Request.
    pub const SNACK: u8 = 0x10;
    /// NOP-In.
    pub const NOP_IN: u8 = 0x20;
    /// SCSI Response.
    pub const SCSI_RSP: u8 = 0x21;
    /// Task Management Function Response.
    pub const TASK_MGMT_RSP: u8 = 0x22;
    /// Login Response.
    pub const LOGIN_RSP: u8 = 0x23;
    /// Text Response.
    pub const TEXT_RSP: u8 = 0x24;
    /// SCSI Data-In.
    pub const DATA_IN: u8 = 0x25;
    /// Logout Response.
    pub const LOGOUT_RSP: u8 = 0x26;
    /// Ready To Transfer.
    pub const R2T: u8 = 0x31;
    /// Asynchronous Message.
    pub const ASYNC_MSG: u8 = 0x32;
    /// Reject.
    pub const REJECT: u8 = 0x3f;
}

/// Reject reason codes (RFC 7143 section 11.17.1) the engine tells apart.
pub mod reject_reason {
    /// Data (payload) digest error: the PDU may be sent again (at ErrorRecoveryLevel 1).
    pub const DATA_DIGEST_ERROR: u8 = 0x02;
    /// Too many immediate commands.
    pub const IMMEDIATE_COMMANDS: u8 = 0x06;
    /// Long operation reject: no Target Transfer Tag to be had, out of resources.
    pub const OUT_OF_RESOURCES: u8 = 0x0a;
    /// The target waits for a logout (it asked for one).
    pub const WAITING_FOR_LOGOUT: u8 = 0x0c;

    /// Whether a PDU rejected so may well be taken when sent again: the reason is a passing
    /// state of the target or of the wire, not something wrong with the PDU.
    pub fn passing(reason: u8) -> bool {
        matches!(
            reason,
            DATA_DIGEST_ERROR | IMMEDIATE_COMMANDS | OUT_OF_RESOURCES | WAITING_FOR_LOGOUT
        )
    }
}

/// Task management function codes (RFC 7143 section 11.5.1).
pub mod tmf {
    /// ABORT TASK.
    pub const ABORT_TASK: u8 = 1;
    /// ABORT TASK SET.
    pub const ABORT_TASK_SET: u8 = 2;
    /// CLEAR ACA.
    pub const CLEAR_ACA: u8 = 3;
    /// CLEAR TASK SET.
    pub const CLEAR_TASK_SET: u8 = 4;
    /// LOGICAL UNIT RESET.
    pub const LOGICAL_UNIT_RESET: u8 = 5;
    /// TARGET WARM RESET.
    pub const TARGET_WARM_RESET: u8 = 6;
    /// TARGET COLD RESET.
    pub const TARGET_COLD_RESET: u8 = 7;
    /// TASK REASSIGN.
    pub const TASK_REASSIGN: u8 = 8;
}

/// Logout reason codes (RFC 7143 section 11.14.1).
pub mod logout_reason {
    /// Close the session.
    pub const CLOSE_SESSION: u8 = 0;
    /// Close the connection.
    pub const CLOSE_CONNECTION: u8 = 1;
    /// Remove the connection for recovery.
    pub const REMOVE_FOR_RECOVERY: u8 = 2;
}

/// SCSI task attributes (SCSI Command byte 1, bits 0-2).
pub mod task_attr {
    /// Untagged.
    pub const UNTAGGED: u8 = 0;
    /// Simple.
    pub const SIMPLE: u8 = 1;
    /// Ordered.
    pub const ORDERED: u8 = 2;
    /// Head of queue.
    pub const HEAD_OF_QUEUE: u8 = 3;
    /// ACA.
    pub const ACA: u8 = 4;
}

/// NOP-Out (initiator ping or answer to a target NOP-In).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NopOut {
    /// Immediate delivery bit.
    pub immediate: bool,
    /// Logical unit number (raw 8 bytes).
    pub lun: [u8; 8],
    /// Initiator Task Tag (`RESERVED_TAG` when answering a NOP-In).
    pub itt: u32,
    /// Target Transfer Tag (copied from the NOP-In being answered, else `RESERVED_TAG`).
    pub ttt: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

/// SCSI Command; CDBs longer than 16 bytes continue in an extended CDB AHS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScsiCommand {
    /// Immediate delivery bit.
    pub immediate: bool,
    /// Final bit: no unsolicited Data-Out follows.
    pub final_: bool,
    /// Read bit.
    pub read: bool,
    /// Write bit.
    pub write: bool,
    /// Task attribute (see [`task_attr`]).
    pub attr: u8,
    /// Logical unit number.
    pub lun: [u8; 8],
    /// Initiator Task Tag.
    pub itt: u32,
    /// Expected data transfer length (write length for bidirectional commands).
    pub expected_len: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// First 16 bytes of the CDB, zero padded.
    pub cdb: [u8; 16],
}

/// Task Management Function Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskMgmtRequest {
    /// Immediate delivery bit.
    pub immediate: bool,
    /// Function code (see [`tmf`]).
    pub function: u8,
    /// Logical unit number.
    pub lun: [u8; 8],
    /// Initiator Task Tag of this request.
    pub itt: u32,
    /// Tag of the task to act on (`RESERVED_TAG` when none).
    pub ref_task_tag: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// CmdSN of the referenced task.
    pub ref_cmd_sn: u32,
    /// ExpDataSN (for TASK REASSIGN).
    pub exp_data_sn: u32,
}

/// Login Request (always immediate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginRequest {
    /// Transit bit.
    pub transit: bool,
    /// Continue bit.
    pub continue_: bool,
    /// Current stage.
    pub csg: Stage,
    /// Next stage (meaningful when `transit`).
    pub nsg: Stage,
    /// Version-max.
    pub version_max: u8,
    /// Version-min.
    pub version_min: u8,
    /// Initiator Session ID.
    pub isid: [u8; 6],
    /// Target Session Identifying Handle (0 for a new session).
    pub tsih: u16,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Connection ID.
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

/// Text Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextRequest {
    /// Immediate delivery bit.
    pub immediate: bool,
    /// Final bit.
    pub final_: bool,
    /// Continue bit.
    pub continue_: bool,
    /// Logical unit number.
    pub lun: [u8; 8],
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag (`RESERVED_TAG` on a new exchange).
    pub ttt: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

/// SCSI Data-Out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataOut {
    /// Final bit (last PDU of the sequence).
    pub final_: bool,
    /// Logical unit number.
    pub lun: [u8; 8],
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag (from the R2T, `RESERVED_TAG` for unsolicited data).
    pub ttt: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// DataSN.
    pub data_sn: u32,
    /// Buffer offset.
    pub offset: u32,
}

/// Logout Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogoutRequest {
    /// Immediate delivery bit.
    pub immediate: bool,
    /// Reason code (see [`logout_reason`]).
    pub reason: u8,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Connection ID (for connection-level reasons).
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

/// SNACK Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snack {
    /// SNACK type (0 Data/R2T, 1 Status, 2 DataACK, 3 R-Data).
    pub type_: u8,
    /// Logical unit number.
    pub lun: [u8; 8],
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag or SNACK Tag.
    pub ttt: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// BegRun.
    pub beg_run: u32,
    /// RunLength.
    pub run_length: u32,
}

/// NOP-In.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NopIn {
    /// Logical unit number.
    pub lun: [u8; 8],
    /// Initiator Task Tag (`RESERVED_TAG` for a target ping).
    pub itt: u32,
    /// Target Transfer Tag (not reserved when the target wants an answer).
    pub ttt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
}

/// SCSI Response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScsiResponse {
    /// Bidirectional read residual overflow.
    pub bidi_overflow: bool,
    /// Bidirectional read residual underflow.
    pub bidi_underflow: bool,
    /// Residual overflow.
    pub overflow: bool,
    /// Residual underflow.
    pub underflow: bool,
    /// iSCSI response code (0 = command completed at target).
    pub response: u8,
    /// SCSI status.
    pub status: u8,
    /// Initiator Task Tag.
    pub itt: u32,
    /// SNACK Tag.
    pub snack_tag: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// ExpDataSN.
    pub exp_data_sn: u32,
    /// Bidirectional read residual count.
    pub bidi_residual: u32,
    /// Residual count.
    pub residual: u32,
}

/// Task Management Function Response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskMgmtResponse {
    /// Response code (0 = function complete).
    pub response: u8,
    /// Initiator Task Tag.
    pub itt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
}

/// Login Response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginResponse {
    /// Transit bit.
    pub transit: bool,
    /// Continue bit.
    pub continue_: bool,
    /// Current stage.
    pub csg: Stage,
    /// Next stage.
    pub nsg: Stage,
    /// Version-max.
    pub version_max: u8,
    /// Version-active.
    pub version_active: u8,
    /// Initiator Session ID (echoed).
    pub isid: [u8; 6],
    /// Target Session Identifying Handle.
    pub tsih: u16,
    /// Initiator Task Tag.
    pub itt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Status class.
    pub status_class: u8,
    /// Status detail.
    pub status_detail: u8,
}

/// Text Response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextResponse {
    /// Final bit.
    pub final_: bool,
    /// Continue bit.
    pub continue_: bool,
    /// Logical unit number.
    pub lun: [u8; 8],
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag.
    pub ttt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
}

/// SCSI Data-In.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataIn {
    /// Final bit.
    pub final_: bool,
    /// Acknowledge bit (DataACK SNACK wanted).
    pub ack: bool,
    /// Residual overflow (valid with `status_present`).
    pub overflow: bool,
    /// Residual underflow (valid with `status_present`).
    pub underflow: bool,
    /// Status bit: this PDU carries the command's status.
    pub status_present: bool,
    /// SCSI status (valid with `status_present`).
    pub status: u8,
    /// Logical unit number.
    pub lun: [u8; 8],
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag.
    pub ttt: u32,
    /// StatSN (valid with `status_present`).
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// DataSN.
    pub data_sn: u32,
    /// Buffer offset.
    pub offset: u32,
    /// Residual count.
    pub residual: u32,
}

/// Logout Response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogoutResponse {
    /// Response code (0 = closed successfully).
    pub response: u8,
    /// Initiator Task Tag.
    pub itt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Time2Wait.
    pub time2wait: u16,
    /// Time2Retain.
    pub time2retain: u16,
}

/// Ready To Transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct R2t {
    /// Logical unit number.
    pub lun: [u8; 8],
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag to echo in the Data-Out PDUs.
    pub ttt: u32,
    /// StatSN (not advanced by R2T).
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// R2TSN.
    pub r2t_sn: u32,
    /// Buffer offset requested.
    pub offset: u32,
    /// Desired data transfer length.
    pub desired_len: u32,
}

/// Asynchronous Message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AsyncMessage {
    /// Logical unit number.
    pub lun: [u8; 8],
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// AsyncEvent code.
    pub event: u8,
    /// AsyncVCode.
    pub vcode: u8,
    /// Parameter1.
    pub param1: u16,
    /// Parameter2.
    pub param2: u16,
    /// Parameter3.
    pub param3: u16,
}

/// Reject (the data segment carries the rejected PDU's header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reject {
    /// Reason code.
    pub reason: u8,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// DataSN/R2TSN (for data SNACK rejects).
    pub data_sn: u32,
}

/// One typed PDU header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pdu {
    /// NOP-Out.
    NopOut(NopOut),
    /// SCSI Command.
    ScsiCommand(ScsiCommand),
    /// Task Management Function Request.
    TaskMgmtRequest(TaskMgmtRequest),
    /// Login Request.
    LoginRequest(LoginRequest),
    /// Text Request.
    TextRequest(TextRequest),
    /// SCSI Data-Out.
    DataOut(DataOut),
    /// Logout Request.
    LogoutRequest(LogoutRequest),
    /// SNACK Request.
    Snack(Snack),
    /// NOP-In.
    NopIn(NopIn),
    /// SCSI Response.
    ScsiResponse(ScsiResponse),
    /// Task Management Function Response.
    TaskMgmtResponse(TaskMgmtResponse),
    /// Login Response.
    LoginResponse(LoginResponse),
    /// Text Response.
    TextResponse(TextResponse),
    /// SCSI Data-In.
    DataIn(DataIn),
    /// Logout Response.
    LogoutResponse(LogoutResponse),
    /// Ready To Transfer.
    R2t(R2t),
    /// Asynchronous Message.
    AsyncMessage(AsyncMessage),
    /// Reject.
    Reject(Reject),
}

/// A full BHS: the typed header plus the two length fields every PDU has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bhs {
    /// TotalAHSLength in 4-byte words.
    pub total_ahs_words: u8,
    /// DataSegmentLength in bytes, without padding (24 bits).
    pub data_segment_len: u32,
    /// The opcode-specific part.
    pub pdu: Pdu,
}

fn rd32(b: &[u8; BHS_LEN], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, b0, c, d]) => u32::from_be_bytes([a, b0, c, d]),
        _ => 0,
    }
}

fn rd16(b: &[u8; BHS_LEN], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[a, b0]) => u16::from_be_bytes([a, b0]),
        _ => 0,
    }
}

fn rd8(b: &[u8; BHS_LEN], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

fn wr(b: &mut [u8; BHS_LEN], at: usize, v: &[u8]) {
    if let Some(dst) = b.get_mut(at..at + v.len()) {
        dst.copy_from_slice(v);
    }
}

fn wr32(b: &mut [u8; BHS_LEN], at: usize, v: u32) {
    wr(b, at, &v.to_be_bytes());
}

fn wr16(b: &mut [u8; BHS_LEN], at: usize, v: u16) {
    wr(b, at, &v.to_be_bytes());
}

fn wr8(b: &mut [u8; BHS_LEN], at: usize, v: u8) {
    if let Some(x) = b.get_mut(at) {
        *x = v;
    }
}

fn rd_arr<const N: usize>(b: &[u8; BHS_LEN], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = b.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

fn lun_of(b: &[u8; BHS_LEN]) -> [u8; 8] {
    rd_arr::<8>(b, 8)
}

const F: u8 = 0x80;
const IMM: u8 = 0x40;

/// The opcode of a raw BHS (low six bits of byte 0).
pub fn opcode_of(bhs: &[u8; BHS_LEN]) -> u8 {
    bhs[0] & 0x3f
}

/// DataSegmentLength of a raw BHS.
pub fn data_segment_len_of(bhs: &[u8; BHS_LEN]) -> u32 {
    u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]])
}

/// TotalAHSLength of a raw BHS, in bytes.
pub fn ahs_len_of(bhs: &[u8; BHS_LEN]) -> usize {
    usize::from(bhs[4]) * 4
}

impl Bhs {
    /// Decode a 48-byte BHS. Never panics; rejects reserved opcodes and contradictory flags.
    pub fn decode(b: &[u8; BHS_LEN]) -> Result<Bhs, PduError> {
        let op = opcode_of(b);
        let imm = b[0] & IMM != 0;
        let f1 = b[1];
        let itt = rd32(b, 16);
        let pdu = match op {
            opcode::NOP_OUT => Pdu::NopOut(NopOut {
                immediate: imm,
                lun: lun_of(b),
                itt,
                ttt: rd32(b, 20),
                cmd_sn: rd32(b, 24),
                exp_stat_sn: rd32(b, 28),
            }),
            opcode::SCSI_CMD => Pdu::ScsiCommand(ScsiCommand {
                immediate: imm,
                final_: f1 & F != 0,
                read: f1 & 0x40 != 0,
                write: f1 & 0x20 != 0,
                attr: f1 & 0x07,
                lun: lun_of(b),
                itt,
                expected_len: rd32(b, 20),
                cmd_sn: rd32(b, 24),
                exp_stat_sn: rd32(b, 28),
                cdb: rd_arr::<16>(b, 32),
            }),
            opcode::TASK_MGMT_REQ => Pdu::TaskMgmtRequest(TaskMgmtRequest {
                immediate: imm,
                function: f1 & 0x7f,
                lun: lun_of(b),
                itt,
                ref_task_tag: rd32(b, 20),
                cmd_sn: rd32(b, 24),
                exp_stat_sn: rd32(b, 28),
                ref_cmd_sn: rd32(b, 32),
                exp_data_sn: rd32(b, 36),
            }),
            opcode::LOGIN_REQ => {
                let (transit, continue_, csg, nsg) = login_flags(f1)?;
                Pdu::LoginRequest(LoginRequest {
                    transit,
                    continue_,
                    csg,
                    nsg,
                    version_max: rd8(b, 2),
                    version_min: rd8(b, 3),
                    isid: rd_arr::<6>(b, 8),
                    tsih: rd16(b, 14),
                    itt,
                    cid: rd16(b, 20),
                    cmd_sn: rd32(b, 24),
                    exp_stat_sn: rd32(b, 28),
                })
            }
            opcode::TEXT_REQ => {
                if f1 & 0xc0 == 0xc0 {
                    return Err(PduError::TransitWithContinue);
                }
                Pdu::TextRequest(TextRequest {
                    immediate: imm,
                    final_: f1 & F != 0,
                    continue_: f1 & 0x40 != 0,
                    lun: lun_of(b),
                    itt,
                    ttt: rd32(b, 20),
                    cmd_sn: rd32(b, 24),
                    exp_stat_sn: rd32(b, 28),
                })
            }
            opcode::DATA_OUT => Pdu::DataOut(DataOut {
                final_: f1 & F != 0,
                lun: lun_of(b),
                itt,
                ttt: rd32(b, 20),
                exp_stat_sn: rd32(b, 28),
                data_sn: rd32(b, 36),
                offset: rd32(b, 40),
            }),
            opcode::LOGOUT_REQ => Pdu::LogoutRequest(LogoutRequest {
                immediate: imm,
                reason: f1 & 0x7f,
                itt,
                cid: rd16(b, 20),
                cmd_sn: rd32(b, 24),
                exp_stat_sn: rd32(b, 28),
            }),
            opcode::SNACK => Pdu::Snack(Snack {
                type_: f1 & 0x0f,
                lun: lun_of(b),
                itt,
                ttt: rd32(b, 20),
                exp_stat_sn: rd32(b, 28),
                beg_run: rd32(b, 40),
                run_length: rd32(b, 44),
            }),
            opcode::NOP_IN => Pdu::NopIn(NopIn {
                lun: lun_of(b),
                itt,
                ttt: rd32(b, 20),
                stat_sn: rd32(b, 24),
                exp_cmd_sn: rd32(b, 28),
                max_cmd_sn: rd32(b, 32),
            }),
            opcode::SCSI_RSP => {
                // o and O (or u and U) together cannot both describe one residual.
                if f1 & 0x18 == 0x18 || f1 & 0x06 == 0x06 {
                    return Err(PduError::BadFlags);
                }
                Pdu::ScsiResponse(ScsiResponse {
                    bidi_overflow: f1 & 0x10 != 0,
                    bidi_underflow: f1 & 0x08 != 0,
                    overflow: f1 & 0x04 != 0,
                    underflow: f1 & 0x02 != 0,
                    response: rd8(b, 2),
                    status: rd8(b, 3),
                    itt,
                    snack_tag: rd32(b, 20),
                    stat_sn: rd32(b, 24),
                    exp_cmd_sn: rd32(b, 28),
                    max_cmd_sn: rd32(b, 32),
                    exp_data_sn: rd32(b, 36),
                    bidi_residual: rd32(b, 40),
                    residual: rd32(b, 44),
                })
            }
            opcode::TASK_MGMT_RSP => Pdu::TaskMgmtResponse(TaskMgmtResponse {
                response: rd8(b, 2),
                itt,
                stat_sn: rd32(b, 24),
                exp_cmd_sn: rd32(b, 28),
                max_cmd_sn: rd32(b, 32),
            }),
            opcode::LOGIN_RSP => {
                let (transit, continue_, csg, nsg) = login_flags(f1)?;
                Pdu::LoginResponse(LoginResponse {
                    transit,
                    continue_,
                    csg,
                    nsg,
                    version_max: rd8(b, 2),
                    version_active: rd8(b, 3),
                    isid: rd_arr::<6>(b, 8),
                    tsih: rd16(b, 14),
                    itt,
                    stat_sn: rd32(b, 24),
                    exp_cmd_sn: rd32(b, 28),
                    max_cmd_sn: rd32(b, 32),
                    status_class: rd8(b, 36),
                    status_detail: rd8(b, 37),
                })
            }
            opcode::TEXT_RSP => {
                if f1 & 0xc0 == 0xc0 {
                    return Err(PduError::TransitWithContinue);
                }
                Pdu::TextResponse(TextResponse {
                    final_: f1 & F != 0,
                    continue_: f1 & 0x40 != 0,
                    lun: lun_of(b),
                    itt,
                    ttt: rd32(b, 20),
                    stat_sn: rd32(b, 24),
                    exp_cmd_sn: rd32(b, 28),
                    max_cmd_sn: rd32(b, 32),
                })
            }
            opcode::DATA_IN => {
                let s = f1 & 0x01 != 0;
                // Status may only ride on the final PDU; residual flags only with status.
                if (s && f1 & F == 0) || (!s && f1 & 0x06 != 0) || f1 & 0x06 == 0x06 {
                    return Err(PduError::BadFlags);
                }
                Pdu::DataIn(DataIn {
                    final_: f1 & F != 0,
                    ack: f1 & 0x40 != 0,
                    overflow: f1 & 0x04 != 0,
                    underflow: f1 & 0x02 != 0,
                    status_present: s,
                    status: rd8(b, 3),
                    lun: lun_of(b),
                    itt,
                    ttt: rd32(b, 20),
                    stat_sn: rd32(b, 24),
                    exp_cmd_sn: rd32(b, 28),
                    max_cmd_sn: rd32(b, 32),
                    data_sn: rd32(b, 36),
                    offset: rd32(b, 40),
                    residual: rd32(b, 44),
                })
            }
            opcode::LOGOUT_RSP => Pdu::LogoutResponse(LogoutResponse {
                response: rd8(b, 2),
                itt,
                stat_sn: rd32(b, 24),
                exp_cmd_sn: rd32(b, 28),
                max_cmd_sn: rd32(b, 32),
                time2wait: rd16(b, 40),
                time2retain: rd16(b, 42),
            }),
            opcode::R2T => Pdu::R2t(R2t {
                lun: lun_of(b),
                itt,
                ttt: rd32(b, 20),
                stat_sn: rd32(b, 24),
                exp_cmd_sn: rd32(b, 28),
                max_cmd_sn: rd32(b, 32),
                r2t_sn: rd32(b, 36),
                offset: rd32(b, 40),
                desired_len: rd32(b, 44),
            }),
            opcode::ASYNC_MSG => Pdu::AsyncMessage(AsyncMessage {
                lun: lun_of(b),
                stat_sn: rd32(b, 24),
                exp_cmd_sn: rd32(b, 28),
                max_cmd_sn: rd32(b, 32),
                event: rd8(b, 36),
                vcode: rd8(b, 37),
                param1: rd16(b, 38),
                param2: rd16(b, 40),
                param3: rd16(b, 42),
            }),
            opcode::REJECT => Pdu::Reject(Reject {
                reason: rd8(b, 2),
                stat_sn: rd32(b, 24),
                exp_cmd_sn: rd32(b, 28),
                max_cmd_sn: rd32(b, 32),
                data_sn: rd32(b, 36),
            }),
            other => return Err(PduError::InvalidOpcode(other)),
        };
        Ok(Bhs {
            total_ahs_words: b[4],
            data_segment_len: data_segment_len_of(b),
            pdu,
        })
    }

    /// Encode into a 48-byte BHS (every byte is written; reserved ones are zero).
    pub fn encode(&self, b: &mut [u8; BHS_LEN]) -> Result<(), PduError> {
        if self.data_segment_len > MAX_DATA_SEGMENT_LEN {
            return Err(PduError::DataSegmentTooLarge {
                len: self.data_segment_len,
                max: MAX_DATA_SEGMENT_LEN,
            });
        }
        *b = [0u8; BHS_LEN];
        let imm = |i: bool| if i { IMM } else { 0 };
        let flag = |c: bool, bit: u8| if c { bit } else { 0 };
        match &self.pdu {
            Pdu::NopOut(p) => {
                b[0] = imm(p.immediate) | opcode::NOP_OUT;
                b[1] = F;
                wr(b, 8, &p.lun);
                wr32(b, 16, p.itt);
                wr32(b, 20, p.ttt);
                wr32(b, 24, p.cmd_sn);
                wr32(b, 28, p.exp_stat_sn);
            }
            Pdu::ScsiCommand(p) => {
                b[0] = imm(p.immediate) | opcode::SCSI_CMD;
                b[1] = flag(p.final_, F) | flag(p.read, 0x40) | flag(p.write, 0x20) | (p.attr & 7);
                wr(b, 8, &p.lun);
                wr32(b, 16, p.itt);
                wr32(b, 20, p.expected_len);
                wr32(b, 24, p.cmd_sn);
                wr32(b, 28, p.exp_stat_sn);
                wr(b, 32, &p.cdb);
            }
            Pdu::TaskMgmtRequest(p) => {
                b[0] = imm(p.immediate) | opcode::TASK_MGMT_REQ;
                b[1] = F | (p.function & 0x7f);
                wr(b, 8, &p.lun);
                wr32(b, 16, p.itt);
                wr32(b, 20, p.ref_task_tag);
                wr32(b, 24, p.cmd_sn);
                wr32(b, 28, p.exp_stat_sn);
                wr32(b, 32, p.ref_cmd_sn);
                wr32(b, 36, p.exp_data_sn);
            }
            Pdu::LoginRequest(p) => {
                if p.transit && p.continue_ {
                    return Err(PduError::TransitWithContinue);
                }
                b[0] = IMM | opcode::LOGIN_REQ;
                b[1] = login_flag_byte(p.transit, p.continue_, p.csg, p.nsg);
                wr8(b, 2, p.version_max);
                wr8(b, 3, p.version_min);
                wr(b, 8, &p.isid);
                wr16(b, 14, p.tsih);
                wr32(b, 16, p.itt);
                wr16(b, 20, p.cid);
                wr32(b, 24, p.cmd_sn);
                wr32(b, 28, p.exp_stat_sn);
            }
            Pdu::TextRequest(p) => {
                if p.final_ && p.continue_ {
                    return Err(PduError::TransitWithContinue);
                }
                b[0] = imm(p.immediate) | opcode::TEXT_REQ;
                b[1] = flag(p.final_, F) | flag(p.continue_, 0x40);
                wr(b, 8, &p.lun);
                wr32(b, 16, p.itt);
                wr32(b, 20, p.ttt);
                wr32(b, 24, p.cmd_sn);
                wr32(b, 28, p.exp_stat_sn);
            }
            Pdu::DataOut(p) => {
                b[0] = opcode::DATA_OUT;
                b[1] = flag(p.final_, F);
                wr(b, 8, &p.lun);
                wr32(b, 16, p.itt);
                wr32(b, 20, p.ttt);
                wr32(b, 28, p.exp_stat_sn);
                wr32(b, 36, p.data_sn);
                wr32(b, 40, p.offset);
            }
            Pdu::LogoutRequest(p) => {
                b[0] = imm(p.immediate) | opcode::LOGOUT_REQ;
                b[1] = F | (p.reason & 0x7f);
                wr32(b, 16, p.itt);
                wr16(b, 20, p.cid);
                wr32(b, 24, p.cmd_sn);
                wr32(b, 28, p.exp_stat_sn);
            }
            Pdu::Snack(p) => {
                b[0] = opcode::SNACK;
                b[1] = F | (p.type_ & 0x0f);
                wr(b, 8, &p.lun);
                wr32(b, 16, p.itt);
                wr32(b, 20, p.ttt);
                wr32(b, 28, p.exp_stat_sn);
                wr32(b, 40, p.beg_run);
                wr32(b, 44, p.run_length);
            }
            Pdu::NopIn(p) => {
                b[0] = opcode::NOP_IN;
                b[1] = F;
                wr(b, 8, &p.lun);
                wr32(b, 16, p.itt);
                wr32(b, 20, p.ttt);
                wr32(b, 24, p.stat_sn);
                wr32(b, 28, p.exp_cmd_sn);
                wr32(b, 32, p.max_cmd_sn);
            }
            Pdu::ScsiResponse(p) => {
                if (p.bidi_overflow && p.bidi_underflow) || (p.overflow && p.underflow) {
                    return Err(PduError::BadFlags);
                }
                b[0] = opcode::SCSI_RSP;
                b[1] = F
                    | flag(p.bidi_overflow, 0x10)
                    | flag(p.bidi_underflow, 0x08)
                    | flag(p.overflow, 0x04)
                    | flag(p.underflow, 0x02);
                wr8(b, 2, p.response);
                wr8(b, 3, p.status);
                wr32(b, 16, p.itt);
                wr32(b, 20, p.snack_tag);
                wr32(b, 24, p.stat_sn);
                wr32(b, 28, p.exp_cmd_sn);
                wr32(b, 32, p.max_cmd_sn);
                wr32(b, 36, p.exp_data_sn);
                wr32(b, 40, p.bidi_residual);
                wr32(b, 44, p.residual);
            }
            Pdu::TaskMgmtResponse(p) => {
                b[0] = opcode::TASK_MGMT_RSP;
                b[1] = F;
                wr8(b, 2, p.response);
                wr32(b, 16, p.itt);
                wr32(b, 24, p.stat_sn);
                wr32(b, 28, p.exp_cmd_sn);
                wr32(b, 32, p.max_cmd_sn);
            }
            Pdu::LoginResponse(p) => {
                if p.transit && p.continue_ {
                    return Err(PduError::TransitWithContinue);
                }
                b[0] = opcode::LOGIN_RSP;
                b[1] = login_flag_byte(p.transit, p.continue_, p.csg, p.nsg);
                wr8(b, 2, p.version_max);
                wr8(b, 3, p.version_active);
                wr(b, 8, &p.isid);
                wr16(b, 14, p.tsih);
                wr32(b, 16, p.itt);
                wr32(b, 24, p.stat_sn);
                wr32(b, 28, p.exp_cmd_sn);
                wr32(b, 32, p.max_cmd_sn);
                wr8(b, 36, p.status_class);
                wr8(b, 37, p.status_detail);
            }
            Pdu::TextResponse(p) => {
                if p.final_ && p.continue_ {
                    return Err(PduError::TransitWithContinue);
                }
                b[0] = opcode::TEXT_RSP;
                b[1] = flag(p.final_, F) | flag(p.continue_, 0x40);
                wr(b, 8, &p.lun);
                wr32(b, 16, p.itt);
                wr32(b, 20, p.ttt);
                wr32(b, 24, p.stat_sn);
                wr32(b, 28, p.exp_cmd_sn);
                wr32(b, 32, p.max_cmd_sn);
            }
            Pdu::DataIn(p) => {
                let s = p.status_present;
                if (s && !p.final_)
                    || (!s && (p.overflow || p.underflow))
                    || (p.overflow && p.underflow)
                {
                    return Err(PduError::BadFlags);
                }
                b[0] = opcode::DATA_IN;
                b[1] = flag(p.final_, F)
                    | flag(p.ack, 0x40)
                    | flag(p.overflow, 0x04)
                    | flag(p.underflow, 0x02)
                    | flag(s, 0x01);
                wr8(b, 3, p.status);
                wr(b, 8, &p.lun);
                wr32(b, 16, p.itt);
                wr32(b, 20, p.ttt);
                wr32(b, 24, p.stat_sn);
                wr32(b, 28, p.exp_cmd_sn);
                wr32(b, 32, p.max_cmd_sn);
                wr32(b, 36, p.data_sn);
                wr32(b, 40, p.offset);
                wr32(b, 44, p.residual);
            }
            Pdu::LogoutResponse(p) => {
                b[0] = opcode::LOGOUT_RSP;
                b[1] = F;
                wr8(b, 2, p.response);
                wr32(b, 16, p.itt);
                wr32(b, 24, p.stat_sn);
                wr32(b, 28, p.exp_cmd_sn);
                wr32(b, 32, p.max_cmd_sn);
                wr16(b, 40, p.time2wait);
                wr16(b, 42, p.time2retain);
            }
            Pdu::R2t(p) => {
                b[0] = opcode::R2T;
                b[1] = F;
                wr(b, 8, &p.lun);
                wr32(b, 16, p.itt);
                wr32(b, 20, p.ttt);
                wr32(b, 24, p.stat_sn);
                wr32(b, 28, p.exp_cmd_sn);
                wr32(b, 32, p.max_cmd_sn);
                wr32(b, 36, p.r2t_sn);
                wr32(b, 40, p.offset);
                wr32(b, 44, p.desired_len);
            }
            Pdu::AsyncMessage(p) => {
                b[0] = opcode::ASYNC_MSG;
                b[1] = F;
                wr(b, 8, &p.lun);
                wr32(b, 16, RESERVED_TAG);
                wr32(b, 24, p.stat_sn);
                wr32(b, 28, p.exp_cmd_sn);
                wr32(b, 32, p.max_cmd_sn);
                wr8(b, 36, p.event);
                wr8(b, 37, p.vcode);
                wr16(b, 38, p.param1);
                wr16(b, 40, p.param2);
                wr16(b, 42, p.param3);
            }
            Pdu::Reject(p) => {
                b[0] = opcode::REJECT;
                b[1] = F;
                wr8(b, 2, p.reason);
                wr32(b, 16, RESERVED_TAG);
                wr32(b, 24, p.stat_sn);
                wr32(b, 28, p.exp_cmd_sn);
                wr32(b, 32, p.max_cmd_sn);
                wr32(b, 36, p.data_sn);
            }
        }
        b[4] = self.total_ahs_words;
        let dl = self.data_segment_len.to_be_bytes();
        b[5] = dl[1];
        b[6] = dl[2];
        b[7] = dl[3];
        Ok(())
    }
}

fn login_flags(f1: u8) -> Result<(bool, bool, Stage, Stage), PduError> {
    let transit = f1 & 0x80 != 0;
    let cont = f1 & 0x40 != 0;
    if transit && cont {
        return Err(PduError::TransitWithContinue);
    }
    let csg = Stage::from_bits(f1 >> 2)?;
    // NSG is only meaningful with T set; a reserved value there is still an error then.
    let nsg = if transit {
        Stage::from_bits(f1)?
    } else {
        Stage::from_bits(f1).unwrap_or(Stage::Security)
    };
    Ok((transit, cont, csg, nsg))
}

fn login_flag_byte(transit: bool, cont: bool, csg: Stage, nsg: Stage) -> u8 {
    let mut v = ((csg as u8) << 2) | (nsg as u8);
    if transit {
        v |= 0x80;
    }
    if cont {
        v |= 0x40;
    }
    v
}

/// Number of zero bytes that pad `len` to a multiple of 4.
pub fn pad_len(len: usize) -> usize {
    (4 - (len % 4)) % 4
}

/// `len` rounded up to a multiple of 4, `None` on overflow.
pub fn padded(len: usize) -> Option<usize> {
    len.checked_add(pad_len(len))
}

/// Which digests were negotiated on a connection (none during login).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Digests {
    /// HeaderDigest=CRC32C.
    pub header: bool,
    /// DataDigest=CRC32C.
    pub data: bool,
}

/// What follows a received BHS on the wire, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RxLayout {
    /// Bytes of AHS.
    pub ahs_len: usize,
    /// Bytes of header digest (0 or 4).
    pub header_digest_len: usize,
    /// Bytes of data segment (without padding).
    pub data_len: usize,
    /// Bytes of padding after the data.
    pub pad_len: usize,
    /// Bytes of data digest (0 or 4; only present when there is data).
    pub data_digest_len: usize,
}

impl RxLayout {
    /// Total bytes still to read after the 48-byte BHS.
    pub fn remaining(&self) -> usize {
        // Each term is bounded (AHS <= 1020, data <= 2^24), so the sum cannot overflow.
        self.ahs_len
            .saturating_add(self.header_digest_len)
            .saturating_add(self.data_len)
            .saturating_add(self.pad_len)
            .saturating_add(self.data_digest_len)
    }
}

/// Given a received BHS, the negotiated digests and our MaxRecvDataSegmentLength, say how many
/// bytes follow; a data segment larger than we declared is an error (RFC 7143 section 13.12).
pub fn rx_layout(
    bhs: &[u8; BHS_LEN],
    digests: Digests,
    max_recv_dsl: u32,
) -> Result<RxLayout, PduError> {
    let dsl = data_segment_len_of(bhs);
    if dsl > max_recv_dsl {
        return Err(PduError::DataSegmentTooLarge {
            len: dsl,
            max: max_recv_dsl,
        });
    }
    let data_len = dsl as usize;
    Ok(RxLayout {
        ahs_len: ahs_len_of(bhs),
        header_digest_len: if digests.header { DIGEST_LEN } else { 0 },
        data_len,
        pad_len: pad_len(data_len),
        data_digest_len: if digests.data && data_len > 0 {
            DIGEST_LEN
        } else {
            0
        },
    })
}

/// AHS type of the extended CDB AHS.
pub const AHS_EXTENDED_CDB: u8 = 1;
/// AHS type of the bidirectional read expected data length AHS.
pub const AHS_BIDI_READ_LEN: u8 = 2;
/// Longest CDB the extended CDB AHS can carry (AHSLength is 16 bits; the total AHS field caps
/// it further at 16 + 1020 - 4).
pub const MAX_CDB_LEN: usize = 16 + MAX_AHS_LEN - 4;

/// Write the extended CDB AHS for a CDB longer than 16 bytes (bytes 16.. of `cdb`), padded;
/// returns bytes written (a multiple of 4).
pub fn encode_ext_cdb_ahs(cdb: &[u8], out: &mut [u8]) -> Result<usize, PduError> {
    let rest = cdb.get(16..).ok_or(PduError::BadCdbLength)?;
    if rest.is_empty() || cdb.len() > MAX_CDB_LEN {
        return Err(PduError::BadCdbLength);
    }
    // AHSLength counts the reserved byte plus the CDB bytes carried: CDB length - 15.
    let ahs_len = u16::try_from(rest.len() + 1).map_err(|_| PduError::BadCdbLength)?;
    let total = padded(3 + usize::from(ahs_len)).ok_or(PduError::BadCdbLength)?;
    let dst = out.get_mut(..total).ok_or(PduError::BufferTooSmall)?;
    dst.fill(0);
    let [h, l] = ahs_len.to_be_bytes();
    dst[0] = h;
    dst[1] = l;
    dst[2] = AHS_EXTENDED_CDB;
    dst.get_mut(4..4 + rest.len())
        .ok_or(PduError::BufferTooSmall)?
        .copy_from_slice(rest);
    Ok(total)
}

/// Write the bidirectional read expected data length AHS (8 bytes).
pub fn encode_bidi_read_ahs(read_len: u32, out: &mut [u8]) -> Result<usize, PduError> {
    let dst = out.get_mut(..8).ok_or(PduError::BufferTooSmall)?;
    dst[0] = 0;
    dst[1] = 5;
    dst[2] = AHS_BIDI_READ_LEN;
    dst[3] = 0;
    dst[4..8].copy_from_slice(&read_len.to_be_bytes());
    Ok(8)
}

/// Total AHS words for a BHS from a byte length (must be a multiple of 4 and <= 1020).
pub fn ahs_words(ahs_bytes: usize) -> Result<u8, PduError> {
    if ahs_bytes & 3 != 0 {
        return Err(PduError::BadAhs);
    }
    u8::try_from(ahs_bytes / 4).map_err(|_| PduError::BadAhs)
}

/// One decoded AHS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ahs<'a> {
    /// CDB bytes 16 onwards.
    ExtendedCdb(&'a [u8]),
    /// Expected read length of a bidirectional command.
    BidiReadLen(u32),
    /// An AHS type we do not interpret.
    Other {
        /// AHSType.
        ty: u8,
        /// AHS-specific bytes (after the type byte).
        data: &'a [u8],
    },
}

/// Iterator over the AHSs of a PDU.
#[derive(Debug, Clone)]
pub struct AhsIter<'a> {
    rest: &'a [u8],
}

/// Iterate over the AHSs in `ahs` (the TotalAHSLength bytes after the BHS).
pub fn parse_ahs(ahs: &[u8]) -> AhsIter<'_> {
    AhsIter { rest: ahs }
}

impl<'a> Iterator for AhsIter<'a> {
    type Item = Result<Ahs<'a>, PduError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = self.next_inner();
        if r.is_err() {
            self.rest = &[];
        }
        Some(r)
    }
}

impl<'a> AhsIter<'a> {
    fn next_inner(&mut self) -> Result<Ahs<'a>, PduError> {
        let rest = self.rest;
        let (&[h, l, ty], _) = rest.split_first_chunk::<3>().ok_or(PduError::BadAhs)?;
        let len = usize::from(u16::from_be_bytes([h, l]));
        let body = rest.get(3..3 + len).ok_or(PduError::BadAhs)?;
        let total = padded(3 + len).ok_or(PduError::BadAhs)?;
        self.rest = rest.get(total..).unwrap_or(&[]);
        // body[0] is the reserved byte for both standard types.
        match ty {
            AHS_EXTENDED_CDB => match body.get(1..) {
                Some(cdb) if !cdb.is_empty() => Ok(Ahs::ExtendedCdb(cdb)),
                _ => Err(PduError::BadAhs),
            },
            AHS_BIDI_READ_LEN => match body {
                [_, a, b, c, d] => Ok(Ahs::BidiReadLen(u32::from_be_bytes([*a, *b, *c, *d]))),
                _ => Err(PduError::BadAhs),
            },
            _ => Ok(Ahs::Other { ty, data: body }),
        }
    }
}

/// Write a whole PDU without digests: BHS, `data`, zero padding. Returns bytes written.
/// The BHS's `data_segment_len` is set from `data` and `total_ahs_words` to 0.
pub fn write_pdu(pdu: &Pdu, data: &[u8], out: &mut [u8]) -> Result<usize, PduError> {
    let dl = u32::try_from(data.len())
        .ok()
        .filter(|l| *l <= MAX_DATA_SEGMENT_LEN)
        .ok_or(PduError::DataSegmentTooLarge {
            len: u32::MAX,
            max: MAX_DATA_SEGMENT_LEN,
        })?;
    let total = padded(data.len())
        .and_then(|p| p.checked_add(BHS_LEN))
        .ok_or(PduError::BufferTooSmall)?;
    let out = out.get_mut(..total).ok_or(PduError::BufferTooSmall)?;
    let (head, tail) = out.split_at_mut(BHS_LEN);
    let head: &mut [u8; BHS_LEN] = head.try_into().map_err(|_| PduError::BufferTooSmall)?;
    Bhs {
        total_ahs_words: 0,
        data_segment_len: dl,
        pdu: *pdu,
    }
    .encode(head)?;
    let (d, pad) = tail.split_at_mut(data.len());
    d.copy_from_slice(data);
    pad.fill(0);
    Ok(total)
}

/// An 8-byte SAM LUN as carried in iSCSI PDUs and REPORT LUNS data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Lun(pub [u8; 8]);

impl Lun {
    /// Encode a single-level LUN number: peripheral addressing below 256, flat space addressing
    /// (method 01b) for 256..=16383; `None` above.
    pub fn from_number(n: u16) -> Option<Lun> {
        let [hi, lo] = n.to_be_bytes();
        let mut b = [0u8; 8];
        if n < 256 {
            b[1] = lo;
        } else if n < 0x4000 {
            b[0] = 0x40 | hi;
            b[1] = lo;
        } else {
            return None;
        }
        Some(Lun(b))
    }

    /// Decode a single-level peripheral (bus 0) or flat space LUN into its number; `None` for
    /// other addressing methods or multi-level LUNs.
    pub fn number(&self) -> Option<u16> {
        let b = self.0;
        if b[2..].iter().any(|x| *x != 0) {
            return None;
        }
        match b[0] >> 6 {
            0 if b[0] == 0 => Some(u16::from(b[1])),
            1 => Some(u16::from_be_bytes([b[0] & 0x3f, b[1]])),
            _ => None,
        }
    }

    /// The Linux `scsi_lun` integer for these bytes (as `scsilun_to_int()`: the addressing
    /// method bits stay in the number, so flat LUN 300 is 0x412c).
    pub fn to_linux(&self) -> u64 {
        let b = self.0;
        let mut v = 0u64;
        for i in 0..4 {
            let hi = u64::from(b[2 * i]);
            let lo = u64::from(b[2 * i + 1]);
            v |= ((hi << 8) | lo) << (16 * i);
        }
        v
    }

    /// Inverse of [`Lun::to_linux`] (as `int_to_scsilun()`).
    pub fn from_linux(v: u64) -> Lun {
        let mut b = [0u8; 8];
        for i in 0..4 {
            let w = (v >> (16 * i)) as u16;
            let [hi, lo] = w.to_be_bytes();
            b[2 * i] = hi;
            b[2 * i + 1] = lo;
        }
        Lun(b)
    }
}
