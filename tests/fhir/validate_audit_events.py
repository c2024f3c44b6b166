"""Validates MedFlow's FHIR AuditEvent export with the independent `fhir.resources`
models (R4B, whose AuditEvent is the R4 one).

Reads the export from stdin: NDJSON (one resource per line) with the argument
`ndjson`, or one collection Bundle with `bundle`. Besides the models' own checks
(structure, types, required elements) it checks the R4 value sets of `action` and
`outcome` and the FHIR JSON rule that no array or object is empty, which the models
do not enforce. Prints a JSON summary on success; exits 1 with the reasons otherwise.
"""

import json
import sys

from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle

ACTIONS = {"C", "R", "U", "D", "E"}
OUTCOMES = {"0", "4", "8", "12"}


def empty_containers(value, path="$"):
    if isinstance(value, dict):
        if not value:
            yield path
        for key, inner in value.items():
            yield from empty_containers(inner, f"{path}.{key}")
    elif isinstance(value, list):
        if not value:
            yield path
        for index, inner in enumerate(value):
            yield from empty_containers(inner, f"{path}[{index}]")


def check(resource, problems):
    try:
        AuditEvent.parse_obj(resource)
    except Exception as error:  # the models raise several validation error types
        problems.append(f"{resource.get('id')}: {error}")
        return
    if resource.get("action") not in ACTIONS:
        problems.append(f"{resource.get('id')}: action {resource.get('action')!r} is not in {sorted(ACTIONS)}")
    if resource.get("outcome") not in OUTCOMES:
        problems.append(f"{resource.get('id')}: outcome {resource.get('outcome')!r} is not in {sorted(OUTCOMES)}")


def main():
    mode = sys.argv[1]
    text = sys.stdin.read()
    problems = []
    if mode == "ndjson":
        resources = [json.loads(line) for line in text.splitlines() if line.strip()]
        documents = resources
    else:
        bundle = json.loads(text)
        try:
            Bundle.parse_obj(bundle)
        except Exception as error:
            problems.append(f"bundle: {error}")
        resources = [entry["resource"] for entry in bundle.get("entry", [])]
        documents = [bundle]
    for document in documents:
        for path in empty_containers(document):
            problems.append(f"empty array or object at {path}")
    for resource in resources:
        check(resource, problems)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print(json.dumps({
        "count": len(resources),
        "ids": [resource["id"] for resource in resources],
        "actions": [resource["action"] for resource in resources],
        "outcomes": [resource["outcome"] for resource in resources],
    }))


main()
