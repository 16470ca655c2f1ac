/**
 * How a guest owner recognises kvm-sev's mock AMD root without importing the mock: the SHA-256 of
 * each mock ARK's and ASK's modulus, and each mock ASK's public key (to recognise a CEK it signed
 * when the platform sent no ARK and ASK). These are public facts of test keys that protect nothing;
 * test/crypto/mock-root-fingerprints.test.ts keeps them equal to the mock's root
 * (lib/backends/mock/psp/mock-amd-root.ts). Recognising the root only changes what an error says:
 * it is never trusted unless the caller passes it as a root.
 */
import { createHash } from 'node:crypto';
import type { AmdCertificate } from './amd-cert.js';
import { SevAlgo, SevUsage } from './cert-codes.js';
import { rsaPublicKeyFromLe } from './rsa.js';
import { toSevCert, verifySevCert, type SevCertificate, type SevVerifier } from './sev-cert.js';

interface MockRootFacts {
  readonly bits: 2048 | 4096;
  /** SHA-256 of the little-endian modulus, as the certificate stores it. */
  readonly arkModulusSha256: string;
  readonly askModulusSha256: string;
  /** The ASK's modulus, big-endian, base64. The exponent is 65537. */
  readonly askModulus: string;
}

const MOCK_ROOTS: readonly MockRootFacts[] = [
  {
    bits: 2048,
    arkModulusSha256: 'f97d6a7f9548556d2168a1b7475944b4a7d22e9fe51d205b0defbb8f59b682fa',
    askModulusSha256: '0fb0a18d5f486b7071afc5999a6a1ee39bef9950253cc884e7181d933a9ca6e7',
    askModulus:
      'rlU3hl5aC0QFHSQP8A0YMqohBN//174qQ2fjscnOYNFF3fOOTHY+garTLubKvYVuOlxB70ajjgjnvfV9yT29f0VAMGilDearuLE1ZnhYQ8l3ueebrmcUngrWwXbIRoEQ' +
      '1vHL6LD6dRN0GJZ1MZkSUzHDWRPzZ+6exYgec9FoZlPX9dNmV/RjK8yakrAFn3/cnfUKNhxO01DrwwwEjDc41Sc6HnKf53N7MXBhYfGS+WxLSF5/XwT6pBa476W0EMcL' +
      'XZDYue4KnGdSyct4OXj3Z1gdjD7JitB88TkhOqLYLA6fRX3/teez1Fj9VHV/75d7kbcarEvPHCefgurYXFWG8w==',
  },
  {
    bits: 4096,
    arkModulusSha256: '279199244410315978f2c24a218e81c903e4a3c2845c6010f385fa3cde157e64',
    askModulusSha256: '95ec46e7aa54ceaedd11f7a3d10e04e2fabdc7917b874cca7271699079b57683',
    askModulus:
      'r42FP0KLKbXg7YCrdaIyLShrMktszIq3Dy+C/nHxP9VInw1cfs+DZvYzwQoF28R5vR28GibClahJ2XhLFNpnwOcl+HcKua/7JDBSpz4Ft+L4zY7baooRdxAgdZxr2IYl' +
      'g4velgkTVDVBwbIjzTnqfqb+l0TZ9nom9WozcOmc3XaJd7IjLjPmTsJPqwqbWs85HP6pG0KChLeZ94uCg0qMA9E5DfMd12aWdU3EXVRBdmyk7gg0FirLr3WjyN2+d7k7' +
      '092RthwFLQPryvhv1YUmCjY/gUhhIAooRspSbhA/IKWA/25y02kTgqYr1vf/IBfzaRXDxwikrqxrowgpWSCvFZBlRtMKaKNQf51SnWAWWImDxy2JSsUdhd9LowiS16p5' +
      'HE8EpQWjtxzo7tCP+jvRIpQhinGGcTawkvGWI4EEt/dCLnG6kmtOlHwQ37rJ8XdTV/IK+G3lvebsFfmi09drihq35cExKABaSJdp4hzeG2NR3bqmEd3USS53iLaUX5Kg' +
      'kbYKQvFQ8IEOCCE8Hpw2Ft6ek3IMiyykje9b28M4y/f3CiXF1Cw536PbzpLwBr8JttN6A17uP5XlSF+eF3J6551YfoZt7cNTH/3HHkdP1uksdKZg60osGeqw/hT/eYSn' +
      'ZWB896GgXbmyns2BX7ZmpWKBCG0qbnwsAp6ZZq0TLiU=',
  },
];

/** What the owner-facing messages call it. */
export const MOCK_ROOT_NAME = 'the kvm-sev mock AMD root (a test root of the mock platform, not AMD’s)';

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** The fingerprints a test compares with the mock's own root. */
export function mockRootFingerprints(): readonly {
  bits: number;
  arkModulusSha256: string;
  askModulusSha256: string;
  askModulus: string;
}[] {
  return MOCK_ROOTS;
}

/** True if this ARK or ASK carries a key of kvm-sev's mock root. */
export function isMockRootCert(cert: AmdCertificate): boolean {
  const h = sha256(cert.modulus);
  return MOCK_ROOTS.some((r) => r.arkModulusSha256 === h || r.askModulusSha256 === h);
}

const verifiers = new Map<number, SevVerifier>();

function askVerifier(r: MockRootFacts): SevVerifier {
  let v = verifiers.get(r.bits);
  if (!v) {
    const modulusLe = Buffer.from(r.askModulus, 'base64').reverse();
    const publicKey = rsaPublicKeyFromLe(modulusLe, Buffer.from([0x01, 0x00, 0x01]));
    v = { usage: SevUsage.ASK, algo: r.bits > 2048 ? SevAlgo.RSA_SHA384 : SevAlgo.RSA_SHA256, publicKey };
    verifiers.set(r.bits, v);
  }
  return v;
}

/** True if a mock root's ASK signed this CEK (the platform is a kvm-sev mock). */
export function cekSignedByMockRoot(cek: SevCertificate | Uint8Array): boolean {
  let c: SevCertificate;
  try {
    c = toSevCert(cek, 'cek');
  } catch {
    return false;
  }
  return MOCK_ROOTS.some((r) => verifySevCert(c, askVerifier(r), { checkBody: false }).ok);
}
