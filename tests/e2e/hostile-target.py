#!/usr/bin/env python3
"""A minimal scripted iSCSI target (RFC 7143, stdlib only) for tests/e2e/hostile-target.sh
and tests/e2e/hostile-wedge.sh.

    hostile-target.py PORT MODE [--after good|refuse] [--log FILE]

Serves one 16 MiB RAM LUN 0 on 127.0.0.1:PORT, well enough for the initiator's login, LUN scan
and a dd. MODE `good` stays correct. Any other MODE misbehaves once, on the first command that
touches the trigger window (LBAs TRIGGER_LBA.. of 512 bytes, i.e. 4..5 MiB into the disk: the
kernel's partition scan never reads there, so the scan completes first); what it does:

  oversize          a Data-In whose DataSegmentLength is 0xFFFFFF (then junk)
  past-end          the read's last Data-In runs 4 KiB past its expected length
  bad-itt           a Data-In and a SCSI Response naming ITTs never sent (then answers normally)
  data-for-write    a Data-In for a WRITE
  dup-response      two SCSI Responses for one command
  bad-datasn        Data-In DataSN 0, then 2
  r2t-past-end      an R2T beyond the write's length
  r2t-burst         an R2T asking for more than MaxBurstLength
  initiator-opcode  a SCSI Command PDU (opcode 0x01) sent to the initiator
  garbage           48 random bytes where a BHS belongs (then more random bytes)
  huge-sense        CHECK CONDITION with a SenseLength larger than the data segment
  nop-flood         10000 NOP-In pings (TTT set) as fast as possible, then answers normally
  async-logout      Async Messages, event 1 (the target requests a logout), ASYNC_LOGOUTS of
                    them back to back
  close-midway      the connection closed in the middle of a Data-In data segment
  time2wait         as close-midway, having negotiated DefaultTime2Wait=3600 (the most RFC 7143
                    allows): the initiator's replacement_timeout must still bound the recovery
  ping-digest       HeaderDigest and DataDigest CRC32C negotiated when offered (every other
                    mode refuses them), every PDU after the login sent with its digests and
                    every digest received checked (a wrong one is logged, "conn N: ... digest
                    error", and closes the connection); at the trigger a NOP-In ping carrying
                    100 bytes of ping data, whose echo (a NOP-Out with the data and its data
                    digest) must come back intact: "ping-digest: echo of 100 bytes verified".
  ping-data         a NOP-In ping carrying 4 KiB of ping data (more than the initiator echoes)
  reject            the command is rejected (Reject, reason 0x09, "invalid PDU field") and
                    discarded, and its CmdSN held as a gap, as RFC 7143 6.3 has a target do:
                    ExpCmdSN stays at it, and every later command on the connection waits
                    behind it, unanswered ("waits behind the CmdSN gap"), until a new session
                    logs in. The initiator must not send the command again: the retry comes
                    from the midlayer, in the new session.
  reject-always     (WRITEs) as reject, for every WRITE in the trigger window, in every session:
                    a command the initiator must fail, not send again for good.
  reject-digest     (a WRITE) as reject, with reason 0x02 ("data digest error", as for
                    immediate data that failed its digest): the same command is to be sent
                    again, in a new session.
  reject-data-out   (a WRITE) the write's first Data-Out is rejected (Reject, reason 0x02, "data
                    digest error") and its data dropped; the rest of the write's data is read,
                    and the task ended with CHECK CONDITION, ABORTED COMMAND, "CRC error
                    detected" (47h/05h), as RFC 7143 7.8 has a target do at ErrorRecoveryLevel 0
  reject-data-out-field  as reject-data-out, with reason 0x09 ("invalid PDU field"), and the task
                    kept waiting for the rejected data for good: only a new connection ends it
  silent            the command is never answered (SCSI timeout, then ABORT TASK, answered)
  silent-tmf        the command and every task management request on that connection are
                    never answered (the error handler escalates; nothing answers)
  late-data         a READ left unanswered until its ABORT TASK arrives; then its Data-In and
                    status, then "function complete" (the command completed during its abort)
  after-abort       a READ left unanswered; ABORT TASK answered "function complete", then the
                    aborted READ's Data-In and status anyway
  conn-logout       (two connections per session) the first READ in the trigger window that comes
                    on the added connection is held (never answered: the logout terminates it,
                    RFC 7143 11.14), and an Async Message event 1 (the target requests a logout
                    within 4 s) goes out on that connection; its other commands are answered. A
                    Logout Request is logged with its reason and CID ("conn N: logout reason R
                    cid C") and answered; the connection is then read until the initiator
                    closes it (3 s at most), each PDU logged ("conn N: opcode X after the
                    logout"), and closed; the others go on. Later connections (with the
                    session's TSIH) are accepted.
  conn-logout-refuse  as conn-logout, but the Logout Request (reason 1) is answered with
                    response 3 ("cleanup failed") and the connection is kept open.
  conn-logout-reject  as conn-logout-refuse, but the Logout Request is rejected (Reject,
                    reason 0x04, "protocol error") and logged ("logout rejected").
  conn-logout-mute  as conn-logout-refuse, but the Logout Request is never answered (logged:
                    "logout ignored").
  conn-logout-lead  as conn-logout, but on the leading connection (the first read of the window
                    that comes on it).
  logout-slow       serves I/O like good; the session's Logout Request (reason 0, as `pause`
                    and `stop` send) is answered only LOGOUT_SLOW s later, the connection
                    unread meanwhile; then it is read until the initiator closes it (3 s at
                    most), each PDU logged as in conn-logout ("conn N: opcode X after the
                    logout": RFC 7143 11.14 allows none, a NOP-Out ping included). Logged:
                    "conn N: logout reason 0 answered after LOGOUT_SLOW s".
  added-drop        (two connections per session) serves I/O like good, but closes every
                    connection added to a session (logged in with its TSIH) ADDED_DROP s after
                    its login, every time: "conn N: added connection dropped".
  added-mute        as added-drop, but the added connection goes silent instead of closing:
                    ADDED_DROP s after its login it stops answering and reads and drops
                    whatever comes ("conn N: added connection muted"), until the initiator
                    closes it.
  login-oversize    (at the first login) a Login Response whose DataSegmentLength is 0xFFFFFF
  login-continue    (at the first login) Login Responses with the C bit, forever

Modes that wedge rather than break (tests/e2e/hostile-wedge.sh: the module must stay in the
administrator's control whatever the target does):

  scan-silent       logs in, then never answers any SCSI command nor task management request,
                    from the very first command (the LUN scan); NOP-Out pings are answered, so
                    the connection stays up. Every later connection logs in and does the same.
  scan-close        logs in, then closes the connection at the first SCSI command (the scan's
                    first); every later connection likewise.
  scan-async        behaves during the scan; the trigger is the first command touching the
                    trigger window (a READ, e.g. the test's dd after `start` returned): it is
                    answered, then an Async Message event 0 follows with sense data UNIT
                    ATTENTION, ASC/ASCQ 3Fh/0Eh (REPORTED LUNS DATA HAS CHANGED: the initiator
                    rescans). From then on no SCSI command or task management request is ever
                    answered, on that connection or any later one (logins and NOP-Out pings
                    are, so the rescan stays stuck rather than the connection failing).
  window-login      MaxCmdSN = ExpCmdSN - 1 in the Login Response and on every PDU: the command
                    window never opens (pings, immediate, are answered), on every connection.
  window-io         normal until the trigger command (any, in the trigger window), which is
                    answered; from then on every PDU carries MaxCmdSN = ExpCmdSN - 1, on that
                    connection and every later one (Login Responses included): no later
                    command can be sent. Until the trigger the window is one command wide
                    (MaxCmdSN = ExpCmdSN): an initiator ignores a MaxCmdSN that goes back
                    (RFC 7143 4.2.2.1), so a wider window would stay open for its remaining
                    slots after the trigger.
  slow-drain        the listening socket has a small SO_RCVBUF (4 KiB) and MSS (1448 bytes),
                    inherited by every accepted one, ImmediateData=No and MaxBurstLength=16776192
                    (min'ed with the offer). At the trigger (a WRITE; on every connection, so the
                    retry after a recovery stalls again) one R2T asks for the whole write, then the
                    target stops reading except one 1448-byte read (1 MSS) every 3 s and never
                    answers anything on that connection again (not even pings): the initiator's
                    Data-Out send blocks, making a little progress every 3 s. A stalled
                    connection is reset when the next connection is accepted.
  login-drip        (at the first login) the Login Response is sent one byte per 0.5 s (~30 s
                    for the whole PDU, longer than any sane login_timeout); later logins are
                    answered at once.
  r2t-reset         (a WRITE; use InitialR2T=Yes, as negotiated here, so the data needs R2Ts)
                    the trigger write gets no R2T and no answer, and ABORT TASK is never
                    answered, until a LOGICAL UNIT RESET (function 5) arrives; then an R2T for
                    that write goes out, the target stops reading its socket for 2 s (small
                    SO_RCVBUF and MSS, as slow-drain, so the initiator's Data-Out burst is in progress, its command
                    lent to the sender), then answers the LUN reset "function complete" and
                    discards that write's Data-Out. Later it behaves.
  slow-burst        the listening socket has a small SO_RCVBUF and MSS (as slow-drain); ImmediateData=No,
                    MaxBurstLength=16776192 and MaxRecvDataSegmentLength=4096 (the initiator's
                    Data-Out PDUs are small). From the trigger (a WRITE) on, that connection is
                    read SLOW_READ bytes every SLOW_INTERVAL s (every PDU is still handled, in
                    order: the write's R2Ts go out as its bursts arrive), and a NOP-In that wants
                    no answer (ITT and TTT 0xffffffff) goes out every second, each opening the
                    command window by one more command (MaxCmdSN + 1: commands waiting for the
                    window are let through one at a time). Each Data-Out PDU's send ends well
                    within its deadline, the connection is never idle and the window never stays
                    shut for long, so nothing times out, while the initiator's transmit path
                    stays busy for minutes (a 1 MiB write takes over two). Later connections
                    behave.
  late-tmf          the trigger command is never answered. ABORT TASK (function 1) is answered
                    "function complete" (with the ABORT's ITT) only 6 s later, after the
                    initiator's wait gave up and sent LOGICAL UNIT RESET (its tmf_timeout:
                    hostile-wedge.sh sets 4 s, so the answer comes during the LUN reset's wait); the LUN reset
                    (function 5) is never answered; TARGET WARM RESET (function 6) is answered
                    "function complete" (the trigger command ends with it). Later it behaves.
                    "late-tmf: late answer to ABORT TASK itt X sent" is logged when it goes out.
  filler-reset      two LUNs (0 and 1, 16 MiB each), two connections per session, small buffers
                    and Data-Out PDUs as slow-burst, and ExpCmdSN kept for the session as RFC 7143
                    requires: the first CmdSN not yet received on any connection (commands are
                    still served as they arrive), so a CmdSN the initiator never sends shuts
                    the window for good. The trigger is a WRITE to LUN 1 on the added
                    connection: it gets one R2T for the whole write, then that connection is
                    read SLOW_READ bytes every SLOW_INTERVAL s (NOP-Ins wanting no answer keep
                    it from looking idle), so the commands queued behind the burst wait in the
                    initiator. From then on a READ of LUN 1 (on any connection) and an ABORT
                    TASK for it are never answered, and a LOGICAL UNIT RESET of LUN 0 is
                    answered at once. A LOGICAL UNIT RESET of LUN 1 ends the held reads and the
                    write, and every connection is read at full speed again. Every NOP-Out
                    that is not immediate (a filler: it spends a CmdSN) is logged with its
                    CmdSN and what the session's ExpCmdSN is after it.

Every task management request is logged with its function, ITT and referenced task tag:
"conn N: task management function F itt X ref R" (plus " ignored" when never answered).

After the trigger the target behaves (--after good, the default: the session can recover on a
new connection), refuses every new connection (--after refuse: the session must fail), or
accepts new connections and never answers them (--after mute: logins hang until their timeout). One
line per event goes to the log (stderr by default), "TRIGGER <mode> ..." when it misbehaves.
"""

