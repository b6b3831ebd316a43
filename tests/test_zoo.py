"""The model zoo: what is shipped is current, intact and loadable; a stage finds it; damage is refused, never loaded."""
import json

import pytest
import torch

from gclib import metrics, stages, zoo
from gclib.data import load_task
from gclib.families import get_family
from gclib.presets import get_preset


def _smoke_teacher(task: str, runs):
    """A smoke-preset teacher of ``task`` trained (zoo off) with held-out evaluations: (preset, data, scorer, it)."""
    cfg = get_preset("smoke", task=task)
    data = load_task(task, cfg)
    scorer = metrics.split_scorer(data, "heldout", metrics.get_extractor("offline"), resamples=0)
    with zoo.disabled():
        return cfg, data, scorer, stages.teacher(cfg, data, runs, eval_fn=scorer, progress=False)


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    """A smoke-preset teacher, trained once and exported into a zoo folder of its own."""
    runs, shelf = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("zoo")
    cfg, _, _, trained = _smoke_teacher("facades", runs)
    record = zoo.export(trained.artifact.path, preset="smoke", zoo_dir=shelf)
    return cfg, trained, record, shelf


def test_shipped_zoo_is_current_intact_and_reproduces_its_scores():
    """What data/zoo ships: every file listed with its full SHA-256, every key the one the current code and laptop
    preset compute (a change that strands it fails here, naming the rebuild command), every generator loading
    strictly from safetensors and re-scoring its recorded held-out check within the tolerance."""
    checked = zoo.verify()
    expected = zoo.expected_stages()
    assert set(checked) <= set(expected)
    assert set(expected) <= set(checked), f"the zoo lacks {set(expected) - set(checked)}: run `python -m gclib zoo build`"
    for name in checked:
        record = zoo.read_record(name)
        assert record["stage"]["key"] == expected[name].key and record["command"].startswith("python -m gclib zoo")
        assert tuple(record["networks"]) == zoo.shipped_networks(expected[name]), name
        if record["stage"]["kind"] == "frontier":   # scores only: one row per budget and role, every seed scored
            assert record["rows"] and all(len(r["after"]) == len(record["seeds"]) for r in record["rows"])
            continue
        assert record["fp16_output_difference_levels"]["max"] <= zoo.FP16_TOLERANCE or record["storage"] == "float32"
        if record["stage"]["kind"] == "teacher":    # worth compressing: far better than doing nothing
            assert record["heldout_scores"]["fid high"] < record["identity_scores"]["fid low"], name
    assert sum(p.stat().st_size for p in zoo.ZOO_DIR.iterdir()) <= 64 * 2 ** 20
    assert (zoo.ZOO_DIR / "ZOO.md").read_text() == zoo.summary(), "ZOO.md is stale: run `python -m gclib zoo export`"


def test_a_stage_loads_its_shipped_artifact(tiny_zoo, tmp_path, monkeypatch):
    cfg, trained, record, shelf = tiny_zoo
    monkeypatch.setattr(zoo, "ZOO_DIR", shelf)
    G, art = stages.teacher(cfg, load_task("facades", cfg), tmp_path, progress=False)   # an empty runs folder
    assert art.shipped and not art.trained_now and "model zoo" in art.source
    assert not any(tmp_path.glob("*.pt"))                 # nothing trained
    assert art.key == trained.artifact.key and art.evals == record["evals"]
    original = trained.artifact.weights["G"]
    for k, v in G.state_dict().items():                   # the shipped weights, 16-bit rounded (or exact)
        assert torch.allclose(v, original[k].half().float() if record["storage"] == "float16" else original[k])
    with zoo.disabled():                                  # the zoo switched off: the stage trains
        assert stages.teacher(cfg, load_task("facades", cfg), tmp_path, progress=False).artifact.trained_now


