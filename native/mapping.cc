// Guest memory: anonymous or memfd-backed mmap, seen from JS as an external ArrayBuffer (no copies).
// unmap() retires the range (its views read zeros from then on, and it is unmapped when the last
// holder goes, see MapState), and refuses while a VM memory slot or an in-flight call still uses it.
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include <v8.h>

#include "common.h"

namespace kvmsev {

const napi_type_tag kMappingTag = {0x6b766d7365764d61ULL, 0x7070696e67000002ULL};

bool CoverWithInertMemory(void* addr, size_t size) {
  void* p = mmap(addr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  return p != MAP_FAILED;
}

// The last holder is gone: nothing (JS, a view's backing store, native code that keeps one alive,
// a memory slot) can reach the range any more.
MapState::~MapState() {
  if (addr) munmap(addr, size);
}

void MapState::Retire() {
  bool expected = false;
  if (!unmapped.compare_exchange_strong(expected, true) || !addr) return;
  // Where the kernel cannot replace the mapping (out of map entries), the memory simply stays
  // until the last holder goes: still never someone else's.
  CoverWithInertMemory(addr, size);
}

void VmState::Bind(uint32_t slot, std::shared_ptr<MapState> m) {
  std::lock_guard<std::mutex> g(mu);
  Unbind(slot);
  m->bindings++;
  slots[slot] = std::move(m);
}

void VmState::Unbind(uint32_t slot) {
  auto it = slots.find(slot);
  if (it == slots.end()) return;
  it->second->bindings--;
  slots.erase(it);
}

VmState::~VmState() {
  for (auto& kv : slots) kv.second->bindings--;
}

// V8 counts an ArrayBuffer's bytes as external memory the heap answers for, unless its backing store
// has the empty deleter (src/objects/backing-store.h: PerIsolateAccountingLength()); from 64 MiB over
// the count at its last full GC it collects ("external memory pressure"), so a VM's view of its
// memory would cost several full GCs per VM, though no GC ever frees the mapping (unmap() or the VM
// does, and MAP_NORESERVE pages cost nothing until touched). napi_create_external_arraybuffer gives
// no choice, so the view is made through V8 with the empty deleter: the view object alone holds the
// range then (its finalizer, in MakeView), and it must not travel: it is marked untransferable as
// N-API marks its own (worker_threads.markAsUntransferable, set by the TypeScript loader), so
// postMessage() copies it. Without that hook (the loader leaves it out where
// ArrayBuffer.prototype.transfer() could move the memory to an object nothing watches) the view is
// made the N-API way: counted, and its backing store holds the range too.
//
// The backing store's shared_ptr is made here, so its control block's code is this library's: V8
// releases it when the isolate goes, after Node dlclose()d the addon of a worker. So the library
// stays loaded once such a view exists (RTLD_NODELETE); where that fails, the N-API way again.
static bool PinLibrary() {
  static const bool pinned = [] {
    Dl_info info{};
    if (!dladdr(reinterpret_cast<void*>(&PinLibrary), &info) || !info.dli_fname) return false;
    return dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE) != nullptr;
  }();
  return pinned;
}

Napi::ArrayBuffer NewUnaccountedBuffer(Napi::Env env, void* start, size_t length) {
  AddonData* data = GetData(env);
  if (data->markUntransferable.IsEmpty() || !PinLibrary()) return Napi::ArrayBuffer();
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  std::unique_ptr<v8::BackingStore> bs =
      v8::ArrayBuffer::NewBackingStore(start, length, v8::BackingStore::EmptyDeleter, nullptr);
  v8::Local<v8::ArrayBuffer> ab = v8::ArrayBuffer::New(isolate, std::move(bs));
  // A napi_value is a pointer to the V8 handle's slot (src/js_native_api_v8.h, JsValueFromV8LocalValue);
  // the handle lives in the scope N-API opened for this call.
  Napi::ArrayBuffer out(env, reinterpret_cast<napi_value>(*ab));
  data->markUntransferable.Call({out});
  return out;
}

// What a view object holds: the range, and what it told V8 it costs.
struct ViewHold {
  std::shared_ptr<MapState> st;
  int64_t cost;
};

class Mapping : public Napi::ObjectWrap<Mapping> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "Mapping",
        {InstanceMethod<&Mapping::UnmapJs>("unmap"), InstanceMethod<&Mapping::ViewJs>("view"),
         InstanceAccessor<&Mapping::GetBuffer>("buffer"), InstanceAccessor<&Mapping::GetSize>("size"),
         InstanceAccessor<&Mapping::GetClosed>("closed"), InstanceAccessor<&Mapping::GetBindings>("bindings")});
  }

  explicit Mapping(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Mapping>(info) {
    Napi::Env env = info.Env();
    if (info.Length() != 1 || !info[0].IsExternal())
      throw CodedError(env, "ERR_ILLEGAL_CONSTRUCTOR", "Mapping cannot be constructed from JS");
    st_ = *info[0].As<Napi::External<std::shared_ptr<MapState>>>().Data();
    info.This().As<Napi::Object>().TypeTag(&kMappingTag);
    data_ = GetData(env);
    data_->maps.insert(this);
  }

  ~Mapping() override {
    if (data_ && !data_->closing) data_->maps.erase(this);
  }

  std::shared_ptr<MapState> state() const { return st_; }

  // Retires the range unless in use. Returns false (and leaves everything as it was) if busy. The
  // views stay attached and read zeros from now on: detaching them would not stop native code that
  // already holds their address (zlib re-checks the buffer between chunks and aborts on a detached
  // one), and the range is only unmapped once no view can be reached.
  bool TryUnmap(Napi::Env env) {
    if (st_->unmapped) return true;
    if (st_->bindings > 0 || st_->inflight > 0) return false;
    whole_.Reset();
    st_->Retire();
    // The views now hold only inert pages: what they told V8 they cost is given back here, so a VM
    // closed by its owner does not count towards the next full GC (a 1 GiB guest's view counted 1 MiB,
    // a full GC every 64 VMs); their finalizers give back nothing then.
    if (!st_->costReleased.exchange(true)) {
      int64_t cost = st_->viewCost.exchange(0), unused = 0;
      if (cost) napi_adjust_external_memory(env, -cost, &unused);
    }
    return true;
  }

  // An external ArrayBuffer over [offset, offset+length). Node 20 cannot hold one larger than 4 GiB,
  // so bigger guests are seen through several views. Each view object holds the mapping (see
  // MapState): the range stays reserved while JS or native code that keeps the object can reach it.
  Napi::Value MakeView(Napi::Env env, uint64_t offset, uint64_t length) {
    if (st_->unmapped) throw ErrnoError(env, EFAULT, "mmap", nullptr, "the mapping was unmapped");
    if (offset > st_->size || length > st_->size - offset)
      throw ArgRangeError(env, "The view [" + std::to_string(offset) + ", +" + std::to_string(length) +
                                   ") is outside the mapping of " + std::to_string(st_->size) + " bytes");
    if (length > kMaxView)
      throw ArgRangeError(env,
                          "The value of \"length\" is out of range. It must be <= 4 GiB (Node 20's ArrayBuffer limit); "
                          "use several views");
    uint8_t* start = static_cast<uint8_t*>(st_->addr) + offset;
    Napi::ArrayBuffer ab = NewUnaccountedBuffer(env, start, static_cast<size_t>(length));
    bool counted = ab.IsEmpty();
    if (counted) {
      // N-API's way: the backing store holds the range too (it may outlive the object: postMessage).
      auto* keep = new std::shared_ptr<MapState>(st_);
      ab = Napi::ArrayBuffer::New(
          env, start, static_cast<size_t>(length), [](Napi::Env, void*, std::shared_ptr<MapState>* k) { delete k; },
          keep);
    }
    // An uncounted view still tells V8 of a little (at most 1 MiB a view): what a view keeps alive
    // besides the range (its mapping's and VM's native state), so dropped ones are collected at a
    // steady pace rather than only when the JS heap fills.
    auto* keepObj = new ViewHold{st_, counted ? 0 : static_cast<int64_t>(std::min<uint64_t>(length, kViewCost))};
    int64_t unused = 0;
    if (keepObj->cost) {
      napi_adjust_external_memory(env, keepObj->cost, &unused);
      st_->viewCost += keepObj->cost;
    }
    if (napi_add_finalizer(
            env, ab, keepObj,
            [](napi_env e, void* k, void*) {
              auto* h = static_cast<ViewHold*>(k);
              int64_t u = 0;
              if (h->cost && !h->st->costReleased) {
                h->st->viewCost -= h->cost;
                napi_adjust_external_memory(e, -h->cost, &u);
              }
              delete h;
            },
            nullptr, nullptr) != napi_ok) {
      if (keepObj->cost) {
        napi_adjust_external_memory(env, -keepObj->cost, &unused);
        st_->viewCost -= keepObj->cost;
      }
      delete keepObj;
      throw Napi::Error::New(env, "napi_add_finalizer failed");
    }
    return ab;
  }

  void ForceUnmap() {
    // Env teardown: JS is gone, nothing can read the buffer any more. Memory still bound to a VM
    // slot stays mapped until the VM goes (the kernel may still touch it).
    if (st_->bindings == 0 && st_->inflight == 0) st_->Retire();
  }

 private:
  Napi::Value UnmapJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!TryUnmap(env)) {
      Napi::Error e = ErrnoError(env, EBUSY, "munmap");
      e.Set("message",
            Napi::String::New(
                env, st_->bindings > 0
                         ? "EBUSY: the mapping backs a memory slot of a live VM; delete the slot or close the VM first"
                         : "EBUSY: the mapping is used by an ioctl in flight"));
      throw e;
    }
    return env.Undefined();
  }
  Napi::Value GetBuffer(const Napi::CallbackInfo& info) {
    KVMSEV_CHECK_THIS(info, kMappingTag);
    Napi::Env env = info.Env();
    if (st_->unmapped) return Napi::ArrayBuffer::New(env, 0);  // no new view of an unmapped mapping
    if (!whole_.IsEmpty()) {
      Napi::Value v = whole_.Value();
      if (!v.IsEmpty()) return v;
    }
    if (st_->size > kMaxView)
      throw ArgRangeError(
          env, "The mapping is larger than 4 GiB, Node 20's ArrayBuffer limit: use mapping.view(offset, length)");
    Napi::Value ab = MakeView(env, 0, st_->size);
    whole_ = Napi::Persistent(ab.As<Napi::ArrayBuffer>());
    return ab;
  }
  Napi::Value ViewJs(const Napi::CallbackInfo& info) {
    uint64_t off = ArgSize(info[0], "offset");
    uint64_t len = info[1].IsUndefined() ? (st_->size > off ? st_->size - off : 0) : ArgSize(info[1], "length");
    return MakeView(info.Env(), off, len);
  }
  Napi::Value GetSize(const Napi::CallbackInfo& info) {
    KVMSEV_CHECK_THIS(info, kMappingTag);
    return Napi::Number::New(info.Env(), static_cast<double>(st_->size));
  }
  Napi::Value GetClosed(const Napi::CallbackInfo& info) {
    KVMSEV_CHECK_THIS(info, kMappingTag);
    return Napi::Boolean::New(info.Env(), st_->unmapped.load());
  }
  Napi::Value GetBindings(const Napi::CallbackInfo& info) {
    KVMSEV_CHECK_THIS(info, kMappingTag);
    return Napi::Number::New(info.Env(), st_->bindings.load());
  }

  static constexpr uint64_t kMaxView = 1ull << 32;
  static constexpr uint64_t kViewCost = 1ull << 20;
  std::shared_ptr<MapState> st_;
  Napi::Reference<Napi::ArrayBuffer> whole_;  // `buffer`, made on first use
  AddonData* data_ = nullptr;
};

