//! Programme guides as files come: the old system's Kaltura EPG dialect
//! (`<EpgChannels>`, programmes with an `external_id`) and standard XMLTV
//! (`<tv>`), read as a stream of XML events (`quick-xml`) so a guide of
//! tens of megabytes is never held as a tree. Only what edgeward keeps is
//! read: each programme's channel, id, start and stop.
//!
//! Times are `YYYYMMDDhhmmss`, optionally followed by an offset
//! (`+0300`, `-0600`) which is honoured (the old system ignored it and took
//! UTC). An XMLTV programme carries no id: it gets
//! `{channel}-{start in UTC as YYYYMMDDhhmmss}` (that id appears in
//! catch-up URLs), unless it has an `id` or `external_id` attribute.

use quick_xml::events::{BytesStart, Event};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Which dialect a file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `<EpgChannels>`: the Kaltura dialect the old system imported.
    Kaltura,
    /// `<tv>`: XMLTV.
    Xmltv,
}

impl Dialect {
    /// Its name in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Dialect::Kaltura => "kaltura",
            Dialect::Xmltv => "xmltv",
        }
    }
}

/// One programme as the file gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Programme {
    /// The channel's `epg_id`.
    pub channel: String,
    /// The programme's `epg_id`.
    pub epg_id: String,
    /// Start.
    pub start: OffsetDateTime,
    /// Stop.
    pub stop: OffsetDateTime,
}

/// A parsed guide.
#[derive(Debug, Clone)]
pub struct Guide {
    /// Its dialect.
    pub dialect: Dialect,
    /// Its programmes, in file order.
    pub programmes: Vec<Programme>,
}

/// Why a file is not a guide: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {what}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in bytes).
    pub column: usize,
    /// What is wrong.
    pub what: String,
}

/// Line and column of byte `offset` of `bytes`.
fn position(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = offset
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1)
        + 1;
    (line, column)
}

