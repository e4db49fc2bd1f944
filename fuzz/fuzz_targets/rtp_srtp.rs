#![no_main]
//! Fuzz target `rtp_srtp`: the body is `binfm_fuzzing::rtp_srtp`, which the corpus
//! regression test (`fuzzing/tests/fuzz_corpus.rs`) also runs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| binfm_fuzzing::rtp_srtp(data));
