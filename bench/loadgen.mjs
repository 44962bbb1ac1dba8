// Closed-loop HTTP/1.1 load for bench/restart.mjs that keeps a record of every request, so the
// harness can count failed requests exactly and find the slowest one (wrk only keeps a histogram
// and silently drops what is still in flight when it stops).
//
//   node bench/loadgen.mjs --target HOST:PORT [--connections 50] [--duration 8] [--drain 5] --out FILE
//
// `connections` loops each send `GET /` on a keep-alive connection, wait for the whole response,
// and send the next one at once. A connection the server closes (or an error) is replaced by a
// new one for the next request. After `duration` seconds no new request is sent; requests still
// in flight get `drain` more seconds to be answered, then count as unanswered.
//
// Plain net sockets and a minimal response parser (Content-Length, chunked, close-delimited)
// rather than an HTTP client library: on one core this sends about as many requests as wrk.
//
// Output: stdout gets {"event":"start","at":T0} when the first requests go out and
// {"event":"done",...} at the end; FILE gets one Float64 triplet per request:
// [sent, answered (NaN if never), code], times in wall-clock ms, code = HTTP status, or
// -(1 + index into `errors` of the done line) for a request that got no HTTP answer.
import fs from 'node:fs';
import net from 'node:net';
import { performance } from 'node:perf_hooks';

function parseArgs(argv) {
  const o = { target: null, connections: 50, duration: 8, drain: 5, out: null };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    if (flag === '--target') o.target = value();
    else if (flag === '--connections') o.connections = Number(value());
    else if (flag === '--duration') o.duration = Number(value());
    else if (flag === '--drain') o.drain = Number(value());
    else if (flag === '--out') o.out = value();
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!o.target || !o.out) throw new Error('--target HOST:PORT and --out FILE are required');
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const colon = opts.target.lastIndexOf(':');
const HOST = opts.target.slice(0, colon);
const PORT = Number(opts.target.slice(colon + 1));
const REQUEST = Buffer.from(`GET / HTTP/1.1\r\nHost: ${opts.target}\r\nUser-Agent: restart-bench\r\n\r\n`, 'latin1');
const CRLF2 = Buffer.from('\r\n\r\n');
const CRLF = Buffer.from('\r\n');

const now = () => performance.timeOrigin + performance.now();

// ---------------------------------------------------------------- records
let records = new Float64Array(3 * 65536);
let count = 0;
const errors = [];
const errorCode = (name) => {
  let i = errors.indexOf(name);
  if (i < 0) i = errors.push(name) - 1;
  return -(1 + i);
};

function newRecord() {
  if (3 * (count + 1) > records.length) {
    const bigger = new Float64Array(records.length * 2);
    bigger.set(records);
    records = bigger;
  }
  records[3 * count] = now();
  records[3 * count + 1] = NaN;
  records[3 * count + 2] = 0;
  return count++;
}

function finish(id, code) {
  records[3 * id + 1] = now();
  records[3 * id + 2] = code;
}

// ---------------------------------------------------------------- connections
let sending = true;
let inflight = 0;
let onIdle = null; // set while draining: called when nothing is in flight any more

class Loop {
  constructor() {
    this.sock = null;
    this.id = -1; // record of the request in flight, -1 if none
    this.resetParser();
  }

  resetParser() {
    this.buf = null;
    this.phase = 'head'; // head | length | chunk-size | chunk-data | trailers | eof
    this.need = 0;
    this.status = 0;
    this.close = false;
  }

  send() {
    if (!sending) return;
    this.id = newRecord();
    inflight++;
    if (!this.sock) this.connect();
    this.sock.write(REQUEST);
  }

  connect() {
    const sock = net.connect(PORT, HOST);
    this.sock = sock;
    this.resetParser();
    sock.setNoDelay(true);
    sock.on('data', (chunk) => this.onData(sock, chunk));
    sock.on('error', (err) => { sock.lastError = err.code || err.message; });
    sock.on('close', () => this.onClose(sock));
  }

  // The connection is gone: a close-delimited body ends here; anything else in flight failed.
  onClose(sock) {
    if (sock !== this.sock) return;
    this.sock = null;
    if (this.id >= 0) {
      if (this.phase === 'eof' && !sock.lastError) this.done(this.status);
      else this.done(errorCode(sock.lastError || (this.buf || this.phase !== 'head' ? 'closed mid-response' : 'closed before response')));
    }
    // A new connection for the next request, outside this event's stack.
    if (sending) setImmediate(() => { if (this.id < 0 && sending) this.send(); });
  }

  done(code) {
    finish(this.id, code);
    this.id = -1;
    inflight--;
    if (!sending && inflight === 0 && onIdle) onIdle();
  }

