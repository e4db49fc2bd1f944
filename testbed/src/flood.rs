//! The datagrams of a scenario `flood` step (the step itself, its parser and the choice of
//! spoofed sources: [`crate::topology::flood_step`]).
//!
//! The flood source holds the spoofed addresses on the target's segment, so whatever the SN
//! answers comes back to it and is counted (`FloodStats::replies`): the reflected traffic is
//! measured, and no real host gets it.
//!
//! Kinds (`mixed` by default: every other datagram malformed, the rest alternately a
//! `TxSubmit` and a `Query`):
//! - `malformed`: not a BINFM message: random bytes, a valid message cut short, a valid
//!   message with a wrong length field, trailing bytes, or a wrong magic/version/type. Each
//!   is checked to fail `Message::parse`.
//! - `unsigned-tx`: a well-formed `TxSubmit` whose Tx binds a real ed25519 key to its hash
//!   address, with a valid group-14 `Y`, but a random signature: the SN pays for a full
//!   signature check before refusing it.
//! - `unsigned-query`: a well-formed `Query` for a random (unknown) hash address.
//!
//! Everything is drawn from a ChaCha RNG seeded by the run seed and the step's index, so a
//! run is reproducible byte for byte.

use crate::topology::flood_step::{FloodKind, FloodSpec};
use binfm_roles::wallet::Wallet;
use binfm_stack::wire::binfm::Message;
use binfm_stack::wire::toall::{DH_GROUP_MODP2048, ToallTx, TxOut};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::net::{Ipv4Addr, SocketAddrV4};

/// Identities (real ed25519 keys) the unsigned Txs claim, drawn from the seed.
pub const IDENTITIES: usize = 16;
/// Node index of the flood source as a segment member (no node of the topology).
pub const FLOOD_NODE: usize = usize::MAX - 1;

/// What a flood did, for results and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FloodStats {
    /// Datagrams the step will send in all.
    pub planned: u64,
    /// Datagrams put on the segment so far.
    pub sent: u64,
    /// Of those: malformed.
    pub malformed: u64,
    /// Of those: unsigned `TxSubmit`s.
    pub unsigned_tx: u64,
    /// Of those: `Query`s for unknown addresses.
    pub unsigned_query: u64,
    /// IPv4 bytes sent.
    pub bytes: u64,
    /// Datagrams the segment did not deliver (loss, full queue, partition).
    pub link_dropped: u64,
    /// Packets that came back to the spoofed sources (the SN's answers).
    pub replies: u64,
    /// Their IPv4 bytes.
    pub reply_bytes: u64,
}

impl FloodStats {
    /// As JSON for `results.json`.
    pub fn to_json(&self) -> Value {
        json!({
            "planned": self.planned,
            "sent": self.sent,
            "malformed": self.malformed,
            "unsigned_tx": self.unsigned_tx,
            "unsigned_query": self.unsigned_query,
            "bytes": self.bytes,
            "link_dropped": self.link_dropped,
            "replies": self.replies,
            "reply_bytes": self.reply_bytes,
        })
    }
}

#[derive(Debug)]
struct Identity {
    public_key: [u8; 32],
    hash_addr: [u8; 32],
    y: Vec<u8>,
}

/// Makes the datagrams of one flood.
#[derive(Debug)]
pub struct FloodGen {
    spec: FloodSpec,
    target: SocketAddrV4,
    sources: Vec<Ipv4Addr>,
    rng: ChaCha8Rng,
    identities: Vec<Identity>,
}

