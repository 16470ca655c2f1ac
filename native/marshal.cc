#include "marshal.h"

#include <cstring>
#include <string>

#include <v8.h>

namespace kvmsev {

bool GetBytes(const Napi::Value& v, uint8_t** data, size_t* len) {
  if (v.IsTypedArray()) {
    Napi::TypedArray ta = v.As<Napi::TypedArray>();
    Napi::ArrayBuffer ab = ta.ArrayBuffer();
    *data = static_cast<uint8_t*>(ab.Data()) + ta.ByteOffset();
    *len = ta.ByteLength();
    return true;
  }
  if (v.IsDataView()) {
    Napi::DataView dv = v.As<Napi::DataView>();
    Napi::ArrayBuffer ab = dv.ArrayBuffer();
    *data = static_cast<uint8_t*>(ab.Data()) + dv.ByteOffset();
    *len = dv.ByteLength();
    return true;
  }
  if (v.IsArrayBuffer()) {
    Napi::ArrayBuffer ab = v.As<Napi::ArrayBuffer>();
    *data = static_cast<uint8_t*>(ab.Data());
    *len = ab.ByteLength();
    return true;
  }
  return false;
}

// `v` is the string `want` (short ASCII tags: 'struct', 'mapping'), compared without a heap copy.
static bool IsTag(const Napi::Value& v, const char* want) {
  if (!v.IsString()) return false;
  char buf[16];
  size_t n = 0;
  if (napi_get_value_string_utf8(v.Env(), v, buf, sizeof buf, &n) != napi_ok) return false;
  return n == strlen(want) && memcmp(buf, want, n) == 0;
}

// Held through V8: Node 20's napi_create_reference takes no strings. Leaked with the AddonData.
struct MarshalKeys {
  v8::Global<v8::String> kind, bytes, fixups;
};

enum class KeyId { Kind, Bytes, Fixups };

// A napi_value is a pointer to the V8 handle's slot (src/js_native_api_v8.h, JsValueFromV8LocalValue);
// the handle lives in the scope N-API opened for this call.
static Napi::Value Key(Napi::Env env, KeyId id) {
  AddonData* data = GetData(env);
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  if (!data->marshalKeys) {
    auto* k = new MarshalKeys();
    auto make = [&](const char* n) { return v8::String::NewFromUtf8(isolate, n, v8::NewStringType::kInternalized); };
    k->kind.Reset(isolate, make("kind").ToLocalChecked());
    k->bytes.Reset(isolate, make("bytes").ToLocalChecked());
    k->fixups.Reset(isolate, make("fixups").ToLocalChecked());
    data->marshalKeys = k;
  }
  MarshalKeys* k = data->marshalKeys;
  v8::Local<v8::String> l = v8::Local<v8::String>::New(isolate, id == KeyId::Kind    ? k->kind
                                                                : id == KeyId::Bytes ? k->bytes
                                                                                     : k->fixups);
  return Napi::Value(env, reinterpret_cast<napi_value>(*l));
}

static uint64_t ReadLen(const std::vector<uint8_t>& b, uint32_t off, uint8_t size) {
  if (size == 4) {
    uint32_t v;
    memcpy(&v, b.data() + off, 4);
    return v;
  }
  uint64_t v;
  memcpy(&v, b.data() + off, 8);
  return v;
}

Marshal::~Marshal() {
  for (auto& m : pins_) m->inflight--;
}

void Marshal::BuildRoot(const Napi::Value& arg, const Layout* layout, const VarSpec* var, const char* request) {
  root_ = BuildLevel(arg, layout, var, request);
}

Marshal::Level* Marshal::BuildLevel(const Napi::Value& arg, const Layout* layout, const VarSpec* var,
                                    const char* what) {
  Napi::Env env = env_;
  std::string w(what);
  if (!arg.IsObject())
    throw ArgTypeError(env, w + ": the argument must be an IoctlStruct ({kind:'struct', bytes, fixups})");
  Napi::Object o = arg.As<Napi::Object>();
  Napi::Value kind = o.Get(Key(env, KeyId::Kind));
  if (!IsTag(kind, "struct"))
    throw ArgTypeError(env, w + ": the argument must be an IoctlStruct ({kind:'struct', bytes, fixups})");
  Napi::Value bytes = o.Get(Key(env, KeyId::Bytes));
  if (!bytes.IsTypedArray() || bytes.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw ArgTypeError(env, w + ": \"bytes\" must be a Uint8Array");
  uint8_t* src;
  size_t len;
  GetBytes(bytes, &src, &len);

  size_t need = layout->size;
  if (var) {
    if (len < var->headerSize) throw ArgRangeError(env, w + ": " + layout->name + " is shorter than its header");
    uint32_t count;
    memcpy(&count, src + var->countOffset, 4);
    need = static_cast<size_t>(var->headerSize) + static_cast<size_t>(count) * var->elementSize;
    if (count > (1u << 20))
      throw ArgRangeError(env, w + ": " + layout->name + " count " + std::to_string(count) + " is too large");
  }
  if (len < need)
    throw ArgRangeError(
        env, w + ": " + layout->name + " needs " + std::to_string(need) + " bytes, got " + std::to_string(len));

  auto level = std::make_unique<Level>();
  Level* L = level.get();
  levels_.push_back(std::move(level));
  L->layout = layout;
  L->jsLen = need;
  L->native.assign(src, src + need);
  Hold(L->jsBytes, bytes);

  // Every pointer field starts NULL in JS; a raw value there is refused.
  for (const PtrField& pf : layout->ptrs) {
    uint64_t raw;
    memcpy(&raw, L->native.data() + pf.offset, 8);
    if (raw != 0)
      throw ArgValueError(env, w + ": pointer field " + layout->name + "." + pf.name +
                                   " must be 0 in bytes; pass the memory it points at as a fix-up");
  }

  Napi::Value fixups = o.Get(Key(env, KeyId::Fixups));
  std::vector<bool> seen(layout->ptrs.size(), false);
  if (fixups.IsUndefined() || fixups.IsNull()) {
    CheckRetained(L, seen, w);
    return L;
  }
  if (!fixups.IsArray()) throw ArgTypeError(env, w + ": \"fixups\" must be an array");
  Napi::Array arr = fixups.As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value fv = arr.Get(i);
    if (!fv.IsObject()) throw ArgTypeError(env, w + ": each fix-up must be an object {offset, target}");
    Napi::Object f = fv.As<Napi::Object>();
    uint32_t off = ArgU32(f.Get("offset"), "fixup.offset");
    size_t idx = layout->ptrs.size();
    for (size_t k = 0; k < layout->ptrs.size(); k++)
      if (layout->ptrs[k].offset == off) idx = k;
    if (idx == layout->ptrs.size())
      throw ArgValueError(env,
                          w + ": offset " + std::to_string(off) + " of " + layout->name + " is not a pointer field");
    if (seen[idx]) throw ArgValueError(env, w + ": two fix-ups for " + layout->name + "." + layout->ptrs[idx].name);
    seen[idx] = true;
    const PtrField& pf = layout->ptrs[idx];
    uint64_t paired = pf.lenOffset >= 0 ? ReadLen(L->native, static_cast<uint32_t>(pf.lenOffset), pf.lenSize) : 0;
    uint64_t addr = ResolveTarget(f.Get("target"), pf, L, paired, what);
    memcpy(L->native.data() + pf.offset, &addr, 8);
  }
  CheckRetained(L, seen, w);
  return L;
}

// A memory slot's userspace_addr left NULL with a non-zero size would hand the guest this process's
// own low memory (a non-PIE node maps its image at 0x400000): refused. (Other NULL pointers with a
// length only make the kernel fault or pin, which it answers with an errno.)
void Marshal::CheckRetained(Level* L, const std::vector<bool>& seen, const std::string& w) {
  if (!IsMemslotLayout(L->layout)) return;
  for (size_t k = 0; k < L->layout->ptrs.size(); k++) {
    const PtrField& pf = L->layout->ptrs[k];
    if (!pf.retained || seen[k] || pf.lenOffset < 0) continue;
    if (ReadLen(L->native, static_cast<uint32_t>(pf.lenOffset), pf.lenSize) != 0)
      throw ArgValueError(env_, w + ": " + L->layout->name + "." + pf.name +
                                    " is NULL but its length is not 0: the kernel keeps this address, so it must point "
                                    "into guest memory (a mapping)");
  }
}

uint64_t Marshal::KernelBytes(const PtrField& pf, Level* level, uint64_t pairedLen, const std::string& field) {
  if (pf.lenBits) return (pairedLen + 63) / 64 * 8;  // BITS_TO_LONGS(len) * sizeof(long)
  if (pf.slotOffset < 0) return 0;
  uint32_t slot;
  memcpy(&slot, level->native.data() + pf.slotOffset, 4);
  uint64_t bytes = 0;
  bool known = false;
  if (vm_) {
    std::lock_guard<std::mutex> g(vm_->mu);
    auto it = vm_->slotBytes.find(slot);
    if (it != vm_->slotBytes.end()) known = true, bytes = it->second;
  }
  if (!known)
    throw ArgValueError(
        env_, field + ": memory slot " + std::to_string(slot) +
                  " was not set by this process, so the shim cannot size its dirty bitmap (one bit per page)");
  uint64_t pages = bytes / 4096;
  return (pages + 63) / 64 * 8;  // kvm_dirty_bitmap_bytes()
}

uint64_t Marshal::ResolveTarget(const Napi::Value& target, const PtrField& pf, Level* level, uint64_t pairedLen,
                                const char* what) {
  Napi::Env env = env_;
  std::string field = std::string(what) + ": " + level->layout->name + "." + pf.name;

  // A nested struct (kvm_sev_cmd.data -> kvm_sev_launch_start).
  if (pf.select || pf.nested) {
    const Layout* nested = pf.nested;
    if (pf.select) {
      uint32_t sel;
      memcpy(&sel, level->native.data() + pf.selectorOffset, 4);
      nested = pf.select(sel, sevIds_);
      // A command that takes no data (or an id the kernel does not know): the kernel ignores the
      // pointer or refuses the id (EINVAL), so the memory given is passed as it is.
      if (!nested) return ResolveOpaque(target, pf, level, field, what);
    }
    Level* child = BuildLevel(target, nested, nullptr, what);
    return reinterpret_cast<uint64_t>(child->native.data());
  }

  // Guest memory.
  if (target.IsObject() && !target.IsTypedArray() && !target.IsArrayBuffer() && !target.IsDataView()) {
    Napi::Object t = target.As<Napi::Object>();
    Napi::Value kind = t.Get("kind");
    if (!IsTag(kind, "mapping"))
      throw ArgTypeError(env, field + ": the target must be a Buffer, an ArrayBuffer or a guest-memory range");
    std::shared_ptr<MapState> m = UnwrapMapping(t.Get("mapping"), "target.mapping");
    uint64_t off = ArgSize(t.Get("offset"), "target.offset");
    uint64_t len = ArgSize(t.Get("length"), "target.length");
    if (m->unmapped) throw ErrnoError(env, EFAULT, "ioctl", (field + " points into an unmapped mapping").c_str());
    if (off > m->size || len > m->size - off)
      throw ArgRangeError(env, field + ": range [" + std::to_string(off) + ", +" + std::to_string(len) +
                                   ") is outside the mapping of " + std::to_string(m->size) + " bytes");
    uint64_t kernelBytes = KernelBytes(pf, level, pairedLen, field);
    if (kernelBytes > len)
      throw ArgRangeError(env, field + ": the kernel accesses " + std::to_string(kernelBytes) +
                                   " bytes here, the target has " + std::to_string(len));
    if (pf.lenOffset >= 0 && !pf.lenBits && pairedLen > len)
      throw ArgRangeError(env, field + ": the paired length " + std::to_string(pairedLen) + " exceeds the target's " +
                                   std::to_string(len) + " bytes");
    if (pf.fixedLen > len)
      throw ArgRangeError(env, field + ": the target must hold " + std::to_string(pf.fixedLen) + " bytes");
    m->inflight++;  // unmap() now fails with EBUSY until the call ends
    pins_.push_back(m);
    level->mappings.emplace_back(pf.offset, m);
    return reinterpret_cast<uint64_t>(static_cast<uint8_t*>(m->addr) + off);
  }

  if (pf.retained)
    throw ArgTypeError(env, field +
                                ": the kernel keeps this address after the call, so it must point into guest memory "
                                "(a mapping), not a JS buffer");
  uint8_t* data;
  size_t len;
  if (!GetBytes(target, &data, &len))
    throw ArgTypeError(env, field + ": the target must be a Buffer, an ArrayBuffer or a guest-memory range");
  uint64_t kernelBytes = KernelBytes(pf, level, pairedLen, field);
  if (kernelBytes > len)
    throw ArgRangeError(env, field + ": the kernel accesses " + std::to_string(kernelBytes) +
                                 " bytes here, the buffer has " + std::to_string(len));
  if (pf.lenOffset >= 0 && !pf.lenBits && pairedLen > len)
    throw ArgRangeError(env, field + ": the paired length " + std::to_string(pairedLen) + " exceeds the buffer's " +
                                 std::to_string(len) + " bytes");
  if (pf.fixedLen > len)
    throw ArgRangeError(env, field + ": the buffer must hold " + std::to_string(pf.fixedLen) + " bytes");
  if (len == 0) throw ArgRangeError(env, field + ": the buffer is empty or detached; pass null for a NULL pointer");
  auto b = std::make_unique<Bounce>();
  Hold(b->js, target);
  b->data.assign(data, data + len);
  uint64_t addr = reinterpret_cast<uint64_t>(b->data.data());
  bounces_.push_back(std::move(b));
  return addr;
}

// The data pointer of a command without a struct: bytes (an IoctlStruct without fix-ups, a Buffer,
// an ArrayBuffer) are copied, a guest-memory range is used in place. Fix-ups cannot be placed: no
// pointer field is known in memory without a layout.
uint64_t Marshal::ResolveOpaque(const Napi::Value& target, const PtrField& pf, Level* level, const std::string& field,
                                const char* what) {
  Napi::Env env = env_;
  Napi::Value mem = target;
  if (target.IsObject() && !target.IsTypedArray() && !target.IsArrayBuffer() && !target.IsDataView()) {
    Napi::Object t = target.As<Napi::Object>();
    Napi::Value kind = t.Get("kind");
    if (IsTag(kind, "struct")) {
      Napi::Value bytes = t.Get("bytes");
      if (!bytes.IsTypedArray() || bytes.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
        throw ArgTypeError(env, std::string(what) + ": \"bytes\" must be a Uint8Array");
      Napi::Value fx = t.Get("fixups");
      if (!fx.IsUndefined() && !fx.IsNull() && (!fx.IsArray() || fx.As<Napi::Array>().Length() > 0))
        throw ArgValueError(
            env, field + ": the command has no data struct here, so its memory has no pointer fields to fix up");
      mem = bytes;
    }
  }
  PtrField plain = pf;
  plain.lenOffset = -1;
  plain.lenSize = 0;
  plain.fixedLen = 0;
  plain.nested = nullptr;
  plain.selectorOffset = -1;
  plain.select = nullptr;
  plain.retained = false;
  return ResolveTarget(mem, plain, level, 0, what);
}

void Marshal::CopyBack() {
  for (auto& L : levels_) {
    // Resolved again: JS may have run (getters, or the event loop for async calls) since the build.
    size_t len = L->jsLen;
    uint8_t* dst;
    size_t l;
    Napi::Value js = L->jsBytes.Get();
    if (js.IsEmpty() || !GetBytes(js, &dst, &l) || l < len) continue;  // detached meanwhile
    // Copy everything but the pointer fields, which stay 0 in JS.
    size_t pos = 0;
    for (const PtrField& pf : L->layout->ptrs) {
      if (pf.offset > pos) memcpy(dst + pos, L->native.data() + pos, pf.offset - pos);
      pos = pf.offset + 8;
    }
    if (len > pos) memcpy(dst + pos, L->native.data() + pos, len - pos);
  }
  for (auto& b : bounces_) {
    uint8_t* d;
    size_t l;
    if (!GetBytes(b->js.Get(), &d, &l) || l != b->data.size()) continue;
    memcpy(d, b->data.data(), l);
  }
}

std::shared_ptr<MapState> Marshal::RootMappingAt(uint32_t offset) const {
  if (!root_) return nullptr;
  for (auto& p : root_->mappings)
    if (p.first == offset) return p.second;
  return nullptr;
}

}  // namespace kvmsev
