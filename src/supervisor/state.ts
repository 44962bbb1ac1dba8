/**
 * The supervisor as an explicit state machine: its phases, the events that move it, the allowed
 * transitions, and one table of the signals it sends. Pure: no processes, no timers; the
 * supervisor (supervisor.ts) performs the effects and feeds the outcomes back in as events.
 */

export type Phase =
  /** Nothing managed yet (no app command, no PID file adopted). */
  | 'idle'
  /** Spawned (or signalled to start); waiting for the socket to accept. */
  | 'starting'
  | 'running'
  /** A restart (USR2 handoff or cold) is under way; the gate holds new requests. */
  | 'restarting'
  /** Walking the stop ladder. */
  | 'stopping'
  /** Stopped on purpose; stays down until `start`. */
  | 'stopped'
  /** Died without being asked to; a start follows unless flapping. */
  | 'crashed'
  /** Flapping: waiting `retry_in` before the next start. */
  | 'backoff'
  /** Flapping with `retry_in never`, or no way to start (adopted server, no command): given up. */
  | 'failed';

export type Event =
  | 'start'
  | 'adopt'
  | 'started'
  | 'startFailed'
  | 'restart'
  | 'restarted'
  | 'restartFailed'
  | 'stop'
  | 'stopped'
  | 'exited'
  | 'flapping'
  | 'giveUp';

/** Allowed transitions; anything else is a bug (or a command at the wrong time) and is refused. */
export const TRANSITIONS: Readonly<Record<Phase, Partial<Record<Event, Phase>>>> = {
  idle: { start: 'starting', adopt: 'running', stop: 'stopped' },
  starting: { started: 'running', startFailed: 'crashed', exited: 'crashed', stop: 'stopping' },
  running: { restart: 'restarting', stop: 'stopping', exited: 'crashed' },
  // A failed handoff leaves the old server serving where the server allows it (Unicorn): running.
  restarting: { restarted: 'running', restartFailed: 'running', exited: 'crashed', stop: 'stopping' },
  stopping: { stopped: 'stopped', exited: 'stopped' },
  stopped: { start: 'starting', adopt: 'running', stop: 'stopped' },
  crashed: { start: 'starting', flapping: 'backoff', giveUp: 'failed', stop: 'stopped' },
  backoff: { start: 'starting', stop: 'stopped', giveUp: 'failed' },
  failed: { start: 'starting', stop: 'stopped', adopt: 'running' },
};

export class TransitionError extends Error {
  readonly code = 'GW_ERR_SUPERVISOR_STATE';
}

export function next(phase: Phase, event: Event): Phase {
  const to = TRANSITIONS[phase][event];
  if (to === undefined) throw new TransitionError(`cannot ${event} while ${phase}`);
  return to;
}

export function canHandle(phase: Phase, event: Event): boolean {
  return TRANSITIONS[phase][event] !== undefined;
}

/** One step of a stop ladder: send `signal`, wait up to `waitMs` for the process to exit. */
export interface LadderStep {
  signal: NodeJS.Signals;
  waitMs: number;
}

/**
 * The signals the supervisor sends, and when. Stop ladders default to bluepill's for web servers
 * on these hosts (QUIT, 30 s, TERM, 11 s, KILL); restarts to USR2 (Puma re-execs in place,
 * Unicorn starts a new master); Unicorn's old master gets QUIT once the new one answers.
 */
export const SIGNALS = {
  restart: 'SIGUSR2',
  quitOldMaster: 'SIGQUIT',
  stopLadder: [
    { signal: 'SIGQUIT', waitMs: 30_000 },
    { signal: 'SIGTERM', waitMs: 11_000 },
    { signal: 'SIGKILL', waitMs: 5_000 },
  ] as readonly LadderStep[],
} as const;

/** `QUIT/30s,TERM/11s,KILL` → ladder steps. */
export function parseLadder(text: string, parseDuration: (v: string) => number | undefined): LadderStep[] | string {
  const steps: LadderStep[] = [];
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [sig, wait] = part.split('/') as [string, string | undefined];
    const name = (sig.toUpperCase().startsWith('SIG') ? sig.toUpperCase() : `SIG${sig.toUpperCase()}`) as NodeJS.Signals;
    if (!/^SIG[A-Z0-9]+$/.test(name)) return `"${part}" is not SIGNAL/DURATION`;
    const ms = wait === undefined ? 5_000 : parseDuration(wait);
    if (ms === undefined) return `"${wait}" in "${part}" is not a duration`;
    steps.push({ signal: name, waitMs: ms });
  }
  if (steps.length === 0) return 'the ladder is empty';
  return steps;
}

/** Why a restart happened: the label of the restarts counter and of the log line. */
export type RestartReason = 'manual' | 'memory' | 'cpu' | 'http' | 'crash' | 'flapping' | 'age';
