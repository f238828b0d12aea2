"""What this CPU can do natively, detected and never assumed: the engines ask here before they pick a precision.

- ``bf16``: bfloat16 dot products in hardware (x86 AVX512_BF16 or AMX_BF16, ARM BF16). Without them every
  library emulates bf16, and emulation is slower than fp32: OpenVINO's ResNet18 at a bf16 hint ran 3x slower
  than at f32 with oneDNN limited to plain AVX-512 (``ONEDNN_MAX_CPU_ISA=AVX512_CORE``).
- ``vnni``: int8 dot products in hardware (AVX512_VNNI, AVX_VNNI, AMX_INT8, ARM dot product). Without them int8
  still runs, at about half the speed (still ~2x f32 in OpenVINO, measured the same way).

``DOGBREED_CPU_FEATURES`` overrides detection, for tests and for users who want the reference path, for training
and inference alike (``read_flags``): ``none`` (nothing native: every engine stays at fp32, training at fp32), or
the CPU's flag list to assume (``avx512_bf16,avx512_vnni``).

Light module: reads /proc/cpuinfo (Linux) or sysctl (macOS); imports neither torch nor OpenVINO.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ENV = "DOGBREED_CPU_FEATURES"

NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # x86: what training decides its precision by

_X86_BF16 = NATIVE_BF16_FLAGS
_X86_VNNI = {"avx512_vnni", "avx512vnni", "avx_vnni", "amx_int8"}
_X86_AMX = {"amx_bf16", "amx_int8", "amx_tile"}
_ARM_BF16 = {"bf16"}
_ARM_VNNI = {"asimddp", "i8mm"}
_MAC_SYSCTL = {"bf16": "hw.optional.arm.FEAT_BF16", "vnni": "hw.optional.arm.FEAT_DotProd"}


def read_flags() -> frozenset[str]:
    """The CPU's feature flags (lower case), from $DOGBREED_CPU_FEATURES when set (read at every call; ``none`` or
    empty: no flags), else from the "flags" line of /proc/cpuinfo (x86 Linux), else none."""
    forced = os.environ.get(ENV)
    if forced is not None:
        text = forced.strip().lower()
        return frozenset() if text in ("", "none") else frozenset(text.replace(",", " ").split())
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].lower().split())
    except OSError:  # not Linux: no flags we can trust, so no native bf16 claimed
        pass
    return frozenset()


def native_bf16_flags() -> tuple[str, ...]:
    """The x86 flags of this CPU that mean native bf16 (``NATIVE_BF16_FLAGS``), sorted: what training reads."""
    return tuple(sorted(read_flags() & NATIVE_BF16_FLAGS))


@dataclass(frozen=True)
class CpuFeatures:
    bf16: bool | None  # None: this platform gives no way to tell (engines then ask their library)
    vnni: bool | None
    amx: bool | None
    source: str  # where the answer came from, for notes and the bench's machine line
    flags: tuple[str, ...] = ()  # the relevant flags found

    @property
    def forced(self) -> bool:
        return self.source.startswith(ENV)

    def describe(self) -> str:
        def word(name: str, value: bool | None) -> str:
            return f"{name} {'yes' if value else 'no' if value is not None else 'unknown'}"

        return f"{word('bf16', self.bf16)}, {word('vnni', self.vnni)}, {word('amx', self.amx)} ({self.source})"


def _arm_linux_flags() -> set[str] | None:
    """ARM Linux lists its features on a "Features" line (x86's "flags" line is what ``read_flags`` reads)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key.strip().lower() == "features":
            return set(rest.lower().split())
    return None


def _from_flags(flags: set[str], source: str, any_platform: bool = False) -> CpuFeatures:
    """Read the flags with x86 names, ARM names, or (a list given by hand) either."""
    arm = platform.machine().lower() in ("aarch64", "arm64")
    bf16_names = (_X86_BF16 | _ARM_BF16) if any_platform else (_ARM_BF16 if arm else _X86_BF16)
    vnni_names = (_X86_VNNI | _ARM_VNNI) if any_platform else (_ARM_VNNI if arm else _X86_VNNI)
    found = tuple(sorted(flags & (_X86_BF16 | _X86_VNNI | _X86_AMX | _ARM_BF16 | _ARM_VNNI)))
    return CpuFeatures(bool(flags & bf16_names), bool(flags & vnni_names), bool(flags & _X86_AMX), source, found)


def _mac_sysctl(name: str) -> bool | None:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=2)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() == "1" if out.returncode == 0 else None


def detect() -> CpuFeatures:
    """This CPU's native bf16/VNNI/AMX (``DOGBREED_CPU_FEATURES``, read at every call, overrides)."""
    forced = os.environ.get(ENV)
    if forced is not None:
        return _from_flags(set(read_flags()), f"{ENV}={forced.strip() or 'none'}", any_platform=True)
    return _detect_os()


@cache
def _detect_os() -> CpuFeatures:
    system = platform.system()
    if system == "Linux":
        flags = set(read_flags()) or _arm_linux_flags()
        if flags:
            return _from_flags(flags, "/proc/cpuinfo")
    if system == "Darwin" and platform.machine() == "arm64":
        bf16, vnni = (_mac_sysctl(_MAC_SYSCTL[k]) for k in ("bf16", "vnni"))
        return CpuFeatures(bf16, vnni, False, "sysctl")
    return CpuFeatures(None, None, None, f"not detectable on {system or 'this system'}")


def native_bf16(library_says: bool | None = None) -> tuple[bool, str]:
    """(whether bf16 runs natively, why), combining the CPU's flags with what the engine's library reports where the
    flags cannot tell (Windows, say). A forced setting always wins."""
    found = detect()
    if found.forced or found.bf16 is not None:
        reason = "native bf16" if found.bf16 else "no native bf16"
        return bool(found.bf16), f"{reason} ({found.source})"
    if library_says is not None:
        return library_says, f"{'native' if library_says else 'no native'} bf16 (as the engine's library reports)"
    return False, f"bf16 support unknown ({found.source})"


def accelerator_possible() -> bool:
    """Whether a CUDA or MPS device could be present, decided without importing torch (which costs 1-3 s): an
    NVIDIA driver on Linux, Apple silicon on macOS; elsewhere (Windows) we cannot tell cheaply, so True."""
    system = platform.system()
    if system == "Linux":
        return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()
    if system == "Darwin":
        return platform.machine() == "arm64"
    return True
