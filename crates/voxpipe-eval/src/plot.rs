//! SVG plots with `plotters` (SVG backend only, no system fonts): the distribution of
//! voice-to-voice latency per pipeline (empirical CDF), a per-turn latency timeline grouped by
//! scenario, and the stacked voice-to-voice breakdown. Every legend sits in a column right of
//! the data, never over it.

use crate::error::EvalError;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

const COLORS: [RGBColor; 6] = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];

/// Width of the legend column, px.
const LEGEND_W: u32 = 240;

/// One pipeline's series.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Values in ms.
    pub values: Vec<f64>,
}

/// A run of consecutive turns on the timeline: one (scenario, run).
#[derive(Debug, Clone)]
pub struct Group {
    /// Written over the group (`order-status`, `order-status #2`).
    pub name: String,
    /// Turns in the group.
    pub turns: usize,
}

/// One pipeline's timeline: per group, its turns' values (`None`: no reply, failed call).
#[derive(Debug, Clone)]
pub struct GroupedSeries {
    /// Legend text.
    pub name: String,
    /// Per group (same order as the groups), per turn.
    pub groups: Vec<Vec<Option<f64>>>,
}

/// One bar of the stacked plot: a pipeline's stages.
#[derive(Debug, Clone)]
pub struct StackedBar {
    /// Written over the bar.
    pub name: String,
    /// `(stage label, ms)` in order, left to right.
    pub parts: Vec<(String, f64)>,
    /// A tick across the bar at this ms (the median voice-to-voice), if any.
    pub marker: Option<f64>,
}

fn err(path: &Path) -> impl Fn(String) -> EvalError + '_ {
    move |message| EvalError::Plot { path: path.to_path_buf(), message }
}

fn y_max(series: &[Series]) -> f64 {
    series.iter().flat_map(|s| s.values.iter().copied()).fold(1.0, f64::max) * 1.1
}

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
enum Mark {
    Line,
    Dot,
    Block,
}

/// Draws `entries` as a legend in `area` (the column right of the chart).
fn legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    entries: &[(String, RGBColor, Mark)],
) -> Result<(), String> {
    let font = ("sans-serif", 13).into_font();
    for (i, (name, color, mark)) in entries.iter().enumerate() {
        let y = 60 + i as i32 * 22;
        match mark {
            Mark::Line => {
                area.draw(&PathElement::new(vec![(8, y), (30, y)], color.stroke_width(2)))
                    .map_err(|e| e.to_string())?;
            }
            Mark::Dot => area.draw(&Circle::new((19, y), 4, color.filled())).map_err(|e| e.to_string())?,
            Mark::Block => area
                .draw(&Rectangle::new([(8, y - 6), (30, y + 6)], color.filled()))
                .map_err(|e| e.to_string())?,
        }
        let style = font.clone().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(name.clone(), (38, y), style)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Sorted-latency CDF: x = latency ms, y = share of turns at or below it.
pub fn cdf(path: &Path, title: &str, series: &[Series]) -> Result<(), EvalError> {
    let e = err(path);
    let (w, h) = (900u32, 480u32);
    let root = SVGBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let (left, right) = root.split_horizontally(w - LEGEND_W);
    let mut chart = ChartBuilder::on(&left)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..y_max(series), 0f64..1f64)
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("voice-to-voice latency (ms)")
        .y_desc("share of turns")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(|x| e(x.to_string()))?;
    let mut entries = Vec::new();
    for (i, s) in series.iter().enumerate() {
        let mut v = s.values.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len() as f64;
        let mut points = Vec::with_capacity(v.len() * 2);
        for (k, x) in v.iter().enumerate() {
            points.push((*x, k as f64 / n));
            points.push((*x, (k + 1) as f64 / n));
        }
        let color = COLORS[i % COLORS.len()];
        chart.draw_series(LineSeries::new(points, color.stroke_width(2))).map_err(|x| e(x.to_string()))?;
        entries.push((format!("{} (n={})", s.name, s.values.len()), color, Mark::Line));
    }
    legend(&right, &entries).map_err(&e)?;
    root.present().map_err(|x| e(x.to_string()))
}

/// Per-turn timeline: x = turn, numbered within its group (scenario and run), groups side by
/// side and named; y = latency ms. Lines join the turns of one group only; a missing value
/// breaks the line.
pub fn timeline(
    path: &Path,
    title: &str,
    groups: &[Group],
    series: &[GroupedSeries],
) -> Result<(), EvalError> {
    let e = err(path);
    let total: usize = groups.iter().map(|g| g.turns).sum::<usize>().max(1);
    let all = series.iter().flat_map(|s| s.groups.iter().flatten().flatten().copied());
    let y_top = all.fold(1.0, f64::max) * 1.15;
    // Turn `t` (from 0) of group `g` sits at x = offset(g) + t + 1.
    let offsets: Vec<usize> = groups
        .iter()
        .scan(0, |at, g| {
            let o = *at;
            *at += g.turns;
            Some(o)
        })
        .collect();
    // Labels only at whole turns: the turn's number within its group.
    let turn_of = |x: f64| -> Option<usize> {
        if (x - x.round()).abs() > 1e-6 || x < 0.5 {
            return None;
        }
        let x = (x.round() as usize).checked_sub(1)?;
        let g = offsets.iter().rposition(|o| *o <= x)?;
        (x - offsets[g] < groups[g].turns).then(|| x - offsets[g] + 1)
    };
    let (w, h) = ((640 + 28 * total as u32).clamp(900, 2400), 500u32);
    let root = SVGBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let (left, right) = root.split_horizontally(w - LEGEND_W);
    let mut chart = ChartBuilder::on(&left)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..(total as f64 + 1.0), 0f64..y_top)
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels((total + 2).min(60))
        .x_label_formatter(&|x| turn_of(*x).map_or_else(String::new, |t| t.to_string()))
        .x_desc("turn within its scenario (scenarios left to right)")
        .y_desc("voice-to-voice latency (ms)")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|x| e(x.to_string()))?;
    // Group bands: a separator between groups, each name written down its band's left edge.
    let name_style =
        ("sans-serif", 12).into_font().transform(FontTransform::Rotate90).color(&RGBColor(90, 90, 90));
    for (g, o) in groups.iter().zip(&offsets) {
        let x = *o as f64 + 0.5;
        if *o > 0 {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 0.0), (x, y_top)],
                    RGBColor(170, 170, 170).stroke_width(1),
                )))
                .map_err(|x| e(x.to_string()))?;
        }
        // Written downwards just right of the separator (the glyphs extend left of the anchor).
        let name = EmptyElement::at((x, y_top)) + Text::new(g.name.clone(), (16, 6), name_style.clone());
        chart.draw_series(std::iter::once(name)).map_err(|x| e(x.to_string()))?;
    }
    let mut entries = Vec::new();
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        for (gi, values) in s.groups.iter().enumerate() {
            let base = offsets.get(gi).copied().unwrap_or(0) as f64;
            let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            for (k, v) in values.iter().enumerate() {
                match v {
                    Some(y) => runs.last_mut().expect("never empty").push((base + k as f64 + 1.0, *y)),
                    None => runs.push(Vec::new()),
                }
            }
            for r in runs {
                if r.len() > 1 {
                    chart
                        .draw_series(LineSeries::new(r.clone(), color.stroke_width(2)))
                        .map_err(|x| e(x.to_string()))?;
                }
                chart
                    .draw_series(r.into_iter().map(|p| Circle::new(p, 4, color.filled())))
                    .map_err(|x| e(x.to_string()))?;
            }
        }
        entries.push((s.name.clone(), color, Mark::Dot));
    }
    legend(&right, &entries).map_err(&e)?;
    root.present().map_err(|x| e(x.to_string()))
}

