// The one generic ioctl path, sync and async. Only requests of the compiled-in allowlist pass, on
// fds of the kinds that take them; struct arguments go through Marshal (no JS-supplied addresses).
#include <sys/ioctl.h>
#include <linux/kvm.h>

#include <cerrno>
#include <cstring>

#include "enable_cap.h"
#include "marshal.h"
#include "schema.h"

#ifndef KVM_CREATE_GUEST_MEMFD
#define KVM_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, char[64])  // 6.8+: struct kvm_create_guest_memfd
#endif
#ifndef KVM_SET_USER_MEMORY_REGION2
#define KVM_SET_USER_MEMORY_REGION2 _IOW(KVMIO, 0x49, char[160])  // 6.8+: struct kvm_userspace_memory_region2
#endif
#ifndef KVM_MEM_GUEST_MEMFD
#define KVM_MEM_GUEST_MEMFD (1UL << 2)
#endif

namespace kvmsev {

namespace {

struct Prepared {
  std::shared_ptr<OwnedFd> fd;
  // fds named by number inside the struct (kvm_sev_cmd.sev_fd, the source VM of MOVE/COPY): held
  // open until the call ends, so an async call never reaches a reused number.
  std::vector<std::shared_ptr<OwnedFd>> held;
  const RequestDef* def = nullptr;
  unsigned long intArg = 0;
  std::unique_ptr<Marshal> marshal;
};

std::string Hex(uint32_t v) {
  char b[16];
  snprintf(b, sizeof b, "0x%08X", v);
  return b;
}

void HoldNamedFds(Napi::Env env, Prepared& p);

// The command-id table of the VM a KVM_MEMORY_ENCRYPT_OP goes to (upstream for anything else).
SevCommandIds SevIdsOf(const Prepared& p) {
  if (p.def->request != static_cast<uint32_t>(KVM_MEMORY_ENCRYPT_OP) || p.fd->kind != FdKind::Vm) return {};
  return p.fd->sevIds;
}

std::string KindList(uint32_t kinds) {
  std::string s;
  for (uint32_t bit = 1; bit <= 64; bit <<= 1)
    if (kinds & bit) s += (s.empty() ? "" : "/") + std::string(FdKindName(static_cast<FdKind>(bit)));
  return s;
}

// KVM_ENABLE_CAP: only capabilities whose arguments are numbers, on the fd kind that takes them.
void CheckEnableCap(Napi::Env env, const Prepared& p) {
  const auto& b = p.marshal->RootBytes();
  uint32_t cap;
  memcpy(&cap, b.data(), 4);
  const EnableCapDef* c = FindEnableCap(cap);
  if (!c)
    throw CodedError(env, "ERR_KVM_SEV_UNKNOWN_CAP",
                     "KVM_ENABLE_CAP: capability " + std::to_string(cap) +
                         " is not in kvm-sev's allowlist (only capabilities whose arguments are plain numbers pass; " +
                         (cap == 163 ? "KVM_CAP_HYPERV_ENLIGHTENED_VMCS takes a user address in args[0])"
                                     : "see native/enable_cap.cc)"));
  if (!(c->fdKinds & static_cast<uint32_t>(p.fd->kind)))
    throw ArgValueError(env, std::string("KVM_ENABLE_CAP: ") + c->name + " is enabled on a " + KindList(c->fdKinds) +
                                 " fd, not a " + FdKindName(p.fd->kind) + " fd");
}

// The kernel's KVM_GET_VCPU_MMAP_SIZE, once anyone in this process asked (run areas are sized by it).
std::atomic<int> gVcpuMmapSize{0};

// Validates everything before the kernel sees anything.
// The checks on the fd and the request (no JS values read).
void PrepareHead(Napi::Env env, Prepared& p, uint32_t request, bool wantFd) {
  p.def = FindRequest(request);
  if (!p.def)
    throw CodedError(env, "ERR_KVM_SEV_UNKNOWN_IOCTL",
                     "ioctl request " + Hex(request) + " is not in kvm-sev's allowlist of known KVM and SEV requests");
  const RequestDef& d = *p.def;
  // The fd kind each request belongs to: the same number can mean another struct on another kind.
  if (!(static_cast<uint32_t>(p.fd->kind) & d.fdKinds))
    throw ArgValueError(env, std::string(d.name) + " is a " + KindList(d.fdKinds) +
                                 " ioctl: it cannot be issued on a " + FdKindName(p.fd->kind) + " fd");
  if (p.fd->orphan)
    throw CodedError(
        env, "ERR_KVM_SEV_ORPHAN_FD",
        std::string(d.name) + ": this " + FdKindName(p.fd->kind) +
            " fd is of this process's own VM, but came back after every handle to it was closed: the memory its slots "
            "point at may be gone, so nothing is issued on it (keep a handle open while a copy is away)");
  // A first look, before any JS (getters) runs; the check that counts is at issue time (BeginIoctl).
  if (p.fd->vcpu && p.fd->vcpu->running)
    throw CodedError(
        env, "ERR_KVM_SEV_VCPU_BUSY",
        std::string(d.name) + ": the vCPU is running (KVM holds it until the guest exits); kick() it first");
  if (request == static_cast<uint32_t>(KVM_RUN))
    throw CodedError(env, "ERR_KVM_SEV_USE_RUNNER",
                     "KVM_RUN runs on the vCPU's own thread: use a VcpuRunner (run() or runSync()), not ioctl()");
  // KVM_CREATE_DEVICE with KVM_CREATE_DEVICE_TEST only asks whether the type exists: no fd (ioctl()).
  if (d.returnsFd && !wantFd && request != static_cast<uint32_t>(KVM_CREATE_DEVICE))
    throw CodedError(env, "ERR_KVM_SEV_RETURNS_FD", std::string(d.name) + " returns a new fd: use ioctlFd()");
  if (!d.returnsFd && wantFd)
    throw CodedError(env, "ERR_KVM_SEV_RETURNS_FD", std::string(d.name) + " does not return an fd: use ioctl()");
}

// A plain number as the argument (what most ioctls in a burst take): false if the request takes a
// struct, for the general path to refuse (or pass, for KVM_CREATE_DEVICE) with its own error.
bool PrepareNumberArg(Napi::Env env, Prepared& p, double v) {
  const RequestDef& d = *p.def;
  if (d.request == static_cast<uint32_t>(KVM_CREATE_DEVICE)) return false;
  switch (d.arg) {
    case ArgKind::None:
      if (v != 0) throw ArgTypeError(env, std::string(d.name) + " takes no argument");
      return true;
    case ArgKind::Int:
      if (!(v >= 0 && v <= 9007199254740991.0) || v != static_cast<double>(static_cast<uint64_t>(v)))
        throw ArgRangeError(env, "The value of \"arg\" is out of range. It must be a safe integer >= 0");
      p.intArg = static_cast<unsigned long>(v);
      return true;
    default:
      return d.nullArg && v == 0;  // NULL: the "is SEV enabled?" probe
  }
}

Prepared Prepare(Napi::Env env, const Napi::Value& fdArg, const Napi::Value& requestArg, const Napi::Value& arg,
                 bool wantFd, bool sync) {
  Prepared p;
  p.fd = LookupFd(env, fdArg);
  uint32_t request = ArgU32(requestArg, "request");
  PrepareHead(env, p, request, wantFd);
  const RequestDef& d = *p.def;
  switch (d.arg) {
    case ArgKind::None:
      if (!arg.IsUndefined() && !(arg.IsNumber() && arg.As<Napi::Number>().DoubleValue() == 0))
        throw ArgTypeError(env, std::string(d.name) + " takes no argument");
      break;
    case ArgKind::Int: {
      uint64_t v = arg.IsUndefined() ? 0 : ArgSize(arg, "arg");
      p.intArg = static_cast<unsigned long>(v);
      break;
    }
    case ArgKind::Struct:
      if (d.nullArg &&
          (arg.IsUndefined() || arg.IsNull() || (arg.IsNumber() && arg.As<Napi::Number>().DoubleValue() == 0)))
        break;  // NULL: the "is SEV enabled?" probe
      p.marshal = std::make_unique<Marshal>(env, SevIdsOf(p), sync);
      p.marshal->SetVm(p.fd->vm);
      p.marshal->BuildRoot(arg, d.layout, d.var, d.name);
      if (request == static_cast<uint32_t>(KVM_ENABLE_CAP)) CheckEnableCap(env, p);
      HoldNamedFds(env, p);
      break;
  }
  if (request == static_cast<uint32_t>(KVM_CREATE_DEVICE) && p.marshal) {
    uint32_t flags;
    memcpy(&flags, p.marshal->RootBytes().data() + 8, 4);
    bool test = flags & KVM_CREATE_DEVICE_TEST;
    if (test && wantFd)
      throw ArgValueError(env, "KVM_CREATE_DEVICE with KVM_CREATE_DEVICE_TEST creates no fd: use ioctl()");
    if (!test && !wantFd)
      throw CodedError(env, "ERR_KVM_SEV_RETURNS_FD", "KVM_CREATE_DEVICE returns a new fd: use ioctlFd()");
  }
  return p;
}

Prepared Prepare(const Napi::CallbackInfo& info, bool wantFd, bool sync) {
  return Prepare(info.Env(), info[0], info[1], info[2], wantFd, sync);
}

void HoldNamedFds(Napi::Env env, Prepared& p) {
  const auto& b = p.marshal->RootBytes();
  auto hold = [&](int64_t n) {
    if (n < 0 || n > INT32_MAX) return;
    auto& live = GetData(env)->live;
    auto it = live.find(static_cast<int>(n));
    if (it != live.end()) p.held.push_back(it->second);
  };
  if (p.def->request == static_cast<uint32_t>(KVM_MEMORY_ENCRYPT_OP)) {
    int32_t sevFd;
    memcpy(&sevFd, b.data() + 20, 4);  // kvm_sev_cmd.sev_fd
    hold(sevFd);
  } else if (p.def->request == static_cast<uint32_t>(KVM_ENABLE_CAP)) {
    uint32_t cap;
    uint64_t a0;
    memcpy(&cap, b.data(), 4);
    memcpy(&a0, b.data() + 8, 8);                                  // args[0]
    if (cap == 197 || cap == 206) hold(static_cast<int64_t>(a0));  // COPY/MOVE_ENC_CONTEXT_FROM
  } else if (p.def->request == static_cast<uint32_t>(KVM_IRQFD)) {
    uint32_t fd, flags, resample;
    memcpy(&fd, b.data(), 4);
    memcpy(&flags, b.data() + 8, 4);
    memcpy(&resample, b.data() + 12, 4);
    hold(fd);
    if (flags & KVM_IRQFD_FLAG_RESAMPLE) hold(resample);
  } else if (p.def->request == static_cast<uint32_t>(KVM_IOEVENTFD)) {
    int32_t fd;
    memcpy(&fd, b.data() + 20, 4);  // kvm_ioeventfd.fd
    hold(fd);
  } else if (p.def->request == static_cast<uint32_t>(KVM_SET_USER_MEMORY_REGION2)) {
    uint32_t flags, gmem;
    memcpy(&flags, b.data() + 4, 4);
    memcpy(&gmem, b.data() + 40, 4);  // guest_memfd
    if (flags & KVM_MEM_GUEST_MEMFD) hold(gmem);
  }
}

unsigned long ArgValue(Prepared& p) {
  if (p.marshal) return reinterpret_cast<unsigned long>(p.marshal->RootPtr());
  return p.intArg;
}

// Memory slots keep the mapping alive for as long as the VM has them (see VmState).
// (Both region structs start with slot, flags, guest_phys_addr, memory_size, userspace_addr.)
void AfterSuccess(Prepared& p) {
  if ((p.def->request != static_cast<uint32_t>(KVM_SET_USER_MEMORY_REGION) &&
       p.def->request != static_cast<uint32_t>(KVM_SET_USER_MEMORY_REGION2)) ||
      !p.fd->vm || !p.marshal)
    return;
  const auto& b = p.marshal->RootBytes();
  uint32_t slot;
  uint64_t size;
  memcpy(&slot, b.data() + 0, 4);
  memcpy(&size, b.data() + 16, 8);  // memory_size
  if (size == 0) {
    std::lock_guard<std::mutex> g(p.fd->vm->mu);
    p.fd->vm->Unbind(slot);
    p.fd->vm->slotBytes.erase(slot);
    return;
  }
  {
    std::lock_guard<std::mutex> g(p.fd->vm->mu);
    p.fd->vm->slotBytes[slot] = size;
  }
  if (auto m = p.marshal->RootMappingAt(24)) p.fd->vm->Bind(slot, m);
}

}  // namespace

// A signal (a profiler's SIGPROF, a vCPU kick) can interrupt an ioctl before it did anything;
// the kernel then answers EINTR and the call is simply issued again, as QEMU does.
static int IoctlRetry(int fd, uint32_t request, unsigned long arg) {
  int r;
  do r = ::ioctl(fd, request, arg);
  while (r < 0 && errno == EINTR);
  return r;
}

// A vCPU ioctl is issued only if no run is in progress, checked and counted in one step (VcpuState):
// issued while the guest runs, it would wait in the kernel for the guest to exit. -1 with `busy` set
// if refused.
static int IssueIoctl(Prepared& p, bool* busy) {
  *busy = false;
  VcpuState* v = p.fd->vcpu.get();
  if (v && !v->BeginIoctl()) {
    *busy = true;
    return -1;
  }
  int r = IoctlRetry(p.fd->fd, p.def->request, ArgValue(p));
  int err = errno;
  if (v) v->EndIoctl();
  if (r >= 0 && p.def->request == static_cast<uint32_t>(KVM_GET_VCPU_MMAP_SIZE)) gVcpuMmapSize = r;
  errno = err;
  return r;
}

static Napi::Error BusyError(Napi::Env env, const Prepared& p) {
  return CodedError(
      env, "ERR_KVM_SEV_VCPU_BUSY",
      std::string(p.def->name) + ": the vCPU is running (KVM holds it until the guest exits); kick() it first");
}

int KnownVcpuMmapSize() { return gVcpuMmapSize.load(); }

static Napi::Value IoctlSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Prepared p = Prepare(info, false, true);
  bool busy;
  int r = IssueIoctl(p, &busy);
  int err = errno;
  if (busy) throw BusyError(env, p);
  if (p.marshal) p.marshal->CopyBack();  // the kernel writes back even on failure (kvm_sev_cmd.error)
  if (r < 0) throw ErrnoError(env, err, "ioctl", p.def->name);
  AfterSuccess(p);
  return Napi::Number::New(env, r);
}

