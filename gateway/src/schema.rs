//! An index over the client-facing API schema: the lookups that validation of variables,
//! response shaping and introspection need (field types, type kinds, possible types).

use std::collections::BTreeSet;
use std::sync::Arc;

use graphql_tools::static_graphql::schema::{
    Definition, DirectiveDefinition, Document, Field, InputValue, Type, TypeDefinition,
};

use rustc_hash::FxHashMap;

/// The API schema (`planner.consumer_schema`) with name-indexed lookups.
#[derive(Debug)]
pub struct ApiSchema {
    document: Arc<Document>,
    /// Fx-hashed: looked up for every field of every response, keyed by schema names only.
    types: FxHashMap<String, usize>,
    directives: Vec<usize>,
    possible_types: FxHashMap<String, BTreeSet<String>>,
    query_type: String,
    mutation_type: Option<String>,
    subscription_type: Option<String>,
}

impl ApiSchema {
    pub fn new(document: Arc<Document>) -> Self {
        let mut types = FxHashMap::default();
        let mut directives = Vec::new();
        let mut possible_types: FxHashMap<String, BTreeSet<String>> = FxHashMap::default();
        let (mut query, mut mutation, mut subscription) = (None, None, None);
        for (index, definition) in document.definitions.iter().enumerate() {
            match definition {
                Definition::TypeDefinition(def) => {
                    types.insert(type_name(def).to_string(), index);
                    match def {
                        TypeDefinition::Object(object) => {
                            possible_types
                                .entry(object.name.clone())
                                .or_default()
                                .insert(object.name.clone());
                            for interface in &object.implements_interfaces {
                                possible_types
                                    .entry(interface.clone())
                                    .or_default()
                                    .insert(object.name.clone());
                            }
                        }
                        TypeDefinition::Union(union) => {
                            let entry = possible_types.entry(union.name.clone()).or_default();
                            entry.extend(union.types.iter().cloned());
                        }
                        _ => {}
                    }
                }
                Definition::DirectiveDefinition(_) => directives.push(index),
                Definition::SchemaDefinition(schema) => {
                    query = schema.query.clone();
                    mutation = schema.mutation.clone();
                    subscription = schema.subscription.clone();
                }
                Definition::TypeExtension(_) => {}
            }
        }
        let default_root = |name: &str| types.contains_key(name).then(|| name.to_string());
        let query_type = query.unwrap_or_else(|| "Query".to_string());
        let mutation_type = mutation.or_else(|| default_root("Mutation"));
        let subscription_type = subscription.or_else(|| default_root("Subscription"));
        Self {
            document,
            types,
            directives,
            possible_types,
            query_type,
            mutation_type,
            subscription_type,
        }
    }

    pub fn document(&self) -> &Document {
        &self.document
    }

    pub fn query_type(&self) -> &str {
        &self.query_type
    }

    pub fn mutation_type(&self) -> Option<&str> {
        self.mutation_type.as_deref()
    }

    pub fn subscription_type(&self) -> Option<&str> {
        self.subscription_type.as_deref()
    }

    pub fn type_def(&self, name: &str) -> Option<&TypeDefinition> {
        let index = *self.types.get(name)?;
        match self.document.definitions.get(index)? {
            Definition::TypeDefinition(def) => Some(def),
            _ => None,
        }
    }

    /// Every named type, in schema order.
    pub fn types(&self) -> impl Iterator<Item = &TypeDefinition> {
        self.document
            .definitions
            .iter()
            .filter_map(|def| match def {
                Definition::TypeDefinition(def) => Some(def),
                _ => None,
            })
    }

    pub fn directives(&self) -> impl Iterator<Item = &DirectiveDefinition> {
        self.directives
            .iter()
            .filter_map(|index| match self.document.definitions.get(*index) {
                Some(Definition::DirectiveDefinition(def)) => Some(def),
                _ => None,
            })
    }

    pub fn field(&self, type_name: &str, field_name: &str) -> Option<&Field> {
        let fields = match self.type_def(type_name)? {
            TypeDefinition::Object(object) => &object.fields,
            TypeDefinition::Interface(interface) => &interface.fields,
            _ => return None,
        };
        fields.iter().find(|field| field.name == field_name)
    }

    pub fn input_fields(&self, type_name: &str) -> Option<&[InputValue]> {
        match self.type_def(type_name)? {
            TypeDefinition::InputObject(input) => Some(&input.fields),
            _ => None,
        }
    }

    /// Whether a value of type `runtime_type` satisfies a fragment's type condition.
    /// `runtime_type` is usually an object type; it is an interface when a value's concrete
    /// type is unknown (see the response shaper), which satisfies itself and the interfaces
    /// it implements.
    pub fn satisfies(&self, runtime_type: &str, condition: &str) -> bool {
        runtime_type == condition
            || self
                .possible_types
                .get(condition)
                .is_some_and(|set| set.contains(runtime_type))
            || matches!(
                self.type_def(runtime_type),
                Some(TypeDefinition::Interface(interface))
                    if interface.implements_interfaces.iter().any(|name| name == condition)
            )
    }

    /// Whether `name` is an object type of this schema: only those may be a value's
    /// `__typename`.
    pub fn is_object(&self, name: &str) -> bool {
        matches!(self.type_def(name), Some(TypeDefinition::Object(_)))
    }

    pub fn possible_types(&self, abstract_type: &str) -> Vec<&str> {
        self.possible_types
            .get(abstract_type)
            .map(|set| set.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    pub fn is_abstract(&self, name: &str) -> bool {
        matches!(
            self.type_def(name),
            Some(TypeDefinition::Interface(_) | TypeDefinition::Union(_))
        )
    }
}

pub fn type_name(def: &TypeDefinition) -> &str {
    match def {
        TypeDefinition::Scalar(t) => &t.name,
        TypeDefinition::Object(t) => &t.name,
        TypeDefinition::Interface(t) => &t.name,
        TypeDefinition::Union(t) => &t.name,
        TypeDefinition::Enum(t) => &t.name,
        TypeDefinition::InputObject(t) => &t.name,
    }
}

/// The named type under any list / non-null wrappers.
pub fn named_type(ty: &Type) -> &str {
    match ty {
        Type::NamedType(name) => name,
        Type::ListType(inner) | Type::NonNullType(inner) => named_type(inner),
    }
}
