// Helpers shared by the scripts in this folder. They load LiveKit's Node.js server SDK
// and read the API key, the API secret and the script's input.

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * Loads `livekit-server-sdk`, first through NODE_PATH, then from the folder where
 * scripts/install-deps.sh installs it (`.stack/tools/node_modules` of this repository).
 */
export function loadSdk() {
  try {
    return createRequire(import.meta.url)('livekit-server-sdk');
  } catch (error) {
    if (error.code !== 'MODULE_NOT_FOUND') {
      throw error;
    }
  }
  const tools = fileURLToPath(new URL('../../.stack/tools/', import.meta.url));
  try {
    return createRequire(`${tools}package.json`)('livekit-server-sdk');
  } catch (error) {
    if (error.code !== 'MODULE_NOT_FOUND') {
      throw error;
    }
    fail(2, `livekit-server-sdk not found in NODE_PATH or ${tools}node_modules; run scripts/install-deps.sh`);
  }
}

/** Returns LIVEKIT_API_KEY and LIVEKIT_API_SECRET, or exits with status 2 if one is missing. */
export function apiKeys() {
  const apiKey = process.env.LIVEKIT_API_KEY;
  const apiSecret = process.env.LIVEKIT_API_SECRET;
  if (!apiKey || !apiSecret) {
    fail(2, 'missing LIVEKIT_API_KEY or LIVEKIT_API_SECRET in the environment');
  }
  return { apiKey, apiSecret };
}

/** Reads all of stdin as bytes. */
export async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Prints `message` to stderr and exits with `status`. */
export function fail(status, message) {
  process.stderr.write(`${message}\n`);
  process.exit(status);
}
