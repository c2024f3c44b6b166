// Prints the Authorization header value that a LiveKit server sends with a webhook
// whose body is given on stdin. It is an HS256 token made with AccessToken from
// LiveKit's Node.js server SDK, valid for 5 minutes, whose `sha256` claim is the base64
// SHA-256 of the body bytes. LiveKit's server (livekit/protocol, webhook package) signs
// webhooks the same way.
//
// Usage: LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=... node sign-webhook.mjs < body.json
// The body is hashed exactly as read, without parsing or reformatting. Exits with
// status 2 on a usage error.

import { createHash } from 'node:crypto';

import { apiKeys, fail, loadSdk, readStdin } from './sdk.mjs';

const { AccessToken } = loadSdk();
const { apiKey, apiSecret } = apiKeys();

const body = await readStdin();
if (body.length === 0) {
  fail(2, 'missing webhook body on stdin');
}

const token = new AccessToken(apiKey, apiSecret, { ttl: '5m' });
token.sha256 = createHash('sha256').update(body).digest('base64');
process.stdout.write(`${await token.toJwt()}\n`);
