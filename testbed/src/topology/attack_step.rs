//! The scenario step `attack KIND ...`: its checked form ([`AttackSpec`]) and its parser. It
//! lives with the topology parser, which checks every step at load time; the attacks
//! themselves run in [`crate::attack`] (what they send and measure) and `engine/attack.rs`
//! (how the engine gives them packets). The grammar is in `docs/topology.md`.
//!
//! Every attack but `lying-sn` is run by an attacker host: a `[[host]]` of the topology with a
//! static address and no role, whose packets the attack then sends and receives.

use super::NodeDef;
use super::units::parse_duration;
use std::time::Duration;

/// Highest rate of a `lookup-flood`, datagrams per second.
pub const MAX_RATE: u32 = 100_000;
/// Most datagrams one `lookup-flood` may send (rate × duration).
pub const MAX_PACKETS: u64 = 1_000_000;
/// Most requests of one `spoofed-session-request` step.
pub const MAX_REQUESTS: u32 = 1000;

/// What a lying super node lies about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lie {
    /// Answers the EN's registrations with a forged `EndpointMismatch` naming the SN's own
    /// endpoint, then acknowledges (and relays) the Tx that names it.
    Mismatch,
    /// Answers Queries for the EN with the oldest Tx of it that the SN has seen.
    Stale,
    /// Answers Queries for the EN with "not found".
    NotFound,
}

impl Lie {
    /// The word used in a step.
    pub fn as_str(self) -> &'static str {
        match self {
            Lie::Mismatch => "mismatch",
            Lie::Stale => "stale",
            Lie::NotFound => "notfound",
        }
    }
}

/// A checked `attack` step. Node fields are indices.
#[derive(Debug, Clone, PartialEq)]
pub enum AttackSpec {
    /// `attack spoofed-session-request ATTACKER VICTIM CALLEE as CALLER [xN]`: Session
    /// Requests naming CALLER sent to CALLEE's registered endpoint with VICTIM's address as
    /// their source (reflection).
    SpoofedSessionRequest {
        /// The attacker host.
        attacker: usize,
        /// The node whose address the requests claim.
        victim: usize,
        /// The end node asked to answer.
        callee: usize,
        /// The registered end node the requests claim to come from.
        caller: usize,
        /// Requests sent (one per 20 ms).
        requests: u32,
    },
    /// `attack handover-race ATTACKER`: every Handover Request seen on the attacker's segment
    /// is sent again from the attacker's address at once.
    HandoverRace {
        /// The attacker host.
        attacker: usize,
    },
    /// `attack lying-sn SN LIE about EN`: super node SN lies about end node EN.
    LyingSn {
        /// The lying super node.
        sn: usize,
        /// What it lies.
        lie: Lie,
        /// The end node it lies about.
        about: usize,
    },
    /// `attack long-term-keys ATTACKER`: the attacker records the calls it sees on its
    /// segment and decrypts them with long-term keys derived from the topology's seed.
    LongTermKeys {
        /// The attacker host.
        attacker: usize,
    },
    /// `attack lookup-flood ATTACKER CALLEE RATE/s for DURATION`: Session Requests naming
    /// random unregistered callers from random spoofed sources, so CALLEE looks each up.
    LookupFlood {
        /// The attacker host.
        attacker: usize,
        /// The end node flooded.
        callee: usize,
        /// Requests per second.
        rate: u32,
        /// How long.
        duration: Duration,
    },
    /// `attack dhcp-release ATTACKER VICTIM [spoofed]`: an attacker on VICTIM's LAN learns
    /// VICTIM's lease from the DHCP exchange it sees, forges a RELEASE of it (from its own
    /// address, or `spoofed` from VICTIM's) and asks for the address itself (INIT-REBOOT
    /// REQUEST, then DISCOVER naming it).
    DhcpRelease {
        /// The attacker host (on VICTIM's segment).
        attacker: usize,
        /// The end node whose lease is attacked (a DHCP client).
        victim: usize,
        /// The RELEASE carries VICTIM's address as source instead of the attacker's.
        spoofed: bool,
    },
    /// `attack rekey-injection ATTACKER`: the attacker injects Key Renewals into the calls it
    /// sees on its segment: forged ones, tampered copies of genuine ones, and replays.
    RekeyInjection {
        /// The attacker host.
        attacker: usize,
    },
}

