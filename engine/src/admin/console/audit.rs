//! The audit log: who changed what and when (the API's `GET /audit`; in a
//! fleet every node's changes, from etcd).

use super::page::{self, Flash, Section};
use super::{Ctx, Reply};
use http::{Method, StatusCode};
use maud::html;
use serde_json::Value;

/// Choices of how far back to look, in hours.
const SPANS: [(u64, &str); 4] = [
    (1, "the last hour"),
    (24, "the last day"),
    (168, "the last week"),
    (720, "the last 30 days"),
];

/// `GET /ui/audit?hours=`.
pub async fn page(ctx: &Ctx<'_>) -> Reply {
    let asked = super::form::decode(&ctx.query);
    let hours = asked
        .iter()
        .find(|(k, _)| k == "hours")
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .filter(|h| SPANS.iter().any(|(s, _)| s == h))
        .unwrap_or(24);
    let since = crate::time::unix_millis(std::time::SystemTime::now())
        .saturating_sub(hours * 3_600_000)
        .to_string();
    let answer = ctx
        .api(
            Method::GET,
            "/audit",
            &super::form::encode(&[("since", &since), ("limit", "500")]),
            None,
        )
        .await;
    let flash = (!answer.is_ok()).then(|| Flash::refused(answer.error()));
    let mut entries: Vec<Value> = answer.value["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    entries.reverse();
    let text = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let body = html! {
        form.filters method="get" action="/ui/audit" {
            label { "Since"
                select name="hours" {
                    @for (h, label) in SPANS { option value=(h) selected[h == hours] { (label) } }
                }
            }
            button type="submit" { "Show" }
        }
        p { (entries.len()) " changes, newest first (at most 500)." }
        div.table-wrap {
            table.stacked #audit {
                thead { tr {
                    th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Action" }
                    th scope="col" { "What" } th scope="col" { "Changed" }
                } }
                tbody {
                    @for e in &entries {
                        tr {
                            td data-label="When" { (page::when(e["time"].as_str().unwrap_or_default())) }
                            td data-label="Who" { (text(&e["who"])) }
                            td data-label="Action" { (text(&e["action"])) }
                            td data-label="What" { (text(&e["kind"])) @if !e["key"].is_null() { " " span.mono { (text(&e["key"])) } } }
                            td.mono data-label="Changed" {
                                @if let Some(m) = e["changed"].as_object() {
                                    @for (field, change) in m {
                                        (field) ": " (match change.as_array() {
                                            Some(pair) if pair.len() == 2 => format!("{} → {}", text(&pair[0]), text(&pair[1])),
                                            _ => text(change),
                                        })
                                        br;
                                    }
                                } @else if !e["after"].is_null() {
                                    (text(&e["after"]))
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page::render(
        ctx,
        StatusCode::OK,
        Section::Audit,
        "Audit log",
        flash,
        body,
    )
}
