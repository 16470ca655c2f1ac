/**
 * The PSP throttle as a command rate (`throttle: { commandsPerSecond }`): each firmware command costs
 * 1/rate seconds on the one PSP timeline, as a PSP that completes a few hundred SEND_UPDATE_DATA a
 * second does; the options are checked.
 */
import test from 'ava';
import { MockHost } from '../../../lib/backends/mock/mock-host.js';
import { SevPlatform } from '../../../lib/sev/platform.js';

test('commandsPerSecond: async PSP commands complete at the rate, one after the other', async (t) => {
  const host = new MockHost({ throttle: { commandsPerSecond: 100 } });
  const platform = SevPlatform.open(host);
  t.teardown(() => platform.close());
  await platform.platformStatus(); // the platform's INIT happens on first use
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 10 }, () => platform.platformStatus()));
  const ms = performance.now() - t0;
  t.true(ms >= 90, `10 commands at 100/s took ${ms.toFixed(1)} ms`);
  t.true(ms < 2000, `took ${ms.toFixed(1)} ms`);
});

test('throttle options: a rate must be a positive integer, and one of the two must be given', (t) => {
  t.throws(() => new MockHost({ throttle: {} }), { code: 'ERR_INVALID_ARG_VALUE', message: /commandsPerSecond/ });
  t.throws(() => new MockHost({ throttle: { commandsPerSecond: 0 } }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => new MockHost({ throttle: { commandsPerSecond: 1.5 } }), { code: 'ERR_OUT_OF_RANGE' });
  t.notThrows(() => new MockHost({ throttle: { commandsPerSecond: 400, bytesPerSecond: 4 << 20 } }));
});
