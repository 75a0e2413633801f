//! Field collection (GraphQL spec, "CollectFields"): which fields of the client's selection
//! apply to an object of a given runtime type, grouped by response key, in query order.

use std::collections::HashMap;

use graphql_tools::static_graphql::query::{
    Directive, Document, Field, FragmentDefinition, Selection, SelectionSet, TypeCondition,
};
use serde_json::{Map, Value};

use crate::schema::ApiSchema;
use crate::values::query_value_to_json;

/// Fields grouped by response key; each group's fields merge their sub-selections.
pub type FieldGroups<'d> = Vec<(&'d str, Vec<&'d Field>)>;

/// What field collection needs from the request: the schema, fragments and variables.
pub struct FieldCollector<'d> {
    pub schema: &'d ApiSchema,
    pub fragments: HashMap<&'d str, &'d FragmentDefinition>,
    pub variables: &'d Map<String, Value>,
}

impl<'d> FieldCollector<'d> {
    pub fn new(
        schema: &'d ApiSchema,
        document: &'d Document,
        variables: &'d Map<String, Value>,
    ) -> Self {
        let fragments = document
            .definitions
            .iter()
            .filter_map(|definition| match definition {
                graphql_tools::static_graphql::query::Definition::Fragment(f) => {
                    Some((f.name.as_str(), f))
                }
                _ => None,
            })
            .collect();
        Self {
            schema,
            fragments,
            variables,
        }
    }

    /// Collects the fields of `sets` that apply to an object whose runtime type is
    /// `runtime_type`, honouring `@skip` / `@include` and fragment type conditions.
    pub fn collect(&self, runtime_type: &str, sets: &[&'d SelectionSet]) -> FieldGroups<'d> {
        let mut groups: FieldGroups<'d> = Vec::new();
        let mut visited = Vec::new();
        for set in sets {
            self.collect_into(runtime_type, set, &mut groups, &mut visited);
        }
        groups
    }

    fn collect_into(
        &self,
        runtime_type: &str,
        set: &'d SelectionSet,
        groups: &mut FieldGroups<'d>,
        visited: &mut Vec<&'d str>,
    ) {
        for selection in &set.items {
            match selection {
                Selection::Field(field) => {
                    if !self.included(&field.directives) {
                        continue;
                    }
                    let key = field.alias.as_deref().unwrap_or(&field.name);
                    match groups.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, fields)) => fields.push(field),
                        None => groups.push((key, vec![field])),
                    }
                }
                Selection::InlineFragment(fragment) => {
                    if !self.included(&fragment.directives) {
                        continue;
                    }
                    let applies = match &fragment.type_condition {
                        Some(TypeCondition::On(name)) => self.schema.satisfies(runtime_type, name),
                        None => true,
                    };
                    if applies {
                        self.collect_into(runtime_type, &fragment.selection_set, groups, visited);
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.fragment_name.as_str();
                    if !self.included(&spread.directives) || visited.contains(&name) {
                        continue;
                    }
                    visited.push(name);
                    let Some(fragment) = self.fragments.get(name) else {
                        continue;
                    };
                    let TypeCondition::On(condition) = &fragment.type_condition;
                    if self.schema.satisfies(runtime_type, condition) {
                        self.collect_into(runtime_type, &fragment.selection_set, groups, visited);
                    }
                }
            }
        }
    }

    /// `@skip(if:)` / `@include(if:)`, with variables.
    fn included(&self, directives: &[Directive]) -> bool {
        directives.iter().all(|directive| {
            let condition = || {
                directive
                    .arguments
                    .iter()
                    .find(|(name, _)| name == "if")
                    .map(|(_, value)| query_value_to_json(value, self.variables))
                    .and_then(|value| value.as_bool())
            };
            match directive.name.as_str() {
                "skip" => condition() != Some(true),
                "include" => condition() != Some(false),
                _ => true,
            }
        })
    }

    /// A field argument's value, variables substituted.
    pub fn argument(&self, field: &Field, name: &str) -> Option<Value> {
        field
            .arguments
            .iter()
            .find(|(arg, _)| arg == name)
            .map(|(_, value)| query_value_to_json(value, self.variables))
    }
}
