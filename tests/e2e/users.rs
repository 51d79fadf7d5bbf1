//! Operators' accounts on the admin API: the first admin made with `ctl`,
//! signing in, roles, CSRF, lock-out, and the old rules on who changes whom.

use crate::harness::{Conn, Engine, Response, TempDir, ctl_at, fixtures};
use serde_json::{Value, json};

/// `edgeward ctl` against the engine, `stdin` on its standard input.
fn ctl_with_stdin(engine: &Engine, args: &[&str], stdin: &str) -> (bool, String, String) {
    ctl_at(&format!("http://{}", engine.admin.unwrap()), args, stdin)
}

/// A signed-in browser: its cookie and CSRF token.
struct Signed {
    cookie: String,
    csrf: String,
}

fn call(
    engine: &Engine,
    method: &str,
    path: &str,
    body: Option<Value>,
    signed: Option<&Signed>,
    with_csrf: bool,
) -> Response {
    let cookie = signed.map(|s| s.cookie.clone());
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(c) = &cookie {
        headers.push(("Cookie", c.as_str()));
    }
    if let (Some(s), true) = (signed, with_csrf) {
        headers.push(("X-CSRF-Token", s.csrf.as_str()));
    }
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    Conn::open(engine.admin.unwrap()).request_with_body(method, path, &headers, text.as_bytes())
}

fn sign_in(engine: &Engine, email: &str, password: &str) -> Result<Signed, Response> {
    let r = call(
        engine,
        "POST",
        "/session",
        Some(json!({"email": email, "password": password})),
        None,
        false,
    );
    if r.status != 200 {
        return Err(r);
    }
    let set = r.header("Set-Cookie").unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Max-Age=43200", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    let body: Value = serde_json::from_str(&r.body).unwrap();
    Ok(Signed {
        cookie: set.split(';').next().unwrap().to_string(),
        csrf: body["csrf_token"].as_str().unwrap().to_string(),
    })
}

const ADMIN_PW: &str = "admin password 1";
const OPS_PW: &str = "operator password 1";
const VIEW_PW: &str = "viewer password 1";

