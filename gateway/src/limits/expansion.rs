//! The operation as it would execute, measured without expanding it: every fragment is
//! summarized once (its figures with its own spreads already counted), in an order where a
//! fragment comes after every fragment it spreads, so a spread costs one lookup however
//! many times it repeats. Counts saturate instead of overflowing: thirty levels of
//! `...F ...F` are 2^30 selections, counted, not built.
//!
//! Everything here uses explicit stacks: the depth of the client's document never becomes
//! the depth of the gateway's call stack.

use std::collections::{HashMap, HashSet};

use graphql_tools::static_graphql::query::{
    Definition, Document, Field, FragmentDefinition, Selection, SelectionSet,
};
use hive_router_query_planner::utils::cancellation::CancellationToken;

use super::{LimitExceeded, OperationLimits, names};

/// Figures of a selection set with every fragment spread in it expanded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    /// Fields on the longest path.
    pub depth: u64,
    /// Selection-set levels on the longest path (fragments count as the braces they
    /// stand for).
    pub nesting: u64,
    /// Field selections.
    pub selections: u64,
    /// Fields with an alias.
    pub aliases: u64,
    /// Fields at the top level.
    pub root_fields: u64,
    /// The most directives on one field, spread or inline fragment.
    pub directives_per_field: u64,
    /// Nested introspection lists under `__schema` / `__type`.
    pub introspection_depth: u64,
    /// Nested introspection lists, counted as if this set were under `__schema`.
    introspection_lists: u64,
}

/// Why the walk stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ExpansionError {
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// A fragment spreads itself, directly or through others.
    #[error("Cannot spread fragment \"{0}\" within itself.")]
    Cycle(String),
    #[error("the preparation was cancelled")]
    Cancelled,
}

/// The introspection fields that return lists of types or fields: nesting them is what
/// makes an introspection answer grow as a power of the schema's size.
const INTROSPECTION_LISTS: [&str; 4] = ["fields", "interfaces", "possibleTypes", "inputFields"];

/// Measures every operation and fragment of `document` and checks them against `limits`;
/// the figures of each definition, by index, when all are within. Unused fragments and
/// other operations are checked too: validation visits them all.
pub(crate) fn check(
    document: &Document,
    limits: &OperationLimits,
    cancel: &CancellationToken,
) -> Result<Vec<Figures>, ExpansionError> {
    let fragments = fragment_summaries(document, cancel)?;
    let mut all = Vec::with_capacity(document.definitions.len());
    for definition in &document.definitions {
        let (set, is_operation) = match definition {
            Definition::Operation(operation) => {
                (crate::validate::operation_parts(operation).3, true)
            }
            Definition::Fragment(fragment) => (&fragment.selection_set, false),
        };
        let figures = summarize(set, &fragments, cancel)?;
        within(&figures, limits, is_operation)?;
        all.push(figures);
    }
    Ok(all)
}

fn within(
    figures: &Figures,
    limits: &OperationLimits,
    is_operation: bool,
) -> Result<(), LimitExceeded> {
    // The most specific limit first: the one a refused client has to change.
    let checks = [
        (
            names::INTROSPECTION_DEPTH,
            figures.introspection_depth,
            limits.max_introspection_depth,
        ),
        (names::DEPTH, figures.depth, limits.max_depth),
        (names::NESTING, figures.nesting, limits.max_nesting),
        (names::ALIASES, figures.aliases, limits.max_aliases),
        (names::SELECTIONS, figures.selections, limits.max_selections),
        (
            names::ROOT_FIELDS,
            if is_operation { figures.root_fields } else { 0 },
            limits.max_root_fields,
        ),
        (
            names::DIRECTIVES_PER_FIELD,
            figures.directives_per_field,
            limits.max_directives_per_field,
        ),
    ];
    match checks.into_iter().find(|(_, actual, max)| actual > max) {
        Some((name, actual, max)) => Err(LimitExceeded::new(name, max, Some(actual))),
        None => Ok(()),
    }
}

