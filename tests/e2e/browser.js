// Drives Debian's headless Chromium with playwright-core (no downloaded browser): loads the
// page twice — with a Bearer token and without — and records what the page shows and what the
// browser's network layer saw. Writes $E2E_OUT (JSON) and screenshots into $E2E_ARTIFACTS.
'use strict';
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

async function visit(context, url, shot) {
  const page = await context.newPage();
  const seen = { network: [], failures: [] };
  // The DevTools protocol reports what reached the browser's network layer even when CORS then
  // hides the response from the page.
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const methods = {};
  cdp.on('Network.requestWillBeSent', (e) => { methods[e.requestId] = e.request.method; });
  cdp.on('Network.responseReceived', (e) => {
    if (e.response.url.includes('/api/whoami')) {
      seen.network.push({ method: methods[e.requestId] ?? null, type: e.type, status: e.response.status });
    }
  });
  cdp.on('Network.loadingFailed', (e) => {
    seen.failures.push({ error: e.errorText, cors: e.corsErrorStatus?.corsError ?? null });
  });
  await page.goto(url, { timeout: 30000 });
  await page.waitForFunction(() => document.title === 'done', null, { timeout: 30000 });
  const result = await page.evaluate(() => window.e2eResult);
  seen.status = result.status;
  try { seen.body = JSON.parse(result.body); } catch (e) { seen.body = result.body ?? null; }
  seen.page_text = await page.locator('#out').innerText();
  await page.screenshot({ path: shot, fullPage: true });
  await page.close();
  return seen;
}

(async () => {
  const context = await chromium.launchPersistentContext(process.env.E2E_PROFILE, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    timeout: 60000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    const dir = process.env.E2E_ARTIFACTS;
    const page = process.env.E2E_PAGE;
    const withToken = await visit(context, `${page}#marker=browser-token&token=${process.env.E2E_TOKEN}`,
      path.join(dir, 'browser-with-token.png'));
    const withoutToken = await visit(context, `${page}#marker=browser-no-token`,
      path.join(dir, 'browser-without-token.png'));
    fs.writeFileSync(process.env.E2E_OUT, JSON.stringify({ with_token: withToken, without_token: withoutToken }));
  } finally {
    await context.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
