//! Operations on the response data tree: deep merging fetch results, and
//! the planner's fetch rewrites.

use hive_router_query_planner::planner::plan_nodes::{FetchNodePathSegment, FetchRewrite};
use serde_json::{Map, Value};

use crate::schema::ApiSchema;

/// Objects with at most this many entries are scanned for a key rather than hashed into:
/// comparing a handful of short keys costs less than hashing one, and the objects of
/// GraphQL data are mostly that small.
pub(crate) const SCANNED_ENTRIES: usize = 16;

/// The value of `key` in `map`.
pub(crate) fn member<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    if map.len() <= SCANNED_ENTRIES {
        map.iter()
            .find(|(name, _)| name.as_str() == key)
            .map(|(_, value)| value)
    } else {
        map.get(key)
    }
}

/// The value of `key` in `map`, to change it.
pub(crate) fn member_mut<'v>(map: &'v mut Map<String, Value>, key: &str) -> Option<&'v mut Value> {
    if map.len() <= SCANNED_ENTRIES {
        map.iter_mut()
            .find(|(name, _)| name.as_str() == key)
            .map(|(_, value)| value)
    } else {
        map.get_mut(key)
    }
}

/// Merges `source` into `target`: objects key by key, lists of equal length item by item;
/// anything else replaces the target.
pub fn deep_merge(target: &mut Value, source: Value) {
    match (target, source) {
        (Value::Object(target), Value::Object(source)) => {
            for (key, value) in source {
                match target.entry(key) {
                    serde_json::map::Entry::Occupied(mut existing) => {
                        deep_merge(existing.get_mut(), value)
                    }
                    serde_json::map::Entry::Vacant(slot) => {
                        slot.insert(value);
                    }
                }
            }
        }
        (Value::Array(target), Value::Array(source)) if target.len() == source.len() => {
            for (existing, value) in target.iter_mut().zip(source) {
                deep_merge(existing, value);
            }
        }
        (target, source) => *target = source,
    }
}

/// The object's `__typename`, if it has one.
pub fn typename(value: &Value) -> Option<&str> {
    member(value.as_object()?, "__typename").and_then(Value::as_str)
}

/// Applies a planner rewrite to `value` (a representation, or a fetch result).
pub fn apply_rewrite(schema: &ApiSchema, rewrite: &FetchRewrite, value: &mut Value) {
    match rewrite {
        FetchRewrite::ValueSetter(setter) => {
            let replacement = Value::String(setter.set_value_to.clone());
            walk_rewrite_path(schema, &setter.path, value, &mut |parent, key| {
                if let Some(slot) = parent.get_mut(key) {
                    *slot = replacement.clone();
                }
            });
        }
        FetchRewrite::KeyRenamer(renamer) => {
            walk_rewrite_path(schema, &renamer.path, value, &mut |parent, key| {
                if key != renamer.rename_key_to
                    && let Some(moved) = parent.remove(key)
                {
                    parent.insert(renamer.rename_key_to.clone(), moved);
                }
            });
        }
    }
}

/// Follows a rewrite path (lists are walked through) and calls `at_last_key` with the object
/// holding the last key.
fn walk_rewrite_path(
    schema: &ApiSchema,
    path: &[FetchNodePathSegment],
    value: &mut Value,
    at_last_key: &mut dyn FnMut(&mut serde_json::Map<String, Value>, &str),
) {
    let Some((segment, rest)) = path.split_first() else {
        return;
    };
    match value {
        Value::Array(items) => {
            for item in items {
                walk_rewrite_path(schema, path, item, at_last_key);
            }
        }
        Value::Object(map) => match segment {
            FetchNodePathSegment::TypenameEquals(types) => {
                let matches = match member(map, "__typename").and_then(Value::as_str) {
                    Some(name) => types.iter().any(|t| schema.satisfies(name, t)),
                    None => true,
                };
                if matches {
                    walk_rewrite_path(schema, rest, value, at_last_key);
                }
            }
            FetchNodePathSegment::Key(key) => {
                if rest.is_empty() {
                    at_last_key(map, key);
                } else if let Some(child) = member_mut(map, key) {
                    walk_rewrite_path(schema, rest, child, at_last_key);
                }
            }
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use hive_router_query_planner::planner::plan_nodes::{KeyRenamer, ValueSetter};
    use serde_json::json;

    use super::*;

    fn schema() -> ApiSchema {
        let sdl = "type Query { a: Media } interface Media { id: ID } type Book implements Media { id: ID } type Movie implements Media { id: ID }";
        let doc = graphql_tools::parser::parse_schema::<String>(sdl)
            .unwrap()
            .into_static();
        ApiSchema::new(Arc::new(doc))
    }

    fn typename_equals(name: &str) -> FetchNodePathSegment {
        FetchNodePathSegment::TypenameEquals(BTreeSet::from([name.to_string()]))
    }

    #[test]
    fn a_value_setter_rewrites_typenames_of_matching_representations_only() {
        let setter = FetchRewrite::ValueSetter(ValueSetter {
            path: vec![
                typename_equals("Book"),
                FetchNodePathSegment::Key("__typename".into()),
            ],
            set_value_to: "Media".into(),
        });
        let mut book = json!({"__typename": "Book", "id": "1"});
        let mut movie = json!({"__typename": "Movie", "id": "2"});
        apply_rewrite(&schema(), &setter, &mut book);
        apply_rewrite(&schema(), &setter, &mut movie);
        assert_eq!(book, json!({"__typename": "Media", "id": "1"}));
        assert_eq!(movie, json!({"__typename": "Movie", "id": "2"}));
    }

    #[test]
    fn a_key_renamer_moves_an_internal_alias_back_to_the_field_name_through_lists() {
        let renamer = FetchRewrite::KeyRenamer(KeyRenamer {
            path: vec![
                FetchNodePathSegment::Key("items".into()),
                typename_equals("Media"),
                FetchNodePathSegment::Key("_internal_qp_alias_0".into()),
            ],
            rename_key_to: "id".into(),
        });
        let mut data = json!({"items": [
            {"__typename": "Book", "_internal_qp_alias_0": "1"},
            {"__typename": "Movie", "_internal_qp_alias_0": "2"}
        ]});
        apply_rewrite(&schema(), &renamer, &mut data);
        assert_eq!(
            data,
            json!({"items": [{"__typename": "Book", "id": "1"}, {"__typename": "Movie", "id": "2"}]})
        );
    }

    #[test]
    fn deep_merge_combines_objects_and_equal_length_lists() {
        let mut target = json!({"a": [{"x": 1}, {"x": 2}], "b": {"c": 1}});
        deep_merge(
            &mut target,
            json!({"a": [{"y": 1}, {"y": 2}], "b": {"d": 2}}),
        );
        assert_eq!(
            target,
            json!({"a": [{"x": 1, "y": 1}, {"x": 2, "y": 2}], "b": {"c": 1, "d": 2}})
        );
    }
}
