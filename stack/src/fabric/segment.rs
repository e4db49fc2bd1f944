//! A segment: a layer-3 LAN (or a point-to-point link, a segment of two) with per-pair link
//! emulation.

use crate::Time;
use crate::fasthash::{FastMap, FastSet};
use crate::netem::{Channel, Fate, LinkParams};
use smoltcp::wire::Ipv4Cidr;
use std::net::Ipv4Addr;

/// Index of a member within its segment.
pub type MemberId = usize;

/// One attachment of a node to a segment.
#[derive(Debug, Clone)]
pub struct Member {
    /// Index of the node in the driver's node list.
    pub node: usize,
    /// Index of the attachment (port) within the node.
    pub port: usize,
    /// Current address on this segment (`None` while a DHCP client has no lease).
    pub addr: Option<Ipv4Addr>,
    /// False once the node left the segment (a move); the id stays valid but unreachable.
    pub attached: bool,
}

/// Where a packet on the segment is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// To the member that holds this address (the next hop).
    Unicast(Ipv4Addr),
    /// To every other member (255.255.255.255 or the subnet broadcast).
    Broadcast,
}

/// Why a segment could not deliver a packet to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentDrop {
    /// No member holds the next-hop address (the layer-3 analogue of an ARP failure).
    NoNeighbour,
    /// Lost by link emulation.
    Lost,
    /// Tail-dropped at a full queue.
    QueueFull,
    /// The pair is cut by a partition (fault injection).
    Partitioned,
}

impl SegmentDrop {
    /// Stable name used in events and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            SegmentDrop::NoNeighbour => "no_neighbour",
            SegmentDrop::Lost => "link_loss",
            SegmentDrop::QueueFull => "queue_full",
            SegmentDrop::Partitioned => "partitioned",
        }
    }
}

/// A layer-3 segment.
#[derive(Debug)]
pub struct Segment {
    /// Name from the topology (also the capture interface name).
    pub name: String,
    /// The segment's subnet.
    pub subnet: Ipv4Cidr,
    index: u64,
    seed: u64,
    default_params: LinkParams,
    /// Per-pair overrides, keyed by (lower member, higher member); symmetric.
    paths: FastMap<(MemberId, MemberId), LinkParams>,
    members: Vec<Member>,
    /// Address (as a number) -> member.
    by_addr: FastMap<u32, MemberId>,
    /// Directed channels, created on first use, with their (from, to) pair: the index is the
    /// channel's id ([`Transmission::channel`]).
    channels: Vec<((MemberId, MemberId), Channel)>,
    /// (from, to) -> index in `channels`.
    channel_ids: FastMap<(MemberId, MemberId), usize>,
    /// Pairs (lower, higher) cut by a partition.
    cut: FastSet<(MemberId, MemberId)>,
    /// Per sending member: the last unicast next hop it used and the channel to the member
    /// holding it, valid while `addr_version` is unchanged. A flow's packets
    /// skip the two hash lookups (address, channel) this way.
    last_hop: Vec<Option<LastHop>>,
    /// Bumped whenever an address moves (`set_addr`, `add_alias`) or a member detaches.
    addr_version: u64,
}

/// A sender's cached unicast resolution ([`Segment::last_hop`]).
#[derive(Debug, Clone, Copy)]
struct LastHop {
    addr: Ipv4Addr,
    /// The channel to the member holding `addr` (which names that member).
    channel: usize,
    version: u64,
}

impl Segment {
    /// A segment with default link parameters for every pair of members. `index` and `seed`
    /// make the channel RNGs distinct and reproducible.
    pub fn new(name: &str, subnet: Ipv4Cidr, index: usize, seed: u64, params: LinkParams) -> Self {
        Segment {
            name: name.to_owned(),
            subnet,
            index: index as u64,
            seed,
            default_params: params,
            paths: FastMap::default(),
            members: Vec::new(),
            by_addr: FastMap::default(),
            channels: Vec::new(),
            channel_ids: FastMap::default(),
            cut: FastSet::default(),
            last_hop: Vec::new(),
            addr_version: 0,
        }
    }

    /// Cuts (or restores) the path between two members, both directions.
    pub fn set_cut(&mut self, a: MemberId, b: MemberId, cut: bool) {
        let key = (a.min(b), a.max(b));
        if cut {
            self.cut.insert(key);
        } else {
            self.cut.remove(&key);
        }
    }

