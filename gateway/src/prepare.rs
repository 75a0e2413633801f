//! Prepare once: everything about an operation that depends only on its text and operation
//! name, worked out a single time per document and handed to every later stage as a
//! [`PreparedOperation`]. The steps, each bounded by the one before:
//!
//! 1. tokens and nesting, counted on the text before a syntax tree exists
//!    ([`crate::limits::lexer`]);
//! 2. parsing;
//! 3. operation limits on the operation as executed, fragments expanded, and fragment
//!    cycles ([`crate::limits::expansion`]);
//! 4. validation against the API schema (the standard rules, which recurse through
//!    spreads: they only ever see a document step 3 accepted);
//! 5. the operation's selection, kind, and whether introspection may run;
//! 6. where it selects fields with authorization requirements ([`crate::authorization`]),
//!    checked per request against the caller;
//! 7. planning.
//!
//! Demand control's cost estimate is not a step here: slicing arguments may be variables,
//! so it runs per request, right after the variables are coerced ([`crate::cost`]), on an
//! operation these steps bounded; an operation without variables keeps the first
//! request's estimate.
//!
//! It runs on a blocking thread (see the supergraph runtime) under a cancellation token that
//! carries the preparation's time budget and is cancelled when no client waits any more;
//! every long loop asks it whether to go on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use graphql_tools::static_graphql::query::{
    Definition, Document, OperationDefinition, SelectionSet, VariableDefinition,
};
use hive_router_query_planner::utils::cancellation::{CancellationError, CancellationToken};
use serde_json::Value;

use crate::authorization::operation::OperationAuthorization;
use crate::cost::CostError;
use crate::fetch::Plan;
use crate::graphql::{GraphQLError, OperationKind};
use crate::limits::expansion::{self, ExpansionError};
use crate::limits::{self, Figures, LimitExceeded, OperationLimits, lexer, names};
use crate::override_labels::ActiveLabels;
use crate::plan::{PlanCache, PlanError, plan_operation};
use crate::response::{OperationShape, ShapedOperation};
use crate::supergraph::Supergraph;
use crate::validate::{
    self, GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED, RequestError, Rules, Validation,
};

/// An operation ready to execute with any variables: parsed, within the limits, valid,
/// planned. Shared (`Arc`) by every request with the same text and operation name.
#[derive(Debug)]
pub struct PreparedOperation {
    document: Document,
    operation_index: usize,
    /// The name the client selected, or the single operation's own name.
    pub operation_name: Option<String>,
    pub kind: OperationKind,
    pub plan: Arc<Plan>,
    /// What the operation limits measured: depth, selections, aliases…
    pub figures: Figures,
    /// The progressive override labels the plan was made for; part of every cache key
    /// of the operation's answers.
    pub override_labels: ActiveLabels,
    /// The fields with authorization requirements it selects, and its filtered plans.
    pub authorization: OperationAuthorization,
    /// Whether it has a `@defer` (see [`crate::defer_split`]); when not, nothing about deferral
    /// is looked at per request.
    pub defers: bool,
    /// The client's selection, from which every response of it is written.
    shape: OperationShape,
    /// Demand control's estimate, made once when the operation reads no variables.
    cost_estimate: OnceLock<Result<u64, CostError>>,
    /// The length of the last response body written for it: the next one's buffer starts
    /// that large instead of growing to it.
    written_size: AtomicUsize,
}

impl PreparedOperation {
    pub fn document(&self) -> &Document {
        &self.document
    }

