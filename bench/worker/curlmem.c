// Per-transfer memory of libcurl with llmspool's easy-handle options.
// Usage: curlmem URL N   env: BUF=1024 MAXCONNECTS=10000 FRESH=0 FORBID=0 H2PK=0 MULTIPLEX=1 MAXSTREAMS=100
// Drives a multi handle with curl_multi_socket_action over epoll (like CurlLoop), waits until every
// transfer's request is sent (CURLINFO_REQUEST_SIZE>0) or the server reports them, then prints RSS.
#define _GNU_SOURCE
#include <curl/curl.h>
#include <sys/epoll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <malloc.h>
#include <time.h>
#include <mcheck.h>

static int ep; static long timeout_ms = -1;
static long envl(const char *k, long d) { const char *v = getenv(k); return v && *v ? atol(v) : d; }
static long status_kb(const char *key) {
  FILE *f = fopen("/proc/self/status", "r"); char line[256]; long v = -1; size_t n = strlen(key);
  while (fgets(line, sizeof line, f)) if (!strncmp(line, key, n)) { v = atol(line + n + 1); break; }
  fclose(f); return v;
}
static int sockcb(CURL *e, curl_socket_t s, int what, void *u, void *sp) {
  struct epoll_event ev = {0}; ev.data.fd = s;
  if (what == CURL_POLL_REMOVE) { epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL); return 0; }
  ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
  if (epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev) != 0) epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
  return 0;
}
static int timercb(CURLM *m, long t, void *u) { timeout_ms = t; return 0; }
static size_t wcb(char *p, size_t s, size_t n, void *u) { return s * n; }
static size_t hcb(char *p, size_t s, size_t n, void *u) { return s * n; }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

