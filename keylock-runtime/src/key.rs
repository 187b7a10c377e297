//! What can be a lock key, and how a borrowed key is looked up without
//! allocating.

use std::borrow::Borrow;
use std::fmt::Debug;
use std::hash::Hash;

/// An owned key stored in a keyed resource.
///
/// Implemented for every `Hash + Eq + Clone + Debug + Send + Sync + 'static`
/// type: integers, `String`, tuples, your own `#[derive(Clone, Debug,
/// PartialEq, Eq, Hash)]` ids. Two keys share a lock only when they are equal;
/// keys are never hashed down to a number.
pub trait Key: Hash + Eq + Clone + Debug + Send + Sync + 'static {}

impl<T: Hash + Eq + Clone + Debug + Send + Sync + 'static> Key for T {}

/// A key as it is looked up: either an owned [`Key`] or a borrowed form of
/// one (`str` for `String`, `[T]` for `Vec<T>`).
///
/// Looking up a key that is present never allocates; the owned key is built
/// only when a new entry is created.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as a lock key",
    label = "not usable as a lock key",
    note = "a key must be `Hash + Eq + Clone + Debug + Send + Sync + 'static`, or `str` / `[T]` looked up by reference"
)]
pub trait LockKey: Hash + Eq + Debug {
    /// The owned form stored in the registry.
    type Owned: Key + Borrow<Self>;

    /// Builds the owned form; called only when the key has no entry yet.
    fn to_owned_key(&self) -> Self::Owned;
}

impl<T: Key> LockKey for T {
    type Owned = T;

    fn to_owned_key(&self) -> T {
        self.clone()
    }
}

impl LockKey for str {
    type Owned = String;

    fn to_owned_key(&self) -> String {
        self.to_owned()
    }
}

impl<T: Key> LockKey for [T] {
    type Owned = Vec<T>;

    fn to_owned_key(&self) -> Vec<T> {
        self.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned<Q: LockKey + ?Sized>(q: &Q) -> Q::Owned {
        q.to_owned_key()
    }

    #[test]
    fn borrowed_forms_own_to_their_stored_type() {
        let s: String = owned("abc");
        assert_eq!(s, "abc");
        let v: Vec<u8> = owned(&[1u8, 2][..]);
        assert_eq!(v, vec![1, 2]);
        assert_eq!(owned(&7u64), 7);
    }
}
