//! The clients a run imitates. Each scenario turns the pool into a stream of requests:
//! which operation, over which method, as whom.
//!
//! - `mobile-reads`: anonymous GET persisted queries (APQ hashes) for the home screen, post
//!   pages and profiles, ids drawn from a Zipf law over the popular posts and users.
//! - `signed-in-feed`: POST of the home feed with a random pooled user's token.
//! - `mixed`: signed-in reads (85 %), likes and comments (10 %), new posts (4 %), logins and
//!   refreshes (1 %).
//! - `federation-stress`: one deep query across both subgraphs, anonymous, over a few hundred
//!   users.
//! - `gateway-bound`: the deep query through the four in-memory subgraphs of
//!   `gantry-bench subgraphs`, anonymous, every request the same.
//! - `ceiling`: GET of the URL as given (for `gantry-bench ceiling`).

pub mod operations;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use rand::Rng;
use reqwest::{Method, Url};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::pool::{PoolFile, Session};
use crate::popularity::Zipf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioName {
    MobileReads,
    SignedInFeed,
    Mixed,
    FederationStress,
    GatewayBound,
    Ceiling,
}

impl ScenarioName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MobileReads => "mobile-reads",
            Self::SignedInFeed => "signed-in-feed",
            Self::Mixed => "mixed",
            Self::FederationStress => "federation-stress",
            Self::GatewayBound => "gateway-bound",
            Self::Ceiling => "ceiling",
        }
    }
}

/// What to do with a successful response besides measuring it.
#[derive(Debug, Clone)]
pub enum After {
    Nothing,
    /// Keep the token pair that `data.<field>` holds for this session.
    StoreTokens {
        session: Arc<Session>,
        field: &'static str,
    },
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct Request {
    /// The operation's name, for per-operation statistics.
    pub operation: &'static str,
    pub method: Method,
    pub url: Url,
    pub body: Option<String>,
    pub authorization: Option<String>,
    pub after: After,
}

/// Hot content: popular posts and users, picked by a Zipf law.
#[derive(Debug)]
struct HotSet {
    posts: Vec<String>,
    users: Vec<String>,
    post_rank: Zipf,
    user_rank: Zipf,
}

impl HotSet {
    fn new(pool: &PoolFile) -> anyhow::Result<Self> {
        if pool.popular_posts.is_empty() || pool.popular_users.is_empty() {
            bail!("the pool has no popular posts or users: run `gantry-bench prepare` first");
        }
        Ok(Self {
            post_rank: Zipf::new(pool.popular_posts.len(), 1.0),
            user_rank: Zipf::new(pool.popular_users.len(), 1.0),
            posts: pool.popular_posts.clone(),
            users: pool.popular_users.clone(),
        })
    }

    fn post(&self, rng: &mut impl Rng) -> &str {
        &self.posts[self.post_rank.sample(rng)]
    }

