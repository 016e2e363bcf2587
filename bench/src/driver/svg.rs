//! Hand-written SVG plots: a line chart and panels of bars.

use std::fmt::Write;

/// One colour per server, in [`Impl::ALL`](crate::servers::Impl::ALL) order,
/// then [`Impl::EXTRA`](crate::servers::Impl::EXTRA).
pub const COLORS: [&str; 8] = [
    "#1f77b4", "#bcbd22", "#17becf", "#d62728", "#9467bd", "#ff7f0e", "#7f7f7f", "#2ca02c",
];

/// A named line of `(x, y)` points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Stroke colour.
    pub color: &'static str,
    /// Points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// One bar of a panel.
#[derive(Debug, Clone)]
pub struct Bar {
    /// Legend text.
    pub name: String,
    /// Fill colour.
    pub color: &'static str,
    /// Height in data units.
    pub value: f64,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A round upper bound for an axis and its tick step (5 ticks or fewer).
fn axis(max: f64) -> (f64, f64) {
    if max <= 0.0 || !max.is_finite() {
        return (1.0, 0.2);
    }
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| s * 5.0 >= max)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

fn tick_label(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

fn header(out: &mut String, w: f64, h: f64, title: &str) {
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        w / 2.0,
        esc(title)
    );
}

fn legend(out: &mut String, x: f64, y: f64, items: &[(&str, &str)]) {
    for (k, (name, color)) in items.iter().enumerate() {
        let yy = y + 18.0 * k as f64;
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            yy - 10.0,
            x + 18.0,
            yy,
            esc(name)
        );
    }
}

/// Width and height of a [`line_chart`].
pub const LINE_CHART_SIZE: (f64, f64) = (760.0, 440.0);

/// A line chart, both axes from 0. When every x is a whole number (a
/// count), the x ticks are whole numbers too.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let (w, h) = LINE_CHART_SIZE;
    let (left, right, top, bottom) = (70.0, 170.0, 40.0, 50.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let all = series.iter().flat_map(|s| s.points.iter());
    let (x_max, y_max) = all.fold((0f64, 0f64), |(a, b), p| (a.max(p.0), b.max(p.1)));
    let (mut x_top, mut x_step) = axis(x_max);
    let whole = series.iter().flat_map(|s| &s.points).all(|p| p.0.fract() == 0.0);
    if whole && x_step < 1.0 {
        x_step = 1.0;
        x_top = x_max.ceil().max(1.0);
    }
    let (y_top, y_step) = axis(y_max);
    let px = |x: f64| left + x / x_top * pw;
    let py = |y: f64| top + ph - y / y_top * ph;
    let mut out = String::new();
    header(&mut out, w, h, title);
    let mut t = 0.0;
    while t <= y_top + y_step / 2.0 {
        let y = py(t);
        let _ = writeln!(
            out,
            r##"<line x1="{left}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            left + pw,
            left - 6.0,
            y + 4.0,
            tick_label(t),
        );
        t += y_step;
    }
    let mut t = 0.0;
    while t <= x_top + x_step / 2.0 {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            px(t),
            top + ph + 16.0,
            tick_label(t)
        );
        t += x_step;
    }
    let _ = writeln!(
        out,
        r#"<line x1="{left}" x2="{left}" y1="{top}" y2="{}" stroke="black"/><line x1="{left}" x2="{}" y1="{y}" y2="{y}" stroke="black"/>"#,
        top + ph,
        left + pw,
        y = top + ph
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        left + pw / 2.0,
        h - 12.0,
        esc(x_label)
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(16 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
        top + ph / 2.0,
        esc(y_label)
    );
    for s in series {
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            s.color,
            pts.join(" ")
        );
        for &(x, y) in &s.points {
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                px(x),
                py(y),
                s.color
            );
        }
    }
    let items: Vec<(&str, &str)> = series.iter().map(|s| (s.name.as_str(), s.color)).collect();
    legend(&mut out, w - right + 20.0, top + 12.0, &items);
    out.push_str("</svg>\n");
    out
}

