// SPDX-License-Identifier: GPL-2.0

//! Built-in self-tests, run by writing to `/sys/kernel/config/core_iscsi/selftest`:
//!
//! - `crypto`: known answers of the kernel's CRC32C (RFC 3720 appendix B.4) and of the CHAP
//!   hashes (MD5, SHA-1, SHA-256, SHA3-256 of "abc"), through the protocol core's traits. Also
//!   run at module load, which fails if they do.
//! - `parse`: portal address parsing and formatting.
//! - `connect ADDR`: connects to ADDR and closes; the write fails with the connect's errno
//!   (ECONNREFUSED, ENETUNREACH, ETIMEDOUT after 2 s ...).
//! - `socket ADDR`: against a TCP echo server at ADDR: gathered and zero-copy page sends,
//!   exact and page receives checked byte for byte, socket callbacks, timeouts, shutdown.
//! - `fill ADDR`: against a peer at ADDR that never reads, once the send buffer is full, a
//!   PDU of each shape the module sends from queuecommand, sent without waiting for room
//!   (`SendWait::No`), returns at once with less than all of it taken.
//!
//! A write succeeds when the test passes and fails with the errno of the first failed check
//! otherwise (EIO for a wrong result); the kernel log says what was checked and what failed.
//! This is driver code: safe Rust on top of kernel/sys.

use crate::proto::chap::{ChapAlgorithm, ChapDigest, MAX_DIGEST_LEN};
use crate::proto::crc;
use crate::sys::crypto::{KernelChapDigest, KernelCrc32c};
use crate::sys::mem::Deadline;
use crate::sys::page;
use crate::sys::socket::{PageRange, ReadyQueue, SendWait, SocketAddr, SocketEvents, TcpStream};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use kernel::page::{Page, PAGE_SIZE};
use kernel::prelude::*;
use kernel::sync::{Arc, CondVar, Mutex};
use kernel::time::{ktime_ms_delta, msecs_to_jiffies, Ktime};
use kernel::{new_condvar, new_mutex};

/// Runs the self-test the written text names (see the module documentation).
pub(crate) fn run(cmd: &[u8]) -> Result {
    let cmd = cmd.trim_ascii();
    let (word, arg) = match cmd.iter().position(|&c| c == b' ') {
        Some(i) => (
            cmd.get(..i).unwrap_or(&[]),
            cmd.get(i + 1..).unwrap_or(&[]).trim_ascii(),
        ),
        None => (cmd, &[][..]),
    };
    match word {
        b"crypto" => crypto(),
        b"parse" => parse(),
        b"connect" => connect(arg),
        b"socket" => socket(arg),
        b"fill" => fill(arg),
        _ => {
            pr_err!(
                "core-iscsi selftest: unknown test (crypto, parse, connect ADDR, socket ADDR, fill ADDR)\n"
            );
            Err(EINVAL)
        }
    }
}

/// Fails with `EIO` and logs `what` unless `ok`.
fn check(ok: bool, what: &str) -> Result {
    if ok {
        Ok(())
    } else {
        pr_err!("core-iscsi selftest: FAILED: {}\n", what);
        Err(EIO)
    }
}

/// Parses a lowercase hex string of known answers (test data written in this file).
fn unhex<const N: usize>(s: &str) -> Result<[u8; N]> {
    let mut out = [0u8; N];
    let b = s.as_bytes();
    if b.len() != N * 2 {
        return Err(EINVAL);
    }
    let v = |c: Option<&u8>| match c.copied() {
        Some(c @ b'0'..=b'9') => Ok(c - b'0'),
        Some(c @ b'a'..=b'f') => Ok(c - b'a' + 10),
        _ => Err(EINVAL),
    };
    for (i, o) in out.iter_mut().enumerate() {
        let at = i.checked_mul(2).ok_or(EINVAL)?;
        *o = (v(b.get(at))? << 4) | v(b.get(at + 1))?;
    }
    Ok(out)
}

