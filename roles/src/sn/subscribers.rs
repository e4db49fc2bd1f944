//! The end nodes a super node pushes new headers to: every EN whose Tx it accepted from the
//! EN itself, at the endpoint that Tx came from, until the EN registers another endpoint.
//!
//! A subscription lasts as long as the registration: an EN that sits still for hours must
//! still get headers (and may ask for them with GetHeaders, answered only to subscribers),
//! or it could not check a Reply's proof when it calls. The table is bounded: past
//! [`MAX_SUBSCRIBERS`] the least recently registered endpoint goes first, in O(log n).

use crate::Time;
use binfm_stack::wire::toall::HashAddr;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddrV4;

/// Most end-node endpoints one super node pushes headers to.
pub const MAX_SUBSCRIBERS: usize = 65_536;

/// Bytes one subscription costs, roughly (three map entries), for the SN's memory report.
pub const SUBSCRIBER_BYTES: usize = 96;

/// Subscribed endpoints, by endpoint (the push order), by owner and by age.
#[derive(Debug, Default)]
pub(super) struct Subscribers {
    by_endpoint: BTreeMap<SocketAddrV4, (HashAddr, Time)>,
    by_owner: HashMap<HashAddr, SocketAddrV4>,
    by_age: BTreeSet<(Time, SocketAddrV4)>,
}

impl Subscribers {
    /// `owner` registered from `ep` at `now`: its earlier endpoint (if another) stops
    /// getting pushes.
    pub(super) fn subscribe(&mut self, now: Time, ep: SocketAddrV4, owner: HashAddr) {
        if let Some(old) = self.by_owner.insert(owner, ep)
            && old != ep
        {
            self.remove(old);
        }
        if let Some((prev_owner, t)) = self.by_endpoint.insert(ep, (owner, now)) {
            self.by_age.remove(&(t, ep));
            if prev_owner != owner && self.by_owner.get(&prev_owner) == Some(&ep) {
                self.by_owner.remove(&prev_owner);
            }
        }
        self.by_age.insert((now, ep));
        while self.by_endpoint.len() > MAX_SUBSCRIBERS {
            let Some(&(_, oldest)) = self.by_age.first() else {
                break;
            };
            self.remove(oldest);
        }
    }

    fn remove(&mut self, ep: SocketAddrV4) {
        if let Some((owner, t)) = self.by_endpoint.remove(&ep) {
            self.by_age.remove(&(t, ep));
            if self.by_owner.get(&owner) == Some(&ep) {
                self.by_owner.remove(&owner);
            }
        }
    }

    pub(super) fn contains(&self, ep: &SocketAddrV4) -> bool {
        self.by_endpoint.contains_key(ep)
    }

    /// Endpoints in address order.
    pub(super) fn endpoints(&self) -> impl Iterator<Item = &SocketAddrV4> {
        self.by_endpoint.keys()
    }

    pub(super) fn len(&self) -> usize {
        self.by_endpoint.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_endpoint.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ep(i: u32) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i), 7401)
    }

    #[test]
    fn a_new_endpoint_replaces_the_owners_old_one_and_the_oldest_goes_first_when_full() {
        let mut s = Subscribers::default();
        s.subscribe(Time::from_millis(1), ep(1), [1; 32]);
        s.subscribe(Time::from_millis(2), ep(2), [2; 32]);
        // Owner 1 moves: only its new endpoint is pushed to.
        s.subscribe(Time::from_millis(3), ep(3), [1; 32]);
        assert!(!s.contains(&ep(1)) && s.contains(&ep(2)) && s.contains(&ep(3)));
        assert_eq!(s.len(), 2);
        // Another owner takes over endpoint 2 (an address reused behind a NAT).
        s.subscribe(Time::from_millis(4), ep(2), [4; 32]);
        s.subscribe(Time::from_millis(5), ep(5), [2; 32]);
        assert!(
            s.contains(&ep(2)),
            "owner 2's move must not drop owner 4's endpoint"
        );
        assert_eq!(s.len(), 3);
        // Fill up: the least recently registered go first.
        for i in 0..MAX_SUBSCRIBERS as u32 {
            let mut owner = [9; 32];
            owner[..4].copy_from_slice(&i.to_be_bytes());
            s.subscribe(Time::from_millis(10 + u64::from(i)), ep(1000 + i), owner);
        }
        assert_eq!(s.len(), MAX_SUBSCRIBERS);
        assert!(!s.contains(&ep(3)) && !s.contains(&ep(2)) && !s.contains(&ep(5)));
        assert!(s.contains(&ep(1000)));
        assert_eq!(s.by_age.len(), s.len());
        assert!(s.by_owner.len() <= s.len());
    }
}
