// Browser sign-in through Portcullis (SPEC §8), driven in Debian's headless Chromium by
// playwright-core. For every app in the plan ($E2E_LOGIN_PLAN, written by tests/e2e/signin.py)
// and at the same time (so the wait across an access-token expiry is paid once), two browser
// contexts (two browsers' worth of cookies):
//   admin:  a protected page → the provider's sign-in form → back on that page, showing the sub
//           and groups the app received; the session cookie's attributes; the admin page; a burst
//           of fetch() calls when a refresh is due (one refresh at the provider); a navigation after
//           the sign-in's access token really expired (no visible redirect); sign-out to
//           after_logout_url; fetch() with no session gets 401s, never a redirect; the next
//           navigation asks for sign-in again; the old session cookie put back is dead.
//   reader: signs in, is refused (403) on the admin page.
// Each step is recorded as {name, ok, error, info}; an app's flow stops at its first failed step.
// Writes plan.out (JSON) and screenshots into plan.artifacts. Never prints a token or a cookie.
'use strict';
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const plan = JSON.parse(fs.readFileSync(process.env.E2E_LOGIN_PLAN, 'utf8'));
const STEP_TIMEOUT = 30000;
const results = {};
const screenshots = [];

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function stats(who) {
  const r = await fetch(plan.stats_url, { signal: AbortSignal.timeout(10000) });
  assert.equal(r.status, 200, `provider stats: ${r.status}`);
  return (await r.json())[who] ?? {};
}

const n = (s, key) => s[key] ?? 0;

// Wait until the wall clock passes `epochSeconds` (a token's exp, or the moment a refresh is due).
async function waitUntilEpoch(epochSeconds, what) {
  const ms = epochSeconds * 1000 - Date.now();
  assert.ok(ms < (plan.access_ttl + 30) * 1000, `${what}: would wait ${ms} ms`);
  if (ms > 0) await sleep(ms);
}

// The redirect chain that ended in `response`: [{method, url, status}], first request first.
async function chain(response) {
  const hops = [];
  let req = response.request();
  hops.unshift({ method: req.method(), url: req.url(), status: response.status() });
  for (req = req.redirectedFrom(); req; req = req.redirectedFrom()) {
    const r = await req.response();
    hops.unshift({ method: req.method(), url: req.url(), status: r ? r.status() : null });
  }
  return hops;
}

// A redirect chain for the record: "302 /app/page", "303 /oauth2/authorize", …
function route(hops) {
  return hops.map((h) => `${h.status} ${new URL(h.url).pathname}`);
}

// What the app echoed (the apps answer JSON; Chromium shows it as text).
async function echoed(page) {
  const text = await page.evaluate(() => document.body.innerText);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`page is not the app's echo: ${text.slice(0, 200)}`);
  }
}

function marker(app, what) {
  return `login-${app}-${what}-${Math.random().toString(36).slice(2, 10)}`;
}

