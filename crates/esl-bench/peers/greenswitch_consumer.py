"""greenswitch (PyPI) consumer for the ESL ingest benchmark.

Usage: greenswitch_consumer.py HOST PORT EXPECTED_EVENTS
Connects to `esl-ingest --serve`, subscribes `event plain ALL`, counts events (and the
conference::maintenance ones) through a '*' handler until the stream ends, prints one JSON line
in the shape of esl-bench's ChildReport.

greenswitch parses each plain body with urllib's unquote (errors='replace'), so non-UTF-8 %XX
values become U+FFFD silently: such events are counted as `lossy_events`.

Harness detail: greenswitch's event-processing greenlet stops as soon as the socket reaches EOF
(`_run` goes False), leaving queued events unprocessed; after EOF the script hands what is left in
the queue to the same handler, so every received event is counted.
"""

import json
import resource
import sys
import time

import gevent
import greenswitch


def main():
    host, port, expected = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    counts = {"events": 0, "conference": 0, "lossy": 0}

    def on_event(event):
        headers = event.headers
        counts["events"] += 1
        if headers.get("Event-Subclass") == "conference::maintenance" and "Action" in headers:
            counts["conference"] += 1
        if any("\ufffd" in v for v in headers.values()):
            counts["lossy"] += 1

    cpu0 = time.process_time()
    start = time.perf_counter()
    conn = greenswitch.InboundESL(host=host, port=port, password="ClueCon", timeout=60)
    conn.connect()
    conn.register_handle("*", on_event)
    conn.send("event plain ALL")
    note = ""
    while counts["events"] < expected:
        receiver = conn._receive_events_greenlet
        if receiver is not None and receiver.dead:
            # EOF: process what the library queued but did not dispatch.
            queue = conn._esl_event_queue
            while not queue.empty():
                event = queue.get()
                if event.headers.get("Content-Type") == "text/event-plain":
                    on_event(event)
            note = "stream ended"
            break
        gevent.sleep(0.005)
    secs = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "kind": "greenswitch 0.0.19 (Python %d.%d, gevent)" % sys.version_info[:2],
                "events": counts["events"],
                "conference": counts["conference"],
                "secs": secs,
                "cpu_secs": cpu,
                "vm_hwm_kib": hwm,
                "lossy_events": counts["lossy"],
                "note": note,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
