//! `report.md`: the paper's table beside ours first, then how each figure was measured, then
//! what the paper left out.

use super::PAPER;
use super::stats::median;
use crate::topology::Topology;
use serde_json::Value;
use std::fmt::Write as _;

fn num(v: Option<f64>) -> String {
    match v {
        Some(x) if (x - x.round()).abs() < 0.05 => format!("{x:.0}"),
        Some(x) => format!("{x:.1}"),
        None => "–".to_owned(),
    }
}

fn cell(s: &Value) -> String {
    let m = median(s);
    let (p5, p95) = (s["p5"].as_f64(), s["p95"].as_f64());
    match (m, p5, p95) {
        (Some(m), Some(a), Some(b)) if (a - b).abs() < 1e-9 => {
            format!("{} (all runs)", num(Some(m)))
        }
        (Some(m), Some(a), Some(b)) => {
            format!("{} ({}–{})", num(Some(m)), num(Some(a)), num(Some(b)))
        }
        _ => "–".to_owned(),
    }
}

fn delta(measured: Option<f64>, paper: f64) -> String {
    match measured {
        Some(m) => format!("{:+.1}%", (m - paper) / paper * 100.0),
        None => "–".to_owned(),
    }
}

/// The comparison table (Markdown; also printed by `binfm experiment`).
pub fn table(results: &Value, timing: &Value) -> String {
    let models = &results["models"];
    if models.is_null() {
        return "(the paper part was not run)\n".to_owned();
    }
    let runs = models["binfm"]["pre_call_ms"]["n"].as_u64().unwrap_or(0);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| metric | BINFM paper | BINFM measured, median (p5–p95) | vs paper | vertical paper | vertical measured, median (p5–p95) | vs paper |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|");
    for (key, pb, pv) in PAPER {
        let label = match key {
            "pre_call_ms" => "pre-call, ms (Table 1)",
            "mid_call_ms" => "mid-call, ms (Table 2)",
            "rekey_ms" => "key renewal, ms (Table 3)",
            _ => "signalling, S_I (sec. 4.3)",
        };
        let b = &models["binfm"][key];
        let v = &models["vertical"][key];
        let _ = writeln!(
            t,
            "| {label} | {} | {} | {} | {} | {} | {} |",
            num(Some(pb)),
            cell(b),
            delta(median(b), pb),
            num(Some(pv)),
            cell(v),
            delta(median(v), pv)
        );
    }
    let dh = timing["dh_keygen_plus_agree_ms_median"].as_f64();
    let _ = writeln!(
        t,
        "\n{runs} runs per model. Pre-call ends where the paper's sums end: BINFM when the callee decrypts the caller's first frame (step (g)), vertical when the caller holds the key (step (11)). With one end point for both: caller holds the key {} / {} ms; audio flowing both ways {} / {} ms. These figures charge no compute time (below, with it): each DH key generation + agreement costs {} ms of CPU here (median), which a live run adds per side.",
        num(median(&models["binfm"]["caller_has_key_ms"])),
        num(median(&models["vertical"]["caller_has_key_ms"])),
        num(median(&models["binfm"]["first_audio_both_ways_ms"])),
        num(median(&models["vertical"]["first_audio_both_ways_ms"])),
        dh.map_or("–".to_owned(), |d| format!("{d:.2}")),
    );
    with_compute(&mut t, results);
    t
}

/// What `work` costs by a `table_ms` (operation -> ms) of results.json.
fn cost_ms(work: &binfm_roles::Work, table_ms: &Value) -> f64 {
    work.iter()
        .map(|(op, n)| f64::from(n) * table_ms[op.name()].as_f64().unwrap_or(0.0))
        .fold(0.0, |a, b| a + b)
}

