/**
 * The page-toucher guest's code: one loop per RAM range, with 64-bit starts (RAM from 4 GiB is past
 * any 32-bit immediate) and counts of whole strides; sizes it cannot loop over are typed errors.
 */
import test from 'ava';
import { PAGE_TOUCHER, pageToucherProgram } from '../../../lib/app/guest/page-toucher.js';
import { ramLayout } from '../../../lib/kvm/ram-layout.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

test('each range is a loop from its start, 64-bit where it lies past 4 GiB', (t) => {
  const code = hex(pageToucherProgram({ ranges: ramLayout(4 * 2 ** 30) }));
  // mov rbx, 0 (REX.W C7 /0 id 0) then mov rcx, 3 GiB / 4 KiB = 0xc0000
  t.true(code.includes('48c7c300000000' + '48c7c1' + '00000c00'), code);
  // mov rbx, 0x1_0000_0000 (REX.W BB io) then mov rcx, 1 GiB / 4 KiB = 0x40000
  t.true(code.includes('48bb0000000001000000' + '48c7c1' + '00000400'), code);
  // or byte [rbx], 0 / add rbx, 4096 / loop: once per range
  t.is(code.split('800b00' + '4881c300100000' + 'e2').length - 1, 2, 'two touch loops');
});

test('a stride sets the step and the count', (t) => {
  const code = hex(pageToucherProgram({ ranges: [{ guestPhysAddr: 0n, size: 64 << 20 }], stride: 2 << 20 }));
  t.true(code.includes('48c7c1' + '20000000'), 'rcx = 32 steps');
  t.true(code.includes('4881c3' + '00002000'), 'add rbx, 2 MiB');
});

test('ranges it cannot loop over, and bad strides, are typed errors', (t) => {
  t.throws(
    () => pageToucherProgram({ ranges: [{ guestPhysAddr: 0n, size: 2048 }] }),
    { code: 'ERR_INVALID_ARG_VALUE' },
    'no whole page: LOOP would run 2^64 times',
  );
  t.throws(() => pageToucherProgram({ ranges: [], stride: 0 }), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => pageToucherProgram({ ranges: [], stride: 2 ** 31 }), { code: 'ERR_INVALID_ARG_VALUE' });
  const many = Array.from({ length: 200 }, (_, i) => ({ guestPhysAddr: BigInt(i) << 32n, size: 4096 }));
  t.throws(
    () => pageToucherProgram({ ranges: many }),
    { code: 'ERR_INVALID_ARG_VALUE' },
    `code past its data at 0x${PAGE_TOUCHER.COUNTER.toString(16)}`,
  );
});
