"""The calibrated emulated profiles carry the constants scripts/assets/calibrate_emulated.py fits.

The script's RECORDED table holds the guest instruction counts the constants were fitted on, so
the fit is re-derived here without QEMU: a profile whose constant drifts from its published
figures, or a held-out figure that the fit no longer predicts, fails.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

from edgepack.config.profile_files import load_target
from edgepack.runners.emulated._cpus import CPU_MODELS, cpuinfo, qemu_model

SCRIPT = Path(__file__).parents[1] / "scripts" / "assets" / "calibrate_emulated.py"

# profile name -> the device of the script whose constants it carries
PROFILES = {"pixel6": "Pixel 6", "galaxy-s23": "Galaxy S23", "android-little": "Cortex-A55"}
# the held-out ratios (estimated / published) the profiles and the README state, rounded out
HELD_OUT_BAND = {
    "Pixel 6": (0.885, 1.035),
    "Galaxy S23": (0.865, 1.125),
    "Cortex-A55": (0.645, 1.095),
}


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("calibrate_emulated", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module


def recorded(script: ModuleType) -> dict:
    return {
        figure: script.RECORDED[f"{figure.model}@{script.DEVICES[figure.device][0]}"]
        for figure in script.figures()
        if figure.device in PROFILES.values()
    }


@pytest.mark.parametrize("name", PROFILES)
def test_profile_constants_are_the_fit(script: ModuleType, name: str) -> None:
    device = PROFILES[name]
    constants = script.fit(recorded(script))
    options = load_target(name).runner.options
    assert options.cpu == script.DEVICES[device][0]
    # the profiles write each constant to 4 significant digits
    assert options.int8_instructions_per_ms == float(f"{constants[device, 'int8']:.4g}")
    assert options.instructions_per_ms == float(f"{constants[device, 'float']:.4g}")
    assert "scripts/assets/calibrate_emulated.py" in options.calibration


@pytest.mark.parametrize("device", sorted(PROFILES.values()))
def test_held_out_figures_within_the_readme_band(script: ModuleType, device: str) -> None:
    counts = recorded(script)
    constants = script.fit(counts)
    held = {
        figure: counts[figure] / constants[device, script.kind_of(figure)] / figure.ms
        for figure in counts
        if figure.device == device and not figure.calibrate
    }
    assert len(held) >= 3
    low, high = HELD_OUT_BAND[device]
    assert all(low <= ratio <= high for ratio in held.values()), held
    fitted = [f for f in counts if f.device == device and f.calibrate]
    for figure in fitted:  # one fitted figure per device: the fit reproduces it exactly
        estimate = counts[figure] / constants[device, script.kind_of(figure)]
        assert math.isclose(estimate, figure.ms, rel_tol=1e-9)


def test_a55_runs_on_the_a76_model_under_its_own_name() -> None:
    # QEMU 7.2 has no Cortex-A55: the A76 model gives its ISA (ARMv8.2 + dot product), the
    # guest's /proc/cpuinfo names an A55 r1 so XNNPACK picks its A55 dot-product kernels.
    assert qemu_model("cortex-a55") == "cortex-a76"
    assert qemu_model("cortex-a76") == "cortex-a76"
    a55, a76 = CPU_MODELS["cortex-a55"], CPU_MODELS["cortex-a76"]
    assert (a55.part, a55.features) == ("0xd05", a76.features)
    assert "asimddp" in a55.features.split()
    # the cpuinfo library grants an A55 the dot product from revision r1 only
    assert "CPU variant\t: 0x1\nCPU part\t: 0xd05" in cpuinfo(a55)
