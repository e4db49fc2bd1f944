//! `[[crowd]]`: N end nodes spread over M private networks, each behind its own NAT on a
//! public segment, with moves and calls drawn from the topology's seed. A crowd is expanded
//! into ordinary `[[segment]]`, `[[nat]]`, `[[host]]` and `[[scenario]]` entries before any
//! check, so every check (and every error, at the crowd's line) applies to them as to
//! hand-written ones, and a run of it is a run of that file.

use super::Ctx;
use super::spec::{
    CrowdSpec, DhcpSpec, EndNodeSpec, HostSpec, NatSpec, PortSpec, SegmentSpec, StepSpec,
    TopologySpec,
};
use crate::topology::{DEFAULT_DURATION, Diagnostic, parse_duration};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;
use toml::Spanned;

/// The most end nodes one crowd may have.
pub const MAX_END_NODES: u32 = 100_000;
/// The most private networks one crowd may have (one /24 each inside its `subnets` /16).
pub const MAX_NETWORKS: u32 = 256;
/// First and last host of a crowd network's DHCP pool (x.y.z.10 to x.y.z.250).
const POOL: (u8, u8) = (10, 250);

/// The topology with its crowds expanded (unchanged without crowds).
pub(super) fn expand(mut spec: TopologySpec, text: &str) -> Result<TopologySpec, Vec<Diagnostic>> {
    if spec.crowd.is_empty() {
        return Ok(spec);
    }
    let mut cx = Ctx {
        text,
        diags: Vec::new(),
    };
    let duration = spec
        .duration
        .as_ref()
        .and_then(|d| parse_duration(d.get_ref()).ok())
        .unwrap_or(DEFAULT_DURATION);
    let seed = spec.seed.unwrap_or(1);
    let crowds = std::mem::take(&mut spec.crowd);
    for c in &crowds {
        expand_one(&mut cx, &mut spec, c, seed, duration);
    }
    if cx.diags.is_empty() {
        Ok(spec)
    } else {
        Err(cx.diags)
    }
}

/// The settings of one crowd, checked.
struct Plan {
    name: String,
    end_nodes: u32,
    networks: u32,
    base: [u8; 2],
    move_every: Option<Duration>,
    calls_per_minute: f64,
    call_duration: Duration,
    from: Duration,
}

fn check(cx: &mut Ctx<'_>, c: &CrowdSpec) -> Option<Plan> {
    let name = c.name.get_ref().clone();
    let n = *c.end_nodes.get_ref();
    let n_ok = (1..=MAX_END_NODES).contains(&n);
    if !n_ok {
        cx.err(
            &c.end_nodes,
            format!("crowd `{name}`: end_nodes must be 1 to {MAX_END_NODES}"),
        );
    }
    let m = *c.networks.get_ref();
    let m_ok = (1..=MAX_NETWORKS).contains(&m) && m <= n;
    if !m_ok {
        cx.err(
            &c.networks,
            format!("crowd `{name}`: networks must be 1 to {MAX_NETWORKS} and at most end_nodes"),
        );
    }
    let per = n.div_ceil(m.max(1));
    if per > u32::from(POOL.1 - POOL.0) / 2 {
        cx.err(
            &c.networks,
            format!(
                "crowd `{name}`: {per} end nodes per network leave too few addresses for \
                 arrivals (a /24 pool of {} addresses each); use more networks",
                POOL.1 - POOL.0 + 1
            ),
        );
    }
    let base = match c.subnets.get_ref().trim().split_once('/') {
        Some((ip, "16")) => match ip.parse::<Ipv4Addr>().map(|a| a.octets()) {
            Ok([10, b, 0, 0]) => Some([10, b]),
            _ => None,
        },
        _ => None,
    };
    if base.is_none() {
        cx.err(
            &c.subnets,
            format!(
                "crowd `{name}`: subnets `{}` must be a /16 inside 10.0.0.0/8 such as \"10.200.0.0/16\" (network k is 10.x.k.0/24)",
                c.subnets.get_ref()
            ),
        );
    }
    let dur = |cx: &mut Ctx<'_>, s: &Option<Spanned<String>>, key: &str, default: Duration| match s
    {
        Some(s) => cx.duration(s, &format!("crowd `{name}`: {key}")),
        None => Some(default),
    };
    let move_every = dur(cx, &c.move_every, "move_every", Duration::ZERO)?;
    let call_duration = dur(
        cx,
        &c.call_duration,
        "call_duration",
        Duration::from_secs(10),
    )?;
    let from = dur(cx, &c.from, "from", Duration::from_secs(10))?;
    let calls_per_minute = c.calls_per_minute.as_ref().map_or(0.0, |r| *r.get_ref());
    if !(0.0..=60_000.0).contains(&calls_per_minute) {
        if let Some(r) = &c.calls_per_minute {
            cx.err(
                r,
                format!("crowd `{name}`: calls_per_minute must be 0 to 60000"),
            );
        }
        return None;
    }
    if call_duration.is_zero() && calls_per_minute > 0.0 {
        if let Some(d) = &c.call_duration {
            cx.err(
                d,
                format!("crowd `{name}`: call_duration must be more than 0"),
            );
        }
        return None;
    }
    if !(n_ok && m_ok) {
        return None;
    }
    Some(Plan {
        name,
        end_nodes: n,
        networks: m,
        base: base?,
        move_every: (!move_every.is_zero()).then_some(move_every),
        calls_per_minute,
        call_duration,
        from,
    })
}

