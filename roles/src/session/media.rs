//! The media half of a call, the same in both models: the tone this side sends every
//! [`FRAME_PERIOD`], SRTP protect/unprotect, and what the receiver measures and records.
//! Each model's call holds one [`MediaSession`] and keeps only its own signalling: which
//! keys to install when, and what a packet under the next key means for a renewal.

use super::Out;
use super::audio::{AudioSource, PT_PCMU, ReceiverStats, Recording, ToneClock};
use super::keys::DirectionKey;
use super::retransmit::PendingControl;
use super::srtp::{KeyUsed, SrtpError, SrtpReceiver, SrtpSender};
use crate::Time;
use crate::event::Event;
use crate::util::{millis_f64, short_hex};
use binfm_stack::wire::rtp::RtpHeader;
use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::Duration;

pub use super::audio::FRAME_PERIOD;

/// A pause in received audio longer than this is reported when audio resumes.
pub const GAP_REPORT: Duration = Duration::from_millis(100);
/// Received frames whose arrival is logged for delay statistics (one hour of audio).
pub const MAX_RX_LOG: usize = 180_000;

/// The events a media session reports, built by its model (`call.*`, `vertical.*`) so both
/// models' event logs keep their own families. `peer` is the peer in short hex.
#[derive(Debug, Clone, Copy)]
pub struct MediaEvents {
    /// The first frame decrypted: `(peer, index)`.
    pub first_frame: fn(String, u64) -> Event,
    /// Audio resumed after a pause longer than [`GAP_REPORT`]: `(peer, gap_ms, index)`.
    pub resumed: fn(String, f64, u64) -> Event,
    /// The first packet refused for a reason (later ones are only counted): `(peer, reason)`.
    pub refused: fn(String, &'static str) -> Event,
}

/// A frame the session accepted, for the signalling to act on (a key renewal completes when
/// the peer is seen sending under the next key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Extended sequence number (ROC<<16 | seq).
    pub index: u64,
    /// Which of the receiver's keys opened it.
    pub key: KeyUsed,
}

/// The SSRC of an RTP packet, if it parses (which call a media packet belongs to).
pub fn rtp_ssrc(packet: &[u8]) -> Option<u32> {
    RtpHeader::parse(packet).map(|(h, _)| h.ssrc).ok()
}

/// One call's audio, both directions.
#[derive(Debug, Clone)]
pub struct MediaSession {
    ssrc: u32,
    peer_ssrc: Option<u32>,
    /// The outgoing tone and its 20 ms clock.
    tone: ToneClock,
    sender: Option<SrtpSender>,
    receiver: Option<SrtpReceiver>,
    last_rx: Option<Time>,
    kinds: MediaEvents,
    /// Frames this side sent.
    pub frames_sent: u64,
    /// Frames this side could not send (no address during a move).
    pub frames_unsent: u64,
    /// Statistics of what this side received.
    pub rx_stats: ReceiverStats,
    /// The decrypted audio received, by frame index.
    pub recording: Recording,
    /// (frame index, arrival time) of received frames, up to [`MAX_RX_LOG`], for delay
    /// and gap statistics.
    pub rx_log: Vec<(u64, Time)>,
    /// When this side started sending media (frame 0).
    pub media_start: Option<Time>,
    /// Media packets refused, by reason.
    pub media_refused: BTreeMap<&'static str, u64>,
}

