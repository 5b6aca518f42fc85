"""Validates route files against the router's JSON Schema with the reference
validator (python-jsonschema), reading YAML as editors do (YAML 1.2, via
ruamel.yaml), independently of the router's own parser.

usage: validate_schema.py SCHEMA.json FILE.yaml...
Prints one line per problem and exits 1 if there is any.
"""
import json
import sys

import jsonschema
from ruamel.yaml import YAML


def main():
    schema = json.load(open(sys.argv[1]))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    yaml = YAML(typ="safe", pure=True)
    problems = 0
    for path in sys.argv[2:]:
        with open(path) as f:
            doc = yaml.load(f)
        for e in validator.iter_errors(doc):
            problems += 1
            where = "/".join(str(p) for p in e.absolute_path) or "(top)"
            print(f"{path}: {where}: {e.message}")
            # Under anyOf, say what each branch found (the typo itself).
            for sub in e.context or []:
                at = "/".join(str(p) for p in sub.absolute_path) or "(top)"
                print(f"  {at}: {sub.message}")
    sys.exit(1 if problems else 0)


main()
