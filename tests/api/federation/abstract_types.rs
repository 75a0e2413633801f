//! An interface and a union whose implementing types live in different subgraphs, queried
//! with inline fragments, named fragments and `__typename`.

use serde_json::json;

use super::harness::{Harness, gateway, subgraph};

/// Knows only which media match, by id: `interface Media { id }`, `union SearchResult`.
mod search {
    use async_graphql::{
        EmptyMutation, EmptySubscription, ID, Interface, Object, Schema, SimpleObject, Union,
    };

    #[derive(SimpleObject)]
    #[graphql(unresolvable = "id")]
    pub struct Book {
        pub id: ID,
    }

    #[derive(SimpleObject)]
    #[graphql(unresolvable = "id")]
    pub struct Movie {
        pub id: ID,
    }

    #[derive(Interface)]
    #[graphql(field(name = "id", ty = "&ID"))]
    pub enum Media {
        Book(Book),
        Movie(Movie),
    }

    #[derive(Union)]
    pub enum SearchResult {
        Book(Book),
        Movie(Movie),
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn search(&self) -> Vec<Media> {
            vec![
                Media::Book(Book { id: ID::from("b1") }),
                Media::Movie(Movie { id: ID::from("m1") }),
                Media::Book(Book { id: ID::from("b2") }),
            ]
        }

        async fn results(&self) -> Vec<SearchResult> {
            vec![
                SearchResult::Movie(Movie { id: ID::from("m1") }),
                SearchResult::Book(Book { id: ID::from("b2") }),
            ]
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

/// Books, and the interface's `title` for them.
mod books {
    use async_graphql::{
        EmptyMutation, EmptySubscription, ID, Interface, Object, Schema, SimpleObject,
    };

    #[derive(SimpleObject)]
    pub struct Book {
        pub id: ID,
        pub title: String,
        pub pages: i32,
    }

    #[derive(Interface)]
    #[graphql(field(name = "id", ty = "&ID"), field(name = "title", ty = "&String"))]
    pub enum Media {
        Book(Book),
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_book(&self, id: ID) -> Option<Book> {
            let (title, pages) = match id.as_str() {
                "b1" => ("Dune", 412),
                "b2" => ("Emma", 474),
                _ => return None,
            };
            Some(Book {
                id,
                title: title.to_string(),
                pages,
            })
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .register_output_type::<Media>()
            .enable_federation()
            .finish()
    }
}

/// Movies, and the interface's `title` for them.
mod movies {
    use async_graphql::{
        EmptyMutation, EmptySubscription, ID, Interface, Object, Schema, SimpleObject,
    };

    #[derive(SimpleObject)]
    pub struct Movie {
        pub id: ID,
        pub title: String,
        pub duration: i32,
    }

    #[derive(Interface)]
    #[graphql(field(name = "id", ty = "&ID"), field(name = "title", ty = "&String"))]
    pub enum Media {
        Movie(Movie),
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_movie(&self, id: ID) -> Option<Movie> {
            (id.as_str() == "m1").then(|| Movie {
                id,
                title: "Alien".to_string(),
                duration: 117,
            })
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .register_output_type::<Media>()
            .enable_federation()
            .finish()
    }
}

async fn harness() -> Harness {
    gateway(vec![
        subgraph("search", search::schema()),
        subgraph("books", books::schema()),
        subgraph("movies", movies::schema()),
    ])
    .await
}

#[tokio::test]
async fn interface_items_get_fields_from_the_subgraph_of_their_concrete_type() {
    let h = harness().await;

    let response = h
        .run(
            "query {
               search { __typename id title ... on Book { pages } ...MovieFields }
             }
             fragment MovieFields on Movie { duration }",
            json!({}),
        )
        .await;

    assert_eq!(
        response,
        json!({"data": {"search": [
            {"__typename": "Book", "id": "b1", "title": "Dune", "pages": 412},
            {"__typename": "Movie", "id": "m1", "title": "Alien", "duration": 117},
            {"__typename": "Book", "id": "b2", "title": "Emma", "pages": 474}
        ]}}),
        "supergraph:\n{}",
        h.supergraph_sdl()
    );
    assert_eq!(h.requests("books"), 1);
    assert_eq!(h.requests("movies"), 1);
}

#[tokio::test]
async fn typename_and_key_of_interface_items_need_no_other_subgraph() {
    let h = harness().await;

    let response = h.run("{ search { __typename id } }", json!({})).await;

    assert_eq!(
        response,
        json!({"data": {"search": [
            {"__typename": "Book", "id": "b1"},
            {"__typename": "Movie", "id": "m1"},
            {"__typename": "Book", "id": "b2"}
        ]}})
    );
    assert_eq!(h.requests("books"), 0);
    assert_eq!(h.requests("movies"), 0);
}

#[tokio::test]
async fn keys_of_interface_items_without_typename_come_back_as_the_interface() {
    let h = harness().await;

    let response = h
        .run("{ search { id ... on Media { mediaId: id } } }", json!({}))
        .await;

    assert_eq!(
        response,
        json!({"data": {"search": [
            {"id": "b1", "mediaId": "b1"},
            {"id": "m1", "mediaId": "m1"},
            {"id": "b2", "mediaId": "b2"}
        ]}})
    );
    assert_eq!(h.queries("search"), ["{search{id mediaId: id}}"]);
    assert_eq!(h.requests("books"), 0);
    assert_eq!(h.requests("movies"), 0);
}

#[tokio::test]
async fn union_members_are_completed_from_their_own_subgraphs() {
    let h = harness().await;

    let response = h
        .run(
            "{ results {
                 __typename
                 ... on Book { title }
                 ... on Movie { title duration }
             } }",
            json!({}),
        )
        .await;

    assert_eq!(
        response,
        json!({"data": {"results": [
            {"__typename": "Movie", "title": "Alien", "duration": 117},
            {"__typename": "Book", "title": "Emma"}
        ]}})
    );
    // Only b2 is a book here: m1 must not be sent to books.
    assert_eq!(h.requests("books"), 1);
    assert_eq!(h.requests("movies"), 1);
}

#[tokio::test]
async fn an_interface_fragment_spread_inside_a_union() {
    let h = harness().await;

    let response = h
        .run(
            "query { results { ...MediaFields } }
             fragment MediaFields on Media { id title }",
            json!({}),
        )
        .await;

    assert_eq!(
        response,
        json!({"data": {"results": [
            {"id": "m1", "title": "Alien"},
            {"id": "b2", "title": "Emma"}
        ]}})
    );
}
