//! Splitting a query at its `@defer`s: the primary operation (every deferred fragment left
//! out) and, per deferred fragment, an operation that selects the fields on the way to it
//! and the fragment itself. Each is an ordinary operation text, so it is prepared, planned
//! and cached like any other, and its fetches are its own.
//!
//! A fragment is deferred unless its `if` argument is `false` (a literal, or a variable the
//! request sets to `false`). A `@defer` inside a deferred fragment is delivered with it.
//! The walk recurses along the operation, whose depth and expansion the operation limits
//! bounded before anything here runs; fragment cycles were refused there too.

use std::collections::{BTreeSet, HashMap};

use graphql_tools::static_graphql::query::{
    Definition, Directive, Document, Field, FragmentDefinition, InlineFragment, Mutation,
    OperationDefinition, Query, Selection, SelectionSet, Subscription, Value,
};
use serde_json::{Map, Value as Json};

/// The directive's name.
const DEFER: &str = "defer";

/// The response key a selection left empty by its deferred fragments selects instead, so
/// that the primary operation stays valid; removed from the primary data before it is sent.
pub const PLACEHOLDER: &str = "_gantry_deferred";

/// A query cut at its active `@defer`s.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// The operation without its deferred fragments.
    pub primary: String,
    pub deferred: Vec<DeferredFragment>,
}

/// One deferred fragment, as its own operation.
#[derive(Debug, Clone, PartialEq)]
pub struct DeferredFragment {
    pub label: Option<String>,
    /// The response keys from the root to the object the fragment applies to (list items
    /// are not in it: the fragment applies to every item).
    pub path: Vec<String>,
    /// The operation selecting `path` and the fragment.
    pub operation: String,
}

/// Whether the operation has a `@defer` anywhere (in it or in a fragment it may spread).
pub fn mentions_defer(document: &Document) -> bool {
    let mut pending: Vec<&SelectionSet> = document
        .definitions
        .iter()
        .map(|definition| match definition {
            Definition::Operation(operation) => operation_parts(operation).1,
            Definition::Fragment(fragment) => &fragment.selection_set,
        })
        .collect();
    while let Some(set) = pending.pop() {
        for item in &set.items {
            let (directives, child): (&[Directive], _) = match item {
                Selection::Field(field) => (&field.directives, Some(&field.selection_set)),
                Selection::InlineFragment(fragment) => {
                    (&fragment.directives, Some(&fragment.selection_set))
                }
                Selection::FragmentSpread(spread) => (&spread.directives, None),
            };
            if directives.iter().any(|directive| directive.name == DEFER) {
                return true;
            }
            pending.extend(child);
        }
    }
    false
}

/// Cuts `operation` (a query of `document`) at the `@defer`s active for `variables`;
/// `None` when none is.
pub fn split(
    document: &Document,
    operation: &OperationDefinition,
    variables: &Map<String, Json>,
) -> Option<Split> {
    let (OperationDefinition::Query(_) | OperationDefinition::SelectionSet(_)) = operation else {
        return None;
    };
    let fragments: HashMap<&str, &FragmentDefinition> = document
        .definitions
        .iter()
        .filter_map(|definition| match definition {
            Definition::Fragment(fragment) => Some((fragment.name.as_str(), fragment)),
            Definition::Operation(_) => None,
        })
        .collect();
    let mut splitter = Splitter {
        fragments,
        variables,
        steps: Vec::new(),
        path: Vec::new(),
        found: Vec::new(),
        placeholder_taken: false,
    };
    let (_, selection_set) = operation_parts(operation);
    let primary = splitter.primary(selection_set);
    // A client's own field under the placeholder's name would be removed with it.
    if splitter.found.is_empty() || splitter.placeholder_taken {
        return None;
    }
    let deferred = std::mem::take(&mut splitter.found)
        .into_iter()
        .map(|found| {
            let mut set = SelectionSet {
                span: Default::default(),
                items: vec![splitter.without_defers(&found.fragment)],
            };
            for step in found.steps.into_iter().rev() {
                let item = match step {
                    Step::Field(mut field) => {
                        field.selection_set = set;
                        Selection::Field(field)
                    }
                    Step::Fragment(mut fragment) => {
                        fragment.selection_set = set;
                        Selection::InlineFragment(fragment)
                    }
                };
                set = SelectionSet {
                    span: Default::default(),
                    items: vec![item],
                };
            }
            DeferredFragment {
                label: found.label,
                path: found.path,
                operation: print(operation, set),
            }
        })
        .collect();
    Some(Split {
        primary: print(operation, primary),
        deferred,
    })
}

