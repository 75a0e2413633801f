//! Seeded time. The plan places every row at a number of milliseconds before an anchor
//! instant; only the writer turns that into wall-clock time, so the same plan lands on the
//! same timestamps (and the same UUIDv7 ids) whenever the anchor is the same. The anchor is
//! the time of the first run for a seed, recovered from its first user on later runs.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// One day in milliseconds.
pub const DAY_MS: u64 = 24 * 60 * 60 * 1000;
/// Posts, comments, likes and follows happen within this many days before the anchor.
pub const ACTIVITY_DAYS: u64 = 90;
/// Seeded accounts are created in the days before the activity window starts.
pub const SIGNUP_DAYS: u64 = 60;

/// Milliseconds before the anchor: a bigger offset is further in the past.
pub type Offset = u64;

/// The random 74 bits of a UUIDv7 (the rest is its millisecond timestamp and version).
pub type IdBits = [u8; 10];

/// The instant the whole seeded timeline ends at, in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor(i64);

impl Anchor {
    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis())
    }

    pub fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// The anchor that puts a row planned at `offset` at `at`.
    pub fn recover(at: DateTime<Utc>, offset: Offset) -> Self {
        Self(at.timestamp_millis().saturating_add(signed(offset)))
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn at(self, offset: Offset) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.unix_millis(offset)).unwrap_or_default()
    }

    /// A UUIDv7 whose timestamp is exactly [`Anchor::at`]`(offset)`, so ordering by id is
    /// ordering by time. Rows in the same millisecond are ordered by their random bits,
    /// as `Uuid::now_v7` orders them without a counter.
    pub fn id(self, offset: Offset, bits: &IdBits) -> Uuid {
        let millis = u64::try_from(self.unix_millis(offset)).unwrap_or_default();
        uuid::Builder::from_unix_timestamp_millis(millis, bits).into_uuid()
    }

    fn unix_millis(self, offset: Offset) -> i64 {
        self.0.saturating_sub(signed(offset))
    }
}

fn signed(offset: Offset) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_carries_the_millisecond_of_its_timestamp() {
        let anchor = Anchor::from_millis(1_780_000_000_123);
        let id = anchor.id(5_000, &[7; 10]);
        assert_eq!(id.get_version_num(), 7);
        let (secs, nanos) = id.get_timestamp().expect("v7 has a timestamp").to_unix();
        let at = anchor.at(5_000);
        assert_eq!(secs, u64::try_from(at.timestamp()).expect("after 1970"));
        assert_eq!(nanos, at.timestamp_subsec_nanos());
    }

    #[test]
    fn ordering_by_id_is_ordering_by_time() {
        let anchor = Anchor::from_millis(1_780_000_000_000);
        let older = anchor.id(2, &[0xff; 10]);
        let newer = anchor.id(1, &[0; 10]);
        assert!(older < newer);
        assert!(anchor.at(2) < anchor.at(1));
    }

    #[test]
    fn the_anchor_is_recovered_from_any_planned_row() {
        let anchor = Anchor::from_millis(1_780_000_000_456);
        let offset = 123 * DAY_MS + 789;
        assert_eq!(Anchor::recover(anchor.at(offset), offset), anchor);
    }
}
