// Unix sockets with SCM_RIGHTS, so a VMM can hand VM, vCPU and memfd fds to another process.
// Every socket is non-blocking and every call on it says MSG_DONTWAIT (received sockets may be
// blocking in another process): a wait is a poll, never a read that blocks, so two waits on one
// socket cannot leave one stuck in recvmsg/accept4 where close() cannot reach it. Waits (accept,
// recv, a send larger than the socket buffer) run on a short-lived thread of their own, at most
// kMaxSocketThreads per env, and poll with a timeout, so they neither block the event loop nor
// starve the libuv threadpool, and stop when their socket is closed or the env is torn down.
#include <fcntl.h>
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
// Socket waits in flight per env: each is a thread; past this, a new one is refused (a server keeps
// one recv per connection and one accept, so this caps its connections too).
static constexpr size_t kMaxSocketThreads = 128;

// Socket threads are joined at env teardown (they poll `closing` every 100 ms), so none outlives the
// env or the addon (a worker's exit unloads it). Finished ones are reaped as new ones start.
// Throws (a JS error) if the env has kMaxSocketThreads waits already or the system has no thread.
template <typename F>
static void StartTracked(Napi::Env env, AddonData* data, F&& body) {
  std::lock_guard<std::mutex> g(data->threadsMu);
  for (auto it = data->threads.begin(); it != data->threads.end();) {
    if (it->done->load()) {
      it->thread.join();
      it = data->threads.erase(it);
    } else {
      ++it;
    }
  }
  if (data->threads.size() >= kMaxSocketThreads)
    throw CodedError(
        env, "ERR_KVM_SEV_TOO_MANY_WAITS",
        "kvm-sev: " + std::to_string(kMaxSocketThreads) +
            " socket waits (accept, recv, send) are pending in this thread already; settle or cancel some first");
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::thread t = StartThread(env, [body = std::forward<F>(body), done]() mutable {
    body();
    done->store(true);
  });
  data->threads.push_back({std::move(t), std::move(done)});
}

// A socket of another process may be blocking: accept4 has no per-call flag, so the listener is made
// non-blocking (recv and send use MSG_DONTWAIT).
static void MakeNonBlocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0 && !(fl & O_NONBLOCK)) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
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
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
    throw ErrnoError(env, errno, "socketpair");
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(0u, NewFdHandle(env, SocketFd(sv[0], "socketpair")));
  a.Set(1u, NewFdHandle(env, SocketFd(sv[1], "socketpair")));
  return a;
}

static Napi::Value Listen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sockaddr_un a = Address(env, info[0]);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw ErrnoError(env, errno, "socket");
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || listen(fd, 8) < 0) {
    int e = errno;
    close(fd);
    throw ErrnoError(env, e, "bind", nullptr, a.sun_path);
  }
  return NewFdHandle(env, SocketFd(fd, a.sun_path));
}

// unixConnect(path): never waits on the JS thread. A Unix stream connect either completes at once or
// finds the listener's queue full: a blocking connect would then sleep until the listener accepts
// (forever, if it never does); this one answers EAGAIN at once, as Node's net.connect does.
static Napi::Value Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sockaddr_un a = Address(env, info[0]);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw ErrnoError(env, errno, "socket");
  int r;
  do r = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    int e = errno;
    close(fd);
    Napi::Error err = ErrnoError(env, e, "connect", nullptr, a.sun_path);
    if (e == EAGAIN)
      err.Set("hint", Napi::String::New(
                          env, "the listener's queue of connections is full (it is not accepting): try again later"));
    throw err;
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
    if (data->closing || sock.released) return ECANCELED;  // closed while it waited: take nothing
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
  try {
    StartTracked(env, adata, [sock, keep, bytes = std::move(bytes), tsfn, adata]() mutable {
      auto* r = new SendResult();
      std::vector<int> fds;
      for (auto& k : keep) fds.push_back(k->fd);
      r->err = PollUntil(adata, *sock, POLLOUT, [&]() -> int {
        ssize_t k = SendSome(sock->fd, bytes.data(), bytes.size(), r->sent, fds, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0) return errno;
        r->sent += static_cast<size_t>(k);
        return r->sent < bytes.size() ? kPollAgain : 0;
      });
      // The fds go before the promise settles: whoever awaits it may close a VM and unmap its memory.
      keep.clear();
      sock.reset();
      // napi_closing: the env is going away and the function must not be released any more.
      if (tsfn.BlockingCall(r) != napi_ok)
        delete r;
      else
        tsfn.Release();
    });
  } catch (const Napi::Error& e) {
    // No thread: the promise is rejected here (the function's finalizer deletes ctx).
    ctx->deferred.Reject(e.Value());
    tsfn.Release();
  }
  return promise;
}

