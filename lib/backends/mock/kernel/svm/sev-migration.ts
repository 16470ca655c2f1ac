/**
 * The migration commands of arch/x86/kvm/svm/sev.c: the source side (SEND_START, SEND_UPDATE_DATA,
 * SEND_FINISH, SEND_CANCEL) packs the guest for another platform under a transport key the two
 * firmwares agree on; the target side (RECEIVE_START, RECEIVE_UPDATE_DATA, RECEIVE_FINISH) makes a
 * new guest context from the packets. The firmware does the cryptography (psp/migration-commands.ts);
 * the kernel copies the blobs in and out, pins the guest page, and keeps the length-query rules:
 * SEND_START with `session_len` 0 and SEND_UPDATE_DATA with `hdr_len` or `trans_len` 0 only ask the
 * firmware for the lengths, which are written back even when it fails.
 */
import { PAGE_SIZE, SEV_FW_BLOB_MAX_SIZE } from '../../../../uapi/constants.js';
import {
  kvm_sev_receive_start,
  kvm_sev_receive_update_data,
  kvm_sev_send_start,
  kvm_sev_send_update_data,
} from '../../../../uapi/sev-structs.js';
import { copyUserBlob, padTo } from '../ccp/sev-dev.js';
import { E, fail } from '../common/errno.js';
import type { SevCmd, SevCmdHelpers } from './sev-cmd.js';
import type { SevVm } from './sev-types.js';

/** SEND_UPDATE_DATA's header and transport buffers are kzalloc'd: beyond KMALLOC_MAX_SIZE (4 MiB) that fails, ENOMEM. */
const SEND_BUFFER_MAX = 4 << 20;

/** sev_send_start() */
export function sevSendStart(k: SevCmdHelpers, vm: SevVm, cmd: SevCmd): void {
  if (!k.sevGuest(vm)) fail(E.ENOTTY);
  const p = k.read(kvm_sev_send_start, cmd.data);
  const handle = vm.info.handle;
  if (p.session_len === 0) {
    // __sev_send_start_query_session_length()
    const empty = new Uint8Array(0);
    const r = k.fwOutcome(vm, cmd, 'SEND_START', (fw) =>
      fw.sendStart(handle, { pdhCert: empty, platCerts: empty, amdCerts: empty, sessionCapacity: 0 }),
    );
    k.write(cmd.data, kvm_sev_send_start.encode({ ...p, session_len: r.out?.sessionLength ?? 0 }));
    if (r.errno) fail(r.errno);
    return;
  }
  if (!p.pdh_cert_uaddr || !p.pdh_cert_len || !p.session_uaddr || p.session_len > SEV_FW_BLOB_MAX_SIZE) fail(E.EINVAL);
  const mem = k.cfg.mem;
  const pdhCert = copyUserBlob(mem, p.pdh_cert_uaddr, p.pdh_cert_len);
  const platCerts = copyUserBlob(mem, p.plat_certs_uaddr, p.plat_certs_len);
  const amdCerts = copyUserBlob(mem, p.amd_certs_uaddr, p.amd_certs_len);
  const r = k.fwOutcome(vm, cmd, 'SEND_START', (fw) =>
    fw.sendStart(handle, { pdhCert, platCerts, amdCerts, sessionCapacity: p.session_len }),
  );
  if (!r.errno) {
    try {
      k.write(p.session_uaddr, padTo(r.out?.session, p.session_len));
    } catch {
      fail(E.EFAULT); // the params are not written back then
    }
  }
  k.write(cmd.data, kvm_sev_send_start.encode({ ...p, policy: r.out?.policy ?? 0, session_len: r.out?.sessionLength ?? 0 }));
  if (r.errno) fail(r.errno);
}

