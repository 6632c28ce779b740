// Interop-test OpenID provider for logto_middleware.
//
// Runs the `oidc-provider` engine (the one Logto is built on) configured the
// way Logto configures it, with a one-form login page and a few `/__*`
// test-control endpoints. Test-only: in-memory storage, keys generated per run.
//
// Configuration (environment):
//   PORT                       listen port on 127.0.0.1 (or argv[2]); 0 = pick one
//   CLIENT_ID                  default "interop-client"
//   CLIENT_SECRET              default "s3cr#t:with:colons"
//   REDIRECT_URIS              comma separated redirect_uris
//   POST_LOGOUT_REDIRECT_URIS  comma separated post_logout_redirect_uris
//   BACKCHANNEL_LOGOUT_URI     optional backchannel_logout_uri
//   ACCESS_TOKEN_TTL           access-token lifetime in seconds (default 60), for
//                              opaque and API-resource (JWT) access tokens alike
//   ID_TOKEN_TTL               ID-token lifetime in seconds (default 3600)
//   RESOURCE_INDICATOR         the one API resource (RFC 8707), default
//                              "https://api.interop.test"
//   RESOURCE_SCOPES            its scopes, space or comma separated, default
//                              "read:items write:items"
//
// API resources work like Logto's: the authorization request may carry
// `resource=<indicator>` (consent grants the requested scopes of it); the
// authorization_code exchange without `resource` yields an opaque access token
// for userinfo; a refresh_token grant with `resource=<indicator>` yields an
// ES384 JWT access token (typ at+jwt, aud = the indicator, scope = the granted
// scopes of that resource). An unknown indicator is `invalid_target`.
//
// Key rotation (POST /__rotate_keys[?drop_old=1]): a new ES384 key goes first in
// the JWKS and signs every token from then on; the previous keys stay published
// (verifiable) unless drop_old=1. Answers {kid, kids}: the new signing kid and
// every published kid.
//
// Once listening it prints exactly one line to stdout: "READY <issuer>".

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as querystring from 'node:querystring';

import Provider, { errors } from 'oidc-provider';
// Not exported: the engine reads its keys from configuration once, at construction. This is the
// function the constructor uses; calling it again swaps the keystore and the published JWKS
// (every signing site looks the keystore up per token, so new tokens use the new key).
import initializeKeystore from 'oidc-provider/lib/helpers/initialize_keystore.js';

// stdout carries exactly one line ("READY <issuer>"); oidc-provider prints its
// NOTICEs with console.info, so send console.log/info to stderr.
console.log = (...args) => console.error(...args);
console.info = (...args) => console.error(...args);

const MOUNT = '/oidc';
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);
const OIDC_SCOPES = ['openid', 'offline_access', 'profile', 'email'];

function envList(name) {
  return (process.env[name] || '')
    .split(',')
    .map((value) => value.trim())
    .filter(Boolean);
}

function envScopes(name, fallback) {
  const raw = process.env[name];
  const value = raw === undefined || raw.trim() === '' ? fallback : raw;
  return [...new Set(value.split(/[\s,]+/).filter(Boolean))];
}

function envSeconds(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`${name} must be a positive integer number of seconds`);
  }
  return value;
}

const settings = {
  port: Number(process.env.PORT ?? process.argv[2] ?? 0),
  clientId: process.env.CLIENT_ID || 'interop-client',
  clientSecret: process.env.CLIENT_SECRET || 's3cr#t:with:colons',
  redirectUris: envList('REDIRECT_URIS'),
  postLogoutRedirectUris: envList('POST_LOGOUT_REDIRECT_URIS'),
  backchannelLogoutUri: process.env.BACKCHANNEL_LOGOUT_URI || undefined,
  accessTokenTtl: envSeconds('ACCESS_TOKEN_TTL', 60),
  idTokenTtl: envSeconds('ID_TOKEN_TTL', 3600),
  resourceIndicator: process.env.RESOURCE_INDICATOR || 'https://api.interop.test',
  resourceScopes: envScopes('RESOURCE_SCOPES', 'read:items write:items'),
};

