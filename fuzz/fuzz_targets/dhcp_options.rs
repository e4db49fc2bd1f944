#![no_main]
//! Fuzz target `dhcp_options`: the body is `binfm_fuzzing::dhcp_options`, which the corpus
//! regression test (`fuzzing/tests/fuzz_corpus.rs`) also runs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| binfm_fuzzing::dhcp_options(data));
