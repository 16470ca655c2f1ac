/**
 * LAUNCH_SECRET packets (§5): TRANS = AES-128-CTR(TEK, IV, secret) and
 *   MAC = HMAC-SHA256(TIK, 0x01 ‖ LE32(FLAGS) ‖ IV ‖ LE32(GUEST_LEN) ‖ LE32(TRANS_LEN) ‖ TRANS ‖ MEASURE)
 * where MEASURE is the 32-byte LAUNCH_MEASURE HMAC (not the MNONCE).
 */
import { randomBytes } from 'node:crypto';
import { aes128Ctr } from './aes-ctr.js';
import { bytesEqual, copy } from './bytes.js';
import { checkBytes, checkObject, checkU32 } from '../uapi/args.js';
import { ChannelContext, channelMac, serializePacketHeader, toPacketHeader } from './channel.js';
import type { PacketHeader } from './channel.js';
import { SevMacError } from './errors.js';

/** Firmware limit of one LAUNCH_SECRET / transport packet (§5, §6). */
export const MAX_PACKET_LENGTH = 0x5000;

export interface SealSecretOptions {
  tek: Uint8Array;
  tik: Uint8Array;
  /** The 32-byte MEASURE from LAUNCH_MEASURE. */
  measurement: Uint8Array;
  plaintext: Uint8Array;
  /** Default: 16 random bytes. */
  iv?: Uint8Array;
  /** Default 0. */
  flags?: number;
  /** GUEST_LENGTH; default the plaintext length (they are equal unless COMPRESSED). */
  guestLength?: number;
}

export interface SealedPacket {
  header: PacketHeader;
  /** The 52-byte header as LAUNCH_SECRET's hdr_uaddr carries it. */
  headerBytes: Buffer;
  /** Ciphertext (trans_uaddr). */
  trans: Buffer;
}

/**
 * The firmware-level packet: the caller gives the plaintext and the 32-byte MEASURE. (The guest
 * owner's `buildSecret` in `kvm-sev/owner` builds on it: secret tables, length checks, and the
 * shape `launchSecret` takes.)
 */
export function sealSecret(opts: SealSecretOptions): SealedPacket {
  checkObject('options', opts);
  const plaintext = checkBytes('options.plaintext', opts.plaintext);
  const iv = opts.iv === undefined ? randomBytes(16) : copy(checkBytes('options.iv', opts.iv, 16));
  const flags = checkU32('options.flags', opts.flags ?? 0);
  const trans = aes128Ctr(opts.tek, iv, plaintext);
  const mac = channelMac({
    tik: opts.tik,
    context: ChannelContext.SECRET,
    flags,
    iv,
    guestLength: opts.guestLength ?? plaintext.length,
    trans,
    trailer: checkBytes('options.measurement', opts.measurement, 32),
  });
  const header = { flags, iv, mac };
  return { header, headerBytes: serializePacketHeader(header), trans };
}

export interface OpenSecretOptions {
  tek: Uint8Array;
  tik: Uint8Array;
  measurement: Uint8Array;
  header: PacketHeader | Uint8Array;
  trans: Uint8Array;
  /** Default: trans length. */
  guestLength?: number;
}

/** Platform side: MAC first (SevMacError 'secret' ⇒ BAD_MEASUREMENT), then decrypt. */
export function openSecret(opts: OpenSecretOptions): Buffer {
  checkObject('options', opts);
  const h = toPacketHeader(opts.header);
  const trans = checkBytes('options.trans', opts.trans);
  const mac = channelMac({
    tik: opts.tik,
    context: ChannelContext.SECRET,
    flags: h.flags,
    iv: h.iv,
    guestLength: opts.guestLength ?? trans.length,
    trans,
    trailer: checkBytes('options.measurement', opts.measurement, 32),
  });
  if (!bytesEqual(mac, checkBytes('header.mac', h.mac, 32))) {
    throw new SevMacError('secret', 'LAUNCH_SECRET packet MAC does not match (wrong TIK, measurement, header or ciphertext)');
  }
  return aes128Ctr(opts.tek, h.iv, trans);
}
