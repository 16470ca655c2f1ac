// Shared declarations of the kvm-sev native shim.
#pragma once

#include <napi.h>

#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <list>
#include <set>
#include <thread>
#include <string>
#include <system_error>
#include <unordered_map>

#include "schema.h"

namespace kvmsev {

class FdHandle;
class Mapping;
class VcpuRunner;

// ---------------------------------------------------------------------------------------------
// Kernel objects, shared between JS wrappers, in-flight calls and vCPU threads. The last owner
// closes or unmaps, so a call in flight never sees its fd number reused or its memory unmapped.

// A guest-memory mapping. JS sees it through external ArrayBuffers. Native code outside the shim
// (zlib, crypto, a buffer moved by ArrayBuffer.prototype.transfer()) may still hold a view's address
// after unmap(), so unmap() only retires the range: it is covered by inert memory (anonymous zero
// pages: a late reader sees zeros, a late writer harms nothing) and munmap()ed when the last holder
// goes: the Mapping object, every view's backing store and the view object itself (each holds a
// reference), memory slots and calls in flight.
struct MapState {
  void* addr = nullptr;
  size_t size = 0;
  std::atomic<int> bindings{0};  // memory slots of live VMs that point here
  std::atomic<int> inflight{0};  // async calls using it right now
  std::atomic<bool> unmapped{false};
  // What the live views of the range told V8 they cost (mapping.cc: MakeView), given back at once
  // when the range is retired (then they hold only inert pages), not when each view is collected.
  std::atomic<int64_t> viewCost{0};
  std::atomic<bool> costReleased{false};
  ~MapState();
  void Retire();  // JS is done with it: inert memory over the range (idempotent)
};

// Covers [addr, addr+size) with fresh anonymous memory, dropping what was mapped there (guest pages,
// a vCPU's kvm_run page) while keeping the address range reserved. False if the kernel refused.
bool CoverWithInertMemory(void* addr, size_t size);

// Per-VM bookkeeping, one per open VM file in this process (every handle to it shares it, see
// file_state.cc): the mappings KVM holds addresses of (memory slots), so they stay mapped while any
// handle to the VM (its fd, a vCPU fd, a received copy of either) lives.
struct VmState {
  std::mutex mu;
  std::map<uint32_t, std::shared_ptr<MapState>> slots;
  // Bytes of each memory slot this process set (under mu): KVM_GET_DIRTY_LOG writes one bit per
  // page of a slot, so the shim sizes the caller's bitmap against it.
  std::map<uint32_t, uint64_t> slotBytes;
  void Bind(uint32_t slot, std::shared_ptr<MapState> m);
  void Unbind(uint32_t slot);
  ~VmState();
};

// Per-vCPU state, one per open vCPU file in this process (shared like VmState). KVM holds the
// vCPU's mutex for as long as the guest runs, so any other ioctl on it would block until the guest
// exits: the check "is it running?" and the issue of the ioctl are one step under `mu` (BeginIoctl),
// and a run waits for ioctls in flight to return before it enters KVM_RUN (BeginRun).
struct VcpuState {
  std::shared_ptr<VmState> vm;  // a vCPU keeps its VM (and so its memory slots) alive
  std::mutex mu;
  std::condition_variable cv;
  bool running = false;            // a run was started (run() or runSync()) and has not returned
  int ioctls = 0;                  // other ioctls issued and not returned
  bool hasRunner = false;          // one runner per vCPU, whichever handle made it
  const void* runnerFd = nullptr;  // the OwnedFd the runner runs through (closing it kicks)
  // The thread in (or about to enter) KVM_RUN and its kvm_run page, for Kick().
  bool inKvmRun = false;
  pthread_t runThread{};
  volatile uint8_t* immediateExit = nullptr;

