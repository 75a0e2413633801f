//! A fuzz harness over the request path, on stable Rust with proptest: request bodies
//! carrying documents over the product's API schema (random selection trees with
//! aliases, arguments, variables, directives, inline fragments and fragment spreads,
//! introspection), the same documents mutated (junk tokens, cut, duplicated or deleted
//! spans), pure junk, and random variables, driven through reading the body, preparing
//! (lexing, parsing, limits, validation, planning), variable coercion and shaping over
//! synthetic subgraph data. The property: nothing panics, and every refusal carries a code.
//!
//! A short run is part of the test suite; `GANTRY_FUZZ_CASES` sets how many inputs run
//! (see the README for the long run).

use std::sync::atomic::{AtomicU64, Ordering};

use graphql_tools::static_graphql::schema::{InputValue, Type, TypeDefinition};
use hive_router_query_planner::utils::cancellation::CancellationToken;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

use crate::graphql_http::request::{PostBody, parse_post_body};
use crate::limits::OperationLimits;
use crate::prepare::Preparer;
use crate::response::shape_response;
use crate::schema::{ApiSchema, named_type};
use crate::testing::subgraph;
use crate::variables::coerce_variables;
use crate::{Supergraph, SupergraphOptions};

/// Inputs in the suite's short run, unless `GANTRY_FUZZ_CASES` says otherwise.
const SHORT_RUN: u32 = 300;

/// The product's API schema as one subgraph: the supergraph the fuzzed documents are
/// prepared and planned against.
fn product_supergraph() -> Supergraph {
    let api = include_str!("../../../schema.graphql");
    let without_schema_block = match (api.find("schema {"), api.find("}\n")) {
        (Some(start), Some(end)) if start < end => format!("{}{}", &api[..start], &api[end + 2..]),
        _ => api.to_owned(),
    };
    let sdl = format!(
        "extend schema @link(url: \"https://specs.apollo.dev/federation/v2.3\", import: [\"@key\"])\n{without_schema_block}"
    );
    Supergraph::compose(&[subgraph("product", &sdl)], SupergraphOptions::default())
        .expect("the API schema composes as one subgraph")
}

/// Choices that steer the generators; past the end every choice is the shortest.
struct Choices<'a> {
    values: &'a [u32],
    at: usize,
}

impl Choices<'_> {
    fn next(&mut self, range: usize) -> usize {
        let value = self.values.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        if range == 0 {
            0
        } else {
            value as usize % range
        }
    }

    /// One time in `one_in`; never once the choices ran out.
    fn chance(&mut self, one_in: usize) -> bool {
        let more = self.at < self.values.len();
        self.next(one_in) == 0 && more
    }
}

/// Writes a document over `schema` as `choices` say; its variables' declared types go to
/// `variables`.
struct DocumentWriter<'s, 'c> {
    schema: &'s ApiSchema,
    choices: Choices<'c>,
    variables: Vec<(String, String)>,
    fragments: Vec<(String, String, String)>,
    aliases: usize,
}

const MAX_DEPTH: usize = 7;

impl DocumentWriter<'_, '_> {
    fn document(&mut self) -> String {
        let mutation = self.choices.chance(5);
        let root = if mutation { "Mutation" } else { "Query" };
        let mut body = String::new();
        if !mutation && self.choices.chance(6) {
            body.push_str(self.introspection());
        }
        self.selection(root, 0, &mut body);
        let mut text = String::new();
        let keyword = if mutation { "mutation" } else { "query" };
        let name = if self.choices.chance(2) { " Op" } else { "" };
        text.push_str(keyword);
        text.push_str(name);
        if !self.variables.is_empty() {
            let declared: Vec<String> = self
                .variables
                .iter()
                .map(|(name, ty)| format!("${name}: {ty}"))
                .collect();
            text.push_str(&format!("({})", declared.join(", ")));
        }
        text.push_str(" {");
        text.push_str(&body);
        text.push_str(" }");
        for (name, on, selection) in &self.fragments {
            text.push_str(&format!("\nfragment {name} on {on} {{{selection} }}"));
        }
        text
    }

