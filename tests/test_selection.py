"""The generator's weight average (optim.ema_images) and the choice of the published weights (optim.select)."""
import os
import signal

import pytest
import torch

from gclib.recipes.teacher import Pix2PixTrainer
from gclib.recipes.trainer import TrainConfig, selection_score
from test_train import _data, _nets


def test_average_follows_its_closed_form(tmp_path):
    """theta_avg after step t = beta_t theta_avg + (1 - beta_t) theta_t, started at the weights after step 1."""
    data = _data("facades").train
    cfg = TrainConfig(steps=4, batch_size=2, ckpt_every=100, ema_images=6)
    expected, trail = None, []
    class Spy(Pix2PixTrainer):
        def update_average(self):
            super().update_average()
            trail.append({k: v.clone() for k, v in self.generator.state_dict().items()})
    tr = Spy(_nets(True), cfg, tmp_path / "t.pt").fit(data, progress=False)
    for step, weights in enumerate(trail, start=1):
        if expected is None:
            expected = weights
            continue
        half_life = min(6, 0.1 * step * 2)
        beta = 0.5 ** (2 / half_life)
        expected = {k: beta * expected[k] + (1 - beta) * w if w.is_floating_point() else w
                    for k, w in weights.items()}
    got = tr.average
    assert all(torch.allclose(got[k], expected[k], atol=1e-6) for k in got)
    assert not all(torch.equal(got[k], trail[-1][k]) for k in got)   # an average, not the last weights


def test_without_an_average_the_artifact_keeps_the_last_weights(tmp_path):
    tr = Pix2PixTrainer(_nets(True), TrainConfig(steps=2, batch_size=2), tmp_path / "t.pt").fit(
        _data("facades").train, progress=False)
    assert tr.average is None and tr.selected() == {"weights": "last", "step": 2}
    assert all(torch.equal(v, tr.nets["G"].state_dict()[k]) for k, v in tr.published_weights()["G"].items())


def test_selection_keeps_the_best_heldout_evaluation_and_survives_a_resume(tmp_path):
    """A score that is best at step 4 of 6: the artifact's G is the average as it was at step 4, also when the
    training was stopped after step 5 and resumed in a fresh process."""
    data = _data("facades").train
    cfg = TrainConfig(steps=6, batch_size=2, ckpt_every=100, eval_every=2, ema_images=4, select="fid")
    calls = []                                            # (generator weights, score) of every call, in order

    def eval_fn(G):
        step = {0: 2, 1: 2, 2: 4, 3: 4, 4: 6, 5: 6}[len(calls)]   # at each step: the average, then the raw weights
        calls.append({k: v.clone() for k, v in G.state_dict().items()})
        return {"fid": {2: 5.0, 4: 1.0, 6: 3.0}[step]}

    class StopAfter5(Pix2PixTrainer):
        def train_step(self, batch, g):
            if len(self.history) == 4:
                os.kill(os.getpid(), signal.SIGINT)
            return super().train_step(batch, g)
    with pytest.raises(KeyboardInterrupt):
        StopAfter5(_nets(True), cfg, tmp_path / "t.pt").fit(data, eval_fn, progress=False)
    tr = Pix2PixTrainer(_nets(True, seed=9), cfg, tmp_path / "t.pt").fit(data, eval_fn, progress=False)
    assert tr.selected()["step"] == 4 and tr.selected()["weights"] == "best"
    published = tr.published_weights()["G"]
    assert all(torch.equal(published[k], calls[2][k]) for k in published)
    assert [e["step"] for e in tr.evals] == [2, 4, 6] and all("raw_fid" in e for e in tr.evals)
    assert not all(torch.equal(published[k], tr.nets["G"].state_dict()[k]) for k in published)


def test_selection_score_of_a_supernet_is_the_mean_over_its_reference_subnetworks():
    assert selection_score({"fid@largest": 10.0, "fid@smallest": 20.0, "kid@largest": 1.0}, "fid") == 15.0
    assert selection_score({"fid": 3.0, "raw_fid": 9.0}, "fid") == 3.0
    assert selection_score({"kid": 3.0}, "fid") is None


def test_the_raw_weights_are_kept_when_they_score_better_than_the_average(tmp_path):
    data = _data("facades").train
    cfg = TrainConfig(steps=4, batch_size=2, ckpt_every=100, eval_every=2, ema_images=4, select="fid")
    calls = []

    def eval_fn(G):          # steps 2 and 4, the average first: the raw weights of step 4 score best
        calls.append({k: v.clone() for k, v in G.state_dict().items()})
        return {"fid": [5.0, 6.0, 4.0, 1.0][len(calls) - 1]}
    tr = Pix2PixTrainer(_nets(True), cfg, tmp_path / "t.pt").fit(data, eval_fn, progress=False)
    assert tr.selected()["of"] == "raw" and tr.selected()["step"] == 4 and tr.selected()["score"] == 1.0
    published = tr.published_weights()["G"]
    assert all(torch.equal(published[k], calls[3][k]) for k in published)
    assert all(torch.equal(published[k], tr.nets["G"].state_dict()[k]) for k in published)   # raw at the end
