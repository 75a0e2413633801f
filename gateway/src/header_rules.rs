//! Which client headers reach which subgraph: rules for every subgraph and per subgraph
//! that propagate (by name or pattern, optionally renamed or with a default), insert a
//! static value or a claim of the verified token, or remove headers, read from a YAML or
//! JSON file.
//!
//! The service keeps, of the client's headers, those some propagate rule could send
//! ([`HeaderRules::client_headers`]); [`HeaderRulesTransport`], the wrapper nearest the
//! subgraph transports, then builds each subgraph's set from them
//! ([`HeaderRules::for_subgraph`]). Client name and version
//! (`apollographql-client-name`/`-version`) are propagated to every subgraph unless a rule
//! removes them. The headers the gateway sets itself (the token, the client address, the
//! request id and trace context) are always sent unless a rule removes them.
//!
//! Headers of subgraph *responses* reach the client only by a `responses` rule (none by
//! default), e.g. `Set-Cookie` from `users`, whose `login` sets the session cookie. Headers
//! about the HTTP exchange itself (`Content-Type`, `Content-Length`, `Cache-Control`, …)
//! are the gateway's own and are never copied. A response that identical concurrent
//! requests shared, or that came from a cache, carries none: they belong to the request
//! that made the fetch.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use regex::Regex;
use serde::Deserialize;

use crate::transport::{SubgraphRequest, SubgraphResponse, SubgraphTransport, TransportError};

/// Why a header rules file was refused at start.
#[derive(Debug, thiserror::Error)]
pub enum HeaderRulesError {
    #[error("cannot read the header rules {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the header rules are not valid YAML or JSON of the expected shape: {0}")]
    Syntax(#[from] serde_norway::Error),
    #[error("{0:?} is not a valid header name")]
    Name(String),
    #[error("{0:?} is not a valid header value")]
    Value(String),
    #[error("{pattern:?} is not a valid regular expression: {source}")]
    Pattern {
        pattern: String,
        source: Box<regex::Error>,
    },
    #[error(
        "a rule needs exactly one of `named` and `matching` (`rename` and `default` only with `named`)"
    )]
    Selector,
    #[error("a rule is exactly one of `propagate`, `insert` and `remove`")]
    Kind,
    #[error("{0:?} describes the gateway's own HTTP response and cannot be propagated")]
    GatewayOwned(String),
    #[error("an `insert` rule needs exactly one of `value` and `from_claim`")]
    InsertSource,
}

/// Headers forwarded to every subgraph unless a rule removes them, so subgraph logs and
/// metrics can tell client apps and their releases apart.
pub const CLIENT_IDENTITY_HEADERS: [&str; 2] =
    ["apollographql-client-name", "apollographql-client-version"];

/// Headers the gateway itself sets on subgraph requests; rules never drop them by omission.
const GATEWAY_HEADERS: [&str; 5] = [
    "authorization",
    "x-forwarded-for",
    "x-request-id",
    "traceparent",
    "tracestate",
];

/// Response headers that describe the HTTP exchange between gateway and subgraph, not
/// the answer: the gateway sets its own.
const EXCHANGE_HEADERS: [&str; 10] = [
    "cache-control",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "keep-alive",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "vary",
];

/// The file: `all` applies to every subgraph, then `subgraphs.NAME` to that one; likewise
/// `responses` for the headers of their answers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    all: Vec<RuleSpec>,
    #[serde(default)]
    subgraphs: HashMap<String, Vec<RuleSpec>>,
    #[serde(default)]
    responses: ResponseRulesFile,
}

/// Which headers of subgraph answers reach the client.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseRulesFile {
    #[serde(default)]
    all: Vec<ResponseRuleSpec>,
    #[serde(default)]
    subgraphs: HashMap<String, Vec<ResponseRuleSpec>>,
}

/// A response rule: `propagate` only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseRuleSpec {
    propagate: ResponsePropagateSpec,
}

/// Copy matching response headers to the client, optionally renamed (only with `named`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponsePropagateSpec {
    named: Option<String>,
    matching: Option<String>,
    rename: Option<String>,
}

/// A response header rule, compiled.
#[derive(Debug, Clone)]
struct ResponseRule {
    from: Matcher,
    rename: Option<HeaderName>,
}

