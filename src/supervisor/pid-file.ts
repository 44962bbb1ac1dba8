/**
 * The app server's PID file (/tmp/web_server.pid on these hosts): read, checked, written, removed.
 *
 * The file usually lives in /tmp, where any user can create names. A planted file is how a
 * supervisor is tricked into signalling a process it does not manage (a symlink to another
 * server's PID file, a file naming PID 1 or sshd), so every read refuses what a server would never
 * have written itself, and nothing is signalled until checkPidIdentity() has compared the process
 * with what we expect (REFERENCE.md: "refuse, log loudly, keep serving 503").
 *
 * Synchronous I/O: a PID file is a few bytes, and a decision taken between awaits would be taken
 * on a file that may have changed meanwhile.
 *
 * O_NOFOLLOW guards the last component of the path only; the directories above it are trusted
 * (/tmp is root-owned and sticky).
 */
import { randomBytes } from 'node:crypto';
// The default import (the module object) rather than named ones, so that tests can make a single
// call fail (renameSync) and check that the temp file is cleaned up.
import fs from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { isAlive, readProc, startedAtMs, type ProcInfo } from './proc.js';

export type PidFileReason =
  | 'symlink'
  | 'not-regular'
  | 'owner'
  | 'mode'
  | 'garbage'
  | 'pid1'
  | 'self'
  | 'missing'
  /** Could not be opened or read for another reason (EACCES, EIO): not the same as missing. */
  | 'unreadable'
  | 'stale'
  | 'foreign-process';

export class PidFileError extends Error {
  readonly code = 'GW_ERR_PID_FILE';

  constructor(
    message: string,
    readonly reason: PidFileReason,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PidFileError';
  }
}

/** A PID file holds at most 7 digits (PID_MAX_LIMIT) and a newline; this leaves room for stray whitespace. */
const MAX_BYTES = 24;
/** PID_MAX_LIMIT on 64-bit Linux (2^22): no PID is larger, whatever /proc/sys/kernel/pid_max says. */
const PID_MAX_LIMIT = 4_194_304;

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK, O_NOCTTY } = fs.constants;

