// The GraphiQL page of the gateway. The page passes its settings in a JSON <script> tag
// (id "gantry-playground-config"), so no inline script runs and the bundle has no
// per-deployment values baked in.
import React from 'react';
import { createRoot } from 'react-dom/client';
import { GraphiQL } from 'graphiql';
import { createGraphiQLFetcher } from '@graphiql/toolkit';
import 'graphiql/graphiql.css';

function readConfig() {
  const element = document.getElementById('gantry-playground-config');
  const config = element ? JSON.parse(element.textContent || '{}') : {};
  return {
    endpoint: config.endpoint || '/graphql',
    defaultQuery: config.defaultQuery || '',
  };
}

// The WebSocket URL of `endpoint` on this page's origin (`wss:` when the page is HTTPS).
function subscriptionUrl(endpoint) {
  const url = new URL(endpoint, window.location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}

// GraphiQL's own fetcher. Queries and mutations go over HTTP: it accepts `multipart/mixed`
// besides JSON and reads an incremental response part by part, so a query with `@defer`
// shows its primary data first and each deferred fragment as it arrives. Subscriptions go
// over a WebSocket to the same endpoint (`graphql-ws`, bundled), with the headers of the
// headers editor as `connection_init`'s payload, where the gateway reads the token.
function createFetcher(endpoint) {
  return createGraphiQLFetcher({ url: endpoint, subscriptionUrl: subscriptionUrl(endpoint) });
}

const config = readConfig();
const root = createRoot(document.getElementById('graphiql'));
root.render(
  React.createElement(GraphiQL, {
    fetcher: createFetcher(config.endpoint),
    defaultQuery: config.defaultQuery,
  }),
);
