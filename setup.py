"""The C parts: the Avro codec (``streamer/codec/_native.c``), the velocity fold's common
case (``streamer/features/_fold.c``) and TreeSHAP (``streamer/model/_treeshap.c``);
everything else is in pyproject.toml.

``optional=True``: where no C compiler is at hand the build goes on without it and the
generated Python codec serves alone (``streamer version`` says which one is in use), the
Python fold every card, and LightGBM its own TreeSHAP.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "streamer.codec._native",
            ["streamer/codec/_native.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
        Extension(  # the velocity fold's common case (streamer/features/velocity.py)
            "streamer.features._fold",
            ["streamer/features/_fold.c"],
            extra_compile_args=["-O2", "-ffp-contract=off"],
            optional=True,
        ),
        Extension(  # LightGBM's TreeSHAP with memory (streamer/model/treeshap.py)
            "streamer.model._treeshap",
            ["streamer/model/_treeshap.c"],
            extra_compile_args=["-O2", "-ffp-contract=off"],
            optional=True,
        ),
    ]
)