/// Summaries of the document's fragments by name (the first definition of a name; a
/// duplicate is a validation error), each computed after those it spreads.
fn fragment_summaries<'d>(
    document: &'d Document,
    cancel: &CancellationToken,
) -> Result<HashMap<&'d str, Figures>, ExpansionError> {
    let mut definitions: HashMap<&'d str, &'d FragmentDefinition> = HashMap::new();
    let mut order = Vec::new();
    for definition in &document.definitions {
        if let Definition::Fragment(fragment) = definition {
            definitions
                .entry(fragment.name.as_str())
                .or_insert_with(|| {
                    order.push(fragment.name.as_str());
                    fragment
                });
        }
    }
    let mut summaries: HashMap<&'d str, Figures> = HashMap::with_capacity(definitions.len());
    // Depth-first over spreads, with an explicit stack: a fragment is summarized once every
    // fragment it spreads is; meeting one that is still open is a cycle.
    let mut open: HashSet<&'d str> = HashSet::new();
    for root in order {
        if summaries.contains_key(root) {
            continue;
        }
        let mut stack: Vec<(&'d str, Vec<&'d str>)> = Vec::new();
        open.insert(root);
        stack.push((root, spreads(&definitions[root].selection_set)));
        while let Some((name, pending)) = stack.last_mut() {
            bail_if_cancelled(cancel)?;
            match pending.pop() {
                Some(next) => {
                    if summaries.contains_key(next) || !definitions.contains_key(next) {
                        continue;
                    }
                    if open.contains(next) {
                        return Err(ExpansionError::Cycle(next.to_owned()));
                    }
                    open.insert(next);
                    let next_spreads = spreads(&definitions[next].selection_set);
                    stack.push((next, next_spreads));
                }
                None => {
                    let name = *name;
                    let figures = summarize(&definitions[name].selection_set, &summaries, cancel)?;
                    summaries.insert(name, figures);
                    open.remove(name);
                    stack.pop();
                }
            }
        }
    }
    Ok(summaries)
}

fn bail_if_cancelled(cancel: &CancellationToken) -> Result<(), ExpansionError> {
    cancel
        .bail_if_cancelled()
        .map_err(|_| ExpansionError::Cancelled)
}

/// The names of the fragments spread anywhere in `set` (nested sets included), each once.
fn spreads(set: &SelectionSet) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    let mut pending = vec![set];
    while let Some(set) = pending.pop() {
        for selection in &set.items {
            match selection {
                Selection::Field(field) => pending.push(&field.selection_set),
                Selection::InlineFragment(fragment) => pending.push(&fragment.selection_set),
                Selection::FragmentSpread(spread) => {
                    if !names.contains(&spread.fragment_name.as_str()) {
                        names.push(&spread.fragment_name);
                    }
                }
            }
        }
    }
    names
}

/// What a selection set is nested in: how its figures join its parent's.
#[derive(Clone, Copy)]
enum Via<'d> {
    Root,
    Field(&'d Field),
    Fragment(u64),
}

/// One selection set being summarized: the next item to visit and what is added up so far.
struct Frame<'d> {
    set: &'d SelectionSet,
    via: Via<'d>,
    next: usize,
    sum: Figures,
    /// The deepest nesting among the items so far.
    child_nesting: u64,
}

impl<'d> Frame<'d> {
    fn new(set: &'d SelectionSet, via: Via<'d>) -> Self {
        Self {
            set,
            via,
            next: 0,
            sum: Figures::default(),
            child_nesting: 0,
        }
    }

    /// The set's own figures, once every item is in.
    fn finish(&self) -> Figures {
        Figures {
            nesting: self.child_nesting.saturating_add(1),
            ..self.sum
        }
    }

