//! Response shaping: walks the client's operation (not the plan) over the merged data and
//! writes the client's `data` straight to JSON bytes, so the response has exactly the fields
//! the client asked for — aliases, fragments, `__typename`, `@skip`/`@include` — with
//! GraphQL null propagation and sorted errors, and no second tree is built for the client.
//! The operation is walked through its projection ([`OperationShape`]): the fields that
//! apply to each runtime type, worked out once per prepared operation and reused by every
//! request of it.
//! A null that propagates truncates what was written below the nearest nullable position
//! and writes `null` there instead.
//!
//! Two rules keep the response inside the API schema whatever the subgraphs sent:
//!
//! - A value of an interface or union type is shaped as its concrete type when its
//!   `__typename` names an object type of the API schema that belongs to it. Otherwise —
//!   the planner asks for `__typename` only when the client's selection needs it, and an
//!   `@interfaceObject` subgraph knows only the interface's own name — it is shaped against
//!   the abstract type itself: fields and fragments on that type (or on an interface it
//!   implements) apply, fragments on concrete types do not, and a selected `__typename`,
//!   which the plan would have fetched had the concrete type been known anywhere, is an
//!   error at its path.
//! - An enum value that is not one of the enum's values in the API schema (an
//!   `@inaccessible` value, or one a subgraph added before the gateway knew it) becomes
//!   `null` with an error at its path, and the null propagates as usual.

mod fields;
mod introspection;
mod projection;
mod strings;
#[cfg(test)]
mod tests;

use std::cmp::Ordering;

use graphql_tools::static_graphql::query::{Document, SelectionSet};
use graphql_tools::static_graphql::schema::Type;
use serde_json::{Map, Value};

pub use self::fields::FieldCollector;
pub use self::projection::OperationShape;
use self::projection::{Group, Meta, NamedKind, Node, Projection};
use self::strings::write_string;
use crate::execute::{SCANNED_ENTRIES, SUBGRAPH_ERROR, member};
use crate::graphql::{GraphQLError, GraphQLResponse, PathSegment};
use crate::schema::ApiSchema;

/// A non-null field resolved to null: the null moves up to the nearest nullable parent.
struct NullBubble;

/// What shaping needs of a prepared operation.
#[derive(Clone, Copy)]
pub struct ShapedOperation<'a> {
    pub document: &'a Document,
    /// The selected operation's selection set.
    pub selection_set: Option<&'a SelectionSet>,
    pub shape: &'a OperationShape,
}

/// Writes the client's `data` (the JSON value of the response's `data` entry) at the end of
/// `out`, from the merged data and the errors gathered so far, and returns the errors sorted
/// by path. `unresolved` are the paths of objects whose entity fetch failed, already
/// explained by that fetch's error.
#[tracing::instrument(name = "shape", skip_all)]
pub fn write_data(
    schema: &ApiSchema,
    operation: ShapedOperation<'_>,
    variables: &Map<String, Value>,
    data: &Value,
    errors: Vec<GraphQLError>,
    unresolved: &[Vec<PathSegment>],
    out: &mut Vec<u8>,
) -> Vec<GraphQLError> {
    let projection = operation.shape.projection(schema, variables);
    let mut shaper = Shaper {
        schema,
        operation,
        variables,
        projection: &projection,
        errors,
        unresolved,
        out,
    };
    let start = shaper.out.len();
    let written = match projection.root() {
        Some(root) => shaper
            .object(root, data, &mut Vec::new(), Runtime::Root)
            .is_ok(),
        None => false,
    };
    if !written {
        shaper.null_at(start);
    }
    let mut errors = shaper.errors;
    errors.sort_by(compare_paths);
    errors
}

/// Builds the client response from the merged data and the errors gathered so far, as a
/// JSON tree: [`write_data`], read back. For the paths that need the tree (subscription
/// events).
pub fn shape_response(
    schema: &ApiSchema,
    operation: ShapedOperation<'_>,
    variables: &Map<String, Value>,
    data: Value,
    errors: Vec<GraphQLError>,
    unresolved: &[Vec<PathSegment>],
) -> GraphQLResponse {
    let mut out = Vec::new();
    let errors = write_data(
        schema, operation, variables, &data, errors, unresolved, &mut out,
    );
    GraphQLResponse::executed(read_written(&out), errors)
}

