#!/usr/bin/env python3
"""Validates JSON documents for tests/airbyte.rs with the `jsonschema` package (draft-07,
the protocol read with PyYAML from its published YAML form;
formats checked): Airbyte messages against the vendored protocol schema, records against the
JSON schema their stream declared.

Usage: validate_airbyte.py PROTOCOL_SCHEMA < items

Each input line is {"schema": null | SCHEMA, "instance": VALUE}; a null schema means the
protocol's AirbyteMessage. Each output line answers one input line: `ok`, or the errors.
"""

import json
import sys
from pathlib import Path

import yaml
from jsonschema import Draft7Validator


def message_schema(protocol_path: str) -> dict:
    """The protocol document's root describes a wrapper object; a message is its
    AirbyteMessage definition, referred to from a schema that keeps the definitions."""
    protocol = yaml.safe_load(Path(protocol_path).read_text())
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": protocol["definitions"],
        "allOf": [{"$ref": "#/definitions/AirbyteMessage"}],
    }


def validator(schema: dict) -> Draft7Validator:
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)


def main() -> int:
    validators = {None: validator(message_schema(sys.argv[1]))}
    for line in sys.stdin:
        item = json.loads(line)
        schema = item["schema"]
        key = None if schema is None else json.dumps(schema, sort_keys=True)
        if key not in validators:
            validators[key] = validator(schema)
        errors = sorted(
            f"{error.message} at {error.json_path}"
            for error in validators[key].iter_errors(item["instance"])
        )
        print("ok" if not errors else "; ".join(errors))
    return 0


if __name__ == "__main__":
    sys.exit(main())
