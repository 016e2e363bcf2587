//! The raw results as JSON: every measurement and every median.

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::med;
use crate::driver::accept::ACCEPT_MSG;
use crate::driver::scenarios::{CONCURRENT_MSG, PING_MSG};
use crate::driver::udp::{LOSS_TIMEOUT, UDP_MSG};
use crate::driver::{Case, Plan, Record, ScaleLoad};
use crate::procfs::Machine;
use crate::servers::spread_name;

fn case_json(c: &Case) -> Value {
    match *c {
        Case::Throughput { size, volume } => json!({"size": size, "volume": volume}),
        Case::Concurrent { conns } => json!({"conns": conns, "msg": CONCURRENT_MSG}),
        Case::PingPong { conns, secs } => json!({"conns": conns, "secs": secs, "msg": PING_MSG}),
        Case::Idle {
            conns,
            settle_ms,
            cpu_secs,
        } => json!({"conns": conns, "settle_ms": settle_ms, "cpu_secs": cpu_secs}),
        Case::Allocs {
            conns,
            warmup,
            requests,
        } => json!({"conns": conns, "warmup": warmup, "requests": requests, "msg": PING_MSG}),
        Case::Cost { conns, rounds } => json!({"conns": conns, "rounds": rounds, "msg": PING_MSG}),
        Case::Udp { clients, secs } => json!({
            "clients": clients,
            "secs": secs,
            "msg": UDP_MSG,
            "in_flight_per_client": 1,
            "loss_timeout_ms": LOSS_TIMEOUT.as_millis() as u64,
        }),
        Case::AcceptRate {
            workers,
            in_flight,
            secs,
            warmup_ms,
        } => json!({
            "workers": workers,
            "in_flight_per_worker": in_flight,
            "secs": secs,
            "warmup_ms": warmup_ms,
            "msg": ACCEPT_MSG,
        }),
        Case::Scaling { threads, setup, load } => {
            let mut v = match load {
                ScaleLoad::PingPong {
                    load_threads,
                    conns,
                    secs,
                } => json!({"load": "ping-pong", "load_threads": load_threads, "conns": conns,
                            "secs": secs, "msg": PING_MSG}),
                ScaleLoad::Accept {
                    workers,
                    in_flight,
                    secs,
                    warmup_ms,
                } => json!({"load": "accept-rate", "workers": workers, "in_flight_per_worker": in_flight,
                            "secs": secs, "warmup_ms": warmup_ms, "msg": ACCEPT_MSG}),
            };
            v["threads"] = json!(threads);
            v["spread"] = json!(spread_name(setup.spread));
            v["pinned"] = json!(setup.pin);
            v["batch_scheduling"] = json!(setup.batch);
            v["load_off_server_cpus"] = json!(setup.pin && setup.place_load);
            v
        }
    }
}

/// Every record and every median, as JSON.
pub fn json(machine: &Machine, plan: &Plan, records: &[Record], elapsed: Duration) -> Value {
    let runs: Vec<Value> = records
        .iter()
        .map(|r| {
            let mut v = json!({
                "scenario": r.case.scenario(),
                "case": r.case.label(),
                "params": case_json(&r.case),
                "server": r.imp.name(),
                "rep": r.rep,
            });
            match &r.result {
                Ok(m) => {
                    let metrics: Map<String, Value> =
                        m.iter().map(|(k, x)| (k.to_string(), json!(x))).collect();
                    v["metrics"] = Value::Object(metrics);
                }
                Err(e) => v["error"] = json!(e),
            }
            v
        })
        .collect();
    let mut medians = Vec::new();
    for case in &plan.cases {
        for imp in plan.servers_for(case) {
            let keys: Vec<&str> = records
                .iter()
                .filter(|r| r.case == *case && r.imp == imp)
                .filter_map(|r| r.result.as_ref().ok())
                .flat_map(|m| m.iter().map(|(k, _)| *k))
                .fold(Vec::new(), |mut acc, k| {
                    if !acc.contains(&k) {
                        acc.push(k);
                    }
                    acc
                });
            let metrics: Map<String, Value> = keys
                .iter()
                .filter_map(|k| med(records, case, imp, k).map(|v| (k.to_string(), json!(v))))
                .collect();
            medians.push(json!({
                "scenario": case.scenario(),
                "case": case.label(),
                "params": case_json(case),
                "server": imp.name(),
                "median": metrics,
            }));
        }
    }
    json!({
        "plan": plan.name,
        "repetitions": plan.reps,
        "elapsed_s": elapsed.as_secs_f64(),
        "machine": {
            "cpus": machine.cpus,
            "model": machine.model,
            "kernel": machine.kernel,
            "rustc": machine.rustc,
            "clk_tck": machine.clk_tck,
            "ephemeral_ports": machine.ephemeral_ports,
            "tcp_tw_reuse": machine.tcp_tw_reuse,
        },
        "servers": plan.servers.iter().map(|s| s.name()).collect::<Vec<_>>(),
        "runs": runs,
        "medians": medians,
    })
}
