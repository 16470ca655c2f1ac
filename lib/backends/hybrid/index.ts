/**
 * `kvm-sev/hybrid`: real KVM with the mock's SEV kernel and firmware over the real guest memory,
 * for hosts that have /dev/kvm but no SEV. See {@link HybridBackend}.
 *
 * @module kvm-sev/hybrid
 */
export { HybridBackend, type HybridOptions } from './hybrid-backend.js';
