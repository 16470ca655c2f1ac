// KVM_RUN for one vCPU. run() issues it on a thread of the vCPU's own (never the libuv threadpool,
// which KVM_RUN would block for as long as the guest runs) and settles a Promise through a
// thread-safe function; runSync() issues it on the calling thread (a worker that owns the vCPU).
// The kvm_run page is shared with JS as an external ArrayBuffer, detached on close().
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

// The kick signal only interrupts KVM_RUN (no SA_RESTART); its handler does nothing.
static int KickSignal() { return SIGRTMIN + 6; }
static void InstallKickHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(KickSignal(), &sa, nullptr);
  });
}

// Shared by the JS object, its thread and queued completions, so none outlives what it uses.
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
  pthread_t tid{};
  std::atomic<bool> hasThread{false};
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
    if (fd->kind != FdKind::Vcpu) throw ArgValueError(env, "The \"vcpu\" argument must be a vCPU fd");
    uint64_t size = ArgSize(info[1], "mmapSize");
    // Mapping more than KVM provides would SIGBUS on touch: ask KVM for the real size.
    int kvm = ::open("/dev/kvm", O_RDONLY | O_CLOEXEC);
    int real = kvm >= 0 ? ::ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0) : -1;
    if (kvm >= 0) ::close(kvm);
    if (size < sizeof(struct kvm_run) || (real > 0 && size > static_cast<uint64_t>(real)) || size > (1u << 24))
      throw ArgRangeError(env, "The value of \"mmapSize\" is out of range: at most KVM_GET_VCPU_MMAP_SIZE (" +
                                   std::to_string(real) + ")");
    if (fd->hasRunner.exchange(true))
      throw CodedError(env, "ERR_KVM_SEV_VCPU_BUSY",
                       "this vCPU already has a runner (close it first): two could not both run it");
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd->fd, 0);
    if (p == MAP_FAILED) {
      fd->hasRunner = false;
      throw ErrnoError(env, errno, "mmap");
    }
    st_ = std::make_shared<RunState>();
    st_->fd = fd;
    st_->run = static_cast<struct kvm_run*>(p);
    st_->runSize = size;
    auto* keep = new std::shared_ptr<RunState>(st_);
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
        env, p, size, [](Napi::Env, void*, std::shared_ptr<RunState>* k) { delete k; }, keep);
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
      st_->fd->running = false;
      st_->fd->hasRunner = false;
    }
    st_->fd.reset();
    st_.reset();
  }

 private:
  void CheckOpen(Napi::Env env) {
    if (!st_ || !st_->fd) throw ErrnoError(env, EBADF, "ioctl", "KVM_RUN");
  }

  void KickNow() {
    // immediate_exit covers a kick that lands just before the thread enters KVM_RUN.
    st_->run->immediate_exit = 1;
    if (st_->hasThread) pthread_kill(st_->tid, KickSignal());
  }

  Napi::Value RunSync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    if (busy_) throw CodedError(env, "ERR_KVM_SEV_VCPU_BUSY", "the vCPU is already running (run() in flight)");
    st_->fd->running = true;
    int r = ::ioctl(st_->fd->fd, KVM_RUN, 0);
    int err = errno;
    st_->fd->running = false;
    st_->run->immediate_exit = 0;
    if (r < 0 && err != EINTR) throw ErrnoError(env, err, "ioctl", "KVM_RUN");
    return Napi::Number::New(env, r < 0 ? -err : r);
  }

  static void ThreadMain(std::shared_ptr<RunState> st, RunTsfn tsfn) {
    st->tid = pthread_self();
    st->hasThread = true;
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
      int r = ::ioctl(st->fd->fd, KVM_RUN, 0);
      int err = r < 0 ? errno : 0;
      st->run->immediate_exit = 0;
      st->fd->running = false;
      st->inKvmRun = false;
      st->resR = r;
      st->resErr = err;
      int expected = RunState::kInline;
      if (st->phase.compare_exchange_strong(expected, RunState::kDone)) continue;  // JS takes it
      auto* res = new RunResult{r, err};
      if (tsfn.NonBlockingCall(res) != napi_ok) delete res;
    }
    st->hasThread = false;
  }

  Napi::Value Run(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto deferred = Napi::Promise::Deferred::New(env);
    try {
      CheckOpen(env);
      if (busy_) throw CodedError(env, "ERR_KVM_SEV_VCPU_BUSY", "the vCPU is already running (run() in flight)");
    } catch (const Napi::Error& e) {
      deferred.Reject(e.Value());
      return deferred.Promise();
    }
    if (!tsfnStarted_) {
      tsfn_ = RunTsfn::New(env, "kvm-sev:vcpu", 0, 1, this);
      tsfn_.Unref(env);
      tsfnStarted_ = true;
      thread_ = std::thread(ThreadMain, st_, tsfn_);
    }
    busy_ = true;
    st_->fd->running = true;
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
    Unref();
    if (!d) return;
    if (res->r < 0 && res->err != EINTR)
      d->Reject(ErrnoError(env, res->err, "ioctl", "KVM_RUN").Value());
    else
      d->Resolve(Napi::Number::New(env, res->r < 0 ? -res->err : res->r));
  }

  Napi::Value Kick(const Napi::CallbackInfo& info) {
    if (st_ && st_->run) KickNow();
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
    // The page is detached and the thread joined: unmap now. Until kvm_run is unmapped the vCPU
    // file (and so the whole VM) stays alive in the kernel, and tearing down guest memory under a
    // live VM is slow.
    if (st && st->run) {
      munmap(st->run, st->runSize);
      st->run = nullptr;
    }
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
