//! The supergraph: composing subgraph SDLs (or loading a composed SDL), and everything the
//! gateway derives from it — the planner, the client-facing API schema, the subgraph URLs.
//! The supergraph runtime owns one with the caches of what was prepared and planned
//! against it; swapping the supergraph swaps all of them together.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use graphql_tools::parser::Pos;
use graphql_tools::static_graphql::schema::{
    Definition, Directive, Document, TypeDefinition, Value,
};
use hive_router_query_planner::planner::{Planner, QueryPlannerOptions};

use crate::authorization::AuthorizationRules;
use crate::cost::CostModel;
use crate::override_labels::{OverrideLabelError, OverrideLabels};
use crate::schema::ApiSchema;

/// Why a supergraph could not be built. Raised at startup or on reload, never per request.
#[derive(Debug, thiserror::Error)]
pub enum SupergraphError {
    #[error("subgraph `{name}` has an invalid SDL: {message}")]
    InvalidSubgraphSdl { name: String, message: String },
    #[error("composition failed: {0}")]
    Composition(String),
    #[error("the supergraph SDL does not parse: {0}")]
    Parse(String),
    #[error("the query planner rejected the supergraph: {0}")]
    Planner(String),
    #[error(transparent)]
    OverrideLabel(#[from] OverrideLabelError),
}

/// One subgraph to compose: its name, its SDL, and where the gateway reaches it.
#[derive(Debug, Clone)]
pub struct SubgraphSdl {
    pub name: String,
    pub url: String,
    pub sdl: String,
}

/// Composes subgraph SDLs into a supergraph SDL the planner accepts.
pub fn compose_supergraph_sdl(subgraphs: &[SubgraphSdl]) -> Result<String, SupergraphError> {
    let mut ingested = graphql_composition::Subgraphs::default();
    for subgraph in subgraphs {
        ingested
            .ingest_str(&subgraph.sdl, &subgraph.name, Some(&subgraph.url))
            .map_err(|error| SupergraphError::InvalidSubgraphSdl {
                name: subgraph.name.clone(),
                message: error.to_string(),
            })?;
    }
    let composed = graphql_composition::compose(&mut ingested)
        .into_result()
        .map_err(|diagnostics| {
            SupergraphError::Composition(diagnostics.iter_errors().collect::<Vec<_>>().join("; "))
        })?;
    let sdl = graphql_composition::render_federated_sdl(&composed)
        .map_err(|error| SupergraphError::Composition(error.to_string()))?;
    let mut document = parse_sdl(&sdl)?;
    add_root_type_joins(&mut document);
    interface_objects::add_unresolvable_interface_object_joins(&mut document, subgraphs);
    Ok(document.to_string())
}

/// Adds `@join__type(graph: X)` to each root operation type (Query, Mutation, Subscription)
/// for every subgraph that defines fields on it, when the type carries no `@join__type` yet.
///
/// graphql-composition leaves root types without them, and without them the planner finds no
/// path to any root field (`NoPathsFound`). Supergraphs from other tools (Apollo rover)
/// already have them and pass through unchanged.
pub fn add_root_type_joins(document: &mut Document) {
    let graph_order = join_graph_enum_values(document);
    let root_names = root_type_names(document);
    for definition in &mut document.definitions {
        let Definition::TypeDefinition(TypeDefinition::Object(object)) = definition else {
            continue;
        };
        if !root_names.contains(&object.name)
            || object.directives.iter().any(|d| d.name == "join__type")
        {
            continue;
        }
        let mut graphs = BTreeSet::new();
        for field in &object.fields {
            let mut joined = false;
            for directive in field.directives.iter().filter(|d| d.name == "join__field") {
                if let Some((_, Value::Enum(graph))) =
                    directive.arguments.iter().find(|(name, _)| name == "graph")
                {
                    graphs.insert(graph.clone());
                    joined = true;
                }
            }
            if !joined {
                // A field without `@join__field` is resolvable from every subgraph.
                graphs.extend(graph_order.iter().cloned());
            }
        }
        for graph in graph_order.iter().filter(|graph| graphs.contains(*graph)) {
            object.directives.push(Directive {
                position: Pos::default(),
                name: "join__type".to_string(),
                arguments: vec![("graph".to_string(), Value::Enum(graph.clone()))],
            });
        }
    }
}

fn root_type_names(document: &Document) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for definition in &document.definitions {
        if let Definition::SchemaDefinition(schema) = definition {
            names.extend(schema.query.iter().cloned());
            names.extend(schema.mutation.iter().cloned());
            names.extend(schema.subscription.iter().cloned());
        }
    }
    if names.is_empty() {
        names.extend(["Query", "Mutation", "Subscription"].map(String::from));
    }
    names
}