    /// Restores every cut path.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    fn is_cut(&self, a: MemberId, b: MemberId) -> bool {
        !self.cut.is_empty() && self.cut.contains(&(a.min(b), a.max(b)))
    }

    /// Attaches a node's port; returns the member id.
    pub fn add_member(&mut self, node: usize, port: usize, addr: Option<Ipv4Addr>) -> MemberId {
        let id = self.members.len();
        self.members.push(Member {
            node,
            port,
            addr: None,
            attached: true,
        });
        self.set_addr(id, addr);
        id
    }

    /// Detaches a member (the node moved away): it gets no more packets.
    pub fn detach(&mut self, member: MemberId) {
        self.set_addr(member, None); // bumps `addr_version`: remembered hops to it are dropped
        if let Some(m) = self.members.get_mut(member) {
            m.attached = false;
        }
    }

    /// The members, by id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Sets the link parameters between two members, both directions.
    pub fn set_path(&mut self, a: MemberId, b: MemberId, params: LinkParams) {
        self.paths.insert((a.min(b), a.max(b)), params.clone());
        for key in [(a, b), (b, a)] {
            if let Some(&id) = self.channel_ids.get(&key) {
                self.channels[id].1.set_params(params.clone());
            }
        }
    }

    /// Replaces the default parameters (and those of existing channels without an override).
    pub fn set_default_params(&mut self, params: LinkParams) {
        for ((a, b), ch) in self.channels.iter_mut() {
            let (a, b) = (*a, *b);
            if !self.paths.contains_key(&(a.min(b), a.max(b))) {
                ch.set_params(params.clone());
            }
        }
        self.default_params = params;
    }

    /// Sets the loss rate of every pair on this segment (fault injection: `loss lan-a 20%`);
    /// delays, jitter and rates stay as they are.
    pub fn set_loss(&mut self, loss: f64) {
        self.default_params.loss = loss;
        for p in self.paths.values_mut() {
            p.loss = loss;
        }
        for (_, ch) in self.channels.iter_mut() {
            let mut p = ch.params().clone();
            p.loss = loss;
            ch.set_params(p);
        }
    }

    /// The parameters used from `a` to `b`.
    pub fn params(&self, a: MemberId, b: MemberId) -> &LinkParams {
        self.paths
            .get(&(a.min(b), a.max(b)))
            .unwrap_or(&self.default_params)
    }

    /// Changes a member's address (DHCP lease gained or lost).
    pub fn set_addr(&mut self, member: MemberId, addr: Option<Ipv4Addr>) {
        let Some(m) = self.members.get_mut(member) else {
            return;
        };
        self.addr_version += 1;
        if let Some(old) = m.addr.take()
            && self.by_addr.get(&u32::from(old)) == Some(&member)
        {
            self.by_addr.remove(&u32::from(old));
        }
        m.addr = addr;
        if let Some(a) = addr {
            self.by_addr.insert(u32::from(a), member);
        }
    }

    /// Makes `addr` resolve to `member` as well as its own address (a member holding many
    /// addresses: the flood source, whose spoofed addresses receive what is answered to
    /// them). An alias stays until the address is given to another member.
    pub fn add_alias(&mut self, member: MemberId, addr: Ipv4Addr) {
        if member < self.members.len() {
            self.addr_version += 1;
            self.by_addr.insert(u32::from(addr), member);
        }
    }

    /// The member holding `addr`, if any.
    pub fn resolve(&self, addr: Ipv4Addr) -> Option<MemberId> {
        self.by_addr.get(&u32::from(addr)).copied()
    }

    /// Whether `addr` is a broadcast address on this segment.
    pub fn is_broadcast(&self, addr: Ipv4Addr) -> bool {
        addr == Ipv4Addr::BROADCAST || self.subnet.broadcast() == Some(addr)
    }

    /// The member that channel `channel` ([`Transmission::channel`]) delivers to.
    #[inline]
    pub fn channel_receiver(&self, channel: usize) -> MemberId {
        self.channels[channel].0.1
    }

    /// Sends a packet of `len` bytes from `from` at `now`; appends one [`Transmission`] per
    /// receiver to `out` (several for a broadcast).
    pub fn transmit(
        &mut self,
        now: Time,
        from: MemberId,
        dest: Dest,
        len: usize,
        out: &mut Vec<Transmission>,
    ) {
        match dest {
            Dest::Unicast(addr) => out.push(self.unicast(now, from, addr, len)),
            Dest::Broadcast => {
                for to in 0..self.members.len() {
                    if to == from || !self.members[to].attached {
                        continue;
                    }
                    if self.is_cut(from, to) {
                        out.push(Transmission::dropped(to, SegmentDrop::Partitioned));
                    } else {
                        out.push(self.send(now, from, to, len));
                    }
                }
            }
        }
    }

    /// Sends a packet of `len` bytes from `from` to the member holding `addr` at `now`
    /// ([`Segment::transmit`] for one receiver).
    #[inline]
    pub fn unicast(
        &mut self,
        now: Time,
        from: MemberId,
        addr: Ipv4Addr,
        len: usize,
    ) -> Transmission {
        if let Some(Some(hop)) = self.last_hop.get(from)
            && hop.addr == addr
            && hop.version == self.addr_version
            && self.cut.is_empty()
        {
            let channel = hop.channel;
            return self.fate(now, self.channel_receiver(channel), channel, len);
        }
        self.unicast_resolve(now, from, addr, len)
    }

    /// A unicast without a remembered resolution: resolved, sent, and remembered for `from`.
    fn unicast_resolve(
        &mut self,
        now: Time,
        from: MemberId,
        addr: Ipv4Addr,
        len: usize,
    ) -> Transmission {
        match self.resolve(addr).filter(|&to| self.members[to].attached) {
            Some(to) if to != from && self.is_cut(from, to) => {
                Transmission::dropped(to, SegmentDrop::Partitioned)
            }
            Some(to) if to != from => {
                let t = self.send(now, from, to, len);
                if self.last_hop.len() <= from {
                    self.last_hop.resize(from + 1, None);
                }
                self.last_hop[from] = Some(LastHop {
                    addr,
                    channel: t.channel,
                    version: self.addr_version,
                });
                t
            }
            _ => Transmission::dropped(from, SegmentDrop::NoNeighbour),
        }
    }

    /// A packet into the channel from `from` to `to` (created on first use).
    fn send(&mut self, now: Time, from: MemberId, to: MemberId, len: usize) -> Transmission {
        let Segment {
            channels,
            channel_ids,
            paths,
            default_params,
            index,
            seed,
            ..
        } = self;
        let channel = *channel_ids.entry((from, to)).or_insert_with(|| {
            let params = paths
                .get(&(from.min(to), from.max(to)))
                .unwrap_or(default_params)
                .clone();
            let id = (*index << 42) | ((from as u64) << 21) | to as u64;
            channels.push(((from, to), Channel::new(params, *seed, id)));
            channels.len() - 1
        });
        self.fate(now, to, channel, len)
    }

    /// A packet into channel `channel` (to `to`).
    #[inline]
    fn fate(&mut self, now: Time, to: MemberId, channel: usize, len: usize) -> Transmission {
        let fate = match self.channels[channel].1.send(now, len) {
            Fate::Deliver(t) => Ok(t),
            Fate::Lost => Err(SegmentDrop::Lost),
            Fate::QueueFull => Err(SegmentDrop::QueueFull),
        };
        Transmission { to, fate, channel }
    }
}