/** sev_send_update_data(): one packet of at most a page, which must not cross a page. */
export function sevSendUpdateData(k: SevCmdHelpers, vm: SevVm, cmd: SevCmd): void {
  if (!k.sevGuest(vm)) fail(E.ENOTTY);
  const p = k.read(kvm_sev_send_update_data, cmd.data);
  const handle = vm.info.handle;
  if (p.trans_len === 0 || p.hdr_len === 0) {
    // __sev_send_update_data_query_lengths()
    const r = k.fwOutcome(vm, cmd, 'SEND_UPDATE_DATA', (fw) =>
      fw.sendUpdateData(handle, { guest: { paddr: 0n, bytes: new Uint8Array(0) }, hdrCapacity: 0, transCapacity: 0 }),
    );
    k.write(cmd.data, kvm_sev_send_update_data.encode({ ...p, hdr_len: r.out?.hdrLength ?? 0, trans_len: r.out?.transLength ?? 0 }));
    if (r.errno) fail(r.errno);
    return;
  }
  if (!p.trans_uaddr || !p.guest_uaddr || !p.guest_len || !p.hdr_uaddr) fail(E.EINVAL);
  const offset = Number(p.guest_uaddr & 0xfffn);
  if (p.guest_len > PAGE_SIZE || p.guest_len + offset > PAGE_SIZE) fail(E.EINVAL, 'the packet crosses a page');
  const sm = k.cfg.memory;
  const pin = sm.pin(vm, p.guest_uaddr & ~0xfffn, BigInt(PAGE_SIZE));
  try {
    if (p.hdr_len > SEND_BUFFER_MAX || p.trans_len > SEND_BUFFER_MAX) fail(E.ENOMEM);
    const guest = sm.physRanges(vm.port.memslots(), pin.segments, p.guest_uaddr, p.guest_len)[0]!;
    const out = k.fwVm(
      vm,
      cmd,
      'SEND_UPDATE_DATA',
      (fw) => fw.sendUpdateData(handle, { guest, hdrCapacity: p.hdr_len, transCapacity: p.trans_len }),
      p.guest_len,
    );
    k.write(p.trans_uaddr, padTo(out.trans, p.trans_len));
    k.write(p.hdr_uaddr, padTo(out.header, p.hdr_len));
  } finally {
    sm.unpin(vm, pin);
  }
}

/** sev_send_finish() */
export function sevSendFinish(k: SevCmdHelpers, vm: SevVm, cmd: SevCmd): void {
  k.simple(vm, cmd, 'SEND_FINISH', (fw, h) => fw.sendFinish(h));
}

/** sev_send_cancel() */
export function sevSendCancel(k: SevCmdHelpers, vm: SevVm, cmd: SevCmd): void {
  k.simple(vm, cmd, 'SEND_CANCEL', (fw, h) => fw.sendCancel(h));
}

/** sev_receive_start(): a new guest context from the sender's PDH and session, bound to this VM's ASID. */
export function sevReceiveStart(k: SevCmdHelpers, vm: SevVm, cmd: SevCmd): void {
  if (!k.sevGuest(vm)) fail(E.ENOTTY);
  const p = k.read(kvm_sev_receive_start, cmd.data);
  if (!p.pdh_uaddr || !p.pdh_len || !p.session_uaddr || !p.session_len) fail(E.EINVAL);
  const pdhCert = copyUserBlob(k.cfg.mem, p.pdh_uaddr, p.pdh_len);
  const session = copyUserBlob(k.cfg.mem, p.session_uaddr, p.session_len);
  const out = k.fwFd(cmd.sevFd, cmd, 'RECEIVE_START', (fw) => fw.receiveStart({ handle: p.handle, policy: p.policy, pdhCert, session }));
  k.bindGuest(vm, cmd, out.handle, kvm_sev_receive_start.encode({ ...p, handle: out.handle }));
}

/** sev_receive_update_data(): one packet into one guest page. */
export function sevReceiveUpdateData(k: SevCmdHelpers, vm: SevVm, cmd: SevCmd): void {
  if (!k.sevGuest(vm)) fail(E.EINVAL, 'not an SEV guest'); // EINVAL here, not ENOTTY
  const p = k.read(kvm_sev_receive_update_data, cmd.data);
  if (!p.hdr_uaddr || !p.hdr_len || !p.guest_uaddr || !p.guest_len || !p.trans_uaddr || !p.trans_len) fail(E.EINVAL);
  const offset = Number(p.guest_uaddr & 0xfffn);
  if (p.guest_len > PAGE_SIZE || p.guest_len + offset > PAGE_SIZE) fail(E.EINVAL, 'the packet crosses a page');
  const header = copyUserBlob(k.cfg.mem, p.hdr_uaddr, p.hdr_len);
  const trans = copyUserBlob(k.cfg.mem, p.trans_uaddr, p.trans_len);
  const sm = k.cfg.memory;
  const pin = sm.pin(vm, p.guest_uaddr & ~0xfffn, BigInt(PAGE_SIZE));
  try {
    const guest = sm.physRanges(vm.port.memslots(), pin.segments, p.guest_uaddr, p.guest_len)[0]!;
    k.fwVm(vm, cmd, 'RECEIVE_UPDATE_DATA', (fw) => fw.receiveUpdateData(vm.info.handle, { header, guest, trans }), p.guest_len);
  } finally {
    sm.unpin(vm, pin);
  }
}

/** sev_receive_finish() */
export function sevReceiveFinish(k: SevCmdHelpers, vm: SevVm, cmd: SevCmd): void {
  k.simple(vm, cmd, 'RECEIVE_FINISH', (fw, h) => fw.receiveFinish(h));
}