/// Known answers of CRC32C (RFC 3720 B.4) and of the CHAP hashes; cheap enough for every load.
pub(crate) fn crypto() -> Result {
    let c = KernelCrc32c;
    let mut inc = [0u8; 32];
    let mut dec = [0u8; 32];
    for (i, (a, b)) in inc.iter_mut().zip(dec.iter_mut()).enumerate() {
        // i < 32.
        *a = i as u8;
        *b = 31 - i as u8;
    }
    let crc_cases: [(&str, &[u8], u32); 4] = [
        ("32 bytes of zeros", &[0u8; 32], 0x8a9136aa),
        ("32 bytes of 0xff", &[0xffu8; 32], 0x62a8ab43),
        ("incrementing 0..31", &inc, 0x46dd794e),
        ("decrementing 31..0", &dec, 0x113fdb5c),
    ];
    for (name, data, want) in crc_cases {
        let got = crc::crc32c(&c, data);
        if got != want {
            pr_err!(
                "core-iscsi selftest: CRC32C of {}: got {:08x}, expected {:08x}\n",
                name,
                got,
                want
            );
            return Err(EIO);
        }
        // The same in pieces: the register carries across updates.
        let (a, b) = data.split_at(13);
        let mut d = crc::DigestState::new();
        d.update(&c, a);
        d.update(&c, b);
        check(d.finish() == want, "CRC32C over two pieces")?;
    }
    // RFC 3720 B.4 gives the zeros digest as it goes on the wire.
    check(
        crc::data_digest(&c, &[0u8; 32]) == [0xaa, 0x36, 0x91, 0x8a],
        "CRC32C data digest byte order",
    )?;

    let hash_cases: [(ChapAlgorithm, &str, &str); 4] = [
        (
            ChapAlgorithm::Md5,
            "MD5",
            "900150983cd24fb0d6963f7d28e17f72",
        ),
        (
            ChapAlgorithm::Sha1,
            "SHA-1",
            "a9993e364706816aba3e25717850c26c9cd0d89d",
        ),
        (
            ChapAlgorithm::Sha256,
            "SHA-256",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            ChapAlgorithm::Sha3_256,
            "SHA3-256",
            "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532",
        ),
    ];
    let h = KernelChapDigest;
    for (alg, name, hex) in hash_cases {
        let len = alg.digest_len();
        let mut want = [0u8; MAX_DIGEST_LEN];
        let known = match len {
            16 => unhex::<16>(hex).map(|k| want[..16].copy_from_slice(&k)),
            20 => unhex::<20>(hex).map(|k| want[..20].copy_from_slice(&k)),
            _ => unhex::<32>(hex).map(|k| want.copy_from_slice(&k)),
        };
        known?;
        // "abc" whole and split in parts: CHAP hashes identifier, secret and challenge.
        for parts in [&[&b"abc"[..]][..], &[&b"a"[..], &b""[..], &b"bc"[..]][..]] {
            let mut got = [0u8; MAX_DIGEST_LEN];
            if !h.digest(alg, parts, &mut got) {
                pr_err!("core-iscsi selftest: {} is not available\n", name);
                return Err(ENOENT);
            }
            if got.get(..len) != want.get(..len) {
                pr_err!(
                    "core-iscsi selftest: {}(\"abc\") in {} parts: wrong digest\n",
                    name,
                    parts.len()
                );
                return Err(EIO);
            }
        }
    }
    pr_info!("core-iscsi selftest: crypto: ok (CRC32C B.4, MD5, SHA-1, SHA-256, SHA3-256)\n");
    Ok(())
}

/// Formats `a` into a small buffer for comparison.
struct Buf {
    b: [u8; 64],
    n: usize,
}

impl core::fmt::Write for Buf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.n.checked_add(s.len()).ok_or(core::fmt::Error)?;
        self.b
            .get_mut(self.n..end)
            .ok_or(core::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.n = end;
        Ok(())
    }
}

fn formatted(a: &SocketAddr) -> Result<Buf> {
    use core::fmt::Write;
    let mut b = Buf { b: [0; 64], n: 0 };
    write!(b, "{}", a).map_err(|_| EINVAL)?;
    Ok(b)
}

