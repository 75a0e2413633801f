//! Conversions from GraphQL literal values (graphql-tools AST) to JSON.

use graphql_tools::static_graphql::query::Value as QueryValue;
use graphql_tools::static_graphql::schema::Value as SchemaValue;
use serde_json::{Map, Number, Value};

/// Evaluates a literal from the client operation, substituting variables (absent → null).
pub fn query_value_to_json(value: &QueryValue, variables: &Map<String, Value>) -> Value {
    match value {
        QueryValue::Variable(name) => variables.get(name).cloned().unwrap_or(Value::Null),
        QueryValue::Int(n) => n.as_i64().map(Value::from).unwrap_or(Value::Null),
        QueryValue::Float(f) => Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        QueryValue::String(s) => Value::String(s.clone()),
        QueryValue::Boolean(b) => Value::Bool(*b),
        QueryValue::Null => Value::Null,
        QueryValue::Enum(e) => Value::String(e.clone()),
        QueryValue::List(items) => Value::Array(
            items
                .iter()
                .map(|item| query_value_to_json(item, variables))
                .collect(),
        ),
        QueryValue::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, value)| (key.clone(), query_value_to_json(value, variables)))
                .collect(),
        ),
    }
}

/// Converts a constant literal from the schema (a default value) to JSON.
pub fn schema_value_to_json(value: &SchemaValue) -> Value {
    query_value_to_json(value, &Map::new())
}
