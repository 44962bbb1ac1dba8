/**
 * A strict HTTP/1.1 message parser (RFC 9112, no leniency at all) for what the gateway sends the app,
 * and a raw upstream that records every byte it receives and parses it with it. The adversarial suite
 * (test/adversarial/) uses it to prove the app never saw bytes that a strict parser would split
 * differently from the gateway: no bare CR or LF, no obs-fold, no space before a colon, one framing
 * (Content-Length xor chunked) and nothing left over that is not a whole next request.
 *
 * Also a raw client that reads the gateway's responses as a strict client would (statuses in order,
 * bodies by their framing, whether the connection closed).
 */
import net from 'node:net';
import { rawUpstream, type Upstream } from './upstream.js';

const TOKEN = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]+";
const REQUEST_LINE = new RegExp(`^(${TOKEN}) ([\\x21-\\x7e]+) HTTP/1\\.([01])$`);
// RFC 9110 5.5: field-value = *field-content; no CR, LF or NUL; obs-text (0x80-0xff) allowed.
const FIELD_LINE = new RegExp(`^(${TOKEN}):[ \\t]*([\\x21-\\x7e\\x80-\\xff](?:[\\x20-\\x7e\\x80-\\xff\\t]*[\\x21-\\x7e\\x80-\\xff])?)?[ \\t]*$`);
const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3}) ([\x20-\x7e\x80-\xff\t]*)$/;
const QUOTED = '"(?:[\\t \\x21\\x23-\\x5b\\x5d-\\x7e\\x80-\\xff]|\\\\[\\t \\x21-\\x7e\\x80-\\xff])*"';
// RFC 9112 7.1.1: chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ).
const CHUNK_LINE = new RegExp(`^([0-9A-Fa-f]{1,15})((?:[ \\t]*;[ \\t]*${TOKEN}(?:[ \\t]*=[ \\t]*(?:${TOKEN}|${QUOTED}))?)*)$`);

export interface StrictRequest {
  method: string;
  target: string;
  version: string;
  /** [name, value] in order, as received (latin1). */
  headers: [string, string][];
  body: Buffer;
}

export interface StrictParse<T> {
  messages: T[];
  /** Bytes after the last whole message: the start of an incomplete one. */
  rest: Buffer;
  /** Why the bytes are not HTTP/1.1 a strict parser would read one way only. */
  error?: string;
}

/** Reads one line ending in CRLF at `at`; a bare CR or LF anywhere is an error. */
function line(buf: Buffer, at: number): { text: string; next: number } | { error: string } | undefined {
  for (let i = at; i < buf.length; i++) {
    const c = buf[i];
    if (c === 0x0a) return { error: `bare LF at ${i}` };
    if (c === 0x0d) {
      if (i + 1 >= buf.length) return undefined;
      if (buf[i + 1] !== 0x0a) return { error: `bare CR at ${i}` };
      return { text: buf.toString('latin1', at, i), next: i + 2 };
    }
    if (c === 0x00) return { error: `NUL at ${i}` };
  }
  return undefined;
}

type Head = { start: string; fields: [string, string][]; next: number };

function head(buf: Buffer, at: number): Head | { error: string } | undefined {
  const first = line(buf, at);
  if (!first || 'error' in first) return first;
  const fields: [string, string][] = [];
  let pos = first.next;
  for (;;) {
    const l = line(buf, pos);
    if (!l || 'error' in l) return l;
    pos = l.next;
    if (l.text === '') return { start: first.text, fields, next: pos };
    if (fields.length >= 200) return { error: 'more than 200 fields' };
    const m = FIELD_LINE.exec(l.text);
    if (!m) return { error: `bad field line ${JSON.stringify(l.text)}` };
    fields.push([m[1] as string, m[2] ?? '']);
  }
}

/** The body framing of a message (RFC 9112 6.3), strictly: one of them, well formed, or an error. */
function framing(fields: [string, string][]): { kind: 'none' } | { kind: 'length'; n: number } | { kind: 'chunked' } | { error: string } {
  const te = fields.filter(([n]) => n.toLowerCase() === 'transfer-encoding');
  const cl = fields.filter(([n]) => n.toLowerCase() === 'content-length');
  if (te.length > 0) {
    if (cl.length > 0) return { error: 'Content-Length and Transfer-Encoding' };
    if (te.length > 1 || (te[0] as [string, string])[1].toLowerCase() !== 'chunked') return { error: `Transfer-Encoding ${JSON.stringify(te.map(([, v]) => v))}` };
    return { kind: 'chunked' };
  }
  if (cl.length > 1) return { error: 'duplicate Content-Length' };
  if (cl.length === 1) {
    const v = (cl[0] as [string, string])[1];
    if (!/^\d{1,15}$/.test(v)) return { error: `bad Content-Length ${JSON.stringify(v)}` };
    return { kind: 'length', n: Number(v) };
  }
  return { kind: 'none' };
}

