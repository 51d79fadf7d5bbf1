//! Longest-prefix match over a set of IP prefixes, changed in place.
//!
//! The prefixes are flattened into the sorted list of elementary intervals
//! they cut the address space into, each labelled with the most specific
//! prefix covering it. A lookup is a binary search for the interval holding
//! the address, narrowed first by a 65,536-entry table indexed by the
//! address's top 16 bits; so it costs a handful of cache misses whatever the
//! prefix lengths, and the table holds at most 2N+1 intervals for N
//! prefixes. Enclosing prefixes are reached through the `parent` links that
//! [`PrefixTable::build`] returns, so "every matching subnet, longest
//! first" is a lookup plus a walk up a short chain.
//!
//! The intervals are kept in runs of a few hundred, each its own shared
//! allocation: a snapshot changed by one prefix copies the two or three
//! runs around it and shares the rest with the snapshot it came from (a
//! flat list of two million intervals would be copied whole, 16 MiB of page
//! faults under the players' feet).

/// An address family's integer form: `u32` for IPv4, `u128` for IPv6.
pub trait PrefixKey: Copy + Ord + std::fmt::Debug {
    /// Width in bits.
    const BITS: u32;
    /// The all-zero address.
    const ZERO: Self;
    /// The last address of the prefix `self/len`.
    fn last_of(self, len: u8) -> Self;
    /// The address after this one, if any.
    fn succ(self) -> Option<Self>;
    /// The top 16 bits, as a bucket number.
    fn bucket(self) -> usize;
    /// The first address of a bucket.
    fn bucket_start(bucket: usize) -> Self;
}

macro_rules! prefix_key {
    ($t:ty) => {
        impl PrefixKey for $t {
            const BITS: u32 = <$t>::BITS;
            const ZERO: Self = 0;
            fn last_of(self, len: u8) -> Self {
                let host_bits = Self::BITS - u32::from(len);
                if host_bits == Self::BITS {
                    <$t>::MAX
                } else {
                    self | ((1 << host_bits) - 1)
                }
            }
            fn succ(self) -> Option<Self> {
                self.checked_add(1)
            }
            fn bucket(self) -> usize {
                (self >> (Self::BITS - 16)) as usize
            }
            fn bucket_start(bucket: usize) -> Self {
                (bucket as $t) << (Self::BITS - 16)
            }
        }
    };
}
prefix_key!(u32);
prefix_key!(u128);

/// "No prefix" in interval labels and parent links.
pub const NONE: u32 = u32::MAX;

const BUCKETS: usize = 1 << 16;

/// Intervals per run when a table is built or a changed stretch re-cut: a
/// change copies about three runs (12 KiB of IPv4 intervals), a lookup
/// searches one (nine steps).
const RUN: usize = 512;

use std::sync::Arc;

/// A longest-prefix-match table from addresses to prefix ids.
#[derive(Debug, Clone)]
pub struct PrefixTable<K> {
    /// Consecutive stretches of the interval list, each with its first
    /// address beside it (searched without touching the run); never empty,
    /// the first starts at address 0.
    runs: Vec<Intervals<K>>,
    /// `buckets[b]`: the run holding bucket `b`'s first address;
    /// `buckets[BUCKETS]` is the last run.
    buckets: Box<[u32]>,
    /// Intervals per run when re-cut ([`RUN`]; small in tests).
    run_len: usize,
}

/// A run of elementary intervals: its first address (searched without
/// touching the run), where each starts (what a lookup searches, packed)
/// and the most specific prefix covering each. Cloned by reference.
#[derive(Debug, Clone)]
struct Intervals<K> {
    first: K,
    starts: Arc<[K]>,
    labels: Arc<[u32]>,
}

/// A stretch of elementary intervals being built or changed.
#[derive(Debug, Clone)]
struct Run<K> {
    /// First address of each interval, ascending.
    starts: Vec<K>,
    /// Most specific prefix id covering each interval, or [`NONE`].
    labels: Vec<u32>,
}

impl<K: PrefixKey> PrefixTable<K> {
    /// Sorts `(network address, prefix length, id)` entries into the order
    /// [`PrefixTable::build`] takes: by address, enclosing prefixes first,
    /// then by id. Equal networks end up next to each other, first id first.
    pub fn sort(entries: &mut [(K, u8, u32)]) {
        entries.sort_unstable();
    }

