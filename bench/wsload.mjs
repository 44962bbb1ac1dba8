// Closed-loop WebSocket load for bench/ws.mjs: N connections each send a small text message, wait
// for its echo, and send the next at once, for `duration` seconds; every round trip is timed.
//
//   node bench/wsload.mjs --target HOST:PORT [--connections 50] [--duration 10] [--size 16]
//
// Prints one JSON line: {"messages","seconds","rate","p50","p99","max","errors"} (times in ms).
// Plain sockets and a fixed pre-masked frame per connection (RFC 6455 requires client frames to
// be masked; the key need not change per frame for a server to accept it), so the generator is
// cheap next to the proxy being measured.
import crypto from 'node:crypto';
import net from 'node:net';
import { performance } from 'node:perf_hooks';

const o = { target: null, connections: 50, duration: 10, size: 16 };
for (let i = 2; i < process.argv.length; i++) {
  const [flag, inline] = process.argv[i].split('=', 2);
  const value = () => inline ?? process.argv[++i];
  const key = flag.replace(/^--/, '');
  if (key === 'target') o.target = value();
  else if (key in o && flag.startsWith('--')) o[key] = Number(value());
  else throw new Error(`unknown argument ${process.argv[i]}`);
}
if (!o.target) throw new Error('--target HOST:PORT is required');
if (o.size >= 126) throw new Error('--size must be below 126 bytes (one-byte frame length)');
const colon = o.target.lastIndexOf(':');
const HOST = o.target.slice(0, colon);
const PORT = Number(o.target.slice(colon + 1));

let latencies = new Float64Array(1 << 20);
let count = 0;
let errors = 0;
let sending = true;
const record = (ms) => {
  if (count === latencies.length) { const b = new Float64Array(count * 2); b.set(latencies); latencies = b; }
  latencies[count++] = ms;
};

function clientFrame() {
  const mask = crypto.randomBytes(4);
  const payload = Buffer.alloc(o.size, 'm');
  const f = Buffer.alloc(2 + 4 + o.size);
  f[0] = 0x81; // FIN + text
  f[1] = 0x80 | o.size;
  mask.copy(f, 2);
  for (let i = 0; i < o.size; i++) f[6 + i] = payload[i] ^ mask[i & 3];
  return f;
}

// Resolves once the handshake is done; then runs its loop until `sending` is false.
function connection() {
  return new Promise((resolve, reject) => {
    const sock = net.connect(PORT, HOST);
    sock.setNoDelay(true);
    const msg = clientFrame();
    const echoLen = 2 + o.size;
    let open = false;
    let buf = Buffer.alloc(0);
    let sentAt = 0;
    const send = () => {
      if (!sending) { sock.destroy(); return; }
      sentAt = performance.now();
      sock.write(msg);
    };
    sock.on('connect', () => {
      const key = crypto.randomBytes(16).toString('base64');
      sock.write(`GET /ws HTTP/1.1\r\nHost: ${o.target}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    sock.on('data', (chunk) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      if (!open) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const status = buf.toString('latin1', 0, buf.indexOf('\r\n'));
        if (!/^HTTP\/1\.1 101/.test(status)) { sock.destroy(); return reject(new Error(`handshake answered: ${status}`)); }
        open = true;
        buf = buf.subarray(end + 4);
        resolve();
        send();
      }
      // Echoes are unmasked text frames of the same size (server frames are never masked).
      while (buf.length >= echoLen) {
        buf = buf.subarray(echoLen);
        record(performance.now() - sentAt);
        send();
      }
    });
    sock.on('error', (err) => { errors++; if (!open) reject(err); });
    sock.on('close', () => { if (sending && open) errors++; });
  });
}

const conns = [];
for (let i = 0; i < o.connections; i++) conns.push(connection());
await Promise.all(conns);
const t0 = performance.now();
const startCount = count;
setTimeout(() => {
  sending = false;
  const seconds = (performance.now() - t0) / 1000;
  const lat = latencies.subarray(startCount, count).sort();
  const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : NaN);
  const messages = count - startCount;
  process.stdout.write(`${JSON.stringify({ messages, seconds, rate: messages / seconds, p50: q(0.5), p99: q(0.99), max: lat.length ? lat[lat.length - 1] : NaN, errors })}\n`);
  process.exit(0);
}, o.duration * 1000);