/// The `join__Graph` enum values in declaration order, e.g. `["USERS", "POSTS"]`.
fn join_graph_enum_values(document: &Document) -> Vec<String> {
    document
        .definitions
        .iter()
        .find_map(|definition| match definition {
            Definition::TypeDefinition(TypeDefinition::Enum(e)) if e.name == "join__Graph" => {
                Some(e.values.iter().map(|v| v.name.clone()).collect())
            }
            _ => None,
        })
        .unwrap_or_default()
}

/// Subgraph name → URL, read from `@join__graph(name:, url:)` on the `join__Graph` values.
fn subgraph_urls(document: &Document) -> BTreeMap<String, String> {
    let mut urls = BTreeMap::new();
    for definition in &document.definitions {
        let Definition::TypeDefinition(TypeDefinition::Enum(e)) = definition else {
            continue;
        };
        if e.name != "join__Graph" {
            continue;
        }
        for value in &e.values {
            for directive in value.directives.iter().filter(|d| d.name == "join__graph") {
                let argument = |key: &str| {
                    directive
                        .arguments
                        .iter()
                        .find_map(|(name, value)| match value {
                            Value::String(s) if name == key => Some(s.clone()),
                            _ => None,
                        })
                };
                if let Some(name) = argument("name") {
                    urls.insert(name, argument("url").unwrap_or_default());
                }
            }
        }
    }
    urls
}

fn parse_sdl(sdl: &str) -> Result<Document, SupergraphError> {
    graphql_tools::parser::parse_schema::<String>(sdl)
        .map(|document| document.into_static())
        .map_err(|error| SupergraphError::Parse(error.to_string()))
}

/// Tuning for what the gateway derives from a supergraph.
#[derive(Debug, Clone)]
pub struct SupergraphOptions {
    /// Maximum number of cached query plans. Default: 1000.
    pub plan_cache_capacity: u64,
}

impl Default for SupergraphOptions {
    fn default() -> Self {
        Self {
            plan_cache_capacity: 1000,
        }
    }
}

/// A loaded supergraph and everything derived from it.
pub struct Supergraph {
    sdl: String,
    planner: Planner,
    api_schema: Arc<ApiSchema>,
    costs: CostModel,
    authorization: AuthorizationRules,
    subgraph_urls: BTreeMap<String, String>,
    options: SupergraphOptions,
    override_labels: OverrideLabels,
}

impl std::fmt::Debug for Supergraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supergraph")
            .field("subgraph_urls", &self.subgraph_urls)
            .finish_non_exhaustive()
    }
}

impl Supergraph {
    /// Composes the subgraphs and loads the result.
    pub fn compose(
        subgraphs: &[SubgraphSdl],
        options: SupergraphOptions,
    ) -> Result<Self, SupergraphError> {
        Self::from_sdl(&compose_supergraph_sdl(subgraphs)?, options)
    }

