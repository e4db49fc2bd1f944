//! The sections of a topology that give nodes their roles: echo clients, `[chain]`, super
//! and end nodes, the super nodes and domain servers DHCP announces.

use super::*;

impl<'a> Builder<'a> {
    /// Echo clients (need every static address known).
    pub(super) fn echo_clients(&mut self) {
        let Builder {
            cx,
            nodes,
            host_specs,
            ..
        } = self;
        let statics: HashMap<String, Ipv4Addr> = nodes
            .iter()
            .filter_map(|n| Some((n.name.clone(), n.ports.iter().find_map(|p| p.addr)?)))
            .collect();
        for &(idx, h) in host_specs.iter() {
            if let Some(ec) = &h.echo_client {
                nodes[idx].echo_client = echo_client_def(cx, ec, &statics);
            }
        }
    }

    /// `[chain]`: block interval and whether Replies carry unconfirmed Txs.
    pub(super) fn chain(&mut self) -> ChainDef {
        let spec: &'a TopologySpec = self.spec;
        let Builder { cx, .. } = self;
        let chain = match &spec.chain {
            Some(c) => ChainDef {
                block_interval: c
                    .block_interval
                    .as_ref()
                    .and_then(|d| cx.duration(d, "block_interval"))
                    .unwrap_or(DEFAULT_BLOCK_INTERVAL),
                reply_unconfirmed: c.reply_unconfirmed.unwrap_or(false),
                block_bytes: c
                    .block_bytes
                    .map_or(DEFAULT_BLOCK_BYTES, |b| usize::try_from(b).unwrap_or(0)),
                block_txs: c
                    .block_txs
                    .map_or(DEFAULT_BLOCK_TXS, |b| usize::try_from(b).unwrap_or(0)),
            },
            None => ChainDef {
                block_interval: DEFAULT_BLOCK_INTERVAL,
                reply_unconfirmed: false,
                block_bytes: DEFAULT_BLOCK_BYTES,
                block_txs: DEFAULT_BLOCK_TXS,
            },
        };
        if chain.block_interval.is_zero() {
            cx.err_plain("[chain] block_interval must be above zero");
        }
        let ceiling = binfm_roles::chain::BLOCK_BYTES_CEILING;
        let floor = binfm_roles::chain::HEADER_LEN + 4;
        if !(floor..=ceiling).contains(&chain.block_bytes) {
            cx.err_plain(format!(
                "[chain] block_bytes must be {floor}..={ceiling}, got {}",
                chain.block_bytes
            ));
        }
        let most = binfm_roles::chain::MAX_BLOCK_TXS;
        if !(1..=most).contains(&chain.block_txs) {
            cx.err_plain(format!(
                "[chain] block_txs must be 1..={most} (a Reply's Merkle proof has at most {} levels), got {}",
                binfm_stack::wire::binfm::MAX_PROOF_DEPTH,
                chain.block_txs
            ));
        }
        chain
    }

    /// Super nodes and end nodes (need every node known).
    pub(super) fn roles(&mut self) {
        let spec: &'a TopologySpec = self.spec;
        let model = self.model;
        let Builder {
            cx,
            segments,
            seg_specs,
            nodes,
            node_index,
            host_specs,
            ..
        } = self;
        let default_rate = spec
            .chain
            .as_ref()
            .and_then(|c| c.hash_rate)
            .unwrap_or(DEFAULT_HASH_RATE);
        let sn_nodes: Vec<usize> = host_specs
            .iter()
            .filter(|(_, h)| h.super_node.is_some())
            .map(|(i, _)| *i)
            .collect();
        for &(idx, h) in host_specs.iter() {
            if let Some(sn) = &h.super_node {
                let spec_sn = sn.get_ref();
                let hash_rate = spec_sn.hash_rate.unwrap_or(default_rate);
                if !(hash_rate.is_finite() && hash_rate > 0.0) {
                    cx.err(
                        sn,
                        format!(
                            "super node `{}`: hash_rate must be a positive number of hashes per second",
                            nodes[idx].name
                        ),
                    );
                }
                if nodes[idx].ports[0].addr.is_none() {
                    cx.err(sn, format!("super node `{}` needs a static address (ENs and peers must know where it is)", nodes[idx].name));
                }
                let peers = match &spec_sn.peers {
                    None => sn_nodes.iter().copied().filter(|&p| p != idx).collect(),
                    Some(list) => list
                        .get_ref()
                        .iter()
                        .filter_map(|name| match node_index.get(name) {
                            Some(&p) if sn_nodes.contains(&p) && p != idx => Some(p),
                            _ => {
                                cx.err(
                                    list,
                                    format!(
                                        "super node `{}`: peer `{name}` is not another super node",
                                        nodes[idx].name
                                    ),
                                );
                                None
                            }
                        })
                        .collect(),
                };
                let data_dir = spec_sn.data_dir.as_ref().map(PathBuf::from);
                let mut per_source = |key: &str, v: &Option<Spanned<u32>>| {
                    let v = v.as_ref()?;
                    if *v.get_ref() == 0 {
                        cx.err(
                            v,
                            format!(
                                "super node `{}`: {key} must be at least 1 per second",
                                nodes[idx].name
                            ),
                        );
                    }
                    Some(*v.get_ref())
                };
                let tx_per_source = per_source("tx_per_source", &spec_sn.tx_per_source);
                let queries_per_source =
                    per_source("queries_per_source", &spec_sn.queries_per_source);
                nodes[idx].super_node = Some(SuperNodeDef {
                    hash_rate,
                    data_dir,
                    peers,
                    tx_per_source,
                    queries_per_source,
                });
            }
            if let Some(en) = &h.end_node {
                let mut lookups = Vec::new();
                for l in &en.get_ref().lookup {
                    let at = cx.duration(&l.at, "lookup at");
                    match (node_index.get(l.peer.get_ref()), at) {
                        (Some(&p), Some(at))
                            if host_specs
                                .iter()
                                .any(|(i, hs)| *i == p && hs.end_node.is_some()) =>
                        {
                            lookups.push((p, at))
                        }
                        (_, Some(_)) => cx.err(
                            &l.peer,
                            format!("lookup peer `{}` is not an end node", l.peer.get_ref()),
                        ),
                        _ => {}
                    }
                }
                let seg = nodes[idx].ports[0].segment;
                let has_sn = seg_specs[seg]
                    .dhcp
                    .as_ref()
                    .and_then(|d| d.get_ref().super_nodes.as_ref())
                    .is_some_and(|l| !l.get_ref().is_empty());
                if !has_sn && model == Model::Binfm {
                    cx.err(en, format!("end node `{}` cannot learn a super node: add `super_nodes = [\"sn1\"]` to the dhcp table of segment `{}`", nodes[idx].name, segments[seg].name));
                }
                nodes[idx].end_node = Some(EndNodeDef { lookups });
            }
        }
    }

