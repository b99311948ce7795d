"""hydra_jax: causal analysis of language-model computations (the Hydra effect) in JAX."""
import setuptools

setuptools.setup(
    name="hydra_jax",
    version="0.1.0",
    description="Ablation studies and the Hydra effect for transformer language models, in JAX/Haiku.",
    packages=setuptools.find_packages(include=["hydra_jax", "hydra_jax.*"]),
    package_data={"hydra_jax": ["assets/*", "assets/**/*"]},
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.4.30",
        "dm-haiku>=0.0.13",  # not via the [jax] extra: that resolves to an older Haiku
        "optax>=0.2",
        "ml_collections>=0.1.1",
        "absl-py>=1.0",
        "numpy>=1.24",
        "safetensors>=0.4",
        "gguf>=0.10",  # llama.cpp's GGUF checkpoints: metadata, tensors and every quantization (numpy only)
        "tokenizers>=0.15",
        "sentencepiece>=0.1.99",
        "protobuf",  # SentencePiece model protos built from GGUF metadata (llama-type tokenizers)
        "tensorflow-datasets>=4.9.4",
        "array_record>=0.5",
        "matplotlib>=3.7",
        "etils[epath]",  # the workdir store (local paths and gs:// buckets)
        "importlib_resources",  # tensorflow-datasets imports it through etils on Python 3.11
    ],
    extras_require={
        "gcs": ["gcsfs"],  # workdirs in a gs:// bucket (etils epath's backend for them)
        "test": [
            "pytest>=7",
            "pytest-xdist>=3",  # the README's test command runs the files on 2 workers
            "chex>=0.1.86",
            "torch==2.13.0",  # this machine's CPU wheel; an unpinned torch pulls CUDA builds
            "transformers>=4.40",
            "accelerate",  # transformers needs it to read GGUF files (the reference loader)
            "statsmodels>=0.14",  # the reference for the estimators' tests
            "nbformat>=5",
            "nbclient>=0.7",
            "ipykernel>=6",
        ],
    },
)
