//! The `[[scenario]]` steps: when, and which command (`call a b`, `partition {..} {..}`,
//! `flood sn2 20000/s for 10s`, ...).

use super::*;

impl<'a> Builder<'a> {
    /// Scenario steps (need every node and segment known).
    pub(super) fn scenario(&mut self) -> Vec<Step> {
        let spec: &'a TopologySpec = self.spec;
        let Builder {
            cx,
            segments,
            seg_index,
            nodes,
            node_index,
            kernel_hosts,
            ..
        } = self;
        let mut scenario = Vec::new();
        for step in &spec.scenario {
            let Some(at) = cx.duration(&step.at, "scenario step `at`") else {
                continue;
            };
            let line = cx.line_of(step.action.span().start);
            let parsed = parse_action(
                step.action.get_ref(),
                node_index,
                seg_index,
                nodes,
                kernel_hosts,
            );
            // A flood needs free public addresses on its target's segment for its sources.
            let parsed = parsed.and_then(|a| match &a {
                Action::Flood(f) => {
                    crate::topology::flood_step::sources(segments, nodes, f.target).map(|_| a)
                }
                // So does a lookup flood, on its attacker's segment.
                Action::Attack(crate::topology::attack_step::AttackSpec::LookupFlood {
                    attacker,
                    ..
                }) => crate::topology::flood_step::sources(segments, nodes, *attacker).map(|_| a),
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
        scenario
    }
}

/// Parses one scenario command, e.g. `call a b` or `partition {sn1} {sn2,sn3}`.
fn parse_action(
    text: &str,
    nodes_by_name: &HashMap<String, usize>,
    segs: &HashMap<String, usize>,
    nodes: &[NodeDef],
    kernel_hosts: &[KernelHostDef],
) -> Result<Action, String> {
    let kernel = |name: &str| kernel_hosts.iter().position(|k| k.name == name);
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
    if let Some(rest) = text.trim_start().strip_prefix("exec ") {
        return exec_step(rest, &kernel, &node);
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["move", a, "to", s] if kernel(a).is_some() => {
            Ok(Action::MoveKernel(kernel(a).unwrap_or_default(), seg(s)?))
        }
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
        ["attack", rest @ ..] => super::attack_step::parse_step(rest, &node, nodes).map(Action::Attack),
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
        _ => Err("unknown step; use one of: call A B, hangup A B, move A to SEGMENT, rekey A, leave A, join A SEGMENT, crash N, restart N, partition {..} {..}, heal, loss SEGMENT 20%, flood SN RATE/s for DURATION [KIND], exec KERNEL_HOST -- CMD ARGS, attack KIND ...".into()),
    }
}

/// `exec K -- CMD ARGS...` (after `exec `): the command is split like a shell splits words
/// (quotes, backslashes), with no expansion or redirection; write `sh -c '...'` for those.
fn exec_step(
    rest: &str,
    kernel: &dyn Fn(&str) -> Option<usize>,
    node: &dyn Fn(&str) -> Result<usize, String>,
) -> Result<Action, String> {
    let Some((host, command)) = rest.split_once("--") else {
        return Err("write `exec HOST -- COMMAND ARGS...`".into());
    };
    let host = host.trim();
    let Some(k) = kernel(host) else {
        return Err(match node(host) {
            Ok(_) => format!(
                "`{host}` is a virtual host; `exec` runs programs in kernel hosts (add `kernel = {{ dhcp = true }}` to a host)"
            ),
            Err(_) => format!("`{host}` is not a kernel host of this topology"),
        });
    };
    let argv = shlex::split(command.trim()).ok_or_else(|| {
        format!(
            "cannot split `{}` into words (unbalanced quote?)",
            command.trim()
        )
    })?;
    if argv.is_empty() {
        return Err("`exec` needs a command after `--`".into());
    }
    Ok(Action::Exec { host: k, argv })
}
