/*
 * C baselines for `npm run bench`: the same work as bench/run.ts, straight on the ioctls. Started once
 * by the bench and driven round by round, so its rounds interleave with the JS rounds under the same
 * machine load: it reads one command per line on stdin,
 *   ioctl <n> | exit <n> | exit2 <n> | lifecycle <n> <guest bytes> | sockcopy <bytes> <chunk bytes>
 * and answers one JSON line per command: wall and CPU (getrusage RUSAGE_SELF, user + system, all
 * threads) nanoseconds per operation.
 */
#define _GNU_SOURCE 1
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static double cpu_ns(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e9 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e3;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

/* again: out dx, al; inc al; jmp again   (DX = 0x80) -- the same bytes as bench/run.ts */
static const uint8_t LOOP[] = {0xba, 0x80, 0x00, 0xb0, 0x00, 0xee, 0xfe, 0xc0, 0xeb, 0xfb};
/* out 0x80 once, then hlt */
static const uint8_t FIRST_EXIT[] = {0xba, 0x80, 0x00, 0xee, 0xf4};

static int kvm;

struct vm {
  int vm, vcpu;
  void *mem;
  size_t mem_size;
  struct kvm_run *run;
  size_t run_size;
};

static void vm_create(struct vm *v, const uint8_t *code, size_t len, size_t mem_size) {
  v->vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (v->vm < 0) die("KVM_CREATE_VM");
  v->mem_size = mem_size;
  v->mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (v->mem == MAP_FAILED) die("mmap");
  memcpy((uint8_t *)v->mem + 0x1000, code, len);
  struct kvm_userspace_memory_region r = {
      .slot = 0, .guest_phys_addr = 0, .memory_size = mem_size, .userspace_addr = (uint64_t)v->mem};
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
  munmap(v->mem, v->mem_size);
}

static volatile unsigned long sink;

/* n port-I/O exits, each checked and its byte read like the JS side does */
static void exits(struct vm *v, long n) {
  for (long i = 0; i < n; i++) {
    if (ioctl(v->vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
    if (v->run->exit_reason != KVM_EXIT_IO || v->run->io.port != 0x80) die("unexpected exit");
    sink += ((uint8_t *)v->run)[v->run->io.data_offset];
  }
}

struct exit_job {
  struct vm v;
  long n;
};

static void *exit_thread(void *p) {
  struct exit_job *j = p;
  exits(&j->v, j->n);
  return NULL;
}

struct copy_job {
  int fd;
  const uint8_t *src;
  size_t bytes, chunk;
};

static void *copy_writer(void *p) {
  struct copy_job *j = p;
  for (size_t off = 0; off < j->bytes;) {
    size_t want = j->bytes - off < j->chunk ? j->bytes - off : j->chunk;
    ssize_t w = write(j->fd, j->src + off, want);
    if (w <= 0) die("write");
    off += (size_t)w;
  }
  return NULL;
}

int main(void) {
  kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("/dev/kvm");
  char line[256];
  while (fgets(line, sizeof line, stdin)) {
    char what[32];
    long n = 0, a = 0;
    if (sscanf(line, "%31s %ld %ld", what, &n, &a) < 2 || n <= 0) {
      fprintf(stderr, "bad command: %s", line);
      return 2;
    }
    long ops = n;
    double t0, c0;
    if (!strcmp(what, "ioctl")) {
      t0 = now_ns(), c0 = cpu_ns();
      for (long i = 0; i < n; i++) sink += ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY);
    } else if (!strcmp(what, "exit")) {
      struct vm v;
      vm_create(&v, LOOP, sizeof LOOP, 0x10000);
      exits(&v, 1000); /* warm up */
      t0 = now_ns(), c0 = cpu_ns();
      exits(&v, n);
      double t = now_ns() - t0, c = cpu_ns() - c0;
      vm_destroy(&v);
      printf("{\"ns\":%.1f,\"cpuNs\":%.1f}\n", t / ops, c / ops);
      fflush(stdout);
      continue;
    } else if (!strcmp(what, "exit2")) {
      /* two vCPUs (one VM each), one thread each; ns per exit of the two together */
      struct exit_job j[2];
      pthread_t th[2];
      for (int k = 0; k < 2; k++) {
        vm_create(&j[k].v, LOOP, sizeof LOOP, 0x10000);
        exits(&j[k].v, 1000);
        j[k].n = n;
      }
      t0 = now_ns(), c0 = cpu_ns();
      for (int k = 0; k < 2; k++) pthread_create(&th[k], NULL, exit_thread, &j[k]);
      for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
      double t = now_ns() - t0, c = cpu_ns() - c0;
      for (int k = 0; k < 2; k++) vm_destroy(&j[k].v);
      ops = 2 * n;
      printf("{\"ns\":%.1f,\"cpuNs\":%.1f}\n", t / ops, c / ops);
      fflush(stdout);
      continue;
    } else if (!strcmp(what, "lifecycle")) {
      size_t size = a > 0 ? (size_t)a : 0x10000;
      t0 = now_ns(), c0 = cpu_ns();
      for (long i = 0; i < n; i++) {
        struct vm v;
        vm_create(&v, FIRST_EXIT, sizeof FIRST_EXIT, size);
        if (ioctl(v.vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
        if (v.run->exit_reason != KVM_EXIT_IO) die("unexpected exit");
        vm_destroy(&v);
      }
    } else if (!strcmp(what, "sockcopy")) {
      /* n bytes of touched guest memory (a memfd) through a Unix stream socket in chunks of a bytes,
         received straight into a fresh mapping: the copy-based handoff done as fast as C does it */
      size_t bytes = (size_t)n, chunk = a > 0 ? (size_t)a : 1 << 20;
      int mfd = memfd_create("bench-src", MFD_CLOEXEC);
      if (mfd < 0 || ftruncate(mfd, (off_t)bytes) < 0) die("memfd");
      uint8_t *src = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
      if (src == MAP_FAILED) die("mmap src");
      memset(src, 0xa5, bytes);
      int sv[2];
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) die("socketpair");
      t0 = now_ns(), c0 = cpu_ns();
      uint8_t *dst = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (dst == MAP_FAILED) die("mmap dst");
      struct copy_job j = {sv[0], src, bytes, chunk};
      pthread_t th;
      pthread_create(&th, NULL, copy_writer, &j);
      for (size_t got = 0; got < bytes;) {
        ssize_t r = read(sv[1], dst + got, bytes - got < chunk ? bytes - got : chunk);
        if (r <= 0) die("read");
        got += (size_t)r;
      }
      pthread_join(th, NULL);
      double t = now_ns() - t0, c = cpu_ns() - c0;
      if (dst[bytes - 1] != 0xa5) die("copy");
      munmap(dst, bytes);
      munmap(src, bytes);
      close(mfd), close(sv[0]), close(sv[1]);
      printf("{\"ns\":%.1f,\"cpuNs\":%.1f}\n", t, c);
      fflush(stdout);
      continue;
    } else {
      fprintf(stderr, "unknown bench %s\n", what);
      return 2;
    }
    double t = now_ns() - t0, c = cpu_ns() - c0;
    printf("{\"ns\":%.1f,\"cpuNs\":%.1f}\n", t / ops, c / ops);
    fflush(stdout);
  }
  return 0;
}
