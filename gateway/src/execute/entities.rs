//! Entity batches: finding the objects a Flatten / BatchFetch path points at, turning them
//! into `_entities` representations (deduplicated), and remembering where each result goes.

use std::collections::HashMap;

use hive_router_query_planner::ast::selection_item::SelectionItem;
use hive_router_query_planner::ast::selection_set::SelectionSet;
use hive_router_query_planner::planner::plan_nodes::{FetchRewrite, FlattenNodePathSegment};
use serde_json::{Map, Value};

use super::json::{apply_rewrite, typename};
use crate::graphql::PathSegment;
use crate::schema::ApiSchema;

/// The representations of one `_entities` call and the data paths each result merges into.
#[derive(Debug, Default)]
pub struct EntityBatch {
    pub representations: Vec<Value>,
    /// (path of an entity object in the data, index of its representation)
    pub targets: Vec<(Vec<PathSegment>, usize)>,
}

impl EntityBatch {
    /// Collects the entities under each path and builds their representations from `requires`.
    /// Entities whose representation cannot be built (null, missing fields, no matching type)
    /// are skipped; equal representations are sent once.
    pub fn collect(
        schema: &ApiSchema,
        data: &Value,
        paths: &[&[FlattenNodePathSegment]],
        requires: &SelectionSet,
        input_rewrites: Option<&[FetchRewrite]>,
    ) -> Self {
        let mut batch = Self::default();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for path in paths {
            let mut locations = Vec::new();
            find_objects(schema, data, path, &mut Vec::new(), &mut locations);
            for (location, object) in locations {
                let Some(mut representation) = project(schema, object, requires) else {
                    continue;
                };
                for rewrite in input_rewrites.unwrap_or_default() {
                    apply_rewrite(schema, rewrite, &mut representation);
                }
                let key = representation.to_string();
                let index = *seen.entry(key).or_insert_with(|| {
                    batch.representations.push(representation);
                    batch.representations.len() - 1
                });
                batch.targets.push((location, index));
            }
        }
        batch
    }

    /// The data paths of the entities that share representation `index`.
    pub fn paths_of(&self, index: usize) -> impl Iterator<Item = &[PathSegment]> {
        self.targets
            .iter()
            .filter(move |(_, i)| *i == index)
            .map(|(path, _)| path.as_slice())
    }
}

/// Walks a flatten path (`Field`, `@` for every list item, type conditions) and collects the
/// objects it ends on, with their paths.
fn find_objects<'d>(
    schema: &ApiSchema,
    value: &'d Value,
    path: &[FlattenNodePathSegment],
    current: &mut Vec<PathSegment>,
    found: &mut Vec<(Vec<PathSegment>, &'d Value)>,
) {
    let Some((segment, rest)) = path.split_first() else {
        match value {
            Value::Object(_) => found.push((current.clone(), value)),
            Value::Array(items) => each_item(schema, items, path, current, found),
            _ => {}
        }
        return;
    };
    match (segment, value) {
        (FlattenNodePathSegment::Field(name), Value::Object(map)) => {
            if let Some(child) = map.get(name) {
                current.push(PathSegment::Key(name.clone()));
                find_objects(schema, child, rest, current, found);
                current.pop();
            }
        }
        (FlattenNodePathSegment::List, Value::Array(items)) => {
            each_item(schema, items, rest, current, found)
        }
        (FlattenNodePathSegment::TypeCondition(types), Value::Object(_)) => {
            let matches = match typename(value) {
                Some(name) => types.iter().any(|t| schema.satisfies(name, t)),
                None => true,
            };
            if matches {
                find_objects(schema, value, rest, current, found);
            }
        }
        // A list the path does not mark with `@`: walk its items anyway.
        (_, Value::Array(items)) => each_item(schema, items, path, current, found),
        _ => {}
    }
}

fn each_item<'d>(
    schema: &ApiSchema,
    items: &'d [Value],
    path: &[FlattenNodePathSegment],
    current: &mut Vec<PathSegment>,
    found: &mut Vec<(Vec<PathSegment>, &'d Value)>,
) {
    for (index, item) in items.iter().enumerate() {
        current.push(PathSegment::Index(index));
        find_objects(schema, item, path, current, found);
        current.pop();
    }
}

/// Projects `object` through a `requires` selection. `None` when the object is not an object,
/// no type condition matches, or a required field is missing.
pub fn project(schema: &ApiSchema, object: &Value, selections: &SelectionSet) -> Option<Value> {
    let Value::Object(map) = object else {
        return None;
    };
    let mut out = Map::new();
    project_into(schema, map, typename(object), selections, &mut out)?;
    if out.is_empty() {
        None
    } else {
        Some(Value::Object(out))
    }
}

fn project_into(
    schema: &ApiSchema,
    map: &Map<String, Value>,
    typename: Option<&str>,
    selections: &SelectionSet,
    out: &mut Map<String, Value>,
) -> Option<()> {
    for item in &selections.items {
        match item {
            SelectionItem::Field(field) => {
                // The planner renames a required field it had to alias (`weight:
                // _internal_qp_alias_0`): read the data under the field's name, write the
                // representation under its alias.
                let key = field.selection_identifier();
                let value = map.get(&field.name)?;
                let projected = if field.selections.is_empty() {
                    value.clone()
                } else {
                    project_nested(schema, value, &field.selections)?
                };
                out.insert(key.to_string(), projected);
            }
            SelectionItem::InlineFragment(fragment) => {
                let matches =
                    typename.is_none_or(|name| schema.satisfies(name, &fragment.type_condition));
                if matches {
                    project_into(schema, map, typename, &fragment.selections, out)?;
                }
            }
            SelectionItem::FragmentSpread(_) => {}
        }
    }
    Some(())
}

fn project_nested(schema: &ApiSchema, value: &Value, selections: &SelectionSet) -> Option<Value> {
    match value {
        Value::Null => Some(Value::Null),
        Value::Array(items) => items
            .iter()
            .map(|item| project_nested(schema, item, selections))
            .collect::<Option<Vec<_>>>()
            .map(Value::Array),
        Value::Object(map) => {
            let mut out = Map::new();
            project_into(schema, map, typename(value), selections, &mut out)?;
            Some(Value::Object(out))
        }
        _ => None,
    }
}