impl TryFrom<ResponseRuleSpec> for ResponseRule {
    type Error = HeaderRulesError;

    fn try_from(spec: ResponseRuleSpec) -> Result<Self, Self::Error> {
        let ResponsePropagateSpec {
            named,
            matching,
            rename,
        } = spec.propagate;
        if rename.is_some() && named.is_none() {
            return Err(HeaderRulesError::Selector);
        }
        let from = Matcher::parse(named, matching)?;
        let rename = rename.as_deref().map(header_name).transpose()?;
        for name in [&from]
            .into_iter()
            .filter_map(|matcher| match matcher {
                Matcher::Name(name) => Some(name),
                Matcher::Pattern(_) => None,
            })
            .chain(rename.as_ref())
        {
            if EXCHANGE_HEADERS.contains(&name.as_str()) {
                return Err(HeaderRulesError::GatewayOwned(name.to_string()));
            }
        }
        Ok(Self { from, rename })
    }
}

fn response_rules(specs: Vec<ResponseRuleSpec>) -> Result<Vec<ResponseRule>, HeaderRulesError> {
    specs.into_iter().map(ResponseRule::try_from).collect()
}

/// One rule: exactly one of `propagate`, `insert` and `remove` (a one-key map, so the
/// file reads the same in YAML and JSON).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    propagate: Option<PropagateSpec>,
    insert: Option<InsertSpec>,
    remove: Option<SelectorSpec>,
}

/// Copy matching client headers, optionally under another name (`rename`, only with
/// `named`) or with a value used when the client sent none (`default`, only with `named`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PropagateSpec {
    named: Option<String>,
    matching: Option<String>,
    rename: Option<String>,
    default: Option<String>,
}

/// Set a header to a static value, or to a claim of the verified token (`from_claim`; for
/// an anonymous caller or a token without the claim the header is removed, so a client
/// cannot stand in for it), replacing what an earlier rule put there.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InsertSpec {
    name: String,
    value: Option<String>,
    from_claim: Option<String>,
}

/// Where the service puts a claim's value for the rules that insert it: the prefix and
/// the claim's index among [`HeaderRules::claims`]. Never taken from the client, never
/// sent to a subgraph under this name.
const CLAIM_CARRIER: &str = "x-gantry-internal-claim-";

/// Drop matching headers, whoever set them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectorSpec {
    named: Option<String>,
    matching: Option<String>,
}

/// A header name, or a regular expression matched against lowercase header names
/// (unanchored: write `^…$` for whole names).
#[derive(Debug, Clone)]
enum Matcher {
    Name(HeaderName),
    Pattern(Regex),
}

impl Matcher {
    fn parse(named: Option<String>, matching: Option<String>) -> Result<Self, HeaderRulesError> {
        match (named, matching) {
            (Some(name), None) => Ok(Self::Name(header_name(&name)?)),
            (None, Some(pattern)) => Regex::new(&pattern).map(Self::Pattern).map_err(|source| {
                HeaderRulesError::Pattern {
                    pattern,
                    source: Box::new(source),
                }
            }),
            _ => Err(HeaderRulesError::Selector),
        }
    }

    fn matches(&self, name: &HeaderName) -> bool {
        match self {
            Self::Name(own) => own == name,
            Self::Pattern(pattern) => pattern.is_match(name.as_str()),
        }
    }
}

#[derive(Debug, Clone)]
enum Rule {
    Propagate {
        from: Matcher,
        rename: Option<HeaderName>,
        default: Option<HeaderValue>,
    },
    Insert {
        name: HeaderName,
        value: HeaderValue,
    },
    InsertClaim {
        name: HeaderName,
        /// Where [`HeaderRules::add_claims`] put the claim's value.
        carrier: HeaderName,
    },
    Remove(Matcher),
}

fn header_name(text: &str) -> Result<HeaderName, HeaderRulesError> {
    HeaderName::from_bytes(text.trim().as_bytes())
        .map_err(|_| HeaderRulesError::Name(text.to_owned()))
}

fn header_value(text: &str) -> Result<HeaderValue, HeaderRulesError> {
    HeaderValue::from_str(text).map_err(|_| HeaderRulesError::Value(text.to_owned()))
}

