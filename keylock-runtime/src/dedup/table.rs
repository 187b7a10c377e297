//! The open-addressing table a dedup scope keeps its keys in.
//!
//! One bucket per key, the key stored in it (a `u64` id inline, a `String`
//! as its usual pointer), found by linear probing. Beside each bucket sit
//! 32 bits of the key's hash: they reject almost every wrong bucket without
//! comparing keys, and they say where each key belongs, so growing the
//! table and closing the gap a removal leaves (backward shift, no
//! tombstones) never run a key's `Hash`. The table therefore never needs
//! rebuilding to clear tombstones, and its size follows the keys it holds:
//! 20 bytes per bucket for `u64` keys, about 34 per key at the planned
//! load, with no doubling past what the scope's capacity needs.

use std::num::NonZeroU64;

/// Sequence numbers from here on are claims (keys whose first call still
/// runs); below it, commits.
pub(super) const FIRST_CLAIM: u64 = 1 << 63;

/// The most buckets a table has: homes are computed from 32 hash bits.
const MAX_BUCKETS: usize = u32::MAX as usize;

/// A key and what the scope knows of it.
pub(super) struct Slot<K> {
    pub(super) key: K,
    /// The claim holding the key (from [`FIRST_CLAIM`] on), or the commit
    /// remembering it (a position in the scope's commit order). Unique, so
    /// a claim or commit finds its own slot without comparing keys.
    pub(super) seq: NonZeroU64,
}

impl<K> Slot<K> {
    pub(super) fn in_flight(&self) -> bool {
        self.seq.get() >= FIRST_CLAIM
    }
}

/// The 32 hash bits a table keeps per key; never zero, which marks an
/// empty bucket.
pub(super) fn short_hash(hash: u64) -> u32 {
    // The high half: foldhash mixes it best. Bit 0 is given up for the
    // empty marker.
    ((hash >> 32) as u32) | 1
}

pub(super) struct Table<K> {
    /// Per bucket: 0 when empty, else the key's [`short_hash`].
    hashes: Vec<u32>,
    slots: Vec<Option<Slot<K>>>,
    len: usize,
    /// Growth stops doubling here: the buckets `capacity` keys need.
    planned: usize,
}

/// Buckets for `keys` keys at a load of 0.6, where a miss probes about
/// three buckets past its home and a table takes about 33 bytes per `u64`
/// key.
fn buckets_for(keys: usize) -> usize {
    keys.saturating_mul(5) / 3 + 1
}

