/**
 * `node:http` and `node:https`, loaded with `require`. An ES `import` of `node:http` builds a module
 * namespace from every export, and three of them (`WebSocket`, `CloseEvent`, `MessageEvent`) are
 * getters that load undici, Node's fetch implementation: its 745 KB of JavaScript and everything it
 * sets up, in every process, though the bot never uses it. `require` reads only what is used.
 */
import { createRequire } from 'node:module';

const load = createRequire(import.meta.url);

export const http = load('node:http') as typeof import('node:http');
export const https = load('node:https') as typeof import('node:https');
