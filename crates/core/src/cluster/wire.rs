//! The metadata every kind is read with, off the wire: a leaf the wire types of every kind
//! share (`objects.rs`, `nodes.rs`, `kubevirt.rs`), depending on none of them.

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

/// The metadata every kind keeps, as read off the wire. `L` and `A` are what is read of the
/// labels and annotations: by default nothing, skipped without being copied.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta<L = Skipped, A = Skipped> {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    /// Needed by the watch to resume where it left off; not stored in the view.
    #[serde(default)]
    pub resource_version: Option<String>,
    /// Set while finalizers hold an object that is being deleted.
    #[serde(default, deserialize_with = "present")]
    pub deletion_timestamp: bool,
    #[serde(default)]
    pub labels: L,
    #[serde(default)]
    pub annotations: A,
}

/// A field read past without keeping (or allocating) any of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Skipped;

impl<'de> Deserialize<'de> for Skipped {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| Skipped)
    }
}

/// Name, namespace and resourceVersion of an object, whatever else its metadata kept.
#[derive(Debug, Clone, Copy)]
pub struct MetaRef<'a> {
    pub name: &'a str,
    pub namespace: Option<&'a str>,
    pub resource_version: Option<&'a str>,
}

impl<L, A> Meta<L, A> {
    pub fn as_ref(&self) -> MetaRef<'_> {
        MetaRef {
            name: &self.name,
            namespace: self.namespace.as_deref(),
            resource_version: self.resource_version.as_deref(),
        }
    }
}

/// Whether an optional field is there, its content skipped.
pub(super) fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Option::<IgnoredAny>::deserialize(deserializer).map(|value| value.is_some())
}
