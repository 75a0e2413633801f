//! The operations the scenarios send, written as an app would write them (named, with
//! variables). Field names follow `schema.graphql`.

/// A mobile app's home screen: the newest posts.
pub const LATEST_POSTS: &str = "query LatestPosts { latestPosts(first: 20) { edges { cursor node { id body createdAt likeCount commentCount author { id username displayName } } } pageInfo { hasNextPage endCursor } } }";

/// A post's page: the post, its author and the first comments.
pub const POST_PAGE: &str = "query PostPage($id: ID!) { post(id: $id) { id body createdAt editedAt likeCount commentCount author { id username displayName } comments(first: 10) { edges { node { id body createdAt author { id username displayName } } } pageInfo { hasNextPage endCursor } } } }";

/// A profile page: the user and their latest posts.
pub const USER_PAGE: &str = "query UserPage($id: ID!) { user(id: $id) { id username displayName bio followerCount followingCount posts(first: 10) { edges { node { id body createdAt likeCount commentCount } } pageInfo { hasNextPage endCursor } } } }";

/// A post's page for a signed-in viewer (adds whether they liked it).
pub const POST_PAGE_SIGNED_IN: &str = "query PostPageSignedIn($id: ID!) { post(id: $id) { id body createdAt editedAt likeCount commentCount viewerHasLiked author { id username displayName viewerFollows } comments(first: 10) { edges { node { id body createdAt author { id username displayName } } } pageInfo { hasNextPage endCursor } } } }";

/// A profile page for a signed-in viewer (adds whether they follow the user).
pub const USER_PAGE_SIGNED_IN: &str = "query UserPageSignedIn($id: ID!) { user(id: $id) { id username displayName bio followerCount followingCount viewerFollows posts(first: 10) { edges { node { id body createdAt likeCount commentCount viewerHasLiked } } pageInfo { hasNextPage endCursor } } } }";

/// The signed-in home feed.
pub const FEED: &str = "query SignedInFeed { feed(first: 20) { edges { node { id body createdAt author { id username displayName } likeCount commentCount viewerHasLiked comments(first: 3) { edges { node { id body author { id username } } } } } } pageInfo { hasNextPage endCursor } } }";

/// users → posts → comments → authors → their posts, through a fragment and an alias.
pub const FEDERATION_STRESS: &str = "query FederationStress($id: ID!) { user(id: $id) { ...Profile posts(first: 5) { edges { node { id body likeCount comments(first: 3) { edges { node { body author { ...Profile recent: posts(first: 2) { edges { node { id likeCount } } } } } } } } } } } } fragment Profile on User { id username displayName followerCount }";

pub const LIKE_POST: &str =
    "mutation LikePost($postId: ID!) { likePost(postId: $postId) { id likeCount viewerHasLiked } }";

pub const ADD_COMMENT: &str = "mutation AddComment($postId: ID!, $body: String!) { addComment(postId: $postId, body: $body) { id body createdAt author { id username } } }";

pub const CREATE_POST: &str = "mutation CreatePost($body: String!) { createPost(input: { body: $body }) { id body createdAt author { id username } } }";

pub const LOGIN: &str = "mutation Login($login: String!, $password: String!) { login(input: { login: $login, password: $password }) { accessToken refreshToken expiresIn user { id username } } }";

pub const REFRESH: &str = "mutation Refresh($refreshToken: String!) { refreshSession(refreshToken: $refreshToken) { accessToken refreshToken expiresIn } }";

/// `gateway-bound`: the public gateway benchmarks' deep query through the four in-memory
/// subgraphs of `gantry-bench subgraphs` (not Gantry's schema): users → reviews → product →
/// reviews → author → reviews → product, and topProducts → reviews → author → reviews →
/// product, with fragments. About 1 KB as sent; the answer is about 90 KB.
pub const DEEP_QUERY: &str = r#"query DeepQuery {
  users {
    ...UserFields
    reviews {
      ...ReviewFields
      product {
        ...ProductFields
        reviews {
          ...ReviewFields
          author {
            ...UserFields
            reviews {
              ...ReviewFields
              product {
                ...ProductFields
              }
            }
          }
        }
      }
    }
  }
  topProducts {
    ...ProductFields
    reviews {
      ...ReviewFields
      author {
        ...UserFields
        reviews {
          ...ReviewFields
          product {
            ...ProductFields
          }
        }
      }
    }
  }
}

fragment UserFields on User {
  id
  username
  name
}

fragment ReviewFields on Review {
  id
  body
}

fragment ProductFields on Product {
  inStock
  name
  price
  shippingEstimate
  upc
  weight
}
"#;

/// Every operation above on Gantry's own schema, for checks.
pub const ALL: &[&str] = &[
    LATEST_POSTS,
    POST_PAGE,
    USER_PAGE,
    POST_PAGE_SIGNED_IN,
    USER_PAGE_SIGNED_IN,
    FEED,
    FEDERATION_STRESS,
    LIKE_POST,
    ADD_COMMENT,
    CREATE_POST,
    LOGIN,
    REFRESH,
];

#[cfg(test)]
mod tests {
    use graphql_tools::validation::rules::default_rules_validation_plan;
    use graphql_tools::validation::validate::validate;

    #[test]
    fn every_operation_is_valid_against_the_client_facing_schema() {
        // The file leaves the built-in scalars implicit; the validator needs them declared.
        let sdl = format!(
            "{}\nscalar ID\nscalar String\nscalar Int\nscalar Boolean\nscalar Float\n",
            include_str!("../../../schema.graphql")
        );
        let schema = graphql_tools::parser::parse_schema::<String>(&sdl)
            .unwrap()
            .into_static();
        let plan = default_rules_validation_plan();
        for operation in super::ALL {
            let document = graphql_tools::parser::parse_query::<String>(operation)
                .unwrap_or_else(|e| panic!("{operation}: {e}"));
            let errors = validate(&schema, &document, &plan);
            assert!(errors.is_empty(), "{operation}: {errors:?}");
        }
    }
}