/** A chunked body from `at`; undefined while incomplete. */
function chunked(buf: Buffer, at: number): { body: Buffer; next: number } | { error: string } | undefined {
  const parts: Buffer[] = [];
  let pos = at;
  for (;;) {
    const l = line(buf, pos);
    if (!l || 'error' in l) return l;
    const m = CHUNK_LINE.exec(l.text);
    if (!m) return { error: `bad chunk line ${JSON.stringify(l.text)}` };
    const size = parseInt(m[1] as string, 16);
    pos = l.next;
    if (size === 0) break;
    if (buf.length < pos + size + 2) return undefined;
    parts.push(buf.subarray(pos, pos + size));
    if (buf[pos + size] !== 0x0d || buf[pos + size + 1] !== 0x0a) return { error: 'chunk data not followed by CRLF' };
    pos += size + 2;
  }
  // Trailer section, then the final CRLF.
  for (;;) {
    const l = line(buf, pos);
    if (!l || 'error' in l) return l;
    pos = l.next;
    if (l.text === '') return { body: Buffer.concat(parts), next: pos };
    if (!FIELD_LINE.test(l.text)) return { error: `bad trailer ${JSON.stringify(l.text)}` };
  }
}

/** Every whole request in `buf`, strictly. Stops at the first error. */
export function parseRequests(buf: Buffer): StrictParse<StrictRequest> {
  const messages: StrictRequest[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const h = head(buf, pos);
    if (!h) break;
    if ('error' in h) return { messages, rest: buf.subarray(pos), error: h.error };
    const m = REQUEST_LINE.exec(h.start);
    if (!m) return { messages, rest: buf.subarray(pos), error: `bad request line ${JSON.stringify(h.start)}` };
    const f = framing(h.fields);
    if ('error' in f) return { messages, rest: buf.subarray(pos), error: f.error };
    if (h.fields.filter(([n]) => n.toLowerCase() === 'host').length !== 1) return { messages, rest: buf.subarray(pos), error: 'not exactly one Host' };
    let body: Buffer;
    let next: number;
    if (f.kind === 'none') {
      body = Buffer.alloc(0);
      next = h.next;
    } else if (f.kind === 'length') {
      if (buf.length < h.next + f.n) break;
      body = buf.subarray(h.next, h.next + f.n);
      next = h.next + f.n;
    } else {
      const c = chunked(buf, h.next);
      if (!c) break;
      if ('error' in c) return { messages, rest: buf.subarray(pos), error: c.error };
      body = c.body;
      next = c.next;
    }
    messages.push({ method: m[1] as string, target: m[2] as string, version: `1.${m[3]}`, headers: h.fields, body: Buffer.from(body) });
    pos = next;
  }
  return { messages, rest: buf.subarray(pos) };
}

export interface Recorded {
  /** Every byte received on this connection. */
  raw: Buffer;
  parse: StrictParse<StrictRequest>;
  closed: boolean;
}

/**
 * What the fake app does with a request: undefined for the default answer
 * (`200`, body `METHOD TARGET BODYLENGTH`), bytes to write, or a function that takes the socket.
 */
export type Script = (req: StrictRequest, socket: net.Socket, index: { onConnection: number }) => string | Buffer | ((socket: net.Socket) => void) | undefined;

export interface StrictUpstream extends Upstream<net.Server> {
  connections: Recorded[];
  /** Every whole request received, on any connection, in arrival order. */
  requests: StrictRequest[];
  /** Parse errors seen, with the connection's bytes. */
  errors(): { error: string; raw: string }[];
  /** Forget what was recorded (between cases). */
  reset(): void;
  script: Script | undefined;
  /** Called on every new connection before anything is read (an upstream that speaks first). */
  onConnect: ((socket: net.Socket) => void) | undefined;
}

