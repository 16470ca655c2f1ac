// One state per open VM or vCPU file in this process, whichever handles refer to it. A VM fd
// received over SCM_RIGHTS (from this thread, a worker or another process) is a new fd of the same
// open file when it came from here: it must see the same memory-slot pins, runner and busy flags,
// or closing the first handle would let JS unmap memory the kernel still maps into the guest.
// Two fds are matched by kcmp(KCMP_FILE), which compares the open files themselves.
#include <linux/kvm.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "common.h"

namespace kvmsev {

namespace {

std::mutex& RegistryMu() {
  static std::mutex mu;
  return mu;
}
// Live VM and vCPU fds of every env of the process (the OwnedFd unregisters before it closes).
std::vector<OwnedFd*>& Registry() {
  static std::vector<OwnedFd*> r;
  return r;
}

// 0 if same file, 1 if not, -errno if kcmp cannot tell (no kcmp in this kernel, or a sandbox).
int SameOpenFile(int a, int b) {
  pid_t pid = getpid();
  long r = syscall(SYS_kcmp, pid, pid, 0 /* KCMP_FILE */, a, b);
  if (r < 0) return -errno;
  return r == 0 ? 0 : 1;
}

// Whether the VM behind a VM or vCPU fd belongs to this process's address space: KVM answers EIO to
// every VM and vCPU ioctl from another mm (virt/kvm/kvm_main.c: kvm_vm_ioctl(), kvm_vcpu_ioctl()).
bool OfThisProcess(const OwnedFd& f) {
  int r;
  if (f.kind == FdKind::Vm)
    r = ::ioctl(f.fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY);
  else
    r = ::ioctl(f.fd, KVM_GET_TSC_KHZ, 0);
  return !(r < 0 && errno == EIO);
}

}  // namespace

void RegisterFile(OwnedFd* fd) {
  std::lock_guard<std::mutex> g(RegistryMu());
  Registry().push_back(fd);
  fd->registered = true;
}

void UnregisterFile(OwnedFd* fd) {
  if (!fd->registered) return;
  std::lock_guard<std::mutex> g(RegistryMu());
  auto& r = Registry();
  for (size_t i = 0; i < r.size(); i++)
    if (r[i] == fd) {
      r[i] = r.back();
      r.pop_back();
      break;
    }
  fd->registered = false;
}

void AdoptFile(const std::shared_ptr<OwnedFd>& fd) {
  if (fd->kind != FdKind::Vm && fd->kind != FdKind::Vcpu) return;
  // All under the lock: two copies of one file adopted at once must not get two states.
  std::lock_guard<std::mutex> g(RegistryMu());
  bool unknown = false;  // kcmp could not compare: the file may be one of ours
  for (OwnedFd* o : Registry()) {
    if (o->kind != fd->kind) continue;
    int same = SameOpenFile(o->fd, fd->fd);
    if (same < 0) unknown = true;
    if (same != 0) continue;
    fd->vm = o->vm;
    fd->vcpu = o->vcpu;
    fd->orphan = o->orphan;
    Registry().push_back(fd.get());
    fd->registered = true;
    return;
  }
  // A file no handle of this process knows. From another process's address space it can do nothing
  // here (KVM answers EIO); from this one, its memory slots may point at memory released since, so
  // nothing is issued on it. Where kcmp cannot tell, a vCPU is not probed (if it were one of ours and
  // running, the probe would wait for the guest) and counts as an orphan.
  fd->orphan = (unknown && fd->kind == FdKind::Vcpu) ? true : OfThisProcess(*fd);
  if (fd->kind == FdKind::Vm)
    fd->vm = std::make_shared<VmState>();
  else
    fd->vcpu = std::make_shared<VcpuState>();
  Registry().push_back(fd.get());
  fd->registered = true;
}

// ---- VcpuState --------------------------------------------------------------------------------

bool VcpuState::BeginIoctl() {
  std::lock_guard<std::mutex> g(mu);
  if (running) return false;
  ioctls++;
  return true;
}

void VcpuState::EndIoctl() {
  {
    std::lock_guard<std::mutex> g(mu);
    ioctls--;
  }
  cv.notify_all();
}

void VcpuState::EnterRun(volatile uint8_t* ie) {
  std::unique_lock<std::mutex> lk(mu);
  cv.wait(lk, [&] { return ioctls == 0; });  // a short ioctl issued just before the run: let it finish
  inKvmRun = true;
  runThread = pthread_self();
  immediateExit = ie;
}

void VcpuState::LeaveRun() {
  std::lock_guard<std::mutex> g(mu);
  inKvmRun = false;
  running = false;
  immediateExit = nullptr;
}

void VcpuState::Kick() {
  std::lock_guard<std::mutex> g(mu);
  if (!inKvmRun) return;
  // immediate_exit covers a kick that lands just before the thread enters KVM_RUN.
  if (immediateExit) *immediateExit = 1;
  pthread_kill(runThread, KickSignal());
}

int KickSignal() { return SIGRTMIN + 6; }

void InstallKickHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(KickSignal(), &sa, nullptr);
  });
}

}  // namespace kvmsev
