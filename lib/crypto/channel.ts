/**
 * The packet header and MAC shared by LAUNCH_SECRET and SEND/RECEIVE_UPDATE_*
 * (§5, §6): header = FLAGS u32 ‖ IV[16] ‖ MAC[32] (52 bytes), and
 *   MAC = HMAC-SHA256(TIK, CTX ‖ LE32(FLAGS) ‖ IV ‖ LE32(GUEST_LEN) ‖ LE32(TRANS_LEN) ‖ TRANS [‖ MEASURE])
 */
import { copy, u32le } from './bytes.js';
import { checkBytes, checkObject, checkU8, checkU32 } from '../uapi/args.js';
import { SevFormatError } from './errors.js';
import { hmacSha256 } from './hmac.js';

/** The context byte that starts each channel MAC (SEV_CHANNEL_CTX_*). */
export const ChannelContext = {
  SECRET: 0x01,
  /** SEND/RECEIVE_UPDATE_DATA (Genoa firmware also uses it for VMSA: §6). */
  DATA: 0x02,
  VMSA: 0x03,
  MEASURE: 0x04,
} as const;

export const PACKET_HEADER_SIZE = 0x34;
/** FLAGS bit 0. The firmware rejects it (UNSUPPORTED) after the MAC check. */
export const PACKET_FLAG_COMPRESSED = 0x1;

export interface PacketHeader {
  readonly flags: number;
  /** 16 bytes: AES-128-CTR initial counter block. */
  readonly iv: Buffer;
  /** 32 bytes. */
  readonly mac: Buffer;
}

export function parsePacketHeader(bytes: Uint8Array): PacketHeader {
  const b = checkBytes('bytes', bytes);
  if (b.length !== PACKET_HEADER_SIZE) throw new SevFormatError(`a packet header is ${PACKET_HEADER_SIZE} bytes, got ${b.length}`);
  return { flags: b.readUInt32LE(0), iv: copy(b.subarray(4, 20)), mac: copy(b.subarray(20, 52)) };
}

export function serializePacketHeader(h: PacketHeader): Buffer {
  checkObject('header', h);
  return Buffer.concat([u32le(checkU32('header.flags', h.flags)), checkBytes('header.iv', h.iv, 16), checkBytes('header.mac', h.mac, 32)]);
}

export function toPacketHeader(h: PacketHeader | Uint8Array): PacketHeader {
  return h instanceof Uint8Array ? parsePacketHeader(h) : h;
}

export interface ChannelMacInput {
  tik: Uint8Array;
  context: number;
  flags: number;
  iv: Uint8Array;
  guestLength: number;
  /** Ciphertext (encrypt-then-MAC); its length is TRANS_LEN. */
  trans: Uint8Array;
  /** LAUNCH_SECRET appends the 32-byte MEASURE. */
  trailer?: Uint8Array;
}

export function channelMac(m: ChannelMacInput): Buffer {
  const trans = checkBytes('trans', m.trans);
  const parts: Buffer[] = [
    Buffer.from([checkU8('context', m.context)]),
    u32le(checkU32('flags', m.flags)),
    checkBytes('iv', m.iv, 16),
    u32le(checkU32('guestLength', m.guestLength)),
    u32le(trans.length),
    trans,
  ];
  if (m.trailer !== undefined) parts.push(checkBytes('trailer', m.trailer));
  return hmacSha256(checkBytes('tik', m.tik, 16), ...parts);
}
