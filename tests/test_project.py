"""Packaging, CLI, runner and results plumbing."""
import json
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from gclib import report, runner
from gclib.cli import main
from gclib.families.spade.family import SPADE_FAMILY
from gclib.presets import PRESETS, get_preset

REPO = Path(__file__).resolve().parent.parent


def _norm(name: str) -> str:
    return re.split(r"[<>=!~\[ ]", name.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_names_the_same_packages_as_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {_norm(d) for d in project["dependencies"]}
    declared |= {_norm(d) for d in project["optional-dependencies"]["dev"]}
    env = (REPO / "environment.yml").read_text()
    pip_section = env.split("  - pip:\n", 1)[1]
    listed = {_norm(line.strip()[2:]) for line in pip_section.splitlines()
              if line.strip().startswith("- ") and not line.strip().startswith("- -e")}
    assert declared == listed


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, re.S)
    lines = [line.split("#")[0].strip() for line in commands[0].strip().splitlines()]
    first_two = [line for line in lines if line][:2]
    assert first_two == ["make run", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_presets():
    assert set(PRESETS) == {"smoke", "laptop", "gpu", "paper"}
    assert PRESETS["paper"].data.image_size == 256 and PRESETS["paper"].teacher.ngf == 64
    assert PRESETS["paper"].supernet.unpaired_choices == (16, 24, 32, 48, 64)          # Fast CycleGAN's set
    assert PRESETS["smoke"].teacher.steps < PRESETS["laptop"].teacher.steps
    assert get_preset("smoke", {"teacher.steps": 3}).teacher.steps == 3
    with pytest.raises(ValueError, match="laptop"):
        get_preset("huge")
    with pytest.raises(ValueError, match=r"unknown preset field 'teacher.step'.*'steps'"):
        get_preset("smoke", {"teacher.step": 3})
    with pytest.raises(ValueError, match="unknown preset part 'gan'"):
        get_preset("smoke", {"gan.steps": 3})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_shipped_main_budget_leaves_the_search_a_choice(name):
    """Notebook 04's main budget is the MACs of the uniform sub-network at the student's width. If that width is the
    narrowest choice, the uniform sub-network is the only one under the budget and searched == uniform."""
    from gclib.data import EMBEDDED_TASKS
    for task in (None, *EMBEDDED_TASKS):
        for family in (None, *PRESETS[name].families):             # notebook 06's main budget is its student's too
            p = get_preset(name, {"family": family} if family else None, task=task)
            if p.search.budget_gmacs or p.student.ngf not in p.search.budget_widths:
                continue
            choices = p.supernet.choices_for(task is None or EMBEDDED_TASKS[task] == "paired")
            assert p.student.ngf > min(choices), (name, task, family, p.student.ngf, choices)


@pytest.mark.parametrize("field, value, message", [
    ("data.image_size", 0, "data.image_size must be a positive integer, got 0"),
    ("data.image_size", 30, "data.image_size must be a multiple of 4"),
    ("data.image_size", 16, "data.image_size must be at least 32"),
    ("data.load_size", 20, r"data.load_size must be 0 or at least data.image_size \(32\)"),
    ("teacher.steps", -1, "teacher.steps must be a non-negative integer, got -1"),
    ("student.seeds", (0, -1), "student.seeds must be a non-empty tuple of non-negative integers"),
    ("search.budget_widths", (5,), r"search.budget_widths must be widths in supernet.choices"),
    ("optim.decay_fraction", 1.5, "optim.decay_fraction must be between 0 and 1"),
    ("teacher.d_norm", "batch", r"teacher.d_norm must be one of \(.instance., .none.\), got .batch."),
    ("search.metric", "psnr", r"search.metric must be one of \(.fid., .kid., .l1., .perceptual.\) \(lower is better"),
    ("student.teacher_d", "False", r"student.teacher_d must be true or false \(a boolean, not text\), got 'False'"),
])
def test_get_preset_validates_and_names_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        get_preset("smoke", {field: value})


def test_per_task_changes_apply_to_their_task_only_and_are_validated():
    laptop = get_preset("laptop")
    stripes = get_preset("laptop", task="stripes")
    facades = get_preset("laptop", task="facades")    # facades changes its search metric and its students' D only
    assert facades.search.metric == laptop.tasks["facades"]["search.metric"] != laptop.search.metric
    assert facades.student.ndf == laptop.tasks["facades"]["student.ndf"] != laptop.student.ndf
    assert facades.override({"search.metric": laptop.search.metric, "student.ndf": laptop.student.ndf}) == laptop
    assert stripes.search.metric == laptop.search.metric
    assert stripes.teacher.ngf == laptop.tasks["stripes"]["teacher.ngf"] != laptop.teacher.ngf
    assert stripes.teacher.ndf == laptop.teacher.ndf                             # what the task leaves alone
    assert stripes.data.image_size == laptop.data.image_size
    assert get_preset("laptop", {"teacher.steps": 7}, task="stripes").teacher.steps == 7   # user's word last
    with pytest.raises(ValueError, match=r"changes for task 'stripes'.*data.image_size must be a multiple of 4"):
        laptop.__class__(**{**laptop.__dict__, "tasks": {"stripes": {"data.image_size": 30}}})


def test_per_family_changes_apply_when_the_family_is_switched_and_are_validated():
    laptop = get_preset("laptop")
    spade = get_preset("laptop", {"family": "spade"})
    assert spade.teacher.ngf == laptop.families["spade"]["teacher.ngf"] != laptop.teacher.ngf
    assert spade.optim == laptop.optim                                           # what the family leaves alone
    assert get_preset("laptop", {"family": "spade", "supernet.steps": 9}).supernet.steps == 9   # user's word last
    assert get_preset("laptop", {"family": "resnet"}) == laptop
    with pytest.raises(ValueError, match=r"changes for family 'spade'.*spade.n_up must be a non-negative integer"):
        laptop.__class__(**{**laptop.__dict__, "families": {"spade": {"spade.n_up": -1}}}).override({"family": "spade"})
    # a change to the ResNet settings is not refused for the GauGAN settings it never uses
    narrow = get_preset("smoke", {"supernet.choices": (4,), "supernet.unpaired_choices": (4,),
                                  "search.budget_widths": (4,)})
    assert narrow.supernet.choices == (4,)
    for name in PRESETS:                                    # every shipped family variant is a valid preset
        for family in PRESETS[name].families:
            assert get_preset(name, {"family": family}).family == family


def test_the_paper_preset_follows_the_official_settings_per_dataset():
    shoes, h2z, maps = (get_preset("paper", task=t) for t in ("edges2shoes", "horse2zebra", "maps"))
    assert (shoes.teacher.ndf, shoes.data.batch_size, shoes.optim.decay_fraction) == (128, 4, 0.75)
    assert (h2z.teacher.ndf, h2z.data.batch_size, h2z.search.mutation_prob) == (64, 1, 0.4)
    assert (maps.student.lambda_recon, maps.student.lambda_distill) == (10.0, 0.01)
    assert get_preset("paper", task="cityscapes").optim.decay_fraction == 0.6
    assert all(get_preset("paper", task=t).search.mutation_children == 50 for t in PRESETS["paper"].tasks)
    assert len(h2z.search.first_weights) == len(h2z.supernet.unpaired_choices)


def test_preset_distillation_weights_reach_the_recipe():
    from gclib.recipes.distill import distill_config
    from gclib.recipes.trainer import TrainConfig
    from gclib.stages import _weights
    maps = get_preset("paper", task="maps")
    features = _weights(distill_config(TrainConfig(steps=1), True, "features"), maps)
    assert (features.lambda_recon, features.lambda_distill) == (10.0, 0.01)
    alone = _weights(distill_config(TrainConfig(steps=1), True, "alone"), maps)
    assert alone.lambda_distill == 0                                     # no distillation term is added
    plain = distill_config(TrainConfig(steps=1), True, "features")
    assert _weights(plain, get_preset("paper")).lambda_recon == 100.0    # unset: the recipe's own


def test_every_stage_is_keyed_by_its_own_part():
    """Each part belongs to one stage; the keys of stages.py are made of them, so tuning the search never touches
    the teacher's or the supernet's settings."""
    base = get_preset("laptop")
    tuned = base.override({"search.population": 7, "search.budget_widths": (16,), "search.finetune_steps": 1})
    for part in ("data", "optim", "teacher", "student", "supernet"):
        assert base.part(part) == tuned.part(part)
    assert base.data.training() == base.override({"data.n_test": 5}).data.training()   # eval sizes: not training
    # which other teacher seeds are trained beside one is not part of that teacher's settings
    assert base.teacher.training() == base.override({"teacher.seeds": (0, 1, 2)}).teacher.training()
    assert max(base.supernet.choices) <= base.teacher.ngf and set(base.search.budget_widths) <= set(
        base.supernet.choices)


def test_cli_macs(capsys):
    assert main(["macs", "teacher"]) == 0
    assert "56.80 G MACs" in capsys.readouterr().out
    assert main(["macs", "16_16_24_16_32_64_16_24", "--size", "256"]) == 0
    assert "2.62 G MACs" in capsys.readouterr().out
    assert main(["macs", "16_16_16"]) == 2
    assert "needs 8" in capsys.readouterr().err
    assert main(["macs", "32_32_32_48_32_24_24_32", "--family", "spade", "--size", "256x512", "--classes", "35"]) == 0
    out = capsys.readouterr().out                       # the released GauGAN: the closed form, 20.2 M params
    assert f"{SPADE_FAMILY.config_macs('32_32_32_48_32_24_24_32', (256, 512), label_nc=35) / 1e9:.2f} G MACs" in out
    assert "20.160 M params" in out and "label_nc 35" in out
    assert main(["macs", "teacher", "--family", "munit", "--size", "256"]) == 0   # MUNIT, with its style encoder
    assert "77.30 G MACs, 15.026 M params" in capsys.readouterr().out
    assert main(["macs", "teacher", "--size", "25xa"]) == 2
    assert "HEIGHTxWIDTH" in capsys.readouterr().err
    assert main(["macs", "teacher", "--family", "spade9"]) == 2
    assert "unknown generator family" in capsys.readouterr().err


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "gclib", "--help"], capture_output=True, text=True, check=True)
    assert "run" in out.stdout and "macs" in out.stdout and "data" in out.stdout


