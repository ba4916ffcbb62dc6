#!/usr/bin/env python3
"""Validate the custom resources in rendered manifests against k8s/schemas.

`kubernetes-validate` checks the built-in kinds and only warns "Couldn't find schema" for a custom
resource, so this script covers the rest: every object whose API group is not a built-in one must
match a tightened schema in k8s/schemas/ (see its README) or be listed in SKIPPED with a reason.
A custom resource of a kind with neither is an error, so a new kind cannot slip through unchecked.

Usage: validate_crs.py RENDERED.yaml [...]   (exit 0: all valid; 1: a violation; 2: bad input)
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"

# API groups kubernetes-validate has schemas for (the built-in ones settle may render).
BUILTIN_GROUPS = {
    "",
    "apps",
    "autoscaling",
    "batch",
    "policy",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "discovery.k8s.io",
    "coordination.k8s.io",
}

# (apiVersion, kind) -> why it is not validated. Empty: every custom resource settle renders has a
# schema. Add an entry only with a reason that a reviewer can check.
SKIPPED: dict[tuple[str, str], str] = {}


def tighten(node: object) -> None:
    """Close every object schema that lists properties (operations-notes §7.3): upstream CRDs accept
    unknown keys, so a misspelled field would otherwise pass."""
    if isinstance(node, dict):
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for value in node.values():
            tighten(value)
    elif isinstance(node, list):
        for item in node:
            tighten(item)


def load_schemas() -> dict[tuple[str, str], Draft202012Validator]:
    validators = {}
    for path in sorted(SCHEMA_DIR.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        key = (doc["apiVersion"], doc["kind"])
        schema = doc["schema"]
        tighten(schema)
        Draft202012Validator.check_schema(schema)
        validators[key] = Draft202012Validator(schema)
    return validators


def group_of(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    validators = load_schemas()
    errors: list[str] = []
    validated: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    for file in argv:
        for obj in yaml.safe_load_all(Path(file).read_text()):
            if not obj:
                continue
            api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
            if group_of(api_version) in BUILTIN_GROUPS:
                continue
            name = f"{kind}/{obj.get('metadata', {}).get('name', '?')}"
            key = (api_version, kind)
            if key in SKIPPED:
                skipped[f"{kind} ({api_version}): {SKIPPED[key]}"] += 1
                continue
            validator = validators.get(key)
            if validator is None:
                errors.append(
                    f"{file}: {name}: no schema for {api_version} {kind} in k8s/schemas/ "
                    "(add a tightened one, or list the kind in SKIPPED with a reason)"
                )
                continue
            problems = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
            for problem in problems:
                where = ".".join(str(p) for p in problem.absolute_path) or "(root)"
                errors.append(f"{file}: {name}: {where}: {problem.message}")
            if not problems:
                validated[f"{kind} ({api_version})"] += 1

    summary = ", ".join(f"{kind} x{n}" for kind, n in sorted(validated.items())) or "none"
    print(f"custom resources validated against k8s/schemas (tightened): {summary}")
    if skipped:
        for what, n in sorted(skipped.items()):
            print(f"custom resources SKIPPED (not validated) x{n}: {what}")
    else:
        print("custom resources skipped: none")
    for error in errors:
        print(f"ERROR {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
