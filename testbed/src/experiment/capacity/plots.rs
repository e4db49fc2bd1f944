//! The capacity plots (SVG, plotters): confirmed Tx/s and confirmation delay against block
//! size and interval, outdated Replies against EN count, the SN's CPU and memory against EN
//! count, and the full-fabric crowd's wall time and peak memory against N.

use plotters::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// `c` halfway to white.
fn lighter(c: RGBColor) -> RGBColor {
    let l = |x: u8| x / 2 + 128;
    RGBColor(l(c.0), l(c.1), l(c.2))
}

fn err<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("drawing {}: {e}", path.display())
}

/// One line of a panel.
struct Series {
    name: String,
    color: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// One chart: axes on a log10 scale are drawn as the log of the values on a linear axis
/// (the labels show the values).
struct Panel {
    title: String,
    x_desc: String,
    y_desc: String,
    x_log: bool,
    y_log: bool,
    series: Vec<Series>,
    /// Where the legend goes (default upper left).
    legend: Option<SeriesLabelPosition>,
}

fn tf(v: f64, log: bool) -> Option<f64> {
    if log {
        (v > 0.0).then(|| v.log10())
    } else {
        Some(v)
    }
}

/// A tick label: on a log axis only at 1, 2 and 5 times a power of ten (other ticks stay
/// unlabelled), whole numbers without decimals.
fn label(v: f64, log: bool) -> String {
    let x = if log {
        let m = 10f64.powf(v - v.floor());
        let Some(k) = [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .find(|&k| (m / k - 1.0).abs() < 0.025)
        else {
            return String::new();
        };
        k * 10f64.powf(v.floor())
    } else {
        v
    };
    if (x - x.round()).abs() < 1e-6 * x.abs().max(1.0) && x.abs() >= 1.0 || x == 0.0 {
        format!("{:.0}", x.round())
    } else if x.abs() >= 10.0 {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.1}")
    } else {
        let digits = (-x.abs().log10()).ceil().max(1.0) as usize;
        format!("{x:.digits$}")
    }
}

fn range(values: impl Iterator<Item = f64>, log: bool, from_zero: bool) -> (f64, f64) {
    let v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if log {
        let pad = ((hi - lo) * 0.08).max(0.1);
        (lo - pad, hi + pad)
    } else {
        let lo = if from_zero { lo.min(0.0) } else { lo };
        let span = (hi - lo).max(1e-9);
        (lo, hi + span * 0.12)
    }
}

fn draw(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    p: &Panel,
    path: &Path,
) -> anyhow::Result<()> {
    let pts: Vec<Vec<(f64, f64)>> = p
        .series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .filter_map(|&(x, y)| Some((tf(x, p.x_log)?, tf(y, p.y_log)?)))
                .collect()
        })
        .collect();
    let (x0, x1) = range(pts.iter().flatten().map(|q| q.0), p.x_log, !p.x_log);
    let (y0, y1) = range(pts.iter().flatten().map(|q| q.1), p.y_log, !p.y_log);
    let (x0, x1) = if p.x_log {
        (x0, x1)
    } else {
        (x0, x1 + (x1 - x0) * 0.02)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(38)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err(path))?;
    let (xl, yl) = (p.x_log, p.y_log);
    // Log axes get many ticks so that 1, 2 and 5 times each power of ten is among them.
    chart
        .configure_mesh()
        .x_labels(if xl { 40 } else { 10 })
        .y_labels(if yl { 40 } else { 10 })
        .light_line_style(WHITE)
        .x_desc(p.x_desc.as_str())
        .y_desc(p.y_desc.as_str())
        .x_label_formatter(&|v| label(*v, xl))
        .y_label_formatter(&|v| label(*v, yl))
        .draw()
        .map_err(err(path))?;
    for (s, pts) in p.series.iter().zip(pts) {
        if pts.is_empty() {
            continue;
        }
        let style = s.color.stroke_width(2);
        let drawn = if s.dashed {
            chart
                .draw_series(DashedLineSeries::new(pts.clone(), 7, 5, style))
                .map_err(err(path))?
        } else {
            chart
                .draw_series(LineSeries::new(pts.clone(), style))
                .map_err(err(path))?
        };
        let dashed = s.dashed;
        drawn.label(s.name.clone()).legend(move |(x, y)| {
            if dashed {
                PathElement::new(vec![(x, y), (x + 8, y)], style)
            } else {
                PathElement::new(vec![(x, y), (x + 20, y)], style)
            }
        });
        let color = s.color;
        chart
            .draw_series(pts.iter().map(|&q| Circle::new(q, 3, color.filled())))
            .map_err(err(path))?;
    }
    chart
        .configure_series_labels()
        .position(p.legend.clone().unwrap_or(SeriesLabelPosition::UpperLeft))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(err(path))?;
    Ok(())
}

