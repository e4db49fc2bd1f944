//! The "Capacity" section of `report.md`: a table per part, each plot with what it shows in
//! a sentence computed from the data, and a closing reading (what limits first at 10,000 and
//! 100,000 ENs, and the block sizes a deployment would need).

use serde_json::Value;
use std::fmt::Write as _;

/// The load on the chain: the Txs offered during the measurement (`moves`) over what the
/// blocks mined in it could hold (`measure_blocks` × `txs_per_block`). At 1 or more the chain
/// falls behind: every block is full and Txs wait (or are evicted) whatever the luck of the
/// block times.
pub fn load(p: &Value) -> Option<f64> {
    let room = f(&p["measure_blocks"])? * f(&p["txs_per_block"])?;
    (room > 0.0).then(|| f(&p["moves"]).unwrap_or(0.0) / room)
}

/// Utilisation a deployment should plan blocks for (block times are exponential).
pub const PLAN_UTILISATION: f64 = 0.8;

fn f(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite())
}

/// A figure rounded for reading: whole numbers as such, no decimals from 100 on, one from
/// 10, two below.
fn n(v: Option<f64>) -> String {
    match v {
        Some(x) if x.abs() >= 100.0 || (x - x.round()).abs() < 1e-9 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
        None => "–".to_owned(),
    }
}

fn secs(ms: &Value) -> Option<f64> {
    f(ms).map(|m| m / 1000.0)
}

fn pct(p: &Value) -> Option<f64> {
    let q = f(&p["queries"])?;
    (q > 0.0).then(|| f(&p["replies_outdated"]).unwrap_or(0.0) / q * 100.0)
}

/// Share of the Txs of `tx_fate` that were served (in a block or superseded by one that is).
pub fn served(p: &Value) -> Option<f64> {
    let t = &p["tx_fate"];
    let sent = f(&t["sent"])?;
    (sent > 0.0)
        .then(|| (f(&t["confirmed"]).unwrap_or(0.0) + f(&t["superseded"]).unwrap_or(0.0)) / sent)
}

fn keeps_up(p: &Value) -> bool {
    load(p).is_some_and(|x| x < 1.0)
}

fn fill_pct(p: &Value) -> String {
    n(f(&p["block_fill"]).map(|x| x * 100.0))
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The wall-clock twin of a point (same sweep and index) from `timing.json`.
fn wall<'a>(timing: &'a Value, sweep: &str, i: usize) -> &'a Value {
    &timing["capacity"][sweep][i]
}

/// The section, or nothing when the capacity part did not run.
pub fn markdown(results: &Value, timing: &Value) -> String {
    let c = &results["beyond"]["capacity"];
    if c.is_null() {
        return String::new();
    }
    let cfg = &c["config"];
    let mut r = String::new();
    let _ = writeln!(
        r,
        "## Capacity: blocks, crowds and churn\n\nOne SN and N ENs in the scale harness (`docs/scale.md`, virtual time): each point first registers every EN (registrations paced at 80% of what the chain confirms), then for {} s every EN moves (a new endpoint and a new {}-byte Tx) at exponential intervals while a prober Queries random registered ENs at {}/s. The crowd is spread over {} source addresses, so the SN's per-source Tx limit (10/s) never binds (Txs refused by it: {}). Virtual time has no processing model: the time the SN spends handling datagrams is measured beside it with the wall clock (`timing.json`; the \"SN CPU\" figures below are that time).\n",
        n(f(&cfg["duration_s"])),
        cfg["tx_bytes"],
        n(f(&cfg["query_rate"])),
        cfg["crowd_addrs"],
        refused(c)
    );
    if c["stopped"].as_bool() == Some(true) {
        let _ = writeln!(
            r,
            "**Stopped by Ctrl-C: only the points that finished are below.**\n"
        );
    }
    blocks(&mut r, c, timing);
    ens(&mut r, c);
    sn(&mut r, c, timing);
    crowd(&mut r, c, timing);
    reading(&mut r, c, timing);
    r
}

fn refused(c: &Value) -> u64 {
    ["blocks", "ens"]
        .iter()
        .flat_map(|s| arr(&c[*s]))
        .filter_map(|p| p["sn_refused"]["tx_rate_limited"].as_u64())
        .sum()
}

/// The intervals of the block sweep, in order of first appearance.
fn intervals(points: &[Value]) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    for p in points {
        if let Some(i) = f(&p["block_interval_s"])
            && !out.contains(&i)
        {
            out.push(i);
        }
    }
    out
}

