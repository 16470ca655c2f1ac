/**
 * RSA helpers. AMD and SEV certificates store modulus, exponent and signature little-endian;
 * signatures are RSA-PSS with MGF1 of the same hash and salt length = hash length (§7.1, §7.2).
 */
import { constants, createPublicKey, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { reversed } from './bytes.js';
import { invalidArgValue } from './errors.js';

const SALT = { sha256: 32, sha384: 48 } as const;

/** Public key from little-endian modulus and exponent (leading zero bytes are fine). */
export function rsaPublicKeyFromLe(modulusLe: Uint8Array, expLe: Uint8Array): KeyObject {
  return createPublicKey({
    key: {
      kty: 'RSA',
      n: stripLeadingZeros(reversed(modulusLe)).toString('base64url'),
      e: stripLeadingZeros(reversed(expLe)).toString('base64url'),
    },
    format: 'jwk',
  });
}

/** Modulus and exponent of an RSA key, big-endian without leading zeros. */
export function rsaComponents(key: KeyObject): { n: Buffer; e: Buffer; bits: number } {
  if (key.asymmetricKeyType !== 'rsa') throw invalidArgValue('key', key.asymmetricKeyType, 'must be an RSA key');
  const jwk = key.export({ format: 'jwk' });
  const n = Buffer.from(jwk.n!, 'base64url');
  return { n, e: Buffer.from(jwk.e!, 'base64url'), bits: key.asymmetricKeyDetails?.modulusLength ?? n.length * 8 };
}

export function rsaBits(key: KeyObject): number {
  return rsaComponents(key).bits;
}

/** Signature big-endian, modulus-sized. */
export function rsaPssSign(hash: 'sha256' | 'sha384', data: Uint8Array, privateKey: KeyObject): Buffer {
  return sign(hash, data, { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: SALT[hash] });
}

export function rsaPssVerify(hash: 'sha256' | 'sha384', data: Uint8Array, publicKey: KeyObject, signatureBe: Uint8Array): boolean {
  try {
    return verify(hash, data, { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: SALT[hash] }, signatureBe);
  } catch {
    return false; // wrong signature length etc.
  }
}

function stripLeadingZeros(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}