if (!Number.isInteger(settings.port) || settings.port < 0 || settings.port > 65535) {
  throw new Error('PORT must be an integer between 0 and 65535');
}
if (!URL.canParse(settings.resourceIndicator) || settings.resourceIndicator.includes('#')) {
  throw new Error('RESOURCE_INDICATOR must be an absolute URI without a fragment');
}
if (settings.redirectUris.length === 0) {
  settings.redirectUris = ['http://127.0.0.1:8000/callback'];
}

// ---------------------------------------------------------------------------
// Stats

function freshStats() {
  return {
    token_requests: 0,
    // successful token-endpoint grants, by grant_type
    grants: { authorization_code: 0, refresh_token: 0 },
    // failed token-endpoint grants, by grant_type
    grant_errors: { authorization_code: 0, refresh_token: 0 },
    refresh_token_success: 0,
    refresh_token_errors: 0,
    // error code -> count, e.g. { invalid_grant: 1 }
    refresh_token_error_codes: {},
    // ordered outcomes of refresh_token grants: "success" or the error code
    refresh_token_outcomes: [],
    // successful token-endpoint grants that asked for an API resource, by indicator
    resource_grants: {},
    authorizations: 0,
    logins: 0,
    userinfo: 0,
    revocations: 0,
    revocation_errors: 0,
    end_session: 0,
    end_session_confirm: 0,
    end_session_success: 0,
    backchannel_logout_sent: 0,
    backchannel_logout_errors: 0,
  };
}

let stats = freshStats();

// The private JWKs the provider signs with, the signing one first (see /__rotate_keys).
let signingKeys = [generateSigningKey()];

function rotateKeys(provider, dropOld) {
  const key = generateSigningKey();
  signingKeys = dropOld ? [key] : [key, ...signingKeys];
  initializeKeystore.call(provider, { keys: signingKeys.map((jwk) => ({ ...jwk })) });
  return { kid: key.kid, kids: signingKeys.map((jwk) => jwk.kid) };
}

function bump(bucket, key) {
  bucket[key] = (bucket[key] || 0) + 1;
}

// sub -> most recent sid seen for our client (used by /__backchannel_logout)
const lastSidBySub = new Map();

// ---------------------------------------------------------------------------
// Accounts: any user name signs in; claims are derived from it.

function accountClaims(sub) {
  const display = sub.charAt(0).toUpperCase() + sub.slice(1);
  return {
    sub,
    name: display,
    username: sub,
    picture: `https://avatars.example.com/${encodeURIComponent(sub)}.png`,
    email: `${sub}@example.com`,
    email_verified: true,
  };
}

const LOGIN_RE = /^[A-Za-z0-9._-]{1,64}$/;

// ---------------------------------------------------------------------------
// Small HTML helpers

