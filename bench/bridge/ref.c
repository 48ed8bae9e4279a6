/* The C reference for the bridge's spool → Kafka direction: for every file in SRC (a spool's new/),
 * read it, produce it (key = file name less .json) with an idempotent librdkafka producer, and on
 * its delivery report rename it into DST. Prints messages/s from start to the last report.
 * Usage: ref BROKERS TOPIC SRC DST */
#include <dirent.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *src, *dst;
static long delivered, failed;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk; (void)opaque;
    char *name = m->_private;
    if (m->err) { failed++; free(name); return; }
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/%s", src, name);
    snprintf(b, sizeof b, "%s/%s", dst, name);
    if (rename(a, b) != 0) { perror("rename"); exit(1); }
    delivered++;
    free(name);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: ref BROKERS TOPIC SRC DST\n"); return 64; }
    src = argv[3]; dst = argv[4];
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], err, sizeof err) ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof err) ||
        rd_kafka_conf_set(conf, "acks", "all", err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) { fprintf(stderr, "%s\n", err); return 1; }
    double t0 = now();
    DIR *d = opendir(src);
    if (!d) { perror(src); return 1; }
    struct dirent *e;
    long n = 0;
    static char buf[1 << 20];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", src, e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0) { perror(path); return 1; }
        ssize_t len = read(fd, buf, sizeof buf);
        close(fd);
        if (len < 0) { perror(path); return 1; }
        size_t klen = strlen(e->d_name);
        if (klen > 5 && !strcmp(e->d_name + klen - 5, ".json")) klen -= 5;
        char *name = strdup(e->d_name);
        for (;;) {
            rd_kafka_resp_err_t r = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(argv[2]), RD_KAFKA_V_KEY(e->d_name, klen),
                                                      RD_KAFKA_V_VALUE(buf, (size_t)len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                                      RD_KAFKA_V_OPAQUE(name), RD_KAFKA_V_END);
            if (r == RD_KAFKA_RESP_ERR__QUEUE_FULL) { rd_kafka_poll(rk, 10); continue; }
            if (r) { fprintf(stderr, "produce: %s\n", rd_kafka_err2str(r)); return 1; }
            break;
        }
        rd_kafka_poll(rk, 0);
        n++;
    }
    closedir(d);
    while (delivered + failed < n) rd_kafka_poll(rk, 50);
    double secs = now() - t0;
    rd_kafka_destroy(rk);
    printf("C ref n=%ld failed=%ld secs=%.3f msgs/s=%.0f\n", n, failed, secs, n / secs);
    return failed ? 1 : 0;
}
