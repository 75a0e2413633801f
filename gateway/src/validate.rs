//! Parsing and validating the client operation against the API schema. The planner does not
//! validate, so nothing reaches it that this stage has not accepted.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use graphql_tools::static_graphql::query::{
    Definition, Document, OperationDefinition, Selection, SelectionSet, VariableDefinition,
};
use graphql_tools::validation::rules::default_rules_validation_plan;
use graphql_tools::validation::validate::ValidationPlan;
use hive_router_query_planner::planner::plan_nodes::QueryPlan;
use serde_json::{Map, Value};
use xxhash_rust::xxh3::Xxh3;

use crate::graphql::{GraphQLError, Location};
use crate::schema::ApiSchema;
use crate::telemetry::{self, Lookup};
use crate::variables::coerce_variables;

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

    fn invalid(message: impl Into<String>) -> Self {
        Self::Validation(vec![GraphQLError::with_code(
            message,
            GRAPHQL_VALIDATION_FAILED,
        )])
    }
}

/// The kind of the operation to execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    Query,
    Mutation,
    Subscription,
}

/// A parsed, validated operation with its coerced variables: safe to plan and execute.
#[derive(Debug, Clone)]
pub struct ValidatedOperation {
    pub document: Arc<Document>,
    /// The name the client selected (or the single operation's own name).
    pub operation_name: Option<String>,
    pub kind: OperationKind,
    pub variables: Map<String, Value>,
    operation_index: usize,
    /// What every request with the same text shares: its validated document and plan.
    pub prepared: Arc<Prepared>,
}

impl ValidatedOperation {
    pub fn operation(&self) -> Option<&OperationDefinition> {
        match self.document.definitions.get(self.operation_index) {
            Some(Definition::Operation(operation)) => Some(operation),
            _ => None,
        }
    }
}

/// The part of validation that depends only on the text and the operation name, done once
/// per distinct request text and schema: parsing, validation rules, operation selection,
/// the introspection check. The plan is filled in by the first request that needs it.
#[derive(Debug)]
pub struct Prepared {
    query: String,
    operation_name: Option<String>,
    document: Arc<Document>,
    selected_name: Option<String>,
    kind: OperationKind,
    operation_index: usize,
    /// The query plan, once planned.
    pub plan: OnceLock<Arc<QueryPlan>>,
}

/// Prepared operations of one API schema, by text and operation name (bounded, LRU-like).
pub struct PreparedCache {
    entries: moka::sync::Cache<u64, Arc<Prepared>>,
}

impl std::fmt::Debug for PreparedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedCache")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl Default for PreparedCache {
    fn default() -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(PREPARED_CAPACITY)
                .build(),
        }
    }
}

/// Distinct operation texts kept prepared per schema.
const PREPARED_CAPACITY: u64 = 2_000;

fn prepared_key(query: &str, operation_name: Option<&str>, introspection: bool) -> u64 {
    let mut hasher = Xxh3::new();
    query.hash(&mut hasher);
    operation_name.hash(&mut hasher);
    introspection.hash(&mut hasher);
    hasher.finish()
}

impl PreparedCache {
    fn get(&self, key: u64, query: &str, operation_name: Option<&str>) -> Option<Arc<Prepared>> {
        self.entries
            .get(&key)
            .filter(|p| p.query == query && p.operation_name.as_deref() == operation_name)
    }

    /// The name of the operation a text already prepared selects, without parsing it again
    /// (`None`: not prepared, or anonymous).
    pub fn selected_name_of(&self, query: &str, operation_name: Option<&str>) -> Option<String> {
        [true, false].into_iter().find_map(|introspection| {
            let key = prepared_key(query, operation_name, introspection);
            self.get(key, query, operation_name)
                .and_then(|p| p.selected_name.clone())
        })
    }

    /// The kind of a text already prepared, without parsing it again.
    pub fn kind_of(&self, query: &str, operation_name: Option<&str>) -> Option<OperationKind> {
        [true, false].into_iter().find_map(|introspection| {
            let key = prepared_key(query, operation_name, introspection);
            self.get(key, query, operation_name).map(|p| p.kind)
        })
    }
}

