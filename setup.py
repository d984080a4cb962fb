"""Builds the Cython tokenizer. A failed build fails the install: no silent fallback here.

The pure-Python twin is chosen only at run time, with SLO_NO_EXTENSIONS=1.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("slo._parser", ["slo/_parser.pyx"])],
        compiler_directives={"language_level": 3, "boundscheck": False, "wraparound": False},
    )
)
