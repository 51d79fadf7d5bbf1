//! Browsing and editing the topology's entities: a list per kind (paged,
//! sorted, filtered, as the API lists them) and a form per entity. A form
//! becomes the entity's JSON value and goes to the per-entity API; a
//! refusal comes back next to the field it names ("field `port`: ...").

use super::form::Form;
use super::page::{self, Flash, Section, csrf_field};
use super::{Ctx, Reply};
use crate::topology::entity::Kind;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use maud::html;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};

/// What a URL path segment may hold as it is: a key's `/` stays, since a
/// stream's or record's key is several segments.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/')
    .remove(b':');

/// A key or id as part of a URL path.
pub fn segment(key: &str) -> String {
    utf8_percent_encode(key, SEGMENT).to_string()
}

/// Rows per page of a list.
const PER_PAGE: usize = 50;

/// How a field is entered.
#[derive(Clone, Copy)]
enum Ty {
    Text,
    /// A whole number, required.
    Number,
    /// A whole number, or empty for none (the default).
    OptNumber,
    /// A decimal number (degrees), or empty for none.
    OptDecimal,
    Bool,
    /// Ids, separated by commas or spaces.
    List,
    /// `name=value` pairs, separated by commas or spaces (an object).
    Pairs,
    Choice(&'static [&'static str]),
}

/// One field of a kind's form. A name with a dot is a field of an object
/// (`healthcheck.path`); the object is left out when all of its fields
/// are empty.
struct Field {
    name: &'static str,
    label: &'static str,
    ty: Ty,
    hint: &'static str,
    /// Shown in a new form (and for a value that leaves it out).
    default: &'static str,
}

const fn f(name: &'static str, label: &'static str, ty: Ty, hint: &'static str) -> Field {
    Field {
        name,
        label,
        ty,
        hint,
        default: "",
    }
}

const fn d(field: Field, default: &'static str) -> Field {
    Field { default, ..field }
}

const PROTOCOLS: &[&str] = &["hls", "mpd"];
const ENCRYPTIONS: &[&str] = &["none", "widevine", "playready", "cenc"];

const REGIONS: &[Field] = &[
    f("id", "Id", Ty::Text, "unique, e.g. msk"),
    f("name", "Name", Ty::Text, ""),
    d(
        f(
            "active",
            "Active",
            Ty::Bool,
            "an inactive region offers no servers",
        ),
        "true",
    ),
    f(
        "server_groups",
        "Server groups",
        Ty::List,
        "ids of the groups serving it, by preference, comma-separated",
    ),
    f(
        "location.latitude",
        "Latitude",
        Ty::OptDecimal,
        "degrees north, -90 to 90 (with the longitude: for GeoIP's nearest regions and policies that weigh distance; needs a schema 2 topology)",
    ),
    f(
        "location.longitude",
        "Longitude",
        Ty::OptDecimal,
        "degrees east, -180 to 180",
    ),
];

const SUBNETS: &[Field] = &[
    f(
        "cidr",
        "CIDR",
        Ty::Text,
        "e.g. 10.1.0.0/16 or 2001:db8::/32",
    ),
    f("region", "Region", Ty::Text, "id of its region"),
    f("name", "Name", Ty::Text, ""),
];

const SERVER_GROUPS: &[Field] = &[
    f("id", "Id", Ty::Text, "unique"),
    d(f("active", "Active", Ty::Bool, ""), "true"),
    f(
        "servers",
        "Servers",
        Ty::List,
        "ids of its servers, comma-separated",
    ),
    f(
        "channels",
        "Channels",
        Ty::List,
        "epg_ids of the channels it serves (empty: all)",
    ),
];

