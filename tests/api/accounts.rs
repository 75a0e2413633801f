//! Accounts and what they leave behind, as a client and an attacker see them: an access
//! token stops working everywhere soon after its session or account ends, a deleted
//! account writes nothing more and leaves nothing that breaks a page, `follow` needs an
//! account that exists, weak passwords and control characters are refused.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use gantry::cli::{Cli, Command, ServeArgs};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, REFRESH, Stack, TestApp, error_code, eventually, fresh_database, settings,
};
use crate::on_both_backends;

const PASSWORD: &str = "correct horse battery";
const ME: &str = "{ me { id } }";
const CREATE_POST: &str = "mutation($b: String!) { createPost(input: { body: $b }) { id } }";
/// How long a revocation may take to reach every process (it is read every second).
const WITHIN: Duration = Duration::from_secs(10);

/// `gantry serve`'s app on a fresh database.
async fn serve(backend: Backend) -> TestApp {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database(backend, data_dir.path()).await;
    let common = settings(data_dir.path(), &url, &[]);
    let app = gantry::commands::serve::build(&common, &ServeArgs::default())
        .await
        .unwrap();
    TestApp::serve(app.router, Some(app.tasks), data_dir, url).await
}

/// The three-process shape: both subgraphs on their own ports over one database, and a
/// gateway in front that takes its keys and revocations from the users subgraph.
struct ThreeProcesses {
    stack: Stack,
    gateway: TestApp,
}

impl ThreeProcesses {
    async fn new(backend: Backend) -> Self {
        let stack = Stack::new(backend).await;
        let users = format!("users={}", stack.users.url("/graphql"));
        let posts = format!("posts={}", stack.posts.url("/graphql"));
        let gateway_dir = Arc::new(tempfile::tempdir().unwrap());
        let cli = Cli::try_parse_from([
            "gantry",
            "gateway",
            "--data-dir",
            &gateway_dir.path().display().to_string(),
            "--subgraph",
            &users,
            "--subgraph",
            &posts,
        ])
        .unwrap();
        let Command::Gateway(args) = &cli.command else {
            unreachable!()
        };
        let app = gantry::commands::gateway::build(&args.common, args)
            .await
            .unwrap();
        let gateway = TestApp::serve(
            app.router,
            Some(app.tasks),
            gateway_dir,
            stack.users.database_url.clone(),
        )
        .await;
        Self { stack, gateway }
    }

    /// A second session of `username`: `(access token, refresh token)`.
    async fn sign_in_again(&self, username: &str) -> (String, String) {
        let login = self.gateway.login(username, PASSWORD).await;
        let payload = &login["data"]["login"];
        (
            payload["accessToken"].as_str().expect("token").to_owned(),
            payload["refreshToken"]
                .as_str()
                .expect("refresh")
                .to_owned(),
        )
    }

    /// Whether `token` reads `me` at the gateway and writes a post at the posts subgraph.
    async fn works(&self, token: &str) -> (bool, bool) {
        let me = self.gateway.graphql(ME, json!({}), Some(token)).await;
        let post = self
            .stack
            .posts
            .graphql(CREATE_POST, json!({ "b": "still here" }), Some(token))
            .await;
        (
            me["data"]["me"]["id"].is_string(),
            post["data"]["createPost"]["id"].is_string(),
        )
    }

    /// Waits until `token` is refused with `UNAUTHENTICATED` both at the gateway and
    /// directly at the posts subgraph.
    async fn refused_everywhere(&self, token: &str, what: &str) {
        eventually(what, WITHIN, || async {
            let me = self.gateway.graphql(ME, json!({}), Some(token)).await;
            let post = self
                .stack
                .posts
                .graphql(CREATE_POST, json!({ "b": "should not land" }), Some(token))
                .await;
            (error_code(&me) == Some("UNAUTHENTICATED")
                && error_code(&post) == Some("UNAUTHENTICATED"))
            .then_some(())
        })
        .await;
    }
}