    /// Adds a field whose sub-selection (empty for a leaf) has `child` figures.
    fn add_field(&mut self, field: &Field, child: Option<Figures>) {
        let sum = &mut self.sum;
        let inner = child.unwrap_or_default();
        sum.depth = sum.depth.max(inner.depth.saturating_add(1));
        sum.selections = sum
            .selections
            .saturating_add(inner.selections.saturating_add(1));
        sum.aliases = sum.aliases.saturating_add(
            inner
                .aliases
                .saturating_add(u64::from(field.alias.is_some())),
        );
        sum.root_fields = sum.root_fields.saturating_add(1);
        sum.directives_per_field = sum
            .directives_per_field
            .max(field.directives.len() as u64)
            .max(inner.directives_per_field);
        let is_list = u64::from(INTROSPECTION_LISTS.contains(&field.name.as_str()));
        sum.introspection_lists = sum
            .introspection_lists
            .max(inner.introspection_lists.saturating_add(is_list));
        let introspection = if field.name == "__schema" || field.name == "__type" {
            inner.introspection_lists
        } else {
            inner.introspection_depth
        };
        sum.introspection_depth = sum.introspection_depth.max(introspection);
        self.child_nesting = self.child_nesting.max(child.map_or(0, |c| c.nesting));
    }

    /// Adds an inline fragment or a spread fragment (`directives` on it), expanded in place.
    fn add_fragment(&mut self, directives: u64, inner: Figures) {
        let sum = &mut self.sum;
        sum.depth = sum.depth.max(inner.depth);
        sum.selections = sum.selections.saturating_add(inner.selections);
        sum.aliases = sum.aliases.saturating_add(inner.aliases);
        sum.root_fields = sum.root_fields.saturating_add(inner.root_fields);
        sum.directives_per_field = sum
            .directives_per_field
            .max(directives)
            .max(inner.directives_per_field);
        sum.introspection_lists = sum.introspection_lists.max(inner.introspection_lists);
        sum.introspection_depth = sum.introspection_depth.max(inner.introspection_depth);
        self.child_nesting = self.child_nesting.max(inner.nesting);
    }
}

