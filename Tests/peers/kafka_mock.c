/* A librdkafka mock cluster for the bridge tests.
 * Usage: kafka_mock BROKERS TOPIC[:PARTITIONS]...
 * Prints the bootstrap list on one line of stdout, then reads commands from stdin, one per line,
 * answering each with "ok" (or "error ...") on stdout; it runs until stdin closes (or a signal):
 *   down ID           take broker ID (1..BROKERS) down: its connections close, it refuses new ones
 *   up ID             bring it back
 *   errors API N ERR  the next N requests of Kafka API key API fail with error code ERR
 *                     (e.g. "errors 0 3 7": three Produce requests time out) */
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
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        int id, api, n, code;
        rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (sscanf(line, "down %d", &id) == 1) err = rd_kafka_mock_broker_set_down(mc, id);
        else if (sscanf(line, "up %d", &id) == 1) err = rd_kafka_mock_broker_set_up(mc, id);
        else if (sscanf(line, "errors %d %d %d", &api, &n, &code) == 3) {
            rd_kafka_resp_err_t errs[64];
            if (n > 64) n = 64;
            for (int i = 0; i < n; i++) errs[i] = (rd_kafka_resp_err_t)code;
            rd_kafka_mock_push_request_errors_array(mc, (int16_t)api, (size_t)n, errs);
        } else { printf("error unknown command\n"); fflush(stdout); continue; }
        if (err) printf("error %s\n", rd_kafka_err2str(err)); else printf("ok\n");
        fflush(stdout);
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
