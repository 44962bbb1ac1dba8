/**
 * The access log: nginx's `combined` line, or one JSON object per request. Written through pino's
 * asynchronous destination (sonic-boom) so a slow disk never blocks the event loop; `reopen()` is
 * what SIGUSR1 calls after logrotate moved the file. Authorization and Cookie are never written.
 */
import { pino } from 'pino';

type Destination = ReturnType<typeof pino.destination>;

export interface AccessEntry {
  remoteAddr: string;
  method: string;
  url: string;
  httpVersion: string;
  status: number;
  bytesSent: number;
  referer: string | undefined;
  userAgent: string | undefined;
  /** Milliseconds from request head to the end of the response. */
  requestTime: number;
  /** Milliseconds from dispatch to the upstream's response head; undefined when there was none. */
  upstreamTime: number | undefined;
  held: boolean;
  /** The gateway's error code when the gateway answered or cut the request (docs/errors.md). */
  error?: string | undefined;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

export class AccessLog {
  private readonly dest: Destination | undefined;
  private cachedSecond = -1;
  private cachedTime = '';

  constructor(
    readonly target: string,
    private readonly format: 'combined' | 'json',
  ) {
    if (target === 'off') return;
    this.dest = pino.destination({ dest: target === '-' ? 1 : target, sync: false, mkdir: false });
  }

  get enabled(): boolean {
    return this.dest !== undefined;
  }

  write(e: AccessEntry): void {
    if (!this.dest) return;
    this.dest.write(this.format === 'json' ? this.json(e) : this.combined(e));
  }

  /** Resolves once the file is open (before privileges are dropped, it must be). */
  ready(): Promise<void> {
    const dest = this.dest as (Destination & { fd: number; once(ev: string, f: (e?: Error) => void): void }) | undefined;
    if (!dest || dest.fd >= 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      dest.once('ready', () => resolve());
      dest.once('error', (e) => reject(e));
    });
  }

  reopen(): void {
    this.dest?.reopen();
  }

  close(): void {
    if (!this.dest) return;
    try {
      this.dest.flushSync();
    } catch {
      // Not ready yet (file still opening): end() flushes when it is.
    }
    this.dest.end();
  }

  private combined(e: AccessEntry): string {
    const request = e.method === '' ? '' : `${e.method} ${e.url} HTTP/${e.httpVersion}`;
    return `${e.remoteAddr} - - [${this.timeLocal()}] "${escape(request)}" ${e.status} ${e.bytesSent} "${escape(e.referer ?? '-')}" "${escape(e.userAgent ?? '-')}"\n`;
  }

  private json(e: AccessEntry): string {
    return (
      JSON.stringify({
        time: new Date().toISOString(),
        remote_addr: e.remoteAddr,
        method: e.method,
        uri: e.url,
        protocol: `HTTP/${e.httpVersion}`,
        status: e.status,
        body_bytes_sent: e.bytesSent,
        referer: e.referer ?? null,
        user_agent: e.userAgent ?? null,
        request_time: e.requestTime / 1000,
        upstream_response_time: e.upstreamTime === undefined ? null : e.upstreamTime / 1000,
        held: e.held,
        error: e.error ?? null,
      }) + '\n'
    );
  }

  /** `24/Nov/2026:03:15:54 +0000`, formatted once per second. */
  private timeLocal(): string {
    const now = Date.now();
    const second = Math.floor(now / 1000);
    if (second !== this.cachedSecond) {
      this.cachedSecond = second;
      const d = new Date(now);
      const off = -d.getTimezoneOffset();
      const sign = off >= 0 ? '+' : '-';
      const abs = Math.abs(off);
      this.cachedTime = `${pad(d.getDate())}/${MONTHS[d.getMonth()]}/${d.getFullYear()}:${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${sign}${pad(Math.floor(abs / 60))}${pad(abs % 60)}`;
    }
    return this.cachedTime;
  }
}

function pad(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** nginx escapes `"`, `\` and bytes outside printable ASCII as \xHH in log variables. */
function escape(s: string): string {
  // eslint-disable-next-line no-control-regex
  return /["\\\x00-\x1f\x7f-\uffff]/.test(s) ? s.replace(/["\\\x00-\x1f\x7f-\uffff]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`) : s;
}
