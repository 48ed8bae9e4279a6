#define _GNU_SOURCE
#include "CCurlShim.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int global_result = -1;
static void global_init(void) { global_result = (int)curl_global_init(CURL_GLOBAL_ALL); }

int llmspool_curl_global_init(void) {
    pthread_once(&global_once, global_init);
    return global_result;
}

int llmspool_curl_easy_setopt_long(void *easy, int option, long value) {
    return (int)curl_easy_setopt(easy, (CURLoption)option, value);
}

int llmspool_curl_easy_setopt_pointer(void *easy, int option, const void *value) {
    return (int)curl_easy_setopt(easy, (CURLoption)option, value);
}

int llmspool_curl_easy_setopt_off_t(void *easy, int option, int64_t value) {
    return (int)curl_easy_setopt(easy, (CURLoption)option, (curl_off_t)value);
}

int llmspool_curl_easy_setopt_write_callback(void *easy, int option,
                                             size_t (*callback)(char *, size_t, size_t, void *)) {
    return (int)curl_easy_setopt(easy, (CURLoption)option, (curl_write_callback)callback);
}

int llmspool_curl_multi_setopt_long(void *multi, int option, long value) {
    return (int)curl_multi_setopt(multi, (CURLMoption)option, value);
}

int llmspool_curl_multi_setopt_pointer(void *multi, int option, void *value) {
    return (int)curl_multi_setopt(multi, (CURLMoption)option, value);
}

int llmspool_curl_multi_setopt_socket_callback(void *multi, int (*callback)(void *, int, int, void *, void *)) {
    return (int)curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, (curl_socket_callback)callback);
}

int llmspool_curl_multi_setopt_timer_callback(void *multi, int (*callback)(void *, long, void *)) {
    return (int)curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, (curl_multi_timer_callback)callback);
}

int llmspool_curl_easy_getinfo_long(void *easy, int info, long *value) {
    return (int)curl_easy_getinfo(easy, (CURLINFO)info, value);
}

int llmspool_curl_easy_getinfo_pointer(void *easy, int info, void **value) {
    return (int)curl_easy_getinfo(easy, (CURLINFO)info, value);
}

int llmspool_curl_easy_getinfo_off_t(void *easy, int info, int64_t *value) {
    curl_off_t v = 0;
    int rc = (int)curl_easy_getinfo(easy, (CURLINFO)info, &v);
    *value = (int64_t)v;
    return rc;
}

const int llmspool_curl_socket_timeout = CURL_SOCKET_TIMEOUT;
const int llmspool_curl_error_size = CURL_ERROR_SIZE;

int llmspool_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int llmspool_epoll_watch(int epfd, int fd, int readable, int writable) {
    struct epoll_event ev = {0};
    ev.events = (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0);
    ev.data.fd = fd;
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) == 0) return 0;
    if (errno != ENOENT) return -1;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

int llmspool_epoll_unwatch(int epfd, int fd) {
    struct epoll_event ev = {0};
    if (epoll_ctl(epfd, EPOLL_CTL_DEL, fd, &ev) == 0) return 0;
    return (errno == ENOENT || errno == EBADF) ? 0 : -1;
}

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int llmspool_epoll_wait(int epfd, int *fds, int *flags, int max, int timeout_ms) {
    struct epoll_event events[256];
    if (max > 256) max = 256;
    long long deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    int n;
    for (;;) {
        n = epoll_wait(epfd, events, max, timeout_ms);
        if (n >= 0 || errno != EINTR) break;
        if (deadline >= 0) {
            long long left = deadline - now_ms();
            timeout_ms = left > 0 ? (int)left : 0;
        }
    }
    for (int i = 0; i < n; i++) {
        uint32_t e = events[i].events;
        fds[i] = events[i].data.fd;
        flags[i] = ((e & EPOLLIN) ? 1 : 0) | ((e & EPOLLOUT) ? 2 : 0) | ((e & (EPOLLERR | EPOLLHUP)) ? 4 : 0);
    }
    return n;
}

int llmspool_curl_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

void llmspool_eventfd_signal(int fd) {
    uint64_t one = 1;
    // EAGAIN means the counter is saturated: a wake-up is already pending.
    while (write(fd, &one, sizeof one) < 0 && errno == EINTR) {}
}

void llmspool_eventfd_drain(int fd) {
    uint64_t value;
    while (read(fd, &value, sizeof value) < 0 && errno == EINTR) {}
}

int llmspool_curl_errno(void) { return errno; }

void llmspool_curl_name_thread(const char *name) { (void)pthread_setname_np(pthread_self(), name); }

int llmspool_curl_gettid(void) { return (int)gettid(); }
