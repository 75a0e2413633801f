//! Introspection (`__schema`, `__type`) answered from the API schema, walking the client's
//! selection like any other object tree.

use graphql_tools::static_graphql::query::{Field, SelectionSet};
use graphql_tools::static_graphql::schema::{
    Directive, DirectiveDefinition, EnumValue, Field as SchemaField, InputValue, Type,
    TypeDefinition,
};
use serde_json::{Map, Value};

use super::fields::FieldCollector;
use crate::schema::type_name;

/// An object of one of the introspection types.
#[derive(Clone, Copy)]
enum Node<'s> {
    Schema,
    NamedType(&'s TypeDefinition),
    List(&'s Type),
    NonNull(&'s Type),
    Field(&'s SchemaField),
    InputValue(&'s InputValue),
    EnumValue(&'s EnumValue),
    Directive(&'s DirectiveDefinition),
}

impl Node<'_> {
    fn typename(&self) -> &'static str {
        match self {
            Node::Schema => "__Schema",
            Node::NamedType(_) | Node::List(_) | Node::NonNull(_) => "__Type",
            Node::Field(_) => "__Field",
            Node::InputValue(_) => "__InputValue",
            Node::EnumValue(_) => "__EnumValue",
            Node::Directive(_) => "__Directive",
        }
    }
}

/// Resolves a root `__schema` field.
pub fn resolve_schema<'d>(collector: &FieldCollector<'d>, fields: &[&'d Field]) -> Value {
    Resolver { collector }.object(Node::Schema, &selection_sets(fields))
}

/// Resolves a root `__type(name:)` field; null for an unknown type.
pub fn resolve_type<'d>(collector: &FieldCollector<'d>, fields: &[&'d Field]) -> Value {
    let Some(field) = fields.first() else {
        return Value::Null;
    };
    let name = collector.argument(field, "name");
    match name
        .as_ref()
        .and_then(Value::as_str)
        .and_then(|n| collector.schema.type_def(n))
    {
        Some(def) => Resolver { collector }.object(Node::NamedType(def), &selection_sets(fields)),
        None => Value::Null,
    }
}

fn selection_sets<'d>(fields: &[&'d Field]) -> Vec<&'d SelectionSet> {
    fields.iter().map(|field| &field.selection_set).collect()
}

struct Resolver<'c, 'd> {
    collector: &'c FieldCollector<'d>,
}

impl<'d> Resolver<'_, 'd> {
    fn object(&self, node: Node<'d>, sets: &[&'d SelectionSet]) -> Value {
        let mut out = Map::new();
        for (key, fields) in self.collector.collect(node.typename(), sets) {
            let sub_sets = selection_sets(&fields);
            let value = match fields.first() {
                Some(field) if field.name == "__typename" => Value::from(node.typename()),
                Some(field) => self.field(node, field, &sub_sets),
                None => Value::Null,
            };
            out.insert(key.to_string(), value);
        }
        Value::Object(out)
    }

    fn list(&self, nodes: impl Iterator<Item = Node<'d>>, sets: &[&'d SelectionSet]) -> Value {
        Value::Array(nodes.map(|node| self.object(node, sets)).collect())
    }

    fn type_ref(&self, ty: &'d Type, sets: &[&'d SelectionSet]) -> Value {
        let node = match ty {
            Type::NonNullType(inner) => Node::NonNull(inner),
            Type::ListType(inner) => Node::List(inner),
            Type::NamedType(name) => match self.collector.schema.type_def(name) {
                Some(def) => Node::NamedType(def),
                None => return Value::Null,
            },
        };
        self.object(node, sets)
    }

    fn named(&self, name: Option<&str>, sets: &[&'d SelectionSet]) -> Value {
        match name.and_then(|name| self.collector.schema.type_def(name)) {
            Some(def) => self.object(Node::NamedType(def), sets),
            None => Value::Null,
        }
    }

    fn field(&self, node: Node<'d>, field: &Field, sets: &[&'d SelectionSet]) -> Value {
        let schema = self.collector.schema;
        let include_deprecated = || {
            self.collector
                .argument(field, "includeDeprecated")
                .and_then(|v| v.as_bool())
                .unwrap_or(false)
        };
        match (node, field.name.as_str()) {
            (Node::Schema, "queryType") => self.named(Some(schema.query_type()), sets),
            (Node::Schema, "mutationType") => self.named(schema.mutation_type(), sets),
            (Node::Schema, "subscriptionType") => self.named(schema.subscription_type(), sets),
            (Node::Schema, "types") => self.list(schema.types().map(Node::NamedType), sets),
            (Node::Schema, "directives") => {
                self.list(schema.directives().map(Node::Directive), sets)
            }
            (Node::NamedType(def), name) => {
                self.named_type_field(def, name, include_deprecated, sets)
            }
            (Node::List(_), "kind") => Value::from("LIST"),
            (Node::NonNull(_), "kind") => Value::from("NON_NULL"),
            (Node::List(inner) | Node::NonNull(inner), "ofType") => self.type_ref(inner, sets),
            (Node::Field(f), "name") => Value::from(f.name.as_str()),
            (Node::Field(f), "description") => description(&f.description),
            (Node::Field(f), "args") => self.list(f.arguments.iter().map(Node::InputValue), sets),
            (Node::Field(f), "type") => self.type_ref(&f.field_type, sets),
            (Node::Field(f), "isDeprecated") => Value::Bool(deprecation(&f.directives).is_some()),
            (Node::Field(f), "deprecationReason") => {
                deprecation(&f.directives).unwrap_or(Value::Null)
            }
            (Node::InputValue(v), "name") => Value::from(v.name.as_str()),
            (Node::InputValue(v), "description") => description(&v.description),
            (Node::InputValue(v), "type") => self.type_ref(&v.value_type, sets),
            (Node::InputValue(v), "defaultValue") => v
                .default_value
                .as_ref()
                .map(|d| Value::String(d.to_string()))
                .unwrap_or(Value::Null),
            (Node::InputValue(v), "isDeprecated") => {
                Value::Bool(deprecation(&v.directives).is_some())
            }
            (Node::InputValue(v), "deprecationReason") => {
                deprecation(&v.directives).unwrap_or(Value::Null)
            }
            (Node::EnumValue(v), "name") => Value::from(v.name.as_str()),
            (Node::EnumValue(v), "description") => description(&v.description),
            (Node::EnumValue(v), "isDeprecated") => {
                Value::Bool(deprecation(&v.directives).is_some())
            }
            (Node::EnumValue(v), "deprecationReason") => {
                deprecation(&v.directives).unwrap_or(Value::Null)
            }
            (Node::Directive(d), "name") => Value::from(d.name.as_str()),
            (Node::Directive(d), "description") => description(&d.description),
            (Node::Directive(d), "isRepeatable") => Value::Bool(d.repeatable),
            (Node::Directive(d), "locations") => Value::Array(
                d.locations
                    .iter()
                    .map(|l| Value::from(l.as_str()))
                    .collect(),
            ),
            (Node::Directive(d), "args") => {
                self.list(d.arguments.iter().map(Node::InputValue), sets)
            }
            _ => Value::Null,
        }
    }

    fn named_type_field(
        &self,
        def: &'d TypeDefinition,
        name: &str,
        include_deprecated: impl Fn() -> bool,
        sets: &[&'d SelectionSet],
    ) -> Value {
        let visible =
            |directives: &[Directive]| include_deprecated() || deprecation(directives).is_none();
        match (def, name) {
            (_, "kind") => Value::from(match def {
                TypeDefinition::Scalar(_) => "SCALAR",
                TypeDefinition::Object(_) => "OBJECT",
                TypeDefinition::Interface(_) => "INTERFACE",
                TypeDefinition::Union(_) => "UNION",
                TypeDefinition::Enum(_) => "ENUM",
                TypeDefinition::InputObject(_) => "INPUT_OBJECT",
            }),
            (_, "name") => Value::from(type_name(def)),
            (_, "description") => description(match def {
                TypeDefinition::Scalar(t) => &t.description,
                TypeDefinition::Object(t) => &t.description,
                TypeDefinition::Interface(t) => &t.description,
                TypeDefinition::Union(t) => &t.description,
                TypeDefinition::Enum(t) => &t.description,
                TypeDefinition::InputObject(t) => &t.description,
            }),
            (TypeDefinition::Object(t), "fields") => self.fields(&t.fields, &visible, sets),
            (TypeDefinition::Interface(t), "fields") => self.fields(&t.fields, &visible, sets),
            (TypeDefinition::Object(t), "interfaces") => {
                self.interfaces(&t.implements_interfaces, sets)
            }
            (TypeDefinition::Interface(t), "interfaces") => {
                self.interfaces(&t.implements_interfaces, sets)
            }
            (TypeDefinition::Interface(_) | TypeDefinition::Union(_), "possibleTypes") => {
                let schema = self.collector.schema;
                Value::Array(
                    schema
                        .possible_types(type_name(def))
                        .into_iter()
                        .filter(|n| *n != type_name(def))
                        .map(|n| self.named(Some(n), sets))
                        .collect(),
                )
            }
            (TypeDefinition::Enum(e), "enumValues") => self.list(
                e.values
                    .iter()
                    .filter(|v| visible(&v.directives))
                    .map(Node::EnumValue),
                sets,
            ),
            (TypeDefinition::InputObject(i), "inputFields") => {
                self.list(i.fields.iter().map(Node::InputValue), sets)
            }
            (TypeDefinition::InputObject(_), "isOneOf") => Value::Bool(false),
            _ => Value::Null,
        }
    }

    fn interfaces(&self, names: &[String], sets: &[&'d SelectionSet]) -> Value {
        Value::Array(names.iter().map(|n| self.named(Some(n), sets)).collect())
    }

    fn fields(
        &self,
        fields: &'d [SchemaField],
        visible: &dyn Fn(&[Directive]) -> bool,
        sets: &[&'d SelectionSet],
    ) -> Value {
        self.list(
            fields
                .iter()
                .filter(|f| !f.name.starts_with("__") && visible(&f.directives))
                .map(Node::Field),
            sets,
        )
    }
}

fn description(text: &Option<String>) -> Value {
    text.as_ref()
        .map(|t| Value::from(t.as_str()))
        .unwrap_or(Value::Null)
}

/// `Some(reason)` when the element carries `@deprecated`.
fn deprecation(directives: &[Directive]) -> Option<Value> {
    let directive = directives.iter().find(|d| d.name == "deprecated")?;
    let reason = directive
        .arguments
        .iter()
        .find(|(name, _)| name == "reason")
        .map(|(_, value)| crate::values::schema_value_to_json(value))
        .unwrap_or_else(|| Value::from("No longer supported"));
    Some(reason)
}