fn token(payload: &Value, field: &str) -> String {
    payload[field].as_str().expect(field).to_owned()
}

async fn an_access_token_is_refused_everywhere_soon_after_logout(backend: Backend) {
    let app = ThreeProcesses::new(backend).await;
    let alice = app.stack.users.register("alice").await;
    let (ended, other) = (
        token(&alice, "accessToken"),
        app.sign_in_again("alice").await.0,
    );
    assert_eq!(app.works(&ended).await, (true, true));

    let logout = app
        .gateway
        .graphql(
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": token(&alice, "refreshToken") }),
            None,
        )
        .await;
    assert_eq!(logout["data"]["logout"], true, "{logout}");

    app.refused_everywhere(&ended, "the logged-out session's token refused")
        .await;
    assert_eq!(
        app.works(&other).await,
        (true, true),
        "the other session lives"
    );
}

async fn every_session_is_refused_soon_after_logout_everywhere(backend: Backend) {
    let app = ThreeProcesses::new(backend).await;
    let alice = app.stack.users.register("alice").await;
    let (first, second) = (
        token(&alice, "accessToken"),
        app.sign_in_again("alice").await.0,
    );
    assert_eq!(app.works(&second).await, (true, true));

    let ended = app
        .gateway
        .graphql("mutation { logoutEverywhere }", json!({}), Some(&first))
        .await;
    assert_eq!(ended["data"]["logoutEverywhere"], true, "{ended}");

    app.refused_everywhere(&first, "the calling session's token refused")
        .await;
    app.refused_everywhere(&second, "the other session's token refused")
        .await;
}

async fn other_sessions_are_refused_soon_after_a_password_change(backend: Backend) {
    let app = ThreeProcesses::new(backend).await;
    let alice = app.stack.users.register("alice").await;
    let (other, current) = (
        token(&alice, "accessToken"),
        app.sign_in_again("alice").await.0,
    );
    assert_eq!(app.works(&other).await, (true, true));

    let changed = app
        .gateway
        .graphql(
            "mutation($c: String!) { changePassword(input: { currentPassword: $c, newPassword: \"tangerine orbit ledger\" }) }",
            json!({ "c": PASSWORD }),
            Some(&current),
        )
        .await;
    assert_eq!(changed["data"]["changePassword"], true, "{changed}");

    app.refused_everywhere(&other, "the other session's token refused")
        .await;
    assert_eq!(
        app.works(&current).await,
        (true, true),
        "the session that changed it lives"
    );
}

