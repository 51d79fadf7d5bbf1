//! Explain: a client address and a URL in, the request path's trace out
//! (the API's `GET /explain`), laid out to be read.

use super::page::{self, Flash, Section};
use super::{Ctx, Reply};
use http::{Method, StatusCode};
use maud::{Markup, html};
use serde_json::Value;

/// `GET /ui/explain?client=&url=&tls=&version=`.
pub async fn page(ctx: &Ctx<'_>) -> Reply {
    let asked = super::form::decode(&ctx.query);
    let get = |name: &str| {
        asked
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let (client, url, version) = (get("client"), get("url"), get("version"));
    let tls = !get("tls").is_empty();
    let mut flash = None;
    let mut trace = None;
    if !client.is_empty() || !url.is_empty() {
        let mut pairs = vec![("client", client.as_str()), ("url", url.as_str())];
        if tls {
            pairs.push(("tls", "1"));
        }
        if !version.is_empty() {
            pairs.push(("version", version.as_str()));
        }
        let answer = ctx
            .api(Method::GET, "/explain", &super::form::encode(&pairs), None)
            .await;
        if answer.is_ok() {
            trace = Some(answer.value);
        } else {
            flash = Some(Flash::refused(answer.error()));
        }
    }
    let body = html! {
        form.stack method="get" action="/ui/explain" {
            div.field {
                label for="x-client" { "Client address" }
                input #x-client type="text" name="client" value=(client) placeholder="10.1.2.3" required aria-describedby="x-client-hint";
                span.hint #x-client-hint { "the player's IPv4 or IPv6 address" }
            }
            div.field {
                label for="x-url" { "URL" }
                input #x-url type="text" name="url" value=(url) placeholder="/btv/live/hls/ch1.m3u8" required aria-describedby="x-url-hint";
                span.hint #x-url-hint { "path and query, as the player asks" }
            }
            div.field {
                label for="x-version" { "Policy version (optional)" }
                input #x-version type="text" inputmode="numeric" name="version" value=(version) aria-describedby="x-version-hint";
                span.hint #x-version-hint { "empty: the version that decides for this client now" }
            }
            div.check {
                input #x-tls type="checkbox" name="tls" value="1" checked[tls];
                label for="x-tls" { "The player came over HTTPS" }
            }
            div.actions { button type="submit" { "Explain" } }
        }
        @if let Some(t) = &trace { (render(t)) }
    };
    page::render(
        ctx,
        StatusCode::OK,
        Section::Explain,
        "Explain a decision",
        flash,
        body,
    )
}

/// A value as people read it: an object as `key value, key value`, a
/// list joined with commas.
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Object(m) => m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{} {}", k.replace('_', " "), text(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

fn render(t: &Value) -> Markup {
    html! {
        section #trace aria-label="The trace" {
            h2 { "Answer" }
            dl.facts #answer {
                dt { "Status" } dd { strong { (text(&t["status"])) } }
                @if !t["location"].is_null() { dt { "Location" } dd.mono { (text(&t["location"])) } }
                @if !t["reason"].is_null() { dt { "Reason" } dd { (text(&t["reason"])) } }
                dt { "Client" } dd.mono { (text(&t["client"])) }
                dt { "Topology version" } dd { (text(&t["topology_version"])) }
                @if !t["tls"].is_null() { dt { "Over HTTPS" } dd { (if t["tls"] == true { "yes" } else { "no" }) } }
            }
            h2 { "URL" }
            (facts(&t["url"]))
            @if !t["content"].is_null() { h2 { "Content" } (facts(&t["content"])) }
            @if let Some(s) = t["subnets"].as_object() {
                h2 { "Client subnets (longest first)" }
                @let matched = s["matched"].as_array().cloned().unwrap_or_default();
                @if matched.is_empty() {
                    p { "No subnet holds this address; the default region is " (text(&s["default_region"])) "." }
                } @else {
                    div.table-wrap { table {
                        thead { tr { th scope="col" { "CIDR" } th scope="col" { "Name" } th scope="col" { "Region" } } }
                        tbody { @for m in &matched { tr { td.mono { (text(&m["cidr"])) } td { (text(&m["name"])) } td { (text(&m["region"])) } } } }
                    } }
                }
            }
            @if let Some(tiers) = t["tiers"].as_array() {
                h2 { "Candidates, by tier" }
                @for (i, tier) in tiers.iter().enumerate() {
                    h3 { "Tier " (i + 1) ": region " (text(&tier["region"]))
                        @if tier["region_active"] == false { " (inactive)" }
                        @if !tier["subnet"].is_null() { " via " span.mono { (text(&tier["subnet"])) } } }
                    div.table-wrap { table {
                        thead { tr {
                            th scope="col" { "Server" } th scope="col" { "Group" } th.num scope="col" { "Weight" }
                            th scope="col" { "Health" } th scope="col" { "Eligible" } th scope="col" { "Why not" }
                        } }
                        tbody {
                            @for c in tier["candidates"].as_array().into_iter().flatten() {
                                tr {
                                    th scope="row" { (text(&c["server"])) " " span.muted.mono { (text(&c["host"])) } }
                                    td { (text(&c["group"])) }
                                    td.num { (text(&c["weight"])) }
                                    td { (text(&c["health"])) }
                                    td { (if c["eligible"] == true { "yes" } else { "no" }) }
                                    td { (c["why_not"].as_array().map(|w| w.iter().map(text).collect::<Vec<_>>().join("; ")).unwrap_or_default()) }
                                }
                            }
                        }
                    } }
                }
            }
            @if let Some(p) = t["policy"].as_object() {
                h2 { "Policy call" }
                dl.facts {
                    @for (k, v) in p {
                        @if k != "logs" {
                            dt { (k.replace('_', " ")) }
                            dd.mono { (text(v)) }
                        }
                    }
                }
                @if let Some(logs) = p.get("logs").and_then(Value::as_array) {
                    @if !logs.is_empty() {
                        h3 { "What the policy logged" }
                        pre { @for l in logs { (text(l)) "\n" } }
                    }
                }
            }
            details {
                summary { "The whole trace (JSON)" }
                pre { (serde_json::to_string_pretty(t).unwrap_or_default()) }
            }
        }
    }
}

/// An object's fields as a list of facts (nested objects inline as JSON).
fn facts(v: &Value) -> Markup {
    html! {
        @match v.as_object() {
            Some(m) => dl.facts {
                @for (k, v) in m {
                    @if !v.is_null() {
                        dt { (k.replace('_', " ")) }
                        dd { (text(v)) }
                    }
                }
            },
            None => p { (text(v)) },
        }
    }
}
