import { describe, expect, it } from 'vitest';
import { parseDuration } from '../../src/config/units.js';
import { canHandle, next, parseLadder, TRANSITIONS, TransitionError, type Phase } from '../../src/supervisor/state.js';

describe('supervisor state machine', () => {
  it('walks a life: start, restart, crash, restart, stop', () => {
    let p: Phase = 'idle';
    for (const e of ['start', 'started', 'restart', 'restarted', 'exited', 'start', 'started', 'stop', 'stopped'] as const) p = next(p, e);
    expect(p).toBe('stopped');
  });

  it('keeps the old server running when a handoff fails', () => {
    expect(next('restarting', 'restartFailed')).toBe('running');
  });

  it('backs off when flapping and can give up', () => {
    expect(next('crashed', 'flapping')).toBe('backoff');
    expect(next('backoff', 'giveUp')).toBe('failed');
    expect(next('backoff', 'start')).toBe('starting');
  });

  it('refuses what makes no sense, with the phase in the message', () => {
    expect(() => next('stopped', 'restart')).toThrow(TransitionError);
    expect(() => next('stopping', 'restart')).toThrow('cannot restart while stopping');
    expect(canHandle('running', 'started')).toBe(false);
  });

  it('has an entry for every phase, and every target is a phase', () => {
    const phases = Object.keys(TRANSITIONS);
    for (const t of Object.values(TRANSITIONS)) for (const to of Object.values(t)) expect(phases).toContain(to);
  });
});

describe('stop ladder grammar', () => {
  it('reads QUIT/30s,TERM/11s,KILL', () => {
    expect(parseLadder('QUIT/30s,TERM/11s,KILL', parseDuration)).toEqual([
      { signal: 'SIGQUIT', waitMs: 30_000 },
      { signal: 'SIGTERM', waitMs: 11_000 },
      { signal: 'SIGKILL', waitMs: 5_000 },
    ]);
  });
  it('names the bad part', () => {
    expect(parseLadder('QUIT/soon', parseDuration)).toMatch(/"soon" in "QUIT\/soon" is not a duration/);
    expect(parseLadder('', parseDuration)).toBe('the ladder is empty');
  });
});
