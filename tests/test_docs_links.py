"""Every relative link in README.md, docs/ and the recipes' READMEs resolves: the file or folder
exists in the repository and, for a link into a Markdown file with a #anchor, that file has a
heading with GitHub's anchor for it. http(s)/mailto links are not followed; code (fenced blocks
and `inline`) is not read as links."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"),
                *ROOT.glob("egs2/*/*/README.md"), *ROOT.glob("local/*/README.md"),
                ROOT / "scripts" / "README.md", ROOT / "scripts" / "bench" / "README.md"])

# [text](target "title"), ![alt](target), [text](<target>); link text may hold one level of [..]
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?", re.M)
HTML = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.I)
FENCE = re.compile(r"^ {0,3}(```|~~~)[^\n]*\n.*?^ {0,3}\1[^\n]*$", re.M | re.S)
CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def strip_code(text):
    return CODE.sub("", FENCE.sub("", text))


def links(text):
    text = strip_code(text)
    for pattern in (INLINE, REFERENCE, HTML):
        for match in pattern.finditer(text):
            yield match.group(1)


def slug(heading):
    """GitHub's anchor of a heading: lower case, markup and punctuation dropped, spaces -> -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())  # links keep their text
    text = re.sub(r"[`*_~]|<[^>]+>", "", text).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path):
    found, seen = set(), {}
    for line in strip_code(path.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            base = slug(heading.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_links(page):
    """(target, why) of each relative link of page that does not resolve."""
    broken = []
    for target in links(page.read_text(encoding="utf-8")):
        if not target or EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if path.startswith("/") or ROOT not in (resolved, *resolved.parents):
            broken.append((target, "outside the repository"))
        elif not resolved.exists():
            broken.append((target, "no such file"))
        elif anchor and resolved.suffix == ".md" and anchor.lower() not in anchors(resolved):
            broken.append((target, f"no heading #{anchor} in {resolved.relative_to(ROOT)}"))
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    assert broken_links(page) == []


def test_the_checker_finds_broken_links(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title\n\n## Do the gates follow? Why the demo's do not\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/a.md) [ok](docs/a.md#do-the-gates-follow-why-the-demos-do-not) [ok](#top)\n"
        "[web](https://example.com/x) `[code](missing.md)`\n```\n[fenced](missing.md)\n```\n"
        "[gone](docs/b.md) ![img](plots/x.png) [anchor](docs/a.md#nothing)\n"
        "[out](../elsewhere.md) [ref]: docs/c.md\n# Top\n")
    assert broken_links(page) == [
        ("docs/b.md", "no such file"), ("plots/x.png", "no such file"),
        ("docs/a.md#nothing", "no heading #nothing in docs/a.md"),
        ("../elsewhere.md", "outside the repository"),
    ]
    (tmp_path / "README.md").write_text("intro\n\n[ref]: docs/c.md\n")
    assert broken_links(page) == [("docs/c.md", "no such file")]
