"""`deterministic_attention`: SDPA's math backend on CPU only (thread-invariant rounding), nothing
changed on other devices or when disabled; the engine and the reward models both open it."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch.nn.attention import _cur_sdpa_kernel_backends  # noqa: E402

from genies.models.kernels import deterministic_attention  # noqa: E402


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_cpu_runs_on_the_math_backend(device):
    before = _cur_sdpa_kernel_backends()
    with deterministic_attention(device):
        assert _cur_sdpa_kernel_backends() == [torch.nn.attention.SDPBackend.MATH]
    assert _cur_sdpa_kernel_backends() == before


@pytest.mark.parametrize(("device", "enabled"), [("cuda:0", True), ("meta", True), ("cpu", False)])
def test_other_devices_and_disabled_change_nothing(device, enabled):
    before = _cur_sdpa_kernel_backends()
    with deterministic_attention(device, enabled=enabled):
        assert _cur_sdpa_kernel_backends() == before


def test_engine_and_reward_model_use_it(tiny_model_dir, monkeypatch):
    import genies.models.kernels as kernels
    from genies.models.engine import ForwardEngine
    from genies.models.loading import load_model
    from genies.models.reward import rewards

    seen = []
    real = kernels.deterministic_attention

    def spy(device, *, enabled=True):
        seen.append((str(device), enabled))
        return real(device, enabled=enabled)

    monkeypatch.setattr(kernels, "deterministic_attention", spy)
    monkeypatch.setattr("genies.models.reward.deterministic_attention", spy)
    lm = load_model(str(tiny_model_dir), device="cpu")
    ForwardEngine(lm).score([("Hello ", "world")])
    assert ("cpu", True) in seen
    seen.clear()
    head = torch.zeros(lm.model.config.hidden_size)
    rewards(lm.model.model, head, [[1, 2, 3]])
    assert seen == [("cpu", True)]