/// Charts made by [`line_chart`] side by side in one picture, under a
/// title of their own.
pub fn side_by_side(title: &str, charts: &[String]) -> String {
    let (cw, ch) = LINE_CHART_SIZE;
    // Room for the title above the charts' own.
    let top = 34.0;
    let (w, h) = (cw * charts.len().max(1) as f64, ch + top);
    let mut out = String::new();
    header(&mut out, w, h, title);
    for (k, chart) in charts.iter().enumerate() {
        let _ = writeln!(out, r#"<g transform="translate({} {top})">"#, cw * k as f64);
        out.push_str(chart);
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
    out
}

/// Side-by-side panels of bars, each panel with its own scale (so cases of
/// very different magnitude stay readable, which the title should say) and
/// its value over each bar.
pub fn bar_panels(title: &str, y_label: &str, panels: &[(String, Vec<Bar>)]) -> String {
    let bars = panels.iter().map(|p| p.1.len()).max().unwrap_or(1).max(1) as f64;
    let (bar_w, gap, panel_pad) = (26.0, 4.0, 50.0);
    let panel_w = bars * (bar_w + gap) + panel_pad;
    let (left, right, top, bottom) = (40.0, 170.0, 50.0, 40.0);
    let ph = 300.0;
    let w = left + right + panel_w * panels.len().max(1) as f64;
    let h = top + ph + bottom;
    let mut out = String::new();
    header(&mut out, w, h, title);
    let _ = writeln!(
        out,
        r#"<text transform="translate(16 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
        top + ph / 2.0,
        esc(y_label)
    );
    for (k, (label, panel)) in panels.iter().enumerate() {
        let x0 = left + panel_w * k as f64 + panel_pad / 2.0;
        let max = panel.iter().map(|b| b.value).fold(0f64, f64::max);
        let (y_top, _) = axis(max);
        let _ = writeln!(
            out,
            r#"<line x1="{}" x2="{}" y1="{y}" y2="{y}" stroke="black"/>"#,
            x0 - 6.0,
            x0 + bars * (bar_w + gap),
            y = top + ph
        );
        for (j, b) in panel.iter().enumerate() {
            let bh = if y_top > 0.0 {
                b.value.max(0.0) / y_top * ph
            } else {
                0.0
            };
            let x = x0 + j as f64 * (bar_w + gap);
            let _ = writeln!(
                out,
                r#"<rect x="{x:.1}" y="{:.1}" width="{bar_w}" height="{bh:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                top + ph - bh,
                b.color,
                esc(&b.name),
                tick_label(b.value)
            );
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9">{}</text>"#,
                x + bar_w / 2.0,
                top + ph - bh - 3.0,
                tick_label(b.value)
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x0 + bars * (bar_w + gap) / 2.0,
            top + ph + 18.0,
            esc(label)
        );
    }
    let mut items: Vec<(&str, &str)> = Vec::new();
    for (_, panel) in panels {
        for b in panel {
            if !items.iter().any(|i| i.0 == b.name) {
                items.push((b.name.as_str(), b.color));
            }
        }
    }
    legend(&mut out, w - right + 20.0, top + 12.0, &items);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_round_and_cover_the_data() {
        assert_eq!(axis(4.3), (5.0, 1.0));
        assert_eq!(axis(870.0), (1000.0, 200.0));
        let (top, _) = axis(0.0123);
        assert!(top >= 0.0123);
    }

    #[test]
    fn charts_are_closed_svg() {
        let s = Series {
            name: "a<b".into(),
            color: COLORS[0],
            points: vec![(1.0, 2.0), (2.0, 3.0)],
        };
        let svg = line_chart("t", "x", "y", &[s]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>") && svg.contains("a&lt;b"));
        let bar = Bar {
            name: "x".into(),
            color: COLORS[1],
            value: 5.0,
        };
        assert!(bar_panels("t", "y", &[("p".into(), vec![bar])]).contains("<rect"));
        let counts = Series {
            name: "n".into(),
            color: COLORS[6],
            points: vec![(1.0, 2.0), (2.0, 3.0)],
        };
        let chart = line_chart("t", "threads", "y", &[counts]);
        assert!(!chart.contains(">0.5<"), "{chart}");
        let both = side_by_side("two", &[chart.clone(), chart]);
        assert_eq!(both.matches("<svg").count(), 3);
        assert_eq!(both.matches("</svg>").count(), 3);
        assert!(both.trim_end().ends_with("</svg>"));
    }
}