/// The paper's figures once more with compute time charged (`with_compute`), beside the
/// exact ones, and what the table charges on each figure's critical path.
fn with_compute(t: &mut String, results: &Value) {
    let wc = &results["with_compute"];
    if wc.is_null() {
        return;
    }
    let models = &results["models"];
    let table_ms = &wc["table_ms"];
    let ops: Vec<String> = binfm_roles::Op::ALL
        .iter()
        .map(|op| format!("{} {} ms", op.name(), num3(table_ms[op.name()].as_f64())))
        .collect();
    let _ = writeln!(
        t,
        "
With compute time charged in virtual time ({} runs per model; {}): median, and the difference from the exact figure beside what the compute table charges on the figure's critical path.
",
        wc["runs"].as_u64().unwrap_or(0),
        ops.join(", ")
    );
    let _ = writeln!(
        t,
        "| metric | BINFM exact | BINFM with compute | difference (critical path) | vertical exact | vertical with compute | difference (critical path) |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|");
    for (key, label) in [
        ("pre_call_ms", "pre-call, ms"),
        ("mid_call_ms", "mid-call, ms"),
        ("rekey_ms", "key renewal, ms"),
    ] {
        let mut cells = Vec::new();
        for model in [
            crate::topology::Model::Binfm,
            crate::topology::Model::Vertical,
        ] {
            let exact = median(&models[model.as_str()][key]);
            let charged = median(&wc[model.as_str()][key]);
            let path = super::critical_path(model, key).map(|w| cost_ms(&w, table_ms));
            let diff = match (exact, charged) {
                (Some(a), Some(b)) => format!("{:+.3}", b - a),
                _ => "–".to_owned(),
            };
            cells.push(format!(
                "{} | {} | {diff} ({})",
                num3(exact),
                num3(charged),
                path.map_or("–".to_owned(), |p| format!("{p:+.3}"))
            ));
        }
        let _ = writeln!(t, "| {label} | {} | {} |", cells[0], cells[1]);
    }
    let _ = writeln!(
        t,
        "
Critical paths: BINFM pre-call = 2 query + 3 verify + 1 sign + 4 dh_keygen + 6 dh_agree (the caller's SN, the caller on the Reply, the callee on the Request, the callee's SN, the callee on the Reply, the caller on the Response); vertical pre-call = 2 dh_keygen + 2 dh_agree; BINFM rekey = the peer's dh_agree + dh_keygen; vertical rekey = dh_keygen + 2 dh_agree; mid-call = nothing (events are logged when their input's work is done, so the mover's new-Tx signature precedes its lease event). A difference beyond the critical path is an input that waited for its node's CPU (a super node busy with a block, say)."
    );
}

/// A figure with up to three decimals.
fn num3(v: Option<f64>) -> String {
    match v {
        Some(x) => {
            let s = format!("{x:.3}");
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        }
        None => "–".to_owned(),
    }
}

const METHOD: &str = "## How each figure was measured

