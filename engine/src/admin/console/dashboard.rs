//! The dashboard: requests per second by kind and status, decision time,
//! the policies serving and how they fare, the topology, health and etcd.
//!
//! The charts need a history the counters do not keep, so the admin
//! thread samples the request path's own counters and histogram every
//! [`EVERY`] (from their Prometheus text, the same figures `/metrics`
//! serves) and keeps the last [`KEPT`] samples: ten minutes.

use super::page::{self, Section};
use super::{Admin, Ctx, Reply};
use http::{Method, StatusCode};
use maud::{Markup, html};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the counters are sampled.
const EVERY: Duration = Duration::from_secs(5);

/// Samples kept (ten minutes).
const KEPT: usize = 121;

/// The kept samples, oldest first.
#[derive(Default)]
pub struct Samples(VecDeque<Sample>);

/// The request path's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    at: Option<Instant>,
    /// Requests so far by (kind, status code), summed over workers.
    requests: BTreeMap<(String, u16), u64>,
    /// The decision time histogram: (upper bound in seconds, requests at
    /// or below it), summed over workers, in bound order.
    decisions: Vec<(f64, u64)>,
}

impl Sample {
    /// Reads the counters from their Prometheus text.
    fn parse(text: &str) -> Sample {
        let mut s = Sample::default();
        let mut buckets: BTreeMap<u64, (f64, u64)> = BTreeMap::new();
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let value = value as u64;
            if let Some(labels) = series.strip_prefix("edgeward_requests_total{") {
                if let (Some(kind), Some(code)) = (label(labels, "kind"), label(labels, "code"))
                    && let Ok(code) = code.parse::<u16>()
                {
                    *s.requests.entry((kind.to_string(), code)).or_default() += value;
                }
            } else if let Some(labels) =
                series.strip_prefix("edgeward_decision_duration_seconds_bucket{")
                && let Some(le) = label(labels, "le")
            {
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::INFINITY)
                };
                // Keyed by the bound's bits: positive floats sort as their bits.
                buckets.entry(bound.to_bits()).or_insert((bound, 0)).1 += value;
            }
        }
        s.decisions = buckets.into_values().collect();
        s
    }

    fn total(&self) -> u64 {
        self.requests.values().sum()
    }
}

/// A label's value in `a="x",b="y"}`.
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &labels[start..];
    Some(&rest[..rest.find('"')?])
}

/// Samples the counters forever (on the admin thread).
pub async fn sample_forever(admin: Arc<Admin>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let mut sample = Sample::parse(&admin.control.metrics.request_path_text());
        sample.at = Some(Instant::now());
        let mut samples = admin
            .console
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        samples.0.push_back(sample);
        while samples.0.len() > KEPT {
            samples.0.pop_front();
        }
    }
}

/// The `q` quantile (0-1) of the decisions between two samples, in
/// seconds, interpolated within its bucket as Prometheus'
/// `histogram_quantile` does; none without decisions.
fn quantile(q: f64, before: &[(f64, u64)], after: &[(f64, u64)]) -> Option<f64> {
    let counts: Vec<(f64, u64)> = after
        .iter()
        .map(|&(bound, n)| {
            let was = before
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0, |(_, n)| *n);
            (bound, n.saturating_sub(was))
        })
        .collect();
    let total = counts.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut lower = (0.0, 0u64);
    for &(bound, cumulative) in &counts {
        if cumulative as f64 >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = (cumulative - lower.1) as f64;
            let share = if in_bucket > 0.0 {
                (rank - lower.1 as f64) / in_bucket
            } else {
                1.0
            };
            return Some(lower.0 + (bound - lower.0) * share);
        }
        lower = (bound, cumulative);
    }
    Some(lower.0)
}

/// The kinds of request, as the counters name them.
const KINDS: [&str; 5] = ["live", "catchup", "vod", "static", "other"];

/// Rates between consecutive samples: seconds before now, requests/s by
/// status class and by kind, p50 and p99 decision time in µs.
struct Point {
    ago: f64,
    by_class: [f64; 3],
    by_kind: [f64; KINDS.len()],
    p50_us: Option<f64>,
    p99_us: Option<f64>,
}

