"""Bench plumbing that decides what is measured (the numbers themselves come from `make bench`)."""
from audioe2e.bench.tasks import with_mets


def test_dnsmos_only_for_the_systems_asked_for():
    items = [{"id": "0"}, {"id": "1"}]
    mets = ["pesq_wb", "dnsmos"]
    assert all(it["mets"] == mets for it in with_mets(items, "Opus 6 kbit/s", mets, ("Opus 6",)))
    assert all(it["mets"] == ["pesq_wb"] for it in with_mets(items, "Opus 12 kbit/s", mets, ("Opus 6",)))
    assert all(it["mets"] == mets for it in with_mets(items, "anything", mets))  # no filter: all
    assert "mets" not in items[0]  # the caller's items are left as they were
