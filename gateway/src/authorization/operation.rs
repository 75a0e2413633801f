//! Authorization of one prepared operation. At preparation, the places where the operation
//! selects a field with requirements are collected ([`OperationAuthorization::collect`]),
//! with their response paths (`@` for list items). Per request, each distinct field's
//! requirements are checked against the caller; when some are not met, the operation is
//! filtered (every selection of those fields removed, in the operation and its fragments),
//! planned again, and answered with an error at each removed path. Filtered plans are kept
//! per set of denied fields, so callers with the same rights share one.
//!
//! The walks here recurse once per selection-set level: preparation already bounded the
//! nesting (`max_nesting`) and the expanded size (`max_selections`) of every operation
//! that gets this far.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use graphql_tools::static_graphql::query::{
    Definition, Document, Field, FragmentDefinition, Selection, SelectionSet, TypeCondition,
};
use xxhash_rust::xxh3::Xxh3;

use super::{AuthorizationRules, AuthorizationSettings, Requirement, UNAUTHORIZED_FIELD_OR_TYPE};
use crate::caller::Identity;
use crate::graphql::{GraphQLError, PathSegment};
use crate::schema::{ApiSchema, named_type};

/// Filtered plans remembered per prepared operation (one per distinct set of rights).
const FILTERED_PER_OPERATION: usize = 16;

/// A field with requirements, as selected on a type.
#[derive(Debug)]
struct Coordinate {
    type_name: String,
    field: String,
    requirements: Arc<[Requirement]>,
}

/// A place in the response where a field with requirements sits.
#[derive(Debug)]
struct Site {
    coordinate: usize,
    path: Vec<PathSegment>,
}

/// The operation with unauthorized fields removed: what runs instead, and the errors
/// that explain the `null`s.
#[derive(Debug)]
pub struct Denied {
    /// The plan of the filtered operation (no fetch at all when nothing is left).
    pub plan: Arc<crate::fetch::Plan>,
    pub errors: Vec<GraphQLError>,
    /// Tells sets of denied fields apart in cache and de-duplication keys.
    pub fingerprint: u64,
}

/// What an operation needs on its way, collected once per prepared operation.
#[derive(Debug, Default)]
pub struct OperationAuthorization {
    coordinates: Vec<Coordinate>,
    sites: Vec<Site>,
    filtered: Mutex<Vec<(Vec<usize>, Arc<Denied>)>>,
}

impl OperationAuthorization {
    /// Collects the sites of `selection_set` (the selected operation's, on `root_type`).
    pub(crate) fn collect(
        rules: &AuthorizationRules,
        schema: &ApiSchema,
        document: &Document,
        root_type: &str,
        selection_set: &SelectionSet,
    ) -> Self {
        let mut collected = Self::default();
        if rules.is_empty() {
            return collected;
        }
        let fragments: HashMap<&str, &FragmentDefinition> = document
            .definitions
            .iter()
            .filter_map(|definition| match definition {
                Definition::Fragment(fragment) => Some((fragment.name.as_str(), fragment)),
                _ => None,
            })
            .collect();
        let mut walk = Collector {
            rules,
            schema,
            fragments: &fragments,
            into: &mut collected,
            path: Vec::new(),
            spreading: Vec::new(),
        };
        walk.set(root_type, selection_set);
        collected
    }

    /// Whether the operation selects any field with requirements.
    pub(crate) fn is_unrestricted(&self) -> bool {
        self.sites.is_empty()
    }

    /// The fields `identity` may not see (indexes, ascending); empty when it may see all.
    pub(crate) fn denied(
        &self,
        identity: &Identity,
        settings: &AuthorizationSettings,
    ) -> Vec<usize> {
        self.coordinates
            .iter()
            .enumerate()
            .filter(|(_, coordinate)| {
                !coordinate
                    .requirements
                    .iter()
                    .all(|requirement| requirement.allows(identity, settings))
            })
            .map(|(index, _)| index)
            .collect()
    }

    /// An error at each place in the response a denied field was selected (once, however
    /// often it was selected there), except below another one.
    pub(crate) fn errors(&self, denied: &[usize]) -> Vec<GraphQLError> {
        let mut removed: Vec<&[PathSegment]> = Vec::new();
        let mut errors = Vec::new();
        for site in self
            .sites
            .iter()
            .filter(|site| denied.contains(&site.coordinate))
        {
            if removed.iter().any(|above| site.path.starts_with(above)) {
                continue;
            }
            removed.push(&site.path);
            let coordinate = &self.coordinates[site.coordinate];
            let mut error = GraphQLError::with_code(
                format!(
                    "Unauthorized field or type: {}.{}",
                    coordinate.type_name, coordinate.field
                ),
                UNAUTHORIZED_FIELD_OR_TYPE,
            );
            error.path = Some(site.path.clone());
            errors.push(error);
        }
        errors
    }

