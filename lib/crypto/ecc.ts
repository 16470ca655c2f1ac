/**
 * P-384 helpers over node:crypto. Certificates carry coordinates and ECDSA r/s as little-endian
 * fields; ECDH's shared secret Z is the big-endian x-coordinate (§3.3, §11.1).
 */
import { createECDH, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { beToBigInt, bigIntToBe } from './bytes.js';
import { invalidArgValue } from './errors.js';

export const P384 = {
  p: 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffffn,
  a: 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000fffffffcn,
  b: 0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aefn,
  n: 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
  /** Bytes in a scalar or coordinate. */
  size: 48,
} as const;

export interface EcPoint {
  x: bigint;
  y: bigint;
}

/** y² = x³ + ax + b (mod p), with 0 ≤ x, y < p. */
export function isOnP384({ x, y }: EcPoint): boolean {
  const { p, a, b } = P384;
  if (x < 0n || y < 0n || x >= p || y >= p) return false;
  return (y * y - (x * x * x + a * x + b)) % p === 0n;
}

function b64u(n: bigint): string {
  return bigIntToBe(n, P384.size).toString('base64url');
}

export function p384PublicKey(point: EcPoint): KeyObject {
  if (!isOnP384(point)) throw invalidArgValue('point', point, 'is not a point on P-384');
  return createPublicKey({ key: { kty: 'EC', crv: 'P-384', x: b64u(point.x), y: b64u(point.y) }, format: 'jwk' });
}

/** The public point of a P-384 key (public or private KeyObject). */
export function p384PointOf(key: KeyObject): EcPoint {
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'secp384r1') {
    throw invalidArgValue('key', key.asymmetricKeyDetails?.namedCurve ?? key.asymmetricKeyType, 'must be a P-384 (secp384r1) EC key');
  }
  const jwk = key.export({ format: 'jwk' });
  return { x: beToBigInt(Buffer.from(jwk.x!, 'base64url')), y: beToBigInt(Buffer.from(jwk.y!, 'base64url')) };
}

export function isP384Key(key: KeyObject): boolean {
  return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'secp384r1';
}

/** Private key from a scalar 1 ≤ d < n. */
export function p384PrivateKeyFromScalar(d: bigint): KeyObject {
  if (d <= 0n || d >= P384.n) throw invalidArgValue('d', d, 'must be in [1, n-1]');
  const ecdh = createECDH('secp384r1');
  const dBytes = bigIntToBe(d, P384.size);
  ecdh.setPrivateKey(dBytes);
  const pub = ecdh.getPublicKey(); // 0x04 || X || Y
  return createPrivateKey({
    key: {
      kty: 'EC',
      crv: 'P-384',
      d: dBytes.toString('base64url'),
      x: pub.subarray(1, 49).toString('base64url'),
      y: pub.subarray(49, 97).toString('base64url'),
    },
    format: 'jwk',
  });
}

export function generateP384(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ec', { namedCurve: 'P-384' });
}

/** Z = x-coordinate of d·Q, 48 bytes big-endian (§3.3 step 2). */
export function ecdhP384(privateKey: KeyObject, peerPublicKey: KeyObject): Buffer {
  return diffieHellman({ privateKey, publicKey: peerPublicKey });
}

export interface EcdsaSignature {
  r: bigint;
  s: bigint;
}

export function ecdsaSignP384(hash: 'sha256' | 'sha384', data: Uint8Array, privateKey: KeyObject): EcdsaSignature {
  const sig = sign(hash, data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return { r: beToBigInt(sig.subarray(0, P384.size)), s: beToBigInt(sig.subarray(P384.size)) };
}

export function ecdsaVerifyP384(hash: 'sha256' | 'sha384', data: Uint8Array, publicKey: KeyObject, sig: EcdsaSignature): boolean {
  const { n } = P384;
  if (sig.r <= 0n || sig.s <= 0n || sig.r >= n || sig.s >= n) return false;
  const p1363 = Buffer.concat([bigIntToBe(sig.r, P384.size), bigIntToBe(sig.s, P384.size)]);
  return verify(hash, data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, p1363);
}