impl AttackSpec {
    /// The kind, as written in a step and in `results.json`.
    pub fn kind(&self) -> &'static str {
        match self {
            AttackSpec::SpoofedSessionRequest { .. } => "spoofed-session-request",
            AttackSpec::HandoverRace { .. } => "handover-race",
            AttackSpec::LyingSn { .. } => "lying-sn",
            AttackSpec::LongTermKeys { .. } => "long-term-keys",
            AttackSpec::LookupFlood { .. } => "lookup-flood",
            AttackSpec::DhcpRelease { .. } => "dhcp-release",
            AttackSpec::RekeyInjection { .. } => "rekey-injection",
        }
    }

    /// The node that sends the attack's packets (the attacker host, or the lying SN).
    pub fn actor(&self) -> usize {
        match *self {
            AttackSpec::SpoofedSessionRequest { attacker, .. }
            | AttackSpec::HandoverRace { attacker }
            | AttackSpec::LongTermKeys { attacker }
            | AttackSpec::LookupFlood { attacker, .. }
            | AttackSpec::DhcpRelease { attacker, .. }
            | AttackSpec::RekeyInjection { attacker } => attacker,
            AttackSpec::LyingSn { sn, .. } => sn,
        }
    }

    /// Requests a `lookup-flood` sends: `rate × duration`, rounded down.
    pub fn flood_packets(rate: u32, duration: Duration) -> u64 {
        let n = u128::from(rate) * duration.as_nanos() / 1_000_000_000;
        u64::try_from(n).unwrap_or(u64::MAX)
    }
}

const USAGE: &str = "use one of: attack spoofed-session-request ATTACKER VICTIM CALLEE as CALLER [xN], attack handover-race ATTACKER, attack lying-sn SN mismatch|stale|notfound about EN, attack long-term-keys ATTACKER, attack lookup-flood ATTACKER CALLEE RATE/s for DURATION, attack dhcp-release ATTACKER VICTIM [spoofed], attack rekey-injection ATTACKER";

