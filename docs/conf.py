"""Sphinx configuration.

Build (warnings are errors, as CI does through ``tests/test_docs.py``)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

The API pages (``docs/api/``) import ``nemo_core`` and ``nemo_asr`` from this
checkout, so the docs describe the code next to them rather than whatever
version happens to be installed.
"""
import importlib
import os
import re
import sys

from sphinx import addnodes
from sphinx.util import logging

logger = logging.getLogger(__name__)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

project = "nemo-typed-modules"
author = "nemo-typed-modules contributors"
copyright = "nemo-typed-modules contributors"


def _version():
    # read, not imported: importing the package here would pull in torch for
    # every build, even one that only renders the prose pages
    with open(os.path.join(REPO, "nemo_core", "__init__.py"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=", 1)[1].strip().strip("\"'")
    return "unknown"


release = version = _version()

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
master_doc = "index"
exclude_patterns = ["_build"]
# keep "--flag" and quotes as written: docstrings name command-line options
smartquotes = False

# -- autodoc ------------------------------------------------------------------
# Optional extras are imported lazily by the code, but mock them anyway so the
# API pages build identically whether or not ``[asr]``, ``[lm]``, ``[deploy]``
# or the serving packages are installed (the ``docs`` extra needs none of them).
autodoc_mock_imports = [
    "pyctcdecode",
    "kenlm",
    "onnx",
    "onnxruntime",
    "soundfile",
    "soxr",
    "librosa",
    # nemo-serve
    "starlette",
    "uvicorn",
    "prometheus_client",
    "multipart",
    "websockets",
]
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
    "member-order": "bysource",
}
# signatures stay readable; annotations are shown in the description
autodoc_typehints = "description"
# an undocumented override (``forward``, a subclass's ``input_ports``) would
# otherwise repeat its base's docstring, e.g. torch's "Define the computation
# performed at every call" under every module's forward
autodoc_inherit_docstrings = False

# -- cross-references ---------------------------------------------------------
# Every reference written as a role must resolve (``nitpicky``), so a misspelt
# :class:`NeuralTyp`, or a property docstring that napoleon reads as
# ``Type: description``, fails the build. The words of a type in napoleon's
# ``Args:``/``Returns:`` (``x (Tensor, optional)``, ``shape (B, T)``) are prose
# and are not checked (see ``_report_missing_reference``). Other projects'
# objects cannot resolve (no intersphinx: the build runs offline), nor can
# private base classes, which are left out on purpose.
nitpicky = True
_EXTERNAL = ("builtins", "torch", "numpy", "np", "enum", "collections", "typing", "abc",
             "pathlib", "os", "io", "logging", "argparse", "signal", "multiprocessing",
             "contextlib", "dataclasses", "concurrent", "threading", "asyncio", "json",
             "onnx", "onnxruntime", "ort", "pyctcdecode", "kenlm", "soundfile", "soxr",
             "librosa", "ruamel", "tensorboardX", "tqdm", "starlette", "uvicorn",
             "prometheus_client", "websockets", "email", "hmac", "uuid", "time")
nitpick_ignore_regex = [
    (r"py:.*", r"(%s)(\..*)?" % "|".join(_EXTERNAL)),
    (r"py:.*", r"(.*\.)?_[A-Za-z]\w*"),  # private names: _TorchNeuralModule, _Preprocessor
]

# -- napoleon -----------------------------------------------------------------
napoleon_google_docstring = True
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# "Attributes:" sections as fields of the class (typed like parameters), not as
# separate attribute entries that would duplicate autodoc's own
napoleon_use_ivar = True

# -- html ---------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"{project} {release}"


def _resolve_reexported(app, env, node, contnode):
    """Resolve ``NeuralType``, ``nemo_core.NeuralType`` or
    ``nemo_core.NeuralModule.export_to_config`` to the one documented object.

    autodoc documents each object once, where it is defined
    (``nemo_core.neural_types.neural_type.NeuralType``); docstrings use the
    short or re-exported names. A name that matches several objects still
    fails (Sphinx warns "more than one target found"), one that matches none
    fails as a missing reference.
    """
    if node.get("refdomain") != "py" or node.get("refspecific"):
        return None
    target = node.get("reftarget", "")
    parts = target.split(".")
    if parts[0] in ("nemo_core", "nemo_asr"):
        # drop the longest importable module prefix: nemo_core.optim.Novograd -> Novograd
        for i in range(len(parts) - 1, 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except Exception:  # not a module, or one whose optional extra is absent
                continue
            for attr in parts[i:]:
                obj = getattr(obj, attr, None)
            if obj is None:
                return None
            target = ".".join(parts[i:])
            break
        else:
            return None
    fuzzy = node.deepcopy()
    fuzzy["reftarget"] = target
    fuzzy["refspecific"] = True
    return env.get_domain("py").resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], target, fuzzy, contnode)


def _report_missing_reference(app, domain, node):
    """Decide what an unresolved Python reference reports (True: handled here)."""
    if domain.name != "py":
        return None
    if node.get("refspecific") and node.children and isinstance(node[0], addnodes.literal_emphasis):
        # a word of a parameter's or return value's type (napoleon's "x (Tensor,
        # optional)", an annotation): Sphinx renders only those as literal_emphasis
        return True
    target = node.get("reftarget", "")
    if not re.fullmatch(r"[\w.]+", target):
        logger.warning(
            "%r is not a type: napoleon reads a property or attribute docstring whose first "
            "line has a colon as 'Type: description'; reword that line without a colon",
            target, location=node, type="ref", subtype="napoleon")
        return True
    return None


def setup(app):
    app.connect("missing-reference", _resolve_reexported)
    app.connect("warn-missing-reference", _report_missing_reference)
