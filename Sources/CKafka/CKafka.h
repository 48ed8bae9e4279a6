// librdkafka, as found through pkg-config (Debian: librdkafka-dev).
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
