//! From the file's text to a checked [`Topology`]: every check collects a [`Diagnostic`] with
//! the line it concerns, so `binfm check` can list all problems at once.

use super::compute::ComputeCosts;
use super::spec::{
    EchoClientSpec, HostSpec, LinkSpec, LossSpec, PortSpec, SegmentSpec, StepSpec, TopologySpec,
};
use super::*;
use binfm_stack::wire::ports;
use toml::Spanned;

mod crowd;
mod dhcp;
mod kernel;
mod roles;
mod scenario;

use dhcp::dhcp_def;

struct Ctx<'a> {
    text: &'a str,
    diags: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        line_of(self.text, offset)
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

/// The topology while its sections are checked in file order: what the earlier sections
/// resolved (segments, nodes, their names and addresses) for the later ones.
struct Builder<'a> {
    spec: &'a TopologySpec,
    cx: Ctx<'a>,
    model: Model,
    segments: Vec<SegmentDef>,
    /// The `[[segment]]`/`[[link]]` table of each segment, same order.
    seg_specs: Vec<&'a SegmentSpec>,
    seg_index: HashMap<String, usize>,
    nodes: Vec<NodeDef>,
    node_index: HashMap<String, usize>,
    /// Who holds each static address, and on which line, for the "used twice" message.
    addr_owner: HashMap<Ipv4Addr, (String, usize)>,
    /// `[[host]]` tables with the index of their node.
    host_specs: Vec<(usize, &'a HostSpec)>,
    /// `[[host]]` tables with a `kernel` key.
    kernel_hosts: Vec<KernelHostDef>,
}

/// Parses and checks; all diagnostics are collected before giving up.
pub(super) fn build(text: &str, path: &Path) -> Result<Topology, TopologyError> {
    let file = path.display().to_string();
    let spec: TopologySpec = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        let mut message = e.message().trim().to_owned();
        if message.starts_with("unknown field") {
            message.push_str("; see docs/topology.md for the keys each table takes");
        }
        TopologyError {
            file: file.clone(),
            diagnostics: vec![Diagnostic { line, message }],
        }
    })?;
    let spec = crowd::expand(spec, text).map_err(|diagnostics| TopologyError {
        file: file.clone(),
        diagnostics,
    })?;
    let mut topo = build_spec(&spec, text, path)?;
    if twin_wanted(&spec) {
        let twin = build_spec(&twin_spec(&spec), text, path).map_err(|mut e| {
            for d in &mut e.diagnostics {
                d.message = format!("in the all-virtual twin (`twin` keys): {}", d.message);
            }
            e
        })?;
        topo.twin = Some(Box::new(twin.without_kernel_hosts()));
    }
    Ok(topo)
}

/// Whether a kernel host or a step says what it is in the all-virtual twin.
fn twin_wanted(spec: &TopologySpec) -> bool {
    spec.host.iter().any(|h| {
        h.kernel
            .as_ref()
            .is_some_and(|k| k.get_ref().twin.is_some())
    }) || spec.scenario.iter().any(|s| s.twin.is_some())
}

/// The all-virtual twin of a topology with `twin` keys: each kernel host with
/// `twin = "end_node"` becomes a virtual end node on the same segment, each step with a `twin`
/// becomes that step, and the other `exec` steps are left out (kernel hosts without a twin
/// are left out later, with their steps).
fn twin_spec(spec: &TopologySpec) -> TopologySpec {
    let mut twin = spec.clone();
    for h in &mut twin.host {
        let Some(k) = &h.kernel else { continue };
        if let Some(t) = &k.get_ref().twin
            && t.get_ref() == "end_node"
        {
            h.end_node = Some(Spanned::new(k.span(), Default::default()));
            h.kernel = None;
        }
    }
    twin.scenario = spec
        .scenario
        .iter()
        .filter_map(|s| match &s.twin {
            Some(t) => Some(StepSpec {
                at: s.at.clone(),
                action: t.clone(),
                twin: None,
            }),
            None if s.action.get_ref().trim_start().starts_with("exec ") => None,
            None => Some(s.clone()),
        })
        .collect();
    twin
}

