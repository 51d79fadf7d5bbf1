//! The web console in a real headless Chromium: signing in, accounts and
//! roles, editing the topology and seeing a player's redirect change,
//! draining, a canary uploaded, started and promoted, explain, the audit
//! log; refusals (a viewer's form, a wrong password and the lock-out, a
//! form without its CSRF token); every page checked with axe-core and
//! photographed at 1366 and 390 pixels wide (`target/console-screenshots/`).

use crate::browser::Browser;
use crate::harness::{Engine, TempDir, built_policy, ctl_at, fixtures};
use serde_json::{Value, json};
use std::path::PathBuf;

const ADMIN: (&str, &str) = ("root@example.com", "admin password 1");
const OPERATOR: (&str, &str) = ("ops@example.com", "operator password 1");
const VIEWER: (&str, &str) = ("view@example.com", "viewer password 1");

/// Where the screenshots go (kept after the test, as its artefacts).
fn shots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("console-screenshots")
}

/// axe-core, from the committed lockfile (`npm ci` in tests/browser).
fn axe_source() -> String {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/browser/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: run `npm ci --prefix tests/browser` (tests/run does)",
            file.display()
        )
    })
}

/// The page passes axe-core's WCAG 2.1 A/AA and best-practice rules with
/// no serious or critical violation; then a screenshot at both widths.
fn check_page(b: &Browser, axe: &str, name: &str) {
    b.run(&format!("{axe}\nreturn true;"), json!([]));
    let result = b.run_async(
        "const done = arguments[arguments.length - 1];
         axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})
            .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 3).map(n => n.html)}))))
            .catch(e => done([{id: 'axe failed', impact: 'critical', help: String(e), nodes: []}]));",
        json!([]),
    );
    let serious: Vec<&Value> = result
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .collect();
    assert!(
        serious.is_empty(),
        "axe-core on the {name} page ({}): {}",
        b.url(),
        serde_json::to_string_pretty(&serious).unwrap()
    );
    let dir = shots();
    b.screenshot(&dir.join(format!("{name}-1366.png")), 1366);
    b.screenshot(&dir.join(format!("{name}-390.png")), 390);
    // Nothing on a phone is wider than the phone.
    let overflow = b.run(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        json!([]),
    );
    if overflow.as_i64().unwrap_or(0) > 1 {
        // Name the elements that stick out, so that a failure says what to fix.
        let wide = b.run(
            "const w = document.documentElement.clientWidth;
             return [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > w + 1)
                .slice(0, 8)
                .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                    + (e.className && typeof e.className === 'string' ? '.' + e.className.replace(/ /g, '.') : '')
                    + ' (' + Math.round(e.getBoundingClientRect().right) + ' px): '
                    + (e.textContent || '').trim().slice(0, 60));",
            json!([]),
        );
        panic!("the {name} page scrolls sideways at 390 px ({overflow} px): {wide}");
    }
    b.emulate_width(1366, 900);
}

fn sign_in(b: &Browser, base: &str, (email, password): (&str, &str)) {
    b.goto(&format!("{base}/ui/sign-in"));
    b.fill("#email", email);
    b.fill("#password", password);
    b.press_enter("#password");
}

fn sign_out(b: &Browser) {
    b.go("form.account button");
    assert!(b.url().contains("/ui/sign-in"), "{}", b.url());
}

/// The flash message the last change left.
fn flash(b: &Browser) -> String {
    b.text("p.flash")
}

fn player_location(engine: &Engine, client: &str) -> String {
    let r = engine.get("/btv/live/hls/ch1.m3u8", &[("X-Real-IP", client)]);
    assert_eq!(r.status, 302, "{r:?}");
    r.location().to_string()
}

fn admin_get(engine: &Engine, path: &str, cookie: &str) -> Value {
    let addr = engine.admin.unwrap();
    let r = crate::harness::Conn::open(addr).request("GET", path, &[("Cookie", cookie)]);
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body))
}

