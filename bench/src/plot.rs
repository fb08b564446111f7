//! SVG plots, written by hand (no plotting dependency): latency by percentile with a log-scaled
//! percentile axis, as HdrHistogram's plots draw it (90%, 99%, 99.9%, ... equally spaced), and
//! throughput over time.

use std::fmt::Write;

use hdrhistogram::Histogram;

use crate::stats::ProgressSnapshot;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 540.0;
const MARGIN_LEFT: f64 = 80.0;
const MARGIN_RIGHT: f64 = 30.0;
const MARGIN_TOP: f64 = 50.0;
const MARGIN_BOTTOM: f64 = 60.0;
const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
/// Points per line at most; longer lines are thinned.
pub const SERIES_POINTS_MAX: usize = 4_000;
/// Nines on the percentile axis at most (99.9999%); a histogram rarely has more samples.
const NINES_MAX: u32 = 6;

/// One line of a chart, in data coordinates.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart: x ticks are given (they may stand for transformed values), y is linear from 0.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_ticks: Vec<(f64, String)>,
    pub series: Vec<Series>,
}

/// One progress sample: seconds since the start, and the totals then.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub seconds: f64,
    pub totals: ProgressSnapshot,
}

/// x position of quantile `q` on the percentile axis: 0 at 0%, 1 at 90%, 2 at 99%, ...
fn percentile_x(quantile: f64) -> f64 {
    let tail = (1.0 - quantile).max(10f64.powi(-(NINES_MAX as i32)));
    -tail.log10()
}

/// The latency percentile chart of several histograms (nanoseconds), in milliseconds.
pub fn latency_chart(title: &str, histograms: &[(&str, &Histogram<u64>)]) -> Chart {
    let mut series = Vec::new();
    let mut nines = 1;
    for (name, histogram) in histograms {
        if histogram.is_empty() {
            continue;
        }
        // Beyond 1 / count the percentiles are all the maximum.
        let x_max = (histogram.len() as f64)
            .log10()
            .clamp(1.0, f64::from(NINES_MAX));
        nines = nines.max(x_max.ceil() as u32);
        let mut points: Vec<(f64, f64)> = histogram
            .iter_quantiles(4)
            .map(|step| {
                let x = percentile_x(step.quantile_iterated_to()).min(x_max);
                (x, step.value_iterated_to() as f64 / 1e6)
            })
            .collect();
        points.push((x_max, histogram.max() as f64 / 1e6));
        series.push(Series {
            name: name.to_string(),
            points: thin(points),
        });
    }
    let x_ticks = (0..=nines)
        .map(|nine| (f64::from(nine), percentile_label(nine)))
        .collect();
    Chart {
        title: title.to_owned(),
        x_label: "percentile".to_owned(),
        y_label: "latency (ms)".to_owned(),
        x_ticks,
        series,
    }
}

fn percentile_label(nines: u32) -> String {
    match nines {
        0 => "0%".to_owned(),
        1 => "90%".to_owned(),
        _ => format!("99.{}%", "9".repeat(nines as usize - 2)).replace("99.%", "99%"),
    }
}

/// MB/s produced and consumed between consecutive samples.
pub fn throughput_chart(title: &str, samples: &[Sample]) -> Chart {
    let mut produced = Vec::new();
    let mut consumed = Vec::new();
    for pair in samples.windows(2) {
        let seconds = (pair[1].seconds - pair[0].seconds).max(f64::MIN_POSITIVE);
        let mb_per_sec = |after: u64, before: u64| (after - before) as f64 / 1e6 / seconds;
        let (before, after) = (pair[0].totals, pair[1].totals);
        produced.push((
            pair[1].seconds,
            mb_per_sec(after.produced_bytes, before.produced_bytes),
        ));
        consumed.push((
            pair[1].seconds,
            mb_per_sec(after.consumed_bytes, before.consumed_bytes),
        ));
    }
    let mut series = Vec::new();
    for (name, points) in [("produce", produced), ("consume", consumed)] {
        if points.iter().any(|(_, y)| *y > 0.0) {
            series.push(Series {
                name: name.to_owned(),
                points: thin(points),
            });
        }
    }
    let seconds_max = samples.last().map_or(1.0, |s| s.seconds).max(1.0);
    let step = nice_step(seconds_max);
    let steps = (seconds_max / step - 1e-9).ceil() as u32;
    let x_ticks = (0..=steps)
        .map(|i| f64::from(i) * step)
        .map(|x| (x, format_number(x)))
        .collect();
    Chart {
        title: title.to_owned(),
        x_label: "seconds".to_owned(),
        y_label: "MB/s".to_owned(),
        x_ticks,
        series,
    }
}