def test_a_damaged_or_unlisted_file_is_refused_naming_it(tiny_zoo, tmp_path, monkeypatch):
    cfg, trained, record, shelf = tiny_zoo
    name = trained.artifact.path.name[:-3]
    for f in shelf.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    weights = tmp_path / f"{name}.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01                           # one bit flipped in the tensors
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)
    with pytest.raises(zoo.ZooError, match=f"{name}.safetensors does not match its SHA-256"):
        stages.teacher(cfg, load_task("facades", cfg), tmp_path / "runs", progress=False)
    (tmp_path / "SHA256SUMS").write_text("")              # a file nobody listed
    with pytest.raises(zoo.ZooError, match="not listed"):
        zoo.lookup(stages.teacher_stage(cfg, load_task("facades", cfg)), tmp_path)


def test_a_changed_setting_strands_the_zoo_with_a_message(tiny_zoo, monkeypatch):
    cfg, trained, record, shelf = tiny_zoo
    changed = get_preset("smoke", {"teacher.steps": 31})
    monkeypatch.setitem(zoo.__dict__, "expected_stages",
                        lambda preset: {zoo.stem(stages.teacher_stage(changed.for_task("facades"),
                                                                      load_task("facades", changed), 0)): None})
    with pytest.raises(zoo.ZooError, match="stranded the zoo.*python -m gclib zoo build --sections facades"):
        zoo.verify(shelf, preset="smoke")


def test_the_record_says_how_to_rebuild_and_what_was_kept(tiny_zoo):
    cfg, trained, record, shelf = tiny_zoo
    on_disk = json.loads((shelf / f"{trained.artifact.path.name[:-3]}.json").read_text())
    assert on_disk["command"] == "python -m gclib zoo build --sections facades"
    assert on_disk["selected"]["weights"] in ("best", "average", "last")
    assert {"fid", "fid low", "fid high"} <= set(on_disk["heldout_scores"])
    assert on_disk["plateau"]["holds"] in (True, False) and on_disk["trained_at"] != ""
    assert zoo.verify(shelf, preset="smoke") == [trained.artifact.path.name[:-3]]
    assert f"`{trained.artifact.path.name[:-3]}`" in zoo.summary(shelf)


def test_a_shipped_history_keeps_its_steps_time_and_means():
    """Records hold at most HISTORY_ROWS rows of block means: the last step, the seconds and the mean survive."""
    history = [{"step": i, "seconds": 0.5, "G": float(i % 4), "D": 1.0} for i in range(1234)]
    thin = zoo.thin_history(history, rows=100)
    assert len(thin) <= 100 and thin[-1]["step"] == 1233
    assert abs(sum(h["seconds"] for h in thin) - 617.0) < 1e-3
    assert all(h["D"] == 1.0 for h in thin) and abs(sum(h["G"] for h in thin) / len(thin) - 1.5) < 0.01
    assert zoo.thin_history(history[:50], rows=100) == history[:50]        # short histories are kept as they are
    assert zoo.thin_history([{"step": 0, "seconds": 0.123456789, "G": 1 / 3}]) == [{"step": 0, "seconds": 0.12346,
                                                                                   "G": 0.33333}]


def test_plateau_rule():
    """Stopped improving: the last quarter's best is within the instrument's half-interval of the best before it."""
    flat = [{"step": s, "fid": v} for s, v in zip(range(100, 900, 100), (50, 30, 20, 15, 12, 11, 10.5, 10.8))]
    assert zoo.plateau(flat, "fid", half_width=1.0)["holds"]
    assert not zoo.plateau(flat, "fid", half_width=0.1)["holds"]       # 11 -> 10.5 is resolved by a finer one
    falling = [{"step": s, "fid": 50.0 - 5 * i} for i, s in enumerate(range(100, 900, 100))]
    assert not zoo.plateau(falling, "fid", 1.0)["holds"]
    spiked = falling[:6] + [{"step": 700, "fid": 60.0}, {"step": 800, "fid": 58.0}]
    assert zoo.plateau(spiked, "fid", 1.0)["holds"]                    # worse at the end is not improving


