//! The operation's projection: which fields of the client's selection apply to an object of
//! a given runtime type (GraphQL's "CollectFields"), grouped by response key in query order,
//! with each field's type in the API schema. Worked out once per prepared operation — and per
//! value of the variables its `@skip`/`@include` read — and shared by every request of it,
//! instead of collected again while every response is written.
//!
//! [`OperationShape`] is the client's selection with fragments resolved to shared parts and
//! directive conditions read once (built at preparation). A [`Projection`] is that selection
//! for one set of condition values: a tree of [`Node`]s, one per (runtime type, selections),
//! each built the first time a response reaches it — only the types the data names are ever
//! built — and kept for the next request.

use std::sync::{Arc, Mutex, OnceLock};

use graphql_tools::static_graphql::query::{
    Definition, Directive, Document, FragmentDefinition, Selection, SelectionSet, TypeCondition,
    Value as QueryValue,
};
use graphql_tools::static_graphql::schema::{Type, TypeDefinition};
use serde_json::{Map, Value};

use super::strings::write_string;
use crate::schema::{ApiSchema, named_type};

/// How many sets of `@skip`/`@include` values keep their projection per operation; others
/// get one built for the request.
const CACHED_CONDITION_VALUES: usize = 16;

/// A selection set of the client's operation, fragment spreads resolved to the fragment's
/// shared selections.
#[derive(Debug, Default)]
struct Selections {
    items: Vec<Item>,
}

#[derive(Debug)]
enum Item {
    Field(Arc<FieldSelection>),
    Fragment(FragmentSelection),
}

#[derive(Debug)]
struct FieldSelection {
    name: Box<str>,
    /// The response key: the alias, else the name.
    key: Box<str>,
    condition: Condition,
    selection: Arc<Selections>,
}

/// An inline fragment, or a spread of a named fragment.
#[derive(Debug)]
struct FragmentSelection {
    /// The named fragment a spread stands for: spread at most once per collection.
    spread: Option<usize>,
    type_condition: Option<Box<str>>,
    condition: Condition,
    selection: Arc<Selections>,
}

/// The `@skip(if:)` / `@include(if:)` directives of one selection.
#[derive(Debug, Default)]
struct Condition {
    tests: Vec<Test>,
}

#[derive(Debug)]
struct Test {
    /// `@skip` (else `@include`).
    skip: bool,
    operand: Operand,
}

#[derive(Debug)]
enum Operand {
    /// A literal: its value if it is a boolean.
    Constant(Option<bool>),
    /// The index of a variable in [`OperationShape::variables`].
    Variable(usize),
}

impl Condition {
    fn holds(&self, values: &[Option<bool>]) -> bool {
        self.tests.iter().all(|test| {
            let value = match test.operand {
                Operand::Constant(value) => value,
                Operand::Variable(index) => values.get(index).copied().flatten(),
            };
            if test.skip {
                value != Some(true)
            } else {
                value != Some(false)
            }
        })
    }
}

/// The client's selection of one prepared operation, with the projections built from it.
#[derive(Debug)]
pub struct OperationShape {
    root_type: Option<Box<str>>,
    root: Arc<Selections>,
    /// The variables `@skip`/`@include` read, in order of first use.
    variables: Vec<Box<str>>,
    /// The projection when no condition reads a variable.
    fixed: OnceLock<Arc<Projection>>,
    /// Projections per set of variable values, the first few kept.
    by_values: Mutex<Vec<Arc<Projection>>>,
}

impl OperationShape {
    /// The shape of `selection_set`, an operation of `document` whose root type is
    /// `root_type`. The document has passed the operation limits and validation: its depth
    /// is bounded and its fragments do not cycle (a spread of a fragment being read is left
    /// out all the same).
    pub fn new(
        document: &Document,
        root_type: Option<&str>,
        selection_set: Option<&SelectionSet>,
    ) -> Self {
        let fragments: Vec<&FragmentDefinition> = document
            .definitions
            .iter()
            .filter_map(|definition| match definition {
                Definition::Fragment(fragment) => Some(fragment),
                Definition::Operation(_) => None,
            })
            .collect();
        let mut reader = Reader {
            converted: vec![None; fragments.len()],
            reading: vec![false; fragments.len()],
            fragments,
            variables: Vec::new(),
        };
        let root = match selection_set {
            Some(set) => reader.selections(set),
            None => Arc::default(),
        };
        Self {
            root_type: root_type.map(Box::from),
            root,
            variables: reader.variables,
            fixed: OnceLock::new(),
            by_values: Mutex::new(Vec::new()),
        }
    }

