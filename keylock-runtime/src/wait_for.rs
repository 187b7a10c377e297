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
    /// The waits of the cycle, starting with the smallest waiter name.
    pub cycle: Vec<WaitFor>,
}

/// The cycles among the participants of `resources`, each reported once.
pub(crate) fn cycles(resources: &[ResourceStats]) -> Vec<Deadlock> {
    // Edges of the wait-for graph: waiter -> (holder, the wait).
    let mut holders: BTreeMap<(&str, Option<&str>), Vec<&Participant>> = BTreeMap::new();
    for resource in resources {
        for held in resource.live.iter().filter(|p| p.role == Role::Holding) {
            holders
                .entry((resource.name.as_str(), held.key.as_deref()))
                .or_default()
                .push(held);
        }
    }
    let mut edges: BTreeMap<&str, Vec<WaitFor>> = BTreeMap::new();
    for resource in resources {
        for waiter in resource.live.iter().filter(|p| p.role == Role::Waiting) {
            let lock = (resource.name.as_str(), waiter.key.as_deref());
            for held in holders.get(&lock).into_iter().flatten() {
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
        let mut path = Vec::new();
        search(start, start, &edges, &mut path, &mut found, &mut deadlocks);
    }
    deadlocks
}

/// Depth-first search for cycles through `start` whose other members all
/// sort after it (so each cycle is found once, from its smallest member).
fn search(
    start: &str,
    at: &str,
    edges: &BTreeMap<&str, Vec<WaitFor>>,
    path: &mut Vec<WaitFor>,
    found: &mut BTreeSet<Vec<(String, String)>>,
    deadlocks: &mut Vec<Deadlock>,
) {
    for wait in edges.get(at).into_iter().flatten() {
        if wait.holder == start {
            let mut cycle = path.clone();
            cycle.push(wait.clone());
            let signature = cycle
                .iter()
                .map(|wait| (wait.waiter.clone(), wait.holder.clone()))
                .collect();
            if found.insert(signature) {
                deadlocks.push(Deadlock { cycle });
            }
        } else if wait.holder.as_str() > start
            && !path.iter().any(|step| step.waiter == wait.holder)
        {
            path.push(wait.clone());
            search(start, &wait.holder, edges, path, found, deadlocks);
            path.pop();
        }
    }
}
