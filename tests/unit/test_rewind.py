from __future__ import annotations

from faust.types import TP

from cronstream.streams.positions import rewinds


def test_only_partitions_committed_beyond_checkpoint_plus_one_are_rewound() -> None:
    committed = {
        TP("t", 0): 10,  # checkpoint 9: exactly in step
        TP("t", 1): 5,  # checkpoint 9: behind, redelivery is absorbed by the filter
        TP("t", 2): 50,  # checkpoint 9: ahead, events 10..49 would be skipped
        TP("t", 3): 7,  # no checkpoint row: nothing known to compare with
        TP("t", 4): None,  # nothing committed: faust starts from the reset policy
    }
    done = {("t", 0): 9, ("t", 1): 9, ("t", 2): 9, ("t", 4): 3}
    assert rewinds(committed, done) == {TP("t", 2): 10}


def test_a_checkpoint_of_minus_one_rewinds_to_the_start() -> None:
    assert rewinds({TP("t", 0): 100}, {("t", 0): -1}) == {TP("t", 0): 0}
