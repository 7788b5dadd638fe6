"""The CPU models a guest can be pinned to, and the arm64 root as a guest on each one sees it.

The model decides which ISA features, and so which kernels, the runtime picks; /proc/cpuinfo
and the CPU count must agree with it, or counts change with the machine that runs QEMU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgepack.runners.emulated._layout import Layout

GUEST_CPUS = 4  # the CPU count every guest sees (a phone's big or little cluster)


@dataclass(frozen=True)
class CpuModel:
    """A QEMU 7.2 ``-cpu`` model and the /proc/cpuinfo a real core of that kind shows."""

    part: str  # MIDR part number
    implementer: str
    features: str
    qemu: str | None = None  # the QEMU model that runs it, when QEMU 7.2 has none of this name
    variant: str = "0x0"  # MIDR variant (the rN of rNpM): cpuinfo gates some features on it


_ARMV8_0 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
_ARMV8_2 = _ARMV8_0 + " atomics fphp asimdhp asimdrdm lrcpc dcpop asimddp"
# The models Debian 12's qemu-aarch64 offers (`qemu-aarch64 -cpu help`). Only cortex-a76 and
# neoverse-n1 have the int8 dot-product instructions (asimddp) that XNNPACK's fastest int8
# kernels need; the others get its plain-NEON int8 kernels.
CPU_MODELS: dict[str, CpuModel] = {
    "cortex-a35": CpuModel("0xd04", "0x41", _ARMV8_0),
    "cortex-a53": CpuModel("0xd03", "0x41", _ARMV8_0),
    "cortex-a57": CpuModel("0xd07", "0x41", _ARMV8_0),
    "cortex-a72": CpuModel("0xd08", "0x41", _ARMV8_0),
    "cortex-a76": CpuModel("0xd0b", "0x41", _ARMV8_2),
    "neoverse-n1": CpuModel("0xd0c", "0x41", _ARMV8_2),
    "a64fx": CpuModel("0x001", "0x46", _ARMV8_2 + " sve"),
    # QEMU 7.2 has no Cortex-A55. Its ISA is the A76's (ARMv8.2 + dot product), so the A76
    # model runs it, while /proc/cpuinfo names an A55 r1 (part 0xd05, variant 1): XNNPACK then
    # picks its in-order A55 kernels, as on the phone. r1: the cpuinfo library grants an r0 A55
    # no dot product (the first revision lacked it) and XNNPACK gives it r0 kernels. (The
    # cortex-a53 model would be ARMv8.0: no dot product, so other int8 kernels altogether.)
    "cortex-a55": CpuModel("0xd05", "0x41", _ARMV8_2, qemu="cortex-a76", variant="0x1"),
}


def qemu_model(cpu: str) -> str:
    """The ``-cpu`` model QEMU runs ``cpu`` on."""
    return CPU_MODELS[cpu].qemu or cpu


def cpu_root(layout: Layout, cpu: str) -> Path:
    """The arm64 root as a guest on ``cpu`` sees it: hard links to the shared root plus its own
    /proc/cpuinfo and /sys CPU lists. qemu-user looks a path up under its -L prefix first, so
    these files stand in for the host's (QEMU 7.2 does not emulate /proc/cpuinfo on arm64 and
    would hand the guest the x86 host's, which onnxruntime's cpuinfo parser crashes on)."""
    root = layout.home / "roots" / cpu
    text = cpuinfo(CPU_MODELS[cpu])
    if root.exists():
        if (root / "proc" / "cpuinfo").read_text(encoding="ascii") != text:  # an older model's
            fresh = root / "proc" / f"cpuinfo.{os.getpid()}"
            fresh.write_text(text, encoding="ascii")
            fresh.replace(root / "proc" / "cpuinfo")
        return root
    partial = layout.home / "roots" / f"{cpu}.partial.{os.getpid()}"
    partial.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(layout.root), str(partial)], check=True)
    (partial / "proc").mkdir(exist_ok=True)
    (partial / "proc" / "cpuinfo").write_text(text, encoding="ascii")
    cpus = partial / "sys" / "devices" / "system" / "cpu"
    cpus.mkdir(parents=True, exist_ok=True)
    for name in ("online", "possible", "present"):
        (cpus / name).write_text(f"0-{GUEST_CPUS - 1}\n", encoding="ascii")
    try:
        partial.rename(root)
    except OSError:  # another process made it first: theirs is identical
        shutil.rmtree(partial, ignore_errors=True)
    return root


def cpuinfo(model: CpuModel) -> str:
    """The /proc/cpuinfo of a guest with GUEST_CPUS cores of ``model``."""
    block = (
        "processor\t: {n}\nBogoMIPS\t: 50.00\nFeatures\t: {f}\nCPU implementer\t: {i}\n"
        "CPU architecture: 8\nCPU variant\t: {v}\nCPU part\t: {p}\nCPU revision\t: 0\n\n"
    )
    return "".join(
        block.format(n=n, f=model.features, i=model.implementer, v=model.variant, p=model.part)
        for n in range(GUEST_CPUS)
    )
