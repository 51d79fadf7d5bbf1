//! Test harness: starts the real `edgeward` binary on a loopback port and
//! talks raw HTTP/1.1 to it, so that tests see exactly what goes on the wire
//! (status line, header-name case, body).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest a test waits for the engine to start or to log a line. Waiting
/// ends as soon as the awaited thing happens; this only bounds a failure.
const PATIENCE: Duration = Duration::from_secs(60);
/// How long an engine may take to start listening: a 12 MB JavaScript
/// policy compiles for tens of seconds in a debug build on a busy machine.
const START_PATIENCE: Duration = Duration::from_secs(180);

/// Polls `found` until it gives a value and returns it. After
/// [`PATIENCE`] the test fails, naming `what` it waited for. The one wait
/// of the suite: waiting ends as soon as the awaited thing happens.
pub fn eventually<T>(what: &str, mut found: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = found() {
            return value;
        }
        assert!(start.elapsed() < PATIENCE, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`eventually`] for a condition.
pub fn wait_until(what: &str, mut holds: impl FnMut() -> bool) {
    eventually(what, || holds().then_some(()))
}

/// The `edgeward` binary built by cargo for this test run.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_edgeward")
}

/// The folder holding the test fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/fixtures")
}

/// A MaxMind test database (`GeoIP2-City-Test.mmdb` and the like), from
/// the `maxminddb` package's source distribution, which `tests/run`
/// downloads into `target/geoip-test-data` (or `GEOIP_TEST_DATA`).
pub fn geoip_test_db(name: &str) -> PathBuf {
    let dir = std::env::var_os("GEOIP_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/geoip-test-data"));
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run tests/run, which downloads MaxMind's test databases",
        path.display()
    );
    path
}

/// The component file of a policy built from `policies/`.
pub fn built_policy(name: &str) -> PathBuf {
    edgeward::builtin::BUILT_POLICIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| PathBuf::from(p))
        .unwrap_or_else(|| panic!("policy {name} was not built"))
}

/// The core module of a policy from `policies/`, as a plain `cargo build
/// --target wasm32-unknown-unknown` leaves it (not encoded as a component).
pub fn built_module(name: &str) -> PathBuf {
    edgeward::builtin::BUILT_MODULES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| PathBuf::from(p))
        .unwrap_or_else(|| panic!("policy {name} was not built"))
}

/// A running engine process, killed on drop.
pub struct Engine {
    child: Child,
    /// The player listener's address.
    pub addr: SocketAddr,
    /// The admin API's address, when it runs.
    pub admin: Option<SocketAddr>,
    /// The HTTPS player listener's address, when it runs.
    pub tls: Option<SocketAddr>,
    /// The HTTP/3 (UDP) address, when it runs.
    pub h3: Option<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Engine {
    /// Starts `edgeward serve --listen 127.0.0.1:0 --workers 2 ARGS...` and
    /// waits until it listens.
    pub fn start(args: &[&str]) -> Engine {
        Self::try_start(args).unwrap_or_else(|log| panic!("engine did not start:\n{log}"))
    }

    /// Like [`Engine::start`], but returns the engine's stderr if it exits
    /// before listening.
    pub fn try_start(args: &[&str]) -> Result<Engine, String> {
        let mut full = vec!["serve", "--listen", "127.0.0.1:0", "--workers", "2"];
        full.extend_from_slice(args);
        Self::spawn(&full)
    }

    /// Starts the binary with these arguments (for `serve`, plus an admin
    /// API on a free loopback port unless `--admin-listen` is given).
    pub fn spawn(args: &[&str]) -> Result<Engine, String> {
        let mut args = args.to_vec();
        if args.first() == Some(&"serve") && !args.contains(&"--admin-listen") {
            args.extend_from_slice(&["--admin-listen", "127.0.0.1:0"]);
        }
        let mut child = Command::new(binary())
            .args(&args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning edgeward");

        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });

        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let expect_admin = args
            .iter()
            .position(|a| *a == "--admin-listen")
            .is_some_and(|i| args.get(i + 1) != Some(&"off"));
        std::thread::spawn(move || {
            let mut addr = None;
            let mut tls = None;
            let mut h3 = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("edgeward listening on http://") {
                    addr = Some(rest.split_whitespace().next().unwrap().to_string());
                    if !expect_admin {
                        let _ = tx.send((addr.take().unwrap(), None, None, None));
                    }
                } else if let Some(rest) = line.strip_prefix("edgeward listening on https://") {
                    tls = Some(rest.split_whitespace().next().unwrap().to_string());
                } else if let Some(rest) = line.strip_prefix("edgeward listening on h3://") {
                    h3 = Some(rest.split_whitespace().next().unwrap().to_string());
                } else if let Some(rest) = line
                    .strip_prefix("edgeward admin API on http://")
                    .or_else(|| line.strip_prefix("edgeward admin API on https://"))
                    && let Some(addr) = addr.take()
                {
                    let admin = rest.split_whitespace().next().unwrap().to_string();
                    let _ = tx.send((addr, Some(admin), tls.take(), h3.take()));
                }
            }
        });
        match rx.recv_timeout(START_PATIENCE) {
            Ok((addr, admin, tls, h3)) => Ok(Engine {
                child,
                addr: addr.parse().unwrap(),
                admin: admin.map(|a| a.parse().unwrap()),
                tls: tls.map(|a: String| a.parse().unwrap()),
                h3: h3.map(|a: String| a.parse().unwrap()),
                log,
            }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                // Give the stderr reader a moment to drain.
                std::thread::sleep(Duration::from_millis(100));
                Err(log.lock().unwrap().join("\n"))
            }
        }
    }

    /// `edgeward_requests_total{kind, code}` summed over the workers.
    pub fn requests_total(&self, kind: &str, code: u16) -> u64 {
        let text = self.admin("GET", "/metrics", b"", "text/plain", None).body;
        let prefix = format!("edgeward_requests_total{{kind=\"{kind}\",code=\"{code}\",");
        text.lines()
            .filter(|l| l.starts_with(&prefix))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    }

    /// One request on a fresh connection.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.connect().request("GET", path, headers)
    }

    /// A keep-alive connection for many requests.
    pub fn connect(&self) -> Conn {
        Conn::open(self.addr)
    }

    /// One admin API request with an optional bearer token.
    pub fn admin(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        content_type: &str,
        token: Option<&str>,
    ) -> Response {
        let addr = self.admin.expect("this engine runs no admin API");
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", content_type)];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        Conn::open(addr).request_with_body(method, path, &headers, body)
    }

    /// An admin request with a JSON body (no token), parsed as JSON.
    pub fn admin_json(
        &self,
        method: &str,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let resp = self.admin(
            method,
            path,
            body.to_string().as_bytes(),
            "application/json",
            None,
        );
        let v = serde_json::from_str(&resp.body)
            .unwrap_or_else(|e| panic!("admin {method} {path}: not JSON ({e}): {resp:?}"));
        (resp.status, v)
    }

    /// Sends SIGHUP (reload the topology and policy files).
    pub fn sighup(&self) {
        self.signal("-HUP");
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`-TERM`, `-HUP`, ...).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let child = &mut self.child;
        eventually("the engine exits", || child.try_wait().unwrap()).code()
    }

    /// Every stderr line so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Number of stderr lines so far (to wait for lines after a point).
    pub fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Waits until a stderr line after position `from` contains `needle`,
    /// and returns it.
    pub fn wait_log(&self, from: usize, needle: &str) -> String {
        let what = format!("a log line containing {needle:?}");
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            eventually(&what, || {
                self.log.lock().unwrap()[from..]
                    .iter()
                    .find(|l| l.contains(needle))
                    .cloned()
            })
        }));
        found.unwrap_or_else(|_| {
            panic!(
                "no log line containing {needle:?}; log:\n{}",
                self.log.lock().unwrap().join("\n")
            )
        })
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header lines as sent: `(name exactly as on the wire, value)`.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl Response {
    /// A header's value, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The Location header (panics with the response if absent).
    pub fn location(&self) -> &str {
        self.header("location")
            .unwrap_or_else(|| panic!("no Location in {self:?}"))
    }
}