/// Keeps every k-th point (and the last) so a line has at most SERIES_POINTS_MAX points.
fn thin(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    if points.len() <= SERIES_POINTS_MAX {
        return points;
    }
    let every = points.len().div_ceil(SERIES_POINTS_MAX - 1);
    let last = *points.last().expect("not empty");
    let mut kept: Vec<_> = points.into_iter().step_by(every).collect();
    kept.push(last);
    kept
}

/// A step of 1, 2 or 5 times a power of ten giving about five ticks up to `max`.
fn nice_step(max: f64) -> f64 {
    assert!(max > 0.0 && max.is_finite());
    let rough = max / 5.0;
    let power = 10f64.powf(rough.log10().floor());
    let fraction = rough / power;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * power
}

fn format_number(value: f64) -> String {
    if value == value.trunc() && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Chart {
    /// The chart as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let area = self.plot_area();
        let mut svg = String::new();
        self.write_title(&mut svg);
        self.write_x_grid(&mut svg, &area);
        write_y_grid(&mut svg, &area);
        self.write_axes(&mut svg, &area);
        for (index, series) in self.series.iter().enumerate() {
            write_series(&mut svg, &area, index, series);
        }
        svg.push_str("</svg>\n");
        svg
    }

    /// The data ranges and the plot's size: where every point lands.
    fn plot_area(&self) -> PlotArea {
        let x_min = self.x_ticks.first().map_or(0.0, |t| t.0);
        let x_max = self
            .x_ticks
            .last()
            .map_or(1.0, |t| t.0)
            .max(x_min + f64::MIN_POSITIVE);
        let y_data_max = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0f64, f64::max);
        let y_step = nice_step(if y_data_max > 0.0 { y_data_max } else { 1.0 });
        let y_max = (y_data_max / y_step).ceil().max(1.0) * y_step;
        PlotArea {
            x_min,
            x_max,
            y_max,
            y_step,
            width: WIDTH - MARGIN_LEFT - MARGIN_RIGHT,
            height: HEIGHT - MARGIN_TOP - MARGIN_BOTTOM,
        }
    }

    /// The opening tag, the white background and the title.
    fn write_title(&self, svg: &mut String) {
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            svg,
            r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="28" text-anchor="middle" font-size="16">{}</text>"#,
            WIDTH / 2.0,
            escape(&self.title)
        );
    }

    /// A vertical grid line and a label at each x tick.
    fn write_x_grid(&self, svg: &mut String, area: &PlotArea) {
        for (x, label) in &self.x_ticks {
            let px = area.to_x(*x);
            let _ = writeln!(
                svg,
                r##"<line x1="{px:.1}" y1="{MARGIN_TOP}" x2="{px:.1}" y2="{:.1}" stroke="#dddddd"/>"##,
                MARGIN_TOP + area.height
            );
            let _ = writeln!(
                svg,
                r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                MARGIN_TOP + area.height + 18.0,
                escape(label)
            );
        }
    }

    /// The plot's frame and the two axis labels.
    fn write_axes(&self, svg: &mut String, area: &PlotArea) {
        let (plot_width, plot_height) = (area.width, area.height);
        let _ = writeln!(
            svg,
            r#"<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_width}" height="{plot_height}" fill="none" stroke="black"/>"#
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            MARGIN_LEFT + plot_width / 2.0,
            HEIGHT - 15.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            svg,
            r#"<text x="20" y="{:.1}" text-anchor="middle" transform="rotate(-90 20 {:.1})">{}</text>"#,
            MARGIN_TOP + plot_height / 2.0,
            MARGIN_TOP + plot_height / 2.0,
            escape(&self.y_label)
        );
    }
}

