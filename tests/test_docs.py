"""The Sphinx docs build, warnings as errors, as part of ``pytest tests``.

``test_docs_build_without_warnings`` builds the real docs (prose + API
reference) exactly as documented in ``docs/conf.py``. The other tests build
tiny throwaway projects with the same configuration (``sphinx-build -c docs``)
to prove that the mistakes the real build must catch do fail it: a broken
reStructuredText docstring, a misspelt cross-reference, a property docstring
that napoleon misreads as ``Type: description``.
"""
import os
import re
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(REPO, "docs")
PACKAGES = ("nemo_core", "nemo_asr")


def _require_sphinx():
    try:
        import sphinx  # noqa: F401
    except ImportError:
        pytest.fail("sphinx is not installed, so the docs cannot be built: install the test "
                    "extra (pip install -e '.[test]', which lists sphinx>=7) or pip install 'sphinx>=7'")


def sphinx_build(srcdir, outdir, confdir=None, pythonpath=None, timeout=600):
    """Run ``sphinx-build -W --keep-going -b html``; return (exit status, warning lines)."""
    _require_sphinx()
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    if confdir:
        cmd += ["-c", confdir]
    cmd += [str(srcdir), str(outdir)]
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines()
                if re.search(r"\b(WARNING|ERROR|CRITICAL|SEVERE)\b|Exception occurred|Traceback", line)]
    if proc.returncode and not problems:  # a crash without warning lines: show the tail
        problems = (proc.stdout + proc.stderr).splitlines()[-30:]
    return proc.returncode, problems


def _build_probe(tmp_path, modules, index_extra=""):
    """Build a one-page project documenting ``modules`` ({name: source}) with docs/conf.py."""
    src = tmp_path / "src"
    src.mkdir()
    for name, source in modules.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    (src / "index.rst").write_text(
        "Probe\n=====\n\n" + textwrap.dedent(index_extra)
        + "".join(f"\n.. automodule:: {name}\n" for name in modules), encoding="utf-8")
    return sphinx_build(src, tmp_path / "html", confdir=DOCS, pythonpath=tmp_path)


PROBE_MODULE = '''
    """A probe module."""


    def scale(x, factor=2):
        {docstring}
        return x * factor
'''

GOOD_DOCSTRING = '''"""Multiply ``x`` by ``factor``.

        Args:
            x (int or None): the value.
            factor (float): how much.

        Returns:
            float: the product.

        Raises:
            ValueError: if ``x`` is None.
        """'''

BROKEN_DOCSTRINGS = {  # mistake: (docstring, sphinx's message)
    "unterminated inline literal": ('"""Multiply ``x by factor."""',
                                    "Inline literal start-string without end-string"),
    "bad indentation": ('"""Multiply x by factor:\n            x times\n        factor."""',
                        "unexpected unindent"),
}


def test_broken_docstring_fails_the_build(tmp_path):
    """One build, three modules: the correct docstring gives no warning, each broken one
    gives its docutils error, and the build fails (warnings are errors)."""
    modules = {"docs_probe_good": PROBE_MODULE.format(docstring=GOOD_DOCSTRING)}
    for i, mistake in enumerate(sorted(BROKEN_DOCSTRINGS)):
        modules[f"docs_probe_broken{i}"] = PROBE_MODULE.format(docstring=BROKEN_DOCSTRINGS[mistake][0])
    status, problems = _build_probe(tmp_path, modules)
    assert status != 0, "docstrings with rst mistakes built without error:\n" + "\n".join(problems)
    for i, mistake in enumerate(sorted(BROKEN_DOCSTRINGS)):
        message = BROKEN_DOCSTRINGS[mistake][1]
        assert any(message in line and f"docs_probe_broken{i}.py" in line for line in problems), (
            f"no {message!r} warning for the {mistake}:\n" + "\n".join(problems))
    assert not [line for line in problems if "docs_probe_good" in line], "\n".join(problems)


@pytest.mark.slow
def test_cross_references_resolve_or_fail(tmp_path):
    """Short and re-exported names of documented objects resolve; a misspelt name, or a
    property docstring whose first line napoleon turns into a type, fails the build."""
    source = '''
        """References the docs build must resolve, and two it must not."""


        def wired(port, audio=None, lengths=None):
            """Check ``port``: :class:`NeuralType`, :class:`nemo_core.NeuralType`,
            :class:`nemo_core.neural_types.NeuralType`, :class:`torch.Tensor`,
            :class:`int`, :exc:`ValueError`.

            Args:
                port (NeuralType or None): a port type.
                audio (Tensor, optional): prose in a type is not checked.
                lengths (torch.Tensor of shape (B,)): nor is this.

            Returns:
                torch.Tensor: a tensor.
            """


        def misspelt():
            """See :class:`NeuralTyp`."""


        class Ports:
            """A class with ports."""

            @property
            def ports(self):
                """Ordered dict: port name -> NeuralType."""
    '''
    index = """
        .. autoclass:: nemo_core.neural_types.neural_type.NeuralType
           :no-members:
    """
    status, problems = _build_probe(tmp_path, {"docs_probe": source}, index)
    assert status != 0
    assert len(problems) == 2, "\n".join(problems)
    misspelt, napoleon = sorted(problems, key=lambda line: "napoleon" in line)
    assert "docs_probe.misspelt" in misspelt and "reference target not found: NeuralTyp" in misspelt
    assert "docs_probe.Ports.ports" in napoleon and "'Ordered dict' is not a type" in napoleon


def _documented_modules():
    found = set()
    for name in os.listdir(os.path.join(DOCS, "api")):
        if name.endswith(".rst"):
            with open(os.path.join(DOCS, "api", name), encoding="utf-8") as f:
                found.update(re.findall(r"^\.\. automodule:: (\S+)", f.read(), flags=re.M))
    return found


def test_api_reference_lists_every_module():
    """A module added to nemo_core or nemo_asr must get an ``automodule`` in docs/api/."""
    modules = set()
    for package in PACKAGES:
        for root, dirs, files in os.walk(os.path.join(REPO, package)):
            dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
            for name in files:
                path = os.path.join(root, name)
                if not name.endswith(".py") or os.path.getsize(path) == 0:
                    continue  # empty __init__.py: nothing to document
                dotted = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                modules.add(dotted[: -len(".__init__")] if dotted.endswith(".__init__") else dotted)
    missing = sorted(modules - _documented_modules())
    assert not missing, ("modules missing from the API reference; add '.. automodule:: NAME' "
                         "(under a '~~~' heading) to docs/api/<package>.rst: " + ", ".join(missing))
    stale = sorted(_documented_modules() - modules)
    assert not stale, "docs/api/ documents modules that do not exist: " + ", ".join(stale)


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    """The real docs, as CI builds them: ``sphinx-build -W --keep-going -b html docs``."""
    status, problems = sphinx_build(DOCS, tmp_path / "html")
    assert status == 0, ("the docs build has warnings (treated as errors); fix each line below, "
                         "then rerun pytest tests/test_docs.py:\n" + "\n".join(problems))
    assert (tmp_path / "html" / "api" / "nemo_core.html").is_file()
