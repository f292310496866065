// A Cognito-shaped OpenID provider for the e2e sign-in proof (README "End-to-end proof"), built on
// the certified npm package `oidc-provider` (version pinned in package-lock.json). It serves what a
// Cognito user pool plus its domain serve, at Cognito's paths:
//   /oauth2/authorize  /oauth2/token  /oauth2/revoke  /oauth2/userInfo  /logout  /login
//   /<pool>/.well-known/openid-configuration  /<pool>/.well-known/jwks.json
// with issuer http://127.0.0.1:<port>/<pool>, RS256 keys made at start, PKCE S256 required,
// confidential (client_secret_basic) and public (`none`) app clients, refresh-token rotation, and
// tokens with Cognito's claims: access tokens as JWTs with token_use, client_id, cognito:groups,
// scope, username, origin_jti; id tokens with aud, nonce, at_hash, token_use, cognito:groups,
// cognito:username, email and the same origin_jti. Refresh tokens are opaque and Cognito-sized.
//
// /logout mimics Cognito's LOGOUT endpoint: `client_id` + `logout_uri` (a registered sign-out
// URL), ends the hosted-UI session and redirects there (oidc-provider's own end_session shows a
// confirm page instead, so it is moved out of the way to /oidc/session/end).
//
// Test-only: GET /_e2e/stats answers counters per "<client_id>/<username>" (grants, refresh
// results, revocations, logouts) and the expiry of the last access token issued, so the driver can
// prove what Portcullis did at the provider. Nothing else here is test-specific.
//
// Config: JSON file named by $E2E_OP_CONFIG (written by tests/e2e/driver.py):
//   {port, pool, access_ttl, node_modules, clients: [{client_id, client_secret?, redirect_uris,
//    post_logout_redirect_uris}], users: {name: {sub, password, groups, email}}}
// Listens on 127.0.0.1 only. Logs one line per token and revoke request, naming refresh tokens by
// a fingerprint (8 hex digits of their SHA-256); never a token, code or cookie.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

const config = JSON.parse(fs.readFileSync(process.env.E2E_OP_CONFIG, 'utf8'));
// oidc-provider is ESM-only and ESM ignores NODE_PATH: resolve it in the cached node_modules.
const resolveIn = createRequire(path.join(config.node_modules, 'resolve-from-here.js'));
const { default: Provider } = await import(pathToFileURL(resolveIn.resolve('oidc-provider')).href);

const POOL = config.pool;
const ISSUER = `http://127.0.0.1:${config.port}/${POOL}`;
const RESOURCE = `urn:portcullis-e2e:${POOL}`; // oidc-provider needs one for JWT access tokens
const SCOPES = 'openid email profile phone aws.cognito.signin.user.admin';
const ACCESS_TTL = config.access_ttl;
// A real Cognito refresh token is a ~1.8 KB JWE; an opaque one of the same length makes the
// session cookie as big as it is in production.
const REFRESH_TOKEN_CHARS = 1784;

const usersBySub = new Map(Object.entries(config.users).map(([name, u]) => [u.sub, { name, ...u }]));

// --- counters for the driver -------------------------------------------------------------------
const stats = {};
const who = (clientId, accountId) => `${clientId}/${usersBySub.get(accountId)?.name ?? '-'}`;
function count(clientId, accountId, key, by = 1) {
  const w = who(clientId, accountId);
  stats[w] ??= {};
  stats[w][key] = (stats[w][key] ?? 0) + by;
}
const fingerprint = (value) => (value ? crypto.createHash('sha256').update(String(value)).digest('hex').slice(0, 8)
  : '-');