/// A selection on the way to a deferred fragment, without its own selections.
#[derive(Clone)]
enum Step {
    Field(Field),
    Fragment(InlineFragment),
}

struct Found {
    label: Option<String>,
    path: Vec<String>,
    steps: Vec<Step>,
    /// The fragment, still with its `@defer`.
    fragment: Selection,
}

struct Splitter<'a> {
    fragments: HashMap<&'a str, &'a FragmentDefinition>,
    variables: &'a Map<String, Json>,
    steps: Vec<Step>,
    path: Vec<String>,
    found: Vec<Found>,
    /// Whether the operation itself uses [`PLACEHOLDER`] as a response key.
    placeholder_taken: bool,
}

impl Splitter<'_> {
    /// `set` without its active deferred fragments, which are recorded with where they sit.
    fn primary(&mut self, set: &SelectionSet) -> SelectionSet {
        let mut items = Vec::with_capacity(set.items.len());
        for item in &set.items {
            if let Selection::Field(field) = item
                && field.alias.as_deref() == Some(PLACEHOLDER)
            {
                self.placeholder_taken = true;
            }
            match item {
                Selection::Field(field) if field.selection_set.items.is_empty() => {
                    items.push(item.clone());
                }
                Selection::Field(field) => {
                    let key = field.alias.clone().unwrap_or_else(|| field.name.clone());
                    let mut step = field.clone();
                    step.selection_set = SelectionSet {
                        span: Default::default(),
                        items: Vec::new(),
                    };
                    self.steps.push(Step::Field(step));
                    self.path.push(key);
                    let mut kept = field.clone();
                    kept.selection_set = self.primary(&field.selection_set);
                    self.path.pop();
                    self.steps.pop();
                    if kept.selection_set.items.is_empty() {
                        kept.selection_set.items.push(placeholder());
                    }
                    items.push(Selection::Field(kept));
                }
                Selection::InlineFragment(fragment) => {
                    if let Some(label) = self.active_defer(&fragment.directives) {
                        self.record(label, item.clone());
                        continue;
                    }
                    let mut kept = fragment.clone();
                    kept.directives = without_defer(&fragment.directives);
                    kept.selection_set =
                        self.inside_fragment(kept.clone(), &fragment.selection_set);
                    if !kept.selection_set.items.is_empty() {
                        items.push(Selection::InlineFragment(kept));
                    }
                }
                Selection::FragmentSpread(spread) => {
                    if let Some(label) = self.active_defer(&spread.directives) {
                        self.record(label, item.clone());
                        continue;
                    }
                    let Some(definition) = self.fragments.get(spread.fragment_name.as_str()) else {
                        continue;
                    };
                    // The spread becomes the inline fragment it stands for, so that the
                    // operation needs no fragment definitions.
                    let fragment = InlineFragment {
                        position: spread.position,
                        type_condition: Some(definition.type_condition.clone()),
                        directives: without_defer(&spread.directives),
                        selection_set: SelectionSet {
                            span: Default::default(),
                            items: Vec::new(),
                        },
                    };
                    let mut kept = fragment.clone();
                    kept.selection_set = self.inside_fragment(fragment, &definition.selection_set);
                    if !kept.selection_set.items.is_empty() {
                        items.push(Selection::InlineFragment(kept));
                    }
                }
            }
        }
        SelectionSet {
            span: set.span,
            items,
        }
    }

    fn inside_fragment(&mut self, step: InlineFragment, set: &SelectionSet) -> SelectionSet {
        self.steps.push(Step::Fragment(step));
        let kept = self.primary(set);
        self.steps.pop();
        kept
    }

    fn record(&mut self, label: Option<String>, fragment: Selection) {
        self.found.push(Found {
            label,
            path: self.path.clone(),
            steps: self.steps.clone(),
            fragment,
        });
    }

    /// `Some(label)` when `directives` hold a `@defer` that is on for this request.
    fn active_defer(&self, directives: &[Directive]) -> Option<Option<String>> {
        let defer = directives
            .iter()
            .find(|directive| directive.name == DEFER)?;
        let mut label = None;
        for (name, value) in &defer.arguments {
            match (name.as_str(), value) {
                ("if", Value::Boolean(false)) => return None,
                ("if", Value::Variable(variable))
                    if self.variables.get(variable) == Some(&Json::Bool(false)) =>
                {
                    return None;
                }
                ("label", Value::String(text)) => label = Some(text.clone()),
                _ => {}
            }
        }
        Some(label)
    }

    /// `selection` with every `@defer` in it gone and its fragment spreads inlined: what a
    /// deferred fragment delivers, nested deferrals included.
    fn without_defers(&self, selection: &Selection) -> Selection {
        match selection {
            Selection::Field(field) => {
                let mut field = field.clone();
                field.selection_set = self.set_without_defers(&field.selection_set);
                Selection::Field(field)
            }
            Selection::InlineFragment(fragment) => Selection::InlineFragment(InlineFragment {
                position: fragment.position,
                type_condition: fragment.type_condition.clone(),
                directives: without_defer(&fragment.directives),
                selection_set: self.set_without_defers(&fragment.selection_set),
            }),
            Selection::FragmentSpread(spread) => {
                let (type_condition, selection_set) =
                    match self.fragments.get(spread.fragment_name.as_str()) {
                        Some(definition) => (
                            Some(definition.type_condition.clone()),
                            self.set_without_defers(&definition.selection_set),
                        ),
                        None => (
                            None,
                            SelectionSet {
                                span: Default::default(),
                                items: Vec::new(),
                            },
                        ),
                    };
                Selection::InlineFragment(InlineFragment {
                    position: spread.position,
                    type_condition,
                    directives: without_defer(&spread.directives),
                    selection_set,
                })
            }
        }
    }

    fn set_without_defers(&self, set: &SelectionSet) -> SelectionSet {
        SelectionSet {
            span: set.span,
            items: set
                .items
                .iter()
                .map(|item| self.without_defers(item))
                .collect(),
        }
    }
}