std::shared_ptr<MapState> UnwrapMapping(const Napi::Value& v, const char* name) {
  Napi::Env env = v.Env();
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kMappingTag))
    throw ArgTypeError(env, std::string("The \"") + name + "\" argument must be a native Mapping");
  return Napi::ObjectWrap<Mapping>::Unwrap(v.As<Napi::Object>())->state();
}

static Napi::Value NewMapping(Napi::Env env, void* addr, size_t size) {
  auto st = std::make_shared<MapState>();
  st->addr = addr;
  st->size = size;
  auto ext = Napi::External<std::shared_ptr<MapState>>::New(env, &st);
  return GetData(env)->mappingCtor.New({ext});
}

static size_t PageAlignedSize(const Napi::Value& v) {
  uint64_t size = ArgSize(v, "size");
  if (size == 0 || (size & 4095) != 0)
    throw ArgRangeError(v.Env(), "The value of \"size\" is out of range. It must be a non-zero multiple of 4096");
  return static_cast<size_t>(size);
}

// mmapAnonymous(size): private anonymous memory (MAP_NORESERVE: a large guest costs nothing until touched).
static Napi::Value MmapAnonymous(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t size = PageAlignedSize(info[0]);
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw ErrnoError(env, errno, "mmap");
  return NewMapping(env, p, size);
}