static Napi::Value IoctlFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Prepared p = Prepare(info, true, true);
  bool busy;
  int r = IssueIoctl(p, &busy);
  if (busy) throw BusyError(env, p);
  int err = errno;
  if (p.marshal) p.marshal->CopyBack();
  if (r < 0) throw ErrnoError(env, err, "ioctl", p.def->name);
  std::shared_ptr<OwnedFd> nfd;
  uint32_t req = p.def->request;
  if (req == static_cast<uint32_t>(KVM_CREATE_VM)) {
    nfd = std::make_shared<OwnedFd>(r, FdKind::Vm, true, "anon_inode:kvm-vm");
    nfd->vm = std::make_shared<VmState>();
  } else if (req == static_cast<uint32_t>(KVM_CREATE_VCPU)) {
    nfd = std::make_shared<OwnedFd>(r, FdKind::Vcpu, true, "anon_inode:kvm-vcpu");
    nfd->vcpu = std::make_shared<VcpuState>();
    nfd->vcpu->vm = p.fd->vm;  // a vCPU keeps its VM (and so its memory slots) alive
    nfd->vm = p.fd->vm;
  } else if (p.def->fdOut >= 0) {
    int32_t dfd;  // KVM_CREATE_DEVICE: kvm_create_device.fd
    memcpy(&dfd, p.marshal->RootBytes().data() + p.def->fdOut, 4);
    nfd = std::make_shared<OwnedFd>(dfd, FdKind::Device, true, "anon_inode:kvm-device");
    nfd->vm = p.fd->vm;  // the device holds a reference on its VM in the kernel too
  } else if (req == static_cast<uint32_t>(KVM_GET_STATS_FD)) {
    nfd = std::make_shared<OwnedFd>(r, FdKind::Stats, false,
                                    p.fd->kind == FdKind::Vm ? "anon_inode:kvm-vm-stats" : "anon_inode:kvm-vcpu-stats");
  } else {
    nfd = std::make_shared<OwnedFd>(r, FdKind::GuestMemfd, true, "anon_inode:[kvm-gmem]");
  }
  RegisterFile(nfd.get());
  return NewFdHandle(env, nfd);
}