    fn user(&self, rng: &mut impl Rng) -> &str {
        &self.users[self.user_rank.sample(rng)]
    }
}

#[derive(Debug)]
enum Plan {
    /// Pre-built GET URLs: the latest posts, then one per hot post and per hot user.
    MobileReads {
        latest: Url,
        posts: Vec<Url>,
        users: Vec<Url>,
        post_rank: Zipf,
        user_rank: Zipf,
    },
    SignedInFeed {
        body: String,
        sessions: Vec<Arc<Session>>,
    },
    Mixed {
        hot: HotSet,
        sessions: Vec<Arc<Session>>,
        password: String,
        written: AtomicU64,
    },
    FederationStress {
        bodies: Vec<String>,
    },
    GatewayBound {
        body: String,
    },
    Ceiling,
}

/// A scenario ready to produce requests against one endpoint.
#[derive(Debug)]
pub struct Scenario {
    pub name: ScenarioName,
    url: Url,
    plan: Plan,
}

impl Scenario {
    pub fn new(name: ScenarioName, url: &str, pool: Option<&PoolFile>) -> anyhow::Result<Self> {
        let url = Url::parse(url).with_context(|| format!("--url {url}"))?;
        let need_pool = || pool.context("this scenario needs --pool (from `gantry-bench prepare`)");
        let sessions = |pool: &PoolFile| -> anyhow::Result<Vec<Arc<Session>>> {
            if pool.users.is_empty() {
                bail!("the pool has no signed-in users: run `gantry-bench prepare` first");
            }
            Ok(pool
                .users
                .iter()
                .map(|u| Arc::new(Session::new(u)))
                .collect())
        };
        let plan = match name {
            ScenarioName::MobileReads => {
                let hot = HotSet::new(need_pool()?)?;
                let by_id = |name: &str, query: &str, ids: &[String]| {
                    ids.iter()
                        .map(|id| apq_get_url(&url, name, query, &json!({ "id": id })))
                        .collect::<Vec<_>>()
                };
                Plan::MobileReads {
                    latest: apq_get_url(&url, "LatestPosts", operations::LATEST_POSTS, &json!({})),
                    posts: by_id("PostPage", operations::POST_PAGE, &hot.posts),
                    users: by_id("UserPage", operations::USER_PAGE, &hot.users),
                    post_rank: hot.post_rank,
                    user_rank: hot.user_rank,
                }
            }
            ScenarioName::SignedInFeed => Plan::SignedInFeed {
                body: json!({ "query": operations::FEED, "operationName": "SignedInFeed" })
                    .to_string(),
                sessions: sessions(need_pool()?)?,
            },
            ScenarioName::Mixed => {
                let pool = need_pool()?;
                Plan::Mixed {
                    hot: HotSet::new(pool)?,
                    sessions: sessions(pool)?,
                    password: pool.password.clone(),
                    written: AtomicU64::new(0),
                }
            }
            ScenarioName::FederationStress => {
                let pool = need_pool()?;
                if pool.stress_users.is_empty() {
                    bail!("the pool has no stress users: run `gantry-bench prepare` first");
                }
                let bodies = pool
                    .stress_users
                    .iter()
                    .map(|id| {
                        json!({
                            "query": operations::FEDERATION_STRESS,
                            "operationName": "FederationStress",
                            "variables": { "id": id },
                        })
                        .to_string()
                    })
                    .collect();
                Plan::FederationStress { bodies }
            }
            ScenarioName::GatewayBound => Plan::GatewayBound {
                body: deep_query_body(),
            },
            ScenarioName::Ceiling => Plan::Ceiling,
        };
        Ok(Self { name, url, plan })
    }

    /// The signed-in users, whose tokens `mixed` rotates (none for anonymous scenarios).
    pub fn sessions(&self) -> &[Arc<Session>] {
        match &self.plan {
            Plan::SignedInFeed { sessions, .. } | Plan::Mixed { sessions, .. } => sessions,
            _ => &[],
        }
    }

    /// Before the run: registers the persisted queries (APQ: hash and text once, by POST)
    /// and checks that a hash-only GET then runs, so the run measures hits, not misses.
    pub async fn setup(&self, client: &reqwest::Client) -> anyhow::Result<()> {
        let Plan::MobileReads {
            latest,
            posts,
            users,
            ..
        } = &self.plan
        else {
            return Ok(());
        };
        let sample_post = posts.first().context("no post pages")?;
        let sample_user = users.first().context("no user pages")?;
        for (name, query, get) in [
            ("LatestPosts", operations::LATEST_POSTS, latest),
            ("PostPage", operations::POST_PAGE, sample_post),
            ("UserPage", operations::USER_PAGE, sample_user),
        ] {
            let variables: Value = get
                .query_pairs()
                .find(|(k, _)| k == "variables")
                .and_then(|(_, v)| serde_json::from_str(&v).ok())
                .unwrap_or_else(|| json!({}));
            let register = json!({
                "query": query,
                "operationName": name,
                "variables": variables,
                "extensions": apq_extensions(query),
            });
            let body: Value = client
                .post(self.url.clone())
                .json(&register)
                .send()
                .await
                .with_context(|| format!("registering {name}"))?
                .json()
                .await
                .with_context(|| format!("registering {name}: reading the answer"))?;
            if body.get("errors").is_some() {
                bail!("registering {name} failed: {body}");
            }
            let body: Value = client
                .get(get.clone())
                .send()
                .await
                .with_context(|| format!("GET of the registered {name}"))?
                .json()
                .await?;
            if body.get("errors").is_some() {
                bail!("GET of the registered {name} failed: {body}");
            }
        }
        Ok(())
    }