impl TryFrom<RuleSpec> for Rule {
    type Error = HeaderRulesError;

    fn try_from(spec: RuleSpec) -> Result<Self, Self::Error> {
        Ok(match (spec.propagate, spec.insert, spec.remove) {
            (Some(propagate), None, None) => {
                if (propagate.rename.is_some() || propagate.default.is_some())
                    && propagate.named.is_none()
                {
                    return Err(HeaderRulesError::Selector);
                }
                Self::Propagate {
                    from: Matcher::parse(propagate.named, propagate.matching)?,
                    rename: propagate.rename.as_deref().map(header_name).transpose()?,
                    default: propagate.default.as_deref().map(header_value).transpose()?,
                }
            }
            (None, Some(insert), None) => match (insert.value, insert.from_claim) {
                (Some(value), None) => Self::Insert {
                    name: header_name(&insert.name)?,
                    value: header_value(&value)?,
                },
                // The carrier is numbered when the rules are read.
                (None, Some(claim)) => Self::InsertClaim {
                    name: header_name(&insert.name)?,
                    carrier: HeaderName::from_bytes(claim.as_bytes())
                        .unwrap_or(HeaderName::from_static("x")),
                },
                _ => return Err(HeaderRulesError::InsertSource),
            },
            (None, None, Some(remove)) => {
                Self::Remove(Matcher::parse(remove.named, remove.matching)?)
            }
            _ => return Err(HeaderRulesError::Kind),
        })
    }
}

/// The rules for every subgraph and per subgraph, in the order they apply.
#[derive(Debug, Clone)]
pub struct HeaderRules {
    all: Vec<Rule>,
    subgraphs: HashMap<String, Vec<Rule>>,
    responses_all: Vec<ResponseRule>,
    responses: HashMap<String, Vec<ResponseRule>>,
    /// The claims `insert: { from_claim }` rules read, in the order of their carriers.
    claims: Vec<String>,
}

impl Default for HeaderRules {
    /// Client name and version to every subgraph, nothing else from the client.
    fn default() -> Self {
        let all = CLIENT_IDENTITY_HEADERS
            .iter()
            .map(|name| Rule::Propagate {
                from: Matcher::Name(HeaderName::from_static(name)),
                rename: None,
                default: None,
            })
            .collect();
        Self {
            all,
            subgraphs: HashMap::new(),
            responses_all: Vec::new(),
            responses: HashMap::new(),
            claims: Vec::new(),
        }
    }
}

impl HeaderRules {
    /// Reads a rules file (YAML, or JSON, which YAML includes); its rules apply after the
    /// defaults.
    pub fn load(path: &Path) -> Result<Self, HeaderRulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| HeaderRulesError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, HeaderRulesError> {
        let file: RulesFile = serde_norway::from_str(text)?;
        let mut rules = Self::default();
        for spec in file.all {
            let rule = rules.number_claim(spec)?;
            rules.all.push(rule);
        }
        for (subgraph, specs) in file.subgraphs {
            let compiled = specs
                .into_iter()
                .map(|spec| rules.number_claim(spec))
                .collect::<Result<Vec<_>, _>>()?;
            rules.subgraphs.insert(subgraph, compiled);
        }
        rules.responses_all = response_rules(file.responses.all)?;
        for (subgraph, specs) in file.responses.subgraphs {
            rules.responses.insert(subgraph, response_rules(specs)?);
        }
        Ok(rules)
    }

    /// Of the headers `subgraph` answered with, those a response rule passes on to the
    /// client (renamed where it says so); none without rules.
    pub fn for_client(&self, subgraph: &str, answered: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::new();
        let own = self.responses.get(subgraph).into_iter().flatten();
        for rule in self.responses_all.iter().chain(own) {
            for (name, value) in answered {
                if rule.from.matches(name) && !EXCHANGE_HEADERS.contains(&name.as_str()) {
                    out.append(
                        rule.rename.clone().unwrap_or_else(|| name.clone()),
                        value.clone(),
                    );
                }
            }
        }
        out
    }

