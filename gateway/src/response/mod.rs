//! Response shaping: walks the client's operation (not the plan) over the merged data, so the
//! response has exactly the fields the client asked for — aliases, fragments, `__typename`,
//! `@skip`/`@include` — with GraphQL null propagation and sorted errors.

mod fields;
mod introspection;

use std::cmp::Ordering;

use graphql_tools::static_graphql::query::{Field, SelectionSet};
use graphql_tools::static_graphql::schema::{Type, TypeDefinition};
use serde_json::{Map, Value};

pub use self::fields::FieldCollector;
use crate::graphql::{GraphQLError, GraphQLResponse, PathSegment};
use crate::schema::ApiSchema;
use crate::validate::{OperationKind, ValidatedOperation, operation_parts};

/// A non-null field resolved to null: the null moves up to the nearest nullable parent.
struct NullBubble;

/// Builds the client response from the merged data and the errors gathered so far.
pub fn shape_response(
    schema: &ApiSchema,
    operation: &ValidatedOperation,
    data: &Value,
    errors: Vec<GraphQLError>,
) -> GraphQLResponse {
    let collector = FieldCollector::new(schema, &operation.document, &operation.variables);
    let mut shaper = Shaper { collector, errors };
    let root_type = match operation.kind {
        OperationKind::Query => Some(schema.query_type()),
        OperationKind::Mutation => schema.mutation_type(),
        OperationKind::Subscription => schema.subscription_type(),
    };
    let shaped = match (operation.operation(), root_type) {
        (Some(definition), Some(root_type)) => {
            let (_, _, _, selection_set) = operation_parts(definition);
            shaper
                .object(root_type, &[selection_set], data, &mut Vec::new(), true)
                .unwrap_or(Value::Null)
        }
        _ => Value::Null,
    };
    let mut errors = shaper.errors;
    errors.sort_by(compare_paths);
    GraphQLResponse {
        data: Some(shaped),
        errors,
        ..GraphQLResponse::default()
    }
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

struct Shaper<'d> {
    collector: FieldCollector<'d>,
    errors: Vec<GraphQLError>,
}

impl<'d> Shaper<'d> {
    fn object(
        &mut self,
        runtime_type: &str,
        sets: &[&'d SelectionSet],
        data: &Value,
        path: &mut Vec<PathSegment>,
        is_root: bool,
    ) -> Result<Value, NullBubble> {
        let schema = self.collector.schema;
        let mut out = Map::new();
        for (key, fields) in self.collector.collect(runtime_type, sets) {
            let Some(field) = fields.first() else {
                continue;
            };
            let value = match field.name.as_str() {
                "__typename" => Value::from(runtime_type),
                "__schema" if is_root => introspection::resolve_schema(&self.collector, &fields),
                "__type" if is_root => introspection::resolve_type(&self.collector, &fields),
                name => {
                    let Some(definition) = schema.field(runtime_type, name) else {
                        continue;
                    };
                    let raw = data.get(key).unwrap_or(&Value::Null);
                    let sub_sets: Vec<_> = fields.iter().map(|f| &f.selection_set).collect();
                    path.push(PathSegment::Key(key.to_string()));
                    let site = FieldSite {
                        parent_type: runtime_type,
                        field,
                    };
                    let completed = self.value(&definition.field_type, &sub_sets, raw, path, &site);
                    path.pop();
                    completed?
                }
            };
            out.insert(key.to_string(), value);
        }
        Ok(Value::Object(out))
    }

    /// Completes a value of type `ty`; a nullable position absorbs a bubbling null.
    fn value(
        &mut self,
        ty: &Type,
        sets: &[&'d SelectionSet],
        raw: &Value,
        path: &mut Vec<PathSegment>,
        site: &FieldSite<'_, 'd>,
    ) -> Result<Value, NullBubble> {
        match ty {
            Type::NonNullType(inner) => match self.inner_value(inner, sets, raw, path, site)? {
                Value::Null => {
                    self.report_null(path, site);
                    Err(NullBubble)
                }
                value => Ok(value),
            },
            nullable => Ok(self
                .inner_value(nullable, sets, raw, path, site)
                .unwrap_or(Value::Null)),
        }
    }

    fn inner_value(
        &mut self,
        ty: &Type,
        sets: &[&'d SelectionSet],
        raw: &Value,
        path: &mut Vec<PathSegment>,
        site: &FieldSite<'_, 'd>,
    ) -> Result<Value, NullBubble> {
        match (ty, raw) {
            (_, Value::Null) => Ok(Value::Null),
            (Type::ListType(item_type), Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    path.push(PathSegment::Index(index));
                    let completed = self.value(item_type, sets, item, path, site);
                    path.pop();
                    out.push(completed?);
                }
                Ok(Value::Array(out))
            }
            (Type::ListType(_), _) => Ok(Value::Null),
            (Type::NonNullType(inner), _) => self.value(inner, sets, raw, path, site),
            (Type::NamedType(name), _) => {
                let schema = self.collector.schema;
                match schema.type_def(name) {
                    Some(TypeDefinition::Object(_)) => self.object(name, sets, raw, path, false),
                    Some(TypeDefinition::Interface(_) | TypeDefinition::Union(_)) => {
                        let runtime = raw.get("__typename").and_then(Value::as_str);
                        match runtime {
                            Some(runtime) if schema.satisfies(runtime, name) => {
                                self.object(runtime, sets, raw, path, false)
                            }
                            _ => Ok(Value::Null),
                        }
                    }
                    _ if (raw.is_object() || raw.is_array()) && !is_custom_scalar(schema, name) => {
                        Ok(Value::Null)
                    }
                    _ => Ok(raw.clone()),
                }
            }
        }
    }

    /// Adds "Cannot return null" unless an error already explains this path: one at it, below
    /// it, or at one of its parents (whose fields are then all missing).
    fn report_null(&mut self, path: &[PathSegment], site: &FieldSite<'_, 'd>) {
        let explained = self.errors.iter().any(|error| {
            error.path.as_ref().is_some_and(|error_path| {
                error_path.starts_with(path) || path.starts_with(error_path)
            })
        });
        if !explained {
            let mut error = GraphQLError::new(format!(
                "Cannot return null for non-nullable field {}.{}.",
                site.parent_type, site.field.name
            ));
            error.path = Some(path.to_vec());
            self.errors.push(error);
        }
    }
}

/// The field being completed, for error messages.
struct FieldSite<'t, 'd> {
    parent_type: &'t str,
    field: &'d Field,
}

fn is_custom_scalar(schema: &ApiSchema, name: &str) -> bool {
    matches!(schema.type_def(name), Some(TypeDefinition::Scalar(_)))
        && !["String", "Int", "Float", "Boolean", "ID"].contains(&name)
}
