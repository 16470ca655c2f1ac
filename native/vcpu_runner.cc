// KVM_RUN for one vCPU. runSync() issues it on the calling thread (a worker that owns the vCPU).
// run() settles a Promise, and issues KVM_RUN in one of two ways, chosen run by run:
//  - inline, on the JS thread, like runSync(), while the guest's runs are short and this vCPU is the
//    one of its event loop that runs inline (the first to ask, until it stops asking for 2 ms): no
//    other thread is woken and no core spins, so an exit costs what it costs in C. The vCPU's own thread watches (a
//    timed wait, no spinning): a run still in the kernel after a tick or two is kicked out (a signal, as QEMU kicks a
//    vCPU) and continued on that thread, so the event loop is never held for long. Inline runs settle at once, so a
//    loop of `await run()` is a chain of microtasks: after 1 ms of it one run goes through the vCPU thread, so timers
//    and I/O get their turn (without that budget such a loop starved the event loop).
//  - on the vCPU's own thread (never the libuv threadpool, which KVM_RUN would block for as long as
//    the guest runs), completed through a thread-safe function: for guests that run long, and for
//    the other vCPUs the event loop drives, which run in parallel with the inline one. Their results
//    are also taken by its run()s (before and after its KVM_RUN), so a chain of inline runs does not
//    hold them until the event loop turns. Between runs that thread
//    waits for the next one briefly only where recent exits say it comes soon, yielding the core
//    to anything runnable, then sleeps.
// The kvm_run page is shared with JS as an external ArrayBuffer, detached on close().
// Runs and other ioctls on the vCPU are ordered through its VcpuState (common.h), which every
// handle to the vCPU's file shares: an ioctl is never issued into a running vCPU.
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#include <string>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "common.h"