import os
import random
import socket
import struct
import sys
import threading
import time

BLOCK = 512
BLOCKS = 16 * 2048  # 16 MiB
TRIGGER_LBA = 8192  # 4 MiB
TRIGGER_END = TRIGGER_LBA + 2048
RESERVED = 0xFFFFFFFF

READ_MODES = {"oversize", "past-end", "bad-datasn", "close-midway", "late-data", "after-abort",
              "time2wait"}
WRITE_MODES = {"data-for-write", "r2t-past-end", "r2t-burst"}
ANY_MODES = {"bad-itt", "dup-response", "initiator-opcode", "garbage", "huge-sense",
             "nop-flood", "async-logout", "ping-data", "reject", "silent", "silent-tmf",
             "ping-digest"}
# Negotiate CRC32C digests when the initiator offers them.
DIGEST_MODES = {"ping-digest"}
PING_DIGEST_TTT = 0x4343
PING_DIGEST_DATA = bytes(range(100))
LOGIN_MODES = {"login-oversize", "login-continue", "login-drip"}
# Misbehaving from the first SCSI command of every connection (no trigger window).
SCAN_MODES = {"scan-silent", "scan-close"}
READ_MODES |= {"scan-async"}
WRITE_MODES |= {"slow-drain", "r2t-reset", "slow-burst"}
ANY_MODES |= {"window-io", "late-tmf"}
WRITE_MODES |= {"filler-reset", "reject-data-out", "reject-data-out-field", "reject-digest"}
# The reason each rejects the trigger command with; the command's CmdSN is then a gap.
REJECT_COMMAND = {"reject": 0x09, "reject-digest": 0x02, "reject-always": 0x09}
WRITE_MODES |= {"reject-always"}
# The reason each rejects the trigger write's first Data-Out with.
REJECT_DATA_OUT = {"reject-data-out": 0x02, "reject-data-out-field": 0x09}
# Grants two connections per session and misbehaves only on a read that came on the added one.
CONN_LOGOUT_MODES = {"conn-logout", "conn-logout-refuse", "conn-logout-reject",
                     "conn-logout-mute", "conn-logout-lead"}
READ_MODES |= {"trickle-reset"} | CONN_LOGOUT_MODES
ADDED_CONN_MODES = {"trickle-reset", "filler-reset"} | CONN_LOGOUT_MODES - {"conn-logout-lead"}
# Misbehave only on a command that came on a leading connection.
LEADING_CONN_MODES = {"conn-logout-lead"}
# Serve LUN 1 too (its trigger is a WRITE to LUN 1).
TWO_LUN_MODES = {"filler-reset"}
# ExpCmdSN kept for the session (the first CmdSN not received on any connection), not per
# connection (the highest seen there).
SESSION_CMDSN_MODES = {"filler-reset"}
TRICKLE_HEAD = 100
# Triggered once per connection instead of once per target.
PER_CONN_MODES = {"slow-drain"}
# Modes that serve I/O as good does and misbehave at the session's logout, or at an added
# connection's login.
LOGOUT_MODES = {"logout-slow", "added-drop", "added-mute"}
MODES = {"good", "window-login"} | LOGOUT_MODES | READ_MODES | WRITE_MODES | ANY_MODES | LOGIN_MODES | SCAN_MODES
# A small receive buffer (inherited from the listening socket by each accepted socket, set
# before the handshake so the window is small from the start), so the initiator's send blocks.
SMALL_RCVBUF_MODES = {"slow-drain", "r2t-reset", "slow-burst", "filler-reset"}
SMALL_RCVBUF = 4096
DRIP_INTERVAL = 0.5
DRAIN_READ = 1448
DRAIN_INTERVAL = 3.0
LATE_TMF_DELAY = 6.0
R2T_RESET_STALL = 2.0
SLOW_READ = 4096
SLOW_INTERVAL = 0.5
SLOW_NOP_INTERVAL = 1.0
LOGOUT_SLOW = 5.0
ASYNC_LOGOUTS = 200
ADDED_DROP = 1.0

# The target's side of the operational negotiation (answered only for keys the initiator offers).
OURS = {
    "HeaderDigest": "None", "DataDigest": "None", "MaxRecvDataSegmentLength": 262144,
    "InitialR2T": "Yes", "ImmediateData": "Yes", "MaxBurstLength": 262144,
    "FirstBurstLength": 65536, "MaxOutstandingR2T": 1, "DataPDUInOrder": "Yes",
    "DataSequenceInOrder": "Yes", "ErrorRecoveryLevel": 0, "MaxConnections": 1,
    "DefaultTime2Wait": 0, "DefaultTime2Retain": 0,
}
# Per mode: no immediate data (the initiator's congestion window, hence its send buffer, stays
# small until the R2T) and, for slow-drain, one R2T for the whole write (a burst far larger
# than any send buffer).
MODE_OURS = {
    "time2wait": {"DefaultTime2Wait": 3600},
    "slow-drain": {"ImmediateData": "No", "MaxBurstLength": 16776192},
    "r2t-reset": {"ImmediateData": "No"},
    "trickle-reset": {"MaxConnections": 2},
    "conn-logout": {"MaxConnections": 2},
    "conn-logout-refuse": {"MaxConnections": 2},
    "conn-logout-reject": {"MaxConnections": 2},
    "conn-logout-mute": {"MaxConnections": 2},
    "conn-logout-lead": {"MaxConnections": 2},
    "added-drop": {"MaxConnections": 2},
    "added-mute": {"MaxConnections": 2},
    "slow-burst": {"ImmediateData": "No", "MaxBurstLength": 16776192,
                   "MaxRecvDataSegmentLength": 4096},
    "filler-reset": {"ImmediateData": "No", "MaxBurstLength": 16776192,
                     "MaxRecvDataSegmentLength": 4096, "MaxConnections": 2},
}
MIN_KEYS = {"MaxBurstLength", "FirstBurstLength", "MaxOutstandingR2T", "ErrorRecoveryLevel",
            "MaxConnections", "DefaultTime2Retain"}