    pub(crate) fn remembered(&self, denied: &[usize]) -> Option<Arc<Denied>> {
        self.filtered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(set, _)| set == denied)
            .map(|(_, filtered)| filtered.clone())
    }

    pub(crate) fn remember(&self, denied: Vec<usize>, filtered: Arc<Denied>) {
        let mut remembered = self.filtered.lock().unwrap_or_else(PoisonError::into_inner);
        if remembered.len() < FILTERED_PER_OPERATION {
            remembered.push((denied, filtered));
        }
    }

    /// `document` without any selection of the `denied` fields; a selection set left
    /// empty selects `__typename`, so the document stays valid.
    pub(crate) fn filter(
        &self,
        schema: &ApiSchema,
        document: &Document,
        denied: &[usize],
    ) -> Document {
        let denied: HashSet<(&str, &str)> = denied
            .iter()
            .filter_map(|index| self.coordinates.get(*index))
            .map(|c| (c.type_name.as_str(), c.field.as_str()))
            .collect();
        let mut filtered = document.clone();
        for definition in &mut filtered.definitions {
            match definition {
                Definition::Operation(operation) => {
                    let (kind_root, set) = crate::validate::operation_parts_mut(operation);
                    let root = match kind_root {
                        crate::graphql::OperationKind::Query => Some(schema.query_type()),
                        crate::graphql::OperationKind::Mutation => schema.mutation_type(),
                        crate::graphql::OperationKind::Subscription => schema.subscription_type(),
                    };
                    if let Some(root) = root {
                        filter_set(schema, &denied, root, set);
                    }
                }
                Definition::Fragment(fragment) => {
                    let TypeCondition::On(on) = &fragment.type_condition;
                    let on = on.clone();
                    filter_set(schema, &denied, &on, &mut fragment.selection_set);
                }
            }
        }
        filtered
    }

    /// A key for a set of denied fields.
    pub(crate) fn fingerprint(denied: &[usize]) -> u64 {
        let mut hasher = Xxh3::new();
        denied.hash(&mut hasher);
        hasher.finish()
    }
}

struct Collector<'a> {
    rules: &'a AuthorizationRules,
    schema: &'a ApiSchema,
    fragments: &'a HashMap<&'a str, &'a FragmentDefinition>,
    into: &'a mut OperationAuthorization,
    path: Vec<PathSegment>,
    spreading: Vec<&'a str>,
}

impl<'a> Collector<'a> {
    fn set(&mut self, parent: &str, set: &'a SelectionSet) {
        for item in &set.items {
            match item {
                Selection::Field(field) => self.field(parent, field),
                Selection::InlineFragment(fragment) => {
                    let on = match &fragment.type_condition {
                        Some(TypeCondition::On(on)) => on.as_str(),
                        None => parent,
                    };
                    self.set(on, &fragment.selection_set);
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.fragment_name.as_str();
                    let Some(fragment) = self.fragments.get(name).copied() else {
                        continue;
                    };
                    if self.spreading.contains(&name) {
                        continue;
                    }
                    self.spreading.push(name);
                    let TypeCondition::On(on) = &fragment.type_condition;
                    self.set(on, &fragment.selection_set);
                    self.spreading.pop();
                }
            }
        }
    }

    fn field(&mut self, parent: &str, field: &'a Field) {
        if field.name.starts_with("__") {
            return;
        }
        let key = field.alias.as_deref().unwrap_or(&field.name);
        self.path.push(PathSegment::Key(key.to_owned()));
        if let Some(requirements) = self.rules.field(parent, &field.name) {
            let coordinate = self.coordinate(parent, &field.name, requirements);
            self.into.sites.push(Site {
                coordinate,
                path: self.path.clone(),
            });
        }
        if !field.selection_set.items.is_empty()
            && let Some(definition) = self.schema.field(parent, &field.name)
        {
            let lists = list_depth(&definition.field_type);
            for _ in 0..lists {
                self.path.push(PathSegment::Key("@".to_owned()));
            }
            self.set(named_type(&definition.field_type), &field.selection_set);
            self.path.truncate(self.path.len() - lists);
        }
        self.path.pop();
    }

    fn coordinate(
        &mut self,
        parent: &str,
        field: &str,
        requirements: &Arc<[Requirement]>,
    ) -> usize {
        let known = self
            .into
            .coordinates
            .iter()
            .position(|c| c.type_name == parent && c.field == field);
        known.unwrap_or_else(|| {
            self.into.coordinates.push(Coordinate {
                type_name: parent.to_owned(),
                field: field.to_owned(),
                requirements: requirements.clone(),
            });
            self.into.coordinates.len() - 1
        })
    }
}

fn list_depth(ty: &graphql_tools::static_graphql::schema::Type) -> usize {
    use graphql_tools::static_graphql::schema::Type;
    match ty {
        Type::NamedType(_) => 0,
        Type::NonNullType(inner) => list_depth(inner),
        Type::ListType(inner) => 1 + list_depth(inner),
    }
}

fn filter_set(
    schema: &ApiSchema,
    denied: &HashSet<(&str, &str)>,
    parent: &str,
    set: &mut SelectionSet,
) {
    set.items.retain(|item| match item {
        Selection::Field(field) => !denied.contains(&(parent, field.name.as_str())),
        _ => true,
    });
    for item in &mut set.items {
        match item {
            Selection::Field(field) if !field.selection_set.items.is_empty() => {
                if let Some(definition) = schema.field(parent, &field.name) {
                    let named = named_type(&definition.field_type).to_owned();
                    filter_set(schema, denied, &named, &mut field.selection_set);
                }
            }
            Selection::InlineFragment(fragment) => {
                let on = match &fragment.type_condition {
                    Some(TypeCondition::On(on)) => on.clone(),
                    None => parent.to_owned(),
                };
                filter_set(schema, denied, &on, &mut fragment.selection_set);
            }
            _ => {}
        }
    }
    if set.items.is_empty() {
        set.items.push(Selection::Field(Field {
            position: set.span.0,
            alias: None,
            name: "__typename".to_owned(),
            arguments: Vec::new(),
            directives: Vec::new(),
            selection_set: SelectionSet {
                span: set.span,
                items: Vec::new(),
            },
        }));
    }
}
