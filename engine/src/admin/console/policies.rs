//! Policies: the loaded versions with their hash, role and figures;
//! upload, activate and roll back; a canary with its percentage, promoted
//! or aborted; a shadow with its agreement and the requests it answered
//! differently.

use super::form::Form;
use super::page::{self, Flash, Section, csrf_field};
use super::{Answer, Ctx, Reply};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use maud::{Markup, html};
use serde_json::{Value, json};

/// `GET /ui/policies`.
pub async fn page(ctx: &Ctx<'_>) -> Reply {
    let policies = ctx.api(Method::GET, "/policies", "", None).await.value;
    let status = ctx.api(Method::GET, "/status", "", None).await.value;
    let shadow = ctx.api(Method::GET, "/shadow", "", None).await.value;
    let list: Vec<Value> = policies["policies"].as_array().cloned().unwrap_or_default();
    let disabled = !ctx.may_change();
    let versions = |selected: Option<u64>| -> Markup {
        html! {
            @for p in list.iter().rev() {
                @let v = p["version"].as_u64().unwrap_or(0);
                option value=(v) selected[Some(v) == selected] { (p["name"].as_str().unwrap_or("?")) "@" (v) " (" (p["role"].as_str().unwrap_or("")) ")" }
            }
        }
    };
    let newest_inactive = list
        .iter()
        .rev()
        .find(|p| p["role"] == "inactive")
        .and_then(|p| p["version"].as_u64());
    let body = html! {
        p {
            "Active: " strong { (status["active_policy"]["name"].as_str().unwrap_or("?")) "@" (status["active_policy"]["version"]) }
            @if let Some(p) = status["previous_policy"].as_str() { " · previous " (p) }
            " · fallback when a call fails: " (status["fallback"].as_str().unwrap_or("?"))
        }
        div.table-wrap {
            table.stacked #versions {
                thead { tr {
                    th scope="col" { "Version" } th scope="col" { "Role" } th scope="col" { "Hash" }
                    th scope="col" { "Contract" } th scope="col" { "Limits" } th scope="col" { "Loaded" }
                    th.num scope="col" { "Calls" } th.num scope="col" { "Failures" }
                    th.num scope="col" { "Out of time" } th.num scope="col" { "Invalid answers" }
                    th.num scope="col" { "Mean call" } th scope="col" { "Action" }
                } }
                tbody {
                    @for p in list.iter().rev() {
                        @let v = p["version"].as_u64().unwrap_or(0);
                        @let role = p["role"].as_str().unwrap_or("");
                        tr {
                            th scope="row" { (p["name"].as_str().unwrap_or("?")) "@" (v) }
                            td data-label="Role" { (role) }
                            td.mono data-label="Hash" { (p["hash"].as_str().map(|h| h.get(..12).unwrap_or(h)).unwrap_or("")) }
                            td.mono data-label="Contract" { (p["contract"].as_str().unwrap_or("")) }
                            td data-label="Limits" title=(if p["limits"].as_object().is_some_and(|l| !l.is_empty()) { "stored with this version" } else { "the engine's" }) {
                                (format!("{} ms · {} MiB", p["deadline_ms"].as_f64().unwrap_or(0.0), p["memory_mib"].as_f64().unwrap_or(0.0)))
                            }
                            td data-label="Loaded" { (p["loaded_at"].as_str().map(page::when).unwrap_or_default()) }
                            td.num data-label="Calls" { (p["calls"]) }
                            td.num data-label="Failures" { (p["traps"]) }
                            td.num data-label="Out of time" { (p["deadline_hits"]) }
                            td.num data-label="Invalid answers" { (p["invalid_answers"]) }
                            td.num data-label="Mean call" { (format!("{:.1} µs", p["mean_call_us"].as_f64().unwrap_or(0.0))) }
                            td data-label="Action" {
                                @if role != "active" {
                                    form.inline method="post" action=(format!("/ui/policies/{v}/activate")) {
                                        (csrf_field(ctx))
                                        button.secondary type="submit" disabled[disabled] aria-label=(format!("Activate version {v}")) { "Activate" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        div.actions {
            form.inline method="post" action="/ui/policies/rollback" {
                (csrf_field(ctx))
                button.secondary type="submit" disabled[disabled || status["previous_policy"].is_null()] { "Roll back to the previous version" }
            }
        }

        h2 { "Upload a version" }
        form.stack method="post" action="/ui/policies/upload" enctype="multipart/form-data" {
            (csrf_field(ctx))
            fieldset disabled[disabled] {
                legend { "New version" }
                div.field {
                    label for="up-name" { "Name" }
                    input #up-name type="text" name="name" required value=(status["active_policy"]["name"].as_str().unwrap_or("")) aria-describedby="up-name-hint";
                    span.hint #up-name-hint { "letters, digits, - and _" }
                }
                div.field {
                    label for="up-wasm" { "Component (.wasm)" }
                    input #up-wasm type="file" name="wasm" accept=".wasm,application/wasm" required;
                }
                div.field {
                    label for="up-config" { "Configuration (JSON object, optional)" }
                    textarea #up-config name="config" aria-describedby="up-config-hint" {}
                    span.hint #up-config-hint { "what the policy reads as its configuration, e.g. {\"spread\": 2}" }
                }
                div.field {
                    label for="up-deadline" { "Call deadline, ms (optional)" }
                    input #up-deadline type="number" name="deadline_ms" min="1" max="1000" step="1" inputmode="numeric" aria-describedby="up-deadline-hint";
                    span.hint #up-deadline-hint { "stored with this version; sets its fuel per call (JavaScript policies need more than Rust ones); empty: the engine's" }
                }
                div.field {
                    label for="up-memory" { "Memory cap, MiB (optional)" }
                    input #up-memory type="number" name="memory_mib" min="1" max="1024" step="1" inputmode="numeric" aria-describedby="up-memory-hint";
                    span.hint #up-memory-hint { "per instance (one per worker); empty: the engine's" }
                }
                div.check {
                    input #up-activate type="checkbox" name="activate";
                    label for="up-activate" { "Activate it at once" }
                }
                div.actions { button type="submit" { "Upload" } }
            }
        }

        h2 { "Canary" }
        @match status["canary"].as_object() {
            Some(c) => {
                p #canary-state { "Version " strong { (c["policy"].as_str().unwrap_or("?")) } " decides for " strong { (c["percent"]) " %" } " of clients." }
                div.actions {
                    form.inline method="post" action="/ui/policies/canary" {
                        (csrf_field(ctx))
                        input type="hidden" name="version" value=(c["version"]);
                        label { "Percentage" input type="number" name="percent" min="0" max="100" value=(c["percent"]) disabled[disabled]; }
                        button.secondary type="submit" disabled[disabled] { "Change" }
                    }
                    form.inline method="post" action="/ui/policies/canary/promote" {
                        (csrf_field(ctx))
                        button type="submit" disabled[disabled] { "Promote" }
                    }
                    form.inline method="post" action="/ui/policies/canary/abort" {
                        (csrf_field(ctx))
                        button.danger type="submit" disabled[disabled] { "Abort" }
                    }
                }
            }
            None => {
                p #canary-state { "No canary." }
                form.inline method="post" action="/ui/policies/canary" {
                    (csrf_field(ctx))
                    label { "Version" select name="version" disabled[disabled] { (versions(newest_inactive)) } }
                    label { "Percentage" input type="number" name="percent" min="0" max="100" value="10" disabled[disabled]; }
                    button type="submit" disabled[disabled] { "Start the canary" }
                }
            }
        }

        h2 { "Shadow" }
        @match shadow["shadow"].as_str() {
            Some(label) => {
                p #shadow-state {
                    "Version " strong { (label) } " decides alongside on " (shadow["sample_percent"]) " % of requests; its answers are compared, never served. "
                    "Agreement: " strong { (shadow["agreement"].as_f64().map_or("no comparisons yet".to_string(), |a| format!("{:.2} %", a * 100.0))) }
                    " of " (shadow["report"]["compared"]) " requests; " (shadow["report"]["shadow_failures"]) " failed calls."
                }
                form.inline method="post" action="/ui/policies/shadow/stop" {
                    (csrf_field(ctx))
                    button.danger type="submit" disabled[disabled] { "Stop the shadow" }
                }
                (disagreements(&shadow["report"]))
            }
            None => {
                p #shadow-state { "No shadow." }
                form.inline method="post" action="/ui/policies/shadow" {
                    (csrf_field(ctx))
                    label { "Version" select name="version" disabled[disabled] { (versions(newest_inactive)) } }
                    label { "Sample percentage" input type="number" name="sample_percent" min="0" max="100" value="100" disabled[disabled]; }
                    button type="submit" disabled[disabled] { "Start the shadow" }
                }
            }
        }
    };
    page::render(
        ctx,
        StatusCode::OK,
        Section::Policies,
        "Policies",
        None,
        body,
    )
}

fn disagreements(report: &Value) -> Markup {
    let examples: Vec<Value> = report["examples"].as_array().cloned().unwrap_or_default();
    html! {
        @if !examples.is_empty() {
            h3 { "Recent disagreements" }
            div.table-wrap {
                table {
                    thead { tr { th scope="col" { "Client" } th scope="col" { "Request" } th scope="col" { "Served" } th scope="col" { "Shadow" } } }
                    tbody {
                        @for e in &examples {
                            tr {
                                td.mono { (e["client"].as_str().unwrap_or("")) }
                                td { (e["request"].as_str().unwrap_or("")) }
                                td { (e["served"].as_str().unwrap_or("")) }
                                td { (e["shadow"].as_str().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `POST /ui/policies/...`.
pub async fn act(ctx: &Ctx<'_>, action: &[&str], form: Form) -> Reply {
    let number = |name: &str| form.text(name).parse::<u64>().ok();
    let answer: Answer = match action {
        ["upload"] => return upload(ctx, &form).await,
        ["rollback"] => ctx.api(Method::POST, "/policies/rollback", "", None).await,
        [version, "activate"] => {
            ctx.api(
                Method::POST,
                &format!("/policies/{version}/activate"),
                "",
                None,
            )
            .await
        }
        ["canary"] => {
            let (Some(version), Some(percent)) = (number("version"), number("percent")) else {
                return refuse(
                    ctx,
                    "a canary needs a version and a whole percentage (0-100)",
                );
            };
            let body = json!({"version": version, "percent": percent});
            ctx.api(Method::PUT, "/canary", "", Some(&body)).await
        }
        ["canary", "promote"] => ctx.api(Method::POST, "/canary/promote", "", None).await,
        ["canary", "abort"] => ctx.api(Method::DELETE, "/canary", "", None).await,
        ["shadow"] => {
            let (Some(version), Some(percent)) = (number("version"), number("sample_percent"))
            else {
                return refuse(
                    ctx,
                    "a shadow needs a version and a whole sample percentage (0-100)",
                );
            };
            let body = json!({"version": version, "sample_percent": percent});
            ctx.api(Method::PUT, "/shadow", "", Some(&body)).await
        }
        ["shadow", "stop"] => ctx.api(Method::DELETE, "/shadow", "", None).await,
        _ => return page::not_found(ctx),
    };
    let flash = if answer.is_ok() {
        let v = &answer.value;
        let mut text = format!("Done. Active: {}", v["active"].as_str().unwrap_or("?"));
        if let Some(c) = v["canary"].as_object() {
            text += &format!(
                "; canary {} at {} %",
                c["policy"].as_str().unwrap_or("?"),
                c["percent"]
            );
        }
        if let Some(s) = v["shadow"].as_object() {
            text += &format!("; shadow {}", s["policy"].as_str().unwrap_or("?"));
        }
        if let Some(stopped) = v.get("stopped") {
            text += &format!(
                "; the shadow agreed on {} of {} requests",
                stopped["report"]["agreed"], stopped["report"]["compared"]
            );
        }
        if v["applied_here"] == false {
            text += " (written to etcd; this node serves it in a moment)";
        }
        Flash::done(text + ".")
    } else {
        Flash::refused(answer.error())
    };
    page::after(ctx, "/ui/policies", flash)
}

fn refuse(ctx: &Ctx<'_>, text: &str) -> Reply {
    page::after(ctx, "/ui/policies", Flash::refused(text))
}

/// `POST /ui/policies/upload` (multipart: name, wasm, config, activate).
async fn upload(ctx: &Ctx<'_>, form: &Form) -> Reply {
    let name = form.text("name");
    let Some(file) = form.file("wasm") else {
        return refuse(ctx, "choose a .wasm file to upload");
    };
    let config = match form.text("config") {
        "" => None,
        text => match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => Some(v),
            Ok(_) => {
                return refuse(
                    ctx,
                    "the configuration must be a JSON object, e.g. {\"spread\": 2}",
                );
            }
            Err(e) => return refuse(ctx, &format!("the configuration is not JSON: {e}")),
        },
    };
    let mut limits = serde_json::Map::new();
    for (field, label) in [
        ("deadline_ms", "call deadline"),
        ("memory_mib", "memory cap"),
    ] {
        match form.text(field) {
            "" => {}
            text => match text.parse::<u64>() {
                Ok(n) => {
                    limits.insert(field.into(), n.into());
                }
                Err(_) => {
                    return refuse(
                        ctx,
                        &format!(
                            "the {label} must be a whole number; {:?} is not",
                            text.chars().take(32).collect::<String>()
                        ),
                    );
                }
            },
        }
    }
    use base64::Engine as _;
    let body = json!({
        "wasm_base64": base64::engine::general_purpose::STANDARD.encode(&file.bytes),
        "config": config,
        "activate": form.checked("activate"),
        "limits": limits,
    });
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let path = format!("/policies/{}", super::entities::segment(name));
    let answer = ctx
        .api_raw(
            Method::POST,
            &path,
            "",
            headers,
            bytes::Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        )
        .await;
    let flash = if answer.is_ok() {
        let v = &answer.value;
        Flash::done(format!(
            "Loaded {}@{} from {} (hash {}){}.",
            v["name"].as_str().unwrap_or(name),
            v["version"],
            file.name,
            v["hash"]
                .as_str()
                .map(|h| h.get(..12).unwrap_or(h))
                .unwrap_or(""),
            if v["active"] == true {
                "; it is active"
            } else {
                ""
            }
        ))
    } else {
        Flash::refused(format!("{} was refused: {}", file.name, answer.error()))
    };
    page::after(ctx, "/ui/policies", flash)
}
