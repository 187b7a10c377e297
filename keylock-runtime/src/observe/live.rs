//! The live view: who holds and who waits for each lock right now, where
//! from, on which thread or task, and for how long. Opt-in
//! ([`RegistryBuilder::track_holders`](crate::RegistryBuilder::track_holders)):
//! it records every acquisition in a table, which costs a mutex and an
//! allocation per call.

use std::collections::{HashMap, VecDeque};
use std::panic::Location;

use std::time::{Duration, Instant};

use crate::access::Access;
use crate::sync::{self, AtomicU64, Mutex, Ordering};

/// Whether a participant holds a lock or waits for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Role {
    /// Holds the lock.
    Holding,
    /// Is queued for the lock.
    Waiting,
}

/// One holder or waiter of a lock, as of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Participant {
    /// Holding or waiting.
    pub role: Role,
    /// The key, in its `Debug` form, for keyed locks.
    pub key: Option<String>,
    /// Read or write.
    pub access: Access,
    /// Where the acquisition was made: the annotated function, or the call
    /// of the runtime API, as `file:line:column`.
    pub location: String,
    /// The thread that acquired (its name, or its id).
    pub thread: String,
    /// The Tokio task that acquired, if any.
    pub task: Option<String>,
    /// Who acquired, unique among current participants: `task <id>` inside
    /// a Tokio task, else `thread <ThreadId>`.
    pub holder: String,
    /// Identifies the lock among current participants (two keys whose
    /// `Debug` forms are equal are still two locks).
    pub lock: u64,
    /// How long it has held or waited so far.
    pub duration: Duration,
}

/// What a recent operation was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum OperationKind {
    /// The lock was acquired; `took` is how long it waited, if it queued.
    Acquired,
    /// The lock was released; `took` is how long it was held.
    Released,
    /// A waiting acquisition gave up; `took` is how long it waited.
    TimedOut,
    /// A non-waiting acquisition found the lock held.
    Busy,
}

/// One of a resource's most recent operations.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Operation {
    /// What happened.
    pub kind: OperationKind,
    /// The key, in its `Debug` form, for keyed locks.
    pub key: Option<String>,
    /// Read or write.
    pub access: Access,
    /// Where the acquisition was made, as `file:line:column`.
    pub location: String,
    /// The thread it happened on.
    pub thread: String,
    /// How long ago it happened, as of the snapshot.
    pub ago: Duration,
    /// How long it waited or held, where that applies.
    pub took: Option<Duration>,
}

/// How many recent operations each resource keeps.
pub const RECENT_OPERATIONS: usize = 64;

struct Logged {
    kind: OperationKind,
    key: Option<String>,
    access: Access,
    location: &'static Location<'static>,
    thread: String,
    at: Instant,
    took: Option<Duration>,
}

fn thread_name() -> String {
    let thread = std::thread::current();
    match thread.name() {
        Some(name) => name.to_owned(),
        None => format!("{:?}", thread.id()),
    }
}

struct Record {
    role: Role,
    key: Option<String>,
    access: Access,
    location: &'static Location<'static>,
    thread: String,
    task: Option<String>,
    holder: String,
    lock: u64,
    since: Instant,
}

/// The participants of one resource.
#[derive(Default)]
pub(crate) struct LiveTable {
    next: AtomicU64,
    records: Mutex<HashMap<u64, Record>>,
    recent: Mutex<VecDeque<Logged>>,
}

impl LiveTable {
    /// Adds a participant; returns the id to remove it with.
    pub(crate) fn enter(
        &self,
        role: Role,
        lock: u64,
        key: Option<String>,
        access: Access,
        location: &'static Location<'static>,
    ) -> u64 {
        let thread = thread_name();
        let task = tokio::task::try_id().map(|id| id.to_string());
        let holder = match &task {
            Some(task) => format!("task {task}"),
            None => format!("thread {:?}", std::thread::current().id()),
        };
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let record = Record {
            role,
            key,
            access,
            location,
            thread,
            task,
            holder,
            lock,
            since: Instant::now(),
        };
        sync::lock(&self.records).insert(id, record);
        id
    }

    /// Removes a participant; a holder's leaving is logged as a release.
    pub(crate) fn leave(&self, id: u64) {
        let record = sync::lock(&self.records).remove(&id);
        if let Some(record) = record.filter(|record| record.role == Role::Holding) {
            self.push(Logged {
                kind: OperationKind::Released,
                key: record.key,
                access: record.access,
                location: record.location,
                thread: thread_name(),
                at: Instant::now(),
                took: Some(record.since.elapsed()),
            });
        }
    }

    /// Logs an operation, forgetting the oldest beyond
    /// [`RECENT_OPERATIONS`].
    pub(crate) fn log(
        &self,
        kind: OperationKind,
        key: Option<String>,
        access: Access,
        location: &'static Location<'static>,
        took: Option<Duration>,
    ) {
        self.push(Logged {
            kind,
            key,
            access,
            location,
            thread: thread_name(),
            at: Instant::now(),
            took,
        });
    }

    fn push(&self, logged: Logged) {
        let mut recent = sync::lock(&self.recent);
        if recent.len() == RECENT_OPERATIONS {
            recent.pop_front();
        }
        recent.push_back(logged);
    }

    /// The recent operations, newest first.
    pub(crate) fn recent(&self) -> Vec<Operation> {
        let now = Instant::now();
        sync::lock(&self.recent)
            .iter()
            .rev()
            .map(|logged| Operation {
                kind: logged.kind,
                key: logged.key.clone(),
                access: logged.access,
                location: logged.location.to_string(),
                thread: logged.thread.clone(),
                ago: now.saturating_duration_since(logged.at),
                took: logged.took,
            })
            .collect()
    }

    /// Everyone right now, holders first, longest first.
    pub(crate) fn snapshot(&self) -> Vec<Participant> {
        let records = sync::lock(&self.records);
        let mut participants: Vec<Participant> = records
            .values()
            .map(|record| Participant {
                role: record.role,
                key: record.key.clone(),
                access: record.access,
                location: record.location.to_string(),
                thread: record.thread.clone(),
                task: record.task.clone(),
                holder: record.holder.clone(),
                lock: record.lock,
                duration: record.since.elapsed(),
            })
            .collect();
        drop(records);
        participants.sort_by(|a, b| {
            (a.role == Role::Waiting)
                .cmp(&(b.role == Role::Waiting))
                .then(b.duration.cmp(&a.duration))
        });
        participants
    }
}
