//! `edgeward ctl get|list|create|update|replace|delete|batch|audit`: the
//! topology's entities one by one, through `/topology/{kind}` (see
//! [`crate::admin`]). Values are read from a file or stdin (`-`), JSON or
//! TOML; a refusal is one line on stderr and a non-zero exit.

use super::client::Client;
use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use std::path::PathBuf;

/// The entity commands.
#[derive(Subcommand)]
pub enum EntityCommand {
    /// Show one entity (with its revision, for --if-match).
    Get {
        /// regions, subnets, server-groups, servers, channels, streams,
        /// programs or records.
        kind: String,
        /// Its key (a subnet's CIDR; `channel/protocol/encryption` for a
        /// stream; `program/server/protocol/encryption` for a record).
        key: String,
    },
    /// List entities of a kind.
    List {
        /// The kind.
        kind: String,
        /// Page (from 1).
        #[arg(long, default_value_t = 1)]
        page: usize,
        /// Entities per page.
        #[arg(long, default_value_t = 100)]
        per_page: usize,
        /// Sort by these fields (`-start` for descending), comma-separated
        /// (`--order-by=-start`).
        #[arg(long, allow_hyphen_values = true)]
        order_by: Option<String>,
        /// Text searched in names and ids.
        #[arg(long)]
        q: Option<String>,
        /// Only those whose FIELD is VALUE (repeatable), e.g. channel=ch1.
        #[arg(long = "where", value_name = "FIELD=VALUE")]
        filters: Vec<String>,
    },
    /// Create an entity from FILE (JSON or TOML; `-` for stdin).
    Create {
        /// The kind.
        kind: String,
        /// Its value.
        file: PathBuf,
    },
    /// Change some fields of an entity (those in FILE; `null` removes one).
    Update {
        /// The kind.
        kind: String,
        /// Its key.
        key: String,
        /// The fields to change.
        file: PathBuf,
    },
    /// Replace an entity's value with FILE.
    Replace {
        /// The kind.
        kind: String,
        /// Its key.
        key: String,
        /// Its new value.
        file: PathBuf,
    },
    /// Delete an entity.
    Delete {
        /// The kind.
        kind: String,
        /// Its key.
        key: String,
    },
    /// Apply several changes from FILE, all or none:
    /// `{"changes": [{"op", "kind", "key", "value", "if_match"}]}`.
    Batch {
        /// The changes.
        file: PathBuf,
    },
    /// Who changed what since a time (RFC 3339 or Unix milliseconds;
    /// default the last hour).
    Audit {
        /// Since when.
        #[arg(long)]
        since: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

/// A value from a file or stdin, JSON or TOML (by extension, else by its
/// first character).
fn read_value(file: &PathBuf) -> anyhow::Result<Value> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let first = text.trim_start().chars().next();
    let is_json = match file.extension().and_then(|e| e.to_str()) {
        Some("json") => true,
        Some("toml") => false,
        _ => matches!(first, Some('{' | '[' | '"')),
    };
    if is_json {
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", file.display()))
    } else {
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", file.display()))
    }
}

pub(super) fn escape(segment: &str) -> String {
    use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
    // `/` stays: keys of subnets, streams and records are paths.
    const SET: &AsciiSet = &CONTROLS.add(b' ').add(b'?').add(b'#').add(b'%').add(b'&');
    utf8_percent_encode(segment, SET).to_string()
}

/// Runs an entity command; returns the answer and how to print it.
pub fn run(client: &Client, command: EntityCommand) -> anyhow::Result<(Value, Printed)> {
    const JSON: &str = "application/json";
    let path = |kind: &str, key: Option<&str>| match key {
        Some(key) => format!("/topology/{}/{}", escape(kind), escape(key)),
        None => format!("/topology/{}", escape(kind)),
    };
    let body = |v: Value| v.to_string().into_bytes();
    Ok(match command {
        EntityCommand::Get { kind, key } => (
            client.call("GET", &path(&kind, Some(&key)), JSON, Vec::new())?,
            Printed::Entity,
        ),
        EntityCommand::List {
            kind,
            page,
            per_page,
            order_by,
            q,
            filters,
        } => {
            use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
            let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
            let mut p = format!("{}?page={page}&per_page={per_page}", path(&kind, None));
            if let Some(o) = order_by {
                p.push_str(&format!("&order_by={}", enc(&o)));
            }
            if let Some(q) = q {
                p.push_str(&format!("&q={}", enc(&q)));
            }
            for f in filters {
                let Some((field, value)) = f.split_once('=') else {
                    bail!("--where {f:?}: expected FIELD=VALUE");
                };
                p.push_str(&format!("&{}={}", enc(field), enc(value)));
            }
            (client.call("GET", &p, JSON, Vec::new())?, Printed::List)
        }
        EntityCommand::Create { kind, file } => (
            client.call("POST", &path(&kind, None), JSON, body(read_value(&file)?))?,
            Printed::Changes,
        ),
        EntityCommand::Update { kind, key, file } => (
            client.call(
                "PATCH",
                &path(&kind, Some(&key)),
                JSON,
                body(read_value(&file)?),
            )?,
            Printed::Changes,
        ),
        EntityCommand::Replace { kind, key, file } => (
            client.call(
                "PUT",
                &path(&kind, Some(&key)),
                JSON,
                body(read_value(&file)?),
            )?,
            Printed::Changes,
        ),
        EntityCommand::Delete { kind, key } => (
            client.call("DELETE", &path(&kind, Some(&key)), JSON, Vec::new())?,
            Printed::Changes,
        ),
        EntityCommand::Batch { file } => {
            let value = read_value(&file)?;
            let value = if value.is_array() {
                json!({ "changes": value })
            } else {
                value
            };
            (
                client.call("POST", "/topology/batch", JSON, body(value))?,
                Printed::Changes,
            )
        }
        EntityCommand::Audit { since, limit } => {
            let mut p = format!("/audit?limit={limit}");
            if let Some(s) = since {
                p.push_str(&format!("&since={}", escape(&s).replace('+', "%2B")));
            }
            (client.call("GET", &p, JSON, Vec::new())?, Printed::Audit)
        }
    })
}

/// How an answer is printed for people.
pub enum Printed {
    /// One entity.
    Entity,
    /// A page of them.
    List,
    /// What a change did.
    Changes,
    /// Audit entries.
    Audit,
}

/// The human form of an answer.
pub fn render(printed: &Printed, v: &Value) -> String {
    let one_line = |v: &Value| serde_json::to_string(v).unwrap_or_default();
    let mut out = String::new();
    match printed {
        Printed::Entity => {
            out.push_str(&format!(
                "{} (revision {})\n",
                v["key"].as_str().unwrap_or("?"),
                v["revision"]
            ));
            if let Some(fields) = v["value"].as_object() {
                for (field, value) in fields {
                    let text = match value {
                        Value::String(s) => s.clone(),
                        other => one_line(other),
                    };
                    out.push_str(&format!("  {field:<14} {text}\n"));
                }
            }
        }
        Printed::List => {
            let items = v["items"].as_array().cloned().unwrap_or_default();
            let width = items
                .iter()
                .filter_map(|i| i["key"].as_str())
                .map(str::len)
                .max()
                .unwrap_or(3)
                .max(3);
            out.push_str(&format!("{:<width$}  REVISION  VALUE\n", "KEY"));
            for i in &items {
                out.push_str(&format!(
                    "{:<width$}  {:<8}  {}\n",
                    i["key"].as_str().unwrap_or("?"),
                    i["revision"],
                    one_line(&i["value"])
                ));
            }
            out.push_str(&format!(
                "{} of {} {} (page {}, {} per page)\n",
                items.len(),
                v["total"],
                v["kind"].as_str().unwrap_or(""),
                v["page"],
                v["per_page"]
            ));
        }
        Printed::Changes => {
            for c in v["changes"].as_array().into_iter().flatten() {
                let done = match c["op"].as_str() {
                    Some("create") => "created",
                    Some("replace") => "replaced",
                    Some("update") => "updated",
                    Some("delete") => "deleted",
                    _ => "changed",
                };
                out.push_str(&format!(
                    "{done} {}/{}\n",
                    c["kind"].as_str().unwrap_or("?"),
                    c["key"].as_str().unwrap_or("?")
                ));
            }
            out.push_str(&format!("revision {}", v["revision"]));
            if v["applied_here"] == json!(false) {
                out.push_str(" (written; not served by this node yet)");
            }
            out.push('\n');
        }
        Printed::Audit => {
            for e in v["entries"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "{}  {}  {} {}{}  (revision {})\n",
                    e["time"].as_str().unwrap_or("?"),
                    e["who"].as_str().unwrap_or("?"),
                    e["action"].as_str().unwrap_or("?"),
                    e["kind"].as_str().unwrap_or("?"),
                    e["key"]
                        .as_str()
                        .map(|k| format!("/{k}"))
                        .unwrap_or_default(),
                    e["revision"]
                ));
                if let Some(changed) = e["changed"].as_object() {
                    for (field, pair) in changed {
                        out.push_str(&format!(
                            "    {field}: {} -> {}\n",
                            one_line(&pair[0]),
                            one_line(&pair[1])
                        ));
                    }
                }
            }
        }
    }
    out
}
