//! Support for the code that keylock's attributes generate.
//!
//! **Not a stable API.** Everything here may change in any release; use
//! the documented types instead.

use std::any::Any;
use std::sync::OnceLock;

use crate::key::Key;
use crate::keyed::Keyed;
use crate::registry::Registry;
use crate::resource::Resource;

pub use crate::key::{KeyProbe, KeyProbeRef, KeyProbeValue, LockKey};

/// A per-call-site cache of the resource handle, so that an annotated
/// function never looks its resource up by name after the first call.
///
/// The cache remembers the first registry and key type it saw; calls with
/// another registry (`registry = ...` evaluated per call) or another key
/// type (a generic function) take the uncached path.
pub struct SiteCache {
    cell: OnceLock<(u64, Box<dyn Any + Send + Sync>)>,
}

impl SiteCache {
    /// An empty cache, for a `static`.
    pub const fn new() -> Self {
        SiteCache {
            cell: OnceLock::new(),
        }
    }

    /// Runs `f` with the named resource.
    pub fn resource<R>(
        &self,
        registry: &Registry,
        name: &str,
        f: impl FnOnce(&Resource) -> R,
    ) -> R {
        let (id, cached) = self
            .cell
            .get_or_init(|| (registry.id(), Box::new(registry.resource(name))));
        match cached.downcast_ref::<Resource>() {
            Some(resource) if *id == registry.id() => f(resource),
            _ => f(&registry.resource(name)),
        }
    }

    /// Runs `f` with the keyed locks of the named resource for key type `K`.
    pub fn keyed<K: Key, R>(
        &self,
        registry: &Registry,
        name: &str,
        f: impl FnOnce(&Keyed<K>) -> R,
    ) -> R {
        let (id, cached) = self
            .cell
            .get_or_init(|| (registry.id(), Box::new(registry.keyed::<K>(name))));
        match cached.downcast_ref::<Keyed<K>>() {
            Some(keyed) if *id == registry.id() => f(keyed),
            _ => f(&registry.keyed::<K>(name)),
        }
    }
}

impl Default for SiteCache {
    fn default() -> Self {
        SiteCache::new()
    }
}
