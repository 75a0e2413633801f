//! Builds a manifest from `.graphql` operation files, as a mobile build step does before
//! shipping: one entry per named operation, its body the operation plus the fragments it
//! uses (printed in one stable form), its id the SHA-256 of that body.

use std::collections::{BTreeMap, BTreeSet};

use graphql_tools::parser::query::{
    Definition, FragmentDefinition, OperationDefinition, Selection, SelectionSet,
};

use crate::persisted::manifest::{MANIFEST_FORMAT, ManifestFile, ManifestOperation};
use crate::persisted::sha256_hex;

/// Why no manifest could be built; each names the file at fault.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: an anonymous operation; give every operation a name")]
    Anonymous { file: String },
    #[error("{file}: the operation name `{name}` is already used in {first}")]
    DuplicateOperation {
        file: String,
        name: String,
        first: String,
    },
    #[error("{file}: the fragment name `{name}` is already used in {first}")]
    DuplicateFragment {
        file: String,
        name: String,
        first: String,
    },
    #[error("{file}: operation `{operation}` uses the unknown fragment `{fragment}`")]
    UnknownFragment {
        file: String,
        operation: String,
        fragment: String,
    },
}

type Fragment = FragmentDefinition<'static, String>;

struct NamedOperation {
    file: String,
    kind: &'static str,
    definition: OperationDefinition<'static, String>,
}

/// `files` are `(name, text)` pairs; the result is sorted by operation name.
pub fn manifest_from_files(files: &[(String, String)]) -> Result<ManifestFile, GenerateError> {
    let mut operations: BTreeMap<String, NamedOperation> = BTreeMap::new();
    let mut fragments: BTreeMap<String, (String, Fragment)> = BTreeMap::new();
    for (file, text) in files {
        let document = graphql_tools::parser::parse_query::<String>(text)
            .map_err(|error| GenerateError::Parse {
                file: file.clone(),
                message: error.to_string(),
            })?
            .into_static();
        for definition in document.definitions {
            match definition {
                Definition::Fragment(fragment) => {
                    if let Some((first, _)) = fragments.get(&fragment.name) {
                        return Err(GenerateError::DuplicateFragment {
                            file: file.clone(),
                            name: fragment.name.clone(),
                            first: first.clone(),
                        });
                    }
                    fragments.insert(fragment.name.clone(), (file.clone(), fragment));
                }
                Definition::Operation(definition) => {
                    let (name, kind) = match &definition {
                        OperationDefinition::Query(q) => (q.name.clone(), "query"),
                        OperationDefinition::Mutation(m) => (m.name.clone(), "mutation"),
                        OperationDefinition::Subscription(s) => (s.name.clone(), "subscription"),
                        OperationDefinition::SelectionSet(_) => (None, "query"),
                    };
                    let Some(name) = name else {
                        return Err(GenerateError::Anonymous { file: file.clone() });
                    };
                    if let Some(first) = operations.get(&name) {
                        return Err(GenerateError::DuplicateOperation {
                            file: file.clone(),
                            name,
                            first: first.file.clone(),
                        });
                    }
                    operations.insert(
                        name,
                        NamedOperation {
                            file: file.clone(),
                            kind,
                            definition,
                        },
                    );
                }
            }
        }
    }
    let mut manifest_operations = Vec::with_capacity(operations.len());
    for (name, operation) in operations {
        let mut used = BTreeSet::new();
        let mut pending = Vec::new();
        collect_spreads(root_selection_set(&operation.definition), &mut pending);
        while let Some(fragment) = pending.pop() {
            if !used.insert(fragment.clone()) {
                continue;
            }
            let Some((_, definition)) = fragments.get(&fragment) else {
                return Err(GenerateError::UnknownFragment {
                    file: operation.file,
                    operation: name,
                    fragment,
                });
            };
            collect_spreads(&definition.selection_set, &mut pending);
        }
        let mut body = operation.definition.to_string().trim_end().to_owned();
        for fragment in &used {
            if let Some((_, definition)) = fragments.get(fragment) {
                body.push_str("\n\n");
                body.push_str(definition.to_string().trim_end());
            }
        }
        manifest_operations.push(ManifestOperation {
            id: sha256_hex(&body),
            body,
            name,
            kind: operation.kind.to_owned(),
        });
    }
    Ok(ManifestFile {
        format: MANIFEST_FORMAT.to_owned(),
        version: 1,
        operations: manifest_operations,
    })
}

