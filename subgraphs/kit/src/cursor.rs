//! Opaque Relay cursors. A cursor wraps the UUIDv7 id of the last item seen (ids sort by
//! creation time), so pages stay stable while new items arrive; clients must treat it as
//! an opaque string.
//!
//! Every connection field carries [`list_size`], federation v2.9's `@listSize`, as
//! `@listSize(slicingArguments: ["first"], sizedFields: ["edges"])`, so the gateway's cost
//! estimate knows a page holds `first` edges.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

use crate::error::ApiError;

const PREFIX: &str = "gc1:";
/// The page size when a client does not say.
pub const DEFAULT_PAGE: i32 = 20;
/// The largest page a client may ask for.
pub const MAX_PAGE: i32 = 100;

/// Federation v2.9's `@listSize`: how many items a list field returns, for the gateway's
/// cost estimate. graphql-composition composes it into the supergraph as it is.
#[async_graphql::TypeDirective(name = "listSize", location = "FieldDefinition")]
pub fn list_size(
    assumed_size: Option<i32>,
    slicing_arguments: Option<Vec<String>>,
    sized_fields: Option<Vec<String>>,
    require_one_slicing_argument: Option<bool>,
) {
}

pub fn encode(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{PREFIX}{id}"))
}

/// Decodes `after`; anything that is not a cursor this server made is `BAD_USER_INPUT`.
pub fn decode(cursor: &str) -> Result<Uuid, ApiError> {
    let invalid = || ApiError::bad_input("after", "`after` is not a valid cursor");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
    let id = text.strip_prefix(PREFIX).ok_or_else(invalid)?;
    Uuid::parse_str(id).map_err(|_| invalid())
}

/// Checks `first` is within 1..=100 and returns it as a row count.
pub fn page_size(first: i32) -> Result<u64, ApiError> {
    if (1..=MAX_PAGE).contains(&first) {
        Ok(first as u64)
    } else {
        Err(ApiError::bad_input(
            "first",
            format!("`first` must be between 1 and {MAX_PAGE}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips() {
        let id = Uuid::now_v7();
        assert_eq!(decode(&encode(id)).expect("valid"), id);
    }

    #[test]
    fn a_foreign_string_is_not_a_cursor() {
        assert!(decode("hello").is_err());
        assert!(decode(&URL_SAFE_NO_PAD.encode("gc1:not-a-uuid")).is_err());
    }

    #[test]
    fn first_outside_one_to_a_hundred_is_rejected() {
        assert!(page_size(0).is_err());
        assert!(page_size(101).is_err());
        assert_eq!(page_size(100).expect("in range"), 100);
    }
}
