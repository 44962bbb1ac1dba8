/** Sends one command to a running gateway's control socket and returns its reply. */
import { lstatSync } from 'node:fs';
import net from 'node:net';

export async function sendCommand(path: string, command: string, args: Record<string, unknown> = {}, timeoutMs = 120_000): Promise<Record<string, unknown>> {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    throw new Error(`no control socket at ${path}: is the gateway running (with --control ${path})?`);
  }
  // Only talk to a socket owned by root or by us: a socket planted by another user could lie.
  const uid = process.getuid?.() ?? 0;
  if (!st.isSocket() || (st.uid !== 0 && st.uid !== uid)) throw new Error(`${path} is not a control socket owned by root or uid ${uid}; refusing to use it`);
  return new Promise((resolve, reject) => {
    const s = net.connect(path);
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer from ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    s.setEncoding('utf8');
    s.on('connect', () => s.write(JSON.stringify({ command, args }) + '\n'));
    s.on('data', (c: string) => {
      buf += c;
      const nl = buf.indexOf('\n');
      if (nl === -1) return;
      clearTimeout(timer);
      s.end();
      try {
        resolve(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
      } catch {
        reject(new Error(`bad answer from ${path}`));
      }
    });
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot reach ${path}: ${err.message}`));
    });
  });
}
