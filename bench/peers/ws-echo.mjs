// The WebSocket app for bench/ws.mjs: echoes every text or binary message, on a Unix socket (what
// the proxies use) and a loopback TCP port (the `direct` row).
//
//   node bench/peers/ws-echo.mjs --socket PATH --port N
//
// A minimal RFC 6455 server (handshake, unfragmented frames, ping, close) rather than a library:
// the `ws` package is not a dependency, and an echo needs little. Plain GETs get 200 "ok" so the
// harness can tell it is up.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';

const arg = (flag) => {
  const i = process.argv.indexOf(flag);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const socketPath = arg('--socket');
const port = Number(arg('--port'));
if (!socketPath || !Number.isInteger(port)) {
  console.error('usage: node bench/peers/ws-echo.mjs --socket PATH --port N');
  process.exit(2);
}

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'; // RFC 6455 section 1.3

function frame(opcode, payload) {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x80 | opcode, n])
    : n < 65536 ? Buffer.from([0x80 | opcode, 126, n >> 8, n & 255])
      : (() => { const h = Buffer.alloc(10); h[0] = 0x80 | opcode; h[1] = 127; h.writeBigUInt64BE(BigInt(n), 2); return h; })();
  return Buffer.concat([head, payload]);
}

function onUpgrade(req, sock, head) {
  const key = req.headers['sec-websocket-key'];
  if (!key || (req.headers.upgrade ?? '').toLowerCase() !== 'websocket') return void sock.destroy();
  const accept = crypto.createHash('sha1').update(key + GUID).digest('base64');
  sock.setNoDelay(true);
  sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  let buf = head.length ? head : null;
  const consume = () => {
    while (buf && buf.length >= 2) {
      const opcode = buf[0] & 0x0f;
      const masked = (buf[1] & 0x80) !== 0;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
      const maskAt = off;
      if (masked) off += 4;
      if (buf.length < off + len) return;
      const payload = Buffer.from(buf.subarray(off, off + len));
      if (masked) for (let i = 0; i < len; i++) payload[i] ^= buf[maskAt + (i & 3)];
      buf = buf.length > off + len ? buf.subarray(off + len) : null;
      if (opcode === 1 || opcode === 2) sock.write(frame(opcode, payload));
      else if (opcode === 9) sock.write(frame(10, payload));
      else if (opcode === 8) { sock.end(frame(8, payload.subarray(0, 2))); return; }
    }
  };
  sock.on('data', (c) => { buf = buf ? Buffer.concat([buf, c]) : c; consume(); });
  sock.on('error', () => {});
  consume();
}

for (const listen of [socketPath, port]) {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': '3' });
    res.end('ok\n');
  });
  server.on('upgrade', onUpgrade);
  if (typeof listen === 'string') {
    fs.rmSync(listen, { force: true });
    server.listen(listen);
  } else server.listen(listen, '127.0.0.1');
}
