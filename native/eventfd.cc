// eventfds for KVM_IRQFD and KVM_IOEVENTFD, and reads of binary-stats fds.
//
// An eventfd is an owned FdHandle of kind "eventfd" (non-blocking, close-on-exec). wait() settles a
// Promise when the counter becomes non-zero, through a uv_poll handle on the event loop's own epoll:
// no thread per fd, however many devices a VMM has. One wait per eventfd at a time (libuv allows
// one poll handle per fd); cancel() rejects it with an AbortError-shaped error.
#include <sys/eventfd.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstring>
#include <unordered_map>

#include "common.h"

namespace kvmsev {

namespace {

struct Waiter {
  uv_poll_t poll;
  std::shared_ptr<OwnedFd> fd;  // keeps the number from being reused while the poll lives
  Napi::Promise::Deferred deferred;
  Napi::Env env;
  bool closing = false;
  Waiter(Napi::Env e) : deferred(Napi::Promise::Deferred::New(e)), env(e) {}
};

struct EventfdData {
  std::unordered_map<int, Waiter*> waiters;  // by fd number
};

EventfdData* Data(Napi::Env env) {
  static std::mutex mu;  // one map per environment, found through a static keyed by env
  static std::unordered_map<napi_env, EventfdData*> all;
  std::lock_guard<std::mutex> g(mu);
  auto& d = all[env];
  if (!d) d = new EventfdData();  // lives as long as the environment (freed in Cleanup)
  return d;
}

void Forget(Waiter* w) {
  auto* d = Data(w->env);
  auto it = d->waiters.find(w->fd->fd);
  if (it != d->waiters.end() && it->second == w) d->waiters.erase(it);
}

void CloseWaiter(Waiter* w) {
  if (w->closing) return;
  w->closing = true;
  uv_poll_stop(&w->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), [](uv_handle_t* h) { delete static_cast<Waiter*>(h->data); });
}

std::shared_ptr<OwnedFd> EventfdOf(Napi::Env env, const Napi::Value& v) {
  auto fd = LookupFd(env, v);
  if (fd->kind != FdKind::Eventfd)
    throw ArgValueError(env,
                        std::string("The \"fd\" argument must be an eventfd; got a ") + FdKindName(fd->kind) + " fd");
  return fd;
}

// read(2) of the 8-byte counter: true with the value, false if it was 0 (EAGAIN).
bool ReadCounter(Napi::Env env, int fd, uint64_t* v) {
  for (;;) {
    ssize_t n = ::read(fd, v, 8);
    if (n == 8) return true;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return false;
    throw ErrnoError(env, n < 0 ? errno : EIO, "read");
  }
}

void OnReadable(uv_poll_t* h, int status, int events) {
  auto* w = static_cast<Waiter*>(h->data);
  if (w->closing) return;
  Napi::Env env = w->env;
  Napi::HandleScope scope(env);
  if (status < 0) {
    Forget(w);
    w->deferred.Reject(ErrnoError(env, -status, "epoll_wait").Value());
    CloseWaiter(w);
    return;
  }
  uint64_t v = 0;
  bool got;
  try {
    got = ReadCounter(env, w->fd->fd, &v);
  } catch (const Napi::Error& e) {
    Forget(w);
    w->deferred.Reject(e.Value());
    CloseWaiter(w);
    return;
  }
  if (!got) return;  // another reader took it first: keep waiting
  Forget(w);
  w->deferred.Resolve(Napi::BigInt::New(env, v));
  CloseWaiter(w);
}

// eventfd(initval, semaphore) → FdHandle
Napi::Value Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t init = info[0].IsUndefined() ? 0 : ArgU32(info[0], "initval");
  bool sem = info[1].ToBoolean().Value();
  int fd = ::eventfd(init, EFD_CLOEXEC | EFD_NONBLOCK | (sem ? EFD_SEMAPHORE : 0));
  if (fd < 0) throw ErrnoError(env, errno, "eventfd");
  return NewFdHandle(env, std::make_shared<OwnedFd>(fd, FdKind::Eventfd, true, "anon_inode:[eventfd]"));
}

uint64_t ArgU64(const Napi::Value& v, const char* name) {
  if (v.IsBigInt()) {
    bool lossless;
    uint64_t r = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw ArgRangeError(v.Env(), std::string("The value of \"") + name + "\" is out of range of u64");
    return r;
  }
  return ArgSize(v, name);
}

// eventfdWrite(fd, value): adds value to the counter (EAGAIN if it would overflow).
Napi::Value Write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto fd = EventfdOf(env, info[0]);
  uint64_t v = info[1].IsUndefined() ? 1 : ArgU64(info[1], "value");
  if (v == 0 || v == UINT64_MAX)
    throw ArgRangeError(env, "The value of \"value\" is out of range. It must be >= 1 and < 2^64 - 1");
  for (;;) {
    ssize_t n = ::write(fd->fd, &v, 8);
    if (n == 8) return env.Undefined();
    if (n < 0 && errno == EINTR) continue;
    throw ErrnoError(env, n < 0 ? errno : EIO, "write");
  }
}

