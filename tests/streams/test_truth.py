"""The adjudication rule that decides when a case's ground truth is final."""

from __future__ import annotations

from datetime import timedelta
from typing import get_args

from hypothesis import given
from hypothesis import strategies as st

from postmarket.contracts.events import FollowUp, TruthSource
from streams.truth import _decisive_truth, blinded_read_pair, final_truth
from tests.factories import T0, make_followup, make_read


def test_no_followup_means_no_truth() -> None:
    assert final_truth([]) is None


def test_pathology_is_final_on_its_own() -> None:
    truth = final_truth([make_followup(source="pathology", label="negative")])
    assert truth is not None and (truth.label, truth.source) == ("negative", "pathology")


def test_pathology_overrides_disagreeing_reads() -> None:
    followups = [
        make_read("r-1", "first", "positive"),
        make_read("r-2", "second", "positive"),
        make_followup(source="pathology", label="negative"),
    ]
    truth = final_truth(followups)
    assert truth is not None and truth.label == "negative"


def test_two_agreeing_blinded_reads_are_final() -> None:
    first, second = make_read("r-1", "first", "positive"), make_read("r-2", "second", "positive")
    truth = final_truth([first, second])
    assert truth is not None
    assert truth.followup_event_ids == (first.event_id, second.event_id)


def test_one_read_waits_for_the_second() -> None:
    assert final_truth([make_read("r-1", "first", "positive")]) is None


def test_disagreeing_reads_wait_for_adjudication() -> None:
    reads = [make_read("r-1", "first", "positive"), make_read("r-2", "second", "negative")]
    assert final_truth(reads) is None


def test_adjudication_settles_a_disagreement() -> None:
    reads = [
        make_read("r-1", "first", "positive"),
        make_read("r-2", "second", "negative"),
        make_read("r-3", "adjudication", "negative", event_time=T0 + timedelta(days=40)),
    ]
    truth = final_truth(reads)
    assert truth is not None and (truth.label, truth.source) == ("negative", "adjudicated_read")


def test_the_same_reader_twice_is_not_independent() -> None:
    reads = [make_read("r-1", "first", "positive"), make_read("r-1", "second", "positive")]
    assert final_truth(reads) is None


def test_unblinded_reads_do_not_count_as_double_blind() -> None:
    reads = [
        make_read("r-1", "first", "positive", blinded=False),
        make_read("r-2", "second", "positive"),
    ]
    assert final_truth(reads) is None


def test_a_settled_disagreement_keeps_both_blinded_reads_for_agreement() -> None:
    reads = [
        make_read("r-1", "first", "positive"),
        make_read("r-2", "second", "negative"),
        make_read("r-3", "adjudication", "negative", event_time=T0 + timedelta(days=40)),
    ]
    truth = final_truth(reads)
    assert truth is not None and truth.blinded_reads == ("positive", "negative")


def test_pathology_truth_still_reports_the_reads_it_overrode() -> None:
    followups = [
        make_read("r-1", "first", "negative"),
        make_read("r-2", "second", "positive"),
        make_followup(source="pathology", label="positive"),
    ]
    truth = final_truth(followups)
    assert truth is not None and truth.blinded_reads == ("negative", "positive")


def test_truth_without_two_independent_reads_has_no_read_pair() -> None:
    truth = final_truth([make_read("r-1", "first", "positive"), make_followup(source="clinical")])
    assert truth is not None and truth.blinded_reads is None


single_followups = st.one_of(
    st.builds(
        make_followup,
        label=st.sampled_from(["positive", "negative"]),
        source=st.sampled_from([s for s in get_args(TruthSource) if s != "reader"]),
        blinded=st.booleans(),
    ),
    st.builds(
        make_read,
        st.sampled_from(["r1", "r2"]),
        st.sampled_from(["first", "second", "adjudication"]),
        st.sampled_from(["positive", "negative"]),
    ),
)


@given(single_followups)
def test_one_followups_truth_is_what_the_whole_rule_gives(followup: FollowUp) -> None:
    # The rule's own parts: a single follow-up has no pair of reads to add.
    assert blinded_read_pair([followup]) is None
    assert final_truth([followup]) == _decisive_truth([followup])