/// Validates client operations against the API schema.
pub struct Validator {
    rules: ValidationPlan,
    allow_introspection: bool,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field("allow_introspection", &self.allow_introspection)
            .finish_non_exhaustive()
    }
}

impl Validator {
    pub fn new(allow_introspection: bool) -> Self {
        Self {
            rules: default_rules_validation_plan(),
            allow_introspection,
        }
    }

    /// Parses, validates, selects the operation and coerces its variables. Everything but
    /// the variables is done once per distinct text (see [`Prepared`]).
    #[tracing::instrument(name = "validate", skip_all)]
    pub fn validate(
        &self,
        schema: &ApiSchema,
        query: &str,
        operation_name: Option<&str>,
        variables: &Map<String, Value>,
    ) -> Result<ValidatedOperation, RequestError> {
        let prepared = self.prepare(schema, query, operation_name)?;
        let Some(Definition::Operation(operation)) =
            prepared.document.definitions.get(prepared.operation_index)
        else {
            return Err(RequestError::invalid("The operation is missing."));
        };
        let (_, _, definitions, _) = operation_parts(operation);
        let variables =
            coerce_variables(schema, definitions, variables).map_err(RequestError::Variables)?;
        Ok(ValidatedOperation {
            document: prepared.document.clone(),
            operation_name: prepared.selected_name.clone(),
            kind: prepared.kind,
            variables,
            operation_index: prepared.operation_index,
            prepared,
        })
    }

    fn prepare(
        &self,
        schema: &ApiSchema,
        query: &str,
        operation_name: Option<&str>,
    ) -> Result<Arc<Prepared>, RequestError> {
        let key = prepared_key(query, operation_name, self.allow_introspection);
        if let Some(prepared) = schema.prepared().get(key, query, operation_name) {
            telemetry::lookup(Lookup::Validation, true);
            return Ok(prepared);
        }
        telemetry::lookup(Lookup::Validation, false);
        let document = parse(query)?;
        let errors = graphql_tools::validation::validate::validate(
            schema.document(),
            &document,
            &self.rules,
        );
        if !errors.is_empty() {
            return Err(RequestError::Validation(
                errors
                    .into_iter()
                    .map(|error| {
                        let mut e =
                            GraphQLError::with_code(error.message, GRAPHQL_VALIDATION_FAILED);
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
            ));
        }
        let (operation_index, operation) = select_operation(&document, operation_name)?;
        let (kind, name, _, selection_set) = operation_parts(operation);
        if kind == OperationKind::Subscription {
            return Err(RequestError::invalid("Subscriptions are not supported."));
        }
        if !self.allow_introspection && selects_introspection(&document, selection_set) {
            return Err(RequestError::invalid("Introspection is disabled."));
        }
        let selected_name = operation_name.map(str::to_string).or(name.cloned());
        let prepared = Arc::new(Prepared {
            query: query.to_owned(),
            operation_name: operation_name.map(str::to_owned),
            document: Arc::new(document),
            selected_name,
            kind,
            operation_index,
            plan: OnceLock::new(),
        });
        schema.prepared().entries.insert(key, prepared.clone());
        Ok(prepared)
    }
}

pub fn parse(query: &str) -> Result<Document, RequestError> {
    graphql_tools::parser::parse_query::<String>(query)
        .map(|document| document.into_static())
        .map_err(|error| RequestError::Parse(error.to_string().trim().to_string()))
}

/// Which kind of operation `query` selects, without validating it (GET requests must
/// refuse mutations before anything runs).
pub fn operation_kind(
    query: &str,
    operation_name: Option<&str>,
) -> Result<OperationKind, RequestError> {
    let document = parse(query)?;
    let (_, operation) = select_operation(&document, operation_name)?;
    Ok(operation_parts(operation).0)
}

fn select_operation<'d>(
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

/// Whether the root selection (through fragments) asks for `__schema` or `__type`.
fn selects_introspection(document: &Document, selection_set: &SelectionSet) -> bool {
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
