//! Accounts: an admin sees and manages them all; anyone else sees their
//! own and may change their name and password. The rules are the API's
//! (`/users`), which every form goes through.

use super::form::Form;
use super::page::{self, Flash, Section, csrf_field};
use super::{Ctx, Reply};
use crate::access::Role;
use http::{Method, StatusCode};
use maud::html;
use serde_json::{Map, Value, json};

const ROLES: [(&str, &str); 3] = [
    ("admin", "admin: everything, accounts included"),
    ("operator", "operator: topology, content, policies, drain"),
    ("viewer", "viewer: reads only"),
];

/// `GET /ui/users`.
pub async fn page(ctx: &Ctx<'_>) -> Reply {
    let answer = ctx.api(Method::GET, "/users", "", None).await;
    let users: Vec<Value> = answer.value["users"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let is_admin = ctx.actor.role() == Role::Admin;
    let me = ctx.email().to_string();
    let body = html! {
        div.table-wrap {
            table.stacked #users {
                thead { tr { th scope="col" { "E-mail" } th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Created" } } }
                tbody {
                    @for u in &users {
                        tr {
                            th scope="row" { (u["email"].as_str().unwrap_or("")) }
                            td data-label="Name" { (u["name"].as_str().unwrap_or("")) }
                            td data-label="Role" { (u["role"].as_str().unwrap_or("")) }
                            td data-label="Created" { (u["created"].as_str().map(page::when).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
        @for u in &users {
            @let email = u["email"].as_str().unwrap_or("");
            @let mine = email == me;
            @let id = super::entities::segment(email).replace(['%', '.', '@'], "-");
            section aria-labelledby=(format!("u-{id}")) {
                h2 #(format!("u-{id}")) { (if mine { "Your account" } else { "Account" }) ": " (email) }
                form.stack method="post" action=(format!("/ui/users/{}", super::entities::segment(email))) {
                    (csrf_field(ctx))
                    div.field {
                        label for=(format!("{id}-name")) { "Name" }
                        input #(format!("{id}-name")) type="text" name="name" value=(u["name"].as_str().unwrap_or(""));
                    }
                    @if is_admin && !mine {
                        div.field {
                            label for=(format!("{id}-role")) { "Role" }
                            select #(format!("{id}-role")) name="role" {
                                @for (r, label) in ROLES { option value=(r) selected[u["role"] == r] { (label) } }
                            }
                        }
                    }
                    div.field {
                        label for=(format!("{id}-password")) { "New password (optional)" }
                        input #(format!("{id}-password")) type="password" name="password" autocomplete="new-password" aria-describedby=(format!("{id}-password-hint"));
                        span.hint #(format!("{id}-password-hint")) { "at least 12 characters; empty: unchanged. A new password ends the account's sessions." }
                    }
                    div.actions {
                        button type="submit" name="action" value="save" { "Save" }
                        @if is_admin && !mine {
                            button.danger type="submit" name="action" value="delete" data-confirm=(format!("Delete the account {email}?")) { "Delete" }
                        }
                    }
                }
            }
        }
        @if is_admin {
            h2 { "New account" }
            form.stack method="post" action="/ui/users" {
                (csrf_field(ctx))
                div.field { label for="n-email" { "E-mail" } input #n-email type="email" name="email" required; }
                div.field { label for="n-name" { "Name" } input #n-name type="text" name="name"; }
                div.field {
                    label for="n-role" { "Role" }
                    select #n-role name="role" { @for (r, label) in ROLES { option value=(r) selected[r == "operator"] { (label) } } }
                }
                div.field {
                    label for="n-password" { "Password" }
                    input #n-password type="password" name="password" autocomplete="new-password" required aria-describedby="n-password-hint";
                    span.hint #n-password-hint { "at least 12 characters" }
                }
                div.actions { button type="submit" { "Create the account" } }
            }
        }
    };
    let tokens = if is_admin {
        ctx.api(Method::GET, "/tokens", "", None).await.value["tokens"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let body = html! {
        (body)
        @if is_admin {
            h2 { "API tokens" }
            p { "For scripts: a token carries a role, and is given as " code { "Authorization: Bearer <secret>" } ". Its secret is shown once, when it is made." }
            div.table-wrap {
                table.stacked #tokens {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Created" } th scope="col" { "Action" } } }
                    tbody {
                        @for t in &tokens {
                            @let name = t["name"].as_str().unwrap_or("");
                            tr {
                                th scope="row" { (name) }
                                td data-label="Role" { (t["role"].as_str().unwrap_or("")) }
                                td data-label="Created" { (t["created"].as_str().map(page::when).unwrap_or_default()) }
                                td data-label="Action" {
                                    form.inline method="post" action=(format!("/ui/tokens/{}", super::entities::segment(name))) {
                                        (csrf_field(ctx))
                                        button.danger type="submit" data-confirm=(format!("Delete the token {name}? Scripts using it will be refused.")) aria-label=(format!("Delete token {name}")) { "Delete" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form.inline method="post" action="/ui/tokens" {
                (csrf_field(ctx))
                label { "Name" input #t-name type="text" name="name" required; }
                label { "Role" select #t-role name="role" { @for (r, _) in ROLES { option value=(r) selected[r == "viewer"] { (r) } } } }
                button type="submit" { "Make a token" }
            }
        }
    };
    let flash = (!answer.is_ok()).then(|| Flash::refused(answer.error()));
    page::render(ctx, StatusCode::OK, Section::Users, "Users", flash, body)
}

/// `POST /ui/users`: a new account.
pub async fn create(ctx: &Ctx<'_>, form: &Form) -> Reply {
    let mut body = json!({
        "email": form.text("email"),
        "role": form.text("role"),
        "password": form.get("password").unwrap_or_default(),
    });
    if !form.text("name").is_empty() {
        body["name"] = json!(form.text("name"));
    }
    let answer = ctx.api(Method::POST, "/users", "", Some(&body)).await;
    let flash = if answer.is_ok() {
        Flash::done(format!(
            "Created the account {} ({}).",
            answer.value["user"]["email"].as_str().unwrap_or(""),
            answer.value["user"]["role"].as_str().unwrap_or("")
        ))
    } else {
        Flash::refused(answer.error())
    };
    page::after(ctx, "/ui/users", flash)
}

/// `POST /ui/users/{email}`: save (name, role, password) or delete.
pub async fn save(ctx: &Ctx<'_>, email: &str, form: &Form) -> Reply {
    let path = format!("/users/{}", super::entities::segment(email));
    if form.text("action") == "delete" {
        let answer = ctx.api(Method::DELETE, &path, "", None).await;
        let flash = if answer.is_ok() {
            Flash::done(format!("Deleted the account {email}."))
        } else {
            Flash::refused(answer.error())
        };
        return page::after(ctx, "/ui/users", flash);
    }
    let mut change = Map::new();
    change.insert("name".into(), json!(form.text("name")));
    if let Some(role) = form.get("role") {
        change.insert("role".into(), json!(role));
    }
    if let Some(p) = form.get("password").filter(|p| !p.is_empty()) {
        change.insert("password".into(), json!(p));
    }
    let answer = ctx
        .api(Method::PATCH, &path, "", Some(&Value::Object(change)))
        .await;
    let flash = if answer.is_ok() {
        Flash::done(format!("Saved the account {email}."))
    } else {
        Flash::refused(answer.error())
    };
    page::after(ctx, "/ui/users", flash)
}

/// `POST /ui/tokens`: a new API token; its secret is shown once.
pub async fn create_token(ctx: &Ctx<'_>, form: &Form) -> Reply {
    let body = json!({"name": form.text("name"), "role": form.text("role")});
    let answer = ctx.api(Method::POST, "/tokens", "", Some(&body)).await;
    let flash = if answer.is_ok() {
        Flash::done(format!(
            "Made the token {} ({}). Its secret, shown this once: {}",
            answer.value["token"]["name"].as_str().unwrap_or(""),
            answer.value["token"]["role"].as_str().unwrap_or(""),
            answer.value["secret"].as_str().unwrap_or("")
        ))
    } else {
        Flash::refused(answer.error())
    };
    page::after(ctx, "/ui/users", flash)
}

/// `POST /ui/tokens/{name}`: deletes it.
pub async fn delete_token(ctx: &Ctx<'_>, name: &str) -> Reply {
    let path = format!("/tokens/{}", super::entities::segment(name));
    let answer = ctx.api(Method::DELETE, &path, "", None).await;
    let flash = if answer.is_ok() {
        Flash::done(format!("Deleted the token {name}."))
    } else {
        Flash::refused(answer.error())
    };
    page::after(ctx, "/ui/users", flash)
}