#[test]
fn accounts_sessions_roles_csrf_and_lockout() {
    let dir = TempDir::new("users");
    let state = dir.path("state");
    let topology = fixtures().join("routing.json");
    let args = [
        "--topology",
        topology.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let mut engine = Engine::start(&args);

    // No account yet: loopback may create the first admin, with a password
    // long enough, given on standard input.
    let (ok, _, err) = ctl_with_stdin(
        &engine,
        &["user", "add", "root@example.com", "--role", "admin"],
        "too short\n",
    );
    assert!(!ok);
    assert!(
        err.contains("field `password`: must be at least 12"),
        "{err}"
    );
    assert!(
        !err.contains("too short"),
        "the password is never echoed: {err}"
    );
    let (ok, _, err) = ctl_with_stdin(
        &engine,
        &[
            "user",
            "add",
            "Root@Example.com",
            "--role",
            "admin",
            "--name",
            "Root",
        ],
        &format!("{ADMIN_PW}\n"),
    );
    assert!(ok, "{err}");

    // From now on every call needs a session or the token, loopback too.
    for path in ["/status", "/users", "/topology/servers"] {
        let r = call(&engine, "GET", path, None, None, false);
        assert_eq!(r.status, 401, "{path}: {}", r.body);
    }
    assert_eq!(
        call(&engine, "GET", "/healthz", None, None, false).status,
        200
    );
    let admin = sign_in(&engine, "root@example.com", ADMIN_PW).unwrap();
    assert_eq!(
        call(&engine, "GET", "/status", None, Some(&admin), false).status,
        200
    );

    // A change without the CSRF token is refused; with it, made.
    let new_operator = json!({"email": "ops@example.com", "role": "operator", "password": OPS_PW});
    let r = call(
        &engine,
        "POST",
        "/users",
        Some(new_operator.clone()),
        Some(&admin),
        false,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("CSRF"), "{}", r.body);
    let r = call(
        &engine,
        "POST",
        "/users",
        Some(new_operator),
        Some(&admin),
        true,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = call(
        &engine,
        "POST",
        "/users",
        Some(json!({"email": "view@example.com", "role": "viewer", "password": VIEW_PW})),
        Some(&admin),
        true,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = call(
        &engine,
        "POST",
        "/users",
        Some(json!({"email": "nope", "role": "viewer", "password": VIEW_PW})),
        Some(&admin),
        true,
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("field `email`: \\\"nope\\\""), "{}", r.body);
    // The old rules: an admin cannot change their own role or delete
    // themselves.
    let r = call(
        &engine,
        "PATCH",
        "/users/root@example.com",
        Some(json!({"role": "viewer"})),
        Some(&admin),
        true,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = call(
        &engine,
        "DELETE",
        "/users/root@example.com",
        None,
        Some(&admin),
        true,
    );
    assert_eq!(r.status, 403, "{}", r.body);

    // The operator changes the topology, and the audit trail names them;
    // they see only their own account and cannot change their role.
    let ops = sign_in(&engine, "ops@example.com", OPS_PW).unwrap();
    let r = call(
        &engine,
        "PATCH",
        "/topology/servers/e-wide",
        Some(json!({"weight": 7})),
        Some(&ops),
        true,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(&engine, "GET", "/users", None, Some(&ops), false);
    let listed: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(listed["users"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["users"][0]["email"], "ops@example.com");
    for (method, path, body) in [
        ("PATCH", "/users/ops@example.com", json!({"role": "admin"})),
        (
            "PATCH",
            "/users/view@example.com",
            json!({"name": "Renamed"}),
        ),
        (
            "POST",
            "/users",
            json!({"email": "x@example.com", "role": "admin", "password": OPS_PW}),
        ),
    ] {
        let r = call(&engine, method, path, Some(body), Some(&ops), true);
        assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
    }
    let r = call(
        &engine,
        "PATCH",
        "/users/ops@example.com",
        Some(json!({"name": "Olga"})),
        Some(&ops),
        true,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(&engine, "GET", "/audit?since=0", None, Some(&admin), false);
    let audit: Value = serde_json::from_str(&r.body).unwrap();
    let entries = audit["entries"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["kind"] == "servers"
            && e["who"]
                .as_str()
                .unwrap()
                .starts_with("user:ops@example.com")),
        "{audit}"
    );
    assert!(!r.body.contains(OPS_PW), "no password in the audit trail");

    // The viewer reads, and every change is refused.
    let viewer = sign_in(&engine, "view@example.com", VIEW_PW).unwrap();
    assert_eq!(
        call(
            &engine,
            "GET",
            "/topology/servers",
            None,
            Some(&viewer),
            false
        )
        .status,
        200
    );
    let r = call(
        &engine,
        "PATCH",
        "/topology/servers/e-wide",
        Some(json!({"weight": 1})),
        Some(&viewer),
        true,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("a viewer may only read"), "{}", r.body);

    // A wrong password is refused; five lock the account out, the right
    // one included, while another account still signs in.
    for _ in 0..5 {
        let r = sign_in(&engine, "view@example.com", "wrong password!")
            .err()
            .unwrap();
        assert_eq!(r.status, 401, "{}", r.body);
    }
    let r = sign_in(&engine, "view@example.com", VIEW_PW).err().unwrap();
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("Retry-After").is_some());
    assert!(sign_in(&engine, "ops@example.com", OPS_PW).is_ok());

    // A forged or signed-out cookie is no session.
    let forged = Signed {
        cookie: admin.cookie.replace('.', ".1"),
        csrf: admin.csrf.clone(),
    };
    assert_eq!(
        call(&engine, "GET", "/status", None, Some(&forged), false).status,
        401
    );
    let r = call(&engine, "DELETE", "/session", None, Some(&admin), true);
    assert!(r.header("Set-Cookie").unwrap().contains("Max-Age=0"));
    // Signing out ends the session for good, even if the cookie is kept.
    assert_eq!(
        call(&engine, "GET", "/status", None, Some(&admin), false).status,
        401
    );

    // Accounts and sessions survive a restart (the key is kept), and
    // changing a password ends that account's sessions.
    engine.signal("-TERM");
    engine.wait_exit();
    let engine = Engine::start(&args);
    assert_eq!(
        call(&engine, "GET", "/status", None, Some(&ops), false).status,
        200
    );
    let r = call(
        &engine,
        "PATCH",
        "/users/ops@example.com",
        Some(json!({"password": "a new password 2"})),
        Some(&ops),
        true,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        call(&engine, "GET", "/status", None, Some(&ops), false).status,
        401
    );
    let users = std::fs::read_to_string(state.join("users.json")).unwrap();
    assert!(users.contains("$argon2id$") && !users.contains(ADMIN_PW));
}

/// An admin API request with a bearer token.
fn with_bearer(
    engine: &Engine,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: &str,
) -> Response {
    let auth = format!("Bearer {token}");
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    Conn::open(engine.admin.unwrap()).request_with_body(
        method,
        path,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        text.as_bytes(),
    )
}

#[test]
fn api_tokens_carry_roles_and_their_secrets_are_shown_once() {
    let dir = TempDir::new("tokens");
    let state = dir.path("state");
    let topology = fixtures().join("routing.json");
    let args = [
        "--topology",
        topology.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let mut engine = Engine::start(&args);
    let (ok, _, err) = ctl_with_stdin(
        &engine,
        &["user", "add", "root@example.com", "--role", "admin"],
        &format!("{ADMIN_PW}\n"),
    );
    assert!(ok, "{err}");
    let root = sign_in(&engine, "root@example.com", ADMIN_PW).unwrap();

    // An admin makes tokens; the secret is in the answer once, never in a list.
    let mut secrets = std::collections::HashMap::new();
    for (name, role) in [
        ("grafana", "viewer"),
        ("deploy", "operator"),
        ("ops-bot", "admin"),
    ] {
        let r = call(
            &engine,
            "POST",
            "/tokens",
            Some(json!({"name": name, "role": role})),
            Some(&root),
            true,
        );
        assert_eq!(r.status, 201, "{}", r.body);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["token"]["role"], role);
        secrets.insert(name, v["secret"].as_str().unwrap().to_string());
    }
    let list = call(&engine, "GET", "/tokens", None, Some(&root), false);
    assert!(
        list.body.contains("grafana") && !list.body.contains(&secrets["grafana"]),
        "{}",
        list.body
    );
    let r = call(
        &engine,
        "POST",
        "/tokens",
        Some(json!({"name": "grafana", "role": "viewer"})),
        Some(&root),
        true,
    );
    assert_eq!(r.status, 409, "{}", r.body);
    let r = call(
        &engine,
        "POST",
        "/tokens",
        Some(json!({"name": "a b", "role": "viewer"})),
        Some(&root),
        true,
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("field `name`"), "{}", r.body);
    let r = call(
        &engine,
        "POST",
        "/tokens",
        Some(json!({"name": "x", "role": "root"})),
        Some(&root),
        true,
    );
    assert_eq!(r.status, 400, "{}", r.body);

    // Each does what its role allows, no CSRF token needed (no cookie).
    let viewer = &secrets["grafana"];
    assert_eq!(
        with_bearer(&engine, "GET", "/status", None, viewer).status,
        200
    );
    let r = with_bearer(&engine, "POST", "/servers/e-wide/drain", None, viewer);
    assert_eq!(r.status, 403);
    assert!(r.body.contains("a viewer may only read"), "{}", r.body);
    let r = with_bearer(&engine, "GET", "/tokens", None, viewer);
    assert_eq!(r.status, 403, "{}", r.body);
    let operator = &secrets["deploy"];
    let r = with_bearer(&engine, "POST", "/servers/e-wide/drain", None, operator);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = with_bearer(
        &engine,
        "POST",
        "/users",
        Some(json!({"email": "x@example.com", "role": "admin", "password": "long enough pw"})),
        operator,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = with_bearer(
        &engine,
        "POST",
        "/tokens",
        Some(json!({"name": "mine", "role": "admin"})),
        operator,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let admin = &secrets["ops-bot"];
    let r = with_bearer(
        &engine,
        "POST",
        "/users",
        Some(json!({"email": "x@example.com", "role": "viewer", "password": "long enough pw"})),
        admin,
    );
    assert_eq!(r.status, 201, "{}", r.body);

    // The audit trail names the token; no secret is ever in the log.
    let r = call(&engine, "GET", "/audit", None, Some(&root), false);
    assert!(
        r.body.contains("token:deploy") && r.body.contains("token:ops-bot"),
        "{}",
        r.body
    );

    // A wrong or deleted token is refused, even from loopback.
    let r = with_bearer(&engine, "GET", "/status", None, "ew_not-a-token");
    assert_eq!(r.status, 401);
    let r = call(
        &engine,
        "DELETE",
        "/tokens/grafana",
        None,
        Some(&root),
        true,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        with_bearer(&engine, "GET", "/status", None, viewer).status,
        401
    );

    // ctl makes, lists and deletes them too; tokens outlive a restart.
    let (ok, out, err) =
        ctl_with_stdin(&engine, &["--token-file", "/dev/null", "token", "list"], "");
    assert!(!ok, "{out}{err}");
    let token_file = dir.path("admin.token");
    std::fs::write(&token_file, admin).unwrap();
    let tf = token_file.to_str().unwrap();
    let (ok, out, err) = ctl_with_stdin(
        &engine,
        &[
            "--token-file",
            tf,
            "token",
            "add",
            "ci",
            "--role",
            "operator",
        ],
        "",
    );
    assert!(ok, "{err}");
    let ci = out
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap()
        .trim()
        .to_string();
    assert!(ci.starts_with("ew_"), "{out}");
    let (ok, out, _) = ctl_with_stdin(&engine, &["--token-file", tf, "token", "list"], "");
    assert!(
        ok && out.contains("ci") && out.contains("operator") && !out.contains(&ci),
        "{out}"
    );
    engine.signal("-TERM");
    engine.wait_exit();
    let engine = Engine::start(&args);
    assert_eq!(
        with_bearer(&engine, "GET", "/status", None, &ci).status,
        200
    );
    let (ok, _, err) = ctl_with_stdin(&engine, &["--token-file", tf, "token", "delete", "ci"], "");
    assert!(ok, "{err}");
    assert_eq!(
        with_bearer(&engine, "GET", "/status", None, &ci).status,
        401
    );
    let log = engine.log_lines().join("\n");
    for secret in secrets.values().chain([&ci]) {
        assert!(!log.contains(secret.as_str()), "a secret in the log");
    }
    let file = std::fs::read_to_string(state.join("tokens.json")).unwrap();
    assert!(!file.contains(admin.as_str()), "{file}");
}