    /// Reads a rule; a claim it inserts gets its carrier header.
    fn number_claim(&mut self, spec: RuleSpec) -> Result<Rule, HeaderRulesError> {
        let claim = spec.insert.as_ref().and_then(|i| i.from_claim.clone());
        let rule = Rule::try_from(spec)?;
        let (Rule::InsertClaim { name, .. }, Some(claim)) = (&rule, claim) else {
            return Ok(rule);
        };
        let index = match self.claims.iter().position(|known| *known == claim) {
            Some(index) => index,
            None => {
                self.claims.push(claim);
                self.claims.len() - 1
            }
        };
        Ok(Rule::InsertClaim {
            name: name.clone(),
            carrier: header_name(&format!("{CLAIM_CARRIER}{index}"))?,
        })
    }

    /// Puts the values of the claims some rule inserts where those rules read them, after
    /// dropping any header of that name the client sent. A string claim is sent as it is,
    /// a list of strings comma-separated, anything else as JSON.
    pub fn add_claims(
        &self,
        forwarded: &mut HeaderMap,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) {
        let carried: Vec<HeaderName> = forwarded
            .keys()
            .filter(|name| name.as_str().starts_with(CLAIM_CARRIER))
            .cloned()
            .collect();
        for name in carried {
            forwarded.remove(name);
        }
        for (index, claim) in self.claims.iter().enumerate() {
            let text = match claims.get(claim) {
                None | Some(serde_json::Value::Null) => continue,
                Some(serde_json::Value::String(text)) => text.clone(),
                Some(serde_json::Value::Array(items))
                    if items.iter().all(serde_json::Value::is_string) =>
                {
                    let items: Vec<&str> =
                        items.iter().filter_map(serde_json::Value::as_str).collect();
                    items.join(",")
                }
                Some(other) => other.to_string(),
            };
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(format!("{CLAIM_CARRIER}{index}").as_bytes()),
                HeaderValue::from_str(&text),
            ) {
                forwarded.insert(name, value);
            }
        }
    }

    fn propagated_by_any(&self, name: &HeaderName) -> bool {
        self.all
            .iter()
            .chain(self.subgraphs.values().flatten())
            .any(|rule| matches!(rule, Rule::Propagate { from, .. } if from.matches(name)))
    }

    /// The client's headers that some propagate rule may send to some subgraph: what the
    /// request path carries for [`Self::for_subgraph`] to choose from.
    pub fn client_headers(&self, client: &HeaderMap) -> HeaderMap {
        let mut kept = HeaderMap::new();
        for (name, value) in client {
            if self.propagated_by_any(name) {
                kept.append(name.clone(), value.clone());
            }
        }
        kept
    }

    /// The headers `subgraph` gets: the gateway's own, then each rule for all and for this
    /// subgraph in order, applied to `forwarded` (the gateway's own headers and
    /// [`Self::client_headers`]).
    pub fn for_subgraph(&self, subgraph: &str, forwarded: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::new();
        for (name, value) in forwarded {
            if GATEWAY_HEADERS.contains(&name.as_str()) {
                out.append(name.clone(), value.clone());
            }
        }
        let own = self.subgraphs.get(subgraph).into_iter().flatten();
        for rule in self.all.iter().chain(own) {
            match rule {
                Rule::Propagate {
                    from,
                    rename,
                    default,
                } => {
                    let mut found = false;
                    for (name, value) in forwarded {
                        if from.matches(name) && !name.as_str().starts_with(CLAIM_CARRIER) {
                            found = true;
                            out.append(
                                rename.clone().unwrap_or_else(|| name.clone()),
                                value.clone(),
                            );
                        }
                    }
                    if let (false, Some(default), Matcher::Name(name)) = (found, default, from) {
                        out.insert(
                            rename.clone().unwrap_or_else(|| name.clone()),
                            default.clone(),
                        );
                    }
                }
                Rule::Insert { name, value } => {
                    out.insert(name.clone(), value.clone());
                }
                Rule::InsertClaim { name, carrier } => match forwarded.get(carrier) {
                    Some(value) => {
                        out.insert(name.clone(), value.clone());
                    }
                    None => {
                        out.remove(name);
                    }
                },
                Rule::Remove(matcher) => {
                    let names: Vec<HeaderName> = out
                        .keys()
                        .filter(|name| matcher.matches(name))
                        .cloned()
                        .collect();
                    for name in names {
                        out.remove(name);
                    }
                }
            }
        }
        out
    }
}