  onData(sock, chunk) {
    if (sock !== this.sock) return;
    this.buf = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.buf && this.buf.length > 0) {
      const complete = this.parse();
      if (complete === null) return; // need more bytes
      if (complete === 'bad') {
        this.sock = null;
        sock.destroy();
        this.done(errorCode('unparsable response'));
        if (sending) this.send();
        return;
      }
      // A whole response.
      if (this.id < 0) {
        // The server answered something nobody asked for.
        this.sock = null;
        sock.destroy();
        return;
      }
      const close = this.close;
      const rest = this.buf;
      this.done(this.status);
      this.resetParser();
      if (close) {
        this.sock = null;
        sock.destroy();
        if (sending) this.send();
        return;
      }
      this.buf = rest && rest.length ? rest : null;
      if (sending) this.send();
      else { this.sock = null; sock.destroy(); return; }
    }
  }

  // Consumes this.buf; returns true when a response is complete, null when more bytes are
  // needed, 'bad' for garbage. Every case copes with an empty buffer (Content-Length: 0
  // completes without more bytes; everything else waits).
  parse() {
    for (;;) {
      const buf = this.buf;
      switch (this.phase) {
        case 'head': {
          const end = buf.indexOf(CRLF2);
          if (end < 0) return buf.length > 65536 ? 'bad' : null;
          const head = buf.toString('latin1', 0, end);
          this.buf = buf.subarray(end + 4);
          const m = /^HTTP\/1\.([01]) (\d{3})/.exec(head);
          if (!m) return 'bad';
          const status = Number(m[2]);
          if (status >= 100 && status < 200) continue; // 100 Continue and friends: skip
          this.status = status;
          const lower = head.toLowerCase();
          const connection = /\r\nconnection:([^\r]*)/.exec(lower)?.[1] ?? '';
          this.close = m[1] === '0' ? !connection.includes('keep-alive') : connection.includes('close');
          const length = /\r\ncontent-length:\s*(\d+)/.exec(lower);
          if (status === 204 || status === 304) return true;
          if (/\r\ntransfer-encoding:[^\r]*chunked/.test(lower)) this.phase = 'chunk-size';
          else if (length) {
            this.need = Number(length[1]);
            this.phase = 'length';
          } else {
            this.phase = 'eof';
            this.close = true;
          }
          break;
        }
        case 'length':
          if (buf.length < this.need) {
            this.need -= buf.length;
            this.buf = null;
            return null;
          }
          this.buf = buf.subarray(this.need);
          return true;
        case 'chunk-size': {
          const end = buf.indexOf(CRLF);
          if (end < 0) return buf.length > 1024 ? 'bad' : null;
          const size = parseInt(buf.toString('latin1', 0, end), 16);
          if (!Number.isFinite(size)) return 'bad';
          this.buf = buf.subarray(end + 2);
          if (size === 0) this.phase = 'trailers';
          else {
            this.need = size + 2; // data and its CRLF
            this.phase = 'chunk-data';
          }
          break;
        }
        case 'chunk-data':
          if (buf.length < this.need) {
            this.need -= buf.length;
            this.buf = null;
            return null;
          }
          this.buf = buf.subarray(this.need);
          this.phase = 'chunk-size';
          break;
        case 'trailers': {
          const end = buf.indexOf(CRLF);
          if (end < 0) return null;
          this.buf = buf.subarray(end + 2);
          if (end === 0) return true;
          break;
        }
        case 'eof':
          this.buf = null; // the body runs to the end of the connection
          return null;
        default:
          return 'bad';
      }
    }
  }
}

// ---------------------------------------------------------------- run
const t0 = now();
process.stdout.write(`${JSON.stringify({ event: 'start', at: t0 })}\n`);
const loops = Array.from({ length: opts.connections }, () => new Loop());
for (const loop of loops) loop.send();

setTimeout(() => {
  sending = false;
  const end = () => {
    clearTimeout(timer);
    for (const loop of loops) {
      if (loop.id >= 0) {
        records[3 * loop.id + 2] = errorCode('unanswered');
        loop.id = -1;
      }
      loop.sock?.destroy();
      loop.sock = null;
    }
    fs.writeFileSync(opts.out, new Uint8Array(records.buffer, 0, 3 * count * 8));
    process.stdout.write(`${JSON.stringify({ event: 'done', at: now(), t0, requests: count, errors })}\n`);
    process.exit(0);
  };
  const timer = setTimeout(end, opts.drain * 1000);
  if (inflight === 0) end();
  else onIdle = end;
}, opts.duration * 1000);
