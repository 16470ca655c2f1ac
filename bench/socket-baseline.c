/*
 * The socket-speed baseline of `npm run bench:migration`: `socket-baseline <bytes>` sends that many
 * bytes from a child process to its parent over TCP on loopback (the transport live migration uses),
 * in 1 MiB writes, straight into a fresh anonymous mapping of that size (as a migration target's new
 * guest memory is: its pages fault in as they arrive), and prints the receiver's wall seconds. It is
 * the fastest fair way to move the shared pages' plaintext from one process's memory to another's: no
 * framing, no checksum, no copy beside the socket's.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  long long total = atoll(argv[1]);
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1) || getsockname(l, (struct sockaddr *)&a, &al)) return 1;
  static char buf[1 << 20];
  memset(buf, 0x5a, sizeof buf);
  pid_t p = fork();
  if (p == 0) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *)&a, sizeof a)) _exit(1);
    for (long long left = total; left > 0;) {
      ssize_t w = write(s, buf, left < (long long)sizeof buf ? left : (long long)sizeof buf);
      if (w <= 0) _exit(1);
      left -= w;
    }
    close(s);
    _exit(0);
  }
  int c = accept(l, NULL, NULL);
  char *dst = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (dst == MAP_FAILED) return 1;
  double t0 = now();
  long long got = 0;
  for (ssize_t r; got < total && (r = read(c, dst + got, total - got > (1 << 20) ? (1 << 20) : total - got)) > 0;) got += r;
  double t1 = now();
  int st;
  waitpid(p, &st, 0);
  if (got != total || !WIFEXITED(st) || WEXITSTATUS(st)) return 1;
  printf("%.6f\n", t1 - t0);
  return 0;
}