const SERVERS: &[Field] = &[
    f("id", "Id", Ty::Text, "unique"),
    d(f("kind", "Kind", Ty::Choice(&["edge", "dvr"]), ""), "edge"),
    f("host", "Host", Ty::Text, "host name or IP address"),
    d(f("port", "Port", Ty::Number, "1-65535"), "80"),
    f(
        "tls_port",
        "TLS port",
        Ty::OptNumber,
        "the port it serves HTTPS on; empty: none (443 when the port is 443)",
    ),
    d(f("active", "Active", Ty::Bool, ""), "true"),
    d(
        f(
            "weight",
            "Weight",
            Ty::Number,
            "share of random draws; 0: never drawn",
        ),
        "1",
    ),
    f(
        "prefix",
        "DVR prefix",
        Ty::Text,
        "a dvr server's URL path segment",
    ),
    f(
        "management.host",
        "DVR management host",
        Ty::Text,
        "a dvr server's SOAP API host, for scheduling recordings",
    ),
    f(
        "management.port",
        "DVR management port",
        Ty::OptNumber,
        "its port (credentials: the DVR secrets file)",
    ),
    f(
        "healthcheck.path",
        "Health check path",
        Ty::Text,
        "e.g. /health; empty: not checked",
    ),
    f(
        "healthcheck.interval",
        "Check interval",
        Ty::Text,
        "e.g. 2s (default)",
    ),
    f(
        "healthcheck.timeout",
        "Check timeout",
        Ty::Text,
        "e.g. 1s (default)",
    ),
    f(
        "healthcheck.rise",
        "Rise",
        Ty::OptNumber,
        "good checks to be up (default 2)",
    ),
    f(
        "healthcheck.fall",
        "Fall",
        Ty::OptNumber,
        "failed checks to be down (default 3)",
    ),
    f(
        "healthcheck.expect_body",
        "Expected body",
        Ty::Text,
        "text the answer must contain",
    ),
];

const CHANNELS: &[Field] = &[
    f("epg_id", "EPG id", Ty::Text, "unique, as in live URLs"),
    f("name", "Name", Ty::Text, ""),
    d(f("active", "Active", Ty::Bool, ""), "true"),
    d(
        f("dvr_enabled", "Recorded for catch-up", Ty::Bool, ""),
        "false",
    ),
    f(
        "recording_group",
        "Recording group",
        Ty::Text,
        "the server group it is recorded from and on",
    ),
    f(
        "code_name",
        "Code name",
        Ty::Text,
        "its name on the DVR: letters, digits, _ and -",
    ),
    f(
        "storage_id",
        "Storage id",
        Ty::OptNumber,
        "DVR storage, 1-10",
    ),
];

const STREAMS: &[Field] = &[
    f("channel", "Channel", Ty::Text, "its channel's epg_id"),
    d(f("protocol", "Protocol", Ty::Choice(PROTOCOLS), ""), "hls"),
    d(
        f("encryption", "Encryption", Ty::Choice(ENCRYPTIONS), ""),
        "none",
    ),
    f("path", "Path", Ty::Text, "on the edge, without a leading /"),
    d(f("active", "Active", Ty::Bool, ""), "true"),
];

const PROGRAMS: &[Field] = &[
    f("epg_id", "EPG id", Ty::Text, "unique"),
    f("channel", "Channel", Ty::Text, "its channel's epg_id"),
    f(
        "start",
        "Start",
        Ty::Text,
        "RFC 3339, e.g. 2026-12-02T20:00:00Z",
    ),
    f("end", "End", Ty::Text, "RFC 3339"),
];

const RECORDS: &[Field] = &[
    f("program", "Program", Ty::Text, "its program's epg_id"),
    f("server", "Server", Ty::Text, "the dvr server holding it"),
    d(f("protocol", "Protocol", Ty::Choice(PROTOCOLS), ""), "hls"),
    d(
        f("encryption", "Encryption", Ty::Choice(ENCRYPTIONS), ""),
        "none",
    ),
    f(
        "path",
        "Path",
        Ty::Text,
        "on the server, without a leading /",
    ),
    d(
        f(
            "status",
            "Status",
            Ty::Choice(&[
                "new",
                "planned",
                "running",
                "completed",
                "error",
                "canceled",
                "removed",
            ]),
            "only completed records are served",
        ),
        "planned",
    ),
    f(
        "placement",
        "Placement",
        Ty::Text,
        "its identity on the DVR: code name/protocol/encryption/program",
    ),
    f("error", "Error", Ty::Text, "why it failed, as the DVR said"),
];

