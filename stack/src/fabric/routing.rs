//! Static routes computed from the topology graph.
//!
//! Every node gets a route to every segment it can reach, through the nearest forwarding node
//! (fewest hops; ties go to the node listed first, so tables are deterministic). A NAT forwards
//! from its inside to its outside but never routes from the outside into the inside: private
//! segments are reachable from the public side only through a NAT's public address, as on the
//! real Internet.

use smoltcp::wire::Ipv4Cidr;
use std::net::Ipv4Addr;

/// Which side of a NAT a port is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatSide {
    /// Not a NAT port.
    None,
    /// The private side.
    Inside,
    /// The public side.
    Outside,
}

/// A node's attachment as seen by route computation.
#[derive(Debug, Clone)]
pub struct RoutePort {
    /// Segment index.
    pub segment: usize,
    /// Static address, if any (a gateway needs one).
    pub addr: Option<Ipv4Addr>,
    /// NAT side of this port.
    pub nat: NatSide,
}

/// A node as seen by route computation.
#[derive(Debug, Clone)]
pub struct RouteGraphNode {
    /// Whether the node forwards packets between its ports (router, NAT).
    pub forwards: bool,
    /// The node's attachments.
    pub ports: Vec<RoutePort>,
}

/// One route: packets to `dest` leave through `port`, to `via` (or directly to the
/// destination address when `via` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix.
    pub dest: Ipv4Cidr,
    /// Outgoing port of the node.
    pub port: usize,
    /// Next hop; `None` for a directly attached segment.
    pub via: Option<Ipv4Addr>,
}

/// A node's routes, longest prefix first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// A table from routes in any order.
    pub fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by_key(|r| std::cmp::Reverse(r.dest.prefix_len()));
        RouteTable { routes }
    }

    /// Adds a route (kept in longest-prefix-first order).
    pub fn add(&mut self, route: Route) {
        self.routes.push(route);
        let routes = std::mem::take(&mut self.routes);
        *self = RouteTable::new(routes);
    }

    /// Removes every route through `port`.
    pub fn remove_port(&mut self, port: usize) {
        self.routes.retain(|r| r.port != port);
    }

    /// Longest-prefix match.
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<&Route> {
        self.routes.iter().find(|r| r.dest.contains_addr(&dst))
    }

    /// All routes, longest prefix first.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

/// Whether `node` carries traffic that enters on `in_port` and leaves on `out_port`.
fn forwards_between(node: &RouteGraphNode, in_port: usize, out_port: usize) -> bool {
    if !node.forwards || in_port == out_port {
        return false;
    }
    !(node.ports[in_port].nat == NatSide::Outside && node.ports[out_port].nat == NatSide::Inside)
}

