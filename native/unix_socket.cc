// Unix sockets with SCM_RIGHTS, so a VMM can hand VM, vCPU and memfd fds to another process.
// Blocking waits (accept, recv) run on a short-lived thread of their own and poll with a timeout,
// so they neither block the event loop nor starve the libuv threadpool, and stop at env teardown.
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "common.h"
#include "marshal.h"

namespace kvmsev {

static constexpr size_t kMaxFds = 253;  // SCM_MAX_FD

// Socket threads are joined at env teardown (they poll `closing` every 100 ms), so none outlives the
// env or the addon (a worker's exit unloads it). Finished ones are reaped as new ones start.
static void TrackThread(AddonData* data, std::shared_ptr<std::atomic<bool>> done, std::thread t) {
  std::lock_guard<std::mutex> g(data->threadsMu);
  for (auto it = data->threads.begin(); it != data->threads.end();) {
    if (it->done->load()) {
      it->thread.join();
      it = data->threads.erase(it);
    } else {
      ++it;
    }
  }
  data->threads.push_back({std::move(t), std::move(done)});
}

static sockaddr_un Address(Napi::Env env, const Napi::Value& v) {
  if (!v.IsString()) throw ArgTypeError(env, "The \"path\" argument must be of type string");
  std::string path = v.As<Napi::String>();
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof a.sun_path)
    throw ArgRangeError(env, "The \"path\" argument must be 1 to 107 bytes long");
  memcpy(a.sun_path, path.data(), path.size());
  return a;
}

static std::shared_ptr<OwnedFd> SocketFd(int fd, const std::string& path) {
  return std::make_shared<OwnedFd>(fd, FdKind::Socket, true, path);
}

static Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) throw ErrnoError(env, errno, "socketpair");
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(0u, NewFdHandle(env, SocketFd(sv[0], "socketpair")));
  a.Set(1u, NewFdHandle(env, SocketFd(sv[1], "socketpair")));
  return a;
}

static Napi::Value Listen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sockaddr_un a = Address(env, info[0]);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ErrnoError(env, errno, "socket");
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || listen(fd, 8) < 0) {
    int e = errno;
    close(fd);
    throw ErrnoError(env, e, "bind", nullptr, a.sun_path);
  }
  return NewFdHandle(env, SocketFd(fd, a.sun_path));
}

static Napi::Value Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sockaddr_un a = Address(env, info[0]);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ErrnoError(env, errno, "socket");
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
    int e = errno;
    close(fd);
    throw ErrnoError(env, e, "connect", nullptr, a.sun_path);
  }
  return NewFdHandle(env, SocketFd(fd, a.sun_path));
}

static std::shared_ptr<OwnedFd> SocketArg(const Napi::Value& v) {
  auto fd = UnwrapFd(v, "socket");
  if (fd->kind != FdKind::Socket) throw ArgValueError(v.Env(), "The \"socket\" argument must be a Unix socket");
  return fd;
}

// The wait every socket thread runs: poll `sock` for `events` with a 100 ms timeout, so that env
// teardown or JS closing the socket handle (only the thread still holds the fd) cancels it with
// ECANCELED, and call `step` each time the socket is ready. `step` returns 0 when done, kPollAgain
// to wait again, or an errno; EINTR and EAGAIN (a signal, or a peer that was faster) wait again.
static constexpr int kPollAgain = -1;
template <typename Step>
static int PollUntil(const AddonData* data, const OwnedFd& sock, short events, Step step) {
  for (;;) {
    if (data->closing || sock.released) return ECANCELED;
    pollfd p{sock.fd, events, 0};
    int n = poll(&p, 1, 100);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) continue;
    int r = step();
    if (r == kPollAgain || r == EINTR || r == EAGAIN) continue;
    return r;
  }
}

