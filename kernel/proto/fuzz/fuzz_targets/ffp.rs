#![no_main]
// The body is shared with the bounded fuzz test that `cargo test` runs (tests/fuzz.rs).
#[path = "../../tests/fuzz_bodies/mod.rs"]
mod fuzz_bodies;
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_bodies::ffp_stream(data));
