//! The old system's DVR API ("CTI DVR", `DvrServiceApi`): SOAP 1.1 over
//! HTTP at `http://{management host}:{management port}/cti-dvr/dvr-service`
//! with HTTP basic authentication, each call given 10 s.
//!
//! No WSDL of the DVR is at hand: the envelopes are written from what the
//! old system is known to have sent (the operations `scheduleRecording`,
//! `getRecording`, `removeRecording`, `cancelRecording`; the fields
//! `plannedStartTime`, `plannedEndTime` as `YYYY-MM-DDThh:mm:ss+00:00`,
//! `assetToCapture`, `placement`, `params`; the answer to a schedule is
//! the recording's path, to a `getRecording` its `recordingStatus`). The
//! operation elements are in [`NAMESPACE`], their fields unqualified, as
//! JAX-WS services write them; answers are read by local name whatever
//! their namespaces, so a DVR that qualifies differently still reads.
//! A fault (`soap:Fault`, `faultcode`/`faultstring`, or SOAP 1.2's
//! `Code`/`Reason`) is [`DvrError::Fault`]; anything else that is not an
//! answer is [`DvrError::Transport`], tried again next round. Scheduling
//! the same placement again is expected to answer the recording already
//! scheduled for it (the placement identifies a recording on the DVR),
//! which is what makes a retried or reconciled schedule safe.

use super::{Dvr, DvrError, Schedule};
use crate::outbound;
use crate::topology::model::RecordStatus;
use bytes::Bytes;
use quick_xml::events::Event;
use std::sync::Arc;
use std::time::Duration;

/// The namespace of the operation elements.
pub const NAMESPACE: &str = "http://service.dvr.cti/";

/// The path of the service on the management port.
pub const SERVICE_PATH: &str = "/cti-dvr/dvr-service";

/// How long a call may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer read.
const MAX_ANSWER: usize = 1 << 20;

/// One DVR's SOAP API.
pub struct SoapDvr {
    url: http::Uri,
    authorization: Option<http::HeaderValue>,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

impl std::fmt::Debug for SoapDvr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoapDvr")
            .field("url", &self.url)
            .field("authenticated", &self.authorization.is_some())
            .finish_non_exhaustive()
    }
}

