//! The self-contained HTML report of `iommu simulate --html`: inline SVG plots of
//! throughput, latency distribution, stale-window distribution and cache hit rates,
//! plus the raw metrics as a table. No scripts, fonts or other external assets.

use crate::metrics::RunMetrics;
use crate::stats::Log2Histogram;
use std::fmt::Write;

const COLORS: [&str; 6] = [
    "#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6",
];

/// Escape text for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn label(m: &RunMetrics) -> String {
    format!("{} / {}", m.workload, m.policy)
}

/// A horizontal bar chart: one bar per `(label, value)`, with the value printed.
pub fn bar_chart(title: &str, unit: &str, bars: &[(String, f64)]) -> String {
    let w = 640.0;
    let row = 26.0;
    let left = 190.0;
    let h = 40.0 + row * bars.len() as f64;
    let max = bars
        .iter()
        .map(|b| b.1)
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img"><title>{t}</title><text x="4" y="16" font-weight="bold">{t}</text>"#,
        t = escape(title)
    );
    for (i, (name, v)) in bars.iter().enumerate() {
        let y = 28.0 + row * i as f64;
        let bw = if v.is_finite() {
            (w - left - 110.0) * (v / max).max(0.0)
        } else {
            0.0
        };
        let _ = write!(
            s,
            r#"<text x="4" y="{ty}">{n}</text><rect x="{left}" y="{y}" width="{bw:.1}" height="18" fill="{c}"/><text x="{tx:.1}" y="{ty}">{v:.3} {u}</text>"#,
            ty = y + 14.0,
            n = escape(name),
            c = COLORS[i % COLORS.len()],
            tx = left + bw + 4.0,
            u = escape(unit),
        );
    }
    s.push_str("</svg>");
    s
}