// Cognito's origin_jti names one sign-in (one refresh-token family). Every sign-in here gets its
// own grant (see loadExistingGrant), kept across refreshes, so it is derived from the grant id.
function originJti(grantId) {
  const h = crypto.createHash('sha256').update(`origin:${grantId}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function authTime(ctx) {
  const source = ctx?.oidc?.entities?.AuthorizationCode ?? ctx?.oidc?.entities?.RefreshToken;
  return source?.authTime;
}

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = {
  ...privateKey.export({ format: 'jwk' }), kid: crypto.randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig',
};

const provider = new Provider(ISSUER, {
  clients: config.clients.map((c) => ({
    client_id: c.client_id,
    ...(c.client_secret ? { client_secret: c.client_secret, token_endpoint_auth_method: 'client_secret_basic' }
      : { token_endpoint_auth_method: 'none' }),
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: c.redirect_uris,
    post_logout_redirect_uris: c.post_logout_redirect_uris,
    scope: SCOPES, // the app client's allowed OAuth scopes
  })),
  jwks: { keys: [jwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  routes: {
    authorization: '/oauth2/authorize',
    token: '/oauth2/token',
    revocation: '/oauth2/revoke',
    userinfo: '/oauth2/userInfo',
    jwks: `/${POOL}/.well-known/jwks.json`,
    end_session: '/oidc/session/end', // Cognito's /logout is the shim below
  },
  responseTypes: ['code'],
  clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'none'], // Cognito's
  pkce: { required: () => true }, // S256 is the only method oidc-provider accepts
  scopes: ['openid', 'phone', 'aws.cognito.signin.user.admin'],
  claims: {
    openid: ['sub', 'cognito:username', 'cognito:groups'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  // Every claim of the granted scopes goes into the id token, as Cognito does.
  conformIdTokenClaims: false,
  async findAccount(ctx, sub) {
    const user = usersBySub.get(sub);
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        return {
          sub, 'cognito:username': user.name, 'cognito:groups': user.groups, email: user.email,
          email_verified: true, name: user.name,
        };
      },
    };
  },
  features: {
    devInteractions: { enabled: false }, // the sign-in page is ours (/login)
    dPoP: { enabled: false }, // Cognito has neither DPoP nor PAR
    pushedAuthorizationRequests: { enabled: false },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true }, // only for post_logout_redirect_uris (Cognito's sign-out URLs)
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async () => ({
        scope: SCOPES,
        audience: RESOURCE,
        accessTokenTTL: ACCESS_TTL,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  formats: {
    bitsOfOpaqueRandomness: (ctx, token) => (token.kind === 'RefreshToken' ? REFRESH_TOKEN_CHARS * 6 : 256),
    customizers: {
      // The access token's claims, shaped like Cognito's (RFC 9068's `aud` stays: oidc-provider
      // refuses a JWT access token without one; Portcullis decides on `client_id` when present).
      async jwt(ctx, token, jwt) {
        const user = usersBySub.get(token.accountId);
        Object.assign(jwt.payload, {
          token_use: 'access',
          'cognito:groups': user.groups,
          username: user.name,
          origin_jti: originJti(token.grantId),
          event_id: crypto.randomUUID(),
          auth_time: authTime(ctx),
          version: 2,
        });
        count(token.clientId, token.accountId, 'access_tokens');
        stats[who(token.clientId, token.accountId)].last_access_token_exp = jwt.payload.exp;
      },
    },
  },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'), // no offline_access
  expiresWithSession: async () => false, // Cognito refresh tokens outlive the hosted-UI session
  rotateRefreshToken: () => true,
  // A fresh grant for every sign-in, made by the /login page; never reuse an older one.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId;
    return grantId ? ctx.oidc.provider.Grant.find(grantId) : undefined;
  },
  interactions: {
    url: async (ctx, i) => `/login?client_id=${encodeURIComponent(i.params.client_id)}&uid=${i.uid}`,
  },
  ttl: {
    AccessToken: ACCESS_TTL,
    IdToken: ACCESS_TTL,
    AuthorizationCode: 300,
    RefreshToken: 24 * 3600,
    Grant: 24 * 3600,
    Session: 3600,
    Interaction: 600,
  },
  clientBasedCORS: () => false,
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = page('Error', `<p class="error">${esc(out.error)}: ${esc(out.error_description ?? '')}</p>`);
  },
});

// at_hash and Cognito's id-token claims. oidc-provider only puts at_hash in id tokens from the
// authorization endpoint; Cognito puts it in those from the token endpoint too, so the access
// token's value is remembered when it is minted and hashed into the id token of the same response.
const accessTokenValues = new WeakMap();
const saveAccessToken = provider.AccessToken.prototype.save;
provider.AccessToken.prototype.save = async function save(...args) {
  const value = await saveAccessToken.apply(this, args);
  accessTokenValues.set(this, value);
  return value;
};
const issueIdToken = provider.IdToken.prototype.issue;
provider.IdToken.prototype.issue = async function issue(opts) {
  if (opts?.use === 'idtoken') {
    const at = this.ctx?.oidc?.entities?.AccessToken;
    if (at && accessTokenValues.has(at)) this.set('at_hash', accessTokenValues.get(at));
    this.set('token_use', 'id');
    const grantId = at?.grantId ?? this.ctx?.oidc?.entities?.Grant?.jti;
    if (grantId) this.set('origin_jti', originJti(grantId));
    this.set('event_id', crypto.randomUUID());
    this.set('jti', crypto.randomUUID());
  }
  return issueIdToken.call(this, opts);
};

// Count what the clients did, after oidc-provider answered.
provider.use(async (ctx, next) => {
  await next();
  const oidc = ctx.oidc;
  if (!oidc?.client) return;
  const clientId = oidc.client.clientId;
  if (oidc.route === 'token') {
    const gty = oidc.params?.grant_type;
    const accountId = oidc.entities.RefreshToken?.accountId ?? oidc.entities.AuthorizationCode?.accountId;
    const outcome = ctx.status === 200 ? 'ok' : ctx.body?.error ?? `status_${ctx.status}`;
    count(clientId, accountId, `${gty}:${outcome}`);
    if (oidc.entities.RotatedRefreshToken && ctx.status === 200) count(clientId, accountId, 'refresh_token:rotated');
    // A fingerprint names a refresh token in the log without revealing it.
    const used = gty === 'refresh_token' ? ` rt=${fingerprint(oidc.params?.refresh_token)}` : '';
    const rt = ctx.status === 200 ? ctx.body?.refresh_token : undefined;
    const issued = rt ? ` new_rt=${fingerprint(rt)}` : '';
    const why = ctx.status === 200 ? '' : ` (${ctx.body?.error_description ?? ''})`;
    console.log(`token ${gty} ${who(clientId, accountId)} ${outcome}${why}${used}${issued}`);
  } else if (oidc.route === 'revocation') {
    const revoked = oidc.entities.RefreshToken ?? oidc.entities.AccessToken;
    count(clientId, revoked?.accountId, revoked ? `revoke:${revoked.kind}` : `revoke:status_${ctx.status}`);
    console.log(`revoke ${who(clientId, revoked?.accountId)} ${revoked?.kind ?? 'unknown token'} ${ctx.status}`
      + ` rt=${fingerprint(oidc.params?.token)}`);
  }
});

// --- pages -------------------------------------------------------------------------------------
function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font:16px sans-serif;background:#f2f3f3;margin:0}main{background:#fff;width:22em;margin:3em auto;
padding:1.5em 2em;border-radius:4px;box-shadow:0 1px 3px #999}h1{font-size:1.3em}label{display:block;margin:.8em 0 .2em}
input{width:100%;box-sizing:border-box;padding:.4em;font-size:1em}button{margin-top:1.2em;width:100%;padding:.6em;
background:#ec7211;color:#fff;border:0;font-weight:bold;font-size:1em}.error{color:#d13212}
.pool{color:#666;font-size:.8em}</style>
</head><body><main>${body}</main></body></html>`;
}

function send(res, status, type, body, headers = {}) {
  res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store', ...headers });
  res.end(body);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16384) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function loginForm(uid, clientId, error) {
  const action = `/login?client_id=${encodeURIComponent(clientId)}&uid=${encodeURIComponent(uid)}`;
  return page('Sign in', `<h1>Sign in with your username and password</h1>
<p class="pool">User pool ${esc(POOL)} · app client ${esc(clientId)}</p>
${error ? `<p class="error" id="error">${esc(error)}</p>` : ''}
<form method="post" action="${esc(action)}">
<label for="username">Username</label><input id="username" name="username" autocomplete="username" required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" name="signInSubmitButton">Sign in</button>
</form>`);
}

// One grant per sign-in with every scope the client asked for: consent is implied, as for a
// Cognito app client whose allowed scopes were set by the pool's owner.
async function grantFor(details, accountId) {
  const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  grant.addResourceScope(RESOURCE, details.params.scope);
  return grant.save();
}

// Cognito's hosted-UI sign-in page.
async function login(req, res, url) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch {
    const msg = 'This sign-in has expired. Go back to the app and try again.';
    send(res, 400, 'text/html; charset=utf-8', page('Sign in', `<p class="error">${msg}</p>`));
    return;
  }
  const clientId = details.params.client_id;
  if (url.searchParams.get('uid') !== details.uid) {
    send(res, 400, 'text/html; charset=utf-8', page('Sign in', '<p class="error">Sign-in request mismatch.</p>'));
    return;
  }
  if (details.prompt.name !== 'login') {
    // Already signed in to the hosted UI: a new authorization needs no form (consent is implied).
    const grantId = await grantFor(details, details.session.accountId);
    count(clientId, details.session.accountId, 'login:session');
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  if (req.method === 'GET') {
    send(res, 200, 'text/html; charset=utf-8', loginForm(details.uid, clientId));
    return;
  }
  if (req.method !== 'POST') {
    send(res, 405, 'text/plain', 'method not allowed\n', { Allow: 'GET, POST' });
    return;
  }
  const form = await readForm(req);
  const user = config.users[form.get('username') ?? ''];
  if (!user || form.get('password') !== user.password) {
    count(clientId, undefined, 'login:bad_password');
    send(res, 200, 'text/html; charset=utf-8', loginForm(details.uid, clientId, 'Incorrect username or password.'));
    return;
  }
  const grantId = await grantFor(details, user.sub);
  count(clientId, user.sub, 'login:password');
  await provider.interactionFinished(req, res, {
    login: { accountId: user.sub, amr: ['pwd'] },
    consent: { grantId },
  }, { mergeWithLastSubmission: false });
}

// Cognito's LOGOUT endpoint: GET /logout?client_id=…&logout_uri=… (logout_uri must be one of the
// app client's sign-out URLs). Ends the hosted-UI session, then 302 to logout_uri.
async function logout(req, res, url) {
  const clientId = url.searchParams.get('client_id');
  const logoutUri = url.searchParams.get('logout_uri');
  const client = clientId ? await provider.Client.find(clientId) : undefined;
  if (!client) {
    send(res, 400, 'text/html; charset=utf-8', page('Error', '<p class="error">invalid_request: bad client_id</p>'));
    return;
  }
  if (!logoutUri || !client.postLogoutRedirectUriAllowed(logoutUri)) {
    count(clientId, undefined, 'logout:bad_logout_uri');
    send(res, 400, 'text/html; charset=utf-8', page('Error', '<p class="error">redirect_mismatch</p>'));
    return;
  }
  const session = await provider.Session.get({ req, res });
  if (session && !session.new && session.accountId) {
    count(clientId, session.accountId, 'logout:session_ended');
    await session.destroy();
  } else {
    count(clientId, undefined, 'logout:no_session');
  }
  const expired = 'Path=/; Max-Age=0; HttpOnly; SameSite=Lax';
  const name = provider.cookieName('session');
  send(res, 302, 'text/plain', '', {
    Location: logoutUri,
    'Set-Cookie': [`${name}=; ${expired}`, `${name}.sig=; ${expired}`],
  });
}

// --- server ------------------------------------------------------------------------------------
const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, ISSUER);
  try {
    if (url.pathname === '/login') {
      await login(req, res, url);
    } else if (url.pathname === '/logout' && req.method === 'GET') {
      await logout(req, res, url);
    } else if (url.pathname === `/${POOL}/.well-known/openid-configuration`) {
      // Cognito serves discovery under the issuer; oidc-provider serves it at its mount point.
      req.url = '/.well-known/openid-configuration';
      callback(req, res);
    } else if (url.pathname === '/_e2e/stats' && req.method === 'GET') {
      send(res, 200, 'application/json', JSON.stringify(stats));
    } else if (url.pathname === '/oidc/session/end' || url.pathname.startsWith('/oidc/session/end/')) {
      send(res, 404, 'text/plain', 'not found (Cognito has no end_session endpoint; use /logout)\n');
    } else {
      callback(req, res);
    }
  } catch (e) {
    console.error(`error on ${req.method} ${url.pathname}: ${e?.message}`);
    if (!res.headersSent) send(res, 500, 'text/plain', 'internal error\n');
    else res.destroy();
  }
});
provider.on('server_error', (ctx, err) => console.error(`server_error on ${ctx.path}: ${err?.message}`));
server.listen(config.port, '127.0.0.1', () => {
  console.log(`cognito-shaped OP listening: issuer ${ISSUER}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