int main(int argc, char **argv) {
  const char *url = argv[1]; int N = atoi(argv[2]);
  const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"fake:latency=60000\"}]}";
  curl_global_init(CURL_GLOBAL_ALL);
  if (getenv("MALLOC_TRACE")) mtrace();
  ep = epoll_create1(EPOLL_CLOEXEC);
  CURLM *m = curl_multi_init();
  curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, sockcb);
  curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, timercb);
  curl_multi_setopt(m, CURLMOPT_PIPELINING, envl("MULTIPLEX", 1) ? CURLPIPE_MULTIPLEX : CURLPIPE_NOTHING);
  curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, envl("MAXHOST", 0));
  curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
  curl_multi_setopt(m, CURLMOPT_MAX_CONCURRENT_STREAMS, envl("MAXSTREAMS", 100));
  curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, envl("MAXCONNECTS", 10000));
  malloc_trim(0);
  long rss0 = status_kb("VmRSS:"); struct mallinfo2 mi0 = mallinfo2();
  CURL **h = calloc(N, sizeof *h); char errbuf[CURL_ERROR_SIZE];
  long h2pk = envl("H2PK", 0);
  struct epoll_event evs[1024]; int running = N;
  for (int i = 0; i < N; i++) {
    if (i == 1 && envl("STAGGER", 0)) { // let the first transfer open (and learn to multiplex) the connection
      double ts = now(); long rs = 0;
      while (rs == 0 && now() - ts < 10) { int n = epoll_wait(ep, evs, 1024, 50);
        if (n == 0) curl_multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &running);
        for (int k = 0; k < n; k++) curl_multi_socket_action(m, evs[k].data.fd, (evs[k].events & EPOLLIN ? CURL_CSELECT_IN : 0) | (evs[k].events & EPOLLOUT ? CURL_CSELECT_OUT : 0), &running);
        curl_easy_getinfo(h[0], CURLINFO_REQUEST_SIZE, &rs); }
    }
    CURL *e = curl_easy_init(); h[i] = e;
    char *eb = calloc(1, CURL_ERROR_SIZE);           // per-transfer error buffer, as Transfer.swift
    size_t bl = strlen(body); char *b = malloc(bl);  memcpy(b, body, bl); // per-transfer body copy
    curl_easy_setopt(e, CURLOPT_PRIVATE, b);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, eb);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, h2pk ? (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE : (long)CURL_HTTP_VERSION_2TLS);
    if (envl("PIPEWAIT", 0)) curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 600000L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    if (getenv("CAINFO")) curl_easy_setopt(e, CURLOPT_CAINFO, getenv("CAINFO"));
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, envl("BUF", 1024));
    curl_easy_setopt(e, CURLOPT_USERAGENT, "llmspool");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, wcb);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, hcb);
    if (!envl("GET", 0)) {
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)bl);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, b); }
    if (envl("VERBOSE", 0)) curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
    if (envl("UPBUF", 0)) curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, envl("UPBUF", 0));
    if (envl("FRESH", 0)) curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    if (envl("FORBID", 0)) curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    struct curl_slist *l = NULL;
    l = curl_slist_append(l, "Content-Type: application/json");
    l = curl_slist_append(l, "Accept: application/json");
    l = curl_slist_append(l, "Expect:");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, l);
    curl_multi_add_handle(m, e);
  }
  long rss_added = status_kb("VmRSS:"); struct mallinfo2 mi_added = mallinfo2();
  double t0 = now(), last_check = 0; int sent = 0;
  while (now() - t0 < envl("MAXT", 120)) {
    int w = timeout_ms < 0 ? 200 : (timeout_ms > 200 ? 200 : (int)timeout_ms);
    int n = epoll_wait(ep, evs, 1024, w);
    if (n == 0 || timeout_ms == 0) curl_multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &running);
    for (int i = 0; i < n; i++) {
      int f = (evs[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) | (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) | (evs[i].events & (EPOLLERR|EPOLLHUP) ? CURL_CSELECT_ERR : 0);
      curl_multi_socket_action(m, evs[i].data.fd, f, &running);
    }
    int left; CURLMsg *msg; while ((msg = curl_multi_info_read(m, &left))) if (msg->msg == CURLMSG_DONE) { static int k; if (k++ < 3) fprintf(stderr, "done early: %s\n", curl_easy_strerror(msg->data.result)); }
    if (now() - last_check > 0.5) {
      last_check = now(); sent = 0;
      for (int i = 0; i < N; i++) { long rs = 0; curl_easy_getinfo(h[i], CURLINFO_REQUEST_SIZE, &rs); if (rs > 0) sent++; }
      if (sent == N) break;
    }
  }
  double tsent = now() - t0;
  // settle for 2 s, keep servicing
  double t1 = now(); while (now() - t1 < 2) { int n = epoll_wait(ep, evs, 1024, 100); for (int i = 0; i < n; i++) curl_multi_socket_action(m, evs[i].data.fd, CURL_CSELECT_IN, &running); }
  long nconn = 0; // count distinct local ports? use CURLINFO_NUM_CONNECTS summed
  for (int i = 0; i < N; i++) { long c = 0; curl_easy_getinfo(h[i], CURLINFO_NUM_CONNECTS, &c); nconn += c; }
  long rss = status_kb("VmRSS:"); struct mallinfo2 mi = mallinfo2();
  long fds = 0; { FILE *p = popen("ls /proc/self/fd | wc -l", "r"); fscanf(p, "%ld", &fds); pclose(p); }
  printf("N=%d sent=%d in %.1fs conns=%ld fds=%ld rss0=%ld rss_added=%ld rss=%ld KB | heap_inuse0=%zu heap_inuse=%zu heap_arena=%zu heap_free=%zu mmap=%zu KB | per-transfer: rss %.2f KB, inuse %.2f KB\n",
    N, sent, tsent, nconn, fds, rss0, rss_added, rss, mi0.uordblks/1024, mi.uordblks/1024, (mi.arena)/1024, mi.fordblks/1024, mi.hblkhd/1024,
    (rss - rss0) / (double)N, (double)(mi.uordblks - mi0.uordblks) / 1024 / N);
  printf("after add_handle only: rss %.2f KB, inuse %.2f KB per transfer\n", (rss_added - rss0)/(double)N, (double)(mi_added.uordblks - mi0.uordblks)/1024/N);
  fflush(stdout);
  _exit(0);
}
