//! Bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs`), shared with the corpus regression
//! test (`fuzzing/tests/fuzz_corpus.rs`) so both run identical code: the fuzz target is one
//! line calling the function of the same name here, and CI replays every file of
//! `fuzz/corpus/<target>/` and `fuzz/artifacts/<target>/` through it without a fuzzing engine.
//!
//! Each function takes arbitrary bytes and must never panic. Beyond "no panic" they check
//! the properties the parsers promise: a parsed message re-encodes to exactly the input
//! (one encoding per message), and an authentic SRTP index is never accepted twice.
//!
//! Roles are built afresh for every input (from fixed configs and seeds), so an input that
//! crashes replays the crash on its own: a crash never depends on what ran before it.
//! (`roles` clones its two wallets, and `vertical_roles` its end nodes, from templates built
//! once per process from fixed seeds: the same state for every input, without paying the DH
//! key generation or key agreement each time.) Both role targets bound the work one input can
//! cause (records, virtual time, records costing DH operations; see docs/fuzzing.md).
//!
//! The vertical model's targets (`stun`, `vertical_message`, `vertical_roles`) live in
//! [`vertical`].
//!
//! [`seeds`] makes the seed corpus (small valid examples of every input kind); the ignored
//! test `write_seed_corpus` writes it to `fuzz/corpus/`.

pub mod vertical;

mod corpus;
mod decoders;
mod roles_target;
mod srtp;

pub use corpus::{Seed, seeds};
pub use decoders::{binfm_message, block, dhcp_options, toall_tx, topology};
pub use roles_target::{
    CLIENT_HW, EN_PRIVATE, NAT_PUBLIC, PEER_ADDR, SN_ADDR, SN_PEER, role, role_record, roles,
    roles_chain, roles_en_events, roles_wallet,
};
pub use srtp::{SRTP_SSRC, rtp_srtp};
pub use vertical::{stun, vertical_message, vertical_roles};

/// Names of the targets, as `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/`.
pub const TARGETS: [&str; 10] = [
    "dhcp_options",
    "toall_tx",
    "binfm_message",
    "block",
    "rtp_srtp",
    "topology",
    "roles",
    "stun",
    "vertical_message",
    "vertical_roles",
];

/// Runs the target `name` on `data`; `false` if there is no such target.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "dhcp_options" => dhcp_options(data),
        "toall_tx" => toall_tx(data),
        "binfm_message" => binfm_message(data),
        "block" => block(data),
        "rtp_srtp" => rtp_srtp(data),
        "topology" => topology(data),
        "roles" => roles(data),
        "stun" => stun(data),
        "vertical_message" => vertical_message(data),
        "vertical_roles" => vertical_roles(data),
        _ => return false,
    }
    true
}

/// Reads a fuzz input as a script, never failing: missing bytes read as zero / empty.
#[derive(Debug)]
struct Script<'a> {
    rest: &'a [u8],
}

impl<'a> Script<'a> {
    fn done(&self) -> bool {
        self.rest.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((b, rest)) => {
                self.rest = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = tail;
        head
    }
}