const PATHWAYS: &[Field] = &[
    f(
        "id",
        "Id",
        Ty::Text,
        "unique, as the playlists and MPDs name it (PATHWAY-ID, serviceLocation), e.g. cdn-a",
    ),
    f(
        "host",
        "Host",
        Ty::Text,
        "the host name its URLs point at (a clone's replacement host)",
    ),
    f(
        "group",
        "Server group",
        Ty::Text,
        "one of ours, whose edges' health says whether it is up; empty for another CDN",
    ),
    f(
        "regions",
        "Regions",
        Ty::List,
        "ids of the regions whose clients may use it, comma-separated; empty: those its group serves, or all",
    ),
    f(
        "base",
        "Clone of",
        Ty::Text,
        "the pathway it is a clone of (PATHWAY-CLONES); empty for none",
    ),
    f(
        "params",
        "Clone parameters",
        Ty::Pairs,
        "query parameters a clone's URLs get, as name=value, comma-separated",
    ),
    d(
        f(
            "active",
            "Active",
            Ty::Bool,
            "an inactive pathway is offered to no player",
        ),
        "true",
    ),
];

fn spec(kind: Kind) -> &'static [Field] {
    match kind {
        Kind::Regions => REGIONS,
        Kind::Subnets => SUBNETS,
        Kind::ServerGroups => SERVER_GROUPS,
        Kind::Servers => SERVERS,
        Kind::Channels => CHANNELS,
        Kind::Streams => STREAMS,
        Kind::Programs => PROGRAMS,
        Kind::Records => RECORDS,
        Kind::Pathways => PATHWAYS,
    }
}

/// The fields a list of the kind can be filtered by (besides `q`).
fn filters(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Subnets => &["region"],
        Kind::Servers => &["kind"],
        Kind::Streams => &["channel", "protocol"],
        Kind::Programs => &["channel"],
        Kind::Records => &["program", "server", "status"],
        Kind::Pathways => &["group"],
        _ => &[],
    }
}

/// Lists of other kinds that refer to an entity.
fn related(kind: Kind, key: &str) -> Vec<(String, String)> {
    let link = |k: Kind, field: &str| {
        (
            format!("{} of this {}", title_of(k), kind.singular()),
            format!(
                "/ui/topology/{}?{}",
                k.name(),
                super::form::encode(&[(field, key)])
            ),
        )
    };
    match kind {
        Kind::Regions => vec![link(Kind::Subnets, "region")],
        Kind::Channels => vec![
            link(Kind::Streams, "channel"),
            link(Kind::Programs, "channel"),
        ],
        Kind::Programs => vec![link(Kind::Records, "program")],
        Kind::Servers => vec![link(Kind::Records, "server")],
        Kind::ServerGroups => vec![link(Kind::Pathways, "group")],
        _ => vec![],
    }
}

fn title_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Regions => "Regions",
        Kind::Subnets => "Subnets",
        Kind::ServerGroups => "Server groups",
        Kind::Servers => "Servers",
        Kind::Channels => "Channels",
        Kind::Streams => "Streams",
        Kind::Programs => "Programmes",
        Kind::Records => "Recordings",
        Kind::Pathways => "Steering pathways",
    }
}

fn kind_or_404(ctx: &Ctx<'_>, name: &str) -> Result<Kind, Box<Reply>> {
    Kind::parse(name).ok_or_else(|| Box::new(page::not_found(ctx)))
}

/// `GET /ui/topology`: every kind with how many there are.
pub async fn index(ctx: &Ctx<'_>) -> Reply {
    let mut rows = Vec::new();
    for kind in Kind::ALL {
        let answer = ctx
            .api(
                Method::GET,
                &format!("/topology/{}", kind.name()),
                "per_page=1",
                None,
            )
            .await;
        rows.push((kind, answer.value["total"].as_u64().unwrap_or(0)));
    }
    let body = html! {
        section.cards aria-label="Kinds of entity" {
            @for (kind, total) in &rows {
                div.card {
                    h2 { a href=(format!("/ui/topology/{}", kind.name())) { (title_of(*kind)) } }
                    p.big { (total) }
                    @if ctx.may_change() {
                        p { a href=(format!("/ui/new/{}", kind.name())) { "Add a " (kind.singular()) } }
                    }
                }
            }
        }
        p { "The whole document: " a href="/topology" { "GET /topology" } " (JSON)." }
    };
    page::render(
        ctx,
        StatusCode::OK,
        Section::Topology,
        "Topology and content",
        None,
        body,
    )
}

