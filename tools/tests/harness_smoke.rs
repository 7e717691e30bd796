//! Proves the target harness on its own: each real target starts on 127.0.0.1, accepts a TCP
//! connection, and leaves nothing behind when dropped.
mod common;

use common::targets::{Auth, Chap, Kind, RunningTarget, TargetDef};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

fn smoke(kind: Kind) {
    let defs = [
        TargetDef::disk("smoke-a", 4 << 20),
        TargetDef::disk("smoke-b", 2 << 20).auth(Auth::Mutual {
            incoming: Chap::new("smoke-user", "smoke-secret-1"),
            outgoing: Chap::new("smoke-target", "smoke-secret-2"),
        }),
    ];
    let (dir, addr, sock) = {
        let mut t = RunningTarget::start(kind, &defs);
        assert!(t.addr().ip().is_loopback());
        assert_eq!(t.targets().len(), 2);
        let s = TcpStream::connect_timeout(&t.addr(), Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("connect to {} at {}: {e}", kind.name(), t.addr()));
        drop(s);
        assert!(
            t.is_alive(),
            "{} died after a bare connect:\n{}",
            kind.name(),
            t.log()
        );
        for st in t.targets() {
            for p in &st.backing {
                assert!(p.exists());
            }
        }
        (
            t.dir().to_path_buf(),
            t.addr(),
            format!("/var/run/tgtd/socket.{}", t.addr().port()),
        )
    };
    assert!(
        !dir.exists(),
        "{} left {} behind",
        kind.name(),
        dir.display()
    );
    assert!(!Path::new(&sock).exists(), "tgtd left {sock} behind");
    assert!(
        !Path::new(&format!("{sock}.lock")).exists(),
        "tgtd left {sock}.lock behind"
    );
    // Nothing listens on the port any more.
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err(),
        "{} still listening on {addr} after drop",
        kind.name()
    );
}

#[test]
fn tgtd_starts_accepts_and_cleans_up() {
    smoke(Kind::Tgt);
}

#[test]
fn istgt_starts_accepts_and_cleans_up() {
    smoke(Kind::Istgt);
}
