//! `@interfaceObject`: ratings adds a field to every implementation of the `Media` entity
//! interface while knowing `Media` only as an object type.

use serde_json::json;

use super::harness::{Harness, gateway, subgraph};

/// Owns `interface Media @key(fields: "id")` and its implementations.
mod media {
    use async_graphql::{
        EmptyMutation, EmptySubscription, ID, Interface, Object, Schema, SimpleObject,
    };

    #[derive(SimpleObject)]
    pub struct Book {
        pub id: ID,
        pub title: String,
        pub pages: i32,
    }

    #[derive(SimpleObject)]
    pub struct Movie {
        pub id: ID,
        pub title: String,
        pub duration: i32,
    }

    #[derive(Interface)]
    #[graphql(field(name = "id", ty = "&ID"), field(name = "title", ty = "&String"))]
    pub enum Media {
        Book(Book),
        Movie(Movie),
    }

    fn media(id: &str) -> Option<Media> {
        match id {
            "b1" => Some(Media::Book(Book {
                id: ID::from("b1"),
                title: "Dune".to_string(),
                pages: 412,
            })),
            "m1" => Some(Media::Movie(Movie {
                id: ID::from("m1"),
                title: "Alien".to_string(),
                duration: 117,
            })),
            _ => None,
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn all_media(&self) -> Vec<Media> {
            ["b1", "m1"].into_iter().filter_map(media).collect()
        }

        #[graphql(entity)]
        async fn find_media(&self, id: ID) -> Option<Media> {
            media(&id)
        }

        #[graphql(entity)]
        async fn find_book(&self, id: ID) -> Option<Book> {
            match media(&id) {
                Some(Media::Book(book)) => Some(book),
                _ => None,
            }
        }

        #[graphql(entity)]
        async fn find_movie(&self, id: ID) -> Option<Movie> {
            match media(&id) {
                Some(Media::Movie(movie)) => Some(movie),
                _ => None,
            }
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

/// `type Media @key(fields: "id") @interfaceObject { id rating }`.
mod ratings {
    use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};

    #[derive(SimpleObject)]
    #[graphql(name = "Media", interface_object)]
    pub struct Media {
        pub id: ID,
        pub rating: i32,
    }

    fn rating(id: &str) -> i32 {
        if id == "b1" { 5 } else { 4 }
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn top_rated(&self) -> Media {
            Media {
                id: ID::from("m1"),
                rating: rating("m1"),
            }
        }

        #[graphql(entity)]
        async fn find_media(&self, id: ID) -> Media {
            let rating = rating(&id);
            Media { id, rating }
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

async fn harness() -> Harness {
    gateway(vec![
        subgraph("media", media::schema()),
        subgraph("ratings", ratings::schema()),
    ])
    .await
}

#[tokio::test]
async fn an_interface_object_field_is_added_to_every_implementation() {
    let h = harness().await;

    let response = h
        .run("{ allMedia { __typename id title rating } }", json!({}))
        .await;

    assert_eq!(
        response,
        json!({"data": {"allMedia": [
            {"__typename": "Book", "id": "b1", "title": "Dune", "rating": 5},
            {"__typename": "Movie", "id": "m1", "title": "Alien", "rating": 4}
        ]}}),
        "ratings received {:?}",
        h.queries("ratings")
    );
    assert_eq!(h.requests("ratings"), 1);
}

#[tokio::test]
async fn an_interface_object_root_field_gets_its_concrete_type_from_the_owner() {
    let h = harness().await;

    let response = h
        .run(
            "{ topRated { __typename id rating title ... on Movie { duration } ... on Book { pages } } }",
            json!({}),
        )
        .await;

    assert_eq!(
        response,
        json!({"data": {"topRated": {
            "__typename": "Movie", "id": "m1", "rating": 4, "title": "Alien", "duration": 117
        }}}),
        "media received {:?}",
        h.queries("media")
    );
}
