//! The `@join__type` of an `@interfaceObject` whose key is `resolvable: false`.
//!
//! graphql-composition writes a `@join__type(graph:, key:, isInterfaceObject: true)` on the
//! entity interface for every subgraph that declares it as an `@interfaceObject` with a
//! resolvable key, and none for a subgraph whose key says `resolvable: false`. Without it
//! the planner does not know that subgraph serves the interface at all, and every operation
//! that selects one of its root fields fails to plan. A subgraph may rightly declare such a
//! key: it returns accounts (say) from its root fields without being able to look one up.
//! So the join is added here, from the subgraphs' own SDLs.

use async_graphql::Value as ConstValue;
use async_graphql::parser::types::{ConstDirective, TypeKind, TypeSystemDefinition};
use graphql_tools::parser::Pos;
use graphql_tools::static_graphql::schema::{
    Definition, Directive, Document, TypeDefinition, Value,
};

use super::SubgraphSdl;

/// One unresolvable `@interfaceObject` key of one subgraph.
struct UnresolvableKey {
    graph: String,
    type_name: String,
    fields: String,
}

/// Adds `@join__type(graph: G, key: K, resolvable: false, isInterfaceObject: true)` to the
/// entity interface for each subgraph `G` whose `@interfaceObject` of that name has the
/// key `K` with `resolvable: false`, unless the interface already has a join for `G`.
pub(crate) fn add_unresolvable_interface_object_joins(
    document: &mut Document,
    subgraphs: &[SubgraphSdl],
) {
    let graphs = graph_names(document);
    let mut keys = Vec::new();
    for subgraph in subgraphs {
        let Some((graph, _)) = graphs.iter().find(|(_, name)| *name == subgraph.name) else {
            continue;
        };
        // Composition parsed it already; one that does not parse has nothing to add. (Read
        // with async-graphql's parser: subgraph SDLs start with `extend schema @link(…)`.)
        let Ok(sdl) = async_graphql::parser::parse_schema(&subgraph.sdl) else {
            continue;
        };
        for definition in sdl.definitions {
            let TypeSystemDefinition::Type(definition) = definition else {
                continue;
            };
            let definition = definition.node;
            if !matches!(definition.kind, TypeKind::Object(_)) {
                continue;
            }
            let directives: Vec<&ConstDirective> =
                definition.directives.iter().map(|d| &d.node).collect();
            if !directives
                .iter()
                .any(|d| is_federation(&d.name.node, "interfaceObject"))
            {
                continue;
            }
            for key in directives
                .iter()
                .filter(|d| is_federation(&d.name.node, "key"))
            {
                let resolvable = key.get_argument("resolvable").map(|v| &v.node);
                if let (Some(ConstValue::String(fields)), Some(ConstValue::Boolean(false))) =
                    (key.get_argument("fields").map(|v| &v.node), resolvable)
                {
                    keys.push(UnresolvableKey {
                        graph: graph.clone(),
                        type_name: definition.name.node.to_string(),
                        fields: fields.clone(),
                    });
                }
            }
        }
    }
    for key in keys {
        add_join(document, key);
    }
}

fn add_join(document: &mut Document, key: UnresolvableKey) {
    for definition in &mut document.definitions {
        let Definition::TypeDefinition(TypeDefinition::Interface(interface)) = definition else {
            continue;
        };
        if interface.name != key.type_name {
            continue;
        }
        let joined = interface.directives.iter().any(|directive| {
            directive.name == "join__type"
                && matches!(argument(directive, "graph"), Some(Value::Enum(graph)) if *graph == key.graph)
        });
        if !joined {
            interface.directives.push(Directive {
                position: Pos::default(),
                name: "join__type".to_string(),
                arguments: vec![
                    ("graph".to_string(), Value::Enum(key.graph)),
                    ("key".to_string(), Value::String(key.fields)),
                    ("resolvable".to_string(), Value::Boolean(false)),
                    ("isInterfaceObject".to_string(), Value::Boolean(true)),
                ],
            });
        }
        return;
    }
}

/// `@key` or `@interfaceObject`, imported by name or used with the `federation__` prefix.
fn is_federation(directive: &str, name: &str) -> bool {
    directive == name || directive.strip_prefix("federation__") == Some(name)
}

fn argument<'d>(directive: &'d Directive, name: &str) -> Option<&'d Value> {
    directive
        .arguments
        .iter()
        .find_map(|(argument, value)| (argument == name).then_some(value))
}

/// `join__Graph` values and the subgraph names their `@join__graph(name:)` gives.
fn graph_names(document: &Document) -> Vec<(String, String)> {
    let mut names = Vec::new();
    for definition in &document.definitions {
        let Definition::TypeDefinition(TypeDefinition::Enum(graphs)) = definition else {
            continue;
        };
        if graphs.name != "join__Graph" {
            continue;
        }
        for value in &graphs.values {
            let name = value
                .directives
                .iter()
                .filter(|d| d.name == "join__graph")
                .find_map(|d| match argument(d, "name") {
                    Some(Value::String(name)) => Some(name.clone()),
                    _ => None,
                });
            if let Some(name) = name {
                names.push((value.name.clone(), name));
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supergraph::compose_supergraph_sdl;

    fn subgraph(name: &str, sdl: &str) -> SubgraphSdl {
        SubgraphSdl {
            name: name.to_string(),
            url: format!("http://{name}.test/graphql"),
            sdl: sdl.to_string(),
        }
    }

    const FEDERATION: &str = r#"extend schema @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key", "@interfaceObject"])"#;

    fn interface_joins(sdl: &str) -> Vec<String> {
        let document = graphql_tools::parser::parse_schema::<String>(sdl)
            .expect("parses")
            .into_static();
        document
            .definitions
            .iter()
            .find_map(|definition| match definition {
                Definition::TypeDefinition(TypeDefinition::Interface(i)) if i.name == "Account" => {
                    Some(
                        i.directives
                            .iter()
                            .filter(|d| d.name == "join__type")
                            .map(|d| d.to_string())
                            .collect(),
                    )
                }
                _ => None,
            })
            .unwrap_or_default()
    }

    #[test]
    fn an_unresolvable_interface_object_is_joined_to_its_interface() {
        let owner = format!(
            "{FEDERATION}
             type Query {{ admins: [Admin!]! }}
             interface Account @key(fields: \"id\") {{ id: ID! }}
             type Admin implements Account @key(fields: \"id\") {{ id: ID! level: Int! }}"
        );
        let spotlight = format!(
            "{FEDERATION}
             type Query {{ featured: [Account!]! }}
             type Account @key(fields: \"id\", resolvable: false) @interfaceObject {{ id: ID! }}"
        );

        let sdl = compose_supergraph_sdl(&[
            subgraph("accounts", &owner),
            subgraph("spotlight", &spotlight),
        ])
        .expect("composes");

        assert_eq!(
            interface_joins(&sdl),
            [
                r#"@join__type(graph: ACCOUNTS, key: "id")"#,
                r#"@join__type(graph: SPOTLIGHT, key: "id", resolvable: false, isInterfaceObject: true)"#,
            ]
        );
    }
}
