// A tiny Express app signing in with @auth/express and Auth.js's Logto provider: the Auth.js side
// of test_authjs_e2e.py, written the way the Auth.js docs write one.
//
// Environment:
//   PORT                 listen port on 127.0.0.1 (0 = any)
//   AUTH_SECRET          (and AUTH_SECRET_1..3) read by @auth/core's setEnvDefaults, as in any Auth.js app
//   AUTH_LOGTO_ISSUER    e.g. http://127.0.0.1:<port>/oidc (the interop oidc-provider)
//   AUTH_LOGTO_ID, AUTH_LOGTO_SECRET
//   KEEP_PROVIDER_SUBJECT=1  the jwt callback also sets token.sub to the provider's subject
//                        (account.providerAccountId) at sign-in; stock Auth.js v5 without an
//                        adapter puts a random UUID there (user.id = crypto.randomUUID())
//
// Routes:
//   /api/auth/*   ExpressAuth (signin, callback, signout, session, csrf, ...)
//   GET /me       {token, cookies}: the session token as getToken() decodes it from this request's
//                 cookies (no callbacks run, nothing is refreshed or rewritten), and the names of
//                 the session cookies (chunks) the request carried
//   GET /stats    {refreshes, refreshErrors}: refresh-token grants this app's jwt callback made
//
// Prints exactly one line to stdout once listening: "READY http://127.0.0.1:<port>".

import { setEnvDefaults } from '@auth/core';
import { ExpressAuth } from '@auth/express';
import Logto from '@auth/core/providers/logto';
import { getToken } from '@auth/core/jwt';
import express from 'express';

console.log = (...args) => console.error(...args);
console.info = (...args) => console.error(...args);

const issuer = process.env.AUTH_LOGTO_ISSUER;
const clientId = process.env.AUTH_LOGTO_ID;
const clientSecret = process.env.AUTH_LOGTO_SECRET;
if (!issuer || !clientId || !clientSecret || !process.env.AUTH_SECRET) {
  throw new Error('AUTH_LOGTO_ISSUER, AUTH_LOGTO_ID, AUTH_LOGTO_SECRET and AUTH_SECRET are required');
}

const keepProviderSubject = process.env.KEEP_PROVIDER_SUBJECT === '1';
const counters = { refreshes: 0, refreshErrors: 0 };
let tokenEndpoint;

async function discoverTokenEndpoint() {
  if (!tokenEndpoint) {
    const response = await fetch(`${issuer}/.well-known/openid-configuration`);
    if (!response.ok) throw new Error(`discovery answered ${response.status}`);
    tokenEndpoint = (await response.json()).token_endpoint;
  }
  return tokenEndpoint;
}

// client_secret_basic (RFC 6749 2.3.1: form-urlencode before base64), which Logto and the interop
// provider expect of a confidential client.
function basicAuth() {
  const encode = (value) => encodeURIComponent(value).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(clientSecret)}`).toString('base64')}`;
}

// The refresh-token-rotation guide's jwt callback (authjs.dev/guides/refresh-token-rotation).
async function jwt({ token, account }) {
  if (account) {
    return {
      ...token,
      ...(keepProviderSubject ? { sub: account.providerAccountId } : {}),
      access_token: account.access_token,
      expires_at: account.expires_at,
      refresh_token: account.refresh_token,
    };
  }
  if (Date.now() < token.expires_at * 1000) return token;
  if (!token.refresh_token) throw new TypeError('Missing refresh_token');
  try {
    counters.refreshes += 1;
    const response = await fetch(await discoverTokenEndpoint(), {
      method: 'POST',
      headers: { authorization: basicAuth() },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: token.refresh_token }),
    });
    const tokensOrError = await response.json();
    if (!response.ok) throw tokensOrError;
    return {
      ...token,
      access_token: tokensOrError.access_token,
      expires_at: Math.floor(Date.now() / 1000 + tokensOrError.expires_in),
      refresh_token: tokensOrError.refresh_token ? tokensOrError.refresh_token : token.refresh_token,
    };
  } catch (error) {
    counters.refreshErrors += 1;
    console.error('Error refreshing access_token', error);
    token.error = 'RefreshTokenError';
    return token;
  }
}

export const authConfig = {
  trustHost: true,
  providers: [
    Logto({
      clientId,
      clientSecret,
      issuer,
      // offline_access needs consent for a refresh token (Logto and oidc-provider alike)
      authorization: { params: { scope: 'openid offline_access profile email', prompt: 'consent' } },
    }),
  ],
  callbacks: {
    jwt,
    async session({ session, token }) {
      session.error = token.error;
      return session;
    },
  },
};

// What ExpressAuth does on every request; done once here so /me decodes with the same secrets
// (AUTH_SECRET_3..1, then AUTH_SECRET).
setEnvDefaults(process.env, authConfig);

const app = express();
app.use('/api/auth', ExpressAuth(authConfig));

app.get('/me', async (req, res) => {
  const secureCookie = req.protocol === 'https';
  const token = await getToken({ req: { headers: req.headers }, secret: authConfig.secret, secureCookie });
  const names = (req.headers.cookie ?? '')
    .split(';')
    .map((pair) => pair.split('=')[0].trim())
    .filter((name) => name.includes('authjs.session-token'));
  res.json({ token: token ?? null, cookies: names });
});

app.get('/stats', (req, res) => {
  res.json(counters);
});

const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  process.stdout.write(`READY http://127.0.0.1:${server.address().port}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
