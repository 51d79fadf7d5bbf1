//! Which edges this node probes when a fleet shares health checking
//! (`--health-mode shared`): each checked server belongs to one live
//! member, chosen by rendezvous hashing of the member's name and the
//! server's id, so that every node computes the same owner from the same
//! member list and a member joining or leaving moves only its own share.
//!
//! This module only decides; `cluster::health` keeps the member list from
//! etcd, publishes what this node probed and applies what the others did.
//! Until this node has joined, and whenever it has lost etcd for a lease's
//! time, it is *alone*: it probes every server itself, as without sharing.

use arc_swap::ArcSwap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The fleet's split of the health checks, as this node knows it.
pub struct Share {
    me: String,
    /// The live members, sorted (this node among them once joined).
    members: ArcSwap<Vec<String>>,
    /// Probing everything itself.
    alone: AtomicBool,
    /// Bumped when ownership may have changed: the checker reconciles.
    changed: tokio::sync::watch::Sender<u64>,
    /// Woken when a server this node probes changed state: the publisher
    /// writes at once instead of at its next round.
    pub(crate) urgent: tokio::sync::Notify,
}

impl Share {
    /// A node that has not joined yet (alone).
    pub fn new(me: &str) -> Arc<Self> {
        Arc::new(Share {
            me: me.to_string(),
            members: ArcSwap::from_pointee(Vec::new()),
            alone: AtomicBool::new(true),
            changed: tokio::sync::watch::channel(0).0,
            urgent: tokio::sync::Notify::new(),
        })
    }

    /// This node's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Whether this node probes `server`.
    pub fn owns(&self, server: &str) -> bool {
        self.alone() || owner(&self.members.load(), server).is_none_or(|o| o == self.me)
    }

    /// The member that probes `server` (none: this node, alone).
    pub fn owner(&self, server: &str) -> Option<String> {
        match self.alone() {
            true => None,
            false => owner(&self.members.load(), server).map(str::to_string),
        }
    }

    /// Whether this node probes everything itself.
    pub fn alone(&self) -> bool {
        self.alone.load(Ordering::Acquire)
    }

    /// The members, as last read.
    pub fn members(&self) -> Arc<Vec<String>> {
        self.members.load_full()
    }

    /// Takes a new member list from etcd (this node is in it: joined).
    pub fn set_members(&self, mut members: Vec<String>) {
        members.sort();
        members.dedup();
        let was_alone = self.alone.swap(false, Ordering::AcqRel);
        if was_alone || **self.members.load() != members {
            tracing::info!(
                members = members.len(),
                "shared health checks: the fleet's members are {}",
                members.join(", ")
            );
            self.members.store(Arc::new(members));
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// Probes everything itself from now on (etcd is lost, or this node
    /// is stopping).
    pub fn go_alone(&self, why: &str) {
        if !self.alone.swap(true, Ordering::AcqRel) {
            tracing::warn!("shared health checks: probing every server here ({why})");
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// Tells when ownership may have changed.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// A server this node probes changed state.
    pub fn state_changed(&self) {
        self.urgent.notify_one();
    }
}

/// The member with the highest rendezvous weight for `server`.
fn owner<'a>(members: &'a [String], server: &str) -> Option<&'a str> {
    members
        .iter()
        .max_by_key(|m| weight(m, server))
        .map(String::as_str)
}

/// A stable 64-bit weight of (member, server): FNV-1a, then splitmix64's
/// finaliser so that similar names spread.
fn weight(member: &str, server: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in member.bytes().chain([0xff]).chain(server.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn every_server_has_one_owner_and_the_split_is_even() {
        let members = names(5);
        let mut counts = std::collections::HashMap::new();
        for s in 0..5000 {
            *counts
                .entry(owner(&members, &format!("edge-{s}")).unwrap())
                .or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 5);
        for (m, n) in counts {
            assert!((800..1200).contains(&n), "{m} owns {n} of 5000");
        }
    }

    #[test]
    fn a_member_leaving_moves_only_its_own_servers() {
        let all = names(5);
        let fewer: Vec<String> = all.iter().filter(|m| *m != "node-2").cloned().collect();
        for s in 0..2000 {
            let id = format!("edge-{s}");
            let before = owner(&all, &id).unwrap();
            let after = owner(&fewer, &id).unwrap();
            if before != "node-2" {
                assert_eq!(before, after, "{id} moved though its owner stayed");
            }
        }
    }

    #[test]
    fn alone_it_owns_everything_and_joined_only_its_share() {
        let share = Share::new("node-1");
        assert!(share.owns("edge-1") && share.owns("edge-2"));
        let mut changes = share.subscribe();
        share.set_members(names(3));
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        let owned = (0..300)
            .filter(|s| share.owns(&format!("edge-{s}")))
            .count();
        assert!((60..140).contains(&owned), "{owned} of 300");
        share.set_members(names(3));
        assert!(
            !changes.has_changed().unwrap(),
            "the same list changes nothing"
        );
        share.go_alone("test");
        assert!(changes.has_changed().unwrap());
        assert!((0..300).all(|s| share.owns(&format!("edge-{s}"))));
        assert_eq!(share.owner("edge-1"), None);
    }
}