/// A keep-alive HTTP/1.1 connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// Opens a connection. A connect that fails is tried again for a
    /// moment: on a loaded machine a listener's backlog can be full for an
    /// instant (the engine is alive; a test that means to see refusals uses
    /// `TcpStream` itself).
    pub fn open(addr: SocketAddr) -> Conn {
        let mut tries = 0;
        let stream = loop {
            match TcpStream::connect(addr) {
                Ok(stream) => break stream,
                Err(_) if tries < 20 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("connecting to the engine at {addr}: {e}"),
            }
        };
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            reader: BufReader::new(stream),
        }
    }

    /// Opens a connection, once: an error is returned, not a panic.
    pub fn try_open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(PATIENCE))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(stream),
        })
    }

    /// Sends one request with a body and reads its response; an I/O error
    /// (such as a reset connection) is returned, not a panic.
    pub fn try_request_with_body(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: edgeward.test\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let stream = self.reader.get_mut();
        stream.write_all(req.as_bytes())?;
        stream.write_all(body)?;
        self.try_read_response(false)
    }

    /// Sends one request and reads its response.
    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        self.try_request(method, path, headers)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Sends one request and reads its response; an I/O error (such as a
    /// reset connection) is returned, not a panic.
    pub fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: edgeward.test\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.reader.get_mut().write_all(req.as_bytes())?;
        self.try_read_response(method == "HEAD")
    }

    /// Sends one request with a body and reads its response.
    pub fn request_with_body(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.try_request_with_body(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn try_read_response(&mut self, head: bool) -> std::io::Result<Response> {
        let mut status_line = String::new();
        if self.reader.read_line(&mut status_line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header line");
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let mut body = Vec::new();
        if !head {
            let len: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map_or(0, |(_, v)| v.parse().unwrap());
            body.resize(len, 0);
            self.reader.read_exact(&mut body)?;
        }
        Ok(Response {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates a fresh directory under the system temp dir.
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("edgeward-e2e-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// A path inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `edgeward ctl --admin ADMIN ARGS...` with `stdin` on its standard input
/// (a password), and no token or CA from the environment: (success,
/// stdout, stderr).
pub fn ctl_at(admin: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(binary())
        .args(["ctl", "--admin", admin])
        .args(args)
        .env_remove("EDGEWARD_ADMIN_TOKEN")
        .env_remove("EDGEWARD_ADMIN_CA")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running edgeward ctl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Signs in to `engine`'s admin API; the session cookie (`name=value`).
pub fn session_cookie(engine: &Engine, email: &str, password: &str) -> String {
    let body = serde_json::json!({"email": email, "password": password}).to_string();
    let r = Conn::open(engine.admin.expect("an admin API")).request_with_body(
        "POST",
        "/session",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "sign-in: {}", r.body);
    r.header("set-cookie")
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string()
}
