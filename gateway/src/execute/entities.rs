//! Entity batches: finding the objects a Flatten / BatchFetch path points at, turning them
//! into `_entities` representations (deduplicated), and merging each result back into every
//! object that asked for it.
//!
//! Collecting allocates per batch, not per entity: the path of every entity found is kept in
//! one buffer of steps whose keys are borrowed from the plan; a representation's canonical
//! text is written into one reused buffer and hashed to find equal ones, and only a
//! representation not seen before is built as a value. Merging walks the data once along
//! the entities' paths (they come in data order, so paths sharing a prefix share its walk)
//! instead of once from the root per entity.

use std::collections::hash_map::Entry;

use hive_router_query_planner::ast::selection_item::SelectionItem;
use hive_router_query_planner::ast::selection_set::SelectionSet;
use hive_router_query_planner::planner::plan_nodes::{FetchRewrite, FlattenNodePathSegment};
use rustc_hash::FxHashMap;
use serde_json::{Map, Value};
use xxhash_rust::xxh3::xxh3_64;

use super::json::{apply_rewrite, deep_merge, member, member_mut, typename};
use crate::graphql::PathSegment;
use crate::schema::ApiSchema;

/// One step of an entity's path in the data: a response key (borrowed from the plan's
/// flatten path) or a list index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'p> {
    Key(&'p str),
    Index(usize),
}

impl From<Step<'_>> for PathSegment {
    fn from(step: Step<'_>) -> Self {
        match step {
            Step::Key(key) => PathSegment::Key(key.to_owned()),
            Step::Index(index) => PathSegment::Index(index),
        }
    }
}

/// The representations of one `_entities` call and the data paths each result merges into.
#[derive(Debug, Default)]
pub struct EntityBatch<'p> {
    pub representations: Vec<Value>,
    /// The steps of every target's path, one path after another.
    steps: Vec<Step<'p>>,
    /// One per entity object found, in data order: where its path ends in `steps`, and the
    /// index of its representation.
    targets: Vec<(usize, usize)>,
}

