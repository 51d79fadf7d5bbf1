//! The frame every page shares (navigation, the account, the message left
//! by the last change) and the answers pages give.

use super::{Ctx, Reply, with_body};
use http::{HeaderValue, StatusCode, header};
use maud::{DOCTYPE, Markup, html};

/// A message shown once, at the top of the next page.
#[derive(Debug, Clone)]
pub struct Flash {
    /// A refusal (else a success).
    pub error: bool,
    /// What to say.
    pub text: String,
}

impl Flash {
    /// A success.
    pub fn done(text: impl Into<String>) -> Flash {
        Flash {
            error: false,
            text: text.into(),
        }
    }

    /// A refusal.
    pub fn refused(text: impl Into<String>) -> Flash {
        Flash {
            error: true,
            text: text.into(),
        }
    }
}

/// The sections, in the navigation's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Dashboard,
    Topology,
    Health,
    Policies,
    Explain,
    Audit,
    Users,
}

const SECTIONS: [(Section, &str, &str); 7] = [
    (Section::Dashboard, "/ui/", "Dashboard"),
    (Section::Topology, "/ui/topology", "Topology"),
    (Section::Health, "/ui/health", "Health"),
    (Section::Policies, "/ui/policies", "Policies"),
    (Section::Explain, "/ui/explain", "Explain"),
    (Section::Audit, "/ui/audit", "Audit log"),
    (Section::Users, "/ui/users", "Users"),
];

/// A page in the frame, with the message kept for it (or `flash`, shown
/// in its place: a refusal on the page the form was on).
pub fn render(
    ctx: &Ctx<'_>,
    status: StatusCode,
    section: Section,
    title: &str,
    flash: Option<Flash>,
    body: Markup,
) -> Reply {
    let flash = flash.or_else(|| ctx.take_flash());
    let role = ctx.actor.role().name();
    let markup = document(
        title,
        true,
        html! {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/" { "edgeward" }
                    nav aria-label="Sections" {
                        ul {
                            @for (s, href, label) in SECTIONS {
                                li {
                                    @if s == section {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    form.account method="post" action="/ui/sign-out" {
                        (csrf_field(ctx))
                        span { (ctx.email()) " · " (role) }
                        button type="submit" { "Sign out" }
                    }
                }
                main #main {
                    h1 { (title) }
                    @if let Some(f) = &flash {
                        @if f.error {
                            p.flash.error role="alert" { (f.text) }
                        } @else {
                            p.flash.done role="status" { (f.text) }
                        }
                    }
                    @if !ctx.may_change() {
                        p.note { "You are signed in as a viewer: you can read everything here, and changes are refused." }
                    }
                    (body)
                }
        },
    );
    html_reply(status, markup)
}

/// A whole HTML document: the head every page has (the stylesheet, and
/// the script when `script`), and `body`.
pub fn document(title: &str, script: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · edgeward" }
                link rel="stylesheet" href="/ui/assets/console.css";
                @if script { script src="/ui/assets/console.js" defer {} }
            }
            body { (body) }
        }
    }
}

/// The hidden field every form carries.
pub fn csrf_field(ctx: &Ctx<'_>) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf); }
}

/// A page's HTML, with the headers every page has: no caching, no
/// framing, nothing loaded from elsewhere, no inline script.
pub fn html_reply(status: StatusCode, markup: Markup) -> Reply {
    let mut r = with_body(status, "text/html; charset=utf-8", markup.into_string());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// 303 to a page of the console (after a post).
pub fn see_other(to: &str) -> Reply {
    let mut r = with_body(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A page of one sentence, outside the frame (refusals before the gate).
pub fn plain(status: StatusCode, text: &str) -> Reply {
    html_reply(
        status,
        document(
            &status.as_u16().to_string(),
            false,
            html! {
                main #main.narrow {
                    h1 { (status.canonical_reason().unwrap_or("Refused")) }
                    p.flash.error role="alert" { (text) }
                    p { a href="/ui/" { "Back to the console" } }
                }
            },
        ),
    )
}

/// No such page.
pub fn not_found(ctx: &Ctx<'_>) -> Reply {
    render(
        ctx,
        StatusCode::NOT_FOUND,
        Section::Dashboard,
        "Not found",
        Some(Flash::refused(format!(
            "There is no page /ui/{}.",
            ctx.path.join("/")
        ))),
        html! {},
    )
}

/// After a change: back to `to`, with its outcome shown there once.
pub fn after(ctx: &Ctx<'_>, to: &str, flash: Flash) -> Reply {
    ctx.flash(flash);
    see_other(to)
}

/// A time as people read it (RFC 3339 to `2026-12-02 10:04:05 UTC`).
pub fn when(rfc3339: &str) -> String {
    match rfc3339.split_once('T') {
        Some((day, rest)) => {
            let clock = rest.trim_end_matches('Z');
            let clock = clock.split('.').next().unwrap_or(clock);
            format!("{day} {clock} UTC")
        }
        None => rfc3339.to_string(),
    }
}