// ioctlBatch(nums, args): many ioctls in one crossing, for the work that comes in bursts (restoring a
// vCPU's state, memory slots). `nums` is a Float64Array of four entries per ioctl: the fd number, the
// request, the integer argument (NaN: the argument is args[i], a struct), and a slot the result is
// written to; read and written in place, so an ioctl with a number costs no JS property access.
// Each is checked and issued like ioctl(), in order; the first that is refused or fails stops the
// batch, and its error says which (`index`; the ones before it took effect).
static Napi::Value IoctlBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    throw ArgTypeError(env, "The \"nums\" argument must be a Float64Array");
  Napi::Float64Array nums = info[0].As<Napi::Float64Array>();
  size_t len = nums.ElementLength();
  if (len % 4 != 0) throw ArgValueError(env, "The \"nums\" argument must hold four entries per ioctl");
  Napi::Value args = info[1];
  bool haveArgs = args.IsArray();
  AddonData* data = GetData(env);
  double* n = nums.Data();
  // The fd and request of the last ioctl that took the numbers-only path, already looked up and
  // checked: a burst often repeats them, and nothing can close the fd or change what the checks
  // saw while no JS runs (the general path runs JS, so it forgets them).
  Prepared fastP;
  double fastFd = -1, fastReq = -1;
  for (size_t i = 0; i < len; i += 4) {
    uint32_t index = static_cast<uint32_t>(i / 4);
    try {
      // Numbers all through (the fd, the request, an integer argument): checked here without a
      // JS value; anything else through the general path, with its errors.
      double fdNum = n[i], req = n[i + 1], num = n[i + 2];
      if (num == num && fdNum == fastFd && req == fastReq && PrepareNumberArg(env, fastP, num)) {
        bool busy;
        int r = IssueIoctl(fastP, &busy);
        int err = errno;
        if (busy) throw BusyError(env, fastP);
        if (r < 0) throw ErrnoError(env, err, "ioctl", fastP.def->name);
        n[i + 3] = r;  // AfterSuccess has nothing to do for a number argument
        continue;
      }
      Prepared p;
      bool fast = false;
      if (num == num && req >= 0 && req <= 4294967295.0 && req == static_cast<double>(static_cast<uint32_t>(req)) &&
          fdNum >= 0 && fdNum <= INT32_MAX && fdNum == static_cast<double>(static_cast<int>(fdNum))) {
        auto it = data->live.find(static_cast<int>(fdNum));
        if (it == data->live.end()) throw ErrnoError(env, EBADF, "ioctl");
        p.fd = it->second;
        PrepareHead(env, p, static_cast<uint32_t>(req), false);
        fast = PrepareNumberArg(env, p, num);
        if (fast) {
          fastP.fd = p.fd;
          fastP.def = p.def;
          fastFd = fdNum;
          fastReq = req;
        }
      }
      if (!fast) {
        fastFd = fastReq = -1;
        Napi::Value arg = num == num ? Napi::Number::New(env, num)
                          : haveArgs ? args.As<Napi::Array>().Get(index)
                                     : env.Undefined();
        p = Prepare(env, Napi::Number::New(env, fdNum), Napi::Number::New(env, req), arg, false, true);
      }
      bool busy;
      int r = IssueIoctl(p, &busy);
      int err = errno;
      if (busy) throw BusyError(env, p);
      if (p.marshal) p.marshal->CopyBack();
      if (r < 0) throw ErrnoError(env, err, "ioctl", p.def->name);
      AfterSuccess(p);
      n = nums.Data();  // a getter JS ran while the argument was read cannot move a typed array's memory, but re-read
      n[i + 3] = r;
    } catch (Napi::Error& e) {
      e.Set("index", Napi::Number::New(env, index));
      throw;
    }
  }
  return env.Undefined();
}