/// The JSON [`write_data`] wrote, as a tree. What it writes always reads back; `null`
/// otherwise, logged.
pub(crate) fn read_written(written: &[u8]) -> Value {
    serde_json::from_slice(written).unwrap_or_else(|error| {
        tracing::error!(%error, "the written response data is not JSON");
        Value::Null
    })
}

/// Errors without a path first, then by path (list indexes numerically).
fn compare_paths(a: &GraphQLError, b: &GraphQLError) -> Ordering {
    fn key(segment: &PathSegment) -> (u8, usize, &str) {
        match segment {
            PathSegment::Index(i) => (0, *i, ""),
            PathSegment::Key(k) => (1, 0, k.as_str()),
        }
    }
    match (&a.path, &b.path) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => a.iter().map(key).cmp(b.iter().map(key)),
    }
}

struct Shaper<'p, 'o> {
    schema: &'p ApiSchema,
    operation: ShapedOperation<'p>,
    variables: &'p Map<String, Value>,
    projection: &'p Projection,
    errors: Vec<GraphQLError>,
    unresolved: &'p [Vec<PathSegment>],
    /// Where the response is written.
    out: &'o mut Vec<u8>,
}

/// What a completed value turned out to be: a nullable parent needs to know whether a
/// non-null field wrote `null`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Written {
    Null,
    Value,
}

/// What is known of the type of the object being shaped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Runtime {
    /// The operation's root type: introspection fields apply.
    Root,
    /// An object type, named by the data or by the field's type.
    Concrete,
    /// Only the interface or union the field returns: the data named no concrete type.
    Abstract,
}

/// A step of the path being shaped, borrowed from the operation; turned into a
/// [`PathSegment`] only when an error needs it.
#[derive(Clone, Copy)]
enum Step<'d> {
    Key(&'d str),
    Index(usize),
}

impl Step<'_> {
    fn matches(&self, segment: &PathSegment) -> bool {
        match (self, segment) {
            (Step::Key(key), PathSegment::Key(other)) => key == other,
            (Step::Index(index), PathSegment::Index(other)) => index == other,
            _ => false,
        }
    }

    fn to_segment(self) -> PathSegment {
        match self {
            Step::Key(key) => PathSegment::Key(key.to_string()),
            Step::Index(index) => PathSegment::Index(index),
        }
    }
}