fn points(samples: &[Sample], now: Instant) -> Vec<Point> {
    samples
        .windows(2)
        .filter_map(|w| {
            let (a, b) = (&w[0], &w[1]);
            let secs = b.at?.duration_since(a.at?).as_secs_f64();
            if secs <= 0.0 {
                return None;
            }
            let mut by_class = [0.0; 3];
            let mut by_kind = [0.0; KINDS.len()];
            for ((kind, code), n) in &b.requests {
                let was = a.requests.get(&(kind.clone(), *code)).copied().unwrap_or(0);
                let class = match code {
                    0..=399 => 0,
                    400..=499 => 1,
                    _ => 2,
                };
                let rate = n.saturating_sub(was) as f64 / secs;
                by_class[class] += rate;
                if let Some(k) = KINDS.iter().position(|k| k == kind) {
                    by_kind[k] += rate;
                }
            }
            Some(Point {
                ago: now.duration_since(b.at?).as_secs_f64(),
                by_class,
                by_kind,
                p50_us: quantile(0.5, &a.decisions, &b.decisions).map(|s| s * 1e6),
                p99_us: quantile(0.99, &a.decisions, &b.decisions).map(|s| s * 1e6),
            })
        })
        .collect()
}

/// `GET /ui/`.
pub async fn page(ctx: &Ctx<'_>) -> Reply {
    let status = ctx.api(Method::GET, "/status", "", None).await.value;
    let policies = ctx.api(Method::GET, "/policies", "", None).await.value;
    let servers = ctx.api(Method::GET, "/servers", "", None).await.value;
    let samples: Vec<Sample> = {
        let kept = ctx
            .admin
            .console
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        kept.0.iter().cloned().collect()
    };
    let mut now_sample = Sample::parse(&ctx.admin.control.metrics.request_path_text());
    let now = Instant::now();
    now_sample.at = Some(now);
    // The last minute: from the sample a minute ago (or the oldest) to now.
    let minute_ago = samples.iter().find(|s| {
        s.at.is_some_and(|t| now.duration_since(t) <= Duration::from_secs(61))
    });
    let (rate, p50, p99) = match minute_ago {
        Some(a) => {
            let secs = now
                .duration_since(a.at.unwrap_or(now))
                .as_secs_f64()
                .max(1.0);
            (
                Some(now_sample.total().saturating_sub(a.total()) as f64 / secs),
                quantile(0.5, &a.decisions, &now_sample.decisions),
                quantile(0.99, &a.decisions, &now_sample.decisions),
            )
        }
        None => (None, None, None),
    };
    let mut series = samples.clone();
    series.push(now_sample.clone());
    let points = points(&series, now);

    let mut health: BTreeMap<String, usize> = BTreeMap::new();
    for s in servers["servers"].as_array().into_iter().flatten() {
        let state = s["state"].as_str().unwrap_or("unknown").to_string();
        *health.entry(state).or_default() += 1;
    }
    let body = html! {
        div data-refresh="10" {}
        section.cards aria-label="Summary" {
            div.card {
                h2 { "Requests per second" }
                p.big { (rate.map_or("—".to_string(), |r| format!("{r:.1}"))) }
                p.muted { "over the last minute" }
            }
            div.card {
                h2 { "Decision time" }
                p.big { (us(p50)) " / " (us(p99)) }
                p.muted { "p50 / p99 over the last minute" }
            }
            div.card {
                h2 { "Health" }
                @if health.is_empty() {
                    p { "No servers." }
                } @else {
                    dl.facts {
                        @for (state, n) in &health {
                            dt { span class=(format!("state-{state}")) { (state) } }
                            dd { (n) }
                        }
                    }
                }
                p { a href="/ui/health" { "Health board" } }
            }
            div.card {
                h2 { "Topology" }
                (topology_card(&status["topology"]))
            }
            div.card {
                h2 { "etcd" }
                (etcd_card(status.get("etcd")))
            }
        }
        h2 { "Requests per second by status, last ten minutes" }
        (chart(&points, |p| p.by_class.iter().map(|v| Some(*v)).collect(), &["2xx/3xx", "4xx", "5xx"], "requests/s"))
        h2 { "Requests per second by kind, last ten minutes" }
        (chart(&points, |p| p.by_kind.iter().map(|v| Some(*v)).collect(), &KINDS, "requests/s"))
        h2 { "Decision time, last ten minutes (µs)" }
        (chart(&points, |p| vec![p.p50_us, p.p99_us], &["p50", "p99"], "µs"))
        h2 { "Policies" }
        (policy_table(&status, &policies))
        h2 { "Requests since the start, by kind and status" }
        (request_table(&now_sample))
    };
    page::render(
        ctx,
        StatusCode::OK,
        Section::Dashboard,
        "Dashboard",
        None,
        body,
    )
}

