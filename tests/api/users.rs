//! The users subgraph through HTTP: the account lifecycle, sessions, throttling, privacy,
//! bad input, tokens, migrations, and composition of its SDL.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use gantry_kit::keys::{KeySettings, SigningKey};
use gantry_migrations::{Migrator, MigratorTrait};
use serde_json::{Value, json};

use crate::helpers::{Backend, REFRESH, TestApp, error_code};

crate::on_both_backends!(
    the_whole_account_lifecycle_works,
    a_rotated_refresh_token_presented_again_revokes_its_session,
    changing_the_password_ends_every_other_session,
    logout_everywhere_ends_every_session,
    repeated_failed_logins_are_throttled_then_allowed_again,
    email_is_visible_only_to_its_owner,
    bad_input_names_the_field,
    taken_usernames_and_emails_conflict_case_insensitively,
    bad_tokens_are_unauthenticated_where_a_viewer_is_needed,
    migrations_go_down_and_up_again,
);

const ME: &str = "{ me { id username displayName bio email } }";

async fn the_whole_account_lifecycle_works(backend: Backend) {
    let app = TestApp::users(backend).await;

    let registered = app.register("alice").await;
    assert_eq!(registered["user"]["username"], "alice");
    assert_eq!(
        registered["user"]["email"], "alice@example.com",
        "the new user sees their own email"
    );
    assert_eq!(registered["expiresIn"], 900);
    let token = registered["accessToken"].as_str().unwrap();

    let me = app.graphql(ME, json!({}), Some(token)).await;
    assert_eq!(
        me["data"]["me"],
        json!({ "id": registered["user"]["id"], "username": "alice", "displayName": "ALICE", "bio": "", "email": "alice@example.com" })
    );

    for login in ["alice", "ALICE", "alice@example.com", "Alice@Example.COM"] {
        let response = app.login(login, "correct horse battery").await;
        assert_eq!(
            response["data"]["login"]["user"]["username"], "alice",
            "login as {login}: {response}"
        );
    }

    let updated = app
        .graphql(
            "mutation { updateProfile(input: { displayName: \" Alice A. \", bio: \"hi\" }) { displayName bio } }",
            json!({}),
            Some(token),
        )
        .await;
    assert_eq!(
        updated["data"]["updateProfile"],
        json!({ "displayName": "Alice A.", "bio": "hi" })
    );

    let refreshed = app
        .graphql(REFRESH, json!({ "t": registered["refreshToken"] }), None)
        .await;
    let new_refresh = refreshed["data"]["refreshSession"]["refreshToken"]
        .as_str()
        .unwrap();
    assert_ne!(new_refresh, registered["refreshToken"].as_str().unwrap());

    let logout = app
        .graphql(
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": new_refresh }),
            None,
        )
        .await;
    assert_eq!(logout["data"]["logout"], true);
    let after_logout = app
        .graphql(REFRESH, json!({ "t": new_refresh }), None)
        .await;
    assert_eq!(error_code(&after_logout), Some("UNAUTHENTICATED"));
    let ended = app.graphql(ME, json!({}), Some(token)).await;
    assert_eq!(error_code(&ended), Some("UNAUTHENTICATED"), "{ended}");
    let signed_in = app.login("alice", "correct horse battery").await;
    let token = signed_in["data"]["login"]["accessToken"].as_str().unwrap();

    let wrong = app
        .graphql(
            "mutation { deleteAccount(password: \"not my password\") }",
            json!({}),
            Some(token),
        )
        .await;
    assert_eq!(error_code(&wrong), Some("BAD_USER_INPUT"));
    assert_eq!(wrong["errors"][0]["extensions"]["field"], "password");

    let deleted = app
        .graphql(
            "mutation { deleteAccount(password: \"correct horse battery\") }",
            json!({}),
            Some(token),
        )
        .await;
    assert_eq!(deleted["data"]["deleteAccount"], true, "{deleted}");
    let gone = app
        .graphql(
            "query($id: ID!) { user(id: $id) { id } }",
            json!({ "id": registered["user"]["id"] }),
            None,
        )
        .await;
    assert_eq!(gone["data"]["user"], Value::Null);
    let login = app.login("alice", "correct horse battery").await;
    assert_eq!(error_code(&login), Some("UNAUTHENTICATED"));
    let by_name = app
        .graphql(
            "{ userByUsername(username: \"alice\") { id } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(by_name["data"]["userByUsername"], Value::Null);
}

async fn a_rotated_refresh_token_presented_again_revokes_its_session(backend: Backend) {
    let app = TestApp::users(backend).await;
    let first = app.register("bob").await["refreshToken"].clone();

    let second = app.graphql(REFRESH, json!({ "t": first }), None).await;
    let second = second["data"]["refreshSession"]["refreshToken"].clone();
    assert!(second.is_string());

    let reuse = app.graphql(REFRESH, json!({ "t": first }), None).await;
    assert_eq!(error_code(&reuse), Some("UNAUTHENTICATED"));
    assert!(
        reuse["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{reuse}"
    );

    let after = app.graphql(REFRESH, json!({ "t": second }), None).await;
    assert_eq!(
        error_code(&after),
        Some("UNAUTHENTICATED"),
        "the whole family is revoked: {after}"
    );

    let garbage = app
        .graphql(REFRESH, json!({ "t": "grt_not-a-token" }), None)
        .await;
    assert_eq!(error_code(&garbage), Some("UNAUTHENTICATED"));
}

async fn changing_the_password_ends_every_other_session(backend: Backend) {
    let app = TestApp::users(backend).await;
    let here = app.register("carol").await;
    let elsewhere = app.login("carol", "correct horse battery").await["data"]["login"].clone();

    let change = app
        .graphql(
            "mutation { changePassword(input: { currentPassword: \"correct horse battery\", newPassword: \"a much better one\" }) }",
            json!({}),
            here["accessToken"].as_str(),
        )
        .await;
    assert_eq!(change["data"]["changePassword"], true, "{change}");

    let other = app
        .graphql(REFRESH, json!({ "t": elsewhere["refreshToken"] }), None)
        .await;
    assert_eq!(error_code(&other), Some("UNAUTHENTICATED"));
    let this = app
        .graphql(REFRESH, json!({ "t": here["refreshToken"] }), None)
        .await;
    assert_eq!(
        this["data"]["refreshSession"]["user"]["username"], "carol",
        "{this}"
    );

    assert_eq!(
        error_code(&app.login("carol", "correct horse battery").await),
        Some("UNAUTHENTICATED")
    );
    assert_eq!(
        app.login("carol", "a much better one").await["data"]["login"]["user"]["username"],
        "carol"
    );

    let wrong_current = app
        .graphql(
            "mutation { changePassword(input: { currentPassword: \"nope nope nope\", newPassword: \"whatever it is\" }) }",
            json!({}),
            here["accessToken"].as_str(),
        )
        .await;
    assert_eq!(error_code(&wrong_current), Some("BAD_USER_INPUT"));
    assert_eq!(
        wrong_current["errors"][0]["extensions"]["field"],
        "currentPassword"
    );
}

async fn logout_everywhere_ends_every_session(backend: Backend) {
    let app = TestApp::users(backend).await;
    let one = app.register("dave").await;
    let two = app.login("dave", "correct horse battery").await["data"]["login"].clone();

    let response = app
        .graphql(
            "mutation { logoutEverywhere }",
            json!({}),
            one["accessToken"].as_str(),
        )
        .await;
    assert_eq!(response["data"]["logoutEverywhere"], true);

    for session in [&one, &two] {
        let refreshed = app
            .graphql(REFRESH, json!({ "t": session["refreshToken"] }), None)
            .await;
        assert_eq!(error_code(&refreshed), Some("UNAUTHENTICATED"));
    }
}

async fn repeated_failed_logins_are_throttled_then_allowed_again(backend: Backend) {
    let app = TestApp::users_with(
        backend,
        &[
            "--login-account-threshold",
            "3",
            "--login-backoff-base-ms",
            "1500",
        ],
    )
    .await;
    app.register("erin").await;

    let unknown = app.login("nobody_here", "correct horse battery").await;
    let wrong = app.login("erin", "wrong password!").await;
    assert_eq!(error_code(&unknown), Some("UNAUTHENTICATED"));
    assert_eq!(
        unknown["errors"][0]["message"], wrong["errors"][0]["message"],
        "no account enumeration"
    );

    app.login("erin", "wrong password!").await;
    app.login("erin", "wrong password!").await;
    let throttled = app.login("erin", "correct horse battery").await;
    assert_eq!(error_code(&throttled), Some("RATE_LIMITED"), "{throttled}");
    let retry_after = throttled["errors"][0]["extensions"]["retryAfter"]
        .as_u64()
        .unwrap();
    assert!(retry_after >= 1);

    // A client waits as long as it is told to, then is let in.
    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    let allowed = app.login("erin", "correct horse battery").await;
    assert_eq!(
        allowed["data"]["login"]["user"]["username"], "erin",
        "the wait has passed: {allowed}"
    );
}

async fn email_is_visible_only_to_its_owner(backend: Backend) {
    let app = TestApp::users(backend).await;
    let frank = app.register("frank").await;
    let grace = app.register("grace").await;
    let query = "query($id: ID!) { user(id: $id) { username email } userByUsername(username: \"frank\") { email } }";
    let vars = json!({ "id": frank["user"]["id"] });

    let as_grace = app
        .graphql(query, vars.clone(), grace["accessToken"].as_str())
        .await;
    assert_eq!(
        as_grace["data"],
        json!({ "user": { "username": "frank", "email": null }, "userByUsername": { "email": null } })
    );
    let anonymous = app.graphql(query, vars.clone(), None).await;
    assert_eq!(anonymous["data"]["user"]["email"], Value::Null);
    let as_frank = app
        .graphql(query, vars, frank["accessToken"].as_str())
        .await;
    assert_eq!(as_frank["data"]["user"]["email"], "frank@example.com");
}

async fn bad_input_names_the_field(backend: Backend) {
    let app = TestApp::users(backend).await;
    let cases = [
        (
            "ab",
            "ok@example.com",
            "long enough phrase here",
            "Name",
            "username",
        ),
        (
            &"x".repeat(31),
            "ok@example.com",
            "long enough phrase here",
            "Name",
            "username",
        ),
        (
            "has space",
            "ok@example.com",
            "long enough phrase here",
            "Name",
            "username",
        ),
        (
            "okname",
            "not-an-email",
            "long enough phrase here",
            "Name",
            "email",
        ),
        ("okname", "ok@example.com", "short", "Name", "password"),
        (
            "okname",
            "ok@example.com",
            &"p".repeat(129),
            "Name",
            "password",
        ),
        (
            "okname",
            "ok@example.com",
            "long enough phrase here",
            "   ",
            "displayName",
        ),
    ];
    for (username, email, password, display_name, field) in cases {
        let response = app
            .graphql(
                crate::helpers::REGISTER,
                json!({ "input": { "username": username, "email": email, "password": password, "displayName": display_name } }),
                None,
            )
            .await;
        assert_eq!(
            error_code(&response),
            Some("BAD_USER_INPUT"),
            "{username}/{email}: {response}"
        );
        assert_eq!(
            response["errors"][0]["extensions"]["field"], field,
            "{response}"
        );
        assert_eq!(response["data"], Value::Null);
    }
    let bad_id = app
        .graphql("{ user(id: \"not-a-uuid\") { id } }", json!({}), None)
        .await;
    assert_eq!(error_code(&bad_id), Some("BAD_USER_INPUT"));
}

async fn taken_usernames_and_emails_conflict_case_insensitively(backend: Backend) {
    let app = TestApp::users(backend).await;
    app.register("heidi").await;
    for (username, email, field) in [
        ("HEIDI", "other@example.com", "username"),
        ("someone", "Heidi@EXAMPLE.com", "email"),
    ] {
        let response = app
            .graphql(
                crate::helpers::REGISTER,
                json!({ "input": { "username": username, "email": email, "password": "long enough phrase here", "displayName": "H" } }),
                None,
            )
            .await;
        assert_eq!(error_code(&response), Some("CONFLICT"), "{response}");
        assert_eq!(response["errors"][0]["extensions"]["field"], field);
    }
}

async fn bad_tokens_are_unauthenticated_where_a_viewer_is_needed(backend: Backend) {
    let app = TestApp::users(backend).await;
    let ivan = app.register("ivan").await;
    let mutation = "mutation { logoutEverywhere }";

    let anonymous = app.graphql(mutation, json!({}), None).await;
    assert_eq!(error_code(&anonymous), Some("UNAUTHENTICATED"));
    assert_eq!(
        app.graphql(ME, json!({}), None).await["data"]["me"],
        Value::Null,
        "anonymous me is null"
    );

    let real = ivan["accessToken"].as_str().unwrap();
    let (header, rest) = real.split_once('.').unwrap();
    let (claims, _signature) = rest.split_once('.').unwrap();

    let other_dir = tempfile::tempdir().unwrap();
    let other_key = SigningKey::load(&KeySettings {
        data_dir: other_dir.path().into(),
        ..Default::default()
    })
    .unwrap();
    let forged = gantry_kit::jwt::TokenSigner::new(other_key, Default::default())
        .sign(
            uuid::Uuid::parse_str(ivan["user"]["id"].as_str().unwrap()).unwrap(),
            uuid::Uuid::now_v7(),
        )
        .unwrap();

    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{claims}.");

    let own_key = SigningKey::load(&KeySettings {
        data_dir: app.data_dir.path().into(),
        ..Default::default()
    })
    .unwrap();
    let expired = {
        let now = chrono::Utc::now().timestamp();
        let claims = gantry_kit::jwt::AccessClaims {
            sub: uuid::Uuid::parse_str(ivan["user"]["id"].as_str().unwrap()).unwrap(),
            sid: uuid::Uuid::now_v7(),
            iat: now - 3600,
            exp: now - 1800,
            jti: uuid::Uuid::now_v7(),
            iss: "gantry".into(),
            aud: "gantry".into(),
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(own_key.public.kid.clone());
        jsonwebtoken::encode(&header, &claims, &own_key.encoding).unwrap()
    };
    let tampered = format!(
        "{header}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"sub":"someone else"}"#),
        "c2ln"
    );

    for (what, token) in [
        ("malformed", "not a jwt".to_owned()),
        ("forged with another key", forged),
        ("alg none", alg_none),
        ("expired", expired),
        ("tampered", tampered),
    ] {
        let response = app.graphql(mutation, json!({}), Some(&token)).await;
        assert_eq!(
            error_code(&response),
            Some("UNAUTHENTICATED"),
            "{what}: {response}"
        );
        let me = app.graphql(ME, json!({}), Some(&token)).await;
        assert_eq!(
            error_code(&me),
            Some("UNAUTHENTICATED"),
            "me with a {what} token: {me}"
        );
    }
    let fine = app.graphql(mutation, json!({}), Some(real)).await;
    assert_eq!(fine["data"]["logoutEverywhere"], true);
}

async fn migrations_go_down_and_up_again(backend: Backend) {
    let app = TestApp::users(backend).await;
    app.register("judy").await;
    let (data_dir, database_url) = app.stop().await;

    let db = sea_orm::Database::connect(database_url.as_str())
        .await
        .unwrap();
    Migrator::down(&db, None).await.unwrap();
    assert!(
        Migrator::get_applied_migrations(&db)
            .await
            .unwrap()
            .is_empty()
    );
    Migrator::up(&db, None).await.unwrap();
    assert!(
        Migrator::get_pending_migrations(&db)
            .await
            .unwrap()
            .is_empty()
    );
    db.close().await.ok();

    let app = TestApp::start_users(data_dir, database_url, &[]).await;
    assert_eq!(
        error_code(&app.login("judy", "correct horse battery").await),
        Some("UNAUTHENTICATED")
    );
    app.register("judy").await;
}

#[tokio::test]
async fn two_processes_sharing_a_data_dir_trust_each_others_tokens() {
    let first = TestApp::users(Backend::Sqlite).await;
    let token = first.register("kate").await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let (data_dir, database_url) = first.stop().await;
    let restarted = TestApp::start_users(data_dir, database_url, &[]).await;
    let me = restarted.graphql(ME, json!({}), Some(&token)).await;
    assert_eq!(me["data"]["me"]["username"], "kate", "{me}");
}

#[tokio::test]
async fn the_jwks_verifies_issued_tokens_and_health_answers() {
    let app = TestApp::users(Backend::Sqlite).await;
    let token = app.register("leo").await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, jwks) = app.get_json("/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    let keys = gantry_kit::keys::PublicKey::from_jwks(&set);
    let verifier = gantry_kit::jwt::TokenVerifier::new(&keys, &Default::default()).unwrap();
    let claims = verifier.verify(&token).unwrap();
    assert_eq!(claims.iss, "gantry");
    assert_eq!(claims.aud, "gantry");
    assert_eq!(claims.exp - claims.iat, 900);

    let (status, health) = app.get_json("/health").await;
    assert_eq!((status, health), (200, json!({ "status": "ok" })));
}

#[tokio::test]
async fn the_subgraph_sdl_composes_as_a_federation_v2_subgraph() {
    let app = TestApp::users(Backend::Sqlite).await;
    let response = app.graphql("{ _service { sdl } }", json!({}), None).await;
    let sdl = response["data"]["_service"]["sdl"].as_str().unwrap();
    assert!(sdl.contains("@key(fields: \"id\")"), "{sdl}");

    let mut subgraphs = graphql_composition::Subgraphs::default();
    subgraphs
        .ingest_str(sdl, "users", Some("http://users.invalid/graphql"))
        .unwrap();
    let composed = graphql_composition::compose(&mut subgraphs).into_result();
    let supergraph = composed.map_err(|d| format!("{d:?}")).unwrap();
    let rendered = graphql_composition::render_federated_sdl(&supergraph).unwrap();
    assert!(rendered.contains("type User"), "{rendered}");
}

#[tokio::test]
async fn entity_representations_resolve_users_and_null_for_unknown_ids() {
    let app = TestApp::users(Backend::Sqlite).await;
    let mia = app.register("mia").await;
    let response = app
        .graphql(
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on User { username email } } }",
            json!({ "r": [
                { "__typename": "User", "id": mia["user"]["id"] },
                { "__typename": "User", "id": uuid::Uuid::now_v7().to_string() },
            ]}),
            None,
        )
        .await;
    assert_eq!(
        response["data"]["_entities"],
        json!([{ "username": "mia", "email": null }, null]),
        "{response}"
    );
}
