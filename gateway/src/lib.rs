//! The federation gateway: composes subgraph SDLs into a supergraph, plans each client
//! operation with hive-router-query-planner, executes the plan against the subgraphs and
//! serves the client-facing API over HTTP. Its modules arrive stage by stage.
