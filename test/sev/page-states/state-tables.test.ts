/**
 * The two life-cycle tables of POWER's secure VMs (Ram Pai, "KVM: PPC: Book3S HV: track the state
 * GFNs associated with secure VMs", v4, LKML July 2020; arch/powerpc/kvm/book3s_hv_uvmem.c), cell by
 * cell, against their SEV counterparts in lib/sev/page-states: the tables the tracker consults, and
 * the tracker itself driven through each cell.
 */
import test from 'ava';
import { PAGE_OPS, PAGE_STATES, PAGE_STATE_TABLE, type PageOp } from '../../../lib/sev/page-states/page-state-table.js';
import { PageStateTracker } from '../../../lib/sev/page-states/page-state-tracker.js';
import type { PageState } from '../../../lib/sev/page-states/page-state-view.js';
import {
  VM_EVENTS,
  VM_STATES,
  VM_STATE_TABLE,
  vmTransition,
  type VmEvent,
  type VmState,
} from '../../../lib/sev/page-states/vm-state-table.js';

// ---- the GFN table, as the patch's comment prints it ----
type PowerGfn = 'Secure' | 'Shared' | 'Normal';
type PowerGfnOp = 'Share' | 'Unshare' | 'abort/terminate' | 'H_SVM_INIT_DONE';
const POWER_GFN: Record<PowerGfn, Record<PowerGfnOp, PowerGfn>> = {
  Secure: { Share: 'Shared', Unshare: 'Secure', 'abort/terminate': 'Normal', H_SVM_INIT_DONE: 'Secure' },
  Shared: { Share: 'Shared', Unshare: 'Secure', 'abort/terminate': 'Normal', H_SVM_INIT_DONE: 'Shared' },
  Normal: { Share: 'Shared', Unshare: 'Secure', 'abort/terminate': 'Normal', H_SVM_INIT_DONE: 'Secure' },
};
const GFN_STATE: Record<PowerGfn, PageState> = { Secure: 'private', Shared: 'shared', Normal: 'normal' };
const GFN_OP: Record<PowerGfnOp, PageOp> = {
  Share: 'share',
  Unshare: 'unshare',
  'abort/terminate': 'terminate',
  H_SVM_INIT_DONE: 'init-done',
};

// ---- the VM table ----
type PowerVm = 'Normal' | 'Secure' | 'Transient';
type PowerVmOp = 'start VM' | 'H_SVM_INIT_START' | 'H_SVM_INIT_DONE' | 'H_SVM_INIT_ABORT' | 'UV_SVM_TERMINATE';
const POWER_VM: Record<PowerVm, Record<PowerVmOp, PowerVm | 'Error' | 'N/A'>> = {
  Normal: {
    'start VM': 'Normal',
    H_SVM_INIT_START: 'Transient',
    H_SVM_INIT_DONE: 'Error',
    H_SVM_INIT_ABORT: 'Error',
    UV_SVM_TERMINATE: 'Normal',
  },
  Secure: {
    'start VM': 'Error',
    H_SVM_INIT_START: 'Error',
    H_SVM_INIT_DONE: 'Error',
    H_SVM_INIT_ABORT: 'Error',
    UV_SVM_TERMINATE: 'Normal',
  },
  Transient: {
    'start VM': 'N/A',
    H_SVM_INIT_START: 'Error',
    H_SVM_INIT_DONE: 'Secure',
    H_SVM_INIT_ABORT: 'Normal',
    UV_SVM_TERMINATE: 'Normal',
  },
};
/** Each POWER state's SEV counterparts (Transient: a launch or a receive in progress). */
const VM_STATE_OF: Record<PowerVm, VmState[]> = { Normal: ['normal'], Secure: ['running'], Transient: ['launching', 'receiving'] };
/** Each POWER operation's SEV counterparts, by the SEV state they apply in. */
function vmEventsOf(op: PowerVmOp, state: VmState): VmEvent[] {
  switch (op) {
    case 'start VM':
      return ['create'];
    case 'H_SVM_INIT_START':
      return ['LAUNCH_START', 'RECEIVE_START'];
    case 'H_SVM_INIT_DONE':
      // The Transient row's INIT_DONE is the FINISH of what it started; elsewhere both must fail.
      return state === 'launching' ? ['LAUNCH_FINISH'] : state === 'receiving' ? ['RECEIVE_FINISH'] : ['LAUNCH_FINISH', 'RECEIVE_FINISH'];
    case 'H_SVM_INIT_ABORT':
      return ['DECOMMISSION'];
    case 'UV_SVM_TERMINATE':
      return ['TERMINATE', 'RESET'];
  }
}
const SEV_OF: Record<PowerVm, VmState> = { Normal: 'normal', Secure: 'running', Transient: 'launching' };

for (const [row, cells] of Object.entries(POWER_GFN) as [PowerGfn, Record<PowerGfnOp, PowerGfn>][])
  for (const [op, result] of Object.entries(cells) as [PowerGfnOp, PowerGfn][])
    test(`GFN table: ${row} × ${op} = ${result}  ⇔  ${GFN_STATE[row]} × ${GFN_OP[op]} = ${GFN_STATE[result]}`, (t) => {
      t.is(PAGE_STATE_TABLE[GFN_STATE[row]][GFN_OP[op]], GFN_STATE[result]);
    });

