"""server.phones.ledger: the cumulative ack never covers a ping that is not settled."""

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.phones.ledger import Ledger, Ledgers

pytestmark = pytest.mark.no_services


def make(acked_seq=-1):
    changes = []
    ledger = Ledger(acked_seq, lambda: changes.append(ledger.acked_seq))
    return ledger, changes


def test_ack_waits_for_the_oldest_pending_ping():
    ledger, changes = make()
    first, second = ledger.expect(0), ledger.expect(1)
    second.settled = True
    ledger.advance()
    assert ledger.acked_seq == -1 and changes == []
    first.settled = True
    ledger.advance()
    assert ledger.acked_seq == 1 and changes == [1]


def test_a_refusal_counts_only_after_what_came_before_it():
    ledger, _ = make()
    pending = ledger.expect(5)
    ledger.answered(6)
    assert ledger.acked_seq == -1
    pending.settled = True
    ledger.advance()
    assert ledger.acked_seq == 6 and ledger.pending == 0


def test_ack_never_moves_backwards():
    ledger, _ = make(acked_seq=10)
    entry = ledger.expect(3)
    entry.settled = True
    ledger.advance()
    assert ledger.acked_seq == 10


def test_failure_is_reported_to_the_owner():
    ledger, changes = make()
    ledger.expect(0)
    ledger.fail()
    assert ledger.failed and changes == [-1]


def test_a_stored_duplicate_makes_an_ack_due_though_the_seq_does_not_move():
    ledger, changes = make(acked_seq=10)
    progress = ledger.progress
    ledger.expect(4).store()
    ledger.advance()
    assert ledger.acked_seq == 10 and ledger.progress == progress + 1 and changes == [10]


def test_a_refusal_below_the_ack_makes_no_ack_due():
    ledger, changes = make(acked_seq=10)
    ledger.answered(4)
    assert ledger.progress == 0 and changes == []


def test_every_watcher_hears_a_change():
    ledger, changes = make()
    heard = []
    ledger.watch(lambda: heard.append(ledger.acked_seq))
    ledger.expect(0).store()
    ledger.advance()
    assert changes == heard == [0]


def test_a_device_has_one_ledger_per_process_until_its_last_user_leaves():
    ledgers, device = Ledgers(), uuid.uuid4()
    socket = ledgers.open(device, 7)
    request = ledgers.open(device, -1)
    assert request is socket and request.acked_seq == 7
    ledgers.release(device, socket)
    assert ledgers.open(device, -1) is socket
    ledgers.release(device, socket)
    ledgers.release(device, socket)
    assert ledgers.open(device, 3) is not socket


def test_a_failed_ledger_is_replaced_for_the_next_user():
    ledgers, device = Ledgers(), uuid.uuid4()
    failed = ledgers.open(device, 5)
    failed.fail()
    fresh = ledgers.open(device, 5)
    assert fresh is not failed and not fresh.failed
    ledgers.release(device, failed)  # the old user leaving does not take the new ledger away
    assert ledgers.open(device, -1) is fresh


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3)), min_size=1, max_size=30), st.randoms())
def test_the_ack_covers_only_settled_pings_and_reaches_the_last_one(pings, random):
    """Pings sent in seq order (some with gaps between seqs), some refused at once, the others
    settled in any order: the ack never passes an unsettled one, and every settle of a stored
    ping makes an ack due."""
    ledger, _ = make()
    seq, waiting = -1, []
    for refused, skip in pings:
        seq += 1 + skip
        if refused:
            ledger.answered(seq)
        else:
            waiting.append(ledger.expect(seq))
    random.shuffle(waiting)
    for entry in waiting:
        progress = ledger.progress
        entry.store()
        ledger.advance()
        unsettled = [other.seq for other in waiting if not other.settled]
        assert not unsettled or ledger.acked_seq < min(unsettled)
        assert ledger.progress >= progress + (entry.seq <= ledger.acked_seq)
    assert ledger.acked_seq == seq and ledger.pending == 0
