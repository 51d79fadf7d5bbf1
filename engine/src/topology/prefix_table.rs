//! Longest-prefix match over a static set of IP prefixes.
//!
//! The prefixes are flattened once, at build time, into the sorted list of
//! elementary intervals they cut the address space into, each labelled with
//! the most specific prefix covering it. A lookup is then a binary search for
//! the interval holding the address, narrowed first by a 65,536-entry table
//! indexed by the address's top 16 bits; so it costs a handful of cache
//! misses whatever the prefix lengths, and the table holds at most 2N+1
//! intervals for N prefixes. Enclosing prefixes are reached through the
//! `parent` links that [`PrefixTable::build`] returns, so "every matching
//! subnet, longest first" is a lookup plus a walk up a short chain.

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

/// A longest-prefix-match table from addresses to prefix ids.
#[derive(Debug, Clone)]
pub struct PrefixTable<K> {
    /// First address of each elementary interval, ascending; `starts[0]` is 0.
    starts: Vec<K>,
    /// Most specific prefix id covering each interval, or [`NONE`].
    labels: Vec<u32>,
    /// `buckets[b]`: index of the first interval starting at or after bucket `b`.
    buckets: Box<[u32]>,
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
        debug_assert!(entries.is_sorted());
        let mut starts = vec![K::ZERO];
        let mut labels = vec![NONE];
        let mut parents = vec![NONE; entries.len()];
        // Open prefixes, innermost last: (last address, id).
        let mut open: Vec<(K, u32)> = Vec::new();

        let push = |start: K, label: u32, starts: &mut Vec<K>, labels: &mut Vec<u32>| {
            if *starts.last().unwrap() == start {
                *labels.last_mut().unwrap() = label;
                // Merge with the previous interval if the label is the same.
                let n = labels.len();
                if n >= 2 && labels[n - 2] == label {
                    starts.pop();
                    labels.pop();
                }
            } else if *labels.last().unwrap() != label {
                starts.push(start);
                labels.push(label);
            }
        };

        for (i, &(start, len, id)) in entries.iter().enumerate() {
            // Close the prefixes that end before this one starts.
            while let Some(&(last, _)) = open.last() {
                if last >= start {
                    break;
                }
                open.pop();
                let resume = open.last().map_or(NONE, |&(_, id)| id);
                // `last < start` so `last + 1` cannot overflow.
                push(last.succ().unwrap(), resume, &mut starts, &mut labels);
            }
            parents[i] = open.last().map_or(NONE, |&(_, id)| id);
            push(start, id, &mut starts, &mut labels);
            open.push((start.last_of(len), id));
        }
        while let Some((last, _)) = open.pop() {
            let resume = open.last().map_or(NONE, |&(_, id)| id);
            if let Some(next) = last.succ() {
                push(next, resume, &mut starts, &mut labels);
            }
        }

        let mut buckets = Vec::with_capacity(BUCKETS + 1);
        let mut i = 0usize;
        for b in 0..BUCKETS {
            let bucket_start = K::bucket_start(b);
            while i < starts.len() && starts[i] < bucket_start {
                i += 1;
            }
            buckets.push(i as u32);
        }
        buckets.push(starts.len() as u32);

