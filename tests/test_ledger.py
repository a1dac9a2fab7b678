"""server.ledger: the cumulative ack never covers a ping that is not settled."""

import pytest

from server.ledger import Ledger

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