def test_list_notebooks_only():
    assert [p.name[:2] for p in runner.list_notebooks(["1"])] == ["01"]
    with pytest.raises(ValueError, match="no notebook numbered"):
        runner.list_notebooks(["99"])


def _tiny_notebook(path: Path, *code: str) -> Path:
    """A notebook with a papermill parameters cell followed by the given code cells."""
    import nbformat
    cells = [nbformat.v4.new_code_cell('preset = "smoke"\nruns_dir = ""', metadata={"tags": ["parameters"]})]
    nb = nbformat.v4.new_notebook(cells=cells + [nbformat.v4.new_code_cell(c) for c in code])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_runner_names_the_failing_notebook_and_cell(tmp_path):
    path = _tiny_notebook(tmp_path / "09_broken.ipynb", "x = 1", "raise RuntimeError('broken on purpose')")
    with pytest.raises(runner.NotebookFailed, match=r"09_broken.ipynb failed in cell \d+ .*broken on purpose"):
        runner.run_notebook(path, tmp_path / "out", {"preset": "smoke", "runs_dir": str(tmp_path)}, timeout=120,
                            progress=False)


def test_summary_and_results_table(tmp_path):
    report.record(tmp_path, "01_x", {"teacher GMACs": 0.887, "FID": 12.5})
    report.record(tmp_path, "02_y", {"student GMACs": 0.1})
    _, md = report.write_summary(tmp_path, "laptop", {"01_x": 120.0})
    text = md.read_text()
    assert "| 01_x | teacher GMACs | 0.887 |" in text and "| 01_x | runtime (min) | 2.0 |" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.RESULTS_START}\nold\n{report.RESULTS_END}\noutro\n")
    assert report.update_results(readme, text)
    new = readme.read_text()
    assert "old" not in new and "| 02_y | student GMACs | 0.1 |" in new and new.endswith("outro\n")
    assert not report.update_results(readme, text)  # unchanged the second time


