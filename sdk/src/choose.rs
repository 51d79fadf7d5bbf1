//! Selection helpers: weighted random choice and weighted consistent
//! (rendezvous) hashing.
//!
//! Both take any cloneable iterator, so a policy can filter candidates
//! (`tier.eligible()`) without collecting them. Items of weight 0 are never
//! chosen.

/// Draws one item at random, in proportion to `weight`, using the host's
/// random generator. `None` when no item has a positive weight.
pub fn weighted<I, T>(items: I, weight: impl Fn(&T) -> u32) -> Option<T>
where
    I: Iterator<Item = T> + Clone,
{
    weighted_with(items, weight, crate::host::random())
}

/// [`weighted`] with the random draw given explicitly (deterministic).
pub fn weighted_with<I, T>(items: I, weight: impl Fn(&T) -> u32, random: u64) -> Option<T>
where
    I: Iterator<Item = T> + Clone,
{
    let total: u64 = items.clone().map(|i| u64::from(weight(&i))).sum();
    if total == 0 {
        return None;
    }
    // Map the 64-bit draw onto [0, total) without modulo bias worth noticing.
    let mut point = ((u128::from(random) * u128::from(total)) >> 64) as u64;
    for item in items {
        let w = u64::from(weight(&item));
        if point < w {
            return Some(item);
        }
        point -= w;
    }
    None
}

/// Chooses one item by weighted rendezvous hashing of `key`: the same key
/// goes to the same item while the set does not change, and when an item
/// leaves only its keys move. `id` must be stable per item (e.g. the server's
/// id, or its index within one topology version).
pub fn rendezvous<I, T>(
    key: &[u8],
    items: I,
    id: impl Fn(&T) -> u64,
    weight: impl Fn(&T) -> u32,
) -> Option<T>
where
    I: Iterator<Item = T>,
{
    let key_hash = hash64(key);
    let mut best: Option<(f64, T)> = None;
    for item in items {
        let w = weight(&item);
        if w == 0 {
            continue;
        }
        // Score = w / -ln(u), with u uniform in (0, 1) from the pair hash.
        let h = mix64(key_hash ^ mix64(id(&item)));
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = f64::from(w) / -u.ln();
        if best.as_ref().is_none_or(|(b, _)| score > *b) {
            best = Some((score, item));
        }
    }
    best.map(|(_, item)| item)
}

/// A fast 64-bit hash of bytes (FNV-1a, then a finaliser), stable across
/// builds and platforms.
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// The splitmix64 finaliser: spreads every input bit over the output.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_respects_proportions_and_skips_zero() {
        let items = [("a", 1u32), ("zero", 0), ("b", 3)];
        let mut counts = [0u32; 3];
        let n = 40_000u64;
        for i in 0..n {
            // Evenly spaced draws over the whole u64 range.
            let r = i.wrapping_mul(u64::MAX / n);
            let (name, _) = weighted_with(items.iter(), |x| x.1, r).unwrap();
            let idx = items.iter().position(|x| x.0 == *name).unwrap();
            counts[idx] += 1;
        }
        assert_eq!(counts[1], 0);
        // Evenly spaced draws split exactly 1:3, give or take the boundary draw.
        assert!(counts[0].abs_diff(10_000) <= 1, "{counts:?}");
        assert!(counts[2].abs_diff(30_000) <= 1, "{counts:?}");
    }

    #[test]
    fn weighted_none_when_all_weights_zero() {
        assert!(weighted_with([0u32, 0].iter(), |w| **w, 42).is_none());
        assert!(weighted_with(std::iter::empty::<u32>(), |w| *w, 42).is_none());
    }

    #[test]
    fn rendezvous_is_stable_and_moves_only_removed_keys() {
        let all = [1u64, 2, 3, 4];
        let fewer = [1u64, 2, 4];
        let mut moved = 0;
        for k in 0..1000u32 {
            let key = k.to_le_bytes();
            let a = *rendezvous(&key, all.iter(), |x| **x, |_| 1).unwrap();
            assert_eq!(a, *rendezvous(&key, all.iter(), |x| **x, |_| 1).unwrap());
            let b = *rendezvous(&key, fewer.iter(), |x| **x, |_| 1).unwrap();
            if a != 3 {
                assert_eq!(a, b, "key {k} moved although its server stayed");
            } else {
                moved += 1;
            }
        }
        assert!(
            (150..350).contains(&moved),
            "server 3 got {moved} of 1000 keys"
        );
    }

    #[test]
    fn rendezvous_skips_zero_weight() {
        for k in 0..100u32 {
            let got = rendezvous(
                &k.to_le_bytes(),
                [1u64, 2].iter(),
                |x| **x,
                |x| {
                    if **x == 1 { 0 } else { 1 }
                },
            );
            assert_eq!(got, Some(&2));
        }
    }
}
