//! `edgeward ctl`: the operator's command line for a node's admin API,
//! one subcommand per admin route (see [`crate::admin`]); [`client`]
//! speaks HTTP to it and renders its answers.

pub mod client;
pub mod entities;

use anyhow::Context;
use clap::Subcommand;
use std::io::Write;
use std::path::PathBuf;

/// Options of `ctl`.
#[derive(clap::Args)]
pub struct CtlArgs {
    /// The node's admin API.
    #[arg(
        long,
        env = "EDGEWARD_ADMIN",
        default_value = "http://127.0.0.1:9090",
        global = true
    )]
    pub admin: String,
    /// File holding the bearer token (else EDGEWARD_ADMIN_TOKEN).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// PEM file of CA certificates that sign an `https://` admin
    /// listener's certificate (besides the public roots).
    #[arg(long, env = "EDGEWARD_ADMIN_CA", global = true, value_name = "CA.pem")]
    pub admin_ca: Option<PathBuf>,
    /// Print the API's JSON instead of human-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Make the change only if it is still at this revision: an entity's
    /// (`get` shows it) for `update`, `replace` and `delete`; with etcd,
    /// the key's for the others (the ETag of `topology show`, the
    /// revisions in `status`). A change made meanwhile by someone else
    /// fails with a conflict.
    #[arg(long, global = true, value_name = "REVISION")]
    pub if_match: Option<i64>,
    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// What `ctl epg` does.
#[derive(Debug, clap::Subcommand)]
pub enum EpgAction {
    /// Import a guide (Kaltura EPG XML or XMLTV) by the old system's rules:
    /// programmes starting within 30 minutes kept as they are, the file's
    /// window replacing the channel's programmes in it.
    Import {
        /// The file.
        file: PathBuf,
    },
}

/// The `ctl` commands, one per admin route.
#[derive(Subcommand)]
pub enum CtlCommand {
    /// The topology's entities one by one, and the audit trail.
    #[command(flatten)]
    Entity(entities::EntityCommand),
    /// Operators' accounts.
    User {
        /// What to do.
        #[command(subcommand)]
        action: UserAction,
    },
    /// API tokens with roles, for scripts.
    Token {
        /// What to do.
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Programme guides.
    Epg {
        /// What to do.
        #[command(subcommand)]
        action: EpgAction,
    },
    /// Active policy, canary, shadow, topology version, uptime.
    Status,
    /// Loaded policy versions with their role and statistics.
    Policies,
    /// Upload a policy (it is checked before it is accepted).
    Push {
        /// Name to load it under.
        name: String,
        /// The component.
        file: PathBuf,
        /// Its configuration, TOML (.toml) or JSON.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Activate it at once.
        #[arg(long)]
        activate: bool,
        /// Its own call deadline in milliseconds, stored with it (sets the
        /// call's fuel; default: the engine's --policy-deadline-ms).
        #[arg(long, value_name = "MS")]
        deadline_ms: Option<u64>,
        /// Its own memory cap in MiB, stored with it (default: the
        /// engine's --policy-memory-mib).
        #[arg(long, value_name = "MIB")]
        memory_mib: Option<u64>,
        /// Its signature (default: FILE.sig, sent when it exists).
        #[arg(long, value_name = "FILE.sig")]
        signature: Option<PathBuf>,
    },
    /// Make a loaded version the active one.
    Activate {
        /// Policy version.
        version: u64,
    },
    /// Re-activate the previous version.
    Rollback,
    /// Show, set, promote or abort the canary.
    Canary {
        /// What to do (show when none).
        #[command(subcommand)]
        action: Option<CanaryAction>,
    },
    /// Show, set or stop the shadow.
    Shadow {
        /// What to do (show when none).
        #[command(subcommand)]
        action: Option<ShadowAction>,
    },
    /// Replace or show the topology.
    Topology {
        /// What to do.
        #[command(subcommand)]
        action: TopologyAction,
    },
    /// Every server with its health.
    Servers,
    /// Take a server out of rotation (health is still tracked).
    Drain {
        /// Server id.
        id: String,
    },
    /// Put a drained server back.
    Undrain {
        /// Server id.
        id: String,
    },
    /// Why a client's request goes where it goes: URL, content, subnets,
    /// tiers, every candidate and why it is not eligible, the policy's
    /// answer, logs, fuel and time.
    Explain {
        /// The client address.
        client: std::net::IpAddr,
        /// Path and query, e.g. /btv/live/hls/ch1.m3u8.
        url: String,
        /// Ask this loaded policy version (default: the one that decides
        /// for this client, canary included).
        #[arg(long)]
        version: Option<u64>,
        /// Also decide over this many seeds and count the answers.
        #[arg(long, default_value_t = 0)]
        draws: u32,
        /// As a player that came over HTTPS.
        #[arg(long)]
        tls: bool,
        /// A request header, `Name: value` (repeatable).
        #[arg(
            long = "header",
            value_name = "NAME: VALUE",
            value_parser = crate::cmd::policy::header_arg
        )]
        headers: Vec<(String, String)>,
    },
}