def test_a_partial_run_keeps_the_results_rows_it_did_not_rerun(tmp_path):
    # the README holds a whole run; this clone's runs folder holds only a re-run of 03 on stripes
    whole = tmp_path / "whole"
    report.record(whole, "01_x_facades", {"FID": 1.5, "L1": 18.0})
    report.record(whole, "01_x_stripes", {"FID": 2.5})
    report.record(whole, "03_y_facades", {"rho": 0.9})
    report.record(whole, "03_y_stripes", {"rho": 0.4, "dropped figure": 7.0})
    report.record(whole, "05_z", {"speed-up": 3.0})
    _, md = report.write_summary(whole, "laptop", {"03_y_stripes": 600.0, "03_y_facades": 1200.0})
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.RESULTS_START}\nstale\n{report.RESULTS_END}\noutro\n")
    report.update_results(readme, md.read_text())
    partial = tmp_path / "partial"
    report.record(partial, "03_y_stripes", {"rho": 0.7, "new figure": 2.0})
    _, md = report.write_summary(partial, "laptop", {})
    assert report.update_results(readme, md.read_text())
    cells = report.parse_cells(readme.read_text())
    assert cells[("03_y", "rho")] == {"facades": "0.9", "stripes": "0.7"}       # re-run replaced, others kept
    assert cells[("03_y", "new figure")] == {"stripes": "2"}
    assert ("03_y", "dropped figure") not in cells        # a re-run notebook's rows are its new record's only
    assert cells[("03_y", "runtime (min)")] == {"facades": "20.0"}              # no runtime measured for the re-run
    assert cells[("01_x", "L1")] == {"facades": "18"} and cells[("05_z", "speed-up")] == {"": "3"}
    assert readme.read_text().endswith("outro\n") and "stale" not in readme.read_text()
    assert not report.update_results(readme, md.read_text())     # idempotent