/// What became of a transmitted packet for one receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmission {
    /// The receiving member (the sender itself for `NoNeighbour`).
    pub to: MemberId,
    /// Delivered at this time, or why not.
    pub fate: Result<Time, SegmentDrop>,
    /// The channel that carried it: an index, per segment, in order of first use
    /// (`usize::MAX` when no channel was involved). A channel hands out delivery times in
    /// sending order unless its link reorders.
    pub channel: usize,
}

impl Transmission {
    /// Not delivered to `to`, for `reason` (no channel was involved).
    fn dropped(to: MemberId, reason: SegmentDrop) -> Transmission {
        Transmission {
            to,
            fate: Err(reason),
            channel: usize::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fates(out: &[Transmission]) -> Vec<(MemberId, Result<Time, SegmentDrop>)> {
        out.iter().map(|t| (t.to, t.fate)).collect()
    }

    fn seg() -> Segment {
        let subnet = Ipv4Cidr::new(Ipv4Addr::new(10, 1, 0, 0), 24);
        let params = LinkParams {
            delay: Duration::from_millis(1),
            ..Default::default()
        };
        Segment::new("lan", subnet, 0, 42, params)
    }

    #[test]
    fn unicast_goes_to_the_address_holder_with_path_delay() {
        let mut s = seg();
        let a = s.add_member(0, 0, Some(Ipv4Addr::new(10, 1, 0, 1)));
        let b = s.add_member(1, 0, Some(Ipv4Addr::new(10, 1, 0, 2)));
        s.set_path(
            a,
            b,
            LinkParams {
                delay: Duration::from_millis(40),
                ..Default::default()
            },
        );
        let mut out = Vec::new();
        s.transmit(
            Duration::ZERO,
            a,
            Dest::Unicast(Ipv4Addr::new(10, 1, 0, 2)),
            60,
            &mut out,
        );
        assert_eq!(fates(&out), vec![(b, Ok(Duration::from_millis(40)))]);
        out.clear();
        s.transmit(
            Duration::ZERO,
            b,
            Dest::Unicast(Ipv4Addr::new(10, 1, 0, 9)),
            60,
            &mut out,
        );
        assert_eq!(fates(&out), vec![(b, Err(SegmentDrop::NoNeighbour))]);
    }

    #[test]
    fn an_alias_resolves_to_its_member() {
        let mut s = seg();
        let a = s.add_member(0, 0, Some(Ipv4Addr::new(10, 1, 0, 1)));
        let sink = s.add_member(9, 0, None);
        s.add_alias(sink, Ipv4Addr::new(10, 1, 0, 50));
        s.add_alias(sink, Ipv4Addr::new(10, 1, 0, 51));
        let mut out = Vec::new();
        for last in [50, 51] {
            s.transmit(
                Duration::ZERO,
                a,
                Dest::Unicast(Ipv4Addr::new(10, 1, 0, last)),
                60,
                &mut out,
            );
        }
        assert_eq!(
            fates(&out),
            vec![
                (sink, Ok(Duration::from_millis(1))),
                (sink, Ok(Duration::from_millis(1)))
            ]
        );
        assert_eq!(s.resolve(Ipv4Addr::new(10, 1, 0, 1)), Some(a));
    }

    #[test]
    fn broadcast_reaches_everyone_else_including_addressless() {
        let mut s = seg();
        let a = s.add_member(0, 0, None);
        let b = s.add_member(1, 0, Some(Ipv4Addr::new(10, 1, 0, 1)));
        let c = s.add_member(2, 0, None);
        let mut out = Vec::new();
        s.transmit(Duration::ZERO, a, Dest::Broadcast, 300, &mut out);
        let to: Vec<_> = out.iter().map(|t| t.to).collect();
        assert_eq!(to, vec![b, c]);
        assert!(s.is_broadcast(Ipv4Addr::new(10, 1, 0, 255)));
        assert!(s.is_broadcast(Ipv4Addr::BROADCAST));
    }

    #[test]
    fn a_cut_pair_is_partitioned_until_healed() {
        let mut s = seg();
        let a = s.add_member(0, 0, Some(Ipv4Addr::new(10, 1, 0, 1)));
        let b = s.add_member(1, 0, Some(Ipv4Addr::new(10, 1, 0, 2)));
        let c = s.add_member(2, 0, Some(Ipv4Addr::new(10, 1, 0, 3)));
        s.set_cut(b, a, true);
        let mut out = Vec::new();
        s.transmit(Duration::ZERO, a, Dest::Broadcast, 60, &mut out);
        assert_eq!(fates(&out)[0], (b, Err(SegmentDrop::Partitioned)));
        assert!(out[1].fate.is_ok(), "c is not cut");
        s.heal();
        out.clear();
        s.transmit(
            Duration::ZERO,
            a,
            Dest::Unicast(Ipv4Addr::new(10, 1, 0, 2)),
            60,
            &mut out,
        );
        assert!(out[0].fate.is_ok());
        let _ = c;
    }

    #[test]
    fn a_remembered_next_hop_follows_address_moves_detaches_and_cuts() {
        let mut s = seg();
        let a = s.add_member(0, 0, Some(Ipv4Addr::new(10, 1, 0, 1)));
        let b = s.add_member(1, 0, Some(Ipv4Addr::new(10, 1, 0, 2)));
        let c = s.add_member(2, 0, None);
        let to_2 = Dest::Unicast(Ipv4Addr::new(10, 1, 0, 2));
        let mut out = Vec::new();
        let mut send = |s: &mut Segment| {
            out.clear();
            s.transmit(Duration::ZERO, a, to_2, 60, &mut out);
            fates(&out)[0]
        };
        assert_eq!(send(&mut s).0, b);
        assert_eq!(send(&mut s).0, b, "remembered");
        // The address moves to c (b lost its lease, c got it).
        s.set_addr(b, None);
        s.set_addr(c, Some(Ipv4Addr::new(10, 1, 0, 2)));
        assert_eq!(send(&mut s).0, c);
        s.set_cut(a, c, true);
        assert_eq!(send(&mut s), (c, Err(SegmentDrop::Partitioned)));
        s.heal();
        assert_eq!(send(&mut s).0, c);
        s.detach(c);
        assert_eq!(send(&mut s), (a, Err(SegmentDrop::NoNeighbour)));
    }

    #[test]
    fn address_changes_move_the_neighbour() {
        let mut s = seg();
        let a = s.add_member(0, 0, None);
        assert_eq!(s.resolve(Ipv4Addr::new(10, 1, 0, 5)), None);
        s.set_addr(a, Some(Ipv4Addr::new(10, 1, 0, 5)));
        assert_eq!(s.resolve(Ipv4Addr::new(10, 1, 0, 5)), Some(a));
        s.set_addr(a, None);
        assert_eq!(s.resolve(Ipv4Addr::new(10, 1, 0, 5)), None);
    }
}
