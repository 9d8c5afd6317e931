"""fc: a frontend compiler for neural-network accelerators.

Every top-level directory is one subpackage of the single ``fc`` namespace
(``ir/`` -> ``fc.ir``, ``np_ops/`` -> ``fc.np_ops``, ...), mapped with
``package_dir`` so that ``pip install .`` and ``pip install -e .`` agree.
"""

from setuptools import setup

_SUBPACKAGES = {
    "fc": "fc",
    "fc.ir": "ir",
    "fc.ir.schemas": "ir/schemas",
    "fc.frontend": "frontend",
    "fc.frontend.onnx": "frontend/onnx",
    "fc.frontend.mxnet": "frontend/mxnet",
    "fc.frontend.mxnet.zoo": "frontend/mxnet/zoo",
    "fc.frontend.torch": "frontend/torch",
    "fc.passes": "passes",
    "fc.np_ops": "np_ops",
    "fc.reconstruct": "reconstruct",
    "fc.quant": "quant",
}

# numpy is pinned to 1.26.x: tensorflow-cpu 2.21 needs >= 1.26 and mxnet 1.9.1 needs < 2
# (DEVELOPERS.md explains the np.bool alias fc restores before importing mxnet).
_NUMPY = "numpy>=1.26,<1.27"
_ONNX = ["onnx>=1.15", "onnxruntime>=1.17"]
_TORCH = ["torch==2.13.0"]
_MXNET = ["mxnet==1.9.1"]
_TF = ["tensorflow-cpu==2.21.*"]

setup(
    name="fc",
    version="0.1.0",
    description="Frontend compiler for neural-network accelerators",
    python_requires=">=3.10",
    packages=list(_SUBPACKAGES),
    package_dir=_SUBPACKAGES,
    install_requires=[_NUMPY, "onnx>=1.15"],
    extras_require={
        "onnx": _ONNX,
        "torch": _TORCH,
        "mxnet": _MXNET,
        "tf": _TF,
        "test": ["pytest>=7", "ruff"],
        "all": _ONNX + _TORCH + _MXNET + _TF + ["pytest>=7", "ruff"],
    },
    entry_points={"console_scripts": ["fc = fc.cli:main", "fcc = fc.cli:main"]},
)
