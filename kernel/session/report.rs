// SPDX-License-Identifier: GPL-2.0

//! What a session shows in its channel's configfs files: `negotiated`, `connections` and `stats`.

use super::{Phase, Session};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

impl Session {
    /// `negotiated`: the parameters in force.
    pub(crate) fn show_negotiated(&self, p: &mut crate::sys::configfs::Page<'_>) -> fmt::Result {
        if self.ctl.lock().phase == Phase::Starting {
            // Not logged in yet: nothing is negotiated.
            return Ok(());
        }
        let (params, tsih) = (self.io.lock().params, self.tsih.load(Ordering::Relaxed));
        let s = &params.session;
        let c = &params.conn;
        let yn = |b: bool| if b { "Yes" } else { "No" };
        let dg = |b: bool| if b { "CRC32C" } else { "None" };
        writeln!(p, "TSIH={}", tsih)?;
        writeln!(
            p,
            "ISID={:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            self.isid[0], self.isid[1], self.isid[2], self.isid[3], self.isid[4], self.isid[5]
        )?;
        writeln!(p, "HeaderDigest={}", dg(c.header_digest))?;
        writeln!(p, "DataDigest={}", dg(c.data_digest))?;
        writeln!(
            p,
            "MaxRecvDataSegmentLength={}",
            c.max_recv_data_segment_length
        )?;
        writeln!(
            p,
            "MaxXmitDataSegmentLength={}",
            c.max_xmit_data_segment_length
        )?;
        writeln!(p, "MaxConnections={}", s.max_connections)?;
        writeln!(p, "InitialR2T={}", yn(s.initial_r2t))?;
        writeln!(p, "ImmediateData={}", yn(s.immediate_data))?;
        writeln!(p, "MaxBurstLength={}", s.max_burst_length)?;
        writeln!(p, "FirstBurstLength={}", s.first_burst_length)?;
        writeln!(p, "DefaultTime2Wait={}", s.default_time2wait)?;
        writeln!(p, "DefaultTime2Retain={}", s.default_time2retain)?;
        writeln!(p, "MaxOutstandingR2T={}", s.max_outstanding_r2t)?;
        writeln!(p, "DataPDUInOrder={}", yn(s.data_pdu_in_order))?;
        writeln!(p, "DataSequenceInOrder={}", yn(s.data_sequence_in_order))?;
        writeln!(p, "ErrorRecoveryLevel={}", s.error_recovery_level)
    }

    /// `connections`: one line per connection of the session, and one per connection the
    /// portals ask for that is not open (`state missing`, and `held S` while its portal is
    /// held back, `hold`): CID, portal, interface index, local address, state and counters.
    pub(crate) fn show_connections(
        &self,
        p: &mut crate::sys::configfs::Page<'_>,
    ) -> fmt::Result {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let conns = self.conns();
        for conn in conns.iter().flatten() {
            let o = conn.origin();
            let c = &conn.stats;
            write!(p, "cid {} portal {} ifindex {} local ", conn.cid(), o.portal, o.ifindex)?;
            match conn.local() {
                Some(local) => write!(p, "{}", local)?,
                None => write!(p, "-")?,
            }
            writeln!(
                p,
                " state {} pdus_tx {} pdus_rx {} bytes_tx {} bytes_rx {}",
                if conn.is_dead() {
                    "lost"
                } else if conn.is_leaving() {
                    "leaving"
                } else {
                    "up"
                },
                get(&c.pdus_tx),
                get(&c.pdus_rx),
                get(&c.bytes_tx),
                get(&c.bytes_rx)
            )?;
        }
        if conns.iter().all(|c| c.is_none()) {
            // Not logged in (starting, recovering, paused): nothing is missing yet.
            return Ok(());
        }
        for (i, portal) in self.settings.portals().enumerate() {
            let held_s = self.held_ms(i).div_ceil(1000);
            for _ in 0..super::grow::missing_at(&self.settings, &conns, i) {
                write!(
                    p,
                    "cid - portal {} ifindex {} local - state missing",
                    portal.addr, portal.ifindex
                )?;
                if held_s > 0 {
                    write!(p, " held {}", held_s)?;
                }
                writeln!(p)?;
            }
        }
        Ok(())
    }

    /// `stats`: counters, `name value` per line; connection counters prefixed `conn<CID>.`.
    pub(crate) fn show_stats(&self, p: &mut crate::sys::configfs::Page<'_>) -> fmt::Result {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let s = &self.stats;
        let d = &*self.path_stats;
        let conns = self.conns();
        let in_flight = self.in_flight();
        writeln!(p, "commands {}", get(&s.commands))?;
        writeln!(p, "in_flight {}", in_flight)?;
        writeln!(p, "read_bytes {}", get(&d.read_bytes))?;
        writeln!(p, "write_bytes {}", get(&d.write_bytes))?;
        writeln!(p, "errors {}", get(&d.errors))?;
        writeln!(p, "timeouts {}", get(&s.timeouts))?;
        writeln!(p, "aborts {}", get(&s.aborts))?;
        writeln!(p, "window_full {}", get(&d.window_full))?;
        writeln!(p, "recoveries {}", self.ctl.lock().recoveries)?;
        let open = conns.iter().flatten().filter(|c| !c.is_dead()).count();
        writeln!(p, "connections {}", open)?;
        writeln!(p, "connections_configured {}", self.settings.connections())?;
        for conn in conns.iter().flatten() {
            let c = &conn.stats;
            let e = conn.counters();
            let id = conn.cid();
            writeln!(p, "conn{}.pdus_tx {}", id, get(&c.pdus_tx))?;
            writeln!(p, "conn{}.pdus_rx {}", id, get(&c.pdus_rx))?;
            writeln!(p, "conn{}.bytes_tx {}", id, get(&c.bytes_tx))?;
            writeln!(p, "conn{}.bytes_rx {}", id, get(&c.bytes_rx))?;
            writeln!(p, "conn{}.digest_errors {}", id, get(&c.digest_errors))?;
            writeln!(p, "conn{}.r2ts {}", id, e.r2ts)?;
            writeln!(p, "conn{}.nop_pings {}", id, e.pings)?;
            writeln!(p, "conn{}.fillers {}", id, e.fillers)?;
            writeln!(p, "conn{}.rx_deferred {}", id, get(&c.rx_deferred))?;
            writeln!(p, "conn{}.tx_busy {}", id, get(&c.tx_busy))?;
            writeln!(p, "conn{}.tx_full {}", id, get(&c.tx_full))?;
            writeln!(p, "conn{}.tag_busy {}", id, get(&c.tag_busy))?;
        }
        Ok(())
    }
}