/// Parses a guide file.
pub fn parse(bytes: &[u8]) -> Result<Guide, ParseError> {
    let mut reader = quick_xml::Reader::from_reader(bytes);
    let mut buf = Vec::new();
    let mut dialect = None;
    let mut programmes = Vec::new();
    loop {
        let at = reader.buffer_position() as usize;
        let fail = |what: String| {
            let (line, column) = position(bytes, at);
            ParseError { line, column, what }
        };
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| fail(format!("not well-formed XML: {e}")))?;
        match event {
            Event::Start(e) | Event::Empty(e) => {
                let name = e.local_name();
                let name = name.as_ref();
                match dialect {
                    None => {
                        dialect = Some(match name {
                            "EpgChannels" => Dialect::Kaltura,
                            "tv" => Dialect::Xmltv,
                            other => {
                                return Err(fail(format!(
                                    "the root element <{}> is neither <EpgChannels> (Kaltura) nor <tv> (XMLTV)",
                                    other
                                )));
                            }
                        })
                    }
                    Some(d) if name == "programme" => {
                        programmes.push(programme(d, &e).map_err(&fail)?);
                    }
                    Some(_) => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    let Some(dialect) = dialect else {
        return Err(ParseError {
            line: 1,
            column: 1,
            what: "no root element: the file is empty".into(),
        });
    };
    Ok(Guide {
        dialect,
        programmes,
    })
}

/// The attributes of a `<programme>` kept.
fn programme(dialect: Dialect, e: &BytesStart<'_>) -> Result<Programme, String> {
    let (mut channel, mut id, mut start, mut stop) = (None, None, None, None);
    for attr in e.attributes() {
        let attr = attr.map_err(|e| format!("<programme>: a malformed attribute: {e}"))?;
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| format!("<programme>: a malformed attribute value: {e}"))?
            .into_owned();
        match attr.key.as_ref() {
            "channel" => channel = Some(value),
            "external_id" => id = Some(value),
            "id" if id.is_none() => id = Some(value),
            "start" => start = Some(value),
            "stop" => stop = Some(value),
            _ => {}
        }
    }
    let named = id.clone();
    let what = |field: &str| match &named {
        Some(id) => format!("<programme {id:?}>: attribute `{field}`"),
        None => format!("<programme>: attribute `{field}`"),
    };
    let channel = channel
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| format!("{} is missing", what("channel")))?;
    let start_text = start.ok_or_else(|| format!("{} is missing", what("start")))?;
    let stop_text = stop.ok_or_else(|| format!("{} is missing", what("stop")))?;
    let start =
        time_of(&start_text).map_err(|why| format!("{}: {start_text:?} {why}", what("start")))?;
    let stop =
        time_of(&stop_text).map_err(|why| format!("{}: {stop_text:?} {why}", what("stop")))?;
    let epg_id = match (id, dialect) {
        (Some(id), _) if !id.trim().is_empty() => id,
        (_, Dialect::Kaltura) => return Err(format!("{} is missing", what("external_id"))),
        (_, Dialect::Xmltv) => format!("{channel}-{}", compact(start)),
    };
    Ok(Programme {
        channel,
        epg_id,
        start,
        stop,
    })
}

/// `YYYYMMDDhhmmss` in UTC.
pub fn compact(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `YYYYMMDDhhmmss`, then optionally spaces and `+hhmm` or `-hhmm`.
fn time_of(text: &str) -> Result<OffsetDateTime, &'static str> {
    let text = text.trim();
    // By bytes, checked before any slicing: a file may put any character
    // anywhere (found by fuzzing: a multi-byte one at byte 14).
    let bytes = text.as_bytes();
    if bytes.len() < 14 || !bytes[..14].iter().all(u8::is_ascii_digit) {
        return Err("is not a time YYYYMMDDhhmmss");
    }
    let (digits, rest) = text.split_at(14);
    let n = |r: std::ops::Range<usize>| digits[r].parse::<u32>().expect("digits");
    let month = Month::try_from(n(4..6) as u8).map_err(|_| "has no such month")?;
    let date = Date::from_calendar_date(n(0..4) as i32, month, n(6..8) as u8)
        .map_err(|_| "has no such day")?;
    let clock = Time::from_hms(n(8..10) as u8, n(10..12) as u8, n(12..14) as u8)
        .map_err(|_| "has no such time of day")?;
    let rest = rest.trim();
    let offset = if rest.is_empty() {
        UtcOffset::UTC
    } else {
        let (sign, hhmm) = match (rest.strip_prefix('+'), rest.strip_prefix('-')) {
            (Some(h), _) => (1, h),
            (_, Some(h)) => (-1, h),
            _ => return Err("has an offset that is not +hhmm or -hhmm"),
        };
        if hhmm.len() != 4 || !hhmm.bytes().all(|b| b.is_ascii_digit()) {
            return Err("has an offset that is not +hhmm or -hhmm");
        }
        let (h, m) = (
            hhmm[..2].parse::<i8>().expect("digits"),
            hhmm[2..].parse::<i8>().expect("digits"),
        );
        UtcOffset::from_hms(sign * h, sign * m, 0).map_err(|_| "has an offset out of range")?
    };
    Ok(PrimitiveDateTime::new(date, clock).assume_offset(offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_any_character_anywhere_are_refused_not_a_panic() {
        // Found by tests/fuzz (epg_guide): a byte-order mark at byte 14.
        for text in [
            "22061204103000\u{feff}000",
            "2206120410300\u{feff}",
            "20261204100000 \u{feff}0300",
            "20261204100000 +03\u{e9}",
        ] {
            assert!(time_of(text).is_err(), "{text:?}");
        }
        assert!(time_of("20261204100000 +0300").is_ok());
        assert!(time_of("20261204100000 -0130").is_ok());
    }

    #[test]
    fn a_kaltura_file_gives_its_programmes() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<EpgChannels>
  <channel id="ch1">
    <programme channel="ch1" external_id="p-1" start="20261204100000" stop="20261204110000">
      <title>News &amp; weather</title><desc>...</desc>
      <metas><meta name="catchup">1</meta></metas>
    </programme>
    <programme channel="ch1" external_id="p-2" start="20261204110000 +0300" stop="20261204120000 +0300"/>
  </channel>
</EpgChannels>"#;
        let g = parse(xml).unwrap();
        assert_eq!(g.dialect, Dialect::Kaltura);
        assert_eq!(g.programmes.len(), 2);
        assert_eq!(g.programmes[0].epg_id, "p-1");
        assert_eq!(compact(g.programmes[0].start), "20261204100000");
        // The offset is honoured: 11:00 at +03:00 is 08:00 UTC.
        assert_eq!(compact(g.programmes[1].start), "20261204080000");
    }

    #[test]
    fn xmltv_programmes_get_an_id_from_channel_and_start() {
        let xml = br#"<tv generator-info-name="x">
  <channel id="ch2"><display-name>Two</display-name></channel>
  <programme start="20261204100000 -0100" stop="20261204103000 -0100" channel="ch2"><title>A</title></programme>
  <programme id="given" start="20261204103000 -0100" stop="20261204110000 -0100" channel="ch2"/>
</tv>"#;
        let g = parse(xml).unwrap();
        assert_eq!(g.dialect, Dialect::Xmltv);
        assert_eq!(g.programmes[0].epg_id, "ch2-20261204110000");
        assert_eq!(g.programmes[1].epg_id, "given");
    }

    #[test]
    fn mistakes_are_refused_with_line_column_and_what() {
        for (xml, line, want) in [
            (&b"<EpgChannels>\n<programme channel='c' external_id='p' start='2026' stop='20261204100000'/>"[..], 2, "attribute `start`: \"2026\" is not a time"),
            (b"<EpgChannels>\n<programme channel='c' start='20261204100000' stop='20261204110000'/>", 2, "`external_id` is missing"),
            (b"<EpgChannels>\n  <programme external_id='p' start='20261204100000' stop='20261204110000'/>", 2, "`channel` is missing"),
            (b"<EpgChannels><programme channel='c' external_id='p' start='20261304100000' stop='20261204110000'/>", 1, "no such month"),
            (b"<EpgChannels><programme channel='c' external_id='p' start='20261204100000 +9900' stop='20261204110000'/>", 1, "offset out of range"),
            (b"<html><body/></html>", 1, "neither <EpgChannels>"),
            (b"", 1, "the file is empty"),
            (b"<tv>\n<programme channel='c' start='20261204100000' stop='x'", 2, "not well-formed"),
        ] {
            let e = parse(xml).unwrap_err();
            assert_eq!(e.line, line, "{e}");
            assert!(e.what.contains(want), "{e}");
        }
    }
}
