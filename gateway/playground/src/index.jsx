// The GraphiQL page of the gateway. The page passes its settings in a JSON <script> tag
// (id "gantry-playground-config"), so no inline script runs and the bundle has no
// per-deployment values baked in.
import React from 'react';
import { createRoot } from 'react-dom/client';
import { GraphiQL } from 'graphiql';
import 'graphiql/graphiql.css';

function readConfig() {
  const element = document.getElementById('gantry-playground-config');
  const config = element ? JSON.parse(element.textContent || '{}') : {};
  return {
    endpoint: config.endpoint || '/graphql',
    defaultQuery: config.defaultQuery || '',
  };
}

function createFetcher(endpoint) {
  return async (params, options) => {
    const response = await fetch(endpoint, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/graphql-response+json, application/json',
        ...(options && options.headers),
      },
      body: JSON.stringify(params),
      credentials: 'same-origin',
    });
    return response.json();
  };
}

const config = readConfig();
const root = createRoot(document.getElementById('graphiql'));
root.render(
  React.createElement(GraphiQL, {
    fetcher: createFetcher(config.endpoint),
    defaultQuery: config.defaultQuery,
  }),
);
