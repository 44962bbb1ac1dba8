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

function open(target: string): Destination | undefined {
  return target === 'off' ? undefined : pino.destination({ dest: target === '-' ? 1 : target, sync: false, mkdir: false });
}

function whenReady(d: Destination): Promise<void> {
  const dest = d as Destination & { fd: number; once(ev: string, f: (e?: Error) => void): void };
  if (dest.fd >= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    dest.once('ready', () => resolve());
    dest.once('error', (e) => reject(e));
  });
}

function endDestination(dest: Destination): void {
  try {
    dest.flushSync();
  } catch {
    // Not ready yet (file still opening): end() flushes when it is.
  }
  dest.end();
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

export class AccessLog {
  private dest: Destination | undefined;
  private cachedSecond = -1;
  private cachedTime = '';

  constructor(
    public target: string,
    private format: 'combined' | 'json',
  ) {
    this.dest = open(target);
  }

  /**
   * A reload (HUP): write to `target` in `format` from now on. The new file is opened first; if
   * that fails (after --user dropped privileges the directory may not be writable) the old one is
   * kept and the error thrown.
   */
  async retarget(target: string, format: 'combined' | 'json'): Promise<void> {
    this.format = format;
    if (target === this.target) return;
    const next = open(target);
    if (next) await whenReady(next);
    const old = this.dest;
    this.dest = next;
    this.target = target;
    if (old) endDestination(old);
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
    return this.dest ? whenReady(this.dest) : Promise.resolve();
  }

  reopen(): void {
    this.dest?.reopen();
  }

  close(): void {
    if (this.dest) endDestination(this.dest);
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
