// The certified OpenID provider `oidc-provider`, configured as an administration's
// authorization server: a client-credentials client receiving JWT access tokens for the
// resource `urn:passerelle`, with the organisation's SIRET as an extra claim.
// Test configuration only: development keys, in-memory adapter, loopback.
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || 0);
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
    }],
    features: {
      devInteractions: { enabled: false },
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
    extraTokenClaims: async () => ({ siret: '13000170500016' }),
  });
  provider.proxy = false;
  server.on('request', provider.callback());
  // The test reads this line to learn the issuer.
  console.log(`issuer ${issuer}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