impl<'p> Shaper<'p, '_> {
    fn object(
        &mut self,
        node: &'p Node,
        data: &Value,
        path: &mut Vec<Step<'p>>,
        runtime: Runtime,
    ) -> Result<(), NullBubble> {
        let runtime_type = &*node.runtime_type;
        self.out.push(b'{');
        let mut first = true;
        let mut entries = Entries::of(data);
        for group in &node.groups {
            let key = &*group.key;
            // Unknown fields write nothing, not even their key.
            let writes = match group.meta {
                Meta::Field => group.field_type.is_some(),
                Meta::Typename => true,
                Meta::Schema | Meta::Type => runtime == Runtime::Root,
            };
            if !writes {
                continue;
            }
            if !first {
                self.out.push(b',');
            }
            first = false;
            self.out.extend_from_slice(&group.key_json);
            match (group.meta, &group.field_type) {
                (Meta::Typename, _) if runtime == Runtime::Abstract => {
                    path.push(Step::Key(key));
                    self.report_unknown_type(runtime_type, path);
                    path.pop();
                    return Err(NullBubble);
                }
                (Meta::Typename, _) => self.out.extend_from_slice(&node.typename_json),
                (Meta::Schema | Meta::Type, _) => {
                    let value = self.introspection(runtime_type, key, &group.name);
                    self.write_leaf(&value);
                }
                (Meta::Field, Some(field_type)) => {
                    let raw = entries.get(key);
                    path.push(Step::Key(key));
                    let site = FieldSite {
                        parent_type: runtime_type,
                        group,
                    };
                    let completed = self.value(field_type, raw, path, &site);
                    path.pop();
                    completed?;
                }
                // Left out above; never reached.
                (Meta::Field, None) => {
                    self.null();
                }
            }
        }
        self.out.push(b'}');
        Ok(())
    }

    /// A root `__schema` or `__type` field, resolved from the operation itself: rare enough
    /// that its fields are collected on the spot.
    fn introspection(&self, root_type: &str, key: &str, name: &str) -> Value {
        let Some(selection_set) = self.operation.selection_set else {
            return Value::Null;
        };
        let collector = FieldCollector::new(self.schema, self.operation.document, self.variables);
        let groups = collector.collect(root_type, &[selection_set]);
        let Some((_, fields)) = groups.iter().find(|(k, _)| *k == key) else {
            return Value::Null;
        };
        if name == "__schema" {
            introspection::resolve_schema(&collector, fields)
        } else {
            introspection::resolve_type(&collector, fields)
        }
    }

    /// Writes a value of type `ty`; a nullable position absorbs a bubbling null (what was
    /// written of the value is cut and `null` written instead).
    fn value(
        &mut self,
        ty: &'p Type,
        raw: &Value,
        path: &mut Vec<Step<'p>>,
        site: &FieldSite<'p>,
    ) -> Result<Written, NullBubble> {
        match ty {
            Type::NonNullType(inner) => match self.inner_value(inner, raw, path, site)? {
                Written::Null => {
                    self.report_null(path, site);
                    Err(NullBubble)
                }
                Written::Value => Ok(Written::Value),
            },
            nullable => {
                let start = self.out.len();
                match self.inner_value(nullable, raw, path, site) {
                    Ok(written) => Ok(written),
                    Err(NullBubble) => {
                        self.null_at(start);
                        Ok(Written::Null)
                    }
                }
            }
        }
    }

    fn inner_value(
        &mut self,
        ty: &'p Type,
        raw: &Value,
        path: &mut Vec<Step<'p>>,
        site: &FieldSite<'p>,
    ) -> Result<Written, NullBubble> {
        if raw.is_null() {
            return Ok(self.null());
        }
        match ty {
            Type::ListType(item_type) => {
                let Value::Array(items) = raw else {
                    return Ok(self.null());
                };
                self.out.push(b'[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        self.out.push(b',');
                    }
                    path.push(Step::Index(index));
                    let completed = self.value(item_type, item, path, site);
                    path.pop();
                    completed?;
                }
                self.out.push(b']');
                Ok(Written::Value)
            }
            Type::NonNullType(inner) => self.value(inner, raw, path, site),
            Type::NamedType(_) => match &site.group.kind {
                NamedKind::Object | NamedKind::Abstract => {
                    let typename = match site.group.kind {
                        NamedKind::Abstract => raw
                            .as_object()
                            .and_then(|map| member(map, "__typename"))
                            .and_then(Value::as_str),
                        _ => None,
                    };
                    let Some((node, only_abstract)) =
                        self.projection.child(self.schema, site.group, typename)
                    else {
                        return Ok(self.null());
                    };
                    let runtime = if only_abstract {
                        Runtime::Abstract
                    } else {
                        Runtime::Concrete
                    };
                    self.object(node, raw, path, runtime)
                        .map(|()| Written::Value)
                }
                NamedKind::Enum(values) => match raw.as_str() {
                    Some(value) if values.contains(value) => {
                        write_string(self.out, value);
                        Ok(Written::Value)
                    }
                    _ => {
                        self.report_invalid_enum(&values.name, raw, path, site);
                        Ok(self.null())
                    }
                },
                NamedKind::Leaf if raw.is_object() || raw.is_array() => Ok(self.null()),
                NamedKind::Leaf | NamedKind::CustomScalar => {
                    self.write_leaf(raw);
                    Ok(Written::Value)
                }
            },
        }
    }

    fn null(&mut self) -> Written {
        self.out.extend_from_slice(b"null");
        Written::Null
    }

    /// Cuts what was written from `start` on and writes `null` there.
    fn null_at(&mut self, start: usize) {
        self.out.truncate(start);
        self.out.extend_from_slice(b"null");
    }

    /// A leaf (or an introspection answer) as it is.
    fn write_leaf(&mut self, value: &Value) {
        match value {
            Value::String(string) => write_string(self.out, string),
            Value::Bool(true) => self.out.extend_from_slice(b"true"),
            Value::Bool(false) => self.out.extend_from_slice(b"false"),
            Value::Null => self.out.extend_from_slice(b"null"),
            _ => {
                let start = self.out.len();
                if serde_json::to_writer(&mut *self.out, value).is_err() {
                    self.null_at(start);
                }
            }
        }
    }

    /// A value of an enum that is not in the API schema: the client gets `null` and this
    /// error; the value itself goes to the log only (it may be one the API hides).
    fn report_invalid_enum(
        &mut self,
        enum_type: &str,
        raw: &Value,
        path: &[Step<'p>],
        site: &FieldSite<'p>,
    ) {
        let path: Vec<PathSegment> = path.iter().map(|step| step.to_segment()).collect();
        tracing::warn!(
            enum_type,
            value = %raw,
            path = ?path,
            "a subgraph returned an enum value outside the API schema"
        );
        let mut error = GraphQLError::with_code(
            format!(
                "Enum \"{}\" cannot represent the value returned for {}.{}.",
                enum_type, site.parent_type, site.group.name
            ),
            SUBGRAPH_ERROR,
        );
        error.path = Some(path);
        self.errors.push(error);
    }

    /// `__typename` of a value whose concrete type no subgraph gave.
    fn report_unknown_type(&mut self, abstract_type: &str, path: &[Step<'p>]) {
        let mut error = GraphQLError::with_code(
            format!("Could not resolve the concrete type of this \"{abstract_type}\"."),
            SUBGRAPH_ERROR,
        );
        error.path = Some(path.iter().map(|step| step.to_segment()).collect());
        self.errors.push(error);
    }

    /// Adds "Cannot return null" unless an error already explains this path: one at it, below
    /// it, or at one of its parents (whose fields are then all missing), or a failed entity
    /// fetch of an object there.
    fn report_null(&mut self, path: &[Step<'p>], site: &FieldSite<'p>) {
        // One path starts with the other.
        let related = |other: &[PathSegment]| {
            other
                .iter()
                .zip(path)
                .all(|(segment, step)| step.matches(segment))
        };
        let explained = self
            .errors
            .iter()
            .any(|error| error.path.as_deref().is_some_and(related))
            || self.unresolved.iter().any(|other| related(other));
        if !explained {
            let mut error = GraphQLError::new(format!(
                "Cannot return null for non-nullable field {}.{}.",
                site.parent_type, site.group.name
            ));
            error.path = Some(path.iter().map(|step| step.to_segment()).collect());
            self.errors.push(error);
        }
    }
}

/// The field being completed, for error messages.
struct FieldSite<'p> {
    parent_type: &'p str,
    group: &'p Group,
}

/// Reads an object's entries by response key. The merged data mostly holds the keys in the
/// order the operation selects them, with a few more the plan needed (keys, `__typename`)
/// and the fields other subgraphs added at the end: a small object is scanned from the
/// entry after the last one read (then from its start), comparing keys, which costs less
/// than hashing the key; a large one looks a few entries ahead before its hash lookup.
struct Entries<'v> {
    map: Option<&'v Map<String, Value>>,
    next: Option<serde_json::map::Iter<'v>>,
}

/// How many entries past the last one read a larger object compares before hashing.
const LOOK_AHEAD: usize = 3;

impl<'v> Entries<'v> {
    fn of(data: &'v Value) -> Self {
        let map = data.as_object();
        Self {
            map,
            next: map.map(Map::iter),
        }
    }

    fn get(&mut self, key: &str) -> &'v Value {
        let (Some(map), Some(next)) = (self.map, &mut self.next) else {
            return &Value::Null;
        };
        let small = map.len() <= SCANNED_ENTRIES;
        let mut ahead = next.clone();
        let mut looked = 0;
        while let Some((name, value)) = ahead.next() {
            if name == key {
                *next = ahead;
                return value;
            }
            looked += 1;
            if !small && looked == LOOK_AHEAD {
                break;
            }
        }
        if small {
            let mut from_start = map.iter();
            while let Some((name, value)) = from_start.next() {
                if name == key {
                    *next = from_start;
                    return value;
                }
            }
            return &Value::Null;
        }
        map.get(key).unwrap_or(&Value::Null)
    }
}
