//! Signing in and out. The sign-in form has no session yet to take a CSRF
//! token from, so it carries a random one that must match a cookie set
//! with the form (a forged post from another site has neither).

use super::page::{self, html_reply};
use super::{Admin, Ctx, Reply, form};
use crate::access::session;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use maud::html;
use std::net::SocketAddr;

/// The cookie that pairs with the sign-in form's token.
const FORM_COOKIE: &str = "edgeward_sign_in";

/// Where to go after signing in: a console page, nothing else.
fn next_page(next: &str) -> &str {
    let safe = next.starts_with("/ui/")
        && !next.contains("//")
        && !next.contains('\\')
        && next
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'<' && b != b'>');
    if safe { next } else { "/ui/" }
}

/// The sign-in page (with a refusal, after a failed attempt).
pub fn page(
    admin: &Admin,
    _headers: &HeaderMap,
    query: &str,
    refusal: Option<(StatusCode, &str)>,
) -> Reply {
    let next = form::decode(query)
        .into_iter()
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let next = next_page(&next).to_string();
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(crate::access::random_bytes::<18>());
    let no_accounts = !admin.access.users.any();
    let (status, error) = match refusal {
        Some((s, e)) => (s, Some(e)),
        None => (StatusCode::OK, None),
    };
    let markup = page::document(
        "Sign in",
        false,
        html! {
                main #main.narrow {
                    h1 { "Sign in to edgeward" }
                    @if let Some(e) = error {
                        p.flash.error role="alert" #sign-in-error { (e) }
                    }
                    @if no_accounts {
                        p.note {
                            "No account exists yet. Create the first admin on the engine's machine: "
                            code { "edgeward ctl user add you@example.com --role admin --name 'Your Name'" }
                            " (it asks for the password on standard input)."
                        }
                    }
                    form.stack method="post" action="/ui/sign-in" {
                        input type="hidden" name="csrf" value=(token);
                        input type="hidden" name="next" value=(next);
                        label for="email" { "E-mail" }
                        input #email type="email" name="email" autocomplete="username" required autofocus;
                        label for="password" { "Password" }
                        input #password type="password" name="password" autocomplete="current-password" required;
                        button type="submit" { "Sign in" }
                    }
                }
        },
    );
    let mut r = html_reply(status, markup);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{FORM_COOKIE}={token}; Path=/ui/sign-in; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        if admin.secure { "; Secure" } else { "" }
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// The sign-in form posted.
pub async fn submit(admin: &Admin, headers: &HeaderMap, body: &Bytes, peer: SocketAddr) -> Reply {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let form = match form::Form::read(content_type, body.clone()).await {
        Ok(f) => f,
        Err(e) => return page::plain(StatusCode::BAD_REQUEST, &e),
    };
    let paired = super::super::users::cookie(headers, FORM_COOKIE)
        .is_some_and(|c| !c.is_empty() && form.get("csrf") == Some(c));
    let next = next_page(form.text("next")).to_string();
    let query = form::encode(&[("next", &next)]);
    if !paired {
        return page(
            admin,
            headers,
            &query,
            Some((
                StatusCode::FORBIDDEN,
                "the sign-in form's CSRF token is missing or does not match (reload the page and try again)",
            )),
        );
    }
    let password = form.get("password").unwrap_or_default().to_string();
    match super::super::users::check_sign_in(admin, form.text("email"), password, peer).await {
        Ok((_, value, _)) => {
            let mut r = page::see_other(&next);
            let cookie =
                super::super::users::session_cookie(&value, session::LIFETIME, admin.secure);
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{FORM_COOKIE}=; Path=/ui/sign-in; HttpOnly; SameSite=Strict; Max-Age=0"
            )) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Err(refused) => page(
            admin,
            headers,
            &query,
            Some((refused.status, &refused.message)),
        ),
    }
}

/// Signs out: every session of the account ends (the API's
/// `DELETE /session`).
pub async fn sign_out(ctx: &Ctx<'_>) -> Reply {
    let answer = ctx.api(http::Method::DELETE, "/session", "", None).await;
    if !answer.is_ok() {
        return page::plain(answer.status, &answer.error());
    }
    let mut r = page::see_other("/ui/sign-in");
    let cookie =
        super::super::users::session_cookie("", std::time::Duration::ZERO, ctx.admin.secure);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}
