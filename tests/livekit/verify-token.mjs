// Verifies a LiveKit access token with TokenVerifier from LiveKit's Node.js server SDK
// and prints the token's claims as one line of JSON.
//
// Usage: LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=... node verify-token.mjs [TOKEN]
// The token is read from stdin when no argument is given. Exits with status 1 when
// verification fails (wrong signature or issuer, expired, malformed) and 2 on a usage
// error. The SDK allows 10 seconds of clock skew on `exp` and `nbf`.

import { apiKeys, fail, loadSdk, readStdin } from './sdk.mjs';

const { TokenVerifier } = loadSdk();
const { apiKey, apiSecret } = apiKeys();

const token = (process.argv[2] ?? (await readStdin()).toString('utf8')).trim();
if (!token) {
  fail(2, 'missing token: pass it as the first argument or on stdin');
}

let claims;
try {
  claims = await new TokenVerifier(apiKey, apiSecret).verify(token);
} catch (error) {
  fail(1, `token verification failed: ${error.code ?? error.name}: ${error.message}`);
}
process.stdout.write(`${JSON.stringify(claims)}\n`);
