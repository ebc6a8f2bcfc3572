//! The plots of `all`, as SVG: latency by percentile per path, and grouped
//! bars for throughput and rates.

use std::path::Path;

use anyhow::anyhow;
use std::ops::Range;

use plotters::coord::combinators::IntoLogRange;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;

use crate::outcome::Plot;

const COLORS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];
/// The percentile axis shows nines: 0 → 0 %, 1 → 90 %, 2 → 99 %, 3 → 99.9 %, 4 → 99.99 %.
const MAX_NINES: f64 = 4.0;

fn nines(percentile: f64) -> f64 {
    let rest = 1.0 - percentile / 100.0;
    if rest <= 0.0 {
        MAX_NINES
    } else {
        (-rest.log10()).min(MAX_NINES)
    }
}

/// A step line: each value holds from the previous point's percentile to its own.
fn steps(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut line = Vec::with_capacity(points.len() * 2);
    let mut from = 0.0;
    for &(percentile, value) in points {
        line.push((nines(from), value.max(1.0)));
        line.push((nines(percentile), value.max(1.0)));
        from = percentile;
    }
    line
}

fn nines_label(x: &f64) -> String {
    match x.round() as i32 {
        0 => "0%".into(),
        // Where the maximum is drawn too.
        4 => "99.99% (max)".into(),
        n => format!("{}%", 100.0 - 100.0 * 10f64.powi(-n)),
    }
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the plot: {e:?}")
}

/// Writes `plot` into `dir`; returns the file name.
pub fn draw(plot: &Plot, dir: &Path) -> anyhow::Result<&'static str> {
    match plot {
        Plot::Percentiles {
            file,
            title,
            curves,
        } => percentiles(&dir.join(file), title, curves).map(|()| *file),
        Plot::Bars {
            file,
            title,
            unit,
            groups,
        } => bars(&dir.join(file), title, unit, groups).map(|()| *file),
    }
}

fn percentiles(
    path: &Path,
    title: &str,
    curves: &[(String, Vec<(f64, f64)>)],
) -> anyhow::Result<()> {
    let values = curves
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1));
    let low = values.clone().fold(f64::INFINITY, f64::min).max(1.0);
    let high = values.fold(1.0f64, f64::max);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        // Room for the last tick's label, "99.99% (max)".
        .margin_right(50)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..MAX_NINES, (low * 0.8..high * 1.25).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(5)
        .x_label_formatter(&nines_label)
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(err)?;
    for (i, (name, points)) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(steps(points), color.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// The x axis of a bar chart: one slot of width 1 per group, labelled at its centre.
struct Slots(usize);

impl Ranged for Slots {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let share = value / self.0.max(1) as f64;
        limit.0 + (f64::from(limit.1 - limit.0) * share).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.0).map(|g| g as f64 + 0.5).collect()
    }

    fn range(&self) -> Range<f64> {
        0.0..self.0 as f64
    }
}

fn bars(
    path: &Path,
    title: &str,
    unit: &str,
    groups: &[(String, Vec<(String, f64)>)],
) -> anyhow::Result<()> {
    let series: Vec<String> = groups
        .first()
        .map(|(_, bars)| bars.iter().map(|(s, _)| s.clone()).collect())
        .unwrap_or_default();
    let high = groups
        .iter()
        .flat_map(|(_, bars)| bars.iter().map(|b| b.1))
        .filter(|v| v.is_finite())
        .fold(1.0f64, f64::max);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(Slots(groups.len()), 0f64..high * 1.2)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|x| {
            groups
                .get(x.floor() as usize)
                .map(|g| g.0.clone())
                .unwrap_or_default()
        })
        .y_desc(unit)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(err)?;
    // Each slot is split among the series, with a margin either side.
    let width = 0.8 / series.len().max(1) as f64;
    for (s, name) in series.iter().enumerate() {
        let color = COLORS[s % COLORS.len()];
        let bars: Vec<(f64, f64)> = groups
            .iter()
            .enumerate()
            .filter_map(|(g, (_, bars))| {
                let value = bars.get(s)?.1;
                value
                    .is_finite()
                    .then_some((g as f64 + 0.1 + width * s as f64, value))
            })
            .collect();
        chart
            .draw_series(bars.iter().map(|&(x, value)| {
                Rectangle::new([(x, 0.0), (x + width * 0.9, value)], color.filled())
            }))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        chart
            .draw_series(bars.iter().map(|&(x, value)| {
                Text::new(
                    format!("{value:.0}"),
                    (x, value * 1.01 + high * 0.04),
                    ("sans-serif", 11),
                )
            }))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
