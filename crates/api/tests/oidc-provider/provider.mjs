// A real OpenID provider for EcoCityHub's federation test: the OpenID-certified `oidc-provider`
// package, configured with two confidential clients, CLIENT_ID (client_secret_basic) and
// CLIENT_ID-post (client_secret_post), both with PKCE required and EcoCityHub's
// /oauth2/idpresponse as their only redirect URI, and its development sign-in pages
// (any login name, any password) so a test can sign in with plain HTTP and a cookie jar.
//
// Accounts: the login name is the subject; its e-mail is NAME@example.org, verified unless the
// name starts with "unverified".
//
// Environment: REDIRECT_URI, CLIENT_ID, CLIENT_SECRET, PORT (default 0: any free one).
// It prints one line, `issuer http://127.0.0.1:PORT`, once it listens. Without REDIRECT_URI it
// then reads the redirect URI from the first line of its standard input (so a relying party
// can start after it, on a port of its own choosing, and tell it) and answers 503 until then;
// it prints `ready` when it serves.

import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const clientId = process.env.CLIENT_ID ?? 'ecocityhub';
const clientSecret = process.env.CLIENT_SECRET ?? 'ecocityhub-test-secret';

// A fresh RS256 key for each run: the relying party has to fetch the JWKS.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: `test-${Date.now()}`, alg: 'RS256', use: 'sig' };

function findAccount(_ctx, id) {
  return {
    accountId: id,
    async claims() {
      return {
        sub: id,
        email: `${id}@example.org`,
        email_verified: !id.startsWith('unverified'),
        name: `Test user ${id}`,
      };
    },
  };
}

function redirectUriFromStdin() {
  return new Promise((resolve) => {
    let buffered = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (chunk) => {
      buffered += chunk;
      const newline = buffered.indexOf('\n');
      if (newline >= 0) resolve(buffered.slice(0, newline).trim());
    });
  });
}

let handler = (_req, res) => {
  res.statusCode = 503;
  res.end('not ready: the redirect URI is not known yet');
};
const server = http.createServer((req, res) => handler(req, res));
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', async () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  console.log(`issuer ${issuer}`);
  const redirectUri = process.env.REDIRECT_URI || (await redirectUriFromStdin());
  const provider = new Provider(issuer, {
    clients: ['client_secret_basic', 'client_secret_post'].map((method) => ({
      client_id: method === 'client_secret_basic' ? clientId : `${clientId}-post`,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: method,
    })),
    jwks: { keys: [signingKey] },
    cookies: { keys: ['ecocityhub-test-cookie-key'] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    // Put the scopes' claims into the ID token, as Google does (the default keeps them for
    // the userinfo endpoint when an access token is issued).
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    findAccount,
    features: { devInteractions: { enabled: true } },
  });
  handler = provider.callback();
  console.log('ready');
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}
