"""nbval runs the notebooks as committed (task "facades"); this runs 01-04 on the unpaired task in smoke."""
import json

import pytest

from gclib import runner


@pytest.mark.slow
def test_notebooks_01_to_04_run_on_the_unpaired_task(tmp_path):
    for path in runner.list_notebooks(["01", "02", "03", "04"]):
        assert runner.takes_task(path)
        runner.run_notebook(path, tmp_path, {"preset": "smoke", "task": "stripes", "runs_dir": str(tmp_path)},
                            timeout=900, progress=False)
    searched = json.loads((tmp_path / "search_stripes.json").read_text())
    assert searched["GMACs"] > 0 and len(searched["config"].split("_")) == 8
    assert {p.suffix for p in tmp_path.glob("searched_stripes.*")} == {".pt", ".pt2", ".onnx"}
