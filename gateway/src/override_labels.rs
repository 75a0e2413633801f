//! Progressive override: a field a subgraph takes over with
//! `@override(from: "old", label: "…")` is resolved by the new subgraph only for the
//! requests whose label is active, and by the old one for the rest.
//!
//! The labels come from the supergraph's `@join__field(overrideLabel: …)`, read once when
//! it loads ([`OverrideLabels`]). Per request ([`OverrideLabels::activate`]):
//! - `percent(x)` is active for x % of requests, drawn at random per request (one draw per
//!   request, so of two percentage labels the smaller is only ever active with the larger);
//! - any other label is active when the client names it in the labels header
//!   (`--override-labels-header`, comma-separated); labels the supergraph does not use are
//!   ignored, so clients cannot grow the set of plans.
//!
//! The active labels ([`ActiveLabels`]) are part of the plan cache's key, the prepared
//! operation cache's key and the response cache's key: a plan (and an answer) made for one
//! set is never used for another.

use std::collections::BTreeSet;

use graphql_tools::static_graphql::schema::{Definition, Document, TypeDefinition, Value};
use hive_router_query_planner::graph::{PERCENTAGE_SCALE_FACTOR, PlannerOverrideContext};
use rand::Rng;

/// A `percent(…)` label the planner could not read; refused when the supergraph loads
/// rather than failing (or panicking) per request.
#[derive(Debug, thiserror::Error)]
#[error(
    "the override label {label:?} on {field} is not `percent(x)` with 0 <= x <= 100 and at most 8 decimals"
)]
pub struct OverrideLabelError {
    pub label: String,
    pub field: String,
}

/// Every override label of one supergraph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverrideLabels {
    /// `percent(x)` labels with x scaled by [`PERCENTAGE_SCALE_FACTOR`], as the planner
    /// compares them.
    percentages: Vec<(String, u64)>,
    /// Every other label.
    custom: BTreeSet<String>,
}

/// The labels active for one request, and the draw the planner compares percentage labels
/// with. Two requests with the same labels get the same plan, whatever their draws. The
/// default has none active, not even `percent(100)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveLabels {
    labels: BTreeSet<String>,
    draw: u64,
}

impl Default for ActiveLabels {
    fn default() -> Self {
        Self {
            labels: BTreeSet::new(),
            draw: 100 * PERCENTAGE_SCALE_FACTOR,
        }
    }
}

const PERCENT_PREFIX: &str = "percent(";

/// `percent(x)` as the planner reads it, scaled; `None` when it would refuse it.
fn percentage(label: &str) -> Option<Result<u64, ()>> {
    let value = label.strip_prefix(PERCENT_PREFIX)?.strip_suffix(')')?;
    let precise = value.find('.').is_none_or(|dot| value.len() - dot - 1 <= 8);
    Some(match value.parse::<f64>() {
        Ok(parsed) if precise && (0.0..=100.0).contains(&parsed) => {
            // The planner's own scaling, so both sides compare the same integers.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok((parsed * PERCENTAGE_SCALE_FACTOR as f64) as u64)
        }
        _ => Err(()),
    })
}

impl OverrideLabels {
    /// The labels of `document`'s `@join__field(overrideLabel: …)`.
    pub fn from_supergraph(document: &Document) -> Result<Self, OverrideLabelError> {
        let mut labels = Self::default();
        for definition in &document.definitions {
            let (type_name, fields) = match definition {
                Definition::TypeDefinition(TypeDefinition::Object(object)) => {
                    (&object.name, &object.fields)
                }
                Definition::TypeDefinition(TypeDefinition::Interface(interface)) => {
                    (&interface.name, &interface.fields)
                }
                _ => continue,
            };
            for field in fields {
                let found = field
                    .directives
                    .iter()
                    .filter(|directive| directive.name == "join__field")
                    .flat_map(|directive| &directive.arguments)
                    .filter_map(|(name, value)| match value {
                        Value::String(label) if name == "overrideLabel" => Some(label),
                        _ => None,
                    });
                for label in found {
                    match percentage(label) {
                        Some(Ok(scaled)) => {
                            if !labels.percentages.iter().any(|(known, _)| known == label) {
                                labels.percentages.push((label.clone(), scaled));
                            }
                        }
                        Some(Err(())) => {
                            return Err(OverrideLabelError {
                                label: label.clone(),
                                field: format!("{type_name}.{}", field.name),
                            });
                        }
                        None => {
                            labels.custom.insert(label.clone());
                        }
                    }
                }
            }
        }
        Ok(labels)
    }

    /// Whether the supergraph uses any label (else every request plans alike).
    pub fn is_empty(&self) -> bool {
        self.percentages.is_empty() && self.custom.is_empty()
    }

