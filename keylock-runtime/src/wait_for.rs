//! The wait-for reporter: cycles among the current holders and waiters of
//! a registry's locks, from the live view.
//!
//! Each waiter waits for the holders of the lock it queues for; a cycle of
//! such waits is a deadlock in the making. The report reads the live view
//! ([`RegistryBuilder::track_holders`](crate::RegistryBuilder::track_holders))
//! and changes nothing. Participants are identified as the live view names
//! them: the Tokio task inside a runtime (tasks move between threads), the
//! thread outside one.

use std::collections::{BTreeMap, BTreeSet};

use crate::access::Access;
use crate::observe::{Participant, ResourceStats, Role};

/// One wait of a [`Deadlock`]: `waiter` waits for the lock that `holder`
/// holds.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct WaitFor {
    /// Who waits (`task <id>` or `thread <ThreadId>`).
    pub waiter: String,
    /// Where it asks for the lock, as `file:line:column`.
    pub waiting_at: String,
    /// What it asks for.
    pub access: Access,
    /// The resource of the lock.
    pub resource: String,
    /// The key, in its `Debug` form, for keyed locks.
    pub key: Option<String>,
    /// Who holds the lock.
    pub holder: String,
    /// Where the holder took it.
    pub held_at: String,
}

/// A cycle of waits among current holders and waiters: each waits for the
/// next, the last for the first.
///
/// A cycle of threads is a deadlock. A cycle through a Tokio task may not
/// be one: a task can poll a future that holds a lock beside another that
/// waits (`join!`), and the holding one may still finish; the report names
/// the waits as the live view saw them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Deadlock {
    /// The waits of the cycle, in order: each waits for the holder that the
    /// next one is.
    pub cycle: Vec<WaitFor>,
}

/// The cycles among the participants of `resources`, each reported once.
pub(crate) fn cycles(resources: &[ResourceStats]) -> Vec<Deadlock> {
    // Edges of the wait-for graph: waiter -> (holder, the wait).
    let mut holders: BTreeMap<u64, Vec<&Participant>> = BTreeMap::new();
    for resource in resources {
        for held in resource.live.iter().filter(|p| p.role == Role::Holding) {
            holders.entry(held.lock).or_default().push(held);
        }
    }
    let mut edges: BTreeMap<&str, Vec<WaitFor>> = BTreeMap::new();
    for resource in resources {
        for waiter in resource.live.iter().filter(|p| p.role == Role::Waiting) {
            for held in holders.get(&waiter.lock).into_iter().flatten() {
                edges.entry(&waiter.holder).or_default().push(WaitFor {
                    waiter: waiter.holder.clone(),
                    waiting_at: waiter.location.clone(),
                    access: waiter.access,
                    resource: resource.name.clone(),
                    key: waiter.key.clone(),
                    holder: held.holder.clone(),
                    held_at: held.location.clone(),
                });
            }
        }
    }
    let mut found = BTreeSet::new();
    let mut deadlocks = Vec::new();
    for start in edges.keys() {
        if let Some(cycle) = cycle_through(start, &edges) {
            let mut members: Vec<String> = cycle.iter().map(|wait| wait.waiter.clone()).collect();
            members.sort();
            if found.insert(members) {
                deadlocks.push(Deadlock { cycle });
            }
        }
    }
    deadlocks
}

/// A shortest cycle of waits from `start` back to it, if there is one:
/// a breadth-first search, each participant visited once, so the report
/// costs at most (participants x waits) steps however many cycles there
/// are. Each participant that is on a cycle is reported on one.
fn cycle_through(start: &str, edges: &BTreeMap<&str, Vec<WaitFor>>) -> Option<Vec<WaitFor>> {
    // For each participant reached, the wait that reached it.
    let mut reached: BTreeMap<&str, &WaitFor> = BTreeMap::new();
    let mut frontier = vec![start];
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for at in frontier {
            for wait in edges.get(at).into_iter().flatten() {
                if wait.holder == start {
                    let mut cycle = vec![wait.clone()];
                    let mut back = at;
                    while back != start {
                        let step = reached[back];
                        cycle.push(step.clone());
                        back = &step.waiter;
                    }
                    cycle.reverse();
                    return Some(cycle);
                }
                if !reached.contains_key(wait.holder.as_str()) {
                    reached.insert(&wait.holder, wait);
                    next.push(wait.holder.as_str());
                }
            }
        }
        frontier = next;
    }
    None
}
