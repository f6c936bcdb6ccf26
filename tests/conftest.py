"""Shared fixtures: the backend parametrisation and the Hypothesis profiles.

Profiles: ``ci`` (fast; the default when CI is set), ``dev`` (the default otherwise) and
``thorough`` (long). Choose one with HYPOTHESIS_PROFILE=thorough.
"""

import os
import shutil

# Without an NVIDIA GPU, the cuda backend's tests run in numba's CUDA simulator. Numba reads
# this when it is first imported, so it is set before anything imports it.
if "NUMBA_ENABLE_CUDASIM" not in os.environ and not (os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi")):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import atrousnp as anp  # noqa: E402

_common = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                      HealthCheck.too_slow])
settings.register_profile("ci", max_examples=15, **_common)
settings.register_profile("dev", max_examples=40, **_common)
settings.register_profile("thorough", max_examples=400, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

BACKENDS = ["numpy", "numba", "cuda"]
SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "full_model: runs a full-width model, which the CUDA simulator "
                                       "would take hours over; skipped there (test_cuda.py trains a tiny one)")
    config.addinivalue_line("markers", "cuda: runs the cuda backend (in numba's CUDA simulator where there is no "
                                       "GPU); python -m pytest -m 'not cuda' leaves these out")


CUDA_MODULES = ("test_cuda.py", "test_cuda_graph.py")


def pytest_collection_modifyitems(items):
    """Mark every test that runs on the cuda backend: its modules', and those given it by the
    ``backend`` fixture."""
    for item in items:
        params = item.callspec.params if getattr(item, "callspec", None) is not None else {}
        if params.get("backend") == "cuda" or item.path.name in CUDA_MODULES:
            item.add_marker(pytest.mark.cuda)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run the test on each backend in turn."""
    if request.param == "cuda" and SIMULATED and request.node.get_closest_marker("full_model"):
        pytest.skip("a full-width model in the CUDA simulator: too slow; test_cuda.py trains a tiny DeepLabv3")
    with anp.use_backend(request.param):
        yield request.param


@pytest.fixture
def tiny_deeplab():
    """A factory of the smallest DeepLabv3 (a ResNet of one block a stage, 2-4 channels, and
    ASPP): the whole graph, small enough for numba's CUDA simulator."""
    def build():
        backbone = anp.models.ResNet(anp.models.resnet.BasicBlock, (1, 1, 1, 1), widths=(2, 2, 4, 4), stem_width=2,
                                     output_stride=16, rng=np.random.default_rng(0))
        head = anp.models.ASPPHead(backbone.out_channels, num_classes=3, channels=4, rng=np.random.default_rng(1))
        return anp.models.DeepLabV3(backbone, head)
    return build
