//! Writing responses through the operation's projection, shared by the requests of one
//! operation.

use std::sync::Arc;

use graphql_tools::static_graphql::query::{
    Definition, Document, OperationDefinition, SelectionSet,
};
use serde_json::{Map, Value, json};

use super::{OperationShape, ShapedOperation, write_data};
use crate::schema::ApiSchema;

const SDL: &str = r#"
    type Query { a: Int b: String items: [Item] pet: Pet shelf: Shelf }
    interface Item { id: ID! }
    type Book implements Item { id: ID! title: String! }
    type Lamp implements Item { id: ID! watts: Int }
    union Pet = Cat | Dog
    type Cat { name: String meows: Boolean }
    type Dog { name: String barks: Boolean }
    type Shelf { size: Size! }
    enum Size { SMALL LARGE }
"#;

fn schema() -> ApiSchema {
    let document = graphql_tools::parser::parse_schema::<String>(SDL)
        .expect("the test schema parses")
        .into_static();
    ApiSchema::new(Arc::new(document))
}

/// An operation of the test schema, with its shape.
struct Operation {
    document: Document,
    shape: OperationShape,
}

impl Operation {
    fn new(query: &str) -> Self {
        let document = crate::validate::parse(query).expect("the test operation parses");
        let shape = OperationShape::new(&document, Some("Query"), selection_set(&document));
        Self { document, shape }
    }

    fn shaped(&self) -> ShapedOperation<'_> {
        ShapedOperation {
            document: &self.document,
            selection_set: selection_set(&self.document),
            shape: &self.shape,
        }
    }

    /// The response's `data` and errors for `data` from the subgraphs.
    fn write(&self, schema: &ApiSchema, variables: Value, data: Value) -> (Value, Vec<Value>) {
        let variables = map_of(variables);
        let mut out = Vec::new();
        let errors = write_data(
            schema,
            self.shaped(),
            &variables,
            &data,
            Vec::new(),
            &[],
            &mut out,
        );
        let written = serde_json::from_slice(&out).expect("the written data is JSON");
        let errors = errors
            .into_iter()
            .map(|error| json!({"message": error.message, "path": error.path}))
            .collect();
        (written, errors)
    }
}

fn selection_set(document: &Document) -> Option<&SelectionSet> {
    document
        .definitions
        .iter()
        .find_map(|definition| match definition {
            Definition::Operation(OperationDefinition::Query(query)) => Some(&query.selection_set),
            Definition::Operation(OperationDefinition::SelectionSet(set)) => Some(set),
            _ => None,
        })
}

fn map_of(pairs: Value) -> Map<String, Value> {
    match pairs {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[test]
fn a_shared_projection_follows_each_requests_skip_and_include_values() {
    let schema = schema();
    let operation =
        Operation::new("query($v: Boolean!) { a @skip(if: $v) b @include(if: $v) first: a }");
    let data = json!({"a": 1, "b": "x", "first": 2});

    let skipping = operation.write(&schema, json!({"v": true}), data.clone());
    let including = operation.write(&schema, json!({"v": false}), data.clone());
    let skipping_again = operation.write(&schema, json!({"v": true}), data);

    assert_eq!(skipping.0, json!({"b": "x", "first": 2}));
    assert_eq!(including.0, json!({"a": 1, "first": 2}));
    assert_eq!(skipping_again, skipping);
    let shape = &operation.shape;
    let on = shape.projection(&schema, &map_of(json!({"v": true})));
    let off = shape.projection(&schema, &map_of(json!({"v": false})));
    assert!(
        Arc::ptr_eq(&on, &shape.projection(&schema, &map_of(json!({"v": true})))),
        "the projection of a set of values is built once"
    );
    assert!(!Arc::ptr_eq(&on, &off));
}

#[test]
fn an_operation_whose_conditions_read_no_variable_has_one_projection() {
    let schema = schema();
    let operation = Operation::new(
        "query($n: Int) { a @skip(if: true) b @include(if: false) ...F @include(if: true) } \
         fragment F on Query { first: a }",
    );

    let (written, errors) = operation.write(&schema, json!({"n": 1}), json!({"a": 1, "first": 3}));

    assert_eq!(written, json!({"first": 3}));
    assert!(errors.is_empty());
    let shape = &operation.shape;
    assert!(Arc::ptr_eq(
        &shape.projection(&schema, &map_of(json!({"n": 1}))),
        &shape.projection(&schema, &map_of(json!({"n": 2}))),
    ));
}

#[test]
fn items_of_an_interface_are_shaped_by_their_typename_from_one_projection() {
    let schema = schema();
    let operation = Operation::new(
        "{ items { __typename id ... on Book { title } ...L } } fragment L on Lamp { watts ...L2 } \
         fragment L2 on Lamp { volts: watts }",
    );
    let data = json!({"items": [
        {"__typename": "Book", "id": "1", "title": "Dune", "watts": 5},
        {"__typename": "Lamp", "id": "2", "title": "no", "watts": 40, "volts": 40},
        {"__typename": "Book", "id": "3", "title": "Emma"},
        {"__typename": "Chair", "id": "4"},
        {"id": "5"}
    ]});

    let first = operation.write(&schema, json!({}), data.clone());
    let second = operation.write(&schema, json!({}), data);

    assert_eq!(
        first.0,
        json!({"items": [
            {"__typename": "Book", "id": "1", "title": "Dune"},
            {"__typename": "Lamp", "id": "2", "watts": 40, "volts": 40},
            {"__typename": "Book", "id": "3", "title": "Emma"},
            null,
            null
        ]})
    );
    assert_eq!(
        first.1,
        vec![
            json!({"message": "Could not resolve the concrete type of this \"Item\".",
                   "path": ["items", 3, "__typename"]}),
            json!({"message": "Could not resolve the concrete type of this \"Item\".",
                   "path": ["items", 4, "__typename"]}),
        ]
    );
    assert_eq!(second, first, "the second request reads the built nodes");
}

#[test]
fn union_members_and_enum_values_are_checked_against_the_schema() {
    let schema = schema();
    let operation = Operation::new(
        "{ pet { ... on Cat { name meows } ... on Dog { name barks } } shelf { size } }",
    );

    let (written, errors) = operation.write(
        &schema,
        json!({}),
        json!({"pet": {"__typename": "Dog", "name": "Rex", "meows": true, "barks": true},
               "shelf": {"size": "HUGE"}}),
    );

    assert_eq!(
        written,
        json!({"pet": {"name": "Rex", "barks": true}, "shelf": null})
    );
    assert_eq!(
        errors,
        vec![json!({
            "message": "Enum \"Size\" cannot represent the value returned for Shelf.size.",
            "path": ["shelf", "size"]
        })]
    );
}

#[test]
fn fields_are_written_in_query_order_whatever_the_order_of_the_data() {
    let schema = schema();
    let operation = Operation::new("{ b a second: a items { id ... on Book { title } } }");

    let (written, _) = operation.write(
        &schema,
        json!({}),
        json!({"second": 2, "x": 0, "y": 0, "z": 0, "a": 1, "b": "x",
               "items": [{"title": "T", "__typename": "Book", "id": "1"}]}),
    );

    assert_eq!(
        serde_json::to_string(&written).expect("JSON"),
        r#"{"b":"x","a":1,"second":2,"items":[{"id":"1","title":"T"}]}"#
    );
}