fn us(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s < 1e-3 => format!("{:.1} µs", s * 1e6),
        Some(s) => format!("{:.2} ms", s * 1e3),
        None => "—".into(),
    }
}

fn topology_card(t: &Value) -> Markup {
    html! {
        dl.facts {
            dt { "Version" } dd { (t["version"]) }
            dt { "Revision" } dd { (t["revision"]) }
            dt { "Hash" } dd.mono { (t["hash"].as_str().map(|h| h.get(..12).unwrap_or(h)).unwrap_or("")) }
        }
        p { (t["summary"].as_str().unwrap_or("")) }
        p { a href="/ui/topology" { "Browse and edit" } }
    }
}

fn etcd_card(etcd: Option<&Value>) -> Markup {
    html! {
        @match etcd {
            None => p { "Not in a fleet: the configuration lives in this node's state directory." },
            Some(e) => dl.facts {
                @if let Some(m) = e.as_object() {
                    @for (k, v) in m {
                        dt { (k.replace('_', " ")) }
                        dd { (match v { Value::String(s) => s.clone(), other => other.to_string() }) }
                    }
                }
            },
        }
    }
}

fn policy_table(status: &Value, policies: &Value) -> Markup {
    let serving: Vec<&Value> = policies["policies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["role"] != "inactive")
        .collect();
    html! {
        p {
            "Active: " strong { (status["active_policy"]["name"].as_str().unwrap_or("?")) "@" (status["active_policy"]["version"]) }
            @if let Some(c) = status["canary"].as_object() {
                " · canary " strong { (c["policy"].as_str().unwrap_or("?")) } " at " (c["percent"]) " %"
            }
            @if let Some(s) = status["shadow"].as_object() {
                " · shadow " strong { (s["policy"].as_str().unwrap_or("?")) } " on " (s["sample_percent"]) " % of requests"
            }
            @if let Some(p) = status["previous_policy"].as_str() {
                " · previous " (p)
            }
        }
        @if let Some(r) = status["last_automatic_rollback"].as_object() {
            p.flash.error { "Last automatic rollback: " (Value::Object(r.clone()).to_string()) }
        }
        div.table-wrap {
            table.stacked {
                thead { tr {
                    th scope="col" { "Version" } th scope="col" { "Role" }
                    th.num scope="col" { "Calls" } th.num scope="col" { "Failures" }
                    th.num scope="col" { "Invalid answers" } th.num scope="col" { "Mean call" }
                } }
                tbody {
                    @for p in serving {
                        tr {
                            th scope="row" { (p["name"].as_str().unwrap_or("?")) "@" (p["version"]) }
                            td data-label="Role" { (p["role"].as_str().unwrap_or("")) }
                            td.num data-label="Calls" { (p["calls"]) }
                            td.num data-label="Failures" { (p["traps"]) }
                            td.num data-label="Invalid answers" { (p["invalid_answers"]) }
                            td.num data-label="Mean call" { (format!("{:.1} µs", p["mean_call_us"].as_f64().unwrap_or(0.0))) }
                        }
                    }
                }
            }
        }
        p { a href="/ui/policies" { "Policies, canary and shadow" } }
    }
}

fn request_table(sample: &Sample) -> Markup {
    let codes: std::collections::BTreeSet<u16> = sample
        .requests
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|((_, c), _)| *c)
        .collect();
    let kinds: std::collections::BTreeSet<&str> =
        sample.requests.keys().map(|(k, _)| k.as_str()).collect();
    if codes.is_empty() {
        return html! { p { "No player requests yet." } };
    }
    html! {
        div.table-wrap {
            table #requests {
                thead { tr {
                    th scope="col" { "Kind" }
                    @for c in &codes { th.num scope="col" { (c) } }
                } }
                tbody {
                    @for k in &kinds {
                        tr {
                            th scope="row" { (k) }
                            @for c in &codes {
                                td.num { (sample.requests.get(&(k.to_string(), *c)).copied().unwrap_or(0)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A line chart of some series over the last ten minutes, as SVG (no
/// script), labelled for screen readers with what it shows.
fn chart(
    points: &[Point],
    values: impl Fn(&Point) -> Vec<Option<f64>>,
    names: &[&str],
    unit: &str,
) -> Markup {
    const W: f64 = 600.0;
    const H: f64 = 160.0;
    const SPAN: f64 = 600.0;
    let rows: Vec<(f64, Vec<Option<f64>>)> = points.iter().map(|p| (p.ago, values(p))).collect();
    let max = rows
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(0.0f64, |m, v| m.max(*v));
    let top = nice_ceiling(max);
    let x = |ago: f64| W - (ago.min(SPAN) / SPAN) * (W - 40.0);
    let y = |v: f64| H - 16.0 - (v / top) * (H - 28.0);
    let lines: Vec<String> = (0..names.len())
        .map(|i| {
            rows.iter()
                .filter_map(|(ago, v)| v.get(i).copied().flatten().map(|v| (ago, v)))
                .map(|(ago, v)| format!("{:.1},{:.1}", x(*ago), y(v)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let label = format!(
        "{} over the last ten minutes; highest {:.1} {unit}",
        names.join(", "),
        max
    );
    html! {
        figure {
            svg.chart viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(label) {
                line x1="40" y1=(y(0.0)) x2=(W) y2=(y(0.0)) stroke="#8a96a3" {}
                line x1="40" y1=(y(top)) x2=(W) y2=(y(top)) stroke="#d5dbe1" {}
                text x="2" y=(y(top) + 4.0) { (format_figure(top)) }
                text x="2" y=(y(0.0)) { "0" }
                text x="40" y=(H - 2.0) { "−10 min" }
                text x=(W - 30.0) y=(H - 2.0) { "now" }
                @for (i, points) in lines.iter().enumerate() {
                    @if !points.is_empty() {
                        polyline class=(format!("c{i}")) points=(points) {}
                    }
                }
            }
            figcaption {
                ul.legend {
                    @for (i, n) in names.iter().enumerate() {
                        li { span class=(format!("swatch c{i}")) {} (n) }
                    }
                }
                @if rows.is_empty() {
                    span.muted { "No samples yet: the first come within " (EVERY.as_secs() * 2) " seconds." }
                }
            }
        }
    }
}

fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if max <= step * magnitude {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn format_figure(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE edgeward_requests counter\n\
        edgeward_requests_total{kind=\"live\",code=\"302\",worker=\"0\"} 10\n\
        edgeward_requests_total{kind=\"live\",code=\"302\",worker=\"1\"} 5\n\
        edgeward_requests_total{kind=\"vod\",code=\"404\",worker=\"0\"} 2\n\
        edgeward_decision_duration_seconds_bucket{le=\"1e-6\",worker=\"0\"} 0\n\
        edgeward_decision_duration_seconds_bucket{le=\"2e-6\",worker=\"0\"} 50\n\
        edgeward_decision_duration_seconds_bucket{le=\"5e-6\",worker=\"0\"} 99\n\
        edgeward_decision_duration_seconds_bucket{le=\"+Inf\",worker=\"0\"} 100\n\
        edgeward_decision_duration_seconds_bucket{le=\"1e-6\",worker=\"1\"} 0\n\
        edgeward_decision_duration_seconds_bucket{le=\"2e-6\",worker=\"1\"} 50\n\
        edgeward_decision_duration_seconds_bucket{le=\"5e-6\",worker=\"1\"} 99\n\
        edgeward_decision_duration_seconds_bucket{le=\"+Inf\",worker=\"1\"} 100\n";

    #[test]
    fn samples_sum_workers_and_quantiles_interpolate() {
        let s = Sample::parse(TEXT);
        assert_eq!(s.requests[&("live".to_string(), 302)], 15);
        assert_eq!(s.total(), 17);
        assert_eq!(
            s.decisions,
            vec![(1e-6, 0), (2e-6, 100), (5e-6, 198), (f64::INFINITY, 200)]
        );
        // Half the 200 decisions took at most 2 µs: p50 is the bucket's top.
        let p50 = quantile(0.5, &[], &s.decisions).unwrap();
        assert!((p50 - 2e-6).abs() < 1e-12, "{p50}");
        // The 198th is at the top of the 5 µs bucket.
        let p99 = quantile(0.99, &[], &s.decisions).unwrap();
        assert!((p99 - 5e-6).abs() < 1e-12, "{p99}");
        // Between a sample and itself there were no decisions.
        assert_eq!(quantile(0.5, &s.decisions, &s.decisions), None);
    }

    #[test]
    fn ceilings_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(12.0), 20.0);
        assert_eq!(nice_ceiling(999.0), 1000.0);
    }
}
