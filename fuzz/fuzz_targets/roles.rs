#![no_main]
//! Fuzz target `roles`: the body is `binfm_fuzzing::roles`, which the corpus
//! regression test (`fuzzing/tests/fuzz_corpus.rs`) also runs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| binfm_fuzzing::roles(data));
