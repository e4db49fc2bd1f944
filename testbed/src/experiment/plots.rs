//! SVG plots (plotters): the paper's figures beside ours, one call's timeline, the CDF of
//! call-setup latency, and the block-interval sweep.

use super::PAPER;
use super::stats::median;
use crate::topology::Topology;
use plotters::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

const BINFM: RGBColor = RGBColor(31, 119, 180);
const VERTICAL: RGBColor = RGBColor(214, 39, 40);

fn light(c: RGBColor) -> RGBAColor {
    c.mix(0.35)
}

fn err<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("drawing {}: {e}", path.display())
}

/// Writes every plot the results allow into `out/plots/`; returns the files.
pub fn write_all(results: &Value, _topo: &Topology, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = out.join("plots");
    std::fs::create_dir_all(&dir)?;
    let mut files = Vec::new();
    if !results["models"].is_null() {
        let p = dir.join("comparison.svg");
        comparison(results, &p)?;
        files.push(p);
        let p = dir.join("timeline.svg");
        timeline(results, &p)?;
        files.push(p);
        let p = dir.join("setup_cdf.svg");
        setup_cdf(results, &p)?;
        files.push(p);
    }
    if results["beyond"]["block_interval"].is_array() {
        let p = dir.join("block_interval.svg");
        block_interval(results, &p)?;
        files.push(p);
    }
    Ok(files)
}

/// Four bar groups (pre-call, mid-call, key renewal, signalling), each with the paper's and
/// the measured median for both models; whiskers show p5-p95 of the runs.
fn comparison(results: &Value, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1100, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let (title, body) = root.split_vertically(50);
    title
        .titled(
            "BINFM vs vertical model: paper (light) and measured (dark, p5-p95 whiskers)",
            ("sans-serif", 22),
        )
        .map_err(err(path))?;
    let panels = body.split_evenly((2, 2));
    for (panel, (key, pb, pv)) in panels.iter().zip(PAPER) {
        let unit = if key == "signalling_s_i" { "S_I" } else { "ms" };
        let caption = match key {
            "pre_call_ms" => "pre-call (Table 1)",
            "mid_call_ms" => "mid-call (Table 2)",
            "rekey_ms" => "key renewal (Table 3)",
            _ => "signalling (section 4.3)",
        };
        let b = &results["models"]["binfm"][key];
        let v = &results["models"]["vertical"][key];
        let top = [
            pb,
            pv,
            b["p95"].as_f64().unwrap_or(0.0),
            v["p95"].as_f64().unwrap_or(0.0),
        ]
        .into_iter()
        .fold(1.0f64, f64::max)
            * 1.2;
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{caption}, {unit}"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(55)
            .build_cartesian_2d((0u32..3).into_segmented(), 0.0f64..top)
            .map_err(err(path))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => match i {
                    0 => "BINFM paper",
                    1 => "BINFM measured",
                    2 => "vertical paper",
                    3 => "vertical measured",
                    _ => "",
                }
                .to_owned(),
                _ => String::new(),
            })
            .y_desc(unit)
            .draw()
            .map_err(err(path))?;
        let bars = [
            (0u32, Some(pb), light(BINFM), None),
            (1, median(b), BINFM.to_rgba(), Some(b)),
            (2, Some(pv), light(VERTICAL), None),
            (3, median(v), VERTICAL.to_rgba(), Some(v)),
        ];
        for (x, h, color, spread) in bars {
            let Some(h) = h else { continue };
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(x), 0.0),
                    (SegmentValue::Exact(x + 1), h),
                ],
                color.filled(),
            );
            bar.set_margin(0, 0, 14, 14);
            chart.draw_series(std::iter::once(bar)).map_err(err(path))?;
            if let Some(s) = spread
                && let (Some(lo), Some(hi)) = (s["p5"].as_f64(), s["p95"].as_f64())
            {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![
                            (SegmentValue::CenterOf(x), lo),
                            (SegmentValue::CenterOf(x), hi),
                        ],
                        BLACK.stroke_width(2),
                    )))
                    .map_err(err(path))?;
            }
        }
    }
    root.present().map_err(err(path))?;
    Ok(())
}