def test_the_supernet_ships_with_its_mapping_convs_and_loads(tmp_path_factory, monkeypatch):
    """A supernet exported with G, D and maps comes back from the zoo as the stage notebook 03 trains, and its
    plateau check reads the mean over its reference sub-networks."""
    runs, shelf = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("zoo")
    cfg, data, scorer, teacher = _smoke_teacher("stripes", runs)
    with zoo.disabled():
        trained = stages.supernet(cfg, data, teacher, runs, eval_fn=scorer, progress=False)
    record = zoo.export(trained.artifact.path, ("G", "D", "maps"), preset="smoke", zoo_dir=shelf)
    assert record["plateau"]["holds"] in (True, False) and "fid@largest" in record["evals"][-1]
    monkeypatch.setattr(zoo, "ZOO_DIR", shelf)
    again = stages.supernet(cfg, data, teacher, tmp_path_factory.mktemp("empty"), progress=False)
    assert again.artifact.shipped and set(again.artifact.weights) == {"G", "D", "maps"}


def test_the_plateau_reads_what_the_selection_could_keep():
    """Each evaluation offers the better of the average and the raw weights (a supernet's: means over references)."""
    assert zoo.candidate_score({"fid": 30.0, "raw_fid": 6.0}, "fid") == 6.0
    assert zoo.candidate_score({"fid@largest": 4.0, "fid@smallest": 8.0, "raw_fid@largest": 9.0,
                                "raw_fid@smallest": 9.0}, "fid") == 6.0
    assert zoo.candidate_score({"kid": 1.0}, "fid") is None


def test_other_training_images_strand_the_zoo(tiny_zoo, monkeypatch):
    """Keys hold the data's settings, not its content: the record's digest of the training images catches a change
    to the embedded generator that keeps every key."""
    cfg, trained, record, shelf = tiny_zoo
    assert record["data"] == zoo.data_digest("facades", "smoke")
    monkeypatch.setattr(zoo, "data_digest", lambda task, preset: {"embedded_version": -1, "train_sha256": "x"})
    with pytest.raises(zoo.ZooError, match="other facades training images.*zoo build --sections facades"):
        zoo.verify(shelf, preset="smoke")


def test_a_teacher_discriminator_ships_in_eight_bits_within_its_tolerance(tiny_zoo):
    """A teacher's D (only ever a starting point) ships as 8-bit weight matrices with one scale per output channel:
    int8 in the file, read back as float32 within INT8_TOLERANCE of the trained weights, tensor by tensor."""
    from safetensors.torch import load_file
    _, trained, record, shelf = tiny_zoo
    name = trained.artifact.path.stem
    assert record["int8"]["networks"] == ["D"] and record["int8"]["largest relative weight change"]["D"] <= zoo.INT8_TOLERANCE
    flat = load_file(str(shelf / f"{name}.safetensors"))
    original = trained.artifact.weights["D"]
    matrices = [k for k, v in original.items() if v.is_floating_point() and v.dim() >= 2]
    assert matrices and all(flat[f"D.{k}"].dtype == torch.int8 for k in matrices)
    assert all(flat[f"G.{k}"].dtype != torch.int8 for k in trained.artifact.weights["G"])
    read = zoo.read_weights(name, shelf)["D"]
    assert read.keys() == original.keys()
    for k, v in original.items():
        change = float((read[k] - v.float()).norm() / v.float().norm().clamp_min(1e-12))
        assert change <= (zoo.INT8_TOLERANCE if k in matrices else 1e-3), (k, change)


def test_sixteen_bits_are_measured_in_grey_levels(tiny_zoo):
    """The 16-bit check compares uint8 images: a smoke teacher's outputs move by a grey level or two at most, so it
    ships in 16 bits (an earlier check scaled grey levels by 127.5 and refused every network)."""
    cfg, trained, record, shelf = tiny_zoo
    levels = record["fp16_output_difference_levels"]
    assert levels["max"] <= zoo.FP16_TOLERANCE and record["storage"] == "float16"
    assert levels["max"] == int(levels["max"])                 # whole grey levels: a difference of uint8 images


