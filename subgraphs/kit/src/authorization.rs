//! Federation's `@authenticated` and `@policy` for the subgraphs' schemas, so the gateway
//! refuses fields that need a signed-in viewer before any subgraph is asked (the resolvers
//! keep their own checks). async-graphql writes `@link(url: "…/federation/v2.5", import:
//! […])` without these two in the import list, so they go by their namespaced names,
//! `@federation__authenticated` and `@federation__policy`, which composition reads as
//! federation's. (`@requiresScopes` async-graphql writes itself: `requires_scopes`.)

/// Federation's `@authenticated`: only a caller with a verified token sees this field.
#[async_graphql::TypeDirective(
    name = "federation__authenticated",
    location = "FieldDefinition",
    location = "Object"
)]
pub fn authenticated() {}

/// Federation's `@policy`: only a caller meeting every policy of one of the lists sees
/// this field (the gateway evaluates the policies its settings define).
#[async_graphql::TypeDirective(
    name = "federation__policy",
    location = "FieldDefinition",
    location = "Object"
)]
pub fn policy(policies: Vec<Vec<String>>) {}
