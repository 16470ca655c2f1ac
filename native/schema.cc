// The allowlist of ioctl requests and the struct layouts behind them. Numbers come from the
// system's kernel headers where they exist (6.1); newer ones are defined here, as the kernel has them.
#include "schema.h"

#include <linux/kvm.h>
#include <linux/psp-sev.h>

#include <unordered_map>

#include "common.h"

// Newer than the 6.1 headers.
#ifndef KVM_SEV_INIT2
#define KVM_SEV_INIT2 22
#endif
#ifndef KVM_SEV_SNP_LAUNCH_START
#define KVM_SEV_SNP_LAUNCH_START 100
#define KVM_SEV_SNP_LAUNCH_UPDATE 101
#define KVM_SEV_SNP_LAUNCH_FINISH 102
#endif
#ifndef KVM_SEV_SNP_ENABLE_REQ_CERTS
#define KVM_SEV_SNP_ENABLE_REQ_CERTS 103
#endif

// The 6.1 headers declare flexible arrays with __DECLARE_FLEX_ARRAY, which C++ sizes as one byte
// more than C does (an empty struct has size 1 in C++). The kernel uses the C sizes, so structs with
// flexible arrays, and the ioctl numbers that encode their size, are spelled out here.
static constexpr uint32_t kSizeofKvmMsrs = 8;      // nmsrs, pad
static constexpr uint32_t kSizeofKvmCpuid2 = 8;    // nent, padding
static constexpr uint32_t kSizeofKvmMsrList = 4;   // nmsrs
static constexpr uint32_t kSizeofKvmXsave = 4096;  // region[1024]
#define C_KVM_GET_MSR_INDEX_LIST _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x02, kSizeofKvmMsrList)
#define C_KVM_GET_SUPPORTED_CPUID _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, kSizeofKvmCpuid2)
#define C_KVM_GET_MSR_FEATURE_INDEX_LIST _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x0a, kSizeofKvmMsrList)
#define C_KVM_GET_MSRS _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x88, kSizeofKvmMsrs)
#define C_KVM_SET_MSRS _IOC(_IOC_WRITE, KVMIO, 0x89, kSizeofKvmMsrs)
#define C_KVM_SET_CPUID2 _IOC(_IOC_WRITE, KVMIO, 0x90, kSizeofKvmCpuid2)
#define C_KVM_GET_XSAVE _IOC(_IOC_READ, KVMIO, 0xa4, kSizeofKvmXsave)
#define C_KVM_SET_XSAVE _IOC(_IOC_WRITE, KVMIO, 0xa5, kSizeofKvmXsave)
static constexpr uint32_t kSizeofKvmIrqRouting = 8;  // nr, flags
#define C_KVM_SET_GSI_ROUTING _IOC(_IOC_WRITE, KVMIO, 0x6a, kSizeofKvmIrqRouting)

// Newer than the 6.1 headers (include/uapi/linux/kvm.h of 6.8+): guest_memfd and memory attributes.
static constexpr uint32_t kSizeofRegion2 = 160;          // struct kvm_userspace_memory_region2
static constexpr uint32_t kSizeofCreateGuestMemfd = 64;  // struct kvm_create_guest_memfd
static constexpr uint32_t kSizeofMemoryAttributes = 32;  // struct kvm_memory_attributes
#define C_KVM_SET_USER_MEMORY_REGION2 _IOC(_IOC_WRITE, KVMIO, 0x49, kSizeofRegion2)
#define C_KVM_CREATE_GUEST_MEMFD _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0xd4, kSizeofCreateGuestMemfd)
#define C_KVM_SET_MEMORY_ATTRIBUTES _IOC(_IOC_WRITE, KVMIO, 0xd2, kSizeofMemoryAttributes)

