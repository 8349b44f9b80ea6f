#!/usr/bin/env node
// The command npm links (`npx openclaw-k8s-toggle-operator …`). It checks Node's version before
// anything else is loaded: on an older Node the bot would die on `node:sqlite` with a stack trace.
// In a checkout it runs the TypeScript sources (always current; Node 24 strips the types), in an
// installed package the bundle (`npm run build`; the package ships dist/ and no sources).
import { existsSync } from 'node:fs';

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  console.error(`openclaw-k8s-toggle-operator needs Node.js 24 or newer; this is ${process.version} (${process.execPath}). In a checkout, \`npm ci\` installs Node 24 into node_modules/.bin, which npm scripts and npx use.`);
  process.exit(2);
}
const sources = new URL('../src/main.ts', import.meta.url);
await import(existsSync(sources) ? sources.href : new URL('../dist/main.js', import.meta.url).href);
