"""Quix Streams word count, the same work as `strom-streams`' wordcount example, for
scripts/bench-streams.sh: split each line of the input topic into lowercase words,
re-key by word (a repartition topic), count per word in RocksDB state with a changelog,
write (word, count as a decimal string) to the output topic.

  python scripts/bench_streams_quix.py BOOTSTRAP INPUT OUTPUT GROUP STATE_DIR [at-least-once|exactly-once]
"""
import re
import sys

from quixstreams import Application

bootstrap, source, sink, group, state_dir = sys.argv[1:6]
guarantee = sys.argv[6] if len(sys.argv) > 6 else "at-least-once"
split = re.compile(r"[^0-9A-Za-z]+")

app = Application(
    broker_address=bootstrap,
    consumer_group=group,
    auto_offset_reset="earliest",
    state_dir=state_dir,
    processing_guarantee=guarantee,
    loglevel="WARNING",
    commit_interval=1.0,
)
lines = app.topic(source, value_deserializer="str")
counts = app.topic(sink, key_serializer="str", value_serializer="str")


def count(word, state):
    n = state.get("n", 0) + 1
    state.set("n", n)
    return str(n)


sdf = app.dataframe(lines)
sdf = sdf.apply(lambda line: [w.lower() for w in split.split(line) if w], expand=True)
sdf = sdf.group_by(lambda word: word, name="word", value_serializer="str", value_deserializer="str", key_serializer="str", key_deserializer="str")
sdf = sdf.apply(count, stateful=True)
sdf.to_topic(counts)
app.run()