  // Under mu: false (nothing issued) if a run is in progress.
  bool BeginIoctl();
  void EndIoctl();
  // On the thread about to issue KVM_RUN, after `running` was set: waits for ioctls in flight.
  void EnterRun(volatile uint8_t* immediateExit);
  void LeaveRun();
  // Makes the thread in KVM_RUN (if any) return to user space: immediate_exit and a signal.
  void Kick();
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
  std::string path;                 // for error messages ("/dev/sev")
  std::shared_ptr<VmState> vm;      // VM fds; vCPU fds: their VM's (shared per open file)
  std::shared_ptr<VcpuState> vcpu;  // vCPU fds (shared per open file)
  // A VM or vCPU fd of this process's own address space that arrived while no handle of this
  // process knew its file (all were closed, and it came back from elsewhere): the memory its slots
  // point at may be gone, so nothing is issued on it.
  bool orphan = false;
  // What this handle's owner says the kernel behind it speaks (setSevCommandIds); per handle: a
  // received copy starts upstream, as one in another process would. JS thread only.
  SevCommandIds sevIds;
  // Set when JS closes (or drops) its handle: waits on the socket end then, however many there are.
  std::atomic<bool> released{false};
  // True once this fd is listed in the process-wide table of VM and vCPU files (file_state.cc).
  bool registered = false;
  OwnedFd(int f, FdKind k, bool w, std::string p) : fd(f), kind(k), writable(w), path(std::move(p)) {}
  ~OwnedFd();
};

// file_state.cc: the process-wide table of open VM and vCPU files, so that every handle to one
// file (a dup received over SCM_RIGHTS, in this thread or a worker) shares one VmState/VcpuState.
void RegisterFile(OwnedFd* fd);    // a VM or vCPU fd with its state set
void UnregisterFile(OwnedFd* fd);  // before the fd is closed
// A VM or vCPU fd that arrived from outside: its state shared with the handles of this process to
// the same open file (kcmp KCMP_FILE), fresh if none, `orphan` if it is of this process's own
// address space but no handle knows it. Registers it.
void AdoptFile(const std::shared_ptr<OwnedFd>& fd);
// The signal that interrupts KVM_RUN (its handler does nothing, no SA_RESTART).
int KickSignal();
void InstallKickHandler();

// ---------------------------------------------------------------------------------------------
// Per-environment data (the main thread and every worker have their own).
struct AddonData {
  Napi::FunctionReference fdHandleCtor;
  Napi::FunctionReference mappingCtor;
  Napi::FunctionReference runnerCtor;
  Napi::FunctionReference errorFactory;        // set by TS: (errno, syscall, request, path) => Error
  Napi::FunctionReference markUntransferable;  // set by TS: worker_threads.markAsUntransferable
  // The property names the struct marshaller reads on every call (marshal.cc: MarshalKeys), made
  // once: a name given as a C string is looked up in V8's string table on each read.
  struct MarshalKeys* marshalKeys = nullptr;
  std::set<FdHandle*> fds;
  std::unordered_map<int, std::shared_ptr<OwnedFd>> live;  // open fds by number (ioctl fast path)
  std::set<Mapping*> maps;
  std::set<VcpuRunner*> runners;
  VcpuRunner* inlineRunner = nullptr;  // the one runner whose run()s may go inline (vcpu_runner.cc)
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
// The kernel's KVM_GET_VCPU_MMAP_SIZE if an ioctl of this process has seen it, else 0.
int KnownVcpuMmapSize();
// A std::thread, or a JS error (EAGAIN, 'pthread_create') where the system has no thread to give:
// a std::system_error must never reach N-API, which would abort the process.
template <typename F>
std::thread StartThread(Napi::Env env, F&& f) {
  try {
    return std::thread(std::forward<F>(f));
  } catch (const std::system_error& e) {
    int err = e.code().value() ? e.code().value() : EAGAIN;
    throw ErrnoError(env, err, "pthread_create");
  }
}
void InitVcpuRunner(Napi::Env env, Napi::Object exports, AddonData* data);
void InitUnixSocket(Napi::Env env, Napi::Object exports);
void InitEventfd(Napi::Env env, Napi::Object exports);

}  // namespace kvmsev