    /// DHCP option 225 needs the SN addresses.
    pub(super) fn dhcp_super_nodes(&mut self) {
        let Builder {
            cx,
            segments,
            seg_specs,
            nodes,
            node_index,
            ..
        } = self;
        for (si, s) in seg_specs.iter().enumerate() {
            let Some(list) = s
                .dhcp
                .as_ref()
                .and_then(|d| d.get_ref().super_nodes.as_ref())
            else {
                continue;
            };
            let mut addrs = Vec::new();
            for name in list.get_ref() {
                match node_index.get(name) {
                    Some(&n) if nodes[n].super_node.is_some() => {
                        if let Some(ip) = nodes[n].ports[0].addr {
                            addrs.push(SocketAddrV4::new(ip, ports::SN));
                        }
                    }
                    _ => cx.err(list, format!("super_nodes: `{name}` is not a super node")),
                }
            }
            if let Some(d) = segments[si].dhcp.as_mut() {
                d.super_nodes = addrs;
            }
        }
    }

    /// Vertical model: domain servers, and which one serves each DHCP segment.
    pub(super) fn domain_servers(&mut self) {
        let model = self.model;
        let Builder {
            cx,
            segments,
            seg_specs,
            nodes,
            node_index,
            host_specs,
            ..
        } = self;
        for &(idx, h) in host_specs.iter() {
            if let Some(ds) = &h.domain_server {
                if nodes[idx].ports[0].addr.is_none() {
                    cx.err(ds, format!("domain server `{}` needs a static address (ENs and peer servers must know where it is)", nodes[idx].name));
                }
                nodes[idx].domain_server = true;
            }
        }
        for (si, s) in seg_specs.iter().enumerate() {
            let Some(name) = s
                .dhcp
                .as_ref()
                .and_then(|d| d.get_ref().domain_server.as_ref())
            else {
                continue;
            };
            let ip = match node_index.get(name.get_ref()) {
                Some(&n) if nodes[n].domain_server => nodes[n].ports[0].addr,
                _ => {
                    cx.err(name, format!("domain_server: `{}` is not a domain server (add `domain_server = {{}}` to that host)", name.get_ref()));
                    None
                }
            };
            if let Some(d) = segments[si].dhcp.as_mut() {
                d.domain_server = ip;
            }
        }
        if model == Model::Vertical {
            for &(idx, h) in host_specs.iter() {
                if let Some(en) = &h.end_node {
                    let seg = nodes[idx].ports[0].segment;
                    if segments[seg]
                        .dhcp
                        .as_ref()
                        .and_then(|d| d.domain_server)
                        .is_none()
                    {
                        cx.err(en, format!("end node `{}` runs the vertical model but segment `{}` names no domain server: add `domain_server = \"...\"` to its dhcp table", nodes[idx].name, segments[seg].name));
                    }
                }
            }
        }
    }
}

fn echo_client_def(
    cx: &mut Ctx<'_>,
    ec: &Spanned<EchoClientSpec>,
    statics: &HashMap<String, Ipv4Addr>,
) -> Option<EchoClientDef> {
    let e = ec.get_ref();
    let to = e.to.get_ref();
    let (host, port) = match to.rsplit_once(':') {
        Some((h, p)) => match p.parse::<u16>() {
            Ok(p) => (h, p),
            Err(_) => {
                cx.err(&e.to, format!("`{to}`: `{p}` is not a port"));
                return None;
            }
        },
        None => (to.as_str(), ports::ECHO),
    };
    let ip = match host.parse::<Ipv4Addr>() {
        Ok(ip) => ip,
        Err(_) => match statics.get(host) {
            Some(ip) => *ip,
            None => {
                cx.err(&e.to, format!("echo target `{host}` is neither an IPv4 address nor a node with a static address"));
                return None;
            }
        },
    };
    let interval = e
        .interval
        .as_ref()
        .and_then(|i| cx.duration(i, "interval"))
        .unwrap_or(Duration::from_secs(1));
    if interval.is_zero() {
        if let Some(i) = &e.interval {
            cx.err(i, "interval must be above zero");
        }
        return None;
    }
    Some(EchoClientDef {
        target: SocketAddrV4::new(ip, port),
        port: e.port.unwrap_or(40000),
        interval,
        count: e.count.unwrap_or(0),
        size: e.size.unwrap_or(64).clamp(16, 1400),
    })
}