    /// What writing its responses needs: the selection and its projections.
    pub fn shaped(&self) -> ShapedOperation<'_> {
        ShapedOperation {
            document: &self.document,
            selection_set: self.selection_set(),
            shape: &self.shape,
        }
    }

    /// How many bytes to reserve for a response body of this operation: what the last one
    /// took, and a little more.
    pub(crate) fn written_size_hint(&self) -> usize {
        let last = self.written_size.load(Ordering::Relaxed);
        last.saturating_add(last / 8).clamp(256, 8 << 20)
    }

    pub(crate) fn remember_written_size(&self, size: usize) {
        self.written_size.store(size, Ordering::Relaxed);
    }

    pub fn operation(&self) -> Option<&OperationDefinition> {
        match self.document.definitions.get(self.operation_index) {
            Some(Definition::Operation(operation)) => Some(operation),
            _ => None,
        }
    }

    /// What demand control estimates: the document and the selected operation, and where
    /// its estimate is kept when it reads no variables.
    pub(crate) fn for_cost(&self) -> crate::cost::Operation<'_> {
        crate::cost::Operation {
            document: &self.document,
            name: self.operation_name.as_deref(),
            estimate: self
                .variable_definitions()
                .is_empty()
                .then_some(&self.cost_estimate),
        }
    }

    pub fn variable_definitions(&self) -> &[VariableDefinition] {
        self.operation()
            .map_or(&[], |operation| validate::operation_parts(operation).2)
    }

    pub fn selection_set(&self) -> Option<&SelectionSet> {
        self.operation()
            .map(|operation| validate::operation_parts(operation).3)
    }
}

/// Why a document was not prepared. Every variant but `Planning` is the client's doing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    #[error("{0}")]
    Parse(String),
    #[error("the operation is invalid")]
    Invalid(Vec<GraphQLError>),
    /// An internal error: logged, and answered with a generic message.
    #[error("planning failed: {0}")]
    Planning(String),
    #[error("the preparation took longer than {budget_ms} ms")]
    TimedOut { budget_ms: u64 },
    #[error("no client waits for the preparation any more")]
    Cancelled,
}

impl PrepareError {
    /// Whether another try may turn out differently (it ran out of time, or its clients
    /// left): such outcomes are not remembered.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::TimedOut { .. } | Self::Cancelled)
    }

    /// Whether the answer is `400` whatever the response media type: a limit refused it.
    pub fn is_limit(&self) -> bool {
        matches!(self, Self::Limit(_) | Self::TimedOut { .. })
    }

    /// The errors the client gets; an internal error is logged with `request_id`, which
    /// the client gets instead of the details.
    pub fn to_graphql_errors(&self, request_id: Option<&str>) -> Vec<GraphQLError> {
        match self {
            Self::Limit(limit) => vec![limit.to_graphql_error()],
            Self::Parse(message) => vec![GraphQLError::with_code(
                message.clone(),
                GRAPHQL_PARSE_FAILED,
            )],
            Self::Invalid(errors) => errors.clone(),
            Self::TimedOut { budget_ms } => {
                vec![LimitExceeded::new(names::PREPARATION_MS, *budget_ms, None).to_graphql_error()]
            }
            Self::Cancelled => vec![GraphQLError::with_code(
                "The operation's preparation was cancelled",
                GRAPHQL_VALIDATION_FAILED,
            )],
            Self::Planning(error) => {
                tracing::error!(request_id, error = %error, "planning failed");
                let mut internal =
                    GraphQLError::with_code("Internal server error", "INTERNAL_SERVER_ERROR");
                if let Some(id) = request_id {
                    internal = internal.extension("requestId", Value::String(id.to_owned()));
                }
                vec![internal]
            }
        }
    }

    /// Roughly what the error takes in memory, for the prepared-operation cache's weight.
    pub(crate) fn weight(&self) -> usize {
        match self {
            Self::Invalid(errors) => errors.iter().map(|e| e.message.len() + 128).sum(),
            Self::Parse(message) | Self::Planning(message) => message.len(),
            _ => 0,
        }
    }
}

impl From<RequestError> for PrepareError {
    fn from(error: RequestError) -> Self {
        match error {
            RequestError::Parse(message) => Self::Parse(message),
            RequestError::Validation(errors) | RequestError::Variables(errors) => {
                Self::Invalid(errors)
            }
        }
    }
}

/// What preparation needs besides the supergraph: the rules, the limits, and whether
/// introspection is answered.
#[derive(Debug)]
pub struct Preparer {
    rules: Rules,
    limits: OperationLimits,
    allow_introspection: bool,
}

impl Preparer {
    pub fn new(limits: OperationLimits, allow_introspection: bool) -> Self {
        Self {
            rules: Rules::default(),
            limits,
            allow_introspection,
        }
    }