// Async: on the libuv threadpool, for quick-but-not-instant calls (SEV firmware commands). Never
// KVM_RUN (Prepare refuses it): that has its own thread per vCPU.
class IoctlWorker : public Napi::AsyncWorker {
 public:
  IoctlWorker(Napi::Env env, Prepared&& p)
      : Napi::AsyncWorker(env, "kvm-sev:ioctl"), p_(std::move(p)), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    r_ = IssueIoctl(p_, &busy_);
    err_ = r_ < 0 ? errno : 0;
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (busy_) {
      deferred_.Reject(BusyError(env, p_).Value());
      return;
    }
    if (p_.marshal) p_.marshal->CopyBack();
    if (r_ < 0) {
      deferred_.Reject(ErrnoError(env, err_, "ioctl", p_.def->name).Value());
      return;
    }
    AfterSuccess(p_);
    deferred_.Resolve(Napi::Number::New(env, r_));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Prepared p_;
  Napi::Promise::Deferred deferred_;
  int r_ = 0, err_ = 0;
  bool busy_ = false;
};

static Napi::Value IoctlAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Promise::Deferred early = Napi::Promise::Deferred::New(env);
  Prepared p;
  try {
    p = Prepare(info, false, false);
  } catch (const Napi::Error& e) {
    early.Reject(e.Value());  // a Promise API rejects rather than throws
    return early.Promise();
  }
  auto* w = new IoctlWorker(env, std::move(p));
  Napi::Promise promise = w->Promise();
  w->Queue();
  return promise;
}