def test_a_standalone_reference_ships_as_its_held_out_scores(tiny_zoo, tmp_path_factory, monkeypatch):
    """Notebook 03's stand-alone references are shipped without weights: the stage comes back with no network, and
    `stages.heldout_scores` gives the scores the notebook's own held-out scorer gave the trained network."""
    cfg, teacher, _, _ = tiny_zoo
    runs, shelf = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("zoo")
    data = load_task("facades", cfg)
    scorer = metrics.split_scorer(data, "heldout", metrics.get_extractor("offline"), metrics.load_segmenter("facades"),
                                  resamples=0)
    config = cfg.supernet.space(get_family(cfg.family), True).smallest()
    with zoo.disabled():
        trained = stages.subnet(cfg, data, teacher, config, runs, 4, "teacher", progress=False)
    record = zoo.export(trained.artifact.path, (), preset="smoke", zoo_dir=shelf)
    assert record["networks"] == [] and not (shelf / f"{trained.artifact.path.stem}.safetensors").exists()
    monkeypatch.setattr(zoo, "ZOO_DIR", shelf)
    again = stages.subnet(cfg, data, teacher, config, tmp_path_factory.mktemp("empty"), 4, "teacher", progress=False)
    assert again.net is None and again.artifact.shipped and again.artifact.key == trained.artifact.key
    recorded, measured = stages.heldout_scores(again, scorer, "offline"), scorer(trained.net)
    assert recorded.keys() == measured.keys()
    assert all(abs(recorded[m] - measured[m]) <= 1e-4 * max(1.0, abs(measured[m])) for m in measured), (recorded, measured)
    with pytest.raises(ValueError, match="offline features, not 'inception'"):
        stages.heldout_scores(again, scorer, "inception")


def test_a_seed_shipped_as_its_record_alone_drops_its_old_weights_file(tiny_zoo, tmp_path):
    """Re-exported without networks, an artifact's earlier safetensors file leaves the shelf and SHA256SUMS, and its
    record carries the test scores notebooks 01 and 04 read instead."""
    import shutil
    cfg, trained, _, shelf = tiny_zoo
    copy = tmp_path / "zoo"
    shutil.copytree(shelf, copy)
    name = trained.artifact.path.name[:-3]
    assert (copy / f"{name}.safetensors").exists()
    record = zoo.export(trained.artifact.path, (), preset="smoke", zoo_dir=copy)
    assert not (copy / f"{name}.safetensors").exists() and f"{name}.safetensors" not in zoo.read_sums(copy)
    assert record["networks"] == [] and "fid" in record["test_scores"]["offline"]
    assert zoo.verify(copy, preset="smoke") == [name]


def test_zoo_build_names_an_unknown_section_or_stage_before_training(capsys):
    from gclib.cli import main
    assert main(["zoo", "build", "--sections", "facades,edges"]) == 2
    assert "unknown 'edges'; --sections takes facades,stripes,gaugan,munit" in capsys.readouterr().err
    assert main(["zoo", "build", "--stages", "students"]) == 2
    assert "unknown 'students'" in capsys.readouterr().err


