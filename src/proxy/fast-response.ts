/**
 * The response of the client fast path (fast-connection.ts): what the gateway calls of Node's
 * ServerResponse, writing the bytes Node writes for the same calls: the app's fields in order,
 * then Date, Connection (and Keep-Alive), Transfer-Encoding.
 */
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastRequest } from './fast-request.js';

/** What a response needs of its connection (fast-connection.ts). */
export interface ResponseConnection {
  /** `Connection: keep-alive` and `Keep-Alive: timeout=N`, with their line ends. */
  readonly keepAliveFields: string;
  /** The client stopped taking the response: wait for its drain, under send_timeout. */
  pushedBack(): void;
  /** The response is written whole. */
  responseDone(res: FastResponse): void;
}

let date = '';
function utcDate(): string {
  if (date === '') {
    const now = new Date();
    date = now.toUTCString();
    setTimeout(() => (date = ''), 1000 - now.getMilliseconds()).unref();
  }
  return date;
}

const CRLF = '\r\n';
/** A first body chunk up to this size goes out in one buffer with the head (one write, no writev). */
const MERGE_MAX = 16 * 1024;

type Listener = (...args: unknown[]) => void;

const F_DATE = 1;
const F_LENGTH = 2;
const F_CODING = 4;
const F_CHUNKED = 8;
const F_CONNECTION = 16;
const F_CLOSE = 32;

/** What a response field tells the framing: the F_ flags, as Node's ServerResponse reads them. */
function fieldFlags(name: string, value: string): number {
  switch (name.length) {
    case 4:
      return name.toLowerCase() === 'date' ? F_DATE : 0;
    case 10:
      if (name.toLowerCase() !== 'connection') return 0;
      return /(?:^|\W)close(?:$|\W)/i.test(value) ? F_CONNECTION | F_CLOSE : F_CONNECTION;
    case 14:
      return name.toLowerCase() === 'content-length' ? F_LENGTH : 0;
    case 17:
      if (name.toLowerCase() !== 'transfer-encoding') return 0;
      return /(?:^|\W)chunked(?:$|\W)/i.test(value) ? F_CODING | F_CHUNKED : F_CODING;
    default:
      return 0;
  }
}

/**
 * The response to a FastRequest: what the gateway calls of Node's ServerResponse, writing what
 * Node writes. The head waits for the first body bytes: a response written whole in one tick (the
 * usual: its head, body and end come from one upstream read) goes out as one buffer in one write.
 */
export class FastResponse {
  /** True once writeHead ran, as Node's (the head itself may not be written yet). */
  headersSent = false;
  destroyed = false;
  writableEnded = false;
  writableFinished = false;
  shouldKeepAlive: boolean;
  /** server.ts's per-response field (GatewayResponse). */
  exchange: unknown = undefined;
  private head = '';
  private headWritten = false;
  /** The first body chunk, kept to go out with the head (flushed on the next tick at the latest). */
  private first: Buffer | null = null;
  private chunked = false;
  /** HEAD, 204, 304: the head only (Node ignores body writes for them). */
  private hasBody: boolean;
  /** The connection closes after this response (Connection: close written). */
  last = false;
  private trailers = '';
  private draining = false;
  /** The gateway listens for 'close' (the Exchange, on every response), 'drain' and 'finish' only: a list does. */
  private listeners: { event: string; fn: Listener; once: boolean }[] | null = null;

  constructor(
    readonly req: FastRequest,
    readonly socket: Socket,
    private readonly conn: ResponseConnection,
    keepAlive: boolean,
  ) {
    this.shouldKeepAlive = keepAlive;
    this.hasBody = req.method !== 'HEAD';
  }

  get writableLength(): number {
    return this.socket.writableLength;
  }

  on(event: string, fn: Listener): this {
    (this.listeners ??= []).push({ event, fn, once: false });
    return this;
  }

  once(event: string, fn: Listener): this {
    (this.listeners ??= []).push({ event, fn, once: true });
    return this;
  }

  off(event: string, fn: Listener): this {
    const i = this.listeners?.findIndex((l) => l.event === event && l.fn === fn) ?? -1;
    if (i !== -1) this.listeners?.splice(i, 1);
    return this;
  }

  removeListener(event: string, fn: Listener): this {
    return this.off(event, fn);
  }

  emit(event: string, ...args: unknown[]): boolean {
    const all = this.listeners;
    if (all === null) return false;
    let called = false;
    for (const l of all.slice()) {
      if (l.event !== event) continue;
      if (l.once) this.off(event, l.fn);
      l.fn.apply(this, args);
      called = true;
    }
    return called;
  }

