// Owned file descriptors: /dev/kvm, /dev/sev, VM and vCPU fds, memfds and Unix sockets.
// close() is idempotent; the fd is really closed when the last in-flight user lets go of it.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common.h"

namespace kvmsev {

const napi_type_tag kFdHandleTag = {0x6b766d7365764664ULL, 0x48616e646c650001ULL};

const char* FdKindName(FdKind k) {
  switch (k) {
    case FdKind::Kvm:
      return "kvm";
    case FdKind::Sev:
      return "sev";
    case FdKind::Vm:
      return "vm";
    case FdKind::Vcpu:
      return "vcpu";
    case FdKind::Memfd:
      return "memfd";
    case FdKind::Socket:
      return "socket";
    case FdKind::Eventfd:
      return "eventfd";
    case FdKind::Device:
      return "device";
    case FdKind::Stats:
      return "stats";
    case FdKind::GuestMemfd:
      return "guest_memfd";
    default:
      return "other";
  }
}

OwnedFd::~OwnedFd() {
  UnregisterFile(this);  // before the number can be reused
  if (fd >= 0) ::close(fd);
}

// What a received or inherited fd is, from its /proc link ("anon_inode:kvm-vm", "/dev/sev", ...).
FdKind ClassifyFd(int fd, std::string* path) {
  char link[64], target[512];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n < 0) return FdKind::Other;
  target[n] = 0;
  std::string t(target);
  if (path) *path = t;
  if (t == "/dev/kvm") return FdKind::Kvm;
  if (t == "/dev/sev") return FdKind::Sev;
  if (t == "anon_inode:kvm-vm") return FdKind::Vm;
  if (t.rfind("anon_inode:kvm-vcpu", 0) == 0) return FdKind::Vcpu;
  if (t.rfind("/memfd:", 0) == 0) return FdKind::Memfd;
  if (t.rfind("socket:", 0) == 0) return FdKind::Socket;
  if (t == "anon_inode:[eventfd]") return FdKind::Eventfd;
  return FdKind::Other;
}

class FdHandle : public Napi::ObjectWrap<FdHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "FdHandle",
        {InstanceMethod<&FdHandle::Close>("close"), InstanceAccessor<&FdHandle::GetKind>("kind"),
         InstanceAccessor<&FdHandle::GetClosed>("closed"), InstanceAccessor<&FdHandle::GetWritable>("writable"),
         InstanceAccessor<&FdHandle::GetPath>("path")});
  }

  explicit FdHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdHandle>(info) {
    // Only the addon constructs these (it passes an External holding the fd).
    if (info.Length() != 1 || !info[0].IsExternal())
      throw CodedError(info.Env(), "ERR_ILLEGAL_CONSTRUCTOR", "FdHandle cannot be constructed from JS");
    auto* p = info[0].As<Napi::External<std::shared_ptr<OwnedFd>>>().Data();
    fd_ = *p;
    Napi::Object self = info.This().As<Napi::Object>();
    self.TypeTag(&kFdHandleTag);
    // `fd` is a plain read-only data property: the hot ioctl path looks the number up in the
    // env's table of live fds instead of unwrapping the object (which costs more than the ioctl).
    self.DefineProperty(
        Napi::PropertyDescriptor::Value("fd", Napi::Number::New(info.Env(), fd_->fd),
                                        static_cast<napi_property_attributes>(napi_enumerable | napi_configurable)));
    data_ = GetData(info.Env());
    data_->fds.insert(this);
    data_->live[fd_->fd] = fd_;
  }

  ~FdHandle() override {
    if (data_ && !data_->closing) {
      data_->fds.erase(this);
      Forget();
    }
  }

  void CloseNow() { fd_.reset(); }

  // Drops this handle's entry from the live table (the fd closes once in-flight users let go).
  void Forget() {
    if (!fd_) return;
    fd_->released = true;
    auto it = data_->live.find(fd_->fd);
    if (it != data_->live.end() && it->second == fd_) data_->live.erase(it);
    fd_.reset();
  }
  std::shared_ptr<OwnedFd> fd() const { return fd_; }

 private:
  Napi::Value Close(const Napi::CallbackInfo& info) {
    // A guest run through this handle (its runner keeps the file open) leaves the kernel: closing a
    // vCPU never leaves it running out of sight. Closing another copy of the vCPU does not stop it.
    if (fd_ && fd_->vcpu) {
      bool runs;
      {
        std::lock_guard<std::mutex> g(fd_->vcpu->mu);
        runs = fd_->vcpu->runnerFd == fd_.get();
      }
      if (runs) fd_->vcpu->Kick();
    }
    Forget();
    info.This().As<Napi::Object>().DefineProperty(
        Napi::PropertyDescriptor::Value("fd", Napi::Number::New(info.Env(), -1),
                                        static_cast<napi_property_attributes>(napi_enumerable | napi_configurable)));
    return info.Env().Undefined();
  }
  Napi::Value GetKind(const Napi::CallbackInfo& info) {
    KVMSEV_CHECK_THIS(info, kFdHandleTag);
    return Napi::String::New(info.Env(), fd_ ? FdKindName(fd_->kind) : "closed");
  }
  Napi::Value GetClosed(const Napi::CallbackInfo& info) {
    KVMSEV_CHECK_THIS(info, kFdHandleTag);
    return Napi::Boolean::New(info.Env(), !fd_);
  }
  Napi::Value GetWritable(const Napi::CallbackInfo& info) {
    KVMSEV_CHECK_THIS(info, kFdHandleTag);
    return Napi::Boolean::New(info.Env(), fd_ && fd_->writable);
  }
  Napi::Value GetPath(const Napi::CallbackInfo& info) {
    KVMSEV_CHECK_THIS(info, kFdHandleTag);
    return fd_ ? Napi::String::New(info.Env(), fd_->path) : info.Env().Undefined();
  }

  std::shared_ptr<OwnedFd> fd_;
  AddonData* data_ = nullptr;
};