// What a wait got. Received fds are owned from the moment they arrive (classified, and VM and vCPU
// fds joined to the state of their open file): whatever path drops the result (a rejected promise,
// an env torn down before it could be settled) closes them.
struct RecvResult {
  int err = 0;
  std::shared_ptr<OwnedFd> accepted;
  std::vector<uint8_t> data;
  std::vector<std::shared_ptr<OwnedFd>> fds;
};

static std::shared_ptr<OwnedFd> OwnReceived(int fd) {
  std::string path;
  FdKind k = ClassifyFd(fd, &path);
  auto ofd = std::make_shared<OwnedFd>(fd, k, true, path);
  AdoptFile(ofd);
  return ofd;
}

// One recvmsg (MSG_DONTWAIT) of at most maxBytes and exactly maxFds fds: more fds than asked for
// (the control buffer is rounded up to 8 bytes, so it has room for one more at odd counts) or a
// truncated control message closes them all and answers EMSGSIZE. Returns 0 or an errno.
static int RecvOnce(int fd, size_t maxBytes, size_t maxFds, RecvResult* r) {
  r->data.resize(maxBytes);
  iovec iov{r->data.data(), maxBytes};
  std::vector<char> ctl(maxFds ? CMSG_SPACE(sizeof(int) * maxFds) : 0);
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = maxFds ? ctl.data() : nullptr;
  msg.msg_controllen = ctl.size();
  ssize_t got = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  if (got < 0) return errno;
  r->data.resize(static_cast<size_t>(got));
  std::vector<int> raw;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n; i++) {
      int x;
      memcpy(&x, CMSG_DATA(c) + i * sizeof(int), sizeof x);
      raw.push_back(x);
    }
  }
  if ((msg.msg_flags & MSG_CTRUNC) || raw.size() > maxFds) {  // more fds than asked for: say so
    for (int x : raw) close(x);
    return EMSGSIZE;
  }
  for (int x : raw) r->fds.push_back(OwnReceived(x));
  return 0;
}

static Napi::Object ReceivedObject(Napi::Env env, RecvResult* r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("data", Napi::Buffer<uint8_t>::Copy(env, r->data.data(), r->data.size()));
  Napi::Array fa = Napi::Array::New(env, r->fds.size());
  for (size_t i = 0; i < r->fds.size(); i++) fa.Set(static_cast<uint32_t>(i), NewFdHandle(env, r->fds[i]));
  o.Set("fds", fa);
  return o;
}

static void Settle(Napi::Env env, Napi::Promise::Deferred* d, RecvResult* r, bool accept) {
  if (!r->err && GetData(env)->closing) r->err = ECANCELED;  // the env is going: nobody to hand fds to
  if (r->err) {
    d->Reject(ErrnoError(env, r->err, accept ? "accept" : "recvmsg").Value());
    return;
  }
  if (accept) {
    d->Resolve(NewFdHandle(env, r->accepted));
    return;
  }
  d->Resolve(ReceivedObject(env, r));
}

struct WaitCtx {
  Napi::Promise::Deferred deferred;
  bool accept;
  AddonData* data;
};