impl SoapDvr {
    /// The API at `host:port`, with these credentials if any.
    pub fn new(
        host: &str,
        port: u16,
        credentials: Option<&super::secrets::Credentials>,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self, String> {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let url: http::Uri = format!("http://{host}:{port}{SERVICE_PATH}")
            .parse()
            .map_err(|e| format!("DVR management address {host}:{port}: {e}"))?;
        Ok(SoapDvr {
            url,
            authorization: credentials.map(|c| outbound::basic_auth(&c.user, &c.password)),
            tls,
            timeout: TIMEOUT,
        })
    }

    /// One operation: its fields (name, text) sent, the answer's leaf
    /// elements (local name, text) returned.
    async fn call(
        &self,
        operation: &str,
        fields: &[(&str, &str)],
    ) -> Result<Vec<(String, String)>, DvrError> {
        let body = envelope(operation, fields);
        let mut headers = vec![
            (
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/xml; charset=utf-8"),
            ),
            (
                http::HeaderName::from_static("soapaction"),
                http::HeaderValue::from_static("\"\""),
            ),
        ];
        if let Some(auth) = &self.authorization {
            headers.push((http::header::AUTHORIZATION, auth.clone()));
        }
        let request = outbound::Request {
            method: http::Method::POST,
            url: self.url.clone(),
            headers,
            body: Bytes::from(body),
        };
        let answer = outbound::send(request, &self.tls, self.timeout, MAX_ANSWER)
            .await
            .map_err(|e| DvrError::Transport(format!("{operation} at {}: {e}", self.url)))?;
        let leaves = leaves(&answer.body);
        if let Ok(leaves) = &leaves
            && let Some(fault) = fault(leaves)
        {
            return Err(fault);
        }
        if !answer.status.is_success() {
            return Err(DvrError::Transport(format!(
                "{operation} at {}: HTTP status {}",
                self.url,
                answer.status.as_u16()
            )));
        }
        leaves.map_err(|e| {
            DvrError::Transport(format!(
                "{operation} at {}: the answer is not XML: {e}",
                self.url
            ))
        })
    }
}

#[async_trait::async_trait]
impl Dvr for SoapDvr {
    async fn schedule(&self, r: &Schedule) -> Result<String, DvrError> {
        let (start, end) = (soap_time(r.start), soap_time(r.end));
        let answer = self
            .call(
                "scheduleRecording",
                &[
                    ("plannedStartTime", &start),
                    ("plannedEndTime", &end),
                    ("assetToCapture", &r.asset),
                    ("placement", &r.placement),
                    ("params", &r.params),
                ],
            )
            .await?;
        let path = named(&answer, "return")
            .or_else(|| named(&answer, "path"))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                DvrError::Transport("scheduleRecording: the answer has no recording path".into())
            })?;
        Ok(path.to_string())
    }

    async fn status(&self, path: &str) -> Result<RecordStatus, DvrError> {
        let answer = self.call("getRecording", &[("path", path)]).await?;
        let status = named(&answer, "recordingStatus").ok_or_else(|| {
            DvrError::Transport("getRecording: the answer has no recordingStatus".into())
        })?;
        parse_status(status.trim()).ok_or_else(|| {
            DvrError::Transport(format!(
                "getRecording: {:?} is not a recording status",
                status.chars().take(40).collect::<String>()
            ))
        })
    }

    async fn remove(&self, path: &str) -> Result<(), DvrError> {
        self.call("removeRecording", &[("path", path)])
            .await
            .map(drop)
    }

    async fn cancel(&self, path: &str) -> Result<(), DvrError> {
        self.call("cancelRecording", &[("path", path)])
            .await
            .map(drop)
    }
}

/// Reads an answer's body: its leaf elements (local name, text), or the
/// fault it holds (what [`SoapDvr`] does with every answer; public for
/// the fuzz target of `tests/fuzz`).
pub fn read_answer(xml: &[u8]) -> Result<Vec<(String, String)>, DvrError> {
    let leaves = leaves(xml).map_err(|e| DvrError::Transport(format!("not XML: {e}")))?;
    match fault(&leaves) {
        Some(f) => Err(f),
        None => Ok(leaves),
    }
}

/// A SOAP 1.1 request envelope.
fn envelope(operation: &str, fields: &[(&str, &str)]) -> String {
    let mut body = String::with_capacity(512);
    body.push_str(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:dvr=\"",
    );
    body.push_str(NAMESPACE);
    body.push_str("\"><soapenv:Body><dvr:");
    body.push_str(operation);
    body.push('>');
    for (name, value) in fields {
        body.push('<');
        body.push_str(name);
        body.push('>');
        body.push_str(&quick_xml::escape::escape(*value));
        body.push_str("</");
        body.push_str(name);
        body.push('>');
    }
    body.push_str("</dvr:");
    body.push_str(operation);
    body.push_str("></soapenv:Body></soapenv:Envelope>");
    body
}

