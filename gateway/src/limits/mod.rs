//! Operation limits: what a client's document may ask of the gateway, checked before any
//! work that grows with it. Two passes, both without recursion:
//!
//! - [`lexer`] counts tokens and brace/bracket/parenthesis nesting over the raw text,
//!   before a syntax tree exists: the parser recurses once per nesting level and
//!   allocates per token, so neither may be unbounded when it runs.
//! - [`expansion`] measures the parsed operation as it would execute, fragments expanded
//!   (depth, nesting, field selections, aliases, root fields, directives per field,
//!   introspection depth) and finds fragment cycles, with explicit stacks and one summary
//!   per fragment, so a spread explosion is counted, never expanded. Validation runs only
//!   on documents this pass accepted: its rules recurse through spreads.
//!
//! A refused operation gets HTTP `400`, `GRAPHQL_VALIDATION_FAILED` and
//! `extensions.limit: {"name", "max", "actual"?}`.
//!
//! # Recursion in the request path, and what bounds it
//!
//! - Lexer limits, the expansion walk, introspection detection: iterative.
//! - Parsing (graphql-parser): recursive per nesting level; bounded by `nesting`.
//! - Validation (graphql-tools rules), normalization and planning (the planner), response
//!   shaping and field collection (`response`), introspection answers
//!   (`response::introspection`), literal values (`values`): recursive over the operation;
//!   bounded by `depth` and the expanded `nesting` (fragment chains count as nesting) and by
//!   fragment cycles being refused first.
//! - Variable coercion (`variables`) and entity tags of variables (`cache::tags`):
//!   recursive over the variables' JSON; bounded by serde_json's nesting limit (128) when
//!   the request body is read.
//! - Merging subgraph data (`execute`): recursive over subgraph responses, which mirror the
//!   subgraph operation (bounded by `depth`) and are read with serde_json's nesting limit.
//!
//! # Layout
//!
//! - [`lexer`]: the token and nesting scan.
//! - [`expansion`]: the expanded-operation walk and its [`Figures`].

pub(crate) mod expansion;
pub(crate) mod lexer;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::graphql::GraphQLError;
use crate::validate::GRAPHQL_VALIDATION_FAILED;

pub(crate) use self::expansion::Figures;

/// The operation limits. Every field has a default safe for production that the product's
/// own clients stay well inside (the playground's and codegen's introspection queries too).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperationLimits {
    /// Tokens in the document text, counted before parsing. Default: 15000.
    pub max_tokens: u64,
    /// Nesting of `{`, `[` and `(` in the text, and of selection sets once fragments are
    /// expanded (a fragment chain nests like the braces it stands for). Default: 32.
    pub max_nesting: u64,
    /// Fields on the longest path of the operation, fragments expanded. Default: 20.
    pub max_depth: u64,
    /// Aliased fields, fragments expanded. Default: 64.
    pub max_aliases: u64,
    /// Fields at the operation's root, fragments expanded. Default: 64.
    pub max_root_fields: u64,
    /// Field selections once every fragment spread is expanded. Default: 1000.
    pub max_selections: u64,
    /// Directives on one field, fragment spread or inline fragment. Default: 8.
    pub max_directives_per_field: u64,
    /// Nested `fields`, `interfaces`, `possibleTypes` and `inputFields` on one path under
    /// `__schema` / `__type` (`ofType` chains count towards `max_depth` only: the standard
    /// introspection queries nest them deeper than any list). Default: 2.
    pub max_introspection_depth: u64,
    /// Errors in one response; past it they are cut, with a last error saying how many
    /// were left out. Default: 100.
    pub max_errors: usize,
    /// Time to prepare (parse, validate, plan) a document not prepared before, in
    /// milliseconds. Default: 2000.
    pub preparation_budget_ms: u64,
}

impl Default for OperationLimits {
    fn default() -> Self {
        Self {
            max_tokens: 15_000,
            max_nesting: 32,
            max_depth: 20,
            max_aliases: 64,
            max_root_fields: 64,
            max_selections: 1_000,
            max_directives_per_field: 8,
            max_introspection_depth: 2,
            max_errors: 100,
            preparation_budget_ms: 2_000,
        }
    }
}

