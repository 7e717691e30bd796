//! The session-wide part of the full feature phase: the CmdSN window, the tags' generations
//! and the session's own requests (task management, logout, text), shared by every connection
//! of the session. The per-connection part (`ffp_conn`, which holds its own task set) takes a
//! `&mut Session` in each call that needs it; the kernel holds it under the session's lock for
//! exactly those calls.

use super::dataout::WriteParams;
use super::ffp_tasks::{GEN_MASK, OWN_ITT};
use super::pdu::RESERVED_TAG;
use super::serial::CmdWindow;

/// Milliseconds on a monotonic clock of the caller's choice (the kernel's `now_ms`, an
/// `Instant` in userspace); the engine only compares and adds them.
pub type Millis = u64;

/// Requests of the session's own (task management, logout, text) waiting for their answer.
pub const MAX_OWN: usize = 8;

/// The CmdSN window, since when it has kept commands waiting, and whether a ping holds the
/// commands back (`ConnConfig::ping_holds_commands`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    win: CmdWindow,
    shut_since: Option<Millis>,
    held: Option<Hold>,
    generation: u32,
}

impl Window {
    /// The window after login (our next CmdSN, the target's ExpCmdSN and MaxCmdSN).
    pub fn new(cmd_sn: u32, exp_cmd_sn: u32, max_cmd_sn: u32) -> Self {
        Window {
            win: CmdWindow::new(cmd_sn, exp_cmd_sn, max_cmd_sn),
            shut_since: None,
            held: None,
            generation: 0,
        }
    }

    /// The sequence numbers.
    pub fn numbers(&self) -> &CmdWindow {
        &self.win
    }

    /// Takes ExpCmdSN/MaxCmdSN from a target PDU (never backwards; see `CmdWindow::update`).
    pub fn update(&mut self, exp_cmd_sn: u32, max_cmd_sn: u32) {
        self.win.update(exp_cmd_sn, max_cmd_sn);
        if self.win.can_send() {
            self.shut_since = None;
        }
    }

    /// A CmdSN for a command, or `None` while the window is shut; a refusal records `now` as
    /// the moment commands started waiting (if they were not already).
    pub fn assign(&mut self, now: Millis) -> Option<u32> {
        let sn = self.win.assign();
        if sn.is_none() {
            self.shut_since.get_or_insert(now);
        }
        sn
    }

    /// Whether a command could get a CmdSN now.
    pub fn can_send(&self) -> bool {
        self.win.can_send()
    }

    /// The CmdSN an immediate PDU carries: the next one, or while a ping holds the commands
    /// back, the one the target expects (commands given CmdSNs meanwhile have not left).
    pub fn immediate(&self) -> u32 {
        self.held.map_or(self.win.immediate(), |h| h.cmd_sn)
    }

    /// Since when commands have been waiting for the target to open the window (`None` if
    /// none has been refused since it was last open).
    pub fn shut_since(&self) -> Option<Millis> {
        self.shut_since
    }

    /// A ping holds every command back, if the target has every command sent (its ExpCmdSN
    /// is our next CmdSN) or other pings hold them already (nothing has left since): that
    /// CmdSN is then the target's ExpCmdSN until the last of them is answered, and every
    /// immediate PDU carries it ([`Window::immediate`]), whatever commands were given CmdSNs
    /// meanwhile. Pings of several idle connections share one hold, which ends at the latest
    /// [`HOLD_MAX_MS`] after it began ([`Window::expire`]). The hold's generation, for
    /// [`Window::release`], or `None`.
    pub fn hold(&mut self, now: Millis) -> Option<u32> {
        match &mut self.held {
            Some(h) => {
                h.pings = h.pings.checked_add(1)?;
                Some(h.generation)
            }
            None if self.win.exp_cmd_sn() == self.win.cmd_sn() => {
                self.generation = self.generation.wrapping_add(1);
                self.held = Some(Hold {
                    pings: 1,
                    cmd_sn: self.win.cmd_sn(),
                    until: now.saturating_add(HOLD_MAX_MS),
                    generation: self.generation,
                });
                Some(self.generation)
            }
            None => None,
        }
    }

    /// One ping's hold of generation `generation` ends (it was answered, or its connection
    /// ended); true when it was the last, and commands may leave again. A hold that expired
    /// meanwhile is not touched.
    pub fn release(&mut self, generation: u32) -> bool {
        match &mut self.held {
            Some(h) if h.generation == generation && h.pings > 1 => {
                h.pings -= 1;
                false
            }
            Some(h) if h.generation == generation => {
                self.held = None;
                true
            }
            _ => false,
        }
    }

    /// Ends a hold that has lasted [`HOLD_MAX_MS`]: its pings' answers are late (one waits
    /// behind a send buffer a slow target drains, say), and the session's I/O must not wait
    /// for them; an immediate PDU's CmdSN may then be out of step again. True when it ended
    /// one: the driver lets every connection send.
    pub fn expire(&mut self, now: Millis) -> bool {
        let expired = self.held.is_some_and(|h| now >= h.until);
        if expired {
            self.held = None;
        }
        expired
    }

    /// Whether pings hold the commands back: none may leave.
    pub fn held(&self) -> bool {
        self.held.is_some()
    }
}

