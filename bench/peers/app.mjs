// The app server for bench/restart.mjs: answers every request with 200 "ok" on a Unix socket,
// and stops the way Thin or Puma do on a cold stop: on SIGTERM it stops accepting at once and
// removes its socket file (callers get ENOENT until the next start), finishes what is in flight
// with `Connection: close`, closes idle keep-alive connections, then exits.
//
//   node bench/peers/app.mjs --socket /path/to/app.sock
//
// It prints one JSON line per event on stdout, each with `at` = wall-clock ms (sub-ms precision,
// comparable across processes): {"event":"up"} once the socket accepts, {"event":"first-request"}
// when the first request arrives, {"event":"down"} once the socket is gone, {"event":"exit"} just
// before exiting.
import fs from 'node:fs';
import http from 'node:http';
import { performance } from 'node:perf_hooks';

const i = process.argv.indexOf('--socket');
const socketPath = i >= 0 ? process.argv[i + 1] : undefined;
if (!socketPath) {
  console.error('usage: node bench/peers/app.mjs --socket PATH');
  process.exit(2);
}

const now = () => performance.timeOrigin + performance.now();
const say = (event, extra = {}) => process.stdout.write(`${JSON.stringify({ event, at: now(), ...extra })}\n`);

let stopping = false;
let served = 0;
const server = http.createServer((req, res) => {
  // The first request's arrival: how long after "up" a proxy got a held request here.
  if (served++ === 0) say('first-request');
  // While stopping, no connection is kept for another request (Puma does the same).
  if (stopping) res.setHeader('Connection', 'close');
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': '2' });
  res.end('ok');
});
// Connections accepted: how a proxy uses its upstream pool (reported on exit).
let connections = 0;
server.on('connection', () => { connections++; });
// Puma's persistent_timeout is 20 s; Node's default of 5 s would recycle idle proxy connections.
server.keepAliveTimeout = 20_000;

// A socket file left by a killed predecessor would make listen() fail with EADDRINUSE.
fs.rmSync(socketPath, { force: true });
server.listen(socketPath, () => say('up', { pid: process.pid }));

function shutdown() {
  if (stopping) return;
  stopping = true;
  server.close(() => {
    say('exit', { served, connections });
    process.exit(0);
  });
  // libuv unlinks a listening pipe when it closes it; removing it here as well makes sure the
  // file is gone before we say "down".
  fs.rmSync(socketPath, { force: true });
  say('down', { served });
  server.closeIdleConnections();
  // A client that keeps a connection open must not keep the app alive past a second.
  setTimeout(() => {
    server.closeAllConnections();
  }, 1000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