// memfdCreate(name, size, seals = F_SEAL_SHRINK): a memfd that another process can map too (local
// migration passes it), sealed against shrinking by default: whoever maps it (the new VMM of a
// handoff, the shared mock SEV service) can trust its size, where a shrunk file would SIGBUS them.
static Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw ArgTypeError(env, "The \"name\" argument must be of type string");
  std::string name = info[0].As<Napi::String>();
  size_t size = PageAlignedSize(info[1]);
  uint32_t seals = info[2].IsUndefined() ? F_SEAL_SHRINK : ArgU32(info[2], "seals");
  if (seals & ~static_cast<uint32_t>(F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW))
    throw ArgRangeError(env, "The value of \"seals\" is out of range: F_SEAL_SEAL, F_SEAL_SHRINK and F_SEAL_GROW only");
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) throw ErrnoError(env, errno, "memfd_create");
  if (ftruncate(fd, static_cast<off_t>(size)) < 0 || (seals && fcntl(fd, F_ADD_SEALS, seals) < 0)) {
    int e = errno;
    close(fd);
    throw ErrnoError(env, e, "ftruncate");
  }
  return NewFdHandle(env, std::make_shared<OwnedFd>(fd, FdKind::Memfd, true, "/memfd:" + name));
}

// memfdSeals(fd) → the F_SEAL_* bits of a memfd (F_GET_SEALS).
static Napi::Value MemfdSeals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto fd = UnwrapFd(info[0], "fd");
  if (fd->kind != FdKind::Memfd) throw ArgValueError(env, "The \"fd\" argument must be a memfd");
  int s = fcntl(fd->fd, F_GET_SEALS);
  if (s < 0) throw ErrnoError(env, errno, "fcntl");
  return Napi::Number::New(env, s);
}

