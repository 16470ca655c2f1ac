/**
 * `kvm-sev/hybrid`: real KVM with the mock's SEV kernel and firmware over the real guest memory,
 * for hosts that have /dev/kvm but no SEV. See {@link HybridBackend}.
 */
export { HybridBackend, type HybridOptions } from './hybrid-backend.js';
