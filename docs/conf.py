"""Sphinx configuration of the provider's docs site (``make docs``): MyST Markdown pages, the API
reference from the package's docstrings, and the connection forms generated from the provider info."""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

import airflow_provider_iotfleet  # noqa: E402

project = "airflow-provider-iotfleet"
author = "airflow-provider-iotfleet contributors"
copyright = "2026, airflow-provider-iotfleet contributors"
release = airflow_provider_iotfleet.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "iotfleet_docs",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# No intersphinx: CI reaches the package index only. References to Airflow's and Python's own
# classes therefore cannot resolve; autodoc's type hints are left as text, and nitpicky mode ignores
# the names outside this package.
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": False}
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"^(?!airflow_provider_iotfleet\.).*"),
    # Type variables: autodoc shows them in base class lists but documents no target for them.
    (r"py:obj", r"^airflow_provider_iotfleet\..*\.[A-Z][A-Za-z]*T$"),
    # The transport core and the read-back of lost answers are internals, left out of the reference.
    (r"py:.*", r"^airflow_provider_iotfleet\.(http|hooks\.readback)\..*"),
]

html_theme = "furo"
html_title = f"airflow-provider-iotfleet {release}"