Every figure is the difference of two event times of a run, or a count taken from its capture; \
none is computed from the paper's formulas. Both models run on the same topology file, the \
same seeds and the same links: the super nodes idle in vertical runs, the domain servers in \
BINFM runs. **Pre-call** starts when the caller starts the call (its first Query, or its first \
STUN request, leaves at that instant) and ends at the paper's end point for the model (BINFM: \
the callee decrypts the caller's first audio frame, `call.first_frame`; vertical: the caller \
holds the session key, `vertical.active`); the two rows below the table use one end point for \
both. **Mid-call** runs from the moved EN's new DHCP lease (`dhcp.ack` after `node.moved`) until \
the peer accepts its Handover Request or ReInvite and sends to the new address. **Key renewal** \
runs from the first message of the rekey until both ends hold the new key. **Signalling** \
counts, in `capture.pcapng`, every signalling datagram of the call setup (retransmissions \
included) between the call's start and the pre-call end point, weighs each by the path it \
crossed (EN↔own server S_I, EN↔EN S_II = 5 S_I, location server↔location server half an S_III \
per message, S_III = 10 S_I, because one resolution is a request and its answer), and also adds \
its IP bytes on every link it crossed; for BINFM the caller's first SRTP frame counts as step \
(g). The mid-call move and the key renewal are counted the same way, from the new lease (or the \
rekey's first message) until 1 s after the procedure's end point, so the acknowledgements are \
in: BINFM's new Tx, its relay among super nodes (no paper unit: counted in bytes only) and the \
Handover Request or Key Renewal; the vertical model's STUN, Register and ReInvite, or its key \
exchange. Any EN↔SN or EN↔domain-server message counts as S_I, also after a move. **Handover loss** counts the frames of both directions that never arrived and were due \
within 1 s of the new lease. Medians and p5/p95 are nearest-rank over the runs; runs differ only \
by seed (jitter, loss, DHCP ids, nonces, mining).
";

/// The whole report.
pub fn markdown(topo: &Topology, results: &Value, timing: &Value, table: &str) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "# BINFM vs the vertical model on `{}`\n\n{}",
        topo.path.display(),
        table
    );
    if results["interrupted"].as_bool() == Some(true) {
        let _ = writeln!(
            r,
            "**Interrupted by Ctrl-C: the figures cover only the runs that finished.**\n"
        );
    }
    let _ = writeln!(r, "![paper vs measured](plots/comparison.svg)\n");
    let _ = writeln!(r, "{METHOD}");
    let models = &results["models"];
    if !models.is_null() {
        let _ = writeln!(r, "## More from the same runs\n");
        let _ = writeln!(r, "| metric | BINFM | vertical |\n|---|---|---|");
        for (k, label) in [
            ("caller_has_key_ms", "caller holds the session key, ms"),
            ("first_audio_both_ways_ms", "audio decrypted both ways, ms"),
            (
                "move_to_registered_ms",
                "move until the new registration is acknowledged, ms",
            ),
            ("signalling_messages", "call setup: signalling messages"),
            (
                "signalling_bytes_x_links",
                "call setup: bytes × links crossed",
            ),
            ("handover_signalling_s_i", "mid-call move: signalling, S_I"),
            (
                "handover_signalling_messages",
                "mid-call move: signalling messages",
            ),
            (
                "handover_signalling_bytes_x_links",
                "mid-call move: bytes × links crossed",
            ),
            ("rekey_signalling_s_i", "key renewal: signalling, S_I"),
            (
                "rekey_signalling_messages",
                "key renewal: signalling messages",
            ),
            (
                "rekey_signalling_bytes_x_links",
                "key renewal: bytes × links crossed",
            ),
            (
                "handover_lost_frames",
                "audio frames lost around the handover",
            ),
            ("total_lost_frames", "audio frames lost in the whole call"),
        ] {
            let _ = writeln!(
                r,
                "| {label} | {} | {} |",
                cell(&models["binfm"][k]),
                cell(&models["vertical"][k])
            );
        }
        let _ = writeln!(
            r,
            "\n![one call](plots/timeline.svg)\n\n![call setup CDF](plots/setup_cdf.svg)\n"
        );
    }
    let beyond = &results["beyond"];
    if let Some(points) = beyond["block_interval"].as_array() {
        let _ = writeln!(
            r,
            "## (a) After a move, when can a new caller find the EN? (BINFM)\n\nThe EN moves; the peer Queries its nearest SN every 50 ms; the EN is found when a Reply carries its new Tx (Replies carry confirmed Txs only). Median (p5–p95) over the runs, ms after the move.\n\n| block interval | new lease | Tx acknowledged | Tx in a block | found by a Query |\n|---|---|---|---|---|"
        );
        for p in points {
            let _ = writeln!(
                r,
                "| {} s | {} | {} | {} | {} |",
                p["block_interval_s"],
                cell(&p["dhcp_ms"]),
                cell(&p["registered_ms"]),
                cell(&p["first_confirmed_ms"]),
                cell(&p["findable_ms"])
            );
        }
        let _ = writeln!(
            r,
            "\nIn the vertical model the home location server answers with the new contact as soon as the Register arrives (\"move until the new registration is acknowledged\" above), at the price of trusting an unauthenticated registrar.\n\n![block interval](plots/block_interval.svg)\n"
        );
    } else if let Some(s) = beyond["block_interval"]["skipped"].as_str() {
        let _ = writeln!(r, "## (a) Block interval\n\nSkipped: {s}.\n");
    }
    if let Some(points) = beyond["loss"].as_array() {
        let _ = writeln!(
            r,
            "## (b), (d) Loss on every link\n\nThe paper's scenario with the same loss on every segment and path (DHCP, signalling and audio all suffer). Median (p5–p95) over the runs.\n\n| loss | model | calls set up | pre-call, ms | mid-call, ms | key renewal, ms | frames lost around the handover | frames lost in the call |\n|---|---|---|---|---|---|---|---|"
        );
        for p in points {
            for m in ["binfm", "vertical"] {
                let x = &p[m];
                if x.is_null() {
                    continue;
                }
                let _ = writeln!(
                    r,
                    "| {}% | {m} | {}/{} | {} | {} | {} | {} | {} |",
                    p["loss"].as_f64().unwrap_or(0.0) * 100.0,
                    x["calls_completed"],
                    x["runs"],
                    cell(&x["pre_call_ms"]),
                    cell(&x["mid_call_ms"]),
                    cell(&x["rekey_ms"]),
                    cell(&x["handover_lost_frames"]),
                    cell(&x["total_lost_frames"])
                );
            }
        }
        let _ = writeln!(r);
    }
    if let Some(points) = beyond["scale"].as_array() {
        let _ = writeln!(
            r,
            "## (c) Query latency and SN memory as ENs grow\n\nOne SN and N ENs in a role-level harness in virtual time (`docs/scale.md`): every EN registers, then moves on average every 30 s (a new Tx each time) while a prober Queries random registered ENs at 50/s for 60 s. \"Outdated\" Replies name an endpoint the EN has already left (its newer Tx was not yet in a block).\n\n| ENs | Txs offered / confirmed per s | Tx confirmation, median / p99 ms | Replies outdated | blocks | Query RTT (virtual), median / p99 ms | SN accounted memory, MB |\n|---|---|---|---|---|---|---|"
        );
        for p in points {
            let queries = p["queries"].as_f64().unwrap_or(0.0);
            let outdated = p["replies_outdated"].as_f64().unwrap_or(0.0);
            let _ = writeln!(
                r,
                "| {} | {} / {} | {} / {} | {:.1}% | {} | {} / {} | {} |",
                p["ens"],
                num(p["offered_tx_per_s"].as_f64()),
                num(p["confirmed_tx_per_s"].as_f64()),
                num(p["confirm_delay_ms"]["median"].as_f64()),
                num(p["confirm_delay_ms"]["p99"].as_f64()),
                if queries > 0.0 {
                    outdated / queries * 100.0
                } else {
                    0.0
                },
                p["blocks"],
                num(p["query_rtt_ms"]["median"].as_f64()),
                num(p["query_rtt_ms"]["p99"].as_f64()),
                num(p["sn_accounted_bytes"].as_f64().map(|b| b / 1e6)),
            );
        }
        if let Some(w) = timing["scale"].as_array() {
            let _ = writeln!(
                r,
                "\nMeasured on this machine (wall clock; in `timing.json`, not in `results.json`). Query latency = the virtual round trip plus the SN's measured handling time of that Query (the SN as a single server). RSS growth counts the SN and the crowd (the allocator reuses memory freed by earlier parts, so small points can show 0); the SN's own structures are the \"accounted\" column above.\n\n| ENs | SN CPU per Query, median / p99 µs | Query latency, median / p99 ms | RSS growth over the point, MB | process RSS after it, MB | wall, s |\n|---|---|---|---|---|---|"
            );
            for p in w {
                let _ = writeln!(
                    r,
                    "| {} | {} / {} | {:.3} / {:.3} | {} | {} | {} |",
                    p["ens"],
                    num(p["sn_query_cpu_us"]["median"].as_f64()),
                    num(p["sn_query_cpu_us"]["p99"].as_f64()),
                    p["query_latency_ms"]["median"].as_f64().unwrap_or(f64::NAN),
                    p["query_latency_ms"]["p99"].as_f64().unwrap_or(f64::NAN),
                    num(p["sn_resident_bytes"].as_f64().map(|b| b / 1e6)),
                    num(p["process_resident_bytes"].as_f64().map(|b| b / 1e6)),
                    num(p["wall_s"].as_f64()),
                );
            }
        }
        let _ = writeln!(r);
    }
    r.push_str(&super::capacity::markdown(results, timing));
    let _ = writeln!(
        r,
        "## Files\n\n- `results.json`: every metric of every run and the summaries (byte-identical for the same topology and seeds)\n- `timing.json`: wall-clock figures of this machine\n- `runs/<model>/seed-<n>/`: each run's events, results, and for the first seed its capture and the call as WAV\n- `plots/*.svg`"
    );
    r
}
