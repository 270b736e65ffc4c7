// Test identity provider: panva's oidc-provider 8.8.1 on one loopback port.
//
// Usage: node provider.mjs CONFIG.json
// CONFIG (written by tests/support/oidc_idp.py): issuer, host, port, audience, opaque_resource,
// scopes (the resource server's scope list), jwks_file (private JWKS, first key signs), clients
// (oidc-provider client metadata plus `scope_prefixes` and `claims`), account_claims, ttl.
// Access tokens for the gateway are RFC 9068 JWTs (typ at+jwt) through RFC 8707 resource
// indicators; development interactions (login + consent pages) stay on.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

const conf = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const jwks = JSON.parse(readFileSync(conf.jwks_file, 'utf8'));
const signingKid = jwks.keys[0].kid;

const extras = new Map(); // client_id -> { prefixes, claims }
const clients = conf.clients.map(({ scope_prefixes: prefixes, claims, ...metadata }) => {
  extras.set(metadata.client_id, { prefixes: prefixes || [], claims: claims || {} });
  return metadata;
});

// The scopes a client may hold at the gateway: the configured list narrowed to its prefixes
// (a patient/ client can never be granted user/ or system/ scopes).
function scopesFor(client) {
  const { prefixes } = extras.get(client.clientId) || { prefixes: [] };
  return conf.scopes.filter((s) => prefixes.some((p) => s.startsWith(p))).join(' ');
}

function redirectOrigins(client) {
  return new Set((client.redirectUris || []).map((u) => new URL(u).origin));
}

const configuration = {
  clients,
  jwks,
  cookies: { keys: ['tcia-gateway-test-idp-cookie-key'] },
  pkce: { methods: ['S256'] },
  ttl: {
    AccessToken: conf.ttl.access_token,
    ClientCredentials: conf.ttl.access_token,
    IdToken: conf.ttl.access_token,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
    AuthorizationCode: 120,
    RefreshToken: 3600,
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // RFC 8707: a request without `resource` is for the gateway.
      defaultResource: async () => conf.audience,
      // The code exchange of an `openid` request still yields the gateway's JWT, not a
      // userinfo-only opaque token (OHIF never sends `resource`).
      useGrantedResource: async () => true,
      // The gateway's audience gets JWTs; `opaque_resource` gets opaque tokens for the same
      // audience (JWT access tokens are not stored, so only opaque ones can be introspected
      // per RFC 7662 or revoked per RFC 7009).
      getResourceServerInfo: async (ctx, resourceIndicator, client) => {
        const opaque = resourceIndicator === conf.opaque_resource;
        if (!opaque && resourceIndicator !== conf.audience) {
          throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
        }
        const info = {
          scope: scopesFor(client),
          audience: conf.audience,
          accessTokenTTL: conf.ttl.access_token,
        };
        if (opaque) return { ...info, accessTokenFormat: 'opaque' };
        return { ...info, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256', kid: signingKid } } };
      },
    },
  },
  extraTokenClaims: async (ctx, token) => {
    const { claims } = extras.get(token.clientId) || { claims: {} };
    const account = (token.accountId && conf.account_claims[token.accountId]) || {};
    return { ...claims, ...account };
  },
  // A browser client may call the token endpoint from the origins of its redirect URIs.
  clientBasedCORS: (ctx, origin, client) => redirectOrigins(client).has(origin),
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  renderError: async (ctx, out) => {
    ctx.type = 'json';
    ctx.body = out;
  },
};

const provider = new Provider(conf.issuer, configuration);
provider.on('server_error', (ctx, err) => console.error('server_error', err));

const server = createServer(provider.callback());
server.listen(conf.port, conf.host, () => {
  console.log(`oidc-provider listening on ${conf.issuer} (signing kid ${signingKid})`);
});
const stop = () => { server.close(() => process.exit(0)); server.closeAllConnections(); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