/// Portal parsing: accepted forms round-trip to their canonical text; malformed ones fail.
fn parse() -> Result {
    let good: [(&str, &str); 10] = [
        ("1.2.3.4:3260", "1.2.3.4:3260"),
        ("10.0.0.1", "10.0.0.1:3260"),
        ("  192.168.1.200:860\n", "192.168.1.200:860"),
        ("[::1]:3260", "[::1]:3260"),
        ("[::1]", "[::1]:3260"),
        ("::1", "[::1]:3260"),
        ("[fe80::1%2]:3261", "[fe80::1%2]:3261"),
        ("[2001:DB8:0:0:1:0:0:1]:1", "[2001:db8::1:0:0:1]:1"),
        ("[::ffff:1.2.3.4]:5", "[::ffff:102:304]:5"),
        ("[1:2:3:4:5:6:7:8]:9", "[1:2:3:4:5:6:7:8]:9"),
    ];
    for (input, want) in good {
        let a = SocketAddr::parse(input.as_bytes());
        let ok = match &a {
            Ok(a) => {
                formatted(a)?.b.get(..want.len()) == Some(want.as_bytes())
                    && formatted(a)?.n == want.len()
            }
            Err(_) => false,
        };
        if !ok {
            pr_err!(
                "core-iscsi selftest: parse '{}' did not give '{}'\n",
                input,
                want
            );
            return Err(EIO);
        }
    }
    let bad = [
        "",
        "1.2.3",
        "1.2.3.4.5",
        "256.1.1.1",
        "1.2.3.4:",
        "1.2.3.4:0",
        "1.2.3.4:65536",
        "[::1",
        "[::1]x",
        "1::2::3",
        "[1:2:3:4:5:6:7:8:9]",
        "[12345::]",
        "[fe80::1%eth0]",
        "[1:2:3:4:5:6:7::8]",
        "a.b.c.d",
        ":::",
    ];
    for input in bad {
        if SocketAddr::parse(input.as_bytes()).is_ok() {
            pr_err!("core-iscsi selftest: parse accepted '{}'\n", input);
            return Err(EIO);
        }
    }
    pr_info!("core-iscsi selftest: parse: ok\n");
    Ok(())
}

/// Connects to `arg` within 2 s and closes; the errno of a failed connect is the result.
fn connect(arg: &[u8]) -> Result {
    let addr = SocketAddr::parse(arg)?;
    match TcpStream::connect(&addr, 0, Deadline::after_ms(2000), &|| false) {
        Ok(s) => {
            s.shutdown();
            pr_info!(
                "core-iscsi selftest: connect {} (port {}): ok\n",
                addr,
                addr.port()
            );
            Ok(())
        }
        Err(e) => {
            if e == crate::sys::socket::errno::connrefused() {
                pr_info!("core-iscsi selftest: connect {}: refused\n", addr);
            }
            pr_info!(
                "core-iscsi selftest: connect {}: error {}\n",
                addr,
                e.to_errno()
            );
            Err(e)
        }
    }
}

/// Counts `Events` values dropped, to prove the socket gives its reference back.
static EVENTS_DROPPED: AtomicUsize = AtomicUsize::new(0);

struct DropCount;