impl FloodGen {
    /// A generator for `spec` against `target`, spoofing `sources`, seeded by `seed`.
    pub fn new(spec: FloodSpec, target: SocketAddrV4, sources: Vec<Ipv4Addr>, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let needs_keys = matches!(
            spec.kind,
            FloodKind::UnsignedTx | FloodKind::Mixed | FloodKind::Malformed
        );
        let identities = if needs_keys {
            (0..IDENTITIES)
                .map(|_| {
                    let w = Wallet::from_seed(rng.random(), &mut rng);
                    Identity {
                        public_key: w.public_key(),
                        hash_addr: w.hash_addr(),
                        y: w.dh().public(),
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        FloodGen {
            spec,
            target,
            sources,
            rng,
            identities,
        }
    }

    /// The step.
    pub fn spec(&self) -> &FloodSpec {
        &self.spec
    }

    /// Datagram `k`: its kind and the whole IPv4/UDP packet (checksums correct).
    pub fn packet(&mut self, k: u64) -> (FloodKind, Vec<u8>) {
        let kind = self.spec.kind.of_packet(k);
        let src_ip = self
            .sources
            .get(self.rng.random_range(0..self.sources.len().max(1)))
            .copied()
            .unwrap_or(Ipv4Addr::new(192, 0, 2, 1));
        let src = SocketAddrV4::new(src_ip, self.rng.random_range(1024..=u16::MAX));
        let payload = match kind {
            FloodKind::UnsignedTx => Message::TxSubmit {
                tx: self.unsigned_tx(src, k),
            }
            .to_bytes(),
            FloodKind::UnsignedQuery => self.query(),
            _ => self.malformed(src, k),
        };
        (kind, udp_packet(src, self.target, &payload))
    }

    fn unsigned_tx(&mut self, src: SocketAddrV4, k: u64) -> ToallTx {
        let i = self.rng.random_range(0..self.identities.len().max(1));
        let (public_key, hash_addr, y) = match self.identities.get(i) {
            Some(id) => (id.public_key, id.hash_addr, id.y.clone()),
            None => (self.rng.random(), self.rng.random(), vec![2; 256]),
        };
        let mut signature = [0u8; 64];
        self.rng.fill_bytes(&mut signature);
        ToallTx {
            public_key,
            signature,
            out: TxOut {
                hash_addr,
                seq: self.rng.random_range(1..1 << 40),
                private_ip: *src.ip(),
                private_port: src.port(),
                nat_ip: *src.ip(),
                nat_port: src.port(),
                dh_group: DH_GROUP_MODP2048,
                y,
                time_ms: u64::try_from(self.spec.offset(k).as_millis()).unwrap_or(0),
            },
        }
    }

    fn query(&mut self) -> Vec<u8> {
        Message::Query {
            request_id: self.rng.random(),
            hash_addr: self.rng.random(),
            want_unconfirmed: self.rng.random(),
        }
        .to_bytes()
    }

    fn malformed(&mut self, src: SocketAddrV4, k: u64) -> Vec<u8> {
        let valid = if self.rng.random() {
            Message::TxSubmit {
                tx: self.unsigned_tx(src, k),
            }
            .to_bytes()
        } else {
            self.query()
        };
        let mut bytes = match self.rng.random_range(0..5u8) {
            // Random bytes, sometimes with a plausible header.
            0 => {
                let len = self.rng.random_range(0..=600);
                let mut b = vec![0u8; len];
                self.rng.fill_bytes(&mut b);
                if len >= 4 && self.rng.random() {
                    b[..3].copy_from_slice(b"BF\x01");
                }
                b
            }
            // A valid message cut short (a truncated header or body).
            1 => {
                let cut = self.rng.random_range(0..valid.len().max(1));
                valid[..cut].to_vec()
            }
            // A wrong length: the Y length field of a Tx, or the Query's hash address cut.
            2 => {
                let mut b = valid;
                let at = 4 + 1 + 32 + 8 + 4 + 2 + 4 + 2 + 8 + 2;
                if b.get(1..4) == Some(b"F\x01\x01") && b.len() > at + 2 {
                    let wrong = self.rng.random_range(257..=u16::MAX);
                    b[at..at + 2].copy_from_slice(&wrong.to_be_bytes());
                } else {
                    b.truncate(b.len().saturating_sub(7));
                }
                b
            }
            // Trailing bytes.
            3 => {
                let mut b = valid;
                let extra = self.rng.random_range(1..=64);
                b.extend((0..extra).map(|_| self.rng.random::<u8>()));
                b
            }
            // A wrong magic, version or type.
            _ => {
                let mut b = valid;
                match self.rng.random_range(0..3u8) {
                    0 => b[0] ^= 0x20,
                    1 => b[2] = self.rng.random_range(2..=u8::MAX),
                    _ => b[3] = self.rng.random_range(14..=u8::MAX),
                }
                b
            }
        };
        if Message::parse(&bytes).is_ok() {
            // Cannot happen with the cases above; a wrong magic makes sure.
            match bytes.first_mut() {
                Some(b) => *b = b'X',
                None => bytes.push(b'X'),
            }
        }
        bytes
    }
}

/// An IPv4/UDP packet with correct checksums.
fn udp_packet(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4(src.ip().octets(), dst.ip().octets(), 64)
        .udp(src.port(), dst.port());
    let mut v = Vec::with_capacity(b.size(payload.len()));
    match b.write(&mut v, payload) {
        Ok(()) => v,
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use binfm_stack::wire::ports;
    use std::time::Duration;

    fn spec(kind: FloodKind) -> FloodSpec {
        FloodSpec {
            target: 0,
            rate: 3,
            duration: Duration::from_millis(2500),
            kind,
        }
    }

    #[test]
    fn every_datagram_is_what_its_kind_says_and_the_stream_is_reproducible() {
        let target = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 12), ports::SN);
        let sources = vec![
            Ipv4Addr::new(198, 51, 100, 77),
            Ipv4Addr::new(198, 51, 100, 78),
        ];
        let mut g = FloodGen::new(spec(FloodKind::Mixed), target, sources.clone(), 9);
        let mut again = FloodGen::new(spec(FloodKind::Mixed), target, sources.clone(), 9);
        for k in 0..2000 {
            let (kind, packet) = g.packet(k);
            assert_eq!(again.packet(k), (kind, packet.clone()));
            let ip = etherparse::SlicedPacket::from_ip(&packet).expect("valid IPv4/UDP");
            let Some(etherparse::NetSlice::Ipv4(v4)) = ip.net else {
                panic!("not IPv4")
            };
            assert!(sources.contains(&v4.header().source_addr()));
            assert_eq!(v4.header().destination_addr(), *target.ip());
            let Some(etherparse::TransportSlice::Udp(udp)) = ip.transport else {
                panic!("not UDP")
            };
            assert_eq!(udp.destination_port(), ports::SN);
            let parsed = Message::parse(udp.payload());
            match kind {
                FloodKind::Malformed => assert!(parsed.is_err(), "{k}: {parsed:?}"),
                FloodKind::UnsignedTx => match parsed {
                    Ok(Message::TxSubmit { tx }) => assert_eq!(
                        binfm_roles::wallet::verify_tx(&tx),
                        Err(binfm_roles::wallet::TxError::BadSignature)
                    ),
                    other => panic!("{k}: {other:?}"),
                },
                FloodKind::UnsignedQuery => {
                    assert!(matches!(parsed, Ok(Message::Query { .. })), "{k}")
                }
                FloodKind::Mixed => unreachable!(),
            }
        }
    }
}
