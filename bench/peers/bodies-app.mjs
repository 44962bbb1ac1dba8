// The app server for bench/bodies.mjs: large bodies both ways, on a Unix socket and, for the
// `direct` row, a loopback TCP port.
//
//   node bench/peers/bodies-app.mjs --socket PATH --port N
//
//   GET /            200 "ok" (readiness)
//   GET /1m          1 MiB (one preallocated buffer, Content-Length)
//   GET /stream?bytes=N   N bytes in 64 KiB chunks, written as the client reads (backpressure)
//   POST, PUT any    reads the whole body and answers 200 with the byte count it read
//
// Node rather than nginx so that uploads are really read before the answer: nginx's `return 200`
// answers first and discards the body later, which a proxy may see as an early response.
import fs from 'node:fs';
import http from 'node:http';

const arg = (flag) => {
  const i = process.argv.indexOf(flag);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const socketPath = arg('--socket');
const port = Number(arg('--port'));
if (!socketPath || !Number.isInteger(port)) {
  console.error('usage: node bench/peers/bodies-app.mjs --socket PATH --port N');
  process.exit(2);
}

const ONE_MB = Buffer.alloc(1024 * 1024, 'x');
const CHUNK = Buffer.alloc(64 * 1024, 'y');

function stream(res, total) {
  res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(total) });
  let left = total;
  const pump = () => {
    while (left > 0) {
      const n = Math.min(left, CHUNK.length);
      left -= n;
      const more = res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n));
      if (!more) return void res.once('drain', pump);
    }
    res.end();
  };
  res.on('close', () => { left = 0; });
  pump();
}

function handler(req, res) {
  if (req.method === 'POST' || req.method === 'PUT') {
    let bytes = 0;
    req.on('data', (c) => { bytes += c.length; });
    req.on('end', () => {
      const body = `ok ${bytes}\n`;
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': String(body.length) });
      res.end(body);
    });
    return;
  }
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/1m') {
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(ONE_MB.length) });
    res.end(ONE_MB);
  } else if (url.pathname === '/stream') {
    stream(res, Number(url.searchParams.get('bytes') ?? 0));
  } else {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': '3' });
    res.end('ok\n');
  }
}

// Puma's persistent_timeout is 20 s; Node's default of 5 s would recycle idle proxy connections.
for (const listen of [socketPath, port]) {
  const server = http.createServer(handler);
  server.keepAliveTimeout = 20_000;
  server.requestTimeout = 0; // a 1 GB upload takes longer than Node's default 300 s on a slow VM
  if (typeof listen === 'string') {
    fs.rmSync(listen, { force: true });
    server.listen(listen);
  } else server.listen(listen, '127.0.0.1');
}
