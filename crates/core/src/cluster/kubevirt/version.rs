//! KubeVirt's version as `status.observedKubeVirtVersion` reports it: the operator's image tag.
//!
//! A plain release tag (`v1.4.1`) is one release. Anything else that starts with one (a release
//! candidate `v1.5.0-rc.1`, a vendor rebuild `1.4.0-150600.5.9.1`, `git describe` output) may hold
//! any change merged since the previous minor release, so it stands for a range of releases. A
//! tag that starts with no `X.Y.Z` (`latest`, a digest) is no version at all.

use std::cmp::Ordering;
use std::fmt;

use compact_str::CompactString;

/// `X.Y.Z` and whatever follows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KubeVirtVersion {
    major: u32,
    minor: u32,
    patch: u32,
    /// Text after `X.Y.Z` (`-rc.1`, `+build`), without the separator. `None` for a release.
    suffix: Option<CompactString>,
}

impl KubeVirtVersion {
    /// A release, as the tables of what changed when are written.
    pub const fn release(major: u32, minor: u32, patch: u32) -> Self {
        KubeVirtVersion {
            major,
            minor,
            patch,
            suffix: None,
        }
    }

    /// `v1.4.1`, `1.4.1`, `v1.5.0-rc.1`, `1.4.0+abc`; `None` for anything without three numbers.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
        let end = text.find(['-', '+']).unwrap_or(text.len());
        let (numbers, rest) = text.split_at(end);
        let mut parts = numbers.split('.');
        let mut number = || -> Option<u32> {
            let part = parts.next()?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let (major, minor, patch) = (number()?, number()?, number()?);
        if parts.next().is_some() {
            return None;
        }
        let suffix = match rest.get(1..) {
            None => None,
            Some("") => return None,
            Some(suffix) => Some(CompactString::from(suffix)),
        };
        Some(KubeVirtVersion {
            major,
            minor,
            patch,
            suffix,
        })
    }

    pub fn major(&self) -> u32 {
        self.major
    }

    pub fn minor(&self) -> u32 {
        self.minor
    }

    pub fn patch(&self) -> u32 {
        self.patch
    }

    /// A plain release tag: exactly one release's code.
    pub fn is_release(&self) -> bool {
        self.suffix.is_none()
    }

    /// The releases whose code this build may carry: itself for a release; for anything else,
    /// from the previous minor's `.0` up to its own `X.Y.Z` (a pre-release of X.Y.Z branched
    /// after X.(Y-1).0 and may hold any change since).
    pub fn release_range(&self) -> (KubeVirtVersion, KubeVirtVersion) {
        let own = KubeVirtVersion::release(self.major, self.minor, self.patch);
        if self.is_release() {
            return (own.clone(), own);
        }
        let low = match (self.major, self.minor) {
            (major, 0) if major > 0 => KubeVirtVersion::release(major - 1, 0, 0),
            (0, 0) => KubeVirtVersion::release(0, 0, 0),
            (major, minor) => KubeVirtVersion::release(major, minor - 1, 0),
        };
        (low, own)
    }

    /// Whether this is `release` or later: `None` when the build's range straddles it.
    pub fn at_least(&self, release: &KubeVirtVersion) -> Option<bool> {
        let (low, high) = self.release_range();
        if low >= *release {
            Some(true)
        } else if high < *release {
            Some(false)
        } else {
            None
        }
    }
}

/// By `X.Y.Z`, then a build with a suffix before the release itself; two suffixes compare as
/// text (enough to sort; decisions use [`KubeVirtVersion::at_least`], which never guesses).
impl Ord for KubeVirtVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (&self.suffix, &other.suffix) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(b),
            })
    }
}

impl PartialOrd for KubeVirtVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for KubeVirtVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)?;
        match &self.suffix {
            Some(suffix) => write!(f, "-{suffix}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> KubeVirtVersion {
        KubeVirtVersion::parse(text).unwrap_or_else(|| panic!("{text}"))
    }

    #[test]
    fn parses_release_tags_with_or_without_v() {
        assert_eq!(v("v1.4.1"), KubeVirtVersion::release(1, 4, 1));
        assert_eq!(v("1.4.1"), KubeVirtVersion::release(1, 4, 1));
        assert!(v("v1.4.1").is_release());
        assert_eq!(v(" v1.10.0 ").to_string(), "v1.10.0");
    }

    #[test]
    fn anything_without_three_numbers_is_no_version() {
        for text in [
            "",
            "latest",
            "v1.4",
            "1.4.x",
            "v1..2",
            "sha256:abc",
            "v1.4.1.2",
            "v1.4.1-",
            "-1.2.3",
            "v1.4.99999999999",
        ] {
            assert_eq!(KubeVirtVersion::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn suffixed_builds_are_ranges_not_guesses() {
        let rc = v("v1.5.0-rc.1");
        assert!(!rc.is_release());
        assert_eq!(rc.to_string(), "v1.5.0-rc.1");
        assert_eq!(
            rc.release_range(),
            (
                KubeVirtVersion::release(1, 4, 0),
                KubeVirtVersion::release(1, 5, 0)
            )
        );
        // GA in 1.5.0: an rc of 1.5.0 may or may not have it.
        assert_eq!(rc.at_least(&KubeVirtVersion::release(1, 5, 0)), None);
        assert_eq!(rc.at_least(&KubeVirtVersion::release(1, 4, 0)), Some(true));
        assert_eq!(rc.at_least(&KubeVirtVersion::release(1, 6, 0)), Some(false));
        let vendor = v("1.4.0-150600.5.9.1");
        assert_eq!(
            vendor.at_least(&KubeVirtVersion::release(1, 5, 0)),
            Some(false)
        );
        assert_eq!(
            v("v2.0.0-alpha.0").release_range().0,
            KubeVirtVersion::release(1, 0, 0)
        );
    }

    #[test]
    fn releases_answer_exactly() {
        let release = v("v1.5.0");
        assert_eq!(
            release.at_least(&KubeVirtVersion::release(1, 5, 0)),
            Some(true)
        );
        assert_eq!(
            v("v1.4.1").at_least(&KubeVirtVersion::release(1, 5, 0)),
            Some(false)
        );
    }

    #[test]
    fn orders_numerically_and_pre_releases_first() {
        assert!(v("v1.10.0") > v("v1.9.3"));
        assert!(v("v1.5.0-rc.1") < v("v1.5.0"));
        assert!(v("v1.5.0-rc.1") > v("v1.4.9"));
        assert!(v("v1.5.0-rc.2") > v("v1.5.0-rc.1"));
    }
}