    pub fn limits(&self) -> &OperationLimits {
        &self.limits
    }

    /// Runs every step of the preparation (see the module documentation); stops with
    /// `TimedOut` or `Cancelled` as soon as `cancel` says so. No override label is active.
    pub fn prepare(
        &self,
        supergraph: &Supergraph,
        plans: &PlanCache,
        text: &str,
        operation_name: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<PreparedOperation, PrepareError> {
        self.prepare_for(
            supergraph,
            plans,
            text,
            operation_name,
            &ActiveLabels::default(),
            cancel,
        )
    }

    /// [`Self::prepare`], planned for the override labels `labels`.
    pub fn prepare_for(
        &self,
        supergraph: &Supergraph,
        plans: &PlanCache,
        text: &str,
        operation_name: Option<&str>,
        labels: &ActiveLabels,
        cancel: &CancellationToken,
    ) -> Result<PreparedOperation, PrepareError> {
        lexer::scan(text, &self.limits)?;
        let document = validate::parse(text)?;
        let figures = match expansion::check(&document, &self.limits, cancel) {
            Ok(figures) => figures,
            Err(ExpansionError::Limit(limit)) => return Err(limit.into()),
            Err(ExpansionError::Cycle(fragment)) => {
                return Err(PrepareError::Invalid(vec![GraphQLError::with_code(
                    format!("Cannot spread fragment \"{fragment}\" within itself."),
                    GRAPHQL_VALIDATION_FAILED,
                )]));
            }
            Err(ExpansionError::Cancelled) => return Err(self.stopped(cancel)),
        };
        let schema = supergraph.api_schema();
        match validate::validate(schema, &document, &self.rules, || {
            cancel.bail_if_cancelled().is_ok()
        }) {
            Validation::Valid => {}
            Validation::Invalid(errors) => {
                return Err(PrepareError::Invalid(limits::truncate_errors(
                    errors,
                    self.limits.max_errors,
                )));
            }
            Validation::Stopped => return Err(self.stopped(cancel)),
        }
        let (operation_index, operation) = validate::select_operation(&document, operation_name)?;
        let (kind, name, _, selection_set) = validate::operation_parts(operation);
        if !self.allow_introspection && validate::selects_introspection(&document, selection_set) {
            return Err(RequestError::invalid("Introspection is disabled.").into());
        }
        let selected_name = operation_name.map(str::to_owned).or(name.cloned());
        let figures = figures.get(operation_index).copied().unwrap_or_default();
        let root_type = match kind {
            OperationKind::Mutation => schema.mutation_type(),
            OperationKind::Subscription => schema.subscription_type(),
            OperationKind::Query => Some(schema.query_type()),
        };
        let authorization = root_type.map_or_else(OperationAuthorization::default, |root| {
            OperationAuthorization::collect(
                supergraph.authorization(),
                schema,
                &document,
                root,
                selection_set,
            )
        });

        let plan = plan_operation(
            supergraph.planner(),
            plans,
            &document,
            selected_name.as_deref(),
            labels,
            cancel,
        )
        .map_err(|error| match error {
            PlanError::Cancelled => self.stopped(cancel),
            other => PrepareError::Planning(other.to_string()),
        })?;
        let defers = crate::defer_split::mentions_defer(&document);
        let shape = OperationShape::new(&document, root_type, Some(selection_set));
        Ok(PreparedOperation {
            document,
            operation_index,
            operation_name: selected_name,
            kind,
            plan,
            figures,
            override_labels: labels.clone(),
            defers,
            authorization,
            shape,
            cost_estimate: OnceLock::new(),
            written_size: AtomicUsize::new(0),
        })
    }

    /// Why `cancel` stopped the preparation.
    fn stopped(&self, cancel: &CancellationToken) -> PrepareError {
        match cancel.bail_if_cancelled() {
            Err(CancellationError::TimedOut) => PrepareError::TimedOut {
                budget_ms: self.limits.preparation_budget_ms,
            },
            _ => PrepareError::Cancelled,
        }
    }
}
