// KVM_RUN for one vCPU. run() issues it on a thread of the vCPU's own (never the libuv threadpool,
// which KVM_RUN would block for as long as the guest runs) and settles a Promise through a
// thread-safe function; runSync() issues it on the calling thread (a worker that owns the vCPU).
// The kvm_run page is shared with JS as an external ArrayBuffer, detached on close().
// Runs and other ioctls on the vCPU are ordered through its VcpuState (common.h), which every
// handle to the vCPU's file shares: an ioctl is never issued into a running vCPU.
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>
#include <string>

#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "common.h"

namespace kvmsev {

const napi_type_tag kRunnerTag = {0x6b766d7365765275ULL, 0x6e6e657200000003ULL};

// Shared by the JS object, its thread, queued completions and the run area's ArrayBuffer (its
// backing store and the object each hold it), so none outlives what it uses.
struct RunState {
  std::shared_ptr<OwnedFd> fd;
  struct kvm_run* run = nullptr;
  size_t runSize = 0;
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<bool> want{false}, stop{false};
  std::atomic<bool> sleeping{false};
  // Who completes a run() (see Run): the JS thread if the exit comes within its short wait,
  // else the vCPU thread through the thread-safe function.
  enum Phase : int { kIdle = 0, kInline = 1, kAsync = 2, kDone = 3 };
  std::atomic<int> phase{kIdle};
  int resR = 0, resErr = 0;
  std::atomic<bool> inKvmRun{false};
  std::atomic<bool> retired{false};
  VcpuState& vcpu() { return *fd->vcpu; }
  // close(): the kvm_run page goes (until it does, the vCPU file and so the VM stay alive in the
  // kernel), but the range stays reserved while a view of it may be reachable.
  void Retire() {
    if (run && !retired.exchange(true)) CoverWithInertMemory(run, runSize);
  }
  ~RunState() {
    if (run) munmap(run, runSize);
  }
};

struct RunResult {
  int r;
  int err;
};

class VcpuRunner;
static void CallJs(Napi::Env env, Napi::Function, VcpuRunner* self, RunResult* res);
using RunTsfn = Napi::TypedThreadSafeFunction<VcpuRunner, RunResult, CallJs>;

// The size of the kvm_run area: the kernel's answer (seen by an earlier ioctl, or asked again), or
// the errno of asking. Mapping more than KVM provides would SIGBUS on touch.
static int VcpuMmapSize(Napi::Env env) {
  int known = KnownVcpuMmapSize();
  if (known > 0) return known;
  int kvm = ::open("/dev/kvm", O_RDONLY | O_CLOEXEC);
  if (kvm < 0) throw ErrnoError(env, errno, "open", "KVM_GET_VCPU_MMAP_SIZE", "/dev/kvm");
  int real = ::ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  int err = errno;
  ::close(kvm);
  if (real <= 0) throw ErrnoError(env, real < 0 ? err : EINVAL, "ioctl", "KVM_GET_VCPU_MMAP_SIZE", "/dev/kvm");
  return real;
}

class VcpuRunner : public Napi::ObjectWrap<VcpuRunner> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "VcpuRunner",
        {InstanceMethod<&VcpuRunner::RunSync>("runSync"), InstanceMethod<&VcpuRunner::Run>("run"),
         InstanceMethod<&VcpuRunner::Kick>("kick"), InstanceMethod<&VcpuRunner::CloseJs>("close"),
         InstanceAccessor<&VcpuRunner::GetRunArea>("runArea"), InstanceAccessor<&VcpuRunner::GetRunning>("running"),
         InstanceAccessor<&VcpuRunner::GetClosed>("closed")});
  }

  // new VcpuRunner(vcpuFd, mmapSize)
  explicit VcpuRunner(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VcpuRunner>(info) {
    Napi::Env env = info.Env();
    info.This().As<Napi::Object>().TypeTag(&kRunnerTag);
    auto fd = UnwrapFd(info[0], "vcpu");
    if (fd->kind != FdKind::Vcpu || !fd->vcpu) throw ArgValueError(env, "The \"vcpu\" argument must be a vCPU fd");
    if (fd->orphan)
      throw CodedError(env, "ERR_KVM_SEV_ORPHAN_FD",
                       "this vCPU fd is of this process's own VM, but came back after every handle to it was closed: "
                       "its memory may be gone, so it does not run");
    uint64_t size = ArgSize(info[1], "mmapSize");
    int real = VcpuMmapSize(env);
    if (size < sizeof(struct kvm_run) || size > static_cast<uint64_t>(real))
      throw ArgRangeError(env, "The value of \"mmapSize\" is out of range: at most KVM_GET_VCPU_MMAP_SIZE (" +
                                   std::to_string(real) + ")");
    VcpuState& vs = *fd->vcpu;
    {
      std::lock_guard<std::mutex> g(vs.mu);
      if (vs.hasRunner)
        throw CodedError(env, "ERR_KVM_SEV_VCPU_BUSY",
                         "this vCPU already has a runner (close it first): two could not both run it");
      vs.hasRunner = true;
      vs.runnerFd = fd.get();
    }
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd->fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      std::lock_guard<std::mutex> g(vs.mu);
      vs.hasRunner = false;
      vs.runnerFd = nullptr;
      throw ErrnoError(env, err, "mmap");
    }
    st_ = std::make_shared<RunState>();
    st_->fd = fd;
    st_->run = static_cast<struct kvm_run*>(p);
    st_->runSize = size;
    auto* keep = new std::shared_ptr<RunState>(st_);
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
        env, p, size, [](Napi::Env, void*, std::shared_ptr<RunState>* k) { delete k; }, keep);
    auto* keepObj = new std::shared_ptr<RunState>(st_);
    if (napi_add_finalizer(
            env, ab, keepObj, [](napi_env, void* k, void*) { delete static_cast<std::shared_ptr<RunState>*>(k); },
            nullptr, nullptr) != napi_ok)
      delete keepObj;
    ab_ = Napi::Persistent(ab);
    data_ = GetData(env);
    data_->runners.insert(this);
    InstallKickHandler();
  }

  ~VcpuRunner() override {
    Shutdown();
    if (data_ && !data_->closing) data_->runners.erase(this);
  }

  // Stops the thread (kicking the guest out of KVM_RUN) and drops the fd. Idempotent.
  void Shutdown() {
    if (!st_) return;
    {
      std::lock_guard<std::mutex> g(st_->mu);
      st_->stop = true;
    }
    st_->cv.notify_all();
    if (thread_.joinable()) {
      while (st_->inKvmRun) {
        KickNow();
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      thread_.join();
    }
    if (tsfnStarted_) {
      tsfn_.Release();
      tsfnStarted_ = false;
    }
    if (st_->fd) {
      VcpuState& vs = st_->vcpu();
      std::lock_guard<std::mutex> g(vs.mu);
      // A run that was asked for but never entered (the thread stopped first) is over too.
      if (!vs.inKvmRun) vs.running = false;
      vs.hasRunner = false;
      vs.runnerFd = nullptr;
    }
    st_->fd.reset();
    st_.reset();
  }

 private:
  void CheckOpen(Napi::Env env) {
    if (!st_ || !st_->fd || st_->fd->released) throw ErrnoError(env, EBADF, "ioctl", "KVM_RUN");
  }

  // Starts a run of this vCPU, whichever handle: refused while another is in progress.
  void BeginRun(Napi::Env env) {
    VcpuState& vs = st_->vcpu();
    std::lock_guard<std::mutex> g(vs.mu);
    if (vs.running) throw CodedError(env, "ERR_KVM_SEV_VCPU_BUSY", "the vCPU is already running");
    vs.running = true;
  }

  void KickNow() {
    // immediate_exit covers a kick that lands just before the thread enters KVM_RUN.
    st_->run->immediate_exit = 1;
    if (st_->fd) st_->vcpu().Kick();
  }

  Napi::Value RunSync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    if (busy_) throw CodedError(env, "ERR_KVM_SEV_VCPU_BUSY", "the vCPU is already running (run() in flight)");
    BeginRun(env);
    VcpuState& vs = st_->vcpu();
    vs.EnterRun(&st_->run->immediate_exit);
    int r = ::ioctl(st_->fd->fd, KVM_RUN, 0);
    int err = errno;
    vs.LeaveRun();
    st_->run->immediate_exit = 0;
    if (r < 0 && err != EINTR) throw ErrnoError(env, err, "ioctl", "KVM_RUN");
    return Napi::Number::New(env, r < 0 ? -err : r);
  }

  static void ThreadMain(std::shared_ptr<RunState> st, RunTsfn tsfn) {
    for (;;) {
      // A VMM usually asks for the next run within microseconds of an exit: spin briefly before
      // sleeping, because waking a sleeping thread costs an IPI (dear under nested virtualization).
      for (int spin = 0; spin < 20000 && !st->want.load(std::memory_order_acquire) && !st->stop; spin++)
        __builtin_ia32_pause();
      {
        std::unique_lock<std::mutex> lk(st->mu);
        st->sleeping = true;
        st->cv.wait(lk, [&] { return st->want.load() || st->stop.load(); });
        st->sleeping = false;
        if (st->stop) break;
        st->want = false;
        st->inKvmRun = true;
      }
      VcpuState& vs = st->vcpu();
      vs.EnterRun(&st->run->immediate_exit);
      int r = st->stop ? -1 : ::ioctl(st->fd->fd, KVM_RUN, 0);
      int err = st->stop ? EINTR : (r < 0 ? errno : 0);
      vs.LeaveRun();
      st->run->immediate_exit = 0;
      st->inKvmRun = false;
      st->resR = r;
      st->resErr = err;
      int expected = RunState::kInline;
      if (st->phase.compare_exchange_strong(expected, RunState::kDone)) continue;  // JS takes it
      auto* res = new RunResult{r, err};
      if (tsfn.NonBlockingCall(res) != napi_ok) delete res;
    }
  }

  Napi::Value Run(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto deferred = Napi::Promise::Deferred::New(env);
    try {
      CheckOpen(env);
      if (busy_) throw CodedError(env, "ERR_KVM_SEV_VCPU_BUSY", "the vCPU is already running (run() in flight)");
      if (!tsfnStarted_) {
        tsfn_ = RunTsfn::New(env, "kvm-sev:vcpu", 0, 1, this);
        tsfn_.Unref(env);
        try {
          thread_ = StartThread(env, [st = st_, tsfn = tsfn_] { ThreadMain(st, tsfn); });
        } catch (...) {
          tsfn_.Release();
          throw;
        }
        tsfnStarted_ = true;
      }
      BeginRun(env);
    } catch (const Napi::Error& e) {
      deferred.Reject(e.Value());
      return deferred.Promise();
    }
    busy_ = true;
    st_->phase = RunState::kInline;
    {
      std::lock_guard<std::mutex> g(st_->mu);
      st_->want = true;
    }
    if (st_->sleeping) st_->cv.notify_one();  // a spinning thread sees `want` without a wake-up

    // Most exits (port I/O, MMIO) come back within microseconds. Wait that long on this thread
    // and settle the Promise here, saving two thread wake-ups; a guest that runs longer is
    // completed asynchronously by the vCPU thread, and the event loop runs meanwhile.
    auto t0 = std::chrono::steady_clock::now();
    unsigned n = 0;
    while (st_->phase.load(std::memory_order_acquire) == RunState::kInline) {
      __builtin_ia32_pause();
      if ((++n & 63) == 0 && std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(kInlineWaitUs)) {
        int expected = RunState::kInline;
        if (st_->phase.compare_exchange_strong(expected, RunState::kAsync)) {
          tsfn_.Ref(env);  // keep the loop alive while the guest runs
          Ref();           // and this object, even if JS drops it
          pending_ = std::make_unique<Napi::Promise::Deferred>(deferred);
          return deferred.Promise();
        }
        break;  // it finished just now
      }
    }
    st_->phase = RunState::kIdle;
    busy_ = false;
    RunResult res{st_->resR, st_->resErr};
    if (res.r < 0 && res.err != EINTR)
      deferred.Reject(ErrnoError(env, res.err, "ioctl", "KVM_RUN").Value());
    else
      deferred.Resolve(Napi::Number::New(env, res.r < 0 ? -res.err : res.r));
    return deferred.Promise();
  }

  static constexpr int kInlineWaitUs = 50;

  friend void CallJs(Napi::Env env, Napi::Function, VcpuRunner* self, RunResult* res);
  void Complete(Napi::Env env, RunResult* res) {
    busy_ = false;
    st_ ? st_->phase = RunState::kIdle : 0;
    if (tsfnStarted_) tsfn_.Unref(env);
    std::unique_ptr<Napi::Promise::Deferred> d = std::move(pending_);
    if (!d) return;  // close() settled it already
    Unref();
    if (res->r < 0 && res->err != EINTR)
      d->Reject(ErrnoError(env, res->err, "ioctl", "KVM_RUN").Value());
    else
      d->Resolve(Napi::Number::New(env, res->r < 0 ? -res->err : res->r));
  }

  Napi::Value Kick(const Napi::CallbackInfo& info) {
    if (st_ && st_->run && st_->fd) KickNow();
    return info.Env().Undefined();
  }

  Napi::Value CloseJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ab_.IsEmpty()) {
      Napi::ArrayBuffer ab = ab_.Value();
      if (!ab.IsDetached()) ab.Detach();
    }
    std::shared_ptr<RunState> st = st_;
    Shutdown();
    // A run() whose thread stopped before it entered (or reported) KVM_RUN: settled here, as a kick
    // would have ended it, so no promise is left pending forever.
    if (pending_) {
      std::unique_ptr<Napi::Promise::Deferred> d = std::move(pending_);
      busy_ = false;
      Unref();
      d->Resolve(Napi::Number::New(env, -EINTR));
    }
    // The page is detached and the thread joined: the kvm_run mapping goes now (until it does the
    // vCPU file, and so the whole VM, stays alive in the kernel, and tearing down guest memory under
    // a live VM is slow). Its range stays reserved until no view of it can be reached.
    if (st) st->Retire();
    return env.Undefined();
  }

  Napi::Value GetRunArea(const Napi::CallbackInfo& info) {
    KVMSEV_CHECK_THIS(info, kRunnerTag);
    return ab_.Value();
  }
  Napi::Value GetRunning(const Napi::CallbackInfo& info) {
    KVMSEV_CHECK_THIS(info, kRunnerTag);
    return Napi::Boolean::New(info.Env(), busy_);
  }
  Napi::Value GetClosed(const Napi::CallbackInfo& info) {
    KVMSEV_CHECK_THIS(info, kRunnerTag);
    return Napi::Boolean::New(info.Env(), !st_);
  }

  std::shared_ptr<RunState> st_;
  Napi::Reference<Napi::ArrayBuffer> ab_;
  std::thread thread_;
  RunTsfn tsfn_;
  bool tsfnStarted_ = false;
  bool busy_ = false;
  std::unique_ptr<Napi::Promise::Deferred> pending_;
  AddonData* data_ = nullptr;

 public:
  void TeardownFromCleanup() { Shutdown(); }
};

// Runs on the JS thread. `self` is alive: run() holds a strong reference until this completes.
static void CallJs(Napi::Env env, Napi::Function, VcpuRunner* self, RunResult* res) {
  if (env != nullptr && self) self->Complete(env, res);
  delete res;
}

void StopAllRunners(AddonData* data) {
  for (VcpuRunner* r : data->runners) r->TeardownFromCleanup();
  data->runners.clear();
}

void InitVcpuRunner(Napi::Env env, Napi::Object exports, AddonData* data) {
  Napi::Function ctor = VcpuRunner::Define(env);
  data->runnerCtor = Napi::Persistent(ctor);
  exports.Set("VcpuRunner", ctor);
}

}  // namespace kvmsev
