#!/usr/bin/env python3
"""
check_schema: keeps schemas/saga.schema.json (the editor schema of the saga DSL) honest.

1. The schema itself must be a valid draft 2020-12 JSON Schema.
2. Every workflow (workflows/**/*.yaml) and every good fixture (tests/fixtures/dsl/good/)
   must validate against it, and start with the yaml-language-server modeline that points
   editors at it.
3. Bad fixtures (tests/fixtures/dsl/bad/): those named schema_*.yaml must be rejected by
   the schema. For the others we only report whether the schema rejects them: most are
   semantic errors (jq, references, Richardson's rule) that only `sagactl validate` sees.

YAML is read the way sagad reads it, as far as PyYAML allows: booleans are exactly
true/false, integers decimal (`yes`, `True`, `0x10`, `2024-01-01` stay strings), no merge keys (`<<` is an ordinary key),
duplicate keys and complex keys refused, and sagad's limits (1 MiB, nesting depth 64,
200,000 nodes counting every alias expansion). A file that cannot be read that way is
"not loadable": an error for a workflow or good fixture, a note for a bad fixture.

Prints one line per file and ends with the plain line "N passed, N failed" (the checks
that can fail: the schema itself, workflows, good fixtures, schema_* bad fixtures).
Exit status: 0 all passed, 1 a check failed, 2 usage or environment error.

Usage: tests/schema/check_schema.py [-q] [FILE...]
  FILE...  check only these files, as definitions that must be valid.
  -q       print failures and the summary only.
Needs: python3 -m pip install jsonschema pyyaml
"""
import argparse
import json
import os
import re
import sys
from pathlib import Path

try:
    import yaml
    from jsonschema import Draft202012Validator, validators
    from jsonschema.exceptions import SchemaError
except ImportError as exc:  # pragma: no cover - environment problem
    print(f"check_schema: {exc}; install with: python3 -m pip install jsonschema pyyaml",
          file=sys.stderr)
    sys.exit(2)

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "schemas" / "saga.schema.json"
WORKFLOWS = ROOT / "workflows"
GOOD = ROOT / "tests" / "fixtures" / "dsl" / "good"
BAD = ROOT / "tests" / "fixtures" / "dsl" / "bad"

# The limits of sg_ylimits_default (orchestrator/yamltree/yamltree.c).
MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 200_000

MODELINE = re.compile(r"^#\s*yaml-language-server:\s*\$schema=(\S+)\s*$")


def strict_validator_class():
    """
    Draft 2020-12 says 1.0 is an integer; sagad's loader reads `version: 1.0` as a
    float and refuses it. Count only real integers (never booleans) as integers.
    """
    checker = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, inst: isinstance(inst, int) and not isinstance(inst, bool))
    return validators.extend(Draft202012Validator, type_checker=checker)


class LoadError(Exception):
    """The file is not a YAML document sagad would accept; carries line and column."""

    def __init__(self, message, mark=None):
        super().__init__(message)
        self.line = mark.line + 1 if mark is not None else 0
        self.col = mark.column + 1 if mark is not None else 0


class CoreLoader(yaml.SafeLoader):
    """SafeLoader with the YAML 1.2 core schema's implicit types instead of YAML 1.1's."""


