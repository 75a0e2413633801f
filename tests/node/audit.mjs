// Runs the graphql-http server audit (GraphQL-over-HTTP spec conformance) against a URL:
//   node audit.mjs http://127.0.0.1:4000/graphql
// Prints every audit (status, id, name, reason) and a summary line; exits 1 unless every
// audit is `ok`.
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs URL');
  process.exit(2);
}

const results = [];
for (const audit of serverAudits({ url })) {
  let result;
  try {
    result = await audit.fn();
  } catch (error) {
    result = { id: audit.id, name: audit.name, status: 'error', reason: `threw: ${error}` };
  }
  results.push(result);
  const reason = result.status === 'ok' ? '' : ` -- ${result.reason}`;
  console.log(`${result.status.padEnd(6)} ${result.id} ${result.name}${reason}`);
}

const count = (status) => results.filter((result) => result.status === status).length;
const failed = results.length - count('ok');
console.log(
  `graphql-http audit of ${url}: ${results.length} audits, ${count('ok')} ok, ` +
    `${count('notice')} notice, ${count('warn')} warn, ${count('error')} error`,
);
process.exit(failed === 0 ? 0 : 1);