fn blocks(r: &mut String, c: &Value, timing: &Value) {
    let points = arr(&c["blocks"]);
    if points.is_empty() {
        return;
    }
    let cfg = &c["config"];
    let offered = points
        .iter()
        .filter_map(|p| f(&p["offered_tx_per_s"]))
        .fold(0.0, f64::max);
    let _ = writeln!(
        r,
        "### (a) Confirmed Tx/s and confirmation delay against block size and interval\n\n{} ENs moving every {} s on average offer about {} Tx/s.\n",
        cfg["load_ens"],
        n(f(&cfg["load_move_interval_s"])),
        n(Some(offered))
    );
    for i in intervals(points) {
        let row: Vec<&Value> = points
            .iter()
            .filter(|p| f(&p["block_interval_s"]) == Some(i))
            .collect();
        let _ = writeln!(r, "- {}", blocks_sentence(i, &row));
    }
    let _ = writeln!(
        r,
        "\n| block interval | blocks | Txs a block holds | chain capacity, Tx/s | offered Tx/s | load | confirmed Tx/s | block fill | Txs served | Txs evicted | confirmation median / p99, s | largest block, Txs | SN CPU per s measured |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for (k, p) in points.iter().enumerate() {
        let w = wall(timing, "blocks", k);
        let _ = writeln!(
            r,
            "| {} s | {} | {} | {} | {} | {} | {} | {}% | {}% | {} | {} / {} | {} | {} |",
            n(f(&p["block_interval_s"])),
            p["block_config"].as_str().unwrap_or("–"),
            p["txs_per_block"],
            n(f(&p["chain_tx_per_s"])),
            n(f(&p["offered_tx_per_s"])),
            n(load(p)),
            n(f(&p["confirmed_tx_per_s"])),
            fill_pct(p),
            served_pct(p),
            p["mempool_evicted"],
            n(secs(&p["confirm_delay_ms"]["median"])),
            n(secs(&p["confirm_delay_ms"]["p99"])),
            p["sn_accounted"]["largest_block_txs"],
            n(cpu_share(w, cfg)),
        );
    }
    let _ = writeln!(
        r,
        "\nChain capacity = Txs a block holds ÷ block interval (the mean; block times are exponential). Load is the Txs offered during the measurement over what the blocks mined in it could hold (block times are random, so this counts the blocks there were): at 1 or more the chain falls behind. Block fill is the mean, over the blocks of the measurement, of the Txs a block took over the Txs it could hold (below 100% even when behind: the first blocks of the measurement find a short queue). Txs evicted: the mempool holds at most {} Txs (one per EN) and drops the oldest for a new one, so when the chain is behind a Tx not in a block within about that many Txs' arrival time is lost, which also caps the confirmation delay. A Tx is served when it reached a block or was superseded by a later Tx of the same EN that did (counted over the measurement less its last three block intervals); confirmed Tx/s counts only Txs that reached a block, so it is below the offered load by the Txs an EN replaced (it moved again before a block took the first) even when the chain keeps up. Confirmation delay counts Txs sent during the measurement and confirmed before it ended, so when the chain falls behind, the p99 is capped by the measurement's length. \"SN CPU per s measured\" is the SN's wall-clock time during the measurement over its virtual length: above 1, one core could not run this SN in real time.\n\n![blocks](plots/capacity_blocks.svg)\n",
        binfm_roles::chain::MempoolConfig::default().max_txs
    );
}

/// SN CPU seconds per second of measurement.
fn cpu_share(w: &Value, cfg: &Value) -> Option<f64> {
    Some(f(&w["sn_measure_cpu_s"])? / f(&cfg["duration_s"])?)
}

fn served_pct(p: &Value) -> String {
    n(served(p).map(|x| x * 100.0))
}

