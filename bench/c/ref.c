/* ref.c: the spool's hot paths as bare system calls, the yardstick for llmspool's benchmark.
 *
 *   ref MODE DIR N [BATCH]
 *
 * MODE:
 *   enqueue-durable   open(tmp/X, O_CREAT|O_EXCL), write ~340 B of JSON, fsync, renameat2(tmp/X, new/ID.json,
 *                     RENAME_NOREPLACE), fsync(new/); one job at a time
 *   enqueue-volatile  the same without either fsync
 *   enqueue-batch     group commit, BATCH jobs (default 64) at a time: write all, fsync each, rename all,
 *                     fsync(new/) once (the group commit as issue 3 words it; what Spool.enqueue(batch:)
 *                     did before it moved to syncfs; shown for context, not a target's yardstick)
 *   enqueue-sfr       group commit that starts writeback of each file as it is written
 *                     (sync_file_range(SYNC_FILE_RANGE_WRITE)), then fsyncs each: an alternative
 *   enqueue-syncfs    group commit with one syncfs() per batch instead of one fsync per file: write all,
 *                     syncfs(tmp/), rename all, fsync(new/) once; the same calls as Spool.enqueue(batch:)
 *   claim             list new/ once (readdir, sorted as llmspool's waiting() sorts), then
 *                     rename(new/X, cur/X) for each of N files made beforehand (untimed, then sync())
 *   claim-finish      rename(new/X, cur/X), open + read it, write a ~660 B result to tmp/ + fsync,
 *                     renameat2(RENAME_NOREPLACE) into done/ + fsync(done/), then rename cur/X to
 *                     tmp/.spent.X (llmspool retires claimed files by rename and unlinks them later)
 *   finish-syncfs     BATCH jobs at a time: claim each (rename into cur/, open, read), then write each
 *                     result to tmp/, one syncfs(tmp/), renameat2 each into done/, one fsync(done/),
 *                     retire each; the same calls, in the same order, as claim(name) for each job and
 *                     then Spool.finish(batch:) (llmspool's claim also locks and checks the file)
 * DIR must not exist; the spool is made there so every run starts on fresh directories.
 * Prints one line ending in `jobs/s=RATE`. Nothing is cleaned up.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

static int dtmp, dnew, dcur, ddone;

static void die(const char *what, const char *path) {
    fprintf(stderr, "ref: %s %s: %s\n", what, path ? path : "", strerror(errno));
    exit(74);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A UUIDv7-shaped id: time-ordered, 36 characters, like llmspool's. */
static void make_id(char *out, long k) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long ms = (unsigned long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    unsigned long long tail = ((unsigned long long)getpid() << 20 | (unsigned long long)(k & 0xfffff)) & 0xffffffffffffULL;
    snprintf(out, 37, "%08llx-%04llx-7%03lx-8%03lx-%012llx", (ms >> 16) & 0xffffffffULL, ms & 0xffff,
             (k >> 12) & 0xfff, k & 0xfff, tail);
}

static const char *PROMPT =
    "Summarise the following text in three sentences, for a reader in a hurry: lorem ipsum dolor sit amet "
    "lorem ipsum dolor sit amet lorem ipsum dolor sit amet lorem ipsum dolor sit amet lorem ipsum dolor sit "
    "amet lorem ipsum dolor sit amet ";

/* The job document, the same shape and size (~337 B) as the one llmspool writes. */
static int job_json(char *buf, size_t cap, const char *id) {
    return snprintf(buf, cap, "{\"jobId\":\"%s\",\"prompt\":\"%s\",\"submittedAt\":\"2026-11-26T10:00:00.000Z\"}", id,
                    PROMPT);
}

static void write_all(int fd, const char *buf, size_t len, const char *path) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("write", path);
        }
        buf += n;
        len -= (size_t)n;
    }
}

static void xfsync(int fd, const char *path) {
    while (fsync(fd) != 0)
        if (errno != EINTR) die("fsync", path);
}

static void rename_noreplace(int from, const char *old, int to, const char *new) {
    if (renameat2(from, old, to, new, RENAME_NOREPLACE) != 0) die("renameat2", new);
}

/* Writes tmp/NAME with the bytes, optionally fsynced; returns the open descriptor. */
static int write_tmp(const char *name, const char *buf, size_t len, int sync) {
    int fd = openat(dtmp, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) die("openat", name);
    write_all(fd, buf, len, name);
    if (sync) xfsync(fd, name);
    return fd;
}