def test_runner_times_out_a_hanging_cell(tmp_path):
    path = _tiny_notebook(tmp_path / "08_hangs.ipynb", "import time\ntime.sleep(60)")
    with pytest.raises(runner.NotebookFailed, match=r"08_hangs.ipynb: a cell ran longer than 3 s"):
        runner.run_notebook(path, tmp_path / "out", {"preset": "smoke", "runs_dir": str(tmp_path)}, timeout=3,
                            progress=False)


def test_a_partial_run_keeps_the_other_notebooks_runtimes(tmp_path):
    report.record(tmp_path, "01_x", {"FID": 1.0})
    report.write_summary(tmp_path, "laptop", {"01_x": 120.0, "02_y": 60.0})
    _, md = report.write_summary(tmp_path, "laptop", {"02_y": 180.0})      # e.g. `gclib run --only 02`
    text = md.read_text()
    assert "| 01_x | runtime (min) | 2.0 |" in text and "| 02_y | runtime (min) | 3.0 |" in text


def test_summary_shows_the_two_tasks_side_by_side(tmp_path):
    report.record(tmp_path, "01_x_facades", {"FID": 1.5, "L1": 18.0})
    report.record(tmp_path, "01_x_stripes", {"FID": 2.5})
    report.record(tmp_path, "05_z", {"speed-up": 3.0})
    _, md = report.write_summary(tmp_path, "laptop", {"01_x_facades": 60.0, "01_x_stripes": 120.0})
    text = md.read_text()
    assert "| notebook | figure | facades | stripes |" in text
    assert "| 01_x | FID | 1.5 | 2.5 |" in text and "| 01_x | L1 | 18 |  |" in text
    assert "| 01_x | runtime (min) | 1.0 | 2.0 |" in text and "| 05_z | speed-up | 3 |" in text
    assert text.index("| 01_x | FID") < text.index("| 01_x | runtime") < text.index("| 05_z |")
    report.record(tmp_path, "01_x_coats", {"FID": 3.5})             # a task gets a column once it has figures
    assert "| notebook | figure | facades | stripes | coats |" in report.write_summary(tmp_path, "laptop", {})[1].read_text()


def test_summary_header_says_how_the_last_run_ran(tmp_path):
    report.record(tmp_path, "07_z", {"FID": 1.0})
    one = {"minutes": 13.7, "jobs": 1, "cores": 2, "notebooks": ["07"]}
    text = report.write_summary(tmp_path, "laptop", {"07_z": 820.0}, one)[1].read_text()
    assert "the last run of notebook 07 took 14 minutes (on 2 cores)." in text
    two = {"minutes": 40.0, "jobs": 2, "cores": 2, "notebooks": ["01", "02"]}
    text = report.write_summary(tmp_path, "laptop", {}, two)[1].read_text()
    assert "the last run of notebooks 01, 02 took 40 minutes (2 tasks side by side on 2 cores)." in text


def test_seed_comparisons_read_gaps_against_the_larger_spread_and_know_which_way_is_better():
    # lower-is-better FID: a gap of 2 against spreads of 1 and 0.5 is beyond the noise
    r = report.compare_seeds([10.0, 11.0], [12.5, 13.0], "fid")
    assert (r["gap"], r["spread"], r["verdict"]) == (2.25, 1.0, "better")
    assert report.compare_seeds([12.5, 13.0], [10.0, 11.0], "fid")["verdict"] == "worse"
    assert report.compare_seeds([10.0, 13.0], [11.0, 12.0], "fid")["verdict"] == "within"   # spread 3 > gap 0
    # higher-is-better mIoU and PSNR: the same numbers read the other way
    assert report.compare_seeds([0.9, 0.91], [0.8, 0.81], "mIoU")["verdict"] == "better"
    assert report.compare_seeds([20.0, 20.1], [22.0, 22.1], "psnr")["verdict"] == "worse"
    assert report.compare_seeds([1.0], [2.0], "fid")["verdict"] == "one seed, no spread"
    # at teacher quality: no worse than the worse of the teacher seeds
    assert report.within_teacher_spread([10.5, 11.5], [10.0, 12.0], "fid")
    assert not report.within_teacher_spread([12.5, 12.7], [10.0, 12.0], "fid")
    assert report.within_teacher_spread([0.85], [0.84, 0.86], "mIoU") and not report.within_teacher_spread(
        [0.83], [0.84, 0.86], "mIoU")


