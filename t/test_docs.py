"""The documentation keeps up with the code: every chat_* directive the
module defines is described in docs/directives.md, and nothing described
there is missing from the module; every file of the module, the workers
and the migrations has its line in docs/layout.md, and every file named
there exists. No servers needed."""

import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def module_directives():
    names = set()
    for path in glob.glob(os.path.join(ROOT, "ngx_chat_module", "*.c")):
        with open(path) as f:
            names |= set(re.findall(r'\{ ngx_string\("(chat[a-z_]*)"\)',
                                    f.read()))
    return names


def documented_directives():
    with open(os.path.join(ROOT, "docs", "directives.md")) as f:
        return set(re.findall(r"^### (chat[a-z_]*)\s*$", f.read(), re.M))


def test_every_directive_is_documented():
    code, docs = module_directives(), documented_directives()
    assert len(code) >= 20, code
    assert code - docs == set(), "not in docs/directives.md: %s" % (
        sorted(code - docs),)
    assert docs - code == set(), "documented but not in the module: %s" % (
        sorted(docs - code),)


# the trees whose every file docs/layout.md must name
LAYOUT_TREES = ("ngx_chat_module", "workers", "sql")
LAYOUT_SKIP = (".o", ".d", ".a", ".so", "~", ".swp", ".orig", ".rej")


def layout_sources():
    found = set()
    for tree in LAYOUT_TREES:
        for d, dirs, files in os.walk(os.path.join(ROOT, tree)):
            dirs[:] = [x for x in dirs if not x.startswith(".")]
            for name in files:
                if name.startswith(".") or name.endswith(LAYOUT_SKIP):
                    continue
                found.add(os.path.relpath(os.path.join(d, name), ROOT))
    return found


def layout_named():
    """The paths docs/layout.md names: its backquoted words with a slash
    that are not a path outside the repository or a placeholder."""
    with open(os.path.join(ROOT, "docs", "layout.md")) as f:
        words = re.findall(r"`([^`\s]+)`", f.read())
    return {w for w in words
            if "/" in w and not w.startswith(("/", "../", "http"))
            and re.fullmatch(r"[A-Za-z0-9_.@/+-]+", w)}


def test_layout_names_every_source_file():
    sources, named = layout_sources(), layout_named()
    assert len(sources) >= 100, sources
    missing = sorted(sources - named)
    assert missing == [], "not in docs/layout.md: %s" % (missing,)


def test_layout_names_only_files_that_exist():
    named = layout_named()
    assert len(named) >= 100, named
    gone = sorted(p for p in named
                  if not os.path.exists(os.path.join(ROOT, p)))
    assert gone == [], "named in docs/layout.md but not there: %s" % (gone,)


def test_readme_links_the_layout():
    with open(os.path.join(ROOT, "README.md")) as f:
        assert "docs/layout.md" in f.read()