static void enqueue_one(long k, int sync) {
    char id[40], tmpname[96], final[48], buf[1024];
    make_id(id, k);
    snprintf(tmpname, sizeof tmpname, "%s.%d.%ld.job", id, getpid(), k);
    snprintf(final, sizeof final, "%s.json", id);
    int len = job_json(buf, sizeof buf, id);
    int fd = write_tmp(tmpname, buf, (size_t)len, sync);
    close(fd);
    rename_noreplace(dtmp, tmpname, dnew, final);
    if (sync) xfsync(dnew, "new/");
}

enum { EACH_FSYNC, SFR_THEN_FSYNC, ONE_SYNCFS };

static void enqueue_batch(long first, int count, int how) {
    char ids[count][40], tmpnames[count][96], buf[1024];
    int fds[count];
    for (int i = 0; i < count; i++) {
        make_id(ids[i], first + i);
        snprintf(tmpnames[i], sizeof tmpnames[i], "%s.%d.%ld.job", ids[i], getpid(), first + i);
        int len = job_json(buf, sizeof buf, ids[i]);
        fds[i] = write_tmp(tmpnames[i], buf, (size_t)len, 0);
        if (how == SFR_THEN_FSYNC && sync_file_range(fds[i], 0, 0, SYNC_FILE_RANGE_WRITE) != 0)
            die("sync_file_range", tmpnames[i]);
    }
    if (how == ONE_SYNCFS) {
        if (syncfs(dtmp) != 0) die("syncfs", "tmp/");
    } else {
        for (int i = 0; i < count; i++) xfsync(fds[i], tmpnames[i]);
    }
    for (int i = 0; i < count; i++) {
        char final[48];
        close(fds[i]);
        snprintf(final, sizeof final, "%s.json", ids[i]);
        rename_noreplace(dtmp, tmpnames[i], dnew, final);
    }
    xfsync(dnew, "new/");
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char **list_new(long *count) {
    int fd = openat(dnew, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) die("opendir", "new/");
    long cap = 1024, n = 0;
    char **names = malloc(cap * sizeof *names);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) names = realloc(names, (cap *= 2) * sizeof *names);
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp);
    *count = n;
    return names;
}

/* Claims NAME: renames it into cur/ and reads it into BUF (NUL-terminated). */
static void claim_read(const char *name, char *buf, size_t cap) {
    if (renameat(dnew, name, dcur, name) != 0) die("rename", name);
    int fd = openat(dcur, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) die("openat", name);
    ssize_t n = read(fd, buf, cap - 1);
    if (n < 0) die("read", name);
    buf[n] = 0;
    close(fd);
}

/* Writes the result of job NAME (whose document is JOB) to tmp/ (fsynced when SYNC); returns the tmp
 * name in TMPNAME. */
static void write_result(const char *name, const char *job, long k, int sync, char *tmpname, size_t cap) {
    char doc[2048];
    /* The result document: status, response, times, and the job itself (~660 B, as llmspool's). */
    char id[40];
    snprintf(id, sizeof id, "%.36s", name);
    int len = snprintf(doc, sizeof doc,
                       "{\"jobId\":\"%s\",\"status\":\"done\",\"response\":\"A short answer of about the size a small "
                       "completion has: words words words words words words words words \",\"attempts\":1,"
                       "\"submittedAt\":\"2026-11-26T10:00:00.000Z\",\"startedAt\":\"2026-11-26T10:00:00.000Z\","
                       "\"finishedAt\":\"2026-11-26T10:00:00.000Z\",\"job\":%s}",
                       id, job);
    snprintf(tmpname, cap, "%s.%d.%ld.done", id, getpid(), k);
    int fd = write_tmp(tmpname, doc, (size_t)len, sync);
    close(fd);
}

/* Takes the finished job's file out of cur/ by renaming it to tmp/.spent.* */
static void retire(const char *name, long k) {
    char spent[128];
    snprintf(spent, sizeof spent, ".spent.%.36s.%d.%ld.json", name, getpid(), k);
    if (renameat(dcur, name, dtmp, spent) != 0) die("rename", name);
}

static void claim_finish(const char *name, long k) {
    char tmpname[128], job[4096];
    claim_read(name, job, sizeof job);
    write_result(name, job, k, 1, tmpname, sizeof tmpname);
    rename_noreplace(dtmp, tmpname, ddone, name);
    xfsync(ddone, "done/");
    retire(name, k);
}

