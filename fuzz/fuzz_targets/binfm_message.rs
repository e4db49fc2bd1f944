#![no_main]
//! Fuzz target `binfm_message`: the body is `binfm_fuzzing::binfm_message`, which the corpus
//! regression test (`fuzzing/tests/fuzz_corpus.rs`) also runs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| binfm_fuzzing::binfm_message(data));
