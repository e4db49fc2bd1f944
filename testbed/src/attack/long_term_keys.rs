//! `long-term-keys`: an attacker records the calls it can sniff on its segment (Session
//! Requests and Responses, Key Renewals and their Replies, media), and at the end of the run
//! steals every EN's long-term DH secrets: the first one, derived from the topology the way
//! the testbed does (`apps::wallet_of`), and the one the EN holds at the end (after a key
//! renewal it is another). It never gets an EN's generator, which draws the ephemerals.
//!
//! With these it computes every DH secret a long-term key gives from what was on the wire:
//! `ss` (static-static, the paper's K), `es` (the callee's static with the caller's
//! ephemeral), `se` (the caller's static with the callee's ephemeral), and each static with
//! each announced next ephemeral and each renewal's fresh value. It tries as epoch-0 root the
//! paper's K alone (the scheme before forward secrecy) and every [`session_root`] of `ss`,
//! `es` and any of those in place of the ephemeral-ephemeral secret, and for each renewal the
//! secrets alone and every [`renewal_root`] of an earlier candidate with them. The session's
//! ephemeral-ephemeral secret (and a renewal's fresh-with-next one) needs an ephemeral secret,
//! which neither side keeps: with forward secrecy no candidate opens a frame.

use super::packet::Udp;
use binfm_roles::Time;
use binfm_roles::dh::DhSecret;
use binfm_roles::session::keys::{derive, renewal_root, session_root};
use binfm_roles::session::srtp::SrtpReceiver;
use binfm_stack::wire::binfm::Message;
use binfm_stack::wire::rtp::is_rtp;
use binfm_stack::wire::toall::HashAddr;
use std::collections::BTreeMap;

/// Media packets recorded at most (about 10 minutes of one call, both ways).
pub const MAX_RECORDED: usize = 60_000;
/// Candidate roots kept per key epoch of one session (the search grows with each renewal).
pub const MAX_CANDIDATES: usize = 512;

/// The callee's nonce, SSRC, setup ephemeral and announced next value.
type Answer = ([u8; 16], u32, Vec<u8>, Vec<u8>);
/// One key epoch's candidates: raw DH secrets (used as the root directly, as before forward
/// secrecy) and roots derived with them.
type Candidates = (Vec<Vec<u8>>, Vec<[u8; 32]>);

/// A session seen on the wire.
#[derive(Debug, Clone)]
struct Recorded {
    caller: HashAddr,
    callee: HashAddr,
    caller_nonce: [u8; 16],
    caller_ssrc: u32,
    /// The caller's setup ephemeral and announced next value.
    caller_eph: Vec<u8>,
    caller_next: Vec<u8>,
    /// The callee's answer.
    answer: Option<Answer>,
}

/// A DH value sent in a Key Renewal (`reply` false) or in a Key Renewal Reply.
#[derive(Debug, Clone)]
struct RenewalValue {
    sender: HashAddr,
    counter: u64,
    reply: bool,
    y: Vec<u8>,
}

/// The state and counts of one `long-term-keys` step.
#[derive(Debug, Default)]
pub struct LongTermKeys {
    sessions: Vec<Recorded>,
    /// Key Renewal and Key Renewal Reply values, first copy of each only.
    renewals: Vec<RenewalValue>,
    /// (SSRC, packet) of the media seen.
    media: Vec<(u32, Vec<u8>)>,
    /// Media packets not recorded (beyond [`MAX_RECORDED`]).
    pub media_not_recorded: u64,
}

/// What the attacker decrypted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decrypted {
    /// Sessions whose request and response were both seen.
    pub sessions: u64,
    /// Media packets recorded of those sessions.
    pub frames_recorded: u64,
    /// Of those: decrypted with a key derived from long-term keys and the wire only.
    pub frames_decrypted: u64,
    /// Key epochs (the first, and one per Key Renewal of either end) for which candidate
    /// keys were derived.
    pub epochs: u64,
}

