"""aiokafka (asyncio, pure Python, its own protocol code): produce and consume with keys,
headers and timestamps, idempotence, a consumer group that resumes at its committed offsets,
transactions with read_committed, and the admin client."""

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from conftest import Broker


@pytest.fixture(scope="module")
def abroker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("strom-aiokafka") / "data",
               extra_args=["--group-initial-rebalance-delay-ms", "300"]).start()
    yield b
    b.stop()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def create(b, name, partitions=1):
    admin = AIOKafkaAdminClient(bootstrap_servers=b.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
        return await admin.describe_topics([name])
    finally:
        await admin.close()


async def drain(consumer, n, timeout_ms=1000):
    got = []
    for _ in range(60):
        batches = await consumer.getmany(timeout_ms=timeout_ms)
        for records in batches.values():
            got.extend(records)
        if len(got) >= n:
            break
    return got


def test_produce_and_consume_keys_headers_timestamps_in_order(abroker):
    async def go():
        topic = f"aio-{uuid.uuid4().hex[:6]}"
        described = await create(abroker, topic, 2)
        assert len(described[0]["partitions"]) == 2
        p = AIOKafkaProducer(bootstrap_servers=abroker.bootstrap, acks="all",
                             enable_idempotence=True, compression_type="gzip")
        await p.start()
        try:
            metas = [await p.send_and_wait(topic, value=b"v%d" % i, key=b"k%d" % i, partition=0,
                                           headers=[("h", b"%d" % i)],
                                           timestamp_ms=1_700_000_000_000 + i)
                     for i in range(50)]
        finally:
            await p.stop()
        assert [m.offset for m in metas] == list(range(50))
        c = AIOKafkaConsumer(bootstrap_servers=abroker.bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False)
        await c.start()
        try:
            c.assign([TopicPartition(topic, 0)])
            got = await drain(c, 50)
        finally:
            await c.stop()
        assert [(r.offset, r.key, r.value, r.timestamp, list(r.headers)) for r in got] == [
            (i, b"k%d" % i, b"v%d" % i, 1_700_000_000_000 + i, [("h", b"%d" % i)])
            for i in range(50)]
    run(go())


def test_a_group_resumes_at_its_committed_offsets(abroker):
    async def go():
        topic = f"aio-grp-{uuid.uuid4().hex[:6]}"
        group = f"aio-g-{uuid.uuid4().hex[:6]}"
        await create(abroker, topic, 3)
        p = AIOKafkaProducer(bootstrap_servers=abroker.bootstrap)
        await p.start()
        for i in range(60):
            await p.send(topic, b"%d" % i, partition=i % 3)
        await p.flush()
        await p.stop()

        members = [AIOKafkaConsumer(topic, bootstrap_servers=abroker.bootstrap, group_id=group,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
                   for _ in range(2)]
        for m in members:
            await m.start()
        try:
            got = []
            for _ in range(60):
                for m in members:
                    for records in (await m.getmany(timeout_ms=200)).values():
                        got.extend(records)
                if len(got) >= 40 and all(m.assignment() for m in members):
                    break
            parts = [set(m.assignment()) for m in members]
            assert len(parts[0] | parts[1]) == 3 and not parts[0] & parts[1], parts
            for m in members:
                await m.commit()
            committed = {tp: await members[0].committed(tp) for tp in parts[0] | parts[1]}
        finally:
            for m in members:
                await m.stop()
        seen = {(r.partition, r.offset) for r in got}
        # A new member starts where the group committed: it gets exactly the rest.
        late = AIOKafkaConsumer(topic, bootstrap_servers=abroker.bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False)
        await late.start()
        try:
            rest = await drain(late, 60 - sum(committed.values()))
        finally:
            await late.stop()
        rest_keys = {(r.partition, r.offset) for r in rest}
        assert not rest_keys & {(tp.partition, o) for tp, c in committed.items()
                                for o in range(c)}
        assert len(seen | rest_keys) == 60
    run(go())


def test_transactions_are_seen_only_when_committed(abroker):
    async def go():
        topic = f"aio-txn-{uuid.uuid4().hex[:6]}"
        await create(abroker, topic)
        p = AIOKafkaProducer(bootstrap_servers=abroker.bootstrap,
                             transactional_id=f"aio-tx-{uuid.uuid4().hex[:6]}")
        await p.start()
        try:
            async with p.transaction():
                for i in range(5):
                    await p.send_and_wait(topic, b"committed-%d" % i)
            await p.begin_transaction()
            await p.send_and_wait(topic, b"aborted")
            await p.abort_transaction()
            async with p.transaction():
                await p.send_and_wait(topic, b"after")
        finally:
            await p.stop()
        c = AIOKafkaConsumer(topic, bootstrap_servers=abroker.bootstrap,
                             isolation_level="read_committed", auto_offset_reset="earliest")
        await c.start()
        try:
            got = await drain(c, 6)
        finally:
            await c.stop()
        assert [r.value for r in got] == [b"committed-%d" % i for i in range(5)] + [b"after"]
    run(go())


def test_admin_lists_and_describes(abroker):
    async def go():
        admin = AIOKafkaAdminClient(bootstrap_servers=abroker.bootstrap)
        await admin.start()
        try:
            topic = f"aio-adm-{uuid.uuid4().hex[:6]}"
            await admin.create_topics([NewTopic(topic, 2, 1, topic_configs={
                "retention.ms": "3600000"})])
            assert topic in await admin.list_topics()
            cluster = await admin.describe_cluster()
            assert len(cluster["brokers"]) == 1
            from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
            configs = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)])
            entries = {e[0]: e[1] for e in configs[0].resources[0][4]}
            assert entries["retention.ms"] == "3600000"
            # A topic that exists already is refused, and nothing changes.
            result = await admin.create_topics([NewTopic(topic, 5, 1)])
            assert result.topic_errors[0][1] == 36  # TOPIC_ALREADY_EXISTS
            described = await admin.describe_topics([topic])
            assert len(described[0]["partitions"]) == 2
            await admin.delete_topics([topic])
        finally:
            await admin.close()
    run(go())
