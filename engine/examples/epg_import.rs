//! What importing a large programme guide costs: a Kaltura EPG file of
//! about `MB` megabytes (default 50: 200 channels, programmes of 30
//! minutes with a title, a description and metas as the old system's files
//! had) is generated, written to a temporary file, then read, parsed and
//! planned against a topology with those channels, as `POST /epg` does.
//! The batch is then applied as the one door applies it (checked, a new
//! snapshot; without the journal's sync and etcd). Prints the size, the
//! programmes, the time of each step and the peak memory above what the
//! process held before reading it.
//!
//! Run: `cargo run --release -p edgeward --example epg_import [MB]`

use std::time::Instant;

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mb: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let channels = 200;
    // A topology with the channels.
    let mut doc: serde_json::Value =
        serde_json::from_str(edgeward::builtin::DEMO_TOPOLOGY).expect("the demo parses");
    doc["channels"] = (0..channels)
        .map(|c| serde_json::json!({"epg_id": format!("ch{c}"), "streams": []}))
        .collect();
    doc["programs"] = serde_json::json!([]);
    let doc: edgeward::topology::model::TopologyDoc =
        serde_json::from_value(doc).expect("a topology");
    let topology = edgeward::topology::build(&doc, 1).expect("valid");

    // The file, written out as an importer would find it.
    let start = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let stamp = edgeward::epg::parse::compact;
    let mut xml = String::with_capacity(mb << 20);
    xml.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<EpgChannels>\n");
    let mut n = 0usize;
    'fill: for c in 0.. {
        let channel = format!("ch{}", c % channels);
        xml.push_str(&format!("<channel id=\"{channel}\">\n"));
        for slot in 0..48 {
            let from = start + time::Duration::minutes(30 * (slot + 48 * (c / channels) as i64));
            let to = from + time::Duration::minutes(30);
            xml.push_str(&format!(
                "<programme channel=\"{channel}\" external_id=\"{channel}-{n}\" start=\"{}\" stop=\"{}\">\
                 <title>Programme {n} &amp; friends</title><desc>An episode of a long-running series, \
                 described at the length a guide gives, with a cast and a plot summary.</desc>\
                 <icon src=\"https://img.example/{n}.jpg\"/><metas><meta name=\"catchup\">1</meta>\
                 <meta name=\"rating\">12+</meta></metas></programme>\n",
                stamp(from),
                stamp(to)
            ));
            n += 1;
            if xml.len() >= mb << 20 {
                xml.push_str("</channel>\n");
                break 'fill;
            }
        }
        xml.push_str("</channel>\n");
    }
    xml.push_str("</EpgChannels>\n");
    let path = std::env::temp_dir().join(format!("edgeward-epg-{}.xml", std::process::id()));
    std::fs::write(&path, &xml).expect("writing the guide");
    drop(xml);

    // Start the peak over (Linux: 5 in clear_refs resets VmHWM).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let base = rss_kib("VmRSS:");
    let t = Instant::now();
    let bytes = std::fs::read(&path).expect("reading the guide");
    let read = t.elapsed();
    let t = Instant::now();
    let guide = edgeward::epg::parse::parse(&bytes).expect("parses");
    let parsed = t.elapsed();
    let t = Instant::now();
    let (edits, report) = edgeward::epg::rules::plan(
        &topology,
        &guide,
        time::OffsetDateTime::now_utc(),
        Default::default(),
    )
    .expect("plans");
    let planned = t.elapsed();
    // Applied as the one door applies it (validated, a new snapshot).
    let t = Instant::now();
    let edited = edgeward::topology::edit::apply(&topology, &edits, 2, 2).expect("applies");
    let applied = t.elapsed();
    let peak = rss_kib("VmHWM:");
    let _ = std::fs::remove_file(&path);
    drop(edited);
    println!(
        "{:.1} MB, {} programmes on {} channels: read {:.2} s, parsed {:.2} s, planned {:.2} s ({} changes), \
         applied {:.2} s; peak RSS {:.0} MiB above the {:.0} MiB before reading",
        bytes.len() as f64 / 1e6,
        guide.programmes.len(),
        report.channels.len(),
        read.as_secs_f64(),
        parsed.as_secs_f64(),
        planned.as_secs_f64(),
        edits.len(),
        applied.as_secs_f64(),
        peak.saturating_sub(base) as f64 / 1024.0,
        base as f64 / 1024.0
    );
}
