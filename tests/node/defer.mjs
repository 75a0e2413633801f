// Runs a query with @defer through Apollo Client against the gateway and prints, as JSON,
// every result Apollo Client delivered, in order:
//   node defer.mjs URL QUERY UNTIL
// (it stops at the first result whose data contains the text UNTIL).
// Apollo Client sends `Accept: multipart/mixed;deferSpec=20220824,application/json` for an
// operation with @defer and merges each incremental part into the data it delivers.
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client/core/index.js';

const [url, query, until] = process.argv.slice(2);
if (!url || !query || !until) throw new Error('usage: node defer.mjs URL QUERY UNTIL');

const client = new ApolloClient({
  link: new HttpLink({ uri: url }),
  cache: new InMemoryCache({ addTypename: false }),
});

const results = [];
await new Promise((resolve, reject) => {
  client
    .watchQuery({ query: gql(query), fetchPolicy: 'no-cache' })
    .subscribe({
      next: (result) => {
        results.push({ data: result.data, loading: result.loading, errors: result.errors });
        if (JSON.stringify(result.data ?? null).includes(until)) resolve();
      },
      error: reject,
      complete: resolve,
    });
  setTimeout(() => reject(new Error(`no complete result; got ${JSON.stringify(results)}`)), 30_000);
});
console.log(JSON.stringify(results));
process.exit(0);
