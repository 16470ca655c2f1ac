// Shared declarations of the kvm-sev native shim.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <list>
#include <set>
#include <thread>
#include <string>
#include <unordered_map>

#include "schema.h"

namespace kvmsev {

class FdHandle;
class Mapping;
class VcpuRunner;

// ---------------------------------------------------------------------------------------------
// Kernel objects, shared between JS wrappers, in-flight calls and vCPU threads. The last owner
// closes or unmaps, so a call in flight never sees its fd number reused or its memory unmapped.

// A guest-memory mapping. JS sees it through an external ArrayBuffer that is detached on unmap.
struct MapState {
  void* addr = nullptr;
  size_t size = 0;
  std::atomic<int> bindings{0};  // memory slots of live VMs that point here
  std::atomic<int> inflight{0};  // async calls using it right now
  std::atomic<bool> unmapped{false};
  ~MapState();
  void Unmap();
};

// Per-VM bookkeeping: the mappings KVM holds addresses of (memory slots), so they stay mapped
// while the VM (its fd or any vCPU fd) lives; and the KVM_SEV command-id table its kernel speaks.
struct VmState {
  std::mutex mu;
  std::map<uint32_t, std::shared_ptr<MapState>> slots;
  SevCommandIds sevIds;  // under mu; set by setSevCommandIds
  // Bytes of each memory slot this process set (under mu): KVM_GET_DIRTY_LOG writes one bit per
  // page of a slot, so the shim sizes the caller's bitmap against it.
  std::map<uint32_t, uint64_t> slotBytes;
  void Bind(uint32_t slot, std::shared_ptr<MapState> m);
  void Unbind(uint32_t slot);
  ~VmState();
};

enum class FdKind : uint32_t {
  Kvm = 1,
  Sev = 2,
  Vm = 4,
  Vcpu = 8,
  Memfd = 16,
  Socket = 32,
  Other = 64,
  Eventfd = 128,     // eventfd(2): irqfd/ioeventfd signalling (eventfd.cc)
  Device = 256,      // KVM_CREATE_DEVICE
  Stats = 512,       // KVM_GET_STATS_FD (read with pread)
  GuestMemfd = 1024  // KVM_CREATE_GUEST_MEMFD
};
const char* FdKindName(FdKind k);

struct OwnedFd {
  int fd;
  FdKind kind;
  bool writable;
  std::string path;             // for error messages ("/dev/sev")
  std::shared_ptr<VmState> vm;  // VM and vCPU fds
  // vCPU fds: KVM holds the vCPU's lock for as long as the guest runs, so another ioctl on it (or a
  // second runner) would block until the guest exits: refused instead.
  std::atomic<bool> running{false};
  std::atomic<bool> hasRunner{false};
  // Set when JS closes (or drops) its handle: waits on the socket end then, however many there are.
  std::atomic<bool> released{false};
  OwnedFd(int f, FdKind k, bool w, std::string p) : fd(f), kind(k), writable(w), path(std::move(p)) {}
  ~OwnedFd();
};

// ---------------------------------------------------------------------------------------------
// Per-environment data (the main thread and every worker have their own).
struct AddonData {
  Napi::FunctionReference fdHandleCtor;
  Napi::FunctionReference mappingCtor;
  Napi::FunctionReference runnerCtor;
  Napi::FunctionReference errorFactory;  // set by TS: (errno, syscall, request, path) => Error
  std::set<FdHandle*> fds;
  std::unordered_map<int, std::shared_ptr<OwnedFd>> live;  // open fds by number (ioctl fast path)
  std::set<Mapping*> maps;
  std::set<VcpuRunner*> runners;
  std::atomic<bool> closing{false};
  // Socket wait threads, joined at teardown (unix_socket.cc).
  struct Tracked {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::mutex threadsMu;
  std::list<Tracked> threads;
};
AddonData* GetData(Napi::Env env);

// ---------------------------------------------------------------------------------------------
// Errors (errors.cc). Node-shaped: code, errno (negative, as in libuv), syscall, plus request/path.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const char* request = nullptr,
                       const char* path = nullptr);
Napi::Error ArgTypeError(Napi::Env env, const std::string& msg);   // ERR_INVALID_ARG_TYPE
Napi::Error ArgValueError(Napi::Env env, const std::string& msg);  // ERR_INVALID_ARG_VALUE
Napi::Error ArgRangeError(Napi::Env env, const std::string& msg);  // ERR_OUT_OF_RANGE
Napi::Error CodedError(Napi::Env env, const char* code, const std::string& msg);
const char* ErrnoName(int err);

// Argument helpers.
uint32_t ArgU32(const Napi::Value& v, const char* name);
uint64_t ArgSize(const Napi::Value& v, const char* name);  // non-negative safe integer or BigInt

// Accessors get no V8 signature check (methods do): a getter called on another object
// (`Object.getOwnPropertyDescriptor(Mapping.prototype, 'buffer').get.call(fdHandle)`) must check
// the type tag before touching a member.
#define KVMSEV_CHECK_THIS(info, tag)                                                                        \
  do {                                                                                                      \
    Napi::Value self_ = (info).This();                                                                      \
    if (!self_.IsObject() || !self_.As<Napi::Object>().CheckTypeTag(&(tag)))                                \
      throw CodedError((info).Env(), "ERR_INVALID_THIS", "Value of \"this\" is not of this kvm-sev class"); \
  } while (0)

// Type tags reject foreign objects (`FdHandle.prototype.close.call({})`).
extern const napi_type_tag kFdHandleTag;
extern const napi_type_tag kMappingTag;
extern const napi_type_tag kRunnerTag;

// fd_handle.cc
// The live fd with this number (what FdHandle.fd says), or EBADF.
std::shared_ptr<OwnedFd> LookupFd(Napi::Env env, const Napi::Value& v);
std::shared_ptr<OwnedFd> UnwrapFd(const Napi::Value& v, const char* name, bool mustBeOpen = true);
Napi::Object NewFdHandle(Napi::Env env, std::shared_ptr<OwnedFd> fd);
FdKind ClassifyFd(int fd, std::string* path);
void InitFdHandle(Napi::Env env, Napi::Object exports, AddonData* data);

// mapping.cc
std::shared_ptr<MapState> UnwrapMapping(const Napi::Value& v, const char* name);
void InitMapping(Napi::Env env, Napi::Object exports, AddonData* data);

// ioctl.cc, vcpu_runner.cc, unix_socket.cc
void InitIoctl(Napi::Env env, Napi::Object exports);
void InitVcpuRunner(Napi::Env env, Napi::Object exports, AddonData* data);
void InitUnixSocket(Napi::Env env, Napi::Object exports);
void InitEventfd(Napi::Env env, Napi::Object exports);

}  // namespace kvmsev