@pytest.mark.slow
def test_cli_train_runs_each_stage_and_loads_what_it_trained(tmp_path, capsys):
    tiny = ["--set", "teacher.steps=2", "--set", "student.steps=2", "--set", "supernet.steps=2",
            "--set", "search.finetune_steps=2", "--set", "data.n_train=8", "--set", "data.n_heldout=4",
            "--set", "data.n_test=4", "--no-eval", "--out", str(tmp_path)]
    assert main(["train", "teacher", "--preset", "smoke", *tiny]) == 0
    assert "teacher trained" in capsys.readouterr().out
    assert main(["train", "student", "--preset", "smoke", "--variant", "output", *tiny]) == 0
    out = capsys.readouterr().out
    assert "student trained" in out and "_output_" in out
    assert main(["train", "finetune", "--preset", "smoke", "--config", "4_4_4_4_4_4_4_4", *tiny]) == 0
    assert "finetune trained" in capsys.readouterr().out
    assert [p.name.count(".") for p in tmp_path.glob("supernet_facades_s0_*.pt")].count(1) == 1   # its supernet first
    assert main(["train", "teacher", "--preset", "smoke", *tiny]) == 0
    assert "teacher loaded" in capsys.readouterr().out
    assert main(["train", "finetune", "--preset", "smoke", *tiny]) == 2
    assert "needs --config" in capsys.readouterr().err
    # GauGAN: the same command with the family switched trains on the task's label maps
    assert main(["train", "finetune", "--preset", "smoke", "--set", "family=spade", "--config", "4_4_4_4_4_4_4_4",
                 *tiny]) == 0
    assert "finetune trained" in capsys.readouterr().out
    assert [p.name.count(".") for p in tmp_path.glob("teacher_facades_spade_s0_*.pt")].count(1) == 1
    # MUNIT: on the multimodal task, a 10-entry config
    assert main(["train", "finetune", "--preset", "smoke", "--task", "coats", "--set", "family=munit", "--config",
                 "4_4_4_4_4_4_4_4_4_4", *tiny]) == 0
    assert "finetune trained" in capsys.readouterr().out
    assert len(list(tmp_path.glob("subnet_coats_munit_4_4_4_4_4_4_4_4_4_4_supernet_s0_*.pt"))) >= 1


