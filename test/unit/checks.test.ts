import { describe, expect, it } from 'vitest';
import { cpuPercent, FlappingCheck, HttpCheck, maxAgeDue, parseCheck, ThresholdCheck, type CheckKind } from '../../src/supervisor/checks.js';

const MiB = 1024 ** 2;

function spec<K extends CheckKind>(kind: K, value: unknown) {
  const { spec, problem } = parseCheck(kind, value);
  if (!spec) throw new Error(`${problem?.message}; ${problem?.fix}`);
  return spec;
}

describe('check grammar', () => {
  it('reads bluepill-style strings', () => {
    expect(spec('memory', 'below=300m every=20s times=3/5')).toEqual({ kind: 'memory', below: 300 * MiB, every: 20_000, times: { n: 3, m: 5 } });
    expect(spec('cpu', 'below=90 every=10s times=5')).toEqual({ kind: 'cpu', below: 90, every: 10_000, times: { n: 5, m: 5 } });
    expect(spec('http', 'path=/up status=204 timeout=2s every=10s times=2/3 body=ok')).toEqual({
      kind: 'http', path: '/up', status: 204, timeout: 2_000, every: 10_000, times: { n: 2, m: 3 }, body: 'ok',
    });
    expect(spec('flapping', 'times=5 within=1m retry_in=5m')).toEqual({ kind: 'flapping', times: 5, within: 60_000, retryIn: 300_000 });
    expect(spec('flapping', 'times=3 retry_in=never').retryIn).toBeNull();
    expect(spec('maxAge', '24h')).toEqual({ kind: 'maxAge', ms: 86_400_000 });
  });

  it('applies the defaults', () => {
    expect(spec('memory', 'below=1g')).toEqual({ kind: 'memory', below: 1024 ** 3, every: 20_000, times: { n: 1, m: 1 } });
    expect(spec('http', 'path=/')).toEqual({ kind: 'http', path: '/', status: 200, timeout: 5_000, every: 20_000, times: { n: 1, m: 1 } });
    expect(spec('flapping', 'times=5')).toEqual({ kind: 'flapping', times: 5, within: 60_000, retryIn: 300_000 });
  });

  it('reads the same as JSON objects', () => {
    expect(spec('memory', { below: '300m', every: '20s', times: [3, 5] })).toEqual(spec('memory', 'below=300m every=20s times=3/5'));
    expect(spec('cpu', { below: 90, times: 2 })).toEqual(spec('cpu', 'below=90% times=2/2'));
    expect(spec('http', { path: '/up', status: 200, body: 'all is well' }).body).toBe('all is well');
    expect(spec('flapping', { times: 5, within: '1m', retry_in: 'never' }).retryIn).toBeNull();
    expect(spec('maxAge', 3_600_000).ms).toBe(3_600_000);
  });

  it('takes /regex/ bodies as patterns', () => {
    const body = spec('http', 'path=/up body=/^ok$/i').body;
    expect(body).toBeInstanceOf(RegExp);
    expect((body as RegExp).test('OK')).toBe(true);
  });

  it('returns frozen specs', () => {
    expect(Object.isFrozen(spec('memory', 'below=300m'))).toBe(true);
  });

  it.each([
    ['memory', 'below=300m times=6/5', '"times=6/5": n must not exceed m', 'write times=3/5'],
    ['memory', 'below=300m times=0/5', '"times=0/5": must be n/m (n of the last m samples) or n, whole numbers from 1', 'write times=3/5'],
    ['memory', 'below=300m times=1/2/3', '"times=1/2/3": must be n/m (n of the last m samples) or n, whole numbers from 1', 'write times=3/5'],
    ['memory', 'below=300m times=3/500', '"times=3/500": m must be at most 100', 'write a shorter window, or a longer every'],
    ['memory', 'below=lots', '"below=lots": must be a size above zero', 'write a size such as below=300m'],
    ['memory', 'every=20s', '"memory": below is required', 'write below=300m, e.g. memory: "below=300m every=20s times=3/5"'],
    ['memory', 'below=300m every=soon', '"every=soon": must be a duration above zero', 'write a duration such as every=20s'],
    ['memory', 'below=300m every=0s', '"every=0s": must be a duration above zero', 'write a duration such as every=20s'],
    ['memory', 'below=300m mem_usage=1', '"mem_usage=1": unknown memory setting', 'use below, every, times'],
    ['memory', 'below=300m below=400m', '"below=400m": below given twice', 'keep one'],
    ['memory', '300m', '"300m": is not key=value', 'write memory: "below=300m every=20s times=3/5"'],
    ['memory', ['below=300m'], '"below=300m": must be a string or an object', 'write memory: "below=300m every=20s times=3/5"'],
    ['cpu', 'below=-5', '"below=-5": must be a percent of one core above zero', 'write a percent such as below=90'],
    ['http', 'status=200', '"http": path is required', 'write path=/up, e.g. http: "path=/up status=200 timeout=5s every=10s times=2/3"'],
    ['http', 'path=up', '"path=up": must be a path starting with /', 'write path=/up (the check goes through the app socket)'],
    ['http', 'url=http://localhost/up', '"url=http://localhost/up": unknown http setting', 'use path, status, timeout, every, times, body'],
    ['http', 'path=/up status=20', '"status=20": must be an HTTP status code', 'write status=200'],
    ['http', 'path=/up timeout=forever', '"timeout=forever": must be a duration above zero', 'write a duration such as timeout=5s'],
    ['http', 'path=/up body=/(/', '"body=/(/": is not a valid pattern: Invalid regular expression: /(/: Unterminated group', 'write a JavaScript regex such as body=/^ok$/'],
    ['http', 'path=/up body=/ok/g', '"body=/ok/g": flags g and y make the match depend on the last one', 'drop them: body=/ok/'],
    ['flapping', 'within=1m', '"flapping": times is required', 'write times=5, e.g. flapping: "times=5 within=1m retry_in=5m"'],
    ['flapping', 'times=1', '"times=1": must be a whole number of starts, at least 2', 'write times=5'],
    ['flapping', 'times=3/5', '"times=3/5": must be a whole number of starts, at least 2', 'write times=5'],
    ['flapping', 'times=5 retry_in=later', '"retry_in=later": must be a duration above zero', 'write a duration such as retry_in=5m'],
    ['maxAge', '0s', '"0s": must be a duration above zero', 'write a duration such as 24h'],
  ] as const)('%s %j: %s', (kind, value, message, fix) => {
    expect(parseCheck(kind, value)).toEqual({ problem: { message, fix } });
  });
});

