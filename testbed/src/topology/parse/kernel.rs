//! `[[host]]` tables with a `kernel` key: hosts that are real network namespaces in live mode
//! (see [`KernelHostDef`]).

use super::spec::KernelSpec;
use super::*;

impl<'a> Builder<'a> {
    /// Kernel hosts (need segments, their DHCP servers and every node name known).
    pub(super) fn kernel_hosts(&mut self) {
        let spec: &'a TopologySpec = self.spec;
        let Builder {
            cx,
            segments,
            seg_index,
            node_index,
            addr_owner,
            kernel_hosts,
            ..
        } = self;
        for h in spec.host.iter() {
            let Some(kernel) = &h.kernel else { continue };
            let name = h.name.get_ref().clone();
            let line = cx.line_of(h.name.span().start);
            if !valid_name(&name) {
                cx.err(
                    &h.name,
                    format!("host name `{name}` must be 1-15 letters, digits, `-` or `_`"),
                );
            }
            if node_index.contains_key(&name) || kernel_hosts.iter().any(|k| k.name == name) {
                cx.err(
                    &h.name,
                    format!(
                        "node `{name}` is defined twice; host, router and NAT names must be unique"
                    ),
                );
                continue;
            }
            let roles = [
                ("address", h.address.is_some()),
                ("gateway", h.gateway.is_some()),
                ("echo_server", h.echo_server.is_some()),
                ("echo_client", h.echo_client.is_some()),
                ("super_node", h.super_node.is_some()),
                ("end_node", h.end_node.is_some()),
                ("domain_server", h.domain_server.is_some()),
                ("roles", h.roles.is_some()),
            ];
            if let Some((key, _)) = roles.iter().find(|(_, set)| *set) {
                cx.err(
                    kernel,
                    format!(
                        "host `{name}` is a kernel host: `{key}` does not apply (its programs \
                         come from `exec` steps; its address from `kernel = {{ dhcp = true }}` \
                         or `kernel = {{ address = ..., gateway = ... }}`)"
                    ),
                );
            }
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
            let KernelSpec {
                dhcp,
                address,
                gateway,
                events,
                twin,
            } = kernel.get_ref();
            if let Some(t) = twin
                && t.get_ref() != "end_node"
            {
                cx.err(
                    t,
                    format!(
                        "kernel host `{name}`: twin `{}` is not known; the one twin is \
                         `\"end_node\"` (a virtual end node in the all-virtual twin run)",
                        t.get_ref()
                    ),
                );
            }
            let events = events.as_ref().and_then(|e| {
                let p = std::path::PathBuf::from(e.get_ref());
                let inside = !e.get_ref().is_empty()
                    && p.components()
                        .all(|c| matches!(c, std::path::Component::Normal(_)));
                if inside {
                    Some(p)
                } else {
                    cx.err(e, format!("kernel host `{name}`: events `{}` must be a path inside the run's output folder, e.g. `\"{name}-events.jsonl\"`", e.get_ref()));
                    None
                }
            });
            let addressing = match (dhcp.unwrap_or(false), address) {
                (true, Some(a)) => {
                    cx.err(
                        a,
                        format!("kernel host `{name}`: write either `dhcp = true` or an `address`, not both"),
                    );
                    continue;
                }
                (false, None) => {
                    cx.err(
                        kernel,
                        format!("kernel host `{name}` needs `dhcp = true` or an `address`, e.g. `kernel = {{ dhcp = true }}`"),
                    );
                    continue;
                }
                (true, None) => {
                    if segments[segment].dhcp.is_none() {
                        cx.err(kernel, format!("kernel host `{name}` asks for DHCP on segment `{}`, which has no DHCP server; add `dhcp = {{ server = ..., pool = ... }}` to the segment or give the host an `address`", segments[segment].name));
                    }
                    if let Some(g) = gateway {
                        cx.err(g, format!("kernel host `{name}`: with DHCP the gateway is the lease's router option; remove `gateway`"));
                    }
                    KernelAddressing::Dhcp
                }
                (false, Some(a)) => {
                    let Some(ip) = cx.addr(a, &format!("kernel host `{name}` address")) else {
                        continue;
                    };
                    let seg = &segments[segment];
                    check_host_addr(cx, a, &name, ip, seg, addr_owner);
                    if let Some(d) = &seg.dhcp
                        && (u32::from(d.pool.0)..=u32::from(d.pool.1)).contains(&u32::from(ip))
                    {
                        cx.err(a, format!("kernel host `{name}`: address {ip} is inside the DHCP pool {}-{} of `{}`; pick an address outside the pool", d.pool.0, d.pool.1, seg.name));
                    }
                    let gw = gateway
                        .as_ref()
                        .and_then(|g| cx.addr(g, &format!("kernel host `{name}` gateway")));
                    if let (Some(g), Some(span)) = (gw, gateway)
                        && !seg.subnet.contains_addr(&g)
                    {
                        cx.err(
                            span,
                            format!(
                                "kernel host `{name}`: gateway {g} is not on segment `{}` ({})",
                                seg.name, seg.subnet
                            ),
                        );
                    }
                    KernelAddressing::Static {
                        address: ip,
                        gateway: gw,
                    }
                }
            };
            kernel_hosts.push(KernelHostDef {
                name,
                segment,
                addressing,
                events,
                line,
            });
        }
    }
}