static const char* ArgKindName(ArgKind k) {
  switch (k) {
    case ArgKind::None:
      return "none";
    case ArgKind::Int:
      return "int";
    default:
      return "struct";
  }
}

static Napi::Object LayoutObject(Napi::Env env, const Layout* l) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", l->name);
  o.Set("size", l->size);
  Napi::Array ptrs = Napi::Array::New(env, l->ptrs.size());
  for (size_t i = 0; i < l->ptrs.size(); i++) {
    const PtrField& pf = l->ptrs[i];
    Napi::Object po = Napi::Object::New(env);
    po.Set("name", pf.name);
    po.Set("offset", pf.offset);
    po.Set("lenOffset", pf.lenOffset);
    po.Set("lenSize", pf.lenSize);
    po.Set("fixedLen", pf.fixedLen);
    po.Set("retained", pf.retained);
    po.Set("selected", pf.select != nullptr);
    po.Set("lenBits", pf.lenBits);
    po.Set("slotOffset", pf.slotOffset);
    ptrs.Set(static_cast<uint32_t>(i), po);
  }
  o.Set("pointers", ptrs);
  return o;
}

// The allowlist and layouts, for tests that cross-check them against the TypeScript codecs.
static Napi::Value Describe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  const auto& reqs = AllRequests();
  Napi::Array ra = Napi::Array::New(env, reqs.size());
  for (size_t i = 0; i < reqs.size(); i++) {
    const RequestDef& d = reqs[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", d.name);
    o.Set("request", Napi::Number::New(env, d.request));
    o.Set("arg", ArgKindName(d.arg));
    o.Set("struct", d.layout ? Napi::Value(Napi::String::New(env, d.layout->name)) : env.Null());
    o.Set("variable", d.var != nullptr);
    o.Set("returnsFd", d.returnsFd);
    o.Set("nullArg", d.nullArg);
    o.Set("fdOut", d.fdOut);
    Napi::Array kinds = Napi::Array::New(env);
    uint32_t n = 0;
    for (uint32_t bit = 1; bit <= 1024; bit <<= 1)
      if (d.fdKinds & bit) kinds.Set(n++, FdKindName(static_cast<FdKind>(bit)));
    o.Set("fds", kinds);
    ra.Set(static_cast<uint32_t>(i), o);
  }
  out.Set("requests", ra);
  const auto& ls = AllLayouts();
  Napi::Array la = Napi::Array::New(env, ls.size());
  for (size_t i = 0; i < ls.size(); i++) la.Set(static_cast<uint32_t>(i), LayoutObject(env, ls[i]));
  out.Set("layouts", la);
  Napi::Array ca = Napi::Array::New(env);
  uint32_t ci = 0;
  for (const EnableCapDef& c : AllEnableCaps()) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("cap", c.cap);
    o.Set("name", c.name);
    o.Set("fds", KindList(c.fdKinds));
    ca.Set(ci++, o);
  }
  out.Set("enableCaps", ca);
  return out;
}

