//! Interface values with and without a concrete `__typename` in the subgraph's data. The
//! planner asks a subgraph for `__typename` only when the client's selection needs the
//! concrete type (a fragment on an object type, or `__typename` itself); otherwise the value
//! is shaped against the interface: its fields, and fragments on the interface, apply.

use serde_json::json;

use super::harness::{Harness, gateway, subgraph};

/// `interface Node { id: ID! }` with two implementations, all in one subgraph.
mod library {
    use async_graphql::{
        EmptyMutation, EmptySubscription, ID, Interface, Object, Schema, SimpleObject,
    };

    #[derive(SimpleObject)]
    pub struct Book {
        pub id: ID,
        pub title: String,
    }

    #[derive(SimpleObject)]
    pub struct Movie {
        pub id: ID,
        pub duration: i32,
    }

    #[derive(Interface)]
    #[graphql(field(name = "id", ty = "&ID"))]
    pub enum Node {
        Book(Book),
        Movie(Movie),
    }

    fn node(id: &str) -> Option<Node> {
        match id {
            "b1" => Some(Node::Book(Book {
                id: ID::from("b1"),
                title: "Dune".to_string(),
            })),
            "m1" => Some(Node::Movie(Movie {
                id: ID::from("m1"),
                duration: 117,
            })),
            _ => None,
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        /// `[Node]!`
        async fn nodes(&self) -> Vec<Option<Node>> {
            vec![node("b1"), node("m1")]
        }

        /// `Node!`: an unknown id is an error.
        async fn node(&self, id: ID) -> async_graphql::Result<Node> {
            node(&id).ok_or_else(|| "no such node".into())
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

async fn harness() -> Harness {
    gateway(vec![subgraph("library", library::schema())]).await
}

#[tokio::test]
async fn interface_fields_alone_need_no_concrete_type() {
    let h = harness().await;

    let response = h.run("{ nodes { id } }", json!({})).await;

    assert_eq!(
        response,
        json!({"data": {"nodes": [{"id": "b1"}, {"id": "m1"}]}})
    );
    assert_eq!(h.queries("library"), ["{nodes{id}}"], "no __typename asked");
}

#[tokio::test]
async fn a_fragment_on_the_interface_applies_without_a_concrete_type() {
    let h = harness().await;

    let response = h
        .run(
            "query { nodes { ... on Node { id } ...NodeId } }
             fragment NodeId on Node { nodeId: id }",
            json!({}),
        )
        .await;

    assert_eq!(
        response,
        json!({"data": {"nodes": [
            {"id": "b1", "nodeId": "b1"},
            {"id": "m1", "nodeId": "m1"}
        ]}})
    );
}

#[tokio::test]
async fn a_non_null_interface_field_without_a_concrete_type_keeps_its_value() {
    let h = harness().await;

    let response = h.run(r#"{ node(id: "m1") { id } }"#, json!({})).await;

    assert_eq!(response, json!({"data": {"node": {"id": "m1"}}}));
}

#[tokio::test]
async fn fragments_on_concrete_types_get_the_concrete_type_asked_for() {
    let h = harness().await;

    let response = h
        .run(
            "{ nodes { id ... on Book { title } ... on Movie { duration } } }",
            json!({}),
        )
        .await;

    assert_eq!(
        response,
        json!({"data": {"nodes": [
            {"id": "b1", "title": "Dune"},
            {"id": "m1", "duration": 117}
        ]}})
    );
}

#[tokio::test]
async fn typename_of_an_interface_value_is_its_concrete_type() {
    let h = harness().await;

    let response = h.run("{ nodes { __typename id } }", json!({})).await;

    assert_eq!(
        response,
        json!({"data": {"nodes": [
            {"__typename": "Book", "id": "b1"},
            {"__typename": "Movie", "id": "m1"}
        ]}})
    );
}