// mmapShared(fdHandle, size, offset): MAP_SHARED view of a memfd.
static Napi::Value MmapShared(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto fd = UnwrapFd(info[0], "fd");
  if (fd->kind != FdKind::Memfd) throw ArgValueError(env, "The \"fd\" argument must be a memfd");
  size_t size = PageAlignedSize(info[1]);
  uint64_t off = info[2].IsUndefined() ? 0 : ArgSize(info[2], "offset");
  if (off & 4095) throw ArgRangeError(env, "The value of \"offset\" is out of range. It must be a multiple of 4096");
  // Pages past the end of the file would SIGBUS on touch.
  struct stat st {};
  if (fstat(fd->fd, &st) < 0) throw ErrnoError(env, errno, "fstat");
  if (off > static_cast<uint64_t>(st.st_size) || size > static_cast<uint64_t>(st.st_size) - off)
    throw ArgRangeError(env, "The mapping [" + std::to_string(off) + ", +" + std::to_string(size) +
                                 ") is beyond the memfd's " + std::to_string(st.st_size) + " bytes");
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd->fd, static_cast<off_t>(off));
  if (p == MAP_FAILED) throw ErrnoError(env, errno, "mmap");
  return NewMapping(env, p, size);
}

void UnmapAll(AddonData* data) {
  for (Mapping* m : data->maps) m->ForceUnmap();
  data->maps.clear();
}

// setMarkUntransferable(fn): worker_threads.markAsUntransferable, for guest-memory views (see
// NewUnaccountedBuffer).
static Napi::Value SetMarkUntransferable(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) throw ArgTypeError(info.Env(), "The \"mark\" argument must be a function");
  GetData(info.Env())->markUntransferable = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

void InitMapping(Napi::Env env, Napi::Object exports, AddonData* data) {
  exports.Set("setMarkUntransferable", Napi::Function::New(env, SetMarkUntransferable, "setMarkUntransferable"));
  Napi::Function ctor = Mapping::Define(env);
  data->mappingCtor = Napi::Persistent(ctor);
  exports.Set("Mapping", ctor);
  exports.Set("mmapAnonymous", Napi::Function::New(env, MmapAnonymous, "mmapAnonymous"));
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate"));
  exports.Set("memfdSeals", Napi::Function::New(env, MemfdSeals, "memfdSeals"));
  exports.Set("mmapShared", Napi::Function::New(env, MmapShared, "mmapShared"));
}

}  // namespace kvmsev
