// Opens the gateway's GraphiQL playground in headless Chromium and runs one operation:
//   node playground.mjs URL [--query '{ hello }'] [--expect '"hello": "world"'] [--screenshot FILE]
//                           [--trigger JSON [--trigger-token T]]
// Fails when the page requests anything from another host, when the page throws, or when
// the result pane does not show the expected text. Prints a JSON summary on success.
// For a subscription, --trigger is a GraphQL request body POSTed to URL (with
// `Authorization: Bearer T`) once the page has sent its `subscribe` over the WebSocket,
// and again every 500 ms until the result pane shows the expected text (the subscription
// may reach the subgraph a moment after the message); the summary then lists the page's
// WebSocket URLs and the results of the triggers.
// Chromium is $CHROMIUM_PATH, else the first of the usual names found on PATH.
import { launchChromium } from './chromium.mjs';

function parseArgs(argv) {
  const options = {
    query: '{ hello }',
    expect: '"hello": "world"',
    screenshot: null,
    trigger: null,
    'trigger-token': null,
  };
  const [url, ...rest] = argv;
  for (let i = 0; i < rest.length; i += 2) {
    const name = rest[i].replace(/^--/, '');
    if (!(name in options) || rest[i + 1] === undefined) {
      throw new Error(`unknown or incomplete option ${rest[i]}`);
    }
    options[name] = rest[i + 1];
  }
  if (!url) {
    throw new Error(
      'usage: node playground.mjs URL [--query Q] [--expect TEXT] [--screenshot FILE] [--trigger JSON [--trigger-token T]]',
    );
  }
  return { url, ...options };
}

const options = parseArgs(process.argv.slice(2));
const pageUrl = new URL(options.url);
const browser = await launchChromium();

const requests = [];
const foreign = [];
const problems = [];
let summary;
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('request', (request) => {
    const url = new URL(request.url());
    requests.push(`${request.method()} ${url.protocol === 'data:' ? 'data:…' : request.url()}`);
    if ((url.protocol === 'http:' || url.protocol === 'https:') && url.host !== pageUrl.host) {
      foreign.push(request.url());
    }
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  // WebSockets (subscriptions): where they go, and whether a `subscribe` went out.
  const websockets = [];
  let subscribed = false;
  page.on('websocket', (socket) => {
    const url = new URL(socket.url());
    websockets.push(socket.url());
    if (url.host !== pageUrl.host) foreign.push(socket.url());
    socket.on('framesent', (frame) => {
      if (typeof frame.payload === 'string' && frame.payload.includes('"subscribe"')) subscribed = true;
    });
  });
  // The media type of each GraphQL answer (multipart/mixed when it came in parts).
  const responseTypes = [];
  page.on('response', (response) => {
    if (response.request().method() === 'POST') {
      responseTypes.push(response.headers()['content-type'] ?? '');
    }
  });
  // A GraphQL error answered with 400 (application/graphql-response+json) is logged by
  // Chromium as a failed resource: noted, not a problem. A blocked resource (CSP) is.
  const consoleErrors = [];
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const text = message.text();
    if (/Content Security Policy|Refused to/i.test(text)) problems.push(`console error: ${text}`);
    else consoleErrors.push(text);
  });

  const response = await page.goto(options.url, { waitUntil: 'load', timeout: 30_000 });
  if (!response || response.status() !== 200) {
    throw new Error(`GET ${options.url} answered ${response && response.status()}`);
  }

  const editor = '.graphiql-query-editor .CodeMirror';
  await page.waitForSelector(editor, { timeout: 30_000 });
  const initialQuery = await page.$eval(editor, (element) => element.CodeMirror.getValue());
  await page.$eval(editor, (element, query) => element.CodeMirror.setValue(query), options.query);
  // GraphiQL reads the editor through a debounced change handler.
  await page.waitForTimeout(500);
  await page.click('.graphiql-execute-button');
  const triggers = [];
  let shown = false;
  if (options.trigger) {
    const deadline = Date.now() + 30_000;
    while (!subscribed && Date.now() < deadline) await page.waitForTimeout(100);
    if (!subscribed) throw new Error('the page sent no `subscribe` over a WebSocket');
    const headers = { 'content-type': 'application/json' };
    if (options['trigger-token']) headers.authorization = `Bearer ${options['trigger-token']}`;
    while (!shown && Date.now() < deadline) {
      const answer = await fetch(options.url, { method: 'POST', headers, body: options.trigger });
      triggers.push({ status: answer.status, body: await answer.json() });
      shown = await page
        .waitForFunction(
          (expected) => {
            const result = document.querySelector('.graphiql-response .CodeMirror');
            return result && result.CodeMirror.getValue().includes(expected);
          },
          options.expect,
          { timeout: 500 },
        )
        .then(() => true, () => false);
    }
  }
  await page.waitForFunction(
    (expected) => {
      const result = document.querySelector('.graphiql-response .CodeMirror');
      return result && result.CodeMirror.getValue().includes(expected);
    },
    options.expect,
    { timeout: 30_000 },
  );
  const result = await page.$eval('.graphiql-response .CodeMirror', (element) =>
    element.CodeMirror.getValue(),
  );
  if (options.screenshot) await page.screenshot({ path: options.screenshot });

  summary = {
    url: options.url,
    title: await page.title(),
    initialQuery,
    query: options.query,
    result: JSON.parse(result),
    requests,
    websockets,
    triggers,
    responseTypes,
    foreignRequests: foreign,
    problems,
    consoleErrors,
  };
} catch (error) {
  console.error(`playground check failed: ${error.message}`);
  console.error(JSON.stringify({ requests, foreignRequests: foreign, problems }, null, 2));
  if (options.screenshot) await browser.contexts()[0]?.pages()[0]?.screenshot({ path: options.screenshot });
  await browser.close();
  process.exit(1);
}
await browser.close();

console.log(JSON.stringify(summary, null, 2));
if (foreign.length > 0 || problems.length > 0) {
  console.error('playground check failed: requests to other hosts or errors in the page');
  process.exit(1);
}
