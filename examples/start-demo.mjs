#!/usr/bin/env node
// `npm start`: the gateway on 127.0.0.1:8080 in front of the demo app server, which the gateway's
// supervisor starts on the host's conventions (/tmp/web_server.sock, /tmp/web_server.pid), in the
// foreground. Ctrl-C stops both. Extra arguments go to `gateway run` (e.g. --listen 127.0.0.1:9000).
//
// Try: curl http://127.0.0.1:8080/ ; node dist/src/cli.js restart ; node dist/src/cli.js status
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const extra = process.argv.slice(2);
const listen = extra.includes('--listen') ? [] : ['--listen', '127.0.0.1:8080'];
const app = `${JSON.stringify(process.execPath)} ${JSON.stringify(here('./demo-app.mjs'))}`;
const gateway = spawn(process.execPath, [here('../dist/src/cli.js'), 'run', ...listen, '--app-command', app, ...extra], { stdio: 'inherit' });
console.error('start-demo: try  curl http://127.0.0.1:8080/   (Ctrl-C stops)');
for (const sig of ['SIGINT', 'SIGTERM', 'SIGQUIT']) process.on(sig, () => gateway.kill(sig === 'SIGINT' ? 'SIGTERM' : sig));
gateway.once('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
