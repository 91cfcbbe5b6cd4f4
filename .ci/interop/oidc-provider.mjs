// The certified OpenID provider `oidc-provider`, configured as an administration's
// authorization server: a client-credentials client receiving JWT access tokens for the
// resource `urn:passerelle`, with the organisation's SIRET as an extra claim; and, when a
// console URL is given (`node oidc-provider.mjs PORT https://127.0.0.1:8443`), the console's
// public client (authorization code with PKCE) whose people sign in through the provider's
// development login form and come back as hub operators.
// Test configuration only: development keys, in-memory adapter, loopback.
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || 0);
const consoleUrl = process.argv[3];
const host = '127.0.0.1';

async function main() {
  const server = (await import('node:http')).createServer();
  await new Promise((resolve) => server.listen(port, host, resolve));
  const actual = server.address().port;
  const issuer = `http://${host}:${actual}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: 'caf-si-prestations',
      client_secret: 'interop-test-secret-not-a-real-one',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
    }].concat(consoleUrl ? [{
      client_id: 'passerelle-console',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: [`${consoleUrl}/console/callback`],
    }] : []),
    findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
    features: {
      devInteractions: { enabled: Boolean(consoleUrl) },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:passerelle',
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'lookup',
          audience: 'urn:passerelle',
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    extraTokenClaims: async (ctx, token) => (token.clientId === 'passerelle-console'
      ? { siret: '11000400700016', roles: ['operateur'] }
      : { siret: '13000170500016' }),
  });
  provider.proxy = false;
  server.on('request', provider.callback());
  // The test reads this line to learn the issuer.
  console.log(`issuer ${issuer}`);
  // The test stops reading stdout after that line: anything else (the development
  // interactions log each step) goes to stderr, or the closed pipe would end the process.
  console.log = console.error;
  console.info = console.error;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