/// Gives each subgraph request the headers its rules make, and keeps of each answer's
/// headers only those the response rules pass on to the client.
pub struct HeaderRulesTransport {
    inner: Arc<dyn SubgraphTransport>,
    rules: Arc<HeaderRules>,
}

impl std::fmt::Debug for HeaderRulesTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderRulesTransport")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl HeaderRulesTransport {
    pub fn new(inner: Arc<dyn SubgraphTransport>, rules: Arc<HeaderRules>) -> Self {
        Self { inner, rules }
    }
}

#[async_trait]
impl SubgraphTransport for HeaderRulesTransport {
    async fn execute(
        &self,
        mut request: SubgraphRequest,
    ) -> Result<SubgraphResponse, TransportError> {
        request.headers = self
            .rules
            .for_subgraph(&request.subgraph_name, &request.headers);
        let subgraph = request.subgraph_name.clone();
        let mut response = self.inner.execute(request).await?;
        response.headers = self.rules.for_client(&subgraph, &response.headers);
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn sent(rules: &HeaderRules, subgraph: &str, client: &HeaderMap) -> Vec<(String, String)> {
        let mut forwarded = rules.client_headers(client);
        if let Some(token) = client.get("authorization") {
            forwarded.insert("authorization", token.clone());
        }
        let mut pairs: Vec<_> = rules
            .for_subgraph(subgraph, &forwarded)
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
            .collect();
        pairs.sort();
        pairs
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn by_default_only_the_client_identity_and_the_gateways_own_headers_go_out() {
        let client = headers(&[
            ("apollographql-client-name", "web"),
            ("apollographql-client-version", "1.2"),
            ("authorization", "Bearer t"),
            ("cookie", "session=1"),
            ("x-tenant", "acme"),
        ]);
        assert_eq!(
            sent(&HeaderRules::default(), "users", &client),
            pairs(&[
                ("apollographql-client-name", "web"),
                ("apollographql-client-version", "1.2"),
                ("authorization", "Bearer t"),
            ])
        );
    }

    #[test]
    fn rules_for_one_subgraph_apply_to_that_subgraph_only() {
        let rules = HeaderRules::parse(
            "
all:
  - propagate: { matching: '^x-feature-' }
subgraphs:
  posts:
    - propagate: { named: x-tenant, rename: x-posts-tenant }
    - insert: { name: x-caller, value: gantry }
    - remove: { named: apollographql-client-version }
",
        )
        .unwrap();
        let client = headers(&[
            ("apollographql-client-name", "web"),
            ("apollographql-client-version", "1.2"),
            ("x-feature-dark", "on"),
            ("x-tenant", "acme"),
        ]);
        assert_eq!(
            sent(&rules, "posts", &client),
            pairs(&[
                ("apollographql-client-name", "web"),
                ("x-caller", "gantry"),
                ("x-feature-dark", "on"),
                ("x-posts-tenant", "acme"),
            ])
        );
        assert_eq!(
            sent(&rules, "users", &client),
            pairs(&[
                ("apollographql-client-name", "web"),
                ("apollographql-client-version", "1.2"),
                ("x-feature-dark", "on"),
            ])
        );
    }

    #[test]
    fn a_default_is_sent_when_the_client_sent_none() {
        let rules =
            HeaderRules::parse("all: [{ propagate: { named: x-tenant, default: public } }]")
                .unwrap();
        assert_eq!(
            sent(&rules, "users", &HeaderMap::new()),
            pairs(&[("x-tenant", "public")])
        );
    }

    #[test]
    fn a_remove_rule_can_drop_the_token() {
        let rules = HeaderRules::parse(
            r#"{"subgraphs": {"posts": [{"remove": {"named": "authorization"}}]}}"#,
        )
        .unwrap();
        let client = headers(&[("authorization", "Bearer t")]);
        assert_eq!(sent(&rules, "posts", &client), pairs(&[]));
        assert_eq!(
            sent(&rules, "users", &client),
            pairs(&[("authorization", "Bearer t")])
        );
    }

    #[test]
    fn a_claim_is_inserted_for_a_verified_caller_and_a_client_cannot_stand_in_for_it() {
        let rules = HeaderRules::parse(
            "
all:
  - propagate: { matching: '^x-' }
subgraphs:
  posts:
    - insert: { name: x-user-id, from_claim: sub }
    - insert: { name: x-roles, from_claim: 'https://example.com/roles' }
",
        )
        .unwrap();
        let client = headers(&[
            ("x-user-id", "spoofed"),
            ("x-gantry-internal-claim-0", "spoofed"),
        ]);
        let claims =
            serde_json::json!({ "sub": "auth0|42", "https://example.com/roles": ["a", "b"] });
        let mut forwarded = rules.client_headers(&client);
        rules.add_claims(&mut forwarded, claims.as_object().unwrap());
        let sent: Vec<_> = rules
            .for_subgraph("posts", &forwarded)
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert!(
            sent.contains(&("x-user-id".into(), "auth0|42".into())),
            "{sent:?}"
        );
        assert!(sent.contains(&("x-roles".into(), "a,b".into())), "{sent:?}");
        assert!(
            !sent.iter().any(|(n, _)| n.starts_with("x-gantry-internal")),
            "{sent:?}"
        );

        let mut anonymous = rules.client_headers(&client);
        rules.add_claims(&mut anonymous, &serde_json::Map::new());
        let sent = rules.for_subgraph("posts", &anonymous);
        assert_eq!(sent.get("x-user-id"), None, "{sent:?}");
    }

    #[test]
    fn malformed_rules_are_refused() {
        for text in [
            "all: [{ propagate: {} }]",
            "all: [{ propagate: { named: a, matching: b } }]",
            "all: [{ propagate: { matching: '^x-', rename: y } }]",
            "all: [{ propagate: { matching: '(' } }]",
            "all: [{ insert: { name: 'bad name', value: v } }]",
            "all: [{ copy: { named: a } }]",
            "all: [{ insert: { name: a, value: b }, remove: { named: a } }]",
            "all: [{ insert: { name: a, value: b, from_claim: sub } }]",
            "all: [{ insert: { name: a } }]",
            "all: [{}]",
            "everything: []",
        ] {
            assert!(HeaderRules::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn response_headers_reach_the_client_only_by_rule() {
        let rules = HeaderRules::parse(
            "
responses:
  all:
    - propagate: { matching: '^x-served-' }
  subgraphs:
    users:
      - propagate: { named: set-cookie }
      - propagate: { named: x-region, rename: x-users-region }
",
        )
        .unwrap();
        let answered = headers(&[
            ("set-cookie", "session=1; HttpOnly"),
            ("set-cookie", "theme=dark"),
            ("x-region", "eu"),
            ("x-served-by", "users-7"),
            ("x-internal", "secret"),
            ("content-type", "application/json"),
        ]);
        let to_client = |subgraph: &str| {
            let mut pairs: Vec<_> = rules
                .for_client(subgraph, &answered)
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
                .collect();
            pairs.sort();
            pairs
        };
        assert_eq!(
            to_client("users"),
            pairs(&[
                ("set-cookie", "session=1; HttpOnly"),
                ("set-cookie", "theme=dark"),
                ("x-served-by", "users-7"),
                ("x-users-region", "eu"),
            ])
        );
        assert_eq!(to_client("posts"), pairs(&[("x-served-by", "users-7")]));
        assert_eq!(
            HeaderRules::default().for_client("users", &answered).len(),
            0
        );
    }

    #[test]
    fn headers_about_the_exchange_itself_cannot_be_propagated() {
        for text in [
            "responses: { all: [{ propagate: { named: content-length } }] }",
            "responses: { all: [{ propagate: { named: x-a, rename: content-type } }] }",
            "responses: { all: [{ propagate: { matching: '^x-', rename: x-b } }] }",
            "responses: { all: [{ insert: { name: x-a, value: b } }] }",
        ] {
            assert!(HeaderRules::parse(text).is_err(), "{text}");
        }
        let rules =
            HeaderRules::parse("responses: { all: [{ propagate: { matching: '^content-' } }] }")
                .unwrap();
        let answered = headers(&[("content-type", "application/json")]);
        assert!(rules.for_client("users", &answered).is_empty());
    }
}