# As sagad's loader reads plain scalars: booleans are exactly true/false, integers are
# decimal, nulls are ~, null, Null, NULL and the empty scalar.
CoreLoader.yaml_implicit_resolvers = {}
for _tag, _regex, _first in (
    ("tag:yaml.org,2002:bool", r"^(?:true|false)$", "tf"),
    ("tag:yaml.org,2002:int", r"^[-+]?[0-9]+$", "-+0123456789"),
    ("tag:yaml.org,2002:float",
     r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
     r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+.0123456789"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
):
    CoreLoader.add_implicit_resolver(_tag, re.compile(_regex), list(_first))


def scalar_value(node):
    tag, text = node.tag, node.value
    if tag == "tag:yaml.org,2002:str":
        return text
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag == "tag:yaml.org,2002:bool":
        return text == "true"
    if tag == "tag:yaml.org,2002:int":
        return int(text, 10)
    if tag == "tag:yaml.org,2002:float":
        low = text.lower()
        if low.endswith(".inf"):
            return float("-inf") if low.startswith("-") else float("inf")
        if low == ".nan":
            return float("nan")
        return float(text)
    raise LoadError(f"unsupported tag {tag}", node.start_mark)


class Converter:
    """Turns a composed node graph into Python values, counting every alias expansion."""

    def __init__(self):
        self.nodes = 0
        self.marks = {}  # path tuple -> start mark, for located messages

    def convert(self, node, path=(), depth=0):
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise LoadError(f"document expands to more than {MAX_NODES} nodes (alias bomb?)",
                            node.start_mark)
        self.marks.setdefault(path, node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            return scalar_value(node)
        depth += 1
        if depth > MAX_DEPTH:
            raise LoadError(f"nesting deeper than {MAX_DEPTH} levels", node.start_mark)
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, path + (i,), depth) for i, item in enumerate(node.value)]
        result = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise LoadError("complex (non-scalar) mapping keys are not supported",
                                key_node.start_mark)
            key = key_node.value
            if key in result:
                raise LoadError(f'duplicate key "{key}"', key_node.start_mark)
            self.marks.setdefault(path + (key,), key_node.start_mark)
            result[key] = self.convert(value_node, path + (key,), depth)
        return result


