"""Compiled parts of layer-tracer; everything else is declared in pyproject.toml.

Both extensions are optional: an install without them works and says what it lacks in each
run's notes.

- ``tracer.core._speedups`` (C, no torch headers): the one-pass statistics kernel. Built whenever a
  C compiler is present.
- ``tracer.core._probe`` (C++ against torch's headers): the hooks' fast path reads tensor metadata
  from the C++ tensor. It needs the torch that will run it at build time, so it is built only
  when the build can import torch: ``pip install --no-build-isolation`` after installing torch.
  An isolated build (plain ``pip install``) skips it rather than download a torch to build with.
"""

from __future__ import annotations

import sys

from setuptools import Extension, setup

#: The statistics vector's layout, included by both extensions (tracer/core/stats_layout.py
#: names the same positions).
LAYOUT_HEADER = "tracer/core/stats_layout.h"

ext_modules: list[Extension] = [
    Extension(
        "tracer.core._speedups",
        ["tracer/core/_speedups.c"],
        depends=[LAYOUT_HEADER],
        optional=True,
    ),
]

try:
    import torch
    from torch.utils.cpp_extension import CppExtension
except ImportError:
    torch = None
if torch is not None and sys.platform != "win32":
    # CppExtension adds torch's include and library directories; the flags are the ones
    # torch's own BuildExtension would add to this one file (it would add them to the C file
    # too, so it is not used).
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    # OpenMP as torch's CPU builds use it: a big tensor's statistics are split over torch's
    # own threads (at::parallel_for; libgomp is the one torch already loaded).
    openmp = ["-fopenmp"] if sys.platform == "linux" else []
    ext_modules.append(
        CppExtension(
            "tracer.core._probe",
            ["tracer/core/_probe.cpp"],
            depends=[LAYOUT_HEADER],
            define_macros=[("TRACER_TORCH_VERSION", f'"{torch.__version__}"')],
            # -g0: no debug information for all of torch's headers (5.3 MB -> 0.2 MB)
            extra_compile_args=["-std=c++20", f"-D_GLIBCXX_USE_CXX11_ABI={abi}", "-g0", *openmp],
            extra_link_args=openmp,
            optional=True,
        )
    )

setup(ext_modules=ext_modules)
