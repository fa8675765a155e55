"""References between the repository's files stay true.

Code, tests and the README cite the documentation in ``docs/`` ("see
docs/protocol-socket.md, 'Verbs'").  A citation of a file that is not in the
repository (the behaviour contract the project was built against lives
outside it) or of a section a page no longer has is a dead end for a reader,
so these tests fail on one.
"""

import posixpath
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the external contract's file name, spelled so this file does not cite it
EXTERNAL_CONTRACT = "BEHAVIOUR" + ".md"
#: ``docs/x.md`` or ``README.md``, optionally followed by quoted section names:
#: ``docs/x.md, 'A'``, ``docs/x.md, 'A' and 'B'``, ``README.md, "A", "B"``,
#: ``[docs/x.md](docs/x.md), "A"``
CITATION = re.compile(
    r"(?<![\w/.-])((?:docs/[\w./-]+|README)\.md)"
    r"((?:\)?,\s*(?:'[^'\n]+'|\"[^\"\n]+\")(?:(?:,\s*|\s+and\s+)(?:'[^'\n]+'|\"[^\"\n]+\"))*)?)"
)
QUOTED = re.compile(r"'([^'\n]+)'|\"([^\"\n]+)\"")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def tracked_texts() -> dict[str, str]:
    """Every tracked text file, by its path relative to the repository."""
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.decode().split("\0")
    texts = {}
    for name in filter(None, names):
        path = ROOT / name
        if not path.is_file():
            continue  # deleted in the work tree, not yet committed
        try:
            texts[name] = path.read_text("utf-8")
        except UnicodeDecodeError:
            continue  # binary
    return texts


def headings(markdown: str) -> list[str]:
    return [line.lstrip("#").strip() for line in markdown.splitlines() if line.startswith("#")]


def test_no_file_cites_the_external_contract():
    """The contract is not in the repository: nothing may send a reader there."""
    offenders = [
        f"{name}:{n}"
        for name, text in tracked_texts().items()
        for n, line in enumerate(text.splitlines(), 1)
        if EXTERNAL_CONTRACT in line
    ]
    assert offenders == []


def test_every_cited_doc_and_section_exists():
    """``docs/….md`` (and ``README.md``) citations name existing files, and
    the quoted section names after them are headings of that file."""
    texts = tracked_texts()
    problems = []
    citations = 0
    for name, text in texts.items():
        if name == "tests/test_docs.py":
            continue  # its examples
        for match in CITATION.finditer(text):
            target = match.group(1)
            if name.startswith("docs/") and not target.startswith("docs/"):
                continue  # inside docs/, README.md means docs/README.md or ../README.md
            citations += 1
            where = f"{name}:{text.count(chr(10), 0, match.start()) + 1}"
            if target not in texts:
                problems.append(f"{where}: {target} is not in the repository")
                continue
            titles = headings(texts[target])
            for quoted in QUOTED.finditer(match.group(2)):
                section = quoted.group(1) or quoted.group(2)
                if not any(title.startswith(section) for title in titles):
                    problems.append(f"{where}: {target} has no section {section!r}")
    assert problems == []
    assert citations >= 40  # the code and tests do cite the docs (the regex finds them)


def test_markdown_links_point_at_files():
    """Relative links in the README and in docs/ lead to tracked files (or folders)."""
    tracked = set(
        subprocess.run(
            ["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout.splitlines()
    )
    texts = tracked_texts()
    pages = [n for n in texts if n == "README.md" or (n.startswith("docs/") and n.endswith(".md"))]
    problems = []
    links = 0
    for name in pages:
        for match in MARKDOWN_LINK.finditer(texts[name]):
            link = match.group(1)
            if "://" in link or link.startswith("mailto:"):
                continue
            links += 1
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), link))
            if target not in tracked and not any(t.startswith(target + "/") for t in tracked):
                problems.append(f"{name}: link {link} -> {target} is not in the repository")
    assert problems == []
    assert links >= 10


def test_license_matches_setup_cfg():
    """setup.cfg says MIT; the LICENSE file is the MIT licence."""
    setup = (ROOT / "setup.cfg").read_text("utf-8")
    assert re.search(r"^license = MIT$", setup, re.M)
    text = (ROOT / "LICENSE").read_text("utf-8")
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the ahtwist developers" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text