// A live VM fd, by number (EBADF if closed).
static std::shared_ptr<OwnedFd> VmOf(const Napi::CallbackInfo& info) {
  auto fd = LookupFd(info.Env(), info[0]);
  if (fd->kind != FdKind::Vm)
    throw ArgValueError(info.Env(),
                        std::string("The \"vm\" argument must be a VM fd (KVM_SEV commands go to a VM); got a ") +
                            FdKindName(fd->kind) + " fd");
  return fd;
}

// setSevCommandIds(vmFd, send, receive): the KVM_SEV command-id table the kernel behind this VM fd
// speaks (schema.h); 0, 0 is upstream. The kernel cannot be asked, so the caller says it.
static Napi::Value SetSevIds(const Napi::CallbackInfo& info) {
  auto vm = VmOf(info);
  SevCommandIds ids{ArgU32(info[1], "send"), ArgU32(info[2], "receive")};
  if (!ValidSevCommandIds(ids))
    throw ArgRangeError(
        info.Env(),
        "local-migration ids must be 22 or an unassigned id (23..99, > 103), distinct; 0, 0 is the upstream table");
  vm->sevIds = ids;
  return info.Env().Undefined();
}

// sevCommandIds(vmFd) → [send, receive] ([0, 0]: upstream).
static Napi::Value GetSevIds(const Napi::CallbackInfo& info) {
  auto vm = VmOf(info);
  SevCommandIds ids = vm->sevIds;
  Napi::Array a = Napi::Array::New(info.Env(), 2);
  a.Set(0u, ids.localSend);
  a.Set(1u, ids.localReceive);
  return a;
}