fn expand_one(cx: &mut Ctx<'_>, spec: &mut TopologySpec, c: &CrowdSpec, seed: u64, run: Duration) {
    let Some(p) = check(cx, c) else { return };
    let at = c.name.span();
    let s = |v: String| Spanned::new(at.clone(), v);
    let public = c.public.get_ref().clone();
    // NAT public addresses: the free addresses of the public segment, lowest first.
    let Some(pub_seg) = spec.segment.iter().find(|g| g.name.get_ref() == &public) else {
        cx.err(
            &c.public,
            format!(
                "crowd `{}`: public segment `{public}` is not defined",
                p.name
            ),
        );
        return;
    };
    let Some((net, len)) = pub_seg
        .subnet
        .get_ref()
        .split_once('/')
        .and_then(|(a, l)| Some((a.parse::<Ipv4Addr>().ok()?, l.parse::<u32>().ok()?)))
        .filter(|(_, l)| (8..=30).contains(l))
    else {
        cx.err(
            &c.public,
            format!(
                "crowd `{}`: segment `{public}` has no usable subnet",
                p.name
            ),
        );
        return;
    };
    let used = used_addresses(spec);
    let first = u32::from(net) + 1;
    let last = u32::from(net) + (1u32 << (32 - len)) - 2;
    let free: Vec<Ipv4Addr> = (first..=last)
        .map(Ipv4Addr::from)
        .filter(|a| !used.contains(a))
        .take(p.networks as usize)
        .collect();
    if free.len() < p.networks as usize {
        cx.err(
            &c.networks,
            format!(
                "crowd `{}`: segment `{public}` has {} free addresses for {} NATs",
                p.name,
                free.len(),
                p.networks
            ),
        );
        return;
    }
    let lan = |k: u32| format!("{}-lan{}", p.name, k + 1);
    let delay = c.delay.clone().unwrap_or_else(|| s("1ms".into()));
    for (k, nat_ip) in (0..p.networks).zip(free) {
        let [a, b] = p.base;
        let third = k as u8; // k < 256
        let subnet = format!("{a}.{b}.{third}.0/24");
        let gw = format!("{a}.{b}.{third}.1");
        spec.segment.push(SegmentSpec {
            name: s(lan(k)),
            subnet: s(subnet),
            delay: Some(delay.clone()),
            jitter: None,
            loss: None,
            rate: None,
            queue: None,
            reorder: None,
            dhcp: Some(Spanned::new(
                at.clone(),
                DhcpSpec {
                    server: s(format!("{}-nat{}", p.name, k + 1)),
                    pool: s(format!(
                        "{a}.{b}.{third}.{}-{a}.{b}.{third}.{}",
                        POOL.0, POOL.1
                    )),
                    lease: None,
                    router: None,
                    super_nodes: Some(Spanned::new(at.clone(), c.super_nodes.get_ref().clone())),
                    domain_server: None,
                },
            )),
            path: Vec::new(),
            kernel_address: None,
        });
        spec.nat.push(NatSpec {
            name: s(format!("{}-nat{}", p.name, k + 1)),
            inside: PortSpec {
                segment: s(lan(k)),
                address: s(gw),
            },
            outside: PortSpec {
                segment: s(public.clone()),
                address: s(nat_ip.to_string()),
            },
            filtering: None,
            mapping_timeout: None,
        });
    }
    let en_name = |i: u32| format!("{}{}", p.name, i + 1);
    for i in 0..p.end_nodes {
        spec.host.push(HostSpec {
            name: s(en_name(i)),
            segment: s(lan(i % p.networks)),
            address: None,
            gateway: None,
            echo_server: None,
            echo_client: None,
            super_node: None,
            end_node: Some(Spanned::new(at.clone(), EndNodeSpec::default())),
            domain_server: None,
            roles: None,
            kernel: None,
        });
    }
    // The behaviour, from the seed and the crowd's name: a run of the file is reproducible.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ name_hash(&p.name));
    let exp = |rng: &mut ChaCha8Rng, mean: f64| -mean * (1.0 - rng.random::<f64>()).ln();
    let mut steps: Vec<(Duration, String)> = Vec::new();
    let end = run.as_secs_f64();
    if let Some(every) = p.move_every.filter(|_| p.networks > 1) {
        for i in 0..p.end_nodes {
            let mut at_net = i % p.networks;
            let mut t = p.from.as_secs_f64() + exp(&mut rng, every.as_secs_f64());
            while t < end {
                at_net = (at_net + rng.random_range(1..p.networks)) % p.networks;
                steps.push((secs(t), format!("move {} to {}", en_name(i), lan(at_net))));
                t += exp(&mut rng, every.as_secs_f64());
            }
        }
    }
    if p.calls_per_minute > 0.0 && p.end_nodes > 1 {
        let mean_gap = 60.0 / p.calls_per_minute;
        let mut busy_until = vec![0.0f64; p.end_nodes as usize];
        let mut t = p.from.as_secs_f64() + exp(&mut rng, mean_gap);
        while t < end {
            let a = rng.random_range(0..p.end_nodes);
            let b = (a + rng.random_range(1..p.end_nodes)) % p.end_nodes;
            // One call at a time per end node: a busy caller or callee skips this draw.
            if busy_until[a as usize] <= t && busy_until[b as usize] <= t {
                let stop = (t + p.call_duration.as_secs_f64()).min(end);
                busy_until[a as usize] = stop;
                busy_until[b as usize] = stop;
                steps.push((secs(t), format!("call {} {}", en_name(a), en_name(b))));
                steps.push((secs(stop), format!("hangup {} {}", en_name(a), en_name(b))));
            }
            t += exp(&mut rng, mean_gap);
        }
    }
    for (t, action) in steps {
        spec.scenario.push(StepSpec {
            at: s(format!("{}us", t.as_micros())),
            action: s(action),
            twin: None,
        });
    }
}

