//! Parsing and validating the client operation against the API schema. The planner does not
//! validate, so nothing reaches it that this stage has not accepted.

use graphql_tools::static_graphql::query::{
    Definition, Document, OperationDefinition, Selection, SelectionSet, VariableDefinition,
};
use graphql_tools::validation::rules::default_rules_validation_plan;
use graphql_tools::validation::validate::ValidationPlan;

pub use crate::graphql::OperationKind;
use crate::graphql::{GraphQLError, Location};
use crate::schema::ApiSchema;

pub const GRAPHQL_PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
pub const GRAPHQL_VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";

/// Why a request was refused before execution. Every variant is a client error.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    Parse(String),
    #[error("the operation is invalid")]
    Validation(Vec<GraphQLError>),
    #[error("the variables are invalid")]
    Variables(Vec<GraphQLError>),
}

impl RequestError {
    /// The errors exactly as the client receives them.
    pub fn into_graphql_errors(self) -> Vec<GraphQLError> {
        match self {
            Self::Parse(message) => vec![GraphQLError::with_code(message, GRAPHQL_PARSE_FAILED)],
            Self::Validation(errors) | Self::Variables(errors) => errors,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::Validation(vec![GraphQLError::with_code(
            message,
            GRAPHQL_VALIDATION_FAILED,
        )])
    }
}

/// The standard validation rules, one plan per rule, so that a preparation can stop between
/// two rules when its client is gone or its time is up.
pub(crate) struct Rules {
    plans: Vec<ValidationPlan>,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("rules", &self.plans.len())
            .finish()
    }
}

impl Default for Rules {
    fn default() -> Self {
        let plans = default_rules_validation_plan()
            .rules
            .into_iter()
            .map(|rule| ValidationPlan {
                rules: vec![rule],
                hash: 0,
            })
            .collect();
        Self { plans }
    }
}

/// What validation found.
#[derive(Debug)]
pub(crate) enum Validation {
    Valid,
    Invalid(Vec<GraphQLError>),
    /// `keep_going` said stop before every rule ran.
    Stopped,
}

/// Validates `document` against the API schema with the standard rules; `keep_going` is
/// asked before each rule. Errors come in document order.
#[tracing::instrument(name = "validate", skip_all)]
pub(crate) fn validate(
    schema: &ApiSchema,
    document: &Document,
    rules: &Rules,
    keep_going: impl Fn() -> bool,
) -> Validation {
    let mut errors = Vec::new();
    for plan in &rules.plans {
        if !keep_going() {
            return Validation::Stopped;
        }
        errors.extend(graphql_tools::validation::validate::validate(
            schema.document(),
            document,
            plan,
        ));
    }
    if errors.is_empty() {
        return Validation::Valid;
    }
    errors.sort_by_key(|error| {
        error
            .locations
            .first()
            .map_or((usize::MAX, usize::MAX), |pos| (pos.line, pos.column))
    });
    Validation::Invalid(
        errors
            .into_iter()
            .map(|error| {
                let mut e = GraphQLError::with_code(error.message, GRAPHQL_VALIDATION_FAILED);
                e.locations = error
                    .locations
                    .iter()
                    .map(|pos| Location {
                        line: pos.line,
                        column: pos.column,
                    })
                    .collect();
                e
            })
            .collect(),
    )
}

pub fn parse(query: &str) -> Result<Document, RequestError> {
    graphql_tools::parser::parse_query::<String>(query)
        .map(|document| document.into_static())
        .map_err(|error| RequestError::Parse(error.to_string().trim().to_string()))
}

pub(crate) fn select_operation<'d>(
    document: &'d Document,
    name: Option<&str>,
) -> Result<(usize, &'d OperationDefinition), RequestError> {
    let mut operations = document.definitions.iter().enumerate().filter_map(
        |(index, definition)| match definition {
            Definition::Operation(operation) => Some((index, operation)),
            Definition::Fragment(_) => None,
        },
    );
    match name {
        Some(name) => operations
            .find(|(_, operation)| operation_parts(operation).1.map(String::as_str) == Some(name))
            .ok_or_else(|| RequestError::invalid(format!("Unknown operation named \"{name}\"."))),
        None => {
            let first = operations
                .next()
                .ok_or_else(|| RequestError::invalid("The document contains no operation."))?;
            if operations.next().is_some() {
                return Err(RequestError::invalid(
                    "Must provide operation name if query contains multiple operations.",
                ));
            }
            Ok(first)
        }
    }
}

pub(crate) fn operation_parts(
    operation: &OperationDefinition,
) -> (
    OperationKind,
    Option<&String>,
    &[VariableDefinition],
    &SelectionSet,
) {
    match operation {
        OperationDefinition::SelectionSet(set) => (OperationKind::Query, None, &[], set),
        OperationDefinition::Query(q) => (
            OperationKind::Query,
            q.name.as_ref(),
            &q.variable_definitions,
            &q.selection_set,
        ),
        OperationDefinition::Mutation(m) => (
            OperationKind::Mutation,
            m.name.as_ref(),
            &m.variable_definitions,
            &m.selection_set,
        ),
        OperationDefinition::Subscription(s) => (
            OperationKind::Subscription,
            s.name.as_ref(),
            &s.variable_definitions,
            &s.selection_set,
        ),
    }
}

/// The kind and the selection set of an operation, to change the selection.
pub(crate) fn operation_parts_mut(
    operation: &mut OperationDefinition,
) -> (OperationKind, &mut SelectionSet) {
    match operation {
        OperationDefinition::SelectionSet(set) => (OperationKind::Query, set),
        OperationDefinition::Query(q) => (OperationKind::Query, &mut q.selection_set),
        OperationDefinition::Mutation(m) => (OperationKind::Mutation, &mut m.selection_set),
        OperationDefinition::Subscription(s) => (OperationKind::Subscription, &mut s.selection_set),
    }
}

/// Whether the root selection (through fragments) asks for `__schema` or `__type`.
pub(crate) fn selects_introspection(document: &Document, selection_set: &SelectionSet) -> bool {
    let mut pending = vec![selection_set];
    let mut seen_fragments = Vec::new();
    while let Some(set) = pending.pop() {
        for selection in &set.items {
            match selection {
                Selection::Field(field) => {
                    if field.name == "__schema" || field.name == "__type" {
                        return true;
                    }
                }
                Selection::InlineFragment(fragment) => pending.push(&fragment.selection_set),
                Selection::FragmentSpread(spread) => {
                    if seen_fragments.contains(&&spread.fragment_name) {
                        continue;
                    }
                    seen_fragments.push(&spread.fragment_name);
                    let fragment = document.definitions.iter().find_map(|d| match d {
                        Definition::Fragment(f) if f.name == spread.fragment_name => Some(f),
                        _ => None,
                    });
                    if let Some(fragment) = fragment {
                        pending.push(&fragment.selection_set);
                    }
                }
            }
        }
    }
    false
}