fn without_defer(directives: &[Directive]) -> Vec<Directive> {
    directives
        .iter()
        .filter(|directive| directive.name != DEFER)
        .cloned()
        .collect()
}

fn placeholder() -> Selection {
    Selection::Field(Field {
        position: Default::default(),
        alias: Some(PLACEHOLDER.to_owned()),
        name: "__typename".to_owned(),
        arguments: Vec::new(),
        directives: Vec::new(),
        selection_set: SelectionSet {
            span: Default::default(),
            items: Vec::new(),
        },
    })
}

fn operation_parts(operation: &OperationDefinition) -> (Option<&String>, &SelectionSet) {
    match operation {
        OperationDefinition::SelectionSet(set) => (None, set),
        OperationDefinition::Query(Query {
            name,
            selection_set,
            ..
        })
        | OperationDefinition::Mutation(Mutation {
            name,
            selection_set,
            ..
        })
        | OperationDefinition::Subscription(Subscription {
            name,
            selection_set,
            ..
        }) => (name.as_ref(), selection_set),
    }
}

/// A query named like `operation`, with `selection_set` and the variable definitions it
/// uses (an unused one would fail validation).
fn print(operation: &OperationDefinition, mut selection_set: SelectionSet) -> String {
    if selection_set.items.is_empty() {
        selection_set.items.push(placeholder());
    }
    let (name, directives, definitions) = match operation {
        OperationDefinition::Query(query) => (
            query.name.clone(),
            query.directives.clone(),
            query.variable_definitions.as_slice(),
        ),
        _ => (None, Vec::new(), &[][..]),
    };
    let mut used = BTreeSet::new();
    variables_in_set(&selection_set, &mut used);
    for directive in &directives {
        variables_in_directive(directive, &mut used);
    }
    let variable_definitions = definitions
        .iter()
        .filter(|definition| used.contains(definition.name.as_str()))
        .cloned()
        .collect();
    Document {
        definitions: vec![Definition::Operation(OperationDefinition::Query(Query {
            position: Default::default(),
            name,
            variable_definitions,
            directives,
            selection_set,
        }))],
    }
    .to_string()
}

fn variables_in_set<'a>(set: &'a SelectionSet, used: &mut BTreeSet<&'a str>) {
    for item in &set.items {
        match item {
            Selection::Field(field) => {
                for (_, value) in &field.arguments {
                    variables_in_value(value, used);
                }
                for directive in &field.directives {
                    variables_in_directive(directive, used);
                }
                variables_in_set(&field.selection_set, used);
            }
            Selection::InlineFragment(fragment) => {
                for directive in &fragment.directives {
                    variables_in_directive(directive, used);
                }
                variables_in_set(&fragment.selection_set, used);
            }
            // Spreads were inlined.
            Selection::FragmentSpread(_) => {}
        }
    }
}

fn variables_in_directive<'a>(directive: &'a Directive, used: &mut BTreeSet<&'a str>) {
    for (_, value) in &directive.arguments {
        variables_in_value(value, used);
    }
}