MAX_KEYS = {"DefaultTime2Wait"}
OR_KEYS = {"InitialR2T", "DataPDUInOrder", "DataSequenceInOrder"}
AND_KEYS = {"ImmediateData"}

LOG = sys.stderr
log_lock = threading.Lock()


def log(msg):
    with log_lock:
        LOG.write("%.3f %s\n" % (time.monotonic(), msg))
        LOG.flush()


def pad4(b):
    return b + b"\0" * (-len(b) % 4)


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(b):
    """The iSCSI digest of b (CRC32C, RFC 7143 13.1), as sent: least significant byte first."""
    c = 0xFFFFFFFF
    for x in b:
        c = CRC32C_TABLE[(c ^ x) & 0xFF] ^ (c >> 8)
    return struct.pack("<I", c ^ 0xFFFFFFFF)


def be32(b, o):
    return struct.unpack_from(">I", b, o)[0]


class Disk:
    def __init__(self):
        self.data = bytearray(BLOCKS * BLOCK)
        self.lock = threading.Lock()


class Target:
    def __init__(self, port, mode, after):
        self.port = port
        self.mode = mode
        self.after = after
        self.disks = [Disk() for _ in range(2 if mode in TWO_LUN_MODES else 1)]
        self.disk = self.disks[0]
        self.triggered = False
        self.lock = threading.Lock()
        self.tsih = 1
        self.listener = None
        self.mute = []
        self.window_closed = mode == "window-login"  # window-io: closed at the trigger
        self.silent = False  # scan-async: after the event, on every connection
        self.stalled = []  # slow-drain: connections no longer read
        self.conns = []  # every connection accepted (filler-reset: a LUN reset reaches all)
        # SESSION_CMDSN_MODES: the session's ExpCmdSN and the CmdSNs received beyond it.
        self.cmd_sn_exp = 0
        self.cmd_sn_ahead = set()
        self.held_reads = set()  # filler-reset: ITTs of LUN 1 READs never answered
        self.released = False  # filler-reset: LUN 1 was reset, every connection read at speed

    def lun_index(self, lun):
        """The LUN a command names (0, or 1 in TWO_LUN_MODES), None if it is not served."""
        if lun == b"\0" * 8:
            return 0
        if len(self.disks) > 1 and lun == b"\0\x01" + b"\0" * 6:
            return 1
        return None

    def session_login(self, cmd_sn):
        """A leading connection logged in: the session's commands start at cmd_sn."""
        with self.lock:
            self.cmd_sn_exp = cmd_sn
            self.cmd_sn_ahead = set()

    def cmd_sn_arrived(self, cmd_sn):
        """A non-immediate PDU with cmd_sn arrived on some connection; returns the session's
        ExpCmdSN after it and how many CmdSNs were received beyond it (a hole before them)."""
        with self.lock:
            if ((cmd_sn - self.cmd_sn_exp) & RESERVED) < 0x80000000:
                self.cmd_sn_ahead.add(cmd_sn)
            while self.cmd_sn_exp in self.cmd_sn_ahead:
                self.cmd_sn_ahead.discard(self.cmd_sn_exp)
                self.cmd_sn_exp = (self.cmd_sn_exp + 1) & RESERVED
            return self.cmd_sn_exp, len(self.cmd_sn_ahead)

    def claim_login_trigger(self):
        with self.lock:
            if self.mode not in LOGIN_MODES or self.triggered:
                return False
            self.triggered = True
            return True

    def claim_trigger(self, is_read, is_write, lba, blocks, conn=None, lun=0):
        """Whether this command is the one to misbehave on (once per target, or once per
        connection for PER_CONN_MODES)."""
        if self.mode in TWO_LUN_MODES and lun != 1:
            return False
        if self.mode in ("good", "window-login") or self.mode in LOGIN_MODES or \
                self.mode in SCAN_MODES or self.mode in LOGOUT_MODES or blocks == 0:
            return False
        if not (lba < TRIGGER_END and lba + blocks > TRIGGER_LBA):
            return False
        if self.mode in READ_MODES and not is_read:
            return False
        if self.mode in WRITE_MODES and not is_write:
            return False
        if self.mode in ADDED_CONN_MODES and not (conn is not None and conn.added):
            return False
        if self.mode in LEADING_CONN_MODES and not (conn is not None and not conn.added):
            return False
        if self.mode == "reject-always":
            return True
        with self.lock:
            if self.mode in PER_CONN_MODES and conn is not None:
                if conn.triggered:
                    return False
                conn.triggered = True
                self.triggered = True
                return True
            if self.triggered:
                return False
            self.triggered = True
        return True

    def serve(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.mode in SMALL_RCVBUF_MODES:
            # Also an Ethernet-sized MSS (loopback's is ~64 KiB): the initiator's send buffer
            # grows with its MSS, and should not swallow a whole burst.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, DRAIN_READ)
        s.bind(("127.0.0.1", self.port))
        s.listen(8)
        self.listener = s
        log("listening on 127.0.0.1:%d mode %s after %s" % (self.port, self.mode, self.after))
        n = 0
        while True:
            c, _ = s.accept()
            n += 1
            with self.lock:
                stalled, self.stalled = self.stalled, []
            for old in stalled:
                log("conn %d: reset (a new connection came: conn %d)" % (old.n, n))
                old.reset()
            if self.triggered and self.after == "mute":
                log("conn %d: accepted, never answered (after the trigger)" % n)
                self.mute.append(c)
                continue
            if self.triggered and self.after == "refuse":
                log("conn %d: refused (after the trigger)" % n)
                c.close()
                continue
            conn = Conn(self, c, n)
            with self.lock:
                self.conns.append(conn)
            threading.Thread(target=conn.run, daemon=True).start()


class Closed(Exception):
    pass


class Conn:
    def __init__(self, target, sock, n):
        self.t = target
        self.s = sock
        self.n = n
        self.send_lock = threading.Lock()
        self.stat_sn = 0x1000 * n
        self.exp_cmd_sn = 0
        self.writes = {}  # ITT -> write state
        self.mrdsl = 8192  # the initiator's MaxRecvDataSegmentLength (our Data-In limit)
        self.neg = {}
        self.nop_replies = 0
        self.dup_itts = set()
        self.closed = False
        self.silent_tmf = False
        self.held = {}  # ITT -> how to answer it late (late-data, after-abort)
        self.triggered = False  # PER_CONN_MODES
        self.ours = dict(OURS, **MODE_OURS.get(target.mode, {}))
        self.silent_all = target.silent or target.mode == "scan-silent"
        self.async_pending = False  # scan-async: send the event after this answer
        self.r2t_held = None  # r2t-reset: (itt, write state) of the unanswered write
        self.late_itt = None  # late-tmf: the unanswered command
        self.muted = False  # added-mute: nothing is answered any more
        self.reject_next_data_out = None  # reject-data-out: the write whose Data-Out to reject
        self.gap = None  # REJECT_COMMAND: the rejected command's CmdSN, never filled
        self.added = False  # logged in with the TSIH of a session: not its leading connection
        self.trickling = False  # trickle-reset: nothing but the trickle is sent any more
        self.slow = False  # slow-burst: read slowly from the trigger on
        self.window_extra = 0  # slow-burst: commands let through beyond the 32-wide window
        self.slow_total = 0
        self.slow_logged = 0.0
        self.digests_next = set()  # ping-digest: negotiated, in force once logged in
        self.digests = set()

    # ---- I/O ----
    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            if self.slow:
                time.sleep(SLOW_INTERVAL)
                b = self.s.recv(min(n - len(buf), SLOW_READ))
                self.slow_total += len(b)
                if time.monotonic() - self.slow_logged >= 10:
                    self.slow_logged = time.monotonic()
                    log("%s: conn %d: %d bytes read since the trigger" %
                        (self.t.mode, self.n, self.slow_total))
            else:
                b = self.s.recv(n - len(buf))
            if not b:
                raise Closed()
            buf += b
        return bytes(buf)

    def recv_pdu(self):
        bhs = self.recv_exact(48)
        ahs = bhs[4] * 4
        dsl = (bhs[5] << 16) | (bhs[6] << 8) | bhs[7]
        head = bhs + (self.recv_exact(ahs) if ahs else b"")
        if "HeaderDigest" in self.digests:
            self.check_digest("header", head, bhs)
        data = self.recv_exact(dsl + (-dsl % 4)) if dsl else b""
        if dsl and "DataDigest" in self.digests:
            self.check_digest("data", data, bhs)
        return bhs, data[:dsl]

    def check_digest(self, what, covered, bhs):
        got = self.recv_exact(4)
        if got != crc32c(covered):
            log("conn %d: opcode %#x itt %#x: %s digest error (%s, expected %s)" %
                (self.n, bhs[0] & 0x3F, be32(bhs, 16), what, got.hex(), crc32c(covered).hex()))
            raise Closed("%s digest error" % what)

    def send(self, *parts):
        """Sends a PDU (its header, then its data segment in any number of parts) with the
        digests in force; before they are (the login), whatever bytes the parts hold."""
        wire = b"".join(parts)
        if self.digests and len(wire) >= 48:
            head, data = wire[:48], pad4(wire[48:])
            wire = head + (crc32c(head) if "HeaderDigest" in self.digests else b"") + data
            if data and "DataDigest" in self.digests:
                wire += crc32c(data)
        with self.send_lock:
            self.s.sendall(wire)

    def sn_fields(self, stat_sn=None):
        """StatSN, ExpCmdSN, MaxCmdSN."""
        if stat_sn is None:
            stat_sn = self.stat_sn
        # window-io keeps a window of one command until its trigger: an initiator ignores a
        # MaxCmdSN that goes back (RFC 7143 4.2.2.1), so MaxCmdSN must never decrease for
        # the window to be closed right after the trigger.
        window = -1 if self.t.window_closed else 0 if self.t.mode == "window-io" else \
            31 + self.window_extra
        exp = self.t.cmd_sn_exp if self.t.mode in SESSION_CMDSN_MODES else self.exp_cmd_sn
        return struct.pack(">III", stat_sn & RESERVED, exp & RESERVED, (exp + window) & RESERVED)

    def next_stat_sn(self):
        sn = self.stat_sn
        self.stat_sn = (self.stat_sn + 1) & RESERVED
        return sn

    def pdu(self, op, flags, b2=0, b3=0, dsl=0, lun=b"\0" * 8, itt=RESERVED, w20=RESERVED,
            sn=b"\0" * 12, tail=b"\0" * 12):
        h = struct.pack(">BBBBB", op, flags, b2, b3, 0) + struct.pack(">I", dsl)[1:] + lun + \
            struct.pack(">II", itt, w20) + sn + tail
        assert len(h) == 48, len(h)
        return h

    def reject(self, bhs, reason):
        """A Reject of the PDU whose header is `bhs` (its data segment), with `reason`."""
        self.send(self.pdu(0x3F, 0x80, b2=reason, dsl=48, itt=RESERVED, w20=0,
                           sn=self.sn_fields(self.next_stat_sn())), bhs)

    # ---- login ----
    def login(self):
        while True:
            bhs, data = self.recv_pdu()
            op = bhs[0] & 0x3F
            if op != 0x03:
                raise Closed("opcode %#x during login" % op)
            flags = bhs[1]
            csg = (flags >> 2) & 3
            nsg = flags & 3
            transit = bool(flags & 0x80)
            isid = bhs[8:14]
            self.added = self.added or struct.unpack_from(">H", bhs, 14)[0] != 0
            itt = be32(bhs, 16)
            cmd_sn = be32(bhs, 24)
            self.exp_cmd_sn = cmd_sn
            if not self.added and self.t.mode in SESSION_CMDSN_MODES:
                self.t.session_login(cmd_sn)
            text = data.decode(errors="replace").split("\0")
            log("conn %d: login request csg %d nsg %d T %d: %s" % (self.n, csg, nsg, transit,
                                                                   " ".join(t for t in text if t)))
            keys = dict(t.split("=", 1) for t in text if "=" in t)
            drip = False
            if self.t.claim_login_trigger():
                if self.t.mode == "login-drip":
                    drip = True
                else:
                    self.login_misbehave(itt, isid, csg)
            if csg == 0:
                answer = {"AuthMethod": "None"} if "AuthMethod" in keys else {}
                if "TargetName" in keys or "SessionType" in keys:
                    answer["TargetPortalGroupTag"] = "1"
            else:
                answer = self.negotiate(keys)
            body = "".join("%s=%s\0" % kv for kv in answer.items()).encode()
            dlen = len(body)
            final = transit and nsg == 3
            rflags = (0x80 if transit else 0) | (csg << 2) | (nsg if transit else 0)
            h = struct.pack(">BBBBB", 0x23, rflags, 0, 0, 0) + struct.pack(">I", dlen)[1:] + \
                isid + struct.pack(">H", self.t.tsih if final else 0) + \
                struct.pack(">II", itt, 0) + self.sn_fields(self.next_stat_sn()) + \
                b"\0" * 12
            if drip:
                self.drip(h + pad4(body))
            else:
                self.send(h, pad4(body))
            if final:
                self.digests = self.digests_next
                log("conn %d: logged in, negotiated %s" % (self.n, self.neg))
                if self.t.window_closed:
                    log("%s on conn %d: command window closed (MaxCmdSN = ExpCmdSN - 1 = %#x)" %
                        ("TRIGGER window-login" if self.t.mode == "window-login" else
                         "window-io", self.n, (self.exp_cmd_sn - 1) & RESERVED))
                return

    def drip(self, pdu):
        """login-drip: one byte every DRIP_INTERVAL seconds."""
        log("TRIGGER login-drip on conn %d: a %d-byte Login Response, one byte per %.1f s" %
            (self.n, len(pdu), DRIP_INTERVAL))
        for i in range(len(pdu)):
            try:
                self.send(pdu[i:i + 1])
            except OSError as e:
                log("login-drip: %d of %d bytes sent, then %s" % (i, len(pdu), e))
                raise Closed("login-drip: the initiator gave up")
            time.sleep(DRIP_INTERVAL)
        log("login-drip: all %d bytes sent" % len(pdu))

    def reset(self):
        """Drop the connection; unread data makes the close send a RST."""
        try:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def login_misbehave(self, itt, isid, csg):
        log("TRIGGER %s on conn %d" % (self.t.mode, self.n))
        h = bytearray(struct.pack(">BBBBB", 0x23, csg << 2, 0, 0, 0) + b"\0\0\0" + isid +
                      b"\0\0" + struct.pack(">II", itt, 0) + self.sn_fields(self.stat_sn) +
                      b"\0" * 12)
        if self.t.mode == "login-oversize":
            h[5:8] = b"\xff\xff\xff"
            self.send(bytes(h), os.urandom(65536))
        else:
            h[1] |= 0x40  # C: more text follows, forever
            body = pad4(b"X" * 100)
            h[5:8] = struct.pack(">I", len(body))[1:]
            for _ in range(1000):
                self.send(bytes(h), body)
                self.recv_pdu()
        raise Closed("login misbehaviour done")

    def negotiate(self, keys):
        OURS = self.ours
        answer = {}
        for k, v in keys.items():
            if k == "MaxRecvDataSegmentLength":
                self.mrdsl = int(v)
                answer[k] = str(OURS[k])
            elif k in ("HeaderDigest", "DataDigest"):
                if self.t.mode in DIGEST_MODES and "CRC32C" in v.split(","):
                    answer[k] = "CRC32C"
                    self.digests_next.add(k)
                else:
                    answer[k] = "None" if "None" in v.split(",") else "Reject"
            elif k in MIN_KEYS:
                answer[k] = str(min(int(v), OURS[k]))
            elif k in MAX_KEYS:
                answer[k] = str(max(int(v), OURS[k]))
            elif k in OR_KEYS:
                answer[k] = "Yes" if "Yes" in (v, OURS[k]) else "No"
            elif k in AND_KEYS:
                answer[k] = "Yes" if v == OURS[k] == "Yes" else "No"
            elif k in ("IFMarker", "OFMarker"):
                answer[k] = "No"
            else:
                answer[k] = "NotUnderstood"
        self.neg.update({k: v for k, v in answer.items()})
        if "MaxRecvDataSegmentLength" not in answer:
            answer["MaxRecvDataSegmentLength"] = str(OURS["MaxRecvDataSegmentLength"])
        return answer

    def param(self, k):
        v = self.neg.get(k, self.ours[k])
        return int(v) if str(v).isdigit() else v

    # ---- full feature phase ----
    def run(self):
        try:
            self.login()
            if self.t.mode == "added-drop" and self.added:
                threading.Timer(ADDED_DROP, self.drop_added).start()
            if self.t.mode == "added-mute" and self.added:
                threading.Timer(ADDED_DROP, self.mute_added).start()
            while True:
                bhs, data = self.recv_pdu()
                self.dispatch(bhs, data)
        except (Closed, OSError) as e:
            log("conn %d: closed (%s); %d NOP-Out replies to our pings" %
                (self.n, e or "eof", self.nop_replies))
        finally:
            self.closed = True
            try:
                self.s.close()
            except OSError:
                pass

    def drop_added(self):
        """added-drop: ends the connection (the receive loop then sees it closed)."""
        log("conn %d: added connection dropped" % self.n)
        try:
            self.s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def mute_added(self):
        """added-mute: nothing is answered on this connection any more."""
        log("conn %d: added connection muted" % self.n)
        self.muted = True

    def dispatch(self, bhs, data):
        if self.muted:
            return
        op = bhs[0] & 0x3F
        immediate = bool(bhs[0] & 0x40)
        itt = be32(bhs, 16)
        if self.trickling:
            # Mid-segment for good: any PDU sent now would be taken as segment bytes.
            log("conn %d: opcode %#x itt %#x ignored (trickling a Data-In segment)" %
                (self.n, op, itt))
            return
        if op in (0x00, 0x01, 0x02, 0x06) and not immediate and self.gap is not None:
            # Nothing runs past the gap (RFC 7143 3.2.2.1: commands are delivered in CmdSN
            # order); what comes after it waits, and ExpCmdSN stays.
            log("conn %d: opcode %#x itt %#x CmdSN %#x waits behind the CmdSN gap at %#x" %
                (self.n, op, itt, be32(bhs, 24), self.gap))
            return
        if op in (0x00, 0x01, 0x02, 0x06) and not immediate:
            cmd_sn = be32(bhs, 24)
            if ((cmd_sn - self.exp_cmd_sn) & RESERVED) < 0x80000000:
                self.exp_cmd_sn = (cmd_sn + 1) & RESERVED
            if self.t.mode in SESSION_CMDSN_MODES:
                exp, ahead = self.t.cmd_sn_arrived(cmd_sn)
                if op == 0x00:
                    log("conn %d: filler NOP-Out itt %#x CmdSN %#x: session ExpCmdSN %#x, "
                        "%d received beyond it" % (self.n, itt, cmd_sn, exp, ahead))
        if op == 0x00:  # NOP-Out
            if itt == RESERVED:
                self.nop_replies += 1
                if self.t.mode == "ping-digest" and be32(bhs, 20) == PING_DIGEST_TTT:
                    if data != PING_DIGEST_DATA:
                        log("ping-digest: the echo differs: %s" % data.hex())
                        raise Closed("ping-digest: wrong echo")
                    log("ping-digest: echo of %d bytes verified (digests %s)" %
                        (len(data), ",".join(sorted(self.digests))))
                return
            self.send(self.pdu(0x20, 0x80, dsl=len(data), lun=bhs[8:16], itt=itt,
                               sn=self.sn_fields(self.next_stat_sn())), pad4(data))
        elif op == 0x01 and self.silent_all:
            self.ignore(bhs)
        elif op == 0x01 and self.t.mode == "scan-close":
            log("TRIGGER scan-close on conn %d: opcode %#x itt %#x: closing the connection" %
                (self.n, bhs[32], itt))
            self.s.shutdown(socket.SHUT_RDWR)
            raise Closed("scan-close: closed at the first SCSI command")
        elif op == 0x01:
            self.scsi_command(bhs, data)
        elif op == 0x05 and self.silent_all:
            log("conn %d: Data-Out for itt %#x ignored (silent)" % (self.n, itt))
        elif op == 0x05:
            self.data_out(bhs, data)
        elif op == 0x06:  # Logout
            reason = bhs[1] & 0x7F
            log("conn %d: logout reason %d cid %d" %
                (self.n, reason, struct.unpack_from(">H", bhs, 20)[0]))
            if self.t.mode == "conn-logout-refuse" and reason == 1:
                self.send(self.pdu(0x26, 0x80, b2=3, itt=itt, w20=0,
                                   sn=self.sn_fields(self.next_stat_sn())))
                log("conn %d: logout refused (response 3, cleanup failed)" % self.n)
                return
            if self.t.mode == "conn-logout-reject" and reason == 1:
                self.reject(bhs, 0x04)
                log("conn %d: logout rejected (reason 0x04)" % self.n)
                return
            if self.t.mode == "conn-logout-mute" and reason == 1:
                log("conn %d: logout ignored" % self.n)
                return
            if self.t.mode == "logout-slow" and reason == 0:
                time.sleep(LOGOUT_SLOW)
                self.send(self.pdu(0x26, 0x80, itt=itt, w20=0,
                                   sn=self.sn_fields(self.next_stat_sn())))
                log("conn %d: logout reason 0 answered after %g s" % (self.n, LOGOUT_SLOW))
                self.after_logout()
                raise Closed("logged out")
            self.send(self.pdu(0x26, 0x80, itt=itt, w20=0,
                               sn=self.sn_fields(self.next_stat_sn())))
            log("conn %d: logout" % self.n)
            if self.t.mode in CONN_LOGOUT_MODES:
                self.after_logout()
            raise Closed("logged out")
        elif op == 0x02 and (self.silent_tmf or self.silent_all):
            log("conn %d: task management function %d itt %#x ref %#x ignored" %
                (self.n, bhs[1] & 0x7F, itt, be32(bhs, 20)))
        elif op == 0x02 and self.special_tmf(bhs[1] & 0x7F, itt, be32(bhs, 20), bhs[8:16]):
            pass
        elif op == 0x02:  # Task Management: "function complete"
            ref = be32(bhs, 20)
            log("conn %d: task management function %d itt %#x ref %#x" %
                (self.n, bhs[1] & 0x7F, itt, ref))
            late = self.held.pop(ref, None)
            if late and self.t.mode == "late-data":
                log("late-data: Data-In for itt %#x before the TMF response" % ref)
                late()
            if late and self.t.mode == "after-abort":
                self.send(self.pdu(0x22, 0x80, b2=0, itt=itt, w20=0,
                                   sn=self.sn_fields(self.next_stat_sn())))
                log("after-abort: Data-In for itt %#x after the TMF response" % ref)
                late()
                return
            self.send(self.pdu(0x22, 0x80, b2=0, itt=itt, w20=0,
                               sn=self.sn_fields(self.next_stat_sn())))
        else:
            log("conn %d: ignoring opcode %#x" % (self.n, op))

    def after_logout(self):
        """conn-logout and logout-slow: what the initiator sends on a connection after its
        logout (RFC 7143 11.14: nothing), logged until it closes the connection."""
        self.s.settimeout(3.0)
        try:
            while True:
                bhs, _ = self.recv_pdu()
                log("conn %d: opcode %#x itt %#x after the logout" %
                    (self.n, bhs[0] & 0x3F, be32(bhs, 16)))
        except socket.timeout:
            log("conn %d: still open 3 s after the logout" % self.n)
        except (Closed, OSError):
            pass

    def tmf_response(self, itt, response=0):
        self.send(self.pdu(0x22, 0x80, b2=response, itt=itt, w20=0,
                           sn=self.sn_fields(self.next_stat_sn())))

    def ignore(self, bhs):
        """A SCSI command never answered (scan-silent, scan-async after its event)."""
        what = "opcode %#x itt %#x" % (bhs[32], be32(bhs, 16))
        if not self.triggered and self.t.mode == "scan-silent":
            self.triggered = True
            log("TRIGGER scan-silent on conn %d: %s never answered, nor any later command or "
                "task management request" % (self.n, what))
        else:
            log("conn %d: %s ignored (silent)" % (self.n, what))

    def special_tmf(self, fn, itt, ref, lun):
        """r2t-reset, late-tmf and filler-reset; True if handled."""
        desc = "conn %d: task management function %d itt %#x ref %#x" % (self.n, fn, itt, ref)
        m = self.t.mode
        if m == "filler-reset" and self.t.triggered and not self.t.released:
            if fn == 1 and ref in self.t.held_reads:
                log(desc + " ignored (filler-reset: a held READ of LUN 1)")
                return True
            if fn == 5 and self.t.lun_index(lun) == 1:
                with self.t.lock:
                    held = len(self.t.held_reads)
                    self.t.held_reads.clear()
                    self.t.released = True
                    conns = list(self.t.conns)
                ended = 0
                for c in conns:
                    c.slow = False
                    for witt, w in list(c.writes.items()):
                        if w["lun"] == lun and c.writes.pop(witt, None) is not None:
                            ended += 1
                log(desc + ": LUN 1 reset: %d held READs and %d writes ended; every connection "
                    "is read at full speed from now on" % (held, ended))
                self.tmf_response(itt)
                return True
            if fn == 5:
                log(desc + ": LUN %s reset answered at once (the trigger's connection is still "
                    "read slowly)" % self.t.lun_index(lun))
                self.tmf_response(itt)
                return True
        if m == "r2t-reset" and self.r2t_held is not None:
            if fn != 5:
                log(desc + " ignored (r2t-reset: silent until the LUN reset)")
                return True
            log(desc)
            witt, w = self.r2t_held
            self.r2t_held = None
            n = min(self.param("MaxBurstLength"), w["edtl"] - w["got"])
            self.r2t(witt, w, w["got"], n)
            log("r2t-reset: R2T for itt %#x (offset %d, %d bytes) sent during the LUN reset; "
                "not reading for %.0f s" % (witt, w["got"], n, R2T_RESET_STALL))
            time.sleep(R2T_RESET_STALL)
            self.tmf_response(itt)
            log("r2t-reset: LUN reset itt %#x answered \"function complete\"; itt %#x's Data-Out "
                "will be discarded" % (itt, witt))
            return True
        if m == "late-tmf" and self.late_itt is not None:
            if fn == 1 and ref == self.late_itt:
                log(desc + ": answered in %.0f s" % LATE_TMF_DELAY)
                t = threading.Timer(LATE_TMF_DELAY, self.late_answer, args=(itt,))
                t.daemon = True
                t.start()
                return True
            if fn == 5:
                log(desc + " ignored (late-tmf: never answered)")
                return True
            if fn == 6:
                log(desc)
                self.tmf_response(itt)
                log("late-tmf: target reset itt %#x answered \"function complete\"; itt %#x ended"
                    % (itt, self.late_itt))
                self.late_itt = None
                return True
        return False

    def late_answer(self, itt):
        if self.closed:
            log("late-tmf: conn %d closed before the late answer to ABORT TASK itt %#x" %
                (self.n, itt))
            return
        try:
            self.tmf_response(itt)
        except OSError as e:
            log("late-tmf: late answer to ABORT TASK itt %#x failed: %s" % (itt, e))
            return
        log("late-tmf: late answer to ABORT TASK itt %#x sent" % itt)

    def async_rescan(self):
        """scan-async: Async Message event 0, UNIT ATTENTION 3Fh/0Eh; then silence."""
        sense = bytearray(18)
        sense[0], sense[2], sense[7], sense[12], sense[13] = 0x70, 0x06, 10, 0x3F, 0x0E
        body = struct.pack(">H", len(sense)) + bytes(sense)
        self.silent_all = True
        self.t.silent = True
        self.send(self.pdu(0x32, 0x80, dsl=len(body), itt=RESERVED, w20=RESERVED,
                           sn=self.sn_fields(self.next_stat_sn()),
                           tail=struct.pack(">BBHHHI", 0, 0, 0, 0, 0, 0)), pad4(body))
        log("scan-async: conn %d: Async Message event 0 (REPORTED LUNS DATA HAS CHANGED) sent; "
            "no command or task management request is answered from now on" % self.n)

    def trickle(self, itt, edtl, lun):
        """trickle-reset: a Data-In header, TRICKLE_HEAD bytes of its segment, then one byte
        every DRIP_INTERVAL seconds, never the last: this connection answers nothing more (its
        stream is mid-segment), while the session's other connection answers task management
        at once."""
        n = min(self.mrdsl, edtl)
        self.trickling = True
        self.send(self.pdu(0x25, 0x00, dsl=n, lun=lun, itt=itt, sn=self.sn_fields(),
                           tail=struct.pack(">III", 0, 0, 0)), b"\xaa" * TRICKLE_HEAD)
        log("trickle-reset: conn %d: Data-In header for itt %#x (%d bytes) and %d of them sent; "
            "one more every %.1f s" % (self.n, itt, n, TRICKLE_HEAD, DRIP_INTERVAL))

        def drip():
            sent = TRICKLE_HEAD
            while sent < n - 1:
                time.sleep(DRIP_INTERVAL)
                try:
                    self.send(b"\xab")
                except OSError as e:
                    log("trickle-reset: conn %d: %d bytes of the segment sent, then %s" %
                        (self.n, sent, e))
                    return
                sent += 1
        threading.Thread(target=drip, daemon=True).start()

    def stall(self):
        """slow-drain: read one MSS every DRAIN_INTERVAL seconds, never answer again."""
        with self.t.lock:
            self.t.stalled.append(self)
        total = 0
        while True:
            time.sleep(DRAIN_INTERVAL)
            b = self.s.recv(DRAIN_READ)
            if not b:
                raise Closed("slow-drain: eof after %d bytes drained" % total)
            total += len(b)
            log("slow-drain: conn %d: read %d bytes (%d in all)" % (self.n, len(b), total))

    def response(self, itt, status=0, sense=None, residual=0, underflow=False, lun=b"\0" * 8):
        data = b""
        if sense is not None:
            data = struct.pack(">H", len(sense)) + sense
        flags = 0x80 | (0x02 if underflow else 0)
        self.send(self.pdu(0x21, flags, b2=0, b3=status, dsl=len(data), itt=itt, w20=0,
                           sn=self.sn_fields(self.next_stat_sn()),
                           tail=struct.pack(">III", 0, 0, residual)), pad4(data))
        self.after_status(itt)

    def after_status(self, itt):
        if itt in self.dup_itts:
            self.dup_itts.discard(itt)
            log("dup-response: second SCSI Response for itt %#x" % itt)
            self.response(itt)

    def check(self, itt, edtl, key=0x05, asc=0x20, ascq=0x00):
        sense = bytearray(18)
        sense[0], sense[2], sense[7], sense[12], sense[13] = 0x70, key, 10, asc, ascq
        self.response(itt, status=0x02, sense=bytes(sense), residual=edtl, underflow=edtl > 0)

    def data_in(self, itt, edtl, payload, lun=b"\0" * 8):
        """Data-In PDUs for a read, status in the last one."""
        payload = payload[:edtl]
        if not payload:
            self.response(itt, residual=edtl, underflow=edtl > 0)
            return
        burst = self.param("MaxBurstLength")
        off = 0
        sn = 0
        while off < len(payload):
            n = min(self.mrdsl, len(payload) - off, burst - off % burst)
            last = off + n == len(payload)
            end_of_burst = last or (off + n) % burst == 0
            residual = edtl - len(payload)
            flags = (0x80 if end_of_burst else 0) | (0x01 if last else 0) | \
                (0x02 if last and residual else 0)
            self.send(self.pdu(0x25, flags, dsl=n, lun=lun, itt=itt, w20=RESERVED,
                               sn=self.sn_fields(self.next_stat_sn() if last else None),
                               tail=struct.pack(">III", sn, off, residual if last else 0)),
                      pad4(payload[off:off + n]))
            off += n
            sn += 1
        self.after_status(itt)

    def scsi_command(self, bhs, data):
        flags = bhs[1]
        is_read, is_write = bool(flags & 0x40), bool(flags & 0x20)
        lun = bhs[8:16]
        itt = be32(bhs, 16)
        edtl = be32(bhs, 20)
        cdb = bhs[32:48]
        op = cdb[0]
        lba = blocks = 0
        if op in (0x28, 0x2A):
            lba, blocks = be32(cdb, 2), struct.unpack_from(">H", cdb, 7)[0]
        elif op in (0x88, 0x8A):
            lba, blocks = struct.unpack_from(">QI", cdb, 2)
        li = self.t.lun_index(lun)
        if li is None:
            self.check(itt, edtl, 0x05, 0x25, 0x00)  # LOGICAL UNIT NOT SUPPORTED
            return
        if self.t.mode == "filler-reset" and li == 1 and op in (0x28, 0x88) and \
                self.t.triggered and not self.t.released:
            with self.t.lock:
                self.t.held_reads.add(itt)
            log("filler-reset: conn %d: READ of LUN 1 itt %#x held until LUN 1 is reset" %
                (self.n, itt))
            return
        if self.t.mode == "filler-reset" and op == 0x00 and self.t.triggered:
            log("filler-reset: conn %d: TEST UNIT READY of LUN %d itt %#x" % (self.n, li, itt))
        trigger = self.t.claim_trigger(op in (0x28, 0x88), op in (0x2A, 0x8A), lba, blocks, self,
                                       li)
        if trigger:
            log("TRIGGER %s on conn %d: opcode %#x lba %d blocks %d edtl %d itt %#x" %
                (self.t.mode, self.n, op, lba, blocks, edtl, itt))
            if not self.misbehave(bhs, data, itt, edtl, op, lba, blocks):
                return
        if self.async_pending:
            self.async_pending = False
            self.serve_command(bhs, data, itt, edtl, cdb, op, lba, blocks, lun, is_read)
            self.async_rescan()
            return
        self.serve_command(bhs, data, itt, edtl, cdb, op, lba, blocks, lun, is_read)

    def serve_command(self, bhs, data, itt, edtl, cdb, op, lba, blocks, lun, is_read):
        disk = self.t.disks[self.t.lun_index(lun)]
        if op in (0x2A, 0x8A):
            if lba + blocks > BLOCKS or blocks * BLOCK != edtl:
                self.check(itt, edtl, 0x05, 0x21, 0x00)
                return
            w = {"lba": lba, "edtl": edtl, "buf": bytearray(edtl), "got": len(data),
                 "next": len(data), "ttt": 0x100 + (itt & 0xFFFF), "r2tsn": 0, "lun": lun,
                 "disk": disk}
            w["buf"][:len(data)] = data
            self.writes[itt] = w
            if self.reject_next_data_out == itt:
                w["reject"] = True
            self.advance_write(itt)
            return
        if op in (0x28, 0x88):
            if lba + blocks > BLOCKS:
                self.check(itt, edtl, 0x05, 0x21, 0x00)
                return
            with disk.lock:
                payload = bytes(disk.data[lba * BLOCK:(lba + blocks) * BLOCK])
            self.data_in(itt, edtl, payload, lun)
            return
        reply = self.emulate(cdb)
        if reply is None:
            self.check(itt, edtl)  # INVALID COMMAND OPERATION CODE / FIELD IN CDB
        elif is_read and edtl:
            self.data_in(itt, edtl, reply, lun)
        else:
            self.response(itt)

    def emulate(self, cdb):
        op = cdb[0]
        if op in (0x00, 0x35, 0x91, 0x1E):  # TUR, SYNC CACHE 10/16, PREVENT ALLOW
            return b""
        if op == 0x12:  # INQUIRY
            if cdb[1] & 1:
                if cdb[2] == 0x00:
                    return bytes([0, 0x00, 0, 1, 0x00])
                return None
            return bytes([0, 0, 0x05, 0x02, 31, 0, 0, 0x02]) + b"HOSTILE " + \
                b"FAKE LUN        " + b"0001"
        if op == 0xA0:  # REPORT LUNS
            n = len(self.t.disks)
            return struct.pack(">II", 8 * n, 0) + \
                b"".join(struct.pack(">H", i) + b"\0" * 6 for i in range(n))
        if op == 0x25:  # READ CAPACITY(10)
            return struct.pack(">II", BLOCKS - 1, BLOCK)
        if op == 0x9E and cdb[1] & 0x1F == 0x10:  # READ CAPACITY(16)
            return struct.pack(">QI", BLOCKS - 1, BLOCK) + b"\0" * 20
        if op == 0x1A:  # MODE SENSE(6): header only
            return bytes([3, 0, 0, 0])
        if op == 0x5A:  # MODE SENSE(10)
            return bytes([0, 6, 0, 0, 0, 0, 0, 0])
        return None

    def advance_write(self, itt):
        w = self.writes.get(itt)
        if w is None:
            return  # ended meanwhile (filler-reset: a LUN reset on another connection)
        if w["got"] >= w["edtl"] and w.get("crc_error"):
            del self.writes[itt]
            log("%s: itt %#x ended with CHECK CONDITION (CRC error detected)" % (self.t.mode, itt))
            self.check(itt, w["edtl"], 0x0B, 0x47, 0x05)
            return
        if w["got"] >= w["edtl"]:
            del self.writes[itt]
            with w["disk"].lock:
                w["disk"].data[w["lba"] * BLOCK:w["lba"] * BLOCK + w["edtl"]] = w["buf"]
            self.response(itt)
            return
        if w["next"] > w["got"]:
            return  # an R2T is outstanding
        n = min(self.param("MaxBurstLength"), w["edtl"] - w["got"])
        self.r2t(itt, w, w["got"], n)
        w["next"] = w["got"] + n

    def r2t(self, itt, w, offset, length):
        sn = w["r2tsn"]
        w["r2tsn"] += 1
        self.send(self.pdu(0x31, 0x80, lun=w["lun"], itt=itt, w20=w["ttt"], sn=self.sn_fields(),
                           tail=struct.pack(">III", sn, offset, length)))

    def data_out(self, bhs, data):
        itt = be32(bhs, 16)
        off = be32(bhs, 40)
        w = self.writes.get(itt)
        if w is None:
            log("conn %d: Data-Out for unknown itt %#x" % (self.n, itt))
            return
        if w.pop("reject", False):
            reason = REJECT_DATA_OUT[self.t.mode]
            self.reject(bhs, reason)
            if reason == 0x02:
                log("%s: conn %d: Data-Out of itt %#x at %d rejected (reason %#x): the task "
                    "ends with CHECK CONDITION once the rest has come" %
                    (self.t.mode, self.n, itt, off, reason))
                # Its data is dropped, but it counts as come: an F bit on it still ends
                # the burst (RFC 7143 7.8: the response waits for every burst's F bit).
                w["crc_error"] = True
                w["got"] = max(w["got"], off + len(data))
                if bhs[1] & 0x80:
                    self.advance_write(itt)
            else:
                log("%s: conn %d: Data-Out of itt %#x at %d rejected (reason %#x): the task "
                    "waits for that data for good" % (self.t.mode, self.n, itt, off, reason))
                w["gap"] = True
            return
        if w.get("gap"):
            return  # the rest of the write is read and dropped: the task waits for its gap
        w["buf"][off:off + len(data)] = data
        w["got"] = max(w["got"], off + len(data))
        if bhs[1] & 0x80:
            self.advance_write(itt)

    # ---- misbehaviour ----
    def misbehave(self, bhs, data, itt, edtl, op, lba, blocks):
        """Misbehave on this command; True to then handle it normally."""
        m = self.t.mode
        lun = bhs[8:16]
        if m == "trickle-reset":
            self.trickle(itt, edtl, lun)
            return False
        if m in CONN_LOGOUT_MODES:
            self.send(self.pdu(0x32, 0x80, itt=RESERVED, w20=RESERVED,
                               sn=self.sn_fields(self.next_stat_sn()),
                               tail=struct.pack(">BBHHHI", 1, 0, 0, 0, 4, 0)))
            log("conn-logout: conn %d asked to log out within 4 s; itt %#x held" % (self.n, itt))
            return False
        if m == "oversize":
            h = bytearray(self.pdu(0x25, 0x00, itt=itt, sn=self.sn_fields(),
                                   tail=struct.pack(">III", 0, 0, 0)))
            h[5:8] = b"\xff\xff\xff"
            self.send(bytes(h), os.urandom(65536))
            return False
        if m == "past-end":
            with self.t.disk.lock:
                payload = bytes(self.t.disk.data[lba * BLOCK:(lba + blocks) * BLOCK])
            n = edtl + 4096
            if n > self.mrdsl:
                log("WARNING: edtl %d too long for past-end (MaxRecvDataSegmentLength %d)" %
                    (edtl, self.mrdsl))
            self.send(self.pdu(0x25, 0x81, dsl=n, lun=lun, itt=itt,
                               sn=self.sn_fields(self.next_stat_sn()),
                               tail=struct.pack(">III", 0, 0, 0)),
                      pad4(payload + b"\xee" * 4096))
            return False
        if m == "bad-itt":
            for bogus in (itt ^ 0x5A5A0000, 0x0000FFF7, 0x7FFFFFFE):
                self.send(self.pdu(0x25, 0x81, dsl=512, itt=bogus,
                                   sn=self.sn_fields(self.next_stat_sn()),
                                   tail=struct.pack(">III", 0, 0, 0)), b"\xbb" * 512)
                self.response(bogus)
            return True
        if m == "data-for-write":
            self.send(self.pdu(0x25, 0x00, dsl=4096, lun=lun, itt=itt, sn=self.sn_fields(),
                               tail=struct.pack(">III", 0, 0, 0)), b"\xdd" * 4096)
            return False
        if m == "dup-response":
            self.dup_itts.add(itt)  # a second response follows the real one (after_status)
            return True
        if m == "bad-datasn":
            with self.t.disk.lock:
                payload = bytes(self.t.disk.data[lba * BLOCK:(lba + blocks) * BLOCK])
            half = min(len(payload) // 2, self.mrdsl)
            self.send(self.pdu(0x25, 0x00, dsl=half, lun=lun, itt=itt, sn=self.sn_fields(),
                               tail=struct.pack(">III", 0, 0, 0)), pad4(payload[:half]))
            self.send(self.pdu(0x25, 0x00, dsl=half, lun=lun, itt=itt, sn=self.sn_fields(),
                               tail=struct.pack(">III", 2, half, 0)),
                      pad4(payload[half:2 * half]))
            return False
        if m in ("r2t-past-end", "r2t-burst"):
            w = {"lun": lun, "ttt": 0x200, "r2tsn": 0}
            if m == "r2t-past-end":
                self.r2t(itt, w, len(data), edtl - len(data) + 4096)
            else:
                burst = self.param("MaxBurstLength")
                if edtl - len(data) <= burst:
                    log("WARNING: edtl %d too short for r2t-burst (MaxBurstLength %d)" %
                        (edtl, burst))
                self.r2t(itt, w, len(data), burst + 4096)
            return False
        if m == "initiator-opcode":
            self.send(self.pdu(0x01, 0xC0, itt=itt, w20=4096, sn=self.sn_fields(),
                               tail=b"\x28" + b"\0" * 11))
            return False
        if m == "garbage":
            rnd = random.Random(7143)
            junk = bytes(rnd.getrandbits(8) for _ in range(48))
            log("garbage BHS: %s" % junk.hex())
            self.send(junk)
            for _ in range(64):
                self.send(bytes(rnd.getrandbits(8) for _ in range(1024)))
            return False
        if m == "huge-sense":
            sense = bytearray(18)
            sense[0], sense[2], sense[7], sense[12] = 0x70, 0x03, 10, 0x11
            body = struct.pack(">H", 0xFFFF) + bytes(sense)
            self.send(self.pdu(0x21, 0x82, b3=0x02, dsl=len(body), itt=itt, w20=0,
                               sn=self.sn_fields(self.next_stat_sn()),
                               tail=struct.pack(">III", 0, 0, edtl)), pad4(body))
            return False
        if m == "nop-flood":
            threading.Thread(target=self.flood, daemon=True).start()
            return True
        if m == "async-logout":
            for _ in range(ASYNC_LOGOUTS):
                self.send(self.pdu(0x32, 0x80, itt=RESERVED, w20=RESERVED,
                                   sn=self.sn_fields(self.next_stat_sn()),
                                   tail=struct.pack(">BBHHHI", 1, 0, 0, 0, 2, 0)))
            return False
        if m == "ping-digest":
            self.send(self.pdu(0x20, 0x80, dsl=len(PING_DIGEST_DATA), itt=RESERVED,
                               w20=PING_DIGEST_TTT, sn=self.sn_fields()), PING_DIGEST_DATA)
            return True
        if m == "ping-data":
            self.send(self.pdu(0x20, 0x80, dsl=4096, itt=RESERVED, w20=0x4242,
                               sn=self.sn_fields()), b"\x50" * 4096)
            return True
        if m in REJECT_COMMAND:
            # Discarded: its CmdSN is not received (RFC 7143 6.3), ExpCmdSN goes back to it.
            self.gap = be32(bhs, 24)
            self.exp_cmd_sn = self.gap
            self.reject(bhs, REJECT_COMMAND[m])
            log("%s: conn %d: command itt %#x rejected (reason %#x); CmdSN %#x is a gap" %
                (m, self.n, itt, REJECT_COMMAND[m], self.gap))
            return False
        if m in REJECT_DATA_OUT:
            self.reject_next_data_out = itt
            return True
        if m in ("silent", "silent-tmf"):
            self.silent_tmf = m == "silent-tmf"
            return False
        if m in ("late-data", "after-abort"):
            with self.t.disk.lock:
                payload = bytes(self.t.disk.data[lba * BLOCK:(lba + blocks) * BLOCK])
            self.held[itt] = lambda: self.data_in(itt, edtl, payload, lun)
            return False
        if m == "scan-async":
            self.async_pending = True
            return True
        if m == "window-io":
            self.t.window_closed = True
            log("window-io: the command is answered; every PDU from now on has MaxCmdSN = "
                "ExpCmdSN - 1")
            return True
        if m == "slow-drain":
            w = {"lun": lun, "ttt": 0x300 + (itt & 0xFFFF), "r2tsn": 0}
            n = min(self.param("MaxBurstLength"), edtl - len(data))
            if n > 0:
                self.r2t(itt, w, len(data), n)
            log("slow-drain: conn %d: R2T for %d bytes at %d sent; now reading %d bytes every "
                "%.0f s, answering nothing" % (self.n, n, len(data), DRAIN_READ, DRAIN_INTERVAL))
            self.stall()
        if m == "r2t-reset":
            self.r2t_held = (itt, {"lun": lun, "ttt": 0x300 + (itt & 0xFFFF), "r2tsn": 0,
                                   "got": len(data), "edtl": edtl})
            log("r2t-reset: itt %#x held (%d of %d bytes received), no R2T until a LUN reset" %
                (itt, len(data), edtl))
            return False
        if m == "late-tmf":
            self.late_itt = itt
            return False
        if m == "filler-reset":
            self.slow = True
            threading.Thread(target=self.quiet_nops, args=(False,), daemon=True).start()
            log("filler-reset: conn %d: one R2T for the write; this connection is read %d bytes "
                "per %.1f s from now on, a NOP-In every %.0f s; READs of LUN 1 are held until "
                "LUN 1 is reset" % (self.n, SLOW_READ, SLOW_INTERVAL, SLOW_NOP_INTERVAL))
            return True
        if m == "slow-burst":
            self.slow = True
            threading.Thread(target=self.quiet_nops, daemon=True).start()
            log("slow-burst: conn %d: the write is served, its Data-Out read %d bytes per %.1f s "
                "from now on; a NOP-In every %.0f s, each opening the window by one" %
                (self.n, SLOW_READ, SLOW_INTERVAL, SLOW_NOP_INTERVAL))
            return True
        if m in ("close-midway", "time2wait"):
            with self.t.disk.lock:
                payload = bytes(self.t.disk.data[lba * BLOCK:(lba + blocks) * BLOCK])
            n = min(len(payload), self.mrdsl)
            self.send(self.pdu(0x25, 0x81 if n == len(payload) else 0x00, dsl=n, lun=lun,
                               itt=itt, sn=self.sn_fields(),
                               tail=struct.pack(">III", 0, 0, 0)), payload[:n // 2])
            time.sleep(0.2)
            self.s.shutdown(socket.SHUT_RDWR)
            raise Closed("closed midway by design")
        raise AssertionError(m)

    def quiet_nops(self, open_window=True):
        """slow-burst, filler-reset: NOP-Ins wanting no answer, so the initiator never finds
        the connection idle; for slow-burst each opens the window by one command."""
        while not self.closed:
            time.sleep(SLOW_NOP_INTERVAL)
            if open_window:
                self.window_extra += 1
            try:
                self.send(self.pdu(0x20, 0x80, itt=RESERVED, w20=RESERVED, sn=self.sn_fields()))
            except OSError:
                return

    def flood(self):
        sent = 0
        try:
            for i in range(10000):
                self.send(self.pdu(0x20, 0x80, itt=RESERVED, w20=0x10000 + i,
                                   sn=self.sn_fields()))
                sent += 1
        except OSError as e:
            log("nop-flood: stopped after %d pings (%s)" % (sent, e))
        log("nop-flood: %d pings sent" % sent)
        deadline = time.monotonic() + 10
        while self.nop_replies < sent and not self.closed and time.monotonic() < deadline:
            time.sleep(0.1)
        log("nop-flood: %d of %d pings answered" % (self.nop_replies, sent))


def main():
    args = sys.argv[1:]
    global LOG
    after = "good"
    if "--after" in args:
        i = args.index("--after")
        after = args[i + 1]
        del args[i:i + 2]
    if "--log" in args:
        i = args.index("--log")
        LOG = open(args[i + 1], "a")
        del args[i:i + 2]
    if len(args) != 2 or args[1] not in MODES or after not in ("good", "refuse", "mute"):
        sys.exit("usage: hostile-target.py PORT MODE [--after good|refuse|mute] [--log FILE]\n"
                 "modes: " + " ".join(sorted(MODES)))
    Target(int(args[0]), args[1], after).serve()


if __name__ == "__main__":
    main()
