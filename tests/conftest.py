import os

import pytest
import torch

# Tests generate their own small data; keep them out of the repository's data/ folder.
@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GCLIB_DATA", str(tmp_path_factory.getbasetemp() / "data"))
    torch.manual_seed(0)
    yield


def pytest_configure(config):
    # two threads (CI's cores) shared by the pytest-xdist workers, or what OMP_NUM_THREADS asks for (e.g. 1 beside a
    # long training run)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 0)
                          or max(1, min(2, os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``make test``: ``--dist loadgroup``) every notebook runs on one worker, in order, and
    first: notebook 02 loads what 01 trained into runs/smoke, a stage another process is training is refused, and
    the notebooks are the longest chain, so the other workers take the unit tests meanwhile."""
    notebooks = [item for item in items if str(item.path).endswith(".ipynb")]
    for item in notebooks:
        item.add_marker(pytest.mark.xdist_group("notebooks"))
    items[:] = notebooks + [item for item in items if not str(item.path).endswith(".ipynb")]