impl MediaSession {
    /// Sends `source` (a tone frequency converts) under SSRC `ssrc` once started; reports events under `kinds`.
    pub fn new(ssrc: u32, source: impl Into<AudioSource>, kinds: MediaEvents) -> Self {
        MediaSession {
            ssrc,
            peer_ssrc: None,
            tone: ToneClock::new(source),
            sender: None,
            receiver: None,
            last_rx: None,
            kinds,
            frames_sent: 0,
            frames_unsent: 0,
            rx_stats: ReceiverStats::new(),
            recording: Recording::new(),
            rx_log: Vec::new(),
            media_start: None,
            media_refused: BTreeMap::new(),
        }
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The peer's SSRC once known.
    pub fn peer_ssrc(&self) -> Option<u32> {
        self.peer_ssrc
    }

    /// The signalling learnt the peer's SSRC.
    pub fn set_peer_ssrc(&mut self, ssrc: u32) {
        self.peer_ssrc = Some(ssrc);
    }

    /// Whether a packet with SSRC `ssrc` is the peer's media.
    pub fn is_from_peer(&self, ssrc: Option<u32>) -> bool {
        ssrc.is_some() && self.peer_ssrc == ssrc
    }

    /// Keys agreed: protect with `send` (first sequence number from our SSRC), and, once the
    /// peer's SSRC is known, unprotect with `recv`.
    pub fn install_keys(&mut self, send: DirectionKey, recv: DirectionKey) {
        self.sender = Some(SrtpSender::new(send, self.ssrc, (self.ssrc >> 16) as u16));
        if let Some(ssrc) = self.peer_ssrc {
            self.receiver = Some(SrtpReceiver::new(recv, ssrc));
        }
    }

    /// Forgets keys that turned out wrong (a failed key confirmation).
    pub fn drop_keys(&mut self) {
        self.sender = None;
        self.receiver = None;
    }

    /// Sends under `key` from now on (a renewal both ends hold).
    pub fn set_send_key(&mut self, key: DirectionKey) {
        if let Some(s) = &mut self.sender {
            s.set_key(key);
        }
    }

    /// Accepts `key` too, and switches to it when the peer is seen using it.
    pub fn expect_next_key(&mut self, key: DirectionKey) {
        if let Some(rx) = &mut self.receiver {
            rx.install_next_key(key);
        }
    }

    /// Fingerprint of the key we send with (both ends show the same one per direction).
    pub fn send_key_id(&self) -> Option<[u8; 4]> {
        self.sender.as_ref().map(SrtpSender::key_id)
    }

    /// Audio starts: frame 0 is due at `now`.
    pub fn start(&mut self, now: Time) {
        self.tone.start(now);
        self.media_start = Some(now);
    }

    /// Audio stops (hung up).
    pub fn stop(&mut self) {
        self.tone.stop();
    }

    /// The next moment a call must act: its next frame while `sending`, or the next try of
    /// its `pending` control message, whichever is first.
    pub fn next_timeout(&self, sending: bool, pending: Option<&PendingControl>) -> Option<Time> {
        let media = if sending { self.tone.next_due() } else { None };
        [media, pending.map(PendingControl::next)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Frames due by `now`, protected, to the peer at `to`; counted as unsent while
    /// `have_address` is false (moving).
    pub fn send_due(
        &mut self,
        now: Time,
        to: Option<SocketAddrV4>,
        have_address: bool,
        out: &mut Vec<Out>,
    ) {
        while let Some((ts, payload)) = self.tone.pop_due(now) {
            let (Some(sender), Some(to)) = (&mut self.sender, to) else {
                break;
            };
            let packet = sender.protect(PT_PCMU, ts, &payload);
            if have_address {
                self.frames_sent += 1;
                out.push((to, packet));
            } else {
                self.frames_unsent += 1;
            }
        }
    }

    /// A media packet from `peer`: decrypted, measured and recorded, or refused and counted.
    /// Returns the accepted frame for the signalling.
    pub fn receive(
        &mut self,
        now: Time,
        packet: &[u8],
        peer: &[u8; 32],
        events: &mut Vec<Event>,
    ) -> Option<Received> {
        let Some(rx) = &mut self.receiver else {
            *self.media_refused.entry("no_keys").or_default() += 1;
            return None;
        };
        match rx.unprotect(packet) {
            Ok(u) => {
                match self.last_rx {
                    None => events.push((self.kinds.first_frame)(short_hex(peer), u.index)),
                    Some(last) if now.saturating_sub(last) > GAP_REPORT => {
                        let gap_ms = millis_f64(now.saturating_sub(last));
                        events.push((self.kinds.resumed)(short_hex(peer), gap_ms, u.index));
                    }
                    Some(_) => {}
                }
                self.last_rx = Some(now);
                let arrival = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
                self.rx_stats
                    .on_frame(u.index, u.header.timestamp, arrival, None);
                self.recording.push(u.index, &u.payload);
                if self.rx_log.len() < MAX_RX_LOG {
                    self.rx_log.push((u.index, now));
                }
                Some(Received {
                    index: u.index,
                    key: u.key_epoch,
                })
            }
            Err(SrtpError::Replayed { .. }) => {
                self.rx_stats.on_duplicate();
                *self.media_refused.entry("replayed").or_default() += 1;
                None
            }
            Err(e) => {
                let reason = e.reason();
                let n = self.media_refused.entry(reason).or_default();
                *n += 1;
                if *n == 1 {
                    events.push((self.kinds.refused)(short_hex(peer), reason));
                }
                None
            }
        }
    }
}