Napi::Object NewFdHandle(Napi::Env env, std::shared_ptr<OwnedFd> fd) {
  std::shared_ptr<OwnedFd> copy = std::move(fd);
  auto ext = Napi::External<std::shared_ptr<OwnedFd>>::New(env, &copy);
  return GetData(env)->fdHandleCtor.New({ext});
}

std::shared_ptr<OwnedFd> UnwrapFd(const Napi::Value& v, const char* name, bool mustBeOpen) {
  Napi::Env env = v.Env();
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kFdHandleTag))
    throw ArgTypeError(env, std::string("The \"") + name + "\" argument must be an FdHandle");
  FdHandle* h = Napi::ObjectWrap<FdHandle>::Unwrap(v.As<Napi::Object>());
  auto fd = h->fd();
  if (!fd && mustBeOpen) throw ErrnoError(env, EBADF, "ioctl", nullptr, nullptr);
  return fd;
}

// open(path, writable): only the two devices this package drives.
static Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw ArgTypeError(env, "The \"path\" argument must be of type string");
  std::string path = info[0].As<Napi::String>();
  bool writable = info[1].IsUndefined() ? true : info[1].ToBoolean().Value();
  FdKind kind;
  if (path == "/dev/kvm")
    kind = FdKind::Kvm;
  else if (path == "/dev/sev")
    kind = FdKind::Sev;
  else
    throw ArgValueError(env, "The \"path\" argument must be '/dev/kvm' or '/dev/sev'. Received '" + path + "'");
  int fd = ::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) throw ErrnoError(env, errno, "open", nullptr, path.c_str());
  return NewFdHandle(env, std::make_shared<OwnedFd>(fd, kind, writable, path));
}

static Napi::Value SetErrorFactory(const Napi::CallbackInfo& info) {
  AddonData* data = GetData(info.Env());
  if (!info[0].IsFunction()) throw ArgTypeError(info.Env(), "The \"factory\" argument must be a function");
  data->errorFactory = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

static Napi::Value OpenFdCount(const Napi::CallbackInfo& info) {
  (void)info;
  return Napi::Number::New(info.Env(), static_cast<double>(GetData(info.Env())->fds.size()));
}

void CloseAllFds(AddonData* data) {
  for (FdHandle* h : data->fds) h->CloseNow();
  data->fds.clear();
  data->live.clear();
}

std::shared_ptr<OwnedFd> LookupFd(Napi::Env env, const Napi::Value& v) {
  int32_t fd;  // one N-API call, which also says whether it is a number (this runs on every ioctl)
  if (napi_get_value_int32(env, v, &fd) != napi_ok)
    throw ArgTypeError(env, "The \"fd\" argument must be the number of an open kvm-sev FdHandle");
  AddonData* data = GetData(env);
  auto it = data->live.find(fd);
  if (it == data->live.end()) throw ErrnoError(env, EBADF, "ioctl");
  return it->second;
}

void InitFdHandle(Napi::Env env, Napi::Object exports, AddonData* data) {
  Napi::Function ctor = FdHandle::Define(env);
  data->fdHandleCtor = Napi::Persistent(ctor);
  exports.Set("FdHandle", ctor);
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("setErrorFactory", Napi::Function::New(env, SetErrorFactory, "setErrorFactory"));
  exports.Set("liveHandleCount", Napi::Function::New(env, OpenFdCount, "liveHandleCount"));
}

}  // namespace kvmsev