// describeSevCommands(send, receive) → for ids 0..255, the struct name behind kvm_sev_cmd.data under
// that table, or null: for the test that cross-checks the TypeScript tables.
static Napi::Value DescribeSevCommands(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  SevCommandIds ids{ArgU32(info[0], "send"), ArgU32(info[1], "receive")};
  Napi::Array a = Napi::Array::New(env, 256);
  for (uint32_t id = 0; id < 256; id++) {
    const Layout* l = SevCommandLayout(id, ids);
    a.Set(id, l ? Napi::Value(Napi::String::New(env, l->name)) : env.Null());
  }
  return a;
}

void InitIoctl(Napi::Env env, Napi::Object exports) {
  exports.Set("ioctl", Napi::Function::New(env, IoctlSync, "ioctl"));
  exports.Set("ioctlFd", Napi::Function::New(env, IoctlFd, "ioctlFd"));
  exports.Set("ioctlBatch", Napi::Function::New(env, IoctlBatch, "ioctlBatch"));
  exports.Set("ioctlAsync", Napi::Function::New(env, IoctlAsync, "ioctlAsync"));
  exports.Set("describe", Napi::Function::New(env, Describe, "describe"));
  exports.Set("setSevCommandIds", Napi::Function::New(env, SetSevIds, "setSevCommandIds"));
  exports.Set("sevCommandIds", Napi::Function::New(env, GetSevIds, "sevCommandIds"));
  exports.Set("describeSevCommands", Napi::Function::New(env, DescribeSevCommands, "describeSevCommands"));
}

}  // namespace kvmsev