def test_a_frontier_is_the_notebook_search_and_fine_tuning_at_every_budget(tmp_path_factory, monkeypatch):
    """The frontier record: at every budget the searched network and its uniform rival (one row where only the
    uniform one fits), each within its budget, fine-tuned with every seed; its scores are those the test scorer gives
    the fine-tuned networks; it is found while current, refused when tampered with, gone when a setting changes."""
    runs, shelf = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("zoo")
    changes = {"search.frontier_widths": (8, 4), "student.seeds": (0, 1), "search.finetune_steps": 4,
               "search.frontier_finetune_steps": 6}
    smoke = zoo.section_preset
    monkeypatch.setattr(zoo, "section_preset", lambda section, preset: smoke(section, preset).override(changes))
    zoo._splits_and_scorer.cache_clear()
    try:
        with zoo.disabled():
            record = zoo.build_frontier("facades", "smoke", runs, progress=False, zoo_dir=shelf)
        cfg, data, _ = zoo._splits_and_scorer("facades", "smoke")
        family = get_family(cfg.family)
        macs = lambda c: family.config_macs(c, cfg.data.image_size, **family.arch(cfg))
        budgets = record["search"]["budgets"]
        assert list(budgets) == ["uniform 8", "uniform 4"]
        assert budgets["uniform 4"] == macs(family.uniform(4)) < budgets["uniform 8"] == macs(family.uniform(8))
        for label, budget in budgets.items():
            rows = [r for r in record["rows"] if r["budget"] == label]
            roles = {r["role"] for r in rows}
            assert roles in ({"searched", "uniform"}, {"searched = uniform"}), roles
            assert all(r["macs"] == macs(r["config"]) <= budget for r in rows)
            assert all(sorted(r["after"]) == ["0", "1"] for r in rows)
        kept = json.loads(next(runs.glob("search_facades_s0_*.json")).read_text())   # the search resumes from it
        assert len(kept["results"]) == record["search"]["evaluated"] and kept["about"]["metric"] == "perceptual"
        narrowest = [r for r in record["rows"] if r["budget"] == "uniform 4"]
        assert [r["role"] for r in narrowest] == ["searched = uniform"]        # nothing else fits the narrowest
        # the record holds what the test scorer gives the fine-tuned network (loaded back from the runs folder)
        test = metrics.split_scorer(data, "test", metrics.get_extractor("offline"), metrics.load_segmenter("facades"),
                                    resamples=zoo.FRONTIER_RESAMPLES)
        row = record["rows"][0]
        teacher = stages.teacher(cfg, data, runs, progress=False)
        sup = stages.supernet(cfg, data, teacher, runs, progress=False)
        with zoo.disabled():
            tuned = stages.subnet(cfg, data, teacher, row["config"], runs, 6, start="supernet", supernet=sup,
                                  seed=1, progress=False)
        assert tuned.artifact.trained_now is False and record["fine-tuning steps"] == 6
        measured = test(tuned.net)
        assert all(abs(row["after"]["1"][m] - measured[m]) <= 1e-6 * max(1.0, abs(measured[m])) for m in measured)
        # the notebook's shorter fine-tuning at its main budget, recorded beside the frontier's, is a network of its own
        notebook = record["notebook fine-tuning"]
        assert notebook["steps"] == 4 and notebook["budget"] in budgets
        short = notebook["rows"][0]
        with zoo.disabled():
            tuned = stages.subnet(cfg, data, teacher, short["config"], runs, 4, start="supernet", supernet=sup,
                                  seed=1, progress=False)
        assert tuned.artifact.trained_now is False and short["budget"] == notebook["budget"]
        measured = test(tuned.net)
        assert all(abs(short["after"]["1"][m] - measured[m]) <= 1e-6 * max(1.0, abs(measured[m])) for m in measured)
        assert short["after"] != next(r for r in record["rows"] if r["config"] == short["config"])["after"]
        # notebook 04's later seeds ship as records: found by the keys finetune_stages computes without training, they
        # come back without a network and with the test scores the frontier recorded for the same runs
        later = zoo.finetune_stages("facades", "smoke", zoo_dir=shelf)
        assert {st.settings["config"] for st in later} == {r["config"] for r in notebook["rows"]
                                                           if r["budget"] == notebook["budget"]}
        assert {st.seed for st in later} == {1}
        for st in later:
            zoo.export(runs / st.filename, zoo.shipped_networks(st, "smoke"), preset="smoke", zoo_dir=shelf)
        monkeypatch.setattr(zoo, "ZOO_DIR", shelf)
        empty = tmp_path_factory.mktemp("empty")
        for st in later:
            again = stages.subnet(cfg, data, teacher, st.settings["config"], empty, 4, start="supernet", supernet=sup,
                                  seed=1, progress=False)
            assert again.net is None and again.artifact.shipped and again.artifact.key == st.key
            recorded = stages.test_scores(again, test, "offline")
            frontier = next(r for r in notebook["rows"] if r["config"] == st.settings["config"])["after"]["1"]
            assert all(abs(recorded[m] - frontier[m]) <= 1e-6 * max(1.0, abs(frontier[m])) for m in frontier)
        assert not any(empty.glob("*.pt"))
        monkeypatch.undo()
        monkeypatch.setattr(zoo, "section_preset", lambda section, preset: smoke(section, preset).override(changes))
        assert record["teacher_macs"] == metrics.count_macs(teacher.net, cfg.data.image_size)
        assert zoo.frontier_record("facades", "smoke", shelf) == record
        changes["search.frontier_finetune_steps"] = 8                 # another fine-tuning length: not for it
        assert zoo.frontier_record("facades", "smoke", shelf) is None
        changes["search.frontier_finetune_steps"] = 6
        name = next(shelf.glob("frontier_facades_*.json"))
        name.write_text(name.read_text().replace('"uniform 8"', '"uniform 9"', 1))
        with pytest.raises(zoo.ZooError, match="does not match its SHA-256"):
            zoo.frontier_record("facades", "smoke", shelf)
        changes["search.population"] = 7                              # another search: the record is not for it
        assert zoo.frontier_record("facades", "smoke", shelf) is None
    finally:
        zoo._splits_and_scorer.cache_clear()


