//! Authorization at the gateway, from the supergraph's `@authenticated`,
//! `@requiresScopes(scopes:)` and `@policy(policies:)`, on fields and on types (a type's
//! requirement applies to its fields and to every field returning it).
//!
//! Per request, after the operation is prepared and the caller authenticated, the fields
//! the caller may not see are removed from the operation before it is planned again; each
//! is answered as `null` with an `UNAUTHORIZED_FIELD_OR_TYPE` error at its path, and the
//! rest of the data is returned (or, with `reject_unauthorized`, the whole operation is
//! refused). The subgraphs keep their own checks: this is a first line, not the only one.
//!
//! `@requiresScopes` and `@policy` take a list of lists: any inner list whose every entry
//! holds satisfies it. Scopes come from the identity provider's scopes claim; a policy is a
//! rule of this file's settings (claims equal to values), and a policy no rule defines is
//! refused.
//!
//! # Layout
//!
//! - this module: the settings, the requirements read from the supergraph, and whether an
//!   identity meets them.
//! - [`operation`]: the requirements an operation meets on its way (collected once per
//!   prepared operation) and the filtered plans, cached per set of denied fields.

pub mod operation;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use graphql_tools::static_graphql::schema::{
    Definition, Directive, Document, Field, TypeDefinition, Value,
};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::caller::Identity;
use crate::schema::named_type;

/// The error code of a field removed because the caller may not see it.
pub const UNAUTHORIZED_FIELD_OR_TYPE: &str = "UNAUTHORIZED_FIELD_OR_TYPE";

/// What the `authorization` section of the identity settings holds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationSettings {
    /// Refuse the whole operation (errors only, no data) when any field in it is
    /// unauthorized, instead of answering those fields as `null`. Default: false.
    #[serde(default)]
    pub reject_unauthorized: bool,
    /// `@policy` names → the conditions that must all hold. Default: none (every policy
    /// is refused).
    #[serde(default)]
    pub policies: BTreeMap<String, Vec<ClaimCondition>>,
}

/// A claim equal to a value; a claim that is a list holds when it contains the value.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimCondition {
    pub claim: String,
    pub equals: Json,
}

impl ClaimCondition {
    fn holds(&self, claims: &serde_json::Map<String, Json>) -> bool {
        match claims.get(&self.claim) {
            Some(Json::Array(items)) => items.contains(&self.equals),
            Some(value) => *value == self.equals,
            None => false,
        }
    }
}

impl AuthorizationSettings {
    fn policy_holds(&self, name: &str, identity: &Identity) -> bool {
        identity.is_authenticated()
            && self.policies.get(name).is_some_and(|conditions| {
                conditions
                    .iter()
                    .all(|condition| condition.holds(&identity.claims))
            })
    }
}

/// What one directive site asks for. `scopes` and `policies` are alternatives of sets
/// (empty: no such requirement).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Requirement {
    pub(crate) authenticated: bool,
    pub(crate) scopes: Vec<Vec<String>>,
    pub(crate) policies: Vec<Vec<String>>,
}

impl Requirement {
    fn from_directives(directives: &[Directive]) -> Option<Self> {
        let mut requirement = Self::default();
        for directive in directives {
            match directive.name.as_str() {
                "authenticated" => requirement.authenticated = true,
                "requiresScopes" => requirement.scopes = sets(directive, "scopes"),
                "policy" => requirement.policies = sets(directive, "policies"),
                _ => {}
            }
        }
        (requirement != Self::default()).then_some(requirement)
    }

    /// Whether `identity` meets it.
    pub(crate) fn allows(&self, identity: &Identity, settings: &AuthorizationSettings) -> bool {
        if (self.authenticated || !self.scopes.is_empty() || !self.policies.is_empty())
            && !identity.is_authenticated()
        {
            return false;
        }
        let scopes = self.scopes.is_empty()
            || self
                .scopes
                .iter()
                .any(|set| set.iter().all(|scope| identity.scopes.contains(scope)));
        let policies = self.policies.is_empty()
            || self.policies.iter().any(|set| {
                set.iter()
                    .all(|policy| settings.policy_holds(policy, identity))
            });
        scopes && policies
    }
}

/// `[[String]]` of a directive argument; a single list or string is read as one set.
fn sets(directive: &Directive, argument: &str) -> Vec<Vec<String>> {
    let strings = |value: &Value| -> Vec<String> {
        match value {
            Value::List(items) => items
                .iter()
                .filter_map(|item| match item {
                    Value::String(text) => Some(text.clone()),
                    _ => None,
                })
                .collect(),
            Value::String(text) => vec![text.clone()],
            _ => Vec::new(),
        }
    };
    match directive
        .arguments
        .iter()
        .find(|(name, _)| name == argument)
        .map(|(_, value)| value)
    {
        Some(Value::List(items)) if items.iter().all(|item| matches!(item, Value::List(_))) => {
            items.iter().map(strings).collect()
        }
        Some(value) => vec![strings(value)],
        None => Vec::new(),
    }
}

/// Every field's requirements in one supergraph: its own, its type's and its return
/// type's, all of which must hold.
#[derive(Debug, Default)]
pub(crate) struct AuthorizationRules {
    fields: HashMap<String, HashMap<String, Arc<[Requirement]>>>,
}