impl LongTermKeys {
    pub(super) fn on_tap(&mut self, _now: Time, udp: Udp<'_>) {
        if is_rtp(udp.payload) {
            if self.media.len() >= MAX_RECORDED {
                self.media_not_recorded += 1;
                return;
            }
            if let Some(ssrc) = binfm_roles::session::media::rtp_ssrc(udp.payload) {
                self.media.push((ssrc, udp.payload.to_vec()));
            }
            return;
        }
        match Message::parse(udp.payload) {
            Ok(Message::SessionRequest {
                caller,
                callee,
                nonce,
                ssrc,
                ephemeral,
                next,
                ..
            }) => self.record_request(Recorded {
                caller,
                callee,
                caller_nonce: nonce,
                caller_ssrc: ssrc,
                caller_eph: ephemeral,
                caller_next: next,
                answer: None,
            }),
            Ok(Message::SessionResponse {
                caller,
                callee,
                nonce,
                ssrc,
                ephemeral,
                next,
                ..
            }) => {
                // The response answers the newest request of that pair still unanswered.
                if let Some(s) = self
                    .sessions
                    .iter_mut()
                    .rev()
                    .find(|s| s.caller == caller && s.callee == callee && s.answer.is_none())
                {
                    s.answer = Some((nonce, ssrc, ephemeral, next));
                }
            }
            Ok(Message::KeyRenewal {
                sender, counter, y, ..
            }) => self.record_renewal(sender, counter, false, y),
            Ok(Message::KeyRenewalReply {
                sender, counter, y, ..
            }) => self.record_renewal(sender, counter, true, y),
            _ => {}
        }
    }

    /// A Session Request, unless it is a retransmission of one recorded.
    fn record_request(&mut self, r: Recorded) {
        if !self
            .sessions
            .iter()
            .any(|s| s.caller == r.caller && s.caller_nonce == r.caller_nonce)
        {
            self.sessions.push(r);
        }
    }

    /// A renewal value, unless it is a retransmission of one recorded.
    fn record_renewal(&mut self, sender: HashAddr, counter: u64, reply: bool, y: Vec<u8>) {
        if !self
            .renewals
            .iter()
            .any(|r| r.sender == sender && r.counter == counter && r.reply == reply)
        {
            self.renewals.push(RenewalValue {
                sender,
                counter,
                reply,
                y,
            });
        }
    }

