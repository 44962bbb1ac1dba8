/**
 * Starting the real gateway CLI (dist/src/cli.js, built by `npm test`'s pretest) as a child process on
 * port 0, and learning its address from its "gateway started" log line.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../dist/src/cli.js', import.meta.url));

export interface RunningGateway {
  proc: ChildProcess;
  port: number;
  url: string;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Resolves with the output once it contains `text` (log lines arrive through a pipe, a bit later). */
  waitForOutput(text: string, timeoutMs?: number): Promise<string>;
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

export async function startGateway(args: string[], opts: SpawnOptions = {}): Promise<RunningGateway> {
  // No control socket unless a test asks for one: the default path is shared by all gateways.
  const control = args.includes('--control') ? [] : ['--control', 'null'];
  // No supervisor unless a test asks for one: the default PID file is shared too.
  const pidFile = args.includes('--pid-file') ? [] : ['--pid-file', 'null'];
  // One process unless a test asks for workers (test/integration/workers.test.ts does).
  const workers = args.includes('--workers') ? [] : ['--workers', '0'];
  const full = ['run', '--listen', '127.0.0.1:0', '--admin', 'null', '--log-level', 'info', ...control, ...pidFile, ...workers, ...args];
  const proc = spawn(process.execPath, [CLI, ...full], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  let out = '';
  proc.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  const exited = once(proc, 'exit').then(([code, signal]) => (code ?? signal) as number | string);
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start within 10 s:\n${out}`)), 10_000);
    const check = () => {
      const m = /"listen":\["[^"]*:(\d+)"/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    proc.stdout?.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited (${code}) before listening:\n${out}`));
    });
  });
  return {
    proc,
    port,
    url: `http://127.0.0.1:${port}`,
    output: () => out,
    async waitForOutput(text: string, timeoutMs = 3000) {
      const end = Date.now() + timeoutMs;
      while (!out.includes(text) && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      return out;
    },
    exited,
    async stop(signal: NodeJS.Signals = 'SIGINT') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** Runs the CLI to completion (for `check`, bad flags, bind failures). */
export async function runCli(args: string[], opts: SpawnOptions = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  let stdout = '';
  let stderr = '';
  proc.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
  proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const [code] = (await once(proc, 'exit')) as [number | null];
  return { code, stdout, stderr };
}
