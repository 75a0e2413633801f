//! Authorization through the whole preparation: fields denied by the supergraph's
//! directives, composed from real subgraph SDL.

use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
use gantry_kit::authorization::{authenticated, policy};
use hive_router_query_planner::utils::cancellation::CancellationToken;

use crate::authorization::AuthorizationSettings;
use crate::caller::Identity;
use crate::prepare::Preparer;
use crate::supergraph::{SubgraphSdl, Supergraph, SupergraphOptions};
use crate::testing::subgraph;

const SDL: &str = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key", "@authenticated", "@requiresScopes"])
type Query { me: Node @authenticated  people: [Person] }
interface Node { id: ID! }
type Person implements Node @key(fields: "id") { id: ID! name: String salary: Int @requiresScopes(scopes: [["hr"]]) }
"#;

#[test]
fn denied_fields_leave_every_fragment_and_get_one_error_per_place() {
    let supergraph =
        Supergraph::compose(&[subgraph("one", SDL)], SupergraphOptions::default()).unwrap();
    let prepared = Preparer::new(Default::default(), true)
        .prepare(
            &supergraph,
            &crate::plan::PlanCache::new(1),
            "query { me { id } people { ...P ... on Person { salary } } } fragment P on Person { name salary }",
            None,
            &CancellationToken::new(),
        )
        .unwrap();
    let authorization = &prepared.authorization;
    let denied = authorization.denied(&Identity::default(), &AuthorizationSettings::default());
    let errors: Vec<String> = authorization
        .errors(&denied)
        .iter()
        .map(|e| serde_json::to_string(&e.path).unwrap())
        .collect();
    assert_eq!(
        errors,
        vec![r#"["me"]"#, r#"["people","@","salary"]"#],
        "`salary`, selected twice at one place, is one error"
    );
    let filtered = authorization
        .filter(supergraph.api_schema(), prepared.document(), &denied)
        .to_string();
    assert!(
        !filtered.contains("salary") && !filtered.contains("me {"),
        "{filtered}"
    );
    assert!(filtered.contains("name"), "{filtered}");
    assert!(
        filtered.contains("... on Person {\n      __typename\n    }"),
        "an emptied selection keeps __typename: {filtered}"
    );
}

// Directives written by async-graphql subgraphs reach the composed supergraph.

struct Query;

#[Object]
impl Query {
    async fn open(&self) -> i32 {
        1
    }
    #[graphql(directive = authenticated::apply())]
    async fn me(&self) -> i32 {
        1
    }
    #[graphql(requires_scopes = "read:a read:b", requires_scopes = "admin")]
    async fn scoped(&self) -> i32 {
        1
    }
    #[graphql(directive = policy::apply(vec![vec!["staff".into()]]))]
    async fn ruled(&self) -> i32 {
        1
    }
}

#[test]
fn async_graphql_subgraph_directives_reach_the_supergraph() {
    let schema = Schema::build(Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish();
    let sdl = schema.sdl_with_options(async_graphql::SDLExportOptions::new().federation());
    let supergraph = Supergraph::compose(
        &[SubgraphSdl {
            name: "one".into(),
            url: "http://one.invalid/graphql".into(),
            sdl,
        }],
        SupergraphOptions::default(),
    )
    .unwrap();
    let rules = supergraph.authorization();
    assert!(rules.field("Query", "open").is_none());
    let me = rules.field("Query", "me").expect("@authenticated composed");
    assert!(me[0].authenticated, "{}", supergraph.sdl());
    let scoped = rules
        .field("Query", "scoped")
        .expect("@requiresScopes composed");
    assert_eq!(
        scoped[0].scopes,
        vec![
            vec!["read:a".to_owned(), "read:b".to_owned()],
            vec!["admin".to_owned()]
        ]
    );
    let ruled = rules.field("Query", "ruled").expect("@policy composed");
    assert_eq!(ruled[0].policies, vec![vec!["staff".to_owned()]]);
}
