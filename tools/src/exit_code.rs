//! Exit codes of initiator-ctl and initiator-iname, in one place (documented in
//! initiator-ctl(8); the init scripts rely on them).

/// Why a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// A configuration file is invalid or missing (the single error line is on stderr).
    Config = 1,
    /// Bad command line (clap's usage errors).
    Usage = 2,
    /// A channel or target failed: unknown channel, target unreachable, login refused.
    Channel = 3,
    /// Busy: a mapped device is in use (unmap without force), or the channel is changing state.
    Busy = 4,
    /// The kernel module is not loaded or configfs is not mounted.
    NoKernel = 5,
    /// Not permitted (most commands need root).
    Permission = 6,
    /// An unexpected system error (I/O, out of memory).
    System = 7,
    /// `status`: a channel shown is not running (stopped, paused, failed, recovering...).
    NotRunning = 8,
}

impl Exit {
    /// The numeric code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// All codes with a one-line meaning, for help texts.
    pub const TABLE: [(Exit, &'static str); 9] = [
        (Exit::Ok, "success"),
        (Exit::Config, "configuration error"),
        (Exit::Usage, "usage error"),
        (Exit::Channel, "channel or target error"),
        (Exit::Busy, "busy (device in use)"),
        (
            Exit::NoKernel,
            "kernel module not loaded or configfs not mounted",
        ),
        (Exit::Permission, "permission denied"),
        (Exit::System, "system error"),
        (Exit::NotRunning, "status: a channel is not running"),
    ];
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}
