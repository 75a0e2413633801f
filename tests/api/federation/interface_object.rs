//! `@interfaceObject`: ratings adds a field to every implementation of the `Media` entity
//! interface while knowing `Media` only as an object type; directory (resolvable) and
//! spotlight (`resolvable: false`) serve `Account` values whose concrete type only the
//! owning subgraph knows.

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

/// Owns `interface Account @key(fields: "id") { id }` and its implementations.
mod accounts {
    use async_graphql::{
        EmptyMutation, EmptySubscription, ID, Interface, Object, Schema, SimpleObject,
    };

    #[derive(SimpleObject)]
    pub struct User {
        pub id: ID,
        pub email: String,
    }

    #[derive(SimpleObject)]
    pub struct Admin {
        pub id: ID,
        pub level: i32,
    }

    #[derive(Interface)]
    #[graphql(field(name = "id", ty = "&ID"))]
    pub enum Account {
        User(User),
        Admin(Admin),
    }

    /// u1, u2 and a1; any other id (x9) is unknown.
    fn account(id: &str) -> Option<Account> {
        let user = |email: &str| {
            Account::User(User {
                id: ID::from(id),
                email: email.to_string(),
            })
        };
        match id {
            "u1" => Some(user("ada@example.com")),
            "u2" => Some(user("bob@example.com")),
            "a1" => Some(Account::Admin(Admin {
                id: ID::from(id),
                level: 3,
            })),
            _ => None,
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn admins(&self) -> Vec<Admin> {
            vec![Admin {
                id: ID::from("a1"),
                level: 3,
            }]
        }

        #[graphql(entity)]
        async fn find_account(&self, id: ID) -> Option<Account> {
            account(&id)
        }

        #[graphql(entity)]
        async fn find_user(&self, id: ID) -> Option<User> {
            match account(&id) {
                Some(Account::User(user)) => Some(user),
                _ => None,
            }
        }

        #[graphql(entity)]
        async fn find_admin(&self, id: ID) -> Option<Admin> {
            match account(&id) {
                Some(Account::Admin(admin)) => Some(admin),
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

/// `type Account @key(fields: "id") @interfaceObject { id name }`: names every account and
/// lists them, without knowing which are users and which admins.
mod directory {
    use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};

    #[derive(SimpleObject)]
    #[graphql(name = "Account", interface_object)]
    pub struct Account {
        pub id: ID,
        pub name: String,
    }

    fn account(id: &str) -> Account {
        let name = match id {
            "u1" => "Ada",
            "u2" => "Bob",
            "a1" => "Root",
            _ => "Nobody",
        };
        Account {
            id: ID::from(id),
            name: name.to_string(),
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        /// `[Account!]!`
        async fn accounts(&self) -> Vec<Account> {
            ["u1", "a1", "u2"].into_iter().map(account).collect()
        }

        /// `Account!`
        async fn account(&self, id: ID) -> Account {
            account(&id)
        }

        #[graphql(entity)]
        async fn find_account(&self, id: ID) -> Account {
            account(&id)
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

/// `type Account @key(fields: "id", resolvable: false) @interfaceObject { id }`: features
/// accounts (x9 among them, which no longer exists) but cannot be asked about one.
mod spotlight {
    use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};

    #[derive(SimpleObject)]
    #[graphql(name = "Account", interface_object, unresolvable = "id")]
    pub struct Account {
        pub id: ID,
    }

    pub struct Query;

    #[Object]
    impl Query {
        /// `[Account]!`
        async fn featured(&self) -> Vec<Option<Account>> {
            ["a1", "u2", "x9"]
                .into_iter()
                .map(|id| Some(Account { id: ID::from(id) }))
                .collect()
        }
    }

    pub fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

async fn accounts_harness() -> Harness {
    gateway(vec![
        subgraph("accounts", accounts::schema()),
        subgraph("directory", directory::schema()),
        subgraph("spotlight", spotlight::schema()),
    ])
    .await
}

#[tokio::test]
async fn interface_object_values_are_shaped_against_the_interface() {
    let h = accounts_harness().await;

    let response = h
        .run("{ accounts { name ... on Account { id } } }", json!({}))
        .await;

    assert_eq!(
        response,
        json!({"data": {"accounts": [
            {"name": "Ada", "id": "u1"},
            {"name": "Root", "id": "a1"},
            {"name": "Bob", "id": "u2"}
        ]}}),
        "supergraph:\n{}",
        h.supergraph_sdl()
    );
    assert_eq!(h.requests("accounts"), 0, "{:?}", h.queries("accounts"));
}

#[tokio::test]
async fn a_non_null_interface_object_root_field_keeps_its_value() {
    let h = accounts_harness().await;

    let response = h
        .run(r#"{ account(id: "a1") { id name } }"#, json!({}))
        .await;

    assert_eq!(
        response,
        json!({"data": {"account": {"id": "a1", "name": "Root"}}})
    );
}

#[tokio::test]
async fn concrete_fragments_on_interface_object_values_get_the_type_from_the_owner() {
    let h = accounts_harness().await;

    let response = h
        .run(
            "{ accounts { __typename name ... on Admin { level } ... on User { email } } }",
            json!({}),
        )
        .await;

    assert_eq!(
        response,
        json!({"data": {"accounts": [
            {"__typename": "User", "name": "Ada", "email": "ada@example.com"},
            {"__typename": "Admin", "name": "Root", "level": 3},
            {"__typename": "User", "name": "Bob", "email": "bob@example.com"}
        ]}})
    );
    assert_eq!(h.requests("accounts"), 1, "{:?}", h.queries("accounts"));
}

#[tokio::test]
async fn values_of_an_unresolvable_interface_object_get_fields_from_the_other_subgraphs() {
    let h = accounts_harness().await;

    let response = h
        .run("{ featured { id name ... on Admin { level } } }", json!({}))
        .await;

    // x9 is unknown to the owner: no fragment on a concrete type applies to it, and the
    // interface's fields still do.
    assert_eq!(
        response,
        json!({"data": {"featured": [
            {"id": "a1", "name": "Root", "level": 3},
            {"id": "u2", "name": "Bob"},
            {"id": "x9", "name": "Nobody"}
        ]}}),
        "accounts received {:?}",
        h.queries("accounts")
    );
}

#[tokio::test]
async fn typename_of_a_value_no_subgraph_knows_the_concrete_type_of_is_an_error() {
    let h = accounts_harness().await;

    let response = h.run("{ featured { __typename id } }", json!({})).await;

    assert_eq!(
        response,
        json!({
            "data": {"featured": [
                {"__typename": "Admin", "id": "a1"},
                {"__typename": "User", "id": "u2"},
                null
            ]},
            "errors": [{
                "message": "Could not resolve the concrete type of this \"Account\".",
                "path": ["featured", 2, "__typename"],
                "extensions": {"code": "SUBGRAPH_ERROR"}
            }]
        })
    );
}
