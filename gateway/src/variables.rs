//! Variable coercion: applies defaults, rejects missing required variables and values that
//! do not fit their declared input type (GraphQL spec, "Coercing Variable Values").

use graphql_tools::static_graphql::query::VariableDefinition;
use graphql_tools::static_graphql::schema::{Type, TypeDefinition};
use serde_json::{Map, Value};

use crate::graphql::GraphQLError;
use crate::schema::ApiSchema;
use crate::values::query_value_to_json;

/// The code clients get for variables that do not fit their declared types.
pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";

/// Coerces the provided variables against the operation's variable definitions.
pub fn coerce_variables(
    schema: &ApiSchema,
    definitions: &[VariableDefinition],
    provided: &Map<String, Value>,
) -> Result<Map<String, Value>, Vec<GraphQLError>> {
    let mut coerced = Map::new();
    let mut errors = Vec::new();
    for definition in definitions {
        let name = &definition.name;
        match provided.get(name) {
            Some(value) => {
                match coerce_value(schema, &definition.var_type, value, &mut Vec::new()) {
                    Ok(value) => {
                        coerced.insert(name.clone(), value);
                    }
                    Err(reason) => errors.push(GraphQLError::with_code(
                        format!("Variable \"${name}\" got invalid value {value}; {reason}"),
                        BAD_USER_INPUT,
                    )),
                }
            }
            None => match (&definition.default_value, &definition.var_type) {
                (Some(default), _) => {
                    coerced.insert(name.clone(), query_value_to_json(default, &Map::new()));
                }
                (None, Type::NonNullType(_)) => errors.push(GraphQLError::with_code(
                    format!(
                        "Variable \"${name}\" of required type \"{}\" was not provided.",
                        definition.var_type
                    ),
                    BAD_USER_INPUT,
                )),
                (None, _) => {}
            },
        }
    }
    if errors.is_empty() {
        Ok(coerced)
    } else {
        Err(errors)
    }
}

/// Coerces one input value; `path` names the position inside the variable for messages.
fn coerce_value(
    schema: &ApiSchema,
    ty: &Type,
    value: &Value,
    path: &mut Vec<String>,
) -> Result<Value, String> {
    let at = |path: &Vec<String>| {
        if path.is_empty() {
            String::new()
        } else {
            format!(" at \"{}\"", path.join("."))
        }
    };
    match ty {
        Type::NonNullType(inner) => {
            if value.is_null() {
                return Err(format!(
                    "Expected non-nullable type \"{ty}\" not to be null{}.",
                    at(path)
                ));
            }
            coerce_value(schema, inner, value, path)
        }
        _ if value.is_null() => Ok(Value::Null),
        Type::ListType(inner) => match value {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    path.push(index.to_string());
                    let coerced = coerce_value(schema, inner, item, path);
                    path.pop();
                    out.push(coerced?);
                }
                Ok(Value::Array(out))
            }
            single => Ok(Value::Array(vec![coerce_value(
                schema, inner, single, path,
            )?])),
        },
        Type::NamedType(name) => {
            let is_input_object =
                matches!(schema.type_def(name), Some(TypeDefinition::InputObject(_)));
            coerce_named(schema, name, value, path).map_err(|reason| {
                // Input objects report the location of the offending field themselves.
                if is_input_object && reason.contains(" at \"") {
                    reason
                } else {
                    format!("{reason}{}", at(path))
                }
            })
        }
    }
}

