/**
 * One mock chip's key material (docs/sev-reference.md §2.1 INIT/PEK_GEN/PDH_GEN/PEK_CERT_IMPORT, §7):
 * the chip-unique key and the CEK derived from it, the ASK-signed CEK certificate, and the
 * "persistent" OCA, PEK and PDH with their private keys. Every certificate is a real SEV-format
 * certificate minted with lib/crypto, so code that verifies AMD's chains verifies these too.
 */
import { createECDH, createHash } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { leToBigInt } from '../../../crypto/bytes.js';
import {
  EMPTY_SLOT,
  P384,
  SevUsage,
  createSevCert,
  deriveCekKey,
  kdfSp800108,
  mintCek,
  mintOca,
  mintPdh,
  mintPek,
  p384PrivateKeyFromScalar,
  sevCertBody,
  serializeSevCert,
} from '../../../crypto/index.js';
import type { SevCertificate, SevSignatureSlot } from '../../../crypto/index.js';
import type { MockAmdRoot } from './mock-amd-root.js';

/** A random source: n bytes. */
export type RandomSource = (n: number) => Uint8Array;

const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

/** GET_ID bytes per socket (§7.3). */
export const CHIP_ID_SIZE = 64;

/** A P-384 private key whose scalar comes from the random source: d = (LE(56 bytes) mod (n − 1)) + 1. */
export function p384KeyFromRandom(random: RandomSource): KeyObject {
  return p384PrivateKeyFromScalar((leToBigInt(random(56)) % (P384.n - 1n)) + 1n);
}

export interface PlatformIdentityOptions {
  root: MockAmdRoot;
  /** The chip-unique key (CEK and GET_ID derive from it). */
  chipKey: Uint8Array;
  /** API version written into OCA, PEK and PDH certificates (the firmware's). */
  apiMajor: number;
  apiMinor: number;
  random: RandomSource;
}

interface Keyed {
  cert: SevCertificate;
  /** null for an OCA imported by an external owner: the platform never holds its key. */
  key: KeyObject | null;
}

export class PlatformIdentity {
  readonly root: MockAmdRoot;
  readonly chipKey: Buffer;
  readonly cekKey: KeyObject;
  /** The CEK signed by the ASK (what AMD's KDS serves). */
  readonly cek: SevCertificate;
  #api: { apiMajor: number; apiMinor: number };
  #random: RandomSource;
  #oca: Keyed | null = null;
  #pek: Keyed | null = null;
  #pdh: Keyed | null = null;
  /** Externally owned (PEK_CERT_IMPORT done). */
  owned = false;

  constructor(opts: PlatformIdentityOptions) {
    this.root = opts.root;
    this.chipKey = Buffer.from(opts.chipKey);
    this.#api = { apiMajor: opts.apiMajor, apiMinor: opts.apiMinor };
    this.#random = opts.random;
    this.cekKey = deriveCekKey(this.chipKey);
    this.cek = mintCek({ cekKey: this.cekKey, ask: opts.root.ask, askKey: opts.root.askKey, apiMajor: 0, apiMinor: 14 });
  }

  get oca(): SevCertificate | null {
    return this.#oca?.cert ?? null;
  }
  get pek(): SevCertificate | null {
    return this.#pek?.cert ?? null;
  }
  get pdh(): SevCertificate | null {
    return this.#pdh?.cert ?? null;
  }
  get pekKey(): KeyObject | null {
    return this.#pek?.key ?? null;
  }
  get pdhKey(): KeyObject | null {
    return this.#pdh?.key ?? null;
  }

