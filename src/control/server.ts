/**
 * The control socket: a Unix socket, mode 0600, for the commands an operator or a deploy script
 * sends to a running gateway (`gateway pause`, `resume`, `status`; the supervisor adds its own).
 * One JSON object per line each way: {"command":"pause"} → {"ok":true,...}.
 *
 * Created safely in a shared directory like /tmp: never through a symlink, never over a file that
 * is not a stale socket of ours, with the mode set before anyone can connect (umask around bind).
 */
import { lstatSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import type { Logger } from '../log/logger.js';

export type CommandHandler = (args: Record<string, unknown>) => Promise<Record<string, unknown>> | Record<string, unknown>;

export class ControlError extends Error {
  readonly code = 'GW_ERR_CONTROL';
}

export class ControlServer {
  private server: net.Server | undefined;

  constructor(
    readonly path: string,
    private readonly commands: Map<string, CommandHandler>,
    private readonly log: Logger,
  ) {}

  async listen(): Promise<void> {
    await clearStale(this.path);
    const server = net.createServer((s) => this.serve(s));
    const old = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.path, () => resolve());
      });
    } catch (err) {
      throw new ControlError(`cannot create control socket ${this.path}: ${(err as Error).message}; choose another --control path`, { cause: err });
    } finally {
      process.umask(old);
    }
    this.server = server;
  }

  private serve(socket: net.Socket): void {
    let buf = '';
    socket.setEncoding('utf8');
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > 64 * 1024) return socket.destroy();
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        void this.run(line).then((reply) => socket.write(JSON.stringify(reply) + '\n'));
      }
    });
  }

  private async run(line: string): Promise<Record<string, unknown>> {
    let msg: { command?: unknown; args?: unknown };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      return { ok: false, error: 'not JSON' };
    }
    const name = typeof msg.command === 'string' ? msg.command : '';
    const handler = this.commands.get(name);
    if (!handler) return { ok: false, error: `unknown command "${name}"; known: ${[...this.commands.keys()].join(', ')}` };
    try {
      this.log.info({ command: name }, 'control command');
      return { ok: true, ...(await handler((msg.args ?? {}) as Record<string, unknown>)) };
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    }
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

/** A socket file left by a gateway that died is removed; anything else at the path is refused. */
async function clearStale(path: string): Promise<void> {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return; // nothing there
  }
  if (!st.isSocket()) throw new ControlError(`${path} exists and is not a socket (a ${st.isSymbolicLink() ? 'symlink' : 'file'}); refusing to replace it: remove it or choose another --control path`);
  if (st.uid !== process.getuid?.()) throw new ControlError(`${path} belongs to uid ${st.uid}, not to us; refusing to use it: remove it or choose another --control path`);
  const live = await new Promise<boolean>((resolve) => {
    const c = net.connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (live) throw new ControlError(`${path} is in use by a running gateway; stop it or choose another --control path`);
  unlinkSync(path);
}
