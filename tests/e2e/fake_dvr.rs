//! A test DVR speaking the old system's SOAP API (`DvrServiceApi` at
//! `/cti-dvr/dvr-service`, HTTP basic auth), as `../shared/CATALOGUE-NOTES.md`
//! describes it: `scheduleRecording` answers the recording's path (the
//! same one again for a placement it already holds), `getRecording` its
//! `recordingStatus`, `removeRecording` and `cancelRecording` nothing; an
//! unknown recording, or a placement the test says to refuse, is a SOAP
//! fault. It records every call, and the test sets recordings' states.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One call the DVR received: operation and fields.
#[derive(Debug, Clone)]
pub struct Call {
    pub operation: String,
    pub fields: BTreeMap<String, String>,
}

#[derive(Default)]
struct State {
    /// Path → (placement, status).
    recordings: BTreeMap<String, (String, String)>,
    calls: Vec<Call>,
    refuse: HashSet<String>,
    unauthorised: usize,
}

/// The DVR; stops when dropped.
pub struct FakeDvr {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl FakeDvr {
    /// Listens on a free loopback port, accepting `user:password`.
    pub fn start(user: &str, password: &str) -> FakeDvr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let expected = {
            use base64::Engine as _;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )
        };
        let (s, st) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (s, expected) = (s.clone(), expected.clone());
                std::thread::spawn(move || serve(conn, &s, &expected));
            }
        });
        FakeDvr { addr, state, stop }
    }

    /// Makes `scheduleRecording` of `placement` a fault.
    pub fn refuse(&self, placement: &str) {
        self.state.lock().unwrap().refuse.insert(placement.into());
    }

    /// Sets the state of the recording of `placement`.
    pub fn set_status(&self, placement: &str, status: &str) {
        let mut s = self.state.lock().unwrap();
        for (p, st) in s.recordings.values_mut() {
            if p == placement {
                *st = status.to_string();
            }
        }
    }

    /// Adds a recording the DVR already holds.
    pub fn hold(&self, path: &str, placement: &str, status: &str) {
        self.state
            .lock()
            .unwrap()
            .recordings
            .insert(path.into(), (placement.into(), status.into()));
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// The calls of one operation.
    pub fn calls_of(&self, operation: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.operation == operation)
            .collect()
    }

    /// The recordings it holds: path → placement.
    pub fn recordings(&self) -> BTreeMap<String, String> {
        self.state
            .lock()
            .unwrap()
            .recordings
            .iter()
            .map(|(k, (p, _))| (k.clone(), p.clone()))
            .collect()
    }

    /// Requests refused for their credentials.
    pub fn unauthorised(&self) -> usize {
        self.state.lock().unwrap().unauthorised
    }
}

impl Drop for FakeDvr {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>, expected: &str) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let request_line = line.clone();
    let (mut length, mut auth) = (0usize, String::new());
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap_or(0),
            "authorization" => auth = value.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let mut conn = conn;
    if !request_line.starts_with("POST /cti-dvr/dvr-service ") {
        let _ = conn
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    if auth != expected {
        state.lock().unwrap().unauthorised += 1;
        let _ = conn.write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"dvr\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let (status, answer) = answer(&body, state);
    let envelope = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><S:Envelope xmlns:S=\"http://schemas.xmlsoap.org/soap/envelope/\"><S:Body>{answer}</S:Body></S:Envelope>"
    );
    let _ = conn.write_all(
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{envelope}",
            envelope.len()
        )
        .as_bytes(),
    );
}

fn fault(message: &str) -> (&'static str, String) {
    (
        "500 Internal Server Error",
        format!(
            "<S:Fault><faultcode>S:Server</faultcode><faultstring>{}</faultstring></S:Fault>",
            escape(message)
        ),
    )
}

fn answer(body: &str, state: &Mutex<State>) -> (&'static str, String) {
    let Some((operation, fields)) = operation(body) else {
        return fault("not a DvrServiceApi request");
    };
    let mut s = state.lock().unwrap();
    s.calls.push(Call {
        operation: operation.clone(),
        fields: fields.clone(),
    });
    let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let ok = |inner: String| {
        (
            "200 OK",
            format!(
                "<ns2:{operation}Response xmlns:ns2=\"http://service.dvr.cti/\">{inner}</ns2:{operation}Response>"
            ),
        )
    };
    match operation.as_str() {
        "scheduleRecording" => {
            let placement = field("placement");
            for key in [
                "plannedStartTime",
                "plannedEndTime",
                "assetToCapture",
                "params",
            ] {
                if field(key).is_empty() {
                    return fault(&format!("{key} is required"));
                }
            }
            if s.refuse.contains(&placement) {
                return fault(&format!("no storage for {placement}"));
            }
            let existing = s
                .recordings
                .iter()
                .find(|(_, (p, _))| *p == placement)
                .map(|(path, _)| path.clone());
            let path = existing.unwrap_or_else(|| {
                let path = format!("rec/{placement}/index");
                s.recordings
                    .insert(path.clone(), (placement.clone(), "PLANNED".into()));
                path
            });
            ok(format!("<return>{}</return>", escape(&path)))
        }
        "getRecording" => match s.recordings.get(&field("path")) {
            Some((placement, status)) => ok(format!(
                "<return><path>{}</path><placement>{}</placement><recordingStatus>{status}</recordingStatus></return>",
                escape(&field("path")),
                escape(placement)
            )),
            None => fault(&format!("recording {} not found", field("path"))),
        },
        "removeRecording" | "cancelRecording" => match s.recordings.remove(&field("path")) {
            Some(_) => ok(String::new()),
            None => fault(&format!("recording {} not found", field("path"))),
        },
        other => fault(&format!("unknown operation {other}")),
    }
}

/// The operation element's local name and its child elements' texts.
fn operation(body: &str) -> Option<(String, BTreeMap<String, String>)> {
    let start = body.find("Body>")? + "Body>".len();
    let rest = &body[start..];
    let open = rest.find('<')?;
    let close = rest[open..].find('>')? + open;
    let name = &rest[open + 1..close];
    let local = name.rsplit(':').next()?.to_string();
    let end = rest.find(&format!("</{name}>"))?;
    let mut inner = &rest[close + 1..end];
    let mut fields = BTreeMap::new();
    while let Some(o) = inner.find('<') {
        let c = inner[o..].find('>')? + o;
        let field = inner[o + 1..c].to_string();
        let stop = inner.find(&format!("</{field}>"))?;
        fields.insert(field.clone(), unescape(&inner[c + 1..stop]));
        inner = &inner[stop + field.len() + 3..];
    }
    Some((local, fields))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}
