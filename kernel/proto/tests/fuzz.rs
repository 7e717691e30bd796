//! Bounded, deterministic fuzzing under `cargo test`: replay the committed corpus
//! (kernel/proto/fuzz/corpus/<target>/*), then a seeded random-input loop per target, with
//! inputs mutated from the corpus half of the time. Overflow checks are on in the test profile.
mod fuzz_bodies;
use fuzz_bodies::{Rng, TARGETS};
use std::path::PathBuf;

/// Inputs per target in the random loop (6 targets: about 200k in all). FUZZ_ITERS overrides.
const ITERS: usize = 34_000;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            2 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, [0u8, b'=', b',', b':', 0xff][rng.below(5)]);
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.truncate(i);
            }
            _ => {
                let i = rng.below(v.len() + 1);
                let n = rng.below(8);
                for _ in 0..n {
                    v.insert(i, rng.next() as u8);
                }
            }
        }
    }
    v
}

#[test]
fn corpus_replay() {
    let mut total = 0;
    for (name, f) in TARGETS {
        let c = corpus(name);
        assert!(!c.is_empty(), "corpus for {name} is missing");
        for input in &c {
            f(input);
        }
        total += c.len();
    }
    eprintln!("replayed {total} corpus inputs");
}

#[test]
fn seeded_random_inputs() {
    let iters = std::env::var("FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(ITERS);
    for (t, (name, f)) in TARGETS.iter().enumerate() {
        let seeds = corpus(name);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1));
        for _ in 0..iters {
            let input = if !seeds.is_empty() && rng.below(2) == 0 {
                let s = &seeds[rng.below(seeds.len())];
                mutate(&mut rng, s)
            } else {
                let n = rng.below(300);
                (0..n).map(|_| rng.next() as u8).collect()
            };
            f(&input);
        }
    }
}