/// Checks a parsed topology file.
fn build_spec(spec: &TopologySpec, text: &str, path: &Path) -> Result<Topology, TopologyError> {
    let file = path.display().to_string();
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
    let mut b = Builder {
        spec,
        cx,
        model,
        segments: Vec::new(),
        seg_specs: Vec::new(),
        seg_index: HashMap::new(),
        nodes: Vec::new(),
        node_index: HashMap::new(),
        addr_owner: HashMap::new(),
        host_specs: Vec::new(),
        kernel_hosts: Vec::new(),
    };
    // Each section needs what the sections before it resolved; the order is the checks'.
    b.segments();
    b.nats();
    b.routers();
    b.hosts();
    b.kernel_addresses();
    b.segment_checks();
    b.kernel_hosts();
    b.echo_clients();
    let chain = b.chain();
    b.roles();
    b.dhcp_super_nodes();
    b.domain_servers();
    let scenario = b.scenario();
    let routes = b.routes();
    let compute = match &spec.compute {
        None => ComputeCosts::ZERO,
        Some(t) => {
            ComputeCosts::from_entries(t.get_ref().iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .unwrap_or_else(|e| {
                    b.cx.err(t, e);
                    ComputeCosts::ZERO
                })
        }
    };
    let Builder {
        mut cx,
        segments,
        nodes,
        kernel_hosts,
        ..
    } = b;

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
        name: spec.name.get_ref().clone(),
        description: spec.description.clone(),
        path: path.to_path_buf(),
        seed: spec.seed.unwrap_or(1),
        duration,
        segments,
        nodes,
        routes,
        chain,
        scenario,
        model,
        kernel_hosts,
        key_master: None,
        twin: None,
        compute,
    })
}