async fn a_session_whose_refresh_token_is_replayed_is_refused_soon(backend: Backend) {
    let app = ThreeProcesses::new(backend).await;
    let alice = app.stack.users.register("alice").await;
    let stolen = token(&alice, "refreshToken");
    let rotated = app
        .gateway
        .graphql(REFRESH, json!({ "t": stolen }), None)
        .await;
    let fresh = rotated["data"]["refreshSession"]["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("refreshSession: {rotated}"))
        .to_owned();
    assert_eq!(app.works(&fresh).await, (true, true));

    let replayed = app
        .gateway
        .graphql(REFRESH, json!({ "t": stolen }), None)
        .await;
    assert_eq!(error_code(&replayed), Some("UNAUTHENTICATED"), "{replayed}");

    app.refused_everywhere(&fresh, "the replayed session's newest token refused")
        .await;
    app.refused_everywhere(&token(&alice, "accessToken"), "its first token refused")
        .await;
}

async fn a_deleted_accounts_tokens_are_refused_soon(backend: Backend) {
    let app = ThreeProcesses::new(backend).await;
    let alice = app.stack.users.register("alice").await;
    let (first, second) = (
        token(&alice, "accessToken"),
        app.sign_in_again("alice").await.0,
    );
    assert_eq!(app.works(&second).await, (true, true));

    let deleted = app
        .gateway
        .graphql(
            "mutation($p: String!) { deleteAccount(password: $p) }",
            json!({ "p": PASSWORD }),
            Some(&first),
        )
        .await;
    assert_eq!(deleted["data"]["deleteAccount"], true, "{deleted}");

    app.refused_everywhere(&first, "the deleting session's token refused")
        .await;
    app.refused_everywhere(&second, "the account's other session refused")
        .await;
}

/// In one process the gateway learns of an ended session as it is committed.
#[tokio::test]
async fn in_one_process_a_logged_out_token_is_refused_at_once() {
    let app = serve(Backend::Sqlite).await;
    let alice = app.register("alice").await;
    let access = token(&alice, "accessToken");
    let me = app.graphql(ME, json!({}), Some(&access)).await;
    assert!(me["data"]["me"]["id"].is_string(), "{me}");

    app.graphql(
        "mutation($t: String!) { logout(refreshToken: $t) }",
        json!({ "t": token(&alice, "refreshToken") }),
        None,
    )
    .await;

    let me = app.graphql(ME, json!({}), Some(&access)).await;
    assert_eq!(error_code(&me), Some("UNAUTHENTICATED"), "{me}");
    assert_eq!(
        me["errors"][0]["message"], "the session has ended; sign in again",
        "{me}"
    );
}

async fn a_deleted_accounts_token_writes_nothing_and_public_pages_still_read(backend: Backend) {
    let app = serve(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let (doomed, bob_token) = (token(&alice, "accessToken"), token(&bob, "accessToken"));
    let bob_id = bob["user"]["id"].as_str().unwrap().to_owned();
    let created = app
        .graphql(CREATE_POST, json!({ "b": "bob's post" }), Some(&bob_token))
        .await;
    let post = created["data"]["createPost"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let writes = [
        (CREATE_POST, json!({ "b": "a ghost post" })),
        (
            "mutation($p: ID!) { addComment(postId: $p, body: \"a ghost comment\") { id } }",
            json!({ "p": post }),
        ),
        (
            "mutation($p: ID!) { likePost(postId: $p) { id } }",
            json!({ "p": post }),
        ),
        (
            "mutation($u: ID!) { follow(userId: $u) { id } }",
            json!({ "u": bob_id }),
        ),
    ];
    for (mutation, variables) in &writes {
        let done = app
            .graphql(mutation, variables.clone(), Some(&doomed))
            .await;
        assert_eq!(done["errors"], Value::Null, "before deletion: {done}");
    }

    let deleted = app
        .graphql(
            "mutation($p: String!) { deleteAccount(password: $p) }",
            json!({ "p": PASSWORD }),
            Some(&doomed),
        )
        .await;
    assert_eq!(deleted["data"]["deleteAccount"], true, "{deleted}");

    for (mutation, variables) in &writes {
        let refused = app
            .graphql(mutation, variables.clone(), Some(&doomed))
            .await;
        assert_eq!(error_code(&refused), Some("UNAUTHENTICATED"), "{refused}");
    }
    let pages = "query($p: ID!, $u: ID!) {
        latestPosts(first: 10) { edges { node { body author { username } } } }
        post(id: $p) { likeCount commentCount comments { edges { node { body author { username } } } } }
        user(id: $u) { followerCount followers { edges { node { username } } } } }";
    let expected = json!({
        "latestPosts": { "edges": [{ "node": { "body": "bob's post", "author": { "username": "bob" } } }] },
        "post": { "likeCount": 0, "commentCount": 0, "comments": { "edges": [] } },
        "user": { "followerCount": 0, "followers": { "edges": [] } },
    });
    eventually(
        "the deleted account's rows removed, every page whole",
        WITHIN,
        || async {
            let read = app
                .graphql(pages, json!({ "p": post, "u": bob_id }), None)
                .await;
            (read == json!({ "data": expected })).then_some(())
        },
    )
    .await;
}

/// Writes sent straight to the posts subgraph while the account is being deleted (before
/// the subgraph has heard of the deletion) either land before the deletion's consumer
/// runs, and are removed by it, or are refused after: none survives.
async fn writes_racing_an_account_deletion_leave_no_ghost_rows(backend: Backend) {
    let stack = Stack::new(backend).await;
    let alice = stack.users.register("alice").await;
    let (bob_id, bob) = stack.user("bob").await;
    let doomed = token(&alice, "accessToken");
    let post = stack.post(&bob, "bob's post").await;

    let writer = {
        let (posts, doomed, post, bob_id) = (
            stack.posts.url("/graphql"),
            doomed.clone(),
            post.clone(),
            bob_id.clone(),
        );
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let writes = [
                (CREATE_POST, json!({ "b": "racing" })),
                (
                    "mutation($p: ID!) { addComment(postId: $p, body: \"racing\") { id } }",
                    json!({ "p": post }),
                ),
                (
                    "mutation($p: ID!) { likePost(postId: $p) { id } }",
                    json!({ "p": post }),
                ),
                (
                    "mutation($u: ID!) { follow(userId: $u) { id } }",
                    json!({ "u": bob_id }),
                ),
            ];
            // Bounded: on a subgraph that never refuses, the test fails on what is left.
            for round in 0..400 {
                let (mutation, variables) = &writes[round % writes.len()];
                let response: Value = client
                    .post(&posts)
                    .bearer_auth(&doomed)
                    .json(&json!({ "query": mutation, "variables": variables }))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if error_code(&response) == Some("UNAUTHENTICATED") {
                    return round;
                }
            }
            400
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let deleted = stack
        .users
        .graphql(
            "mutation($p: String!) { deleteAccount(password: $p) }",
            json!({ "p": PASSWORD }),
            Some(&doomed),
        )
        .await;
    assert_eq!(deleted["data"]["deleteAccount"], true, "{deleted}");
    let rounds = writer.await.unwrap();
    assert!(
        rounds < 400,
        "the posts subgraph never refused the deleted account"
    );

    let check = "query($p: ID!, $r: [_Any!]!) {
        latestPosts(first: 50) { edges { node { body } } }
        post(id: $p) { likeCount commentCount }
        _entities(representations: $r) { ... on User { followerCount } } }";
    let expected = json!({ "data": {
        "latestPosts": { "edges": [{ "node": { "body": "bob's post" } }] },
        "post": { "likeCount": 0, "commentCount": 0 },
        "_entities": [{ "followerCount": 0 }],
    }});
    let vars = json!({ "p": post, "r": [{ "__typename": "User", "id": bob_id }] });
    eventually("no row of the deleted account left", WITHIN, || async {
        let seen = stack.posts.graphql(check, vars.clone(), None).await;
        (seen == expected).then_some(())
    })
    .await;
}

async fn following_an_unknown_or_deleted_account_is_not_found(backend: Backend) {
    let app = serve(backend).await;
    let alice = token(&app.register("alice").await, "accessToken");
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let follow = "mutation($u: ID!) { follow(userId: $u) { id } }";
    for user in [&bob, &carol] {
        let done = app
            .graphql(follow, json!({ "u": user["user"]["id"] }), Some(&alice))
            .await;
        assert_eq!(done["errors"], Value::Null, "{done}");
    }

    let unknown = app
        .graphql(
            follow,
            json!({ "u": uuid::Uuid::now_v7().to_string() }),
            Some(&alice),
        )
        .await;
    assert_eq!(error_code(&unknown), Some("NOT_FOUND"), "{unknown}");

    app.graphql(
        "mutation($p: String!) { deleteAccount(password: $p) }",
        json!({ "p": PASSWORD }),
        Some(&token(&carol, "accessToken")),
    )
    .await;
    let gone = eventually("following a deleted account refused", WITHIN, || async {
        let done = app
            .graphql(follow, json!({ "u": carol["user"]["id"] }), Some(&alice))
            .await;
        (error_code(&done) == Some("NOT_FOUND")).then_some(done)
    })
    .await;
    assert_eq!(gone["data"], Value::Null, "{gone}");

    let following = app
        .graphql(
            "{ me { following { edges { node { username } } } } }",
            json!({}),
            Some(&alice),
        )
        .await;
    assert_eq!(
        following,
        json!({ "data": { "me": { "following": { "edges": [{ "node": { "username": "bob" } }] } } } })
    );
}

#[tokio::test]
async fn weak_passwords_are_bad_user_input() {
    let app = TestApp::users(Backend::Sqlite).await;
    for (username, password) in [
        ("weak_one", "password"),
        ("weak_two", "        "),
        ("franklin_99", "franklin_99"),
        ("weak_three", "weak_three@example.com"),
        ("weak_four", "qwerty123"),
    ] {
        let response = app
            .graphql(
                crate::helpers::REGISTER,
                json!({ "input": { "username": username, "email": format!("{username}@example.com"), "password": password, "displayName": "W" } }),
                None,
            )
            .await;
        assert_eq!(
            error_code(&response),
            Some("BAD_USER_INPUT"),
            "{password:?}: {response}"
        );
        assert_eq!(response["errors"][0]["extensions"]["field"], "password");
    }

    let alice = app.register("alice").await;
    let changed = app
        .graphql(
            "mutation($c: String!) { changePassword(input: { currentPassword: $c, newPassword: \"alice1234\" }) }",
            json!({ "c": PASSWORD }),
            Some(&token(&alice, "accessToken")),
        )
        .await;
    assert_eq!(error_code(&changed), Some("BAD_USER_INPUT"), "{changed}");
    assert_eq!(changed["errors"][0]["extensions"]["field"], "newPassword");
    assert_eq!(
        changed["errors"][0]["message"],
        "password must not contain your username or email"
    );
}

async fn control_characters_and_invisible_bodies_are_bad_user_input(backend: Backend) {
    let app = serve(backend).await;
    let alice = token(&app.register("alice").await, "accessToken");
    let post = app
        .graphql(CREATE_POST, json!({ "b": "a fine post" }), Some(&alice))
        .await["data"]["createPost"]["id"]
        .clone();
    let cases = [
        (CREATE_POST, json!({ "b": "nul\u{0}byte" }), "body"),
        (
            CREATE_POST,
            json!({ "b": "\u{200B}\u{200D} \u{FEFF}\u{2060}" }),
            "body",
        ),
        (
            "mutation($p: ID!, $b: String!) { addComment(postId: $p, body: $b) { id } }",
            json!({ "p": post, "b": "nul\u{0}" }),
            "body",
        ),
        (
            "mutation($p: ID!, $b: String!) { addComment(postId: $p, body: $b) { id } }",
            json!({ "p": post, "b": "\u{200B}" }),
            "body",
        ),
        (
            "mutation($b: String!) { updateProfile(input: { bio: $b }) { id } }",
            json!({ "b": "bio\u{0}" }),
            "bio",
        ),
        (
            "mutation($b: String!) { updateProfile(input: { displayName: $b }) { id } }",
            json!({ "b": "Ali\u{0}ce" }),
            "displayName",
        ),
        (
            "query($u: String!) { userByUsername(username: $u) { id } }",
            json!({ "u": "ali\u{0}ce" }),
            "username",
        ),
        (
            crate::helpers::LOGIN,
            json!({ "input": { "login": "ali\u{0}ce", "password": PASSWORD } }),
            "login",
        ),
        (
            crate::helpers::REGISTER,
            json!({ "input": { "username": "nul\u{0}name", "email": "nul@example.com", "password": PASSWORD, "displayName": "N" } }),
            "username",
        ),
    ];
    for (operation, variables, field) in cases {
        let response = app
            .graphql(operation, variables.clone(), Some(&alice))
            .await;
        assert_eq!(
            error_code(&response),
            Some("BAD_USER_INPUT"),
            "{variables}: {response}"
        );
        assert_eq!(
            response["errors"][0]["extensions"]["field"], field,
            "{response}"
        );
    }
    let latest = app
        .graphql(
            "{ latestPosts { edges { node { body } } } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(
        latest,
        json!({ "data": { "latestPosts": { "edges": [{ "node": { "body": "a fine post" } }] } } })
    );
}

/// An event whose transaction committed after a later event was handled (its id, drawn
/// before the commit, is below the consumer's offset) is still handled.
async fn outbox_events_committed_after_later_ones_are_still_handled(backend: Backend) {
    use gantry_entities::{outbox_event, outbox_offset};
    use sea_orm::{ActiveValue::Set, EntityTrait};

    let stack = Stack::new(backend).await;
    let (carol_id, carol) = stack.user("carol").await;
    stack.post(&carol, "carol's post").await;
    let (_, alice) = stack.user("alice").await;
    let (_, erin) = stack.user("erin").await;
    stack
        .users
        .graphql(
            "mutation($p: String!) { deleteAccount(password: $p) }",
            json!({ "p": PASSWORD }),
            Some(&erin),
        )
        .await;
    let db = sea_orm::Database::connect(stack.users.database_url.as_str())
        .await
        .unwrap();
    let offset = eventually("the consumer has read the outbox", WITHIN, || async {
        outbox_offset::Entity::find_by_id(gantry_posts::consumer::CONSUMER.to_owned())
            .one(&db)
            .await
            .unwrap()
            .map(|offset| offset.last_event_id)
    })
    .await;
    let (secs, nanos) = offset.get_timestamp().unwrap().to_unix();
    let late_id = |millis_before: u64| {
        let millis = secs * 1000 + u64::from(nanos / 1_000_000) - millis_before;
        let at = uuid::Timestamp::from_unix(
            uuid::NoContext,
            millis / 1000,
            (millis % 1000) as u32 * 1_000_000,
        );
        uuid::Uuid::new_v7(at)
    };
    let dave = uuid::Uuid::now_v7();
    for (id, topic, payload) in [
        (
            late_id(200),
            outbox_event::TOPIC_ACCOUNT_CREATED,
            json!({ "userId": dave }),
        ),
        (
            late_id(100),
            outbox_event::TOPIC_ACCOUNT_DELETED,
            json!({ "userId": carol_id }),
        ),
    ] {
        assert!(id < offset);
        outbox_event::Entity::insert(outbox_event::ActiveModel {
            id: Set(id),
            topic: Set(topic.to_owned()),
            payload: Set(payload.to_string()),
            created_at: Set(chrono::Utc::now()),
            published_at: Set(None),
        })
        .exec_without_returning(&db)
        .await
        .unwrap();
    }

    let follow = "mutation($u: ID!) { follow(userId: $u) { id } }";
    eventually("the late account-created event handled", WITHIN, || async {
        let done = stack
            .posts
            .graphql(follow, json!({ "u": dave.to_string() }), Some(&alice))
            .await;
        done["errors"].is_null().then_some(())
    })
    .await;
    eventually("the late account-deleted event handled", WITHIN, || async {
        let latest = stack
            .posts
            .graphql(
                "{ latestPosts { edges { node { body } } } }",
                json!({}),
                None,
            )
            .await;
        (latest == json!({ "data": { "latestPosts": { "edges": [] } } })).then_some(())
    })
    .await;
}

on_both_backends!(
    outbox_events_committed_after_later_ones_are_still_handled,
    an_access_token_is_refused_everywhere_soon_after_logout,
    every_session_is_refused_soon_after_logout_everywhere,
    other_sessions_are_refused_soon_after_a_password_change,
    a_session_whose_refresh_token_is_replayed_is_refused_soon,
    a_deleted_accounts_tokens_are_refused_soon,
    a_deleted_accounts_token_writes_nothing_and_public_pages_still_read,
    writes_racing_an_account_deletion_leave_no_ghost_rows,
    following_an_unknown_or_deleted_account_is_not_found,
    control_characters_and_invisible_bodies_are_bad_user_input,
);
