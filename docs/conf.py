"""Sphinx configuration: ``sphinx-build docs docs/_build``."""
project = "nemo-typed-modules"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
master_doc = "index"
exclude_patterns = ["_build"]