/// `ctl user` actions. Passwords are read from the first line of
/// standard input (`printf '%s\n' "$PW" | edgeward ctl user add ...`), never
/// from the command line, where other users of the machine would see it.
#[derive(Subcommand)]
pub enum UserAction {
    /// Create an account (the first admin: from loopback, before any
    /// account exists).
    Add {
        /// E-mail (the account's id).
        email: String,
        /// admin, operator or viewer.
        #[arg(long)]
        role: String,
        /// Display name (the e-mail's local part if none).
        #[arg(long)]
        name: Option<String>,
    },
    /// The accounts (a non-admin sees their own).
    List,
    /// Set an account's password (read from standard input).
    Passwd {
        /// E-mail.
        email: String,
    },
    /// Change an account's role.
    Role {
        /// E-mail.
        email: String,
        /// admin, operator or viewer.
        role: String,
    },
    /// Delete an account.
    Delete {
        /// E-mail.
        email: String,
    },
}

/// `ctl token` actions (an admin's).
#[derive(Subcommand)]
pub enum TokenAction {
    /// Make a token: its secret is printed this once.
    Add {
        /// Its name (what the audit trail says).
        name: String,
        /// admin, operator or viewer.
        #[arg(long)]
        role: String,
    },
    /// The tokens (names and roles; secrets are never kept).
    List,
    /// Delete a token: its secret is refused from then on.
    Delete {
        /// Its name.
        name: String,
    },
}

/// The first line of standard input: a password.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(
        !password.is_empty(),
        "give the password on the first line of standard input"
    );
    Ok(password)
}

/// `ctl canary` actions.
#[derive(Subcommand)]
pub enum CanaryAction {
    /// Send PERCENT of clients (by address hash) to VERSION.
    Set {
        /// Policy version.
        version: u64,
        /// Share of clients, 0-100.
        percent: u32,
    },
    /// Make the canary the active version.
    Promote,
    /// End the canary.
    Abort,
}

/// `ctl shadow` actions.
#[derive(Subcommand)]
pub enum ShadowAction {
    /// Run VERSION beside the active one on PERCENT of requests.
    Set {
        /// Policy version.
        version: u64,
        /// Share of requests, 0-100.
        percent: u32,
    },
    /// Stop the shadow (prints its final report).
    Stop,
}

/// `ctl topology` actions.
#[derive(Subcommand)]
pub enum TopologyAction {
    /// Replace the topology with FILE (JSON or MessagePack); every problem
    /// is listed if it is refused.
    Push {
        /// The topology file.
        file: PathBuf,
    },
    /// Print the current topology (JSON, or MessagePack to stdout).
    Show {
        /// MessagePack instead of JSON.
        #[arg(long)]
        msgpack: bool,
    },
}