impl<'p> EntityBatch<'p> {
    /// Collects the entities under each path and builds their representations from `requires`.
    /// Entities whose representation cannot be built (null, missing fields, no matching type)
    /// are skipped; equal representations are sent once.
    pub fn collect(
        schema: &ApiSchema,
        data: &Value,
        paths: &[&'p [FlattenNodePathSegment]],
        requires: &SelectionSet,
        input_rewrites: Option<&[FetchRewrite]>,
    ) -> Self {
        let mut collector = Collector {
            schema,
            requires,
            rewrites: input_rewrites.unwrap_or_default(),
            batch: Self::default(),
            current: Vec::new(),
            text: Vec::new(),
            texts: Vec::new(),
            text_ends: Vec::new(),
            seen: FxHashMap::default(),
            collided: Vec::new(),
        };
        for path in paths {
            collector.find_objects(data, path);
        }
        collector.batch
    }

    /// Every entity object found, in data order: its path and the index of its representation.
    pub fn targets(&self) -> impl Iterator<Item = (&[Step<'p>], usize)> {
        let mut start = 0;
        self.targets.iter().map(move |&(end, index)| {
            let path = self.steps.get(start..end).unwrap_or_default();
            start = end;
            (path, index)
        })
    }

    /// The data paths of the entities that share representation `index`.
    pub fn paths_of(&self, index: usize) -> impl Iterator<Item = Vec<PathSegment>> {
        self.targets()
            .filter(move |(_, i)| *i == index)
            .map(|(path, _)| to_segments(path))
    }

    /// The data paths of every entity found.
    pub fn paths(&self) -> impl Iterator<Item = Vec<PathSegment>> {
        self.targets().map(|(path, _)| to_segments(path))
    }

    /// Merges `entities` (the `_entities` results, one per representation) into every
    /// object that shares its representation. An entity is moved into the last object it
    /// goes to and copied for the others; one that is not an object (null) is skipped.
    pub fn merge(&self, data: &mut Value, entities: Vec<Value>) {
        let mut remaining = vec![0usize; entities.len()];
        for &(_, index) in &self.targets {
            if let Some(count) = remaining.get_mut(index) {
                *count += 1;
            }
        }
        let targets: Vec<_> = self.targets().collect();
        let mut results = Results {
            entities,
            remaining,
        };
        merge_under(data, 0, &targets, &mut results);
    }
}

fn to_segments(path: &[Step<'_>]) -> Vec<PathSegment> {
    path.iter().copied().map(PathSegment::from).collect()
}

/// The results of one `_entities` call while they are merged.
struct Results {
    entities: Vec<Value>,
    /// Per result, the objects it has still to be merged into.
    remaining: Vec<usize>,
}

impl Results {
    fn merge_into(&mut self, target: &mut Value, index: usize) {
        let (Some(entity), Some(count)) =
            (self.entities.get_mut(index), self.remaining.get_mut(index))
        else {
            return;
        };
        *count = count.saturating_sub(1);
        if !entity.is_object() {
            return;
        }
        let entity = if *count == 0 {
            entity.take()
        } else {
            entity.clone()
        };
        deep_merge(target, entity);
    }
}

/// Merges the results of `targets` (all of whose paths pass through `value` at `depth`):
/// targets ending here are merged into `value`; runs of the others that take the same next
/// step are walked down together. A step that no longer exists skips its targets.
fn merge_under(
    value: &mut Value,
    depth: usize,
    targets: &[(&[Step<'_>], usize)],
    results: &mut Results,
) {
    let mut start = 0;
    while let Some(&(path, index)) = targets.get(start) {
        let Some(step) = path.get(depth) else {
            results.merge_into(value, index);
            start += 1;
            continue;
        };
        let run = targets[start..]
            .iter()
            .take_while(|(other, _)| other.get(depth) == Some(step))
            .count();
        let child = match (step, &mut *value) {
            (Step::Key(key), Value::Object(map)) => member_mut(map, key),
            (Step::Index(index), Value::Array(items)) => items.get_mut(*index),
            _ => None,
        };
        if let Some(child) = child {
            merge_under(child, depth + 1, &targets[start..start + run], results);
        }
        start += run;
    }
}

/// The state of one collection: the batch so far, the path being walked, and what tells
/// equal representations apart.
struct Collector<'s, 'p> {
    schema: &'s ApiSchema,
    requires: &'s SelectionSet,
    rewrites: &'s [FetchRewrite],
    batch: EntityBatch<'p>,
    /// The path of the value being walked.
    current: Vec<Step<'p>>,
    /// The canonical text of the representation at hand (reused).
    text: Vec<u8>,
    /// The canonical texts of the batch's representations, one after another, and where
    /// each ends.
    texts: Vec<u8>,
    text_ends: Vec<usize>,
    /// Hash of a canonical text → the first representation that has it.
    seen: FxHashMap<u64, usize>,
    /// Representations whose hash an earlier, different one had (next to never).
    collided: Vec<(u64, usize)>,
}

impl<'p> Collector<'_, 'p> {
    /// Walks a flatten path (`Field`, `@` for every list item, type conditions) and adds
    /// the objects it ends on.
    fn find_objects(&mut self, value: &Value, path: &'p [FlattenNodePathSegment]) {
        let Some((segment, rest)) = path.split_first() else {
            match value {
                Value::Object(_) => self.add(value),
                Value::Array(items) => self.each_item(items, path),
                _ => {}
            }
            return;
        };
        match (segment, value) {
            (FlattenNodePathSegment::Field(name), Value::Object(map)) => {
                if let Some(child) = member(map, name) {
                    self.current.push(Step::Key(name));
                    self.find_objects(child, rest);
                    self.current.pop();
                }
            }
            (FlattenNodePathSegment::List, Value::Array(items)) => self.each_item(items, rest),
            (FlattenNodePathSegment::TypeCondition(types), Value::Object(_)) => {
                let matches = match typename(value) {
                    Some(name) => types.iter().any(|t| self.schema.satisfies(name, t)),
                    None => true,
                };
                if matches {
                    self.find_objects(value, rest);
                }
            }
            // A list the path does not mark with `@`: walk its items anyway.
            (_, Value::Array(items)) => self.each_item(items, path),
            _ => {}
        }
    }

    fn each_item(&mut self, items: &[Value], path: &'p [FlattenNodePathSegment]) {
        for (index, item) in items.iter().enumerate() {
            self.current.push(Step::Index(index));
            self.find_objects(item, path);
            self.current.pop();
        }
    }

    /// Adds the entity `object` at the current path, with its representation: an equal one
    /// already in the batch, else a new one.
    fn add(&mut self, object: &Value) {
        self.text.clear();
        let built = if self.rewrites.is_empty() {
            if write_projection(self.schema, object, self.requires, &mut self.text).is_none() {
                return;
            }
            None
        } else {
            // Rewrites change the representation: build it first, then write it.
            let Some(mut representation) = project(self.schema, object, self.requires) else {
                return;
            };
            for rewrite in self.rewrites {
                apply_rewrite(self.schema, rewrite, &mut representation);
            }
            if write_json(&mut self.text, &representation).is_none() {
                return;
            }
            Some(representation)
        };
        let hash = xxh3_64(&self.text);
        let index = match self.known(hash) {
            Some(index) => index,
            None => {
                let Some(representation) =
                    built.or_else(|| project(self.schema, object, self.requires))
                else {
                    return;
                };
                let index = self.batch.representations.len();
                self.batch.representations.push(representation);
                self.texts.extend_from_slice(&self.text);
                self.text_ends.push(self.texts.len());
                match self.seen.entry(hash) {
                    Entry::Occupied(_) => self.collided.push((hash, index)),
                    Entry::Vacant(slot) => {
                        slot.insert(index);
                    }
                }
                index
            }
        };
        self.batch.steps.extend_from_slice(&self.current);
        self.batch.targets.push((self.batch.steps.len(), index));
    }

    /// The representation whose canonical text is `self.text`, if the batch has one.
    fn known(&self, hash: u64) -> Option<usize> {
        let same = |index: usize| self.text_of(index) == Some(self.text.as_slice());
        match self.seen.get(&hash) {
            Some(&index) if same(index) => Some(index),
            Some(_) => self
                .collided
                .iter()
                .find(|&&(other, index)| other == hash && same(index))
                .map(|&(_, index)| index),
            None => None,
        }
    }

    fn text_of(&self, index: usize) -> Option<&[u8]> {
        let end = *self.text_ends.get(index)?;
        let start = match index.checked_sub(1) {
            Some(previous) => *self.text_ends.get(previous)?,
            None => 0,
        };
        self.texts.get(start..end)
    }
}

/// Writes `value` as JSON into `out` (which cannot fail for a buffer; `None` if it did).
fn write_json(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) -> Option<()> {
    serde_json::to_writer(out, value).ok()
}

/// Writes the canonical text of `object`'s projection through `selections` into `out`: the
/// JSON [`project`] builds, field by field in selection order. `None` exactly when
/// [`project`] gives `None`.
fn write_projection(
    schema: &ApiSchema,
    object: &Value,
    selections: &SelectionSet,
    out: &mut Vec<u8>,
) -> Option<()> {
    let Value::Object(map) = object else {
        return None;
    };
    out.push(b'{');
    let mut empty = true;
    write_fields(schema, map, typename(object), selections, out, &mut empty)?;
    out.push(b'}');
    (!empty).then_some(())
}

fn write_fields(
    schema: &ApiSchema,
    map: &Map<String, Value>,
    typename: Option<&str>,
    selections: &SelectionSet,
    out: &mut Vec<u8>,
    empty: &mut bool,
) -> Option<()> {
    for item in &selections.items {
        match item {
            SelectionItem::Field(field) => {
                let value = member(map, &field.name)?;
                if !std::mem::replace(empty, false) {
                    out.push(b',');
                }
                write_json(out, field.selection_identifier())?;
                out.push(b':');
                if field.selections.is_empty() {
                    write_json(out, value)?;
                } else {
                    write_nested(schema, value, &field.selections, out)?;
                }
            }
            SelectionItem::InlineFragment(fragment) => {
                let matches =
                    typename.is_none_or(|name| schema.satisfies(name, &fragment.type_condition));
                if matches {
                    write_fields(schema, map, typename, &fragment.selections, out, empty)?;
                }
            }
            SelectionItem::FragmentSpread(_) => {}
        }
    }
    Some(())
}

fn write_nested(
    schema: &ApiSchema,
    value: &Value,
    selections: &SelectionSet,
    out: &mut Vec<u8>,
) -> Option<()> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_nested(schema, item, selections, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            let mut empty = true;
            write_fields(schema, map, typename(value), selections, out, &mut empty)?;
            out.push(b'}');
        }
        _ => return None,
    }
    Some(())
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
                let value = member(map, &field.name)?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use graphql_tools::parser::query::{Definition, OperationDefinition};
    use serde_json::json;

    use super::*;

    fn schema() -> ApiSchema {
        let sdl = "type Query { users: [User] } type User { id: ID name: String best: Product } \
                   type Product { upc: String price: Int dims: Dims } type Dims { w: Int }";
        let doc = graphql_tools::parser::parse_schema::<String>(sdl)
            .unwrap()
            .into_static();
        ApiSchema::new(Arc::new(doc))
    }

    fn selections(text: &str) -> SelectionSet {
        let document = graphql_tools::parser::parse_query::<String>(text).unwrap();
        match document.definitions.into_iter().next() {
            Some(Definition::Operation(OperationDefinition::SelectionSet(set))) => set.into(),
            other => panic!("not a selection set: {other:?}"),
        }
    }

    fn path(segments: &[&str]) -> Vec<FlattenNodePathSegment> {
        segments
            .iter()
            .map(|segment| match *segment {
                "@" => FlattenNodePathSegment::List,
                name => FlattenNodePathSegment::Field(name.into()),
            })
            .collect()
    }

    fn key(name: &str) -> PathSegment {
        PathSegment::Key(name.into())
    }

    #[test]
    fn equal_representations_reached_by_different_paths_are_sent_once_and_merged_into_each() {
        let schema = schema();
        let mut data = json!({
            "users": [
                {"best": {"__typename": "Product", "upc": "1"}},
                {"best": {"__typename": "Product", "upc": "2"}}
            ],
            "top": [{"__typename": "Product", "upc": "2"}, {"__typename": "Product", "upc": "1"}]
        });
        let (by_user, top) = (path(&["users", "@", "best"]), path(&["top", "@"]));
        let requires = selections("{ ... on Product { __typename upc } }");

        let batch = EntityBatch::collect(&schema, &data, &[&by_user, &top], &requires, None);

        assert_eq!(
            batch.representations,
            vec![
                json!({"__typename": "Product", "upc": "1"}),
                json!({"__typename": "Product", "upc": "2"})
            ]
        );
        assert_eq!(
            batch.paths_of(1).collect::<Vec<_>>(),
            vec![
                vec![key("users"), PathSegment::Index(1), key("best")],
                vec![key("top"), PathSegment::Index(0)]
            ]
        );
        batch.merge(&mut data, vec![json!({"price": 10}), json!({"price": 20})]);
        assert_eq!(
            data,
            json!({
                "users": [
                    {"best": {"__typename": "Product", "upc": "1", "price": 10}},
                    {"best": {"__typename": "Product", "upc": "2", "price": 20}}
                ],
                "top": [
                    {"__typename": "Product", "upc": "2", "price": 20},
                    {"__typename": "Product", "upc": "1", "price": 10}
                ]
            })
        );
    }

    #[test]
    fn the_text_compared_for_equality_is_the_representation_as_sent() {
        let schema = schema();
        let requires = selections(
            "{ ... on Product { __typename upc p: price dims { w } } ... on User { id } }",
        );
        let objects = [
            json!({"__typename": "Product", "upc": "1", "price": 3, "dims": {"w": 2, "h": 1}}),
            json!({"__typename": "Product", "upc": "1\"\n", "price": 3.5, "dims": null}),
            json!({"__typename": "Product", "upc": "1", "price": 3, "dims": [{"w": 1}, null]}),
            json!({"__typename": "User", "id": "u", "upc": "1"}),
            json!({"upc": "1", "price": 3, "dims": {"w": 2}, "id": "u"}),
            json!({"__typename": "Product", "upc": "1", "dims": {"w": 2}}),
            json!({"__typename": "Product", "upc": "1", "price": 3, "dims": 7}),
        ];
        for object in objects {
            let mut text = Vec::new();
            let written = write_projection(&schema, &object, &requires, &mut text)
                .map(|()| String::from_utf8(text).unwrap());
            let built = project(&schema, &object, &requires).map(|value| value.to_string());
            assert_eq!(written, built, "{object}");
        }
    }

    #[test]
    fn objects_without_a_representation_are_neither_sent_nor_merged() {
        let schema = schema();
        let mut data = json!({"users": [
            {"__typename": "User", "id": "1"},
            null,
            {"__typename": "User"},
            {"__typename": "User", "id": "1"}
        ]});
        let users = path(&["users", "@"]);
        let requires = selections("{ ... on User { __typename id } }");

        let batch = EntityBatch::collect(&schema, &data, &[&users], &requires, None);

        assert_eq!(
            batch.representations,
            vec![json!({"__typename": "User", "id": "1"})]
        );
        assert_eq!(
            batch.paths().collect::<Vec<_>>(),
            vec![
                vec![key("users"), PathSegment::Index(0)],
                vec![key("users"), PathSegment::Index(3)]
            ]
        );
        batch.merge(&mut data, vec![json!({"name": "Ann"})]);
        assert_eq!(
            data,
            json!({"users": [
                {"__typename": "User", "id": "1", "name": "Ann"},
                null,
                {"__typename": "User"},
                {"__typename": "User", "id": "1", "name": "Ann"}
            ]})
        );
    }

    #[test]
    fn a_null_result_or_a_path_gone_from_the_data_leaves_the_data_as_it_is() {
        let schema = schema();
        let data = json!({"users": [{"__typename": "User", "id": "1"}, {"__typename": "User", "id": "2"}]});
        let users = path(&["users", "@"]);
        let requires = selections("{ ... on User { __typename id } }");
        let batch = EntityBatch::collect(&schema, &data, &[&users], &requires, None);

        let mut shorter = json!({"users": [{"__typename": "User", "id": "1"}]});
        batch.merge(&mut shorter, vec![json!(null), json!({"name": "Bo"})]);

        assert_eq!(
            shorter,
            json!({"users": [{"__typename": "User", "id": "1"}]})
        );
    }
}