namespace kvmsev {

static constexpr uint32_t K_SYS = static_cast<uint32_t>(FdKind::Kvm);
static constexpr uint32_t K_VM = static_cast<uint32_t>(FdKind::Vm);
static constexpr uint32_t K_VCPU = static_cast<uint32_t>(FdKind::Vcpu);
static constexpr uint32_t K_SEV = static_cast<uint32_t>(FdKind::Sev);

static PtrField Data(const char* name, uint32_t off, int32_t lenOff, uint8_t lenSize) {
  return PtrField{name, off, lenOff, lenSize, 0, nullptr, -1, nullptr, false};
}
static PtrField Fixed(const char* name, uint32_t off, uint32_t len) {
  return PtrField{name, off, -1, 0, len, nullptr, -1, nullptr, false};
}
static PtrField Retained(const char* name, uint32_t off, int32_t lenOff, uint8_t lenSize) {
  return PtrField{name, off, lenOff, lenSize, 0, nullptr, -1, nullptr, true};
}
// A bitmap whose paired length counts bits (the kernel reads BITS_TO_LONGS(len) * 8 bytes).
static PtrField Bits(const char* name, uint32_t off, int32_t lenOff) {
  PtrField f{name, off, lenOff, 4, 0, nullptr, -1, nullptr, false};
  f.lenBits = true;
  return f;
}
// A dirty bitmap of the memory slot named at slotOff (KVM_GET_DIRTY_LOG).
static PtrField SlotBitmap(const char* name, uint32_t off, int32_t slotOff) {
  PtrField f{name, off, -1, 0, 0, nullptr, -1, nullptr, false};
  f.slotOffset = slotOff;
  return f;
}
static PtrField Selected(const char* name, uint32_t off, int32_t selOff, LayoutSelector sel) {
  return PtrField{name, off, -1, 0, 0, nullptr, selOff, sel, false};
}

// ---- kvm_sev_* (x86_64 layouts, arch/x86/include/uapi/asm/kvm.h) ------------------------------
static const Layout L_sev_init{"kvm_sev_init", 48, {}};
static const Layout L_launch_start{
    "kvm_sev_launch_start", 40, {Data("dh_uaddr", 8, 16, 4), Data("session_uaddr", 24, 32, 4)}};
static const Layout L_launch_update_data{"kvm_sev_launch_update_data", 16, {Data("uaddr", 0, 8, 4)}};
static const Layout L_launch_secret{
    "kvm_sev_launch_secret",
    48,
    {Data("hdr_uaddr", 0, 8, 4), Data("guest_uaddr", 16, 24, 4), Data("trans_uaddr", 32, 40, 4)}};
static const Layout L_launch_measure{"kvm_sev_launch_measure", 16, {Data("uaddr", 0, 8, 4)}};
static const Layout L_guest_status{"kvm_sev_guest_status", 12, {}};
static const Layout L_dbg{"kvm_sev_dbg", 24, {Data("src_uaddr", 0, 16, 4), Data("dst_uaddr", 8, 16, 4)}};
static const Layout L_attestation{"kvm_sev_attestation_report", 32, {Data("uaddr", 16, 24, 4)}};
static const Layout L_send_start{"kvm_sev_send_start",
                                 72,
                                 {Data("pdh_cert_uaddr", 8, 16, 4), Data("plat_certs_uaddr", 24, 32, 4),
                                  Data("amd_certs_uaddr", 40, 48, 4), Data("session_uaddr", 56, 64, 4)}};
static const Layout L_send_update_data{
    "kvm_sev_send_update_data",
    48,
    {Data("hdr_uaddr", 0, 8, 4), Data("guest_uaddr", 16, 24, 4), Data("trans_uaddr", 32, 40, 4)}};
static const Layout L_receive_start{
    "kvm_sev_receive_start", 40, {Data("pdh_uaddr", 8, 16, 4), Data("session_uaddr", 24, 32, 4)}};
static const Layout L_receive_update_data{
    "kvm_sev_receive_update_data",
    48,
    {Data("hdr_uaddr", 0, 8, 4), Data("guest_uaddr", 16, 24, 4), Data("trans_uaddr", 32, 40, 4)}};
static const Layout L_snp_launch_start{"kvm_sev_snp_launch_start", 64, {}};
static const Layout L_snp_launch_update{"kvm_sev_snp_launch_update", 64, {Data("uaddr", 8, 16, 8)}};
static const Layout L_snp_launch_finish{
    "kvm_sev_snp_launch_finish", 88, {Fixed("id_block_uaddr", 0, 96), Fixed("id_auth_uaddr", 8, 4096)}};
static const Layout L_local_send{"kvm_sev_local_send", 8, {}};
static const Layout L_local_receive{"kvm_sev_local_receive", 16, {}};

bool ValidSevCommandIds(const SevCommandIds& ids) {
  if (ids.localSend == 0 && ids.localReceive == 0) return true;
  auto takeable = [](uint32_t id) { return (id >= 22 && id < 100) || id > 103; };
  return takeable(ids.localSend) && takeable(ids.localReceive) && ids.localSend != ids.localReceive;
}

// What KVM reads through kvm_sev_cmd.data for each command id (arch/x86/kvm/svm/sev.c:
// sev_mem_enc_ioctl() and the handlers it calls), the VM's local-migration ids first. Commands that
// read nothing, and ids the kernel does not know, take a NULL data pointer.
const Layout* SevCommandLayout(uint32_t id, const SevCommandIds& ids) {
  if (ids.localSend != 0 && id == ids.localSend) return &L_local_send;
  if (ids.localReceive != 0 && id == ids.localReceive) return &L_local_receive;
  switch (id) {
    case KVM_SEV_LAUNCH_START:
      return &L_launch_start;
    case KVM_SEV_LAUNCH_UPDATE_DATA:
      return &L_launch_update_data;
    case KVM_SEV_LAUNCH_SECRET:
      return &L_launch_secret;
    case KVM_SEV_LAUNCH_MEASURE:
      return &L_launch_measure;
    case KVM_SEV_SEND_START:
      return &L_send_start;
    case KVM_SEV_SEND_UPDATE_DATA:
      return &L_send_update_data;
    case KVM_SEV_RECEIVE_START:
      return &L_receive_start;
    case KVM_SEV_RECEIVE_UPDATE_DATA:
      return &L_receive_update_data;
    case KVM_SEV_GUEST_STATUS:
      return &L_guest_status;
    case KVM_SEV_DBG_DECRYPT:
    case KVM_SEV_DBG_ENCRYPT:
      return &L_dbg;
    case KVM_SEV_GET_ATTESTATION_REPORT:
      return &L_attestation;
    case KVM_SEV_INIT2:
      return &L_sev_init;
    case KVM_SEV_SNP_LAUNCH_START:
      return &L_snp_launch_start;
    case KVM_SEV_SNP_LAUNCH_UPDATE:
      return &L_snp_launch_update;
    case KVM_SEV_SNP_LAUNCH_FINISH:
      return &L_snp_launch_finish;
    default:
      return nullptr;  // INIT, ES_INIT, UPDATE_VMSA, *_FINISH, SEND_CANCEL, unknown ids
  }
}

static const Layout L_sev_cmd{"kvm_sev_cmd", 24, {Selected("data", 8, 0, SevCommandLayout)}};

// ---- /dev/sev (packed structs, include/uapi/linux/psp-sev.h) -----------------------------------
static const Layout L_status{"sev_user_data_status", 12, {}};
static const Layout L_pek_csr{"sev_user_data_pek_csr", 12, {Data("address", 0, 8, 4)}};
static const Layout L_pek_cert_import{
    "sev_user_data_pek_cert_import", 24, {Data("pek_cert_address", 0, 8, 4), Data("oca_cert_address", 12, 20, 4)}};
static const Layout L_pdh_cert_export{
    "sev_user_data_pdh_cert_export", 24, {Data("pdh_cert_address", 0, 8, 4), Data("cert_chain_address", 12, 20, 4)}};
static const Layout L_get_id{"sev_user_data_get_id", 128, {}};
static const Layout L_get_id2{"sev_user_data_get_id2", 12, {Data("address", 0, 8, 4)}};
static const Layout L_snp_status{"sev_user_data_snp_status", 32, {}};
static const Layout L_snp_config{"sev_user_data_snp_config", 64, {}};
static const Layout L_snp_vlek_load{"sev_user_data_snp_vlek_load", 16, {Fixed("vlek_wrapped_address", 8, 432)}};

// /dev/sev has one table: a VM's `ids` do not apply.
static const Layout* SevPlatformLayout(uint32_t cmd, const SevCommandIds&) {
  switch (cmd) {
    case 1:
      return &L_status;  // SEV_PLATFORM_STATUS
    case 3:
      return &L_pek_csr;  // SEV_PEK_CSR
    case 5:
      return &L_pdh_cert_export;  // SEV_PDH_CERT_EXPORT
    case 6:
      return &L_pek_cert_import;  // SEV_PEK_CERT_IMPORT
    case 7:
      return &L_get_id;  // SEV_GET_ID
    case 8:
      return &L_get_id2;  // SEV_GET_ID2
    case 9:
      return &L_snp_status;  // SNP_PLATFORM_STATUS
    case 11:
      return &L_snp_config;  // SNP_SET_CONFIG
    case 12:
      return &L_snp_vlek_load;  // SNP_VLEK_LOAD
    default:
      return nullptr;  // FACTORY_RESET, PEK_GEN, PDH_GEN, SNP_COMMIT, unknown
  }
}

static const Layout L_issue_cmd{"sev_issue_cmd", 16, {Selected("data", 4, 0, SevPlatformLayout)}};

// ---- KVM ----------------------------------------------------------------------------------------
static const Layout L_memory_region{"kvm_userspace_memory_region", 32, {Retained("userspace_addr", 24, 16, 8)}};
static const Layout L_enc_region{"kvm_enc_region", 16, {Retained("addr", 0, 8, 8)}};
static const Layout L_enable_cap{"kvm_enable_cap", 104, {}};
static const Layout L_regs{"kvm_regs", sizeof(struct kvm_regs), {}};
static const Layout L_sregs{"kvm_sregs", sizeof(struct kvm_sregs), {}};
static const Layout L_fpu{"kvm_fpu", sizeof(struct kvm_fpu), {}};
static const Layout L_xsave{"kvm_xsave", kSizeofKvmXsave, {}};
static const Layout L_xcrs{"kvm_xcrs", sizeof(struct kvm_xcrs), {}};
static const Layout L_lapic{"kvm_lapic_state", sizeof(struct kvm_lapic_state), {}};
static const Layout L_events{"kvm_vcpu_events", sizeof(struct kvm_vcpu_events), {}};
static const Layout L_mp_state{"kvm_mp_state", sizeof(struct kvm_mp_state), {}};
static const Layout L_debugregs{"kvm_debugregs", sizeof(struct kvm_debugregs), {}};
static const Layout L_guest_debug{"kvm_guest_debug", sizeof(struct kvm_guest_debug), {}};
static const Layout L_u64{"__u64", 8, {}};
static const Layout L_device_attr{"kvm_device_attr", sizeof(struct kvm_device_attr), {Fixed("addr", 16, 8)}};
static const Layout L_msrs{"kvm_msrs", kSizeofKvmMsrs, {}};
static const Layout L_cpuid2{"kvm_cpuid2", kSizeofKvmCpuid2, {}};
static const Layout L_msr_list{"kvm_msr_list", kSizeofKvmMsrList, {}};

// Interrupt controllers, timers, MSIs, event fds (include/uapi/linux/kvm.h, asm/kvm.h).
static const Layout L_irq_level{"kvm_irq_level", sizeof(struct kvm_irq_level), {}};
static const Layout L_irqchip{"kvm_irqchip", sizeof(struct kvm_irqchip), {}};
static const Layout L_pit_config{"kvm_pit_config", sizeof(struct kvm_pit_config), {}};
static const Layout L_pit_state2{"kvm_pit_state2", sizeof(struct kvm_pit_state2), {}};
static const Layout L_msi{"kvm_msi", sizeof(struct kvm_msi), {}};
static const Layout L_irq_routing{"kvm_irq_routing", kSizeofKvmIrqRouting, {}};
static const Layout L_irqfd{"kvm_irqfd", sizeof(struct kvm_irqfd), {}};
static const Layout L_ioeventfd{"kvm_ioeventfd", sizeof(struct kvm_ioeventfd), {}};
static const Layout L_interrupt{"kvm_interrupt", sizeof(struct kvm_interrupt), {}};
static const Layout L_clock_data{"kvm_clock_data", sizeof(struct kvm_clock_data), {}};
static const Layout L_create_device{"kvm_create_device", sizeof(struct kvm_create_device), {}};
// Memory: dirty logging, guest_memfd, attributes.
static const Layout L_dirty_log{"kvm_dirty_log", sizeof(struct kvm_dirty_log), {SlotBitmap("dirty_bitmap", 8, 0)}};
static const Layout L_clear_dirty_log{
    "kvm_clear_dirty_log", sizeof(struct kvm_clear_dirty_log), {Bits("dirty_bitmap", 16, 4)}};
static const Layout L_memory_region2{
    "kvm_userspace_memory_region2", kSizeofRegion2, {Retained("userspace_addr", 24, 16, 8)}};
static const Layout L_create_guest_memfd{"kvm_create_guest_memfd", kSizeofCreateGuestMemfd, {}};
static const Layout L_memory_attributes{"kvm_memory_attributes", kSizeofMemoryAttributes, {}};
// kvm_msr_filter: flags, then 16 ranges {flags, nmsrs, base, bitmap} of 24 bytes from offset 8;
// each bitmap holds nmsrs bits (arch/x86/kvm/x86.c: kvm_add_msr_filter() memdups BITS_TO_LONGS(nmsrs) longs).
static std::vector<PtrField> MsrFilterPtrs() {
  static const char* names[16] = {"ranges[0].bitmap",  "ranges[1].bitmap",  "ranges[2].bitmap",  "ranges[3].bitmap",
                                  "ranges[4].bitmap",  "ranges[5].bitmap",  "ranges[6].bitmap",  "ranges[7].bitmap",
                                  "ranges[8].bitmap",  "ranges[9].bitmap",  "ranges[10].bitmap", "ranges[11].bitmap",
                                  "ranges[12].bitmap", "ranges[13].bitmap", "ranges[14].bitmap", "ranges[15].bitmap"};
  std::vector<PtrField> v;
  for (uint32_t i = 0; i < 16; i++) v.push_back(Bits(names[i], 8 + 24 * i + 16, static_cast<int32_t>(8 + 24 * i + 4)));
  return v;
}
static const Layout L_msr_filter{"kvm_msr_filter", sizeof(struct kvm_msr_filter), MsrFilterPtrs()};
static_assert(sizeof(struct kvm_msr_filter) == 392, "kvm_msr_filter layout");
static_assert(sizeof(struct kvm_msr_filter_range) == 24, "kvm_msr_filter_range layout");

static const VarSpec V_irq_routing{0, kSizeofKvmIrqRouting, sizeof(struct kvm_irq_routing_entry)};
static const VarSpec V_msrs{0, kSizeofKvmMsrs, sizeof(struct kvm_msr_entry)};
static const VarSpec V_cpuid2{0, kSizeofKvmCpuid2, sizeof(struct kvm_cpuid_entry2)};
static const VarSpec V_msr_list{0, kSizeofKvmMsrList, sizeof(__u32)};

#define REQ_NONE(name, kinds)                                                                  \
  RequestDef {                                                                                 \
#name, static_cast < uint32_t>(name), ArgKind::None, nullptr, nullptr, kinds, false, false \
  }
#define REQ_INT(name, kinds)                                                                  \
  RequestDef {                                                                                \
#name, static_cast < uint32_t>(name), ArgKind::Int, nullptr, nullptr, kinds, false, false \
  }
#define REQ_FD(name, kinds)                                                                  \
  RequestDef {                                                                               \
#name, static_cast < uint32_t>(name), ArgKind::Int, nullptr, nullptr, kinds, true, false \
  }
#define REQ_S(name, layout, kinds)                                                               \
  RequestDef {                                                                                   \
#name, static_cast < uint32_t>(name), ArgKind::Struct, &layout, nullptr, kinds, false, false \
  }
#define REQ_SN(str, num, layout, kinds) \
  RequestDef { str, static_cast<uint32_t>(num), ArgKind::Struct, &layout, nullptr, kinds, false, false }
#define REQ_VN(str, num, layout, var, kinds) \
  RequestDef { str, static_cast<uint32_t>(num), ArgKind::Struct, &layout, &var, kinds, false, false }
#define REQ_V(name, layout, var, kinds)                                                       \
  RequestDef {                                                                                \
#name, static_cast < uint32_t>(name), ArgKind::Struct, &layout, &var, kinds, false, false \
  }
#define REQ_SFD(name, layout, kinds)                                                            \
  RequestDef {                                                                                  \
#name, static_cast < uint32_t>(name), ArgKind::Struct, &layout, nullptr, kinds, true, false \
  }
#define REQ_NFD(name, kinds)                                                                  \
  RequestDef {                                                                                \
#name, static_cast < uint32_t>(name), ArgKind::None, nullptr, nullptr, kinds, true, false \
  }
static constexpr uint32_t K_DEV = static_cast<uint32_t>(FdKind::Device);

static const std::vector<RequestDef>& Table() {
  static const std::vector<RequestDef> t = {
      REQ_NONE(KVM_GET_API_VERSION, K_SYS),
      REQ_FD(KVM_CREATE_VM, K_SYS),
      REQ_INT(KVM_CHECK_EXTENSION, K_SYS | K_VM),
      REQ_NONE(KVM_GET_VCPU_MMAP_SIZE, K_SYS),
      REQ_VN("KVM_GET_SUPPORTED_CPUID", C_KVM_GET_SUPPORTED_CPUID, L_cpuid2, V_cpuid2, K_SYS),
      REQ_VN("KVM_GET_MSR_INDEX_LIST", C_KVM_GET_MSR_INDEX_LIST, L_msr_list, V_msr_list, K_SYS),
      REQ_VN("KVM_GET_MSR_FEATURE_INDEX_LIST", C_KVM_GET_MSR_FEATURE_INDEX_LIST, L_msr_list, V_msr_list, K_SYS),
      REQ_S(KVM_GET_DEVICE_ATTR, L_device_attr, K_SYS | K_VM | K_VCPU | K_DEV),
      REQ_S(KVM_HAS_DEVICE_ATTR, L_device_attr, K_SYS | K_VM | K_VCPU | K_DEV),
      REQ_S(KVM_SET_DEVICE_ATTR, L_device_attr, K_VM | K_VCPU | K_DEV),
      REQ_FD(KVM_CREATE_VCPU, K_VM),
      REQ_S(KVM_SET_USER_MEMORY_REGION, L_memory_region, K_VM),
      REQ_INT(KVM_SET_TSS_ADDR, K_VM),
      REQ_S(KVM_SET_IDENTITY_MAP_ADDR, L_u64, K_VM),
      REQ_NONE(KVM_CREATE_IRQCHIP, K_VM),
      REQ_S(KVM_GET_IRQCHIP, L_irqchip, K_VM),
      REQ_S(KVM_SET_IRQCHIP, L_irqchip, K_VM),
      REQ_S(KVM_IRQ_LINE, L_irq_level, K_VM),
      REQ_S(KVM_IRQ_LINE_STATUS, L_irq_level, K_VM),
      REQ_VN("KVM_SET_GSI_ROUTING", C_KVM_SET_GSI_ROUTING, L_irq_routing, V_irq_routing, K_VM),
      REQ_S(KVM_SIGNAL_MSI, L_msi, K_VM),
      REQ_S(KVM_IRQFD, L_irqfd, K_VM),
      REQ_S(KVM_IOEVENTFD, L_ioeventfd, K_VM),
      REQ_S(KVM_CREATE_PIT2, L_pit_config, K_VM),
      REQ_S(KVM_GET_PIT2, L_pit_state2, K_VM),
      REQ_S(KVM_SET_PIT2, L_pit_state2, K_VM),
      REQ_S(KVM_GET_DIRTY_LOG, L_dirty_log, K_VM),
      REQ_S(KVM_CLEAR_DIRTY_LOG, L_clear_dirty_log, K_VM),
      REQ_SN("KVM_SET_USER_MEMORY_REGION2", C_KVM_SET_USER_MEMORY_REGION2, L_memory_region2, K_VM),
      RequestDef{"KVM_CREATE_GUEST_MEMFD", static_cast<uint32_t>(C_KVM_CREATE_GUEST_MEMFD), ArgKind::Struct,
                 &L_create_guest_memfd, nullptr, K_VM, true, false},
      REQ_SN("KVM_SET_MEMORY_ATTRIBUTES", C_KVM_SET_MEMORY_ATTRIBUTES, L_memory_attributes, K_VM),
      REQ_S(KVM_X86_SET_MSR_FILTER, L_msr_filter, K_VM),
      REQ_S(KVM_GET_CLOCK, L_clock_data, K_VM),
      REQ_S(KVM_SET_CLOCK, L_clock_data, K_VM),
      REQ_INT(KVM_SET_TSC_KHZ, K_VM | K_VCPU),
      REQ_INT(KVM_SET_BOOT_CPU_ID, K_VM),
      RequestDef{"KVM_CREATE_DEVICE", static_cast<uint32_t>(KVM_CREATE_DEVICE), ArgKind::Struct, &L_create_device,
                 nullptr, K_VM, true, false, 4},
      REQ_NFD(KVM_GET_STATS_FD, K_VM | K_VCPU),
      REQ_S(KVM_ENABLE_CAP, L_enable_cap, K_VM | K_VCPU),
      RequestDef{"KVM_MEMORY_ENCRYPT_OP", static_cast<uint32_t>(KVM_MEMORY_ENCRYPT_OP), ArgKind::Struct, &L_sev_cmd,
                 nullptr, K_VM, false, true},
      REQ_S(KVM_MEMORY_ENCRYPT_REG_REGION, L_enc_region, K_VM),
      REQ_S(KVM_MEMORY_ENCRYPT_UNREG_REGION, L_enc_region, K_VM),
      REQ_NONE(KVM_RUN, K_VCPU),
      REQ_S(KVM_GET_REGS, L_regs, K_VCPU),
      REQ_S(KVM_SET_REGS, L_regs, K_VCPU),
      REQ_S(KVM_GET_SREGS, L_sregs, K_VCPU),
      REQ_S(KVM_SET_SREGS, L_sregs, K_VCPU),
      REQ_S(KVM_GET_FPU, L_fpu, K_VCPU),
      REQ_S(KVM_SET_FPU, L_fpu, K_VCPU),
      REQ_SN("KVM_GET_XSAVE", C_KVM_GET_XSAVE, L_xsave, K_VCPU),
      REQ_SN("KVM_SET_XSAVE", C_KVM_SET_XSAVE, L_xsave, K_VCPU),
      REQ_S(KVM_GET_XCRS, L_xcrs, K_VCPU),
      REQ_S(KVM_SET_XCRS, L_xcrs, K_VCPU),
      REQ_VN("KVM_GET_MSRS", C_KVM_GET_MSRS, L_msrs, V_msrs, K_VCPU),
      REQ_VN("KVM_SET_MSRS", C_KVM_SET_MSRS, L_msrs, V_msrs, K_VCPU),
      REQ_VN("KVM_SET_CPUID2", C_KVM_SET_CPUID2, L_cpuid2, V_cpuid2, K_VCPU),
      REQ_S(KVM_GET_LAPIC, L_lapic, K_VCPU),
      REQ_S(KVM_SET_LAPIC, L_lapic, K_VCPU),
      REQ_S(KVM_GET_VCPU_EVENTS, L_events, K_VCPU),
      REQ_S(KVM_SET_VCPU_EVENTS, L_events, K_VCPU),
      REQ_S(KVM_GET_MP_STATE, L_mp_state, K_VCPU),
      REQ_S(KVM_SET_MP_STATE, L_mp_state, K_VCPU),
      REQ_S(KVM_GET_DEBUGREGS, L_debugregs, K_VCPU),
      REQ_S(KVM_SET_DEBUGREGS, L_debugregs, K_VCPU),
      REQ_S(KVM_SET_GUEST_DEBUG, L_guest_debug, K_VCPU),
      REQ_NONE(KVM_GET_TSC_KHZ, K_VM | K_VCPU),
      REQ_S(KVM_INTERRUPT, L_interrupt, K_VCPU),
      REQ_NONE(KVM_NMI, K_VCPU),
      REQ_NONE(KVM_KVMCLOCK_CTRL, K_VCPU),
      REQ_S(SEV_ISSUE_CMD, L_issue_cmd, K_SEV),
  };
  return t;
}

const std::vector<RequestDef>& AllRequests() { return Table(); }

bool IsMemslotLayout(const Layout* l) { return l == &L_memory_region || l == &L_memory_region2; }

const RequestDef* FindRequest(uint32_t request) {
  // Hot path (every ioctl): a hash lookup built once.
  static const std::unordered_map<uint32_t, const RequestDef*> index = [] {
    std::unordered_map<uint32_t, const RequestDef*> m;
    for (const RequestDef& d : Table()) m.emplace(d.request, &d);
    return m;
  }();
  auto it = index.find(request);
  return it == index.end() ? nullptr : it->second;
}

const std::vector<const Layout*>& AllLayouts() {
  static const std::vector<const Layout*> all = {&L_sev_cmd,
                                                 &L_sev_init,
                                                 &L_launch_start,
                                                 &L_launch_update_data,
                                                 &L_launch_secret,
                                                 &L_launch_measure,
                                                 &L_guest_status,
                                                 &L_dbg,
                                                 &L_attestation,
                                                 &L_send_start,
                                                 &L_send_update_data,
                                                 &L_receive_start,
                                                 &L_receive_update_data,
                                                 &L_snp_launch_start,
                                                 &L_snp_launch_update,
                                                 &L_snp_launch_finish,
                                                 &L_local_send,
                                                 &L_local_receive,
                                                 &L_issue_cmd,
                                                 &L_status,
                                                 &L_pek_csr,
                                                 &L_pek_cert_import,
                                                 &L_pdh_cert_export,
                                                 &L_get_id,
                                                 &L_get_id2,
                                                 &L_snp_status,
                                                 &L_snp_config,
                                                 &L_snp_vlek_load,
                                                 &L_memory_region,
                                                 &L_enc_region,
                                                 &L_enable_cap,
                                                 &L_regs,
                                                 &L_sregs,
                                                 &L_fpu,
                                                 &L_xsave,
                                                 &L_xcrs,
                                                 &L_lapic,
                                                 &L_events,
                                                 &L_mp_state,
                                                 &L_debugregs,
                                                 &L_guest_debug,
                                                 &L_device_attr,
                                                 &L_msrs,
                                                 &L_cpuid2,
                                                 &L_msr_list,
                                                 &L_irq_level,
                                                 &L_irqchip,
                                                 &L_pit_config,
                                                 &L_pit_state2,
                                                 &L_msi,
                                                 &L_irq_routing,
                                                 &L_irqfd,
                                                 &L_ioeventfd,
                                                 &L_interrupt,
                                                 &L_clock_data,
                                                 &L_create_device,
                                                 &L_dirty_log,
                                                 &L_clear_dirty_log,
                                                 &L_memory_region2,
                                                 &L_create_guest_memfd,
                                                 &L_memory_attributes,
                                                 &L_msr_filter};
  return all;
}

}  // namespace kvmsev
