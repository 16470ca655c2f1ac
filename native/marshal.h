// Turns a JS IoctlStruct ({kind:'struct', bytes, fixups}) into native memory the kernel can read,
// resolving every pointer fix-up itself, and copies the kernel's answer back afterwards.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common.h"
#include "schema.h"

namespace kvmsev {

class Marshal {
 public:
  // JS buffers are copied into native memory (bounce buffers), because JS may run (getters, or the
  // event loop during an async call) and detach or collect them before the kernel is done; guest
  // memory is used in place, pinned so that unmap() fails until the call ends.
  // `sevIds`: the command-id table of the VM the call goes to (selects kvm_sev_cmd.data's struct).
  // `sync`: the call ends before JS code regains control of the stack (ioctl(), ioctlFd(),
  // ioctlBatch()), so the JS buffers stay reachable from the call's own handle scope and need no
  // persistent reference (a global handle made and destroyed per buffer per call).
  explicit Marshal(Napi::Env env, SevCommandIds sevIds = {}, bool sync = false)
      : env_(env), sevIds_(sevIds), sync_(sync) {}
  ~Marshal();

  // Builds the root struct. `var` (variable-length structs) sizes it from its count field.
  void BuildRoot(const Napi::Value& arg, const Layout* layout, const VarSpec* var, const char* request);
  void* RootPtr() { return root_ ? root_->native.data() : nullptr; }
  const std::vector<uint8_t>& RootBytes() const { return root_->native; }

  // Copies every struct level and bounce buffer back into JS memory (pointer fields stay zero).
  void CopyBack();

  // The VM the call goes to: sizes dirty bitmaps from the memory slots it knows (schema.h slotOffset).
  void SetVm(std::shared_ptr<VmState> vm) { vm_ = std::move(vm); }

  // The mapping a retained pointer (memslot userspace_addr) resolved to at this root offset, or null.
  std::shared_ptr<MapState> RootMappingAt(uint32_t offset) const;

 private:
  // A JS value held across the call: a handle of the call's scope (sync) or a persistent reference.
  struct Held {
    Napi::Value local;
    Napi::Reference<Napi::Value> ref;
    Napi::Value Get() const { return ref.IsEmpty() ? local : ref.Value(); }
  };
  void Hold(Held& h, const Napi::Value& v) {
    if (sync_)
      h.local = v;
    else
      h.ref = Napi::Persistent(v);
  }
  struct Bounce {
    Held js;  // the Buffer/ArrayBuffer to copy back into
    std::vector<uint8_t> data;
  };
  struct Level {
    const Layout* layout;
    Held jsBytes;  // Uint8Array of the struct
    size_t jsLen = 0;
    std::vector<uint8_t> native;
    std::vector<std::pair<uint32_t, std::shared_ptr<MapState>>> mappings;  // offset -> mapping
  };

  Level* BuildLevel(const Napi::Value& arg, const Layout* layout, const VarSpec* var, const char* what);
  void CheckRetained(Level* L, const std::vector<bool>& seen, const std::string& w);
  uint64_t ResolveTarget(const Napi::Value& target, const PtrField& pf, Level* level, uint64_t pairedLen,
                         const char* what);
  uint64_t ResolveOpaque(const Napi::Value& target, const PtrField& pf, Level* level, const std::string& field,
                         const char* what);
  // How many bytes the kernel accesses through pf, beyond the plain paired length (0: no such rule).
  uint64_t KernelBytes(const PtrField& pf, Level* level, uint64_t pairedLen, const std::string& field);

  Napi::Env env_;
  SevCommandIds sevIds_;
  bool sync_;
  Level* root_ = nullptr;
  std::vector<std::unique_ptr<Level>> levels_;
  std::vector<std::unique_ptr<Bounce>> bounces_;
  std::vector<std::shared_ptr<MapState>> pins_;
  std::shared_ptr<VmState> vm_;
};

// Views onto JS memory.
bool GetBytes(const Napi::Value& v, uint8_t** data, size_t* len);

}  // namespace kvmsev
