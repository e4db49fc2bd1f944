#![no_main]
//! Fuzz target `block`: the body is `binfm_fuzzing::block`, which the corpus
//! regression test (`fuzzing/tests/fuzz_corpus.rs`) also runs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| binfm_fuzzing::block(data));
