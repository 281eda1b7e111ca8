"""docs/configuration.md against the settings code: every variable the code reads is listed
with the code's default, and every variable the README, docs/ and deploy/ name exists."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices
from pydantic.fields import FieldInfo

from shared.settings import GROUPS, Settings, known_variables

ROOT = Path(__file__).parents[2]
REFERENCE = ROOT / "docs" / "configuration.md"

#: Named in the docs and deploy files but not settings of the root, and who reads them.
NOT_SETTINGS = {
    "FLOWER_BASIC_AUTH": "summarybot flower --basic-auth",
    "SUMMARYBOT_API_KEY": "summarybot summarize --key",
    "POSTGRES_PASSWORD": "deploy/compose.yaml",
    "GRAFANA_ADMIN_PASSWORD": "deploy/compose.yaml",
    "SUMMARYBOT_IMAGE": "deploy/compose.yaml",
    "REDIS_MAXMEMORY": "deploy/compose.yaml",
    "REDIS_ADDRESS": "KEDA, in deploy/k8s",
}

#: First words of the variables this project reads (others, like GF_*, PIP_* or the postgres
#: image's POSTGRES_*, are not ours).
OURS = {*(name.split("_", 1)[0] for name in known_variables()), "FLOWER", "SUMMARYBOT"}


def _documented() -> dict[str, str]:
    """Variable → its default cell, from every table row of the reference."""
    rows: dict[str, str] = {}
    for line in REFERENCE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]):
            rows[name] = cells[1].strip("`")
    return rows


def _fields() -> dict[str, FieldInfo]:
    """Variable → the field it sets, in the root and every group."""
    fields = {
        ("SUMMARYBOT_DATA_DIR" if name == "data_dir" else name.upper()): info
        for name, info in Settings.model_fields.items()
        if name not in GROUPS
    }
    for group in GROUPS.values():
        prefix = str(group.model_config.get("env_prefix") or "")
        for name, info in group.model_fields.items():
            alias = info.validation_alias
            if isinstance(alias, str):
                names = [alias]
            elif isinstance(alias, AliasChoices):
                names = [c for c in alias.choices if isinstance(c, str)]
            else:
                names = [f"{prefix}{name}"]
            fields.update({n.upper(): info for n in names})
    return fields


def _as_env(value: Any) -> str:
    """A default as an operator would write it in the environment."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, list | tuple | frozenset):
        return ",".join(_as_env(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def test_every_variable_the_code_reads_is_documented() -> None:
    documented = _documented()
    missing = sorted(set(known_variables()) - set(documented))
    assert missing == [], f"add these to docs/configuration.md: {missing}"
    unknown = sorted(set(documented) - set(known_variables()) - set(NOT_SETTINGS))
    assert unknown == [], f"docs/configuration.md lists variables nothing reads: {unknown}"


@pytest.mark.parametrize("name", known_variables())
def test_the_documented_default_is_the_codes(name: str) -> None:
    default = _fields()[name].get_default(call_default_factory=True)
    written = _documented()[name]
    if name == "SUMMARYBOT_DATA_DIR":
        written = written.replace("~", str(Path.home()), 1)
    assert written == _as_env(default), name


def _pages() -> list[Path]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    pages += [p for p in sorted((ROOT / "deploy").rglob("*")) if p.is_file()]
    # The redaction page names secrets found in chat messages (API_KEY=...), not settings.
    return [p for p in pages if p.name != "redaction.md" and p.suffix != ".json"]


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_variable_a_page_names_exists(page: Path) -> None:
    text = page.read_text()
    named = {
        match.group(1)
        for match in re.finditer(r"(?<![\w$])(?<!\$\{)([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b", text)
        if match.group(1).split("_", 1)[0] in OURS
    }
    unknown = sorted(named - set(known_variables()) - set(NOT_SETTINGS))
    assert unknown == [], f"{page.name} names variables nothing reads: {unknown}"


def _bound(info: FieldInfo) -> tuple[Any, bool, Any, bool]:
    """(lower, lower is open, upper, upper is open) of a field's numeric constraints."""
    lower = upper = None
    lower_open = upper_open = False
    for rule in info.metadata:
        for name in ("ge", "gt", "le", "lt"):
            value = getattr(rule, name, None)
            if value is None:
                continue
            if name in ("ge", "gt"):
                lower, lower_open = value, name == "gt"
            else:
                upper, upper_open = value, name == "lt"
    return lower, lower_open, upper, upper_open


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def range_text(info: FieldInfo) -> str | None:
    """How the reference states a field's range: "(1–100)", "(above 0, up to 300)", ..."""
    lower, lower_open, upper, upper_open = _bound(info)
    if lower is None and upper is None:
        return None
    low, high = _number(lower), _number(upper)
    if lower is not None and upper is not None:
        return {
            (False, False): f"({low}–{high})",
            (True, False): f"(above {low}, up to {high})",
            (False, True): f"({low} to below {high})",
            (True, True): f"(above {low}, below {high})",
        }[(lower_open, upper_open)]
    if lower is not None:
        return f"(above {low})" if lower_open else f"(at least {low})"
    return f"(below {high})" if upper_open else f"(at most {high})"


def test_every_bounded_variable_states_its_range() -> None:
    # The README promises each variable "with its default and range"; a range the code
    # refuses to meet (DISCORD_REQUEST_TIMEOUT_S said 0–300, 0 is refused) misleads.
    rows = {
        name: line
        for line in REFERENCE.read_text().splitlines()
        for name in re.findall(r"^\|\s*`([A-Z][A-Z0-9_]+)`", line)
    }
    missing = []
    for name, info in _fields().items():
        wanted = range_text(info)
        if wanted is not None and name in rows and wanted not in rows[name]:
            missing.append(f"{name}: {wanted}")
    assert missing == []
