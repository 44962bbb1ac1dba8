#!/usr/bin/env node
// `npm start`: the demo app server on the host's conventions (/tmp/web_server.sock,
// /tmp/web_server.pid) and the gateway in front of it on 127.0.0.1:8080, in the foreground.
// Ctrl-C stops both. Extra arguments go to `gateway run` (e.g. --listen 127.0.0.1:9000).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const socket = process.env.WEB_SERVER_SOCKET ?? '/tmp/web_server.sock';
const pid = process.env.WEB_SERVER_PID ?? '/tmp/web_server.pid';

const app = spawn(process.execPath, [here('./demo-app.mjs'), '--socket', socket, '--pid', pid], { stdio: 'inherit' });
app.once('exit', (code) => {
  console.error(`start-demo: demo app exited (${code}); stopping`);
  gateway?.kill('SIGTERM');
  process.exitCode = code ?? 1;
});

let gateway;
const waitForSocket = Date.now() + 10_000;
const timer = setInterval(() => {
  if (!fs.existsSync(socket)) {
    if (Date.now() > waitForSocket) {
      console.error(`start-demo: ${socket} did not appear within 10 s`);
      app.kill('SIGINT');
      clearInterval(timer);
    }
    return;
  }
  clearInterval(timer);
  const extra = process.argv.slice(2);
  const listen = extra.includes('--listen') ? [] : ['--listen', '127.0.0.1:8080'];
  gateway = spawn(process.execPath, [here('../dist/src/cli.js'), 'run', ...listen, '--upstream', socket, ...extra], { stdio: 'inherit' });
  gateway.once('exit', (code) => {
    app.kill('SIGTERM');
    process.exitCode = code ?? 0;
  });
  console.error('start-demo: try  curl http://127.0.0.1:8080/  (Ctrl-C stops)');
}, 50);

for (const sig of ['SIGINT', 'SIGTERM', 'SIGQUIT']) {
  process.on(sig, () => {
    gateway?.kill(sig);
    app.kill(sig === 'SIGINT' ? 'SIGINT' : 'SIGTERM');
  });
}
