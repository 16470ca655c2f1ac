// What the shim knows about each struct it passes to the kernel: size and every pointer field with
// what it points at. JS cannot put an address into a struct: every pointer is either NULL or filled
// in here from a fix-up, and checked against its paired length.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvmsev {

struct Layout;

// Chooses the struct a pointer points at from a selector field (kvm_sev_cmd.id, sev_issue_cmd.cmd).
// Returns nullptr for "this command takes no data" (a pointer given is passed as plain memory).
using LayoutSelector = const Layout* (*)(uint32_t selector);

struct PtrField {
  const char* name;
  uint32_t offset;           // of the 8-byte pointer
  int32_t lenOffset;         // paired length field, -1 if none
  uint8_t lenSize;           // 4 or 8
  uint32_t fixedLen;         // target must hold at least this many bytes (0: none)
  const Layout* nested;      // points at a struct of this layout
  int32_t selectorOffset;    // nested struct chosen by the u32 at this offset (-1: none)
  LayoutSelector select;
  bool retained;             // the kernel keeps the address after the call: only mappings allowed
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
  const Layout* layout;   // Struct: what the argument points at
  const VarSpec* var;     // variable-length struct, or nullptr
  uint32_t fdKinds;       // FdKind bit mask
  bool returnsFd;
  bool nullArg;           // a NULL pointer argument is legal (KVM_MEMORY_ENCRYPT_OP probe)
};

const RequestDef* FindRequest(uint32_t request);
// kvm_userspace_memory_region: the guest reads and writes what userspace_addr points at.
bool IsMemslotLayout(const Layout* l);
const std::vector<RequestDef>& AllRequests();
const std::vector<const Layout*>& AllLayouts();

// Opt-in ids for the never-merged 2021 KVM_SEV_LOCAL_SEND/RECEIVE (0 = off). Process-wide, because
// the ids are a property of the running kernel.
void SetLocalMigrationIds(uint32_t send, uint32_t receive);
void GetLocalMigrationIds(uint32_t* send, uint32_t* receive);

}  // namespace kvmsev
