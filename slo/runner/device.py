"""Device, compute dtype, autocast, torch.compile and the peak FLOP/s for MFU."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import time

import torch

from ..errors import RunError, first_line
from .prepare.encode import usable_cpus  # torch-free, for slo prepare too

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Dense bf16 tensor-core peaks (FLOP/s) of common cards, by a substring of their name;
# the first match wins, so the more specific names come first. Other cards are measured.
GPU_BF16_PEAKS = (
    ("H200", 989e12), ("GH200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("H800", 989e12),
    ("B200", 2250e12), ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12), ("L40", 181e12),
    ("L4", 121e12), ("A10G", 125e12), ("A10", 125e12), ("RTX 4090", 165e12), ("RTX 3090", 71e12),
    ("A6000", 155e12), ("V100", 125e12), ("T4", 65e12),
)


def pick_device(name: str) -> torch.device:
    """The SYSTEM device key as a torch.device; auto: CUDA, then MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RunError(f"device={name} but CUDA is not available here (torch {torch.__version__}); "
                           "use device=auto or device=cpu")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise RunError(f"device={name} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    if name == "mps" and not _mps_available():
        raise RunError("device=mps but MPS is not available here; use device=auto or device=cpu")
    return torch.device(name)


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def cpu_has_fast_bf16() -> bool:
    """True when the CPU computes bf16 matmuls natively (AVX512-BF16 or AMX); without
    them bf16 is emulated and slower than float32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """The SYSTEM dtype key as a torch.dtype; auto: bfloat16 where the device computes
    it fast (CUDA with bf16 support, CPUs with AVX512-BF16 or AMX), float16 on older
    CUDA cards (nanoGPT's choice), float32 elsewhere."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_has_fast_bf16():
            return torch.bfloat16
        return torch.float32
    if name == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RunError(f"dtype=bfloat16 but {torch.cuda.get_device_name(device)} does not support it; "
                       "use dtype=float16 or dtype=auto")
    return DTYPES[name]


def autocast(device: torch.device, dtype: torch.dtype):
    """Mixed precision for forward passes in dtype; float32 runs as is."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def configure_backends(device: torch.device) -> None:
    """TF32 matmuls on CUDA (nanoGPT's choice); the CPU keeps exact float32.

    Without OMP_NUM_THREADS, torch starts one thread per core of the machine
    even where a container or affinity mask grants fewer; more threads than
    CPUs make every parallel op wait for a descheduled thread, so the count
    is capped at the CPUs this process can use.
    """
    if "OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() > usable_cpus():
        torch.set_num_threads(usable_cpus())
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def compile_unavailable(device: torch.device) -> str | None:
    """Why torch.compile cannot work on this machine, or None when it should."""
    if sys.platform == "win32":
        return "torch.compile is not supported on Windows here"
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "Triton is not installed (pip install triton)"
    elif device.type == "cpu":
        compiler = os.environ.get("CXX") or next((c for c in ("g++", "clang++", "c++") if shutil.which(c)), None)
        if compiler is None or not shutil.which(compiler):
            return "no C++ compiler found (install g++ or clang++, or set CXX)"
    elif device.type == "mps":
        return "torch.compile does not support MPS training well yet"
    return None


def will_compile(enabled: bool, device: torch.device, say=print) -> bool:
    """Whether to torch.compile: when enabled and possible (else one line says why not)."""
    if not enabled:
        return False
    reason = compile_unavailable(device)
    if reason:
        say(f"compile: {reason}; continuing without torch.compile (compile=False hides this message)")
        return False
    return True


def compile_failure_message(error: BaseException) -> str:
    return (f"compile: torch.compile failed ({type(error).__name__}: {first_line(error)[:200]}); "
            "continuing without torch.compile (compile=False hides this message)")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def measure_matmul_flops(device: torch.device, dtype: torch.dtype, size: int | None = None,
                         seconds: float = 0.3) -> float:
    """FLOP/s of a large square matmul in dtype on device: the practical peak.

    The fastest of the runs within ``seconds`` counts, so a run slowed by
    another process on a shared machine does not lower the peak.
    """
    if size is None:  # a CPU without bf16/fp16 units is ~50x slower in them: a smaller matmul keeps this short
        size = 8192 if device.type == "cuda" else 1024 if dtype == torch.float32 else 512
    n = size
    generator = torch.Generator(device).manual_seed(0)  # the run's own random stream stays untouched
    a = torch.randn(n, n, device=device, dtype=dtype, generator=generator)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=generator)
    for _ in range(2):  # warm up kernels and caches
        a @ b
    synchronize(device)
    best, end = math.inf, time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        a @ b
        synchronize(device)
        now = time.perf_counter()
        best = min(best, now - start)
        if now >= end:
            return 2 * n ** 3 / best


def peak_flops(device: torch.device, dtype: torch.dtype) -> float:
    """The peak MFU is measured against: the card's dense bf16 spec sheet figure for
    known CUDA cards in bf16/fp16, else a matmul measured here in dtype."""
    if device.type == "cuda" and dtype in (torch.bfloat16, torch.float16):
        name = torch.cuda.get_device_name(device)
        for key, flops in GPU_BF16_PEAKS:
            if key in name:
                return flops
    if device.type != "cuda" and dtype != torch.float32:
        # A CPU without half-precision units runs some of autocast's ops in float32, faster than its
        # own slow half-precision matmul: the peak is the faster of the two, so MFU stays below 100%.
        return max(measure_matmul_flops(device, dtype), measure_matmul_flops(device, torch.float32))
    return measure_matmul_flops(device, dtype)


def memory_mb(device: torch.device) -> float:
    """Peak memory in MiB: allocated tensors on CUDA/MPS, the process's peak RSS on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if device.type == "mps":
        return torch.mps.current_allocated_memory() / 2**20
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def memory_total(device: torch.device) -> int | None:
    """Bytes of memory the device has (the CPU's: RAM, or the cgroup's limit when lower); None if unknown."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type != "cpu":
        return None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    with contextlib.suppress(OSError, ValueError):
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    return total


def is_allocation_failure(error: BaseException) -> bool:
    """True when error means memory ran out (the CPU allocator's, numpy's or a device's)."""
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        s in text for s in ("can't allocate memory", "not enough memory", "out of memory", "Unable to allocate"))


def raise_if_out_of_memory(error: BaseException, device: torch.device, data_cfg) -> None:
    """Where error means a training step ran out of memory, the one-line RunError that says what to lower."""
    if is_allocation_failure(error):
        raise RunError(f"out of memory on {device} at batch_size={data_cfg.batch_size}, block_size={data_cfg.block_size}: "
                       "lower batch_size (and raise gradient_accumulation_steps to keep the tokens per step)") from None


def gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"
