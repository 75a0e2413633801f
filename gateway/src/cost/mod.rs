//! Demand control: the static cost of an operation, from the supergraph's `@cost` and
//! `@listSize` (federation v2.9, IBM's GraphQL cost directives), estimated before any
//! subgraph is asked, so one small document cannot make the subgraphs load and the gateway
//! hold millions of objects.
//!
//! The rules, as Apollo's demand control applies them:
//! - an object, interface or union value costs 1, a scalar or enum 0, unless `@cost(weight:)`
//!   on its type, or on the field (which wins), says otherwise; an argument with `@cost`
//!   adds its weight when passed;
//! - a list multiplies its items' cost (the field's weight and selections) by its size: the
//!   largest of its `@listSize(slicingArguments:)` given a value in the operation (literal
//!   or variable, else the argument's default), else `assumedSize`, else the size the
//!   parent's `@listSize(sizedFields:)` gives it (a connection's `edges`), else
//!   [`DEFAULT_LIST_SIZE`];
//! - `requireOneSlicingArgument` (default true) refuses a use of the field where not
//!   exactly one slicing argument has a value;
//! - each root field of a mutation costs 10 more.
//!
//! # Layout
//!
//! - `model`: [`CostModel`], read once from the supergraph.
//! - `estimate`: [`estimate`], the iterative, fragment-memoizing walk over an operation.
//! - [`CostControl`]: the settings, the check the request path makes right after
//!   validation; every estimate is recorded in the `gantry_operation_cost` histogram.

mod estimate;
mod model;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use graphql_tools::static_graphql::query::Document;
use serde_json::{Map, Value, json};

pub(crate) use self::estimate::estimate;
pub(crate) use self::model::CostModel;
pub use self::model::DEFAULT_LIST_SIZE;
use crate::graphql::GraphQLError;
use crate::validate::GRAPHQL_VALIDATION_FAILED;

/// The code of an operation refused because its estimated cost is over the maximum.
pub const COST_ESTIMATED_TOO_EXPENSIVE: &str = "COST_ESTIMATED_TOO_EXPENSIVE";

/// Why an operation has no estimate. Each is a client error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CostError {
    #[error("The document has no operation to estimate.")]
    UnknownOperation,
    #[error("Unknown fragment \"{0}\".")]
    UnknownFragment(String),
    #[error("Fragment \"{0}\" spreads itself.")]
    FragmentCycle(String),
    #[error(
        "Field \"{field}\" needs exactly one of its slicing arguments ({arguments}) to have a \
         value; {given} have one."
    )]
    SlicingArguments {
        field: String,
        arguments: String,
        given: usize,
    },
}

impl CostError {
    /// The error as the client receives it.
    pub(crate) fn into_graphql_error(self) -> GraphQLError {
        GraphQLError::with_code(self.to_string(), GRAPHQL_VALIDATION_FAILED)
    }
}

/// The refusal of an operation estimated at `estimated`, over `max`.
pub(crate) fn too_expensive(estimated: u64, max: u64) -> GraphQLError {
    GraphQLError::with_code(
        format!("The operation's estimated cost {estimated} is over the maximum of {max}."),
        COST_ESTIMATED_TOO_EXPENSIVE,
    )
    .extension("cost", json!({ "estimated": estimated, "max": max }))
}

/// Demand-control settings. Every default documented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostSettings {
    /// Operations estimated above this are refused before any subgraph is asked (0: no
    /// maximum). Default: 10,000, several times what the product's own clients send.
    pub max_operation_cost: u64,
    /// The size of a list that nothing in the supergraph or the operation sizes. Default:
    /// [`DEFAULT_LIST_SIZE`].
    pub default_list_size: u64,
}

impl Default for CostSettings {
    fn default() -> Self {
        Self {
            max_operation_cost: 10_000,
            default_list_size: DEFAULT_LIST_SIZE,
        }
    }
}

/// The operation to estimate: a document and the name of the operation it selects.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Operation<'a> {
    pub document: &'a Document,
    pub name: Option<&'a str>,
    /// Where the estimate of an operation that reads no variables is kept: it is the same
    /// for every request, so the first one makes it. `None`: estimated per request.
    pub estimate: Option<&'a OnceLock<Result<u64, CostError>>>,
}

/// The gateway's demand control: its settings and the estimates it has seen.
#[derive(Debug, Default)]
pub struct CostControl {
    settings: CostSettings,
}

impl CostControl {
    pub fn new(settings: CostSettings) -> Self {
        Self { settings }
    }

    /// Estimates a prepared operation (its document and selected operation) with the
    /// request's variables, records the estimate, and refuses it when over the maximum. The
    /// estimate, when admitted.
    pub(crate) fn admit(
        &self,
        costs: &CostModel,
        operation: Operation<'_>,
        variables: &Map<String, Value>,
    ) -> Result<u64, Box<GraphQLError>> {
        let estimated = self
            .estimate(costs, operation, variables)
            .map_err(|error| Box::new(error.into_graphql_error()))?;
        metrics::histogram!(COST_METRIC).record(estimated as f64);
        tracing::debug!(
            operation_name = operation.name,
            cost = estimated,
            "estimated the operation's cost"
        );
        let max = self.settings.max_operation_cost;
        if max > 0 && estimated > max {
            return Err(Box::new(too_expensive(estimated, max)));
        }
        Ok(estimated)
    }

    /// The operation's estimate, recorded nowhere (what a cost rate limit charges).
    pub(crate) fn estimate(
        &self,
        costs: &CostModel,
        operation: Operation<'_>,
        variables: &Map<String, Value>,
    ) -> Result<u64, CostError> {
        let run = || {
            estimate(
                costs,
                operation.document,
                operation.name,
                variables,
                self.settings.default_list_size,
            )
        };
        match operation.estimate {
            Some(known) => known.get_or_init(run).clone(),
            None => run(),
        }
    }

    pub fn settings(&self) -> &CostSettings {
        &self.settings
    }
}

/// The histogram every estimate is recorded in: what operators size `--max-operation-cost`
/// and cost rate limits by (its buckets: [`gantry_kit::prometheus::COST_BUCKETS`]).
pub const COST_METRIC: &str = gantry_kit::prometheus::COST_METRIC;