    /// The next request, drawn at random.
    pub fn next(&self, rng: &mut impl Rng) -> Request {
        match &self.plan {
            Plan::MobileReads {
                latest,
                posts,
                users,
                post_rank,
                user_rank,
            } => {
                let roll = rng.gen_range(0..100);
                let (operation, url) = if roll < 30 {
                    ("LatestPosts", latest.clone())
                } else if roll < 70 {
                    ("PostPage", posts[post_rank.sample(rng)].clone())
                } else {
                    ("UserPage", users[user_rank.sample(rng)].clone())
                };
                Request {
                    operation,
                    method: Method::GET,
                    url,
                    body: None,
                    authorization: None,
                    after: After::Nothing,
                }
            }
            Plan::SignedInFeed { body, sessions } => {
                let session = &sessions[rng.gen_range(0..sessions.len())];
                self.post("SignedInFeed", body.clone(), Some(session.bearer()))
            }
            Plan::Mixed {
                hot,
                sessions,
                password,
                written,
            } => {
                let session = &sessions[rng.gen_range(0..sessions.len())];
                self.mixed(rng, hot, session, password, written)
            }
            Plan::FederationStress { bodies } => {
                let body = &bodies[rng.gen_range(0..bodies.len())];
                self.post("FederationStress", body.clone(), None)
            }
            Plan::GatewayBound { body } => self.post("DeepQuery", body.clone(), None),
            Plan::Ceiling => Request {
                operation: "Ceiling",
                method: Method::GET,
                url: self.url.clone(),
                body: None,
                authorization: None,
                after: After::Nothing,
            },
        }
    }

    fn post(&self, operation: &'static str, body: String, auth: Option<String>) -> Request {
        Request {
            operation,
            method: Method::POST,
            url: self.url.clone(),
            body: Some(body),
            authorization: auth,
            after: After::Nothing,
        }
    }

