//! From the file's text to a checked [`Topology`]: every check collects a [`Diagnostic`] with
//! the line it concerns, so `binfm check` can list all problems at once.

use super::spec::{
    EchoClientSpec, HostSpec, LinkSpec, LossSpec, PortSpec, SegmentSpec, TopologySpec,
};
use super::*;
use binfm_stack::wire::ports;
use toml::Spanned;

struct Ctx<'a> {
    text: &'a str,
    diags: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn err<T>(&mut self, span: &Spanned<T>, message: impl Into<String>) {
        let line = self.line_of(span.span().start);
        self.diags.push(Diagnostic {
            line: Some(line),
            message: message.into(),
        });
    }

    fn err_plain(&mut self, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            line: None,
            message: message.into(),
        });
    }

    fn duration(&mut self, s: &Spanned<String>, what: &str) -> Option<Duration> {
        match parse_duration(s.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(s, format!("{what}: {e}"));
                None
            }
        }
    }

    fn addr(&mut self, s: &Spanned<String>, what: &str) -> Option<Ipv4Addr> {
        match s.get_ref().trim().parse::<Ipv4Addr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    s,
                    format!("{what}: `{}` is not an IPv4 address", s.get_ref()),
                );
                None
            }
        }
    }

    fn link_params(&mut self, l: &LinkSpec<'_>, base: &LinkParams) -> LinkParams {
        let mut p = base.clone();
        if let Some(d) = l.delay {
            p.delay = self.duration(d, "delay").unwrap_or(p.delay);
        }
        if let Some(j) = l.jitter {
            p.jitter = self.duration(j, "jitter").unwrap_or(p.jitter);
        }
        if let Some(loss) = l.loss {
            let v = match loss.get_ref() {
                LossSpec::Fraction(f) => Ok(*f),
                LossSpec::Text(t) => t
                    .trim()
                    .strip_suffix('%')
                    .and_then(|n| n.trim().parse::<f64>().ok())
                    .map(|pct| pct / 100.0)
                    .ok_or(()),
            };
            match v {
                Ok(f) if (0.0..=1.0).contains(&f) => p.loss = f,
                _ => self.err(
                    loss,
                    "loss must be a fraction between 0 and 1 (0.01) or a percentage (\"1%\")",
                ),
            }
        }
        if let Some(r) = l.rate {
            match parse_rate(r.get_ref()) {
                Ok(bps) => p.rate_bps = Some(bps),
                Err(e) => self.err(r, e),
            }
        }
        if let Some(q) = l.queue {
            p.queue = q;
        }
        if let Some(r) = l.reorder {
            p.reorder = r;
        }
        p
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn in_allowed_ranges(c: &Ipv4Cidr) -> bool {
    allowed_ranges().iter().any(|r| r.contains_subnet(c))
}

/// Parses and checks; all diagnostics are collected before giving up.
pub(super) fn build(text: &str, path: &Path) -> Result<Topology, TopologyError> {
    let file = path.display().to_string();
    let spec: TopologySpec = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| {
            text.as_bytes()[..s.start.min(text.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1
        });
        let mut message = e.message().trim().to_owned();
        if message.starts_with("unknown field") {
            message.push_str("; see docs/topology.md for the keys each table takes");
        }
        TopologyError {
            file: file.clone(),
            diagnostics: vec![Diagnostic { line, message }],
        }
    })?;
    let mut cx = Ctx {
        text,
        diags: Vec::new(),
    };

    if !valid_name(spec.name.get_ref()) {
        cx.err(&spec.name, format!("topology name `{}` must be 1-15 letters, digits, `-` or `_` (it names the live network namespace)", spec.name.get_ref()));
    }
    let duration = match &spec.duration {
        Some(d) => cx.duration(d, "duration").unwrap_or(DEFAULT_DURATION),
        None => DEFAULT_DURATION,
    };
    let model = match &spec.model {
        Some(m) => match m.get_ref().parse::<Model>() {
            Ok(m) => m,
            Err(e) => {
                cx.err(m, e);
                Model::Binfm
            }
        },
        None => Model::Binfm,
    };

    // Segments and links.
    let mut segments: Vec<SegmentDef> = Vec::new();
    let mut seg_specs: Vec<&SegmentSpec> = Vec::new();
    let mut seg_index: HashMap<String, usize> = HashMap::new();
    for (is_link, s) in spec
        .segment
        .iter()
        .map(|s| (false, s))
        .chain(spec.link.iter().map(|s| (true, s)))
    {
        let name = s.name.get_ref().clone();
        if !valid_name(&name) {
            cx.err(&s.name, format!("segment name `{name}` must be 1-15 letters, digits, `-` or `_` (it names the capture interface and the live TUN device)"));
        }
        if seg_index.contains_key(&name) {
            cx.err(
                &s.name,
                format!("segment `{name}` is defined twice; segment and link names must be unique"),
            );
            continue;
        }
        let subnet = match parse_cidr(s.subnet.get_ref()) {
            Ok(c) => c,
            Err(e) => {
                cx.err(&s.subnet, format!("segment `{name}`: {e}"));
                continue;
            }
        };
        if !in_allowed_ranges(&subnet) {
            cx.err(&s.subnet, format!("segment `{name}`: subnet {subnet} is outside the allowed ranges; use 10.0.0.0/8 for private segments and 192.0.2.0/24, 198.51.100.0/24 or 203.0.113.0/24 for public ones (DESIGN.md: no testbed address may be routable)"));
        }
        for (other, o) in segments.iter().zip(&seg_specs) {
            if other.subnet.contains_subnet(&subnet) || subnet.contains_subnet(&other.subnet) {
                let line = cx.line_of(o.subnet.span().start);
                cx.err(&s.subnet, format!("segment `{name}`: subnet {subnet} overlaps {} of segment `{}` (line {line}); give each segment its own subnet", other.subnet, other.name));
            }
        }
        let params = cx.link_params(&s.link(), &LinkParams::default());
        let kernel_address = s
            .kernel_address
            .as_ref()
            .and_then(|k| cx.addr(k, &format!("segment `{name}`: kernel_address")));
        seg_index.insert(name.clone(), segments.len());
        segments.push(SegmentDef {
            name,
            subnet,
            params,
            paths: Vec::new(),
            dhcp: None,
            is_link,
            kernel_address,
        });
        seg_specs.push(s);
    }

    // Nodes.
    let mut nodes: Vec<NodeDef> = Vec::new();
    let mut node_lines: Vec<usize> = Vec::new();
    let mut node_index: HashMap<String, usize> = HashMap::new();
    let mut addr_owner: HashMap<Ipv4Addr, (String, usize)> = HashMap::new();
    let mut add_node = |cx: &mut Ctx<'_>,
                        name: &Spanned<String>,
                        node: NodeDef,
                        nodes: &mut Vec<NodeDef>| {
        let n = name.get_ref();
        if !valid_name(n) {
            cx.err(
                name,
                format!("node name `{n}` must be 1-15 letters, digits, `-` or `_`"),
            );
        }
        if node_index.contains_key(n) {
            cx.err(
                name,
                format!("node `{n}` is defined twice; host, router and NAT names must be unique"),
            );
            return;
        }
        node_index.insert(n.clone(), nodes.len());
        node_lines.push(cx.line_of(name.span().start));
        nodes.push(node);
    };
    let port = |cx: &mut Ctx<'_>,
                owner: &str,
                p: &PortSpec,
                addr_owner: &mut HashMap<Ipv4Addr, (String, usize)>|
     -> Option<PortDef> {
        let Some(&segment) = seg_index.get(p.segment.get_ref()) else {
            cx.err(&p.segment, format!("`{owner}` attaches to segment `{}`, which is not defined; define it with [[segment]] or [[link]]", p.segment.get_ref()));
            return None;
        };
        let addr = cx.addr(
            &p.address,
            &format!("`{owner}` on `{}`", p.segment.get_ref()),
        )?;
        check_host_addr(cx, &p.address, owner, addr, &segments[segment], addr_owner);
        Some(PortDef {
            segment,
            addr: Some(addr),
        })
    };
    for n in &spec.nat {
        let name = n.name.get_ref().clone();
        let inside = port(&mut cx, &name, &n.inside, &mut addr_owner);
        let outside = port(&mut cx, &name, &n.outside, &mut addr_owner);
        let filtering = match n.filtering.as_ref().map(|f| f.get_ref().as_str()) {
            None | Some("endpoint-independent") => Filtering::EndpointIndependent,
            Some("address-dependent") => Filtering::AddressDependent,
            Some("address-and-port-dependent") => Filtering::AddressAndPortDependent,
            Some(other) => {
                if let Some(f) = &n.filtering {
                    cx.err(f, format!("NAT `{name}`: filtering `{other}` is unknown; use \"endpoint-independent\" (default), \"address-dependent\" or \"address-and-port-dependent\""));
                }
                Filtering::EndpointIndependent
            }
        };
        let mapping_timeout = match &n.mapping_timeout {
            Some(t) => cx
                .duration(t, "mapping_timeout")
                .unwrap_or(DEFAULT_MAPPING_TIMEOUT),
            None => DEFAULT_MAPPING_TIMEOUT,
        };
        if let (Some(i), Some(o)) = (inside, outside) {
            if i.segment == o.segment {
                cx.err(&n.outside.segment, format!("NAT `{name}`: inside and outside are the same segment; a NAT joins two segments"));
            }
            let node = NodeDef {
                name,
                kind: NodeKind::Nat(NatDef {
                    filtering,
                    mapping_timeout,
                }),
                ports: vec![i, o],
                gateway: None,
                echo_server: None,
                echo_client: None,
                super_node: None,
                end_node: None,
                domain_server: false,
            };
            add_node(&mut cx, &n.name, node, &mut nodes);
        }
    }
    for r in &spec.router {
        let name = r.name.get_ref().clone();
        let ports: Vec<PortDef> = r
            .ports
            .iter()
            .filter_map(|p| port(&mut cx, &name, p, &mut addr_owner))
            .collect();
        if r.ports.len() < 2 {
            cx.err(&r.name, format!("router `{name}` needs at least two ports"));
        }
        let node = NodeDef {
            name,
            kind: NodeKind::Router,
            ports,
            gateway: None,
            echo_server: None,
            echo_client: None,
            super_node: None,
            end_node: None,
            domain_server: false,
        };
        add_node(&mut cx, &r.name, node, &mut nodes);
    }
    let mut host_specs: Vec<(usize, &HostSpec)> = Vec::new();
    for h in &spec.host {
        let name = h.name.get_ref().clone();
        let Some(&segment) = seg_index.get(h.segment.get_ref()) else {
            cx.err(
                &h.segment,
                format!(
                    "host `{name}` is on segment `{}`, which is not defined",
                    h.segment.get_ref()
                ),
            );
            continue;
        };
        let addr = match &h.address {
            None => None,
            Some(a) if a.get_ref() == "dhcp" => None,
            Some(a) => cx
                .addr(a, &format!("host `{name}` address"))
                .inspect(|&ip| {
                    check_host_addr(&mut cx, a, &name, ip, &segments[segment], &mut addr_owner);
                }),
        };
        let static_addr = h.address.as_ref().is_some_and(|a| a.get_ref() != "dhcp");
        if !static_addr && seg_specs[segment].dhcp.is_none() {
            let span = h.address.as_ref().unwrap_or(&h.segment);
            cx.err(span, format!("host `{name}` is on segment `{}`, which has no DHCP server, and the host has no static address; add `address = \"a.b.c.d\"` to the host or a `dhcp = {{ server = ..., pool = ... }}` to the segment", segments[segment].name));
        }
        let gateway = h
            .gateway
            .as_ref()
            .and_then(|g| cx.addr(g, &format!("host `{name}` gateway")));
        if let (Some(g), Some(gw)) = (gateway, &h.gateway)
            && !segments[segment].subnet.contains_addr(&g)
        {
            cx.err(
                gw,
                format!(
                    "host `{name}`: gateway {g} is not on segment `{}` ({})",
                    segments[segment].name, segments[segment].subnet
                ),
            );
        }
        let echo_server = h
            .echo_server
            .as_ref()
            .map(|e| e.port.unwrap_or(ports::ECHO));
        let node = NodeDef {
            name,
            kind: NodeKind::Host,
            ports: vec![PortDef { segment, addr }],
            gateway,
            echo_server,
            echo_client: None,
            super_node: None,
            end_node: None,
            domain_server: false,
        };
        let idx = nodes.len();
        add_node(&mut cx, &h.name, node, &mut nodes);
        if nodes.len() > idx {
            host_specs.push((idx, h));
        }
    }

    // Kernel addresses (live mode): inside the subnet and unique, like a host's address.
    for (si, s) in seg_specs.iter().enumerate() {
        if let (Some(span), Some(ip)) = (&s.kernel_address, segments[si].kernel_address) {
            let owner = format!("{}.kernel_address", segments[si].name);
            check_host_addr(&mut cx, span, &owner, ip, &segments[si], &mut addr_owner);
        }
    }

    // Per-segment checks that need the nodes: DHCP, paths, link membership.
    for (si, s) in seg_specs.iter().enumerate() {
        let members: Vec<usize> = (0..nodes.len())
            .filter(|&n| nodes[n].ports.iter().any(|p| p.segment == si))
            .collect();
        if let Some(d) = &s.dhcp {
            segments[si].dhcp = dhcp_def(&mut cx, d, si, &segments, &nodes, &node_index);
        }
        if let (Some(d), Some(k), Some(span)) = (
            &segments[si].dhcp,
            segments[si].kernel_address,
            &s.kernel_address,
        ) && (u32::from(d.pool.0)..=u32::from(d.pool.1)).contains(&u32::from(k))
        {
            cx.err(span, format!("segment `{}`: kernel_address {k} is inside the DHCP pool {}-{}; pick an address outside the pool", segments[si].name, d.pool.0, d.pool.1));
        }
        for p in &s.path {
            let [a, b] = p.between.get_ref();
            let ends: Vec<Option<usize>> = [a, b]
                .iter()
                .map(|n| {
                    node_index
                        .get(n.as_str())
                        .copied()
                        .filter(|i| members.contains(i))
                })
                .collect();
            match (ends[0], ends[1]) {
                (Some(x), Some(y)) if x != y => {
                    let params = cx.link_params(&p.link(), &segments[si].params);
                    segments[si].paths.push((x, y, params));
                }
                (Some(_), Some(_)) => cx.err(&p.between, "a path joins two different members"),
                _ => cx.err(
                    &p.between,
                    format!(
                        "path between `{a}` and `{b}`: both must be attached to segment `{}`",
                        segments[si].name
                    ),
                ),
            }
        }
        if segments[si].is_link && members.len() != 2 {
            cx.err(&s.name, format!("link `{}` has {} members; a point-to-point link joins exactly two nodes (use [[segment]] for a LAN)", segments[si].name, members.len()));
        }
    }

    // Apps (need every static address known).
    let statics: HashMap<String, Ipv4Addr> = nodes
        .iter()
        .filter_map(|n| Some((n.name.clone(), n.ports.iter().find_map(|p| p.addr)?)))
        .collect();
    for &(idx, h) in &host_specs {
        if let Some(ec) = &h.echo_client {
            nodes[idx].echo_client = echo_client_def(&mut cx, ec, &statics);
        }
    }

    // Blockchain roles (need every node known).
    let chain = match &spec.chain {
        Some(c) => ChainDef {
            block_interval: c
                .block_interval
                .as_ref()
                .and_then(|d| cx.duration(d, "block_interval"))
                .unwrap_or(DEFAULT_BLOCK_INTERVAL),
            reply_unconfirmed: c.reply_unconfirmed.unwrap_or(false),
        },
        None => ChainDef {
            block_interval: DEFAULT_BLOCK_INTERVAL,
            reply_unconfirmed: false,
        },
    };
    if chain.block_interval.is_zero() {
        cx.err_plain("[chain] block_interval must be above zero");
    }
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
    for &(idx, h) in &host_specs {
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
            nodes[idx].super_node = Some(SuperNodeDef {
                hash_rate,
                data_dir,
                peers,
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
    // DHCP option 225 needs the SN addresses.
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

    // Vertical model: domain servers, and which one serves each DHCP segment.
    for &(idx, h) in &host_specs {
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
        for &(idx, h) in &host_specs {
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

    // Scenario steps (need every node and segment known).
    let mut scenario = Vec::new();
    for step in &spec.scenario {
        let Some(at) = cx.duration(&step.at, "scenario step `at`") else {
            continue;
        };
        let line = cx.line_of(step.action.span().start);
        let parsed = parse_action(step.action.get_ref(), &node_index, &seg_index, &nodes);
        // A flood needs free public addresses on its target's segment for its sources.
        let parsed = parsed.and_then(|a| match &a {
            Action::Flood(f) => super::flood_step::sources(&segments, &nodes, f.target).map(|_| a),
            _ => Ok(a),
        });
        match parsed {
            Ok(action) => scenario.push(Step { at, action, line }),
            Err(e) => cx.err(
                &step.action,
                format!("scenario step `{}`: {e}", step.action.get_ref()),
            ),
        }
    }
    scenario.sort_by_key(|s| s.at);

    // Routes, and a reachability check for every app target.
    let routes = Topology::compute_routes(&segments, &nodes);
    for &(idx, h) in &host_specs {
        let (Some(ec), Some(def)) = (&h.echo_client, &nodes[idx].echo_client) else {
            continue;
        };
        let target = *def.target.ip();
        if route_for(&nodes[idx], &segments, &routes[idx], target).is_none() {
            let seg = &segments[nodes[idx].ports[0].segment].name;
            cx.err(&ec.get_ref().to, format!("no route from host `{}` (segment `{seg}`) to {target}: no chain of routers and NATs leads there (a private segment is reachable from outside only through its NAT's public address)", nodes[idx].name));
        }
    }

    if spec.segment.is_empty() && spec.link.is_empty() {
        cx.err_plain("the topology defines no segment; add at least one [[segment]]");
    }
    if !cx.diags.is_empty() {
        cx.diags.sort_by_key(|d| d.line.unwrap_or(usize::MAX));
        return Err(TopologyError {
            file,
            diagnostics: cx.diags,
        });
    }
    Ok(Topology {
        name: spec.name.into_inner(),
        description: spec.description,
        path: path.to_path_buf(),
        seed: spec.seed.unwrap_or(1),
        duration,
        segments,
        nodes,
        routes,
        chain,
        scenario,
        model,
    })
}

/// The route a node would use toward `dst` at start: direct, computed, or (for a DHCP host)
/// through the segment's DHCP router.
pub(crate) fn route_for(
    node: &NodeDef,
    segments: &[SegmentDef],
    table: &RouteTable,
    dst: Ipv4Addr,
) -> Option<()> {
    if node
        .ports
        .iter()
        .any(|p| segments[p.segment].subnet.contains_addr(&dst))
    {
        return Some(());
    }
    table.lookup(dst).map(|_| ())
}

/// Parses one scenario command, e.g. `call a b` or `partition {sn1} {sn2,sn3}`.
fn parse_action(
    text: &str,
    nodes_by_name: &HashMap<String, usize>,
    segs: &HashMap<String, usize>,
    nodes: &[NodeDef],
) -> Result<Action, String> {
    let node = |name: &str| {
        nodes_by_name
            .get(name)
            .copied()
            .ok_or_else(|| format!("`{name}` is not a node of this topology"))
    };
    let en = |name: &str| {
        let i = node(name)?;
        if nodes[i].end_node.is_some() {
            Ok(i)
        } else {
            Err(format!(
                "`{name}` is not an end node (add `end_node = {{}}` to it)"
            ))
        }
    };
    let seg = |name: &str| {
        segs.get(name)
            .copied()
            .ok_or_else(|| format!("`{name}` is not a segment of this topology"))
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["call", a, b] if a != b => Ok(Action::Call(en(a)?, en(b)?)),
        ["hangup", a, b] => Ok(Action::Hangup(en(a)?, en(b)?)),
        ["move", a, "to", s] => Ok(Action::Move(en(a)?, seg(s)?)),
        ["rekey", a] => Ok(Action::Rekey(en(a)?)),
        ["leave", a] => Ok(Action::Leave(en(a)?)),
        ["join", a, s] => Ok(Action::Join(en(a)?, seg(s)?)),
        ["crash", n] => Ok(Action::Crash(node(n)?)),
        ["restart", n] => Ok(Action::Restart(node(n)?)),
                ["heal"] => Ok(Action::Heal),
        ["loss", s, rate] => {
            let f = rate
                .strip_suffix('%')
                .and_then(|p| p.parse::<f64>().ok())
                .map(|p| p / 100.0)
                .or_else(|| rate.parse::<f64>().ok())
                .filter(|f| (0.0..=1.0).contains(f))
                .ok_or_else(|| format!("`{rate}` is not a loss rate; write e.g. 20% or 0.2"))?;
            Ok(Action::Loss(seg(s)?, f))
        }
        ["flood", rest @ ..] => super::flood_step::parse_step(rest, &node, nodes).map(Action::Flood),
        ["partition", ..] => {
            let rest = text.trim_start().trim_start_matches("partition");
            let mut groups = Vec::new();
            for g in rest.split('}') {
                let g = g.trim();
                if g.is_empty() {
                    continue;
                }
                let inner = g.strip_prefix('{').ok_or("write groups as {a,b} {c}")?;
                let members = inner.split(',').map(str::trim).filter(|m| !m.is_empty()).map(node).collect::<Result<Vec<_>, _>>()?;
                groups.push(members);
            }
            if groups.len() < 2 {
                return Err("a partition needs at least two groups, e.g. partition {sn1} {sn2,sn3}".into());
            }
            Ok(Action::Partition(groups))
        }
        _ => Err("unknown step; use one of: call A B, hangup A B, move A to SEGMENT, rekey A, leave A, join A SEGMENT, crash N, restart N, partition {..} {..}, heal, loss SEGMENT 20%, flood SN RATE/s for DURATION [KIND]".into()),
    }
}

fn parse_cidr(s: &str) -> Result<Ipv4Cidr, String> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` is not a subnet; write it as a.b.c.d/len"))?;
    let addr: Ipv4Addr = a
        .trim()
        .parse()
        .map_err(|_| format!("`{a}` is not an IPv4 address"))?;
    let len: u8 = l
        .trim()
        .parse()
        .ok()
        .filter(|&l| l <= 32)
        .ok_or_else(|| format!("`{l}` is not a prefix length (0-32)"))?;
    let cidr = Ipv4Cidr::new(addr, len);
    if cidr.network().address() != addr {
        return Err(format!(
            "`{s}` has host bits set; did you mean {}?",
            cidr.network()
        ));
    }
    if len > 30 {
        return Err(format!(
            "`{s}` is too small; a segment needs at least a /30"
        ));
    }
    Ok(cidr)
}

fn check_host_addr(
    cx: &mut Ctx<'_>,
    span: &Spanned<String>,
    owner: &str,
    ip: Ipv4Addr,
    seg: &SegmentDef,
    owners: &mut HashMap<Ipv4Addr, (String, usize)>,
) {
    if !seg.subnet.contains_addr(&ip) {
        cx.err(
            span,
            format!(
                "`{owner}`: address {ip} is not in segment `{}` ({})",
                seg.name, seg.subnet
            ),
        );
        return;
    }
    if ip == seg.subnet.network().address() || seg.subnet.broadcast() == Some(ip) {
        cx.err(
            span,
            format!(
                "`{owner}`: {ip} is the network or broadcast address of `{}`",
                seg.name
            ),
        );
        return;
    }
    let line = cx.line_of(span.span().start);
    if let Some((other, other_line)) = owners.get(&ip) {
        let msg =
            format!("`{owner}`: address {ip} is already used by `{other}` (line {other_line})");
        cx.err(span, msg);
    } else {
        owners.insert(ip, (owner.to_owned(), line));
    }
}

fn dhcp_def(
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
