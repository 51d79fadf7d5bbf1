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
}