function esc(value) {
  return String(value)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>${esc(title)}</title></head>
<body>
<h1>${esc(title)}</h1>
${body}
</body>
</html>
`;
}

function send(res, status, contentType, body, headers = {}) {
  res.writeHead(status, {
    'content-type': contentType,
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

function sendJson(res, status, value) {
  send(res, status, 'application/json; charset=utf-8', JSON.stringify(value));
}

function sendHtml(res, status, html) {
  send(res, status, 'text/html; charset=utf-8', html);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return querystring.parse(Buffer.concat(chunks).toString('utf8'));
}

// ---------------------------------------------------------------------------
// Provider configuration

function generateSigningKey() {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    ...jwk,
    kid: `interop-es384-${crypto.randomBytes(6).toString('hex')}`,
    alg: 'ES384',
    use: 'sig',
  };
}

function clientMetadata() {
  const client = {
    client_id: settings.clientId,
    client_secret: settings.clientSecret,
    client_name: 'logto_middleware interop client',
    application_type: 'web',
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES384',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: settings.redirectUris,
    post_logout_redirect_uris: settings.postLogoutRedirectUris,
  };
  if (settings.backchannelLogoutUri) {
    client.backchannel_logout_uri = settings.backchannelLogoutUri;
    client.backchannel_logout_session_required = true;
  }
  return client;
}

async function logoutSource(ctx, form) {
  // The stock form only carries `xsrf`; the buttons carry `logout=yes`.
  // Put `logout=yes` into the form itself so an HTTP client can submit every
  // input of the form as-is and get a full sign-out (like Logto).
  const fullForm = form.replace(
    '</form>',
    '<input type="hidden" name="logout" value="yes"/><button type="submit">Sign out</button></form>',
  );
  ctx.type = 'html';
  ctx.body = page('Sign out', `<p>Do you want to sign out?</p>\n${fullForm}`);
}

async function postLogoutSuccessSource(ctx) {
  ctx.type = 'html';
  ctx.body = page('Signed out', '<p>You have been signed out.</p>');
}

async function renderError(ctx, out) {
  ctx.type = 'html';
  const rows = Object.entries(out)
    .map(([key, value]) => `<p><strong>${esc(key)}</strong>: <span class="${esc(key)}">${esc(value)}</span></p>`)
    .join('\n');
  ctx.body = page('Error', rows);
}

function buildProvider(issuer) {
  const configuration = {
    clients: [clientMetadata()],
    clientDefaults: {
      grant_types: ['authorization_code', 'refresh_token'],
      id_token_signed_response_alg: 'ES384',
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    jwks: { keys: [...signingKeys] },
    enabledJWA: {
      idTokenSigningAlgValues: ['ES384'],
    },
    cookies: {
      keys: [crypto.randomBytes(32).toString('base64url')],
      // distinct names so they never collide with the RP's cookies: cookies
      // are not port-scoped and the RP also lives on 127.0.0.1
      names: {
        session: 'op_session',
        interaction: 'op_interaction',
        resume: 'op_interaction_resume',
      },
    },
    scopes: OIDC_SCOPES,
    claims: {
      openid: ['sub'],
      profile: ['name', 'username', 'picture'],
      email: ['email', 'email_verified'],
      sid: null,
      auth_time: null,
      acr: null,
      iss: null,
    },
    // Logto puts the scope-derived user claims into the ID token as well.
    conformIdTokenClaims: false,
    allowOmittingSingleRegisteredRedirectUri: false,
    responseTypes: ['code'],
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
      revocation: {
        enabled: true,
        // only the client a token was issued to may revoke it
        allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId,
      },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
      // Like Logto (packages/core/src/oidc/init.ts): RFC 8707 resource indicators
      // with JWT access tokens for API resources.
      resourceIndicators: {
        enabled: true,
        // No default API resource: an authorization request without `resource`
        // gets only OIDC scopes, and a token request without `resource` gets an
        // opaque access token for userinfo. oidc-provider also calls this to pick
        // one of several `resource` values at the token endpoint (`oneOf`);
        // Logto ignores `oneOf` too, so several values also yield an opaque token.
        defaultResource: async (ctx, client, oneOf) => undefined,
        // Never fall back to the resource granted at authorization: the code
        // exchange (scope includes openid) stays opaque and usable at userinfo;
        // only an explicit `resource` yields a JWT.
        useGrantedResource: async (ctx, model) => false,
        getResourceServerInfo: async (ctx, indicator, client) => {
          if (indicator !== settings.resourceIndicator) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: settings.resourceScopes.join(' '),
            audience: indicator,
            accessTokenFormat: 'jwt',
            accessTokenTTL: settings.accessTokenTtl,
            jwt: { sign: { alg: 'ES384' } },
          };
        },
      },
      pushedAuthorizationRequests: { enabled: false },
      dPoP: { enabled: false },
    },
    interactions: {
      url: (ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    async findAccount(ctx, sub) {
      return {
        accountId: sub,
        async claims() {
          return accountClaims(sub);
        },
      };
    },
    // Logto's rule: a refresh token only when offline_access was granted; the
    // engine itself drops offline_access unless the request had prompt=consent.
    async issueRefreshToken(ctx, client, code) {
      return client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access');
    },
    rotateRefreshToken: true,
    renderError,
    // no browser-side (CORS) callers in these tests
    clientBasedCORS: () => false,
    // oidc-provider >= 9.x guards outgoing requests (back-channel logout, ...)
    // with an SSRF filter that refuses special-use addresses such as
    // 127.0.0.0/8. Test RPs live on loopback, so drop the guard for those only.
    fetch(url, options) {
      const { hostname } = new URL(url);
      if (LOOPBACK_HOSTS.has(hostname)) {
        const { dispatcher, ...rest } = options;
        return globalThis.fetch(url, rest);
      }
      return globalThis.fetch(url, options);
    },
    ttl: {
      // a resource server's accessTokenTTL wins, like Logto's ttl.AccessToken
      AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL ?? settings.accessTokenTtl,
      AuthorizationCode: 60,
      IdToken: settings.idTokenTtl,
      RefreshToken: 14 * 24 * 60 * 60,
      Interaction: 60 * 60,
      Session: 14 * 24 * 60 * 60,
      Grant: 14 * 24 * 60 * 60,
    },
  };

  const provider = new Provider(issuer, configuration);

  const grantTypeOf = (ctx) => ctx.oidc?.params?.grant_type || ctx.oidc?.body?.grant_type || 'unknown';

  provider.on('grant.success', (ctx) => {
    const grantType = grantTypeOf(ctx);
    bump(stats.grants, grantType);
    const resource = ctx.oidc?.params?.resource;
    if (typeof resource === 'string') bump(stats.resource_grants, resource);
    if (grantType === 'refresh_token') {
      stats.refresh_token_success += 1;
      stats.refresh_token_outcomes.push('success');
    }
  });
  provider.on('grant.error', (ctx, err) => {
    const grantType = grantTypeOf(ctx);
    bump(stats.grant_errors, grantType);
    if (grantType === 'refresh_token') {
      const code = err?.error || 'server_error';
      stats.refresh_token_errors += 1;
      bump(stats.refresh_token_error_codes, code);
      stats.refresh_token_outcomes.push(code);
    }
  });
  provider.on('authorization.success', (ctx) => {
    const session = ctx.oidc?.session;
    const clientId = ctx.oidc?.client?.clientId;
    if (session?.accountId && clientId) {
      const sid = session.sidFor(clientId);
      if (sid) lastSidBySub.set(session.accountId, sid);
    }
  });
  provider.on('end_session.success', () => {
    stats.end_session_success += 1;
  });
  provider.on('backchannel.success', () => {
    stats.backchannel_logout_sent += 1;
  });
  provider.on('backchannel.error', () => {
    stats.backchannel_logout_errors += 1;
  });
  provider.on('server_error', (ctx, err) => {
    process.stderr.write(`oidc-provider server_error on ${ctx.method} ${ctx.path}: ${err?.stack || err}\n`);
  });

  return provider;
}

// ---------------------------------------------------------------------------
// Interaction (login + automatic consent)

function loginPage(uid, clientName, error) {
  const message = error ? `<p class="error">${esc(error)}</p>\n` : '';
  return page(
    'Sign in',
    `<p>Sign in to continue to ${esc(clientName)}.</p>
${message}<form id="login" method="post" action="/interaction/${esc(uid)}/login">
  <label>User name <input type="text" name="login" autocomplete="username" autofocus required></label>
  <button type="submit">Sign in</button>
</form>`,
  );
}

function requestedResources(resource) {
  if (Array.isArray(resource)) return resource;
  return resource ? [resource] : [];
}

// Grants every OIDC scope the authorization request asked for (after the
// engine's own filtering, e.g. offline_access without prompt=consent is gone),
// and the requested scopes of every requested API resource (what Logto's
// consent grants). Granting the resource scopes up front avoids a second round
// trip for the engine's `rs_scopes_missing` consent check.
async function grantEverything(provider, interaction, accountId) {
  const { params, prompt, grantId: existingGrantId } = interaction;
  let grant;
  if (existingGrantId) {
    grant = await provider.Grant.find(existingGrantId);
  }
  if (!grant) {
    grant = new provider.Grant({ accountId, clientId: params.client_id });
  }
  const requestedScopes = new Set(String(params.scope || '').split(' ').filter(Boolean));
  // only the OIDC scopes: with a `resource` the engine leaves API scopes in params.scope
  const oidcScopes = OIDC_SCOPES.filter((scope) => requestedScopes.has(scope));
  if (oidcScopes.length) {
    grant.addOIDCScope(oidcScopes.join(' '));
  }
  for (const indicator of requestedResources(params.resource)) {
    if (indicator !== settings.resourceIndicator) continue;
    const scopes = settings.resourceScopes.filter((scope) => requestedScopes.has(scope));
    if (scopes.length) grant.addResourceScope(indicator, scopes.join(' '));
  }
  const details = prompt?.details || {};
  if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
  if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
  if (details.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(details.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  return grant.save();
}

async function interactionGet(provider, req, res, uid) {
  const interaction = await provider.interactionDetails(req, res);
  if (interaction.uid !== uid) {
    sendHtml(res, 400, page('Error', '<p>interaction mismatch</p>'));
    return;
  }
  if (interaction.prompt.name === 'login') {
    const client = await provider.Client.find(interaction.params.client_id);
    sendHtml(res, 200, loginPage(uid, client?.clientName || interaction.params.client_id));
    return;
  }
  // Already signed in; only consent is pending (e.g. prompt=consent): grant it.
  const accountId = interaction.session?.accountId;
  const grantId = await grantEverything(provider, interaction, accountId);
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

async function interactionLogin(provider, req, res, uid) {
  const form = await readForm(req);
  const interaction = await provider.interactionDetails(req, res);
  if (interaction.uid !== uid) {
    sendHtml(res, 400, page('Error', '<p>interaction mismatch</p>'));
    return;
  }
  const login = typeof form.login === 'string' ? form.login.trim() : '';
  if (!LOGIN_RE.test(login)) {
    const client = await provider.Client.find(interaction.params.client_id);
    sendHtml(
      res,
      400,
      loginPage(uid, client?.clientName || interaction.params.client_id, 'User name must be 1-64 of A-Z a-z 0-9 . _ -'),
    );
    return;
  }
  stats.logins += 1;
  // a different user than the current session's: start from a fresh grant
  const sameAccount = interaction.session?.accountId === login;
  const grantId = await grantEverything(
    provider,
    sameAccount ? interaction : { ...interaction, grantId: undefined },
    login,
  );
  await provider.interactionFinished(
    req,
    res,
    {
      login: { accountId: login, remember: true },
      consent: { grantId },
    },
    { mergeWithLastSubmission: false },
  );
}

// ---------------------------------------------------------------------------
// HTTP routing

function countOidcRequest(req, res, path) {
  if (path === '/auth' && req.method === 'GET') {
    stats.authorizations += 1;
  } else if (path === '/token' && req.method === 'POST') {
    stats.token_requests += 1;
  } else if (path === '/me') {
    stats.userinfo += 1;
  } else if (path === '/token/revocation' && req.method === 'POST') {
    stats.revocations += 1;
    res.on('finish', () => {
      if (res.statusCode !== 200) stats.revocation_errors += 1;
    });
  } else if (path === '/session/end') {
    stats.end_session += 1;
  } else if (path === '/session/end/confirm') {
    stats.end_session_confirm += 1;
  }
}

async function backchannelLogout(provider, res, searchParams) {
  const sub = searchParams.get('sub');
  if (!sub) {
    sendJson(res, 400, { error: 'sub query parameter is required' });
    return;
  }
  const client = await provider.Client.find(settings.clientId);
  if (!client?.backchannelLogoutUri) {
    sendJson(res, 409, { error: 'client has no backchannel_logout_uri (set BACKCHANNEL_LOGOUT_URI)' });
    return;
  }
  const sid = searchParams.get('sid') || lastSidBySub.get(sub);
  if (client.backchannelLogoutSessionRequired && !sid) {
    sendJson(res, 409, { error: `no sid known for sub ${sub}; pass sid=...` });
    return;
  }
  try {
    await client.backchannelLogout(sub, sid);
    stats.backchannel_logout_sent += 1;
    sendJson(res, 200, { status: 'sent', sub, sid: sid || null });
  } catch (err) {
    stats.backchannel_logout_errors += 1;
    sendJson(res, 502, {
      status: 'failed',
      sub,
      sid: sid || null,
      error: String(err?.message || err),
      rp_status: err?.response?.status ?? null,
    });
  }
}

function createHandler(state) {
  return async function handle(req, res) {
    const url = new URL(req.url, 'http://127.0.0.1');
    const { pathname } = url;
    try {
      const { provider, callback } = state;
      if (!provider) {
        sendJson(res, 503, { error: 'starting' });
        return;
      }

      if (pathname === MOUNT || pathname.startsWith(`${MOUNT}/`)) {
        const rest = req.url.slice(MOUNT.length);
        const inner = rest.startsWith('/') ? rest : `/${rest}`;
        countOidcRequest(req, res, new URL(inner, 'http://127.0.0.1').pathname);
        // same shape as express' app.use('/oidc', ...): the engine derives its
        // mount path from originalUrl vs url
        req.originalUrl = req.url;
        req.url = inner;
        await callback(req, res);
        return;
      }

      if (pathname === '/__health' && req.method === 'GET') {
        sendJson(res, 200, { status: 'ok', issuer: provider.issuer });
        return;
      }
      if (pathname === '/__stats' && req.method === 'GET') {
        sendJson(res, 200, stats);
        return;
      }
      if (pathname === '/__stats/reset' && req.method === 'POST') {
        stats = freshStats();
        sendJson(res, 200, stats);
        return;
      }
      if (pathname === '/__rotate_keys' && req.method === 'POST') {
        sendJson(res, 200, rotateKeys(provider, url.searchParams.get('drop_old') === '1'));
        return;
      }
      if (pathname === '/__backchannel_logout' && req.method === 'POST') {
        await backchannelLogout(provider, res, url.searchParams);
        return;
      }

      let match = /^\/interaction\/([A-Za-z0-9_-]+)$/.exec(pathname);
      if (match && req.method === 'GET') {
        await interactionGet(provider, req, res, match[1]);
        return;
      }
      match = /^\/interaction\/([A-Za-z0-9_-]+)\/login$/.exec(pathname);
      if (match && req.method === 'POST') {
        await interactionLogin(provider, req, res, match[1]);
        return;
      }

      sendJson(res, 404, { error: 'not_found' });
    } catch (err) {
      if (err?.name === 'SessionNotFound') {
        if (!res.headersSent) {
          sendHtml(res, 400, page('Error', `<p class="error">${esc(err.error_description || err.message)}</p>`));
        }
        return;
      }
      process.stderr.write(`interop provider error on ${req.method} ${pathname}: ${err?.stack || err}\n`);
      if (!res.headersSent) {
        sendJson(res, 500, { error: 'server_error' });
      } else {
        res.end();
      }
    }
  };
}

const state = { provider: undefined, callback: undefined };
const server = http.createServer(createHandler(state));

server.on('error', (err) => {
  process.stderr.write(`interop provider failed to listen: ${err.message}\n`);
  process.exit(2);
});

server.listen(settings.port, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}${MOUNT}`;
  state.provider = buildProvider(issuer);
  state.callback = state.provider.callback();
  process.stdout.write(`READY ${issuer}\n`);
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
