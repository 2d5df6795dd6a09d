#!/usr/bin/env python3
"""Validates every FHIR JSON file in a folder with fhir.resources 6.4.0 (FHIR R4 4.0.1).

The black-box tests write every resource they receive to $FHIR_DUMP_DIR; this script is the
independent check that the server's output is R4, not just what our own Rust model accepts.
Bundles are validated whole (entries included). Exits non-zero on the first invalid file.
"""
import json
import pathlib
import sys

from fhir.resources import get_fhir_model_class


def main() -> int:
    folder = pathlib.Path(sys.argv[1])
    files = sorted(folder.glob("*.json"))
    if not files:
        print(f"no FHIR resources in {folder}: the black-box tests wrote nothing", file=sys.stderr)
        return 1
    counts: dict[str, int] = {}
    for path in files:
        resource = json.loads(path.read_text())
        kind = resource.get("resourceType", "?")
        try:
            get_fhir_model_class(kind).parse_obj(resource)
        except Exception as error:  # noqa: BLE001 - report whatever the validator says
            print(f"{path.name}: {kind} is not valid R4:\n{error}", file=sys.stderr)
            return 1
        counts[kind] = counts.get(kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"R4 validator (fhir.resources 6.4.0): {len(files)} resources valid: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
