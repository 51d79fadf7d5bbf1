//! What importing a large programme guide costs: a Kaltura EPG file of
//! about `MB` megabytes (default 50: 200 channels, programmes of 30
//! minutes with a title, a description and metas as the old system's files
//! had) is generated, written to a temporary file, then read, parsed and
//! planned and applied against a topology with those channels in batches,
//! as `POST /epg` does (each batch applied as the one door applies it:
//! checked, a new snapshot; without the audit, the journal and etcd).
//! Prints the size, the programmes, the time of each step, and the peak of
//! the heap (counted by this program's allocator) and of the resident
//! memory above what the process held before reading the file.
//!
//! Run: `cargo run --release -p edgeward --example epg_import [MB]`, or
//! `... epg_import MB --write DIR` to write the guide (`DIR/guide.xml`)
//! and the topology with its channels (`DIR/topology.json`) for
//! `load_testing/bench/epg_import.sh`, which imports it into a running
//! engine.

#![allow(unsafe_code)]
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The system allocator, counting the bytes live and their peak (RSS
/// also counts what the allocator keeps after a free).
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: as the caller promised.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as the caller promised.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn mib(bytes: usize) -> usize {
    bytes >> 20
}

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
    let write_to = std::env::args()
        .skip_while(|a| a != "--write")
        .nth(1)
        .map(std::path::PathBuf::from);

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
    if let Some(dir) = write_to {
        std::fs::write(dir.join("guide.xml"), &xml).expect("writing the guide");
        std::fs::write(
            dir.join("topology.json"),
            edgeward::topology::document::to_json(&topology),
        )
        .expect("writing the topology");
        println!("{} bytes, {n} programmes on {channels} channels", xml.len());
        return;
    }
    let path = std::env::temp_dir().join(format!("edgeward-epg-{}.xml", std::process::id()));
    std::fs::write(&path, &xml).expect("writing the guide");
    drop(xml);

    // Start the peaks over (Linux: 5 in clear_refs resets VmHWM).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let base = rss_kib("VmRSS:");
    let heap_base = LIVE.load(Ordering::Relaxed);
    PEAK.store(heap_base, Ordering::Relaxed);
    let t = Instant::now();
    let bytes = std::fs::read(&path).expect("reading the guide");
    let read = t.elapsed();
    let t = Instant::now();
    let guide = edgeward::epg::parse::parse(&bytes).expect("parses");
    let parsed = t.elapsed();
    // Planned and applied as an import does: channels whole, in batches
    // of about BATCH changes, each applied as the one door applies it
    // (checked, a new snapshot; without the audit, the journal and etcd).
    let t = Instant::now();
    let now = time::OffsetDateTime::now_utc();
    let mut topology = topology;
    let (mut batch, mut changes, mut batches) = (Vec::new(), 0, 0);
    let groups = edgeward::epg::rules::group(&guide).expect("plans");
    let channels_in_file = groups.len();
    let mut groups = groups.into_iter().peekable();
    while let Some((channel, programmes)) = groups.next() {
        let mut r = Default::default();
        batch.extend(edgeward::epg::rules::plan_channel(
            &topology,
            channel,
            &programmes,
            now,
            Default::default(),
            &mut r,
        ));
        if batch.len() < edgeward::epg::BATCH && groups.peek().is_some() {
            continue;
        }
        let revision = topology.revision() + 1;
        topology = edgeward::topology::edit::apply(&topology, &batch, revision, revision)
            .expect("applies")
            .topology;
        changes += batch.len();
        batches += 1;
        batch.clear();
    }
    drop(groups);
    let applied = t.elapsed();
    let heap_peak = PEAK.load(Ordering::Relaxed);
    let rss_peak = rss_kib("VmHWM:");
    let programmes = guide.programmes.len();
    let size = bytes.len();
    drop(guide);
    drop(bytes);
    drop(batch);
    let heap_after = LIVE.load(Ordering::Relaxed);
    let _ = std::fs::remove_file(&path);
    println!(
        "{:.1} MB, {programmes} programmes on {channels_in_file} channels: read {:.2} s, parsed {:.2} s, \
         planned and applied in {batches} batches ({changes} changes) {:.2} s; \
         heap peak {} MiB above the {} MiB before, of which {} MiB stays (the programmes); \
         RSS peak {} MiB above the {} MiB before",
        size as f64 / 1e6,
        read.as_secs_f64(),
        parsed.as_secs_f64(),
        applied.as_secs_f64(),
        mib(heap_peak - heap_base),
        mib(heap_base),
        mib(heap_after.saturating_sub(heap_base)),
        rss_peak.saturating_sub(base) / 1024,
        base / 1024
    );
    drop(topology);
}
