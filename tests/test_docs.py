"""The README and docs/ as readers meet them: every relative link leads somewhere, the configuration table of
docs/operators.md names every environment variable the settings read, and the README stays a short front door.

These read files only (no database, no server).

How the configuration table is matched against portal/settings.py:

- The variables are found by parsing the module, not by running it: every call of a reading method (`str`,
  `bool`, `int`, `float`, `list`, `choice`, `db_url`, `cache_url`, …) on the module's `env` or on a fresh
  `environ.Env()`, and `os.environ.get` / `os.getenv` / `os.environ[...]`, whose first argument is the
  variable's name. A name built with an f-string (`f"{var}_BACKEND"` in `_mirror`) is resolved through the
  function's `var = "MIRROR_" + …` assignment, so it stands for a family: `MIRROR_<NAME>_BACKEND`, one variable
  per mirror listed in STORAGE_MIRRORS. Any other way of naming a variable fails the test, so a new form is noticed.
- The table names variables in backticks in its first column, one or several per row. A family is documented by
  its own name with the `<NAME>` placeholder (`MIRROR_<NAME>_BACKEND`), never by shorthand.
- Every variable is also readable from a file (`NAME_FILE`, django-environ's FileAwareEnv). A row may name the
  `_FILE` form instead of the plain one — `CLOUDFRONT_PRIVATE_KEY_FILE` documents `CLOUDFRONT_PRIVATE_KEY`, since a
  key is given as a file — and the two together count once: documenting both is documenting twice.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
SETTINGS = ROOT / "portal" / "settings.py"
OPERATORS = ROOT / "docs" / "operators.md"
README_MAX_LINES = 250

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[ \t]*$", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
# [text](target) and ![alt](target), with an optional "title"; the text may span lines.
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.M)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def without_code(text: str) -> str:
    """The text without fenced blocks and code spans: what they contain is not a link or a heading."""
    text = FENCE.sub("", text)
    return CODE_SPAN.sub("", text)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: its text (links, code and emphasis reduced to their words), lower-cased,
    every character but letters, digits, `_`, `-` and spaces dropped, and each space made a dash."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor in a Markdown page; a repeated heading gets -1, -2, … as on GitHub."""
    seen: Counter[str] = Counter()
    found = set()
    for match in HEADING.finditer(FENCE.sub("", page.read_text())):
        anchor = github_anchor(match.group(1))
        found.add(anchor if not seen[anchor] else f"{anchor}-{seen[anchor]}")
        seen[anchor] += 1
    return found


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(without_code(page.read_text())) if not SCHEME.match(t) and not t.startswith("//")]


def broken_link(page: Path, target: str) -> str | None:
    """Why a relative link from `page` leads nowhere, or None when it resolves."""
    path, _, anchor = target.partition("#")
    destination = (page.parent / path).resolve() if path else page
    if not destination.exists():
        return f"{page.relative_to(ROOT)}: {target} — no such file"
    if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
        return f"{page.relative_to(ROOT)}: {target} — no heading #{anchor} in {destination.relative_to(ROOT)}"
    return None


def test_it_makes_anchors_as_github_does():
    assert github_anchor("Tokens, signed URLs and revocation") == "tokens-signed-urls-and-revocation"
    assert github_anchor("Registering files: `register_release`") == "registering-files-register_release"
    assert github_anchor("2. Redirects — `bench/bench_redirect.py`") == "2-redirects--benchbench_redirectpy"
    assert github_anchor("5. Approval → grant email") == "5-approval--grant-email"


def test_it_resolves_every_relative_link_in_the_readme_and_docs():
    links = [(page, target) for page in PAGES for target in relative_links(page)]
    # The README links every docs page, and the pages each other: finding few links means the pattern broke.
    assert len(links) > 50, links
    assert {target.partition("#")[0] for page, target in links if page == README} >= {
        f"docs/{name}"
        for name in (
            "README.md",
            "researchers.md",
            "reviewers.md",
            "release-managers.md",
            "operators.md",
            "security.md",
            "api.md",
            "benchmarks.md",
        )
    }
    broken = [reason for page, target in links if (reason := broken_link(page, target))]
    assert not broken, "\n".join(broken)


READ_METHODS = {
    "str",
    "bool",
    "int",
    "float",
    "list",
    "tuple",
    "dict",
    "json",
    "url",
    "path",
    "choice",
    "db_url",
    "cache_url",
    "email_url",
    "search_url",
}


