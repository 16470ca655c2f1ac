/**
 * Minting certificate chains in the real formats: an AMD-like root (ARK, ASK: RSA, AMD format) and
 * a platform's CEK, OCA, PEK, PDH (P-384, SEV format), signed as AMD's firmware signs them
 * (§7). The code that verifies AMD's real chains verifies these too.
 */
import { createHash, generateKeyPair } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { leToBigInt } from './bytes.js';
import { checkBytes, checkObject } from '../uapi/args.js';
import { createAmdCert, signAmdCert } from './amd-cert.js';
import type { AmdCertificate } from './amd-cert.js';
import { SevAlgo, SevUsage } from './cert-codes.js';
import { P384, generateP384, isP384Key, p384PrivateKeyFromScalar } from './ecc.js';
import { invalidArgValue } from './errors.js';
import { KDF_LABEL, kdfSp800108 } from './kdf.js';
import { rsaComponents } from './rsa.js';
import { createSevCert, signSevCert } from './sev-cert.js';
import type { SevCertificate } from './sev-cert.js';

export type RsaRootBits = 2048 | 4096;

const rsaCache = new Map<string, Promise<KeyObject>>();

/**
 * An RSA private key, generated once per process per (bits, name): RSA-4096 generation takes
 * about a second, so minted roots reuse keys unless the caller passes its own.
 */
export function cachedRsaKey(bits: RsaRootBits, name: string): Promise<KeyObject> {
  const id = `${bits}:${name}`;
  let p = rsaCache.get(id);
  if (!p) {
    p = new Promise<KeyObject>((resolve, reject) => {
      generateKeyPair('rsa', { modulusLength: bits, publicExponent: 0x10001 }, (err, _pub, priv) => (err ? reject(err) : resolve(priv)));
    });
    rsaCache.set(id, p);
    p.catch(() => rsaCache.delete(id));
  }
  return p;
}

/** A stable 16-byte key id for a minted key: SHA-256 of its modulus, truncated. */
function keyIdOf(key: KeyObject): Buffer {
  return createHash('sha256').update(rsaComponents(key).n).digest().subarray(0, 16);
}

export interface MintAmdRootOptions {
  /** Default 4096 (Rome and later); 2048 is Naples-like. */
  bits?: RsaRootBits;
  /** RSA private keys; default: per-process cached keys of the given size. */
  arkKey?: KeyObject;
  askKey?: KeyObject;
  /** Name of the cached key pair to use (different names give different roots). Default 'default'. */
  cacheName?: string;
  arkKeyId?: Uint8Array;
  askKeyId?: Uint8Array;
}

export interface MintedAmdRoot {
  ark: AmdCertificate;
  ask: AmdCertificate;
  arkKey: KeyObject;
  askKey: KeyObject;
}

export async function mintAmdRoot(options: MintAmdRootOptions = {}): Promise<MintedAmdRoot> {
  checkObject('options', options);
  const bits = options.bits ?? 4096;
  if (bits !== 2048 && bits !== 4096) throw invalidArgValue('options.bits', bits, 'must be 2048 or 4096');
  const name = options.cacheName ?? 'default';
  const [arkKey, askKey] = await Promise.all([
    options.arkKey ?? cachedRsaKey(bits, `${name}/ark`),
    options.askKey ?? cachedRsaKey(bits, `${name}/ask`),
  ]);
  const arkId = options.arkKeyId ? checkBytes('options.arkKeyId', options.arkKeyId, 16) : keyIdOf(arkKey);
  const askId = options.askKeyId ? checkBytes('options.askKeyId', options.askKeyId, 16) : keyIdOf(askKey);
  const ark = signAmdCert(createAmdCert({ keyId: arkId, keyUsage: SevUsage.ARK, publicKey: arkKey }), arkKey);
  const ask = signAmdCert(createAmdCert({ keyId: askId, certifyingId: arkId, keyUsage: SevUsage.ASK, publicKey: askKey }), arkKey);
  return { ark, ask, arkKey, askKey };
}

/**
 * The CEK private key the firmware derives from the chip-unique key (§7.3):
 * rdata = KDF(SHA-256(cuk), "sev-chip-endorsement-key", no context, 448 bits),
 * d = (LE-int(rdata) mod (n − 1)) + 1.
 */
export function deriveCekKey(chipUniqueKey: Uint8Array): KeyObject {
  const seed = createHash('sha256').update(checkBytes('chipUniqueKey', chipUniqueKey)).digest();
  const rdata = kdfSp800108(seed, KDF_LABEL.CEK, Buffer.alloc(0), 448);
  return p384PrivateKeyFromScalar((leToBigInt(rdata) % (P384.n - 1n)) + 1n);
}

export interface ApiVersion {
  apiMajor?: number;
  apiMinor?: number;
}

function p384Key(k: KeyObject | undefined, name: string): KeyObject {
  if (k === undefined) return generateP384().privateKey;
  if (!isP384Key(k) || k.type !== 'private') throw invalidArgValue(name, k.asymmetricKeyType, 'must be a P-384 private key');
  return k;
}