    /// The labels active for a request that asks for `requested`, with a fresh random draw
    /// for the percentage labels.
    pub fn activate<'a>(&self, requested: impl IntoIterator<Item = &'a str>) -> ActiveLabels {
        if self.is_empty() {
            return ActiveLabels::default();
        }
        let draw = rand::thread_rng().gen_range(0..100 * PERCENTAGE_SCALE_FACTOR);
        self.activate_with(requested, draw)
    }

    /// [`Self::activate`] with a given draw in `0..100 * PERCENTAGE_SCALE_FACTOR`.
    fn activate_with<'a>(
        &self,
        requested: impl IntoIterator<Item = &'a str>,
        draw: u64,
    ) -> ActiveLabels {
        let mut labels: BTreeSet<String> = requested
            .into_iter()
            .map(str::trim)
            .filter(|label| self.custom.contains(*label))
            .map(str::to_owned)
            .collect();
        // The planner's comparison: the overriding subgraph when the draw is below.
        labels.extend(
            self.percentages
                .iter()
                .filter(|(_, scaled)| draw < *scaled)
                .map(|(label, _)| label.clone()),
        );
        ActiveLabels { labels, draw }
    }
}

impl ActiveLabels {
    /// What the planner needs: the active custom labels and the draw.
    pub(crate) fn planner_context(&self) -> PlannerOverrideContext {
        let custom = self
            .labels
            .iter()
            .filter(|label| !label.starts_with(PERCENT_PREFIX))
            .cloned()
            .collect();
        PlannerOverrideContext::new(custom, self.draw)
    }

    /// The active labels, comma-separated in a stable order (empty: none): what cache keys
    /// include.
    pub fn key(&self) -> String {
        self.labels.iter().cloned().collect::<Vec<_>>().join(",")
    }

    /// Whether the draw and the labels agree with `other`'s on every plan: the same labels.
    pub(crate) fn plans_like(&self, other: &Self) -> bool {
        self.labels == other.labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(sdl: &str) -> Result<OverrideLabels, OverrideLabelError> {
        let document = graphql_tools::parser::parse_schema::<String>(sdl)
            .expect("parses")
            .into_static();
        OverrideLabels::from_supergraph(&document)
    }

    const SUPERGRAPH: &str = r#"
type Query {
  a: Int @join__field(graph: NEW, override: "old", overrideLabel: "percent(25)")
  b: Int @join__field(graph: NEW, override: "old", overrideLabel: "beta")
  c: Int @join__field(graph: NEW, override: "old", overrideLabel: "percent(0.5)")
}
"#;

    #[test]
    fn a_percentage_label_is_active_below_its_share_of_draws() {
        let labels = labels(SUPERGRAPH).unwrap();
        let at = |percent: f64| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let draw = (percent * PERCENTAGE_SCALE_FACTOR as f64) as u64;
            labels.activate_with([], draw).key()
        };
        assert_eq!(at(0.0), "percent(0.5),percent(25)");
        assert_eq!(at(0.5), "percent(25)");
        assert_eq!(at(24.99), "percent(25)");
        assert_eq!(at(25.0), "");
        assert_eq!(at(99.99), "");
    }

    #[test]
    fn only_custom_labels_the_supergraph_uses_are_activated() {
        let labels = labels(SUPERGRAPH).unwrap();
        let active = labels.activate_with(["beta", " gamma", "percent(25)"], 99);
        assert_eq!(active.key(), "beta,percent(0.5),percent(25)");
        let active = labels.activate_with(["gamma"], 30 * PERCENTAGE_SCALE_FACTOR);
        assert_eq!(active.key(), "");
    }

    #[test]
    fn the_same_labels_plan_alike_whatever_the_draw() {
        let labels = labels(SUPERGRAPH).unwrap();
        let one = labels.activate_with([], 26 * PERCENTAGE_SCALE_FACTOR);
        let other = labels.activate_with([], 90 * PERCENTAGE_SCALE_FACTOR);
        assert!(one.plans_like(&other));
        assert!(!one.plans_like(&labels.activate_with([], 0)));
    }

    #[test]
    fn a_percentage_the_planner_would_refuse_is_refused_at_load() {
        for label in [
            "percent(101)",
            "percent(-1)",
            "percent(x)",
            "percent(1.123456789)",
        ] {
            let sdl = format!(
                r#"type Query {{ a: Int @join__field(graph: NEW, override: "old", overrideLabel: "{label}") }}"#
            );
            let error = labels(&sdl).expect_err(label);
            assert!(error.to_string().contains("Query.a"), "{error}");
        }
    }

    #[test]
    fn a_supergraph_without_labels_activates_nothing() {
        let labels = labels("type Query { a: Int }").unwrap();
        assert!(labels.is_empty());
        assert_eq!(labels.activate(["beta"]), ActiveLabels::default());
    }
}