test('the SEV page table has a state for every (state, operation) cell, and converting settles only through its hypercall or a reset', (t) => {
  for (const s of PAGE_STATES) for (const op of PAGE_OPS) t.true(PAGE_STATES.includes(PAGE_STATE_TABLE[s][op]), `${s} × ${op}`);
  for (const s of PAGE_STATES) t.is(PAGE_STATE_TABLE[s].convert, 'converting');
  t.is(PAGE_STATE_TABLE.converting['init-done'], 'converting');
  t.is(PAGE_STATE_TABLE.converting.terminate, 'normal');
});

for (const [row, cells] of Object.entries(POWER_VM) as [PowerVm, Record<PowerVmOp, string>][])
  for (const [op, result] of Object.entries(cells) as [PowerVmOp, string][])
    for (const state of VM_STATE_OF[row])
      for (const event of vmEventsOf(op, state)) {
        // Which SEV start belongs to which Transient: a receive is started by RECEIVE_START, a launch by LAUNCH_START.
        const expected =
          result === 'Error' || result === 'N/A'
            ? 'error'
            : op === 'H_SVM_INIT_START'
              ? event === 'LAUNCH_START'
                ? 'launching'
                : 'receiving'
              : SEV_OF[result as PowerVm];
        test(`VM table: ${row} × ${op} = ${result}  ⇔  ${state} × ${event} = ${expected}`, (t) => {
          const cell = vmTransition(state, event);
          if (expected === 'error') {
            t.true('error' in cell);
            if ('error' in cell) t.true(cell.error.includes(`'${state}'`) && cell.error.includes(event), cell.error);
          } else t.deepEqual('to' in cell ? cell.to : cell, expected);
        });
      }

test('every cell of the SEV VM table is a transition or an error naming the state and the event; the tracker throws that error and stays put', (t) => {
  let transitions = 0;
  for (const state of VM_STATES)
    for (const event of VM_EVENTS) {
      t.truthy(VM_STATE_TABLE[state][event], `${state} × ${event}`);
      const cell = vmTransition(state, event);
      const tr = trackerIn(state);
      if ('error' in cell) {
        t.regex(cell.error, new RegExp(`^${event} is not allowed in VM state '${state}': .+`));
        const e = t.throws(() => tr.vmEvent(event, { ignoreMigrationControl: true }));
        t.is((e as { code?: string }).code, 'ERR_KVM_SEV_VM_STATE');
        t.is(e?.message, cell.error);
        t.is(tr.vmState, state);
      } else {
        transitions++;
        t.is(tr.vmEvent(event, { ignoreMigrationControl: true }), cell.to);
      }
    }
  t.is(transitions, 21); // 5 + 4 + 4 + 3 + 4 + 1, row by row
});

test('the SEV-only rows: SEND_START → sending; SEND_CANCEL is the abort (back to running), SEND_FINISH leaves a guest that must never run again', (t) => {
  t.deepEqual(vmTransition('running', 'SEND_START'), { to: 'sending' });
  t.deepEqual(vmTransition('sending', 'SEND_CANCEL'), { to: 'running' });
  t.deepEqual(vmTransition('sending', 'SEND_FINISH'), { to: 'sent' });
  for (const e of VM_EVENTS.filter((e) => e !== 'TERMINATE')) t.true('error' in vmTransition('sent', e), e);
  t.deepEqual(vmTransition('sent', 'TERMINATE'), { to: 'normal', pages: 'terminate' });
  t.deepEqual(vmTransition('receiving', 'RECEIVE_FINISH'), { to: 'running', pages: 'init-done' });
  t.deepEqual(vmTransition('receiving', 'DECOMMISSION'), { to: 'normal', pages: 'terminate' });
});

test('the page operations of VM events: INIT_DONE makes leftover normal pages private and keeps shared ones; abort/terminate makes every page normal', (t) => {
  const tr = new PageStateTracker({ ram: [{ gpa: 0n, size: 0x10000 }] });
  tr.vmEvent('LAUNCH_START');
  tr.launchUpdate(0x1000n, 0x2000);
  t.deepEqual(
    [...tr.runs()].map((r) => [Number(r.gpa), r.pages, r.state]),
    [
      [0, 1, 'normal'],
      [0x1000, 2, 'private'],
      [0x3000, 13, 'normal'],
    ],
  );
  tr.vmEvent('LAUNCH_FINISH');
  t.deepEqual([...tr.runs()], [{ gpa: 0n, pages: 16, state: 'private' }]);
  tr.vmEvent('TERMINATE');
  t.deepEqual([...tr.runs()], [{ gpa: 0n, pages: 16, state: 'normal' }]);
  t.is(tr.vmState, 'normal');
});

/** A tracker driven into `state` through legal events. */
function trackerIn(state: VmState): PageStateTracker {
  const tr = new PageStateTracker({ ram: [{ gpa: 0n, size: 0x4000 }] });
  const path: Record<VmState, VmEvent[]> = {
    normal: [],
    launching: ['LAUNCH_START'],
    receiving: ['RECEIVE_START'],
    running: ['LAUNCH_START', 'LAUNCH_FINISH'],
    sending: ['LAUNCH_START', 'LAUNCH_FINISH', 'SEND_START'],
    sent: ['LAUNCH_START', 'LAUNCH_FINISH', 'SEND_START', 'SEND_FINISH'],
  };
  for (const e of path[state]) tr.vmEvent(e, { ignoreMigrationControl: true });
  return tr;
}
