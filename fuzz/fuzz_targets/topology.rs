#![no_main]
//! Fuzz target `topology`: the body is `binfm_fuzzing::topology`, which the corpus
//! regression test (`fuzzing/tests/fuzz_corpus.rs`) also runs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| binfm_fuzzing::topology(data));