def _reads_env(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr in READ_METHODS:
        receiver = func.value
        if isinstance(receiver, ast.Name) and receiver.id == "env":
            return True
        # environ.Env().str("PORTAL_VAR_DIR"), read before `env` exists.
        return isinstance(receiver, ast.Call) and ast.unparse(receiver.func) in ("environ.Env", "StrictEnv")
    return ast.unparse(func) in ("os.environ.get", "os.getenv")


def _family_prefix(function: ast.FunctionDef | None, name: str) -> str:
    """What `name` holds in `function` when it is built as `"PREFIX_" + <something>`: "PREFIX_<NAME>"."""
    assignments = [
        node.value
        for node in (ast.walk(function) if function is not None else ())
        for target in (node.targets if isinstance(node, ast.Assign) else [])
        if isinstance(target, ast.Name) and target.id == name
    ]
    for value in assignments:
        if isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add) and isinstance(value.left, ast.Constant):
            return f"{value.left.value}<NAME>"
    raise AssertionError(f"cannot tell which variables {{{name}}} names in portal/settings.py")


def _variable(node: ast.expr, function: ast.FunctionDef | None) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(value.value)
            elif isinstance(value, ast.FormattedValue) and isinstance(value.value, ast.Name):
                parts.append(_family_prefix(function, value.value.id))
            else:
                raise AssertionError(f"cannot tell which variable {ast.unparse(node)} names in portal/settings.py")
        return "".join(parts)
    raise AssertionError(f"cannot tell which variable {ast.unparse(node)} names in portal/settings.py")


def settings_variables() -> set[str]:
    """Every environment variable portal/settings.py reads (families with `<NAME>`), found by parsing it."""
    tree = ast.parse(SETTINGS.read_text())
    functions = {id(n): n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    enclosing = {
        id(child): function for function in functions.values() for child in ast.walk(function) if child is not function
    }
    names = set()
    for node in ast.walk(tree):
        function = enclosing.get(id(node))
        if isinstance(node, ast.Call) and _reads_env(node) and node.args:
            names.add(_variable(node.args[0], function))
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            names.add(_variable(node.slice, function))
    return names


def configuration_table() -> Counter[str]:
    """How many times each variable is named in the first column of docs/operators.md's configuration table."""
    text = OPERATORS.read_text()
    section = re.search(r"^## Configuration\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "docs/operators.md has no '## Configuration' section"
    rows = [line for line in section.group(1).splitlines() if line.startswith("|")][2:]
    assert rows, "the configuration section of docs/operators.md has no table"
    named: Counter[str] = Counter()
    for row in rows:
        first_column = row.split("|")[1]
        named.update(re.findall(r"`([A-Z][A-Z0-9_]*(?:<NAME>[A-Z0-9_]*)?)`", first_column))
    return named


def test_it_documents_every_setting_exactly_once_in_the_configuration_table():
    read = settings_variables()
    # Sanity: the parse finds the plain reads, the one before `env` exists, and the mirror families.
    assert {"SECRET_KEY", "PORTAL_VAR_DIR", "STORAGE_MIRRORS", "MIRROR_<NAME>_BACKEND", "MIRROR_<NAME>_S3_BUCKET"} <= (
        read
    )
    named = configuration_table()
    times = {name: named[name] + named[f"{name}_FILE"] for name in read}
    missing = sorted(name for name, count in times.items() if count == 0)
    repeated = sorted(name for name, count in times.items() if count > 1)
    assert not missing, f"read in portal/settings.py but not in the table of docs/operators.md: {missing}"
    assert not repeated, f"named more than once in the table of docs/operators.md: {repeated}"


def test_it_documents_no_variable_the_code_does_not_read():
    read = settings_variables()
    source = "\n".join(p.read_text() for folder in ("portal", "access") for p in (ROOT / folder).rglob("*.py"))
    stale = [
        name
        for name in configuration_table()
        if name not in read
        and name.removesuffix("_FILE") not in read
        and not re.search(rf"[\"']{re.escape(name)}[\"']", source)
    ]
    assert not stale, f"the table of docs/operators.md names variables nothing reads: {stale}"


def test_it_keeps_the_readme_short():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; reference belongs in docs/ (at most 250)"