  writeHead(status: number, text?: string | Record<string, string | number> | string[], headers?: Record<string, string | number> | string[]): this {
    if (typeof text !== 'string') {
      headers = text;
      text = undefined;
    }
    if (status === 204 || status === 304 || status < 200) this.hasBody = false;
    let head = `HTTP/1.1 ${status} ${text ?? STATUS_CODES[status] ?? 'unknown'}\r\n`;
    let flags = 0;
    if (Array.isArray(headers)) {
      for (let i = 0; i < headers.length; i += 2) {
        const name = headers[i] as string;
        const value = headers[i + 1] as string;
        head += name + ': ' + value + CRLF;
        flags |= fieldFlags(name, value);
      }
    } else if (headers) {
      for (const name in headers) {
        const value = String(headers[name]);
        head += name + ': ' + value + CRLF;
        flags |= fieldFlags(name, value);
      }
    }
    const hasDate = (flags & F_DATE) !== 0;
    const hasLength = (flags & F_LENGTH) !== 0;
    const hasCoding = (flags & F_CODING) !== 0;
    const hasConnection = (flags & F_CONNECTION) !== 0;
    if ((flags & F_CLOSE) !== 0) this.last = true;
    if ((flags & F_CHUNKED) !== 0) this.chunked = true;
    if (!hasDate) head += 'Date: ' + utcDate() + CRLF;
    if (!hasConnection) {
      if (this.shouldKeepAlive) head += this.conn.keepAliveFields;
      else {
        head += 'Connection: close\r\n';
        this.last = true;
      }
    }
    if (!hasLength && !hasCoding && this.hasBody) {
      head += 'Transfer-Encoding: chunked\r\n';
      this.chunked = true;
    }
    if (!this.hasBody) this.chunked = false;
    this.head = head + CRLF;
    this.headersSent = true;
    return this;
  }

  write(chunk: Buffer | string): boolean {
    if (this.destroyed || this.writableEnded) return false;
    if (!this.headersSent) this.writeHead(200);
    if (!this.hasBody || chunk.length === 0) {
      if (!this.headWritten && this.first === null) this.flushHead('');
      return true;
    }
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (!this.headWritten && this.first === null && buf.length <= MERGE_MAX) {
      this.first = buf;
      // A sized body's end adds nothing: head and chunk go now, in one buffer. A chunked body's
      // last chunk usually ends it in this same tick: kept until then, to go in the same buffer.
      if (!this.chunked) {
        this.flushHead('');
        return !this.draining;
      }
      process.nextTick(flushFirst, this);
      return true;
    }
    this.flush();
    return this.send(buf);
  }

  /** The head, and the first chunk when kept, as one buffer; `tail` (the chunked end) with them. */
  private flushHead(tail: string): void {
    this.headWritten = true;
    const head = this.head;
    this.head = '';
    const first = this.first;
    this.first = null;
    if (first === null) {
      if (!this.socket.write(head + tail, 'latin1')) this.waitDrain();
      return;
    }
    const frame = this.chunked ? first.length.toString(16) + CRLF : '';
    const after = this.chunked ? CRLF + tail : tail;
    const out = Buffer.allocUnsafe(head.length + frame.length + first.length + after.length);
    let at = out.write(head, 0, 'latin1');
    at += out.write(frame, at, 'latin1');
    at += first.copy(out, at);
    out.write(after, at, 'latin1');
    if (!this.socket.write(out)) this.waitDrain();
  }

  /** Writes the head (and the kept first chunk) now, if not written yet. */
  flush(): void {
    if (!this.headWritten && !this.destroyed) this.flushHead('');
  }

  private send(buf: Buffer): boolean {
    const socket = this.socket;
    let ok: boolean;
    if (this.chunked) {
      socket.cork();
      socket.write(buf.length.toString(16) + CRLF, 'latin1');
      socket.write(buf);
      ok = socket.write(CRLF, 'latin1');
      socket.uncork();
    } else ok = socket.write(buf);
    if (!ok) this.waitDrain();
    return ok;
  }

  private waitDrain(): void {
    if (this.draining) return;
    this.draining = true;
    this.conn.pushedBack();
  }

  addTrailers(fields: Record<string, string>): void {
    for (const name in fields) this.trailers += name + ': ' + fields[name] + CRLF;
  }

  end(chunk?: Buffer | string): this {
    if (this.writableEnded || this.destroyed) return this;
    if (chunk !== undefined && chunk.length > 0) this.write(chunk);
    this.writableEnded = true;
    if (!this.headersSent) this.writeHead(200);
    const tail = this.chunked ? '0\r\n' + this.trailers + CRLF : '';
    if (!this.headWritten) this.flushHead(tail);
    else if (tail !== '') this.socket.write(tail, 'latin1');
    this.writableFinished = true;
    this.conn.responseDone(this);
    // As Node's: 'finish', then 'close' (here at once: the bytes are with the socket).
    if (this.listeners !== null) {
      this.emit('finish');
      this.emit('close');
    }
    return this;
  }

  destroy(_err?: Error): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.first = null;
    this.socket.destroy();
    return this;
  }

  /** The socket drained: passed on to the response waiting on it. */
  drained(): void {
    this.draining = false;
    this.emit('drain');
  }

  /** The socket closed under the response. */
  closed(): void {
    if (this.writableFinished) return;
    this.destroyed = true;
    this.first = null;
    this.emit('close');
  }
}

function flushFirst(res: FastResponse): void {
  res.flush();
}
