//! The SVG chart of `--plot`: two panels against N, one line per system: each Chitty-Chat deployment
//! (`--nodes`) and NATS.
//!
//! For the load scenarios the panels are deliveries per second and p99 latency; for `idle`, the
//! service's memory per participant and its resident memory with everyone connected. It is drawn with
//! `plotters`' SVG backend alone, which writes text as SVG `<text>` and needs no font files.

use std::path::Path;

use plotters::prelude::*;

use crate::BenchError;
use crate::report::{DeploymentReport, Figures, Report};

/// Chitty-Chat's colours, one per deployment in turn.
const CHITTY: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
];
/// NATS's colour.
const NATS: RGBColor = RGBColor(214, 39, 40);

/// One line of a panel: its name, its points, its colour.
type Line = (String, Vec<(f64, f64)>, RGBColor);

/// One panel: a title, the y axis's name, and how to read the figure.
struct Panel {
    title: &'static str,
    y_label: &'static str,
    read: fn(&Figures) -> Option<f64>,
}

/// Draws the chart of `report` to `path`.
pub fn draw(report: &Report, path: &Path) -> Result<(), BenchError> {
    let mut svg = String::new();
    render(report, &mut svg).map_err(|error| BenchError::Plot(error.to_string()))?;
    std::fs::write(path, svg).map_err(|source| BenchError::Io {
        what: format!("cannot write {}", path.display()),
        source,
    })
}

fn render<'a>(report: &Report, svg: &'a mut String) -> Result<(), Box<dyn std::error::Error + 'a>> {
    let panels = if report.scenario == "idle" {
        [
            Panel {
                title: "service memory per idle participant",
                y_label: "KiB per participant",
                read: |f| f.rss_per_participant_bytes.map(|bytes| bytes / 1024.0),
            },
            Panel {
                title: "service resident memory, all connected",
                y_label: "MiB",
                read: |f| f.rss_after_bytes.map(|bytes| bytes as f64 / 1_048_576.0),
            },
        ]
    } else {
        [
            Panel {
                title: "deliveries per second",
                y_label: "deliveries/s",
                read: |f| f.deliveries_per_sec,
            },
            Panel {
                title: "publish-to-delivery latency, p99",
                y_label: "µs",
                read: |f| f.p99_us.map(|us| us as f64),
            },
        ]
    };
    let root = SVGBackend::with_string(svg, (1100, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!(
            "chitty-chat bench {}: Chitty-Chat and NATS against N",
            report.scenario
        ),
        ("sans-serif", 20),
    )?;
    let halves = root.split_evenly((1, 2));
    for (area, panel) in halves.iter().zip(&panels) {
        draw_panel(report, area, panel)?;
    }
    root.present()?;
    Ok(())
}

fn draw_panel<'a>(
    report: &Report,
    area: &DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
    panel: &Panel,
) -> Result<(), Box<dyn std::error::Error + 'a>> {
    let series = |deployment: &DeploymentReport, nats: bool| -> Vec<(f64, f64)> {
        deployment
            .runs
            .iter()
            .filter_map(|run| {
                let figures = if nats {
                    run.nats.as_ref()?
                } else {
                    &run.chitty
                };
                Some((run.n as f64, (panel.read)(figures)?))
            })
            .collect()
    };
    let several = report.deployments.len() > 1;
    let mut lines: Vec<Line> = report
        .deployments
        .iter()
        .enumerate()
        .map(|(index, deployment)| {
            // Short, to fit the legend; the table spells each deployment out under the same letter.
            let shape = &deployment.deployment;
            let name = match several {
                true => format!(
                    "Chitty-Chat {}: {} node{}{}",
                    Report::letter(index),
                    shape.nodes,
                    if shape.nodes == 1 { "" } else { "s" },
                    if shape.cluster { ", cluster" } else { "" },
                ),
                false => "Chitty-Chat".to_owned(),
            };
            (
                name,
                series(deployment, false),
                CHITTY[index % CHITTY.len()],
            )
        })
        .collect();
    lines.push(("NATS".to_owned(), series(&report.baseline, true), NATS));
    let all = lines.iter().flat_map(|(_, points, _)| points);
    let (x_min, x_max) = all.clone().fold((f64::MAX, f64::MIN), |(lo, hi), (x, _)| {
        (lo.min(*x), hi.max(*x))
    });
    let y_max = all.fold(0.0_f64, |hi, (_, y)| hi.max(*y));
    let (x_min, x_max) = if x_min > x_max {
        (0.0, 1.0)
    } else if x_min == x_max {
        (x_min * 0.5, x_max * 1.5 + 1.0)
    } else {
        (x_min, x_max)
    };
    let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(x_min..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("N (participants)")
        .y_desc(panel.y_label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| compact(*y))
        .draw()?;
    for (name, points, colour) in lines {
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|point| Circle::new(point, 4, colour.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}

/// 1234567 as "1.2M", 5300 as "5.3k".
fn compact(value: f64) -> String {
    let (scaled, suffix) = if value >= 1e6 {
        (value / 1e6, "M")
    } else if value >= 1e3 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    let text = format!("{scaled:.1}");
    format!("{}{suffix}", text.strip_suffix(".0").unwrap_or(&text))
}
