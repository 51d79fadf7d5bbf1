//! The metrics read from the live state when `/metrics` is scraped
//! (versions, health, policies, etcd), beside the request path's own
//! counters ([`crate::metrics`]).

use super::Admin;
use crate::metrics::Labels;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Metrics read from the live state at scrape time.
pub(super) fn live_state(admin: &Admin) -> Registry {
    let control = &admin.control;
    let mut r = Registry::default();
    let gauge = |r: &mut Registry, name: &str, help: &str, series: Vec<(Labels, f64)>| {
        let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        for (labels, value) in series {
            family.get_or_create(&labels).set(value);
        }
        r.register(name, help, family);
    };
    let counter = |r: &mut Registry, name: &str, help: &str, series: Vec<(Labels, u64)>| {
        let family = Family::<Labels, Counter>::default();
        for (labels, value) in series {
            family.get_or_create(&labels).inc_by(value);
        }
        r.register(name, help, family);
    };
    let l = |pairs: &[(&str, String)]| -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    };

    gauge(
        &mut r,
        "edgeward_build_info",
        "Build of the running engine",
        vec![(l(&[("version", env!("CARGO_PKG_VERSION").into())]), 1.0)],
    );
    let topology = control.topology.load();
    gauge(
        &mut r,
        "edgeward_topology_info",
        "The topology being served",
        vec![(
            l(&[
                ("version", topology.version.to_string()),
                ("hash", topology.hash.clone()),
            ]),
            1.0,
        )],
    );
    gauge(
        &mut r,
        "edgeward_uptime_seconds",
        "Seconds since the engine started",
        vec![(Vec::new(), control.started.elapsed().as_secs_f64())],
    );
    gauge(
        &mut r,
        "edgeward_ready",
        "1 when the engine serves players",
        vec![(Vec::new(), if admin.is_ready() { 1.0 } else { 0.0 })],
    );

    if let Some(cluster) = &admin.cluster {
        let (connected, revision, reconnects, refused) = cluster.figures();
        gauge(
            &mut r,
            "edgeward_etcd_connected",
            "1 when the node is connected to etcd and following it",
            vec![(Vec::new(), if connected { 1.0 } else { 0.0 })],
        );
        gauge(
            &mut r,
            "edgeward_etcd_applied_revision",
            "Highest etcd revision of the configuration applied on this node",
            vec![(Vec::new(), revision as f64)],
        );
        counter(
            &mut r,
            "edgeward_etcd_disconnects",
            "Times the node lost etcd",
            vec![(Vec::new(), reconnects)],
        );
        counter(
            &mut r,
            "edgeward_etcd_refused_changes",
            "Changes from etcd this node refused (validation failed), keeping its configuration",
            vec![(Vec::new(), refused)],
        );
    }

    let policies = control.policies.list();
    let id = |p: &crate::policy::PolicyInfo| {
        l(&[
            ("policy", p.name.clone()),
            ("version", p.version.to_string()),
        ])
    };
    gauge(
        &mut r,
        "edgeward_policy_info",
        "Loaded policy versions and their role",
        policies
            .iter()
            .map(|p| {
                let mut labels = id(p);
                labels.extend(l(&[("role", p.role.into()), ("hash", p.hash.clone())]));
                (labels, 1.0)
            })
            .collect(),
    );
    counter(
        &mut r,
        "edgeward_policy_calls",
        "Policy calls",
        policies.iter().map(|p| (id(p), p.stats.calls)).collect(),
    );
    counter(
        &mut r,
        "edgeward_policy_traps",
        "Policy calls that trapped or ran out of budget",
        policies.iter().map(|p| (id(p), p.stats.traps)).collect(),
    );
    counter(
        &mut r,
        "edgeward_policy_deadline_hits",
        "Policy calls that ran out of budget",
        policies
            .iter()
            .map(|p| (id(p), p.stats.deadline_hits))
            .collect(),
    );
    counter(
        &mut r,
        "edgeward_policy_instances_recycled",
        "Policy instances replaced by fresh ones before their memory reached its cap",
        policies.iter().map(|p| (id(p), p.stats.recycled)).collect(),
    );
    counter(
        &mut r,
        "edgeward_policy_invalid_answers",
        "Policy answers refused by the engine's checks",
        policies
            .iter()
            .map(|p| (id(p), p.stats.invalid_answers))
            .collect(),
    );
    gauge(
        &mut r,
        "edgeward_policy_mean_call_seconds",
        "Mean duration of a policy call",
        policies
            .iter()
            .map(|p| (id(p), p.stats.mean_call_us / 1e6))
            .collect(),
    );
    gauge(
        &mut r,
        "edgeward_server_state",
        "Health state of each server: 1 for its current state (up, down, unknown, draining)",
        admin
            .control
            .health
            .load()
            .entries()
            .iter()
            .map(|s| {
                let state = s.health.view().state;
                (
                    l(&[("server", s.id.to_string()), ("state", state.to_string())]),
                    1.0,
                )
            })
            .collect(),
    );
    r
}