#[test]
fn operators_work_through_the_console_in_a_real_browser() {
    let dir = TempDir::new("console");
    let state = dir.path("state");
    let topology = fixtures().join("routing.json");
    let engine = Engine::start(&[
        "--topology",
        topology.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    let base = format!("http://{}", engine.admin.unwrap());
    let axe = axe_source();

    // The first admin, made with ctl (the password on standard input).
    let (ok, _, err) = ctl_at(
        &base,
        &["user", "add", ADMIN.0, "--role", "admin", "--name", "Root"],
        &format!("{}\n", ADMIN.1),
    );
    assert!(ok, "{err}");

    let b = Browser::start(1366, 900);

    // Not signed in: any page leads to the sign-in form, and back after.
    b.goto(&format!("{base}/ui/health"));
    assert!(
        b.url().contains("/ui/sign-in?next=%2Fui%2Fhealth"),
        "{}",
        b.url()
    );
    check_page(&b, &axe, "sign-in");
    b.fill("#email", ADMIN.0);
    b.fill("#password", ADMIN.1);
    b.press_enter("#password");
    assert!(b.url().ends_with("/ui/health"), "{}", b.url());

    // The dashboard.
    b.goto(&format!("{base}/ui/"));
    assert!(b.text("main").contains("Requests per second"));
    assert!(b.text("main").contains("nearest"), "{}", b.text("main"));
    check_page(&b, &axe, "dashboard");

    // An admin creates an operator and a viewer.
    b.goto(&format!("{base}/ui/users"));
    for (email, password, role) in [
        (OPERATOR.0, OPERATOR.1, "operator"),
        (VIEWER.0, VIEWER.1, "viewer"),
    ] {
        b.fill("#n-email", email);
        b.fill("#n-name", role);
        b.run(
            "document.querySelector('#n-role').value = arguments[0];",
            json!([role]),
        );
        b.fill("#n-password", password);
        b.go("form[action='/ui/users'] button");
        assert!(
            flash(&b).contains(&format!("Created the account {email} ({role})")),
            "{}",
            flash(&b)
        );
    }
    // Too short a password is refused, with the API's reason.
    b.fill("#n-email", "short@example.com");
    b.fill("#n-password", "short");
    b.go("form[action='/ui/users'] button");
    assert!(flash(&b).contains("at least 12"), "{}", flash(&b));
    // An API token for a script: its secret is shown once.
    b.fill("#t-name", "grafana");
    b.go("form[action='/ui/tokens'] button");
    let made = flash(&b);
    assert!(
        made.contains("Made the token grafana (viewer)") && made.contains("ew_"),
        "{made}"
    );
    assert!(b.text("#tokens").contains("grafana"));
    check_page(&b, &axe, "users");
    sign_out(&b);

    // The operator adds a server, a group, a region and a subnet: a player
    // of that subnet is sent to the new server.
    sign_in(&b, &base, OPERATOR);
    assert!(b.url().ends_with("/ui/"), "{}", b.url());
    let before = player_location(&engine, "192.168.7.9");
    assert!(!before.contains("e-new.test"), "{before}");

    b.goto(&format!("{base}/ui/new/servers"));
    b.fill("#f-id", "e-new");
    b.fill("#f-host", "e-new.test");
    b.fill("#f-port", "70000");
    b.go("button[value='save']");
    // Refused next to the field, with what was typed kept.
    let problem = b.text("#f-port-problem");
    assert!(
        problem.contains("port") && problem.contains("70000"),
        "{problem}: {}",
        b.text("main")
    );
    assert_eq!(
        b.run("return document.querySelector('#f-host').value;", json!([])),
        "e-new.test"
    );
    check_page(&b, &axe, "server-refused");
    b.fill("#f-port", "8080");
    b.go("button[value='save']");
    assert!(flash(&b).contains("Created server e-new"), "{}", flash(&b));
    check_page(&b, &axe, "server");

    b.goto(&format!("{base}/ui/new/server-groups"));
    b.fill("#f-id", "g-new");
    b.fill("#f-servers", "e-new");
    b.go("button[value='save']");
    assert!(
        flash(&b).contains("Created server group g-new"),
        "{}",
        flash(&b)
    );

    b.goto(&format!("{base}/ui/new/regions"));
    b.fill("#f-id", "r-new");
    b.fill("#f-name", "New region");
    b.fill("#f-server_groups", "g-new");
    b.go("button[value='save']");
    assert!(flash(&b).contains("Created region r-new"), "{}", flash(&b));

    // From the region, its subnets; a new one comes with the region set.
    b.go("a[href='/ui/topology/subnets?region=r-new']");
    b.go("#add");
    assert_eq!(
        b.run(
            "return document.querySelector('#f-region').value;",
            json!([])
        ),
        "r-new"
    );
    b.fill("#f-cidr", "192.168.0.0/16");
    b.go("button[value='save']");
    assert!(
        flash(&b).contains("Created subnet 192.168.0.0/16"),
        "{}",
        flash(&b)
    );
    let after = player_location(&engine, "192.168.7.9");
    assert!(
        after.starts_with("http://e-new.test:8080/"),
        "{before} -> {after}"
    );

    // Integrity refusals in plain words: the region still has its subnet.
    b.goto(&format!("{base}/ui/topology/regions/r-new"));
    b.mark();
    b.click("button.danger");
    b.accept_dialog();
    b.wait_new_page();
    assert!(flash(&b).contains("still"), "{}", flash(&b));

    // The lists: filtered and sorted.
    b.goto(&format!("{base}/ui/topology/subnets?region=r-new"));
    assert!(b.text("table").contains("192.168.0.0/16"));
    check_page(&b, &axe, "subnets");
    b.goto(&format!("{base}/ui/topology"));
    check_page(&b, &axe, "topology");

    // The health board: drain the new server; players go elsewhere.
    b.goto(&format!("{base}/ui/health"));
    b.go("#server-e-new button");
    assert!(flash(&b).contains("Server e-new drained"), "{}", flash(&b));
    assert!(
        b.text("#server-e-new").contains("draining"),
        "{}",
        b.text("#server-e-new")
    );
    check_page(&b, &axe, "health");
    b.go("#server-e-new button");
    assert!(
        flash(&b).contains("Server e-new undrained"),
        "{}",
        flash(&b)
    );

    // Policies: upload a second version, start it as a canary, promote it.
    b.goto(&format!("{base}/ui/policies"));
    b.fill("#up-name", "least-loaded");
    b.choose_file("#up-wasm", &built_policy("least-loaded"));
    b.go("form[action='/ui/policies/upload'] button");
    assert!(flash(&b).contains("Loaded least-loaded@2"), "{}", flash(&b));
    b.run(
        "document.querySelector(\"form[action='/ui/policies/canary'] select\").value = '2';",
        json!([]),
    );
    b.fill(
        "form[action='/ui/policies/canary'] input[name='percent']",
        "25",
    );
    b.go("form[action='/ui/policies/canary'] button");
    assert!(
        flash(&b).contains("canary least-loaded@2 at 25 %"),
        "{}",
        flash(&b)
    );
    assert!(
        b.text("#canary-state").contains("25 %"),
        "{}",
        b.text("#canary-state")
    );
    check_page(&b, &axe, "policies");
    b.go("form[action='/ui/policies/canary/promote'] button");
    assert!(
        flash(&b).contains("Active: least-loaded@2"),
        "{}",
        flash(&b)
    );

    // Explain a decision.
    b.goto(&format!("{base}/ui/explain"));
    b.fill("#x-client", "192.168.7.9");
    b.fill("#x-url", "/btv/live/hls/ch1.m3u8");
    b.press_enter("#x-url");
    let answer = b.text("#answer");
    assert!(
        answer.contains("302") && answer.contains("e-new.test"),
        "{answer}"
    );
    assert!(b.text("#trace").contains("r-new"), "{}", b.text("#trace"));
    check_page(&b, &axe, "explain");

    // The audit log names the operator.
    b.goto(&format!("{base}/ui/audit"));
    let audit = b.text("#audit");
    assert!(
        audit.contains("user:ops@example.com") && audit.contains("e-new"),
        "{audit}"
    );
    for action in [
        "drain",
        "undrain",
        "load",
        "set-canary",
        "promote-canary",
        "create",
    ] {
        assert!(audit.contains(action), "{action}: {audit}");
    }
    check_page(&b, &axe, "audit");

    // A form without its CSRF token is refused, and changes nothing.
    b.goto(&format!("{base}/ui/topology/servers/e-new"));
    b.run(
        "document.querySelector('form.stack input[name=csrf]').remove();",
        json!([]),
    );
    b.fill("#f-weight", "7");
    b.go("button[value='save']");
    assert!(
        b.text("main").contains("CSRF token is missing or wrong"),
        "{}",
        b.text("main")
    );
    b.goto(&format!("{base}/ui/"));
    sign_out(&b);

    // The viewer reads, and the server refuses the viewer's forms even when
    // the page's disabled fields are turned back on.
    sign_in(&b, &base, VIEWER);
    b.goto(&format!("{base}/ui/topology/servers/e-new"));
    assert!(b.text("main").contains("signed in as a viewer"));
    let disabled = b.run(
        "return document.querySelector('form.stack fieldset').disabled;",
        json!([]),
    );
    assert_eq!(disabled, true);
    b.run(
        "document.querySelector('form.stack fieldset').disabled = false;",
        json!([]),
    );
    b.fill("#f-weight", "9");
    b.go("button[value='save']");
    let refused = b.text("main");
    assert!(refused.contains("a viewer may only read"), "{refused}");
    check_page(&b, &axe, "viewer-refused");
    sign_out(&b);

    // Nothing the refused forms sent was applied.
    let server = admin_get_signed(&engine, ADMIN, "/topology/servers/e-new");
    assert_eq!(server["value"]["weight"], 1, "{server}");

    // Players' requests show on the dashboard: a rate, the decision time,
    // and the chart (two samples, five seconds apart, make a point).
    sign_in(&b, &base, ADMIN);
    let mut conn = engine.connect();
    let started = std::time::Instant::now();
    let mut sent = 0;
    while started.elapsed() < std::time::Duration::from_secs(12) {
        for client in ["192.168.7.9", "10.1.2.3", "10.9.0.1"] {
            let r = conn.request("GET", "/btv/live/hls/ch1.m3u8", &[("X-Real-IP", client)]);
            assert_eq!(r.status, 302);
            sent += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    b.goto(&format!("{base}/ui/"));
    let live = b.text("#requests");
    assert!(live.contains("302") && live.contains("live"), "{live}");
    let rate: f64 = b.text(".card .big").parse().unwrap_or(0.0);
    assert!(
        rate > 0.0,
        "{sent} requests, yet {rate}/s: {}",
        b.text("main")
    );
    let drawn = b.run("return document.querySelector('svg.chart polyline.c0').getAttribute('points').split(' ').length;", json!([]));
    assert!(drawn.as_u64().unwrap_or(0) >= 2, "{drawn}");
    check_page(&b, &axe, "dashboard-traffic");
    sign_out(&b);

    // A wrong password is refused; five in a row lock the account out.
    for _ in 0..5 {
        sign_in(&b, &base, (VIEWER.0, "not the password"));
        assert!(
            b.text("#sign-in-error")
                .contains("wrong e-mail or password"),
            "{}",
            b.text("main")
        );
    }
    sign_in(&b, &base, VIEWER);
    let locked = b.text("#sign-in-error");
    assert!(locked.contains("too many failed sign-ins"), "{locked}");
    check_page(&b, &axe, "locked-out");
}

/// A GET on the admin API as a signed-in account (API sign-in).
fn admin_get_signed(engine: &Engine, (email, password): (&str, &str), path: &str) -> Value {
    let cookie = crate::harness::session_cookie(engine, email, password);
    admin_get(engine, path, &cookie)
}

/// Posts a form to the console over plain HTTP.
fn post_form(
    engine: &Engine,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> crate::harness::Response {
    let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    crate::harness::Conn::open(engine.admin.unwrap()).request_with_body(
        "POST",
        path,
        &all,
        body.as_bytes(),
    )
}

#[test]
fn the_console_refuses_bad_and_forged_posts() {
    let topology = fixtures().join("routing.json");
    let engine = Engine::start(&["--topology", topology.to_str().unwrap()]);
    let admin = engine.admin.unwrap();
    let get = |path: &str, headers: &[(&str, &str)]| {
        crate::harness::Conn::open(admin).request("GET", path, headers)
    };

    // No account yet, no token: loopback may use the API, but not from
    // another site's page (a browser says so in Sec-Fetch-Site).
    let r = crate::harness::Conn::open(admin).request_with_body(
        "POST",
        "/topology/regions",
        &[
            ("Content-Type", "text/plain"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        br#"{"id": "forged", "server_groups": []}"#,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("another site"), "{}", r.body);
    assert_eq!(get("/topology/regions/forged", &[]).status, 404);

    // The console needs an account even then: the sign-in page says how to
    // make the first one.
    let r = get("/ui/", &[]);
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/ui/sign-in?next=%2Fui%2F");
    let page = get("/ui/sign-in", &[]);
    assert!(page.body.contains("ctl user add"), "{}", page.body);
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let r = post_form(
        &engine,
        "/ui/topology/servers/e-wide",
        &[],
        "csrf=x&action=delete",
    );
    assert_eq!(r.status, 401);

    let (ok, _, err) = ctl_at(
        &format!("http://{admin}"),
        &["user", "add", ADMIN.0, "--role", "admin"],
        &format!("{}\n", ADMIN.1),
    );
    assert!(ok, "{err}");

    // Signing in needs the form's own token, paired with its cookie.
    let page = get("/ui/sign-in", &[]);
    let form_cookie = page
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let token = form_cookie.split_once('=').unwrap().1.to_string();
    let creds = format!("email={}&password={}", ADMIN.0, ADMIN.1.replace(' ', "+"));
    let r = post_form(
        &engine,
        "/ui/sign-in",
        &[],
        &format!("csrf={token}&{creds}"),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("does not match"), "{}", r.body);
    // Back only to a console page: never to another site.
    let r = post_form(
        &engine,
        "/ui/sign-in",
        &[("Cookie", &form_cookie)],
        &format!("csrf={token}&next=%2F%2Fevil.example%2Fui%2F&{creds}"),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location(), "/ui/");
    let session = r
        .headers
        .iter()
        .find(|(n, v)| n.eq_ignore_ascii_case("set-cookie") && v.starts_with("edgeward_session="))
        .map(|(_, v)| v.split(';').next().unwrap().to_string())
        .unwrap();
    let cookie = [("Cookie", session.as_str())];
    let page = get("/ui/topology/servers/e-wide", &cookie);
    assert_eq!(page.status, 200);
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();

    // Forms that cannot be read, or are not forms, are refused whole.
    let r = crate::harness::Conn::open(admin).request_with_body(
        "POST",
        "/ui/topology/servers/e-wide",
        &[("Content-Type", "text/plain"), ("Cookie", &session)],
        b"csrf=x",
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("text/plain"), "{}", r.body);
    let r = crate::harness::Conn::open(admin).request_with_body(
        "POST",
        "/ui/policies/upload",
        &[
            ("Content-Type", "multipart/form-data; boundary=X"),
            ("Cookie", &session),
        ],
        b"--X\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nnever ends",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let many: Vec<String> = (0..300).map(|i| format!("f{i}=1")).collect();
    let r = post_form(
        &engine,
        "/ui/topology/servers/e-wide",
        &cookie,
        &many.join("&"),
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("more than 200 fields"), "{}", r.body);
    // A wrong token changes nothing.
    let r = post_form(
        &engine,
        "/ui/topology/servers/e-wide",
        &cookie,
        "csrf=wrong&action=delete",
    );
    assert_eq!(r.status, 403);
    assert_eq!(get("/topology/servers/e-wide", &cookie).status, 200);
    // A number that is not one, refused next to its field; nothing changes.
    let r = post_form(
        &engine,
        "/ui/topology/servers/e-wide",
        &cookie,
        &format!(
            "csrf={csrf}&action=save&id=e-wide&kind=edge&host=e-wide.test&port=eighty&weight=1&active=on"
        ),
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("id=\"f-port-problem\""), "{}", r.body);
    assert!(
        r.body.contains("&quot;eighty&quot; is not a whole number"),
        "{}",
        r.body
    );
    // What a user typed comes back escaped.
    let r = get(
        "/ui/topology/servers/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        &cookie,
    );
    assert_eq!(r.status, 404);
    assert!(!r.body.contains("<script>alert"), "{}", r.body);
    assert!(r.body.contains("&lt;script&gt;"), "{}", r.body);
    assert_eq!(get("/ui/topology/no-such-kind", &cookie).status, 404);
    assert_eq!(get("/ui/no/such/page", &cookie).status, 404);
    let r = get("/ui/assets/../../etc/passwd", &[]);
    assert_eq!(r.status, 404);
    let r = post_form(
        &engine,
        "/ui/health/e-wide",
        &cookie,
        &format!("csrf={csrf}&action=explode"),
    );
    assert_eq!(r.status, 303);
    assert!(
        get("/ui/health", &cookie)
            .body
            .contains("neither drain nor undrain")
    );
}