    fn introspection(&mut self) -> &'static str {
        const QUERIES: [&str; 4] = [
            " __schema { queryType { name } types { name kind fields { name type { kind name ofType { kind name } } } } }",
            " __type(name: \"User\") { name fields(includeDeprecated: true) { name args { name defaultValue } } }",
            " __type(name: \"PostConnection\") { kind possibleTypes { name } interfaces { name } inputFields { name } }",
            " __typename",
        ];
        QUERIES[self.choices.next(QUERIES.len())]
    }

    fn fields_of(&self, type_name: &str) -> Vec<(String, Type, Vec<InputValue>)> {
        match self.schema.type_def(type_name) {
            Some(TypeDefinition::Object(object)) => object
                .fields
                .iter()
                .filter(|f| !f.name.starts_with("__"))
                .map(|f| (f.name.clone(), f.field_type.clone(), f.arguments.clone()))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn selection(&mut self, type_name: &str, depth: usize, out: &mut String) {
        let fields = self.fields_of(type_name);
        if fields.is_empty() {
            out.push_str(" __typename");
            return;
        }
        let count = 1 + self.choices.next(4);
        for _ in 0..count {
            match self.choices.next(12) {
                0 => out.push_str(" __typename"),
                1 if depth < MAX_DEPTH => {
                    out.push_str(&format!(" ... on {type_name} {{"));
                    self.selection(type_name, depth + 1, out);
                    out.push_str(" }");
                }
                2 if depth < MAX_DEPTH => {
                    let name = format!("F{}", self.fragments.len());
                    let mut selection = String::new();
                    self.fragments
                        .push((name.clone(), type_name.to_owned(), String::new()));
                    let index = self.fragments.len() - 1;
                    self.selection(type_name, depth + 1, &mut selection);
                    self.fragments[index].2 = selection;
                    out.push_str(&format!(" ...{name}"));
                    if self.choices.chance(3) {
                        out.push_str(&format!(" ...{name}"));
                    }
                }
                _ => {
                    let (name, ty, arguments) = fields[self.choices.next(fields.len())].clone();
                    self.field(&name, &ty, &arguments, depth, out);
                }
            }
        }
    }

    fn field(
        &mut self,
        name: &str,
        ty: &Type,
        arguments: &[InputValue],
        depth: usize,
        out: &mut String,
    ) {
        out.push(' ');
        if self.choices.chance(4) {
            out.push_str(&format!("a{}: ", self.aliases));
            self.aliases += 1;
        }
        out.push_str(name);
        let mut written = Vec::new();
        for argument in arguments {
            let required = matches!(argument.value_type, Type::NonNullType(_));
            if required || self.choices.chance(2) {
                let value = self.input_value(&argument.value_type, 0);
                written.push(format!("{}: {value}", argument.name));
            }
        }
        if !written.is_empty() {
            out.push_str(&format!("({})", written.join(", ")));
        }
        match self.choices.next(10) {
            0 => out.push_str(" @skip(if: false)"),
            1 => {
                let variable = format!("b{}", self.variables.len());
                out.push_str(&format!(" @include(if: ${variable})"));
                self.variables.push((variable, "Boolean!".into()));
            }
            _ => {}
        }
        let named = named_type(ty);
        if matches!(
            self.schema.type_def(named),
            Some(TypeDefinition::Object(_) | TypeDefinition::Interface(_))
        ) {
            out.push_str(" {");
            if depth < MAX_DEPTH {
                self.selection(named, depth + 1, out);
            } else {
                out.push_str(" __typename");
            }
            out.push_str(" }");
        }
    }

    /// A literal of `ty`, or a variable declared with it.
    fn input_value(&mut self, ty: &Type, depth: usize) -> String {
        if depth == 0 && self.choices.chance(3) {
            let name = format!("v{}", self.variables.len());
            self.variables.push((name.clone(), ty.to_string()));
            return format!("${name}");
        }
        let named = named_type(ty);
        match (named, self.schema.type_def(named)) {
            ("Int", _) => {
                ["1", "20", "100", "-1", "0", "2147483648", "101"][self.choices.next(7)].to_owned()
            }
            ("String" | "ID", _) => [
                "\"x\"",
                "\"0192f0c4-7b3e-7c3a-9f00-000000000001\"",
                "\"\"",
                "\"\"\"b\"\"\"",
            ][self.choices.next(4)]
            .to_owned(),
            ("Boolean", _) => ["true", "false"][self.choices.next(2)].to_owned(),
            (_, Some(TypeDefinition::InputObject(input))) if depth < 3 => {
                let fields = input.fields.clone();
                let written: Vec<String> = fields
                    .iter()
                    .map(|f| format!("{}: {}", f.name, self.input_value(&f.value_type, depth + 1)))
                    .collect();
                format!("{{{}}}", written.join(", "))
            }
            _ => "null".to_owned(),
        }
    }
}

/// Tokens that break documents in the ways clients (and attackers) do.
const JUNK: [&str; 28] = [
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "...",
    "...F0",
    "@skip(if: $nope)",
    "\"",
    "\"\"\"",
    "#",
    "\n",
    "$",
    ":",
    "fragment F0 on Query { me { id } }",
    "query",
    "mutation",
    "on",
    "1e999",
    "-0",
    "null",
    "\u{0}",
    "é",
    "__typename",
    "a0: me",
    "__schema",
    "{{{{{{{{",
];

/// Applies a few edits to `text`, at character boundaries.
fn mutate(text: &mut String, choices: &mut Choices<'_>) {
    for _ in 0..choices.next(4) {
        let at = boundary(text, choices.next(text.len() + 1));
        match choices.next(5) {
            0 => text.insert_str(at, JUNK[choices.next(JUNK.len())]),
            1 => {
                let end = boundary(text, at + choices.next(40));
                text.replace_range(at..end, "");
            }
            2 => {
                let end = boundary(text, at + choices.next(200));
                let span = text[at..end].to_owned();
                text.insert_str(end, &span.repeat(1 + choices.next(50)));
            }
            3 => text.truncate(at),
            _ => text.insert_str(at, &"{ me ".repeat(choices.next(60))),
        }
    }
}

fn boundary(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// A JSON value for a variable: usually of the declared type, sometimes anything.
fn variable_value(ty: &str, choices: &mut Choices<'_>) -> Value {
    if choices.chance(5) {
        return synthetic_json(choices, 4);
    }
    match ty.trim_end_matches('!') {
        "Int" => {
            let ints = [1_i64, 20, -5, 100, 2_147_483_648];
            json!(ints[choices.next(ints.len())])
        }
        "Boolean" => Value::Bool(choices.chance(2)),
        "String" | "ID" => {
            let strings = ["x", "0192f0c4-7b3e-7c3a-9f00-000000000001", ""];
            json!(strings[choices.next(strings.len())])
        }
        _ => synthetic_json(choices, 3),
    }
}

/// Keys subgraph data plausibly has: the product's field names, the generator's aliases.
const KEYS: [&str; 16] = [
    "me",
    "latestPosts",
    "feed",
    "user",
    "post",
    "edges",
    "node",
    "id",
    "author",
    "posts",
    "body",
    "__typename",
    "a0",
    "a1",
    "pageInfo",
    "comments",
];

/// Random JSON, nested at most `depth` deep, with keys from [`KEYS`].
fn synthetic_json(choices: &mut Choices<'_>, depth: usize) -> Value {
    match choices.next(if depth == 0 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(choices.chance(2)),
        2 => json!(choices.next(1000)),
        3 => {
            let strings = [
                "x",
                "User",
                "Post",
                "",
                "0192f0c4-7b3e-7c3a-9f00-000000000001",
            ];
            json!(strings[choices.next(strings.len())])
        }
        4 => json!(1.5),
        5 => Value::Array(
            (0..choices.next(4))
                .map(|_| synthetic_json(choices, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..choices.next(5))
                .map(|_| {
                    let key = KEYS[choices.next(KEYS.len())].to_owned();
                    (key, synthetic_json(choices, depth - 1))
                })
                .collect(),
        ),
    }
}

/// What happened to the inputs, printed at the end of a run.
#[derive(Default)]
struct Outcomes {
    unreadable: AtomicU64,
    refused: AtomicU64,
    bad_variables: AtomicU64,
    shaped: AtomicU64,
}

impl Outcomes {
    fn report(&self) {
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        eprintln!(
            "fuzz: {} inputs ran: {} bodies unreadable, {} documents refused, {} with bad variables, {} shaped",
            count(&self.unreadable)
                + count(&self.refused)
                + count(&self.bad_variables)
                + count(&self.shaped),
            count(&self.unreadable),
            count(&self.refused),
            count(&self.bad_variables),
            count(&self.shaped),
        );
    }
}

/// One input through the request path; `Err` when the property does not hold.
fn drive(
    supergraph: &Supergraph,
    plans: &crate::plan::PlanCache,
    preparer: &Preparer,
    values: &[u32],
    outcomes: &Outcomes,
) -> Result<(), TestCaseError> {
    let schema = supergraph.api_schema();
    let mut choices = Choices { values, at: 0 };
    let mode = choices.next(10);
    let (mut text, declared) = if mode == 9 {
        let junk: String = (0..choices.next(200))
            .map(|_| JUNK[choices.next(JUNK.len())])
            .collect::<Vec<_>>()
            .join(" ");
        (junk, Vec::new())
    } else {
        let mut writer = DocumentWriter {
            schema,
            choices: Choices { values, at: 1 },
            variables: Vec::new(),
            fragments: Vec::new(),
            aliases: 0,
        };
        let text = writer.document();
        choices.at = writer.choices.at;
        (text, writer.variables)
    };
    if mode >= 6 {
        mutate(&mut text, &mut choices);
    }
    let mut variables = Map::new();
    for (name, ty) in &declared {
        if !choices.chance(8) {
            variables.insert(name.clone(), variable_value(ty, &mut choices));
        }
    }
    let mut body = serde_json::to_vec(&json!({
        "query": text,
        "variables": variables,
        "operationName": if choices.chance(4) { json!("Op") } else { Value::Null },
    }))
    .map_err(|error| TestCaseError::fail(error.to_string()))?;
    if choices.chance(20) {
        let at = choices.next(body.len() + 1);
        body.truncate(at);
    }

    let request = match parse_post_body(&body, 10) {
        Ok(PostBody::Single(request)) => request,
        _ => {
            outcomes.unreadable.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
    };
    let Some(query) = request.query else {
        outcomes.unreadable.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    };
    let prepared = match preparer.prepare(
        supergraph,
        plans,
        &query,
        request.operation_name.as_deref(),
        &CancellationToken::new(),
    ) {
        Ok(prepared) => prepared,
        Err(refusal) => {
            outcomes.refused.fetch_add(1, Ordering::Relaxed);
            let errors = refusal.to_graphql_errors(None);
            prop_assert!(!errors.is_empty());
            prop_assert!(errors.len() <= OperationLimits::default().max_errors + 1);
            for error in errors {
                prop_assert!(
                    error.code().is_some(),
                    "uncoded refusal {error:?} of {query}"
                );
            }
            return Ok(());
        }
    };
    let provided = request.variables.unwrap_or_default();
    let variables = match coerce_variables(schema, prepared.variable_definitions(), &provided) {
        Ok(variables) => variables,
        Err(errors) => {
            outcomes.bad_variables.fetch_add(1, Ordering::Relaxed);
            for error in errors {
                prop_assert_eq!(error.code(), Some("BAD_USER_INPUT"));
            }
            return Ok(());
        }
    };
    let data = synthetic_json(&mut choices, 10);
    let response = shape_response(schema, prepared.shaped(), &variables, data, Vec::new(), &[]);
    prop_assert!(response.has_data());
    serde_json::to_vec(&response.into_json())
        .map_err(|error| TestCaseError::fail(error.to_string()))?;
    outcomes.shaped.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

#[test]
fn fuzz_the_request_path_from_body_to_shaped_response() {
    let cases = std::env::var("GANTRY_FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(SHORT_RUN);
    let supergraph = product_supergraph();
    let preparer = Preparer::new(OperationLimits::default(), true);
    let plans = crate::plan::PlanCache::new(1000);
    let outcomes = Outcomes::default();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });

    let ran = AtomicU64::new(0);
    let result = runner.run(&vec(any::<u32>(), 0..600), |values| {
        if (ran.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(1_000_000) {
            outcomes.report();
        }
        drive(&supergraph, &plans, &preparer, &values, &outcomes)
    });

    outcomes.report();
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
