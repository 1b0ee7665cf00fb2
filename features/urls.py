"""Database and tracking URLs as they may be shown: the password of their user part masked.

A URL such as ``postgresql+psycopg://crm:secret@db/crm`` or ``https://user:token@mlflow.example`` is
configuration a command prints in its errors and summaries, and the service in its log; its password
never is. Masking works on the text (no parsing that could refuse it), so a URL that is not valid, which
an error is about to name, is masked too.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MASK = "***"  # as SQLAlchemy's ``URL.render_as_string(hide_password=True)``
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:/+")


def masked_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part replaced by ``***`` (unchanged without one).

    The password runs from the first ``:`` after the scheme to the last ``@``: a password holding ``@``
    or ``/`` unescaped is masked whole (a ``@`` in a path masks more than the password, never less)."""
    scheme = _SCHEME.match(url)
    start = scheme.end() if scheme else 0
    at = url.rfind("@")
    colon = url.find(":", start, at) if at > start else -1
    if colon < 0:
        return url
    return f"{url[:colon + 1]}{MASK}{url[at:]}"


def has_password(url: str) -> bool:
    """Whether ``url`` carries a password that :func:`masked_url` masks."""
    return masked_url(url) != url


# the database back ends of MLflow's tracking and registry stores
DATABASE_STORE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
# MLflow's other built-in tracking stores (``uc``: OSS Unity Catalog, ``uc:http://host``)
BUILT_IN_STORE_SCHEMES = ("http", "https", "file", "uc")
# the entry point groups of MLflow's tracking and registry store plugins (azureml-mlflow's ``azureml://``)
STORE_PLUGIN_GROUPS = ("mlflow.tracking_store", "mlflow.model_registry_store")


def is_server_uri(uri: str) -> bool:
    """A tracking server (``http(s)://``, in any case as MLflow reads it), not a local store."""
    return uri.lower().startswith(("http://", "https://"))


def plugin_store_schemes() -> frozenset[str]:
    """The schemes of the store plugins installed (entry points of :data:`STORE_PLUGIN_GROUPS`)."""
    from importlib.metadata import entry_points

    return frozenset(ep.name.lower() for group in STORE_PLUGIN_GROUPS for ep in entry_points(group=group))


def tracking_scheme_problem(uri: str) -> str | None:
    """Why ``uri`` (with ``scheme://``) names no MLflow tracking store, None when its scheme is one: a database
    (``postgresql+psycopg://`` counts as ``postgresql``), ``http(s)://``, ``file:``, Databricks, ``uc:`` or an
    installed plugin's (:func:`plugin_store_schemes`). The scheme is read as MLflow reads it (URL parsing, any
    case). Without ``://`` it is a folder or a Databricks profile, which the callers handle."""
    if "://" not in uri:
        return None
    scheme = (urlsplit(uri).scheme or uri.split("://", 1)[0]).split("+", 1)[0].lower()
    if (scheme in (*DATABASE_STORE_SCHEMES, *BUILT_IN_STORE_SCHEMES) or scheme.startswith("databricks")
            or scheme in plugin_store_schemes()):
        return None
    return (f"tracking URI {masked_url(uri)!r}: {scheme!r} is no MLflow tracking store; use a database (sqlite:///<file>, "
            f"{', '.join(f'{s}://' for s in DATABASE_STORE_SCHEMES[1:])}) or an http(s):// server")
