// What the shim knows about each struct it passes to the kernel: size and every pointer field with
// what it points at. JS cannot put an address into a struct: every pointer is either NULL or filled
// in here from a fix-up, and checked against its paired length.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvmsev {

struct Layout;

// The KVM_SEV command-id table the kernel behind one VM fd speaks: upstream, plus the never-merged
// 2021 KVM_SEV_LOCAL_SEND/LOCAL_RECEIVE at these ids when the caller says its kernel has them
// (0/0: upstream only). Kept per VM fd (VmState), never process-wide: two VMs may speak different tables.
struct SevCommandIds {
  uint32_t localSend = 0;
  uint32_t localReceive = 0;
};
// Both 0, or distinct ids that take over only 22 (INIT2 upstream, LOCAL_SEND in the patch) or ids
// upstream does not assign (23..99, > 103): never a command whose struct has pointers the kernel
// writes through.
bool ValidSevCommandIds(const SevCommandIds& ids);

// Chooses the struct a pointer points at from a selector field (kvm_sev_cmd.id, sev_issue_cmd.cmd),
// by the VM's command-id table where the selector is a KVM_SEV id. Returns nullptr for "this command
// takes no data" (a pointer given is passed as plain memory).
using LayoutSelector = const Layout* (*)(uint32_t selector, const SevCommandIds& ids);

struct PtrField {
  const char* name;
  uint32_t offset;         // of the 8-byte pointer
  int32_t lenOffset;       // paired length field, -1 if none
  uint8_t lenSize;         // 4 or 8
  uint32_t fixedLen;       // target must hold at least this many bytes (0: none)
  const Layout* nested;    // points at a struct of this layout
  int32_t selectorOffset;  // nested struct chosen by the u32 at this offset (-1: none)
  LayoutSelector select;
  bool retained;  // the kernel keeps the address after the call: only mappings allowed
  // The paired length counts bits (pages, MSRs): the kernel reads BITS_TO_LONGS(len) * 8 bytes.
  bool lenBits = false;
  // A dirty bitmap of the memory slot whose number is the u32 at this offset (-1: not one): the
  // kernel writes ALIGN(pages, 64) / 8 bytes, checked against the slot the process set.
  int32_t slotOffset = -1;
};

struct Layout {
  const char* name;
  uint32_t size;
  std::vector<PtrField> ptrs;
};

// Variable-length structs (kvm_msrs, kvm_cpuid2, kvm_msr_list): header + count * element.
struct VarSpec {
  uint32_t countOffset;
  uint32_t headerSize;
  uint32_t elementSize;
};

enum class ArgKind { None, Int, Struct };

struct RequestDef {
  const char* name;
  uint32_t request;
  ArgKind arg;
  const Layout* layout;  // Struct: what the argument points at
  const VarSpec* var;    // variable-length struct, or nullptr
  uint32_t fdKinds;      // FdKind bit mask
  bool returnsFd;
  bool nullArg;        // a NULL pointer argument is legal (KVM_MEMORY_ENCRYPT_OP probe)
  int32_t fdOut = -1;  // returnsFd through the struct: KVM writes the fd at this offset (KVM_CREATE_DEVICE)
};

const RequestDef* FindRequest(uint32_t request);
// kvm_userspace_memory_region: the guest reads and writes what userspace_addr points at.
bool IsMemslotLayout(const Layout* l);
const std::vector<RequestDef>& AllRequests();
const std::vector<const Layout*>& AllLayouts();

// What KVM reads through kvm_sev_cmd.data for command `id` under `ids` (nullptr: no data).
const Layout* SevCommandLayout(uint32_t id, const SevCommandIds& ids);

}  // namespace kvmsev
