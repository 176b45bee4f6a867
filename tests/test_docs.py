"""The documentation: README size and test command, links that resolve, cited outputs that are committed.

CI (``.ci/run``) runs the command written in README.md on the second line after the ``<!-- test-command -->``
marker; these tests parse it the same way. Every relative link of README.md, docs/*.md and
benchmarks/results/README.md must point at an existing file (and, for a heading anchor into a Markdown file, at an
existing heading); every file under benchmarks/results/ that those pages link must be tracked by git, and every
``COMMIT:PATH`` the results index tells readers to ``git show`` must exist in the history.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results"
MARKER = "<!-- test-command -->"
AWK_PROGRAM = "/<!-- test-command -->/{getline; getline; print; exit}"
README_LIMIT = 8192

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"`+[^`]*`+")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def doc_pages() -> list[Path]:
    """The pages whose links are checked."""
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    if (RESULTS / "README.md").exists():
        pages.append(RESULTS / "README.md")
    return pages


def prose_lines(text: str) -> list[str]:
    """The lines of ``text`` outside fenced code blocks, inline code removed."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(_INLINE_CODE.sub("", line))
    return lines


def links(page: Path) -> list[str]:
    """Every link target of a Markdown page (inline links and images), code excluded."""
    return [match.group(1) for line in prose_lines(page.read_text(encoding="utf-8")) for match in _LINK.finditer(line)]


def relative_links(page: Path) -> list[tuple[str, Path, str]]:
    """(target as written, resolved file, anchor) of every link that is not a URL; the file is the page itself
    for a bare ``#anchor``."""
    out = []
    for target in links(page):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # http:, https:, mailto: …
            continue
        path, _, anchor = target.partition("#")
        resolved = page if not path else (page.parent / unquote(path)).resolve()
        out.append((target, resolved, anchor))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = _INLINE_CODE.sub(lambda m: m.group(0).strip("`"), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The heading anchors of a Markdown page (duplicates numbered -1, -2, … as GitHub does)."""
    seen: dict[str, int] = {}
    out = set()
    text, fenced = page.read_text(encoding="utf-8"), False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return out


def read_test_command(readme_text: str) -> list[str]:
    """The two lines after the marker: the fence, then the command (what .ci/run's awk reads)."""
    lines = readme_text.splitlines()
    at = lines.index(MARKER)
    return lines[at + 1:at + 4]


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def in_git_checkout() -> bool:
    return shutil.which("git") is not None and git("rev-parse", "--is-inside-work-tree").stdout.strip() == "true"


# --- README -------------------------------------------------------------------------------------------------------

def test_readme_is_at_most_8_kib():
    size = README.stat().st_size
    assert size <= README_LIMIT, f"README.md is {size} bytes, over {README_LIMIT}: move detail to docs/"


def test_readme_test_command_is_where_ci_reads_it():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert AWK_PROGRAM in ci, ".ci/run no longer reads the test command the way this test parses it"
    text = README.read_text(encoding="utf-8")
    assert text.count(MARKER) == 1, f"README.md must hold exactly one {MARKER} line"
    fence, command, closing = read_test_command(text)
    assert fence == "```bash", f"the line after {MARKER} must open a bash fence, not {fence!r}"
    assert closing == "```", "the test command must be the fence's only line"
    assert command.startswith(".venv/bin/python -m pytest"), command
    assert "-n 2" in command and "--dist loadfile" in command, command
    if shutil.which("awk"):
        read = subprocess.run(["awk", AWK_PROGRAM, str(README)], capture_output=True, text=True, check=True)
        assert read.stdout.strip() == command


def test_readme_keeps_the_one_line_setup_command():
    text = README.read_text(encoding="utf-8")
    assert re.search(r"^```bash\npython3\.11 -m venv \.venv && .*\.venv/bin/avnas search .*\n```$", text, re.M), \
        "README.md lost its one-line set-up and main-job command"


def test_readme_cli_tour_names_every_subcommand():
    source = (ROOT / "avnas_nni" / "cli.py").read_text(encoding="utf-8")
    commands = set(re.findall(r"\bsub\.add_parser\(\s*\"([\w-]+)\"", source))
    assert commands, "no subcommands found in avnas_nni/cli.py"
    text = README.read_text(encoding="utf-8")
    missing = sorted(name for name in commands if f"`avnas {name}" not in text)
    assert not missing, f"README.md's CLI tour misses: {missing}"


# --- links --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target, resolved, anchor in relative_links(page):
        if not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target} (no heading #{anchor} in {resolved.relative_to(ROOT)})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"


def linked_results() -> list[Path]:
    """Every file under benchmarks/results/ that a documentation page links."""
    files = set()
    for page in doc_pages():
        for _, resolved, _ in relative_links(page):
            if resolved.is_relative_to(RESULTS) and resolved != RESULTS / "README.md":
                files.add(resolved)
    return sorted(files)


def test_docs_link_committed_results():
    files = linked_results()
    assert files, "the docs link no output under benchmarks/results/"
    missing = [str(f.relative_to(ROOT)) for f in files if not f.is_file()]
    assert not missing, f"linked outputs missing: {missing}"
    if not in_git_checkout():
        pytest.skip("not a git checkout: cannot check that the linked outputs are committed")
    tracked = set(git("ls-files", "--", "benchmarks/results").stdout.split())
    untracked = [str(f.relative_to(ROOT)) for f in files if str(f.relative_to(ROOT)) not in tracked]
    assert not untracked, f"linked outputs not in git: {untracked}"


def test_results_index_history_references_exist():
    """``COMMIT:PATH`` in benchmarks/results/README.md (outputs overwritten since) must be readable with git show."""
    text = (RESULTS / "README.md").read_text(encoding="utf-8")
    references = re.findall(r"`([0-9a-f]{7,40}):([\w./-]+)`", text)
    assert references
    if not in_git_checkout() or git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        pytest.skip("no full git history here")
    gone = [f"{commit}:{path}" for commit, path in references
            if git("cat-file", "-e", f"{commit}:{path}").returncode != 0]
    assert not gone, f"not in the history: {gone}"


def test_link_checker_sees_a_broken_link(tmp_path):
    """The checker itself: a page with a missing file and a missing anchor yields both."""
    (tmp_path / "there.md").write_text("# A heading\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md#a-heading) [gone](missing.md) [bad](there.md#nope) `[code](nothing.md)`\n"
                    "```\n[fenced](nothing.md)\n```\n", encoding="utf-8")
    found = {target: (resolved.exists(), anchor) for target, resolved, anchor in relative_links(page)}
    assert set(found) == {"there.md#a-heading", "missing.md", "there.md#nope"}
    assert found["missing.md"][0] is False
    assert "nope" not in anchors(tmp_path / "there.md") and "a-heading" in anchors(tmp_path / "there.md")