impl<K> Table<K> {
    /// An empty table that will hold about `capacity` keys (allocated as
    /// keys arrive).
    pub(super) fn new(capacity: usize) -> Self {
        Table {
            hashes: Vec::new(),
            slots: Vec::new(),
            len: 0,
            planned: buckets_for(capacity.saturating_add(16)).min(MAX_BUCKETS),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Bytes held on the heap by the table itself (keys' own allocations
    /// not counted).
    #[cfg(test)]
    pub(super) fn heap_bytes(&self) -> usize {
        self.hashes.capacity() * std::mem::size_of::<u32>()
            + self.slots.capacity() * std::mem::size_of::<Option<Slot<K>>>()
    }

    /// Where a key of short hash `hash` belongs: the hash scaled to the
    /// table, which works for any number of buckets.
    fn home(&self, hash: u32) -> usize {
        ((u64::from(hash) * self.hashes.len() as u64) >> 32) as usize
    }

    /// How many steps a probe takes from bucket `from` to bucket `to`.
    fn distance(&self, from: usize, to: usize) -> usize {
        if to >= from {
            to - from
        } else {
            to + self.hashes.len() - from
        }
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 == self.hashes.len() {
            0
        } else {
            i + 1
        }
    }

    /// The bucket of the key with short hash `hash` for which `eq` holds.
    pub(super) fn find(&self, hash: u32, mut eq: impl FnMut(&Slot<K>) -> bool) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let mut i = self.home(hash);
        loop {
            match self.hashes[i] {
                0 => return None,
                h if h == hash => {
                    if let Some(slot) = &self.slots[i] {
                        if eq(slot) {
                            return Some(i);
                        }
                    }
                }
                _ => {}
            }
            i = self.next(i);
        }
    }

    pub(super) fn get(&self, i: usize) -> Option<&Slot<K>> {
        self.slots.get(i)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, i: usize) -> Option<&mut Slot<K>> {
        self.slots.get_mut(i)?.as_mut()
    }

    /// Adds a key that is not in the table.
    pub(super) fn insert(&mut self, hash: u32, slot: Slot<K>) {
        self.reserve_one();
        let mut i = self.home(hash);
        while self.hashes[i] != 0 {
            i = self.next(i);
        }
        self.hashes[i] = hash;
        self.slots[i] = Some(slot);
        self.len += 1;
    }

    /// Takes the key out of bucket `i`, moving later keys of its run back
    /// so that every key stays reachable from its home.
    pub(super) fn remove(&mut self, i: usize) -> Option<Slot<K>> {
        let removed = self.slots.get_mut(i)?.take()?;
        self.hashes[i] = 0;
        self.len -= 1;
        let mut hole = i;
        let mut next = self.next(hole);
        while self.hashes[next] != 0 {
            let hash = self.hashes[next];
            // The key may move into the hole if the hole lies between its
            // home and where it sits.
            if self.distance(self.home(hash), next) >= self.distance(hole, next) {
                self.hashes[hole] = hash;
                self.hashes[next] = 0;
                self.slots.swap(hole, next);
                hole = next;
            }
            next = self.next(next);
        }
        Some(removed)
    }

    /// Makes room for one more key, keeping the load at most 0.8 so that a
    /// probe always meets an empty bucket.
    fn reserve_one(&mut self) {
        let buckets = self.hashes.len();
        let wanted = self.len + 1;
        if wanted.saturating_mul(5) <= buckets.saturating_mul(4) {
            return;
        }
        // Double up to the planned size, then grow by a quarter (only
        // calls in flight take a table past its plan).
        let doubled = buckets.saturating_mul(2).clamp(16, self.planned.max(16));
        let grown = doubled
            .max(buckets + buckets / 4)
            .max(buckets_for(wanted))
            .min(MAX_BUCKETS);
        assert!(
            wanted.saturating_mul(5) <= grown.saturating_mul(4),
            "a dedup scope cannot hold more than {} keys",
            MAX_BUCKETS / 5 * 4
        );
        let hashes = std::mem::replace(&mut self.hashes, vec![0; grown]);
        let mut slots = std::mem::take(&mut self.slots);
        self.slots.resize_with(grown, || None);
        for (hash, slot) in hashes.into_iter().zip(slots.drain(..)) {
            if let Some(slot) = slot {
                let mut i = self.home(hash);
                while self.hashes[i] != 0 {
                    i = self.next(i);
                }
                self.hashes[i] = hash;
                self.slots[i] = Some(slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(key: u64) -> Slot<u64> {
        Slot {
            key,
            seq: NonZeroU64::MAX,
        }
    }

    /// Every key is reachable from its home through occupied buckets.
    fn check(table: &Table<u64>) {
        let mut count = 0;
        for (i, hash) in table.hashes.iter().enumerate() {
            if *hash == 0 {
                assert!(table.slots[i].is_none());
                continue;
            }
            count += 1;
            let key = table.slots[i].as_ref().unwrap().key;
            assert_eq!(table.find(*hash, |s| s.key == key), Some(i));
        }
        assert_eq!(count, table.len());
    }

    #[test]
    fn colliding_keys_survive_removals_in_any_order() {
        let mut table = Table::new(100);
        // Four short hashes, so that runs are long; the last one's home is
        // the last bucket, so its run wraps around.
        let hash = |key: u64| [1, 0x4000_0001, 0x8000_0001, u32::MAX][(key % 4) as usize];
        for key in 0..40 {
            table.insert(hash(key), slot(key));
        }
        check(&table);
        for key in (0..40).step_by(3).chain((1..40).step_by(3)) {
            let i = table.find(hash(key), |s| s.key == key).unwrap();
            assert_eq!(table.remove(i).unwrap().key, key);
            check(&table);
            assert_eq!(table.find(hash(key), |s| s.key == key), None);
        }
        assert_eq!(table.len(), 40 - 27);
    }

    #[test]
    fn growth_stops_at_the_planned_size() {
        let mut table = Table::new(1_000);
        let hasher = foldhash::fast::FixedState::with_seed(1);
        let hash = |key: u64| short_hash(std::hash::BuildHasher::hash_one(&hasher, key));
        for key in 0..1_000 {
            table.insert(hash(key), slot(key));
        }
        let buckets = table.hashes.len();
        // Churn at the capacity: no tombstones, so no growth.
        for key in 1_000..100_000u64 {
            let old = key - 1_000;
            let i = table.find(hash(old), |s| s.key == old).unwrap();
            table.remove(i);
            table.insert(hash(key), slot(key));
        }
        assert_eq!(table.hashes.len(), buckets);
        check(&table);
        // About 34 bytes per key: 20 per bucket at a load near 0.6.
        assert!(table.heap_bytes() <= 1_000 * 36, "{}", table.heap_bytes());
    }
}
