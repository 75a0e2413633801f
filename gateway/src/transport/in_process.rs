//! The in-process transport: a subgraph's async-graphql `Schema` called directly, for the
//! all-in-one server. The plan, the query text and the result are exactly what the HTTP
//! transport would send and receive; only the socket and the JSON round trip are gone, and
//! instead of an `Authorization` header the subgraph gets the [`Caller`] the gateway
//! verified.

use async_graphql::{ObjectType, Schema, SubscriptionType, Variables};
use async_trait::async_trait;
use gantry_kit::viewer::Caller;

use super::{SubgraphRequest, SubgraphResponse, SubgraphTransport, TransportError};

pub struct InProcessTransport<Q, M, S> {
    schema: Schema<Q, M, S>,
}

impl<Q, M, S> std::fmt::Debug for InProcessTransport<Q, M, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessTransport").finish_non_exhaustive()
    }
}

impl<Q, M, S> InProcessTransport<Q, M, S> {
    pub fn new(schema: Schema<Q, M, S>) -> Self {
        Self { schema }
    }
}

#[async_trait]
impl<Q, M, S> SubgraphTransport for InProcessTransport<Q, M, S>
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    async fn execute(&self, request: SubgraphRequest) -> Result<SubgraphResponse, TransportError> {
        let caller = request
            .context
            .as_ref()
            .and_then(|context| context.downcast_ref::<Caller>())
            .cloned()
            .unwrap_or_default();
        let mut graphql = async_graphql::Request::new(request.query)
            .variables(Variables::from_json(serde_json::Value::Object(
                request.variables,
            )))
            .data(caller.viewer);
        if let Some(client) = caller.client {
            graphql = graphql.data(client);
        }
        if let Some(name) = request.operation_name {
            graphql = graphql.operation_name(name);
        }
        let response = self.schema.execute(graphql).await;
        let cache_control = response.cache_control.value();
        let body = serde_json::to_value(&response)
            .map_err(|err| TransportError::InvalidResponse(err.to_string()))?;
        let mut response = SubgraphResponse::from_json(body)?;
        response.cache_control = cache_control;
        Ok(response)
    }
}
