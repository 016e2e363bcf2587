//! The SVG plots: completion time against connection count, and bars per
//! scenario.

use super::{has, med};
use crate::driver::accept::ACCEPT_MSG;
use crate::driver::scenarios::{size_label, CONCURRENT_MSG, PING_MSG};
use crate::driver::svg::{self, Bar, Series, COLORS};
use crate::driver::udp::UDP_MSG;
use crate::driver::{Case, Plan, Record};
use crate::servers::Impl;

fn color(imp: Impl) -> &'static str {
    let i = Impl::ALL
        .iter()
        .chain(&Impl::EXTRA)
        .position(|&x| x == imp)
        .unwrap_or(0);
    COLORS[i % COLORS.len()]
}

/// Bars of median `key` per server, one panel per case of `scenario`.
fn panels(plan: &Plan, records: &[Record], scenario: &str, key: &str) -> Vec<(String, Vec<Bar>)> {
    plan.cases
        .iter()
        .filter(|c| c.scenario() == scenario)
        .map(|c| {
            let bars = plan
                .servers_for(c)
                .into_iter()
                .map(|imp| Bar {
                    name: imp.name().into(),
                    color: color(imp),
                    value: med(records, c, imp, key).unwrap_or(0.0),
                })
                .collect();
            (c.label(), bars)
        })
        .collect()
}

/// The plots, as `(file name, SVG text)`.
pub fn plots(plan: &Plan, records: &[Record]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if has(plan, "concurrent") {
        let series: Vec<Series> = plan
            .servers
            .iter()
            .map(|&imp| Series {
                name: imp.name().into(),
                color: color(imp),
                points: plan
                    .cases
                    .iter()
                    .filter_map(|c| match c {
                        Case::Concurrent { conns } => {
                            med(records, c, imp, "seconds").map(|v| (*conns as f64, v))
                        }
                        _ => None,
                    })
                    .collect(),
            })
            .collect();
        let title = format!(
            "Concurrent: N connections x one {} echo",
            size_label(CONCURRENT_MSG)
        );
        out.push((
            "concurrent.svg".into(),
            svg::line_chart(
                &title,
                "connections",
                "seconds, first write to last echo",
                &series,
            ),
        ));
    }
    if has(plan, "throughput") {
        let p = panels(plan, records, "throughput", "mb_per_s");
        let svg = svg::bar_panels(
            "Throughput, one connection, by write size (each panel has its own scale)",
            "MB/s",
            &p,
        );
        out.push(("throughput.svg".into(), svg));
    }
    if has(plan, "ping-pong") {
        let p = panels(plan, records, "ping-pong", "rps");
        let title = format!("Ping-pong {PING_MSG} B, by connection count (each panel has its own scale)");
        out.push((
            "pingpong.svg".into(),
            svg::bar_panels(&title, "round trips/s", &p),
        ));
    }
    if has(plan, "udp") {
        let p = panels(plan, records, "udp", "rps");
        let title =
            format!("UDP echo {UDP_MSG} B, one datagram in flight per client (each panel has its own scale)");
        out.push(("udp.svg".into(), svg::bar_panels(&title, "round trips/s", &p)));
    }
    if has(plan, "accept-rate") {
        // One case: a panel for the rate and one for the CPU it cost.
        let rate = panels(plan, records, "accept-rate", "conns_per_s");
        let cpu = panels(plan, records, "accept-rate", "cpu_us_per_conn");
        if let (Some((_, rate)), Some((_, cpu))) = (rate.into_iter().next(), cpu.into_iter().next()) {
            let p = [
                ("connections/s".to_string(), rate),
                ("server CPU µs per connection".to_string(), cpu),
            ];
            let title = format!("Accept rate: a new connection per {ACCEPT_MSG} B echo");
            out.push((
                "accept.svg".into(),
                svg::bar_panels(&title, "each panel has its own scale", &p),
            ));
        }
    }
    if has(plan, "idle") {
        let p = panels(plan, records, "idle", "rss_per_conn_b");
        let svg = svg::bar_panels("Idle connections: server RSS growth", "bytes per connection", &p);
        out.push(("idle.svg".into(), svg));
    }
    out.extend(super::scaling::plot(plan, records));
    out
}
