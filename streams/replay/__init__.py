"""Replay: read a range of a topic again and feed it through the checkpoint protocol.

The range is read by an `AIOKafkaConsumer` without a group (no rebalance, no committed
offsets touched): the chosen partitions are assigned and sought to their first offset,
and each is read up to its last offset, at most the log end captured at the start, so
a replay ends even while producers keep writing. `offsets_for_times` resolves times:
`--from-time T` starts at the first offset whose timestamp is >= T (none: nothing to
replay in that partition), `--to-time T` ends at the offset before the first whose
timestamp is >= T.

Batches of up to `batch_size` records go through the worker's `BatchLoop` and
`BatchApplier`: the same handlers, checkpoint protocol, outage retry and dead letters.

- re-apply (the live consumer group): each partition's checkpoint c0 is read at the
  start. Records of the range at or below c0 were applied before and are applied again,
  once each, under the live checkpoint rows' FOR UPDATE locks (live workers wait on
  them), and the checkpoint is never lowered; records above c0 follow the normal
  protocol, so the live workers and the replay apply each exactly once between them.
  Lowering the checkpoint to the range start instead would make the workers re-apply
  everything after the range too.
- rebuild (`--consumer NAME`): checkpoints of its own, and every handler call runs with
  the transaction's `search_path` set to a schema of its own (restored right after the
  call, inside the handler's savepoint), so effects land in tables created there
  `LIKE` the live ones, while the protocol's own queries keep the live search_path.
  Another consumer's replay still writing into that schema refuses it.

Each real replay is recorded in the `replays` table (migrations/0005_replays.sql), and
holds an advisory lock on its id while it runs (streams/sql/replay.sql). Each batch's
transaction records how far the replay applied its partitions (`replay_positions`,
migrations/0008_replay_positions.sql): a batch retried after its COMMIT acknowledgement
was lost applies nothing again, and `--resume ID` goes on from there. A rebuild's dead
letters go to topics of its own (`<topic>.rebuild.<token>.dlq`).

Modules: request (the options, validated), plan (the range resolved against Kafka and
the checkpoints), resume (the plan of a replay to go on with), rebuild (the rebuild
schema, search_path routing and dead-letter topics), progress and audit (what it did,
and its row), run (the reading loop).
"""

from cronstream.streams.replay.plan import PartitionPlan, Plan, Resumed, offset_range, plan_replay
from cronstream.streams.replay.progress import Progress, ReplayOutcome
from cronstream.streams.replay.request import (
    Asked,
    Mode,
    ReplayError,
    Request,
    check,
    parse_partitions,
    schema_for,
    to_millis,
)
from cronstream.streams.replay.resume import plan_resume
from cronstream.streams.replay.run import Replay

__all__ = [
    "Asked",
    "Mode",
    "PartitionPlan",
    "Plan",
    "Progress",
    "Replay",
    "ReplayError",
    "ReplayOutcome",
    "Request",
    "Resumed",
    "check",
    "offset_range",
    "parse_partitions",
    "plan_replay",
    "plan_resume",
    "schema_for",
    "to_millis",
]
