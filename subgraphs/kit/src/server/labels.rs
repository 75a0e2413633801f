//! Metric label values that come from clients (operation and client names), bounded: each
//! distinct label value is a time series in every scraper, so a client inventing names must
//! not be able to grow them without end.

use std::collections::HashSet;
use std::sync::{PoisonError, RwLock};

/// The label value of every name past the cap, or not fit to be a label.
pub const OTHER: &str = "other";
/// The longest name kept as a label value.
const MAX_LEN: usize = 64;

/// The first `cap` distinct names seen keep their own label value; later ones share
/// [`OTHER`].
#[derive(Debug)]
pub struct BoundedLabels {
    cap: usize,
    seen: RwLock<HashSet<String>>,
}

impl BoundedLabels {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            seen: RwLock::new(HashSet::new()),
        }
    }

    /// The label value for `name`: itself while it fits the cap, else [`OTHER`]. An empty
    /// name (none given) stays empty.
    pub fn label(&self, name: &str) -> String {
        if name.is_empty() {
            return String::new();
        }
        if !is_label_safe(name) {
            return OTHER.to_owned();
        }
        if self
            .seen
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(name)
        {
            return name.to_owned();
        }
        let mut seen = self.seen.write().unwrap_or_else(PoisonError::into_inner);
        if seen.contains(name) || seen.len() < self.cap {
            seen.insert(name.to_owned());
            name.to_owned()
        } else {
            OTHER.to_owned()
        }
    }
}

/// Short, printable, and free of what would need escaping in a label or a log line.
fn is_label_safe(name: &str) -> bool {
    name.len() <= MAX_LEN
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'-' | b'.' | b':' | b'/' | b'@' | b' ' | b'(' | b')'
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_past_the_cap_are_folded_into_other() {
        let labels = BoundedLabels::new(2);
        assert_eq!(labels.label("web"), "web");
        assert_eq!(labels.label("ios"), "ios");
        assert_eq!(labels.label("android"), OTHER);
        assert_eq!(
            labels.label("web"),
            "web",
            "a name already seen keeps its label"
        );
    }

    #[test]
    fn odd_or_long_names_are_other_and_no_name_stays_empty() {
        let labels = BoundedLabels::new(10);
        assert_eq!(labels.label("a\"b"), OTHER);
        assert_eq!(labels.label(&"x".repeat(65)), OTHER);
        assert_eq!(labels.label(""), "");
    }
}
