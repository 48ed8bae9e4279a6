/* Reference CGI for bench/cgi: the same durable enqueue as llmspool-cgi's POST /jobs
 * (read the body, write tmp/NAME, fsync, renameat2 NOREPLACE into new/, fsync new/, answer 202),
 * with no parsing, validation or identity. Build: cc -O2 -o ref-cgi ref-cgi.c */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1
#endif

int main(void) {
    const char *spool = getenv("LLMSPOOL_SPOOL");
    const char *cl = getenv("CONTENT_LENGTH");
    size_t n = cl ? strtoul(cl, NULL, 10) : 0;
    if (!spool || n > (1u << 20)) { fputs("Status: 400 Bad Request\r\n\r\n", stdout); return 0; }
    char *body = malloc(n + 64), tmp[4096], dst[4096], id[64];
    size_t got = 0;
    while (got < n) { ssize_t r = read(0, body + got, n - got); if (r <= 0) break; got += r; }
    struct timespec ts; clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(id, sizeof id, "ref-%ld%09ld-%d", (long)ts.tv_sec, ts.tv_nsec, getpid());
    snprintf(tmp, sizeof tmp, "%s/tmp/%s.job", spool, id);
    snprintf(dst, sizeof dst, "%s/new/%s.json", spool, id);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    char doc[2048];
    int len = snprintf(doc, sizeof doc, "{\"jobId\":\"%s\",\"prompt\":\"%.*s\"}", id, (int)(got < 1024 ? got : 1024), body);
    if (fd < 0 || write(fd, doc, len) != len || fsync(fd) != 0) { fputs("Status: 503 Service Unavailable\r\n\r\n", stdout); return 0; }
    close(fd);
    if (syscall(SYS_renameat2, AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_NOREPLACE) != 0) { fputs("Status: 503 Service Unavailable\r\n\r\n", stdout); return 0; }
    char dir[4096]; snprintf(dir, sizeof dir, "%s/new", spool);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY); fsync(dfd); close(dfd);
    printf("Status: 202 Accepted\r\nContent-Type: application/json\r\nLocation: /ref/%s\r\n\r\n{\"jobId\":\"%s\",\"status\":\"queued\"}\n", id, id);
    return 0;
}
