// The real @auth/core, driven from the Python interop tests (test_authjs_cookies.py).
//
// Protocol: every line on stdin is one JSON request, either an object `{op, ...}` or an array of
// them; for every line one JSON line is written to stdout: the result object, or an array of
// results in the same order. Used as a one-shot CLI (`echo '{"op":...}' | node jwt_tool.mjs`) or
// kept running for a whole test module (one request line per test).
//
// A result is `{ok: true, ...}` or `{ok: false, error: "<name>: <message>"}`; one failing op
// never stops the others. A request the tool itself cannot run (a line that is not JSON, an
// unknown op) answers `{ok: false, error, harness: true}`: that is no verdict of @auth/core's.
//
// Operations (all secrets may be a string or a list, exactly as @auth/core takes them):
//   encode     {token, secret, salt, maxAge?}          -> {jwt}          @auth/core/jwt encode()
//   decode     {jwt, secret, salt}                     -> {payload}      @auth/core/jwt decode()
//   getToken   {secret, cookie?, authorization?, secureCookie?, cookieName?, salt?, raw?}
//                                                      -> {payload}      @auth/core/jwt getToken()
//                  (payload is null when getToken found no valid token, as it returns)
//   encodeGcm  {token, secret, salt, maxAge?}          -> {jwt}          an A256GCM token: Auth.js
//                  only decodes these, so this is jose's EncryptJWT (the copy @auth/core imports)
//                  keyed exactly as @auth/core derives keys (@panva/hkdf, same salt and info, kid
//                  = JWK thumbprint with sha<key bits>)
//   chunk      {name, value, secure?, cookie?}         -> {cookies: [{name, value, maxAge?}]}
//                  @auth/core's SessionStore.chunk() (what Auth.js writes as Set-Cookie),
//                  `cookie` being the request's Cookie header (old chunks get cleaned)
//   csrf       {secret, cookieValue?, bodyValue?, isPost?} -> {csrfToken, cookie?, verified?}
//                  @auth/core's createCSRFToken()
//   serializeCookie {name, value}                      -> {header}       Auth.js's Set-Cookie text
//   env        {env}                                   -> {secret}       what setEnvDefaults()
//                  makes of AUTH_SECRET / AUTH_SECRET_1..3
//   versions   {}                                      -> {core, jose, hkdf}

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as readline from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { setEnvDefaults } from '@auth/core';
import { decode, encode, getToken } from '@auth/core/jwt';

// Resolve jose and @panva/hkdf the way @auth/core itself resolves them (from its own folder), so
// the A256GCM tokens come from the very copy Auth.js decodes with.
const coreJwt = fileURLToPath(import.meta.resolve('@auth/core/jwt'));
const coreDir = dirname(coreJwt);
const fromCore = createRequire(coreJwt);