    /// The pairs of ids naming the same network in sorted `entries`
    /// (first, later).
    pub fn duplicates(entries: &[(K, u8, u32)]) -> impl Iterator<Item = (u32, u32)> + '_ {
        entries
            .windows(2)
            .filter(|w| (w[0].0, w[0].1) == (w[1].0, w[1].1))
            .map(|w| (w[0].2, w[1].2))
    }

    /// Builds the table from entries sorted by [`PrefixTable::sort`].
    /// Network addresses must have no host bits set and `(address, length)`
    /// pairs must be distinct (the topology validator guarantees both).
    /// Returns the table and, for each entry in the given order, the id of
    /// the most specific other prefix that encloses it (or [`NONE`]).
    pub fn build(entries: &[(K, u8, u32)]) -> (Self, Vec<u32>) {
        Self::build_in_runs_of(entries, RUN)
    }

    fn build_in_runs_of(entries: &[(K, u8, u32)], run_len: usize) -> (Self, Vec<u32>) {
        debug_assert!(entries.is_sorted());
        let mut flat = Run {
            starts: vec![K::ZERO],
            labels: vec![NONE],
        };
        let mut parents = vec![NONE; entries.len()];
        // Open prefixes, innermost last: (last address, id).
        let mut open: Vec<(K, u32)> = Vec::new();
        for (i, &(start, len, id)) in entries.iter().enumerate() {
            // Close the prefixes that end before this one starts.
            while let Some(&(last, _)) = open.last() {
                if last >= start {
                    break;
                }
                open.pop();
                let resume = open.last().map_or(NONE, |&(_, id)| id);
                // `last < start` so `last + 1` cannot overflow.
                flat.push(last.succ().unwrap(), resume);
            }
            parents[i] = open.last().map_or(NONE, |&(_, id)| id);
            flat.push(start, id);
            open.push((start.last_of(len), id));
        }
        while let Some((last, _)) = open.pop() {
            let resume = open.last().map_or(NONE, |&(_, id)| id);
            if let Some(next) = last.succ() {
                flat.push(next, resume);
            }
        }
        let mut table = PrefixTable {
            runs: Vec::new(),
            buckets: vec![0; BUCKETS + 1].into_boxed_slice(),
            run_len,
        };
        table.runs = flat.cut(run_len);
        table.rebucket();
        (table, parents)
    }

    /// The id of the most specific prefix containing `addr`, if any.
    #[inline]
    pub fn longest(&self, addr: K) -> Option<u32> {
        let run = &self.runs[self.run_of(addr)];
        // `run.starts[0] <= addr`, so the count is at least one.
        let count = run.starts.partition_point(|&s| s <= addr);
        let label = run.labels[count - 1];
        (label != NONE).then_some(label)
    }

    /// The run holding `addr`.
    #[inline]
    fn run_of(&self, addr: K) -> usize {
        let b = addr.bucket();
        let lo = self.buckets[b] as usize;
        let hi = self.buckets[b + 1] as usize;
        // Run `lo` starts at or before the bucket; the runs after it up to
        // `hi` may start at or before `addr`.
        lo + self.runs[lo + 1..=hi].partition_point(|r| r.first <= addr)
    }

    /// The labels of the intervals that overlap `start..=last`, in address
    /// order (a label may repeat; [`NONE`] is left out).
    pub fn labels_in(&self, start: K, last: K) -> impl Iterator<Item = u32> + '_ {
        let first_run = self.run_of(start);
        let run = &self.runs[first_run];
        let first = run.starts.partition_point(|&s| s <= start) - 1;
        self.runs[first_run..]
            .iter()
            .enumerate()
            .flat_map(move |(k, run)| {
                let from = if k == 0 { first } else { 0 };
                run.starts[from..].iter().zip(&run.labels[from..])
            })
            .take_while(move |&(&s, _)| s <= last)
            .map(|(_, &label)| label)
            .filter(|&label| label != NONE)
    }

    /// Adds the prefix `start/len` as `id`, in place: the intervals it
    /// covers that were labelled with an enclosing prefix (or none) take
    /// its id; those of prefixes nested inside it keep theirs. `len_of`
    /// gives the length of a labelled prefix. The prefix must not be in the
    /// table already.
    pub fn insert(&mut self, start: K, len: u8, id: u32, len_of: impl Fn(u32) -> u8) {
        let last = start.last_of(len);
        self.change(start, last, |flat| {
            let first = flat.split_at(start);
            if let Some(after) = last.succ() {
                flat.split_at(after);
            }
            let mut i = first;
            while i < flat.starts.len() && flat.starts[i] <= last {
                let label = flat.labels[i];
                if label == NONE || len_of(label) < len {
                    flat.labels[i] = id;
                }
                i += 1;
            }
            flat.merge_around(first, i);
        });
    }

    /// Removes the prefix labelled `id` (of `start/len`): its intervals
    /// take `parent`'s label (the most specific prefix enclosing it, or
    /// [`NONE`]).
    pub fn remove(&mut self, start: K, len: u8, id: u32, parent: u32) {
        let last = start.last_of(len);
        self.change(start, last, |flat| {
            let first = flat.index_of(start);
            let mut i = first;
            while i < flat.starts.len() && flat.starts[i] <= last {
                if flat.labels[i] == id {
                    flat.labels[i] = parent;
                }
                i += 1;
            }
            flat.merge_around(first, i);
        });
    }

    /// Applies `edit` to the runs holding `start..=last` and one more on
    /// each side (so that it may split at `last + 1` and merge with the
    /// neighbours), flattened into one; then cuts the result into runs
    /// again. The other runs are shared, untouched.
    fn change(&mut self, start: K, last: K, edit: impl FnOnce(&mut Run<K>)) {
        let from = self.run_of(start).saturating_sub(1);
        let to = (self.run_of(last) + 1).min(self.runs.len() - 1);
        let mut flat = Run {
            starts: Vec::new(),
            labels: Vec::new(),
        };
        for run in &self.runs[from..=to] {
            flat.starts.extend_from_slice(&run.starts);
            flat.labels.extend_from_slice(&run.labels);
        }
        edit(&mut flat);
        let cut = flat.cut(self.run_len);
        self.runs.splice(from..=to, cut);
        self.rebucket();
    }

    /// Recomputes the bucket index after runs moved.
    fn rebucket(&mut self) {
        let mut r = 0usize;
        for b in 0..BUCKETS {
            let bucket_start = K::bucket_start(b);
            while r + 1 < self.runs.len() && self.runs[r + 1].first <= bucket_start {
                r += 1;
            }
            self.buckets[b] = r as u32;
        }
        self.buckets[BUCKETS] = (self.runs.len() - 1) as u32;
    }

    /// The label of every interval and where it starts (for tests).
    #[cfg(test)]
    fn intervals_list(&self) -> Vec<(K, u32)> {
        self.runs
            .iter()
            .flat_map(|r| r.starts.iter().copied().zip(r.labels.iter().copied()))
            .collect()
    }

    /// Number of elementary intervals (for memory accounting and tests).
    pub fn intervals(&self) -> usize {
        self.runs.iter().map(|r| r.starts.len()).sum()
    }
}

