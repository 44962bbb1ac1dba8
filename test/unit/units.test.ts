import { describe, expect, it } from 'vitest';
import { parseDuration, parseSize } from '../../src/config/units.js';
import { parseHostPort } from '../../src/config/address.js';

describe('durations as nginx writes them', () => {
  it.each([
    ['60s', 60_000],
    ['500ms', 500],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['65', 65_000],
    [250, 250],
  ])('%s is %d ms', (input, ms) => expect(parseDuration(input)).toBe(ms));

  it.each(['', 'soon', '5 minutes', '-1s', '1w'])('%s is refused', (input) => expect(parseDuration(input)).toBeUndefined());
});

describe('sizes as nginx writes them', () => {
  it.each([
    ['50m', 50 * 1024 * 1024],
    ['8k', 8192],
    ['1g', 1024 ** 3],
    ['512', 512],
    [0, 0],
  ])('%s is %d bytes', (input, bytes) => expect(parseSize(input)).toBe(bytes));

  it.each(['', 'big', '1.5m', '-1', '10t'])('%s is refused', (input) => expect(parseSize(input)).toBeUndefined());
});

describe('listen addresses', () => {
  it('reads HOST:PORT, [V6]:PORT and PORT', () => {
    expect(parseHostPort('127.0.0.1:8080')).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(parseHostPort('[::1]:80')).toEqual({ host: '::1', port: 80 });
    expect(parseHostPort('80')).toEqual({ host: '0.0.0.0', port: 80 });
  });
  it('refuses the rest', () => {
    for (const bad of ['host:', ':80', '1.2.3.4:99999', '::1:80', 'x']) expect(parseHostPort(bad)).toBeUndefined();
  });
});
