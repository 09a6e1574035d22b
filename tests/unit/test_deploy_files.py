"""deploy/ keeps up with the settings: every variable documented with its true default, none
unknown, and the Kubernetes ConfigMap and Secret only naming real settings.

The YAML-level checks (schemas, selectors, command lines, routes files) are `make check-deploy`;
these need nothing but the standard library, so they run with every `make test`.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from pydantic_core import PydanticUndefined

from service.config import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ENV_EXAMPLE = DEPLOY / ".env.example"
COMPOSE = DEPLOY / "compose.yaml"
SETTINGS = sorted(name.upper() for name in Settings.model_fields)

# `NAME=value` (set for compose) or `# NAME=value` (the default applies).
_ASSIGNMENT = re.compile(r"^(?:# )?([A-Z][A-Z0-9_]*)=")
_DEFAULT = re.compile(r"\(default: ([^,;)]+)")
# `${NAME}`, `${NAME:-default}`, `${NAME:?message}` in compose.yaml (`$${NAME}` is escaped).
_COMPOSE_VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)(?::-([^}$]*))?")
# Keys of a ConfigMap's `data` or a Secret's `stringData`, commented-out ones included.
_MANIFEST_KEY = re.compile(r"^ {2}(?:# )?([A-Z][A-Z0-9_]*): ", re.MULTILINE)


def _documented() -> dict[str, tuple[str, str]]:
    """Each variable of .env.example: (the comment line above it, the assignment line)."""
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    found: dict[str, tuple[str, str]] = {}
    for above, line in itertools.pairwise(lines):
        match = _ASSIGNMENT.match(line)
        if match:
            assert match[1] not in found, f"{match[1]} is listed twice"
            found[match[1]] = (above, line)
    return found


def _rendered_default(name: str) -> str:
    """A setting's default as .env.example writes it."""
    field = Settings.model_fields[name.lower()]
    value = field.default
    if value is PydanticUndefined and field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if value in ("", []):
        return "empty"
    return str(value)


def _compose_variables() -> dict[str, str | None]:
    """Variables compose.yaml interpolates, with the default it gives each (None: none)."""
    lines = COMPOSE.read_text(encoding="utf-8").splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    found: dict[str, str | None] = {}
    for name, default in _COMPOSE_VARIABLE.findall(text):
        found[name] = default or found.get(name)
    return found


@pytest.mark.parametrize("name", SETTINGS)
def test_every_setting_is_in_env_example(name: str) -> None:
    """deploy/.env.example lists each setting under a comment that states its real default."""
    documented = _documented()
    assert name in documented, f"add {name} to deploy/.env.example"
    comment, _ = documented[name]
    assert comment.startswith("# "), f"{name} needs a one-line comment above it"
    match = _DEFAULT.search(comment)
    assert match, f"the comment above {name} does not say `(default: …)`"
    assert match[1].strip() == _rendered_default(name)


def test_env_example_names_nothing_unknown() -> None:
    """Every variable in .env.example is a setting or one that compose.yaml reads."""
    unknown = set(_documented()) - set(SETTINGS) - set(_compose_variables())
    assert not unknown


def test_compose_variables_are_documented_with_their_defaults() -> None:
    """Each `${VAR}` in compose.yaml is in .env.example, with the default compose gives it."""
    documented = _documented()
    for name, default in _compose_variables().items():
        assert name in documented, f"add {name} to deploy/.env.example"
        if default is not None and name not in SETTINGS:
            match = _DEFAULT.search(documented[name][0])
            assert match, f"the comment above {name} does not say `(default: …)`"
            assert match[1].strip() == default, name


@pytest.mark.parametrize("manifest", ["configmap.yaml", "secret.example.yaml"])
def test_kubernetes_keys_are_settings(manifest: str) -> None:
    """The ConfigMap and the example Secret set only variables the service reads."""
    keys = set(_MANIFEST_KEY.findall((DEPLOY / "k8s" / manifest).read_text(encoding="utf-8")))
    assert keys
    assert keys <= set(SETTINGS), sorted(keys - set(SETTINGS))


def test_secrets_are_not_in_the_configmap() -> None:
    """Secret values go in the Secret, never in the ConfigMap."""
    configmap = (DEPLOY / "k8s" / "configmap.yaml").read_text(encoding="utf-8")
    secret = (DEPLOY / "k8s" / "secret.example.yaml").read_text(encoding="utf-8")
    secret_keys = set(_MANIFEST_KEY.findall(secret))
    assert {"DATABASE_URL", "WEBHOOK_SECRETS", "ADMIN_TOKENS", "LLMTUNE_API_KEY"} <= secret_keys
    assert not secret_keys & set(_MANIFEST_KEY.findall(configmap))