impl AuthorizationRules {
    /// Reads the directives of a supergraph (or any schema) document.
    pub(crate) fn from_schema(document: &Document) -> Self {
        let mut by_type = HashMap::new();
        for definition in &document.definitions {
            if let Definition::TypeDefinition(definition) = definition
                && let Some(requirement) = Requirement::from_directives(type_directives(definition))
            {
                by_type.insert(crate::schema::type_name(definition).to_owned(), requirement);
            }
        }
        let mut rules = Self::default();
        for definition in &document.definitions {
            let (name, fields): (&str, &[Field]) = match definition {
                Definition::TypeDefinition(TypeDefinition::Object(object)) => {
                    (&object.name, &object.fields)
                }
                Definition::TypeDefinition(TypeDefinition::Interface(interface)) => {
                    (&interface.name, &interface.fields)
                }
                _ => continue,
            };
            for field in fields {
                let all: Vec<Requirement> = [
                    Requirement::from_directives(&field.directives),
                    by_type.get(name).cloned(),
                    by_type.get(named_type(&field.field_type)).cloned(),
                ]
                .into_iter()
                .flatten()
                .collect();
                if !all.is_empty() {
                    rules
                        .fields
                        .entry(name.to_owned())
                        .or_default()
                        .insert(field.name.clone(), all.into());
                }
            }
        }
        // A field selected on an interface may resolve to any implementation: it needs
        // what any implementation's field needs.
        for definition in &document.definitions {
            let Definition::TypeDefinition(TypeDefinition::Object(object)) = definition else {
                continue;
            };
            for interface in &object.implements_interfaces {
                for field in &object.fields {
                    let Some(own) = rules.field(&object.name, &field.name).cloned() else {
                        continue;
                    };
                    let entry = rules
                        .fields
                        .entry(interface.clone())
                        .or_default()
                        .entry(field.name.clone())
                        .or_insert_with(|| Arc::from(Vec::new()));
                    let mut merged = entry.to_vec();
                    merged.extend(
                        own.iter()
                            .filter(|r| !merged.contains(r))
                            .cloned()
                            .collect::<Vec<_>>(),
                    );
                    *entry = merged.into();
                }
            }
        }
        rules
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// What selecting `field` on `type_name` needs, when anything.
    pub(crate) fn field(&self, type_name: &str, field: &str) -> Option<&Arc<[Requirement]>> {
        self.fields.get(type_name)?.get(field)
    }
}

fn type_directives(definition: &TypeDefinition) -> &[Directive] {
    match definition {
        TypeDefinition::Object(t) => &t.directives,
        TypeDefinition::Interface(t) => &t.directives,
        TypeDefinition::Union(t) => &t.directives,
        TypeDefinition::Scalar(t) => &t.directives,
        TypeDefinition::Enum(t) => &t.directives,
        TypeDefinition::InputObject(t) => &t.directives,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeSet;

    fn rules(sdl: &str) -> AuthorizationRules {
        let document = graphql_tools::parser::parse_schema::<String>(sdl)
            .unwrap()
            .into_static();
        AuthorizationRules::from_schema(&document)
    }

    fn identity(scopes: &[&str], claims: Json) -> Identity {
        let Json::Object(claims) = claims else {
            panic!("claims are an object")
        };
        Identity {
            claims: Arc::new(claims),
            scopes: Arc::new(
                scopes
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect::<BTreeSet<_>>(),
            ),
            key: Some(uuid::Uuid::nil()),
            ..Identity::default()
        }
    }

    fn allowed(rules: &AuthorizationRules, coordinate: (&str, &str), who: &Identity) -> bool {
        let settings: AuthorizationSettings = serde_norway::from_str(
            "policies: { admin: [{ claim: role, equals: admin }], verified: [{ claim: email_verified, equals: true }] }",
        )
        .unwrap();
        rules
            .field(coordinate.0, coordinate.1)
            .is_none_or(|all| all.iter().all(|r| r.allows(who, &settings)))
    }

    const SDL: &str = r#"
        type Query {
          public: String
          me: User @authenticated
          posts: [Post] @requiresScopes(scopes: [["posts:read"], ["admin"]])
          audit: String @policy(policies: [["admin", "verified"]])
          secret: String @policy(policies: [["unknown"]])
        }
        type User { id: ID name: String }
        type Post @requiresScopes(scopes: [["posts:read", "profile"]]) { id: ID }
    "#;

    #[test]
    fn an_anonymous_caller_meets_no_requirement() {
        let rules = rules(SDL);
        let anonymous = Identity::default();
        assert!(allowed(&rules, ("Query", "public"), &anonymous));
        for field in ["me", "posts", "audit", "secret"] {
            assert!(!allowed(&rules, ("Query", field), &anonymous), "{field}");
        }
    }

    #[test]
    fn scopes_need_one_whole_set_of_the_field_and_of_its_type() {
        let rules = rules(SDL);
        assert!(!allowed(
            &rules,
            ("Query", "posts"),
            &identity(&["posts:read"], json!({}))
        ));
        assert!(allowed(
            &rules,
            ("Query", "posts"),
            &identity(&["posts:read", "profile"], json!({}))
        ));
        assert!(!allowed(
            &rules,
            ("Query", "posts"),
            &identity(&["admin"], json!({}))
        ));
        assert!(allowed(
            &rules,
            ("Post", "id"),
            &identity(&["posts:read", "profile"], json!({}))
        ));
        assert!(allowed(&rules, ("Query", "me"), &identity(&[], json!({}))));
    }

    #[test]
    fn a_policy_holds_when_every_condition_does_and_an_unknown_one_never() {
        let rules = rules(SDL);
        let admin = identity(
            &[],
            json!({ "role": ["staff", "admin"], "email_verified": true }),
        );
        assert!(allowed(&rules, ("Query", "audit"), &admin));
        let unverified = identity(&[], json!({ "role": "admin", "email_verified": false }));
        assert!(!allowed(&rules, ("Query", "audit"), &unverified));
        assert!(!allowed(&rules, ("Query", "secret"), &admin));
    }
}
