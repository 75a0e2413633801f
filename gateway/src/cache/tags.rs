//! Invalidation tags. Gantry's IDs are UUIDs, unique across every type, so the tag of an
//! entity is its id alone (`<prefix>tag:<uuid>`): a `Type:id` tag would say no more, and a
//! bare id also catches entities the client aliased (`{ pid: id }`), selected without
//! `__typename`, or only named as an argument of a mutation that returns a scalar
//! (`deletePost(id: …)`, `addComment(postId: …)`). So a stored response is tagged with
//! every UUID in its data, its arguments and its variables (`post(id: …) { likeCount }`
//! contains no id, yet `likePost(postId: …)` changes it), and a mutation invalidates every
//! UUID in its arguments, its variables and its result, plus the viewer's own id (private
//! responses carry it).

use std::collections::BTreeSet;

use serde_json::{Map, Value};
use uuid::Uuid;

/// Every UUID an operation names: in its text (inline arguments) and its variables.
pub fn ids_in_operation(query: &str, variables: &Map<String, Value>) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    ids_in_query(query, &mut ids);
    for value in variables.values() {
        ids_in_json(value, &mut ids);
    }
    ids
}

/// Every UUID string anywhere in `value`, lowercased.
pub fn ids_in_json(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => push_if_id(s, out),
        Value::Array(items) => items.iter().for_each(|item| ids_in_json(item, out)),
        Value::Object(fields) => fields.values().for_each(|item| ids_in_json(item, out)),
        _ => {}
    }
}

/// Every quoted UUID in an operation's text (inline arguments).
pub fn ids_in_query(query: &str, out: &mut BTreeSet<String>) {
    query.split('"').for_each(|piece| push_if_id(piece, out));
}

fn push_if_id(s: &str, out: &mut BTreeSet<String>) {
    if s.len() == 36
        && let Ok(id) = Uuid::parse_str(s)
    {
        out.insert(id.to_string());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const POST: &str = "0192f0c4-7b3e-7c3a-9f00-000000000001";
    const USER: &str = "0192f0c4-7b3e-7c3a-9f00-000000000002";

    #[test]
    fn every_id_in_a_response_is_a_tag_even_under_an_alias() {
        let mut tags = BTreeSet::new();
        ids_in_json(
            &json!({ "post": { "pid": POST, "body": "hi", "author": { "id": USER }, "n": 3 } }),
            &mut tags,
        );
        assert_eq!(tags, BTreeSet::from([POST.to_owned(), USER.to_owned()]));
    }

    #[test]
    fn ids_an_operation_names_inline_or_in_variables_are_tags() {
        let query = format!(
            "query($p: ID!) {{ a: post(id: $p) {{ likeCount }} b: user(id: \"{USER}\") {{ bio }} }}"
        );
        let variables = json!({ "p": POST, "first": 3 });
        assert_eq!(
            ids_in_operation(&query, variables.as_object().expect("an object")),
            BTreeSet::from([POST.to_owned(), USER.to_owned()])
        );
    }

    #[test]
    fn inline_mutation_arguments_are_tags() {
        let mut tags = BTreeSet::new();
        ids_in_query(
            &format!("mutation {{ deletePost(id: \"{POST}\") }}"),
            &mut tags,
        );
        assert_eq!(tags, BTreeSet::from([POST.to_owned()]));
    }
}
