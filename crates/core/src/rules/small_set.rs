//! A set for the short lists of one VM (disks, volumes, networks, boot orders).
//!
//! Those lists hold a handful of items, where scanning a few entries kept inline beats hashing
//! (nothing to allocate, nothing to hash): the rules run on every admission request. Past
//! [`SCAN_UP_TO`] entries the set switches to hashing, so a VM with thousands of items still
//! costs linear time, not quadratic.

use std::hash::Hash;

use foldhash::HashSet;
use smallvec::SmallVec;

/// Entries kept in a plain list (inline, in the set itself); one more and the set hashes.
pub const SCAN_UP_TO: usize = 16;

#[derive(Debug, Clone)]
pub enum SmallSet<T> {
    Scanned(SmallVec<[T; SCAN_UP_TO]>),
    Hashed(HashSet<T>),
}

impl<T: Eq + Hash> Default for SmallSet<T> {
    fn default() -> Self {
        SmallSet::Scanned(SmallVec::new())
    }
}

impl<T: Eq + Hash> SmallSet<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value`; `false` if it was already there (as `HashSet::insert`).
    pub fn insert(&mut self, value: T) -> bool {
        match self {
            SmallSet::Hashed(set) => set.insert(value),
            SmallSet::Scanned(items) => {
                if items.contains(&value) {
                    return false;
                }
                if items.len() < SCAN_UP_TO {
                    items.push(value);
                } else {
                    let mut set: HashSet<T> = std::mem::take(items).into_iter().collect();
                    set.insert(value);
                    *self = SmallSet::Hashed(set);
                }
                true
            }
        }
    }

    pub fn contains<Q>(&self, value: &Q) -> bool
    where
        T: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        match self {
            SmallSet::Scanned(items) => items.iter().any(|item| item.borrow() == value),
            SmallSet::Hashed(set) => set.contains(value),
        }
    }
}

impl<T: Eq + Hash> FromIterator<T> for SmallSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut set = SmallSet::new();
        for value in iter {
            set.insert(value);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_alike_before_and_after_it_starts_hashing() {
        let mut set = SmallSet::new();
        for i in 0..=SCAN_UP_TO * 2 {
            assert!(set.insert(i), "{i} is new");
            assert!(!set.insert(i), "{i} is there");
            assert!(matches!(set, SmallSet::Scanned(_)) == (i < SCAN_UP_TO));
            assert!((0..=i).all(|j| set.contains(&j)));
            assert!(!set.contains(&(i + 1)));
        }
    }

    #[test]
    fn names_are_looked_up_by_str() {
        let set: SmallSet<&str> = ["root", "cloudinit", "root"].into_iter().collect();
        assert!(set.contains("root") && set.contains("cloudinit") && !set.contains("data"));
    }
}
