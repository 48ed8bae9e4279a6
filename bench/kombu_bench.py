#!/usr/bin/env python3
"""kombu's filesystem transport (Celery's file broker) on the same disk as the spool, in msgs/s.

    kombu_bench.py publish|consume DIR N [--store-processed]

publish  Producer.publish() of N messages of the job document's size (~340 B of JSON) into a queue
         whose folder is DIR/data (kombu writes each message in place: no temp file, no rename, no fsync).
consume  publishes N messages first (untimed, then sync()), then consumes and acks all N through a
         Consumer and Connection.drain_events(); kombu lists and sorts the whole folder for each message
         and moves each read file to the temp directory, then unlinks it. TMPDIR is set to DIR/processed
         so those files stay on the same file system, in a fresh directory. With --store-processed
         the files are kept in DIR/processed instead of unlinked (kombu's store_processed option).

DIR must not exist. Prints one line ending in `msgs/s=RATE`. Nothing is cleaned up.
Needs `pip install kombu` (measured with kombu 5.7).
"""
import os
import sys
import time


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    store_processed = "--store-processed" in sys.argv
    if len(args) != 3 or args[0] not in ("publish", "consume"):
        sys.exit(__doc__)
    mode, base, n = args[0], args[1], int(args[2])
    os.mkdir(base)  # fails if it exists: always a fresh directory
    data, processed = os.path.join(base, "data"), os.path.join(base, "processed")
    os.mkdir(data)
    os.mkdir(processed)
    # kombu moves consumed files to tempfile.gettempdir() unless store_processed: keep them on this disk.
    os.environ["TMPDIR"] = processed
    import tempfile
    tempfile.tempdir = None

    from kombu import Connection, Consumer, Exchange, Producer, Queue

    options = {
        "data_folder_in": data,
        "data_folder_out": data,
        "control_folder": os.path.join(base, "control"),
        "store_processed": store_processed,
        "processed_folder": processed,
    }
    exchange = Exchange("jobs", type="direct")
    queue = Queue("jobs", exchange, routing_key="jobs")
    prompt = ("Summarise the following text in three sentences, for a reader in a hurry: "
              + "lorem ipsum dolor sit amet " * 6)

    with Connection(transport="filesystem", transport_options=options) as conn:
        channel = conn.channel()
        producer = Producer(channel, exchange=exchange, routing_key="jobs", serializer="json")
        queue(channel).declare()

        def publish_all():
            for k in range(n):
                body = {"jobId": "%036d" % k, "prompt": prompt, "submittedAt": "2026-11-26T10:00:00.000Z"}
                producer.publish(body)

        if mode == "publish":
            start = time.monotonic()
            publish_all()
            secs = time.monotonic() - start
        else:
            publish_all()
            os.sync()
            got = 0

            def on_message(body, message):
                nonlocal got
                message.ack()
                got += 1

            with Consumer(channel, queues=[queue], callbacks=[on_message], accept=["json"]):
                start = time.monotonic()
                while got < n:
                    conn.drain_events(timeout=10)
                secs = time.monotonic() - start
    extra = " store_processed" if store_processed and mode == "consume" else ""
    print("kombu %s n=%d%s secs=%.3f msgs/s=%.0f" % (mode, n, extra, secs, n / secs))


if __name__ == "__main__":
    main()
