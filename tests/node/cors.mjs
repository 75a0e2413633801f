// Opens pages in headless Chromium whose own script calls an API on another origin, and
// prints what each script saw as JSON: `[{ page, ok, status, body } | { page, ok: false, error }]`.
//   node cors.mjs PAGE_URL...
// Each page must set `window.apiResult` to a promise of `{ ok, status, body }` or
// `{ ok: false, error }`; the browser, not this script, decides whether the call may go
// through and whether the page may read its answer.
import { launchChromium } from './chromium.mjs';

const pages = process.argv.slice(2);
if (pages.length === 0) throw new Error('usage: node cors.mjs PAGE_URL...');

const browser = await launchChromium();
const results = [];
try {
  for (const url of pages) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const response = await page.goto(url, { waitUntil: 'load', timeout: 30_000 });
    if (!response || response.status() !== 200) {
      throw new Error(`GET ${url} answered ${response && response.status()}`);
    }
    await page.waitForFunction(() => window.apiResult !== undefined, null, { timeout: 30_000 });
    const result = await page.evaluate(() => window.apiResult);
    results.push({ page: url, ...result });
    await context.close();
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(results, null, 2));
