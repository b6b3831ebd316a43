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
    # two threads (CI's cores), or what OMP_NUM_THREADS asks for (`make test` gives 1 to the unit tests and 1 to the
    # notebooks, which run side by side)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 0) or min(2, os.cpu_count() or 1))
