// Holds one subscription open with a real client and prints, as it happens, one JSON line
// per thing the client delivered, until the subscription ends (or the process is killed):
//   node live.mjs ws|sse|multipart URL --query Q [--variables JSON] [--token T]
// `ws` is the `graphql-ws` client (graphql-transport-ws over a WebSocket, the token in
// `connectionParams`), `sse` the `graphql-sse` client (distinct connections mode), and
// `multipart` Apollo Client's `HttpLink` (multipart HTTP subscriptions,
// `subscriptionSpec=1.0`); the token goes in the `Authorization` header of the last two.
// Lines: {"subscribing": true} first, then {"next": RESULT} per result,
// {"error": DESCRIPTION} or {"complete": true} at the end.
import { createClient as createWsClient } from 'graphql-ws';
import { createClient as createSseClient } from 'graphql-sse';
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client/core/index.js';
import WebSocket from 'ws';

const [transport, url, ...rest] = process.argv.slice(2);
const flags = {};
for (let i = 0; i < rest.length; i += 2) flags[rest[i].replace(/^--/, '')] = rest[i + 1];
if (!['ws', 'sse', 'multipart'].includes(transport) || !url || !flags.query) {
  console.error('usage: node live.mjs ws|sse|multipart URL --query Q [--variables JSON] [--token T]');
  process.exit(2);
}
const variables = flags.variables ? JSON.parse(flags.variables) : undefined;
const authorization = flags.token ? `Bearer ${flags.token}` : undefined;
const say = (line) => console.log(JSON.stringify(line));

// What a client reports as the end of a subscription, as plain JSON: a list of GraphQL
// errors (graphql-ws, graphql-sse), a WebSocket close, or Apollo Client's ApolloError.
const describe = (error) => {
  if (Array.isArray(error)) return { errors: error };
  if (error && typeof error.code === 'number') return { closeCode: error.code, reason: error.reason };
  if (error && Array.isArray(error.graphQLErrors)) {
    return {
      graphQLErrors: error.graphQLErrors,
      protocolErrors: error.protocolErrors ?? [],
      networkError: error.networkError ? String(error.networkError.message ?? error.networkError) : null,
    };
  }
  return { message: String(error && error.message ? error.message : error) };
};

const sink = {
  next: (value) => say({ next: value }),
  error: (error) => {
    say({ error: describe(error) });
    process.exit(0);
  },
  complete: () => {
    say({ complete: true });
    process.exit(0);
  },
};

say({ subscribing: true });
if (transport === 'multipart') {
  const client = new ApolloClient({
    link: new HttpLink({
      uri: url,
      headers: authorization ? { Authorization: authorization } : {},
    }),
    cache: new InMemoryCache({ addTypename: false }),
  });
  client
    .subscribe({ query: gql(flags.query), variables, fetchPolicy: 'no-cache' })
    .subscribe({
      next: ({ data, errors }) => sink.next(errors ? { data, errors } : { data }),
      error: sink.error,
      complete: sink.complete,
    });
} else {
  const client =
    transport === 'ws'
      ? createWsClient({
          url: url.replace(/^http/, 'ws'),
          webSocketImpl: WebSocket,
          connectionParams: authorization ? { Authorization: authorization } : {},
          retryAttempts: 0,
          lazy: true,
        })
      : createSseClient({
          url,
          headers: authorization ? { Authorization: authorization } : {},
          retryAttempts: 0,
        });
  client.subscribe({ query: flags.query, variables }, sink);
}