def _task_notebook(path: Path, sleep: dict) -> Path:
    """A per-task notebook that logs when it ran, on which task, with how many threads its kernel was given."""
    import nbformat
    params = 'preset = "smoke"\ntask = "facades"\nruns_dir = ""\ndataset_root = ""\noverrides = {}'
    body = (f"import json, os, time\nt0 = time.time()\ntime.sleep({sleep!r}[task])\n"
            f"log = os.path.join(runs_dir, f'{path.stem}_{{task}}.json')\n"
            "json.dump({'start': t0, 'end': time.time(), 'threads': os.environ.get('OMP_NUM_THREADS')}, open(log, 'w'))")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_run_puts_the_tasks_side_by_side_each_in_order_and_the_task_free_notebook_after(tmp_path, monkeypatch):
    import json
    import os
    folder = tmp_path / "nb"
    folder.mkdir()
    # stripes' first notebook outlasts facades' whole chain, so its second one starts alone
    books = [_task_notebook(folder / "01_a.ipynb", {"facades": 1, "stripes": 12}),
             _task_notebook(folder / "02_b.ipynb", {"facades": 1, "stripes": 1}),
             _tiny_notebook(folder / "03_c.ipynb", "import json, os, time\n"
                            "json.dump({'start': time.time()}, open(os.path.join(runs_dir, '03_c.json'), 'w'))")]
    monkeypatch.setattr(runner, "list_notebooks", lambda only=None: books)
    warmed = []
    monkeypatch.setattr(runner, "_prepare_offline_extractor", lambda: warmed.append(1))
    out = tmp_path / "run"
    out.mkdir()
    result = runner.run("smoke", out=out, jobs=2, log=lambda *_: None)
    log = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json") if p.stem != "summary"}
    for task in ("facades", "stripes"):
        assert log[f"01_a_{task}"]["end"] <= log[f"02_b_{task}"]["start"]           # a task's notebooks in order
        assert log[f"02_b_{task}"]["end"] <= log["03_c"]["start"]                   # the task-free one after both
    assert log["01_a_stripes"]["start"] < log["01_a_facades"]["end"]                 # the two tasks side by side
    assert log["02_b_facades"]["end"] < log["02_b_stripes"]["start"]
    cores = os.cpu_count() or 1
    shared = os.environ.get("OMP_NUM_THREADS") or str(max(1, cores // 2))
    assert {log[f"01_a_{t}"]["threads"] for t in ("facades", "stripes")} == {shared}   # cores shared by two
    # and still, when it runs alone: a training's numbers depend on its thread count, so a task keeps its count
    assert log["02_b_stripes"]["threads"] == shared
    assert warmed == [1]                                                             # the shared extractor, once
    assert set(result["runtimes"]) == {"01_a_facades", "01_a_stripes", "02_b_facades", "02_b_stripes", "03_c"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["wall"]["jobs"] == 2 and summary["wall"]["minutes"] == pytest.approx(result["minutes"], abs=0.1)
    assert "2 tasks side by side" in (out / "summary.md").read_text()


def test_a_failing_task_stops_the_run_with_its_error_after_the_other_task_is_done(tmp_path, monkeypatch):
    book = _task_notebook(tmp_path / "01_a.ipynb", {"facades": 2, "stripes": "x"})   # stripes: sleep('x') raises
    monkeypatch.setattr(runner, "list_notebooks", lambda only=None: [book])
    monkeypatch.setattr(runner, "_prepare_offline_extractor", lambda: None)
    logged = []
    with pytest.raises(runner.NotebookFailed, match=r"01_a.ipynb failed in cell .*TypeError"):
        runner.run("smoke", out=tmp_path / "run", jobs=2, log=logged.append)
    assert (tmp_path / "run" / "01_a_facades.json").exists()          # the other task finished its notebook
    assert any(line.startswith("[gclib run] stripes stopped: 01_a.ipynb failed") for line in logged)


def test_progress_bars_refresh_about_once_a_second_so_a_cells_output_fits_jupyters_queue():
    # nbval reads a cell's messages only after the cell; ~2000 unread ones and ZeroMQ drops the rest (the cell's
    # "done" included). A bar that refreshes at tqdm's default rate writes many times more often than ours.
    import io
    from tqdm import tqdm as plain_tqdm

    from gclib.progress import REFRESH_SECONDS, progress_bar

    def refreshes(make_bar) -> int:
        out = io.StringIO()
        bar = make_bar(out)
        for step in bar:
            time.sleep(0.01)   # 150 steps, 1.5 s
            bar.set_postfix(loss=f"{1 / (step + 1):.3f}")   # as the trainer does at every step
        return out.getvalue().count("\r")

    ours = refreshes(lambda f: progress_bar(range(150), "test", file=f))
    default = refreshes(lambda f: plain_tqdm(range(150), desc="test", file=f))
    assert ours <= 1.5 / REFRESH_SECONDS + 3   # the first draw, one refresh per second, the last
    assert default >= 3 * ours


def _digests(paths) -> dict:
    import hashlib
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def test_a_run_writes_nothing_outside_its_folder(tmp_path, monkeypatch):
    """`gclib run` with --out, --only and --set: RESULTS.md, README.md and figures/ are untouched (publishing is its
    own step); the run's figure and table land in its folder."""
    books = tmp_path / "notebooks"
    books.mkdir()
    _tiny_notebook(books / "01_x.ipynb", "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
                   "from gclib import report\nfig = plt.figure()\nreport.save_figure(fig, runs_dir, '01_embedded_tasks')\n"
                   "report.record(runs_dir, '01_x', {'teacher FID': 830.0})")
    monkeypatch.setattr(runner, "NOTEBOOKS_DIR", books)
    published = [REPO / "RESULTS.md", REPO / "README.md", *sorted((REPO / "figures").glob("*.png")),
                 *sorted((REPO / "docs" / "notebooks").glob("*.ipynb"))]
    before = _digests(published)
    out = tmp_path / "out"
    runner.run("laptop", only=["01"], out=out, overrides={"teacher.steps": 5}, log=lambda *_: None)
    assert _digests(published) == before
    assert (out / "figures" / "01_embedded_tasks.png").exists() and "830" in (out / "summary.md").read_text()
    with pytest.raises(ValueError, match="changed settings.*teacher.steps"):
        runner.publish(out, repo=tmp_path)


def test_publish_refuses_a_partial_run_and_publishes_a_complete_one(tmp_path):
    repo = tmp_path / "repo"
    (repo / "figures").mkdir(parents=True)
    (repo / "RESULTS.md").write_text(f"head\n{report.RESULTS_START}\nold\n{report.RESULTS_END}\n")
    run = tmp_path / "run"
    for name in ("01_x_facades", "01_x_stripes"):
        report.record(run, name, {"FID": 1.0})
    (run / "figures").mkdir()
    (run / "figures" / "01_a.png").write_bytes(b"png")
    (run / "notebooks").mkdir()
    shown = [{"output_type": "stream", "name": "stdout", "text": ["FID 12.3\n"]},
             {"output_type": "display_data", "metadata": {}, "data": {"image/png": "iVBORw0KGgo=",
                                                                       "text/plain": ["<Figure>"]}}]
    live = [{"output_type": "stream", "name": "stderr", "text": ["training:  10%|#  | 100/1000\r"]},
            {"output_type": "display_data", "metadata": {}, "data": {report.WIDGET_VIEW: {"model_id": "ab"}}}]
    executed = {"nbformat": 4, "nbformat_minor": 5, "cells": [
        {"cell_type": "code", "id": "c1", "source": ["train()"], "execution_count": 1, "outputs": live[:1] + shown[:1],
         "metadata": {"papermill": {"duration": 3.2}, "execution": {"iopub.status.busy": "2026"}}},
        {"cell_type": "code", "id": "c2", "source": ["show()"], "execution_count": 2, "outputs": live[1:] + shown[1:],
         "metadata": {}}],
        "metadata": {"widgets": {"state": {"ab": {}}}, "papermill": {"duration": 9.0, "parameters": {"task": "x"}}}}
    (run / "notebooks" / "01_x_facades.ipynb").write_text(json.dumps(executed))
    report.write_summary(run, "laptop", {"01_x_facades": 60.0}, how={"overrides": {}, "dataset_root": ""})
    expected = ["01_x_facades", "01_x_stripes"]
    with pytest.raises(ValueError, match="partial run: 01_x_stripes"):
        report.publish(run, expected, repo)
    assert "old" in (repo / "RESULTS.md").read_text() and not (repo / "figures" / "01_a.png").exists()
    (repo / "README.md").write_text(f"intro\n{report.README_START}\nstale\n{report.README_END}\nrest\n")
    report.write_summary(run, "laptop", {"01_x_stripes": 90.0}, {"minutes": 3.0, "jobs": 2, "cores": 2,
                                                                 "notebooks": ["01"], "peak_memory_gb": 1.25},
                         how={"overrides": {}, "dataset_root": ""})
    results, copied = report.publish(run, expected, repo)
    assert "old" not in results.read_text() and "| 01_x | FID |" in results.read_text()
    readme = (repo / "README.md").read_text()   # the header: the run's time and memory, as RESULTS.md has them
    assert "stale" not in readme and readme.startswith("intro\n") and readme.endswith("rest\n")
    assert "took 3 minutes (2 tasks side by side on 2 cores), its peak memory 1.25 GB" in readme
    assert "the longest notebook 01_x_stripes, 1.5 minutes" in readme   # of both runs into the folder
    assert [p.relative_to(repo).as_posix() for p in copied] == ["figures/01_a.png", "docs/notebooks/01_x_facades.ipynb"]
    # the executed notebook as a reader sees it: what it printed and drew, not its progress bars, widgets or timings
    readable = json.loads(copied[1].read_text())
    assert [c["outputs"] for c in readable["cells"]] == [shown[:1], shown[1:]]
    assert "widgets" not in readable["metadata"] and readable["metadata"]["papermill"] == {"parameters": {"task": "x"}}
    assert all(c["metadata"] == {} for c in readable["cells"])
    report.write_summary(run, "smoke", {}, how={"overrides": {}, "dataset_root": ""})
    with pytest.raises(ValueError, match="'smoke' run"):
        report.publish(run, expected, repo)


def test_train_checks_its_flags_before_any_training(tmp_path, capsys):
    """A bad --variant or --config is refused at once, naming it: no teacher (or supernet) is trained first."""
    from gclib.cli import main
    out = ["--preset", "smoke", "--out", str(tmp_path)]
    assert main(["train", "student", "--variant", "bogus", *out]) == 2
    assert "--variant must be one of" in capsys.readouterr().err
    assert main(["train", "finetune", "--config", "4_4_4_4_4_4_4_99", *out]) == 2
    assert "99 is not one of" in capsys.readouterr().err
    assert main(["train", "finetune", *out]) == 2 and "needs --config" in capsys.readouterr().err
    assert not any(tmp_path.glob("*.pt"))


@pytest.mark.parametrize("field", ["student.lambda_recon", "search.budget_gmacs", "optim.lr", "optim.beta1",
                                   "search.first_weights"])
def test_non_finite_values_are_refused_naming_the_field(field):
    value = {"search.budget_gmacs": [float("nan")], "search.first_weights": [1.0, float("inf")]}.get(field, float("nan"))
    with pytest.raises(ValueError, match=f"{field} must be"):
        get_preset("smoke", {field: value})


@pytest.mark.parametrize("argv, message", [
    (["bench", "--batch", "0"], "--batch must be at least 1, not 0"),
    (["bench", "--batch", "-2"], "--batch must be at least 1"),
    (["bench", "--size", "7"], "--size '7': each side must be a multiple of 4"),
    (["macs", "teacher", "--size", "7"], "--size '7'"),
    (["macs", "teacher", "--size", "100000"], "from 8 to 4096 pixels"),
    (["macs", "teacher", "--ngf", "0"], "--ngf must be at least 1"),
    (["train", "teacher", "--preset", "smoke", "--seed", "-1"], "--seed must be at least 0"),
    (["train", "teacher", "--preset", "smoke", "--set", "supernet.choices=16"], "supernet.choices must be a list"),
])
def test_bad_flags_get_a_message_naming_them_not_a_traceback(argv, message, capsys, tmp_path):
    assert main(argv + (["--out", str(tmp_path)] if argv[0] == "train" else [])) == 2
    assert message in capsys.readouterr().err


def test_a_missing_gpu_is_named(capsys, tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["train", "teacher", "--preset", "smoke", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err


def test_cli_settings_read_json_and_python_spellings():
    """`--set` reads JSON values and a notebook's Python spellings alike: text "False" would be a true setting."""
    from gclib.cli import parse_settings
    got = parse_settings(["student.teacher_d=False", "student.teacher_d2=false", "teacher.steps=20",
                          "supernet.sampler=uniform", "x=True", "y=None", "search.budget_widths=[16, 20]"])
    assert got == {"student.teacher_d": False, "student.teacher_d2": False, "teacher.steps": 20,
                   "supernet.sampler": "uniform", "x": True, "y": None, "search.budget_widths": [16, 20]}
    assert get_preset("smoke", {"student.teacher_d": got["student.teacher_d"]}).student.teacher_d is False


def test_the_notebook_runner_leaves_pytorch_to_the_kernels():
    """`make run` holds the runner and two kernels for an hour: the runner writing summaries without PyTorch keeps
    ~0.5 GB out of the laptop preset's 4 GB (the offline extractor it prepares is trained in a child process)."""
    import subprocess
    import sys
    code = ("import sys, tempfile\nfrom gclib import cli, report, runner\nfrom gclib.presets import notebook_preset\n"
            "notebook_preset('laptop', 'facades', '', {})\n"
            "report.write_summary(tempfile.mkdtemp(), 'smoke', {'01_teacher_training_facades': 60.0})\n"
            "code = cli.main(['run', '--preset', 'laptop', '--only', '99'])   # `python -m gclib run`, to its error\n"
            "print(code, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2 False", (out.stdout, out.stderr)


def test_the_run_memory_peak_counts_the_kernels():
    """`MemoryPeak` sums the runner and its child processes: a child holding 300 MB raises the peak by about that."""
    import subprocess
    import sys
    with runner.MemoryPeak(every=0.05) as alone:
        pass
    code = "import time; block = bytearray(300 * 2**20); block[::4096] = b'x' * len(block[::4096]); time.sleep(1.5)"
    with runner.MemoryPeak(every=0.05) as with_child:
        subprocess.run([sys.executable, "-c", code], check=True)
    assert with_child.peak - alone.peak > 250 * 2 ** 20, (alone.peak, with_child.peak)


def test_cli_trains_the_zoos_second_teacher_with_data_seed(tmp_path, capsys):
    """``--seed 1`` trains on seed 1's images (a notebook with seed 1); ``--seed 1 --data-seed 0`` is the teacher of
    model seed 1 on seed 0's images, the one a notebook of seed 0 (and the zoo) trains second: two keys."""
    from gclib import stages
    from gclib.cli import parse_settings
    from gclib.data import load_task
    from gclib.presets import notebook_preset
    settings = ["teacher.steps=2", "data.n_train=8", "data.n_heldout=4", "data.n_test=4"]
    tiny = [x for s in settings for x in ("--set", s)] + ["--no-eval", "--out", str(tmp_path)]
    assert main(["train", "teacher", "--preset", "smoke", "--seed", "1", "--data-seed", "0", *tiny]) == 0
    assert main(["train", "teacher", "--preset", "smoke", "--seed", "1", *tiny]) == 0
    cfg = notebook_preset("smoke", "facades", "", parse_settings(settings))
    want = {stages.teacher_stage(cfg, load_task("facades", cfg, data_seed), 1).filename for data_seed in (0, 1)}
    trained = {p.name for p in tmp_path.glob("teacher_facades_s1_*.pt") if p.name.count(".") == 1}   # not .train.pt
    assert len(want) == 2 and trained == want
    assert main(["train", "teacher", "--preset", "smoke", "--data-seed", "-1", *tiny]) == 2
    assert "--data-seed must be at least 0" in capsys.readouterr().err