// One sendmsg of bytes[sent..], the fds riding on the first byte (sent == 0). Returns what the
// kernel took, or -1 with errno.
static ssize_t SendSome(int fd, const uint8_t* bytes, size_t size, size_t sent, const std::vector<int>& fds,
                        int flags) {
  iovec iov{const_cast<uint8_t*>(bytes) + sent, size - sent};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> ctl(CMSG_SPACE(sizeof(int) * (fds.empty() ? 1 : fds.size())));
  if (sent == 0 && !fds.empty()) {
    msg.msg_control = ctl.data();
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  return sendmsg(fd, &msg, flags);
}

// sendFds(socket, data, fds) → Promise<bytes>: all of `data`, with the fds on its first byte. It
// runs on a thread of its own (a full socket would otherwise block the event loop), polling so that
// closing the socket or tearing down the env cancels it.
struct SendResult {
  int err = 0;
  size_t sent = 0;
};

struct SendCtx {
  Napi::Promise::Deferred deferred;
};

static void SendCallJs(Napi::Env env, Napi::Function, SendCtx* ctx, SendResult* r) {
  if (env != nullptr) {
    if (r->err)
      ctx->deferred.Reject(ErrnoError(env, r->err, "sendmsg").Value());
    else
      ctx->deferred.Resolve(Napi::Number::New(env, static_cast<double>(r->sent)));
  }
  delete r;
}
using SendTsfn = Napi::TypedThreadSafeFunction<SendCtx, SendResult, SendCallJs>;

static Napi::Value SendFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* ctx = new SendCtx{Napi::Promise::Deferred::New(env)};
  Napi::Promise promise = ctx->deferred.Promise();
  std::shared_ptr<OwnedFd> sock;
  std::vector<std::shared_ptr<OwnedFd>> keep;
  std::vector<uint8_t> bytes;
  try {
    sock = SocketArg(info[0]);
    if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw ArgTypeError(env, "The \"data\" argument must be a Uint8Array");
    if (!info[2].IsArray()) throw ArgTypeError(env, "The \"fds\" argument must be an array of FdHandle");
    Napi::Array arr = info[2].As<Napi::Array>();
    if (arr.Length() > kMaxFds) throw ArgRangeError(env, "at most 253 fds per message");
    for (uint32_t i = 0; i < arr.Length(); i++) keep.push_back(UnwrapFd(arr.Get(i), "fds[i]"));
    // The bytes only now: reading `fds` may run JS (getters) that detaches the data's buffer.
    uint8_t* d;
    size_t n;
    if (!GetBytes(info[1], &d, &n) || n == 0)
      throw ArgRangeError(env, "The \"data\" argument must not be empty (fds travel with data)");
    bytes.assign(d, d + n);  // the call outlives this JS turn
  } catch (const Napi::Error& e) {
    ctx->deferred.Reject(e.Value());
    delete ctx;
    return promise;
  }
  SendTsfn tsfn = SendTsfn::New(env, "kvm-sev:send", 0, 1, ctx, [](Napi::Env, void*, SendCtx* c) { delete c; });
  AddonData* adata = GetData(env);
  auto done = std::make_shared<std::atomic<bool>>(false);
  TrackThread(adata, done, std::thread([sock, keep, bytes = std::move(bytes), tsfn, adata, done]() mutable {
                auto* r = new SendResult();
                std::vector<int> fds;
                for (auto& k : keep) fds.push_back(k->fd);
                r->err = PollUntil(adata, *sock, POLLOUT, [&]() -> int {
                  ssize_t k = SendSome(sock->fd, bytes.data(), bytes.size(), r->sent, fds, MSG_NOSIGNAL | MSG_DONTWAIT);
                  if (k < 0) return errno;
                  r->sent += static_cast<size_t>(k);
                  return r->sent < bytes.size() ? kPollAgain : 0;
                });
                // napi_closing: the env is going away and the function must not be released any more.
                if (tsfn.BlockingCall(r) != napi_ok)
                  delete r;
                else
                  tsfn.Release();
                done->store(true);
              }));
  return promise;
}

struct RecvResult {
  int err = 0;
  int acceptedFd = -1;
  std::vector<uint8_t> data;
  std::vector<int> fds;
};