static void claim_finish_batch(char **names, long first, int count) {
    char tmpnames[count][128];
    char (*jobs)[4096] = malloc((size_t)count * sizeof *jobs);
    if (!jobs) die("malloc", NULL);
    for (int i = 0; i < count; i++) claim_read(names[first + i], jobs[i], sizeof jobs[i]);
    for (int i = 0; i < count; i++) write_result(names[first + i], jobs[i], first + i, 0, tmpnames[i], sizeof tmpnames[i]);
    if (syncfs(dtmp) != 0) die("syncfs", "tmp/");
    for (int i = 0; i < count; i++) rename_noreplace(dtmp, tmpnames[i], ddone, names[first + i]);
    xfsync(ddone, "done/");
    for (int i = 0; i < count; i++) retire(names[first + i], first + i);
    free(jobs);
}

static int open_dir(int at, const char *name) {
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) die("open", name);
    return fd;
}

int main(int argc, char **argv) {
    if (argc < 4 || atol(argv[3]) <= 0) {
        fprintf(stderr, "usage: ref enqueue-durable|enqueue-volatile|enqueue-batch|enqueue-sfr|enqueue-syncfs|claim|"
                        "claim-finish|finish-syncfs DIR N [BATCH]\n");
        return 64;
    }
    const char *mode = argv[1], *dir = argv[2];
    long n = atol(argv[3]);
    int batch = argc > 4 ? atoi(argv[4]) : 64;
    if (batch < 1 || batch > 4096) batch = 64;
    if (mkdir(dir, 02770) != 0) die("mkdir (DIR must not exist)", dir);
    int root = open_dir(AT_FDCWD, dir);
    const char *subs[] = {"tmp", "new", "cur", "done", "failed"};
    for (int i = 0; i < 5; i++)
        if (mkdirat(root, subs[i], 02770) != 0) die("mkdir", subs[i]);
    dtmp = open_dir(root, "tmp");
    dnew = open_dir(root, "new");
    dcur = open_dir(root, "cur");
    ddone = open_dir(root, "done");

    double start;
    if (!strcmp(mode, "enqueue-durable") || !strcmp(mode, "enqueue-volatile")) {
        int sync = !strcmp(mode, "enqueue-durable");
        start = now();
        for (long k = 0; k < n; k++) enqueue_one(k, sync);
    } else if (!strcmp(mode, "enqueue-batch") || !strcmp(mode, "enqueue-sfr") || !strcmp(mode, "enqueue-syncfs")) {
        int how = !strcmp(mode, "enqueue-batch") ? EACH_FSYNC : !strcmp(mode, "enqueue-sfr") ? SFR_THEN_FSYNC : ONE_SYNCFS;
        start = now();
        for (long k = 0; k < n; k += batch) enqueue_batch(k, (int)(n - k < batch ? n - k : batch), how);
    } else if (!strcmp(mode, "claim") || !strcmp(mode, "claim-finish") || !strcmp(mode, "finish-syncfs")) {
        for (long k = 0; k < n; k++) enqueue_one(k, 0); /* untimed */
        sync();
        int finish = !strcmp(mode, "claim-finish"), batched = !strcmp(mode, "finish-syncfs");
        start = now();
        long count;
        char **names = list_new(&count);
        if (count != n) {
            fprintf(stderr, "ref: %ld files in new/, expected %ld\n", count, n);
            return 70;
        }
        for (long k = 0; batched && k < count; k += batch)
            claim_finish_batch(names, k, (int)(count - k < batch ? count - k : batch));
        for (long k = 0; !batched && k < count; k++) {
            if (finish)
                claim_finish(names[k], k);
            else if (renameat(dnew, names[k], dcur, names[k]) != 0)
                die("rename", names[k]);
        }
    } else {
        fprintf(stderr, "ref: unknown mode %s\n", mode);
        return 64;
    }
    double secs = now() - start;
    if (!strcmp(mode, "enqueue-batch") || !strcmp(mode, "enqueue-sfr") || !strcmp(mode, "enqueue-syncfs") ||
        !strcmp(mode, "finish-syncfs"))
        printf("C %s n=%ld batch=%d secs=%.3f jobs/s=%.0f\n", mode, n, batch, secs, n / secs);
    else
        printf("C %s n=%ld secs=%.3f jobs/s=%.0f\n", mode, n, secs, n / secs);
    return 0;
}
