//! Plain timing loops (no extra dependency): PDU encode/decode and CRC32C digest throughput.
//! Run with `cargo bench -p iscsi-proto`.
#[path = "../tests/common/mod.rs"]
mod common;
use iscsi_proto::crc;
use iscsi_proto::pdu::{Bhs, DataIn, Pdu, BHS_LEN};
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let pdu = Bhs {
        total_ahs_words: 0,
        data_segment_len: 65536,
        pdu: Pdu::DataIn(DataIn {
            final_: true,
            itt: 7,
            ttt: 0xffff_ffff,
            data_sn: 3,
            offset: 1 << 20,
            ..Default::default()
        }),
    };
    let n = 10_000_000u32;
    let mut b = [0u8; BHS_LEN];
    let t = Instant::now();
    for i in 0..n {
        let mut p = pdu;
        if let Pdu::DataIn(d) = &mut p.pdu {
            d.data_sn = i;
        }
        if let Err(e) = black_box(&p).encode(black_box(&mut b)) {
            eprintln!("throughput: the benchmark PDU does not encode: {e:?}");
            std::process::exit(1);
        }
    }
    let enc = t.elapsed();
    let t = Instant::now();
    let mut acc = 0u32;
    for i in 0..n {
        b[36] = i as u8;
        if let Ok(Bhs {
            pdu: Pdu::DataIn(d),
            ..
        }) = Bhs::decode(black_box(&b))
        {
            acc = acc.wrapping_add(d.data_sn);
        }
    }
    let dec = t.elapsed();
    black_box(acc);
    println!(
        "BHS encode: {:.1} ns/PDU",
        enc.as_nanos() as f64 / f64::from(n)
    );
    println!(
        "BHS decode: {:.1} ns/PDU",
        dec.as_nanos() as f64 / f64::from(n)
    );

    let data = vec![0x5au8; 1 << 20];
    let rounds = 2000;
    let t = Instant::now();
    let mut x = [0u8; 4];
    for _ in 0..rounds {
        x = crc::data_digest(&common::SwCrc, black_box(&data));
    }
    black_box(x);
    let el = t.elapsed().as_secs_f64();
    println!(
        "CRC32C data digest (crc32c crate): {:.0} MB/s",
        (rounds as f64) * (data.len() as f64) / el / 1e6
    );
    let t = Instant::now();
    let hdr = [0x11u8; 48];
    let mut h = [0u8; 4];
    for _ in 0..n {
        h = crc::header_digest(&common::SwCrc, black_box(&hdr), &[]);
    }
    black_box(h);
    println!(
        "CRC32C header digest: {:.1} ns/BHS",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );
}
