/*
 * C baselines for `npm run bench`: the same work as bench/run.ts, straight on the ioctls.
 * Usage: baseline <ioctl|exit|lifecycle> <iterations> <rounds>; prints one JSON line with the
 * nanoseconds per operation of each round.
 */
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

/* again: out dx, al; inc al; jmp again   (DX = 0x80) -- the same bytes as bench/run.ts */
static const uint8_t LOOP[] = {0xba, 0x80, 0x00, 0xb0, 0x00, 0xee, 0xfe, 0xc0, 0xeb, 0xfb};
/* out 0x80 once, then hlt */
static const uint8_t FIRST_EXIT[] = {0xba, 0x80, 0x00, 0xee, 0xf4};

struct vm {
  int vm, vcpu;
  void *mem;
  struct kvm_run *run;
  size_t run_size;
};

static void vm_create(int kvm, struct vm *v, const uint8_t *code, size_t len) {
  v->vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (v->vm < 0) die("KVM_CREATE_VM");
  v->mem = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (v->mem == MAP_FAILED) die("mmap");
  memcpy((uint8_t *)v->mem + 0x1000, code, len);
  struct kvm_userspace_memory_region r = {.slot = 0, .guest_phys_addr = 0, .memory_size = 0x10000,
                                          .userspace_addr = (uint64_t)v->mem};
  if (ioctl(v->vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) die("KVM_SET_USER_MEMORY_REGION");
  v->vcpu = ioctl(v->vm, KVM_CREATE_VCPU, 0);
  if (v->vcpu < 0) die("KVM_CREATE_VCPU");
  v->run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0);
  if (v->run == MAP_FAILED) die("mmap kvm_run");
  struct kvm_sregs s;
  if (ioctl(v->vcpu, KVM_GET_SREGS, &s) < 0) die("KVM_GET_SREGS");
  s.cs.base = 0, s.cs.selector = 0, s.ds.base = 0, s.ds.selector = 0, s.es.base = 0, s.es.selector = 0;
  s.fs.base = 0, s.fs.selector = 0, s.gs.base = 0, s.gs.selector = 0, s.ss.base = 0, s.ss.selector = 0;
  if (ioctl(v->vcpu, KVM_SET_SREGS, &s) < 0) die("KVM_SET_SREGS");
  struct kvm_regs regs;
  if (ioctl(v->vcpu, KVM_GET_REGS, &regs) < 0) die("KVM_GET_REGS");
  regs.rip = 0x1000, regs.rsp = 0x8000, regs.rflags = 2;
  if (ioctl(v->vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
}

static void vm_destroy(struct vm *v) {
  munmap(v->run, v->run_size);
  close(v->vcpu);
  close(v->vm);
  munmap(v->mem, 0x10000);
}

static volatile unsigned long sink;

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s <ioctl|exit|lifecycle> <iterations> <rounds>\n", argv[0]);
    return 2;
  }
  const char *what = argv[1];
  long n = atol(argv[2]), rounds = atol(argv[3]);
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("/dev/kvm");
  printf("{\"bench\":\"%s\",\"nsPerOp\":[", what);
  for (long r = 0; r < rounds; r++) {
    double ns = 0;
    if (!strcmp(what, "ioctl")) {
      double t0 = now_ns();
      for (long i = 0; i < n; i++) sink += ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY);
      ns = (now_ns() - t0) / n;
    } else if (!strcmp(what, "exit")) {
      struct vm v;
      vm_create(kvm, &v, LOOP, sizeof LOOP);
      for (int i = 0; i < 1000; i++) ioctl(v.vcpu, KVM_RUN, 0); /* warm up */
      double t0 = now_ns();
      for (long i = 0; i < n; i++) {
        if (ioctl(v.vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
        /* handle the exit like the JS side does: check it is our port and read the byte */
        if (v.run->exit_reason != KVM_EXIT_IO || v.run->io.port != 0x80) die("unexpected exit");
        sink += ((uint8_t *)v.run)[v.run->io.data_offset];
      }
      ns = (now_ns() - t0) / n;
      vm_destroy(&v);
    } else if (!strcmp(what, "lifecycle")) {
      double t0 = now_ns();
      for (long i = 0; i < n; i++) {
        struct vm v;
        vm_create(kvm, &v, FIRST_EXIT, sizeof FIRST_EXIT);
        if (ioctl(v.vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
        if (v.run->exit_reason != KVM_EXIT_IO) die("unexpected exit");
        vm_destroy(&v);
      }
      ns = (now_ns() - t0) / n;
    } else {
      fprintf(stderr, "unknown bench %s\n", what);
      return 2;
    }
    printf("%s%.1f", r ? "," : "", ns);
    fflush(stdout);
  }
  printf("]}\n");
  return 0;
}