/** Unicorn renames its PID file to this on USR2; the new master writes `path` and later QUITs the old one. */
export function oldbinPath(path: string): string {
  return `${path}.oldbin`;
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

function kind(st: fs.Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

function symlinkError(path: string, verb: string): PidFileError {
  return new PidFileError(
    `PID file ${path} is a symbolic link; refusing to ${verb} it (a link planted at a PID file path is a sign of attack): remove it and find out who created it`,
    'symlink',
  );
}

/**
 * Opens a PID file for reading without following a symlink and without opening anything that is
 * not a regular file. lstat first, so a FIFO or a device is refused before open() (opening a FIFO
 * blocks until a writer appears; opening some devices has effects); then O_NOFOLLOW (a symlink
 * swapped in after the lstat fails with ELOOP) and O_NONBLOCK (a FIFO swapped in does not block),
 * and the fstat of the opened fd is the truth the callers check.
 */
function openForRead(path: string): { fd: number; st: fs.Stats } {
  let l: fs.Stats;
  try {
    l = fs.lstatSync(path);
  } catch (err) {
    const code = errno(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new PidFileError(`PID file ${path} does not exist: the app server is not running or writes its PID elsewhere (--pid-file)`, 'missing', { cause: err });
    throw new PidFileError(`PID file ${path} cannot be examined (${code ?? String(err)}); check the permissions of its directory`, 'unreadable', { cause: err });
  }
  if (l.isSymbolicLink()) throw symlinkError(path, 'follow');
  if (!l.isFile()) throw new PidFileError(`PID file ${path} is ${kind(l)}, not a regular file; refusing to read it: remove it`, 'not-regular');
  let fd: number;
  try {
    fd = fs.openSync(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  } catch (err) {
    const code = errno(err);
    if (code === 'ELOOP') throw symlinkError(path, 'follow');
    if (code === 'ENOENT') throw new PidFileError(`PID file ${path} does not exist (it went away while being read)`, 'missing', { cause: err });
    throw new PidFileError(`PID file ${path} cannot be opened (${code ?? String(err)}); check its permissions`, 'unreadable', { cause: err });
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new PidFileError(`PID file ${path} is ${kind(st)}, not a regular file; refusing to read it: remove it`, 'not-regular');
    return { fd, st };
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

/** Reads at most MAX_BYTES + 1 bytes and parses one PID: optional whitespace, decimal digits, nothing else. */
function readPid(fd: number, path: string): number {
  const buf = Buffer.alloc(MAX_BYTES + 1);
  let len = 0;
  for (;;) {
    const n = fs.readSync(fd, buf, len, buf.length - len, null);
    if (n === 0) break;
    len += n;
    if (len === buf.length) break;
  }
  if (len > MAX_BYTES) throw new PidFileError(`PID file ${path} holds more than ${MAX_BYTES} bytes: not a PID file; remove it`, 'garbage');
  const text = buf.toString('latin1', 0, len);
  const m = /^[ \t\r\n\v\f]*([0-9]+)[ \t\r\n\v\f]*$/.exec(text);
  const pid = m?.[1] === undefined ? NaN : Number(m[1]);
  if (!Number.isSafeInteger(pid) || pid < 1 || pid > PID_MAX_LIMIT) {
    throw new PidFileError(`PID file ${path} holds ${JSON.stringify(text)}, not a process ID (decimal digits, 1 to ${PID_MAX_LIMIT}); remove it`, 'garbage');
  }
  return pid;
}

/** PIDs no PID file may name, whatever else checks out. */
function refuseSpecial(pid: number, where: string): void {
  if (pid === 1) throw new PidFileError(`${where} names PID 1 (init): never an app server, and never to be signalled; remove it`, 'pid1');
  if (pid === process.pid) throw new PidFileError(`${where} names PID ${pid}, this gateway itself; remove it or use another --pid-file`, 'self');
  // Our parent (systemd, bluepill, a shell) is no app server either, and signalling it would stop us.
  if (pid === process.ppid) throw new PidFileError(`${where} names PID ${pid}, the parent of this gateway; remove it or use another --pid-file`, 'self');
}

/**
 * Reads the PID in the file at `path`, refusing a file a server would not have written: a symlink
 * (never followed), anything but a regular file, a file owned by a uid not in `allowedUids`, one
 * writable by group or others (anyone could point it elsewhere), content that is not one decimal
 * PID, PID 1, this gateway and its parent. Throws PidFileError with the reason; 'missing' when
 * there is no file. Does not look at the process: checkPidIdentity() does.
 */
export function readPidFile(path: string, opts: { allowedUids: number[] }): number {
  const { fd, st } = openForRead(path);
  let pid: number;
  try {
    if (!opts.allowedUids.includes(st.uid)) {
      throw new PidFileError(
        `PID file ${path} is owned by uid ${st.uid}, not by ${opts.allowedUids.length ? `uid ${opts.allowedUids.join(' or ')}` : 'an allowed user'}; refusing to trust it: remove it if it was planted, or allow the app server's user`,
        'owner',
      );
    }
    if (st.mode & 0o022) {
      const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
      throw new PidFileError(`PID file ${path} has mode ${mode}: writable by group or others, so anyone could point it at another process; refusing it: chmod go-w ${path}`, 'mode');
    }
    pid = readPid(fd, path);
  } finally {
    fs.closeSync(fd);
  }
  refuseSpecial(pid, `PID file ${path}`);
  return pid;
}

/**
 * The check that runs before ANY signal: the process must exist and not be a zombie ('stale'
 * otherwise), and match each expectation given ('foreign-process', naming what differed):
 * `uid`; `startTime` (the same PID with another start time is a reused PID); `cmdlineIncludes`,
 * each string a substring of the command line joined with spaces (servers rewrite their process
 * title: Puma's is one string, "puma 6.4.2 (unix:///tmp/web_server.sock) [app]").
 * PID 1, this gateway and its parent are refused outright. Returns what /proc says of the process.
 */
export function checkPidIdentity(pid: number, expect: { uid?: number; startTime?: number; cmdlineIncludes?: string[] }): ProcInfo {
  if (!Number.isSafeInteger(pid) || pid < 1) throw new PidFileError(`${pid} is not a process ID; not signalling`, 'garbage');
  refuseSpecial(pid, `the PID to signal (${pid})`);
  const info = readProc(pid);
  if (!info || info.state === 'Z' || info.state === 'X') {
    const what = info ? 'has exited (a zombie not yet reaped by its parent)' : 'does not exist';
    throw new PidFileError(`process ${pid} ${what}: the PID file is stale; remove it or start the app server`, 'stale');
  }
  const diffs: string[] = [];
  if (expect.uid !== undefined && info.uid !== expect.uid) diffs.push(`it runs as uid ${info.uid}, not ${expect.uid}`);
  if (expect.startTime !== undefined && info.startTime !== expect.startTime) {
    diffs.push(`it started at ${new Date(startedAtMs(info)).toISOString()} (tick ${info.startTime}, expected ${expect.startTime}): the PID was reused`);
  }
  if (expect.cmdlineIncludes?.length) {
    const cmdline = info.cmdline.join(' ');
    const missing = expect.cmdlineIncludes.filter((s) => !cmdline.includes(s));
    if (missing.length) {
      const shown = cmdline.length > 200 ? `${cmdline.slice(0, 200)}...` : cmdline;
      diffs.push(`its command line ${JSON.stringify(shown)} does not contain ${missing.map((s) => JSON.stringify(s)).join(', ')}`);
    }
  }
  if (diffs.length) {
    throw new PidFileError(`process ${pid} (${info.comm}) is not the app server we manage: ${diffs.join('; ')}; not signalling it`, 'foreign-process');
  }
  return info;
}

/**
 * Writes `${pid}\n` to `path` atomically: a temp file in the same directory (O_EXCL|O_NOFOLLOW, so
 * never through a name someone else prepared), mode 0644 whatever the umask, fsynced, then renamed
 * over `path`, so a reader sees the old content or the new, never a partial one. A symlink at
 * `path` is refused rather than replaced: rename() would replace the link itself, not its target,
 * but a link planted there is a sign of attack and worth an error. The temp file is removed on
 * any failure.
 */
export function writePidFile(path: string, pid: number): void {
  if (!Number.isSafeInteger(pid) || pid < 1 || pid > PID_MAX_LIMIT) throw new PidFileError(`refusing to write ${pid} to PID file ${path}: not a process ID`, 'garbage');
  if (pid === 1) throw new PidFileError(`refusing to write PID 1 to PID file ${path}: it would be refused when read`, 'pid1');
  let existing: fs.Stats | undefined;
  try {
    existing = fs.lstatSync(path);
  } catch (err) {
    if (errno(err) !== 'ENOENT') throw err;
  }
  if (existing?.isSymbolicLink()) throw symlinkError(path, 'replace');
  if (existing && !existing.isFile()) throw new PidFileError(`PID file ${path} is ${kind(existing)}, not a regular file; refusing to replace it: remove it`, 'not-regular');

  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | undefined;
  let renamed = false;
  try {
    fd = fs.openSync(tmp, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, 0o644);
    // open()'s mode is filtered by the umask; a PID file must be readable by whoever checks it.
    fs.fchmodSync(fd, 0o644);
    const data = Buffer.from(`${pid}\n`);
    for (let off = 0; off < data.length; ) off += fs.writeSync(fd, data, off);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, path);
    renamed = true;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
    if (!renamed) fs.rmSync(tmp, { force: true });
  }
  // The rename is durable only once the directory is synced; best effort (not every fs allows it).
  try {
    const dfd = fs.openSync(dir, O_RDONLY);
    try {
      fs.fsyncSync(dfd);
    } finally {
      fs.closeSync(dfd);
    }
  } catch {
    // a PID file on tmpfs does not outlive a crash anyway
  }
}

/**
 * Unlinks `path` only if it is a regular file (read without following a symlink) holding exactly
 * `pid`, so a PID file already rewritten by a new server is left alone. Returns whether it was
 * removed; never throws. The window between reading and unlinking is closed as far as Linux allows:
 * the unlink happens only if the name still refers to the inode that was read.
 */
export function removePidFile(path: string, pid: number): boolean {
  try {
    const { fd, st } = openForRead(path);
    let held: number;
    try {
      held = readPid(fd, path);
    } finally {
      fs.closeSync(fd);
    }
    if (held !== pid) return false;
    const now = fs.lstatSync(path);
    if (!now.isFile() || now.ino !== st.ino || now.dev !== st.dev) return false;
    fs.unlinkSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Removes the PID file if it names a process that is gone (or a zombie) and returns true; returns
 * false when there is no file or it names a live process (never removed). A file that cannot be
 * trusted (symlink, owner, mode, garbage, PID 1, ourselves) is not touched: the PidFileError is
 * thrown so the caller refuses loudly instead of starting a server beside it.
 */
export function clearStalePidFile(path: string, allowedUids: number[]): boolean {
  let pid: number;
  try {
    pid = readPidFile(path, { allowedUids });
  } catch (err) {
    if (err instanceof PidFileError && err.reason === 'missing') return false;
    throw err;
  }
  const info = readProc(pid);
  // readProc() cannot tell "gone" from "hidden by hidepid"; kill(pid, 0) can (EPERM is alive).
  const dead = info ? info.state === 'Z' || info.state === 'X' : !isAlive(pid);
  if (!dead) return false;
  return removePidFile(path, pid);
}