impl OperationLimits {
    pub fn preparation_budget(&self) -> Duration {
        Duration::from_millis(self.preparation_budget_ms)
    }
}

/// Names of the limits as clients see them in `extensions.limit.name`.
pub(crate) mod names {
    pub const TOKENS: &str = "tokens";
    pub const NESTING: &str = "nesting";
    pub const DEPTH: &str = "depth";
    pub const ALIASES: &str = "aliases";
    pub const ROOT_FIELDS: &str = "rootFields";
    pub const SELECTIONS: &str = "selections";
    pub const DIRECTIVES_PER_FIELD: &str = "directivesPerField";
    pub const INTROSPECTION_DEPTH: &str = "introspectionDepth";
    pub const ERRORS: &str = "errors";
    pub const PREPARATION_MS: &str = "preparationMs";
}

/// An operation over one of the limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("The operation exceeds the {name} limit of {max}{}", .actual.map(|a| format!(" ({a})")).unwrap_or_default())]
pub struct LimitExceeded {
    pub name: &'static str,
    pub max: u64,
    /// The operation's own figure, when the check went far enough to know it.
    pub actual: Option<u64>,
}

impl LimitExceeded {
    pub(crate) fn new(name: &'static str, max: u64, actual: Option<u64>) -> Self {
        Self { name, max, actual }
    }

    /// The error the client gets.
    pub fn to_graphql_error(&self) -> GraphQLError {
        GraphQLError::with_code(self.to_string(), GRAPHQL_VALIDATION_FAILED)
            .extension("limit", self.extension())
    }

    fn extension(&self) -> Value {
        match self.actual {
            Some(actual) => json!({ "name": self.name, "max": self.max, "actual": actual }),
            None => json!({ "name": self.name, "max": self.max }),
        }
    }
}

/// Keeps at most `max` errors; past it the rest are replaced by one error saying how many
/// were left out (with the code of the errors it stands for, when they share one).
pub(crate) fn truncate_errors(mut errors: Vec<GraphQLError>, max: usize) -> Vec<GraphQLError> {
    if errors.len() <= max {
        return errors;
    }
    let total = errors.len();
    let left_out = errors.split_off(max);
    let code = left_out
        .first()
        .and_then(GraphQLError::code)
        .filter(|code| left_out.iter().all(|e| e.code() == Some(code)))
        .map(str::to_owned);
    let mut last = GraphQLError::new(format!(
        "{} more errors were left out: a response carries at most {max}",
        left_out.len()
    ));
    if let Some(code) = code {
        last = last.extension("code", Value::String(code));
    }
    errors.push(last.extension(
        "limit",
        json!({ "name": names::ERRORS, "max": max, "actual": total }),
    ));
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_past_the_limit_are_replaced_by_one_that_counts_them() {
        let errors = (0..250)
            .map(|i| GraphQLError::with_code(format!("e{i}"), GRAPHQL_VALIDATION_FAILED))
            .collect();
        let kept = truncate_errors(errors, 100);
        assert_eq!(kept.len(), 101);
        assert_eq!(kept[99].message, "e99");
        let last = kept[100].clone();
        assert_eq!(
            last.message,
            "150 more errors were left out: a response carries at most 100"
        );
        assert_eq!(last.code(), Some(GRAPHQL_VALIDATION_FAILED));
        assert_eq!(
            last.extensions["limit"],
            json!({"name": "errors", "max": 100, "actual": 250})
        );
    }

    #[test]
    fn errors_within_the_limit_are_kept_as_they_are() {
        let errors = vec![GraphQLError::new("one")];
        assert_eq!(truncate_errors(errors.clone(), 100), errors);
    }

    #[test]
    fn a_refusal_names_the_limit_its_maximum_and_the_figure() {
        let error = LimitExceeded::new(names::DEPTH, 20, Some(21)).to_graphql_error();
        assert_eq!(error.code(), Some(GRAPHQL_VALIDATION_FAILED));
        assert_eq!(
            error.extensions["limit"],
            json!({"name": "depth", "max": 20, "actual": 21})
        );
        assert_eq!(
            error.message,
            "The operation exceeds the depth limit of 20 (21)"
        );
    }
}