/// Computes every node's route table. `segments[i]` is segment `i`'s subnet.
pub fn compute_routes(segments: &[Ipv4Cidr], nodes: &[RouteGraphNode]) -> Vec<RouteTable> {
    let mut tables: Vec<Vec<Route>> = vec![Vec::new(); nodes.len()];
    // members[s] = (node, port) attached to segment s.
    let mut members: Vec<Vec<(usize, usize)>> = vec![Vec::new(); segments.len()];
    for (n, node) in nodes.iter().enumerate() {
        for (p, port) in node.ports.iter().enumerate() {
            if let Some(m) = members.get_mut(port.segment) {
                m.push((n, p));
            }
        }
    }
    for (d, dest) in segments.iter().enumerate() {
        // out_port[n] = the port node n uses toward segment d, once known.
        let mut out_port: Vec<Option<usize>> = vec![None; nodes.len()];
        let mut frontier = Vec::new();
        for &(n, p) in &members[d] {
            if out_port[n].is_none() {
                out_port[n] = Some(p);
                tables[n].push(Route {
                    dest: *dest,
                    port: p,
                    via: None,
                });
                frontier.push(n);
            }
        }
        while !frontier.is_empty() {
            // Best gateway per segment among the nodes reached in the last layer.
            let mut gateway: Vec<Option<(usize, Ipv4Addr)>> = vec![None; segments.len()];
            for &m in &frontier {
                let Some(out) = out_port[m] else { continue };
                for (q, port) in nodes[m].ports.iter().enumerate() {
                    let Some(addr) = port.addr else { continue };
                    if forwards_between(&nodes[m], q, out) {
                        let slot = &mut gateway[port.segment];
                        if slot.is_none_or(|(g, _)| m < g) {
                            *slot = Some((m, addr));
                        }
                    }
                }
            }
            let mut next = Vec::new();
            for (s, gw) in gateway.iter().enumerate() {
                let Some((g, addr)) = *gw else { continue };
                for &(n, p) in &members[s] {
                    if out_port[n].is_none() && n != g {
                        out_port[n] = Some(p);
                        tables[n].push(Route {
                            dest: *dest,
                            port: p,
                            via: Some(addr),
                        });
                        next.push(n);
                    }
                }
            }
            next.sort_unstable();
            next.dedup();
            frontier = next;
        }
    }
    tables.into_iter().map(RouteTable::new).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(a: [u8; 4], len: u8) -> Ipv4Cidr {
        Ipv4Cidr::new(Ipv4Addr::from(a), len)
    }

    fn port(segment: usize, addr: Option<[u8; 4]>, nat: NatSide) -> RoutePort {
        RoutePort {
            segment,
            addr: addr.map(Ipv4Addr::from),
            nat,
        }
    }

    /// lan-a (0) -- nat-a -- public (1) -- nat-b -- lan-b (2); echo host on public.
    fn two_nats() -> (Vec<Ipv4Cidr>, Vec<RouteGraphNode>) {
        let segs = vec![
            cidr([10, 1, 0, 0], 24),
            cidr([198, 51, 100, 0], 24),
            cidr([10, 2, 0, 0], 24),
        ];
        let nodes = vec![
            RouteGraphNode {
                forwards: true,
                ports: vec![
                    port(0, Some([10, 1, 0, 1]), NatSide::Inside),
                    port(1, Some([198, 51, 100, 1]), NatSide::Outside),
                ],
            },
            RouteGraphNode {
                forwards: true,
                ports: vec![
                    port(2, Some([10, 2, 0, 1]), NatSide::Inside),
                    port(1, Some([198, 51, 100, 2]), NatSide::Outside),
                ],
            },
            RouteGraphNode {
                forwards: false,
                ports: vec![port(0, Some([10, 1, 0, 7]), NatSide::None)],
            },
            RouteGraphNode {
                forwards: false,
                ports: vec![port(1, Some([198, 51, 100, 10]), NatSide::None)],
            },
        ];
        (segs, nodes)
    }

    #[test]
    fn private_host_reaches_public_through_its_nat() {
        let (segs, nodes) = two_nats();
        let t = compute_routes(&segs, &nodes);
        let r = t[2].lookup(Ipv4Addr::new(198, 51, 100, 10)).unwrap();
        assert_eq!(r.via, Some(Ipv4Addr::new(10, 1, 0, 1)));
        // And even lan-b's subnet? No: nat-b does not route outside -> inside.
        assert!(t[2].lookup(Ipv4Addr::new(10, 2, 0, 5)).is_none());
    }

    #[test]
    fn public_host_has_no_route_into_private_segments() {
        let (segs, nodes) = two_nats();
        let t = compute_routes(&segs, &nodes);
        assert!(t[3].lookup(Ipv4Addr::new(10, 1, 0, 7)).is_none());
        assert!(t[3].lookup(Ipv4Addr::new(198, 51, 100, 1)).is_some());
        // The NAT itself reaches its inside directly.
        assert_eq!(t[0].lookup(Ipv4Addr::new(10, 1, 0, 7)).unwrap().via, None);
    }

    #[test]
    fn routers_chain_with_fewest_hops() {
        // s0 -- r1 -- s1 -- r2 -- s2 ; host on s0 reaches s2 via r1.
        let segs = vec![
            cidr([10, 0, 0, 0], 24),
            cidr([10, 0, 1, 0], 24),
            cidr([10, 0, 2, 0], 24),
        ];
        let nodes = vec![
            RouteGraphNode {
                forwards: true,
                ports: vec![
                    port(0, Some([10, 0, 0, 1]), NatSide::None),
                    port(1, Some([10, 0, 1, 1]), NatSide::None),
                ],
            },
            RouteGraphNode {
                forwards: true,
                ports: vec![
                    port(1, Some([10, 0, 1, 2]), NatSide::None),
                    port(2, Some([10, 0, 2, 1]), NatSide::None),
                ],
            },
            RouteGraphNode {
                forwards: false,
                ports: vec![port(0, Some([10, 0, 0, 9]), NatSide::None)],
            },
        ];
        let t = compute_routes(&segs, &nodes);
        assert_eq!(
            t[2].lookup(Ipv4Addr::new(10, 0, 2, 5)).unwrap().via,
            Some(Ipv4Addr::new(10, 0, 0, 1))
        );
        assert_eq!(
            t[0].lookup(Ipv4Addr::new(10, 0, 2, 5)).unwrap().via,
            Some(Ipv4Addr::new(10, 0, 1, 2))
        );
        assert_eq!(
            t[1].lookup(Ipv4Addr::new(10, 0, 0, 5)).unwrap().via,
            Some(Ipv4Addr::new(10, 0, 1, 1))
        );
    }
}
