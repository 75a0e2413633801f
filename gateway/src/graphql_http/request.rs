//! Reading GraphQL requests off the wire: a POST body (one object or a batch array) or a
//! GET query string. Everything here is a client error when it fails (`400`).

use serde_json::{Map, Value};

use crate::graphql_http::GraphQLRequest;

/// Why a request could not be read; the message goes back to the client as is.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("The request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("The request body is empty")]
    EmptyBody,
    #[error("The request body must be a JSON object, or an array of them for a batch")]
    NotAnObject,
    #[error("Batched requests are not accepted here")]
    BatchingDisabled,
    #[error("A batch must hold at least one request")]
    EmptyBatch,
    #[error("A batch may hold at most {max} requests, this one holds {found}")]
    BatchTooLarge { max: usize, found: usize },
    #[error("The {0:?} parameter must be {1}")]
    WrongType(&'static str, &'static str),
    #[error("The {0:?} parameter must be a JSON object: {1}")]
    InvalidJsonParameter(&'static str, String),
    #[error("The {0:?} parameter appears more than once")]
    DuplicateParameter(&'static str),
    #[error("The \"query\" parameter is missing")]
    MissingQuery,
}

/// What a POST body holds.
#[derive(Debug, PartialEq)]
pub enum PostBody {
    Single(GraphQLRequest),
    /// Each item read on its own: one malformed item does not spoil the others.
    Batch(Vec<Result<GraphQLRequest, RequestError>>),
}

/// Reads a POST body; `max_batch_size` 0 refuses arrays.
pub fn parse_post_body(body: &[u8], max_batch_size: usize) -> Result<PostBody, RequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RequestError::EmptyBody);
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| RequestError::InvalidJson(error.to_string()))?;
    match value {
        Value::Object(object) => request_from_object(object).map(PostBody::Single),
        Value::Array(items) => {
            if max_batch_size == 0 {
                return Err(RequestError::BatchingDisabled);
            }
            if items.is_empty() {
                return Err(RequestError::EmptyBatch);
            }
            if items.len() > max_batch_size {
                return Err(RequestError::BatchTooLarge {
                    max: max_batch_size,
                    found: items.len(),
                });
            }
            Ok(PostBody::Batch(
                items
                    .into_iter()
                    .map(|item| match item {
                        Value::Object(object) => request_from_object(object),
                        _ => Err(RequestError::NotAnObject),
                    })
                    .collect(),
            ))
        }
        _ => Err(RequestError::NotAnObject),
    }
}

fn optional_string(
    object: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, RequestError> {
    match object.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(RequestError::WrongType(name, "a string")),
    }
}

fn optional_object(
    object: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<Map<String, Value>>, RequestError> {
    match object.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(value)) => Ok(Some(value)),
        Some(_) => Err(RequestError::WrongType(name, "an object")),
    }
}

/// Reads one request object; unknown keys are ignored, as the spec allows.
fn request_from_object(mut object: Map<String, Value>) -> Result<GraphQLRequest, RequestError> {
    let request = GraphQLRequest {
        query: optional_string(&mut object, "query")?,
        operation_name: optional_string(&mut object, "operationName")?,
        variables: optional_object(&mut object, "variables")?,
        extensions: optional_object(&mut object, "extensions")?,
        // Relay sends `doc_id`.
        document_id: match optional_string(&mut object, "documentId")? {
            Some(id) => Some(id),
            None => optional_string(&mut object, "doc_id")?,
        },
    };
    require_document(request)
}

fn require_document(request: GraphQLRequest) -> Result<GraphQLRequest, RequestError> {
    if request.query.is_none() && !request.names_persisted_document() {
        return Err(RequestError::MissingQuery);
    }
    Ok(request)
}

/// Reads the parameters of a GET (already URL-decoded pairs). `variables` and `extensions`
/// are JSON-encoded objects; unknown parameters are ignored.
pub fn parse_get_params(params: Vec<(String, String)>) -> Result<GraphQLRequest, RequestError> {
    fn set(
        slot: &mut Option<String>,
        name: &'static str,
        value: String,
    ) -> Result<(), RequestError> {
        if slot.replace(value).is_some() {
            return Err(RequestError::DuplicateParameter(name));
        }
        Ok(())
    }
    let (mut query, mut operation_name, mut variables, mut extensions, mut document_id) =
        (None, None, None, None, None);
    for (name, value) in params {
        match name.as_str() {
            "query" => set(&mut query, "query", value)?,
            "operationName" => set(&mut operation_name, "operationName", value)?,
            "variables" => set(&mut variables, "variables", value)?,
            "extensions" => set(&mut extensions, "extensions", value)?,
            "documentId" => set(&mut document_id, "documentId", value)?,
            "doc_id" => set(&mut document_id, "documentId", value)?,
            _ => {}
        }
    }
    let request = GraphQLRequest {
        query: query.filter(|query| !query.is_empty()),
        operation_name: operation_name.filter(|name| !name.is_empty()),
        variables: json_object_param(variables, "variables")?,
        extensions: json_object_param(extensions, "extensions")?,
        document_id: document_id.filter(|id| !id.is_empty()),
    };
    require_document(request)
}