static void Settle(Napi::Env env, Napi::Promise::Deferred* d, RecvResult* r, bool accept) {
  if (r->err) {
    d->Reject(ErrnoError(env, r->err, accept ? "accept" : "recvmsg").Value());
    return;
  }
  if (accept) {
    d->Resolve(NewFdHandle(env, SocketFd(r->acceptedFd, "accepted")));
    return;
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("data", Napi::Buffer<uint8_t>::Copy(env, r->data.data(), r->data.size()));
  Napi::Array fa = Napi::Array::New(env, r->fds.size());
  for (size_t i = 0; i < r->fds.size(); i++) {
    std::string path;
    FdKind k = ClassifyFd(r->fds[i], &path);
    auto ofd = std::make_shared<OwnedFd>(r->fds[i], k, true, path);
    if (k == FdKind::Vm) ofd->vm = std::make_shared<VmState>();
    fa.Set(static_cast<uint32_t>(i), NewFdHandle(env, ofd));
  }
  o.Set("fds", fa);
  d->Resolve(o);
}

struct WaitCtx {
  Napi::Promise::Deferred deferred;
  bool accept;
  AddonData* data;
};

static void WaitCallJs(Napi::Env env, Napi::Function, WaitCtx* ctx, RecvResult* r) {
  if (env != nullptr)
    Settle(env, &ctx->deferred, r, ctx->accept);
  else {
    if (r->acceptedFd >= 0) close(r->acceptedFd);
    for (int fd : r->fds) close(fd);
  }
  delete r;
}
using WaitTsfn = Napi::TypedThreadSafeFunction<WaitCtx, RecvResult, WaitCallJs>;

static Napi::Value StartWait(const Napi::CallbackInfo& info, bool accept) {
  Napi::Env env = info.Env();
  auto* ctx = new WaitCtx{Napi::Promise::Deferred::New(env), accept, GetData(env)};
  Napi::Promise promise = ctx->deferred.Promise();
  std::shared_ptr<OwnedFd> sock;
  size_t maxBytes = 0, maxFds = 0;
  try {
    sock = SocketArg(info[0]);
    if (!accept) {
      maxBytes = static_cast<size_t>(ArgSize(info[1], "maxBytes"));
      maxFds = info[2].IsUndefined() ? kMaxFds : static_cast<size_t>(ArgSize(info[2], "maxFds"));
      if (maxBytes == 0 || maxBytes > (1u << 26))
        throw ArgRangeError(env, "The value of \"maxBytes\" is out of range (1..64 MiB)");
      if (maxFds > kMaxFds) throw ArgRangeError(env, "The value of \"maxFds\" is out of range (0..253)");
    }
  } catch (const Napi::Error& e) {
    ctx->deferred.Reject(e.Value());
    delete ctx;
    return promise;
  }
  WaitTsfn tsfn = WaitTsfn::New(env, accept ? "kvm-sev:accept" : "kvm-sev:recv", 0, 1, ctx,
                                [](Napi::Env, void*, WaitCtx* c) { delete c; });
  AddonData* data = ctx->data;
  auto done = std::make_shared<std::atomic<bool>>(false);
  TrackThread(data, done, std::thread([sock, maxBytes, maxFds, accept, tsfn, data, done]() mutable {
                auto* r = new RecvResult();
                r->err = PollUntil(data, *sock, POLLIN, [&]() -> int {
                  if (accept) {
                    int fd = accept4(sock->fd, nullptr, nullptr, SOCK_CLOEXEC);
                    if (fd < 0) return errno;
                    r->acceptedFd = fd;
                    return 0;
                  }
                  r->data.resize(maxBytes);
                  iovec iov{r->data.data(), maxBytes};
                  std::vector<char> ctl(CMSG_SPACE(sizeof(int) * (maxFds ? maxFds : 1)));
                  msghdr msg{};
                  msg.msg_iov = &iov;
                  msg.msg_iovlen = 1;
                  msg.msg_control = ctl.data();
                  msg.msg_controllen = ctl.size();
                  ssize_t got = recvmsg(sock->fd, &msg, MSG_CMSG_CLOEXEC);
                  if (got < 0) return errno;
                  r->data.resize(static_cast<size_t>(got));
                  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
                    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
                    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                    for (size_t i = 0; i < n; i++) {
                      int fd;
                      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                      r->fds.push_back(fd);
                    }
                  }
                  if (msg.msg_flags & MSG_CTRUNC) {  // fds beyond maxFds were dropped by the kernel: say so
                    for (int fd : r->fds) close(fd);
                    r->fds.clear();
                    return EMSGSIZE;
                  }
                  return 0;
                });
                napi_status st = tsfn.BlockingCall(r);
                if (st != napi_ok) {
                  if (r->acceptedFd >= 0) close(r->acceptedFd);
                  for (int fd : r->fds) close(fd);
                  delete r;
                }
                if (st == napi_ok) tsfn.Release();
                done->store(true);
              }));
  return promise;
}