/// How long at most pings hold the commands back ([`Window::hold`]). An answer comes in a
/// round trip; one that does not come this soon waits behind something else.
pub const HOLD_MAX_MS: Millis = 1000;

/// The pings' hold on the commands: how many pings hold it, the CmdSN the target expects
/// meanwhile, when it ends at the latest, and which hold it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hold {
    pings: u16,
    cmd_sn: u32,
    until: Millis,
    generation: u32,
}

/// What one of the session's own requests is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnKind {
    /// Task management: the function and the task it names.
    TaskMgmt {
        /// Function code (`pdu::tmf`).
        function: u8,
        /// Referenced task's ITT (`RESERVED_TAG` when none).
        ref_itt: u32,
    },
    /// Logout, with its reason code.
    Logout {
        /// Reason (`pdu::logout_reason`).
        reason: u8,
    },
    /// A text exchange; `received` bytes of answer so far.
    Text {
        /// Bytes of answer data received in this exchange.
        received: u32,
    },
}

/// One of the session's own requests, waiting for its answer on connection `cid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Own {
    /// Its ITT (with [`OWN_ITT`] set).
    pub itt: u32,
    /// The connection it went on.
    pub cid: u16,
    /// What it is.
    pub kind: OwnKind,
}

/// Kinds of own ITT, in bits 28..31.
pub(super) const OWN_PING: u32 = 1;
pub(super) const OWN_TMF: u32 = 2;
pub(super) const OWN_LOGOUT: u32 = 3;
pub(super) const OWN_TEXT: u32 = 4;

/// The session-wide state of the full feature phase.
#[derive(Debug)]
pub struct Session<G> {
    /// The CmdSN window.
    pub window: Window,
    /// Per block-layer tag, the generation its last command's ITT carried: advanced on every
    /// use of the tag on any connection, so an ITT names one use of a tag session-wide.
    generations: G,
    /// The negotiated values writes are planned with.
    pub write_params: WriteParams,
    own: [Option<Own>; MAX_OWN],
    serial: u32,
}

impl<G: core::ops::DerefMut<Target = [u16]>> Session<G> {
    /// A session after login: `generations` (one per tag, any values) bound the tags
    /// commands can use; the window is what the final Login Response said (its ExpCmdSN is
    /// our next CmdSN: login requests are immediate).
    pub fn new(
        generations: G,
        write_params: WriteParams,
        exp_cmd_sn: u32,
        max_cmd_sn: u32,
    ) -> Self {
        Session {
            window: Window::new(exp_cmd_sn, exp_cmd_sn, max_cmd_sn),
            generations,
            write_params,
            own: [None; MAX_OWN],
            serial: 0,
        }
    }

    /// Since when commands have been waiting for the target to open the window.
    pub fn window_shut_since(&self) -> Option<Millis> {
        self.window.shut_since()
    }

    /// Tags a command can use (the depth of every connection's task set).
    pub fn depth(&self) -> usize {
        self.generations.len()
    }

    /// The next generation of `tag`, for a command about to use it; `None` past the depth.
    pub(super) fn next_generation(&mut self, tag: u16) -> Option<u16> {
        let g = self.generations.get_mut(usize::from(tag))?;
        *g = g.wrapping_add(1) & GEN_MASK;
        Some(*g)
    }

    /// A fresh own ITT of `kind` (never the reserved tag: the kinds are 1 to 4).
    pub(super) fn own_itt(&mut self, kind: u32) -> u32 {
        self.serial = self.serial.wrapping_add(1) & 0x0fff_ffff;
        let itt = OWN_ITT | (kind & 0x7) << 28 | self.serial;
        if itt == RESERVED_TAG {
            OWN_ITT | (kind & 0x7) << 28
        } else {
            itt
        }
    }

    /// Records a request of the session's own; `None` when [`MAX_OWN`] wait already.
    pub(super) fn add_own(&mut self, own: Own) -> Option<()> {
        let free = self.own.iter_mut().find(|o| o.is_none())?;
        *free = Some(own);
        Some(())
    }

    /// The own request named by `itt`, answered on `cid`.
    pub(super) fn own_mut(&mut self, itt: u32, cid: u16) -> Option<&mut Own> {
        self.own
            .iter_mut()
            .flatten()
            .find(|o| o.itt == itt && o.cid == cid)
    }

    /// Forgets one of the session's own requests (its answer did not come in time): its ITT
    /// then names nothing, and a late answer is dropped.
    pub fn forget_request(&mut self, itt: u32) -> Option<Own> {
        self.take_own(itt)
    }

    /// Ends the own request named by `itt`.
    pub(super) fn take_own(&mut self, itt: u32) -> Option<Own> {
        self.own
            .iter_mut()
            .find(|o| o.is_some_and(|o| o.itt == itt))?
            .take()
    }

    /// The requests of the session's own still waiting for an answer.
    pub fn own_requests(&self) -> impl Iterator<Item = &Own> + '_ {
        self.own.iter().flatten()
    }

    /// Forgets every own request that went on connection `cid` (it is gone: no answer comes).
    pub fn forget_own(&mut self, cid: u16) {
        for o in self.own.iter_mut() {
            if o.is_some_and(|o| o.cid == cid) {
                *o = None;
            }
        }
    }
}
