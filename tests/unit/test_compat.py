"""The Airflow names ``_compat`` takes resolve on this Airflow, and redaction masks what was registered.

These fail, naming the module, when an Airflow release moves what the package imports: on the newest
Airflow (``make test``) and on the oldest we support (``make test-oldest``).
"""

from __future__ import annotations

import importlib

import pytest

from airflow_provider_iotfleet import _compat
from airflow_provider_iotfleet._compat import mask_secret, redact


@pytest.mark.parametrize("module", [_compat.REDACT_PUBLIC_MODULE, _compat.REDACT_PRIVATE_MODULE])
def test_the_module_redact_is_taken_from_still_provides_it(module: str) -> None:
    try:
        provided = getattr(importlib.import_module(module), "redact", None)
    except ImportError as error:
        pytest.fail(
            f"{module} no longer imports ({error}): find where Airflow moved redact, update _compat.py"
        )
    assert callable(provided), f"{module} no longer provides redact: find where it moved, update _compat.py"


def test_redact_uses_the_public_re_export() -> None:
    public = importlib.import_module(_compat.REDACT_PUBLIC_MODULE).redact
    assert _compat._redact is public, (
        f"_compat fell back to the private {_compat.REDACT_PRIVATE_MODULE}: "
        f"{_compat.REDACT_PUBLIC_MODULE} does not export redact on this Airflow"
    )


def test_redact_masks_a_registered_secret_and_leaves_other_text() -> None:
    mask_secret("s3cr3t-api-key-for-compat")
    assert redact("key=s3cr3t-api-key-for-compat in the URL") == "key=*** in the URL"
    assert redact("nothing secret here") == "nothing secret here"
