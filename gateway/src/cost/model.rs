//! What the estimate needs from the supergraph, read once when it loads: per type its
//! `@cost` weight and whether it is composite, per field its `@cost`, its `@listSize`, its
//! named type, whether it is a list, and its arguments' weights and defaults.

use std::collections::HashMap;

use graphql_tools::static_graphql::schema::{
    Definition, Directive, Document, Field, InputValue, Type, TypeDefinition, Value,
};

/// The cost rules of one supergraph (see [`crate::cost`]).
#[derive(Debug, Default)]
pub(crate) struct CostModel {
    types: HashMap<String, TypeCost>,
    mutation_type: Option<String>,
}

/// The list size a field without `@listSize` (and outside a parent's `sizedFields`) is
/// assumed to have, unless configured otherwise.
pub const DEFAULT_LIST_SIZE: u64 = 10;

#[derive(Debug, Default)]
pub(crate) struct TypeCost {
    /// `@cost(weight:)` on the type.
    pub(crate) weight: Option<u64>,
    /// Object, interface or union: 1 by default; scalars and enums: 0.
    pub(crate) composite: bool,
    pub(crate) fields: HashMap<String, FieldCost>,
}

#[derive(Debug)]
pub(crate) struct FieldCost {
    /// `@cost(weight:)` on the field; replaces the type's weight.
    pub(crate) weight: Option<u64>,
    pub(crate) type_name: String,
    pub(crate) is_list: bool,
    pub(crate) list_size: Option<ListSize>,
    pub(crate) arguments: HashMap<String, ArgumentCost>,
}

#[derive(Debug, Default)]
pub(crate) struct ArgumentCost {
    /// `@cost(weight:)` on the argument, charged when the operation passes it.
    pub(crate) weight: Option<u64>,
    /// The argument's default, when it is an integer (what a slicing argument falls back to).
    pub(crate) default: Option<i64>,
}

/// `@listSize` of federation v2.9 (IBM's cost spec).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ListSize {
    pub(crate) assumed_size: Option<u64>,
    pub(crate) slicing_arguments: Vec<String>,
    pub(crate) sized_fields: Vec<String>,
    /// Default true: exactly one slicing argument must have a value.
    pub(crate) require_one_slicing_argument: bool,
}

impl CostModel {
    /// Reads `@cost` and `@listSize` from a supergraph (or any schema) document.
    pub(crate) fn from_schema(document: &Document) -> Self {
        let mut model = Self::default();
        for definition in &document.definitions {
            match definition {
                Definition::SchemaDefinition(schema) => {
                    model.mutation_type = schema.mutation.clone();
                }
                Definition::TypeDefinition(definition) => {
                    let (name, cost) = type_cost(definition);
                    model.types.insert(name.to_owned(), cost);
                }
                _ => {}
            }
        }
        if model.mutation_type.is_none() && model.types.contains_key("Mutation") {
            model.mutation_type = Some("Mutation".to_owned());
        }
        model
    }

    pub(crate) fn type_cost(&self, name: &str) -> Option<&TypeCost> {
        self.types.get(name)
    }

    pub(crate) fn field(&self, type_name: &str, field_name: &str) -> Option<&FieldCost> {
        self.types.get(type_name)?.fields.get(field_name)
    }

    pub(crate) fn mutation_type(&self) -> Option<&str> {
        self.mutation_type.as_deref()
    }

    /// The weight of a value of type `name` when no `@cost` on its field says otherwise.
    pub(crate) fn type_weight(&self, name: &str) -> u64 {
        self.types
            .get(name)
            .map_or(0, |t| t.weight.unwrap_or(u64::from(t.composite)))
    }
}

fn type_cost(definition: &TypeDefinition) -> (&str, TypeCost) {
    let (name, directives, fields, composite): (_, _, &[Field], _) = match definition {
        TypeDefinition::Object(t) => (&t.name, &t.directives, &t.fields, true),
        TypeDefinition::Interface(t) => (&t.name, &t.directives, &t.fields, true),
        TypeDefinition::Union(t) => (&t.name, &t.directives, &[], true),
        TypeDefinition::Scalar(t) => (&t.name, &t.directives, &[], false),
        TypeDefinition::Enum(t) => (&t.name, &t.directives, &[], false),
        TypeDefinition::InputObject(t) => (&t.name, &t.directives, &[], false),
    };
    let cost = TypeCost {
        weight: weight(directives),
        composite,
        fields: fields
            .iter()
            .map(|field| (field.name.clone(), field_cost(field)))
            .collect(),
    };
    (name, cost)
}

fn field_cost(field: &Field) -> FieldCost {
    let (type_name, is_list) = unwrap_type(&field.field_type);
    FieldCost {
        weight: weight(&field.directives),
        type_name: type_name.to_owned(),
        is_list,
        list_size: field
            .directives
            .iter()
            .find(|d| d.name == "listSize")
            .map(list_size),
        arguments: field
            .arguments
            .iter()
            .map(|argument| (argument.name.clone(), argument_cost(argument)))
            .collect(),
    }
}

fn argument_cost(argument: &InputValue) -> ArgumentCost {
    ArgumentCost {
        weight: weight(&argument.directives),
        default: match &argument.default_value {
            Some(Value::Int(n)) => n.as_i64(),
            _ => None,
        },
    }
}

/// The named type at the bottom of `ty`, and whether a list wraps it.
fn unwrap_type(ty: &Type) -> (&str, bool) {
    let mut current = ty;
    let mut is_list = false;
    loop {
        match current {
            Type::NamedType(name) => return (name, is_list),
            Type::ListType(inner) => {
                is_list = true;
                current = inner;
            }
            Type::NonNullType(inner) => current = inner,
        }
    }
}

/// `@cost(weight:)` among `directives` (negative weights count as 0).
fn weight(directives: &[Directive]) -> Option<u64> {
    let directive = directives.iter().find(|d| d.name == "cost")?;
    match argument(directive, "weight")? {
        Value::Int(n) => Some(n.as_i64().map_or(0, |n| u64::try_from(n).unwrap_or(0))),
        _ => None,
    }
}

fn list_size(directive: &Directive) -> ListSize {
    let strings = |name| match argument(directive, name) {
        Some(Value::List(items)) => items
            .iter()
            .filter_map(|item| match item {
                Value::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    ListSize {
        assumed_size: match argument(directive, "assumedSize") {
            Some(Value::Int(n)) => n.as_i64().map(|n| u64::try_from(n).unwrap_or(0)),
            _ => None,
        },
        slicing_arguments: strings("slicingArguments"),
        sized_fields: strings("sizedFields"),
        require_one_slicing_argument: !matches!(
            argument(directive, "requireOneSlicingArgument"),
            Some(Value::Boolean(false))
        ),
    }
}

fn argument<'d>(directive: &'d Directive, name: &str) -> Option<&'d Value> {
    directive
        .arguments
        .iter()
        .find_map(|(key, value)| (key == name).then_some(value))
}
