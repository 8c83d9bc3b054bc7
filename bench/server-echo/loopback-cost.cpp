/* server-echo-loopback: what one send() and one recv() of a small message
 * cost on a loopback TCP connection here, the kernel's part of every frame
 * the server relays (docs/performance.md). PAIRS connected socket pairs on
 * 127.0.0.1 (TCP_NODELAY, as the server's); each round sends BYTES on every
 * pair in turn, then receives them on every pair in turn, on one thread
 * that never sleeps (no wake-up is paid: the receiving end is not waited
 * on). With many pairs each socket's state has left the caches by the time
 * its turn comes again, as in a server with that many calls. Prints
 *   LOOPBACK pairs=<n> bytes=<b> send_us=<cpu per send> recv_us=<cpu per recv>
 * (the thread's CPU time, CLOCK_THREAD_CPUTIME_ID, over each half of each round)
 * With WAKE=1 a second thread receives, asleep in epoll_wait, and the
 * sender waits 1 ms (spinning) after each round, so that the round's first
 * send finds it asleep and wakes it, as the server's sends wake the
 * emulator and the model:
 *   LOOPBACK pairs=<n> bytes=<b> wake send_us=<cpu per send, the sender's>
 * usage: server-echo-loopback [PAIRS=1] [BYTES=300] [ROUNDS=0: 20000/PAIRS, 2000/PAIRS with WAKE] [WAKE=0] */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>

namespace {
double thread_cpu_us() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

bool fail(const char *what) {
  fprintf(stderr, "server-echo-loopback: %s: %s\n", what, strerror(errno));
  return false;
}

/* @out on every socket of @tx in turn; the CPU time that took (µs), or
 * -1 when a send failed */
double send_round(const std::vector<int> &tx, const std::vector<char> &out) {
  double t0 = thread_cpu_us();
  for (int fd : tx)
    if (send(fd, out.data(), out.size(), 0) != static_cast<ssize_t>(out.size()))
      return fail("send"), -1;
  return thread_cpu_us() - t0;
}

/* a connected pair on 127.0.0.1: @a sends, @b receives */
bool make_pair(int listener, const sockaddr_in &addr, int &a, int &b) {
  a = socket(AF_INET, SOCK_STREAM, 0);
  if (a < 0)
    return fail("socket");
  if (connect(a, reinterpret_cast<const sockaddr *>(&addr), sizeof addr) != 0)
    return fail("connect");
  b = accept(listener, nullptr, nullptr);
  if (b < 0)
    return fail("accept");
  int one = 1;
  setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return true;
}
} // namespace

int main(int argc, char **argv) {
  int pairs = argc > 1 ? atoi(argv[1]) : 1;
  int bytes = argc > 2 ? atoi(argv[2]) : 300;
  bool wake = argc > 4 && atoi(argv[4]) != 0;
  int rounds = argc > 3 ? atoi(argv[3]) : 0; /* 0: the default */
  if (rounds == 0 && pairs > 0)
    rounds = (wake ? 2000 : 20000) / pairs + 1;
  if (pairs < 1 || pairs > 2000 || bytes < 1 || bytes > 16384 || rounds < 1 || rounds > 1000000) {
    fprintf(stderr, "usage: %s [PAIRS 1-2000] [BYTES 1-16384] [ROUNDS 0-1000000, 0: the default] [WAKE 0|1]\n", argv[0]);
    return 2;
  }
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (listener < 0 || bind(listener, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr *>(&addr), &len) != 0 || listen(listener, 64) != 0) {
    fail("listen on 127.0.0.1");
    return 1;
  }
  std::vector<int> tx(static_cast<size_t>(pairs)), rx(static_cast<size_t>(pairs));
  for (int i = 0; i < pairs; i++)
    if (!make_pair(listener, addr, tx[static_cast<size_t>(i)], rx[static_cast<size_t>(i)]))
      return 1;
  std::vector<char> out(static_cast<size_t>(bytes), 'x'), in(static_cast<size_t>(bytes));
  if (wake) {
    /* the receiver: asleep in epoll_wait until a message comes, drains it */
    int ep = epoll_create1(0);
    for (int fd : rx) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    std::atomic<long> received{0};
    long expected = static_cast<long>(pairs) * rounds * bytes;
    std::thread receiver([&] {
      std::vector<char> buf(65536);
      epoll_event evs[64];
      while (received.load() < expected) {
        int n = epoll_wait(ep, evs, 64, 1000);
        if (n <= 0)
          break; /* nothing for a second: the sender has failed */
        for (int i = 0; i < n; i++) {
          ssize_t got = recv(evs[i].data.fd, buf.data(), buf.size(), MSG_DONTWAIT);
          if (got > 0)
            received += got;
        }
      }
    });
    double send_us = 0;
    bool ok = true;
    for (int r = 0; r < rounds && ok; r++) {
      double us = send_round(tx, out);
      ok = us >= 0;
      if (r > 0)
        send_us += us;
      /* 1 ms for the receiver to fall asleep again; spinning, not sleeping:
       * the first send after a sleep of the sender's own costs much more
       * here (the wake-up bench), and that is not what is measured */
      timespec start, now;
      clock_gettime(CLOCK_MONOTONIC, &start);
      do
        clock_gettime(CLOCK_MONOTONIC, &now);
      while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) < 1000000L);
    }
    receiver.join(); /* within a second of the last message, or of a failed send */
    close(ep);
    if (!ok)
      return 1;
    double ops = static_cast<double>(pairs) * (rounds > 1 ? rounds - 1 : 1);
    printf("LOOPBACK pairs=%d bytes=%d wake send_us=%.2f\n", pairs, bytes, send_us / ops);
    return 0;
  }
  double send_us = 0, recv_us = 0;
  for (int r = 0; r < rounds; r++) {
    double us = send_round(tx, out);
    if (us < 0)
      return 1;
    double t1 = thread_cpu_us();
    for (int fd : rx) {
      size_t got = 0;
      while (got < out.size()) {
        ssize_t n = recv(fd, in.data() + got, out.size() - got, 0);
        if (n <= 0)
          return fail("recv"), 1;
        got += static_cast<size_t>(n);
      }
    }
    double t2 = thread_cpu_us();
    if (r > 0) { /* the first round warms up */
      send_us += us;
      recv_us += t2 - t1;
    }
  }
  double ops = static_cast<double>(pairs) * (rounds > 1 ? rounds - 1 : 1);
  printf("LOOPBACK pairs=%d bytes=%d send_us=%.2f recv_us=%.2f\n", pairs, bytes, send_us / ops, recv_us / ops);
  for (int i = 0; i < pairs; i++) {
    close(tx[static_cast<size_t>(i)]);
    close(rx[static_cast<size_t>(i)]);
  }
  close(listener);
  return 0;
}