/** CEK certificate signed by the ASK (slot 1: usage 0x13, algo RSA_SHA256/384 by the ASK's size). */
export function mintCek(opts: { cekKey: KeyObject; ask: AmdCertificate; askKey: KeyObject } & ApiVersion): SevCertificate {
  const cert = createSevCert({ usage: SevUsage.CEK, publicKey: opts.cekKey, apiMajor: opts.apiMajor, apiMinor: opts.apiMinor });
  const algo = opts.ask.modulusBits > 2048 ? SevAlgo.RSA_SHA384 : SevAlgo.RSA_SHA256;
  return signSevCert(cert, opts.askKey, opts.ask.keyUsage, { algo, slot: 1 });
}

/** Self-signed OCA (slot 1). */
export function mintOca(opts: { ocaKey: KeyObject } & ApiVersion): SevCertificate {
  const cert = createSevCert({ usage: SevUsage.OCA, publicKey: opts.ocaKey, apiMajor: opts.apiMajor, apiMinor: opts.apiMinor });
  return signSevCert(cert, opts.ocaKey, SevUsage.OCA, { slot: 1 });
}

/** PEK signed by the OCA (slot 1) and the CEK (slot 2), as PEK_GEN leaves it. */
export function mintPek(opts: { pekKey: KeyObject; ocaKey: KeyObject; cekKey?: KeyObject } & ApiVersion): SevCertificate {
  let cert = createSevCert({ usage: SevUsage.PEK, publicKey: opts.pekKey, apiMajor: opts.apiMajor, apiMinor: opts.apiMinor });
  cert = signSevCert(cert, opts.ocaKey, SevUsage.OCA, { slot: 1 });
  if (opts.cekKey) cert = signSevCert(cert, opts.cekKey, SevUsage.CEK, { slot: 2 });
  return cert;
}

/** PDH (ECDH_SHA256) signed by the PEK (slot 1). */
export function mintPdh(opts: { pdhKey: KeyObject; pekKey: KeyObject } & ApiVersion): SevCertificate {
  const cert = createSevCert({
    usage: SevUsage.PDH,
    algo: SevAlgo.ECDH_SHA256,
    publicKey: opts.pdhKey,
    apiMajor: opts.apiMajor,
    apiMinor: opts.apiMinor,
  });
  return signSevCert(cert, opts.pekKey, SevUsage.PEK, { slot: 1 });
}

export interface MintPlatformOptions {
  ask: AmdCertificate;
  askKey: KeyObject;
  /** API version written into OCA, PEK, PDH. Default 0.24. */
  apiMajor?: number;
  apiMinor?: number;
  /** API version of the CEK. Default 0.14 (what real CEKs carry). */
  cekApiMajor?: number;
  cekApiMinor?: number;
  /** Derive the CEK from this chip-unique key (§7.3); else `cekKey`, else a random key. */
  chipUniqueKey?: Uint8Array;
  cekKey?: KeyObject;
  ocaKey?: KeyObject;
  pekKey?: KeyObject;
  pdhKey?: KeyObject;
}

export interface MintedPlatform {
  cek: SevCertificate;
  oca: SevCertificate;
  pek: SevCertificate;
  pdh: SevCertificate;
  /** Private keys. */
  keys: { cek: KeyObject; oca: KeyObject; pek: KeyObject; pdh: KeyObject };
}

export function mintPlatformChain(opts: MintPlatformOptions): MintedPlatform {
  checkObject('options', opts);
  const api = { apiMajor: opts.apiMajor ?? 0, apiMinor: opts.apiMinor ?? 24 };
  const cekKey = opts.chipUniqueKey !== undefined ? deriveCekKey(opts.chipUniqueKey) : p384Key(opts.cekKey, 'options.cekKey');
  const keys = {
    cek: cekKey,
    oca: p384Key(opts.ocaKey, 'options.ocaKey'),
    pek: p384Key(opts.pekKey, 'options.pekKey'),
    pdh: p384Key(opts.pdhKey, 'options.pdhKey'),
  };
  return {
    cek: mintCek({ cekKey, ask: opts.ask, askKey: opts.askKey, apiMajor: opts.cekApiMajor ?? 0, apiMinor: opts.cekApiMinor ?? 14 }),
    oca: mintOca({ ocaKey: keys.oca, ...api }),
    pek: mintPek({ pekKey: keys.pek, ocaKey: keys.oca, cekKey, ...api }),
    pdh: mintPdh({ pdhKey: keys.pdh, pekKey: keys.pek, ...api }),
    keys,
  };
}

/** A root and one platform under it. */
export async function mintChain(
  options: MintAmdRootOptions & Omit<MintPlatformOptions, 'ask' | 'askKey'> = {},
): Promise<{ root: MintedAmdRoot; platform: MintedPlatform }> {
  const root = await mintAmdRoot(options);
  return { root, platform: mintPlatformChain({ ...options, ask: root.ask, askKey: root.askKey }) };
}