/// Writes the panels side by side (`cols` columns) under a title.
fn figure(path: &Path, title: &str, panels: &[Panel], cols: usize) -> anyhow::Result<()> {
    let rows = panels.len().div_ceil(cols.max(1)).max(1);
    let w = 560 * cols.max(1) as u32;
    let h = 60 + 440 * rows as u32;
    let root = SVGBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let (top, body) = root.split_vertically(50);
    top.titled(title, ("sans-serif", 20)).map_err(err(path))?;
    let areas = body.split_evenly((rows, cols.max(1)));
    for (area, p) in areas.iter().zip(panels) {
        draw(area, p, path)?;
    }
    root.present().map_err(err(path))?;
    Ok(())
}

fn f(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite())
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// Groups points by a key, keeping the order of first appearance.
fn groups(points: &[Value], key: impl Fn(&Value) -> String) -> Vec<(String, Vec<(usize, &Value)>)> {
    let mut out: Vec<(String, Vec<(usize, &Value)>)> = Vec::new();
    for (i, p) in points.iter().enumerate() {
        let k = key(p);
        match out.iter_mut().find(|(g, _)| *g == k) {
            Some((_, v)) => v.push((i, p)),
            None => out.push((k, vec![(i, p)])),
        }
    }
    out
}

/// Writes every capacity plot the results hold into `out/plots/`; returns the files.
pub fn write(results: &Value, timing: &Value, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let c = &results["beyond"]["capacity"];
    if c.is_null() {
        return Ok(Vec::new());
    }
    let dir = out.join("plots");
    std::fs::create_dir_all(&dir)?;
    let mut files = Vec::new();
    let tw = &timing["capacity"];
    let dur = f(&c["config"]["duration_s"]).unwrap_or(1.0);
    if !arr(&c["blocks"]).is_empty() {
        let p = dir.join("capacity_blocks.svg");
        blocks(arr(&c["blocks"]), &p)?;
        files.push(p);
    }
    if !arr(&c["ens"]).is_empty() {
        let p = dir.join("capacity_outdated.svg");
        outdated(arr(&c["ens"]), &p)?;
        files.push(p);
        let p = dir.join("capacity_sn.svg");
        sn(arr(&c["ens"]), arr(&tw["ens"]), dur, &p)?;
        files.push(p);
    }
    if !arr(&c["crowd"]).is_empty() {
        let p = dir.join("capacity_crowd.svg");
        crowd(arr(&c["crowd"]), arr(&tw["crowd"]), &p)?;
        files.push(p);
    }
    Ok(files)
}