/// The elements of `xml` that hold text, as (local name, text), in order.
fn leaves(xml: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut stack: Vec<(String, String)> = Vec::new();
    let mut out = Vec::new();
    loop {
        match reader
            .read_event_into(&mut buf)
            .map_err(|e| e.to_string())?
        {
            Event::Start(e) => stack.push((e.local_name().as_ref().to_string(), String::new())),
            Event::Empty(e) => out.push((e.local_name().as_ref().to_string(), String::new())),
            Event::Text(t) => {
                if let Some((_, text)) = stack.last_mut() {
                    text.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some((_, text)) = stack.last_mut() {
                    text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c.to_string(),
                    None => quick_xml::escape::resolve_predefined_entity(&r)
                        .ok_or_else(|| format!("unknown entity &{};", &*r))?
                        .to_string(),
                };
                if let Some((_, text)) = stack.last_mut() {
                    text.push_str(&resolved);
                }
            }
            Event::End(_) => {
                if let Some(leaf) = stack.pop() {
                    out.push(leaf);
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if out.is_empty() {
        return Err("no element".into());
    }
    Ok(out)
}

/// The text of the first element named `name`.
fn named<'a>(leaves: &'a [(String, String)], name: &str) -> Option<&'a str> {
    leaves
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t.as_str())
}

/// The fault in an answer, if it is one.
fn fault(leaves: &[(String, String)]) -> Option<DvrError> {
    named(leaves, "Fault")?;
    let code = named(leaves, "faultcode")
        .or_else(|| named(leaves, "Value"))
        .unwrap_or("")
        .trim();
    let message = named(leaves, "faultstring")
        .or_else(|| named(leaves, "Text"))
        .unwrap_or("")
        .trim();
    Some(DvrError::Fault {
        code: code.chars().take(200).collect(),
        message: message.chars().take(800).collect(),
    })
}

/// A recording status as the DVR writes it (`COMPLETED`).
pub fn parse_status(text: &str) -> Option<RecordStatus> {
    Some(match text.to_ascii_uppercase().as_str() {
        "NEW" => RecordStatus::New,
        "PLANNED" => RecordStatus::Planned,
        "RUNNING" => RecordStatus::Running,
        "COMPLETED" => RecordStatus::Completed,
        "ERROR" => RecordStatus::Error,
        "CANCELED" | "CANCELLED" => RecordStatus::Canceled,
        "REMOVED" => RecordStatus::Removed,
        _ => return None,
    })
}

/// `YYYY-MM-DDThh:mm:ss+00:00`, as the DVR reads times.
pub fn soap_time(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_escape_what_they_carry() {
        let body = envelope("getRecording", &[("path", "a<b>&\"c\"")]);
        assert!(
            body.contains(
                "<dvr:getRecording><path>a&lt;b&gt;&amp;&quot;c&quot;</path></dvr:getRecording>"
            ),
            "{body}"
        );
        let names = leaves(body.as_bytes()).unwrap();
        assert_eq!(named(&names, "path"), Some("a<b>&\"c\""));
    }

    #[test]
    fn answers_and_faults_are_read_by_local_name() {
        let answer = br#"<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body>
            <ns2:getRecordingResponse xmlns:ns2="urn:x"><return><path>r/1</path>
            <recordingStatus>COMPLETED</recordingStatus></return></ns2:getRecordingResponse></S:Body></S:Envelope>"#;
        let l = leaves(answer).unwrap();
        assert_eq!(named(&l, "recordingStatus"), Some("COMPLETED"));
        assert!(fault(&l).is_none());
        let f = br#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault>
            <faultcode>soap:Server</faultcode><faultstring>Recording &#x27;x&#x27; not found</faultstring>
            </soap:Fault></soap:Body></soap:Envelope>"#;
        assert_eq!(
            fault(&leaves(f).unwrap()),
            Some(DvrError::Fault {
                code: "soap:Server".into(),
                message: "Recording 'x' not found".into()
            })
        );
        assert!(leaves(b"not xml <").is_err() || leaves(b"not xml <").unwrap().is_empty());
        assert_eq!(parse_status("cancelled"), Some(RecordStatus::Canceled));
        assert_eq!(parse_status("DONE"), None);
    }

    #[test]
    fn times_are_written_as_the_dvr_reads_them() {
        let t = time::OffsetDateTime::parse(
            "2026-12-04T21:05:09+03:00",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(soap_time(t), "2026-12-04T18:05:09+00:00");
    }
}
