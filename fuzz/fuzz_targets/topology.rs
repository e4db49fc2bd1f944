#![no_main]
//! Fuzz target `topology`: the body is `binfm_testbed::fuzzing::topology`, which the corpus
//! regression test (`testbed/tests/fuzz_corpus.rs`) also runs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| binfm_testbed::fuzzing::topology(data));
