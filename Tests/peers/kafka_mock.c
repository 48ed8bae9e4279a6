/* A librdkafka mock cluster for the bridge tests.
 * Usage: kafka_mock BROKERS TOPIC[:PARTITIONS]...
 * Prints the bootstrap list on one line of stdout, then runs until stdin closes (or a signal). */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: kafka_mock BROKERS [TOPIC[:PARTITIONS]]...\n"); return 64; }
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) { fprintf(stderr, "kafka_mock: rd_kafka_new: %s\n", errstr); return 70; }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, atoi(argv[1]));
    if (!mc) { fprintf(stderr, "kafka_mock: rd_kafka_mock_cluster_new failed\n"); return 70; }
    for (int i = 2; i < argc; i++) {
        char topic[256];
        snprintf(topic, sizeof topic, "%s", argv[i]);
        int partitions = 3;
        char *colon = strrchr(topic, ':');
        if (colon) { *colon = 0; partitions = atoi(colon + 1); }
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, topic, partitions, 1);
        if (err) { fprintf(stderr, "kafka_mock: topic %s: %s\n", topic, rd_kafka_err2str(err)); return 70; }
    }
    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);
    char buf[256];
    while (read(0, buf, sizeof buf) > 0) {}
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
