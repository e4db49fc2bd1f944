#![no_main]
//! Fuzz target `stun`: the body is `binfm_testbed::fuzzing::stun`, which the corpus
//! regression test (`testbed/tests/fuzz_corpus.rs`) also runs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| binfm_testbed::fuzzing::stun(data));