def test_the_frontier_verdict_reads_the_teacher_band():
    """At teacher quality means no worse than the worse end of the teacher's band (two seeds: their spread; one
    seed: its interval); the headline is the smallest searched network that is, against the paper's ratio."""
    from gclib import pipeline, report
    row = lambda role, macs, fid, miou: {"budget": f"b{macs}", "role": role, "config": f"c{macs}", "macs": macs,
                                         "after": {"0": {"fid": fid, "mIoU": miou}, "1": {"fid": fid + 2, "mIoU": miou}},
                                         "before": {"fid": fid * 2, "mIoU": miou}}
    rows = [row("searched", 10, 20, 0.9), row("uniform", 10, 21, 0.9), row("searched", 5, 24, 0.85),
            row("searched = uniform", 2, 40, 0.6)]
    two = [{"fid": 20.0, "mIoU": 0.9}, {"fid": 25.0, "mIoU": 0.84}]
    assert pipeline.teacher_band(two, "fid") == (20.0, 25.0) and pipeline.teacher_band(two, "mIoU") == (0.9, 0.84)
    one = [{"fid": 22.0, "fid low": 20.0, "fid high": 26.0, "mIoU": 0.9, "mIoU low": 0.85, "mIoU high": 0.95}]
    assert pipeline.teacher_band(one, "fid") == (20.0, 26.0) and pipeline.teacher_band(one, "mIoU") == (0.95, 0.85)
    assert pipeline.at_teacher_quality(rows[2], two, ["fid", "mIoU"]) == {"fid": True, "mIoU": True}
    assert pipeline.at_teacher_quality(rows[3], two, ["fid", "mIoU"]) == {"fid": False, "mIoU": False}
    best = pipeline.largest_reduction(rows, two, 100.0, ["fid", "mIoU"])
    assert best["config"] == "c5" and best["reduction"] == 20.0
    record = {"rows": rows, "teacher_test": {"0": two[0], "1": two[1]}, "teacher_macs": 100.0,
              "search": {"budgets": {"b10": 10, "b5": 5, "b2": 2}}}
    assert report.frontier_verdict(record, "pix2pix")["verdict"] == "held"            # 20x >= 11.8x
    assert report.frontier_verdict(record, "MUNIT")["verdict"] == "partly"            # 20x < 29.4x
    record["teacher_test"] = {"0": {"fid": 1.0, "mIoU": 1.0}, "1": {"fid": 1.0, "mIoU": 1.0}}
    assert report.frontier_verdict(record, "pix2pix")["verdict"] == "not"
    table = report.frontier_table(record)
    assert list(table["x fewer MACs"]) == [10.0, 10.0, 20.0, 50.0] and not table["at teacher quality"].any()


