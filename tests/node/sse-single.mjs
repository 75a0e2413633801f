// Runs several subscriptions on ONE event stream with the `graphql-sse` client in single
// connection mode (`singleConnection: true`: PUT reserves the stream, each operation is
// POSTed with the token and answered 202, DELETE stops one) and prints what each received:
//   node sse-single.mjs URL --query Q [--variables JSON] [--take N] [--query Q2 ...] [--token T]
// Each --query starts an operation; the --variables and --take after it belong to it. Each
// operation unsubscribes once it has N results (default 1); when all have, the client is
// disposed. Prints "subscribing" first, then one JSON line:
//   {"operations": [{"events": [...], "completed": bool, "error": ...}, ...]}.
import { createClient } from 'graphql-sse';

const [url, ...rest] = process.argv.slice(2);
const operations = [];
let token;
for (let i = 0; i < rest.length; i += 2) {
  const [name, value] = [rest[i].replace(/^--/, ''), rest[i + 1]];
  if (value === undefined) throw new Error(`--${name} needs a value`);
  if (name === 'token') token = value;
  else if (name === 'query') operations.push({ query: value, take: 1 });
  else if (name === 'variables' && operations.length) operations.at(-1).variables = JSON.parse(value);
  else if (name === 'take' && operations.length) operations.at(-1).take = Number(value);
  else throw new Error(`unknown or misplaced option --${name}`);
}
if (!url || operations.length === 0) {
  console.error('usage: node sse-single.mjs URL --query Q [--variables JSON] [--take N] [--query Q2 ...] [--token T]');
  process.exit(2);
}

const client = createClient({
  url,
  singleConnection: true,
  headers: token ? { Authorization: `Bearer ${token}` } : {},
  retryAttempts: 0,
});

const describe = (error) => {
  if (Array.isArray(error)) return { errors: error };
  if (error && error.response) return { status: error.response.status };
  return { message: String(error && error.message ? error.message : error) };
};

console.log('subscribing');
const results = await Promise.all(
  operations.map(
    (operation) =>
      new Promise((resolve) => {
        const result = { events: [], completed: false, error: null };
        const unsubscribe = client.subscribe(
          { query: operation.query, variables: operation.variables },
          {
            next: (value) => {
              result.events.push(value);
              if (result.events.length >= operation.take) {
                unsubscribe();
                resolve(result);
              }
            },
            error: (error) => {
              result.error = describe(error);
              resolve(result);
            },
            complete: () => {
              result.completed = true;
              resolve(result);
            },
          },
        );
      }),
  ),
);
client.dispose();
console.log(JSON.stringify({ operations: results }));
process.exit(0);
