#!/usr/bin/env python3
"""Evaluates a ValidatingAdmissionPolicy's CEL on admission requests, offline.

tests/manifests.rs runs it in the venv of scripts/deps.sh (Google's CEL runtime,
cel-expr-python, with the optional-types extension Kubernetes enables for these
policies). Reads one JSON document on stdin:

  {"policy": <the ValidatingAdmissionPolicy>,
   "requests": [{"request": {...}, "object": {...}, "oldObject": {...}}, ...]}

and prints one JSON list, an answer per request, in the API server's order of
evaluation: the match conditions (all must hold, or the policy does not apply:
admitted), the variables in order, then the validations (the first false one
denies with its message):

  [{"applies": bool, "admitted": bool, "message": str or null}, ...]

The resource rules (nodes, UPDATE) are the caller's to respect: every request
given is taken as matching them.
"""

import json
import sys

from cel_expr_python import cel
from cel_expr_python.ext import ext_optional

NAMES = ("request", "object", "oldObject", "variables")


def environment():
    return cel.NewEnv(variables={name: cel.Type.DYN for name in NAMES},
                      extensions=[ext_optional.ExtOptional()])


def evaluate(env, expression, data):
    """The expression's value; an error (a missing key) as the string "error: …",
    which is never True: with failurePolicy Fail the API server denies then too."""
    try:
        return env.compile(expression).eval(data=data).plain_value()
    except Exception as err:  # noqa: BLE001 - any CEL failure is a denial
        return f"error: {err}"


def admit(env, spec, review):
    data = {name: review.get(name, {}) for name in NAMES}
    data["variables"] = {}
    for condition in spec.get("matchConditions", []):
        matched = evaluate(env, condition["expression"], data)
        if isinstance(matched, str):
            return {"applies": True, "admitted": False, "message": matched}
        if matched is not True:
            return {"applies": False, "admitted": True, "message": None}
    for variable in spec.get("variables", []):
        data["variables"][variable["name"]] = evaluate(env, variable["expression"], data)
    for validation in spec.get("validations", []):
        valid = evaluate(env, validation["expression"], data)
        if valid is not True:
            message = valid if isinstance(valid, str) else validation.get("message")
            return {"applies": True, "admitted": False, "message": message}
    return {"applies": True, "admitted": True, "message": None}


def main():
    document = json.load(sys.stdin)
    env = environment()
    spec = document["policy"]["spec"]
    print(json.dumps([admit(env, spec, review) for review in document["requests"]]))


if __name__ == "__main__":
    main()
