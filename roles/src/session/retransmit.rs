//! Retransmission until an answer is seen, the same for both models' end nodes.
//!
//! - [`Backoff`]: when the next try of a request is due, its timeout doubling up to a cap
//!   (registration and lookup, STUN, and, with a fixed period, a call's control message).
//! - [`PendingControl`]: a call's control message (Session Request, Handover Request, Key
//!   Renewal; Invite, KeyExchange, ReInvite) repeated every [`CONTROL_RTO`] until the call
//!   sees its effect, at most [`CONTROL_TRIES`] times.

use super::Out;
use crate::Time;
use std::net::SocketAddrV4;
use std::time::Duration;

/// Registration and lookup: first retransmission timeout.
pub const RTO_INITIAL: Duration = Duration::from_secs(1);
/// Registration and lookup: retransmission timeout cap.
pub const RTO_MAX: Duration = Duration::from_secs(8);
/// Retransmission period of a call's control message.
pub const CONTROL_RTO: Duration = Duration::from_millis(500);
/// Tries of one control message before giving up.
pub const CONTROL_TRIES: u32 = 8;

/// When to send the next try of a request: the timeout doubles after every try, up to a cap.
#[derive(Debug, Clone)]
pub struct Backoff {
    tries: u32,
    rto: Duration,
    max: Duration,
    next: Time,
}

impl Backoff {
    /// Nothing sent yet: the first try is due at `now` and waits `initial` for its answer.
    pub fn new(initial: Duration, max: Duration, now: Time) -> Self {
        Backoff {
            tries: 0,
            rto: initial,
            max,
            next: now,
        }
    }

    /// A try goes out at `now`: counts it and sets when the next is due (the timeout doubles
    /// from the second try on).
    pub fn on_send(&mut self, now: Time) {
        self.tries += 1;
        if self.tries > 1 {
            self.rto = (self.rto * 2).min(self.max);
        }
        self.next = now + self.rto;
    }

    /// Tries sent so far.
    pub fn tries(&self) -> u32 {
        self.tries
    }

    /// When the next try is due.
    pub fn next(&self) -> Time {
        self.next
    }
}

/// A call's control message being repeated until the call sees its effect.
#[derive(Debug, Clone)]
pub struct PendingControl {
    bytes: Vec<u8>,
    what: &'static str,
    backoff: Backoff,
}

impl PendingControl {
    /// `bytes` were just sent at `now` (the first try); `what` names them in events.
    pub fn new(bytes: Vec<u8>, what: &'static str, now: Time) -> Self {
        let mut backoff = Backoff::new(CONTROL_RTO, CONTROL_RTO, now);
        backoff.on_send(now);
        PendingControl {
            bytes,
            what,
            backoff,
        }
    }

    /// Which message it is (`session_request`, `reinvite`, ...).
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// When the next try is due.
    pub fn next(&self) -> Time {
        self.backoff.next()
    }

    /// At `now`: when due, sends the message again to `to` (a try is counted even while
    /// `have_address` is false, so a move does not stretch the tries). True when every try
    /// is used up: the call gives up and drops it.
    pub fn on_timeout(
        &mut self,
        now: Time,
        to: Option<SocketAddrV4>,
        have_address: bool,
        out: &mut Vec<Out>,
    ) -> bool {
        if self.backoff.next() > now {
            return false;
        }
        if self.backoff.tries() >= CONTROL_TRIES {
            return true;
        }
        if let Some(to) = to {
            self.backoff.on_send(now);
            if have_address {
                out.push((to, self.bytes.clone()));
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut b = Backoff::new(RTO_INITIAL, RTO_MAX, Time::ZERO);
        assert_eq!((b.tries(), b.next()), (0, Time::ZERO));
        let mut gaps = Vec::new();
        let mut now = Time::ZERO;
        for _ in 0..6 {
            b.on_send(now);
            gaps.push((b.next() - now).as_secs());
            now = b.next();
        }
        assert_eq!(gaps, [1, 2, 4, 8, 8, 8]);
        assert_eq!(b.tries(), 6);
    }

    #[test]
    fn a_control_message_is_repeated_every_rto_then_given_up() {
        let to = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 7);
        let mut p = PendingControl::new(vec![1, 2], "reinvite", Time::ZERO);
        let mut out = Vec::new();
        assert!(!p.on_timeout(Time::from_millis(499), Some(to), true, &mut out));
        assert!(out.is_empty());
        let mut now = Time::ZERO;
        for _ in 1..CONTROL_TRIES {
            now += CONTROL_RTO;
            assert!(!p.on_timeout(now, Some(to), true, &mut out));
        }
        assert_eq!(out.len(), CONTROL_TRIES as usize - 1);
        assert!(p.on_timeout(now + CONTROL_RTO, Some(to), true, &mut out));
    }
}
