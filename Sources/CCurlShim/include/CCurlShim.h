#ifndef LLMSPOOL_CCURLSHIM_H
#define LLMSPOOL_CCURLSHIM_H

// What the LLM module cannot call from Swift directly: curl's variadic setopt/getinfo
// (one non-variadic function per argument type), and the epoll/eventfd calls of its
// transfer loop (Glibc's Swift module does not export <sys/epoll.h>).
//
// Handles are `void *` (libcurl's CURL and CURLM are `void` typedefs) and options are
// passed as the raw values of CURLoption / CURLMoption / CURLINFO, so this header does
// not include <curl/curl.h> and Swift sees curl's own declarations only through CCurl.

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// curl_global_init(CURL_GLOBAL_ALL), run once per process (pthread_once). Returns its CURLcode.
int llmspool_curl_global_init(void);

/// curl_easy_setopt for a `long` argument. Returns the CURLcode.
int llmspool_curl_easy_setopt_long(void *easy, int option, long value);
/// curl_easy_setopt for a pointer argument: strings (copied by curl), curl_slist *, user data.
int llmspool_curl_easy_setopt_pointer(void *easy, int option, const void *value);
/// curl_easy_setopt for a `curl_off_t` argument (the *_LARGE options).
int llmspool_curl_easy_setopt_off_t(void *easy, int option, int64_t value);
/// curl_easy_setopt for a write or header callback (`curl_write_callback`).
int llmspool_curl_easy_setopt_write_callback(void *easy, int option,
                                             size_t (*callback)(char *data, size_t size, size_t count, void *user));

/// curl_multi_setopt for a `long` argument. Returns the CURLMcode.
int llmspool_curl_multi_setopt_long(void *multi, int option, long value);
/// curl_multi_setopt for a pointer argument (callback user data).
int llmspool_curl_multi_setopt_pointer(void *multi, int option, void *value);
/// curl_multi_setopt(CURLMOPT_SOCKETFUNCTION, ...): `what` is CURL_POLL_IN/OUT/INOUT/REMOVE.
int llmspool_curl_multi_setopt_socket_callback(void *multi,
                                               int (*callback)(void *easy, int fd, int what, void *user, void *socketUser));
/// curl_multi_setopt(CURLMOPT_TIMERFUNCTION, ...): `timeout_ms` -1 deletes the timer.
int llmspool_curl_multi_setopt_timer_callback(void *multi, int (*callback)(void *multi, long timeout_ms, void *user));

/// curl_easy_getinfo for a `long *` result. Returns the CURLcode.
int llmspool_curl_easy_getinfo_long(void *easy, int info, long *value);
/// curl_easy_getinfo for a pointer result (`char *` strings, CURLINFO_PRIVATE).
int llmspool_curl_easy_getinfo_pointer(void *easy, int info, void **value);
/// curl_easy_getinfo for a `curl_off_t *` result (the *_T infos).
int llmspool_curl_easy_getinfo_off_t(void *easy, int info, int64_t *value);

/// The values the Swift side needs that are macros of macros in curl.h.
extern const int llmspool_curl_socket_timeout;   // CURL_SOCKET_TIMEOUT
extern const int llmspool_curl_error_size;       // CURL_ERROR_SIZE

// ---- The transfer loop's poller -------------------------------------------------------

/// epoll_create1(EPOLL_CLOEXEC). Returns the descriptor or -1 (errno set).
int llmspool_epoll_create(void);
/// epoll_ctl: adds (or, if present, modifies) `fd` watching for reads and/or writes.
int llmspool_epoll_watch(int epfd, int fd, int readable, int writable);
/// epoll_ctl(EPOLL_CTL_DEL); ENOENT and EBADF are not errors (the socket may be gone).
int llmspool_epoll_unwatch(int epfd, int fd);
/// epoll_wait, EINTR retried while time remains. Fills `fds` and `flags` (bit 0 readable,
/// bit 1 writable, bit 2 error or hang-up) and returns the count, or -1 (errno set).
int llmspool_epoll_wait(int epfd, int *fds, int *flags, int max, int timeout_ms);

/// eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC).
int llmspool_curl_eventfd(void);
/// Adds 1 to an eventfd (wakes a poller); safe from any thread.
void llmspool_eventfd_signal(int fd);
/// Resets an eventfd to 0 after a wake-up.
void llmspool_eventfd_drain(int fd);

/// Names the calling thread (pthread_setname_np, at most 15 bytes), for top and debuggers.
void llmspool_curl_name_thread(const char *name);

/// The calling thread's kernel thread id (gettid).
int llmspool_curl_gettid(void);

/// The calling thread's errno.
int llmspool_curl_errno(void);

#endif