static void WaitCallJs(Napi::Env env, Napi::Function, WaitCtx* ctx, RecvResult* r) {
  std::unique_ptr<RecvResult> own(r);  // its fds close unless a handle took them
  if (env != nullptr) Settle(env, &ctx->deferred, r, ctx->accept);
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
  if (accept) MakeNonBlocking(sock->fd);
  WaitTsfn tsfn = WaitTsfn::New(env, accept ? "kvm-sev:accept" : "kvm-sev:recv", 0, 1, ctx,
                                [](Napi::Env, void*, WaitCtx* c) { delete c; });
  AddonData* data = ctx->data;
  try {
    StartTracked(env, data, [sock, maxBytes, maxFds, accept, tsfn, data]() mutable {
      auto* r = new RecvResult();
      r->err = PollUntil(data, *sock, POLLIN, [&]() -> int {
        if (accept) {
          int fd = accept4(sock->fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
          if (fd < 0) return errno == ECONNABORTED ? kPollAgain : errno;
          r->accepted = SocketFd(fd, "accepted");
          return 0;
        }
        return RecvOnce(sock->fd, maxBytes, maxFds, r);
      });
      sock.reset();  // before the promise settles (see SendFds)
      // Not delivered (the env is going away): the result's fds close with it.
      if (tsfn.BlockingCall(r) != napi_ok)
        delete r;
      else
        tsfn.Release();
    });
  } catch (const Napi::Error& e) {
    ctx->deferred.Reject(e.Value());
    tsfn.Release();
  }
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
    ssize_t k = SendSome(sock->fd, bytes, size, sent, fds, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0 && errno == EAGAIN) {  // the socket buffer is full: wait for room (this call blocks by design)
      pollfd p{sock->fd, POLLOUT, 0};
      if (poll(&p, 1, -1) < 0 && errno != EINTR) throw ErrnoError(env, errno, "poll");
      continue;
    }
    if (k < 0) throw ErrnoError(env, errno, "sendmsg");
    sent += static_cast<size_t>(k);
  }
  return Napi::Number::New(env, static_cast<double>(sent));
}

// recvSync(socket, maxBytes, maxFds = 0, timeoutMs = -1) → { data, fds }: one recvFds on the calling
// thread, which waits up to timeoutMs (ETIMEDOUT) for data. For the same synchronous request/reply
// protocols as sendFdsSync; an empty `data` is the peer's end of stream.
static Napi::Value RecvSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto sock = SocketArg(info[0]);
  size_t maxBytes = static_cast<size_t>(ArgSize(info[1], "maxBytes"));
  size_t maxFds = info[2].IsUndefined() ? 0 : static_cast<size_t>(ArgSize(info[2], "maxFds"));
  int64_t timeout = info[3].IsUndefined() ? -1 : static_cast<int64_t>(ArgSize(info[3], "timeoutMs"));
  if (maxBytes == 0 || maxBytes > (1u << 26))
    throw ArgRangeError(env, "The value of \"maxBytes\" is out of range (1..64 MiB)");
  if (maxFds > kMaxFds) throw ArgRangeError(env, "The value of \"maxFds\" is out of range (0..253)");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout < 0 ? 0 : timeout);
  RecvResult r;
  for (;;) {
    int left = -1;
    if (timeout >= 0) {
      auto ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      if (ms < 0) ms = 0;
      left = static_cast<int>(std::min<int64_t>(ms, INT32_MAX));
    }
    pollfd p{sock->fd, POLLIN, 0};
    int n = poll(&p, 1, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw ErrnoError(env, errno, "poll");
    if (n == 0) throw ErrnoError(env, ETIMEDOUT, "recvmsg");
    int e = RecvOnce(sock->fd, maxBytes, maxFds, &r);
    if (e == EAGAIN || e == EINTR) continue;
    if (e) throw ErrnoError(env, e, "recvmsg");
    return ReceivedObject(env, &r);
  }
}

// peerCredentials(socket) → { pid, uid, gid }: who is at the other end of a connected Unix socket
// (SO_PEERCRED: the credentials the peer had when it connected or listened).
static Napi::Value PeerCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto sock = SocketArg(info[0]);
  ucred c{};
  socklen_t len = sizeof c;
  if (getsockopt(sock->fd, SOL_SOCKET, SO_PEERCRED, &c, &len) < 0) throw ErrnoError(env, errno, "getsockopt");
  Napi::Object o = Napi::Object::New(env);
  o.Set("pid", Napi::Number::New(env, c.pid));
  o.Set("uid", Napi::Number::New(env, c.uid));
  o.Set("gid", Napi::Number::New(env, c.gid));
  return o;
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
  exports.Set("recvSync", Napi::Function::New(env, RecvSync, "recvSync"));
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials, "peerCredentials"));
}

}  // namespace kvmsev