/// Where a chart's data lands in the SVG: the data ranges and the plot's size in pixels.
struct PlotArea {
    x_min: f64,
    x_max: f64,
    y_max: f64,
    y_step: f64,
    width: f64,
    height: f64,
}

impl PlotArea {
    fn to_x(&self, x: f64) -> f64 {
        MARGIN_LEFT + (x - self.x_min) / (self.x_max - self.x_min) * self.width
    }

    fn to_y(&self, y: f64) -> f64 {
        MARGIN_TOP + self.height - y / self.y_max * self.height
    }
}

/// A horizontal grid line and a label at each y step.
fn write_y_grid(svg: &mut String, area: &PlotArea) {
    let y_ticks = (area.y_max / area.y_step).round() as u32;
    for tick in 0..=y_ticks {
        let y = f64::from(tick) * area.y_step;
        let py = area.to_y(y);
        let _ = writeln!(
            svg,
            r##"<line x1="{MARGIN_LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#dddddd"/>"##,
            MARGIN_LEFT + area.width
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            MARGIN_LEFT - 8.0,
            py + 4.0,
            format_number(y)
        );
    }
}

/// One series' line and its legend entry.
fn write_series(svg: &mut String, area: &PlotArea, index: usize, series: &Series) {
    let color = COLORS[index % COLORS.len()];
    let mut points = String::new();
    for (x, y) in &series.points {
        let _ = write!(points, "{:.1},{:.1} ", area.to_x(*x), area.to_y(*y));
    }
    let _ = writeln!(
        svg,
        r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
        points.trim_end()
    );
    let legend_y = MARGIN_TOP + 18.0 + 18.0 * index as f64;
    let legend_x = MARGIN_LEFT + 12.0;
    let _ = writeln!(
        svg,
        r#"<line x1="{legend_x}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{color}" stroke-width="3"/>"#,
        legend_x + 24.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{:.1}">{}</text>"#,
        legend_x + 30.0,
        legend_y + 4.0,
        escape(&series.name)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{latency_histogram, record_latency};
    use quick_xml::events::Event;
    use std::time::Duration;

    /// Parses `svg` as XML and returns (element names in document order, text contents, the
    /// point lists of the polylines). Fails on anything that is not well formed.
    type Parsed = (Vec<String>, Vec<String>, Vec<Vec<(f64, f64)>>);

    fn parse(svg: &str) -> Parsed {
        let mut reader = quick_xml::Reader::from_str(svg);
        let (mut elements, mut texts, mut lines) = (Vec::new(), Vec::new(), Vec::new());
        let mut depth = 0i32;
        // Text arrives in pieces around entity references; pieces in a row make one text.
        let mut text = String::new();
        loop {
            let event = reader.read_event().expect("well-formed XML");
            match &event {
                Event::Text(piece) => {
                    text.push_str(&piece.decode().unwrap());
                    continue;
                }
                Event::GeneralRef(reference) => {
                    text.push_str(match reference.as_ref() {
                        b"amp" => "&",
                        b"lt" => "<",
                        b"gt" => ">",
                        b"quot" => "\"",
                        other => panic!("unexpected entity {other:?}"),
                    });
                    continue;
                }
                _ => {}
            }
            if !text.trim().is_empty() {
                texts.push(std::mem::take(&mut text));
            }
            text.clear();
            match &event {
                Event::Start(element) | Event::Empty(element) => {
                    let name = String::from_utf8(element.name().as_ref().to_vec()).unwrap();
                    if name == "polyline" {
                        let points = element
                            .try_get_attribute("points")
                            .unwrap()
                            .expect("a polyline has points");
                        let points = String::from_utf8(points.value.to_vec()).unwrap();
                        lines.push(
                            points
                                .split_whitespace()
                                .map(|pair| {
                                    let (x, y) = pair.split_once(',').unwrap();
                                    (x.parse().unwrap(), y.parse().unwrap())
                                })
                                .collect(),
                        );
                    }
                    elements.push(name);
                    if matches!(event, Event::Start(_)) {
                        depth += 1;
                    }
                }
                Event::End(_) => depth -= 1,
                Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(depth, 0, "every element is closed");
        (elements, texts, lines)
    }

    fn inside_plot(points: &[(f64, f64)]) -> bool {
        points.iter().all(|(x, y)| {
            (MARGIN_LEFT - 0.1..=WIDTH - MARGIN_RIGHT + 0.1).contains(x)
                && (MARGIN_TOP - 0.1..=HEIGHT - MARGIN_BOTTOM + 0.1).contains(y)
        })
    }

    #[test]
    fn latency_plot_is_svg_with_a_line_per_histogram_and_nines_on_the_axis() {
        let mut produce = latency_histogram();
        for micros in 1..=100_000u64 {
            record_latency(&mut produce, Duration::from_micros(micros % 2_000 + 100), 1);
        }
        let mut e2e = latency_histogram();
        record_latency(&mut e2e, Duration::from_millis(1), 500);
        let empty = latency_histogram();
        let chart = latency_chart(
            "acks=1 <1 KiB> & more",
            &[
                ("produce", &produce),
                ("end to end", &e2e),
                ("none", &empty),
            ],
        );
        let svg = chart.to_svg();
        let (elements, texts, lines) = parse(&svg);
        assert_eq!(elements.first().map(String::as_str), Some("svg"));
        assert_eq!(lines.len(), 2, "the empty histogram draws no line");
        for label in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"] {
            assert!(texts.iter().any(|t| t == label), "{label} in {texts:?}");
        }
        assert!(texts.iter().any(|t| t == "acks=1 <1 KiB> & more"));
        for line in &lines {
            assert!(inside_plot(line), "{line:?}");
            // Latency never falls as the percentile rises: y (downwards) never grows.
            assert!(line
                .windows(2)
                .all(|w| w[1].0 >= w[0].0 && w[1].1 <= w[0].1 + 0.05));
        }
        // The produce line ends at its maximum, 2.1 ms, at the top of a 0..2.5 ms axis.
        let top = lines[0].last().unwrap().1;
        let expected = MARGIN_TOP + (HEIGHT - MARGIN_TOP - MARGIN_BOTTOM) * (1.0 - 2.1 / 2.5);
        assert!((top - expected).abs() < 2.0, "{top} vs {expected}");
    }

    #[test]
    fn throughput_plot_has_a_point_per_interval() {
        let samples: Vec<Sample> = (0..=40u64)
            .map(|i| Sample {
                seconds: i as f64 * 0.25,
                totals: ProgressSnapshot {
                    produced_records: i * 1_000,
                    produced_bytes: i * 25_000_000,
                    consumed_records: 0,
                    consumed_bytes: 0,
                },
            })
            .collect();
        let svg = throughput_chart("produce", &samples).to_svg();
        let (_, texts, lines) = parse(&svg);
        assert_eq!(lines.len(), 1, "nothing was consumed");
        assert_eq!(lines[0].len(), 40);
        assert!(inside_plot(&lines[0]));
        // 25 MB per 0.25 s is 100 MB/s, the top of the axis.
        assert!(lines[0].iter().all(|(_, y)| (y - MARGIN_TOP).abs() < 0.2));
        assert!(texts.iter().any(|t| t == "MB/s"));
        assert!(texts.iter().any(|t| t == "10"), "last x tick at 10 s");
        // A run that ends between ticks gets one more tick, so every point stays inside.
        let svg = throughput_chart("produce", &samples[..=21]).to_svg();
        let (_, texts, lines) = parse(&svg);
        assert!(inside_plot(&lines[0]));
        assert!(texts.iter().any(|t| t == "6"), "5.25 s rounds up to 6");
    }

    #[test]
    fn helpers() {
        assert_eq!(nice_step(10.0), 2.0);
        assert_eq!(nice_step(0.9), 0.2);
        assert_eq!(nice_step(4_000.0), 1_000.0);
        assert_eq!(percentile_label(2), "99%");
        assert_eq!(percentile_label(4), "99.99%");
        assert!((percentile_x(0.999) - 3.0).abs() < 1e-9);
        assert_eq!(percentile_x(1.0), f64::from(NINES_MAX));
        let long: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64, 1.0)).collect();
        let thinned = thin(long);
        assert!(thinned.len() <= SERIES_POINTS_MAX + 1);
        assert_eq!(thinned.last().unwrap().0, 9_999.0);
        assert_eq!(format_number(0.25), "0.25");
        assert_eq!(format_number(12.0), "12");
    }
}