    /// The projection for a request with these (coerced) variables.
    pub fn projection(
        &self,
        schema: &ApiSchema,
        variables: &Map<String, Value>,
    ) -> Arc<Projection> {
        if self.variables.is_empty() {
            return self
                .fixed
                .get_or_init(|| Arc::new(self.build(schema, Vec::new())))
                .clone();
        }
        let values: Vec<Option<bool>> = self
            .variables
            .iter()
            .map(|name| variables.get(&**name).and_then(Value::as_bool))
            .collect();
        let Ok(mut cached) = self.by_values.lock() else {
            return Arc::new(self.build(schema, values));
        };
        if let Some(known) = cached.iter().find(|known| known.values == values) {
            return known.clone();
        }
        let projection = Arc::new(self.build(schema, values));
        if cached.len() < CACHED_CONDITION_VALUES {
            cached.push(projection.clone());
        }
        projection
    }

    fn build(&self, schema: &ApiSchema, values: Vec<Option<bool>>) -> Projection {
        let root = self.root_type.as_deref().map(|root_type| {
            Node::build(schema, &values, root_type, std::slice::from_ref(&self.root))
        });
        Projection { values, root }
    }
}

/// Reads the document into [`Selections`], each named fragment once.
struct Reader<'d> {
    fragments: Vec<&'d FragmentDefinition>,
    converted: Vec<Option<Arc<Selections>>>,
    reading: Vec<bool>,
    variables: Vec<Box<str>>,
}

impl Reader<'_> {
    fn selections(&mut self, set: &SelectionSet) -> Arc<Selections> {
        let mut items = Vec::with_capacity(set.items.len());
        for selection in &set.items {
            match selection {
                Selection::Field(field) => items.push(Item::Field(Arc::new(FieldSelection {
                    name: field.name.as_str().into(),
                    key: field.alias.as_deref().unwrap_or(&field.name).into(),
                    condition: self.condition(&field.directives),
                    selection: self.selections(&field.selection_set),
                }))),
                Selection::InlineFragment(fragment) => {
                    items.push(Item::Fragment(FragmentSelection {
                        spread: None,
                        type_condition: fragment
                            .type_condition
                            .as_ref()
                            .map(|TypeCondition::On(name)| Box::<str>::from(name.as_str())),
                        condition: self.condition(&fragment.directives),
                        selection: self.selections(&fragment.selection_set),
                    }));
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.fragment_name.as_str();
                    let Some(index) = self.fragments.iter().position(|f| f.name == name) else {
                        continue;
                    };
                    let Some(selection) = self.fragment(index) else {
                        continue;
                    };
                    let TypeCondition::On(condition) = &self.fragments[index].type_condition;
                    items.push(Item::Fragment(FragmentSelection {
                        spread: Some(index),
                        type_condition: Some(condition.as_str().into()),
                        condition: self.condition(&spread.directives),
                        selection,
                    }));
                }
            }
        }
        Arc::new(Selections { items })
    }

    /// The selections of the named fragment at `index`, read once; `None` for a spread
    /// inside the fragment itself.
    fn fragment(&mut self, index: usize) -> Option<Arc<Selections>> {
        if let Some(Some(known)) = self.converted.get(index) {
            return Some(known.clone());
        }
        if self.reading.get(index).copied().unwrap_or(true) {
            return None;
        }
        self.reading[index] = true;
        let fragment = self.fragments[index];
        let selections = self.selections(&fragment.selection_set);
        self.reading[index] = false;
        self.converted[index] = Some(selections.clone());
        Some(selections)
    }

    fn condition(&mut self, directives: &[Directive]) -> Condition {
        let tests = directives
            .iter()
            .filter(|directive| matches!(directive.name.as_str(), "skip" | "include"))
            .map(|directive| {
                let operand = match directive.arguments.iter().find(|(name, _)| name == "if") {
                    Some((_, QueryValue::Variable(variable))) => {
                        let index = match self.variables.iter().position(|v| **v == **variable) {
                            Some(index) => index,
                            None => {
                                self.variables.push(variable.as_str().into());
                                self.variables.len() - 1
                            }
                        };
                        Operand::Variable(index)
                    }
                    Some((_, QueryValue::Boolean(value))) => Operand::Constant(Some(*value)),
                    _ => Operand::Constant(None),
                };
                Test {
                    skip: directive.name == "skip",
                    operand,
                }
            })
            .collect();
        Condition { tests }
    }
}

