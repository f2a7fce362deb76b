"""Packaging for nemo_core (framework) and nemo_asr (speech collection).

torch is a range here so GPU users keep their own build; the README's install
commands pin the CPU wheel (torch==2.13.0) for machines without a GPU.
"""
from setuptools import find_packages, setup

EXTRAS = {
    "asr": ["numpy>=1.23", "soundfile>=0.12", "soxr>=0.3", "librosa>=0.10"],
    # CTC beam search with n-gram LMs; kenlm compiles from source (~1 min)
    "lm": ["pyctcdecode>=0.5", "kenlm>=0.2"],
    # ONNX export, ONNX Runtime serving and int8 quantisation
    "deploy": ["onnx>=1.15", "onnxruntime>=1.17"],
    # nemo-serve: ASGI app (Starlette), server (uvicorn, with the websockets protocol), Prometheus metrics
    # the API reference (docs/): built with warnings as errors by tests/test_docs.py
    "docs": ["sphinx>=7"],
    "serve": ["starlette>=0.37", "uvicorn>=0.29", "websockets>=12", "prometheus_client>=0.20"],
}
EXTRAS["test"] = ["pytest>=7"] + EXTRAS["asr"] + EXTRAS["lm"] + EXTRAS["deploy"] + EXTRAS["serve"] + EXTRAS["docs"]
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

setup(
    name="nemo-typed-modules",
    version="0.1.0",
    description="Typed neural modules wired into DAGs, with a speech-recognition collection",
    long_description=open("README.rst", encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    packages=find_packages(include=["nemo_core", "nemo_core.*", "nemo_asr", "nemo_asr.*"]),
    package_data={"nemo_asr.serve": ["static/*"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1,<3",
        "ruamel.yaml>=0.17",
        "tensorboardX>=2.6",
        "tqdm>=4.60",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["nemo-transcribe=nemo_asr.transcribe:main", "nemo-serve=nemo_asr.serve.cli:main"]},
    classifiers=["Programming Language :: Python :: 3", "Topic :: Scientific/Engineering :: Artificial Intelligence"],
)