def load(path):
    """Returns (document, marks) or raises LoadError."""
    data = path.read_bytes()
    if len(data) > MAX_BYTES:
        raise LoadError(f"file larger than {MAX_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LoadError(f"invalid UTF-8 at byte {exc.start}") from None
    try:
        root = yaml.compose(text, Loader=CoreLoader)
    except yaml.MarkedYAMLError as exc:
        raise LoadError(f"YAML: {exc.problem or exc.context}", exc.problem_mark) from None
    except yaml.YAMLError as exc:
        raise LoadError(f"YAML: {exc}") from None
    if root is None:
        return None, {}
    conv = Converter()
    return conv.convert(root), conv.marks


def rel(path):
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def pointer(path):
    return "/" + "/".join(str(p) for p in path)


def shorten(text, limit=160):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def deepest(err):
    """
    For a oneOf/anyOf failure, the most telling error: that of the alternative that got
    furthest into the document (a step with `activity` fails the activity alternative
    deep inside, and the wait/parallel ones at the step itself), then the one whose type
    fits, then the one with the fewest errors.
    """
    while err.context:
        groups = {}
        for sub in err.context:
            groups.setdefault(sub.relative_schema_path[0], []).append(sub)
        best = max(groups.values(),
                   key=lambda g: (max(len(e.relative_path) for e in g),
                                  -sum(e.validator == "type" for e in g), -len(g)))
        err = max(best, key=lambda e: len(e.relative_path))
    return err


def locate(marks, path):
    path = tuple(path)
    while path and path not in marks:
        path = path[:-1]
    mark = marks.get(path)
    return (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)


def schema_errors(validator, doc, marks, name):
    """Formatted errors of doc, gcc-style, in document order."""
    lines = []
    errors = sorted(validator.iter_errors(doc), key=lambda e: locate(marks, e.absolute_path))
    for err in errors:
        inner = deepest(err)
        line, col = locate(marks, inner.absolute_path)
        lines.append(f"{name}:{line}:{col}: {pointer(inner.absolute_path)}: "
                     f"{shorten(inner.message)}")
    return lines


def modeline_problem(path):
    """None when the first line points yaml-language-server at our schema."""
    with open(path, "rb") as f:
        first = f.readline().decode("utf-8", "replace").rstrip("\r\n")
    m = MODELINE.match(first)
    if m is None:
        return ("first line is not the modeline "
                f"'# yaml-language-server: $schema={relpath_to_schema(path)}'")
    target = (Path(path).parent / m.group(1)).resolve()
    if target != SCHEMA_PATH.resolve():
        return f"modeline points at {m.group(1)}, not {relpath_to_schema(path)}"
    return None


def relpath_to_schema(path):
    return os.path.relpath(SCHEMA_PATH, Path(path).resolve().parent)


def yaml_files(folder):
    return sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


class Report:
    def __init__(self, quiet):
        self.quiet = quiet
        self.passed = 0
        self.failed = 0

    def ok(self, line):
        self.passed += 1
        if not self.quiet:
            print(line)

    def fail(self, line, details=()):
        self.failed += 1
        print(line)
        for d in details:
            print(f"    {d}")

    def note(self, line):
        if not self.quiet:
            print(line)


def check_valid(validator, path, report, want_modeline):
    name = rel(path)
    try:
        doc, marks = load(path)
    except LoadError as exc:
        report.fail(f"FAIL     {name}", [f"{name}:{exc.line}:{exc.col}: not loadable: {exc}"])
        return
    problems = schema_errors(validator, doc, marks, name)
    if want_modeline:
        mp = modeline_problem(path)
        if mp is not None:
            problems.append(f"{name}:1:1: {mp}")
    if problems:
        report.fail(f"FAIL     {name}", problems)
    else:
        report.ok(f"PASS     {name}")


def check_bad(validator, path, report, counts):
    name = rel(path)
    must_reject = path.name.startswith("schema_")
    counts["total"] += 1
    try:
        doc, marks = load(path)
    except LoadError as exc:
        counts["skipped"] += 1
        if must_reject:
            report.fail(f"FAIL     {name}", [f"schema_* fixtures must be loadable YAML: {exc}"])
        else:
            report.note(f"skipped  {name}: not loadable ({exc}); sagad's YAML reader rejects it")
        return
    errors = schema_errors(validator, doc, marks, name)
    if errors:
        counts["rejected"] += 1
        first = errors[0].split(": ", 1)[1] if ": " in errors[0] else errors[0]
        line = f"REJECTED {name}: {shorten(first, 120)}"
        if must_reject:
            report.ok(line)
        else:
            report.note(line)
    else:
        counts["accepted"] += 1
        if must_reject:
            report.fail(f"FAIL     {name}", ["schema_* fixtures must be rejected by the schema, "
                                             "but it accepts this one"])
        else:
            report.note(f"accepted {name} (semantic: only sagactl validate catches it)")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-q", "--quiet", action="store_true", help="print failures and summary only")
    ap.add_argument("files", nargs="*", type=Path, help="check only these (must be valid)")
    args = ap.parse_args(argv)
    report = Report(args.quiet)

    try:
        schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
    except (OSError, ValueError, SchemaError) as exc:
        report.fail(f"FAIL     {rel(SCHEMA_PATH)}", [shorten(exc, 400)])
        print(f"{report.passed} passed, {report.failed} failed")
        return 1
    report.ok(f"PASS     {rel(SCHEMA_PATH)} (valid draft 2020-12 schema)")
    validator = strict_validator_class()(schema)

    if args.files:
        for path in args.files:
            if not path.is_file():
                print(f"check_schema: {path}: no such file", file=sys.stderr)
                return 2
            check_valid(validator, path, report, want_modeline=False)
    else:
        for path in yaml_files(WORKFLOWS) + yaml_files(GOOD):
            check_valid(validator, path, report, want_modeline=True)
        counts = {"total": 0, "rejected": 0, "accepted": 0, "skipped": 0}
        for path in yaml_files(BAD):
            check_bad(validator, path, report, counts)
        print(f"bad fixtures: {counts['rejected']} of {counts['total']} rejected by the schema, "
              f"{counts['accepted']} accepted (semantic), "
              f"{counts['skipped']} not loadable YAML (skipped)")

    print(f"{report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
