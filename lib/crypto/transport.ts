/**
 * SEND_UPDATE_* / RECEIVE_UPDATE_* packets (§6): same header and CTR encryption
 * as LAUNCH_SECRET, a fresh random IV per packet, MAC context 0x02 and no MEASURE trailer.
 * Genoa firmware uses 0x02 for VMSA packets too; pass `context: ChannelContext.VMSA` for 0x03.
 */
import { randomBytes } from 'node:crypto';
import { aes128Ctr } from './aes-ctr.js';
import { bytesEqual, copy } from './bytes.js';
import { checkBytes, checkObject, checkU32 } from '../uapi/args.js';
import { ChannelContext, channelMac, serializePacketHeader, toPacketHeader } from './channel.js';
import type { PacketHeader } from './channel.js';
import { SevMacError } from './errors.js';
import type { SealedPacket } from './secret.js';

export interface SealTransportOptions {
  tek: Uint8Array;
  tik: Uint8Array;
  plaintext: Uint8Array;
  /** Default: 16 random bytes (the firmware draws one per packet). */
  iv?: Uint8Array;
  flags?: number;
  /** Default ChannelContext.DATA (0x02). */
  context?: number;
}

export function sealTransportPacket(opts: SealTransportOptions): SealedPacket {
  checkObject('options', opts);
  const plaintext = checkBytes('options.plaintext', opts.plaintext);
  const iv = opts.iv === undefined ? randomBytes(16) : copy(checkBytes('options.iv', opts.iv, 16));
  const flags = checkU32('options.flags', opts.flags ?? 0);
  const trans = aes128Ctr(opts.tek, iv, plaintext);
  const mac = channelMac({ tik: opts.tik, context: opts.context ?? ChannelContext.DATA, flags, iv, guestLength: plaintext.length, trans });
  const header = { flags, iv, mac };
  return { header, headerBytes: serializePacketHeader(header), trans };
}

export interface OpenTransportOptions {
  tek: Uint8Array;
  tik: Uint8Array;
  header: PacketHeader | Uint8Array;
  trans: Uint8Array;
  guestLength?: number;
  context?: number;
}

/** Receiver side: MAC first (SevMacError 'transport' ⇒ BAD_MEASUREMENT), then decrypt. */
export function openTransportPacket(opts: OpenTransportOptions): Buffer {
  checkObject('options', opts);
  const h = toPacketHeader(opts.header);
  const trans = checkBytes('options.trans', opts.trans);
  const mac = channelMac({
    tik: opts.tik,
    context: opts.context ?? ChannelContext.DATA,
    flags: h.flags,
    iv: h.iv,
    guestLength: opts.guestLength ?? trans.length,
    trans,
  });
  if (!bytesEqual(mac, checkBytes('header.mac', h.mac, 32))) {
    throw new SevMacError('transport', 'transport packet MAC does not match');
  }
  return aes128Ctr(opts.tek, h.iv, trans);
}