    /// 85 % reads, 10 % likes and comments, 4 % new posts, 1 % logins and refreshes.
    fn mixed(
        &self,
        rng: &mut impl Rng,
        hot: &HotSet,
        session: &Arc<Session>,
        password: &str,
        written: &AtomicU64,
    ) -> Request {
        let roll = rng.gen_range(0..1000);
        let auth = Some(session.bearer());
        let (operation, query, variables) = match roll {
            0..450 => ("SignedInFeed", operations::FEED, json!({})),
            450..650 => (
                "PostPageSignedIn",
                operations::POST_PAGE_SIGNED_IN,
                json!({ "id": hot.post(rng) }),
            ),
            650..850 => (
                "UserPageSignedIn",
                operations::USER_PAGE_SIGNED_IN,
                json!({ "id": hot.user(rng) }),
            ),
            850..910 => (
                "LikePost",
                operations::LIKE_POST,
                json!({ "postId": hot.post(rng) }),
            ),
            910..950 => {
                let n = written.fetch_add(1, Ordering::Relaxed);
                let body = format!("Benchmark comment {n}: agreed, well put.");
                (
                    "AddComment",
                    operations::ADD_COMMENT,
                    json!({ "postId": hot.post(rng), "body": body }),
                )
            }
            950..990 => {
                let n = written.fetch_add(1, Ordering::Relaxed);
                let body = format!("Benchmark post {n}: a short update from the load generator.");
                (
                    "CreatePost",
                    operations::CREATE_POST,
                    json!({ "body": body }),
                )
            }
            _ => {
                // Half refreshes, half logins; a refresh whose token is in flight logs in.
                let refresh = if roll < 995 {
                    session.take_refresh()
                } else {
                    None
                };
                let (operation, query, variables, field) = match refresh {
                    Some(token) => (
                        "Refresh",
                        operations::REFRESH,
                        json!({ "refreshToken": token }),
                        "refreshSession",
                    ),
                    None => (
                        "Login",
                        operations::LOGIN,
                        json!({ "login": session.username, "password": password }),
                        "login",
                    ),
                };
                let body =
                    json!({ "query": query, "operationName": operation, "variables": variables });
                return Request {
                    after: After::StoreTokens {
                        session: session.clone(),
                        field,
                    },
                    ..self.post(operation, body.to_string(), None)
                };
            }
        };
        let body = json!({ "query": query, "operationName": operation, "variables": variables });
        self.post(operation, body.to_string(), auth)
    }
}

/// The `gateway-bound` request body: the deep query, by name, without variables.
pub fn deep_query_body() -> String {
    json!({ "query": operations::DEEP_QUERY, "operationName": "DeepQuery" }).to_string()
}

/// `extensions.persistedQuery` for `query`: the lowercase hex SHA-256 of its exact text.
pub fn apq_extensions(query: &str) -> Value {
    let hash = hex::encode(Sha256::digest(query.as_bytes()));
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

/// `GET <url>?operationName=…&variables=…&extensions=…`, the hash without the text.
pub fn apq_get_url(base: &Url, name: &str, query: &str, variables: &Value) -> Url {
    let mut url = base.clone();
    url.query_pairs_mut()
        .append_pair("operationName", name)
        .append_pair("variables", &variables.to_string())
        .append_pair("extensions", &apq_extensions(query).to_string());
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PooledUser;
    use rand::SeedableRng;

    fn pool() -> PoolFile {
        PoolFile {
            password: "seeded orbit lantern".into(),
            users: vec![PooledUser {
                id: "u".into(),
                username: "s1_u0".into(),
                access_token: "tok".into(),
                refresh_token: "ref".into(),
            }],
            popular_posts: vec!["p1".into(), "p2".into()],
            popular_users: vec!["u1".into()],
            stress_users: vec!["u1".into()],
        }
    }

    #[test]
    fn an_apq_get_carries_the_sha256_of_the_exact_query_text() {
        let base = Url::parse("http://127.0.0.1:4000/graphql").unwrap();
        let url = apq_get_url(&base, "Q", "{ me { id } }", &json!({ "id": "x" }));
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs[0], ("operationName".into(), "Q".into()));
        assert_eq!(pairs[1], ("variables".into(), r#"{"id":"x"}"#.into()));
        let extensions: Value = serde_json::from_str(&pairs[2].1).unwrap();
        assert_eq!(
            extensions["persistedQuery"]["sha256Hash"],
            hex::encode(Sha256::digest(b"{ me { id } }"))
        );
        assert!(
            !url.as_str().contains('{'),
            "the JSON is URL-encoded: {url}"
        );
    }

    #[test]
    fn the_mixed_scenario_sends_roughly_its_advertised_shares() {
        let scenario = Scenario::new(
            ScenarioName::Mixed,
            "http://127.0.0.1:1/graphql",
            Some(&pool()),
        )
        .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut writes = 0;
        let mut sessions = 0;
        for _ in 0..10_000 {
            let request = scenario.next(&mut rng);
            match request.operation {
                "LikePost" | "AddComment" | "CreatePost" => writes += 1,
                "Login" | "Refresh" => {
                    sessions += 1;
                    assert!(request.authorization.is_none());
                }
                _ => assert_eq!(request.authorization.as_deref(), Some("Bearer tok")),
            }
        }
        assert!((1_200..1_600).contains(&writes), "{writes}");
        assert!((50..160).contains(&sessions), "{sessions}");
    }
}
