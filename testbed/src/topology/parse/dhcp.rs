//! A segment's `dhcp` table: server, pool, lease, router and the options it announces.

use super::*;

/// The checked `dhcp` table of segment `si`; `None` once what is wrong is reported.
pub(super) fn dhcp_def(
    cx: &mut Ctx<'_>,
    d: &Spanned<spec::DhcpSpec>,
    si: usize,
    segments: &[SegmentDef],
    nodes: &[NodeDef],
    node_index: &HashMap<String, usize>,
) -> Option<DhcpDef> {
    let seg = &segments[si];
    let spec = d.get_ref();
    let Some(&server) = node_index.get(spec.server.get_ref()) else {
        cx.err(
            &spec.server,
            format!(
                "DHCP server `{}` of segment `{}` is not a defined node",
                spec.server.get_ref(),
                seg.name
            ),
        );
        return None;
    };
    let Some(server_ip) = nodes[server]
        .ports
        .iter()
        .find(|p| p.segment == si)
        .and_then(|p| p.addr)
    else {
        cx.err(
            &spec.server,
            format!(
                "DHCP server `{}` needs a static address on segment `{}`",
                spec.server.get_ref(),
                seg.name
            ),
        );
        return None;
    };
    let (first, last) = match spec.pool.get_ref().split_once('-') {
        Some((a, b)) => (
            a.trim().parse::<Ipv4Addr>().ok(),
            b.trim().parse::<Ipv4Addr>().ok(),
        ),
        None => (None, None),
    };
    let (Some(first), Some(last)) = (first, last) else {
        cx.err(
            &spec.pool,
            "pool must be written \"first-last\", e.g. \"10.1.0.100-10.1.0.199\"",
        );
        return None;
    };
    if u32::from(first) > u32::from(last)
        || !seg.subnet.contains_addr(&first)
        || !seg.subnet.contains_addr(&last)
        || seg.subnet.broadcast() == Some(last)
        || first == seg.subnet.network().address()
    {
        cx.err(&spec.pool, format!("pool {first}-{last} must be an ascending range of host addresses inside {} of segment `{}`", seg.subnet, seg.name));
        return None;
    }
    for n in nodes {
        for p in n.ports.iter().filter(|p| p.segment == si) {
            if let Some(a) = p.addr
                && (u32::from(first)..=u32::from(last)).contains(&u32::from(a))
            {
                cx.err(&spec.pool, format!("pool {first}-{last} contains {a}, the static address of `{}`; keep static addresses out of the pool", n.name));
            }
        }
    }
    let lease = spec
        .lease
        .as_ref()
        .and_then(|l| cx.duration(l, "lease"))
        .unwrap_or(DEFAULT_LEASE);
    let router = match &spec.router {
        Some(r) => cx.addr(r, "DHCP router")?,
        None => server_ip,
    };
    // The NAT option: the public address of the NAT that is this segment's router.
    let nat_public = nodes.iter().find_map(|n| match n.kind {
        NodeKind::Nat(_) if n.ports[0].segment == si && n.ports[0].addr == Some(router) => {
            n.ports[1].addr
        }
        _ => None,
    });
    Some(DhcpDef {
        server,
        server_ip,
        pool: (first, last),
        lease,
        router,
        nat_public,
        super_nodes: Vec::new(),
        domain_server: None,
    })
}