    /// Decrypts what was recorded with the stolen long-term DH secrets: `long_term` gives,
    /// per hash address of an EN of the topology, every long-term secret it held.
    pub fn decrypt(&self, long_term: &BTreeMap<HashAddr, Vec<&DhSecret>>) -> Decrypted {
        let mut d = Decrypted::default();
        for s in &self.sessions {
            let Some((callee_nonce, callee_ssrc, callee_eph, callee_next)) = &s.answer else {
                continue;
            };
            let (Some(xa), Some(xb)) = (long_term.get(&s.caller), long_term.get(&s.callee)) else {
                continue;
            };
            d.sessions += 1;
            // Every DH secret of a stolen static key with a public value of the other side.
            let with = |xs: &[&DhSecret], ys: &[&[u8]]| -> Vec<Vec<u8>> {
                let mut out = Vec::new();
                for x in xs {
                    for y in ys {
                        if let Ok(k) = x.agree(y) {
                            out.push(k);
                        }
                    }
                }
                out
            };
            let statics_a: Vec<&[u8]> = xa.iter().map(|x| x.public_bytes().as_slice()).collect();
            let ss = with(xb, &statics_a);
            let es = with(xb, &[&s.caller_eph]);
            let mut any = ss.clone();
            any.extend(es.iter().cloned());
            any.extend(with(xa, &[callee_eph, callee_next]));
            any.extend(with(xb, &[&s.caller_next]));
            // Epoch 0: the paper's K alone, and every root with a stand-in for `ee`.
            let mut roots: Vec<[u8; 32]> = Vec::new();
            let mut raw: Vec<Vec<u8>> = ss.clone();
            'roots: for a in &ss {
                for b in &es {
                    for z in &any {
                        if roots.len() >= MAX_CANDIDATES {
                            break 'roots;
                        }
                        roots.push(session_root(a, b, z));
                    }
                }
            }
            let mut epochs: Vec<Candidates> = vec![(raw.clone(), roots)];
            // Each renewal by either end: the renewing side's fresh value with the other's
            // static key (the scheme before forward secrecy), the other side's announced
            // values with the renewing side's static key.
            for r in self
                .renewals
                .iter()
                .filter(|r| !r.reply && (r.sender == s.caller || r.sender == s.callee))
            {
                let (mine, other, other_addr) = if r.sender == s.caller {
                    (xa, xb, s.callee)
                } else {
                    (xb, xa, s.caller)
                };
                let mut secrets = with(other, &[&r.y]);
                let mut announced: Vec<&[u8]> = vec![callee_next, &s.caller_next];
                announced.extend(
                    self.renewals
                        .iter()
                        .filter(|v| v.reply && v.sender == other_addr)
                        .map(|v| v.y.as_slice()),
                );
                secrets.extend(with(mine, &announced));
                let Some((_, prev)) = epochs.last() else {
                    break;
                };
                let mut next_roots = Vec::new();
                'next: for p in prev.iter() {
                    for k in &secrets {
                        if next_roots.len() >= MAX_CANDIDATES {
                            break 'next;
                        }
                        next_roots.push(renewal_root(p, k));
                    }
                }
                raw = secrets;
                epochs.push((raw.clone(), next_roots));
            }
            let mut forward: Vec<SrtpReceiver> = Vec::new();
            let mut backward: Vec<SrtpReceiver> = Vec::new();
            for (epoch, (raw, roots)) in epochs.iter().enumerate() {
                let epoch = u32::try_from(epoch).unwrap_or(u32::MAX);
                let candidates = raw
                    .iter()
                    .map(Vec::as_slice)
                    .chain(roots.iter().map(|r| r.as_slice()));
                for k in candidates {
                    let keys = derive(
                        k,
                        &s.caller,
                        &s.callee,
                        &s.caller_nonce,
                        callee_nonce,
                        epoch,
                        true,
                    );
                    forward.push(SrtpReceiver::new(keys.send, s.caller_ssrc));
                    backward.push(SrtpReceiver::new(keys.recv, *callee_ssrc));
                }
                d.epochs += 1;
            }
            for (ssrc, p) in &self.media {
                let receivers = if *ssrc == s.caller_ssrc {
                    &mut forward
                } else if ssrc == callee_ssrc {
                    &mut backward
                } else {
                    continue;
                };
                d.frames_recorded += 1;
                if receivers.iter_mut().any(|r| r.unprotect(p).is_ok()) {
                    d.frames_decrypted += 1;
                }
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use binfm_roles::session::srtp::SrtpSender;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    /// The search is not vacuous: with the same inputs, the scheme before forward secrecy
    /// (the paper's K as root) is opened by it, and so is a session root whose
    /// ephemeral-ephemeral secret a long-term key gives (an ephemeral reused as a static).
    #[test]
    fn the_search_finds_keys_that_long_term_secrets_do_give() {
        let mut rng = ChaCha20Rng::from_seed([5; 32]);
        let (xa, xb) = (DhSecret::generate(&mut rng), DhSecret::generate(&mut rng));
        let (ha, hb) = ([1u8; 32], [2u8; 32]);
        let (na, nb) = ([3u8; 16], [4u8; 16]);
        let ea = DhSecret::generate(&mut rng);
        let ss = xa.agree(xb.public_bytes()).unwrap_or_default();
        let es = xb.agree(&ea.public()).unwrap_or_default();
        let frame = |root: &[u8]| {
            let keys = derive(root, &ha, &hb, &na, &nb, 0, true);
            SrtpSender::new(keys.send, 77, 1).protect(0, 160, &[0u8; 160])
        };
        let run = |root: &[u8], callee_eph: Vec<u8>| {
            let mut a = LongTermKeys::default();
            a.sessions.push(Recorded {
                caller: ha,
                callee: hb,
                caller_nonce: na,
                caller_ssrc: 77,
                caller_eph: ea.public(),
                caller_next: ea.public(),
                answer: Some((nb, 88, callee_eph.clone(), callee_eph)),
            });
            a.media.push((77, frame(root)));
            let mut keys = BTreeMap::new();
            keys.insert(ha, vec![&xa]);
            keys.insert(hb, vec![&xb]);
            a.decrypt(&keys)
        };
        // The paper's K.
        assert_eq!(run(&ss, xb.public()).frames_decrypted, 1);
        // `ee` equal to `se`: the callee's "ephemeral" is its static value.
        let se = xa.agree(xb.public_bytes()).unwrap_or_default();
        assert_eq!(
            run(&session_root(&ss, &es, &se), xb.public()).frames_decrypted,
            1
        );
        // A real ephemeral-ephemeral secret: not found.
        let eb = DhSecret::generate(&mut rng);
        let ee = ea.agree(&eb.public()).unwrap_or_default();
        let d = run(&session_root(&ss, &es, &ee), eb.public());
        assert_eq!(
            (d.sessions, d.frames_recorded, d.frames_decrypted),
            (1, 1, 0)
        );
    }
}