// eventfdRead(fd) → bigint: the counter (reset to 0; 1 in semaphore mode), 0n if it was 0.
Napi::Value Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto fd = EventfdOf(env, info[0]);
  uint64_t v = 0;
  if (!ReadCounter(env, fd->fd, &v)) v = 0;
  return Napi::BigInt::New(env, v);
}

// eventfdWait(fd) → Promise<bigint>: the counter, once non-zero.
Napi::Value Wait(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto early = Napi::Promise::Deferred::New(env);
  try {
    auto fd = EventfdOf(env, info[0]);
    auto* d = Data(env);
    if (d->waiters.count(fd->fd))
      throw CodedError(env, "ERR_KVM_SEV_EVENTFD_BUSY", "this eventfd already has a wait() in flight (one at a time)");
    uint64_t v = 0;
    if (ReadCounter(env, fd->fd, &v)) {
      early.Resolve(Napi::BigInt::New(env, v));
      return early.Promise();
    }
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop)
      throw CodedError(env, "ERR_KVM_SEV_NO_LOOP", "no event loop");
    auto* w = new Waiter(env);
    w->fd = fd;
    w->poll.data = w;
    int r = uv_poll_init(loop, &w->poll, fd->fd);
    if (r < 0) {
      delete w;
      throw ErrnoError(env, -r, "epoll_ctl");
    }
    r = uv_poll_start(&w->poll, UV_READABLE, OnReadable);
    if (r < 0) {
      w->deferred.Reject(ErrnoError(env, -r, "epoll_ctl").Value());
      Napi::Promise p = w->deferred.Promise();
      CloseWaiter(w);
      return p;
    }
    d->waiters[fd->fd] = w;
    return w->deferred.Promise();
  } catch (const Napi::Error& e) {
    early.Reject(e.Value());
    return early.Promise();
  }
}

// eventfdCancel(fd): rejects a wait() in flight (code ABORT_ERR); nothing if none.
Napi::Value Cancel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw ArgTypeError(env, "The \"fd\" argument must be the number of an eventfd");
  auto* d = Data(env);
  auto it = d->waiters.find(info[0].As<Napi::Number>().Int32Value());
  if (it == d->waiters.end()) return env.Undefined();
  Waiter* w = it->second;
  d->waiters.erase(it);
  Napi::Error e = Napi::Error::New(env, "The operation was aborted: the eventfd wait was cancelled");
  e.Set("code", Napi::String::New(env, "ABORT_ERR"));
  e.Set("name", Napi::String::New(env, "AbortError"));
  w->deferred.Reject(e.Value());
  CloseWaiter(w);
  return env.Undefined();
}

// pread(fd, buffer, position) → bytes read: binary stats (KVM_GET_STATS_FD) are read at offsets.
Napi::Value Pread(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto fd = LookupFd(env, info[0]);
  if (fd->kind != FdKind::Stats)
    throw ArgValueError(
        env, std::string("pread() reads stats fds (KVM_GET_STATS_FD); got a ") + FdKindName(fd->kind) + " fd");
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw ArgTypeError(env, "The \"buffer\" argument must be a Uint8Array");
  Napi::Uint8Array b = info[1].As<Napi::Uint8Array>();
  uint64_t pos = ArgSize(info[2], "position");
  for (;;) {
    ssize_t n = ::pread(fd->fd, b.Data(), b.ByteLength(), static_cast<off_t>(pos));
    if (n >= 0) return Napi::Number::New(env, static_cast<double>(n));
    if (errno == EINTR) continue;
    throw ErrnoError(env, errno, "pread");
  }
}

void Cleanup(void* arg) {
  auto* d = static_cast<EventfdData*>(arg);
  for (auto& kv : d->waiters) CloseWaiter(kv.second);
  d->waiters.clear();
}

}  // namespace

void InitEventfd(Napi::Env env, Napi::Object exports) {
  napi_add_env_cleanup_hook(env, Cleanup, Data(env));
  exports.Set("eventfd", Napi::Function::New(env, Create, "eventfd"));
  exports.Set("eventfdWrite", Napi::Function::New(env, Write, "eventfdWrite"));
  exports.Set("eventfdRead", Napi::Function::New(env, Read, "eventfdRead"));
  exports.Set("eventfdWait", Napi::Function::New(env, Wait, "eventfdWait"));
  exports.Set("eventfdCancel", Napi::Function::New(env, Cancel, "eventfdCancel"));
  exports.Set("pread", Napi::Function::New(env, Pread, "pread"));
}

}  // namespace kvmsev