/// Runs a `ctl` command against a node's admin API.
pub fn run(args: CtlArgs) -> anyhow::Result<()> {
    use client::{Client, render};
    use serde_json::json;
    let token = match &args.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read token file {}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => std::env::var("EDGEWARD_ADMIN_TOKEN").ok(),
    };
    let mut client = Client::new(&args.admin, token, args.admin_ca.as_deref())?;
    client.if_match = args.if_match;
    const JSON: &str = "application/json";
    let none = Vec::new;
    let (what, value) = match args.command {
        CtlCommand::Entity(command) => {
            let (value, printed) = entities::run(&client, command)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print!("{}", entities::render(&printed, &value));
            }
            return Ok(());
        }
        CtlCommand::Epg {
            action: EpgAction::Import { file },
        } => {
            let xml =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            ("epg", client.call("POST", "/epg", "application/xml", xml)?)
        }
        CtlCommand::Status => ("status", client.call("GET", "/status", JSON, none())?),
        CtlCommand::Policies => ("policies", client.call("GET", "/policies", JSON, none())?),
        CtlCommand::Push {
            name,
            file,
            config,
            activate,
            deadline_ms,
            memory_mib,
            signature,
        } => {
            use crate::policy::signing;
            use base64::Engine as _;
            let limits = crate::policy::Limits {
                deadline_ms,
                memory_mib,
            };
            limits.check().map_err(anyhow::Error::msg)?;
            let wasm =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let config = match config {
                None => serde_json::Value::Null,
                Some(path) => crate::policy::config_value_from_file(&path)?,
            };
            let mut body = json!({
                "wasm_base64": base64::engine::general_purpose::STANDARD.encode(wasm),
                "activate": activate,
            });
            if !config.is_null() {
                body["config"] = config;
            }
            if !limits.is_default() {
                body["limits"] = serde_json::to_value(limits)?;
            }
            let signature = match signature {
                Some(path) => Some(
                    std::fs::read(&path)
                        .with_context(|| format!("cannot read {}", path.display()))
                        .and_then(|text| {
                            signing::parse(&text)
                                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
                        })?,
                ),
                None => signing::read_beside(&file).map_err(anyhow::Error::msg)?,
            };
            if let Some(s) = signature.as_ref() {
                body["signature"] = serde_json::to_value(s)?;
            }
            let v = client.call(
                "POST",
                &format!("/policies/{name}"),
                JSON,
                body.to_string().into_bytes(),
            )?;
            if !args.json {
                println!(
                    "accepted {}@{} (sha256 {}){}",
                    v["name"].as_str().unwrap_or("?"),
                    v["version"],
                    v["hash"].as_str().unwrap_or("?"),
                    if activate { ", active" } else { "" }
                );
                return Ok(());
            }
            ("push", v)
        }
        CtlCommand::Activate { version } => (
            "activate",
            client.call(
                "POST",
                &format!("/policies/{version}/activate"),
                JSON,
                none(),
            )?,
        ),
        CtlCommand::Rollback => (
            "rollback",
            client.call("POST", "/policies/rollback", JSON, none())?,
        ),
        CtlCommand::Canary { action } => match action {
            None => ("canary", client.call("GET", "/canary", JSON, none())?),
            Some(CanaryAction::Set { version, percent }) => (
                "canary",
                client.call(
                    "PUT",
                    "/canary",
                    JSON,
                    json!({"version": version, "percent": percent})
                        .to_string()
                        .into_bytes(),
                )?,
            ),
            Some(CanaryAction::Promote) => (
                "canary",
                client.call("POST", "/canary/promote", JSON, none())?,
            ),
            Some(CanaryAction::Abort) => {
                ("canary", client.call("DELETE", "/canary", JSON, none())?)
            }
        },
        CtlCommand::Shadow { action } => match action {
            None => ("shadow", client.call("GET", "/shadow", JSON, none())?),
            Some(ShadowAction::Set { version, percent }) => (
                "shadow",
                client.call(
                    "PUT",
                    "/shadow",
                    JSON,
                    json!({"version": version, "sample_percent": percent})
                        .to_string()
                        .into_bytes(),
                )?,
            ),
            Some(ShadowAction::Stop) => ("shadow", client.call("DELETE", "/shadow", JSON, none())?),
        },
        CtlCommand::Topology { action } => match action {
            TopologyAction::Push { file } => {
                let bytes = std::fs::read(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let v = client.call("PUT", "/topology", JSON, bytes)?;
                if !args.json {
                    println!(
                        "topology version {}: {}",
                        v["version"],
                        v["summary"].as_str().unwrap_or("")
                    );
                    return Ok(());
                }
                ("topology", v)
            }
            TopologyAction::Show { msgpack } => {
                let path = if msgpack {
                    "/topology?format=msgpack"
                } else {
                    "/topology"
                };
                let answer = client.request("GET", path, JSON, none())?;
                if answer.status != 200 {
                    anyhow::bail!(
                        "GET {path}: {} {}",
                        answer.status,
                        String::from_utf8_lossy(&answer.body).trim()
                    );
                }
                std::io::stdout().lock().write_all(&answer.body)?;
                return Ok(());
            }
        },
        CtlCommand::User { action } => {
            let body = |v: serde_json::Value| v.to_string().into_bytes();
            let at = |email: &str| format!("/users/{}", entities::escape(email));
            match action {
                UserAction::Add { email, role, name } => {
                    let password = password_from_stdin()?;
                    let new =
                        json!({"email": email, "role": role, "name": name, "password": password});
                    ("user", client.call("POST", "/users", JSON, body(new))?)
                }
                UserAction::List => ("users", client.call("GET", "/users", JSON, none())?),
                UserAction::Passwd { email } => {
                    let password = password_from_stdin()?;
                    let change = json!({ "password": password });
                    (
                        "user",
                        client.call("PATCH", &at(&email), JSON, body(change))?,
                    )
                }
                UserAction::Role { email, role } => {
                    let change = json!({ "role": role });
                    (
                        "user",
                        client.call("PATCH", &at(&email), JSON, body(change))?,
                    )
                }
                UserAction::Delete { email } => {
                    ("user", client.call("DELETE", &at(&email), JSON, none())?)
                }
            }
        }
        CtlCommand::Token { action } => match action {
            TokenAction::Add { name, role } => {
                let new = json!({"name": name, "role": role}).to_string().into_bytes();
                ("token", client.call("POST", "/tokens", JSON, new)?)
            }
            TokenAction::List => ("tokens", client.call("GET", "/tokens", JSON, none())?),
            TokenAction::Delete { name } => (
                "token",
                client.call(
                    "DELETE",
                    &format!("/tokens/{}", entities::escape(&name)),
                    JSON,
                    none(),
                )?,
            ),
        },
        CtlCommand::Servers => ("servers", client.call("GET", "/servers", JSON, none())?),
        CtlCommand::Drain { id } => (
            "drain",
            client.call("POST", &format!("/servers/{id}/drain"), JSON, none())?,
        ),
        CtlCommand::Undrain { id } => (
            "undrain",
            client.call("DELETE", &format!("/servers/{id}/drain"), JSON, none())?,
        ),
        CtlCommand::Explain {
            client: ip,
            url,
            version,
            draws,
            tls,
            headers,
        } => {
            use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
            let mut path = format!(
                "/explain?client={ip}&url={}&draws={draws}",
                utf8_percent_encode(&url, NON_ALPHANUMERIC)
            );
            if tls {
                path.push_str("&tls=1");
            }
            for (name, value) in &headers {
                let header = format!("{name}: {value}");
                path.push_str(&format!(
                    "&header={}",
                    utf8_percent_encode(&header, NON_ALPHANUMERIC)
                ));
            }
            if let Some(v) = version {
                path.push_str(&format!("&version={v}"));
            }
            ("explain", client.call("GET", &path, JSON, none())?)
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", render(what, &value));
        if !matches!(what, "status" | "policies" | "servers" | "users") {
            println!();
        }
    }
    Ok(())
}