impl Drop for DropCount {
    fn drop(&mut self) {
        EVENTS_DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

/// What the socket callbacks saw; they only count and wake the waiting test.
#[pin_data]
struct Events {
    data_ready: AtomicUsize,
    state_changes: AtomicUsize,
    closed: AtomicBool,
    write_space: AtomicUsize,
    #[pin]
    lock: Mutex<()>,
    #[pin]
    cv: CondVar,
    _count: DropCount,
}

impl SocketEvents for Events {
    fn data_ready(&self, _queue: &mut ReadyQueue<'_>) {
        self.data_ready.fetch_add(1, Ordering::SeqCst);
        self.cv.notify_all();
    }

    fn state_change(&self, closed: bool) {
        if closed {
            self.closed.store(true, Ordering::SeqCst);
        }
        self.state_changes.fetch_add(1, Ordering::SeqCst);
        self.cv.notify_all();
    }

    fn write_space(&self) {
        self.write_space.fetch_add(1, Ordering::SeqCst);
    }
}

impl Events {
    /// Waits up to `ms` for `cond`. The callbacks notify without the mutex (softirq context
    /// cannot take it), so a wakeup can slip between the test and the sleep: wait in short
    /// slices rather than trusting one notification.
    fn wait_for(&self, ms: i64, cond: impl Fn(&Self) -> bool) -> bool {
        let start = Ktime::ktime_get();
        let mut guard = self.lock.lock();
        loop {
            if cond(self) {
                return true;
            }
            if ktime_ms_delta(Ktime::ktime_get(), start) > ms {
                return false;
            }
            let _ = self
                .cv
                .wait_interruptible_timeout(&mut guard, msecs_to_jiffies(10));
        }
    }
}

/// Test data: a different byte sequence for each round and position.
fn pattern(round: usize, pos: usize) -> u8 {
    // Reduced mod 251 (prime) so that pages and buffers do not line up by accident.
    (round
        .wrapping_mul(31)
        .wrapping_add(pos.wrapping_mul(7))
        .wrapping_add(3)
        % 251) as u8
}

fn pattern_vec(round: usize, start: usize, len: usize) -> Result<KVec<u8>> {
    let mut v = KVec::with_capacity(len, GFP_KERNEL)?;
    for i in 0..len {
        v.push(
            pattern(round, start.checked_add(i).ok_or(EINVAL)?),
            GFP_KERNEL,
        )?;
    }
    Ok(v)
}

/// Exercises every `TcpStream` operation against an echo server at `arg`.
fn socket(arg: &[u8]) -> Result {
    let addr = SocketAddr::parse(arg)?;
    let stream = TcpStream::connect(&addr, 0, Deadline::after_ms(5000), &|| false)?;
    stream.set_nodelay();
    stream.set_timeouts(5000, 5000);

    let dropped_before = EVENTS_DROPPED.load(Ordering::SeqCst);
    let events = Arc::pin_init(
        pin_init!(Events {
            data_ready: AtomicUsize::new(0),
            state_changes: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            write_space: AtomicUsize::new(0),
            lock <- new_mutex!(()),
            cv <- new_condvar!(),
            _count: DropCount,
        }),
        GFP_KERNEL,
    )?;
    stream.set_callbacks(events.clone())?;
    check(
        stream.set_callbacks(events.clone()) == Err(EBUSY),
        "a second set_callbacks is refused with EBUSY",
    )?;

    let mut tx = [Page::alloc_page(GFP_KERNEL)?, Page::alloc_page(GFP_KERNEL)?];
    let mut rx = [Page::alloc_page(GFP_KERNEL)?, Page::alloc_page(GFP_KERNEL)?];
    let zeros = [0u8; 256];
    let mut total = 0usize;
    for round in 0..8usize {
        // A PDU-like gather (header + data), then two page ranges: the tail of one page from
        // an odd offset and the head of the next, as a scatterlist would describe them.
        let head_len = 48;
        let body_len = 1000 + round * 100;
        let p0 = (100 + round, PAGE_SIZE - 100 - round);
        let p1 = (0, 2000 + round * 3);
        let bytes_len = head_len + body_len;
        let head = pattern_vec(round, 0, head_len)?;
        let body = pattern_vec(round, head_len, body_len)?;
        page::write(&mut tx[0], p0.0, &pattern_vec(round, bytes_len, p0.1)?)?;
        page::write(
            &mut tx[1],
            p1.0,
            &pattern_vec(round, bytes_len + p0.1, p1.1)?,
        )?;
        let seen = events.data_ready.load(Ordering::SeqCst);

        stream.send_all(&[&head, &body], true, SendWait::Until(None))?;
        {
            let [t0, t1] = &mut tx;
            stream.send_pages(
                &[
                    Some(PageRange::from_page(t0, p0.0, p0.1)?),
                    Some(PageRange::from_page(t1, p1.0, p1.1)?),
                ],
                false,
                SendWait::Until(None),
            )?;
        }
        check(
            events.wait_for(5000, |e| e.data_ready.load(Ordering::SeqCst) > seen),
            "data_ready callback after the echo arrives",
        )?;

        let mut got = KVec::from_elem(0u8, bytes_len, GFP_KERNEL)?;
        stream.recv_exact(&mut got)?;
        check(
            got.get(..head_len) == Some(&head[..]) && got.get(head_len..) == Some(&body[..]),
            "recv_exact returns the gathered buffers byte for byte",
        )?;

        // Scrub the receive pages so stale data cannot pass for the echo.
        for p in rx.iter_mut() {
            for off in (0..PAGE_SIZE).step_by(zeros.len()) {
                page::write(p, off, &zeros)?;
            }
        }
        // `read` straight into the two ranges, the first pass stopping after 100 bytes: what
        // a pass leaves unread is there for the next.
        let want = p0.1 + p1.1;
        let mut n = 0usize;
        let mut passes = 0usize;
        while n < want && passes < 500 {
            let cap = if passes == 0 { 100 } else { want };
            stream.read(|incoming| {
                let [r0, r1] = &mut rx;
                let limit = cap.saturating_sub(n);
                let ranges = if n < p0.1 {
                    [
                        PageRange::from_page(r0, p0.0 + n, (p0.1 - n).min(limit)).ok(),
                        PageRange::from_page(r1, p1.0, p1.1.min(limit.saturating_sub(p0.1 - n)))
                            .ok()
                            .filter(|r| r.len() > 0),
                    ]
                } else {
                    let done = n - p0.1;
                    [
                        PageRange::from_page(r1, p1.0 + done, (p1.1 - done).min(limit)).ok(),
                        None,
                    ]
                };
                match incoming.read_pages(&ranges) {
                    Ok(k) => {
                        n += k;
                        n < cap
                    }
                    Err(_) => false,
                }
            })?;
            passes += 1;
            if n < want {
                crate::sys::mem::sleep_ms(10);
            }
        }
        check(passes > 1, "a read pass that stops leaves the rest queued")?;
        check(n == want, "read_pages fills both ranges")?;
        let mut back = KVec::from_elem(0u8, p0.1, GFP_KERNEL)?;
        page::read(&rx[0], p0.0, &mut back)?;
        check(
            back[..] == pattern_vec(round, bytes_len, p0.1)?[..],
            "first page range received byte for byte",
        )?;
        let mut back = KVec::from_elem(0u8, p1.1, GFP_KERNEL)?;
        page::read(&rx[1], p1.0, &mut back)?;
        check(
            back[..] == pattern_vec(round, bytes_len + p0.1, p1.1)?[..],
            "second page range received byte for byte",
        )?;
        let mut before = [0u8; 1];
        page::read(&rx[0], p0.0.checked_sub(1).ok_or(EINVAL)?, &mut before)?;
        check(before[0] == 0, "read_pages writes nothing before its range")?;
        total += bytes_len + n;
    }
    pr_info!(
        "core-iscsi selftest: socket {}: {} bytes echoed (send_all, send_pages, recv_exact, read_pages), {} data_ready callbacks\n",
        addr,
        total,
        events.data_ready.load(Ordering::SeqCst)
    );

    // Nothing left: a non-blocking receive says EAGAIN, a blocking one times out with EAGAIN.
    let mut one = [0u8; 16];
    check(
        stream.recv(&mut one, true) == Err(EAGAIN),
        "non-blocking recv with nothing queued fails with EAGAIN",
    )?;
    check(
        stream.read(|_| true) == Ok(0),
        "read with nothing queued consumes nothing",
    )?;
    stream.set_timeouts(200, 5000);
    let start = Ktime::ktime_get();
    check(
        stream.recv(&mut one, false) == Err(EAGAIN),
        "blocking recv times out with EAGAIN",
    )?;
    let waited = ktime_ms_delta(Ktime::ktime_get(), start);
    check(
        (150..3000).contains(&waited),
        "the receive timeout is honoured (about 200 ms)",
    )?;
    stream.set_timeouts(5000, 5000);

    // After clear_callbacks no callback runs, though data keeps flowing.
    stream.clear_callbacks();
    let frozen = events.data_ready.load(Ordering::SeqCst);
    let ping = pattern_vec(99, 0, 10)?;
    stream.send_all(&[&ping], false, SendWait::Until(None))?;
    let mut pong = [0u8; 10];
    stream.recv_exact(&mut pong)?;
    check(pong[..] == ping[..], "echo after clear_callbacks")?;
    check(
        events.data_ready.load(Ordering::SeqCst) == frozen,
        "no data_ready callback after clear_callbacks",
    )?;

    // Shutdown: the state_change callback reports the close, and a receive returns 0.
    stream.set_callbacks(events.clone())?;
    stream.shutdown();
    check(
        events.wait_for(5000, |e| e.closed.load(Ordering::SeqCst)),
        "state_change(closed) after shutdown",
    )?;
    check(
        stream.recv(&mut one, false) == Ok(0),
        "recv after shutdown returns 0",
    )?;
    check(
        stream.recv_exact(&mut one) == Err(crate::sys::socket::errno::connreset()),
        "recv_exact after shutdown fails with ECONNRESET",
    )?;
    check(
        stream.read(|_| true) == Err(crate::sys::socket::errno::connreset()),
        "read after shutdown fails with ECONNRESET",
    )?;

    // Dropping the stream with callbacks installed gives back the socket's reference: the
    // events go away with our last one.
    drop(stream);
    drop(events);
    check(
        EVENTS_DROPPED.load(Ordering::SeqCst) == dropped_before + 1,
        "the socket released its reference to the callbacks",
    )?;
    pr_info!("core-iscsi selftest: socket {}: ok\n", addr);
    Ok(())
}

/// The shapes of PDU the module sends from a submitter's context (`Connection::send_inline`).
#[derive(Clone, Copy)]
enum Shape {
    /// A command with 4 KiB of immediate data and its data digest, from flat buffers.
    Digested,
    /// A header, 17 full pages less 2 bytes spliced from a command's pages, and 2 bytes of
    /// padding.
    Pages,
    /// A header and 64 pages (256 KiB, the largest FirstBurstLength the module offers).
    Burst,
    /// A header and 136 pieces of 4 bytes (the midlayer's DMA alignment allows them: SG_IO),
    /// each from a page of its own.
    Tiny,
}

impl Shape {
    const HEADER: usize = 48;
    const ALL: [Shape; 4] = [Shape::Digested, Shape::Pages, Shape::Burst, Shape::Tiny];

    fn name(self) -> &'static str {
        match self {
            Shape::Digested => "48 + 4096 + 4 bytes copied",
            Shape::Pages => "48 bytes, 17 pages less 2 spliced, 2 of padding",
            Shape::Burst => "48 bytes, 64 pages spliced",
            Shape::Tiny => "48 bytes and 136 spliced pieces of 4",
        }
    }

    /// Range `k` after the header, as (offset, length) in the next page (the 64 pages in
    /// turn, as often as it takes).
    fn range(self, k: usize) -> Option<(usize, usize)> {
        match self {
            Shape::Digested => None,
            Shape::Pages if k < 16 => Some((0, PAGE_SIZE)),
            Shape::Pages if k == 16 => Some((0, PAGE_SIZE - 2)),
            Shape::Burst if k < 64 => Some((0, PAGE_SIZE)),
            Shape::Tiny if k < 136 => Some((8 * (k / 64), 4)),
            _ => None,
        }
    }

    fn len(self) -> usize {
        let tail = match self {
            Shape::Digested => 4096 + 4,
            Shape::Pages => 2,
            _ => 0,
        };
        let ranges: usize = (0..64 * 4).map_while(|k| self.range(k)).map(|r| r.1).sum();
        Self::HEADER + tail + ranges
    }

    /// Sends it as the module would, never waiting for room: the bytes the socket took.
    fn send(self, stream: &TcpStream, pages: &mut [Page], flat: &[u8]) -> Result<usize> {
        let header = flat.get(..Self::HEADER).ok_or(EINVAL)?;
        if let Shape::Digested = self {
            let data = flat.get(..4096).ok_or(EINVAL)?;
            let digest = flat.get(..4).ok_or(EINVAL)?;
            return stream.send_all(&[header, data, digest], false, SendWait::No);
        }
        let mut sent = stream.send_all(&[header], true, SendWait::No)?;
        if sent < header.len() {
            return Ok(sent);
        }
        let padding = matches!(self, Shape::Pages);
        let mut k = 0;
        while self.range(k).is_some() {
            // 16 ranges a call, as `Connection::send_rest` takes them from `page_ranges`;
            // range k from page k mod 64.
            let (before, from) = pages.split_at_mut(k % pages.len().max(1));
            let mut left = Iterator::chain(from.iter_mut(), before.iter_mut());
            let mut ranges: [Option<PageRange<'_>>; 16] = Default::default();
            let mut bytes = 0;
            for slot in ranges.iter_mut() {
                let Some((offset, len)) = self.range(k) else {
                    break;
                };
                let page = left.next().ok_or(EINVAL)?;
                *slot = Some(PageRange::from_page(page, offset, len)?);
                bytes += len;
                k += 1;
            }
            let more = padding || self.range(k).is_some();
            let n = stream.send_pages(&ranges, more, SendWait::No)?;
            sent += n;
            if n < bytes {
                return Ok(sent);
            }
        }
        if padding {
            sent += stream.send_all(&[flat.get(..2).ok_or(EINVAL)?], false, SendWait::No)?;
        }
        Ok(sent)
    }
}

/// Fills `stream`'s send buffer (its peer reads nothing) with sends that may not wait, until
/// three of them 100 ms apart take nothing: the peer's window has closed and no acknowledgement
/// (delayed by 40 ms or more) frees room any more. `ETIMEDOUT` past `by` (a peer that reads after all), `EINTR` on a
/// signal.
fn fill_up(stream: &TcpStream, flat: &[u8], by: Deadline) -> Result {
    let mut empty = 0;
    while empty < 3 {
        if by.passed() || crate::sys::mem::signal_pending() {
            pr_err!("core-iscsi selftest: FAILED: the peer's buffers did not fill in time (does it read?)\n");
            return Err(if by.passed() {
                crate::sys::errno::timedout()
            } else {
                EINTR
            });
        }
        let start = Ktime::ktime_get();
        let n = stream.send_all(&[flat], false, SendWait::No)?;
        check(
            ktime_ms_delta(Ktime::ktime_get(), start) < 1000,
            "a send that may not wait returns at once",
        )?;
        empty = if n == 0 { empty + 1 } else { 0 };
        if n < flat.len() {
            crate::sys::mem::sleep_ms(100);
        }
    }
    Ok(())
}

/// `fill ADDR`: see the module documentation.
fn fill(arg: &[u8]) -> Result {
    let addr = SocketAddr::parse(arg)?;
    let mut pages = KVec::with_capacity(64, GFP_KERNEL)?;
    for _ in 0..64 {
        pages.push(Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?, GFP_KERNEL)?;
    }
    let flat = KVec::from_elem(0x5au8, 65536, GFP_KERNEL)?;
    // Every shape in all: a few seconds against a peer that never reads.
    let by = Deadline::after_ms(120_000);
    for shape in Shape::ALL {
        let stream = TcpStream::connect(&addr, 0, Deadline::after_ms(5000), &|| {
            crate::sys::mem::signal_pending()
        })?;
        stream.set_nodelay();
        // The megabytes each fill queues go with the stream, not into an orphan: they would
        // put TCP under memory pressure.
        stream.set_abortive_close();
        fill_up(&stream, &flat, by)?;
        let start = Ktime::ktime_get();
        let sent = shape.send(&stream, &mut pages, &flat).inspect_err(|e| {
            pr_err!(
                "core-iscsi selftest: FAILED: {} on a full socket: error {}\n",
                shape.name(),
                e.to_errno()
            )
        })?;
        let ms = ktime_ms_delta(Ktime::ktime_get(), start);
        check(ms < 1000, "a PDU sent without waiting returns at once")?;
        check(sent < shape.len(), "a full socket takes less than a PDU sent without waiting")?;
        pr_info!(
            "core-iscsi selftest: fill {}: {} on a full socket: {} bytes taken in {} ms\n",
            addr,
            shape.name(),
            sent,
            ms
        );
    }
    pr_info!("core-iscsi selftest: fill {}: ok\n", addr);
    Ok(())
}
