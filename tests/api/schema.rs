//! `schema.graphql` is what `gantry schema` prints; a stale copy fails here.

/// The API schema as `gantry schema` prints it.
async fn current() -> String {
    let common =
        crate::helpers::settings(std::path::Path::new("/nonexistent"), "sqlite::memory:", &[]);
    gantry::commands::schema::api_sdl(&common).await.unwrap()
}

/// The field line `field` of `type_name` (`name(args): Type`), as printed.
fn field_of<'s>(sdl: &'s str, type_name: &str, field: &str) -> Option<&'s str> {
    let start = sdl.find(&format!("\ntype {type_name} {{"))?;
    let body = &sdl[start..];
    let body = &body[..body.find("\n}")?];
    body.lines().map(str::trim).find(|line| {
        line.starts_with(&format!("{field}(")) || line.starts_with(&format!("{field}:"))
    })
}

#[tokio::test]
async fn schema_graphql_is_the_current_api_schema() {
    let current = current().await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == current,
        "schema.graphql is stale: run `cargo run -- schema > schema.graphql` and commit it"
    );
    for field in [
        "feed(first: Int = 20, after: String): PostConnection",
        "register(input: RegisterInput!): AuthPayload!",
    ] {
        assert!(
            current.contains(field),
            "{field} missing from the API schema"
        );
    }
    assert!(
        !current.contains("join__"),
        "federation internals leak into the API schema"
    );
    assert!(
        !current.contains("_entities"),
        "federation internals leak into the API schema"
    );
}

/// With one subgraph down, or an account gone, only the fields that join the subgraphs
/// are null: each of them must be nullable, or the null would spread to its parents.
#[tokio::test]
async fn every_field_that_joins_the_two_subgraphs_is_nullable() {
    let current = current().await;

    let nullable = [
        ("User", "posts", "PostConnection"),
        ("User", "followers", "UserConnection"),
        ("User", "following", "UserConnection"),
        ("User", "followerCount", "Int"),
        ("User", "followingCount", "Int"),
        ("User", "viewerFollows", "Boolean"),
        ("Post", "author", "User"),
        ("Comment", "author", "User"),
        ("UserEdge", "node", "User"),
        ("Query", "feed", "PostConnection"),
        ("Query", "latestPosts", "PostConnection"),
    ];

    for (type_name, field, ty) in nullable {
        let line = field_of(&current, type_name, field)
            .unwrap_or_else(|| panic!("{type_name}.{field} missing"));
        assert!(
            line.ends_with(&format!(": {ty}")),
            "{type_name}.{field} must be a nullable {ty}: {line}"
        );
    }
}
