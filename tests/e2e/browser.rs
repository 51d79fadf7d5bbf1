//! A real headless Chromium driven over W3C WebDriver (Debian's
//! `chromium` and `chromium-driver`; `CHROMIUM` and `CHROMEDRIVER` may
//! name others), for the console's tests. The client is the few commands
//! these tests use, over plain HTTP/1.1 to chromedriver on loopback.
//!
//! Chromium starts with a fresh profile and without its background
//! traffic (it must not try to reach the internet); dropping the browser
//! ends its session and stops chromedriver, so no process outlives a test.

use crate::harness::TempDir;
use base64::Engine as _;
use serde_json::{Value, json};
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The id in a W3C element reference (an object of one key, the web
/// element identifier).
fn element_id(v: &Value) -> Option<String> {
    v.as_object()?.values().next()?.as_str().map(str::to_string)
}

fn program(env: &str, default: &str) -> String {
    let bin = std::env::var(env).unwrap_or_else(|_| default.into());
    if !Path::new(&bin).exists() {
        panic!(
            "{bin} is missing: install Debian's chromium and chromium-driver \
             (tests/run does), or set {env}"
        );
    }
    bin
}

/// A headless Chromium.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: TempDir,
}

/// An element of the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a Chromium session, the window `width` wide.
    pub fn start(width: u32, height: u32) -> Browser {
        let chromium = program("CHROMIUM", "/usr/bin/chromium");
        let chromedriver = program("CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let profile = TempDir::new("chromium");
        let mut browser = Browser {
            driver,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            session: String::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser.call("GET", "/status", None).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-quic",
                    "--disable-features=Translate,OptimizationHints,MediaRouter",
                    format!("--user-data-dir={}", browser._profile.0.display()),
                    format!("--window-size={width},{height}"),
                ],
            },
        }}});
        let session = browser
            .call("POST", "/session", Some(caps))
            .expect("starting a Chromium session");
        browser.session = session["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser.command(
            "POST",
            "/timeouts",
            json!({"implicit": 0, "pageLoad": 30000, "script": 30000}),
        );
        browser
    }

    /// One WebDriver call; the error is WebDriver's message.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = TcpStream::connect(self.addr).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        // chromedriver says `Connection: close` but keeps the socket open:
        // the body is read by its length.
        let mut reader = std::io::BufReader::new(stream);
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err("chromedriver closed the connection".into());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad length {line:?}"))?;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).map_err(|e| e.to_string())?;
        let body = String::from_utf8_lossy(&body);
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        match v["value"].get("error") {
            Some(e) => Err(format!(
                "{method} {path}: {e}: {}",
                v["value"]["message"].as_str().unwrap_or("")
            )),
            None => Ok(v["value"].clone()),
        }
    }

    /// A command of the session (panics with WebDriver's message).
    fn command(&self, method: &str, path: &str, body: Value) -> Value {
        let body = (method == "POST").then_some(body);
        self.call(method, &format!("/session/{}{path}", self.session), body)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Opens a URL and waits for it to load.
    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", json!({ "url": url }));
    }

    /// The page's URL.
    pub fn url(&self) -> String {
        self.command("GET", "/url", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The first element matching a CSS selector (panics if none).
    pub fn find(&self, css: &str) -> Element {
        match self.call(
            "POST",
            &format!("/session/{}/element", self.session),
            Some(json!({"using": "css selector", "value": css})),
        ) {
            Ok(v) => Element(element_id(&v).expect("an element reference")),
            Err(e) => panic!("{e}\nthe page {}:\n{}", self.url(), self.text("body")),
        }
    }

    /// The first element matching a CSS selector, if any.
    pub fn try_find(&self, css: &str) -> Option<Element> {
        let v = self
            .call(
                "POST",
                &format!("/session/{}/element", self.session),
                Some(json!({"using": "css selector", "value": css})),
            )
            .ok()?;
        element_id(&v).map(Element)
    }

    /// Types into a field (after clearing it).
    pub fn fill(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.command("POST", &format!("/element/{}/clear", e.0), json!({}));
        self.command(
            "POST",
            &format!("/element/{}/value", e.0),
            json!({ "text": text }),
        );
    }

    /// Chooses a file in a file input.
    pub fn choose_file(&self, css: &str, file: &Path) {
        let e = self.find(css);
        let path = file.canonicalize().unwrap();
        self.command(
            "POST",
            &format!("/element/{}/value", e.0),
            json!({ "text": path.to_str().unwrap() }),
        );
    }

    /// Clicks an element (and waits for a page it loads).
    pub fn click(&self, css: &str) {
        let e = self.find(css);
        self.command("POST", &format!("/element/{}/click", e.0), json!({}));
    }

    /// Clicks a button or link that loads a page, and waits for the page.
    pub fn go(&self, css: &str) {
        self.mark();
        self.click(css);
        self.wait_new_page();
    }

    /// Presses Enter in a field (a keyboard-only submit) and waits for the
    /// page it loads.
    pub fn press_enter(&self, css: &str) {
        let e = self.find(css);
        self.mark();
        self.command(
            "POST",
            &format!("/element/{}/value", e.0),
            json!({ "text": "\u{E007}" }),
        );
        self.wait_new_page();
    }

    /// Marks the page, so that [`Browser::wait_new_page`] sees it replaced.
    pub fn mark(&self) {
        self.run("window.__edgeward_old_page = true;", json!([]));
    }

    /// Waits until the marked page is replaced by a loaded one.
    pub fn wait_new_page(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let done = self.call(
                "POST",
                &format!("/session/{}/execute/sync", self.session),
                Some(json!({"script": "return !window.__edgeward_old_page && document.readyState === 'complete';", "args": []})),
            );
            if done == Ok(Value::Bool(true)) {
                return;
            }
            assert!(Instant::now() < deadline, "no new page loaded: {done:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The visible text of the first element matching `css`.
    pub fn text(&self, css: &str) -> String {
        match self.try_find(css) {
            Some(e) => self
                .command("GET", &format!("/element/{}/text", e.0), Value::Null)
                .as_str()
                .unwrap_or_default()
                .to_string(),
            None => String::new(),
        }
    }

    /// Runs a script in the page and returns its value.
    pub fn run(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
    }

    /// Runs an asynchronous script (its last argument is the callback).
    pub fn run_async(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/async",
            json!({"script": script, "args": args}),
        )
    }

    /// Accepts a `confirm()` dialog.
    pub fn accept_dialog(&self) {
        self.command("POST", "/alert/accept", json!({}));
    }

    /// Lays the page out `width` CSS pixels wide, as a phone or a laptop
    /// would (a window cannot be made narrower than ~500 pixels, so the
    /// width is emulated through the DevTools protocol).
    pub fn emulate_width(&self, width: u32, height: u32) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}),
        );
    }

    /// A DevTools protocol command, through chromedriver.
    fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.command(
            "POST",
            "/goog/cdp/execute",
            json!({"cmd": cmd, "params": params}),
        )
    }

    /// Saves a screenshot of the whole page, `width` pixels wide, as PNG;
    /// the page is left laid out at that width.
    pub fn screenshot(&self, file: &Path, width: u32) {
        self.emulate_width(width, 900);
        // As tall as the page, so that the shot shows all of it.
        let height = self
            .run("return document.documentElement.scrollHeight;", json!([]))
            .as_u64()
            .unwrap_or(900)
            .clamp(400, 8000);
        self.emulate_width(width, height as u32);
        let shot = self.command("GET", "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot.as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(file, png).unwrap();
        self.emulate_width(width, 900);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