static Napi::Value Accept(const Napi::CallbackInfo& info) { return StartWait(info, true); }
static Napi::Value RecvFds(const Napi::CallbackInfo& info) { return StartWait(info, false); }

// sendFdsSync(socket, data, fds) → bytes: the same as sendFds, on the calling thread (blocking).
// For short request/reply protocols where the caller waits for the answer anyway (the shared mock
// SEV service's client, whose Backend calls are synchronous).
static Napi::Value SendFdsSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto sock = SocketArg(info[0]);
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw ArgTypeError(env, "The \"data\" argument must be a Uint8Array");
  if (!info[2].IsArray()) throw ArgTypeError(env, "The \"fds\" argument must be an array of FdHandle");
  Napi::Array arr = info[2].As<Napi::Array>();
  if (arr.Length() > kMaxFds) throw ArgRangeError(env, "at most 253 fds per message");
  std::vector<std::shared_ptr<OwnedFd>> keep;
  std::vector<int> fds;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    keep.push_back(UnwrapFd(arr.Get(i), "fds[i]"));
    fds.push_back(keep.back()->fd);
  }
  // The bytes only after the fds: reading them may run JS that detaches the data's buffer. From here
  // on no JS runs until the send returns, so they are used in place.
  uint8_t* bytes;
  size_t size, sent = 0;
  if (!GetBytes(info[1], &bytes, &size) || size == 0)
    throw ArgRangeError(env, "The \"data\" argument must not be empty (fds travel with data)");
  while (sent < size) {
    ssize_t k = SendSome(sock->fd, bytes, size, sent, fds, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) throw ErrnoError(env, errno, "sendmsg");
    sent += static_cast<size_t>(k);
  }
  return Napi::Number::New(env, static_cast<double>(sent));
}

// sameFile(a, b) → boolean: whether two fds of this process refer to the same open file
// (kcmp(2) KCMP_FILE): a VM fd received over SCM_RIGHTS against a dup kept earlier.
static Napi::Value SameFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto a = UnwrapFd(info[0], "a");
  auto b = UnwrapFd(info[1], "b");
  pid_t pid = getpid();
  long r = syscall(SYS_kcmp, pid, pid, 0 /* KCMP_FILE */, a->fd, b->fd);
  if (r < 0) throw ErrnoError(env, errno, "kcmp");
  return Napi::Boolean::New(env, r == 0);
}

void InitUnixSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("socketPair", Napi::Function::New(env, SocketPair, "socketPair"));
  exports.Set("unixListen", Napi::Function::New(env, Listen, "unixListen"));
  exports.Set("unixConnect", Napi::Function::New(env, Connect, "unixConnect"));
  exports.Set("unixAccept", Napi::Function::New(env, Accept, "unixAccept"));
  exports.Set("sendFds", Napi::Function::New(env, SendFds, "sendFds"));
  exports.Set("recvFds", Napi::Function::New(env, RecvFds, "recvFds"));
  exports.Set("sendFdsSync", Napi::Function::New(env, SendFdsSync, "sendFdsSync"));
  exports.Set("sameFile", Napi::Function::New(env, SameFile, "sameFile"));
}

}  // namespace kvmsev