fn variables_in_value<'a>(value: &'a Value, used: &mut BTreeSet<&'a str>) {
    match value {
        Value::Variable(name) => {
            used.insert(name.as_str());
        }
        Value::List(items) => items.iter().for_each(|item| variables_in_value(item, used)),
        Value::Object(fields) => fields
            .iter()
            .for_each(|(_, item)| variables_in_value(item, used)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cut(text: &str, variables: serde_json::Value) -> Option<Split> {
        let document = graphql_tools::parser::parse_query::<String>(text)
            .expect("parses")
            .into_static();
        let operation = document
            .definitions
            .iter()
            .find_map(|definition| match definition {
                Definition::Operation(operation) => Some(operation.clone()),
                Definition::Fragment(_) => None,
            })
            .expect("an operation");
        let variables = variables.as_object().cloned().unwrap_or_default();
        split(&document, &operation, &variables)
    }

    fn compact(text: &str) -> String {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn a_deferred_inline_fragment_becomes_its_own_operation_along_its_path() {
        let split = cut(
            r#"query Post($id: ID!) { post(id: $id) { id ... @defer(label: "more") { title } } }"#,
            json!({}),
        )
        .expect("deferred");
        assert_eq!(
            compact(&split.primary),
            "query Post($id: ID!) { post(id: $id) { id } }"
        );
        assert_eq!(split.deferred.len(), 1);
        let deferred = &split.deferred[0];
        assert_eq!(deferred.label.as_deref(), Some("more"));
        assert_eq!(deferred.path, vec!["post".to_owned()]);
        assert_eq!(
            compact(&deferred.operation),
            "query Post($id: ID!) { post(id: $id) { ... { title } } }"
        );
    }

    #[test]
    fn a_deferred_spread_is_inlined_and_unused_variables_are_dropped() {
        let split = cut(
            "query Q($id: ID!, $n: Int) { post(id: $id) { p: id ...More @defer } feed(first: $n) { id } } fragment More on Post { title }",
            json!({}),
        )
        .expect("deferred");
        assert_eq!(
            compact(&split.deferred[0].operation),
            "query Q($id: ID!) { post(id: $id) { ... on Post { title } } }"
        );
        assert_eq!(
            compact(&split.primary),
            "query Q($id: ID!, $n: Int) { post(id: $id) { p: id } feed(first: $n) { id } }"
        );
    }

    #[test]
    fn defer_with_if_false_stays_in_the_primary_operation() {
        let text = "query Q($d: Boolean!) { post(id: 1) { id ... @defer(if: $d) { title } } }";
        assert!(cut(text, json!({"d": false})).is_none());
        assert!(cut(text, json!({"d": true})).is_some());
        assert!(
            cut(
                "{ post(id: 1) { ... @defer(if: false) { title } } }",
                json!({})
            )
            .is_none()
        );
    }

    #[test]
    fn a_selection_left_empty_selects_a_placeholder() {
        let split = cut("{ post(id: 1) { ... @defer { title } } }", json!({})).expect("deferred");
        assert_eq!(
            compact(&split.primary),
            format!("query {{ post(id: 1) {{ {PLACEHOLDER}: __typename }} }}")
        );
    }

    #[test]
    fn a_query_using_the_placeholders_name_is_answered_whole() {
        let text = format!("{{ {PLACEHOLDER}: post(id: 1) {{ ... @defer {{ title }} }} }}");
        assert!(cut(&text, json!({})).is_none());
    }

    #[test]
    fn a_nested_defer_is_delivered_with_its_outer_fragment() {
        let split = cut(
            "{ post(id: 1) { ... @defer(label: \"a\") { title author { ... @defer { name } } } } }",
            json!({}),
        )
        .expect("deferred");
        assert_eq!(split.deferred.len(), 1);
        assert_eq!(
            compact(&split.deferred[0].operation),
            "query { post(id: 1) { ... { title author { ... { name } } } } }"
        );
    }

    #[test]
    fn a_document_without_defer_mentions_none() {
        let document = graphql_tools::parser::parse_query::<String>(
            "{ a ...F } fragment F on Q { b @skip(if: true) }",
        )
        .expect("parses")
        .into_static();
        assert!(!mentions_defer(&document));
        let document = graphql_tools::parser::parse_query::<String>(
            "{ a ...F } fragment F on Q { ... @defer { b } }",
        )
        .expect("parses")
        .into_static();
        assert!(mentions_defer(&document));
    }
}