export function defaultAnswer(req: StrictRequest): string {
  const body = `${req.method} ${req.target} ${req.body.length}`;
  return `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
}

export async function strictUpstream(socketPath: string): Promise<StrictUpstream> {
  const state = { connections: [] as Recorded[], requests: [] as StrictRequest[] };
  let up: StrictUpstream;
  const base = await rawUpstream(socketPath, (socket) => {
    const rec: Recorded = { raw: Buffer.alloc(0), parse: { messages: [], rest: Buffer.alloc(0) }, closed: false };
    state.connections.push(rec);
    let answered = 0;
    up.onConnect?.(socket);
    socket.on('close', () => (rec.closed = true));
    socket.on('data', (c: Buffer) => {
      rec.raw = Buffer.concat([rec.raw, c]);
      rec.parse = parseRequests(rec.raw);
      if (rec.parse.error) {
        // A strict server refuses what it cannot read one way only, and closes.
        socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
        return;
      }
      while (answered < rec.parse.messages.length) {
        const req = rec.parse.messages[answered] as StrictRequest;
        answered++;
        state.requests.push(req);
        const out = up.script?.(req, socket, { onConnection: answered - 1 });
        if (typeof out === 'function') out(socket);
        else if (socket.writable) socket.write(out ?? defaultAnswer(req));
      }
    });
  });
  up = Object.assign(base, {
    get connections() {
      return state.connections;
    },
    get requests() {
      return state.requests;
    },
    errors: () => state.connections.filter((c) => c.parse.error).map((c) => ({ error: c.parse.error as string, raw: c.raw.toString('latin1') })),
    reset: () => {
      // Connections the pool keeps are recorded afresh from here on.
      const kept = state.connections;
      state.connections = [];
      state.requests = [];
      for (const c of kept) {
        if (!c.closed) {
          const rec: Recorded = c;
          rec.raw = Buffer.alloc(0);
          rec.parse = { messages: [], rest: Buffer.alloc(0) };
          state.connections.push(rec);
        }
      }
    },
    script: undefined,
    onConnect: undefined,
  }) as StrictUpstream;
  return up;
}

export interface ClientResponse {
  status: number;
  headers: [string, string][];
  body: Buffer;
  /** The body ended by its framing (false: cut by a close, or still incomplete). */
  complete: boolean;
}

export interface Conversation {
  /** Final responses (1xx are in `interim`), in order. */
  responses: ClientResponse[];
  interim: number[];
  /** The gateway closed (FIN or reset). */
  closed: boolean;
  /** Everything received, as latin1. */
  text: string;
  /** The bytes could not be read as HTTP responses. */
  error?: string;
}

/** Reads responses from `buf` (as a strict client would); `heads` lists the request methods, HEAD has no body. */
function parseResponses(buf: Buffer, methods: string[], atEnd: boolean): { responses: ClientResponse[]; interim: number[]; error?: string } {
  const responses: ClientResponse[] = [];
  const interim: number[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const h = head(buf, pos);
    if (!h) return { responses, interim, error: atEnd ? 'incomplete response head' : undefined };
    if ('error' in h) return { responses, interim, error: h.error };
    const m = STATUS_LINE.exec(h.start);
    if (!m) return { responses, interim, error: `bad status line ${JSON.stringify(h.start)}` };
    const status = Number(m[2]);
    if (status >= 100 && status < 200) {
      interim.push(status);
      pos = h.next;
      continue;
    }
    const method = methods[responses.length] ?? 'GET';
    const f = method === 'HEAD' || status === 204 || status === 304 ? { kind: 'none' as const } : framing(h.fields);
    if ('error' in f) return { responses, interim, error: f.error };
    if (f.kind === 'chunked') {
      const c = chunked(buf, h.next);
      if (!c || 'error' in c) {
        responses.push({ status, headers: h.fields, body: buf.subarray(h.next), complete: false });
        return { responses, interim, error: c?.error };
      }
      responses.push({ status, headers: h.fields, body: c.body, complete: true });
      pos = c.next;
    } else if (f.kind === 'length') {
      const complete = buf.length >= h.next + f.n;
      responses.push({ status, headers: h.fields, body: buf.subarray(h.next, h.next + f.n), complete });
      if (!complete) return { responses, interim };
      pos = h.next + f.n;
    } else if (method !== 'HEAD' && status !== 204 && status !== 304) {
      // No framing: the body runs to the close.
      responses.push({ status, headers: h.fields, body: buf.subarray(h.next), complete: atEnd });
      return { responses, interim };
    } else {
      responses.push({ status, headers: h.fields, body: Buffer.alloc(0), complete: true });
      pos = h.next;
    }
  }
  return { responses, interim };
}

export interface Step {
  data: string | Buffer;
  /** Wait this long before writing it. */
  delayMs?: number;
}

/**
 * Writes `steps` on one connection and reads until `expect` final responses are complete and then
 * either the gateway closes or `settleMs` passes with nothing more; or until `timeoutMs`.
 */
export async function converse(port: number, steps: Step[], opts: { expect: number; methods?: string[]; settleMs?: number; timeoutMs?: number; halfClose?: boolean }): Promise<Conversation> {
  const settleMs = opts.settleMs ?? 300;
  const timeoutMs = opts.timeoutMs ?? 5000;
  const methods = opts.methods ?? [];
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let buf = Buffer.alloc(0);
    let closed = false;
    let done = false;
    let settle: NodeJS.Timeout | undefined;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(settle);
      socket.destroy();
      const p = parseResponses(buf, methods, closed);
      resolve({ responses: p.responses, interim: p.interim, closed, text: buf.toString('latin1'), error: p.error });
    };
    const check = () => {
      const p = parseResponses(buf, methods, closed);
      const whole = p.responses.filter((r) => r.complete).length;
      if (closed) return finish();
      if (whole >= opts.expect) {
        clearTimeout(settle);
        settle = setTimeout(finish, settleMs);
      }
    };
    const timer = setTimeout(finish, timeoutMs);
    socket.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      check();
    });
    socket.on('error', () => undefined);
    socket.on('end', () => {
      closed = true;
      check();
    });
    socket.on('close', () => {
      closed = true;
      check();
    });
    socket.on('connect', async () => {
      for (const s of steps) {
        if (s.delayMs) await new Promise((r) => setTimeout(r, s.delayMs));
        if (socket.destroyed) return;
        socket.write(s.data);
      }
      if (opts.halfClose) socket.end();
      if (opts.expect === 0) settle = setTimeout(finish, settleMs);
    });
  });
}