/// `GET /ui/topology/{kind}?page=&order_by=&q=&{field}=`.
pub async fn list(ctx: &Ctx<'_>, kind: &str) -> Reply {
    let kind = match kind_or_404(ctx, kind) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let asked = super::form::decode(&ctx.query);
    let value_of = |name: &str| {
        asked
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    // Only what the list understands goes on to the API.
    let mut pairs: Vec<(String, String)> = vec![("per_page".into(), PER_PAGE.to_string())];
    for name in ["page", "order_by", "q"]
        .into_iter()
        .chain(filters(kind).iter().copied())
    {
        let v = value_of(name);
        if !v.is_empty() {
            pairs.push((name.into(), v));
        }
    }
    let query: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let answer = ctx
        .api(
            Method::GET,
            &format!("/topology/{}", kind.name()),
            &super::form::encode(&query),
            None,
        )
        .await;
    let flash = (!answer.is_ok()).then(|| Flash::refused(answer.error()));
    let items: Vec<Value> = answer.value["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let total = answer.value["total"].as_u64().unwrap_or(0) as usize;
    let page_no = answer.value["page"].as_u64().unwrap_or(1) as usize;
    let pages = total.div_ceil(PER_PAGE).max(1);
    let order = value_of("order_by");
    let columns: Vec<&Field> = spec(kind)
        .iter()
        .filter(|f| !f.name.contains('.'))
        .collect();
    // A programme's recordings and their states, as the DVR worker keeps
    // them (`hls/none completed`), beside each programme.
    let recordings = (kind == Kind::Programs).then(|| {
        let topology = ctx.admin.control.topology.snapshot();
        items
            .iter()
            .map(|item| {
                let key = item["key"].as_str().unwrap_or_default();
                let Some(p) = topology
                    .programs
                    .slot(key)
                    .and_then(|i| topology.programs.get(i))
                else {
                    return String::new();
                };
                p.records
                    .iter()
                    .map(|r| {
                        format!(
                            "{}/{} {}",
                            crate::topology::entity::protocol_name(r.protocol),
                            crate::topology::entity::encryption_name(r.encryption),
                            r.status.name()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect::<Vec<_>>()
    });
    // A link to this list with some parameters changed.
    let with = |changes: &[(&str, String)]| {
        let mut kept: Vec<(String, String)> = pairs
            .iter()
            .filter(|(k, _)| k != "per_page" && !changes.iter().any(|(c, _)| c == k))
            .cloned()
            .collect();
        for (k, v) in changes {
            if !v.is_empty() {
                kept.push((k.to_string(), v.clone()));
            }
        }
        let q: Vec<(&str, &str)> = kept.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        format!("/ui/topology/{}?{}", kind.name(), super::form::encode(&q))
    };
    // A new entity comes with the fields the list is filtered by.
    let preset: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(k, _)| filters(kind).contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let new_link = match preset.is_empty() {
        true => format!("/ui/new/{}", kind.name()),
        false => format!("/ui/new/{}?{}", kind.name(), super::form::encode(&preset)),
    };
    let body = html! {
        form.filters method="get" action=(format!("/ui/topology/{}", kind.name())) role="search" {
            label { "Search" input type="search" name="q" value=(value_of("q")); }
            @for name in filters(kind) {
                label { (name.replace('_', " ")) input type="text" name=(name) value=(value_of(name)); }
            }
            @if !order.is_empty() { input type="hidden" name="order_by" value=(order); }
            button type="submit" { "Filter" }
            a href=(format!("/ui/topology/{}", kind.name())) { "Clear" }
        }
        div.actions {
            span { (total) " " (if total == 1 { kind.singular() } else { title_of(kind) }) }
            @if ctx.may_change() {
                a #add href=(new_link) { "Add a " (kind.singular()) }
            }
        }
        div.table-wrap {
            table {
                thead { tr {
                    @for c in &columns {
                        @let (next, sort) = if order == c.name {
                            (format!("-{}", c.name), "ascending")
                        } else if order == format!("-{}", c.name) {
                            (c.name.to_string(), "descending")
                        } else {
                            (c.name.to_string(), "none")
                        };
                        th scope="col" aria-sort=(sort) {
                            a href=(with(&[("order_by", next), ("page", String::new())])) { (c.label) }
                        }
                    }
                    @if recordings.is_some() { th scope="col" { "Recordings" } }
                } }
                tbody {
                    @for (row, item) in items.iter().enumerate() {
                        @let key = item["key"].as_str().unwrap_or_default();
                        tr {
                            @for (i, c) in columns.iter().enumerate() {
                                @let shown = shown(&item["value"], c);
                                @if i == 0 {
                                    th scope="row" { a href=(format!("/ui/topology/{}/{}", kind.name(), segment(key))) { (if shown.is_empty() { key.to_string() } else { shown }) } }
                                } @else {
                                    td { (shown) }
                                }
                            }
                            @if let Some(recordings) = &recordings {
                                td { (recordings[row]) }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if page_no > 1 { a href=(with(&[("page", (page_no - 1).to_string())])) rel="prev" { "Previous" } }
            span { "Page " (page_no) " of " (pages) }
            @if page_no < pages { a href=(with(&[("page", (page_no + 1).to_string())])) rel="next" { "Next" } }
        }
    };
    page::render(
        ctx,
        answer.status,
        Section::Topology,
        title_of(kind),
        flash,
        body,
    )
}

/// A field's value as text (a list joined with commas).
fn shown(value: &Value, field: &Field) -> String {
    let mut v = value;
    for part in field.name.split('.') {
        v = &v[part];
    }
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Object(pairs) => pairs
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    v.as_str().map_or_else(|| v.to_string(), str::to_string)
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// `GET /ui/new/{kind}`: an empty form.
pub async fn new(ctx: &Ctx<'_>, kind: &str) -> Reply {
    let kind = match kind_or_404(ctx, kind) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    // Fields the list was filtered by (a region's subnets) come filled in.
    let asked = super::form::decode(&ctx.query);
    let values: Vec<(String, String)> = spec(kind)
        .iter()
        .map(|f| {
            let given = asked
                .iter()
                .find(|(k, _)| k == f.name)
                .map(|(_, v)| v.clone());
            (
                f.name.to_string(),
                given.unwrap_or_else(|| f.default.to_string()),
            )
        })
        .collect();
    edit_page(ctx, kind, None, None, &values, None, StatusCode::OK)
}

/// `GET /ui/topology/{kind}/{key}`: the entity's form.
pub async fn show(ctx: &Ctx<'_>, kind: &str, key: &str) -> Reply {
    let kind = match kind_or_404(ctx, kind) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let answer = ctx
        .api(
            Method::GET,
            &format!("/topology/{}/{}", kind.name(), segment(key)),
            "",
            None,
        )
        .await;
    if !answer.is_ok() {
        return page::render(
            ctx,
            answer.status,
            Section::Topology,
            title_of(kind),
            Some(Flash::refused(answer.error())),
            html! { p { a href=(format!("/ui/topology/{}", kind.name())) { "All " (title_of(kind).to_lowercase()) } } },
        );
    }
    let value = &answer.value["value"];
    let values: Vec<(String, String)> = spec(kind)
        .iter()
        .map(|f| {
            let text = shown(value, f);
            let text = if text.is_empty() && !f.default.is_empty() && !is_set(value, f) {
                f.default.to_string()
            } else {
                text
            };
            (f.name.to_string(), text)
        })
        .collect();
    let revision = answer.value["revision"].as_u64();
    edit_page(
        ctx,
        kind,
        Some(key),
        revision,
        &values,
        None,
        StatusCode::OK,
    )
}

fn is_set(value: &Value, field: &Field) -> bool {
    let mut v = value;
    for part in field.name.split('.') {
        v = &v[part];
    }
    !v.is_null()
}

/// A refusal, and the field it names (`field `port`: ...` names `port`).
#[derive(Debug)]
struct Problem {
    field: Option<String>,
    message: String,
}

impl Problem {
    fn of(kind: Kind, message: String) -> Problem {
        let named = message
            .split("field `")
            .nth(1)
            .and_then(|rest| rest.split('`').next())
            .map(|f| f.split('[').next().unwrap_or(f).to_string());
        let field = named.filter(|n| spec(kind).iter().any(|f| f.name == n));
        Problem { field, message }
    }
}

#[allow(clippy::too_many_arguments)]
fn edit_page(
    ctx: &Ctx<'_>,
    kind: Kind,
    key: Option<&str>,
    revision: Option<u64>,
    values: &[(String, String)],
    problem: Option<Problem>,
    status: StatusCode,
) -> Reply {
    let value_of = |name: &str| {
        values
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    let action = match key {
        Some(k) => format!("/ui/topology/{}/{}", kind.name(), segment(k)),
        None => format!("/ui/new/{}", kind.name()),
    };
    let disabled = !ctx.may_change();
    let key_fields = kind.key_fields();
    let (field_problem, top_problem) = match &problem {
        Some(p) if p.field.is_some() => (p.field.as_deref(), None),
        Some(p) => (None, Some(p.message.clone())),
        None => (None, None),
    };
    let title = match key {
        Some(k) => format!("{} {k}", capitalised(kind.singular())),
        None => format!("New {}", kind.singular()),
    };
    let body = html! {
        p { a href=(format!("/ui/topology/{}", kind.name())) { "All " (title_of(kind).to_lowercase()) } }
        form.stack method="post" action=(action) novalidate {
            (csrf_field(ctx))
            @if let Some(r) = revision { input type="hidden" name="revision" value=(r); }
            fieldset disabled[disabled] {
                legend { (if key.is_some() { "Edit" } else { "Create" }) }
                @for field in spec(kind) {
                    @let id = format!("f-{}", field.name.replace('.', "-"));
                    @let value = value_of(field.name);
                    @let readonly = key.is_some() && key_fields.contains(&field.name);
                    @let bad = field_problem == Some(field.name);
                    @let described = format!("{id}-hint{}", if bad { format!(" {id}-problem") } else { String::new() });
                    div.field {
                        @match field.ty {
                            Ty::Bool => {
                                div.check {
                                    input #(id) type="checkbox" name=(field.name) checked[value == "true"] aria-describedby=(described);
                                    label for=(id) { (field.label) }
                                }
                            }
                            Ty::Choice(options) => {
                                label for=(id) { (field.label) }
                                @if readonly {
                                    input #(id) type="text" name=(field.name) value=(value) readonly aria-describedby=(described);
                                } @else {
                                    select #(id) name=(field.name) aria-invalid=(bad) aria-describedby=(described) {
                                        @for o in options {
                                            option value=(o) selected[value == *o] { (o) }
                                        }
                                    }
                                }
                            }
                            _ => {
                                label for=(id) { (field.label) }
                                @let mode = match field.ty { Ty::Number | Ty::OptNumber => "numeric", Ty::OptDecimal => "decimal", _ => "text" };
                                input #(id) type="text" inputmode=(mode) name=(field.name) value=(value)
                                    readonly[readonly] aria-invalid=(bad) aria-describedby=(described);
                            }
                        }
                        span.hint #(format!("{id}-hint")) { (field.hint) @if readonly { " (part of the key: delete and create to change it)" } }
                        @if bad {
                            @if let Some(p) = &problem {
                                span.problem #(format!("{id}-problem")) role="alert" { (p.message) }
                            }
                        }
                    }
                }
                div.actions {
                    button type="submit" name="action" value="save" { (if key.is_some() { "Save" } else { "Create" }) }
                }
            }
        }
        @if let Some(k) = key {
            form.inline method="post" action=(action) {
                (csrf_field(ctx))
                @if let Some(r) = revision { input type="hidden" name="revision" value=(r); }
                input type="hidden" name="action" value="delete";
                button.danger type="submit" disabled[disabled] data-confirm=(format!("Delete {} {k}?", kind.singular())) { "Delete this " (kind.singular()) }
            }
            @let links = related(kind, k);
            @if !links.is_empty() {
                h2 { "Related" }
                ul { @for (label, href) in &links { li { a href=(href) { (label) } } } }
            }
        }
    };
    let flash = top_problem.map(Flash::refused);
    page::render(ctx, status, Section::Topology, &title, flash, body)
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The entity's JSON value from a form, or the field that is wrong.
fn value_from(kind: Kind, form: &Form) -> Result<Value, Problem> {
    let mut top = Map::new();
    let mut nested: Vec<(&str, Map<String, Value>)> = Vec::new();
    for field in spec(kind) {
        let text = form.text(field.name);
        let wrong = |why: &str| Problem {
            field: Some(field.name.to_string()),
            message: format!("field `{}`: {text:?} {why}", field.name),
        };
        let value = match field.ty {
            Ty::Bool => Some(Value::Bool(form.checked(field.name))),
            Ty::Number => Some(json!(
                text.parse::<u64>()
                    .map_err(|_| wrong("is not a whole number"))?
            )),
            Ty::OptNumber | Ty::OptDecimal if text.is_empty() => None,
            Ty::OptDecimal => Some(json!(
                text.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| wrong("is not a number"))?
            )),
            Ty::OptNumber => Some(json!(
                text.parse::<u64>()
                    .map_err(|_| wrong("is not a whole number"))?
            )),
            Ty::List => Some(Value::Array(
                text.split([',', ' ', '\n', '\r', '\t'])
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_string()))
                    .collect(),
            )),
            Ty::Pairs => {
                let mut pairs = Map::new();
                for pair in text
                    .split([',', ' ', '\n', '\r', '\t'])
                    .filter(|s| !s.is_empty())
                {
                    let (k, v) = pair
                        .split_once('=')
                        .ok_or_else(|| wrong("must be name=value pairs"))?;
                    pairs.insert(k.to_string(), Value::String(v.to_string()));
                }
                (!pairs.is_empty()).then_some(Value::Object(pairs))
            }
            Ty::Text | Ty::Choice(_) if text.is_empty() => None,
            Ty::Text | Ty::Choice(_) => Some(Value::String(text.to_string())),
        };
        let Some(value) = value else { continue };
        match field.name.split_once('.') {
            Some((object, name)) => {
                match nested.iter_mut().find(|(o, _)| *o == object) {
                    Some((_, m)) => m,
                    None => {
                        nested.push((object, Map::new()));
                        &mut nested.last_mut().expect("just pushed").1
                    }
                }
                .insert(name.to_string(), value);
            }
            None => {
                top.insert(field.name.to_string(), value);
            }
        }
    }
    for (object, fields) in nested {
        if !fields.is_empty() {
            top.insert(object.to_string(), Value::Object(fields));
        }
    }
    Ok(Value::Object(top))
}

/// The form's values as they were typed (to show again with a refusal).
fn typed(kind: Kind, form: &Form) -> Vec<(String, String)> {
    spec(kind)
        .iter()
        .map(|f| {
            let v = match f.ty {
                Ty::Bool => form.checked(f.name).to_string(),
                _ => form.get(f.name).unwrap_or_default().to_string(),
            };
            (f.name.to_string(), v)
        })
        .collect()
}

/// `POST /ui/new/{kind}`.
pub async fn create(ctx: &Ctx<'_>, kind: &str, form: &Form) -> Reply {
    let kind = match kind_or_404(ctx, kind) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let refused =
        |p: Problem, status| edit_page(ctx, kind, None, None, &typed(kind, form), Some(p), status);
    let value = match value_from(kind, form) {
        Ok(v) => v,
        Err(p) => return refused(p, StatusCode::BAD_REQUEST),
    };
    let answer = ctx
        .api(
            Method::POST,
            &format!("/topology/{}", kind.name()),
            "",
            Some(&value),
        )
        .await;
    if !answer.is_ok() {
        return refused(Problem::of(kind, answer.error()), answer.status);
    }
    let key = answer.value["changes"][0]["key"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    page::after(
        ctx,
        &format!("/ui/topology/{}/{}", kind.name(), segment(&key)),
        Flash::done(format!(
            "Created {} {key}{}.",
            kind.singular(),
            pending(&answer.value)
        )),
    )
}

fn pending(answer: &Value) -> &'static str {
    if answer["applied_here"] == false {
        " (written to etcd; this node serves it in a moment)"
    } else {
        ""
    }
}

/// `POST /ui/topology/{kind}/{key}`: save (replace its value) or delete.
pub async fn save(ctx: &Ctx<'_>, kind: &str, key: &str, form: &Form) -> Reply {
    let kind = match kind_or_404(ctx, kind) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let revision = form.text("revision").parse::<u64>().ok();
    let mut headers = HeaderMap::new();
    if let Some(r) = revision
        && let Ok(v) = HeaderValue::from_str(&format!("\"{r}\""))
    {
        headers.insert(header::IF_MATCH, v);
    }
    let path = format!("/topology/{}/{}", kind.name(), segment(key));
    if form.text("action") == "delete" {
        let answer = ctx
            .api_raw(Method::DELETE, &path, "", headers, bytes::Bytes::new())
            .await;
        return if answer.is_ok() {
            page::after(
                ctx,
                &format!("/ui/topology/{}", kind.name()),
                Flash::done(format!(
                    "Deleted {} {key}{}.",
                    kind.singular(),
                    pending(&answer.value)
                )),
            )
        } else {
            page::after(
                ctx,
                &format!("/ui/topology/{}/{}", kind.name(), segment(key)),
                Flash::refused(answer.error()),
            )
        };
    }
    let refused = |p: Problem, status| {
        edit_page(
            ctx,
            kind,
            Some(key),
            revision,
            &typed(kind, form),
            Some(p),
            status,
        )
    };
    let value = match value_from(kind, form) {
        Ok(v) => v,
        Err(p) => return refused(p, StatusCode::BAD_REQUEST),
    };
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = bytes::Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
    let answer = ctx.api_raw(Method::PUT, &path, "", headers, body).await;
    if !answer.is_ok() {
        return refused(Problem::of(kind, answer.error()), answer.status);
    }
    page::after(
        ctx,
        &format!("/ui/topology/{}/{}", kind.name(), segment(key)),
        Flash::done(format!(
            "Saved {} {key}{}.",
            kind.singular(),
            pending(&answer.value)
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn form(body: &str) -> Form {
        Form::read(
            "application/x-www-form-urlencoded",
            bytes::Bytes::from(body.to_string()),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn forms_become_values_and_refusals_find_their_field() {
        let f = form("id=e9&kind=edge&host=10.0.0.9&port=8080&tls_port=&active=on&weight=2&healthcheck.path=%2Fhealth&healthcheck.rise=").await;
        let v = value_from(Kind::Servers, &f).unwrap();
        assert_eq!(
            v,
            json!({"id": "e9", "kind": "edge", "host": "10.0.0.9", "port": 8080, "active": true,
                   "weight": 2, "healthcheck": {"path": "/health"}})
        );
        // No health check fields: no health check.
        let f = form("id=e9&kind=edge&host=h&port=80&weight=1").await;
        let v = value_from(Kind::Servers, &f).unwrap();
        assert!(v.get("healthcheck").is_none());
        assert_eq!(v["active"], false);
        // A port that is not a number is refused here, next to its field.
        let f = form("id=e9&kind=edge&host=h&port=80x&weight=1").await;
        let p = value_from(Kind::Servers, &f).unwrap_err();
        assert_eq!(p.field.as_deref(), Some("port"));
        assert!(p.message.contains("80x"), "{}", p.message);
        // Lists split on commas and spaces.
        let f = form("id=msk&server_groups=g1%2C+g2++g3").await;
        let v = value_from(Kind::Regions, &f).unwrap();
        assert_eq!(v["server_groups"], json!(["g1", "g2", "g3"]));
        assert!(v.get("location").is_none(), "no place given, none sent");
        // A region's place is kept through its form (a save must not drop it).
        let f = form("id=msk&server_groups=g1&location.latitude=55.7558&location.longitude=-37.6")
            .await;
        assert_eq!(
            value_from(Kind::Regions, &f).unwrap()["location"],
            json!({"latitude": 55.7558, "longitude": -37.6})
        );
        let region = json!({"id": "msk", "location": {"latitude": 55.7558, "longitude": 37.6173}});
        let lat = spec(Kind::Regions)
            .iter()
            .find(|f| f.name == "location.latitude")
            .unwrap();
        assert_eq!(shown(&region, lat), "55.7558");
        let f = form("id=msk&location.latitude=north").await;
        let p = value_from(Kind::Regions, &f).unwrap_err();
        assert_eq!(p.field.as_deref(), Some("location.latitude"));
        // The API's refusals name a field, sometimes with an index.
        let p = Problem::of(Kind::Regions, "create region: regions[0] \"x\": field `server_groups[1]`: \"g9\" is not the id of any server group".into());
        assert_eq!(p.field.as_deref(), Some("server_groups"));
        let p = Problem::of(
            Kind::Servers,
            "field `healthcheck.path`: \"x\" must start with /".into(),
        );
        assert_eq!(p.field.as_deref(), Some("healthcheck.path"));
        assert!(
            Problem::of(
                Kind::Servers,
                "server \"e1\" is still a member of group g1".into()
            )
            .field
            .is_none()
        );
    }

    #[test]
    fn keys_keep_their_slashes_in_urls() {
        assert_eq!(segment("10.1.0.0/16"), "10.1.0.0/16");
        assert_eq!(segment("ch 1/hls/none"), "ch%201/hls/none");
        assert_eq!(segment("a?b#c"), "a%3Fb%23c");
    }
}