fn blocks(points: &[Value], path: &Path) -> anyhow::Result<()> {
    let by_interval = groups(points, |p| {
        format!("{} s blocks", f(&p["block_interval_s"]).unwrap_or(0.0))
    });
    let offered = points
        .iter()
        .filter_map(|p| f(&p["offered_tx_per_s"]))
        .fold(0.0, f64::max);
    let xs: Vec<f64> = points
        .iter()
        .filter_map(|p| f(&p["txs_per_block"]))
        .collect();
    let (xmin, xmax) = range(xs.iter().copied(), false, true);
    let mut tx = Vec::new();
    let mut delay = Vec::new();
    for (g, (name, pts)) in by_interval.iter().enumerate() {
        let color = COLORS[g % COLORS.len()];
        let xy = |k: &str, sub: Option<&str>| -> Vec<(f64, f64)> {
            pts.iter()
                .filter_map(|(_, p)| {
                    let v = match sub {
                        Some(s) => f(&p[k][s])? / 1000.0,
                        None => f(&p[k])?,
                    };
                    Some((f(&p["txs_per_block"])?, v))
                })
                .collect()
        };
        tx.push(Series {
            name: format!("{name}: confirmed"),
            color,
            dashed: false,
            points: xy("confirmed_tx_per_s", None),
        });
        tx.push(Series {
            name: format!("{name}: chain capacity"),
            color,
            dashed: true,
            points: xy("chain_tx_per_s", None),
        });
        delay.push(Series {
            name: format!("{name}: median"),
            color,
            dashed: false,
            points: xy("confirm_delay_ms", Some("median")),
        });
        delay.push(Series {
            name: format!("{name}: p99"),
            color,
            dashed: true,
            points: xy("confirm_delay_ms", Some("p99")),
        });
    }
    tx.push(Series {
        name: "offered".into(),
        color: BLACK,
        dashed: true,
        points: vec![(xmin.max(0.0), offered), (xmax, offered)],
    });
    let panels = [
        Panel {
            title: "Confirmed Tx/s".into(),
            x_desc: "Txs a block holds".into(),
            y_desc: "Tx/s".into(),
            x_log: false,
            y_log: false,
            series: tx,
            legend: None,
        },
        Panel {
            title: "Confirmation delay (TxSubmit to block)".into(),
            x_desc: "Txs a block holds".into(),
            y_desc: "s (log)".into(),
            x_log: false,
            y_log: true,
            series: delay,
            legend: None,
        },
    ];
    figure(
        path,
        &format!("(a) Block size and interval at {offered:.0} Tx/s offered"),
        &panels,
        2,
    )
}

/// Series per (block configuration, move interval): colour by blocks, dashes for the
/// second and later move intervals.
fn ens_series(
    points: &[Value],
    y: impl Fn(usize, &Value) -> Option<f64>,
    suffix: &str,
) -> Vec<Series> {
    let blocks = groups(points, |p| {
        p["block_config"].as_str().unwrap_or("?").to_owned()
    });
    let moves = groups(points, |p| {
        format!("{}", f(&p["move_interval_s"]).unwrap_or(0.0))
    });
    let mut out = Vec::new();
    for (b, (bname, _)) in blocks.iter().enumerate() {
        for (m, (mname, _)) in moves.iter().enumerate() {
            let pts: Vec<(f64, f64)> = points
                .iter()
                .enumerate()
                .filter(|(_, p)| {
                    p["block_config"].as_str() == Some(bname.as_str())
                        && format!("{}", f(&p["move_interval_s"]).unwrap_or(0.0)) == *mname
                })
                .filter_map(|(i, p)| Some((f(&p["ens"])?, y(i, p)?)))
                .collect();
            out.push(Series {
                name: format!("{bname}, moves every {mname} s{suffix}"),
                color: COLORS[b % COLORS.len()],
                dashed: m > 0,
                points: pts,
            });
        }
    }
    out
}

