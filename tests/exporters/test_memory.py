"""The nearest-neighbour memory: the k most similar keys vote with their labels, the vote is
mixed into the head's probabilities, and the mixture is what the graph outputs."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest

pytest.importorskip("torch")

import torch  # noqa: E402

from exporters import commands  # noqa: E402
from exporters.model import NeighbourVote  # noqa: E402
from monitor.errors import ConfigError  # noqa: E402

# Four keys on the axes of a 3-d space, labelled negative, neutral, positive, positive.
KEYS = torch.tensor(
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 2.0]], dtype=torch.float32
)
LABELS = torch.tensor([0, 1, 2, 2])


def _vote(**kw: float) -> NeighbourVote:
    args = {"k": 2, "temperature": 1.0, "weight": 0.5, **kw}
    return NeighbourVote(
        KEYS,
        LABELS,
        n_classes=3,
        k=int(args["k"]),
        temperature=args["temperature"],
        weight=args["weight"],
    )


def test_the_nearest_keys_vote_by_cosine_similarity_not_length() -> None:
    vote = _vote(k=2, temperature=1e-3)
    # Along the third axis: keys 2 and 3 are equally near (cosine 1, whatever their length),
    # both positive; the temperature makes the vote all theirs.
    probs = vote.neighbour_probs(torch.tensor([[0.0, 0.1, 5.0]]))
    torch.testing.assert_close(probs, torch.tensor([[0.0, 0.0, 1.0]]), atol=1e-4, rtol=0)
    # Between the first two axes: one negative and one neutral voter, equally similar.
    probs = vote.neighbour_probs(torch.tensor([[1.0, 1.0, 0.0]]))
    torch.testing.assert_close(probs, torch.tensor([[0.5, 0.5, 0.0]]), atol=1e-4, rtol=0)


def test_similarity_weights_follow_the_temperature() -> None:
    query = torch.tensor([[2.0, 1.0, 0.0]])
    sims = torch.tensor([2.0, 1.0]) / math.sqrt(5.0)  # cosine to key 0 and to key 1
    for temperature in (0.1, 1.0):
        share = torch.softmax(sims / temperature, dim=0)
        want = torch.tensor([[share[0].item(), share[1].item(), 0.0]])
        got = _vote(k=2, temperature=temperature).neighbour_probs(query)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_output_is_the_log_of_the_weighted_mixture() -> None:
    vote = _vote(k=1, weight=0.3)
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    out = vote(torch.tensor([[0.0, 1.0, 0.0]]), logits)  # the one voter is neutral
    want = 0.7 * torch.softmax(logits, dim=1) + 0.3 * torch.tensor([[0.0, 1.0, 0.0]])
    torch.testing.assert_close(out.exp(), want, atol=1e-6, rtol=0)
    assert out.exp().sum().item() == pytest.approx(1.0, abs=1e-6)


def test_a_class_no_voter_holds_stays_finite() -> None:
    vote = _vote(k=1, weight=0.5)
    out = vote(torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[-200.0, 200.0, -200.0]]))
    assert torch.isfinite(out).all()
    assert out[0, 2].item() == pytest.approx(math.log(1e-6))


def test_k_larger_than_the_memory_uses_every_key() -> None:
    assert _vote(k=50).k == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weight": 0.0}, "0 < weight < 1"),
        ({"weight": 1.0}, "0 < weight < 1"),
        ({"temperature": 0.0}, "temperature > 0"),
        ({"k": 0}, "k >= 1"),
    ],
)
def test_bad_settings_are_refused_with_the_value(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _vote(**kwargs)


def test_keys_and_labels_must_match() -> None:
    with pytest.raises(ValueError, match=r"keys \(4, 3\) and labels \(3,\)"):
        NeighbourVote(KEYS, LABELS[:3], n_classes=3, k=2, temperature=1.0, weight=0.5)


def test_recipe_fields_are_validated_before_training() -> None:
    cfg = commands.train_config({"memory_k": 16, "memory_sources": ["phrasebank", "twitter"]})
    assert cfg.memory_k == 16 and cfg.memory_sources == ["phrasebank", "twitter"]
    assert commands.train_config({"memory_weight": 0}).memory_weight == 0
    with pytest.raises(ConfigError) as info:
        commands.train_config({"memory_weight": 1.5, "memory_sources": ["reuters"]})
    text = str(info.value)
    assert "memory_weight" in text and "memory_sources" in text


def test_export_set_lists_every_bad_field_before_loading_a_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "export",
            "--out",
            str(tmp_path / "model"),
            "--checkpoint",
            str(tmp_path / "no-such-checkpoint"),
            "--set",
            "patience=3",
            "--set",
            "memory_k=0",
        ]
    )
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert "--set patience: fixed when the checkpoint was trained" in err
    assert "memory_k: Input should be greater than or equal to 1 (got 0)" in err
    assert "no-such-checkpoint" not in err  # refused before the checkpoint was read