describe('memory and cpu: n of the last m samples', () => {
  it('fails at n of m, slides, and recovers', () => {
    const check = new ThresholdCheck(spec('memory', 'below=300m times=3/5'));
    const run = (mib: number[]) => mib.map((v) => check.record(v * MiB).ok);
    expect(run([400, 100, 400])).toEqual([true, true, true]);
    const v = check.record(412 * MiB);
    expect(v).toEqual({ ok: false, failing: 3, of: 4, message: 'memory 412 MiB >= 300 MiB in 3 of the last 4 samples' });
    // Window is now [400, 100, 400, 412]; sliding in low samples drops the oldest highs.
    expect(check.record(100 * MiB)).toMatchObject({ ok: false, failing: 3, of: 5 });
    expect(check.record(100 * MiB)).toMatchObject({ ok: true, failing: 2, of: 5 });
    expect(check.record(100 * MiB)).toMatchObject({ ok: true, failing: 2, of: 5 });
    expect(check.record(100 * MiB)).toMatchObject({
      ok: true, failing: 1, of: 5, message: 'memory 100 MiB < 300 MiB; over in 1 of the last 5 samples (fails at 3)',
    });
  });

  it('counts a sample equal to below as failing', () => {
    const check = new ThresholdCheck(spec('cpu', 'below=90 times=1'));
    expect(check.record(89.9).ok).toBe(true);
    expect(check.record(90)).toEqual({ ok: false, failing: 1, of: 1, message: 'cpu 90% >= 90% in 1 of the last 1 sample' });
  });

  it('starts over after reset', () => {
    const check = new ThresholdCheck(spec('cpu', 'below=50 times=2/3'));
    check.record(99);
    check.reset();
    expect(check.record(99)).toMatchObject({ ok: true, failing: 1, of: 1 });
  });
});