fn outdated(points: &[Value], path: &Path) -> anyhow::Result<()> {
    let share = |_: usize, p: &Value| {
        let q = f(&p["queries"])?;
        (q > 0.0).then(|| f(&p["replies_outdated"]).unwrap_or(0.0) / q * 100.0)
    };
    // The Txs offered during the measurement over what the blocks mined in it could hold.
    let load = |_: usize, p: &Value| {
        let room = f(&p["measure_blocks"])? * f(&p["txs_per_block"])?;
        (room > 0.0).then(|| f(&p["moves"]).unwrap_or(0.0) / room)
    };
    let panels = [
        Panel {
            title: "Replies naming an endpoint the EN has left".into(),
            x_desc: "ENs (log)".into(),
            y_desc: "% of Replies".into(),
            x_log: true,
            y_log: false,
            series: ens_series(points, share, ""),
            legend: None,
        },
        Panel {
            title: "Load on the chain (1 and more: it falls behind)".into(),
            x_desc: "ENs (log)".into(),
            y_desc: "Txs offered / what the blocks mined hold (log)".into(),
            x_log: true,
            y_log: true,
            series: ens_series(points, load, ""),
            legend: Some(SeriesLabelPosition::LowerRight),
        },
    ];
    figure(
        path,
        "(b) Outdated Replies against EN count and move interval (1 s blocks)",
        &panels,
        2,
    )
}

fn sn(points: &[Value], walls: &[Value], dur: f64, path: &Path) -> anyhow::Result<()> {
    let w = |i: usize| walls.get(i).unwrap_or(&Value::Null);
    let per_tx = |i: usize, _: &Value| f(&w(i)["sn_tx_cpu_us"]["median"]);
    let share = |i: usize, _: &Value| Some(f(&w(i)["sn_measure_cpu_s"])? / dur);
    let accounted = |_: usize, p: &Value| Some(f(&p["sn_accounted_bytes"])? / 1e6);
    let rss = |i: usize, _: &Value| Some(f(&w(i)["sn_resident_bytes"])? / 1e6);
    let mut memory = ens_series(points, accounted, ": accounted");
    for mut s in ens_series(points, rss, ": RSS growth") {
        s.color = lighter(s.color);
        memory.push(s);
    }
    let panels = [
        Panel {
            title: "SN CPU per Tx (median)".into(),
            x_desc: "ENs (log)".into(),
            y_desc: "µs".into(),
            x_log: true,
            y_log: false,
            series: ens_series(points, per_tx, ""),
            legend: None,
        },
        Panel {
            title: "SN CPU per second of measurement".into(),
            x_desc: "ENs (log)".into(),
            y_desc: "s / s (log; 1 = one core)".into(),
            x_log: true,
            y_log: true,
            series: ens_series(points, share, ""),
            legend: Some(SeriesLabelPosition::LowerRight),
        },
        Panel {
            title: "SN memory".into(),
            x_desc: "ENs (log)".into(),
            y_desc: "MB (log)".into(),
            x_log: true,
            y_log: true,
            series: memory,
            legend: Some(SeriesLabelPosition::LowerRight),
        },
    ];
    figure(path, "(c) SN CPU and memory against EN count", &panels, 3)
}

fn crowd(points: &[Value], walls: &[Value], path: &Path) -> anyhow::Result<()> {
    let xy = |k: &str, scale: f64| -> Vec<(f64, f64)> {
        points
            .iter()
            .zip(walls)
            .filter_map(|(p, w)| Some((f(&p["ens"])?, f(&w[k])? / scale)))
            .collect()
    };
    let panels = [
        Panel {
            title: "Wall time of the run".into(),
            x_desc: "ENs".into(),
            y_desc: "s".into(),
            x_log: false,
            y_log: false,
            series: vec![
                Series {
                    name: "wall".into(),
                    color: COLORS[0],
                    dashed: false,
                    points: xy("wall_s", 1.0),
                },
                Series {
                    name: "CPU".into(),
                    color: COLORS[1],
                    dashed: true,
                    points: xy("process_cpu_s", 1.0),
                },
            ],
            legend: None,
        },
        Panel {
            title: "Peak resident memory (VmHWM)".into(),
            x_desc: "ENs".into(),
            y_desc: "GB".into(),
            x_log: false,
            y_log: false,
            series: vec![Series {
                name: "peak RSS".into(),
                color: COLORS[0],
                dashed: false,
                points: xy("peak_resident_bytes", 1e9),
            }],
            legend: None,
        },
    ];
    figure(
        path,
        "(d) The full-fabric crowd against N (one child process per N)",
        &panels,
        2,
    )
}