impl<K: PrefixKey> Run<K> {
    /// Appends an interval starting at `start` (after every other), or
    /// relabels the last one if it starts there too; neighbours with the
    /// same label are merged.
    fn push(&mut self, start: K, label: u32) {
        if *self.starts.last().unwrap() == start {
            *self.labels.last_mut().unwrap() = label;
            // Merge with the previous interval if the label is the same.
            let n = self.labels.len();
            if n >= 2 && self.labels[n - 2] == label {
                self.starts.pop();
                self.labels.pop();
            }
        } else if *self.labels.last().unwrap() != label {
            self.starts.push(start);
            self.labels.push(label);
        }
    }

    /// Cuts the intervals into runs of about `run_len` (never empty).
    fn cut(self, run_len: usize) -> Vec<Intervals<K>> {
        let n = self.starts.len().div_ceil(run_len).max(1);
        let each = self.starts.len().div_ceil(n);
        self.starts
            .chunks(each.max(1))
            .zip(self.labels.chunks(each.max(1)))
            .map(|(s, l)| Intervals {
                first: s[0],
                starts: s.into(),
                labels: l.into(),
            })
            .collect()
    }

    /// The index of the interval holding `addr` (at or after the first).
    fn index_of(&self, addr: K) -> usize {
        self.starts.partition_point(|&s| s <= addr) - 1
    }

    /// Makes `addr` the start of an interval (splitting the one holding
    /// it) and returns that interval's index.
    fn split_at(&mut self, addr: K) -> usize {
        let i = self.index_of(addr);
        if self.starts[i] == addr {
            return i;
        }
        self.starts.insert(i + 1, addr);
        self.labels.insert(i + 1, self.labels[i]);
        i + 1
    }