        starts.shrink_to_fit();
        labels.shrink_to_fit();
        let table = PrefixTable {
            starts,
            labels,
            buckets: buckets.into_boxed_slice(),
        };
        (table, parents)
    }

    /// The id of the most specific prefix containing `addr`, if any.
    #[inline]
    pub fn longest(&self, addr: K) -> Option<u32> {
        let b = addr.bucket();
        let lo = self.buckets[b] as usize;
        let hi = self.buckets[b + 1] as usize;
        // Every interval before `lo` starts below this bucket, so <= addr.
        let count = lo + self.starts[lo..hi].partition_point(|&s| s <= addr);
        let label = self.labels[count - 1];
        (label != NONE).then_some(label)
    }

    /// Adds the prefix `start/len` as `id`, in place: the intervals it
    /// covers that were labelled with an enclosing prefix (or none) take
    /// its id; those of prefixes nested inside it keep theirs. `len_of`
    /// gives the length of a labelled prefix. The prefix must not be in the
    /// table already. Costs a move of the intervals after it and a pass
    /// over the buckets: a few milliseconds for a million prefixes.
    pub fn insert(&mut self, start: K, len: u8, id: u32, len_of: impl Fn(u32) -> u8) {
        let last = start.last_of(len);
        let first = self.split_at(start);
        if let Some(after) = last.succ() {
            self.split_at(after);
        }
        let mut i = first;
        while i < self.starts.len() && self.starts[i] <= last {
            let label = self.labels[i];
            if label == NONE || len_of(label) < len {
                self.labels[i] = id;
            }
            i += 1;
        }
        self.merge_around(first, i);
        self.rebucket();
    }

    /// Removes the prefix labelled `id` (of `start/len`): its intervals
    /// take `parent`'s label (the most specific prefix enclosing it, or
    /// [`NONE`]).
    pub fn remove(&mut self, start: K, len: u8, id: u32, parent: u32) {
        let last = start.last_of(len);
        let first = self.index_of(start);
        let mut i = first;
        while i < self.starts.len() && self.starts[i] <= last {
            if self.labels[i] == id {
                self.labels[i] = parent;
            }
            i += 1;
        }
        self.merge_around(first, i);
        self.rebucket();
    }

    /// Renumbers labels: every id above `removed` moves down by one (the
    /// prefix list lost its entry `removed`).
    pub fn renumber_after(&mut self, removed: u32) {
        for label in &mut self.labels {
            if *label != NONE && *label > removed {
                *label -= 1;
            }
        }
    }

    /// The index of the interval holding `addr`.
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

    /// Recomputes the bucket index after intervals moved.
    fn rebucket(&mut self) {
        let mut i = 0usize;
        for b in 0..BUCKETS {
            let bucket_start = K::bucket_start(b);
            while i < self.starts.len() && self.starts[i] < bucket_start {
                i += 1;
            }
            self.buckets[b] = i as u32;
        }
        self.buckets[BUCKETS] = self.starts.len() as u32;
    }

    /// The label of every interval and where it starts (for tests).
    #[cfg(test)]
    fn intervals_list(&self) -> Vec<(K, u32)> {
        self.starts
            .iter()
            .copied()
            .zip(self.labels.iter().copied())
            .collect()
    }

    /// Number of elementary intervals (for memory accounting and tests).
    pub fn intervals(&self) -> usize {
        self.starts.len()
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

    #[test]
    fn inserts_and_removals_in_place_build_the_table_a_build_would() {
        let mut x: u64 = 0x9e37_79b9;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Prefixes by id (None: removed), nested in a few /8s.
        let mut live: Vec<(u32, u8)> = Vec::new();
        let (mut table, _) = PrefixTable::<u32>::build(&[]);
        for round in 0..1500 {
            let r = next();
            if r % 3 == 0 && !live.is_empty() {
                // Remove one: its parent is the longest strictly shorter
                // prefix holding it.
                let at = (r >> 8) as usize % live.len();
                let (net, len) = live[at];
                let entries: Vec<_> = live
                    .iter()
                    .enumerate()
                    .map(|(i, &(n, l))| (n, l, i as u32))
                    .collect();
                let shorter: Vec<_> = entries.iter().copied().filter(|e| e.1 < len).collect();
                let parent = naive(&shorter, net).unwrap_or(NONE);
                table.remove(net, len, at as u32, parent);
                table.renumber_after(at as u32);
                live.remove(at);
            } else {
                let len = (r % 33) as u8;
                let addr = ((r >> 8) as u32 & 0x03_ff_ff_ff) | (((r >> 40) as u32 % 3) << 28);
                let net = addr & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                if live.contains(&(net, len)) {
                    continue;
                }
                let lens: Vec<u8> = live.iter().map(|e| e.1).collect();
                table.insert(net, len, live.len() as u32, |id| lens[id as usize]);
                live.push((net, len));
            }
            if round % 100 == 99 {
                let entries: Vec<_> = live
                    .iter()
                    .enumerate()
                    .map(|(i, &(n, l))| (n, l, i as u32))
                    .collect();
                let (rebuilt, _) = built(&entries);
                assert_eq!(
                    table.intervals_list(),
                    rebuilt.intervals_list(),
                    "round {round}"
                );
                assert_eq!(table.buckets, rebuilt.buckets);
                for _ in 0..500 {
                    let a = (next() as u32 & 0x03_ff_ff_ff) | (((next() >> 32) as u32 % 4) << 28);
                    assert_eq!(table.longest(a), naive(&entries, a));
                }
            }
        }
    }
}
