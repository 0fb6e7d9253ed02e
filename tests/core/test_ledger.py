import pytest

from trimloop.core.errors import SpendCapReached
from trimloop.core.ledger import Ledger


def test_call_cap_refuses_before_the_call():
    ledger = Ledger(max_calls=2)
    for _ in range(2):
        ledger.reserve(0.0)
        ledger.settle(0.0, 0.0)
    with pytest.raises(SpendCapReached, match="call cap"):
        ledger.reserve(0.0)
    assert ledger.calls == 2


def test_dollar_cap_counts_calls_in_flight():
    ledger = Ledger(max_dollars=0.3)
    ledger.reserve(0.1)
    ledger.reserve(0.1)
    ledger.reserve(0.1)  # exactly at the cap: allowed
    with pytest.raises(SpendCapReached, match="dollar cap"):
        ledger.reserve(0.1)
    ledger.settle(0.1, 0.05)
    ledger.release(0.1)
    ledger.reserve(0.1)  # room again after a settle below the estimate and a release
    assert ledger.spent == pytest.approx(0.05)


def test_on_spend_callback_and_validation():
    seen = []
    ledger = Ledger(max_dollars=1.0, on_spend=lambda led: seen.append(led.spent))
    ledger.reserve(0.5)
    ledger.settle(0.5, 0.25)
    assert seen == [0.25] and ledger.remaining_dollars == 0.75
    with pytest.raises(ValueError):
        Ledger(max_calls=-1)
