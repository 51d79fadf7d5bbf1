//! The health board: every server with its state, since when, the last
//! error, its figures and round-trip time; drain and undrain.

use super::form::Form;
use super::page::{self, Flash, Section, csrf_field};
use super::{Ctx, Reply};
use http::{Method, StatusCode};
use maud::html;
use serde_json::Value;

/// `GET /ui/health`.
pub async fn page(ctx: &Ctx<'_>) -> Reply {
    let answer = ctx.api(Method::GET, "/servers", "", None).await;
    let servers: Vec<Value> = answer.value["servers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let disabled = !ctx.may_change();
    let body = html! {
        p { "Topology version " (answer.value["topology_version"]) ". A drained server is offered to no new player until it is undrained." }
        div.table-wrap {
            table.stacked {
                caption.muted { (servers.len()) " servers" }
                thead { tr {
                    th scope="col" { "Server" } th scope="col" { "Kind" } th scope="col" { "Address" }
                    th scope="col" { "State" } th scope="col" { "Since" } th scope="col" { "Last error" }
                    th.num scope="col" { "Round trip" } th scope="col" { "Figures" } th scope="col" { "Action" }
                } }
                tbody {
                    @for s in &servers {
                        @let id = s["id"].as_str().unwrap_or_default();
                        @let state = s["state"].as_str().unwrap_or("unknown");
                        @let draining = s["draining"].as_bool().unwrap_or(false);
                        tr #(format!("server-{id}")) {
                            th scope="row" {
                                a href=(format!("/ui/topology/servers/{}", super::entities::segment(id))) { (id) }
                                @if s["active"] == false { " " span.muted { "(inactive)" } }
                            }
                            td data-label="Kind" { (s["kind"].as_str().unwrap_or("")) }
                            td.mono data-label="Address" { (s["host"].as_str().unwrap_or("")) ":" (s["port"]) }
                            td data-label="State" { span class=(format!("state-{state}")) { (state) } }
                            td data-label="Since" { (s["since"].as_str().map(page::when).unwrap_or_default()) }
                            td data-label="Last error" { (s["last_error"].as_str().unwrap_or("")) }
                            td.num data-label="Round trip" { (s["rtt_us"].as_u64().map(|us| format!("{:.1} ms", us as f64 / 1000.0)).unwrap_or_default()) }
                            td.mono data-label="Figures" {
                                @if let Some(f) = s["figures"].as_object() {
                                    @for (k, v) in f { (k) "=" (v) " " }
                                }
                            }
                            td data-label="Action" {
                                form.inline method="post" action=(format!("/ui/health/{}", super::entities::segment(id))) {
                                    (csrf_field(ctx))
                                    @if draining {
                                        input type="hidden" name="action" value="undrain";
                                        button type="submit" disabled[disabled] aria-label=(format!("Undrain {id}")) { "Undrain" }
                                    } @else {
                                        input type="hidden" name="action" value="drain";
                                        button.secondary type="submit" disabled[disabled] aria-label=(format!("Drain {id}")) { "Drain" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let flash = (!answer.is_ok()).then(|| Flash::refused(answer.error()));
    page::render(
        ctx,
        StatusCode::OK,
        Section::Health,
        "Health board",
        flash,
        body,
    )
}

/// `POST /ui/health/{server}`: drain or undrain it.
pub async fn drain(ctx: &Ctx<'_>, server: &str, form: &Form) -> Reply {
    let method = match form.text("action") {
        "drain" => Method::POST,
        "undrain" => Method::DELETE,
        other => {
            return page::after(
                ctx,
                "/ui/health",
                Flash::refused(format!("action {other:?} is neither drain nor undrain")),
            );
        }
    };
    let path = format!("/servers/{}/drain", super::entities::segment(server));
    let answer = ctx.api(method.clone(), &path, "", None).await;
    let flash = if answer.is_ok() {
        let what = if method == Method::POST {
            "drained"
        } else {
            "undrained"
        };
        let pending = if answer.value["applied_here"] == false {
            " (written to etcd; this node serves it in a moment)"
        } else {
            ""
        };
        Flash::done(format!("Server {server} {what}{pending}."))
    } else {
        Flash::refused(answer.error())
    };
    page::after(ctx, "/ui/health", flash)
}