impl<'a> Builder<'a> {
    /// `[[segment]]` and `[[link]]`: names, subnets, link parameters, kernel addresses.
    fn segments(&mut self) {
        let spec: &'a TopologySpec = self.spec;
        let Builder {
            cx,
            segments,
            seg_specs,
            seg_index,
            ..
        } = self;
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
                    format!(
                        "segment `{name}` is defined twice; segment and link names must be unique"
                    ),
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
                cx.err(&s.subnet, format!("segment `{name}`: subnet {subnet} is outside the allowed ranges; use 10.0.0.0/8 for private segments and 192.0.2.0/24, 198.51.100.0/24 or 203.0.113.0/24 for public ones (see docs/design.md#address-plan: no testbed address may be routable)"));
            }
            for (other, o) in segments.iter().zip(seg_specs.iter()) {
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
                kernel_paths: Vec::new(),
            });
            seg_specs.push(s);
        }
    }

    /// `[[nat]]`: two ports, filtering and mapping timeout.
    fn nats(&mut self) {
        let spec: &'a TopologySpec = self.spec;
        let Builder {
            cx,
            segments,
            seg_index,
            nodes,
            node_index,
            addr_owner,
            ..
        } = self;
        for n in &spec.nat {
            let name = n.name.get_ref().clone();
            let inside = port(cx, seg_index, segments, &name, &n.inside, addr_owner);
            let outside = port(cx, seg_index, segments, &name, &n.outside, addr_owner);
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
                let kind = NodeKind::Nat(NatDef {
                    filtering,
                    mapping_timeout,
                });
                let node = NodeDef::new(name, kind, vec![i, o]);
                add_node(cx, node_index, nodes, &n.name, node);
            }
        }
    }

    /// `[[router]]`: two ports or more.
    fn routers(&mut self) {
        let spec: &'a TopologySpec = self.spec;
        let Builder {
            cx,
            segments,
            seg_index,
            nodes,
            node_index,
            addr_owner,
            ..
        } = self;
        for r in &spec.router {
            let name = r.name.get_ref().clone();
            let ports: Vec<PortDef> = r
                .ports
                .iter()
                .filter_map(|p| port(cx, seg_index, segments, &name, p, addr_owner))
                .collect();
            if r.ports.len() < 2 {
                cx.err(&r.name, format!("router `{name}` needs at least two ports"));
            }
            let node = NodeDef::new(name, NodeKind::Router, ports);
            add_node(cx, node_index, nodes, &r.name, node);
        }
    }

    /// `[[host]]`: segment, static or DHCP address, gateway, echo server.
    fn hosts(&mut self) {
        let spec: &'a TopologySpec = self.spec;
        let Builder {
            cx,
            segments,
            seg_specs,
            seg_index,
            nodes,
            node_index,
            addr_owner,
            host_specs,
            ..
        } = self;
        for h in &spec.host {
            if h.kernel.is_some() {
                continue; // a kernel host is not a node: see `kernel_hosts`
            }
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
                        check_host_addr(cx, a, &name, ip, &segments[segment], addr_owner);
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
            let mut roles = Vec::new();
            for role in h.roles.iter().flat_map(|r| r.get_ref()) {
                if binfm_roles::registry::named_role(role).is_some() {
                    roles.push(role.clone());
                } else if let Some(span) = &h.roles {
                    cx.err(
                        span,
                        format!(
                            "host `{name}`: unknown role `{role}` (known: {})",
                            binfm_roles::registry::role_names().join(", ")
                        ),
                    );
                }
            }
            let node = NodeDef {
                gateway,
                echo_server,
                roles,
                ..NodeDef::new(name, NodeKind::Host, vec![PortDef { segment, addr }])
            };
            let idx = nodes.len();
            add_node(cx, node_index, nodes, &h.name, node);
            if nodes.len() > idx {
                host_specs.push((idx, h));
            }
        }
    }

    /// Kernel addresses (live mode): inside the subnet and unique, like a host's address.
    fn kernel_addresses(&mut self) {
        let Builder {
            cx,
            segments,
            seg_specs,
            addr_owner,
            ..
        } = self;
        for (si, s) in seg_specs.iter().enumerate() {
            if let (Some(span), Some(ip)) = (&s.kernel_address, segments[si].kernel_address) {
                let owner = format!("{}.kernel_address", segments[si].name);
                check_host_addr(cx, span, &owner, ip, &segments[si], addr_owner);
            }
        }
    }

    /// Per-segment checks that need the nodes: DHCP, paths, link membership.
    fn segment_checks(&mut self) {
        let spec: &'a TopologySpec = self.spec;
        let Builder {
            cx,
            segments,
            seg_specs,
            nodes,
            node_index,
            ..
        } = self;
        // Kernel hosts (checked later, in `kernel_hosts`) may end a path too, on any segment
        // (a `move` may take them there).
        let kernel_hosts: Vec<&str> = spec
            .host
            .iter()
            .filter(|h| h.kernel.is_some())
            .map(|h| h.name.get_ref().as_str())
            .collect();
        for (si, s) in seg_specs.iter().enumerate() {
            let members: Vec<usize> = (0..nodes.len())
                .filter(|&n| nodes[n].ports.iter().any(|p| p.segment == si))
                .collect();
            if let Some(d) = &s.dhcp {
                segments[si].dhcp = dhcp_def(cx, d, si, segments, nodes, node_index);
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
                let kernel_end = |n: &str| kernel_hosts.iter().position(|k| *k == n);
                let kernel = (kernel_end(a), kernel_end(b));
                match (ends[0], ends[1]) {
                    (None, Some(y)) | (Some(y), None)
                        if kernel.0.is_some() != kernel.1.is_some() =>
                    {
                        let k = kernel.0.or(kernel.1).unwrap_or_default();
                        let params = cx.link_params(&p.link(), &segments[si].params);
                        segments[si].kernel_paths.push((k, y, params));
                    }
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
    }

    /// Routes, and a reachability check for every app target.
    fn routes(&mut self) -> Vec<RouteTable> {
        let Builder {
            cx,
            segments,
            nodes,
            host_specs,
            ..
        } = self;
        let routes = Topology::compute_routes(segments, nodes);
        for &(idx, h) in host_specs.iter() {
            let (Some(ec), Some(def)) = (&h.echo_client, &nodes[idx].echo_client) else {
                continue;
            };
            let target = *def.target.ip();
            if route_for(&nodes[idx], segments, &routes[idx], target).is_none() {
                let seg = &segments[nodes[idx].ports[0].segment].name;
                cx.err(&ec.get_ref().to, format!("no route from host `{}` (segment `{seg}`) to {target}: no chain of routers and NATs leads there (a private segment is reachable from outside only through its NAT's public address)", nodes[idx].name));
            }
        }
        routes
    }
}

/// Adds a node unless its name is taken (NATs, routers and hosts share one namespace).
fn add_node(
    cx: &mut Ctx<'_>,
    node_index: &mut HashMap<String, usize>,
    nodes: &mut Vec<NodeDef>,
    name: &Spanned<String>,
    node: NodeDef,
) {
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
    nodes.push(node);
}

/// A router's or NAT's port: a defined segment and a free static address on it.
fn port(
    cx: &mut Ctx<'_>,
    seg_index: &HashMap<String, usize>,
    segments: &[SegmentDef],
    owner: &str,
    p: &PortSpec,
    addr_owner: &mut HashMap<Ipv4Addr, (String, usize)>,
) -> Option<PortDef> {
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
