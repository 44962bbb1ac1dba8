/**
 * Settings for the fuzz tests (test/fuzz/): bounded by default so CI stays fast, longer by hand.
 *
 *   FUZZ_SECONDS=600 npx vitest run test/fuzz/           ten minutes per property instead of a few seconds
 *   FUZZ_RUNS=100000 npx vitest run test/fuzz/           more cases per property (still time-bounded)
 *   FUZZ_SEED=-1234 FUZZ_PATH=17:3 npx vitest run ...     replay the failure fast-check printed
 *
 * A failing property prints its seed and path (fast-check's "Counterexample: ... seed: ..., path: ...");
 * FUZZ_SEED and FUZZ_PATH feed them back, so the same case runs first and shrinks the same way.
 */
import fc, { type Parameters } from 'fast-check';

function envNumber(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n)) throw new Error(`${name}=${raw}: not a number`);
  return n;
}

/**
 * fc.assert parameters: at most `runs` cases and `seconds` of wall time per property (FUZZ_RUNS and
 * FUZZ_SECONDS override both), the seed and path from FUZZ_SEED/FUZZ_PATH when replaying. Reaching
 * the time limit ends the run without failing it (fast-check's interruptAfterTimeLimit plugin).
 */
export function fuzzParams<T>(defaults: { runs: number; seconds: number }): Parameters<T> {
  const seconds = envNumber('FUZZ_SECONDS') ?? defaults.seconds;
  const runs = envNumber('FUZZ_RUNS') ?? (process.env.FUZZ_SECONDS ? Number.MAX_SAFE_INTEGER : defaults.runs);
  const seed = envNumber('FUZZ_SEED');
  const path = process.env.FUZZ_PATH || undefined;
  return {
    numRuns: runs,
    // The plugin is typed for any property; the cast only widens it back.
    plugins: [fc.interruptAfterTimeLimit(seconds * 1000) as fc.Plugin<T>],
    ...(seed === undefined ? {} : { seed }),
    ...(path === undefined ? {} : { path }),
  };
}

/** The vitest timeout for a property given its fuzz time: the time limit plus room to shrink. */
export function fuzzTimeout(defaultSeconds: number): number {
  const seconds = envNumber('FUZZ_SECONDS') ?? defaultSeconds;
  return (seconds + 60) * 1000;
}