/// The client's selection for one set of `@skip`/`@include` values.
#[derive(Debug)]
pub struct Projection {
    values: Vec<Option<bool>>,
    /// The operation's root type's node; `None` when the schema has no such root type.
    root: Option<Node>,
}

impl Projection {
    pub(super) fn root(&self) -> Option<&Node> {
        self.root.as_ref()
    }

    /// The node of an object of the type `group` ends in: its concrete type when `typename`
    /// (the data's `__typename`) names an object type that belongs to an abstract field type,
    /// else the field type itself; and whether that is only the abstract type.
    pub(super) fn child<'p>(
        &self,
        schema: &ApiSchema,
        group: &'p Group,
        typename: Option<&str>,
    ) -> Option<(&'p Node, bool)> {
        let field_type = group.field_type.as_ref()?;
        let build =
            |runtime_type: &str| Node::build(schema, &self.values, runtime_type, &group.sub_sets);
        match &group.children {
            Children::None => None,
            Children::Object(node) => {
                Some((node.get_or_init(|| build(named_type(field_type))), false))
            }
            Children::Abstract { concrete, fallback } => {
                let known = typename.and_then(|typename| {
                    concrete
                        .binary_search_by(|(name, _)| (**name).cmp(typename))
                        .ok()
                        .and_then(|index| concrete.get(index))
                });
                Some(match known {
                    Some((name, node)) => (node.get_or_init(|| build(name)), false),
                    None => (fallback.get_or_init(|| build(named_type(field_type))), true),
                })
            }
        }
    }
}

/// The fields of some selections that apply to one runtime type, grouped by response key.
#[derive(Debug)]
pub(super) struct Node {
    pub runtime_type: Box<str>,
    /// `runtime_type` as a JSON string, the value of `__typename`.
    pub typename_json: Box<[u8]>,
    pub groups: Vec<Group>,
}

/// One response key of an object: its fields' name and type, and their merged
/// sub-selections.
#[derive(Debug)]
pub(super) struct Group {
    pub key: Box<str>,
    /// `"key":` as written before the value.
    pub key_json: Box<[u8]>,
    /// The name of the key's first field.
    pub name: Box<str>,
    pub meta: Meta,
    /// The field's type in the schema (`None` for meta fields and unknown fields).
    pub field_type: Option<Type>,
    pub kind: NamedKind,
    sub_sets: Vec<Arc<Selections>>,
    children: Children,
}

/// Which meta field a group is, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Meta {
    Field,
    Typename,
    /// `__schema` (answered at the root only).
    Schema,
    /// `__type` (answered at the root only).
    Type,
}

impl Meta {
    fn of(name: &str) -> Self {
        match name {
            "__typename" => Self::Typename,
            "__schema" => Self::Schema,
            "__type" => Self::Type,
            _ => Self::Field,
        }
    }
}

/// A JSON string, and `:` after it when `colon`.
fn json_string(value: &str, colon: bool) -> Box<[u8]> {
    let mut out = Vec::with_capacity(value.len() + 3);
    write_string(&mut out, value);
    if colon {
        out.push(b':');
    }
    out.into_boxed_slice()
}

/// The nodes below a group, built when first reached.
#[derive(Debug)]
enum Children {
    /// A leaf, a meta field or an unknown field.
    None,
    Object(OnceLock<Node>),
    /// The object types of the abstract type (sorted by name), and the abstract type itself
    /// for values whose concrete type is unknown.
    Abstract {
        concrete: Vec<(Box<str>, OnceLock<Node>)>,
        fallback: OnceLock<Node>,
    },
}

/// What the named type at the bottom of a field's type is.
#[derive(Debug)]
pub(super) enum NamedKind {
    Object,
    Abstract,
    /// An enum, with the values the API schema gives it.
    Enum(EnumValues),
    CustomScalar,
    /// Built-in scalars.
    Leaf,
}

