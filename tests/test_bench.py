"""Bench plumbing that decides what is measured (the numbers themselves come from `make bench`)."""
from audioe2e.bench.tasks import with_mets


def test_dnsmos_only_for_the_systems_asked_for():
    items = [{"id": "0"}, {"id": "1"}]
    mets = ["pesq_wb", "dnsmos"]
    assert all(it["mets"] == mets for it in with_mets(items, "Opus 6 kbit/s", mets, ("Opus 6",)))
    assert all(it["mets"] == ["pesq_wb"] for it in with_mets(items, "Opus 12 kbit/s", mets, ("Opus 6",)))
    assert all(it["mets"] == mets for it in with_mets(items, "anything", mets))  # no filter: all
    assert "mets" not in items[0]  # the caller's items are left as they were


def test_layer_mac_count_matches_hand_count():
    """The separator twins' MMAC/s come from hooks on their layers: check the count on a
    net whose multiply-adds are known (stride-4 conv, 1×1 conv, transposed conv back)."""
    import torch
    from torch import nn

    from audioe2e.bench.ablation import layer_macs_per_second

    class Net(nn.Module):
        sample_rate = 800

        def __init__(self):
            super().__init__()
            self.enc = nn.Conv1d(1, 4, 8, stride=4)
            self.mix = nn.Conv1d(4, 6, 1)
            self.dec = nn.ConvTranspose1d(6, 1, 8, stride=4)

        def forward(self, x):
            return self.dec(self.mix(self.enc(x.unsqueeze(1))))

    frames = (800 - 8) // 4 + 1  # 199
    expected = frames * 4 * 8 + frames * 6 * 4 + frames * 6 * 8
    net = Net()
    assert layer_macs_per_second(net) == expected
    assert not any(m._forward_hooks for m in net.modules())  # hooks removed again