describe('http: n of the last m probes', () => {
  it('fails on errors, wrong status and bodies that do not match', () => {
    const check = new HttpCheck(spec('http', 'path=/up body=/^ok/ times=2/3'));
    expect(check.record({ status: 200, body: 'ok then' })).toMatchObject({ ok: true, failing: 0 });
    expect(check.record({ error: 'timed out after 5000 ms' }).message).toBe('http /up timed out after 5000 ms; failed in 1 of the last 2 samples (fails at 2)');
    expect(check.record({ status: 503, body: 'ok' })).toEqual({ ok: false, failing: 2, of: 3, message: 'http /up status 503, expected 200; failed in 2 of the last 3 samples' });
    expect(check.record({ status: 200, body: 'not ok' })).toMatchObject({ ok: false, failing: 3, message: 'http /up body does not match /^ok/; failed in 3 of the last 3 samples' });
    for (let i = 0; i < 2; i++) check.record({ status: 200, body: 'ok' });
    expect(check.record({ status: 200, body: 'ok' })).toMatchObject({ ok: true, failing: 0, message: 'http /up 200 ok; failed in 0 of the last 3 samples (fails at 2)' });
  });

  it('matches a plain body as a substring and a missing status as a failure', () => {
    const check = new HttpCheck(spec('http', 'path=/up body=ready'));
    expect(check.record({ status: 200, body: 'all ready' }).ok).toBe(true);
    expect(check.record({ status: 200 }).message).toBe('http /up body does not contain "ready"; failed in 1 of the last 1 sample');
    expect(check.record({}).message).toBe('http /up status none, expected 200; failed in 1 of the last 1 sample');
  });
});

describe('cpuPercent', () => {
  it('is the share of one core between two samples', () => {
    expect(cpuPercent({ ticks: 1000, at: 0 }, { ticks: 1050, at: 1000 }, 100)).toBe(50);
    // Two busy workers for 2 s: 200% of one core.
    expect(cpuPercent({ ticks: 0, at: 10_000 }, { ticks: 800, at: 12_000 }, 200)).toBe(200);
  });

  it('is 0 when no time passed or the ticks went back (a new process)', () => {
    expect(cpuPercent({ ticks: 10, at: 5 }, { ticks: 20, at: 5 }, 100)).toBe(0);
    expect(cpuPercent({ ticks: 500, at: 0 }, { ticks: 20, at: 1000 }, 100)).toBe(0);
  });
});

describe('flapping', () => {
  it('backs off for retry_in after times starts within within, then counts afresh', () => {
    const check = new FlappingCheck(spec('flapping', 'times=3 within=1m retry_in=5m'));
    expect(check.recordStart(0)).toEqual({ flapping: false });
    expect(check.recordStart(10_000)).toEqual({ flapping: false });
    expect(check.recordStart(20_000)).toEqual({ flapping: true, retryAt: 320_000 });
    expect(check.recordStart(100_000)).toEqual({ flapping: true, retryAt: 320_000 });
    expect(check.recordStart(320_000)).toEqual({ flapping: false });
    expect(check.recordStart(321_000)).toEqual({ flapping: false });
  });

  it('forgets starts older than within', () => {
    const check = new FlappingCheck(spec('flapping', 'times=3 within=1m'));
    check.recordStart(0);
    check.recordStart(30_000);
    expect(check.recordStart(60_000)).toEqual({ flapping: false });
    expect(check.recordStart(80_000)).toMatchObject({ flapping: true });
  });

  it('gives up with retry_in=never until reset', () => {
    const check = new FlappingCheck(spec('flapping', 'times=2 within=10s retry_in=never'));
    check.recordStart(0);
    expect(check.recordStart(1_000)).toEqual({ flapping: true, giveUp: true });
    expect(check.recordStart(999_000)).toEqual({ flapping: true, giveUp: true });
    check.reset();
    expect(check.recordStart(1_000_000)).toEqual({ flapping: false });
  });
});

describe('maxAge', () => {
  it('is due once the server is as old as maxAge', () => {
    const ms = spec('maxAge', '24h').ms;
    expect(maxAgeDue(1_000, 1_000 + ms - 1, ms)).toBe(false);
    expect(maxAgeDue(1_000, 1_000 + ms, ms)).toBe(true);
    expect(maxAgeDue(0, 10, 0)).toBe(false);
  });
});
