"""The ledger with a tracker's seqs (fix times in ms): repeated and out of order, as OwnTracks
flushes its queue and Traccar Client its buffer."""

import uuid

import pytest

from server.phones.ledger import Ledger, Ledgers

pytestmark = pytest.mark.no_services


def test_seqs_out_of_order_and_repeated_settle_in_arrival_order_and_ack_the_highest():
    heard = []
    ledger = Ledger(-1, on_change=lambda: heard.append(ledger.acked_seq))
    entries = [ledger.expect(seq) for seq in (5000, 3000, 5000, 4000)]
    entries[1].store()
    ledger.advance()
    assert (ledger.acked_seq, ledger.pending, heard) == (-1, 4, []), "nothing before the first is settled"
    for entry in entries:
        entry.store()  # the duplicate too: found stored already
    ledger.advance()
    assert (ledger.acked_seq, ledger.pending) == (5000, 0)
    assert heard == [5000], "one ack due, however the seqs were ordered"


def test_an_older_fix_after_a_newer_one_is_still_due_an_answer():
    ledger = Ledger(-1)
    newer = ledger.expect(9000)
    newer.store()
    ledger.advance()
    progress = ledger.progress
    older = ledger.expect(1000)
    older.store()
    ledger.advance()
    assert ledger.acked_seq == 9000 and ledger.progress == progress + 1, "stored: told, though N did not move"


def test_a_tracker_ledger_is_not_the_apps():
    ledgers = Ledgers()
    app, tracker = uuid.uuid4(), uuid.uuid4()
    app_ledger = ledgers.open(app, 2)
    tracker_ledger = ledgers.open(tracker, -1)
    tracker_ledger.expect(1_796_000_000_000).store()
    tracker_ledger.advance()
    assert app_ledger is not tracker_ledger and app_ledger.acked_seq == 2
