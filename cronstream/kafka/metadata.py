"""The cluster's metadata, as aiokafka's client holds it.

aiokafka (0.14) has no public call for the whole cluster's metadata: a consumer's
`topics()` fetches it but keeps the partitions to itself, and `partitions_for_topic`
answers only for topics the consumer already knows. Both calls here reach into its
client, which is why they live in this package.
"""

from __future__ import annotations

from collections.abc import Collection

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.cluster import ClusterMetadata

from cronstream.config.settings import Settings
from cronstream.kafka import clients


async def cluster_metadata(consumer: AIOKafkaConsumer) -> ClusterMetadata:
    """Every topic and partition of the cluster, fetched now (one request, never creates
    a topic); the consumer must be started."""
    cluster: ClusterMetadata = await consumer._client.fetch_all_metadata()
    return cluster


def unreachable(
    consumer: AIOKafkaConsumer, nodes: Collection[int], addresses: Collection[str]
) -> tuple[list[str], list[TopicPartition]]:
    """The brokers of an outage, named with their addresses where the client knows them,
    and the assigned partitions that wait for them: led by one of `nodes`, or by no
    leader known (its broker is the one away, most likely). From the metadata the
    client holds: no request, so it answers while Kafka is away."""
    cluster = consumer._client.cluster
    brokers = [
        f"{node} ({meta.host}:{meta.port})"
        if (meta := cluster.broker_metadata(node)) is not None
        else str(node)
        for node in sorted(nodes)
    ] + sorted(addresses)
    waiting = sorted(
        tp for tp in consumer.assignment() if cluster.leader_for_partition(tp) in {*nodes, None, -1}
    )
    return brokers, waiting


async def committed(
    settings: Settings, group: str, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """Kafka's committed offsets of `group` on `partitions` (those it has one for), read
    by an admin client of its own (a groupless consumer cannot ask)."""
    if not partitions:
        return {}
    async with clients.started(clients.Admin(settings)) as admin:
        found = await admin.client.list_consumer_group_offsets(group, partitions=partitions)
    return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}