/// Colour of the `i`th stage (stable across bars: a stage has one colour in every bar).
pub fn stage_color(i: usize) -> RGBColor {
    const STAGE: [RGBColor; 7] = [
        RGBColor(120, 120, 120), // end of turn
        RGBColor(31, 119, 180),  // ASR
        RGBColor(255, 127, 14),  // LLM
        RGBColor(44, 160, 44),   // first clause
        RGBColor(214, 39, 40),   // TTS
        RGBColor(148, 103, 189), // native model
        RGBColor(188, 189, 34),  // transport
    ];
    STAGE[i % STAGE.len()]
}

/// Horizontal stacked bars, one per pipeline (top to bottom in order), each stage's colour
/// from `color_of(stage label)`; values over 4 % of the axis are written in their segment.
pub fn stacked(
    path: &Path,
    title: &str,
    bars: &[StackedBar],
    color_of: &dyn Fn(&str) -> RGBColor,
) -> Result<(), EvalError> {
    let e = err(path);
    let (w, h) = (1000u32, (140 + 90 * bars.len() as u32).max(300));
    let x_top = bars
        .iter()
        .map(|b| b.parts.iter().map(|p| p.1).sum::<f64>().max(b.marker.unwrap_or(0.0)))
        .fold(1.0, f64::max)
        * 1.08;
    let n = bars.len().max(1) as f64;
    let root = SVGBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let (left, right) = root.split_horizontally(w - LEGEND_W);
    let mut chart = ChartBuilder::on(&left)
        .caption(title, ("sans-serif", 17))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(10)
        .build_cartesian_2d(0f64..x_top, 0f64..n)
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc("ms after the end of the caller's speech")
        .draw()
        .map_err(|x| e(x.to_string()))?;
    let mut entries: Vec<(String, RGBColor, Mark)> = Vec::new();
    let label = ("sans-serif", 14).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Bottom));
    let value = ("sans-serif", 11).into_font().color(&WHITE).pos(Pos::new(HPos::Center, VPos::Center));
    for (i, bar) in bars.iter().enumerate() {
        let y = n - 1.0 - i as f64; // the first bar on top
        let (lo, hi) = (y + 0.2, y + 0.6);
        chart
            .draw_series(std::iter::once(Text::new(bar.name.clone(), (0.0, y + 0.68), label.clone())))
            .map_err(|x| e(x.to_string()))?;
        let mut at = 0.0;
        for (stage, ms) in &bar.parts {
            let color = color_of(stage);
            if !entries.iter().any(|(n, _, _)| n == stage) {
                entries.push((stage.clone(), color, Mark::Block));
            }
            if *ms > 0.0 {
                chart
                    .draw_series(std::iter::once(Rectangle::new([(at, lo), (at + ms, hi)], color.filled())))
                    .map_err(|x| e(x.to_string()))?;
                if *ms / x_top > 0.04 {
                    let t = Text::new(format!("{ms:.0}"), (at + ms / 2.0, (lo + hi) / 2.0), value.clone());
                    chart.draw_series(std::iter::once(t)).map_err(|x| e(x.to_string()))?;
                }
            }
            at += ms;
        }
        if let Some(m) = bar.marker {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(m, lo - 0.08), (m, hi + 0.08)],
                    BLACK.stroke_width(3),
                )))
                .map_err(|x| e(x.to_string()))?;
        }
    }
    legend(&right, &entries).map_err(&e)?;
    root.present().map_err(|x| e(x.to_string()))
}
