"""Reads a topic from its beginning to its end with confluent-kafka's Consumer and decodes
every value with confluent-kafka's AvroDeserializer and a SchemaRegistryClient: a standard
third-party reader of the Confluent wire format. Prints one JSON object per record:

    {"partition": P, "offset": O, "key": "...", "schema_id": N, "value": {...}}

`schema_id` is read from the value's framing (byte 0 must be 0); the value is what the
deserializer returned, with datetimes (timestamp-micros) as ISO 8601 strings. Exits 1 when the
topic cannot be read to its end within the timeout.

Usage: confluent_consume.py BOOTSTRAP REGISTRY_URL TOPIC [TIMEOUT_SECONDS]
"""

import datetime
import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def plain(value):
    """The decoded value as JSON can hold it."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def main():
    bootstrap, registry_url, topic = sys.argv[1:4]
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    deadline = time.monotonic() + timeout

    registry = SchemaRegistryClient({"url": registry_url})
    deserializer = AvroDeserializer(registry)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "interop-confluent-consume",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # A transactional partition ends with a commit marker, never delivered.
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    ends = {}
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
        if high > low:
            ends[p] = high
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])

    ctx = SerializationContext(topic, MessageField.VALUE)
    while ends:
        if time.monotonic() > deadline:
            sys.exit(f"timed out; partitions not read to their end: {sorted(ends)}")
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error() and msg.error().code() == KafkaError._PARTITION_EOF:
            ends.pop(msg.partition(), None)
            continue
        if msg.error():
            sys.exit(f"consumer error: {msg.error()}")
        raw = msg.value()
        if raw[0] != 0:
            sys.exit(f"partition {msg.partition()} offset {msg.offset()}: magic byte {raw[0]}")
        record = {
            "partition": msg.partition(),
            "offset": msg.offset(),
            "key": msg.key().decode("utf-8") if msg.key() is not None else None,
            "schema_id": int.from_bytes(raw[1:5], "big"),
            "value": plain(deserializer(raw, ctx)),
        }
        print(json.dumps(record))
        if msg.offset() + 1 >= ends.get(msg.partition(), 0):
            ends.pop(msg.partition(), None)
    consumer.close()


if __name__ == "__main__":
    main()
