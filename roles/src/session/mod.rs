//! The media side of a BINFM call between two ENs (paper, sections 3.3-3.5): session keys
//! from the DH secret, SRTP (AES-256-GCM, RFC 7714) for the audio, and the synthetic audio
//! itself with what a receiver measures.
//!
//! - [`keys`]: HKDF-SHA256 from K and both nonces to per-direction media keys and the control
//!   key that MACs Session Response, Handover Request, Key Renewal and ControlAck.
//! - [`srtp`]: protect/unprotect with a 64-packet replay window and a seamless key switch.
//! - [`audio`]: G.711 μ-law, a test tone, WAV output, receiver statistics, a recording.
//! - [`media`]: one call's audio both ways ([`media::MediaSession`]), held by both models'
//!   calls.
//! - [`retransmit`]: retransmission with backoff, and a call's pending control message.
//!
//! Sans-IO like every role: no clock (callers pass arrival times), no RNG (callers pass
//! nonces, SSRCs and first sequence numbers drawn from their seeded RNG).

pub mod audio;
pub mod keys;
pub mod media;
pub mod retransmit;
pub mod srtp;

pub use keys::{DirectionKey, SessionKeys, derive, mac, verify_mac};
pub use srtp::{KeyUsed, SrtpError, SrtpReceiver, SrtpSender, SrtpStats, Unprotected};

/// A datagram a call wants sent: bytes to an address.
pub type Out = (std::net::SocketAddrV4, Vec<u8>);
