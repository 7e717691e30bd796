//! RFC 1982 serial number arithmetic (32 bits) and the CmdSN window (RFC 7143 section 4.2.2.1).

const HALF: u32 = 1 << 31;

/// `a < b` in serial arithmetic. Pairs exactly 2^31 apart are incomparable (false both ways).
pub fn lt(a: u32, b: u32) -> bool {
    let d = b.wrapping_sub(a);
    d != 0 && d < HALF
}

/// `a > b` in serial arithmetic.
pub fn gt(a: u32, b: u32) -> bool {
    lt(b, a)
}

/// `a <= b` in serial arithmetic.
pub fn le(a: u32, b: u32) -> bool {
    a == b || lt(a, b)
}

/// `a >= b` in serial arithmetic.
pub fn ge(a: u32, b: u32) -> bool {
    a == b || gt(a, b)
}

/// `a + n`, where RFC 1982 only defines `n` up to 2^31 - 1 (`None` above).
pub fn add(a: u32, n: u32) -> Option<u32> {
    if n < HALF {
        Some(a.wrapping_add(n))
    } else {
        None
    }
}

/// The session's command window: next CmdSN to use, ExpCmdSN and MaxCmdSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmdWindow {
    cmd_sn: u32,
    exp_cmd_sn: u32,
    max_cmd_sn: u32,
}

impl CmdWindow {
    /// A window after login: our next CmdSN and the target's ExpCmdSN/MaxCmdSN.
    pub fn new(cmd_sn: u32, exp_cmd_sn: u32, max_cmd_sn: u32) -> Self {
        CmdWindow {
            cmd_sn,
            exp_cmd_sn,
            max_cmd_sn,
        }
    }

    /// Next CmdSN to be assigned.
    pub fn cmd_sn(&self) -> u32 {
        self.cmd_sn
    }

    /// Latest ExpCmdSN.
    pub fn exp_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn
    }

    /// Latest MaxCmdSN.
    pub fn max_cmd_sn(&self) -> u32 {
        self.max_cmd_sn
    }

    /// Take ExpCmdSN/MaxCmdSN from a target PDU. A pair with MaxCmdSN < ExpCmdSN - 1 is ignored
    /// (RFC 7143 section 4.2.2.1), and neither value ever moves backwards, since PDUs from
    /// several connections may arrive out of order. Returns whether the pair was taken.
    pub fn update(&mut self, exp_cmd_sn: u32, max_cmd_sn: u32) -> bool {
        if lt(max_cmd_sn, exp_cmd_sn.wrapping_sub(1)) {
            return false;
        }
        if gt(exp_cmd_sn, self.exp_cmd_sn) {
            self.exp_cmd_sn = exp_cmd_sn;
        }
        if gt(max_cmd_sn, self.max_cmd_sn) {
            self.max_cmd_sn = max_cmd_sn;
        }
        true
    }

    /// Whether a non-immediate command may be sent now (CmdSN within ExpCmdSN..=MaxCmdSN).
    pub fn can_send(&self) -> bool {
        le(self.cmd_sn, self.max_cmd_sn)
    }

    /// Commands that may still be sent (0 when the window is closed).
    pub fn available(&self) -> u32 {
        if le(self.cmd_sn, self.max_cmd_sn) {
            self.max_cmd_sn.wrapping_sub(self.cmd_sn).saturating_add(1)
        } else {
            0
        }
    }

    /// Assign a CmdSN to a non-immediate command, or `None` when the window is closed.
    pub fn assign(&mut self) -> Option<u32> {
        if !self.can_send() {
            return None;
        }
        let sn = self.cmd_sn;
        self.cmd_sn = sn.wrapping_add(1);
        Some(sn)
    }

    /// CmdSN for an immediate command: the current one, not advanced.
    pub fn immediate(&self) -> u32 {
        self.cmd_sn
    }
}