def test_a_shipped_student_loads_as_the_generator_notebook_02_trained(tiny_zoo, tmp_path_factory, monkeypatch):
    """Notebook 02's students of the later seeds ship their generator alone: the stage comes back from the zoo with
    nothing trained, the key `student_stage` computes without training, and the outputs of the trained network."""
    cfg, teacher, _, _ = tiny_zoo
    runs, shelf = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("zoo")
    data = load_task("facades", cfg)
    with zoo.disabled():
        trained = stages.student(cfg, data, teacher, "features", runs, seed=1, progress=False)
    assert stages.student_stage(cfg, data, "features", teacher.artifact.key, 1).key == trained.artifact.key
    record = zoo.export(trained.artifact.path, ("G",), preset="smoke", zoo_dir=shelf)
    assert record["networks"] == ["G"] and record["identity_scores"] == {}
    monkeypatch.setattr(zoo, "ZOO_DIR", shelf)
    empty = tmp_path_factory.mktemp("empty")
    again = stages.student(cfg, data, teacher, "features", empty, seed=1, progress=False)
    assert again.artifact.shipped and not again.artifact.trained_now and set(again.artifact.weights) == {"G"}
    assert not any(empty.glob("*.pt"))
    x = data.test.A[:4]
    step = 1 if record["storage"] == "float32" else zoo.FP16_TOLERANCE
    assert (metrics.generate(again.net, x).int() - metrics.generate(trained.net, x).int()).abs().max() <= step
    other_seed = stages.student_stage(cfg, data, "features", teacher.artifact.key, 0)
    assert other_seed.key != trained.artifact.key      # the first seed is not shipped: it trains live


def test_the_comparison_supernets_are_notebook_03s(monkeypatch):
    """`supernet_comparisons`: the other sampler (both ways) and, only where entries have widths of their own, the
    supernet with every entry shared; the zoo ships the main supernet with D and maps and the comparisons' G alone."""
    cfg = get_preset("laptop", task="stripes")
    comparisons = stages.supernet_comparisons(cfg)
    other = "sandwich" if cfg.supernet.sampler == "uniform" else "uniform"
    assert comparisons[f"{other} sampler"].supernet.sampler == other
    assert bool(cfg.supernet.entry_choices) == (len(comparisons) == 2)
    flipped = stages.supernet_comparisons(comparisons[f"{other} sampler"])
    assert flipped[f"{cfg.supernet.sampler} sampler"].supernet.sampler == cfg.supernet.sampler
    expected = zoo.expected_stages()
    networks = {name: zoo.shipped_networks(st) for name, st in expected.items() if st.kind == "supernet"}
    assert sorted(networks.values()).count(("G", "D", "maps")) == 2 and ("G",) in networks.values()


def test_the_rebuild_time_splits_the_sections_over_two_cores():
    """ZOO.md's rebuild time: the sections' hours add up to one core's, and two cores (one section each) take no less
    than the longest section or half of it all, and no more than one core."""
    hours = zoo.rebuild_hours()
    assert set(hours["sections"]) == set(zoo.ZOO_SECTIONS) and all(h > 0 for h in hours["sections"].values())
    assert hours["one core"] == pytest.approx(sum(hours["sections"].values()))
    assert max(max(hours["sections"].values()), hours["one core"] / 2) <= hours["two cores"] < hours["one core"]


def test_a_section_rebuilt_in_parts_distils_from_its_shipped_teacher(tiny_zoo, tmp_path, monkeypatch):
    """The build's distillation stages start from the teacher in the runs folder, else the shipped one (its section's
    teachers shipped first, the rest built later from an empty runs folder), never a teacher trained anew."""
    cfg, trained, record, shelf = tiny_zoo
    monkeypatch.setattr(zoo, "ZOO_DIR", shelf)
    with zoo.disabled():    # as every build stage runs
        *_, teacher, _ = zoo._first_teacher("facades", "smoke", tmp_path, 0, False)
        assert not zoo.enabled()
    assert teacher.artifact.shipped and teacher.artifact.key == trained.artifact.key
    assert not list(tmp_path.glob("teacher_*"))
    x = trained.net.to("cpu")
    with torch.no_grad():
        probe = torch.rand(1, 3, cfg.data.image_size, cfg.data.image_size) * 2 - 1
        assert (teacher.net(probe) - x(probe)).abs().max() < 0.05      # the 16-bit weights of the same teacher
