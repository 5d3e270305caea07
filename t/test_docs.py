"""The documentation keeps up with the code: every chat_* directive the
module defines is described in docs/directives.md, and nothing described
there is missing from the module. No servers needed."""

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