async function shot(page, app, name) {
  const file = path.join(plan.artifacts, `login-${app}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  screenshots.push(file);
  return file;
}

function header(seen, name) {
  const found = (seen.headers || []).filter(([k]) => k.toLowerCase() === name.toLowerCase());
  assert.ok(found.length <= 1, `${found.length} ${name} headers reached the app`);
  return found.length ? found[0][1] : null;
}

function appCookieNames(seen) {
  return Object.keys(seen.cookies || {});
}

// Fills in the provider's sign-in form and submits it; returns the response that ends the
// redirects back (the page the browser lands on).
async function submitSignIn(page, user, landing) {
  await page.fill('#username', user);
  await page.fill('#password', plan.users[user].password);
  const [response] = await Promise.all([
    page.waitForNavigation({ url: landing, timeout: STEP_TIMEOUT }),
    page.click('button[type=submit]'),
  ]);
  return response;
}

function onSignInForm(page) {
  const url = new URL(page.url());
  return url.origin === plan.op_origin && url.pathname === '/login';
}

// --- one app, one signed-in admin ------------------------------------------------------------

async function adminFlow(browser, app, cfg, step) {
  const { base } = cfg;
  const who = `${cfg.client_id}/admin`;
  const admin = plan.users.admin;
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);
  const target = `${base}/app/page?x=1&e2e=${marker(app, 'first')}`;
  // Every credential the browser saw for this app: none may appear in Portcullis's log.
  const seenSecrets = new Set();
  const keep = async () => {
    for (const c of await context.cookies(base)) if (c.name.startsWith('__Host-')) seenSecrets.add(c.value);
  };
  page.on('request', (req) => {
    const url = new URL(req.url());
    for (const p of ['code', 'state']) if (url.searchParams.get(p)) seenSecrets.add(url.searchParams.get(p));
  });
  let signedInAt;
  let firstExp;
  let oldCookie;
  try {
    await step('navigation_is_sent_to_sign_in', async () => {
      const response = await page.goto(target);
      const hops = await chain(response);
      assert.equal(hops[0].url, target);
      assert.equal(hops[0].status, 302, `Portcullis answered the navigation with ${hops[0].status}`);
      const authorize = new URL(hops[1].url);
      assert.equal(`${authorize.origin}${authorize.pathname}`, plan.authorize, 'redirected elsewhere');
      const q = authorize.searchParams;
      assert.equal(q.get('response_type'), 'code');
      assert.equal(q.get('client_id'), cfg.client_id);
      assert.equal(q.get('redirect_uri'), `${base}/.portcullis/callback`);
      assert.ok((q.get('scope') || '').split(' ').includes('openid'), 'scope without openid');
      assert.equal(q.get('code_challenge_method'), 'S256');
      for (const p of ['state', 'nonce', 'code_challenge']) {
        assert.ok((q.get(p) || '').length >= 16, `${p} missing or short`);
      }
      assert.ok(onSignInForm(page), `not on the sign-in form: ${page.url()}`);
      await page.waitForSelector('#username');
      await keep(); // the login cookie
      return { hops: route(hops), screenshot: await shot(page, app, '1-sign-in') };
    });

    await step('sign_in_lands_on_requested_page', async () => {
      const response = await submitSignIn(page, 'admin', target);
      signedInAt = Date.now() / 1000;
      assert.equal(page.url(), target, 'did not land on the page asked for');
      assert.equal(response.status(), 200);
      const hops = await chain(response);
      const callback = hops.find((h) => h.url.startsWith(`${base}/.portcullis/callback`));
      assert.ok(callback, `no callback in ${hops.map((h) => h.url).join(' → ')}`);
      assert.equal(callback.status, 303, `callback answered ${callback.status}`);
      const seen = await echoed(page);
      assert.equal(seen.sub, admin.sub, 'the app received another sub');
      assert.equal(seen.groups, 'Admins', 'the app received other groups');
      assert.equal(seen.path, '/app/page');
      // The session's id+access pair: claim headers from the id token, then the access token.
      assert.equal(header(seen, 'X-User-Email'), admin.email, 'X-User-Email (id token claim)');
      assert.equal(header(seen, 'X-User-Username'), 'admin', 'X-User-Username (access token claim)');
      const cookies = await context.cookies(base);
      const ours = cookies.filter((c) => c.name.startsWith('__Host-')).map((c) => c.name);
      for (const name of ours) assert.ok(!appCookieNames(seen).includes(name), `${name} reached the app`);
      const headerNames = (seen.headers || []).map(([k]) => k.toLowerCase());
      assert.ok(!headerNames.includes('authorization'), 'an Authorization header reached the app');
      firstExp = n(await stats(who), 'last_access_token_exp');
      assert.ok(firstExp > 0, 'the provider issued no access token');
      return { screenshot: await shot(page, app, '2-app-page'), hops: route(hops) };
    });

    await step('session_cookie_attributes', async () => {
      const cookies = await context.cookies(base);
      const session = cookies.find((c) => c.name === plan.session_cookie);
      assert.ok(session, `no ${plan.session_cookie} cookie (have: ${cookies.map((c) => c.name).join(', ')})`);
      assert.equal(session.httpOnly, true, 'not HttpOnly');
      assert.equal(session.secure, true, 'not Secure');
      assert.equal(session.sameSite, 'Lax', `SameSite=${session.sameSite}`);
      assert.equal(session.path, '/');
      assert.equal(session.domain, '127.0.0.1', 'not host-only');
      const bytes = session.name.length + 1 + session.value.length;
      assert.ok(bytes <= 3500, `session cookie is ${bytes} bytes`);
      const split = cookies.filter((c) => c.name !== session.name && c.name.startsWith(session.name));
      assert.equal(split.length, 0, `session split into ${split.map((c) => c.name).join(', ')}`);
      assert.equal(await page.evaluate(() => document.cookie.includes('__Host-')), false, 'script can read the cookie');
      oldCookie = session;
      await keep();
      return { session_cookie_bytes: bytes };
    });

    await step('admin_page_allowed_for_admin', async () => {
      const url = `${base}/admin/panel?e2e=${marker(app, 'admin')}`;
      const response = await page.goto(url);
      assert.equal(response.status(), 200);
      assert.equal(response.request().redirectedFrom(), null, 'redirected');
      const seen = await echoed(page);
      assert.equal(seen.handler, 'admin');
      assert.equal(seen.sub, admin.sub);
      return {};
    });

    await step('refresh_burst_is_single_flight', async () => {
      // Once the newest access token expires within the refresh margin, one refresh is due. Ten
      // fetch() calls at once must cause exactly one refresh at the provider (SECURITY LOGIN-07).
      const before = await stats(who);
      await waitUntilEpoch(n(before, 'last_access_token_exp') - plan.refresh_margin + 1, 'refresh due');
      const marks = Array.from({ length: 10 }, (_, i) => marker(app, `burst${i}`));
      const replies = await page.evaluate(async (ms) => Promise.all(ms.map(async (m) => {
        const r = await fetch(`/api/whoami?e2e=${m}`, { redirect: 'manual' });
        return { status: r.status, type: r.type, body: await r.text() };
      })), marks);
      for (const r of replies) {
        assert.equal(r.status, 200, `a fetch in the burst got ${r.status} (${r.type})`);
        assert.equal(JSON.parse(r.body).sub, admin.sub);
      }
      const after = await stats(who);
      const refreshed = n(after, 'refresh_token:ok') - n(before, 'refresh_token:ok');
      await keep(); // the cookie with the rotated refresh token
      const refused = n(after, 'refresh_token:invalid_grant') - n(before, 'refresh_token:invalid_grant');
      assert.equal(refreshed, 1, `${refreshed} refreshes at the provider for one burst (${refused} refused)`);
      assert.equal(n(after, 'refresh_token:invalid_grant'), 0,
        `refreshes refused at the provider: ${n(after, 'refresh_token:invalid_grant')}, ${refused} in the burst`);
      const rotated = n(after, 'refresh_token:rotated') - n(before, 'refresh_token:rotated');
      assert.equal(rotated, 1, 'refresh token not rotated');
      return { fetches: replies.length, refreshes: refreshed };
    });

    await step('browsing_across_access_token_expiry_without_redirect', async () => {
      // Past the expiry of the access token the sign-in got: browsing goes on, no redirect.
      await waitUntilEpoch(firstExp + 1, 'first access token expiry');
      const before = await stats(who);
      const url = `${base}/app/later?e2e=${marker(app, 'later')}`;
      const response = await page.goto(url);
      assert.equal(response.status(), 200);
      assert.equal(response.request().redirectedFrom(), null, 'the navigation was redirected');
      assert.equal(page.url(), url);
      const seen = await echoed(page);
      assert.equal(seen.sub, admin.sub);
      assert.equal(seen.groups, 'Admins');
      const after = await stats(who);
      assert.ok(n(after, 'refresh_token:ok') > n(before, 'refresh_token:ok'), 'no refresh at the provider');
      assert.equal(n(after, 'refresh_token:invalid_grant'), 0, 'a refresh was refused');
      assert.ok(Date.now() / 1000 > firstExp, 'not past the first access token expiry');
      const seconds = Math.round(Date.now() / 1000 - signedInAt);
      return { seconds_after_sign_in: seconds, refreshes: n(after, 'refresh_token:ok') };
    });

    await step('sign_out_lands_on_after_logout_url', async () => {
      const before = await stats(who);
      const stored = (await context.cookies(base)).find((c) => c.name === plan.session_cookie);
      assert.ok(stored, 'no session cookie before sign-out');
      oldCookie = stored; // the latest one (refreshes rewrite it)
      // A "Sign out" button: a same-origin form POST to /.portcullis/logout.
      const [response] = await Promise.all([
        page.waitForNavigation({ url: cfg.after_logout_url, timeout: STEP_TIMEOUT }),
        page.evaluate(() => {
          const form = document.createElement('form');
          form.method = 'POST';
          form.action = '/.portcullis/logout';
          document.body.appendChild(form);
          form.submit();
        }),
      ]);
      assert.equal(page.url(), cfg.after_logout_url);
      const hops = await chain(response);
      assert.equal(hops[0].method, 'POST');
      assert.equal(hops[0].status, 303, `logout answered ${hops[0].status}`);
      const logout = new URL(hops[1].url);
      assert.equal(`${logout.origin}${logout.pathname}`, plan.logout, 'not sent to the provider\'s /logout');
      assert.equal(logout.searchParams.get('client_id'), cfg.client_id);
      assert.equal(logout.searchParams.get('logout_uri'), cfg.after_logout_url);
      const cookies = await context.cookies(base);
      assert.ok(!cookies.some((c) => c.name === plan.session_cookie), 'session cookie not cleared');
      const after = await stats(who);
      assert.equal(n(after, 'revoke:RefreshToken') - n(before, 'revoke:RefreshToken'), 1, 'refresh token not revoked');
      const ended = n(after, 'logout:session_ended') - n(before, 'logout:session_ended');
      assert.equal(ended, 1, 'hosted-UI session not ended');
      return { screenshot: await shot(page, app, '3-signed-out'), hops: route(hops) };
    });

    const fetchMarks = [marker(app, 'fetch-api'), marker(app, 'fetch-page'), marker(app, 'fetch-html')];
    await step('fetch_without_session_gets_401_never_redirect', async () => {
      const replies = await page.evaluate(async (ms) => {
        const call = async (url, init) => {
          const r = await fetch(url, init);
          return { status: r.status, type: r.type, redirected: r.redirected, www: r.headers.get('www-authenticate') };
        };
        return [
          await call(`/api/whoami?e2e=${ms[0]}`, { redirect: 'manual' }),
          await call(`/app/page?e2e=${ms[1]}`, {}),
          // Sec-Fetch-Mode says this is no navigation, whatever Accept says.
          await call(`/app/page?e2e=${ms[2]}`, { headers: { Accept: 'text/html' }, redirect: 'manual' }),
        ];
      }, fetchMarks);
      for (const r of replies) {
        assert.equal(r.type, 'basic', `fetch saw a ${r.type} response (a redirect?)`);
        assert.equal(r.status, 401, `fetch got ${r.status}`);
        assert.equal(r.redirected, false);
        assert.ok((r.www || '').startsWith('Bearer'), `WWW-Authenticate: ${r.www}`);
      }
      return { markers: fetchMarks };
    });

    await step('next_navigation_asks_for_sign_in_again', async () => {
      const url = `${base}/app/page?e2e=${marker(app, 'again')}`;
      const response = await page.goto(url);
      const hops = await chain(response);
      assert.equal(hops[0].status, 302);
      assert.ok(onSignInForm(page), `not on the sign-in form: ${page.url()}`);
      await page.waitForSelector('#username');
      return { screenshot: await shot(page, app, '4-sign-in-again') };
    });

    await step('old_session_cookie_dead_after_sign_out', async () => {
      // The cookie from before sign-out, put back: its refresh token was revoked and its tokens
      // dropped, so it is no session (SECURITY LOGIN-08).
      const before = await stats(who);
      await context.addCookies([{ ...oldCookie }]);
      const url = `${base}/app/page?e2e=${marker(app, 'replay')}`;
      const response = await page.goto(url);
      const hops = await chain(response);
      assert.equal(hops[0].status, 302, `old cookie: ${hops[0].status}`);
      assert.ok(onSignInForm(page), `old cookie did not lead to sign-in: ${page.url()}`);
      const after = await stats(who);
      assert.equal(n(after, 'refresh_token:ok'), n(before, 'refresh_token:ok'), 'the revoked refresh token worked');
      return {};
    });

    await step('portcullis_log_holds_no_credential', async () => {
      // SECURITY LOGIN-06: no cookie value, code or state in any line Portcullis logged.
      await keep();
      const log = fs.readFileSync(cfg.log, 'utf8');
      assert.ok(log.includes('"status":'), 'Portcullis logged no request');
      const values = [...seenSecrets].filter((v) => v.length >= 16);
      assert.ok(values.length >= 4, `only ${values.length} credentials seen`);
      const leaked = values.filter((v) => log.includes(v));
      assert.equal(leaked.length, 0, `${leaked.length} of ${values.length} credentials appear in the log`);
      return { checked: values.length, log_bytes: log.length };
    });
  } finally {
    await context.close();
  }
}

// --- one app, one reader ---------------------------------------------------------------------

async function readerFlow(browser, app, cfg, step) {
  const { base } = cfg;
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);
  try {
    await step('reader_signs_in', async () => {
      const target = `${base}/app/reader?e2e=${marker(app, 'reader')}`;
      await page.goto(target);
      assert.ok(onSignInForm(page), `not on the sign-in form: ${page.url()}`);
      await submitSignIn(page, 'reader', target);
      const seen = await echoed(page);
      assert.equal(seen.sub, plan.users.reader.sub);
      assert.equal(seen.groups, 'Readers');
      return {};
    });
    const refused = marker(app, 'reader-admin');
    await step('reader_refused_on_admin_page', async () => {
      const url = `${base}/admin/panel?e2e=${refused}`;
      const response = await page.goto(url);
      assert.equal(response.status(), 403, `reader on the admin page: ${response.status()}`);
      assert.equal(response.request().redirectedFrom(), null, 'redirected');
      assert.equal(page.url(), url);
      return { marker: refused, screenshot: await shot(page, app, '5-reader-403') };
    });
  } finally {
    await context.close();
  }
}

function stepper(app) {
  results[app] ??= { steps: [] };
  let failed = false;
  return async (name, fn) => {
    if (failed) {
      results[app].steps.push({ name, ok: false, error: 'not reached (an earlier step failed)' });
      throw new Error('stopped');
    }
    try {
      const info = await fn();
      results[app].steps.push({ name, ok: true, info });
      console.log(`login.js: ${app} ${name}: ok`);
    } catch (e) {
      failed = true;
      results[app].steps.push({ name, ok: false, error: String(e && e.message ? e.message : e) });
      console.log(`login.js: ${app} ${name}: FAILED: ${e && e.message}`);
      throw e;
    }
  };
}

(async () => {
  const deadline = setTimeout(() => {
    console.error('login.js: overall deadline passed');
    fs.writeFileSync(plan.out, JSON.stringify({ apps: results, screenshots, deadline: true }));
    process.exit(2);
  }, (plan.access_ttl + 120) * 1000);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    timeout: 60000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    const flows = [];
    for (const [app, cfg] of Object.entries(plan.apps)) {
      const admin = stepper(`${app}`);
      const reader = stepper(`${app}:reader`);
      flows.push(adminFlow(browser, app, cfg, admin).catch(() => {}));
      flows.push(readerFlow(browser, app, cfg, reader).catch(() => {}));
    }
    await Promise.all(flows);
  } finally {
    await browser.close();
    clearTimeout(deadline);
  }
  fs.writeFileSync(plan.out, JSON.stringify({ apps: results, screenshots }));
  for (const file of screenshots) console.log(`login.js: screenshot ${file}`);
})().catch((e) => {
  console.error(e);
  fs.writeFileSync(plan.out, JSON.stringify({ apps: results, screenshots, error: String(e) }));
  process.exit(1);
});
