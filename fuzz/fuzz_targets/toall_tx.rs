#![no_main]
//! Fuzz target `toall_tx`: the body is `binfm_fuzzing::toall_tx`, which the corpus
//! regression test (`fuzzing/tests/fuzz_corpus.rs`) also runs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| binfm_fuzzing::toall_tx(data));
