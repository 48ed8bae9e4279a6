#ifndef CKAFKA_SHIM_H
#define CKAFKA_SHIM_H
#include <stddef.h>
#include <librdkafka/rdkafka.h>

/// rd_kafka_producev (variadic, so not callable from Swift) with a topic handle, key, value (copied),
/// headers (ownership passes to librdkafka on success; on failure the caller still owns them)
/// and a per-message opaque for the delivery report. Returns the error code.
rd_kafka_resp_err_t ckafka_produce(rd_kafka_t *rk, rd_kafka_topic_t *topic,
                                   const void *key, size_t key_len,
                                   const void *value, size_t value_len,
                                   rd_kafka_headers_t *headers, void *opaque);
#endif
