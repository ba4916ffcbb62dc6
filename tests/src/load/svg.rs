//! Line charts as hand-written SVG: a plotting crate would bring a font stack and a dependency tree
//! for two kinds of chart. Axes are logarithmic (latencies span orders of magnitude).

use std::fmt::Write;

/// One line of a chart.
pub struct Series {
    pub label: String,
    /// (x, y), both > 0 (log axes).
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Tick positions on the x axis with their labels (log axis).
    pub x_ticks: Vec<(f64, String)>,
    pub series: Vec<Series>,
}

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 560.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 220.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const PALETTE: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
    "#7f7f7f", "#393b79", "#637939",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Decades covering `lo..=hi` (both > 0).
fn decades(lo: f64, hi: f64) -> (f64, f64) {
    let lo = lo.max(1e-9).log10().floor();
    let hi = hi.max(1e-9).log10().ceil();
    (lo, if hi > lo { hi } else { lo + 1.0 })
}

/// The chart as an SVG document.
pub fn render(chart: &Chart) -> String {
    let points = chart.series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| *x > 0.0 && *y > 0.0);
    let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in points {
        (x_lo, x_hi, y_lo, y_hi) = (x_lo.min(*x), x_hi.max(*x), y_lo.min(*y), y_hi.max(*y));
    }
    for (x, _) in &chart.x_ticks {
        (x_lo, x_hi) = (x_lo.min(*x), x_hi.max(*x));
    }
    if x_lo > x_hi {
        (x_lo, x_hi, y_lo, y_hi) = (1.0, 10.0, 1.0, 10.0);
    }
    let (x0, x1) = (x_lo.max(1e-9).log10(), x_hi.max(1e-9).log10().max(x_lo.max(1e-9).log10() + 1e-9));
    let (y0, y1) = decades(y_lo, y_hi);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| LEFT + (x.max(1e-9).log10() - x0) / (x1 - x0) * plot_w;
    let sy = |y: f64| TOP + plot_h - (y.max(1e-9).log10() - y0) / (y1 - y0) * plot_h;

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = write!(
        svg,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="15">{}</text>"#,
        LEFT + plot_w / 2.0,
        escape(&chart.title)
    );
    // Horizontal grid at each power of ten of the y axis, labelled.
    let mut decade = y0;
    while decade <= y1 + 1e-9 {
        let y = sy(10f64.powf(decade));
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            format_value(10f64.powf(decade))
        );
        decade += 1.0;
    }
    for (x, label) in &chart.x_ticks {
        let x = sx(*x);
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            escape(label)
        );
    }
    let _ = write!(
        svg,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
    );
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 16.0,
        escape(&chart.x_label)
    );
    let _ = write!(
        svg,
        r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + plot_h / 2.0,
        escape(&chart.y_label)
    );
    for (i, series) in chart.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let path: Vec<String> = series
            .points
            .iter()
            .filter(|(x, y)| *x > 0.0 && *y > 0.0)
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let dash = if series.dashed { r#" stroke-dasharray="6 4""# } else { "" };
        let _ = write!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
            path.join(" ")
        );
        // Markers where there are few points (sizes), so each measured point shows.
        if series.points.len() <= 8 {
            for (x, y) in series.points.iter().filter(|(x, y)| *x > 0.0 && *y > 0.0) {
                let _ =
                    write!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#, sx(*x), sy(*y));
            }
        }
        let legend_y = TOP + 10.0 + i as f64 * 18.0;
        let legend_x = LEFT + plot_w + 16.0;
        let _ = write!(
            svg,
            r#"<line x1="{legend_x}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            legend_x + 24.0,
            legend_x + 30.0,
            legend_y + 4.0,
            escape(&series.label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// `0.1`, `1`, `10`, `1k`, `1M` for axis labels.
fn format_value(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.0}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.0}k", value / 1e3)
    } else if value >= 1.0 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_with_its_legend_escaped() {
        let chart = Chart {
            title: "latency <mix>".into(),
            x_label: "percentile".into(),
            y_label: "ms".into(),
            x_ticks: vec![(1.0, "0%".into()), (100.0, "99%".into())],
            series: vec![
                Series { label: "attach".into(), points: vec![(1.0, 2.0), (100.0, 9.0)], dashed: false },
                Series {
                    label: "attach_shaped".into(),
                    points: vec![(1.0, 0.5), (100.0, 1.5)],
                    dashed: true,
                },
            ],
        };
        let svg = render(&chart);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("stroke-dasharray") && svg.contains("latency &lt;mix&gt;"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn an_empty_chart_still_renders() {
        let chart = Chart {
            title: "empty".into(),
            x_label: String::new(),
            y_label: String::new(),
            x_ticks: Vec::new(),
            series: Vec::new(),
        };
        let svg = render(&chart);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn labels_powers_of_ten_compactly() {
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(10.0), "10");
        assert_eq!(format_value(1e3), "1k");
        assert_eq!(format_value(1e6), "1M");
    }
}
