#![no_main]
//! Fuzz target `block`: the body is `binfm_testbed::fuzzing::block`, which the corpus
//! regression test (`testbed/tests/fuzz_corpus.rs`) also runs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| binfm_testbed::fuzzing::block(data));
