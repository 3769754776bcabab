//! SVG plots with `plotters` (SVG backend only, no system fonts): the distribution of
//! voice-to-voice latency per pipeline (empirical CDF) and a per-turn latency timeline.

use crate::error::EvalError;
use plotters::prelude::*;
use std::path::Path;

const COLORS: [RGBColor; 6] = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];

/// One pipeline's series.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Values in ms (order matters for the timeline).
    pub values: Vec<f64>,
}

fn err(path: &Path) -> impl Fn(String) -> EvalError + '_ {
    move |message| EvalError::Plot { path: path.to_path_buf(), message }
}

fn y_max(series: &[Series]) -> f64 {
    series.iter().flat_map(|s| s.values.iter().copied()).fold(1.0, f64::max) * 1.1
}

/// Sorted-latency CDF: x = latency ms, y = share of turns at or below it.
pub fn cdf(path: &Path, title: &str, series: &[Series]) -> Result<(), EvalError> {
    let e = err(path);
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
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
        .draw()
        .map_err(|x| e(x.to_string()))?;
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
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|x| e(x.to_string()))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(x.to_string()))?;
    root.present().map_err(|x| e(x.to_string()))
}

/// Per-turn timeline: x = turn in run order (scenario, run, turn), y = latency ms; a missing
/// value (no reply, failed call) breaks the line.
pub fn timeline(path: &Path, title: &str, series: &[(String, Vec<Option<f64>>)]) -> Result<(), EvalError> {
    let e = err(path);
    let flat: Vec<Series> = series
        .iter()
        .map(|(n, v)| Series { name: n.clone(), values: v.iter().flatten().copied().collect() })
        .collect();
    let len = series.iter().map(|(_, v)| v.len()).max().unwrap_or(1).max(2);
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(1f64..len as f64, 0f64..y_max(&flat))
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("turn (scenario, run, turn order)")
        .y_desc("voice-to-voice latency (ms)")
        .draw()
        .map_err(|x| e(x.to_string()))?;
    for (i, (name, values)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (k, v) in values.iter().enumerate() {
            match v {
                Some(y) => runs.last_mut().expect("never empty").push(((k + 1) as f64, *y)),
                None => runs.push(Vec::new()),
            }
        }
        let points: Vec<(f64, f64)> = runs.iter().flatten().copied().collect();
        for r in runs.into_iter().filter(|r| r.len() > 1) {
            chart.draw_series(LineSeries::new(r, color.stroke_width(2))).map_err(|x| e(x.to_string()))?;
        }
        chart
            .draw_series(points.into_iter().map(move |p| Circle::new(p, 3, color.filled())))
            .map_err(|x| e(x.to_string()))?
            .label(name.clone())
            .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(x.to_string()))?;
    root.present().map_err(|x| e(x.to_string()))
}