    /// Merges neighbours with the same label among intervals
    /// `from - 1 ..= to` (the ones a change touched, and the two beside).
    fn merge_around(&mut self, from: usize, to: usize) {
        let lo = from.saturating_sub(1);
        let hi = (to + 1).min(self.starts.len());
        let mut kept_starts = Vec::with_capacity(hi - lo);
        let mut kept_labels = Vec::with_capacity(hi - lo);
        for i in lo..hi {
            if kept_labels.last() == Some(&self.labels[i]) {
                continue;
            }
            kept_starts.push(self.starts[i]);
            kept_labels.push(self.labels[i]);
        }
        self.starts.splice(lo..hi, kept_starts);
        self.labels.splice(lo..hi, kept_labels);
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn v4(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    /// Sorts a copy and builds; parents come back indexed by id (the tests
    /// number their entries 0..n).
    fn built<K: PrefixKey>(entries: &[(K, u8, u32)]) -> (PrefixTable<K>, Vec<u32>) {
        let mut sorted = entries.to_vec();
        PrefixTable::sort(&mut sorted);
        let (table, parents) = PrefixTable::build(&sorted);
        let mut by_id = vec![NONE; entries.len()];
        for (&(_, _, id), parent) in sorted.iter().zip(parents) {
            by_id[id as usize] = parent;
        }
        (table, by_id)
    }

    /// The obvious linear scan, as the reference.
    fn naive(entries: &[(u32, u8, u32)], addr: u32) -> Option<u32> {
        entries
            .iter()
            .filter(|&&(net, len, _)| {
                net == (addr & !(u32::MAX.checked_shr(u32::from(len)).unwrap_or(0)))
            })
            .max_by_key(|e| e.1)
            .map(|e| e.2)
    }

    #[test]
    fn nested_prefixes_pick_the_most_specific_and_link_parents() {
        let entries = [
            (v4("10.0.0.0"), 8, 0),
            (v4("10.1.0.0"), 16, 1),
            (v4("10.1.2.0"), 24, 2),
            (v4("192.168.0.0"), 16, 3),
            (0, 0, 4),
        ];
        let (t, parents) = built(&entries);
        assert_eq!(t.longest(v4("10.1.2.3")), Some(2));
        assert_eq!(t.longest(v4("10.1.3.3")), Some(1));
        assert_eq!(t.longest(v4("10.2.0.0")), Some(0));
        assert_eq!(t.longest(v4("10.255.255.255")), Some(0));
        assert_eq!(t.longest(v4("11.0.0.0")), Some(4));
        assert_eq!(t.longest(v4("192.168.255.255")), Some(3));
        assert_eq!(t.longest(v4("255.255.255.255")), Some(4));
        assert_eq!(parents, vec![4, 0, 1, 4, NONE]);
    }

    #[test]
    fn empty_table_and_edges_of_the_space() {
        let (t, _) = built::<u32>(&[]);
        assert_eq!(t.longest(0), None);
        assert_eq!(t.longest(u32::MAX), None);
        let (t, _) = built(&[(v4("255.255.255.255"), 32, 1), (0, 32, 0)]);
        assert_eq!(t.longest(u32::MAX), Some(1));
        assert_eq!(t.longest(u32::MAX - 1), None);
        assert_eq!(t.longest(0), Some(0));
        assert_eq!(t.longest(1), None);
    }

    #[test]
    fn ipv6_keys() {
        let net = |s: &str| u128::from(s.parse::<std::net::Ipv6Addr>().unwrap());
        let entries = [(net("2001:db8::"), 32, 0), (net("2001:db8:1::"), 48, 1)];
        let (t, parents) = built(&entries);
        assert_eq!(t.longest(net("2001:db8:1::5")), Some(1));
        assert_eq!(t.longest(net("2001:db8:2::5")), Some(0));
        assert_eq!(t.longest(net("2001:db9::")), None);
        assert_eq!(parents, vec![NONE, 0]);
    }

    #[test]
    fn agrees_with_a_linear_scan_on_random_nested_tables() {
        // Deterministic pseudo-random prefixes concentrated in a few /8s so
        // that many nest.
        let mut x: u64 = 0x1234_5678;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut entries = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while entries.len() < 2000 {
            let r = next();
            let len = (r % 33) as u8;
            let addr = ((r >> 8) as u32 & 0x0f_ff_ff_ff) | (((r >> 40) as u32 % 3) << 28);
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            let net = addr & mask;
            if seen.insert((net, len)) {
                entries.push((net, len, entries.len() as u32));
            }
        }
        let (t, parents) = built(&entries);
        for (i, &(net, len, _)) in entries.iter().enumerate() {
            // The parent is the longest match among strictly shorter prefixes.
            let shorter: Vec<_> = entries.iter().copied().filter(|e| e.1 < len).collect();
            assert_eq!(naive(&shorter, net).unwrap_or(NONE), parents[i]);
        }
        for _ in 0..20_000 {
            let r = next();
            let addr = (r as u32 & 0x0f_ff_ff_ff) | (((r >> 32) as u32 % 4) << 28);
            assert_eq!(t.longest(addr), naive(&entries, addr), "addr {addr:#x}");
        }
        assert!(t.intervals() <= 2 * entries.len() + 1);
    }

    #[test]
    fn duplicates_are_adjacent_after_sorting() {
        let mut entries = vec![
            (v4("10.0.0.0"), 8, 0),
            (v4("10.1.0.0"), 16, 1),
            (v4("10.0.0.0"), 8, 2),
            (v4("10.0.0.0"), 16, 3),
            (v4("10.1.0.0"), 16, 4),
        ];
        PrefixTable::sort(&mut entries);
        let found: Vec<_> = PrefixTable::duplicates(&entries).collect();
        assert_eq!(found, vec![(0, 2), (1, 4)]);
    }

    /// The runs, their first addresses and the bucket index agree.
    fn check_runs<K: PrefixKey>(t: &PrefixTable<K>) {
        assert_eq!(t.runs[0].first, K::ZERO);
        for run in &t.runs {
            assert!(!run.starts.is_empty());
            assert_eq!(run.starts.len(), run.labels.len());
            assert_eq!(run.starts[0], run.first);
        }
        assert!(t.runs.is_sorted_by_key(|r| r.first));
        for b in (0..BUCKETS).step_by(97).chain([BUCKETS - 1]) {
            let holder = t.runs.partition_point(|r| r.first <= K::bucket_start(b)) - 1;
            assert_eq!(t.buckets[b] as usize, holder, "bucket {b}");
        }
    }

    #[test]
    fn inserts_and_removals_in_place_build_the_table_a_build_would() {
        let mut x: u64 = 0x9e37_79b9;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Prefixes by id (None: removed; ids are never reused), nested in a
        // few /8s; runs of four intervals, so that changes cross them.
        let mut ids: Vec<Option<(u32, u8)>> = Vec::new();
        let (mut table, _) = PrefixTable::<u32>::build_in_runs_of(&[], 4);
        let live = |ids: &[Option<(u32, u8)>]| -> Vec<(u32, u8, u32)> {
            ids.iter()
                .enumerate()
                .filter_map(|(i, e)| e.map(|(n, l)| (n, l, i as u32)))
                .collect()
        };
        for round in 0..1500 {
            let r = next();
            let alive = live(&ids);
            if r % 3 == 0 && !alive.is_empty() {
                // Remove one: its parent is the longest strictly shorter
                // prefix holding it.
                let (net, len, id) = alive[(r >> 8) as usize % alive.len()];
                let shorter: Vec<_> = alive.iter().copied().filter(|e| e.1 < len).collect();
                let parent = naive(&shorter, net).unwrap_or(NONE);
                table.remove(net, len, id, parent);
                ids[id as usize] = None;
            } else {
                let len = (r % 33) as u8;
                let addr = ((r >> 8) as u32 & 0x03_ff_ff_ff) | (((r >> 40) as u32 % 3) << 28);
                let net = addr & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                if ids.contains(&Some((net, len))) {
                    continue;
                }
                let lens: Vec<u8> = ids.iter().map(|e| e.map_or(0, |e| e.1)).collect();
                table.insert(net, len, ids.len() as u32, |id| lens[id as usize]);
                ids.push(Some((net, len)));
            }
            if round % 100 == 99 {
                let mut entries = live(&ids);
                check_runs(&table);
                // A change never leaves a run longer than the cut length.
                assert!(table.runs.len() > 5, "{} runs", table.runs.len());
                assert!(table.runs.iter().all(|r| r.starts.len() <= 4));
                let naive_entries = entries.clone();
                PrefixTable::sort(&mut entries);
                let (rebuilt, _) = PrefixTable::build(&entries);
                assert_eq!(
                    table.intervals_list(),
                    rebuilt.intervals_list(),
                    "round {round}"
                );
                for _ in 0..500 {
                    let a = (next() as u32 & 0x03_ff_ff_ff) | (((next() >> 32) as u32 % 4) << 28);
                    assert_eq!(table.longest(a), naive(&naive_entries, a));
                }
                // A prefix inside a random one that labels its own first
                // address is among the labels in it.
                let (net, len, _) = naive_entries[(next() as usize) % naive_entries.len()];
                let last = net.last_of(len);
                let seen: std::collections::HashSet<u32> = table.labels_in(net, last).collect();
                for &(n, l, id) in &naive_entries {
                    let inside = l >= len && n >= net && n <= last;
                    if inside && table.longest(n) == Some(id) {
                        assert!(seen.contains(&id), "{n:#x}/{l} inside {net:#x}/{len}");
                    }
                }
            }
        }
    }

    /// Property tests against the obvious scan, for both families, with
    /// shrinking: prefixes of any length (0 and the full width included),
    /// many nested in a narrow stretch of the space, looked up at random
    /// addresses and at every prefix's first and last address and the
    /// addresses just outside them.
    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// The longest of `entries` holding `addr` (the reference).
        fn scan<K: PrefixKey>(entries: &[(K, u8, u32)], addr: K) -> Option<u32> {
            entries
                .iter()
                .filter(|&&(net, len, _)| net <= addr && addr <= net.last_of(len))
                .max_by_key(|e| e.1)
                .map(|e| e.2)
        }

        /// Distinct `(network, length)` pairs with ids, from raw draws; the
        /// top bits are narrowed so that prefixes nest and overlap.
        fn prefixes<K: PrefixKey + std::hash::Hash>(
            raw: Vec<(K, u8)>,
            width: u8,
            mask_net: impl Fn(K, u8) -> K,
        ) -> Vec<(K, u8, u32)> {
            let mut seen = std::collections::HashSet::new();
            let mut out = Vec::new();
            for (addr, len) in raw {
                let len = len % (width + 1);
                let net = mask_net(addr, len);
                if seen.insert((net, len)) {
                    out.push((net, len, out.len() as u32));
                }
            }
            out
        }

        fn check<K: PrefixKey + std::hash::Hash>(entries: &[(K, u8, u32)], probes: &[K]) {
            let mut sorted = entries.to_vec();
            PrefixTable::sort(&mut sorted);
            let (table, _) = PrefixTable::build(&sorted);
            let mut at: Vec<K> = probes.to_vec();
            for &(net, len, _) in entries {
                let last = net.last_of(len);
                at.extend([net, last]);
                at.extend(last.succ());
                if let Some(before) = entries.iter().map(|e| e.0).find(|&n| n < net) {
                    at.push(before);
                }
            }
            for a in at {
                assert_eq!(table.longest(a), scan(entries, a), "address {a:?}");
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            #[test]
            fn ipv4_agrees_with_a_scan(
                raw in proptest::collection::vec((any::<u32>(), any::<u8>()), 0..200),
                probes in proptest::collection::vec(any::<u32>(), 0..200),
            ) {
                // Most prefixes in 10.0.0.0/12, a few anywhere.
                let narrow = |a: u32| if a.is_multiple_of(5) { a } else { 0x0a00_0000 | (a & 0x000f_ffff) };
                let raw = raw.into_iter().map(|(a, l)| (narrow(a), l)).collect();
                let entries = prefixes(raw, 32, |a: u32, len| {
                    a & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
                });
                let probes: Vec<u32> = probes.into_iter().map(narrow).collect();
                check(&entries, &probes);
            }

            #[test]
            fn ipv6_agrees_with_a_scan(
                raw in proptest::collection::vec((any::<u128>(), any::<u8>()), 0..200),
                probes in proptest::collection::vec(any::<u128>(), 0..200),
            ) {
                let base: u128 = 0x2001_0db8 << 96;
                let narrow = |a: u128| if a.is_multiple_of(7) { a } else { base | (a & ((1 << 40) - 1)) };
                let raw = raw.into_iter().map(|(a, l)| (narrow(a), l)).collect();
                let entries = prefixes(raw, 128, |a: u128, len| {
                    a & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
                });
                let probes: Vec<u128> = probes.into_iter().map(narrow).collect();
                check(&entries, &probes);
            }
        }
    }
}
