/*
 * C baselines for bench/page-states.ts, straight on the ioctls, running the guest code given in hex:
 *   pio      KVM_RUN until a port-I/O exit on the guest's port, read the byte (bench/baseline.c's exit)
 *   doorbell the hybrid backend's EMULATED hypercall path (lib/backends/hybrid/common/hypercall-doorbell.ts):
 *            the OUT exit, KVM_GET_REGS for the hypercall's registers, an answer, KVM_RUN with
 *            immediate_exit to complete the OUT, KVM_GET_REGS + KVM_SET_REGS to put the answer in RAX
 * Usage: page-states-baseline <pio|doorbell> <iterations> <code-hex>; prints {"nsPerOp": n}.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

static volatile unsigned long sink;

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s <pio|doorbell> <iterations> <code-hex>\n", argv[0]);
    return 2;
  }
  const char *what = argv[1];
  long n = atol(argv[2]);
  uint8_t code[256];
  size_t len = strlen(argv[3]) / 2;
  if (len > sizeof code) return 2;
  for (size_t i = 0; i < len; i++) sscanf(argv[3] + 2 * i, "%2hhx", &code[i]);

  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("/dev/kvm");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  uint8_t *mem = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) die("mmap");
  memcpy(mem + 0x1000, code, len);
  struct kvm_userspace_memory_region r = {.slot = 0, .guest_phys_addr = 0, .memory_size = 0x10000,
                                          .userspace_addr = (uint64_t)mem};
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) die("KVM_SET_USER_MEMORY_REGION");
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) die("KVM_CREATE_VCPU");
  size_t run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) die("mmap kvm_run");
  struct kvm_sregs s;
  if (ioctl(vcpu, KVM_GET_SREGS, &s) < 0) die("KVM_GET_SREGS");
  s.cs.base = 0, s.cs.selector = 0, s.ds.base = 0, s.ds.selector = 0, s.es.base = 0, s.es.selector = 0;
  s.fs.base = 0, s.fs.selector = 0, s.gs.base = 0, s.gs.selector = 0, s.ss.base = 0, s.ss.selector = 0;
  if (ioctl(vcpu, KVM_SET_SREGS, &s) < 0) die("KVM_SET_SREGS");
  struct kvm_regs regs;
  if (ioctl(vcpu, KVM_GET_REGS, &regs) < 0) die("KVM_GET_REGS");
  regs.rip = 0x1000, regs.rsp = 0x8000, regs.rflags = 2;
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");

  int doorbell = !strcmp(what, "doorbell");
  double t0 = 0;
  for (long i = -1000; i < n; i++) { /* 1000 rounds of warm-up */
    if (i == 0) t0 = now_ns();
    if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
    if (run->exit_reason != KVM_EXIT_IO) die("unexpected exit");
    sink += ((uint8_t *)run)[run->io.data_offset];
    if (!doorbell) continue;
    if (ioctl(vcpu, KVM_GET_REGS, &regs) < 0) die("KVM_GET_REGS");
    /* the VMM's answer: the range checks a tracker does, nothing more */
    uint64_t ret = (regs.rax == 12 && !(regs.rbx & 0xfff) && regs.rcx && !(regs.rdx & ~0x1full)) ? 0 : (uint64_t)-22;
    run->immediate_exit = 1;
    if (ioctl(vcpu, KVM_RUN, 0) == 0 || errno != EINTR) die("KVM_RUN (immediate_exit)");
    run->immediate_exit = 0;
    if (ioctl(vcpu, KVM_GET_REGS, &regs) < 0) die("KVM_GET_REGS");
    regs.rax = ret;
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
  }
  printf("{\"bench\":\"%s\",\"nsPerOp\":%.1f}\n", what, (now_ns() - t0) / n);
  return (int)(sink & 0);
}