  /** INIT's key handling (§2.1): missing OCA ⇒ new OCA and no PEK; missing PEK ⇒ new PEK and no PDH; missing PDH ⇒ new PDH. */
  load(regeneratePdh: boolean): void {
    if (!this.#oca) {
      this.generateOca();
      this.#pek = null;
    }
    if (!this.#pek) {
      this.generatePek();
      this.#pdh = null;
    }
    if (!this.#pdh || regeneratePdh) this.generatePdh();
  }

  /** A new self-signed OCA: the platform is self-owned again. */
  generateOca(): void {
    const key = p384KeyFromRandom(this.#random);
    this.#oca = { cert: mintOca({ ocaKey: key, ...this.#api }), key };
    this.owned = false;
  }

  /** A new PEK signed by the OCA (slot 1) and the CEK (slot 2). */
  generatePek(): void {
    const oca = this.#oca;
    if (!oca?.key) throw new Error('PEK generation needs a self-owned OCA');
    const key = p384KeyFromRandom(this.#random);
    this.#pek = { cert: mintPek({ pekKey: key, ocaKey: oca.key, cekKey: this.cekKey, ...this.#api }), key };
  }

  /** A new PDH signed by the PEK. */
  generatePdh(): void {
    const pek = this.#pek;
    if (!pek?.key) throw new Error('PDH generation needs a PEK');
    const key = p384KeyFromRandom(this.#random);
    this.#pdh = { cert: mintPdh({ pdhKey: key, pekKey: pek.key, ...this.#api }), key };
  }

  /** PLATFORM_RESET: delete the persistent OCA, PEK, PDH and ownership. */
  reset(): void {
    this.#oca = this.#pek = this.#pdh = null;
    this.owned = false;
  }

  /** PEK_CSR: the PEK body with both signature slots empty. */
  pekCsr(): SevCertificate {
    const pek = this.#pek!.cert;
    return { ...pek, sig1: EMPTY_SLOT, sig2: EMPTY_SLOT };
  }

  /** True if `cert`'s signed body is the current PEK's. */
  isCurrentPekBody(cert: SevCertificate): boolean {
    return sevCertBody(cert).equals(sevCertBody(this.#pek!.cert));
  }

  /** The current PEK's CEK signature slot (null if there is none). */
  cekSignatureSlot(): SevSignatureSlot | null {
    const pek = this.#pek!.cert;
    if (pek.sig1.usage === SevUsage.CEK) return pek.sig1;
    if (pek.sig2.usage === SevUsage.CEK) return pek.sig2;
    return null;
  }

  /**
   * PEK_CERT_IMPORT's commit: the owner-signed PEK (carrying the CEK signature) and the owner's
   * OCA replace ours, the platform becomes externally owned, and a new PDH is signed by the PEK.
   */
  adopt(pek: SevCertificate, oca: SevCertificate): void {
    this.#pek = { cert: pek, key: this.#pek!.key };
    this.#oca = { cert: oca, key: null };
    this.owned = true;
    this.generatePdh();
  }

  /** What PDH_CERT_EXPORT returns for the CEK: signed, or (Genoa) an unsigned placeholder. */
  exportedCek(unsigned: boolean): SevCertificate {
    if (!unsigned) return this.cek;
    return createSevCert({ usage: SevUsage.CEK, publicKey: this.cekKey, apiMajor: this.cek.apiMajor, apiMinor: this.cek.apiMinor });
  }

  /** PEK ‖ OCA ‖ CEK (3 × 0x824), as PDH_CERT_EXPORT writes them. */
  certChain(unsignedCek: boolean): Buffer {
    return Buffer.concat([
      serializeSevCert(this.#pek!.cert),
      serializeSevCert(this.#oca!.cert),
      serializeSevCert(this.exportedCek(unsignedCek)),
    ]);
  }

  /**
   * GET_ID for one socket (§7.3: X ‖ Y of a public point derived from the chip-unique key). AMD's
   * derivation is not public; the mock's: d = KDF(SHA-256(chip key), "sev-mock-chip-id",
   * LE32(socket), 320 bits) mod (n − 1) + 1 on P-256, ID = X ‖ Y, 32 bytes each, little-endian.
   */
  chipId(socket: number): Buffer {
    const seed = createHash('sha256').update(this.chipKey).digest();
    const ctx = Buffer.alloc(4);
    ctx.writeUInt32LE(socket);
    const d = (leToBigInt(kdfSp800108(seed, 'sev-mock-chip-id', ctx, 320)) % (P256_N - 1n)) + 1n;
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(Buffer.from(d.toString(16).padStart(64, '0'), 'hex'));
    const pub = ecdh.getPublicKey(); // 0x04 ‖ X ‖ Y, big-endian
    return Buffer.concat([Buffer.from(pub.subarray(1, 33)).reverse(), Buffer.from(pub.subarray(33, 65)).reverse()]);
  }
}
