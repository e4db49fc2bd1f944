#![no_main]
//! Fuzz target `stun`: the body is `binfm_fuzzing::stun`, which the corpus
//! regression test (`fuzzing/tests/fuzz_corpus.rs`) also runs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| binfm_fuzzing::stun(data));