fn root_selection_set<'a>(
    definition: &'a OperationDefinition<'static, String>,
) -> &'a SelectionSet<'static, String> {
    match definition {
        OperationDefinition::SelectionSet(set) => set,
        OperationDefinition::Query(q) => &q.selection_set,
        OperationDefinition::Mutation(m) => &m.selection_set,
        OperationDefinition::Subscription(s) => &s.selection_set,
    }
}

fn collect_spreads(set: &SelectionSet<'static, String>, into: &mut Vec<String>) {
    for selection in &set.items {
        match selection {
            Selection::Field(field) => collect_spreads(&field.selection_set, into),
            Selection::FragmentSpread(spread) => into.push(spread.fragment_name.clone()),
            Selection::InlineFragment(inline) => collect_spreads(&inline.selection_set, into),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
            .collect()
    }

    #[test]
    fn each_named_operation_gets_its_body_with_the_fragments_it_uses() {
        let manifest = manifest_from_files(&files(&[
            (
                "a.graphql",
                "query Profile($id: ID!) { user(id: $id) { ...UserParts } }\n\
                 mutation Follow($id: ID!) { follow(userId: $id) { id } }",
            ),
            ("b.graphql", "fragment UserParts on User { id username }"),
        ]))
        .unwrap();
        let names: Vec<_> = manifest
            .operations
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(names, ["Follow", "Profile"]);
        let profile = &manifest.operations[1];
        assert_eq!(profile.kind, "query");
        assert!(profile.body.contains("fragment UserParts on User"));
        assert!(!manifest.operations[0].body.contains("fragment"));
        assert_eq!(manifest.operations[0].kind, "mutation");
        assert_eq!(profile.id, sha256_hex(&profile.body));
        assert!(graphql_tools::parser::parse_query::<String>(&profile.body).is_ok());
    }

    #[test]
    fn the_output_does_not_depend_on_file_order_or_layout() {
        let one = manifest_from_files(&files(&[
            ("a.graphql", "query A { me { id } }"),
            ("b.graphql", "query B {\n  me {\n    id\n  }\n}"),
        ]))
        .unwrap();
        let two = manifest_from_files(&files(&[
            ("b.graphql", "query B { me { id } }"),
            ("a.graphql", "query A {me{id}}"),
        ]))
        .unwrap();
        assert_eq!(one, two);
    }

    #[test]
    fn anonymous_operations_duplicates_and_parse_errors_name_the_file() {
        assert_eq!(
            manifest_from_files(&files(&[("x.graphql", "{ me { id } }")])),
            Err(GenerateError::Anonymous {
                file: "x.graphql".into()
            })
        );
        assert!(matches!(
            manifest_from_files(&files(&[
                ("x.graphql", "query A { me { id } }"),
                ("y.graphql", "query A { me { id } }"),
            ])),
            Err(GenerateError::DuplicateOperation { file, first, .. }) if file == "y.graphql" && first == "x.graphql"
        ));
        assert!(matches!(
            manifest_from_files(&files(&[("z.graphql", "query {")])),
            Err(GenerateError::Parse { file, .. }) if file == "z.graphql"
        ));
        assert!(matches!(
            manifest_from_files(&files(&[("z.graphql", "query A { ...Missing }")])),
            Err(GenerateError::UnknownFragment { .. })
        ));
    }
}