    /// Loads a supergraph SDL, from this crate or any standard composition tool.
    pub fn from_sdl(sdl: &str, options: SupergraphOptions) -> Result<Self, SupergraphError> {
        let mut document = parse_sdl(sdl)?;
        add_root_type_joins(&mut document);
        // Before the planner, which cannot refuse a bad percentage but by panicking.
        let override_labels = OverrideLabels::from_supergraph(&document)?;
        let planner = Planner::new_from_supergraph(&document, QueryPlannerOptions::default())
            .map_err(|error| SupergraphError::Planner(error.to_string()))?;
        let mut api_document = (*planner.consumer_schema.document).clone();
        add_defer_directive(&mut api_document);
        let api_schema = Arc::new(ApiSchema::new(Arc::new(api_document)));
        Ok(Self {
            sdl: document.to_string(),
            costs: CostModel::from_schema(&document),
            authorization: AuthorizationRules::from_schema(&document),
            subgraph_urls: subgraph_urls(&document),
            planner,
            api_schema,
            options,
            override_labels,
        })
    }

    /// The supergraph SDL (with root type joins added), as `gantry compose` prints it.
    pub fn sdl(&self) -> &str {
        &self.sdl
    }

    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    /// The client-facing schema: no `join__` / federation internals, `@inaccessible` removed.
    pub fn api_schema(&self) -> &Arc<ApiSchema> {
        &self.api_schema
    }

    /// `@cost` / `@listSize` of the supergraph, which the API schema does not carry.
    pub(crate) fn costs(&self) -> &CostModel {
        &self.costs
    }

    /// `@authenticated`, `@requiresScopes` and `@policy` of the supergraph, which the API
    /// schema does not carry.
    pub(crate) fn authorization(&self) -> &AuthorizationRules {
        &self.authorization
    }

    /// The client-facing schema as SDL (what `schema.graphql` holds): introspection types,
    /// built-in scalars and built-in directives left out.
    pub fn api_sdl(&self) -> String {
        api_sdl(self.api_schema.document())
    }

    /// Subgraph name → URL, as declared in the supergraph.
    pub fn subgraph_urls(&self) -> &BTreeMap<String, String> {
        &self.subgraph_urls
    }

    /// The tuning it was loaded with (the runtime sizes its plan cache by it).
    pub fn options(&self) -> &SupergraphOptions {
        &self.options
    }

    /// The progressive override labels of `@join__field(overrideLabel: …)`.
    pub fn override_labels(&self) -> &OverrideLabels {
        &self.override_labels
    }
}

/// `@defer` as the incremental-delivery RFC defines it: the gateway answers it (see
/// [`crate::defer_split`]), whatever the subgraphs support.
const DEFER_DIRECTIVE: &str =
    "directive @defer(label: String, if: Boolean! = true) on FRAGMENT_SPREAD | INLINE_FRAGMENT";

/// Adds `@defer` to the API schema, so that operations using it validate and
/// introspection shows it.
fn add_defer_directive(document: &mut Document) {
    let defined = document.definitions.iter().any(|definition| {
        matches!(definition, Definition::DirectiveDefinition(def) if def.name == "defer")
    });
    if defined {
        return;
    }
    if let Ok(parsed) = graphql_tools::parser::parse_schema::<String>(DEFER_DIRECTIVE) {
        document
            .definitions
            .extend(parsed.into_static().definitions);
    }
}

const BUILT_IN_SCALARS: [&str; 5] = ["String", "Int", "Float", "Boolean", "ID"];
/// Left out of `schema.graphql`: every GraphQL tool knows them (`@defer` is the incremental
/// delivery RFC's).
const BUILT_IN_DIRECTIVES: [&str; 6] = [
    "skip",
    "include",
    "deprecated",
    "specifiedBy",
    "oneOf",
    "defer",
];

fn api_sdl(document: &Document) -> String {
    let mut document = document.clone();
    document.definitions.retain(|definition| match definition {
        Definition::TypeDefinition(def) => {
            let name = crate::schema::type_name(def);
            !name.starts_with("__") && !BUILT_IN_SCALARS.contains(&name)
        }
        Definition::DirectiveDefinition(def) => !BUILT_IN_DIRECTIVES.contains(&def.name.as_str()),
        _ => true,
    });
    for definition in &mut document.definitions {
        if let Definition::TypeDefinition(TypeDefinition::Object(object)) = definition {
            object.fields.retain(|field| !field.name.starts_with("__"));
        }
    }
    document.to_string()
}

mod interface_objects;
#[cfg(test)]
mod tests;
