"""The C part of the Avro codec (``streamer/codec/_native.c``); everything else is in pyproject.toml.

``optional=True``: where no C compiler is at hand the build goes on without it and the
generated Python codec serves alone (``streamer version`` says which one is in use).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "streamer.codec._native",
            ["streamer/codec/_native.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