fn blocks_sentence(interval: f64, row: &[&Value]) -> String {
    let offered = row
        .iter()
        .filter_map(|p| f(&p["offered_tx_per_s"]))
        .fold(0.0, f64::max);
    let first_up = row.iter().find(|p| keeps_up(p));
    let behind: Vec<&&Value> = row.iter().filter(|p| !keeps_up(p)).collect();
    let delay = |p: &Value| {
        format!(
            "{} / {} s",
            n(secs(&p["confirm_delay_ms"]["median"])),
            n(secs(&p["confirm_delay_ms"]["p99"]))
        )
    };
    let list = |ps: &[&&Value], key: &str| -> String {
        ps.iter()
            .map(|p| n(f(&p[key])))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = format!("At {} s blocks, ", n(Some(interval)));
    if !behind.is_empty() {
        let sizes: Vec<String> = behind
            .iter()
            .map(|p| p["txs_per_block"].to_string())
            .collect();
        let _ = write!(
            s,
            "blocks of {} Txs fall behind the offered {} Tx/s ({} times what the blocks mined could hold): they are {}% full on average and confirm {} Tx/s against a capacity of {}, and {}% of Txs are served",
            sizes.join(", "),
            n(Some(offered)),
            behind
                .iter()
                .map(|p| n(load(p)))
                .collect::<Vec<_>>()
                .join(", "),
            behind
                .iter()
                .map(|p| fill_pct(p))
                .collect::<Vec<_>>()
                .join(", "),
            list(&behind, "confirmed_tx_per_s"),
            list(&behind, "chain_tx_per_s"),
            behind
                .iter()
                .map(|p| served_pct(p))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    match first_up {
        Some(p) => {
            let _ = write!(
                s,
                "{}from blocks of {} Txs on the chain keeps up (load {}, blocks {}% full on average) and confirmed Tx/s follows the offered load: {} Tx/s confirmed, {}% of Txs served, confirmation median / p99 {}",
                if behind.is_empty() { "" } else { "; " },
                p["txs_per_block"],
                n(load(p)),
                fill_pct(p),
                n(f(&p["confirmed_tx_per_s"])),
                served_pct(p),
                delay(p)
            );
        }
        None => {
            let _ = write!(s, "; no block size of the sweep keeps up");
        }
    }
    if let (Some(a), Some(b)) = (row.first(), row.last()) {
        let _ = write!(
            s,
            ". Confirmation median / p99: {} at {} Txs a block, {} at {}.",
            delay(a),
            a["txs_per_block"],
            delay(b),
            b["txs_per_block"]
        );
    }
    s
}

/// The block configurations of the EN sweep, in order of first appearance.
fn configs(points: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in points {
        if let Some(b) = p["block_config"].as_str()
            && !out.iter().any(|o| o == b)
        {
            out.push(b.to_owned());
        }
    }
    out
}

fn ens(r: &mut String, c: &Value) {
    let points = arr(&c["ens"]);
    if points.is_empty() {
        return;
    }
    let _ = writeln!(
        r,
        "### (b) Outdated Replies against EN count and move interval\n\nA Reply is outdated when it names an endpoint the EN has already left (its newer Tx is not in a block yet). Blocks every second.\n"
    );
    for b in configs(points) {
        let row: Vec<&Value> = points
            .iter()
            .filter(|p| p["block_config"].as_str() == Some(&b))
            .collect();
        let share: Vec<f64> = row.iter().filter_map(|p| pct(p)).collect();
        let lo = share.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = share.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let behind: Vec<String> = row
            .iter()
            .filter(|p| !keeps_up(p))
            .map(|p| {
                format!(
                    "{} ENs moving every {} s (load {}, {} of {} Tx/s confirmed, {}% of Txs served, {}% of Replies outdated)",
                    p["ens"],
                    n(f(&p["move_interval_s"])),
                    n(load(p)),
                    n(f(&p["confirmed_tx_per_s"])),
                    n(f(&p["offered_tx_per_s"])),
                    served_pct(p),
                    n(pct(p))
                )
            })
            .collect();
        let _ = writeln!(
            r,
            "- With {b} blocks, {}% to {}% of Replies are outdated across the points; {}.",
            n(Some(lo)),
            n(Some(hi)),
            if behind.is_empty() {
                "the chain keeps up at every point".to_owned()
            } else {
                format!("the chain falls behind at {}", behind.join("; "))
            }
        );
    }
    let _ = writeln!(
        r,
        "\n| ENs | move interval | blocks | registered at the start | offered Tx/s | load | confirmed Tx/s | block fill | Txs served | confirmation median / p99, s | Replies outdated | Txs evicted from the mempool |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for p in points {
        let _ = writeln!(
            r,
            "| {} | {} s | {} | {} | {} | {} | {} | {}% | {}% | {} / {} | {}% | {} |",
            p["ens"],
            n(f(&p["move_interval_s"])),
            p["block_config"].as_str().unwrap_or("–"),
            p["members_confirmed"],
            n(f(&p["offered_tx_per_s"])),
            n(load(p)),
            n(f(&p["confirmed_tx_per_s"])),
            fill_pct(p),
            served_pct(p),
            n(secs(&p["confirm_delay_ms"]["median"])),
            n(secs(&p["confirm_delay_ms"]["p99"])),
            n(pct(p)),
            p["mempool_evicted"],
        );
    }
    let _ = writeln!(r, "\n![outdated Replies](plots/capacity_outdated.svg)\n");
}

fn sn(r: &mut String, c: &Value, timing: &Value) {
    let points = arr(&c["ens"]);
    if points.is_empty() {
        return;
    }
    let cfg = &c["config"];
    let _ = writeln!(
        r,
        "### (c) SN CPU and memory against EN count\n\nFrom the points of (b), measured on this machine. SN CPU is wall-clock time inside the SN's handlers (Tx verification, template, mining, Queries); \"per s measured\" divides the SN's time during the measurement by its virtual length. Accounted memory is the SN's structures (blocks, Tx Search Table, mempool) counted from their contents; RSS growth is the process's, crowd included.\n"
    );
    if let Some(sentence) = sn_sentence(points, timing, cfg) {
        let _ = writeln!(r, "{sentence}\n");
    }
    let _ = writeln!(
        r,
        "| ENs | move interval | blocks | SN CPU per Tx, median / p99 µs | SN CPU per s measured | SN CPU in the point, s | accounted memory, MB | RSS growth, MB | wall, s |\n|---|---|---|---|---|---|---|---|---|"
    );
    for (k, p) in points.iter().enumerate() {
        let w = wall(timing, "ens", k);
        let _ = writeln!(
            r,
            "| {} | {} s | {} | {} / {} | {} | {} | {} | {} | {} |",
            p["ens"],
            n(f(&p["move_interval_s"])),
            p["block_config"].as_str().unwrap_or("–"),
            n(f(&w["sn_tx_cpu_us"]["median"])),
            n(f(&w["sn_tx_cpu_us"]["p99"])),
            n(cpu_share(w, cfg)),
            n(f(&w["sn_cpu_s"])),
            n(f(&p["sn_accounted_bytes"]).map(|b| b / 1e6)),
            n(f(&w["sn_resident_bytes"]).map(|b| b / 1e6)),
            n(f(&w["wall_s"])),
        );
    }
    let _ = writeln!(r, "\n![SN CPU and memory](plots/capacity_sn.svg)\n");
}

fn sn_sentence(points: &[Value], timing: &Value, cfg: &Value) -> Option<String> {
    // The busiest point and the largest accounted memory.
    let (k, busiest) = points.iter().enumerate().max_by(|a, b| {
        let x = cpu_share(wall(timing, "ens", a.0), cfg).unwrap_or(0.0);
        let y = cpu_share(wall(timing, "ens", b.0), cfg).unwrap_or(0.0);
        x.total_cmp(&y)
    })?;
    let biggest = points.iter().max_by(|a, b| {
        let x = f(&a["sn_accounted_bytes"]).unwrap_or(0.0);
        let y = f(&b["sn_accounted_bytes"]).unwrap_or(0.0);
        x.total_cmp(&y)
    })?;
    let share = cpu_share(wall(timing, "ens", k), cfg)?;
    let w = wall(timing, "ens", k);
    let median_us = f(&w["sn_tx_cpu_us"]["median"]);
    let at_median = median_us
        .zip(f(&busiest["offered_tx_per_s"]))
        .map(|(us, o)| us * o / 1e6);
    let evicted = busiest["mempool_evicted"].as_u64().unwrap_or(0);
    let why = if evicted > 0 {
        format!(
            "; the Txs at the median would take {} s per second, the rest is in the slow ones (p99 {} µs): {evicted} Txs evicted another from the full mempool, and for each the SN's block template drops the evicted Tx (its first) and takes the next pending Txs that fit (`Chain::template_offer`)",
            n(at_median),
            n(f(&w["sn_tx_cpu_us"]["p99"])),
        )
    } else {
        String::new()
    };
    Some(format!(
        "The SN is busiest at {} ENs moving every {} s with {} blocks: {} s of CPU per second ({} offered Tx/s, {} µs per Tx median{why}){}. Its accounted memory grows with the Txs the chain holds, up to {} MB at {} ENs moving every {} s with {} blocks.",
        busiest["ens"],
        n(f(&busiest["move_interval_s"])),
        busiest["block_config"].as_str().unwrap_or("–"),
        n(Some(share)),
        n(f(&busiest["offered_tx_per_s"])),
        n(median_us),
        if share > 1.0 {
            ": more than one core, so an SN on one core of this machine could not keep up in real time"
        } else {
            ": within one core"
        },
        n(f(&biggest["sn_accounted_bytes"]).map(|b| b / 1e6)),
        biggest["ens"],
        n(f(&biggest["move_interval_s"])),
        biggest["block_config"].as_str().unwrap_or("–"),
    ))
}

fn crowd(r: &mut String, c: &Value, timing: &Value) {
    let points = arr(&c["crowd"]);
    if points.is_empty() {
        return;
    }
    let walls = arr(&timing["capacity"]["crowd"]);
    let _ = writeln!(
        r,
        "### (d) The full-fabric crowd against N\n\n`binfm run` on `topologies/crowd.toml` resized to N ENs (100 per NATed network, 8 calls a minute per 1,000 ENs; as in the file: three SNs taking 200 Txs and 500 Queries a second per source address, 4,096-Tx blocks, moves every 120 s, calls from 60 s on), each in a child process of its own: wall time, CPU time and peak RSS (`VmHWM`) of that process.\n"
    );
    let per_en: Vec<(f64, f64, f64)> = points
        .iter()
        .zip(walls)
        .filter_map(|(p, w)| {
            let en = f(&p["ens"])?;
            Some((
                en,
                f(&w["peak_resident_bytes"])? / en,
                f(&w["wall_s"])? / f(&p["virtual_s"])?,
            ))
        })
        .collect();
    if let (Some(a), Some(b)) = (per_en.first(), per_en.last()) {
        let _ = writeln!(
            r,
            "Peak RSS per EN goes from {} kB at {} ENs to {} kB at {}; wall time per virtual second from {} s to {} s.\n",
            n(Some(a.1 / 1e3)),
            a.0,
            n(Some(b.1 / 1e3)),
            b.0,
            n(Some(a.2)),
            n(Some(b.2)),
        );
    }
    let _ = writeln!(
        r,
        "| ENs | networks | virtual s | packets | wall, s | CPU, s | peak RSS, GB |\n|---|---|---|---|---|---|---|"
    );
    for (p, w) in points.iter().zip(walls) {
        let _ = writeln!(
            r,
            "| {} | {} | {} | {} | {} | {} | {:.2} |",
            p["ens"],
            p["networks"],
            n(f(&p["virtual_s"])),
            p["packets"],
            n(f(&w["wall_s"])),
            n(f(&w["process_cpu_s"])),
            f(&w["peak_resident_bytes"]).unwrap_or(f64::NAN) / 1e9,
        );
    }
    let _ = writeln!(r, "\n![crowd](plots/capacity_crowd.svg)\n");
}

/// Txs a block must hold for `offered` Tx/s at `interval` s and [`PLAN_UTILISATION`].
pub fn needed_txs(offered: f64, interval: f64) -> f64 {
    (offered * interval / PLAN_UTILISATION).ceil()
}

fn reading(r: &mut String, c: &Value, timing: &Value) {
    let points = arr(&c["ens"]);
    if points.is_empty() {
        return;
    }
    let cfg = &c["config"];
    let tx_bytes = f(&cfg["tx_bytes"]).unwrap_or(417.0);
    let _ = writeln!(r, "### What limits the scheme first\n");
    let mut sizes: Vec<u64> = points.iter().filter_map(|p| p["ens"].as_u64()).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for en in sizes.iter().filter(|&&e| e >= 10_000) {
        let at: Vec<(usize, &Value)> = points
            .iter()
            .enumerate()
            .filter(|(_, p)| p["ens"].as_u64() == Some(*en))
            .collect();
        let mut parts = Vec::new();
        for (k, p) in &at {
            let w = wall(timing, "ens", *k);
            parts.push(format!(
                "every {} s with {} blocks: load {}, {} of {} Tx/s confirmed, {}% of Txs served, {}% of Replies outdated, {} Txs evicted, SN CPU {} s per s",
                n(f(&p["move_interval_s"])),
                p["block_config"].as_str().unwrap_or("–"),
                n(load(p)),
                n(f(&p["confirmed_tx_per_s"])),
                n(f(&p["offered_tx_per_s"])),
                served_pct(p),
                n(pct(p)),
                p["mempool_evicted"],
                n(cpu_share(w, cfg)),
            ));
        }
        let chain_first = at.iter().any(|(_, p)| !keeps_up(p));
        let sn_over = at
            .iter()
            .any(|(k, _)| cpu_share(wall(timing, "ens", *k), cfg).is_some_and(|s| s > 1.0));
        let verdict = match (chain_first, sn_over) {
            (true, true) => {
                "the chain's block size limits first (full blocks, Txs waiting), and the SN's CPU (over one core) is the next limit once blocks are large enough"
            }
            (true, false) => {
                "the chain's block size limits first: full blocks confirm only what they hold while the SN stays within one core"
            }
            (false, true) => "the SN's CPU limits first: the chain keeps up, one core does not",
            (false, false) => {
                "nothing measured here limits: the chain keeps up and the SN stays within one core"
            }
        };
        let evicting: Vec<String> = at
            .iter()
            .filter(|(_, p)| keeps_up(p) && p["mempool_evicted"].as_u64().unwrap_or(0) > 0)
            .map(|(_, p)| {
                format!(
                    "{} Txs at {} s moves with {} blocks",
                    p["mempool_evicted"],
                    n(f(&p["move_interval_s"])),
                    p["block_config"].as_str().unwrap_or("–")
                )
            })
            .collect();
        let mempool = if evicting.is_empty() {
            String::new()
        } else {
            format!(
                " Even where the chain keeps up, the mempool's limit of {} Txs evicts ({}): a few seconds without a block fill it.",
                binfm_roles::chain::MempoolConfig::default().max_txs,
                evicting.join(", ")
            )
        };
        let _ = writeln!(
            r,
            "- **{en} ENs** moving {}. So at {en} ENs {verdict}.{mempool}",
            parts.join("; "),
        );
    }
    let crowd = arr(&c["crowd"]);
    let walls = arr(&timing["capacity"]["crowd"]);
    if let Some((p, w)) = crowd.iter().zip(walls).next_back()
        && let (Some(en), Some(peak), Some(wall_s), Some(virt)) = (
            f(&p["ens"]),
            f(&w["peak_resident_bytes"]),
            f(&w["wall_s"]),
            f(&p["virtual_s"]),
        )
    {
        let _ = writeln!(
            r,
            "- **The full-fabric testbed** (every EN a host with its IP stack, part (d)) took {:.2} GB and {} s of wall time per virtual second at {en:.0} ENs, {} kB per EN; at that rate 100,000 ENs would need about {:.0} GB (a linear extrapolation, not a run), so the role-level harness is what measures 100,000.",
            peak / 1e9,
            n(Some(wall_s / virt)),
            n(Some(peak / en / 1e3)),
            peak / en * 100_000.0 / 1e9,
        );
    }
    let _ = writeln!(
        r,
        "\nBlock parameters a deployment would need, from the offered loads measured above (Txs a block must hold = offered Tx/s × interval ÷ {PLAN_UTILISATION}; a {tx_bytes:.0}-byte Tx takes {:.0} bytes of a block; a block holds at most {} Txs, the deepest Merkle proof a Reply carries):\n\n| ENs | move interval | offered Tx/s | 1 s blocks | 2 s blocks | 5 s blocks |\n|---|---|---|---|---|---|",
        tx_bytes + 4.0,
        binfm_roles::chain::MAX_BLOCK_TXS
    );
    let mut seen: Vec<(u64, u64)> = Vec::new();
    for p in points {
        let (Some(en), Some(mv), Some(offered)) = (
            p["ens"].as_u64(),
            f(&p["move_interval_s"]),
            f(&p["offered_tx_per_s"]),
        ) else {
            continue;
        };
        let key = (en, mv.to_bits());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let cells: Vec<String> = [1.0, 2.0, 5.0]
            .iter()
            .map(|&i| {
                let txs = needed_txs(offered, i);
                let bytes = txs * (tx_bytes + 4.0) + 124.0;
                let over = if txs > binfm_roles::chain::MAX_BLOCK_TXS as f64 {
                    " (over the limit)"
                } else {
                    ""
                };
                format!("{txs:.0} Txs, {:.2} MB{over}", bytes / 1e6)
            })
            .collect();
        let _ = writeln!(
            r,
            "| {en} | {} s | {} | {} |",
            n(Some(mv)),
            n(Some(offered)),
            cells.join(" | ")
        );
    }
    let _ = writeln!(r);
}
