//! The gateway's own caching policy, combined from the `Cache-Control` hints of every
//! subgraph fetch in the plan: the smallest `max-age`, private if any part is private, and
//! not cacheable at all when any fetch lacks a hint (or says `no-cache`/`no-store`), when
//! the operation is a mutation, or when the response has errors.

/// What may be done with one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePolicy {
    /// Never stored, by us or anyone else.
    NoStore,
    /// Cacheable for `max_age` seconds; `private` ones only per viewer.
    Cacheable { max_age: u64, private: bool },
}

impl CachePolicy {
    /// Combines one hint per fetch; an empty string is a fetch that sent no hint.
    pub fn from_hints<S: AsRef<str>>(hints: &[S]) -> Self {
        if hints.is_empty() {
            return Self::NoStore;
        }
        let mut combined_age = u64::MAX;
        let mut combined_private = false;
        for hint in hints {
            let mut max_age = None;
            for part in hint.as_ref().split(',') {
                let part = part.trim().to_ascii_lowercase();
                if part == "private" {
                    combined_private = true;
                } else if part == "no-cache" || part == "no-store" {
                    return Self::NoStore;
                } else if let Some(age) = part.strip_prefix("max-age=") {
                    match age.trim().parse::<u64>() {
                        Ok(age) => max_age = Some(age),
                        Err(_) => return Self::NoStore,
                    }
                }
            }
            match max_age {
                Some(age) => combined_age = combined_age.min(age),
                None => return Self::NoStore,
            }
        }
        if combined_age == 0 {
            return Self::NoStore;
        }
        Self::Cacheable {
            max_age: combined_age,
            private: combined_private,
        }
    }

    /// The policy of a whole response: mutations and responses with errors are never cached.
    pub fn for_response<S: AsRef<str>>(hints: &[S], is_query: bool, has_errors: bool) -> Self {
        if !is_query || has_errors {
            return Self::NoStore;
        }
        Self::from_hints(hints)
    }

    /// The gateway's `Cache-Control` header value.
    pub fn header_value(&self) -> String {
        match self {
            Self::NoStore => "no-store".into(),
            Self::Cacheable {
                max_age,
                private: false,
            } => format!("public, max-age={max_age}"),
            Self::Cacheable {
                max_age,
                private: true,
            } => format!("private, max-age={max_age}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_max_age_wins() {
        assert_eq!(
            CachePolicy::from_hints(&["max-age=30", "max-age=5"]),
            CachePolicy::Cacheable {
                max_age: 5,
                private: false
            }
        );
    }

    #[test]
    fn one_private_part_makes_the_whole_response_private() {
        let policy = CachePolicy::from_hints(&["max-age=10", "max-age=30, private"]);
        assert_eq!(
            policy,
            CachePolicy::Cacheable {
                max_age: 10,
                private: true
            }
        );
        assert_eq!(policy.header_value(), "private, max-age=10");
    }

    #[test]
    fn a_fetch_without_a_hint_makes_the_response_uncacheable() {
        assert_eq!(
            CachePolicy::from_hints(&["max-age=10", ""]),
            CachePolicy::NoStore
        );
        assert_eq!(CachePolicy::from_hints(&["private"]), CachePolicy::NoStore);
        assert_eq!(CachePolicy::from_hints::<&str>(&[]), CachePolicy::NoStore);
        assert_eq!(CachePolicy::NoStore.header_value(), "no-store");
    }

    #[test]
    fn no_cache_from_any_subgraph_wins() {
        assert_eq!(
            CachePolicy::from_hints(&["max-age=10", "no-cache, private"]),
            CachePolicy::NoStore
        );
    }

    #[test]
    fn mutations_and_errors_are_never_cached() {
        assert_eq!(
            CachePolicy::for_response(&["max-age=10"], false, false),
            CachePolicy::NoStore
        );
        assert_eq!(
            CachePolicy::for_response(&["max-age=10"], true, true),
            CachePolicy::NoStore
        );
        assert_eq!(
            CachePolicy::for_response(&["max-age=10"], true, false).header_value(),
            "public, max-age=10"
        );
    }
}
