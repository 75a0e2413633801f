// Subscribes through a GraphQL endpoint with a real client and prints what it received:
//   node subscribe.mjs ws|sse URL --query Q [--variables JSON] [--token T] [--take N]
// `ws` is the `graphql-ws` client (graphql-transport-ws over a WebSocket), `sse` the
// `graphql-sse` client (distinct connections mode). It prints "subscribing" first, then,
// once N results arrived (and it unsubscribed), the subscription completed or failed, one
// JSON line: {"events": [...], "completed": bool, "error": ...}.
import { createClient as createWsClient } from 'graphql-ws';
import { createClient as createSseClient } from 'graphql-sse';
import WebSocket from 'ws';

const [transport, url, ...rest] = process.argv.slice(2);
const flags = {};
for (let i = 0; i < rest.length; i += 2) flags[rest[i].replace(/^--/, '')] = rest[i + 1];
if (!['ws', 'sse'].includes(transport) || !url || !flags.query) {
  console.error('usage: node subscribe.mjs ws|sse URL --query Q [--variables JSON] [--token T] [--take N]');
  process.exit(2);
}
const take = Number(flags.take ?? '1');
const variables = flags.variables ? JSON.parse(flags.variables) : undefined;
const authorization = flags.token ? `Bearer ${flags.token}` : undefined;

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

const describe = (error) => {
  if (Array.isArray(error)) return { errors: error };
  if (error && typeof error.code === 'number') return { closeCode: error.code, reason: error.reason };
  return { message: String(error && error.message ? error.message : error) };
};

const result = { events: [], completed: false, error: null };
console.log('subscribing');
await new Promise((resolve) => {
  const unsubscribe = client.subscribe(
    { query: flags.query, variables },
    {
      next: (value) => {
        result.events.push(value);
        if (result.events.length >= take) {
          unsubscribe();
          resolve();
        }
      },
      error: (error) => {
        result.error = describe(error);
        resolve();
      },
      complete: () => {
        result.completed = true;
        resolve();
      },
    },
  );
});
await client.dispose();
console.log(JSON.stringify(result));
process.exit(0);