#[derive(Debug)]
pub(super) struct EnumValues {
    pub name: Box<str>,
    values: Vec<Box<str>>,
}

impl EnumValues {
    pub fn contains(&self, value: &str) -> bool {
        self.values.iter().any(|known| **known == *value)
    }
}

impl NamedKind {
    fn of(schema: &ApiSchema, ty: &Type) -> Self {
        let name = named_type(ty);
        match schema.type_def(name) {
            Some(TypeDefinition::Object(_)) => Self::Object,
            Some(TypeDefinition::Interface(_) | TypeDefinition::Union(_)) => Self::Abstract,
            Some(TypeDefinition::Enum(definition)) => Self::Enum(EnumValues {
                name: definition.name.as_str().into(),
                values: definition
                    .values
                    .iter()
                    .map(|value| value.name.as_str().into())
                    .collect(),
            }),
            Some(TypeDefinition::Scalar(_))
                if !["String", "Int", "Float", "Boolean", "ID"].contains(&name) =>
            {
                Self::CustomScalar
            }
            _ => Self::Leaf,
        }
    }
}

impl Node {
    fn build(
        schema: &ApiSchema,
        values: &[Option<bool>],
        runtime_type: &str,
        sets: &[Arc<Selections>],
    ) -> Self {
        let mut collected: Vec<(&str, Vec<&FieldSelection>)> = Vec::new();
        let mut spread = Vec::new();
        for set in sets {
            collect(
                schema,
                values,
                runtime_type,
                set,
                &mut collected,
                &mut spread,
            );
        }
        let groups = collected
            .into_iter()
            .filter_map(|(key, fields)| {
                let first = fields.first()?;
                let field_type = schema
                    .field(runtime_type, &first.name)
                    .map(|definition| definition.field_type.clone());
                let kind = field_type
                    .as_ref()
                    .map_or(NamedKind::Leaf, |ty| NamedKind::of(schema, ty));
                let (children, sub_sets) = match (&kind, &field_type) {
                    (NamedKind::Object, _) => (
                        Children::Object(OnceLock::new()),
                        fields.iter().map(|f| f.selection.clone()).collect(),
                    ),
                    (NamedKind::Abstract, Some(ty)) => (
                        Children::Abstract {
                            concrete: schema
                                .possible_types(named_type(ty))
                                .into_iter()
                                .filter(|name| schema.is_object(name))
                                .map(|name| (Box::from(name), OnceLock::new()))
                                .collect(),
                            fallback: OnceLock::new(),
                        },
                        fields.iter().map(|f| f.selection.clone()).collect(),
                    ),
                    _ => (Children::None, Vec::new()),
                };
                Some(Group {
                    key: key.into(),
                    key_json: json_string(key, true),
                    name: first.name.clone(),
                    meta: Meta::of(&first.name),
                    field_type,
                    kind,
                    sub_sets,
                    children,
                })
            })
            .collect();
        Self {
            runtime_type: runtime_type.into(),
            typename_json: json_string(runtime_type, false),
            groups,
        }
    }
}

/// Collects the fields of `set` that apply to an object of `runtime_type` into `groups`.
fn collect<'s>(
    schema: &ApiSchema,
    values: &[Option<bool>],
    runtime_type: &str,
    set: &'s Selections,
    groups: &mut Vec<(&'s str, Vec<&'s FieldSelection>)>,
    spread: &mut Vec<usize>,
) {
    for item in &set.items {
        match item {
            Item::Field(field) => {
                if !field.condition.holds(values) {
                    continue;
                }
                let key = &*field.key;
                match groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, fields)) => fields.push(field),
                    None => groups.push((key, vec![field])),
                }
            }
            Item::Fragment(fragment) => {
                if !fragment.condition.holds(values) {
                    continue;
                }
                if let Some(index) = fragment.spread {
                    if spread.contains(&index) {
                        continue;
                    }
                    spread.push(index);
                }
                let applies = fragment
                    .type_condition
                    .as_deref()
                    .is_none_or(|condition| schema.satisfies(runtime_type, condition));
                if applies {
                    collect(
                        schema,
                        values,
                        runtime_type,
                        &fragment.selection,
                        groups,
                        spread,
                    );
                }
            }
        }
    }
}