/// The figures of `set` with spreads replaced by the `fragments` summaries (a spread of an
/// unknown fragment counts nothing; validation reports it).
fn summarize(
    set: &SelectionSet,
    fragments: &HashMap<&str, Figures>,
    cancel: &CancellationToken,
) -> Result<Figures, ExpansionError> {
    let mut stack = vec![Frame::new(set, Via::Root)];
    loop {
        bail_if_cancelled(cancel)?;
        let Some(frame) = stack.last_mut() else {
            return Ok(Figures::default());
        };
        if let Some(selection) = frame.set.items.get(frame.next) {
            frame.next += 1;
            match selection {
                Selection::Field(field) if field.selection_set.items.is_empty() => {
                    frame.add_field(field, None);
                }
                Selection::Field(field) => {
                    stack.push(Frame::new(&field.selection_set, Via::Field(field)));
                }
                Selection::InlineFragment(fragment) => {
                    let directives = fragment.directives.len() as u64;
                    stack.push(Frame::new(
                        &fragment.selection_set,
                        Via::Fragment(directives),
                    ));
                }
                Selection::FragmentSpread(spread) => {
                    let inner = fragments
                        .get(spread.fragment_name.as_str())
                        .copied()
                        .unwrap_or_default();
                    frame.add_fragment(spread.directives.len() as u64, inner);
                }
            }
            continue;
        }
        let Some(done) = stack.pop() else {
            return Ok(Figures::default());
        };
        let figures = done.finish();
        match (done.via, stack.last_mut()) {
            (Via::Field(field), Some(parent)) => parent.add_field(field, Some(figures)),
            (Via::Fragment(directives), Some(parent)) => parent.add_fragment(directives, figures),
            _ => return Ok(figures),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(text: &str) -> Document {
        crate::validate::parse(text).expect("parses")
    }

    fn measure(text: &str) -> Result<Figures, ExpansionError> {
        let limits = OperationLimits {
            max_depth: u64::MAX,
            max_nesting: u64::MAX,
            max_selections: u64::MAX,
            max_aliases: u64::MAX,
            max_root_fields: u64::MAX,
            max_directives_per_field: u64::MAX,
            max_introspection_depth: u64::MAX,
            ..OperationLimits::default()
        };
        measure_with(text, &limits)
    }

    fn measure_with(text: &str, limits: &OperationLimits) -> Result<Figures, ExpansionError> {
        let document = document(text);
        let selected = document
            .definitions
            .iter()
            .position(|d| matches!(d, Definition::Operation(_)))
            .expect("an operation");
        check(&document, limits, &CancellationToken::new()).map(|all| all[selected])
    }

    #[test]
    fn figures_count_fields_aliases_and_levels_exactly() {
        let figures = measure(
            "{ a: latestPosts(first: 1) { edges { node { id body } } } me @skip(if: false) @include(if: true) { id } }",
        )
        .expect("measured");
        assert_eq!(
            figures,
            Figures {
                depth: 4,
                nesting: 4,
                selections: 7,
                aliases: 1,
                root_fields: 2,
                directives_per_field: 2,
                introspection_depth: 0,
                introspection_lists: 0,
            }
        );
    }

    #[test]
    fn fragments_count_as_if_expanded_where_they_are_spread() {
        let inline = measure(
            "{ me { ... on User { a: id posts { ... on PostConnection { edges { node { id } } } } } } }",
        )
            .expect("measured");
        let spread = measure(
            "{ me { ...U } } fragment U on User { a: id posts { ...P } } fragment P on PostConnection { edges { node { id } } }",
        )
        .expect("measured");
        assert_eq!(spread, inline);
        assert_eq!((spread.depth, spread.selections, spread.aliases), (5, 6, 1));
    }

    #[test]
    fn a_spread_explosion_is_counted_without_being_expanded() {
        let mut text = String::from("{ ...F0 }");
        for i in 0..30 {
            text.push_str(&format!(
                " fragment F{i} on Query {{ ...F{} ...F{} }}",
                i + 1,
                i + 1
            ));
        }
        text.push_str(" fragment F30 on Query { __typename }");
        let figures = measure(&text).expect("measured");
        assert_eq!(figures.selections, 1 << 30);
        let mut doubled = String::from("{ ...F0 }");
        for i in 0..70 {
            doubled.push_str(&format!(
                " fragment F{i} on Query {{ ...F{} ...F{} }}",
                i + 1,
                i + 1
            ));
        }
        doubled.push_str(" fragment F70 on Query { __typename }");
        assert_eq!(
            measure(&doubled).expect("measured").selections,
            u64::MAX,
            "saturates"
        );
    }

    #[test]
    fn a_fragment_cycle_is_refused() {
        assert_eq!(
            measure(
                "{ ...A } fragment A on Query { ...B } fragment B on Query { me { ...C } } fragment C on User { id } fragment D on Query { ...A }"
            ),
            Ok(Figures {
                depth: 2,
                nesting: 5,
                selections: 2,
                root_fields: 1,
                ..Figures::default()
            })
        );
        let cycle =
            measure("{ ...A } fragment A on Query { ...B } fragment B on Query { me { id } ...A }");
        assert!(matches!(cycle, Err(ExpansionError::Cycle(_))), "{cycle:?}");
        let own = measure("{ me { ...U } } fragment U on User { id ...U }");
        assert_eq!(own, Err(ExpansionError::Cycle("U".into())));
    }

    #[test]
    fn a_fragment_chain_nests_like_the_braces_it_stands_for() {
        let mut text = String::from("{ ...F0 }");
        for i in 0..40 {
            text.push_str(&format!(" fragment F{i} on Query {{ ...F{} }}", i + 1));
        }
        text.push_str(" fragment F40 on Query { __typename }");
        let figures = measure(&text).expect("measured");
        assert_eq!(
            (figures.depth, figures.nesting, figures.selections),
            (1, 42, 1)
        );
        assert_eq!(
            measure_with(&text, &OperationLimits::default()),
            Err(ExpansionError::Limit(LimitExceeded::new(
                names::NESTING,
                32,
                Some(42)
            )))
        );
    }

    #[test]
    fn depth_past_the_limit_is_refused_with_the_figure() {
        let text =
            "{ me { followers { edges { node { followers { edges { node { id } } } } } } } }";
        let limits = OperationLimits {
            max_depth: 7,
            ..OperationLimits::default()
        };
        assert_eq!(
            measure_with(text, &limits),
            Err(ExpansionError::Limit(LimitExceeded::new(
                names::DEPTH,
                7,
                Some(8)
            )))
        );
    }

    #[test]
    fn aliases_root_fields_and_directives_past_their_limits_are_refused() {
        let limits = OperationLimits {
            max_aliases: 2,
            max_root_fields: 3,
            max_directives_per_field: 1,
            ..OperationLimits::default()
        };
        let refused = |text: &str| match measure_with(text, &limits) {
            Err(ExpansionError::Limit(limit)) => (limit.name, limit.actual),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            refused("{ a: me { id } b: me { id } c: me { id } }"),
            (names::ALIASES, Some(3))
        );
        assert_eq!(
            refused(
                "{ me { id } ...R } fragment R on Query { me { id } x: me { id } y: me { id } }"
            ),
            (names::ROOT_FIELDS, Some(4))
        );
        assert_eq!(
            refused("{ me @skip(if: false) @include(if: true) { id } }"),
            (names::DIRECTIVES_PER_FIELD, Some(2))
        );
    }

    #[test]
    fn unused_fragments_are_checked_too() {
        let limits = OperationLimits {
            max_depth: 2,
            ..OperationLimits::default()
        };
        let text = "{ me { id } } fragment Deep on User { posts { edges { node { id } } } }";
        assert!(matches!(
            measure_with(text, &limits),
            Err(ExpansionError::Limit(LimitExceeded {
                name: names::DEPTH,
                ..
            }))
        ));
    }

    /// The introspection query GraphiQL and graphql-codegen send (graphql-js's
    /// `getIntrospectionQuery`, with every option on and `ofType` nested as deep as the
    /// newest release does).
    pub(crate) const STANDARD_INTROSPECTION: &str = r#"
        query IntrospectionQuery {
          __schema {
            description
            queryType { name kind } mutationType { name kind } subscriptionType { name kind }
            types { ...FullType }
            directives { name description isRepeatable locations args(includeDeprecated: true) { ...InputValue } }
          }
        }
        fragment FullType on __Type {
          kind name description specifiedByURL isOneOf
          fields(includeDeprecated: true) { name description args(includeDeprecated: true) { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
          inputFields(includeDeprecated: true) { ...InputValue }
          interfaces { ...TypeRef }
          enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
          possibleTypes { ...TypeRef }
        }
        fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue isDeprecated deprecationReason }
        fragment TypeRef on __Type {
          kind name
          ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name
            ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } } }
        }
    "#;

    #[test]
    fn the_standard_introspection_query_is_within_the_default_limits() {
        let figures =
            measure_with(STANDARD_INTROSPECTION, &OperationLimits::default()).expect("within");
        assert_eq!(figures.introspection_depth, 1);
        assert!(figures.depth <= 20, "{figures:?}");
    }

    #[test]
    fn nested_introspection_lists_past_the_limit_are_refused() {
        let text =
            "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }";
        assert_eq!(measure(text).map(|f| f.introspection_depth), Ok(3));
        assert_eq!(
            measure_with(text, &OperationLimits::default()),
            Err(ExpansionError::Limit(LimitExceeded::new(
                names::INTROSPECTION_DEPTH,
                2,
                Some(3)
            )))
        );
        // The same field names outside introspection are ordinary fields.
        assert_eq!(
            measure("{ fields { fields { fields { id } } } }").map(|f| f.introspection_depth),
            Ok(0)
        );
    }
}
