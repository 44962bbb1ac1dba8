/**
 * Before trusting the upstream socket: it must be a socket (not a symlink to one, not a file), owned
 * by an expected user. In /tmp any local user can create `/tmp/web_server.sock` while the app
 * server is down; a planted socket would receive every request, cookies and all. A foreign socket
 * is refused loudly and treated like a missing one: requests are held, then 503.
 */
import { lstatSync } from 'node:fs';

export const FOREIGN_SOCKET = 'GW_UPSTREAM_FOREIGN';

export interface SocketCheck {
  /** UIDs the socket may belong to; empty: any owner. */
  allowedUids: readonly number[];
}

/** Undefined when the socket may be used, else an error carrying a code the gate treats as "down". */
export function checkSocket(path: string, check: SocketCheck): NodeJS.ErrnoException | undefined {
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    return err as NodeJS.ErrnoException; // ENOENT: the usual "not there yet"
  }
  let why: string | undefined;
  if (st.isSymbolicLink()) why = 'is a symlink';
  else if (!st.isSocket()) why = 'is not a socket';
  else if (check.allowedUids.length > 0 && !check.allowedUids.includes(st.uid)) why = `belongs to uid ${st.uid}, not ${check.allowedUids.join(' or ')}`;
  if (why === undefined) return undefined;
  const err = new Error(`upstream ${path} ${why}; refusing to use it (set upstreamOwner, or remove the planted file)`) as NodeJS.ErrnoException;
  err.code = FOREIGN_SOCKET;
  return err;
}