/// Parses the words after `attack`.
pub fn parse_step(
    words: &[&str],
    node: &dyn Fn(&str) -> Result<usize, String>,
    nodes: &[NodeDef],
) -> Result<AttackSpec, String> {
    let attacker = |name: &str| -> Result<usize, String> {
        let i = node(name)?;
        let def = nodes.get(i).ok_or("no such node")?;
        let has_role = def.super_node.is_some()
            || def.end_node.is_some()
            || def.echo_server.is_some()
            || def.echo_client.is_some()
            || def.domain_server
            || !def.roles.is_empty()
            || !matches!(def.kind, super::NodeKind::Host);
        if has_role {
            return Err(format!(
                "`{name}` runs a role or forwards; an attacker is a plain `[[host]]` with a static address and nothing else"
            ));
        }
        static_addr(def, name)?;
        Ok(i)
    };
    let en = |name: &str| -> Result<usize, String> {
        let i = node(name)?;
        if nodes.get(i).is_none_or(|n| n.end_node.is_none()) {
            return Err(format!("`{name}` is not an end node"));
        }
        Ok(i)
    };
    match words {
        [
            "spoofed-session-request",
            a,
            victim,
            callee,
            "as",
            caller,
            rest @ ..,
        ] => {
            let requests = match rest {
                [] => 1,
                [n] => n
                    .strip_prefix('x')
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|n| (1..=MAX_REQUESTS).contains(n))
                    .ok_or_else(|| {
                        format!("`{n}` is not a request count; write x1 to x{MAX_REQUESTS}")
                    })?,
                _ => return Err(USAGE.into()),
            };
            let victim_i = node(victim)?;
            if let Some(def) = nodes.get(victim_i) {
                static_addr(def, victim)?;
            }
            let (callee, caller) = (en(callee)?, en(caller)?);
            if callee == caller {
                return Err("the callee and the claimed caller must differ".into());
            }
            Ok(AttackSpec::SpoofedSessionRequest {
                attacker: attacker(a)?,
                victim: victim_i,
                callee,
                caller,
                requests,
            })
        }
        ["handover-race", a] => Ok(AttackSpec::HandoverRace {
            attacker: attacker(a)?,
        }),
        ["lying-sn", sn, lie, "about", about] => {
            let sn_i = node(sn)?;
            let def = nodes.get(sn_i).ok_or("no such node")?;
            if def.super_node.is_none() {
                return Err(format!("`{sn}` is not a super node"));
            }
            static_addr(def, sn)?;
            let lie = match *lie {
                "mismatch" => Lie::Mismatch,
                "stale" => Lie::Stale,
                "notfound" => Lie::NotFound,
                other => {
                    return Err(format!(
                        "`{other}` is not a lie; use mismatch, stale or notfound"
                    ));
                }
            };
            Ok(AttackSpec::LyingSn {
                sn: sn_i,
                lie,
                about: en(about)?,
            })
        }
        ["long-term-keys", a] => Ok(AttackSpec::LongTermKeys {
            attacker: attacker(a)?,
        }),
        ["lookup-flood", a, callee, rate, "for", dur] => {
            let rate: u32 = rate
                .strip_suffix("/s")
                .and_then(|r| r.parse().ok())
                .filter(|r| (1..=MAX_RATE).contains(r))
                .ok_or_else(|| format!("`{rate}` is not a rate; write 1/s to {MAX_RATE}/s"))?;
            let duration = parse_duration(dur)?;
            match AttackSpec::flood_packets(rate, duration) {
                0 => return Err(format!("{rate}/s for {dur} sends no request")),
                n if n > MAX_PACKETS => {
                    return Err(format!(
                        "{rate}/s for {dur} is {n} requests; at most {MAX_PACKETS} per step"
                    ));
                }
                _ => {}
            }
            Ok(AttackSpec::LookupFlood {
                attacker: attacker(a)?,
                callee: en(callee)?,
                rate,
                duration,
            })
        }
        ["dhcp-release", a, victim, rest @ ..] => {
            let spoofed = match rest {
                [] => false,
                ["spoofed"] => true,
                _ => return Err(USAGE.into()),
            };
            let (a, v) = (attacker(a)?, en(victim)?);
            let vport = nodes.get(v).and_then(|d| d.ports.first());
            if vport.is_none_or(|p| p.addr.is_some()) {
                return Err(format!(
                    "`{victim}` has a static address; dhcp-release attacks a DHCP client"
                ));
            }
            let aseg = nodes
                .get(a)
                .and_then(|d| d.ports.first())
                .map(|p| p.segment);
            if aseg != vport.map(|p| p.segment) {
                return Err(format!(
                    "the attacker must be on `{victim}`'s segment (it sniffs its DHCP exchange)"
                ));
            }
            Ok(AttackSpec::DhcpRelease {
                attacker: a,
                victim: v,
                spoofed,
            })
        }
        ["rekey-injection", a] => Ok(AttackSpec::RekeyInjection {
            attacker: attacker(a)?,
        }),
        _ => Err(USAGE.into()),
    }
}

fn static_addr(def: &NodeDef, name: &str) -> Result<(), String> {
    match def.ports.first().and_then(|p| p.addr) {
        Some(_) => Ok(()),
        None => Err(format!(
            "`{name}` has no static address on its first segment"
        )),
    }
}