namespace kvmsev {

const napi_type_tag kRunnerTag = {0x6b766d7365765275ULL, 0x6e6e657200000003ULL};

// Shared by the JS object, its thread, queued completions and the run area's ArrayBuffer (its
// backing store and the object each hold it), so none outlives what it uses.
struct RunResult {
  int r;
  int err;
};

struct RunState {
  std::shared_ptr<OwnedFd> fd;
  struct kvm_run* run = nullptr;
  size_t runSize = 0;
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<bool> want{false}, stop{false};
  std::atomic<bool> sleeping{false};
  std::atomic<bool> inKvmRun{false};
  std::atomic<bool> retired{false};
  // Inline runs (on the JS thread `jsThread`) and their watch by the vCPU thread.
  pthread_t jsThread{};
  std::atomic<uint64_t> inlineSeq{0};      // bumped by every inline run
  std::atomic<bool> inlineActive{false};   // the JS thread is in (or entering) an inline KVM_RUN
  std::atomic<bool> watcherParked{false};  // the vCPU thread sleeps untimed (no inline run lately)
  // Async runs: the gap from an exit to the next run() (EWMA, ns), which sizes the wait between.
  std::atomic<int64_t> gapNs{1'000'000};
  std::atomic<int64_t> wantAt{0};  // when run() last asked this thread for a run (steady_clock ns)
  // The result of the async run in flight, once it returned: taken by the first of the thread-safe
  // call and a run() of another vCPU of this event loop (a chain of inline runs sees it that way).
  RunResult result{0, 0};
  std::atomic<bool> resultReady{false};
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

class VcpuRunner;
static void CallJs(Napi::Env env, Napi::Function, VcpuRunner* self, void*);
using RunTsfn = Napi::TypedThreadSafeFunction<VcpuRunner, void, CallJs>;

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
         InstanceMethod<&VcpuRunner::RunOrPromise>("runOrPromise"), InstanceMethod<&VcpuRunner::Kick>("kick"),
         InstanceMethod<&VcpuRunner::CloseJs>("close"), InstanceAccessor<&VcpuRunner::GetRunArea>("runArea"),
         InstanceAccessor<&VcpuRunner::GetRunning>("running"), InstanceAccessor<&VcpuRunner::GetClosed>("closed")});
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
    // Anything below can throw (a worker being terminated makes N-API calls fail; allocation): undo
    // what was done, or the run area's reference to this state (and so the vCPU's fd) would never be
    // dropped, and the vCPU could never have a runner again.
    try {
      try {
        st_ = std::make_shared<RunState>();
      } catch (...) {
        munmap(p, size);
        throw;
      }
      st_->fd = fd;
      st_->run = static_cast<struct kvm_run*>(p);
      st_->runSize = size;
      auto* keep = new std::shared_ptr<RunState>(st_);
      Napi::ArrayBuffer ab;
      try {
        ab = Napi::ArrayBuffer::New(
            env, p, size, [](Napi::Env, void*, std::shared_ptr<RunState>* k) { delete k; }, keep);
      } catch (...) {
        delete keep;  // not handed over
        throw;
      }
      auto* keepObj = new std::shared_ptr<RunState>(st_);
      if (napi_add_finalizer(
              env, ab, keepObj, [](napi_env, void* k, void*) { delete static_cast<std::shared_ptr<RunState>*>(k); },
              nullptr, nullptr) != napi_ok)
        delete keepObj;
      ab_ = Napi::Persistent(ab);
      data_ = GetData(env);
      data_->runners.insert(this);
    } catch (...) {
      // The ArrayBuffer (if made) still holds the state: its fd goes now, the mapping with the state.
      if (st_) st_->fd.reset();
      st_.reset();
      std::lock_guard<std::mutex> g(vs.mu);
      vs.hasRunner = false;
      vs.runnerFd = nullptr;
      throw;
    }
    InstallKickHandler();
  }

  ~VcpuRunner() override {
    Shutdown();
    if (data_ && !data_->closing) {
      data_->runners.erase(this);
      if (data_->inlineRunner == this) data_->inlineRunner = nullptr;
    }
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
      // Abort, not release: a call still queued must not reach this object once it may be gone (a
      // result can be delivered by another runner's run() before its call arrives).
      tsfn_.Abort();
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

  // A run begun (BeginRun) but never issued, because something threw before KVM_RUN.
  void EndRunUnissued() {
    VcpuState& vs = st_->vcpu();
    std::lock_guard<std::mutex> g(vs.mu);
    vs.running = false;
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

  static int64_t NowNs() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  // The watch over inline runs: an inline run seen in the kernel at two ticks in a row (at least one
  // tick long) is kicked out to continue here. The kick is the vCPU's kick signal without
  // immediate_exit (that one means "the caller asked"), sent under the VcpuState lock only while
  // that same run is in KVM_RUN on the JS thread, so it never lands in other code's system calls.
  static void WatchInline(RunState* st, uint64_t seq) {
    VcpuState& vs = st->vcpu();
    std::lock_guard<std::mutex> g(vs.mu);
    if (!vs.inKvmRun || !pthread_equal(vs.runThread, st->jsThread) || !st->inlineActive.load() ||
        st->inlineSeq.load() != seq)
      return;
    pthread_kill(st->jsThread, KickSignal());
  }

  static void ThreadMain(std::shared_ptr<RunState> st, RunTsfn tsfn) {
    uint64_t watched = 0, lastSeq = 0;
    int idleTicks = 0;
    int64_t exitAt = 0;
    for (;;) {
      // After an async exit: wait for the next run() briefly only if the last gaps were short (the
      // JS thread handles the exit and asks again), yielding the core to whatever else is runnable.
      if (exitAt) {
        int64_t gap = st->gapNs.load(std::memory_order_relaxed);
        if (gap < kSpinGapNs) {
          int64_t until = exitAt + 2 * gap;
          while (!st->want.load(std::memory_order_acquire) && !st->stop && NowNs() < until) sched_yield();
        }
      }
      {
        std::unique_lock<std::mutex> lk(st->mu);
        for (;;) {
          if (st->stop || st->want) break;
          bool active = st->inlineActive.load();
          if (active || idleTicks < kIdleTicks) {
            // Watching: inline runs happen. Untimed sleep once none has for kIdleTicks ticks. Asleep
            // either way: run() wakes it at once (not at the next tick) when it asks for a run here.
            st->sleeping = true;
            st->cv.wait_for(lk, std::chrono::microseconds(kWatchTickUs));
            st->sleeping = false;
            if (st->stop || st->want) break;
            uint64_t now = st->inlineSeq.load();
            if (st->inlineActive.load() && now == watched) {
              lk.unlock();
              WatchInline(st.get(), now);
              lk.lock();
            }
            watched = now;
            idleTicks = (now == lastSeq && !st->inlineActive.load()) ? idleTicks + 1 : 0;
            lastSeq = now;
          } else {
            st->watcherParked = true;
            st->sleeping = true;
            st->cv.wait(lk, [&] { return st->want.load() || st->stop.load() || st->inlineActive.load(); });
            st->sleeping = false;
            st->watcherParked = false;
            idleTicks = 0;
            watched = lastSeq = st->inlineSeq.load();
          }
        }
        if (st->stop) break;
        st->want = false;
        st->inKvmRun = true;
      }
      if (exitAt) {
        // From the exit to run() asking again (not to this thread seeing it: a slow wake-up must not
        // make the next wait a sleep, which would wake up slowly again).
        int64_t gap = std::max<int64_t>(0, st->wantAt.load(std::memory_order_relaxed) - exitAt);
        int64_t old = st->gapNs.load(std::memory_order_relaxed);
        st->gapNs.store(old + (gap - old) / 4, std::memory_order_relaxed);
      }
      VcpuState& vs = st->vcpu();
      vs.EnterRun(&st->run->immediate_exit);
      int r = st->stop ? -1 : ::ioctl(st->fd->fd, KVM_RUN, 0);
      int err = st->stop ? EINTR : (r < 0 ? errno : 0);
      vs.LeaveRun();
      st->run->immediate_exit = 0;
      st->inKvmRun = false;
      exitAt = NowNs();
      st->result = RunResult{r, err};
      st->resultReady.store(true, std::memory_order_release);
      tsfn.NonBlockingCall();
    }
  }

  // Settles the other runners' async runs that have returned: a chain of inline runs on this thread
  // would otherwise hold their results until the event loop turns (up to the inline budget).
  // How many it settled.
  int DeliverOthers(Napi::Env env) {
    int n = 0;
    for (VcpuRunner* r : data_->runners)
      if (r != this && r->busy_) n += r->Deliver(env);
    return n;
  }

  Napi::Value Run(const Napi::CallbackInfo& info) { return RunImpl(info.Env(), false); }
  // run(), but a run that completed inline returns its result (a number) instead of a settled Promise:
  // for Vcpu.run(), whose own `async` wraps it. A Promise created through N-API (a deferred with its
  // persistent handle, then its resolution) costs more user-space instructions than the rest of an
  // inline run together.
  Napi::Value RunOrPromise(const Napi::CallbackInfo& info) { return RunImpl(info.Env(), true); }

  Napi::Value RunImpl(Napi::Env env, bool numberIfInline) {
    try {
      CheckOpen(env);
      if (busy_) throw CodedError(env, "ERR_KVM_SEV_VCPU_BUSY", "the vCPU is already running (run() in flight)");
      if (!tsfnStarted_) {
        tsfn_ = RunTsfn::New(env, "kvm-sev:vcpu", 0, 1, this);
        tsfn_.Unref(env);
        st_->jsThread = pthread_self();
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
      auto deferred = Napi::Promise::Deferred::New(env);
      deferred.Reject(e.Value());
      return deferred.Promise();
    }
    int64_t now = NowNs();
    lastRunCall_ = now;
    int delivered = 0;
    // Inline runs settle at once, so a loop of `await run()` is a chain of microtasks that never lets
    // the event loop turn (timers, sockets, other callbacks would wait forever). A chain may run
    // inline for kInlineBudgetNs; then one run goes through the vCPU thread, whose completion arrives
    // as an event-loop callback after everything else that is ready, and the budget starts again.
    if (inlineSince_ == 0) inlineSince_ = now;
    // With several vCPUs on this event loop, one of them runs inline and the others on their own
    // threads, in parallel with it; their results are delivered at its next run().
    VcpuRunner* owner = data_->inlineRunner;
    if (owner && owner != this && (!owner->st_ || now - owner->lastRunCall_ >= kActiveNs)) owner = nullptr;
    bool mayInline = owner == this || (owner == nullptr && !OthersBusy());
    if (asyncRuns_ == 0 && now - inlineSince_ < kInlineBudgetNs && mayInline) {
      data_->inlineRunner = this;
      // Others' results are taken only here, by a run under the inline budget: async runs taking each
      // other's results could chain microtasks forever and starve the event loop just the same.
      try {
        delivered = DeliverOthers(env);
      } catch (...) {
        EndRunUnissued();
        throw;
      }
      RunResult res{0, 0};
      if (RunInline(&res)) {
        kickStreak_ = 0;
        delivered += DeliverOthers(env);  // those that returned while this one ran
        // With others settled, this one answers through a Promise too, settled after theirs: their
        // continuations (which ask their vCPUs to run again, in parallel) then come before this one's
        // (which runs this vCPU inline), instead of waiting for its whole next run.
        if (numberIfInline && delivered == 0 && !(res.r < 0 && res.err != EINTR))
          return Napi::Number::New(env, res.r < 0 ? -res.err : res.r);
        auto deferred = Napi::Promise::Deferred::New(env);
        Settle(env, deferred, res);
        return deferred.Promise();
      }
      // Kicked by the watch: the guest runs on. A guest that keeps running long has its next runs go
      // straight to the vCPU thread, twice as many after each kick in a row (a single kick may only
      // mean this thread was preempted on a loaded machine).
      asyncRuns_ = (1 << std::min(kickStreak_, kMaxKickStreak)) - 1;
      kickStreak_++;
      try {
        BeginRun(env);
      } catch (const Napi::Error&) {
        // Another handle's run got in between: this one ended as a kick would have ended it.
        if (numberIfInline) return Napi::Number::New(env, -EINTR);
        auto deferred = Napi::Promise::Deferred::New(env);
        deferred.Resolve(Napi::Number::New(env, -EINTR));
        return deferred.Promise();
      }
    } else if (asyncRuns_ > 0) {
      asyncRuns_--;
    }
    std::unique_ptr<Napi::Promise::Deferred> d;
    try {
      d = std::make_unique<Napi::Promise::Deferred>(Napi::Promise::Deferred::New(env));
    } catch (...) {
      EndRunUnissued();
      throw;
    }
    Napi::Promise promise = d->Promise();
    busy_ = true;
    tsfn_.Ref(env);  // keep the loop alive while the guest runs
    Ref();           // and this object, even if JS drops it
    pending_ = std::move(d);
    {
      std::lock_guard<std::mutex> g(st_->mu);
      st_->wantAt.store(NowNs(), std::memory_order_relaxed);
      st_->want = true;
    }
    if (st_->sleeping) st_->cv.notify_one();  // a waiting thread sees `want` without a wake-up
    return promise;
  }

  // KVM_RUN on this (the JS) thread, under the watch of the vCPU thread. False if the watch kicked
  // it out (the guest still runs: it is continued async); true with the result otherwise.
  bool RunInline(RunResult* res) {
    RunState& st = *st_;
    VcpuState& vs = st.vcpu();
    st.inlineSeq.fetch_add(1);
    st.inlineActive.store(true);
    if (st.watcherParked.load()) {
      std::lock_guard<std::mutex> g(st.mu);
      st.cv.notify_one();
    }
    vs.EnterRun(&st.run->immediate_exit);
    int r = ::ioctl(st.fd->fd, KVM_RUN, 0);
    int err = errno;
    vs.LeaveRun();
    st.inlineActive.store(false);
    bool asked = st.run->immediate_exit;  // a kick through the vCPU's handle: the caller asked
    st.run->immediate_exit = 0;
    // Interrupted, and not by a kick through the vCPU's handle: the watch's kick (or a signal it sent
    // for an earlier run, or any other signal): the guest was not asked to stop, so it runs on.
    if (r < 0 && err == EINTR && !asked) {
      return false;
    }
    *res = RunResult{r, r < 0 ? err : 0};
    return true;
  }

  void Settle(Napi::Env env, Napi::Promise::Deferred& d, const RunResult& res) {
    if (res.r < 0 && res.err != EINTR)
      d.Reject(ErrnoError(env, res.err, "ioctl", "KVM_RUN").Value());
    else
      d.Resolve(Napi::Number::New(env, res.r < 0 ? -res.err : res.r));
  }

  // The watch's tick; at most 2^6 - 1 runs after kicked ones go straight to the vCPU thread; how recent a
  // run() of another runner must be to count as "several vCPUs"; the largest gap between an exit
  // and the next run() that the vCPU thread waits out awake (beyond it, it sleeps at once).
  static constexpr int kWatchTickUs = 200;
  static constexpr int kIdleTicks = 50;
  static constexpr int kMaxKickStreak = 6;
  static constexpr int64_t kActiveNs = 2'000'000;
  static constexpr int64_t kSpinGapNs = 20'000;
  static constexpr int64_t kInlineBudgetNs = 1'000'000;

  bool OthersBusy() {
    for (VcpuRunner* r : data_->runners)
      if (r != this && r->busy_) return true;
    return false;
  }

  friend void CallJs(Napi::Env env, Napi::Function, VcpuRunner* self, void*);
  // The thread-safe call: the event loop turned (a new inline budget), and the result, unless a
  // run() of another vCPU took it first.
  void OnLoopCallback(Napi::Env env) {
    inlineSince_ = 0;
    Deliver(env);
  }
  // Settles the async run in flight if it returned: 1 if it did.
  int Deliver(Napi::Env env) {
    if (!busy_ || !st_ || !st_->resultReady.exchange(false, std::memory_order_acquire)) return 0;
    RunResult res = st_->result;
    busy_ = false;
    if (tsfnStarted_) tsfn_.Unref(env);
    std::unique_ptr<Napi::Promise::Deferred> d = std::move(pending_);
    if (!d) return 0;  // close() settled it already
    Unref();
    Settle(env, *d, res);
    return 1;
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
    if (data_ && data_->inlineRunner == this) data_->inlineRunner = nullptr;
    // A run() in flight is settled here (its queued call was dropped): with its result if KVM_RUN
    // returned, else as a kick would have ended it, so no promise is left pending forever.
    if (pending_) {
      std::unique_ptr<Napi::Promise::Deferred> d = std::move(pending_);
      busy_ = false;
      Unref();
      RunResult res{-1, EINTR};
      if (st && st->resultReady.exchange(false, std::memory_order_acquire)) res = st->result;
      Settle(env, *d, res);
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
  int64_t lastRunCall_ = 0;  // steady_clock ns of the last run()
  int asyncRuns_ = 0;        // runs left to go straight to the vCPU thread (after a kicked one)
  int kickStreak_ = 0;       // inline runs kicked in a row
  int64_t inlineSince_ = 0;  // the first inline run since the event loop last turned (0: none)
  std::unique_ptr<Napi::Promise::Deferred> pending_;
  AddonData* data_ = nullptr;

 public:
  void TeardownFromCleanup() { Shutdown(); }
};

// Runs on the JS thread. `self` is alive: the thread-safe function is released (by close() or
// teardown, on this thread) before the runner goes.
static void CallJs(Napi::Env env, Napi::Function, VcpuRunner* self, void*) {
  if (env != nullptr && self) self->OnLoopCallback(env);
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