/// Frames decrypted per 100 ms in both directions of the first run's call, per model, with
/// the move and the rekey marked.
fn timeline(results: &Value, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1100, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let panels = root.split_evenly((2, 1));
    for (panel, model) in panels.iter().zip(["binfm", "vertical"]) {
        let call = &results["first_run"][model];
        let Some(audio) = call["audio"].as_object() else {
            continue;
        };
        let len = audio
            .values()
            .filter_map(|d| d["received_per_100ms"].as_array().map(Vec::len))
            .max()
            .unwrap_or(1);
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{model}: frames decrypted per 100 ms (dashed: move, rekey)"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(0.0f64..len as f64 / 10.0, 0.0f64..7.0)
            .map_err(err(path))?;
        chart
            .configure_mesh()
            .x_desc("run time, s")
            .y_desc("frames")
            .draw()
            .map_err(err(path))?;
        for (i, (dir, d)) in audio.iter().enumerate() {
            let color = if i == 0 { BINFM } else { VERTICAL };
            let pts: Vec<(f64, f64)> = d["received_per_100ms"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(k, v)| (k as f64 / 10.0, v.as_f64().unwrap_or(0.0)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(err(path))?
                .label(dir.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        let marks = [
            call["handovers"][0]["address_at_ms"].as_f64(),
            call["rekeys"][0]["sent_at_ms"].as_f64(),
        ];
        for t in marks.into_iter().flatten() {
            let x = t / 1000.0;
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(x, 0.0), (x, 7.0)],
                    6,
                    4,
                    BLACK.stroke_width(1),
                ))
                .map_err(err(path))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err(path))?;
    }
    root.present().map_err(err(path))?;
    Ok(())
}

fn cdf_points(mut v: Vec<f64>) -> Vec<(f64, f64)> {
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let mut pts = Vec::new();
    for (i, x) in v.iter().enumerate() {
        pts.push((*x, i as f64 / n));
        pts.push((*x, (i + 1) as f64 / n));
    }
    pts
}

/// CDF of the call-setup latency (pre-call, each model's paper end point) over the runs;
/// with the loss sweep, also at 5% loss on every link.
fn setup_cdf(results: &Value, path: &Path) -> anyhow::Result<()> {
    let mut series: Vec<(String, RGBColor, Vec<f64>)> = Vec::new();
    let collect = |rows: &Value| -> Vec<f64> {
        rows.as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["pre_call_ms"].as_f64())
            .collect()
    };
    for (m, c) in [("binfm", BINFM), ("vertical", VERTICAL)] {
        series.push((m.to_owned(), c, collect(&results["models"][m]["per_run"])));
        if let Some(p) = results["beyond"]["loss"].as_array().and_then(|a| a.last()) {
            let v = collect(&p[m]["per_run"]);
            if !v.is_empty() {
                let loss = p["loss"].as_f64().unwrap_or(0.0) * 100.0;
                series.push((format!("{m}, {loss}% loss"), c, v));
            }
        }
    }
    let max = series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .fold(1.0f64, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (900, 550)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "CDF of call-setup latency over the runs",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0f64..max, 0.0f64..1.0)
        .map_err(err(path))?;
    chart
        .configure_mesh()
        .x_desc("pre-call latency, ms")
        .y_desc("fraction of runs")
        .draw()
        .map_err(err(path))?;
    for (name, color, v) in series {
        if v.is_empty() {
            continue;
        }
        let lossy = name.contains("loss");
        let style = if lossy {
            color.mix(0.5).stroke_width(2)
        } else {
            color.stroke_width(3)
        };
        chart
            .draw_series(LineSeries::new(cdf_points(v), style))
            .map_err(err(path))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}

/// Sweep (a): time until a moved EN is found, per block interval (median, p5-p95).
fn block_interval(results: &Value, path: &Path) -> anyhow::Result<()> {
    let points = results["beyond"]["block_interval"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let rows: Vec<(f64, f64, f64, f64)> = points
        .iter()
        .filter_map(|p| {
            let s = &p["findable_ms"];
            Some((
                p["block_interval_s"].as_f64()?,
                s["median"].as_f64()?,
                s["p5"].as_f64()?,
                s["p95"].as_f64()?,
            ))
        })
        .collect();
    let top = rows.iter().map(|r| r.3).fold(1.0f64, f64::max) * 1.2;
    let root = SVGBackend::new(path, (900, 550)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "After a move: time until a Query finds the new Tx (BINFM)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0f64..2.25, 0.0f64..top)
        .map_err(err(path))?;
    chart
        .configure_mesh()
        .x_desc("block interval, s")
        .y_desc("ms after the move")
        .draw()
        .map_err(err(path))?;
    chart
        .draw_series(LineSeries::new(
            rows.iter().map(|r| (r.0, r.1)),
            BINFM.stroke_width(2),
        ))
        .map_err(err(path))?;
    chart
        .draw_series(
            rows.iter()
                .map(|r| Circle::new((r.0, r.1), 5, BINFM.filled())),
        )
        .map_err(err(path))?;
    chart
        .draw_series(
            rows.iter()
                .map(|r| PathElement::new(vec![(r.0, r.2), (r.0, r.3)], BLACK.stroke_width(2))),
        )
        .map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}