function packageDir(name) {
  // `require.resolve(name + '/package.json')` is not allowed by every exports map; walk up instead.
  const entry = fromCore.resolve(name);
  let dir = dirname(entry);
  while (!dir.endsWith(join('node_modules', ...name.split('/')))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find the package folder of ${name}`);
    dir = parent;
  }
  return dir;
}

async function importFromCore(name) {
  const dir = packageDir(name);
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const exported = pkg.exports?.['.'];
  const target = typeof exported === 'string' ? exported : exported?.import ?? exported?.default ?? pkg.main;
  return { module: await import(pathToFileURL(join(dir, target)).href), version: pkg.version };
}

const jose = await importFromCore('jose');
const hkdfPackage = await importFromCore('@panva/hkdf');
const { EncryptJWT, base64url, calculateJwkThumbprint } = jose.module;
const { hkdf } = hkdfPackage.module;
// Not in @auth/core's exports map, but the exact modules Auth.js runs: import them by file.
const { SessionStore } = await import(pathToFileURL(join(coreDir, 'lib', 'utils', 'cookie.js')).href);
const { createCSRFToken } = await import(
  pathToFileURL(join(coreDir, 'lib', 'actions', 'callback', 'oauth', 'csrf-token.js')).href
);
const vendoredCookie = await import(pathToFileURL(join(coreDir, 'lib', 'vendored', 'cookie.js')).href);
const coreVersion = JSON.parse(readFileSync(join(coreDir, 'package.json'), 'utf8')).version;

const quietLogger = { debug() {}, error() {}, warn() {} };
const DEFAULT_MAX_AGE = 30 * 24 * 60 * 60;

function firstSecret(secret) {
  return Array.isArray(secret) ? secret[0] : secret;
}

async function encodeGcm({ token = {}, secret, salt, maxAge = DEFAULT_MAX_AGE }) {
  const key = await hkdf('sha256', firstSecret(secret), salt, `Auth.js Generated Encryption Key (${salt})`, 32);
  const kid = await calculateJwkThumbprint({ kty: 'oct', k: base64url.encode(key) }, `sha${key.byteLength << 3}`);
  const now = Math.floor(Date.now() / 1000);
  return new EncryptJWT(token)
    .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid })
    .setIssuedAt()
    .setExpirationTime(now + maxAge)
    .setJti(crypto.randomUUID())
    .encrypt(key);
}

function requestLike({ cookie, authorization }) {
  const headers = new Headers();
  if (cookie !== undefined && cookie !== null) headers.set('cookie', cookie);
  if (authorization !== undefined && authorization !== null) headers.set('authorization', authorization);
  return { headers };
}

const operations = {
  async encode({ token, secret, salt, maxAge }) {
    return { jwt: await encode({ token, secret, salt, maxAge }) };
  },
  async decode({ jwt, secret, salt }) {
    return { payload: await decode({ token: jwt, secret, salt }) };
  },
  async getToken({ secret, cookie, authorization, secureCookie, cookieName, salt, raw }) {
    const params = { req: requestLike({ cookie, authorization }), secret, secureCookie, logger: quietLogger };
    if (cookieName !== undefined) params.cookieName = cookieName;
    if (salt !== undefined) params.salt = salt;
    if (raw !== undefined) params.raw = raw;
    return { payload: (await getToken(params)) ?? null };
  },
  async encodeGcm(request) {
    return { jwt: await encodeGcm(request) };
  },
  async chunk({ name, value, secure = false, cookie = '' }) {
    const store = new SessionStore(
      { name, options: { httpOnly: true, sameSite: 'lax', path: '/', secure } },
      vendoredCookie.parse(cookie),
      quietLogger,
    );
    const cookies = store.chunk(value, {}).map((c) => ({ name: c.name, value: c.value, maxAge: c.options?.maxAge }));
    return { cookies };
  },
  async csrf({ secret, cookieValue, bodyValue, isPost = false }) {
    const result = await createCSRFToken({ options: { secret }, cookieValue, isPost, bodyValue });
    return { csrfToken: result.csrfToken, cookie: result.cookie, verified: result.csrfTokenVerified };
  },
  async serializeCookie({ name, value }) {
    return { header: vendoredCookie.serialize(name, value, { httpOnly: true, sameSite: 'lax', path: '/' }) };
  },
  async env({ env }) {
    const config = { providers: [] };
    setEnvDefaults(env, config);
    return { secret: config.secret };
  },
  async versions() {
    return { core: coreVersion, jose: jose.version, hkdf: hkdfPackage.version };
  },
};

async function run(request) {
  const operation = operations[request?.op];
  if (!operation) return { ok: false, error: `Error: unknown op ${JSON.stringify(request?.op)}`, harness: true };
  try {
    return { ok: true, ...(await operation(request)) };
  } catch (error) {
    return { ok: false, error: `${error?.name ?? 'Error'}: ${error?.message ?? String(error)}` };
  }
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  try {
    const request = JSON.parse(line);
    answer = Array.isArray(request) ? await Promise.all(request.map(run)) : await run(request);
  } catch (error) {
    answer = { ok: false, error: `SyntaxError: ${error.message}`, harness: true };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