fn json_object_param(
    value: Option<String>,
    name: &'static str,
) -> Result<Option<Map<String, Value>>, RequestError> {
    let Some(value) = value.filter(|value| !value.is_empty()) else {
        return Ok(None);
    };
    match serde_json::from_str::<Value>(&value) {
        Ok(Value::Object(object)) => Ok(Some(object)),
        Ok(Value::Null) => Ok(None),
        Ok(_) => Err(RequestError::WrongType(name, "a JSON object")),
        Err(error) => Err(RequestError::InvalidJsonParameter(name, error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn post(body: &str) -> Result<PostBody, RequestError> {
        parse_post_body(body.as_bytes(), 10)
    }

    fn pairs(params: &[(&str, &str)]) -> Vec<(String, String)> {
        params
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn a_full_post_body_is_read() {
        let body = post(
            r#"{"query":"query Q($x: String) { echo(x: $x) }","operationName":"Q",
                "variables":{"x":"hi"},"extensions":{"k":1},"documentId":"abc","other":true}"#,
        );
        let expected = GraphQLRequest {
            query: Some("query Q($x: String) { echo(x: $x) }".to_string()),
            operation_name: Some("Q".to_string()),
            variables: json!({"x": "hi"}).as_object().cloned(),
            extensions: json!({"k": 1}).as_object().cloned(),
            document_id: Some("abc".to_string()),
        };
        assert_eq!(body, Ok(PostBody::Single(expected)));
    }

    #[test]
    fn null_parameters_mean_absent() {
        let body = post(
            r#"{"query":"{ hello }","operationName":null,"variables":null,"extensions":null}"#,
        );
        assert_eq!(body, Ok(PostBody::Single(GraphQLRequest::new("{ hello }"))));
    }

    #[test]
    fn parameters_of_the_wrong_type_are_rejected() {
        for body in [
            r#"{"query":{"obj":"ect"}}"#,
            r#"{"query":0}"#,
            r#"{"query":"{ hello }","operationName":false}"#,
            r#"{"query":"{ hello }","variables":"string"}"#,
            r#"{"query":"{ hello }","variables":["array"]}"#,
            r#"{"query":"{ hello }","extensions":0}"#,
        ] {
            assert!(
                matches!(post(body), Err(RequestError::WrongType(..))),
                "{body}"
            );
        }
    }

    #[test]
    fn a_missing_query_is_rejected_unless_a_persisted_document_is_named() {
        assert_eq!(
            post(r#"{"qeury":"{ hello }"}"#),
            Err(RequestError::MissingQuery)
        );
        assert!(
            post(r#"{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"ab"}}}"#).is_ok()
        );
        assert!(post(r#"{"documentId":"sha256:ab"}"#).is_ok());
    }

    #[test]
    fn relay_doc_id_is_read_as_the_document_id() {
        let Ok(PostBody::Single(request)) = post(r#"{"doc_id":"abc","variables":{}}"#) else {
            panic!("expected one request");
        };
        assert_eq!(request.document_id.as_deref(), Some("abc"));
        let request = parse_get_params(pairs(&[("doc_id", "abc")]));
        assert_eq!(request.map(|r| r.document_id), Ok(Some("abc".to_string())));
    }

    #[test]
    fn malformed_or_empty_bodies_are_rejected() {
        assert!(matches!(
            post(r#"{ "not a JSON"#),
            Err(RequestError::InvalidJson(_))
        ));
        assert_eq!(post("  "), Err(RequestError::EmptyBody));
        assert_eq!(post("42"), Err(RequestError::NotAnObject));
    }

    #[test]
    fn a_batch_is_read_item_by_item() {
        let Ok(PostBody::Batch(items)) = post(r#"[{"query":"{ hello }"}, {"nope":1}, 3]"#) else {
            panic!("expected a batch");
        };
        assert_eq!(items[0], Ok(GraphQLRequest::new("{ hello }")));
        assert_eq!(items[1], Err(RequestError::MissingQuery));
        assert_eq!(items[2], Err(RequestError::NotAnObject));
    }

    #[test]
    fn batch_limits_are_enforced() {
        assert_eq!(post("[]"), Err(RequestError::EmptyBatch));
        let eleven = format!("[{}]", [r#"{"query":"{ hello }"}"#; 11].join(","));
        assert_eq!(
            post(&eleven),
            Err(RequestError::BatchTooLarge { max: 10, found: 11 })
        );
        assert_eq!(
            parse_post_body(br#"[{"query":"{ hello }"}]"#, 0),
            Err(RequestError::BatchingDisabled)
        );
    }

    #[test]
    fn get_parameters_are_read_with_json_variables() {
        let request = parse_get_params(pairs(&[
            ("query", "query Q($x: String) { echo(x: $x) }"),
            ("operationName", "Q"),
            ("variables", r#"{"x":"hi"}"#),
            ("extensions", ""),
            ("unrelated", "1"),
        ]));
        let expected = GraphQLRequest {
            query: Some("query Q($x: String) { echo(x: $x) }".to_string()),
            operation_name: Some("Q".to_string()),
            variables: json!({"x": "hi"}).as_object().cloned(),
            ..GraphQLRequest::default()
        };
        assert_eq!(request, Ok(expected));
    }

    #[test]
    fn bad_get_parameters_are_rejected() {
        assert_eq!(
            parse_get_params(pairs(&[])),
            Err(RequestError::MissingQuery)
        );
        assert!(matches!(
            parse_get_params(pairs(&[("query", "{ hello }"), ("variables", "{nope")])),
            Err(RequestError::InvalidJsonParameter("variables", _))
        ));
        assert_eq!(
            parse_get_params(pairs(&[("query", "{ hello }"), ("variables", "[1]")])),
            Err(RequestError::WrongType("variables", "a JSON object"))
        );
        assert_eq!(
            parse_get_params(pairs(&[("query", "{ a }"), ("query", "{ b }")])),
            Err(RequestError::DuplicateParameter("query"))
        );
    }
}