fn secs(t: f64) -> Duration {
    Duration::from_micros((t * 1e6).round() as u64)
}

/// FNV-1a of the crowd's name (its behaviour differs from another crowd's of the same file).
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Addresses a crowd's NAT may not take.
#[derive(Default)]
struct Taken {
    /// Given to a node or a kernel in the file.
    addresses: BTreeSet<Ipv4Addr>,
    /// DHCP pools, first and last address.
    pools: Vec<(u32, u32)>,
}

impl Taken {
    fn contains(&self, a: &Ipv4Addr) -> bool {
        let n = u32::from(*a);
        self.addresses.contains(a) || self.pools.iter().any(|&(lo, hi)| (lo..=hi).contains(&n))
    }
}

/// Every address the file gives a node or a kernel, as written, and every DHCP pool.
fn used_addresses(spec: &TopologySpec) -> Taken {
    let mut used = Taken::default();
    let add = |used: &mut Taken, s: &Spanned<String>| {
        if let Ok(a) = s.get_ref().trim().parse() {
            used.addresses.insert(a);
        }
    };
    for h in &spec.host {
        if let Some(a) = &h.address {
            add(&mut used, a);
        }
    }
    for n in &spec.nat {
        add(&mut used, &n.inside.address);
        add(&mut used, &n.outside.address);
    }
    for r in &spec.router {
        for p in &r.ports {
            add(&mut used, &p.address);
        }
    }
    for g in spec.segment.iter().chain(&spec.link) {
        if let Some(k) = &g.kernel_address {
            add(&mut used, k);
        }
        // A DHCP pool's addresses are taken too.
        if let Some((a, b)) = g
            .dhcp
            .as_ref()
            .and_then(|d| d.get_ref().pool.get_ref().split_once('-'))
            .and_then(|(a, b)| {
                Some((
                    a.trim().parse::<Ipv4Addr>().ok()?,
                    b.trim().parse::<Ipv4Addr>().ok()?,
                ))
            })
        {
            used.pools.push((u32::from(a), u32::from(b)));
        }
    }
    for h in &spec.host {
        if let Some(a) = h.kernel.as_ref().and_then(|k| k.get_ref().address.as_ref()) {
            add(&mut used, a);
        }
    }
    used
}