fn coerce_named(
    schema: &ApiSchema,
    name: &str,
    value: &Value,
    path: &mut Vec<String>,
) -> Result<Value, String> {
    let invalid = |what: &str| Err(format!("{name} cannot represent {what}: {value}"));
    match name {
        "Int" => match value.as_i64() {
            Some(i) if i32::try_from(i).is_ok() => Ok(value.clone()),
            _ => invalid("non-integer or out of range value"),
        },
        "Float" => match value {
            Value::Number(_) => Ok(value.clone()),
            _ => invalid("non numeric value"),
        },
        "String" => match value {
            Value::String(_) => Ok(value.clone()),
            _ => invalid("a non string value"),
        },
        "Boolean" => match value {
            Value::Bool(_) => Ok(value.clone()),
            _ => invalid("a non boolean value"),
        },
        "ID" => match value {
            Value::String(_) => Ok(value.clone()),
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Value::String(n.to_string())),
            _ => invalid("value"),
        },
        _ => match schema.type_def(name) {
            Some(TypeDefinition::Enum(e)) => match value.as_str() {
                Some(s) if e.values.iter().any(|v| v.name == s) => Ok(value.clone()),
                _ => Err(format!("Value {value} does not exist in \"{name}\" enum")),
            },
            Some(TypeDefinition::InputObject(input)) => {
                let Value::Object(fields) = value else {
                    return Err(format!("Expected type \"{name}\" to be an object"));
                };
                if let Some(unknown) = fields
                    .keys()
                    .find(|key| !input.fields.iter().any(|f| &f.name == *key))
                {
                    return Err(format!(
                        "Field \"{unknown}\" is not defined by type \"{name}\""
                    ));
                }
                let mut out = Map::new();
                for field in &input.fields {
                    match fields.get(&field.name) {
                        Some(field_value) => {
                            path.push(field.name.clone());
                            let coerced =
                                coerce_value(schema, &field.value_type, field_value, path);
                            path.pop();
                            out.insert(field.name.clone(), coerced?);
                        }
                        None => match (&field.default_value, &field.value_type) {
                            (Some(default), _) => {
                                out.insert(
                                    field.name.clone(),
                                    crate::values::schema_value_to_json(default),
                                );
                            }
                            (None, Type::NonNullType(_)) => {
                                return Err(format!(
                                    "Field \"{}\" of required type \"{}\" was not provided",
                                    field.name, field.value_type
                                ));
                            }
                            (None, _) => {}
                        },
                    }
                }
                Ok(Value::Object(out))
            }
            // Custom scalars accept any JSON value; the subgraph validates it.
            Some(TypeDefinition::Scalar(_)) => Ok(value.clone()),
            _ => Err(format!("Unknown input type \"{name}\"")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> ApiSchema {
        let sdl = r#"
            type Query { a: Int }
            enum Color { RED GREEN }
            input PostInput { body: String! tags: [String!] color: Color = RED }
        "#;
        let doc = graphql_tools::parser::parse_schema::<String>(sdl)
            .unwrap()
            .into_static();
        ApiSchema::new(std::sync::Arc::new(doc))
    }

    fn defs(op: &str) -> Vec<VariableDefinition> {
        let doc = graphql_tools::parser::parse_query::<String>(op)
            .unwrap()
            .into_static();
        match doc.definitions.into_iter().next().unwrap() {
            graphql_tools::static_graphql::query::Definition::Operation(
                graphql_tools::static_graphql::query::OperationDefinition::Query(q),
            ) => q.variable_definitions,
            _ => panic!("expected a query"),
        }
    }

    fn messages(result: Result<Map<String, Value>, Vec<GraphQLError>>) -> Vec<String> {
        result.unwrap_err().into_iter().map(|e| e.message).collect()
    }

    #[test]
    fn defaults_are_applied_and_absent_nullable_variables_stay_absent() {
        let defs = defs("query($first: Int = 20, $after: String) { a }");
        let out = coerce_variables(&schema(), &defs, &Map::new()).unwrap();
        assert_eq!(Value::Object(out), json!({"first": 20}));
    }

    #[test]
    fn a_missing_required_variable_is_rejected() {
        let defs = defs("query($id: ID!) { a }");
        assert_eq!(
            messages(coerce_variables(&schema(), &defs, &Map::new())),
            vec!["Variable \"$id\" of required type \"ID!\" was not provided."]
        );
    }

    #[test]
    fn input_objects_are_coerced_field_by_field() {
        let defs = defs("query($input: PostInput!, $id: ID) { a }");
        let provided = json!({"input": {"body": "hi", "tags": "one"}, "id": 7});
        let out = coerce_variables(&schema(), &defs, provided.as_object().unwrap()).unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"input": {"body": "hi", "tags": ["one"], "color": "RED"}, "id": "7"})
        );
    }

    #[test]
    fn a_wrongly_typed_nested_value_is_rejected_with_its_path() {
        let defs = defs("query($input: PostInput!, $n: Int) { a }");
        let provided = json!({"input": {"body": 5}, "n": "x"});
        assert_eq!(
            messages(coerce_variables(
                &schema(),
                &defs,
                provided.as_object().unwrap()
            )),
            vec![
                "Variable \"$input\" got invalid value {\"body\":5}; String cannot represent a non string value: 5 at \"body\"",
                "Variable \"$n\" got invalid value \"x\"; Int cannot represent non-integer or out of range value: \"x\"",
            ]
        );
    }
}