/// A log2 histogram plot: one polyline per series over the union of non-empty buckets
/// (x: bucket lower bound, y: share of samples).
pub fn histogram_chart(title: &str, unit: &str, series: &[(String, &Log2Histogram)]) -> String {
    let (w, h, left, bottom) = (640.0, 260.0, 50.0, 40.0);
    let span = series.iter().filter_map(|(_, hgm)| hgm.span()).fold(
        None,
        |acc: Option<(usize, usize)>, (a, b)| {
            Some(acc.map_or((a, b), |(x, y)| (x.min(a), y.max(b))))
        },
    );
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img"><title>{t}</title><text x="4" y="16" font-weight="bold">{t}</text>"#,
        t = escape(title)
    );
    let Some((lo, hi)) = span else {
        s.push_str(r#"<text x="60" y="120">no samples</text></svg>"#);
        return s;
    };
    let n = (hi - lo + 1) as f64;
    let plot_w = w - left - 20.0;
    let plot_h = h - bottom - 30.0;
    let _ = write!(
        s,
        r##"<line x1="{left}" y1="{yb}" x2="{xe}" y2="{yb}" stroke="#444"/><line x1="{left}" y1="30" x2="{left}" y2="{yb}" stroke="#444"/><text x="4" y="40">100%</text><text x="4" y="{yb}">0%</text>"##,
        yb = 30.0 + plot_h,
        xe = left + plot_w
    );
    let step = ((hi - lo) / 8).max(1);
    for b in (lo..=hi).step_by(step) {
        let x = left + plot_w * (b - lo) as f64 / n.max(1.0);
        let _ = write!(
            s,
            r#"<text x="{x:.1}" y="{y}" font-size="10">&#8805;{v}{u}</text>"#,
            y = 30.0 + plot_h + 14.0,
            v = Log2Histogram::lower_bound(b),
            u = escape(unit)
        );
    }
    for (i, (name, hgm)) in series.iter().enumerate() {
        let total = hgm.total().max(1) as f64;
        let pts: Vec<String> = (lo..=hi)
            .map(|b| {
                let x = left + plot_w * ((b - lo) as f64 + 0.5) / n;
                let y = 30.0 + plot_h * (1.0 - hgm.buckets[b] as f64 / total);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let c = COLORS[i % COLORS.len()];
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{p}"/><text x="{lx}" y="{ly}" fill="{c}">{n}</text>"#,
            p = pts.join(" "),
            lx = w - 200.0,
            ly = 30.0 + 14.0 * i as f64,
            n = escape(name)
        );
    }
    s.push_str("</svg>");
    s
}

/// The whole report.
pub fn html(title: &str, runs: &[RunMetrics]) -> String {
    let mut body = String::new();
    let throughput: Vec<_> = runs.iter().map(|m| (label(m), m.ops_per_sec)).collect();
    body.push_str(&bar_chart(
        "Throughput (DMA API operations per real second)",
        "ops/s",
        &throughput,
    ));
    let modelled: Vec<_> = runs
        .iter()
        .map(|m| {
            (
                label(m),
                if m.ops == 0 {
                    0.0
                } else {
                    m.modelled_hw_ns as f64 / m.ops as f64
                },
            )
        })
        .collect();
    body.push_str(&bar_chart(
        "Modelled hardware time per operation (cost table)",
        "ns",
        &modelled,
    ));
    let maps: Vec<_> = runs
        .iter()
        .map(|m| (format!("map {}", label(m)), &m.map_latency_hist))
        .collect();
    body.push_str(&histogram_chart(
        "Map latency distribution (real time)",
        "ns",
        &maps,
    ));
    let unmaps: Vec<_> = runs
        .iter()
        .map(|m| (format!("unmap {}", label(m)), &m.unmap_latency_hist))
        .collect();
    body.push_str(&histogram_chart(
        "Unmap latency distribution (real time)",
        "ns",
        &unmaps,
    ));
    let stale: Vec<_> = runs
        .iter()
        .map(|m| (label(m), &m.stale.histogram))
        .collect();
    body.push_str(&histogram_chart(
        "Stale-translation window distribution (virtual time; none in strict mode)",
        "ns",
        &stale,
    ));
    let mut rates = Vec::new();
    for m in runs {
        for (cache, hm) in [
            ("TLB", &m.hw.tlb),
            ("walk cache", &m.hw.walk_cache),
            ("STE cache", &m.hw.ste_cache),
            ("CD cache", &m.hw.cd_cache),
        ] {
            if let Some(r) = hm.rate() {
                rates.push((format!("{cache} {}", label(m)), r * 100.0));
            }
        }
    }
    body.push_str(&bar_chart("Cache hit rates", "%", &rates));
    body.push_str("<h2>All metrics</h2>");
    for m in runs {
        let json = serde_json::to_string_pretty(&m.deterministic_view()).unwrap_or_default();
        let _ = write!(
            body,
            "<h3>{}</h3><pre>{}</pre>",
            escape(&label(m)),
            escape(&json)
        );
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}svg{{display:block;margin:1em 0;font-size:12px}}\
pre{{background:#f4f4f4;padding:.5em;overflow:auto}}</style></head><body><h1>{t}</h1>\
<p>Simulated SMMUv3 platform; devices do real DMA through the hardware model. Throughput and latencies are real \
time on the machine that ran the simulation; hardware time is modelled with the cost table; stale windows are \
virtual time.</p>{body}</body></html>\n",
        t = escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_is_self_contained_and_escapes() {
        let mut m = RunMetrics {
            workload: "nic<1>".into(),
            policy: "lazy".into(),
            ops: 10,
            ..Default::default()
        };
        m.ops_per_sec = 1234.0;
        m.map_latency_hist.add(100);
        m.stale.histogram.add(5000);
        m.hw.tlb.hits = 3;
        m.hw.tlb.misses = 1;
        let h = html("t", &[m]);
        assert!(h.starts_with("<!DOCTYPE html>"));
        assert!(
            h.contains("<svg") && h.contains("polyline") && h.contains("TLB nic&lt;1&gt; / lazy")
        );
        assert!(!h.contains("nic<1>"));
        assert!(!h.contains("<script") && !h.contains("src=") && !h.contains("url("));
        assert!(!h.contains("href="));
        assert!(h.contains("75.000 %"));
    }

    #[test]
    fn empty_histograms_say_so() {
        let h = Log2Histogram::default();
        assert!(histogram_chart("x", "ns", &[("a".into(), &h)]).contains("no samples"));
    }
}
